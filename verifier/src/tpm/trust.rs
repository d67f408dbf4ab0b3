//! Trust in an attestation key by pinning (DESIGN.md "Attestation document": an AK "pinned in the
//! reference manifest"): the AK must be the pinned `TPMT_PUBLIC` byte for byte, or hold the pinned
//! key. Trust through a certificate chain is in [`super::cert`]; trust through credential activation
//! against the EK is in [`super::credential`].

use super::appraise::AkPublic;
use super::error::{Result, TpmError};
use rsa::traits::PublicKeyParts;
use secllama_protocol::cose::VerifyingKey;

/// Whether two public keys are the same key (same curve and point, or same modulus and exponent).
pub fn same_key(a: &VerifyingKey, b: &VerifyingKey) -> bool {
    match (a, b) {
        (VerifyingKey::Rsa(x), VerifyingKey::Rsa(y)) => x.n() == y.n() && x.e() == y.e(),
        (VerifyingKey::P256(x), VerifyingKey::P256(y)) => {
            x.to_encoded_point(false) == y.to_encoded_point(false)
        }
        (VerifyingKey::P384(x), VerifyingKey::P384(y)) => {
            x.to_encoded_point(false) == y.to_encoded_point(false)
        }
        (VerifyingKey::P521(x), VerifyingKey::P521(y)) => {
            x.to_encoded_point(false) == y.to_encoded_point(false)
        }
        _ => false,
    }
}

/// Checks `ak` against a pinned AK: anything [`AkPublic::detect`] reads. When both are
/// `TPMT_PUBLIC`s they must be identical (same key, attributes, scheme and policy: the same Name);
/// otherwise the keys must be the same.
pub fn check_pinned_ak(ak: &AkPublic, pinned: &[u8]) -> Result<()> {
    let pinned = AkPublic::detect(pinned)?;
    if let (Some(a), Some(p)) = (ak.tpm_public(), pinned.tpm_public()) {
        if a.as_bytes() != p.as_bytes() {
            return Err(TpmError::input(
                "AK",
                format!("the pinned TPMT_PUBLIC (Name {})", hex::encode(p.name())),
                format!("TPMT_PUBLIC with Name {}", hex::encode(a.name())),
            ));
        }
        return Ok(());
    }
    let (a, p) = (ak.verifying_key()?, pinned.verifying_key()?);
    if !same_key(&a, &p) {
        return Err(TpmError::input(
            "AK",
            format!("the pinned {} key", p.describe()),
            format!("another {} key", a.describe()),
        ));
    }
    Ok(())
}
