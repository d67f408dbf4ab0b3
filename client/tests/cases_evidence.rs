//! The failing public inputs of `../shared/cases/` that belong to the evidence issue, each with
//! the result its README gives: TDX CCEL event logs (Spec ID Event03 at index 1, 0xFF padding
//! after the last event), an EV_S_CRTM_VERSION holding a GUID, and a real TPM's bare RSASSA-SHA1
//! signature that needs `--signature-format plain --hash sha1`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test crate: a failed unwrap is a failed test

mod common;

use serde_json::Value;
use std::path::PathBuf;
use std::process::Command;

fn cases() -> PathBuf {
    std::env::var_os("SECLLAMA_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared"))
        .join("cases")
}

fn run(args: &[&str]) -> (Option<i32>, Value) {
    let out = Command::new(common::verify_bin())
        .args(args)
        .output()
        .unwrap();
    let v = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{args:?}: {e}: {}", String::from_utf8_lossy(&out.stderr)));
    (out.status.code(), v)
}

fn eventlog(name: &str) -> Value {
    let path = cases().join("eventlog").join(name);
    let (code, v) = run(&["eventlog", path.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{name}: {v:#}");
    v
}

const CCEL_SHA384_1: &str = "fb0c2d2d";

#[test]
fn ccel_logs_parse_as_crypto_agile_with_the_header_at_index_1_and_ff_padding() {
    let control = eventlog("ccel-control.bin");
    let want = control["pcrs"]["sha384"]["1"].as_str().unwrap().to_string();
    assert!(want.starts_with(CCEL_SHA384_1), "{want}");
    assert_eq!(control["padding"], Value::Null);
    let at1 = eventlog("ccel-specid-at-index1.bin");
    assert_eq!(at1["format"], control["format"]);
    assert_eq!(at1["events"][0]["pcr"], 1);
    assert_eq!(at1["events"][0]["summary"], "Spec ID Event03");
    assert_eq!(at1["events"][1]["pcr"], 1);
    assert_eq!(at1["pcrs"]["sha384"]["1"], want.as_str());
    let padded = eventlog("ccel-ff-padding.bin");
    assert_eq!(padded["pcrs"]["sha384"]["1"], want.as_str());
    assert_eq!(padded["events"].as_array().unwrap().len(), 2);
    let size = std::fs::metadata(cases().join("eventlog/ccel-ff-padding.bin"))
        .unwrap()
        .len();
    assert_eq!(padded["padding"]["offset"].as_u64().unwrap(), size - 16);
    assert_eq!(padded["padding"]["len"], 16);
    assert_eq!(padded["padding"]["fill"], 0xff);
    assert!(
        padded["warnings"]
            .to_string()
            .contains("ends at byte offset"),
        "{padded:#}"
    );
}

#[test]
fn a_crtm_version_guid_is_printed_as_a_guid() {
    let v = eventlog("crtm-version-guid.bin");
    let ev = v["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["type"] == "EV_S_CRTM_VERSION")
        .unwrap();
    assert_eq!(ev["summary"], "GUID 1efb6b54-0c1d-5540-a4ad-4ef4bf17b83a");
}

#[test]
fn a_bare_rsassa_sha1_signature_verifies_once_its_hash_is_named() {
    let dir = cases().join("quote");
    let p = |f: &str| dir.join(f).to_str().unwrap().to_string();
    let nonce = std::fs::read_to_string(dir.join("nonce.hex")).unwrap();
    let empty =
        std::env::temp_dir().join(format!("secllama-empty-pcrs-{}.json", std::process::id()));
    std::fs::write(&empty, "{}").unwrap();
    let (ak, msg, bare, tpmt) = (
        p("akpub.pem"),
        p("attest.bin"),
        p("sig_bare.bin"),
        p("sig_tpmt_sha1.bin"),
    );
    let base = [
        "quote",
        "--ak",
        &ak,
        "--message",
        &msg,
        "--nonce",
        nonce.trim(),
        "--pcr-values",
        empty.to_str().unwrap(),
    ];
    let signature_check = |v: &Value| {
        v["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == "signature")
            .unwrap()["passed"]
            .as_bool()
            .unwrap()
    };
    // Without naming the hash: SHA-256 is assumed and the signature does not verify.
    let (code, v) = run(&[&base[..], &["--signature", &bare]].concat());
    assert_eq!(code, Some(1));
    assert!(!signature_check(&v));
    // Named: it verifies; the quote is still refused, because attest.bin is a TPM2_Certify.
    let (code, v) = run(&[
        &base[..],
        &[
            "--signature",
            &bare,
            "--signature-format",
            "plain",
            "--hash",
            "sha1",
            "--allow-sha1",
        ],
    ]
    .concat());
    assert_eq!(code, Some(1));
    assert!(signature_check(&v), "{v:#}");
    assert!(v["reasons"].to_string().contains("0x8017"), "{v:#}");
    // SHA-1 still needs --allow-sha1.
    let (_, v) = run(&[
        &base[..],
        &[
            "--signature",
            &bare,
            "--signature-format",
            "plain",
            "--hash",
            "sha1",
        ],
    ]
    .concat());
    assert!(!v["checks"].to_string().contains("SHA-1 accepted"));
    // The same signature as TPMT_SIGNATURE verifies with the hash it names.
    let (_, v) = run(&[&base[..], &["--signature", &tpmt, "--allow-sha1"]].concat());
    assert!(signature_check(&v));
    assert_eq!(v["signature"]["hash"], "sha1");
    // --hash contradicting a TPMT_SIGNATURE is a usage error.
    let out = Command::new(common::verify_bin())
        .args([&base[..], &["--signature", &tpmt, "--hash", "sha256"]].concat())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let _ = std::fs::remove_file(empty);
}
