//! TPM2B_PUBLIC (TPM 2.0 Part 2 §12.2.5): the AK as `tpm2_readpublic` writes it.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    secllama_fuzz_bounds::decided(data, || {
        let _ = secllama_verifier::tpm::public::TpmPublic::parse(data);
    });
});
