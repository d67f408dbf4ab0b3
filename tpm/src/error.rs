//! The TPM crate's error type: every variant says what was being done and what went wrong.

/// Result alias for this crate.
pub type Result<T, E = TpmError> = std::result::Result<T, E>;

/// Everything that can go wrong while talking to the TPM or writing its event log.
#[derive(Debug, thiserror::Error)]
pub enum TpmError {
    /// The TPM or the TSS refused an operation.
    #[error("TPM: {op} failed: {reason}")]
    Tss {
        /// The operation.
        op: &'static str,
        /// The TSS error.
        reason: tss_esapi::Error,
    },
    /// A configuration value is malformed.
    #[error("{what}: expected {expected}, found {found:?}")]
    Config {
        /// The setting.
        what: &'static str,
        /// The accepted form.
        expected: &'static str,
        /// What was given.
        found: String,
    },
    /// The TPM answered something other than what the operation requires.
    #[error("TPM: {what}: expected {expected}, found {found}")]
    Unexpected {
        /// The value.
        what: &'static str,
        /// What was expected.
        expected: String,
        /// What the TPM returned.
        found: String,
    },
    /// A swtpm socket relay could not be set up.
    #[error("TPM relay: {what}: {reason}")]
    Relay {
        /// What was being done.
        what: String,
        /// What went wrong.
        reason: String,
    },
    /// Reading or writing the event log failed.
    #[error("event log {path}: {op}: {reason}")]
    Io {
        /// The log file.
        path: String,
        /// The operation.
        op: &'static str,
        /// The I/O error.
        reason: std::io::Error,
    },
}

impl TpmError {
    /// Maps a TSS error for `op` (for use with `map_err`).
    pub(crate) fn tss(op: &'static str) -> impl FnOnce(tss_esapi::Error) -> TpmError {
        move |source| TpmError::Tss { op, reason: source }
    }

    pub(crate) fn unexpected(
        what: &'static str,
        expected: impl Into<String>,
        found: impl Into<String>,
    ) -> Self {
        Self::Unexpected {
            what,
            expected: expected.into(),
            found: found.into(),
        }
    }
}
