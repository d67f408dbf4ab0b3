//! The one error type of the protocol crate. Every variant says what was expected and what was found.

/// Result alias for this crate.
pub type Result<T, E = ProtocolError> = std::result::Result<T, E>;

/// Everything that can go wrong while encoding, decoding, sealing, opening, signing or verifying.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum ProtocolError {
    /// An input is larger than its limit.
    #[error("{what}: expected at most {limit} bytes, found {found} bytes")]
    TooLarge {
        /// What was being read.
        what: String,
        /// The limit in bytes.
        limit: usize,
        /// The size found.
        found: usize,
    },
    /// A byte string has the wrong length.
    #[error("{what}: expected {expected} bytes, found {found} bytes")]
    Length {
        /// The field.
        what: String,
        /// The expected length or range, in words.
        expected: String,
        /// The length found.
        found: usize,
    },
    /// The bytes are not well-formed CBOR.
    #[error("{what}: expected well-formed CBOR, found {reason}")]
    Cbor {
        /// What was being decoded.
        what: String,
        /// What the CBOR decoder reported.
        reason: String,
    },
    /// Bytes follow the single CBOR item that was expected.
    #[error("{what}: expected a single CBOR item, found {found} trailing bytes after it")]
    TrailingBytes {
        /// What was being decoded.
        what: String,
        /// How many bytes were left over.
        found: usize,
    },
    /// Well-formed CBOR that is not in deterministic (RFC 8949 §4.2.1) form.
    #[error(
        "{what}: expected deterministic CBOR (RFC 8949 §4.2.1: shortest forms, definite lengths, sorted keys), found a non-canonical encoding"
    )]
    NotDeterministic {
        /// What was being decoded.
        what: String,
    },
    /// A map holds the same key twice.
    #[error("{what}: expected unique map keys, found key {key} more than once")]
    DuplicateKey {
        /// The map.
        what: String,
        /// The repeated key.
        key: String,
    },
    /// A value has the wrong CBOR type.
    #[error("{field}: expected {expected}, found {found}")]
    WrongType {
        /// The field.
        field: String,
        /// The type expected.
        expected: String,
        /// The type found.
        found: String,
    },
    /// A required field is absent.
    #[error("{field}: expected {expected}, found nothing")]
    Missing {
        /// The field.
        field: String,
        /// What should have been there.
        expected: String,
    },
    /// A map holds a key that the format does not define.
    #[error("{what}: expected only the keys {expected}, found unknown key {key}")]
    UnexpectedKey {
        /// The map.
        what: String,
        /// The keys the format defines.
        expected: String,
        /// The unknown key.
        key: String,
    },
    /// A field has a value other than the one required.
    #[error("{field}: expected {expected}, found {found}")]
    Mismatch {
        /// The field.
        field: String,
        /// The required value.
        expected: String,
        /// The value found.
        found: String,
    },
    /// A CBOR tag other than the one allowed.
    #[error("{what}: expected CBOR tag {expected} or no tag, found tag {found}")]
    WrongTag {
        /// The structure.
        what: String,
        /// The allowed tag.
        expected: u64,
        /// The tag found.
        found: u64,
    },
    /// A signature does not verify.
    #[error(
        "{what}: expected a valid {alg} signature under the given key, found one that does not verify"
    )]
    BadSignature {
        /// The signed structure.
        what: String,
        /// The signature algorithm.
        alg: String,
    },
    /// An AEAD tag does not verify.
    #[error(
        "{what}: expected ciphertext authenticated under this key, nonce and associated data, found an authentication failure"
    )]
    Decrypt {
        /// The encrypted structure.
        what: String,
    },
    /// An RSA-OAEP unwrap failed.
    #[error(
        "wrapped content key: expected RSAES-OAEP-SHA256 ciphertext for this enclave's key, found {found}"
    )]
    Unwrap {
        /// What went wrong, without detail that could serve as an oracle.
        found: String,
    },
    /// A key is unusable.
    #[error("{what}: expected {expected}, found {found}")]
    Key {
        /// The key.
        what: String,
        /// The key expected.
        expected: String,
        /// What was found.
        found: String,
    },
    /// A response stream was cut, reordered, duplicated, spliced or extended.
    #[error("response stream: expected {expected}, found {found}")]
    Stream {
        /// What the decoder expected.
        expected: String,
        /// What it found.
        found: String,
    },
    /// The system random number generator or a cryptographic primitive failed.
    #[error("{what}: expected the operation to succeed, found {found}")]
    Crypto {
        /// The operation.
        what: String,
        /// The failure.
        found: String,
    },
}

impl ProtocolError {
    pub(crate) fn mismatch(
        field: impl Into<String>,
        expected: impl Into<String>,
        found: impl Into<String>,
    ) -> Self {
        Self::Mismatch {
            field: field.into(),
            expected: expected.into(),
            found: found.into(),
        }
    }

    pub(crate) fn length(
        what: impl Into<String>,
        expected: impl Into<String>,
        found: usize,
    ) -> Self {
        Self::Length {
            what: what.into(),
            expected: expected.into(),
            found,
        }
    }

    pub(crate) fn crypto(what: impl Into<String>, found: impl std::fmt::Display) -> Self {
        Self::Crypto {
            what: what.into(),
            found: found.to_string(),
        }
    }

    pub(crate) fn cose(what: impl Into<String>, err: coset::CoseError) -> Self {
        Self::Cbor {
            what: what.into(),
            reason: err.to_string(),
        }
    }
}
