//! `../shared/cases/pem-body-MA.pem` (found by fuzzing, issue 16): a PEM certificate block whose
//! body is `MA==` (DER `30`) made `load_certificates` loop forever inside `der` 0.7's PEM reader.
//! Every certificate path of the verifier reads PEM through `load_certificates`; it must answer
//! with an error at once. Run in a thread with a deadline, so a regression fails instead of
//! hanging the test suite.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test crate: a failed unwrap is a failed test

use std::path::PathBuf;
use std::time::Duration;

fn within_a_second(input: Vec<u8>) -> Result<Vec<Vec<u8>>, String> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(secllama_verifier::x509::load_certificates(&input));
    });
    rx.recv_timeout(Duration::from_secs(1))
        .expect("load_certificates did not return within a second")
}

#[test]
fn the_shared_case_is_an_error_at_once() {
    let dir = std::env::var_os("SECLLAMA_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared"));
    let pem = std::fs::read(dir.join("cases/pem-body-MA.pem")).unwrap();
    let e = within_a_second(pem).unwrap_err();
    assert!(
        e.contains("PEM block 1: expected a DER X.509 certificate"),
        "{e}"
    );
}

#[test]
fn every_short_body_of_its_kind_is_an_error_at_once() {
    // The other bodies the fuzzer found (`MIE=`, `MIIz`), and every 1- and 2-byte DER prefix of a
    // SEQUENCE.
    let mut bodies = vec!["MA==".to_string(), "MIE=".into(), "MIIz".into()];
    for b in 0..=255u8 {
        use base64::Engine;
        let e = base64::engine::general_purpose::STANDARD;
        bodies.push(e.encode([0x30, b]));
        bodies.push(e.encode([0x30, 0x82, b]));
    }
    for body in bodies {
        let pem = format!("-----BEGIN CERTIFICATE-----\n{body}\n-----END CERTIFICATE-----\n");
        assert!(within_a_second(pem.into_bytes()).is_err(), "{body}");
    }
}
