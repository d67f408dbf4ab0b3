//! The reference manifest (TOML) a remote user appraises against, and evidence bundles.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    secllama_fuzz_bounds::decided(data, || {
        if let Ok(text) = std::str::from_utf8(data) {
            let _ = secllama_measurements::manifest::Manifest::from_toml(text);
        }
        let _ = secllama_verifier::bundle::Bundle::from_bytes(data);
    });
});
