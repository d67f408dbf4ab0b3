//! TPMT_SIGNATURE (TPM 2.0 Part 2 §11.3.4) as `tpm2_quote -s` writes it.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    secllama_fuzz_bounds::decided(data, || {
        let _ = secllama_verifier::tpm::signature::TpmSignature::parse(data);
    });
});
