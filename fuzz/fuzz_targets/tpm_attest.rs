//! TPMS_ATTEST (TPM 2.0 Part 2 §10.12.12) as `tpm2_quote -m` writes it.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    secllama_fuzz_bounds::decided(data, || {
        let _ = secllama_verifier::tpm::attest::Attest::parse(data);
    });
});
