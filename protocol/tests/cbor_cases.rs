//! The CBOR inputs of `../shared/cases/cbor/` (found by fuzzing, issue 16), as their README
//! states: `decode` and `decode_deterministic` agree, duplicate keys are found by value and inside
//! keys.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test crate: a failed unwrap is a failed test

use secllama_protocol::cbor::{decode, decode_deterministic, to_vec};
use std::path::PathBuf;

fn case(name: &str) -> Vec<u8> {
    let dir = std::env::var_os("SECLLAMA_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared"));
    let path = dir.join("cases/cbor").join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn a_bignum_in_an_indefinite_string_is_refused_by_both_decoders() {
    let b = case("bignum-tag-indefinite.bin");
    assert_eq!(b, [0xc3, 0x5f, 0xff]);
    let lenient = decode("case", &b, 64);
    let strict = decode_deterministic("case", &b, 64);
    // They agree: both refuse (or, were it accepted, the re-encoding would be accepted).
    match lenient {
        Ok(v) => assert_eq!(
            decode_deterministic("case", &to_vec(&v).unwrap(), 64).unwrap(),
            v
        ),
        Err(e) => {
            assert!(e.to_string().contains("bignum (tag 3)"), "{e}");
            assert!(strict.is_err());
        }
    }
}

#[test]
fn keys_equal_by_value_are_duplicates() {
    let b = case("dup-keys-by-value.bin");
    assert_eq!(b, [0xa2, 0xc3, 0x5f, 0xff, 0x00, 0x20, 0x00]);
    assert!(decode("case", &b, 64).is_err());
    assert!(decode_deterministic("case", &b, 64).is_err());
}

#[test]
fn a_duplicate_key_inside_a_key_is_refused() {
    let b = case("dup-key-inside-key.bin");
    assert_eq!(b, [0xa1, 0xa2, 0x01, 0x00, 0x01, 0x00, 0x00]);
    for e in [
        decode("case", &b, 64).unwrap_err(),
        decode_deterministic("case", &b, 64).unwrap_err(),
    ] {
        assert!(e.to_string().contains("integer 1"), "{e}");
    }
}
