//! The third-party COSE_Sign1 vectors in `../shared/vectors/cose/` (cose-wg/Examples and
//! veraison/go-cose), run through `secllama-verify cose` and through the library.
//!
//! Every vector whose algorithm we support must reach its expected verdict. Two vectors are judged
//! stricter than their index, on purpose, and the test pins the reason for each:
//! - `sign-pass-01` carries its alg only in the unprotected header: secllama requires alg in the
//!   protected header (the index itself says not to use this vector as a hard requirement);
//! - `ecdsa-sig-04` labels a P-256 key's signature ES512: RFC 9053 §2.1 ties ES512 to P-521, and
//!   secllama rejects an alg other than the key's.
//!
//! EdDSA is not supported; those vectors are listed and must be exactly the skipped ones.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test crate: a failed unwrap is a failed test

mod common;

use base64::Engine;
use serde_json::Value;
use std::path::PathBuf;
use std::process::Command;

fn shared() -> PathBuf {
    std::env::var_os("SECLLAMA_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared"))
}

struct Vector {
    file: String,
    expected_pass: bool,
    alg: String,
    jwk: Value,
    cose_hex: String,
    aad_hex: Option<String>,
}

fn b64(hex_str: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(hex::decode(hex_str).unwrap())
}

fn load() -> Vec<Vector> {
    let dir = shared().join("vectors/cose");
    let index: Value = serde_json::from_slice(
        &std::fs::read(dir.join("expected_index.json")).expect("shared vectors present"),
    )
    .unwrap();
    index["vectors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            let file = v["file"].as_str().unwrap().to_string();
            let doc: Value =
                serde_json::from_slice(&std::fs::read(dir.join(&file)).unwrap()).unwrap();
            let (mut jwk, cose_hex) = if file.starts_with("go-cose/") {
                (
                    doc["key"].clone(),
                    doc["sign1::verify"]["taggedCOSESign1"]["cborHex"]
                        .as_str()
                        .unwrap()
                        .to_string(),
                )
            } else {
                (
                    doc["input"]["sign0"]["key"].clone(),
                    doc["output"]["cbor"].as_str().unwrap().to_string(),
                )
            };
            // Some cose-wg keys give coordinates in hex: express them as a standard JWK.
            for c in ["x", "y"] {
                if let Some(h) = jwk
                    .get(format!("{c}_hex"))
                    .and_then(Value::as_str)
                    .map(str::to_string)
                {
                    jwk[c] = Value::String(b64(&h));
                }
            }
            Vector {
                file,
                expected_pass: v["expected"] == "pass",
                alg: v["alg"].as_str().unwrap().to_string(),
                jwk,
                cose_hex,
                aad_hex: v["external_aad_hex"].as_str().map(str::to_string),
            }
        })
        .collect()
}

const SUPPORTED: [&str; 6] = ["ES256", "ES384", "ES512", "PS256", "PS384", "PS512"];

/// Vectors where secllama is deliberately stricter than the index, with the reason it must give.
fn strict_override(file: &str) -> Option<&'static str> {
    match file {
        "cose-wg/sign1-tests_sign-pass-01.json" => Some("alg in the protected header only"),
        "cose-wg/ecdsa-examples_ecdsa-sig-04.json" => {
            Some("expected the algorithm of the EC P-256 key, found ES512")
        }
        _ => None,
    }
}

#[test]
fn cli_reaches_the_expected_verdict_on_every_supported_vector() {
    let vectors = load();
    assert!(
        vectors.len() >= 20,
        "expected the full shared COSE set, found {}",
        vectors.len()
    );
    let tmp = tempfile::tempdir().unwrap();
    let (mut run, mut skipped) = (0, Vec::new());
    for (i, v) in vectors.iter().enumerate() {
        if !SUPPORTED.contains(&v.alg.as_str()) {
            skipped.push(v.alg.clone());
            continue;
        }
        let key = tmp.path().join(format!("{i}.jwk"));
        let input = tmp.path().join(format!("{i}.hex"));
        std::fs::write(&key, v.jwk.to_string()).unwrap();
        std::fs::write(&input, &v.cose_hex).unwrap();
        let mut cmd = Command::new(common::verify_bin());
        cmd.arg("cose")
            .arg("--key")
            .arg(&key)
            .arg("--in")
            .arg(&input);
        if let Some(aad) = &v.aad_hex {
            cmd.args(["--external-aad", aad]);
        }
        let out = cmd.output().unwrap();
        let report: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "{}: no JSON ({e}); stderr: {}",
                v.file,
                String::from_utf8_lossy(&out.stderr)
            )
        });
        let valid = report["valid"].as_bool().unwrap();
        assert_eq!(
            out.status.code(),
            Some(if valid { 0 } else { 1 }),
            "{}: exit code vs verdict",
            v.file
        );
        let want = v.expected_pass && strict_override(&v.file).is_none();
        assert_eq!(
            valid,
            want,
            "{}: expected {}, report {report:#}",
            v.file,
            if want { "pass" } else { "fail" }
        );
        if let Some(reason) = strict_override(&v.file) {
            let reasons = report["reasons"].to_string();
            assert!(
                reasons.contains(reason),
                "{}: reason {reasons} lacks {reason:?}",
                v.file
            );
        }
        if valid {
            assert!(
                report["payload"].as_str().is_some_and(|p| !p.is_empty()),
                "{}",
                v.file
            );
            assert_eq!(report["alg"].as_str(), Some(v.alg.as_str()), "{}", v.file);
        } else {
            assert!(
                report["payload"].is_null() && !report["reasons"].as_array().unwrap().is_empty(),
                "{}",
                v.file
            );
        }
        run += 1;
    }
    assert_eq!(
        skipped,
        vec!["EdDSA", "EdDSA"],
        "only the EdDSA vectors may be skipped"
    );
    assert_eq!(run, vectors.len() - 2);
}

#[test]
fn library_and_cli_agree_and_the_signature_is_what_is_checked() {
    // For every supported vector that passes, flipping the last signature byte must make it fail.
    for v in load()
        .into_iter()
        .filter(|v| SUPPORTED.contains(&v.alg.as_str()))
    {
        let key = secllama_protocol::cose::VerifyingKey::from_jwk(&v.jwk.to_string()).unwrap();
        let mut bytes = hex::decode(&v.cose_hex).unwrap();
        let aad = v
            .aad_hex
            .as_deref()
            .map(|h| hex::decode(h).unwrap())
            .unwrap_or_default();
        let report = secllama_client::cli::cose::check(&key, &bytes, &aad);
        if !report.valid {
            continue;
        }
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        assert!(
            !secllama_client::cli::cose::check(&key, &bytes, &aad).valid,
            "{}",
            v.file
        );
    }
}

#[test]
fn keys_are_read_from_pem_cose_key_and_jwk_alike() {
    use rand_core::OsRng;
    use secllama_protocol::cose::{SigningKey, VerifyingKey};
    let sk = SigningKey::generate(&mut OsRng);
    let signed = secllama_protocol::cose::sign(&sk, "text/plain", b"by hand", b"").unwrap();
    let public = sk.public();
    let cose_key = public.to_bytes().unwrap();
    let jwk = serde_json::json!({"kty": "EC", "crv": "P-256", "x": b64(&hex::encode(public.x)), "y": b64(&hex::encode(public.y))});
    let mut sec1 = vec![4u8];
    sec1.extend_from_slice(&public.x);
    sec1.extend_from_slice(&public.y);
    // SPKI DER for P-256: fixed 26-byte prefix then the uncompressed point.
    let mut spki = hex::decode("3059301306072a8648ce3d020106082a8648ce3d030107034200").unwrap();
    spki.extend_from_slice(&sec1);
    let pem = format!(
        "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
        base64::engine::general_purpose::STANDARD.encode(&spki)
    );
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("signed.cbor");
    std::fs::write(&input, &signed).unwrap();
    for (name, bytes) in [
        ("k.pem", pem.into_bytes()),
        ("k.cbor", cose_key),
        ("k.jwk", jwk.to_string().into_bytes()),
    ] {
        assert!(matches!(
            VerifyingKey::detect(&bytes).unwrap(),
            VerifyingKey::P256(_)
        ));
        let path = tmp.path().join(name);
        std::fs::write(&path, &bytes).unwrap();
        let out = Command::new(common::verify_bin())
            .args(["cose", "--format", "text", "--key"])
            .arg(&path)
            .arg("--in")
            .arg(&input)
            .output()
            .unwrap();
        let text = String::from_utf8(out.stdout).unwrap();
        assert_eq!(out.status.code(), Some(0), "{name}: {text}");
        assert!(text.starts_with("COSE_Sign1: VALID"), "{text}");
        assert!(text.contains(&hex::encode(b"by hand")), "{text}");
    }
    // A key file that is none of the three is a usage error (exit 2), not a verdict.
    let junk = tmp.path().join("junk");
    std::fs::write(&junk, b"\x01\x02").unwrap();
    let out = Command::new(common::verify_bin())
        .args(["cose", "--key"])
        .arg(&junk)
        .arg("--in")
        .arg(&input)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("COSE_Key"));
}
