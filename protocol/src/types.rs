//! Small types that carry meaning on the wire: digests, key ids, nonces, request ids, salts.

use crate::{ProtocolError, Result};
use sha2::{Digest, Sha256};

/// A SHA-256 digest.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Sha256Digest(pub [u8; 32]);

/// SHA-256 of the concatenation of `parts`.
pub fn sha256(parts: &[&[u8]]) -> Sha256Digest {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p);
    }
    Sha256Digest(h.finalize().into())
}

impl Sha256Digest {
    /// The digest's bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Lower-case hex.
    pub fn to_hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Reads a digest from exactly 32 bytes.
    pub fn from_slice(what: &str, b: &[u8]) -> Result<Self> {
        let arr: [u8; 32] = b
            .try_into()
            .map_err(|_| ProtocolError::length(what, "32", b.len()))?;
        Ok(Self(arr))
    }
}

impl std::fmt::Debug for Sha256Digest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "sha256:{}", self.to_hex())
    }
}

/// A COSE key id: SHA-256 of the key's canonical public encoding (COSE_Key for the signing key,
/// SubjectPublicKeyInfo DER for the encryption key).
pub type Kid = Sha256Digest;

/// A verifier-chosen freshness nonce: 16 to 64 bytes.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Nonce(Vec<u8>);

impl Nonce {
    /// Smallest accepted nonce, in bytes.
    pub const MIN: usize = 16;
    /// Largest accepted nonce, in bytes.
    pub const MAX: usize = 64;

    /// Accepts `bytes` when its length is within 16..=64.
    pub fn new(bytes: Vec<u8>) -> Result<Self> {
        if !(Self::MIN..=Self::MAX).contains(&bytes.len()) {
            return Err(ProtocolError::length("nonce", "16 to 64", bytes.len()));
        }
        Ok(Self(bytes))
    }

    /// The nonce bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

/// A request id: 16 random bytes chosen by the client, unique per content key.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct RequestId(pub [u8; 16]);

/// A per-request salt: 32 random bytes that blind the digests in a receipt.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Salt(pub [u8; 32]);

impl Salt {
    /// SHA-256(salt ‖ bytes): the salted digest used in receipts, so that the host cannot match
    /// receipt digests against the (known) evaluation dataset.
    pub fn digest(&self, bytes: &[u8]) -> Sha256Digest {
        sha256(&[&self.0, bytes])
    }
}
