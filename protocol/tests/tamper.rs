//! Tamper tests: every single-byte change (three masks per byte) of a sealed request, a sealed
//! response, a stream, a receipt and an attestation document gives an error — never a panic and never
//! a silently accepted object.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test crate: a failed unwrap is a failed test

mod common;

use common::*;
use rand_core::OsRng;
use secllama_protocol::attestation::{open_document, sign_document};
use secllama_protocol::receipt::{ReceiptParams, ReceiptPayload, sign_receipt, verify_receipt};
use secllama_protocol::seal::{
    ContentKey, RequestContext, RequestPlaintext, ResponseKeys, StreamOpener, StreamSealer,
    open_request, open_single, seal_request, seal_request_session, seal_single,
};
use secllama_protocol::{RequestId, Salt};

fn ctx() -> RequestContext<'static> {
    RequestContext {
        method: "POST",
        path: "/v1/sealed/api/generate",
        attestation_digest: digest("doc"),
    }
}

fn plaintext() -> RequestPlaintext {
    RequestPlaintext::new(
        br#"{"model":"tiny","prompt":"2+2?"}"#.to_vec(),
        1_790_000_000_123,
        &mut OsRng,
    )
    .unwrap()
}

#[test]
fn every_byte_of_a_sealed_request_matters() {
    let enclave = enclave_key();
    let (sealed, key) =
        seal_request(enclave.public_key_der(), &ctx(), &plaintext(), &mut OsRng).unwrap();
    let opened = open_request(&sealed, &ctx(), enclave, |_| None).unwrap();
    assert_eq!(opened.content_key, key);
    let mut checked = 0;
    for_each_flip(&sealed, |i, mask, bad| {
        let r = open_request(bad, &ctx(), enclave, |_| None);
        assert!(
            r.is_err(),
            "flip {mask:#04x} at byte {i} of {} was accepted",
            sealed.len()
        );
        checked += 1;
    });
    assert_eq!(checked, sealed.len() * 3);
}

#[test]
fn every_byte_of_a_session_request_matters() {
    let key = ContentKey::generate(&mut OsRng).unwrap();
    let sealed = seal_request_session(&key, &ctx(), &plaintext(), &mut OsRng).unwrap();
    let lookup = |id: &[u8; 16]| (*id == key.session_id().unwrap()).then(|| key.clone());
    assert!(open_request(&sealed, &ctx(), enclave_key(), lookup).is_ok());
    for_each_flip(&sealed, |i, mask, bad| {
        let r = open_request(bad, &ctx(), enclave_key(), lookup);
        assert!(r.is_err(), "flip {mask:#04x} at byte {i} was accepted");
    });
}

fn response_keys() -> ResponseKeys {
    let key = ContentKey::generate(&mut OsRng).unwrap();
    ResponseKeys::derive(&key, &RequestId([9u8; 16])).unwrap()
}

#[test]
fn every_byte_of_a_sealed_response_matters() {
    let keys = response_keys();
    let sealed = seal_single(&keys, br#"{"response":"4","done":true}"#).unwrap();
    assert!(open_single(&keys, &sealed).is_ok());
    for_each_flip(&sealed, |i, mask, bad| {
        assert!(
            open_single(&keys, bad).is_err(),
            "flip {mask:#04x} at byte {i} was accepted"
        );
    });
}

fn open_all(
    keys: &ResponseKeys,
    bytes: &[u8],
) -> Result<Vec<Vec<u8>>, secllama_protocol::ProtocolError> {
    let mut opener = StreamOpener::new(keys.clone());
    let chunks = opener.push(bytes)?;
    opener.finish()?;
    Ok(chunks.into_iter().map(|c| c.data).collect())
}

#[test]
fn every_byte_of_a_stream_matters() {
    let keys = response_keys();
    let mut sealer = StreamSealer::new(keys.clone());
    let mut stream = Vec::new();
    for (i, part) in [
        "{\"response\":\"4\"}",
        "{\"response\":\" \"}",
        "{\"done\":true}",
    ]
    .iter()
    .enumerate()
    {
        stream.extend(sealer.seal_chunk(part.as_bytes(), i == 2).unwrap());
    }
    assert_eq!(open_all(&keys, &stream).unwrap().len(), 3);
    for_each_flip(&stream, |i, mask, bad| {
        assert!(
            open_all(&keys, bad).is_err(),
            "flip {mask:#04x} at byte {i} was accepted"
        );
    });
}

#[test]
fn every_byte_of_a_receipt_matters() {
    let key = signing_key();
    let salt = Salt([3u8; 32]);
    let payload = ReceiptPayload {
        request_digest: salt.digest(b"request"),
        response_digest: salt.digest(b"response"),
        model: "tiny:latest".into(),
        policy_digest: digest("policy"),
        signing_kid: key.public().kid().unwrap(),
        log_index: 41,
        time: 1_790_000_001,
        params: ReceiptParams {
            num_predict: Some(64),
            defaults: vec!["num_predict".into()],
        },
    };
    let receipt = sign_receipt(&payload, &key).unwrap();
    assert_eq!(verify_receipt(&receipt, &key.public()).unwrap(), payload);
    for_each_flip(&receipt, |i, mask, bad| {
        assert!(
            verify_receipt(bad, &key.public()).is_err(),
            "flip {mask:#04x} at byte {i} was accepted"
        );
    });
}

#[test]
fn every_byte_of_an_attestation_document_matters() {
    let key = signing_key();
    let payload = full_payload(&key, enclave_key().public_key_der());
    let doc = sign_document(&payload, &key).unwrap();
    assert_eq!(open_document(&doc).unwrap().payload, payload);
    for_each_flip(&doc, |i, mask, bad| {
        assert!(
            open_document(bad).is_err(),
            "flip {mask:#04x} at byte {i} of {} was accepted",
            doc.len()
        );
    });
}

#[test]
fn truncations_and_extensions_are_errors() {
    let key = signing_key();
    let doc = sign_document(&full_payload(&key, enclave_key().public_key_der()), &key).unwrap();
    for len in 0..doc.len() {
        assert!(
            open_document(&doc[..len]).is_err(),
            "prefix of {len} bytes accepted"
        );
    }
    let mut longer = doc.clone();
    longer.push(0);
    assert!(open_document(&longer).is_err());
}
