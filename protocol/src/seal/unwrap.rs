//! Unwrapping a request's content key inside the enclave.
//!
//! [`Unwrap`] hides the private key: the enclave holds an implementation and the request opener only
//! asks it to unwrap. [`AwsLcRsaOaep`] is the implementation: an RSA-3072 key generated and used by
//! aws-lc-rs, whose RSA decryption is constant time. The `rsa` crate is never given a private key
//! (RUSTSEC-2023-0071, the Marvin timing attack).

use super::ContentKey;
use crate::{Kid, ProtocolError, Result, sha256};
use aws_lc_rs::encoding::{AsDer, PublicKeyX509Der};
use aws_lc_rs::rsa::{
    KeySize, OAEP_SHA256_MGF1SHA256, OaepPrivateDecryptingKey, PrivateDecryptingKey,
};
use zeroize::Zeroizing;

/// Something that can unwrap content keys wrapped for one enclave encryption key.
pub trait Unwrap {
    /// SHA-256 of the encryption key's SubjectPublicKeyInfo DER (the recipient kid).
    fn kid(&self) -> Kid;
    /// Unwraps an RSAES-OAEP-SHA256 ciphertext into a 32-byte content key.
    fn unwrap_key(&self, wrapped: &[u8]) -> Result<ContentKey>;
}

/// RSA-3072 RSAES-OAEP-SHA256 (MGF1-SHA256, empty label) key held by aws-lc-rs.
pub struct AwsLcRsaOaep {
    key: OaepPrivateDecryptingKey,
    spki_der: Vec<u8>,
    kid: Kid,
}

impl std::fmt::Debug for AwsLcRsaOaep {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "AwsLcRsaOaep(kid {})", self.kid.to_hex())
    }
}

fn lc_err(what: &str) -> impl Fn(aws_lc_rs::error::Unspecified) -> ProtocolError + '_ {
    move |_| ProtocolError::crypto(what, "an aws-lc-rs failure")
}

impl AwsLcRsaOaep {
    /// Generates a fresh RSA-3072 key (the enclave does this at start, in memory only).
    pub fn generate() -> Result<Self> {
        let key = PrivateDecryptingKey::generate(KeySize::Rsa3072)
            .map_err(lc_err("RSA-3072 key generation"))?;
        Self::from_key(key)
    }

    /// Loads a PKCS#8 DER RSA private key (tests and interop only; the enclave generates its own).
    pub fn from_pkcs8_der(der: &[u8]) -> Result<Self> {
        let key = PrivateDecryptingKey::from_pkcs8(der).map_err(|e| ProtocolError::Key {
            what: "RSA private key".into(),
            expected: "PKCS#8 DER RSA key".into(),
            found: e.to_string(),
        })?;
        Self::from_key(key)
    }

    fn from_key(key: PrivateDecryptingKey) -> Result<Self> {
        let bits = key.key_size_bits();
        if bits < super::request::MIN_ENCRYPTION_KEY_BITS {
            return Err(ProtocolError::Key {
                what: "enclave encryption key".into(),
                expected: "RSA of at least 3072 bits".into(),
                found: format!("RSA-{bits}"),
            });
        }
        let spki = AsDer::<PublicKeyX509Der>::as_der(&key.public_key())
            .map_err(lc_err("SPKI encoding"))?;
        let spki_der = spki.as_ref().to_vec();
        let kid = sha256(&[&spki_der]);
        let key = OaepPrivateDecryptingKey::new(key).map_err(lc_err("RSA-OAEP key setup"))?;
        Ok(Self { key, spki_der, kid })
    }

    /// The public key, SubjectPublicKeyInfo DER (published in the attestation document).
    pub fn public_key_der(&self) -> &[u8] {
        &self.spki_der
    }
}

impl Unwrap for AwsLcRsaOaep {
    fn kid(&self) -> Kid {
        self.kid
    }

    fn unwrap_key(&self, wrapped: &[u8]) -> Result<ContentKey> {
        let size = self.key.key_size_bytes();
        if wrapped.len() != size {
            return Err(ProtocolError::Unwrap {
                found: format!("{} bytes instead of {size}", wrapped.len()),
            });
        }
        let mut out = Zeroizing::new(vec![0u8; size]);
        let key = self
            .key
            .decrypt(&OAEP_SHA256_MGF1SHA256, wrapped, &mut out, None)
            .map_err(|_| ProtocolError::Unwrap {
                found: "a ciphertext that does not decrypt".into(),
            })?;
        if key.len() != 32 {
            return Err(ProtocolError::Unwrap {
                found: format!("a {}-byte key instead of 32", key.len()),
            });
        }
        ContentKey::from_slice(key)
    }
}
