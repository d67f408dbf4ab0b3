//! The receipt log file: every receipt the enclave signs is appended as a record
//! `u32 big-endian length ‖ receipt (COSE_Sign1) ‖ chain (32 bytes)`, where
//! `chain_n = SHA-256(chain_{n-1} ‖ SHA-256(receipt_n))` and `chain_{-1}` is 32 zero bytes. Opening a
//! log recomputes the chain, so a rewritten, reordered or truncated record is detected with its byte
//! offset. (The RFC 9162 Merkle log with signed tree heads replaces this in a later issue.)
//!
//! Durability is a group commit: [`ReceiptLog::append`] writes the record (so its index is fixed and
//! it is in the page cache before the answer ends) and a flusher thread `fdatasync`s the file at most
//! [`SYNC_INTERVAL`] later, one sync for however many receipts arrived meanwhile. A crash can lose
//! at most that window of receipts; the clients hold them, and the host (untrusted, it stores the
//! file) could drop records anyway — signed heads and the TPM NV counter are what reveal that. If a
//! sync ever fails, every later append fails: the enclave stops issuing receipts it cannot persist.

use sha2::{Digest, Sha256};
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Longest time between a receipt's append and its `fdatasync`.
pub const SYNC_INTERVAL: Duration = Duration::from_millis(10);

/// Largest receipt a record may hold.
pub const MAX_RECEIPT: usize = 64 * 1024;

/// A log that cannot be read or written.
#[derive(Debug, thiserror::Error)]
pub enum ReceiptLogError {
    /// File I/O failed.
    #[error("receipt log {path}: {op}: {reason}")]
    Io {
        /// The file.
        path: String,
        /// The operation.
        op: &'static str,
        /// The error.
        reason: std::io::Error,
    },
    /// The file is not a valid chain.
    #[error(
        "receipt log {path}: record {index} at byte offset {offset}: expected {expected}, found {found}"
    )]
    Corrupt {
        /// The file.
        path: String,
        /// The record.
        index: u64,
        /// Its offset.
        offset: usize,
        /// What a valid record has.
        expected: String,
        /// What is there.
        found: String,
    },
}

/// The next chain value.
pub fn chain(prev: &[u8; 32], receipt: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(prev);
    h.update(Sha256::digest(receipt));
    h.finalize().into()
}

/// Verifies a whole log's bytes; returns the receipts and the final chain value.
pub fn verify(path: &str, bytes: &[u8]) -> Result<(Vec<Vec<u8>>, [u8; 32]), ReceiptLogError> {
    let mut head = [0u8; 32];
    let mut receipts = Vec::new();
    let mut pos = 0;
    while pos < bytes.len() {
        let corrupt = |expected: &str, found: String| ReceiptLogError::Corrupt {
            path: path.to_string(),
            index: receipts.len() as u64,
            offset: pos,
            expected: expected.to_string(),
            found,
        };
        let rest = &bytes[pos..];
        let Some((len, rest)) = rest.split_first_chunk::<4>() else {
            return Err(corrupt("a 4-byte length", format!("{} bytes", rest.len())));
        };
        let len = u32::from_be_bytes(*len) as usize;
        if len == 0 || len > MAX_RECEIPT || rest.len() < len + 32 {
            return Err(corrupt(
                "a receipt of 1 to 65536 bytes and its chain value",
                format!("length {len} with {} bytes left", rest.len()),
            ));
        }
        let receipt = &rest[..len];
        let next = chain(&head, receipt);
        if rest[len..len + 32] != next {
            return Err(corrupt(
                "the chain value of the records before it",
                "another value".into(),
            ));
        }
        head = next;
        receipts.push(receipt.to_vec());
        pos += 4 + len + 32;
    }
    Ok((receipts, head))
}

/// State shared with the flusher thread.
#[derive(Debug)]
struct Flush {
    file: File,
    dirty: AtomicBool,
    failed: AtomicBool,
    stop: AtomicBool,
}

impl Flush {
    fn sync_if_dirty(&self) {
        if self.dirty.swap(false, Ordering::AcqRel) && self.file.sync_data().is_err() {
            self.failed.store(true, Ordering::Release);
        }
    }
}

/// An open, verified receipt log.
#[derive(Debug)]
pub struct ReceiptLog {
    path: PathBuf,
    flush: Arc<Flush>,
    flusher: Option<std::thread::JoinHandle<()>>,
    head: [u8; 32],
    len: u64,
}

impl Drop for ReceiptLog {
    fn drop(&mut self) {
        self.flush.stop.store(true, Ordering::Release);
        if let Some(t) = self.flusher.take() {
            let _ = t.join();
        }
        self.flush.sync_if_dirty();
    }
}

impl ReceiptLog {
    /// Opens (or creates) the log and verifies the whole chain.
    pub fn open(path: &Path) -> Result<Self, ReceiptLogError> {
        let file = OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .open(path)
            .map_err(|source| ReceiptLogError::Io {
                path: path.display().to_string(),
                op: "opening",
                reason: source,
            })?;
        Self::from_file(file, path)
    }

    /// As [`ReceiptLog::open`], on a file already open for reading and appending (the descriptor
    /// the launcher hands over, so the agent cannot replace the file); `path` names it in
    /// messages.
    pub fn from_file(mut file: std::fs::File, path: &Path) -> Result<Self, ReceiptLogError> {
        let p = path.display().to_string();
        let io = |op: &'static str| {
            let p = p.clone();
            move |source| ReceiptLogError::Io {
                path: p,
                op,
                reason: source,
            }
        };
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).map_err(io("reading"))?;
        let (receipts, head) = verify(&p, &bytes)?;
        let flush = Arc::new(Flush {
            file,
            dirty: AtomicBool::new(false),
            failed: AtomicBool::new(false),
            stop: AtomicBool::new(false),
        });
        let f = flush.clone();
        let flusher = std::thread::Builder::new()
            .name("receipt-sync".into())
            .spawn(move || {
                while !f.stop.load(Ordering::Acquire) {
                    std::thread::sleep(SYNC_INTERVAL);
                    f.sync_if_dirty();
                }
            })
            .map_err(io("starting the sync thread"))?;
        Ok(Self {
            path: path.to_path_buf(),
            flush,
            flusher: Some(flusher),
            head,
            len: receipts.len() as u64,
        })
    }

    /// Number of receipts.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether the log is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The current chain value.
    pub fn head(&self) -> [u8; 32] {
        self.head
    }

    /// Waits until every appended receipt is on disk.
    pub fn sync(&self) -> Result<(), ReceiptLogError> {
        self.flush.dirty.store(true, Ordering::Release);
        self.flush.sync_if_dirty();
        self.check_synced()
    }

    fn check_synced(&self) -> Result<(), ReceiptLogError> {
        if self.flush.failed.load(Ordering::Acquire) {
            return Err(ReceiptLogError::Io {
                path: self.path.display().to_string(),
                op: "syncing (an earlier fdatasync failed; no more receipts are issued)",
                reason: std::io::Error::other("fdatasync failed"),
            });
        }
        Ok(())
    }

    /// Appends a receipt (on disk within [`SYNC_INTERVAL`]); returns its index.
    pub fn append(&mut self, receipt: &[u8]) -> Result<u64, ReceiptLogError> {
        let path = self.path.display().to_string();
        if receipt.is_empty() || receipt.len() > MAX_RECEIPT {
            return Err(ReceiptLogError::Corrupt {
                path,
                index: self.len,
                offset: 0,
                expected: "a receipt of 1 to 65536 bytes".into(),
                found: format!("{} bytes", receipt.len()),
            });
        }
        let next = chain(&self.head, receipt);
        let mut record = Vec::with_capacity(4 + receipt.len() + 32);
        record.extend_from_slice(&(receipt.len() as u32).to_be_bytes());
        record.extend_from_slice(receipt);
        record.extend_from_slice(&next);
        self.check_synced()?;
        (&self.flush.file)
            .write_all(&record)
            .map_err(|source| ReceiptLogError::Io {
                path,
                op: "appending",
                reason: source,
            })?;
        self.flush.dirty.store(true, Ordering::Release);
        self.head = next;
        self.len += 1;
        Ok(self.len - 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn appends_reopen_and_every_tampering_is_detected() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("receipts.log");
        let mut log = ReceiptLog::open(&path).unwrap();
        for r in [&b"receipt one"[..], b"receipt two", b"receipt three"] {
            log.append(r).unwrap();
        }
        let head = log.head();
        drop(log);
        let log = ReceiptLog::open(&path).unwrap();
        assert_eq!((log.len(), log.head()), (3, head));
        let bytes = std::fs::read(&path).unwrap();
        // Flip any byte, cut at any point but a record boundary, or drop the first record: refused.
        let boundaries = [0usize, 4 + 11 + 32, 2 * (4 + 11 + 32), bytes.len()];
        for i in 0..bytes.len() {
            let mut b = bytes.clone();
            b[i] ^= 1;
            assert!(verify("t", &b).is_err(), "flip at {i}");
        }
        for cut in 0..bytes.len() {
            assert_eq!(
                verify("t", &bytes[..cut]).is_ok(),
                boundaries.contains(&cut),
                "cut at {cut}"
            );
        }
        assert!(
            verify("t", &bytes[4 + 11 + 32..]).is_err(),
            "dropping the first record breaks the chain"
        );
    }

    /// Appended records are in the file at once (so the log index is fixed before the answer
    /// ends) and the file is synced by `sync`; once a sync has failed, no further receipt is
    /// accepted.
    #[test]
    fn appends_are_visible_at_once_and_a_failed_sync_stops_the_log() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("receipts.log");
        let mut log = ReceiptLog::open(&path).unwrap();
        assert_eq!(log.append(b"first").unwrap(), 0);
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 4 + 5 + 32);
        log.sync().unwrap();
        // What the flusher records when fdatasync fails.
        log.flush.failed.store(true, Ordering::Release);
        let err = log.append(b"second").unwrap_err().to_string();
        assert!(err.contains("no more receipts are issued"), "{err}");
        assert!(log.sync().is_err());
        assert_eq!(
            std::fs::metadata(&path).unwrap().len(),
            4 + 5 + 32,
            "nothing appended"
        );
        assert_eq!(log.len(), 1);
    }
}
