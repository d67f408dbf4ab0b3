//! Attesting an enclave (DESIGN.md "Attestation document", "Attestation result"): [`attest`]
//! picks a fresh random 32-byte nonce, fetches the attestation document through
//! [`crate::transport`] and hands it to the appraisal library
//! ([`secllama_verifier::enclave::appraise_document`]), failing closed: anything that cannot be
//! checked is not affirming.

pub use secllama_verifier::Collateral;
pub use secllama_verifier::ear::{AttestationResult, Status, Submod};

use crate::transport::Endpoint;

use rand_core::{OsRng, RngCore};
use secllama_measurements::manifest::Manifest;
use secllama_protocol::Nonce;
use secllama_protocol::attestation::VerifiedDocument;

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
    /// The verifier's nonce.
    pub nonce: Vec<u8>,
    /// The collateral the appraisal used besides the document.
    pub collateral: Collateral,
    /// When it was appraised.
    pub at: std::time::SystemTime,
}

impl Attestation {
    /// An evidence bundle of this appraisal against `manifest`
    /// ([`secllama_verifier::bundle`]).
    pub fn bundle(&self, manifest: &Manifest) -> anyhow::Result<secllama_verifier::bundle::Bundle> {
        Ok(secllama_verifier::bundle::Bundle::record(
            "enclave",
            &self.document,
            Some(&self.nonce),
            &self.collateral,
            Some(manifest),
            self.at,
            &self.result,
        )?)
    }
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
    attest_with(url, manifest, &Collateral::default()).await
}

/// [`attest`] with `collateral` (AK certificates and intermediates, CRLs).
pub async fn attest_with(
    url: &str,
    manifest: &Manifest,
    collateral: &Collateral,
) -> anyhow::Result<Attestation> {
    let endpoint = Endpoint::parse(url)?;
    let mut nonce = [0u8; NONCE_LEN];
    OsRng
        .try_fill_bytes(&mut nonce)
        .map_err(|e| anyhow::anyhow!("random nonce: {e}"))?;
    let nonce = Nonce::new(nonce.to_vec())?;
    let document = endpoint.attestation(&nonce).await?;
    Ok(appraise_with(
        document,
        &nonce,
        manifest,
        collateral,
        std::time::SystemTime::now(),
    ))
}

/// Appraises an attestation document for the verifier's `nonce` against `manifest` (offline, now,
/// no collateral besides what the document carries).
pub fn appraise(document: Vec<u8>, nonce: &Nonce, manifest: &Manifest) -> Attestation {
    appraise_with(
        document,
        nonce,
        manifest,
        &Collateral::default(),
        std::time::SystemTime::now(),
    )
}

/// [`appraise`] with `collateral` at time `at`.
pub fn appraise_with(
    document: Vec<u8>,
    nonce: &Nonce,
    manifest: &Manifest,
    collateral: &Collateral,
    at: std::time::SystemTime,
) -> Attestation {
    let a =
        secllama_verifier::enclave::appraise_document(&document, nonce, manifest, collateral, at);
    Attestation {
        result: a.result,
        document,
        verified: a.verified,
        nonce: nonce.as_bytes().to_vec(),
        collateral: collateral.clone(),
        at,
    }
}
