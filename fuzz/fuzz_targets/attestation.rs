//! The enclave's attestation document (EAT in COSE_Sign1, self-signed): opened as the client
//! opens it, before any appraisal.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    secllama_fuzz_bounds::decided(data, || {
        let _ = secllama_protocol::attestation::open_document(data);
    });
});
