//! CBOR (RFC 8949): the lenient and the strict decoder. Properties: whatever `decode` accepts,
//! `to_vec` re-encodes into bytes `decode_deterministic` accepts as the same value; whatever
//! `decode_deterministic` accepts is its own re-encoding.
#![no_main]
use libfuzzer_sys::fuzz_target;
use secllama_protocol::cbor::{decode, decode_deterministic, to_vec};

fuzz_target!(|data: &[u8]| {
    secllama_fuzz_bounds::decided(data, || {
        if let Ok(v) = decode("fuzz", data, 1 << 20) {
            let again = to_vec(&v).expect("an accepted value re-encodes");
            let back = decode_deterministic("fuzz", &again, 1 << 22)
                .expect("the re-encoding of an accepted value is accepted strictly");
            // Compared by encoding: NaN is a value unequal to itself.
            assert_eq!(
                to_vec(&back).expect("re-encodes"),
                again,
                "the re-encoding decodes to the same value"
            );
        }
        if let Ok(v) = decode_deterministic("fuzz", data, 1 << 20) {
            assert_eq!(
                to_vec(&v).expect("re-encodes"),
                data,
                "deterministic input is its own encoding"
            );
        }
    });
});
