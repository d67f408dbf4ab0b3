//! Sealing (DESIGN.md "Sealed requests"): hybrid RSA-OAEP-256 + AES-256-GCM requests as COSE_Encrypt,
//! session reuse of a content key, and AES-256-GCM responses as COSE_Encrypt0 (single) or a
//! length-prefixed COSE_Encrypt0 stream (STREAM construction).
//!
//! - [`request`]: the client seals with the enclave's public key; the enclave opens through [`Unwrap`].
//! - [`response`]: keys derived per request with HKDF-SHA256; nonces from a base IV and a chunk counter.
//! - [`unwrap`]: the [`Unwrap`] trait and its aws-lc-rs implementation (constant-time RSA-OAEP).

pub mod request;
pub mod response;
pub mod unwrap;

pub use request::{
    OpenedRequest, RecipientKind, RequestContext, RequestPlaintext, SealedRequest, open_request,
    seal_request, seal_request_session,
};
pub use response::{Chunk, ResponseKeys, StreamOpener, StreamSealer, open_single, seal_single};
pub use unwrap::{AwsLcRsaOaep, Unwrap};

use crate::{ProtocolError, Result};
use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use hkdf::Hkdf;
use rand_core::CryptoRngCore;
use sha2::Sha256;
use zeroize::{Zeroize, ZeroizeOnDrop};

/// COSE algorithm id of AES-256-GCM (RFC 9053 §4.1).
pub const ALG_A256GCM: i64 = 3;
/// COSE algorithm id of RSAES-OAEP w/ SHA-256 (RFC 8230 §3).
pub const ALG_RSAES_OAEP_SHA256: i64 = -41;
/// COSE algorithm id of direct use of a shared key (RFC 9053 §6.1), used for session reuse.
pub const ALG_DIRECT: i64 = -6;
/// Length of an AES-GCM IV.
pub const IV_LEN: usize = NONCE_LEN;
/// Length of an AES-GCM tag.
pub const TAG_LEN: usize = 16;

/// A 256-bit AES-GCM content key, wiped on drop.
#[derive(Clone, PartialEq, Eq, Zeroize, ZeroizeOnDrop)]
pub struct ContentKey([u8; 32]);

impl ContentKey {
    /// A fresh random key.
    pub fn generate(rng: &mut impl CryptoRngCore) -> Result<Self> {
        let mut k = [0u8; 32];
        rng.try_fill_bytes(&mut k)
            .map_err(|e| ProtocolError::crypto("random content key", e))?;
        Ok(Self(k))
    }

    /// A key from exactly 32 bytes.
    pub fn from_slice(b: &[u8]) -> Result<Self> {
        let arr: [u8; 32] = b
            .try_into()
            .map_err(|_| ProtocolError::length("content key", "32", b.len()))?;
        Ok(Self(arr))
    }

    /// The key bytes. Handle with care.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The session id a client sends instead of a wrapped key when it reuses this key:
    /// HKDF-SHA256(ikm = key, salt = none, info = "secllama/v1/session-id"), 16 bytes.
    pub fn session_id(&self) -> Result<[u8; 16]> {
        let mut id = [0u8; 16];
        hkdf_expand(&self.0, None, b"secllama/v1/session-id", &mut id)?;
        Ok(id)
    }
}

impl std::fmt::Debug for ContentKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ContentKey(..)")
    }
}

/// HKDF-SHA256 extract-and-expand into `out` (RFC 5869; at most 255·32 bytes).
pub(crate) fn hkdf_expand(
    ikm: &[u8],
    salt: Option<&[u8]>,
    info: &[u8],
    out: &mut [u8],
) -> Result<()> {
    Hkdf::<Sha256>::new(salt, ikm)
        .expand(info, out)
        .map_err(|_| {
            ProtocolError::crypto(
                "HKDF-SHA256 expand",
                format!("an output length of {} bytes", out.len()),
            )
        })
}

fn aead_key(key: &[u8; 32]) -> Result<LessSafeKey> {
    UnboundKey::new(&AES_256_GCM, key)
        .map(LessSafeKey::new)
        .map_err(|_| ProtocolError::crypto("AES-256-GCM key setup", "a rejected key"))
}

/// AES-256-GCM encryption; returns ciphertext ‖ tag.
pub(crate) fn aes_gcm_seal(
    key: &[u8; 32],
    iv: &[u8; IV_LEN],
    aad: &[u8],
    plaintext: &[u8],
) -> Result<Vec<u8>> {
    let mut buf = Vec::with_capacity(plaintext.len() + TAG_LEN);
    buf.extend_from_slice(plaintext);
    aead_key(key)?
        .seal_in_place_append_tag(Nonce::assume_unique_for_key(*iv), Aad::from(aad), &mut buf)
        .map_err(|_| ProtocolError::crypto("AES-256-GCM encryption", "a failure"))?;
    Ok(buf)
}

/// AES-256-GCM decryption of ciphertext ‖ tag.
pub(crate) fn aes_gcm_open(
    key: &[u8; 32],
    iv: &[u8; IV_LEN],
    aad: &[u8],
    ciphertext: &[u8],
    what: &str,
) -> Result<Vec<u8>> {
    let mut buf = ciphertext.to_vec();
    let len = aead_key(key)?
        .open_in_place(Nonce::assume_unique_for_key(*iv), Aad::from(aad), &mut buf)
        .map_err(|_| ProtocolError::Decrypt { what: what.into() })?
        .len();
    buf.truncate(len);
    Ok(buf)
}
