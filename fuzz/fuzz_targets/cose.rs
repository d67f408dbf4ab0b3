//! COSE_Sign1 (RFC 9052) under the lenient and the strict (secllama's own objects) policy, and
//! public keys in every accepted form (PEM SPKI, JWK, COSE_Key). Property: a strictly parsed
//! COSE_Sign1 also parses leniently.
#![no_main]
use libfuzzer_sys::fuzz_target;
use secllama_protocol::cose::{Sign1Policy, VerifyingKey, sign1};

fuzz_target!(|data: &[u8]| {
    secllama_fuzz_bounds::decided(data, || {
        let lenient = Sign1Policy::default();
        let strict = Sign1Policy {
            empty_unprotected: true,
            deterministic: true,
            ..Sign1Policy::default()
        };
        if sign1::parse(data, &strict).is_ok() {
            assert!(
                sign1::parse(data, &lenient).is_ok(),
                "strict accepted what lenient refused"
            );
        }
        let _ = sign1::parse(data, &lenient);
        let _ = VerifyingKey::detect(data);
    });
});
