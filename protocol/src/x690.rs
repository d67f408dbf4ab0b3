//! ITU-T X.690 distinguished encoding (DER): the tag-length-value structure of every DER input
//! secllama decodes from an untrusted party — certificates and CRLs (AK/EK roots, VCEK/VLEK
//! chains, the Nitro CA bundle, `--certs`, `--crl`), their extensions, SubjectPublicKeyInfo,
//! ECDSA signatures — checked before a DER decoder sees the bytes.
//!
//! Why: `der` 0.7 (under `x509-cert`, `spki`, `pkcs1`) allocates an owned value's *declared*
//! length before it checks that the bytes are there (`Reader::read_vec`: `vec![0u8; len]`, then
//! the read fails). A 1.4 KiB certificate whose name holds a UTF8String claiming 8 MiB made it
//! allocate 8 MiB; a 12-byte one whose serial number claims 256 MiB makes it allocate 256 MiB
//! (the `x509` fuzz target found it, issue 16). [`check`] walks the whole tree first and refuses
//! any element whose length does not fit inside what encloses it, so no length `der` later reads
//! at an element boundary exceeds the input.
//!
//! Limits of the walk: the contents of primitive elements are not walked (an OCTET STRING holding
//! DER, such as an extension's value, is checked when it is itself decoded, through [`decode`]).
//! `der` 0.7 decodes the contents of an IMPLICIT-tagged field before it compares the tag's
//! constructed bit, so a primitive-tagged field of a constructed type would be decoded unwalked:
//! none of the types decoded through [`decode`] has such a field (Certificate, CertificateList,
//! SubjectPublicKeyInfo, BasicConstraints, KeyUsage, ECDSA-Sig-Value, RSAPublicKey and the VCEK's
//! primitive extensions).

use crate::{ProtocolError, Result};
use spki::der::Decode;

/// Deepest nesting of constructed elements accepted (a certificate nests about 8 deep).
pub const MAX_DEPTH: usize = 32;

/// Checks that `input` is exactly one DER element (X.690 §8.1) whose every declared length, at
/// every depth of constructed elements, fits inside the element that encloses it; lengths in the
/// definite, shortest form with at most 4 length octets (X.690 §10.1, §8.1.3); tag numbers in
/// the low-tag-number form (below 31, X.690 §8.1.2.2); at most [`MAX_DEPTH`] levels. Linear in
/// the input's length, allocates nothing but its error.
///
/// # Errors
/// [`ProtocolError::Mismatch`] for `what`: expected DER, found what is wrong and its byte offset.
pub fn check(what: &str, input: &[u8]) -> Result<()> {
    walk(input).map_err(|found| ProtocolError::mismatch(what, "one DER element (X.690)", found))
}

/// `T::from_der(input)` after [`check`] (the reason is in this module's documentation).
///
/// # Errors
/// [`ProtocolError::Mismatch`] for `what`: `expected`, found what [`parse`] found.
pub fn decode<'a, T: Decode<'a>>(what: &str, expected: &str, input: &'a [u8]) -> Result<T> {
    parse(input).map_err(|found| ProtocolError::mismatch(what, expected, found))
}

/// [`decode`] for callers with their own error type.
///
/// # Errors
/// What was found instead of DER: what [`check`] found, or `der`'s error.
pub fn parse<'a, T: Decode<'a>>(input: &'a [u8]) -> std::result::Result<T, String> {
    walk(input)?;
    T::from_der(input).map_err(|e| e.to_string())
}

/// The whole check; the error says what was found, where.
fn walk(input: &[u8]) -> std::result::Result<(), String> {
    if input.is_empty() {
        return Err("no bytes".into());
    }
    let end = element(input, 0, 1)?;
    if end != input.len() {
        return Err(format!(
            "{} bytes after the element, at byte {end}",
            input.len() - end
        ));
    }
    Ok(())
}

/// Walks the element starting at `at` (its bytes must end within `input`); returns where it ends.
fn element(input: &[u8], at: usize, depth: usize) -> std::result::Result<usize, String> {
    let (constructed, content, len) = header(input, at)?;
    let left = input.len() - content;
    if len > left {
        return Err(format!(
            "a length of {len} at byte {at}, where {left} bytes are left in what encloses it"
        ));
    }
    let end = content + len;
    if constructed {
        if depth >= MAX_DEPTH {
            return Err(format!(
                "more than {MAX_DEPTH} levels of nesting, at byte {at}"
            ));
        }
        let inside = &input[..end];
        let mut pos = content;
        while pos < end {
            pos = element(inside, pos, depth + 1)?;
        }
    }
    Ok(end)
}

/// One header at `at`: (constructed, where the contents start, declared length).
fn header(input: &[u8], at: usize) -> std::result::Result<(bool, usize, usize), String> {
    let end = |pos: usize| format!("the end of the input at byte {pos}, inside a header");
    let tag = *input.get(at).ok_or_else(|| end(at))?;
    if tag & 0x1f == 0x1f {
        return Err(format!(
            "the high-tag-number form ({tag:#04x}) at byte {at}; DER tags here are below 31 (X.690 §8.1.2.2)"
        ));
    }
    let first = *input.get(at + 1).ok_or_else(|| end(at + 1))?;
    if first < 0x80 {
        return Ok((tag & 0x20 != 0, at + 2, usize::from(first)));
    }
    let octets = usize::from(first & 0x7f);
    if octets == 0 {
        return Err(format!(
            "the indefinite length form (0x80) at byte {}; DER lengths are definite (X.690 §10.1)",
            at + 1
        ));
    }
    if octets > 4 {
        return Err(format!(
            "{octets} length octets at byte {}; at most 4 are accepted",
            at + 1
        ));
    }
    let bytes = input
        .get(at + 2..at + 2 + octets)
        .ok_or_else(|| end(input.len()))?;
    let len = bytes.iter().fold(0usize, |n, b| (n << 8) | usize::from(*b));
    if bytes[0] == 0 || len < 0x80 {
        return Err(format!(
            "{octets} length octets for {len} at byte {}; DER lengths take the shortest form (X.690 §10.1)",
            at + 1
        ));
    }
    Ok((tag & 0x20 != 0, at + 2 + octets, len))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    fn err(input: &[u8]) -> String {
        check("t", input).unwrap_err().to_string()
    }

    #[test]
    fn well_formed_trees_pass() {
        check("t", &[0x30, 0x06, 0x02, 0x01, 0x05, 0x04, 0x01, 0xaa]).unwrap();
        check("t", &[0x05, 0x00]).unwrap();
        // A long-form length in the shortest form.
        let mut long = vec![0x04, 0x81, 0x80];
        long.extend([0u8; 0x80]);
        check("t", &long).unwrap();
        // Primitive contents are not walked: an OCTET STRING may hold anything.
        check("t", &[0x04, 0x05, 0x30, 0x84, 0x0f, 0xff, 0xff]).unwrap();
        // Context-specific constructed elements are walked like SEQUENCEs.
        check("t", &[0xa0, 0x03, 0x02, 0x01, 0x02]).unwrap();
    }

    #[test]
    fn a_length_beyond_its_enclosing_element_is_refused() {
        // A certificate-shaped SEQUENCE whose serial number INTEGER claims 256 MiB.
        let e = err(&[
            0x30, 0x0a, 0x30, 0x08, 0x02, 0x84, 0x0f, 0xff, 0xff, 0xff, 0x01, 0x02,
        ]);
        assert!(e.contains("a length of 268435455 at byte 4"), "{e}");
        // Inside the input but beyond its parent: the INTEGER needs 2 bytes, its SEQUENCE has 1.
        let e = err(&[0x30, 0x03, 0x02, 0x02, 0x01, 0x02]);
        assert!(e.contains("where 1 bytes are left"), "{e}");
        // The outer element itself.
        assert!(err(&[0x04, 0x05, 0x01]).contains("a length of 5"));
    }

    #[test]
    fn non_der_headers_are_refused() {
        assert!(err(&[0x30, 0x80, 0x00, 0x00]).contains("indefinite"));
        assert!(err(&[0x02, 0x81, 0x01, 0x05]).contains("shortest form"));
        assert!(err(&[0x04, 0x82, 0x00, 0x80]).contains("shortest form"));
        assert!(err(&[0x04, 0x85, 0, 0, 0, 0, 1, 0]).contains("at most 4 are accepted"));
        assert!(err(&[0x1f, 0x81, 0x00, 0x00]).contains("high-tag-number"));
        assert!(err(&[0x30]).contains("the end of the input"));
        assert!(err(&[0x04, 0x84, 0x00]).contains("the end of the input"));
        assert!(err(&[]).contains("no bytes"));
        assert!(err(&[0x05, 0x00, 0x05, 0x00]).contains("2 bytes after the element"));
    }

    #[test]
    fn nesting_is_bounded() {
        let nested = |levels: usize| {
            let mut v = vec![0x05, 0x00];
            for _ in 0..levels {
                let mut outer = vec![0x30, u8::try_from(v.len()).unwrap()];
                outer.extend(v);
                v = outer;
            }
            v
        };
        check("t", &nested(MAX_DEPTH - 1)).unwrap();
        assert!(err(&nested(MAX_DEPTH)).contains("levels of nesting"));
    }

    #[test]
    fn decode_checks_before_der_reads() {
        use spki::der::asn1::OctetString;
        let v: OctetString = decode("t", "an OCTET STRING", &[0x04, 0x02, 0xab, 0xcd]).unwrap();
        assert_eq!(v.as_bytes(), &[0xab, 0xcd]);
        let e = decode::<OctetString>(
            "t",
            "an OCTET STRING",
            &[0x04, 0x84, 0x0f, 0xff, 0xff, 0xff, 0x00],
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.starts_with("t: expected an OCTET STRING, found a length of 268435455"),
            "{e}"
        );
        // parse: only what was found, for callers that wrap it in their own error.
        let found = parse::<OctetString>(&[0x04, 0x84, 0x0f, 0xff, 0xff, 0xff, 0x00]).unwrap_err();
        assert!(
            found.starts_with("a length of 268435455 at byte 0"),
            "{found}"
        );
        // der's own errors keep the caller's words.
        let e = decode::<OctetString>("t", "an OCTET STRING", &[0x02, 0x01, 0x00])
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("t: expected an OCTET STRING, found"), "{e}");
    }
}
