//! The receipt log as the enclave keeps it (DESIGN.md "Receipts and log"; docs/log.md): the file on
//! the host's disk ([`file`]), the RFC 9162 tree of its entries, its signed tree heads, the log
//! identity key and the TPM NV counter.
//!
//! - **Identity.** The first start writes an identity record: a fresh P-256 log key, its private
//!   scalar sealed to the TPM under PolicyPCR over the enclave's measured PCRs (with the counter
//!   value at creation). Every later start unseals it: the same measured enclave continues the same
//!   log; another measurement cannot unseal it and the agent refuses to start on that file.
//! - **Heads.** [`ReceiptLog::sign_head`] signs (log id, size, root, time, counter) and appends it;
//!   the file's first head (size 0) is written at creation.
//! - **Rollback.** A head takes the TPM counter's next value: the head is written and made durable
//!   first, then the counter is incremented, so a crash between the two leaves the file one ahead,
//!   which the next start completes. At start the last head's counter (or the creation counter
//!   when no head survived) must equal the TPM counter, or be one above it; a file whose last
//!   head is below the TPM counter is an older copy and the agent refuses it.

pub mod api;
pub mod file;

use file::{LogFile, LogFileError};
use secllama_protocol::cose::SigningKey;
use secllama_protocol::receipt_log::{self, Kind, SignedHead, Verified};
use secllama_protocol::rfc9162::{self, Hash};
use secllama_protocol::tree_head::{LogIdentity, TreeHead, sign_tree_head};
use secllama_protocol::{ProtocolError, Sha256Digest};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use zeroize::Zeroizing;

/// A receipt log that cannot be opened, continued or appended to.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// The file.
    #[error(transparent)]
    File(#[from] LogFileError),
    /// The file's records do not verify.
    #[error("receipt log {path}: {reason}")]
    Invalid {
        /// The file.
        path: String,
        /// What does not verify.
        reason: ProtocolError,
    },
    /// The identity or the counter does not match this enclave and TPM.
    #[error("receipt log {path}: {what}: expected {expected}, found {found}")]
    Refused {
        /// The file.
        path: String,
        /// The check.
        what: &'static str,
        /// What continuing the log needs.
        expected: String,
        /// What is there.
        found: String,
    },
    /// The TPM refused (sealing, unsealing, the counter).
    #[error("receipt log {path}: {what}: {reason}")]
    Tpm {
        /// The file.
        path: String,
        /// The operation.
        what: &'static str,
        /// The TPM's error.
        reason: String,
    },
}

/// What the log needs from the TPM: sealing its identity and the NV counter. The agent implements
/// it on `secllama_tpm::Tpm`; the tests on an in-memory stand-in.
pub trait LogTpm {
    /// Seals `secret` to the enclave's measured PCRs; returns the sealed blob.
    fn seal(&mut self, secret: &[u8]) -> Result<Vec<u8>, String>;
    /// Unseals a blob from [`LogTpm::seal`] (fails under other PCR values).
    fn unseal(&mut self, sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>, String>;
    /// The counter's value (defining it first if needed).
    fn counter(&mut self) -> Result<u64, String>;
    /// Increments the counter; returns the new value.
    fn increment(&mut self) -> Result<u64, String>;
}

/// Maps a TPM failure of `what` on the log at `path` to [`LogError::Tpm`].
fn tpm_error(path: &str, what: &'static str) -> impl FnOnce(String) -> LogError {
    let path = path.to_string();
    move |reason| LogError::Tpm { path, what, reason }
}

/// The open receipt log.
#[derive(Debug)]
pub struct ReceiptLog {
    path: PathBuf,
    file: Arc<LogFile>,
    log: Verified,
    key: SigningKey,
    /// The counter value the next head takes.
    next_counter: u64,
    /// The TPM counter's value as last seen (below `next_counter - 1` only after a failed
    /// increment, which the next head catches up first).
    tpm_counter: u64,
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl ReceiptLog {
    /// Opens the log on `file` (read and append; the launcher's descriptor or the path opened):
    /// creates the identity and first head in an empty file, else verifies every record, unseals
    /// the identity and checks the TPM counter (see the module docs). `path` names the file.
    pub fn open(file: std::fs::File, path: &Path, tpm: &mut dyn LogTpm) -> Result<Self, LogError> {
        let p = path.display().to_string();
        let (file, records) = LogFile::open(file, path)?;
        let file = Arc::new(file);
        let log = receipt_log::verify(&records).map_err(|reason| LogError::Invalid {
            path: p.clone(),
            reason,
        })?;
        let tpm_err = |what| tpm_error(&p, what);
        let refused = |what: &'static str, expected: String, found: String| LogError::Refused {
            path: p.clone(),
            what,
            expected,
            found,
        };
        let Some(identity) = log.identity.clone() else {
            return Self::create(path, file, tpm);
        };
        let secret = tpm.unseal(&identity.sealed).map_err(|e| {
            refused(
                "log identity",
                "the identity sealed to this TPM and these measured PCRs (the enclave that started this log)"
                    .into(),
                format!("it does not unseal ({e}); a changed enclave starts a new log file"),
            )
        })?;
        let (key, created) = split_secret(&secret).ok_or_else(|| {
            refused(
                "log identity",
                "a 32-byte scalar and an 8-byte counter".into(),
                format!("{} bytes", secret.len()),
            )
        })?;
        if key.public() != identity.key {
            return Err(refused(
                "log identity",
                "the sealed key's public part".into(),
                "another public key in the identity record".into(),
            ));
        }
        let in_file = log.last_head().map_or(created, |h| h.head.counter);
        let mut tpm_now = tpm.counter().map_err(tpm_err("reading the NV counter"))?;
        if in_file == tpm_now + 1 {
            // The last head was written but the agent stopped before counting it.
            tpm_now = tpm
                .increment()
                .map_err(tpm_err("incrementing the NV counter"))?;
        }
        if in_file < tpm_now {
            return Err(refused(
                "rollback",
                format!("the last head's counter to be the TPM counter {tpm_now}"),
                format!(
                    "{in_file}: the file is an older copy of the log (or its newest heads were cut off)"
                ),
            ));
        } else if in_file != tpm_now {
            return Err(refused(
                "TPM counter",
                format!(
                    "{in_file} or {} (the log's last head)",
                    in_file.saturating_sub(1)
                ),
                format!("{tpm_now}: another TPM, or its counter was redefined"),
            ));
        }
        tracing::info!(
            target: "secllama::log",
            path = %p,
            entries = log.tree.len(),
            heads = log.heads.len(),
            counter = tpm_now,
            "receipt log opened; its identity unsealed"
        );
        Ok(Self {
            path: path.to_path_buf(),
            file,
            log,
            key,
            next_counter: in_file + 1,
            tpm_counter: tpm_now,
        })
    }

    fn create(path: &Path, file: Arc<LogFile>, tpm: &mut dyn LogTpm) -> Result<Self, LogError> {
        let p = path.display().to_string();
        let tpm_err = |what| tpm_error(&p, what);
        let key = SigningKey::generate(&mut rand_core::OsRng);
        let created = tpm.counter().map_err(tpm_err("reading the NV counter"))?;
        let mut secret = Zeroizing::new(key.to_scalar().to_vec());
        secret.extend_from_slice(&created.to_be_bytes());
        let sealed = tpm
            .seal(&secret)
            .map_err(tpm_err("sealing the log identity"))?;
        let identity = LogIdentity {
            key: key.public(),
            sealed,
        };
        let body = identity.to_bytes().map_err(|reason| LogError::Invalid {
            path: p.clone(),
            reason,
        })?;
        let end = file.append(Kind::Identity, &body)?;
        file.durable_blocking(end)?;
        let log = Verified {
            identity: Some(identity),
            ..Verified::default()
        };
        let mut this = Self {
            path: path.to_path_buf(),
            file,
            log,
            key,
            next_counter: created + 1,
            tpm_counter: created,
        };
        this.sign_head(tpm)?;
        tracing::info!(
            target: "secllama::log",
            path = %p,
            counter = created,
            "receipt log created: new identity sealed to the measured PCRs"
        );
        Ok(this)
    }

    /// The file, for waiting on durability outside the log's lock.
    pub fn file(&self) -> Arc<LogFile> {
        self.file.clone()
    }

    /// Number of entries.
    pub fn len(&self) -> u64 {
        self.log.tree.len()
    }

    /// Whether there is no entry.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The root of the current tree.
    pub fn root(&self) -> Hash {
        self.log
            .tree
            .root(self.len())
            .unwrap_or_else(|_| rfc9162::empty_root())
    }

    /// The log identity key's public part.
    pub fn identity(&self) -> secllama_protocol::cose::CoseP256Key {
        self.key.public()
    }

    /// The latest signed head.
    pub fn last_head(&self) -> Option<&SignedHead> {
        self.log.last_head()
    }

    /// Appends a receipt; returns its index and the file length to wait for
    /// ([`LogFile::durable`]) before the receipt is acknowledged.
    pub fn append(&mut self, receipt: &[u8]) -> Result<(u64, u64), LogError> {
        let end = self.file.append(Kind::Entry, receipt)?;
        let index = self.log.tree.push(rfc9162::leaf_hash(receipt));
        Ok((index, end))
    }

    /// Signs a head over the current tree, appends it, waits until it is durable, then counts it
    /// on the TPM (see the module docs for the order). Blocks on `fdatasync` and the TPM.
    pub fn sign_head(&mut self, tpm: &mut dyn LogTpm) -> Result<SignedHead, LogError> {
        let p = self.path.display().to_string();
        let invalid = |reason| LogError::Invalid {
            path: p.clone(),
            reason,
        };
        let count = |tpm: &mut dyn LogTpm, expected: u64| -> Result<u64, LogError> {
            let counted = tpm
                .increment()
                .map_err(tpm_error(&p, "incrementing the NV counter"))?;
            if counted != expected {
                return Err(LogError::Refused {
                    path: p.clone(),
                    what: "TPM counter",
                    expected: expected.to_string(),
                    found: format!(
                        "{counted} after incrementing: something else counts on this index"
                    ),
                });
            }
            Ok(counted)
        };
        // A head whose increment failed earlier is counted first.
        while self.tpm_counter + 1 < self.next_counter {
            self.tpm_counter = count(tpm, self.tpm_counter + 1)?;
        }
        let head = TreeHead {
            log_id: self.key.public().kid().map_err(invalid)?,
            size: self.len(),
            root: Sha256Digest(self.root()),
            time_ms: now_ms(),
            counter: self.next_counter,
        };
        let bytes = sign_tree_head(&head, &self.key).map_err(invalid)?;
        let end = self.file.append(Kind::TreeHead, &bytes)?;
        self.file.durable_blocking(end)?;
        // In the file: the next head takes the next value whatever the TPM says now.
        self.next_counter += 1;
        let signed = SignedHead { head, bytes };
        self.log.heads.push(signed.clone());
        self.tpm_counter = count(tpm, head.counter)?;
        Ok(signed)
    }

    /// The inclusion path of entry `index` in the tree of `size` entries.
    pub fn inclusion_proof(
        &self,
        index: u64,
        size: u64,
    ) -> Result<Vec<Hash>, rfc9162::Rfc9162Error> {
        self.log.tree.inclusion_proof(index, size)
    }

    /// The consistency proof between sizes `first` and `second`.
    pub fn consistency_proof(
        &self,
        first: u64,
        second: u64,
    ) -> Result<Vec<Hash>, rfc9162::Rfc9162Error> {
        self.log.tree.consistency_proof(first, second)
    }

    /// The root of the tree of `size` entries.
    pub fn root_at(&self, size: u64) -> Result<Hash, rfc9162::Rfc9162Error> {
        self.log.tree.root(size)
    }
}

/// The sealed secret: the 32-byte key scalar, then the counter at creation (u64 big-endian).
fn split_secret(secret: &[u8]) -> Option<(SigningKey, u64)> {
    let (scalar, counter) = secret.split_first_chunk::<32>()?;
    let counter: [u8; 8] = counter.try_into().ok()?;
    let key = SigningKey::from_scalar(scalar).ok()?;
    Some((key, u64::from_be_bytes(counter)))
}

#[cfg(test)]
mod tests;
