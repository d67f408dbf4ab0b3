//! secllama's attestation document (DESIGN.md "Attestation document"): a COSE_Sign1 by the
//! enclave's own signing key carrying its keys, the digests of what it runs, and the hardware
//! evidence that binds both to a TEE (`tpm`, `snp`).
//!
//! [`Document`] is the [`Appraiser`] of the `enclave` submod (signature, nonce, the five component
//! digests, isolation mode); [`appraise_document`] appraises the whole document: it opens it once,
//! then dispatches each evidence part to its kind ([`crate::tpm::Quote`], [`crate::snp::Report`])
//! with report data = the DESIGN binding of the verifier's nonce and the document's keys, and
//! gathers the submods into one attestation result. Failing closed: a document that does not open
//! contraindicates every submod, and evidence the manifest requires but the document lacks is
//! contraindicated.

pub mod digests;
pub mod log_state;

use crate::appraise::{Appraiser, Collateral, Context};
use crate::ear::{AttestationResult, Submod};
use secllama_measurements::manifest::Manifest;
use secllama_protocol::Nonce;
use secllama_protocol::attestation::{VerifiedDocument, check_nonce, open_document};
use std::time::SystemTime;

/// The appraiser of the `enclave` submod: evidence = the document bytes, report data = the
/// verifier's nonce.
#[derive(Debug, Clone, Copy, Default)]
pub struct Document;

impl Appraiser for Document {
    const KIND: &'static str = "enclave";
    type Evidence = [u8];

    fn appraise(&self, document: &[u8], ctx: &Context<'_>) -> Submod {
        match open(document, ctx.report_data) {
            Ok(v) => enclave_submod(&v, ctx.manifest),
            Err(e) => Submod::failed(true, vec![e]),
        }
    }
}

/// Opens the document (COSE signature under its own key, strict payload) and checks its nonce.
fn open(document: &[u8], nonce: Option<&[u8]>) -> Result<VerifiedDocument, String> {
    let nonce = nonce.ok_or("attestation document: no nonce to compare")?;
    let nonce = Nonce::new(nonce.to_vec()).map_err(|e| format!("nonce: {e}"))?;
    open_document(document)
        .and_then(|v| check_nonce(&v, &nonce).map(|()| v))
        .map_err(|e| format!("attestation document: {e}"))
}

fn enclave_submod(v: &VerifiedDocument, manifest: Option<&Manifest>) -> Submod {
    let Some(manifest) = manifest else {
        return Submod::failed(
            true,
            vec!["no reference manifest to compare digests".into()],
        );
    };
    let mut s = digests::appraise(v, manifest);
    match log_state::appraise(&v.payload.log) {
        Ok(head) => {
            s.passed.push(format!(
                "log head: {} entries (document: {}), counter {}, signed by log key {}",
                head.size,
                v.payload.log.size,
                head.counter,
                head.log_id.to_hex()
            ));
            for (k, val) in [
                ("log.id", head.log_id.to_hex()),
                ("log.head_size", head.size.to_string()),
                ("log.head_time_ms", head.time_ms.to_string()),
                ("log.head_counter", head.counter.to_string()),
            ] {
                s.claims.insert(k.into(), val);
            }
        }
        Err(why) => {
            s.reasons.push(why);
            s.status = crate::ear::Status::Contraindicated;
        }
    }
    s.passed.splice(
        0..0,
        [
            "document signature under its own signing key".to_string(),
            "eat_nonce equals the verifier's nonce".to_string(),
        ],
    );
    s
}

/// An appraised attestation document.
#[derive(Debug, Clone)]
pub struct DocumentAppraisal {
    /// The attestation result.
    pub result: AttestationResult,
    /// The document, when its signature and nonce verified (even if the result is not affirming).
    pub verified: Option<VerifiedDocument>,
}

/// Appraises an attestation `document` for the verifier's `nonce` against `manifest`, with
/// `collateral` (AK certificates, VCEK/ASK, CRLs) at time `at`. Offline and pure.
pub fn appraise_document(
    document: &[u8],
    nonce: &Nonce,
    manifest: &Manifest,
    collateral: &Collateral,
    at: SystemTime,
) -> DocumentAppraisal {
    let mut result = AttestationResult::new(secllama_protocol::sha256(&[document]));
    let verified = match open(document, Some(nonce.as_bytes())) {
        Ok(v) => {
            appraise_parts(&v, manifest, collateral, at, &mut result);
            Some(v)
        }
        Err(why) => {
            result.insert(
                "tpm",
                Submod::failed(manifest.required.tpm, vec![why.clone()]),
            );
            if manifest.required.snp {
                result.insert("snp", Submod::failed(true, vec![why.clone()]));
            }
            result.insert("enclave", Submod::failed(true, vec![why]));
            None
        }
    };
    result.set_appraisal_policy(manifest);
    DocumentAppraisal { result, verified }
}

fn appraise_parts(
    v: &VerifiedDocument,
    manifest: &Manifest,
    collateral: &Collateral,
    at: SystemTime,
    result: &mut AttestationResult,
) {
    let binding = match v.payload.binding() {
        Ok(b) => b,
        Err(e) => {
            let why = vec![format!("key binding: {e}")];
            result.insert("tpm", Submod::failed(manifest.required.tpm, why.clone()));
            result.insert("enclave", Submod::failed(true, why));
            return;
        }
    };
    let ctx = Context {
        report_data: Some(&binding.0),
        manifest: Some(manifest),
        collateral,
        at,
    };
    result.insert(
        crate::tpm::Quote::KIND,
        match &v.payload.tpm {
            Some(t) => crate::tpm::Quote.appraise(t, &ctx),
            None => crate::tpm::submod::missing(manifest.required.tpm),
        },
    );
    // SEV-SNP: report_data = binding || 32 zero bytes; the VCEK the document carries joins the
    // collateral (it must still chain to AMD's roots).
    let mut report_data = binding.0.to_vec();
    report_data.extend_from_slice(&[0; 32]);
    match &v.payload.snp {
        Some(snp) => {
            let mut c = collateral.clone();
            c.certificates.extend(snp.vcek.iter().cloned());
            let ctx = Context {
                report_data: Some(&report_data),
                collateral: &c,
                ..ctx
            };
            let mut s = crate::snp::Report.appraise(&snp.report, &ctx);
            s.required = manifest.required.snp;
            result.insert(crate::snp::Report::KIND, s);
        }
        None if manifest.required.snp => result.insert(
            crate::snp::Report::KIND,
            Submod::failed(
                true,
                vec!["the manifest requires SEV-SNP evidence; the document carries none".into()],
            ),
        ),
        None => {}
    }
    result.insert(Document::KIND, enclave_submod(v, Some(manifest)));
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::ear::Status;
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
            nitro: None,
        };
        let nonce = Nonce::new(vec![7; 32]).unwrap();
        let a = appraise_document(
            b"\xd2\x84garbage",
            &nonce,
            &m,
            &Collateral::default(),
            SystemTime::now(),
        );
        assert!(!a.result.affirming());
        assert!(a.verified.is_none());
        assert_eq!(a.result.status("tpm"), Some(Status::Contraindicated));
        assert_eq!(a.result.status("enclave"), Some(Status::Contraindicated));
        let json = serde_json::to_value(&a.result).unwrap();
        assert_eq!(json["eat_profile"], crate::ear::EAR_PROFILE);
        assert_eq!(json["submods"]["tpm"]["ear.status"], "contraindicated");
    }
}
