//! RFC 7468 textual encoding ("PEM") of the DER structures secllama reads from users:
//! certificates and certificate bundles, CRLs, public keys. Only the armour is handled here: each
//! `-----BEGIN LABEL-----` … `-----END LABEL-----` block's base64 (RFC 4648 §4, padding required,
//! whitespace between characters ignored) becomes DER bytes, which the caller hands to its DER
//! parser. Strict and bounded: a block of another label, a BEGIN without its END, a block inside a
//! block, an empty block, base64 outside the alphabet or more blocks than the caller allows is an
//! error; text between blocks (OpenSSL's `subject=` lines) is ignored. One linear pass: no input
//! makes it loop (`der` 0.7's streaming PEM reader, which `x509_cert`'s `load_pem_chain` uses,
//! loops forever on a block whose body is `MA==`; issue 16).

use crate::{ProtocolError, Result};
use base64::Engine;

/// The DER bytes of every `label` block in `input`, in order: at least one, at most `max`.
///
/// # Errors
/// [`ProtocolError::Mismatch`] naming the block (1-based) and what was wrong with it.
pub fn blocks(input: &[u8], label: &str, max: usize) -> Result<Vec<Vec<u8>>> {
    let field = |n: usize| format!("PEM block {n}");
    let text = std::str::from_utf8(input)
        .map_err(|_| ProtocolError::mismatch("PEM", "ASCII text", "bytes that are not UTF-8"))?;
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find("-----BEGIN ") {
        let n = out.len() + 1;
        let block = &rest[at..];
        if !block.starts_with(&begin) {
            let line = block.lines().next().unwrap_or_default();
            let shown: String = line.chars().take(64).collect();
            return Err(ProtocolError::mismatch(field(n), begin, shown));
        }
        let body_and_rest = &block[begin.len()..];
        let stop = body_and_rest.find("-----").ok_or_else(|| {
            ProtocolError::mismatch(field(n), end.as_str(), "the end of the input")
        })?;
        if !body_and_rest[stop..].starts_with(&end) {
            return Err(ProtocolError::mismatch(
                field(n),
                end.as_str(),
                "another armour line before it",
            ));
        }
        let b64: String = body_and_rest[..stop]
            .chars()
            .filter(|c| !c.is_ascii_whitespace())
            .collect();
        if b64.is_empty() {
            return Err(ProtocolError::mismatch(
                field(n),
                "base64",
                "an empty block",
            ));
        }
        let der = base64::engine::general_purpose::STANDARD
            .decode(&b64)
            .map_err(|e| {
                ProtocolError::mismatch(field(n), "base64 (RFC 4648, padded)", e.to_string())
            })?;
        if out.len() == max {
            return Err(ProtocolError::mismatch(
                "PEM",
                format!("at most {max} {label} block(s)"),
                "more",
            ));
        }
        out.push(der);
        rest = &body_and_rest[stop + end.len()..];
    }
    if out.is_empty() {
        return Err(ProtocolError::mismatch("PEM", begin, "no such line"));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const C: &str = "CERTIFICATE";

    #[test]
    fn blocks_in_order_with_text_between_them() {
        let pem = "subject=CN=x\n-----BEGIN CERTIFICATE-----\nMAMCAQE=\n-----END CERTIFICATE-----\n\
                   junk\n-----BEGIN CERTIFICATE-----\r\nMAMC\r\nAQI=\r\n-----END CERTIFICATE-----";
        let b = blocks(pem.as_bytes(), C, 4).unwrap();
        assert_eq!(b, vec![vec![0x30, 3, 2, 1, 1], vec![0x30, 3, 2, 1, 2]]);
    }

    #[test]
    fn every_malformed_armour_is_an_error_at_once() {
        for (pem, expect) in [
            ("", "no such line"),
            (
                "-----BEGIN CERTIFICATE-----\nMA==\n",
                "the end of the input",
            ),
            (
                "-----BEGIN PRIVATE KEY-----\nMA==\n-----END PRIVATE KEY-----",
                "PRIVATE KEY",
            ),
            (
                "-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----",
                "an empty block",
            ),
            (
                "-----BEGIN CERTIFICATE-----\nMA==\n-----BEGIN CERTIFICATE-----\nMA==\n-----END CERTIFICATE-----",
                "another armour line",
            ),
            (
                "-----BEGIN CERTIFICATE-----\nMA\n-----END CERTIFICATE-----",
                "base64",
            ),
            (
                "-----BEGIN CERTIFICATE-----\nM*==\n-----END CERTIFICATE-----",
                "base64",
            ),
        ] {
            let e = blocks(pem.as_bytes(), C, 4).unwrap_err().to_string();
            assert!(e.contains(expect), "{pem:?}: {e}");
        }
        let two = "-----BEGIN CERTIFICATE-----\nMA==\n-----END CERTIFICATE-----\n".repeat(2);
        assert!(
            blocks(two.as_bytes(), C, 1)
                .unwrap_err()
                .to_string()
                .contains("at most 1")
        );
        assert!(blocks(&[0xff, 0xfe], C, 1).is_err());
    }

    /// The input that hangs `der` 0.7's PEM reader: here its DER (`30`), at once.
    #[test]
    fn the_body_ma_decodes_to_its_one_byte() {
        for (body, der) in [
            ("MA==", &[0x30][..]),
            ("MIE=", &[0x30, 0x81]),
            ("MIIz", &[0x30, 0x82, 0x33]),
        ] {
            let pem = format!("-----BEGIN CERTIFICATE-----\n{body}\n-----END CERTIFICATE-----");
            assert_eq!(blocks(pem.as_bytes(), C, 1).unwrap(), vec![der.to_vec()]);
        }
    }
}
