//! The enclave's attestation document (EAT in COSE_Sign1, self-signed): opened as the client
//! opens it, before any appraisal. Property: the payload decoder (deterministic CBOR) accepts
//! only its own encoding — whatever it accepts, as the input or as the input's COSE_Sign1
//! payload, re-encodes to exactly those bytes.
#![no_main]
use libfuzzer_sys::fuzz_target;
use secllama_protocol::attestation::{AttestationPayload, open_document};
use secllama_protocol::cose::{Sign1Policy, sign1};

fn round_trip(payload: &[u8]) {
    if let Ok(p) = AttestationPayload::from_bytes(payload) {
        assert_eq!(
            p.to_bytes().expect("an accepted payload re-encodes"),
            payload,
            "the attestation payload is its own encoding"
        );
    }
}

fuzz_target!(|data: &[u8]| {
    secllama_fuzz_bounds::decided(data, || {
        let _ = open_document(data);
        round_trip(data);
        if let Ok(s) = sign1::parse(data, &Sign1Policy::default()) {
            if let Some(p) = s.unverified_payload() {
                round_trip(p);
            }
        }
    });
});
