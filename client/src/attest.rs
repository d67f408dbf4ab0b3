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
    let mut collateral = collateral.clone();
    if !manifest.tpm.ek_cas.is_empty() {
        collateral.credential_activation = activate(&endpoint, &document).await?;
    }
    Ok(appraise_with(
        document,
        &nonce,
        manifest,
        &collateral,
        std::time::SystemTime::now(),
    ))
}

/// Credential activation against the live enclave (for `tpm.ek_cas`): makes a credential with a
/// fresh random 32-byte secret for the EK of the document's EK certificate (TCG default RSA-2048
/// template) bound to the Name of the document's AK, and checks the enclave's TPM releases that
/// secret. `None` when the document has no TPM evidence to activate for; the outcome otherwise
/// (the appraisal then checks the EK certificate's chain). Transport failures are errors.
async fn activate(
    endpoint: &Endpoint,
    document: &[u8],
) -> anyhow::Result<Option<secllama_verifier::CredentialActivation>> {
    use secllama_verifier::tpm::credential::{ek_public_from_certificate, make_credential};
    let Ok(doc) = secllama_protocol::attestation::open_document(document) else {
        return Ok(None);
    };
    let Some(tpm) = doc.payload.tpm else {
        return Ok(None);
    };
    let mut activation = secllama_verifier::CredentialActivation {
        ak_public: tpm.ak_public.clone(),
        ek_certificate: tpm.ek_cert.clone().unwrap_or_default(),
        outcome: Ok(()),
    };
    let prepared = (|| {
        let ek_cert = tpm
            .ek_cert
            .as_ref()
            .ok_or("the attestation document carries no EK certificate")?;
        let ek = ek_public_from_certificate(ek_cert).map_err(|e| e.to_string())?;
        let ak =
            secllama_verifier::tpm::AkPublic::detect(&tpm.ak_public).map_err(|e| e.to_string())?;
        let name = ak
            .tpm_public()
            .ok_or("the AK is not a TPMT_PUBLIC, so it has no Name")?
            .name();
        let mut secret = [0u8; 32];
        OsRng
            .try_fill_bytes(&mut secret)
            .map_err(|e| format!("random secret: {e}"))?;
        let (id, enc) =
            make_credential(&ek, &name, &secret, &mut OsRng).map_err(|e| e.to_string())?;
        Ok::<_, String>((secret, id, enc))
    })();
    match prepared {
        Err(e) => activation.outcome = Err(e),
        Ok((secret, id, enc)) => {
            let released = endpoint.activate_credential(&id, &enc).await;
            activation.outcome = match released {
                Ok(r) if bool::from(subtle_eq(&r, &secret)) => Ok(()),
                Ok(_) => Err("the enclave's TPM released another secret than the one made".into()),
                Err(e) => Err(format!("{e:#}")),
            };
        }
    }
    Ok(Some(activation))
}

/// Constant-time equality of two byte strings (lengths are public).
fn subtle_eq(a: &[u8], b: &[u8]) -> subtle::Choice {
    use subtle::ConstantTimeEq;
    if a.len() != b.len() {
        return subtle::Choice::from(0);
    }
    a.ct_eq(b)
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
