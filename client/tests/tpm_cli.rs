//! `secllama-verify quote` run as a process on the shared GCE, Windows and Azure quotes, with the
//! inputs `tpm2_checkquote` takes, in JSON and text: exit 0 only when valid, 1 when a check fails
//! (with its reason in the report), 2 for a usage or input error.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test crate: a failed unwrap is a failed test

mod common;

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn shared() -> PathBuf {
    std::env::var_os("SECLLAMA_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared"))
}

fn case(name: &str) -> PathBuf {
    shared().join("vectors/tpm-quote").join(name)
}

fn expected(name: &str) -> Value {
    serde_json::from_slice(&std::fs::read(case(name).join("expected.json")).unwrap()).unwrap()
}

fn verify(args: &[&dyn AsRef<std::ffi::OsStr>]) -> Output {
    let mut c = Command::new(common::verify_bin());
    c.arg("quote");
    for a in args {
        c.arg(a);
    }
    c.output().unwrap()
}

fn json(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{e}: stdout {} stderr {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The 24 values of one GCE bank, concatenated in index order (`tpm2_pcrread -o`), and as JSON.
fn gce_pcr_files(dir: &Path, quote: &Value) -> (PathBuf, PathBuf) {
    let bank = quote["bank"].as_str().unwrap();
    let raw: Vec<u8> = (0..24)
        .flat_map(|i| hex::decode(quote["pcrs"][i.to_string()].as_str().unwrap()).unwrap())
        .collect();
    let raw_path = dir.join(format!("{bank}.pcrs"));
    std::fs::write(&raw_path, raw).unwrap();
    let json_path = dir.join(format!("{bank}.json"));
    std::fs::write(
        &json_path,
        serde_json::json!({ bank: quote["pcrs"] }).to_string(),
    )
    .unwrap();
    (raw_path, json_path)
}

#[test]
fn gce_quotes_verify_in_json_and_text_with_both_pcr_inputs() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = case("gce-cos85-nonce9009");
    let exp = expected("gce-cos85-nonce9009");
    let ak = dir.join("ak_pub.tpmt_public.bin");
    for q in exp["quotes"].as_array().unwrap() {
        let bank = q["bank"].as_str().unwrap();
        let (raw, values) = gce_pcr_files(tmp.path(), q);
        let msg = dir.join(q["attest"].as_str().unwrap());
        let sig = dir.join(q["signature"].as_str().unwrap());
        let list = format!("{bank}:all");
        let out = verify(&[
            &"--ak",
            &ak,
            &"--message",
            &msg,
            &"--signature",
            &sig,
            &"--nonce",
            &"9009",
            &"--pcrs",
            &raw,
            &"--pcr-list",
            &list,
        ]);
        assert_eq!(out.status.code(), Some(0), "{bank}: {}", stdout(&out));
        let r = json(&out);
        assert_eq!(r["valid"], true);
        assert_eq!(r["reasons"], serde_json::json!([]));
        assert_eq!(r["quote"]["qualifying_data"], "9009");
        assert_eq!(r["quote"]["selection"][0]["bank"], bank);
        assert_eq!(
            r["quote"]["selection"][0]["pcrs"].as_array().unwrap().len(),
            24
        );
        assert_eq!(r["quote"]["clock_info"]["clock"], q["clock"]);
        assert_eq!(r["quote"]["clock_info"]["reset_count"], q["resetCount"]);
        assert_eq!(r["quote"]["firmware_version"], q["firmwareVersion"]);
        assert_eq!(r["quote"]["pcr_digest"].as_str().unwrap().len(), 64);
        assert_eq!(r["signature"]["scheme"], "RSASSA");
        assert_eq!(r["signature"]["hash"], "sha256");
        assert_eq!(r["ak"]["form"], "TPMT_PUBLIC");
        assert!(
            r["quote"]["qualified_signer"]
                .as_str()
                .unwrap()
                .starts_with("000b")
        );

        let out = verify(&[
            &"--ak",
            &ak,
            &"--message",
            &msg,
            &"--signature",
            &sig,
            &"--nonce",
            &"9009",
            &"--pcr-values",
            &values,
            &"--format",
            &"text",
        ]);
        assert_eq!(out.status.code(), Some(0), "{bank}: {}", stdout(&out));
        let text = stdout(&out);
        assert!(text.starts_with("TPM quote: VALID"), "{text}");
        assert!(
            text.contains("RSASSA-SHA256 (TPMT_SIGNATURE)") && text.contains("extraData:  9009"),
            "{text}"
        );
        assert!(!text.contains("FAIL"), "{text}");
    }
}

#[test]
fn gce_negatives_exit_1_with_a_reason() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = case("gce-cos85-nonce9009");
    let q = &expected("gce-cos85-nonce9009")["quotes"][1];
    let (raw, _) = gce_pcr_files(tmp.path(), q);
    let ak = dir.join("ak_pub.tpmt_public.bin");
    let msg = dir.join("quote_sha256.tpms_attest.bin");
    let sig = dir.join("quote_sha256.tpmt_signature.bin");
    let run = |sig: &Path, nonce: &str, pcrs: &Path, format: &str| {
        verify(&[
            &"--ak",
            &ak,
            &"--message",
            &msg,
            &"--signature",
            &sig,
            &"--nonce",
            &nonce,
            &"--pcrs",
            &pcrs,
            &"--pcr-list",
            &"sha256:all",
            &"--format",
            &format,
        ])
    };
    let out = run(&sig, "9008", &raw, "json");
    assert_eq!(out.status.code(), Some(1));
    let r = json(&out);
    assert_eq!(r["valid"], false);
    assert_eq!(r["reasons"].as_array().unwrap().len(), 1);
    assert!(
        r["reasons"][0]
            .as_str()
            .unwrap()
            .starts_with("nonce: expected extraData 9008, found 9009"),
        "{r}"
    );

    let mut bytes = std::fs::read(&sig).unwrap();
    bytes[50] ^= 0xff;
    let flipped = tmp.path().join("flipped.sig");
    std::fs::write(&flipped, bytes).unwrap();
    let out = run(&flipped, "9009", &raw, "text");
    assert_eq!(out.status.code(), Some(1));
    let text = stdout(&out);
    assert!(
        text.starts_with("TPM quote: INVALID") && text.contains("[FAIL] signature:"),
        "{text}"
    );

    let mut pcrs = std::fs::read(&raw).unwrap();
    pcrs[32 * 4] ^= 1; // PCR 4
    let wrong = tmp.path().join("wrong.pcrs");
    std::fs::write(&wrong, pcrs).unwrap();
    let r = json(&run(&sig, "9009", &wrong, "json"));
    assert_eq!(r["valid"], false);
    assert!(
        r["reasons"][0]
            .as_str()
            .unwrap()
            .starts_with("pcr_digest: expected pcrDigest"),
        "{r}"
    );

    // Usage and input errors exit 2: bad nonce hex, a PCR file of the wrong size, no PCRs at all.
    assert_eq!(run(&sig, "zz", &raw, "json").status.code(), Some(2));
    assert_eq!(run(&sig, "9009", &msg, "json").status.code(), Some(2));
    let out = verify(&[
        &"--ak",
        &ak,
        &"--message",
        &msg,
        &"--signature",
        &sig,
        &"--nonce",
        &"9009",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--pcrs and --pcr-list, or --pcr-values")
    );
}

#[test]
fn windows_sha1_quote_needs_allow_sha1() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = case("windows-gcp-shieldedvm");
    let exp = expected("windows-gcp-shieldedvm");
    let values = tmp.path().join("pcrs.json");
    std::fs::write(
        &values,
        serde_json::json!({ "sha1": exp["pcrs_sha1"] }).to_string(),
    )
    .unwrap();
    let ak = dir.join("ak_pub.tpmt_public.bin");
    let msg = dir.join("quote.tpms_attest.bin");
    let sig = dir.join("quote.tpmt_signature.bin");
    for format in ["json", "text"] {
        let base: [&dyn AsRef<std::ffi::OsStr>; 12] = [
            &"--ak",
            &ak,
            &"--message",
            &msg,
            &"--signature",
            &sig,
            &"--nonce",
            &"",
            &"--pcr-values",
            &values,
            &"--format",
            &format,
        ];
        let out = verify(&base);
        assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
        let mut allowed = base.to_vec();
        allowed.push(&"--allow-sha1");
        let ok = verify(&allowed);
        assert_eq!(ok.status.code(), Some(0), "{}", stdout(&ok));
        if format == "json" {
            let r = json(&out);
            assert_eq!(r["reasons"].as_array().unwrap().len(), 1);
            assert!(
                r["reasons"][0]
                    .as_str()
                    .unwrap()
                    .starts_with("signature_hash: expected"),
                "{r}"
            );
            assert_eq!(r["signature"]["hash"], "sha1");
            let r = json(&ok);
            assert_eq!(r["valid"], true);
            assert_eq!(r["quote"]["qualifying_data"], "");
            assert_eq!(r["quote"]["firmware_version"], exp["firmwareVersion"]);
        } else {
            assert!(stdout(&out).contains("[FAIL] signature_hash"));
            assert!(stdout(&ok).starts_with("TPM quote: VALID"));
            assert!(stdout(&ok).contains("extraData:  (empty)"));
        }
    }
}

#[test]
fn azure_raw_signature_is_detected_and_said_so() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = case("azure-vtpm-quote-challenge");
    let exp = expected("azure-vtpm-quote-challenge");
    let values = tmp.path().join("pcrs.json");
    std::fs::write(
        &values,
        serde_json::json!({ "sha256": exp["pcrs_sha256"] }).to_string(),
    )
    .unwrap();
    let ak = dir.join("akpub.pem");
    let msg = dir.join("quote.tpms_attest.bin");
    let sig = dir.join("quote.rsassa_sha256.sig");
    let nonce = hex::encode("challenge");
    let out = verify(&[
        &"--ak",
        &ak,
        &"--message",
        &msg,
        &"--signature",
        &sig,
        &"--nonce",
        &nonce,
        &"--pcr-values",
        &values,
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    let r = json(&out);
    assert!(
        r["signature"]["encoding"]
            .as_str()
            .unwrap()
            .starts_with("raw RSASSA signature"),
        "{r}"
    );
    assert_eq!(r["ak"]["form"], "public key");
    // The same quote given as hex text files, as tpm-quote-v1.json ships it.
    let hcl = case("azure-snp-vtpm-hcl-quote-milan");
    let quote: Value =
        serde_json::from_slice(&std::fs::read(hcl.join("tpm-quote-v1.json")).unwrap()).unwrap();
    let (m, s) = (tmp.path().join("m.hex"), tmp.path().join("s.hex"));
    std::fs::write(&m, quote["message"].as_str().unwrap()).unwrap();
    std::fs::write(&s, quote["signature"].as_str().unwrap()).unwrap();
    let pcrs: serde_json::Map<String, Value> = quote["pcrs"]
        .as_array()
        .unwrap()
        .iter()
        .enumerate()
        .map(|(i, v)| (i.to_string(), v.clone()))
        .collect();
    std::fs::write(&values, serde_json::json!({ "sha256": pcrs }).to_string()).unwrap();
    let doc: Value =
        serde_json::from_slice(&std::fs::read(hcl.join("var_data.json")).unwrap()).unwrap();
    let jwk = doc["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kid"] == "HCLAkPub")
        .unwrap();
    let jwk_path = tmp.path().join("ak.jwk");
    std::fs::write(&jwk_path, jwk.to_string()).unwrap();
    let out = verify(&[
        &"--ak",
        &jwk_path,
        &"--message",
        &m,
        &"--signature",
        &s,
        &"--nonce",
        &nonce,
        &"--pcr-values",
        &values,
        &"--format",
        &"text",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    assert!(stdout(&out).contains("raw RSASSA signature"));
}
