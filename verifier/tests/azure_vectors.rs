//! The Azure confidential-VM vTPM cases of `../shared/vectors/tpm-quote/azure-snp-vtpm-*`
//! (confidential-containers/trustee's test data) appraised end to end by
//! [`secllama_verifier::azure::Evidence`]: the SNP report in the HCL report (VCEK → built-in Milan
//! ARK), SHA-256(var_data) in its REPORT_DATA, the AK from var_data's `HCLAkPub`, and the quote
//! under that AK with nonce "challenge" over the 24 SHA-256 PCRs — each with its expected verdict,
//! and trustee's negative cases (signature bit, the AK's JWK, var_data, the SNP report, the nonce).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test crate: a failed unwrap is a failed test

use secllama_measurements::manifest::Manifest;
use secllama_verifier::azure::{AzureEvidence, Evidence};
use secllama_verifier::{Appraiser, Collateral, Context, Status, Submod, x509};
use serde_json::Value;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

fn dir(name: &str) -> PathBuf {
    std::env::var_os("SECLLAMA_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared"))
        .join("vectors/tpm-quote")
        .join(name)
}

fn read(path: PathBuf) -> Vec<u8> {
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn expected(name: &str) -> Value {
    serde_json::from_slice(&read(dir(name).join("expected.json"))).unwrap()
}

/// 2026-01-01.
fn when() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_767_225_600)
}

/// (evidence, VCEK and chain) of each case.
fn case(name: &str) -> (AzureEvidence, Vec<Vec<u8>>) {
    if name == "azure-snp-vtpm-hcl-quote-milan" {
        let quote = String::from_utf8(read(dir(name).join("tpm-quote-v1.json"))).unwrap();
        let (e, _) =
            AzureEvidence::from_json(&quote, Some(read(dir(name).join("hcl-report.bin")))).unwrap();
        (
            e,
            x509::load_certificates(&read(dir(name).join("vcek.pem"))).unwrap(),
        )
    } else {
        let json = String::from_utf8(read(dir(name).join("evidence-v1.json"))).unwrap();
        let (e, vcek) = AzureEvidence::from_json(&json, None).unwrap();
        let vcek = vcek.unwrap();
        assert_eq!(vcek, read(dir(name).join("vcek.der")));
        assert_eq!(e.hcl_report, read(dir(name).join("hcl-report.bin")));
        (e, vec![vcek])
    }
}

fn appraise(e: &AzureEvidence, certs: &[Vec<u8>], nonce: &[u8], m: Option<&Manifest>) -> Submod {
    let c = Collateral {
        certificates: certs.to_vec(),
        ..Default::default()
    };
    Evidence.appraise(
        e,
        &Context {
            report_data: Some(nonce),
            manifest: m,
            collateral: &c,
            at: when(),
        },
    )
}

const CASES: [&str; 2] = [
    "azure-snp-vtpm-hcl-quote-milan",
    "azure-snp-vtpm-evidence-v1-milan",
];

#[test]
fn both_azure_cases_verify_along_the_whole_chain() {
    for name in CASES {
        let x = expected(name);
        let (e, certs) = case(name);
        let s = appraise(&e, &certs, b"challenge", None);
        // Authentic along the whole chain; a warning only because no manifest was given.
        assert_eq!(s.status, Status::Warning, "{name}: {:#?}", s.reasons);
        assert!(
            s.reasons
                .iter()
                .all(|r| r.contains("manifest") || r.contains("[snp]")),
            "{name}: {:#?}",
            s.reasons
        );
        for needle in [
            "snp: report signature",
            "snp: chain",
            "ARK-Milan",
            "REPORT_DATA",
            "HCLAkPub",
            "quote:",
        ] {
            assert!(
                s.passed.iter().any(|p| p.contains(needle)),
                "{name}: {needle}: {:#?}",
                s.passed
            );
        }
        assert_eq!(
            hex::encode(&e.pcrs[&0]),
            x["expected"]["pcr0"].as_str().unwrap(),
            "{name}"
        );
        let fields = &x["snp_report_fields"];
        assert_eq!(
            s.claims["snp.measurement"],
            fields["measurement"].as_str().unwrap(),
            "{name}"
        );
        assert_eq!(
            s.claims["snp.policy"],
            fields["policy"].as_str().unwrap(),
            "{name}"
        );
        // Against a manifest pinning PCR 0 and the launch digest: affirming; another PCR 0: not.
        let mut m =
            Manifest::from_toml("version = 1\n[required]\ntpm = false\nsnp = false\n[nitro]\n")
                .unwrap();
        m.nitro = None;
        m.pcrs.insert(
            "sha256".into(),
            [("0".to_string(), hex::encode(&e.pcrs[&0]))].into(),
        );
        m.snp = Some(secllama_measurements::manifest::SnpReference {
            launch_digest: fields["measurement"].as_str().unwrap().into(),
            min_tcb: Default::default(),
            guest_policy: fields["policy"].as_str().unwrap().into(),
            vmpl: 0,
            product: Some("Milan".into()),
            host_data: None,
            id_key_digest: None,
            author_key_digest: None,
        });
        let s = appraise(&e, &certs, b"challenge", Some(&m));
        assert_eq!(s.status, Status::Affirming, "{name}: {:#?}", s.reasons);
        m.pcrs
            .insert("sha256".into(), [("0".to_string(), "00".repeat(32))].into());
        let s = appraise(&e, &certs, b"challenge", Some(&m));
        assert!(
            s.reasons.iter().any(|r| r.contains("PCR sha256:0")),
            "{name}: {:#?}",
            s.reasons
        );
    }
}

#[test]
fn trustees_negative_cases_are_refused_at_the_right_link() {
    let name = "azure-snp-vtpm-hcl-quote-milan";
    let (good, certs) = case(name);
    let refused = |e: &AzureEvidence, nonce: &[u8], needle: &str| {
        let s = appraise(e, &certs, nonce, None);
        assert_eq!(s.status, Status::Contraindicated, "{needle}");
        assert!(
            s.reasons.iter().any(|r| r.contains(needle)),
            "{needle}: {:#?}",
            s.reasons
        );
    };
    // A bit of the quote signature.
    let mut e = good.clone();
    e.signature[0] ^= 0x01;
    refused(&e, b"challenge", "quote:");
    // The AK's JWK (byte 0x540 of the HCL report) zeroed: var_data no longer hashes to
    // REPORT_DATA, and the AK is unreadable.
    let mut e = good.clone();
    e.hcl_report[0x540] = 0;
    refused(&e, b"challenge", "REPORT_DATA");
    // var_data (byte 0x6e0) changed: its digest no longer matches the SNP report's data.
    let mut e = good.clone();
    e.hcl_report[0x6e0] = e.hcl_report[0x6e0].wrapping_add(1);
    refused(&e, b"challenge", "REPORT_DATA");
    // The SNP report itself (byte 0x1a6): its signature.
    let mut e = good.clone();
    e.hcl_report[0x1a6] = 0;
    refused(&e, b"challenge", "snp: report signature");
    // Another nonce.
    refused(&good, &[1, 2, 3, 4], "quote:");
    // A PCR value changed: the quote's PCR digest no longer matches.
    let mut e = good.clone();
    e.pcrs.get_mut(&7).unwrap()[0] ^= 1;
    refused(&e, b"challenge", "quote:");
    // No VCEK.
    let s = appraise(&good, &[], b"challenge", None);
    assert!(
        s.reasons.iter().any(|r| r.contains("no VCEK certificate")),
        "{:#?}",
        s.reasons
    );
    // Not an HCL report.
    let mut e = good.clone();
    e.hcl_report[0] = b'X';
    refused(&e, b"challenge", "HCLA");
}
