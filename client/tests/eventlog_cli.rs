//! `secllama-verify eventlog` on shared vectors: the JSON shape the issue specifies, text output, and
//! a clear error (exit 2) for a malformed log.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test crate: a failed unwrap is a failed test

mod common;

use std::path::PathBuf;
use std::process::Command;

fn vector(case: &str) -> PathBuf {
    std::env::var_os("SECLLAMA_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared"))
        .join("vectors/eventlog")
        .join(case)
}

fn run(args: &[&str], file: &std::path::Path) -> std::process::Output {
    Command::new(common::verify_bin())
        .arg("eventlog")
        .arg(file)
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn json_has_pcrs_events_and_warnings() {
    let dir = vector("ubuntu2104-gce-nodbx");
    let out = run(&[], &dir.join("eventlog.bin"));
    assert_eq!(out.status.code(), Some(0));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let expected: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("expected.json")).unwrap()).unwrap();
    for (bank, pcrs) in expected["expected_final_pcrs"].as_object().unwrap() {
        for (i, value) in pcrs.as_object().unwrap() {
            assert_eq!(
                v["pcrs"][bank][i].as_str().unwrap(),
                value.as_str().unwrap().to_ascii_lowercase(),
                "{bank}:{i}"
            );
        }
    }
    let events = v["events"].as_array().unwrap();
    assert_eq!(events[0]["type"], "EV_NO_ACTION");
    assert!(
        events
            .iter()
            .any(|e| e["type"] == "EV_EFI_VARIABLE_DRIVER_CONFIG"
                && e["summary"].as_str().unwrap().starts_with("SecureBoot"))
    );
    assert!(events.iter().any(|e| e["type"] == "EV_SEPARATOR"));
    assert!(v["warnings"].is_array());
}

#[test]
fn text_output_and_the_mismatch_warning() {
    let out = run(
        &["--format", "text"],
        &vector("t2t-archlinux-variant").join("eventlog.bin"),
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.starts_with("event log (crypto-agile)"), "{text}");
    assert!(text.contains("warning: event 24 (PCR 8, EV_IPL)"), "{text}");
    assert!(text.contains("sha256:4"), "{text}");
}

#[test]
fn malformed_logs_are_errors_with_offsets() {
    let tmp = tempfile::tempdir().unwrap();
    let bytes = std::fs::read(vector("cos93-gce-amdsev").join("eventlog.bin")).unwrap();
    let cut = tmp.path().join("cut.bin");
    std::fs::write(&cut, &bytes[..bytes.len() - 7]).unwrap();
    let out = run(&[], &cut);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("byte offset"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
