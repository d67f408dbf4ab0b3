//! PCR values: tpm2-tools selection text and the raw concatenation under it (`tpm2_quote -o`),
//! and the JSON form.
#![no_main]
use libfuzzer_sys::fuzz_target;
use secllama_verifier::tpm::pcr::{PcrSelection, PcrValues};

fuzz_target!(|data: &[u8]| {
    secllama_fuzz_bounds::decided(data, || {
        // The first line is the selection, the rest the values.
        let cut = data.iter().position(|b| *b == b'\n').unwrap_or(data.len());
        if let Ok(sel) = std::str::from_utf8(&data[..cut]).map(PcrSelection::parse_tpm2_tools) {
            if let Ok(sel) = sel {
                let _ = PcrValues::from_concatenated(&sel, data.get(cut + 1..).unwrap_or_default());
            }
        }
        if let Ok(text) = std::str::from_utf8(data) {
            let _ = PcrValues::from_json(text);
        }
    });
});
