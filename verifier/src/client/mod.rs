//! The enclave client: attests an enclave against a reference manifest and talks to it through the
//! sealed channel (DESIGN.md "Attestation document", "Sealed requests", "Receipts and log",
//! "Attestation result").
//!
//! | module | what |
//! |---|---|
//! | [`transport`] | HTTP/1.1 to `unix:PATH` or `http://HOST:PORT` (e.g. through the bridge) |
//! | [`result`] | the EAR-style attestation result |
//! | [`tpm`] | the `tpm` submod: document signature and nonce, quote, AK trust, event-log replay, PCRs |
//! | [`enclave`] | the `enclave` submod: the five component digests |
//! | [`sealed`] | a sealed request, its stream opened chunk by chunk, and its receipt verified |
//!
//! [`attest`] picks a fresh random 32-byte nonce, fetches the attestation document and appraises it
//! with [`appraise`], failing closed: anything that cannot be checked is not affirming.

pub mod enclave;
pub mod result;
pub mod sealed;
pub mod tpm;
pub mod transport;

pub use result::{AttestationResult, Status, Submod};
pub use transport::Endpoint;

use rand_core::{OsRng, RngCore};
use secllama_measurements::manifest::Manifest;
use secllama_protocol::Nonce;
use secllama_protocol::attestation::{VerifiedDocument, check_nonce, open_document};

/// Size of the nonce [`attest`] chooses.
pub const NONCE_LEN: usize = 32;

/// An appraised attestation document.
#[derive(Debug, Clone)]
pub struct Attestation {
    /// The attestation result.
    pub result: AttestationResult,
    /// The document as received (for `--save` and offline receipt checks).
    pub document: Vec<u8>,
    /// The document, when its signature and nonce verified (even if the result is not affirming).
    pub verified: Option<VerifiedDocument>,
}

impl Attestation {
    /// The verified document, only when every required submod is affirming.
    pub fn affirmed(&self) -> Option<&VerifiedDocument> {
        if self.result.affirming() {
            self.verified.as_ref()
        } else {
            None
        }
    }
}

/// Attests the enclave at `url` (`unix:PATH` or `http://HOST:PORT`) against `manifest`, with a
/// fresh random nonce. Transport failures are errors; evidence that does not verify is a result
/// that is not affirming.
pub async fn attest(url: &str, manifest: &Manifest) -> anyhow::Result<Attestation> {
    let endpoint = Endpoint::parse(url)?;
    let mut nonce = [0u8; NONCE_LEN];
    OsRng
        .try_fill_bytes(&mut nonce)
        .map_err(|e| anyhow::anyhow!("random nonce: {e}"))?;
    let nonce = Nonce::new(nonce.to_vec())?;
    let document = endpoint.attestation(&nonce).await?;
    Ok(appraise(document, &nonce, manifest))
}

/// Appraises an attestation document for the verifier's `nonce` against `manifest` (offline).
pub fn appraise(document: Vec<u8>, nonce: &Nonce, manifest: &Manifest) -> Attestation {
    let opened = open_document(&document).and_then(|v| check_nonce(&v, nonce).map(|()| v));
    let mut result = AttestationResult::new(secllama_protocol::sha256(&[&document]));
    let verified = match opened {
        Ok(v) => {
            result.insert("tpm", tpm::appraise(&v, manifest));
            result.insert("enclave", enclave::appraise(&v, manifest));
            if manifest.required.snp || v.payload.snp.is_some() {
                result.insert("snp", Submod::unsupported(manifest.required.snp));
            }
            Some(v)
        }
        Err(e) => {
            let why = format!("attestation document: {e}");
            result.insert(
                "tpm",
                Submod::failed(manifest.required.tpm, vec![why.clone()]),
            );
            result.insert("enclave", Submod::failed(true, vec![why]));
            None
        }
    };
    result.set_appraisal_policy(manifest);
    Attestation {
        result,
        document,
        verified,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use secllama_measurements::manifest::{EnclaveDigests, Required, TpmTrust};

    #[test]
    fn a_document_that_does_not_open_contraindicates_everything() {
        let m = Manifest {
            version: 1,
            isolation: Default::default(),
            required: Required::default(),
            pcrs: [(
                "sha256".to_string(),
                [("15".to_string(), "00".repeat(32))].into(),
            )]
            .into(),
            enclave: EnclaveDigests {
                agent: "00".repeat(32),
                runner: "00".repeat(32),
                model: "00".repeat(32),
                policy: "00".repeat(32),
                config: "00".repeat(32),
                trees: Default::default(),
            },
            tpm: TpmTrust::default(),
            snp: None,
        };
        let nonce = Nonce::new(vec![7; 32]).unwrap();
        let a = appraise(b"\xd2\x84garbage".to_vec(), &nonce, &m);
        assert!(!a.result.affirming());
        assert!(a.verified.is_none() && a.affirmed().is_none());
        assert_eq!(a.result.status("tpm"), Some(Status::Contraindicated));
        assert_eq!(a.result.status("enclave"), Some(Status::Contraindicated));
        let json = serde_json::to_value(&a.result).unwrap();
        assert_eq!(json["eat_profile"], result::EAR_PROFILE);
        assert_eq!(json["submods"]["tpm"]["ear.status"], "contraindicated");
    }
}
