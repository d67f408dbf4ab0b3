//! The one error type of the TPM module. Parse errors name the structure, the field and the byte
//! offset where reading stopped; every variant says what was expected and what was found.

/// Result alias for the TPM module.
pub type Result<T, E = TpmError> = std::result::Result<T, E>;

/// Everything that can go wrong while reading TPM structures, keys, certificates or credentials.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TpmError {
    /// The input ends inside a field.
    #[error(
        "{structure}.{field} at byte {offset}: expected {needed} more bytes, found {available}"
    )]
    Truncated {
        /// The structure being read (spec name, e.g. `TPMS_ATTEST`).
        structure: &'static str,
        /// The field being read.
        field: &'static str,
        /// Offset of the field in the input.
        offset: usize,
        /// Bytes the field needs.
        needed: usize,
        /// Bytes left in the input.
        available: usize,
    },
    /// A field holds a value the specification (or secllama) does not allow.
    #[error("{structure}.{field} at byte {offset}: expected {expected}, found {found}")]
    Invalid {
        /// The structure being read.
        structure: &'static str,
        /// The field.
        field: &'static str,
        /// Offset of the field in the input.
        offset: usize,
        /// What the field may hold.
        expected: String,
        /// What it holds.
        found: String,
    },
    /// Bytes follow the end of the structure.
    #[error(
        "{structure} at byte {offset}: expected the end of the input, found {found} more bytes"
    )]
    TrailingBytes {
        /// The structure.
        structure: &'static str,
        /// Where the structure ended.
        offset: usize,
        /// How many bytes follow it.
        found: usize,
    },
    /// A key, certificate, selection or other input that is not a marshalled TPM structure is
    /// unusable.
    #[error("{what}: expected {expected}, found {found}")]
    Input {
        /// The input.
        what: String,
        /// What it should be.
        expected: String,
        /// What it is.
        found: String,
    },
    /// A signature does not verify.
    #[error(
        "{what}: expected a valid {scheme} signature under the given key, found one that does not verify"
    )]
    BadSignature {
        /// What was signed.
        what: String,
        /// The signature scheme, e.g. `RSASSA-SHA256`.
        scheme: String,
    },
    /// A cryptographic primitive failed (random number generator, RSA encryption).
    #[error("{what}: expected the operation to succeed, found {found}")]
    Crypto {
        /// The operation.
        what: String,
        /// The failure.
        found: String,
    },
}

impl TpmError {
    /// An [`TpmError::Input`] error.
    pub(crate) fn input(
        what: impl Into<String>,
        expected: impl Into<String>,
        found: impl Into<String>,
    ) -> Self {
        Self::Input {
            what: what.into(),
            expected: expected.into(),
            found: found.into(),
        }
    }
}
