//! OVMF's SEV metadata and footer table (the pages an SNP launch digest covers).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    secllama_fuzz_bounds::decided(data, || {
        let _ = secllama_measurements::snp::ovmf_hash(data);
    });
});
