//! Every case in `../shared/vectors/nitro/` (real AWS Nitro Enclaves documents from
//! mithril-security/blindai and blocky/nitrite, and nitrite's self-signed negative) appraised by
//! [`secllama_verifier::nitro::Document`] with the built-in AWS root, at the times their
//! `expected.json` gives: valid inside the leaf's ~3 h window, refused just outside it.
//!
//! Negatives: a byte flip in each document field, the protected header and the signature; a flip
//! in each certificate of the chain; the payload re-signed with another P-384 key; another root;
//! the wrong nonce; a debug enclave against a manifest that does not allow debug; a PCR mismatch.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test crate: a failed unwrap is a failed test

use secllama_measurements::manifest::{Manifest, NitroReference};
use secllama_verifier::nitro::document::NitroDocument;
use secllama_verifier::nitro::{Document, ROOT_G1_SHA256, root_g1};
use secllama_verifier::{Appraiser, Collateral, Context, Status, Submod, x509};
use serde_json::Value;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

fn shared() -> PathBuf {
    std::env::var_os("SECLLAMA_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared"))
}

fn dir(name: &str) -> PathBuf {
    shared().join("vectors/nitro").join(name)
}

fn read(path: PathBuf) -> Vec<u8> {
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn expected(name: &str) -> Value {
    serde_json::from_slice(&read(dir(name).join("expected.json"))).unwrap()
}

/// An RFC 3339 UTC time (`2023-03-22T14:28:27.405Z` or `…+00:00`) as a SystemTime.
fn time(s: &str) -> SystemTime {
    let s = s.trim_end_matches('Z').trim_end_matches("+00:00");
    let (main, frac) = s.split_once('.').unwrap_or((s, "0"));
    let n = |r: std::ops::Range<usize>| main[r].parse::<u8>().unwrap();
    let dt = der::DateTime::new(
        main[0..4].parse().unwrap(),
        n(5..7),
        n(8..10),
        n(11..13),
        n(14..16),
        n(17..19),
    )
    .unwrap();
    let ms: u64 = format!("{frac:0<3}")[..3].parse().unwrap();
    SystemTime::UNIX_EPOCH + dt.unix_duration() + Duration::from_millis(ms)
}

const VALID: [(&str, &str); 2] = [
    (
        "blindai-debug-2023-03-22",
        "nitro_attestation_document_valid.cbor",
    ),
    ("nitrite-debug-2024-09-07", "attestation_doc.cbor"),
];

fn appraise(
    doc: &[u8],
    at: SystemTime,
    manifest: Option<&Manifest>,
    nonce: Option<&[u8]>,
    c: &Collateral,
) -> Submod {
    Document.appraise(
        doc,
        &Context {
            report_data: nonce,
            manifest,
            collateral: c,
            at,
        },
    )
}

fn failed_with(s: &Submod, needle: &str) -> bool {
    s.status == Status::Contraindicated && s.reasons.iter().any(|r| r.contains(needle))
}

fn nitro_manifest(pcrs: &[(u8, String)], allow_debug: bool) -> Manifest {
    let mut m = Manifest::from_toml("version = 1\n[required]\ntpm = false\nsnp = false\n[nitro]\n")
        .unwrap();
    m.nitro = Some(NitroReference {
        pcrs: pcrs
            .iter()
            .map(|(i, v)| (i.to_string(), v.clone()))
            .collect(),
        allow_debug,
    });
    m.validate().unwrap();
    m
}

#[test]
fn the_built_in_root_is_aws_root_g1_by_digest() {
    let der = root_g1().unwrap();
    assert_eq!(
        hex::encode(secllama_protocol::sha256(&[&der]).0),
        ROOT_G1_SHA256
    );
    // The same certificate AWS ships in its zip (root.pem), as the shared PEM.
    let shared = x509::load_certificates(&read(
        dir("aws-root").join("aws_nitro_enclaves_root_g1.pem"),
    ))
    .unwrap();
    assert_eq!(shared, vec![der]);
}

#[test]
fn both_real_documents_are_valid_inside_their_window_and_refused_outside() {
    let none = Collateral::default();
    for (name, file) in VALID {
        let e = expected(name);
        let doc = read(dir(name).join(file));
        let valid_at = time(e["expected"]["valid_at"].as_str().unwrap());
        let s = appraise(&doc, valid_at, None, None, &none);
        assert_eq!(s.status, Status::Warning, "{name}: {:#?}", s.reasons);
        assert!(
            s.passed.iter().any(|p| p.contains("COSE_Sign1 signature")),
            "{name}"
        );
        assert!(
            s.passed.iter().any(|p| p.contains("aws.nitro-enclaves")),
            "{name}"
        );
        // The window's edges (the intersection of the chain's validity) and the upstream failure.
        let window = e["document"]["chain_validity_intersection"]
            .as_array()
            .unwrap();
        let (from, to) = (
            time(window[0].as_str().unwrap()),
            time(window[1].as_str().unwrap()),
        );
        assert_eq!(
            appraise(&doc, from, None, None, &none).status,
            Status::Warning,
            "{name} at start"
        );
        assert_eq!(
            appraise(&doc, to, None, None, &none).status,
            Status::Warning,
            "{name} at end"
        );
        for at in [
            from - Duration::from_secs(1),
            to + Duration::from_secs(1),
            time(
                e["expected"]["must_fail_at"]
                    .as_str()
                    .unwrap()
                    .split(' ')
                    .next()
                    .unwrap(),
            ),
            SystemTime::now(),
        ] {
            let s = appraise(&doc, at, None, None, &none);
            assert!(failed_with(&s, "validity"), "{name}: {:#?}", s.reasons);
        }
        // The fields.
        let d = NitroDocument::parse(&doc).unwrap();
        assert_eq!(d.module_id, e["document"]["module_id"].as_str().unwrap());
        assert_eq!(
            d.timestamp_ms,
            e["document"]["timestamp_ms"].as_u64().unwrap()
        );
        assert_eq!(
            d.cabundle.len() as u64,
            e["document"]["cabundle_len"].as_u64().unwrap()
        );
        for (i, v) in e["document"]["pcrs"].as_object().unwrap() {
            assert_eq!(
                hex::encode(&d.pcrs[&i.parse::<u8>().unwrap()]),
                v.as_str().unwrap(),
                "{name} PCR{i}"
            );
        }
        assert!(d.debug_mode(), "{name} is a debug enclave");
        for field in ["user_data", "public_key", "nonce"] {
            let claim = s.claims.get(field);
            match &e["document"][field] {
                Value::Null => assert!(claim.is_none(), "{name} {field}"),
                f => {
                    let c = hex::decode(claim.unwrap()).unwrap();
                    assert_eq!(c.len() as u64, f["len"].as_u64().unwrap(), "{name} {field}");
                    assert!(hex::encode(&c).starts_with(f["hex_prefix"].as_str().unwrap()));
                    if let Some(t) = f["utf8"].as_str() {
                        assert_eq!(String::from_utf8(c).unwrap(), t);
                    }
                }
            }
        }
    }
}

#[test]
fn manifest_pcrs_debug_and_nonce_are_enforced() {
    let name = "blindai-debug-2023-03-22";
    let e = expected(name);
    let doc = read(dir(name).join("nitro_attestation_document_valid.cbor"));
    let at = time(e["expected"]["valid_at"].as_str().unwrap());
    let pcr4 = e["document"]["pcrs"]["4"].as_str().unwrap().to_string();
    let none = Collateral::default();
    let allowed = nitro_manifest(&[(0, "00".repeat(48)), (4, pcr4.clone())], true);
    let s = appraise(&doc, at, Some(&allowed), None, &none);
    assert_eq!(s.status, Status::Warning, "{:#?}", s.reasons); // only the nonce is missing
    assert!(s.passed.iter().any(|p| p == "PCR4 = manifest"));
    let strict = nitro_manifest(&[(4, pcr4)], false);
    assert!(failed_with(
        &appraise(&doc, at, Some(&strict), None, &none),
        "debug mode"
    ));
    let other = nitro_manifest(&[(4, "ab".repeat(48))], true);
    assert!(failed_with(
        &appraise(&doc, at, Some(&other), None, &none),
        "PCR4: expected abab"
    ));
    let absent = nitro_manifest(&[(9, "ab".repeat(48))], true);
    assert!(failed_with(
        &appraise(&doc, at, Some(&absent), None, &none),
        "PCR9"
    ));
    // The nitrite document carries a 1024-byte nonce of 0x01.
    let name = "nitrite-debug-2024-09-07";
    let doc = read(dir(name).join("attestation_doc.cbor"));
    let at = time(expected(name)["expected"]["valid_at"].as_str().unwrap());
    let s = appraise(&doc, at, Some(&allowed), Some(&[1; 1024]), &none);
    assert!(
        s.passed.iter().any(|p| p.contains("nonce = expected")),
        "{:#?}",
        s
    );
    assert!(failed_with(
        &appraise(&doc, at, None, Some(&[2; 1024]), &none),
        "nonce: expected"
    ));
}

#[test]
fn a_flip_in_any_document_field_or_the_signature_is_refused() {
    let name = "blindai-debug-2023-03-22";
    let doc = read(dir(name).join("nitro_attestation_document_valid.cbor"));
    let at = time(expected(name)["expected"]["valid_at"].as_str().unwrap());
    let none = Collateral::default();
    let find = |needle: &[u8]| doc.windows(needle.len()).position(|w| w == needle).unwrap();
    for key in [
        "module_id",
        "digest",
        "timestamp",
        "pcrs",
        "certificate",
        "cabundle",
        "public_key",
        "user_data",
    ] {
        // The byte after the key and the value's header: inside the value.
        let at_byte = find(key.as_bytes()) + key.len() + 3;
        let mut bad = doc.clone();
        bad[at_byte] ^= 0x01;
        let s = appraise(&bad, at, None, None, &none);
        assert_eq!(s.status, Status::Contraindicated, "{key}: {:#?}", s.passed);
    }
    // Protected header (alg), and the first and last byte of the signature.
    for i in [4, doc.len() - 96, doc.len() - 1] {
        let mut bad = doc.clone();
        bad[i] ^= 0x01;
        assert_eq!(
            appraise(&bad, at, None, None, &none).status,
            Status::Contraindicated,
            "byte {i}"
        );
    }
    // Truncated anywhere.
    for len in [0, 10, doc.len() / 2, doc.len() - 1] {
        assert_eq!(
            appraise(&doc[..len], at, None, None, &none).status,
            Status::Contraindicated
        );
    }
}

#[test]
fn re_signing_with_another_key_or_another_root_is_refused() {
    use p384::ecdsa::signature::Signer;
    let name = "blindai-debug-2023-03-22";
    let doc = read(dir(name).join("nitro_attestation_document_valid.cbor"));
    let at = time(expected(name)["expected"]["valid_at"].as_str().unwrap());
    let d = NitroDocument::parse(&doc).unwrap();
    let key = p384::ecdsa::SigningKey::from_slice(&[7; 48]).unwrap();
    let sig: p384::ecdsa::Signature = key.sign(&d.to_be_signed().unwrap());
    let forged = [&doc[..doc.len() - 96], &sig.to_bytes()[..]].concat();
    assert_eq!(forged.len(), doc.len());
    let s = appraise(&forged, at, None, None, &Collateral::default());
    assert!(failed_with(&s, "COSE signature"), "{:#?}", s);
    // Another root (AMD's Milan ARK) instead of AWS's.
    let ark =
        x509::load_certificates(include_bytes!("../src/snp/roots/milan_ask_ark_asvk.pem")).unwrap();
    let c = Collateral {
        roots: vec![ark[1].clone()],
        ..Default::default()
    };
    let s = appraise(&doc, at, None, None, &c);
    assert!(failed_with(&s, "chain"), "{:#?}", s);
    assert!(failed_with(&s, "cabundle[0]"), "{:#?}", s);
}

#[test]
fn a_flip_in_any_certificate_of_the_chain_breaks_the_path() {
    let name = "nitrite-debug-2024-09-07";
    let doc = read(dir(name).join("attestation_doc.cbor"));
    let at = time(expected(name)["expected"]["valid_at"].as_str().unwrap());
    let d = NitroDocument::parse(&doc).unwrap();
    let roots = vec![root_g1().unwrap()];
    let policy = x509::PathPolicy {
        at,
        known_critical: &[],
        crls: &[],
    };
    assert!(x509::verify_path(&d.certificate, "leaf", &d.cabundle, &roots, &policy).valid());
    let mut all = d.cabundle.clone();
    all.push(d.certificate.clone());
    for i in 0..all.len() {
        for at_byte in [all[i].len() / 3, all[i].len() - 5] {
            let mut certs = all.clone();
            certs[i][at_byte] ^= 0x01;
            let leaf = certs.pop().unwrap();
            let mut roots = roots.clone();
            if i == 0 {
                roots = vec![certs[0].clone()];
            }
            let p = x509::verify_path(&leaf, "leaf", &certs, &roots, &policy);
            assert!(!p.valid(), "certificate {i} byte {at_byte}");
        }
    }
}

#[test]
fn the_self_signed_document_is_refused_by_the_chain_check() {
    let name = "nitrite-selfsigned-negative";
    assert_eq!(expected(name)["expected"]["must_be_rejected"], true);
    let doc = read(dir(name).join("attestation_doc.cbor"));
    let at = time("2024-04-17T18:51:46Z");
    let s = appraise(&doc, at, None, None, &Collateral::default());
    assert_eq!(s.status, Status::Contraindicated);
    // Its signature does verify under the embedded certificate: the chain is what refuses it.
    assert!(
        s.passed.iter().any(|p| p.contains("COSE_Sign1 signature")),
        "{:#?}",
        s
    );
    assert!(
        failed_with(&s, "chain: leaf \"CN=self-signed attester\""),
        "{:#?}",
        s.reasons
    );
    for needle in ["unprotected header", "cabundle", "seconds?"] {
        assert!(failed_with(&s, needle), "{needle}: {:#?}", s.reasons);
    }
    let d = NitroDocument::parse(&doc).unwrap();
    assert_eq!(d.certificate, read(dir(name).join("selfsigned_cert.der")));
}
