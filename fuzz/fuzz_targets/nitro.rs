//! AWS Nitro Enclaves attestation documents (COSE_Sign1 over CBOR), parsed before appraisal.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    secllama_fuzz_bounds::decided(data, || {
        let _ = secllama_verifier::nitro::document::NitroDocument::parse(data);
    });
});
