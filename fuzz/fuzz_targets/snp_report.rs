//! The SEV-SNP attestation report (1184 bytes; SEV-SNP ABI spec Table 22).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    secllama_fuzz_bounds::decided(data, || {
        let _ = secllama_verifier::snp::report::Report::parse(data);
    });
});
