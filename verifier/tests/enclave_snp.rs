//! The enclave document's `snp` part (DESIGN.md "Attestation document") appraised by
//! [`secllama_verifier::enclave::appraise_document`] through [`secllama_verifier::snp::Report`]:
//! a document carrying a real SEV-SNP report and its VCEK gets an `snp` submod whose signature and
//! chain pass and whose REPORT_DATA is compared with the DESIGN binding ‖ 32 zero bytes (a report
//! from elsewhere fails exactly there); a manifest requiring SNP refuses a document without it.
//! No SNP hardware here: the enclave side is built by construction, the appraisal is real.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test crate: a failed unwrap is a failed test

use rand_core::OsRng;
use secllama_measurements::manifest::{Manifest, SnpReference};
use secllama_protocol::Nonce;
use secllama_protocol::attestation::{
    AttestationPayload, EnclaveDigests, EnclaveInfo, EnclaveKeys, IsolationMode, LogState,
    SnpEvidence, sign_document,
};
use secllama_protocol::cose::SigningKey;
use secllama_verifier::enclave::appraise_document;
use secllama_verifier::{Collateral, Status};
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

fn vector(file: &str) -> Vec<u8> {
    let p = std::env::var_os("SECLLAMA_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared"))
        .join("vectors/snp-report/virtee-milan-v2")
        .join(file);
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

#[test]
fn the_snp_part_is_appraised_against_the_binding_and_required_when_the_manifest_says() {
    let key = SigningKey::generate(&mut OsRng);
    let empty = secllama_protocol::Sha256Digest(secllama_protocol::rfc9162::empty_root());
    let d = secllama_protocol::sha256(&[b"component"]);
    let nonce = Nonce::new(vec![7; 32]).unwrap();
    let report = vector("report.bin");
    let mut payload = AttestationPayload {
        nonce: nonce.clone(),
        iat: 1,
        keys: EnclaveKeys {
            signing: key.public(),
            encryption_spki: vec![0x30, 0x03, 0x02, 0x01, 0x01],
        },
        enclave: EnclaveInfo {
            mode: IsolationMode::Vm,
            agent_version: "0.1.0".into(),
        },
        measurements: EnclaveDigests {
            agent: d,
            runner: d,
            model: d,
            policy: d,
            config: d,
            trees: Default::default(),
        },
        tpm: None,
        snp: Some(SnpEvidence {
            report: report.clone(),
            vcek: Some(vector("vcek_milan.der")),
        }),
        log: LogState {
            size: 0,
            root: empty,
            key: key.public(),
            head: secllama_protocol::tree_head::sign_tree_head(
                &secllama_protocol::tree_head::TreeHead {
                    log_id: key.public().kid().unwrap(),
                    size: 0,
                    root: empty,
                    time_ms: 1,
                    counter: 1,
                },
                &key,
            )
            .unwrap(),
        },
    };
    let h = d.to_hex();
    let mut m = Manifest::from_toml(&format!(
        "version = 1\nisolation = \"vm\"\n[required]\ntpm = false\nsnp = true\n\
         [enclave]\nagent = \"{h}\"\nrunner = \"{h}\"\nmodel = \"{h}\"\npolicy = \"{h}\"\nconfig = \"{h}\"\n\
         [snp]\nlaunch_digest = \"{}\"\nguest_policy = \"0x30000\"\n",
        hex::encode(&report[0x90..0xC0])
    ))
    .unwrap();
    let at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_767_225_600);
    let doc = sign_document(&payload, &key).unwrap();
    let a = appraise_document(&doc, &nonce, &m, &Collateral::default(), at);
    let snp = &a.result.submods["snp"];
    assert!(snp.required);
    assert_eq!(snp.status, Status::Contraindicated, "{snp:#?}");
    // Authentic (signature, chain to the built-in Milan ARK, launch digest) but bound to another
    // enclave's keys: REPORT_DATA is the only failure.
    assert!(
        snp.passed.iter().any(|p| p.contains("ARK-Milan")),
        "{snp:#?}"
    );
    assert!(
        snp.passed
            .iter()
            .any(|p| p.contains("MEASUREMENT = launch digest"))
    );
    assert_eq!(snp.reasons.len(), 1, "{:#?}", snp.reasons);
    let binding = payload.binding().unwrap();
    assert!(
        snp.reasons[0].starts_with("REPORT_DATA: expected ")
            && snp.reasons[0].contains(&format!("{}{}", binding.to_hex(), "00".repeat(32))),
        "{:#?}",
        snp.reasons
    );
    assert_eq!(a.result.status("enclave"), Some(Status::Affirming));
    assert!(!a.result.affirming());
    // Another launch digest fails too.
    m.snp = Some(SnpReference {
        launch_digest: "ab".repeat(48),
        ..m.snp.clone().unwrap()
    });
    let a = appraise_document(&doc, &nonce, &m, &Collateral::default(), at);
    assert!(
        a.result.submods["snp"]
            .reasons
            .iter()
            .any(|r| r.starts_with("MEASUREMENT"))
    );
    // A document without SNP evidence when the manifest requires it.
    payload.snp = None;
    let doc = sign_document(&payload, &key).unwrap();
    let a = appraise_document(&doc, &nonce, &m, &Collateral::default(), at);
    assert_eq!(a.result.status("snp"), Some(Status::Contraindicated));
    assert!(a.result.submods["snp"].reasons[0].contains("requires SEV-SNP evidence"));
}
