//! The receipt log's file on the host's disk: reading it at start (a torn last record is cut
//! off), appending records, and making them durable. The record format and its checks are
//! [`secllama_protocol::receipt_log`].
//!
//! Durability is a group commit: [`LogFile::append`] writes the record at once (its place is
//! fixed) and wakes the sync thread, which `fdatasync`s the file and publishes how far the file is
//! durable; [`LogFile::durable`] waits for that. A caller acknowledges an entry (sends its receipt)
//! only after [`LogFile::durable`] returned, so a crash never loses an acknowledged entry: what a
//! crash tears is only ever unacknowledged. One `fdatasync` covers every record written while the
//! previous one ran. If a sync fails, every later append and wait fails: the enclave stops issuing
//! receipts it cannot persist.
//!
//! The file is a regular file (process mode: the launcher's descriptor, opened for appending) or
//! a whole block device (VM mode: the host-provided log disk, `docs/log.md`). A device has a
//! fixed size and reads as zeros past the log: records are written at the log's end with
//! `pwrite`, a torn last write is overwritten with zeros instead of cut off, and an append that
//! does not fit is refused ([`LogFileError::Full`]).

use secllama_protocol::receipt_log::{self, Kind, Record};
use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};

/// A log file that cannot be read or written.
#[derive(Debug, thiserror::Error)]
pub enum LogFileError {
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
    /// The file's records are damaged or invalid.
    #[error("receipt log {path}: {reason}")]
    Invalid {
        /// The file.
        path: String,
        /// What is wrong (with the record's index and offset).
        reason: secllama_protocol::ProtocolError,
    },
    /// The log disk has no room for the record.
    #[error(
        "receipt log {path}: the log disk is full ({capacity} bytes); no more receipts are issued until the operator gives it a larger disk"
    )]
    Full {
        /// The device.
        path: String,
        /// Its size in bytes.
        capacity: u64,
    },
    /// An earlier `fdatasync` failed.
    #[error(
        "receipt log {path}: an earlier fdatasync failed; no more receipts are issued until the agent restarts"
    )]
    SyncFailed {
        /// The file.
        path: String,
    },
}

/// How far the file is durable, shared with the sync thread.
#[derive(Debug, Default)]
struct State {
    /// File length written so far.
    written: u64,
    /// File length known durable.
    synced: u64,
    failed: bool,
    stop: bool,
}

#[derive(Debug)]
struct Shared {
    file: File,
    state: Mutex<State>,
    /// Wakes the sync thread (new data or stop).
    work: Condvar,
    /// Wakes blocking waiters.
    done: Condvar,
    /// Wakes async waiters with the durable length (or `u64::MAX` after a failure).
    durable: tokio::sync::watch::Sender<u64>,
}

/// Where the log lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Medium {
    /// A regular file that grows with each append (open for appending).
    File,
    /// A fixed-size disk of `capacity` bytes, zeros past the log (a block device).
    Disk {
        /// Its size in bytes.
        capacity: u64,
    },
}

/// An open log file: its records as read at open, then appends with group-committed durability.
#[derive(Debug)]
pub struct LogFile {
    path: PathBuf,
    medium: Medium,
    shared: Arc<Shared>,
    syncer: Option<std::thread::JoinHandle<()>>,
}

impl Drop for LogFile {
    fn drop(&mut self) {
        if let Ok(mut s) = self.shared.state.lock() {
            s.stop = true;
        }
        self.shared.work.notify_all();
        if let Some(t) = self.syncer.take() {
            let _ = t.join();
        }
    }
}

impl LogFile {
    /// Reads `file` (open for reading and appending: the descriptor the launcher hands over, so
    /// the agent cannot replace the file), cuts off a torn last record, and starts the sync
    /// thread. `path` names the file in messages. Returns the file and its records.
    pub fn open(file: File, path: &Path) -> Result<(Self, Vec<Record>), LogFileError> {
        use std::os::unix::fs::FileTypeExt;
        let meta = file.metadata().map_err(|reason| LogFileError::Io {
            path: path.display().to_string(),
            op: "reading its metadata",
            reason,
        })?;
        let medium = if meta.file_type().is_block_device() {
            let capacity = (&file)
                .seek(SeekFrom::End(0))
                .map_err(|reason| LogFileError::Io {
                    path: path.display().to_string(),
                    op: "reading the disk's size",
                    reason,
                })?;
            Medium::Disk { capacity }
        } else {
            Medium::File
        };
        Self::open_on(file, path, medium)
    }

    /// [`LogFile::open`] with the medium given (a test gives a zero-filled regular file as a
    /// disk).
    pub fn open_on(
        mut file: File,
        path: &Path,
        medium: Medium,
    ) -> Result<(Self, Vec<Record>), LogFileError> {
        let p = path.display().to_string();
        let io = |op: &'static str| {
            let p = p.clone();
            move |reason| LogFileError::Io {
                path: p,
                op,
                reason,
            }
        };
        let mut bytes = Vec::new();
        file.seek(SeekFrom::Start(0)).map_err(io("seeking"))?;
        file.read_to_end(&mut bytes).map_err(io("reading"))?;
        let parsed = receipt_log::parse(&bytes).map_err(|reason| LogFileError::Invalid {
            path: p.clone(),
            reason,
        })?;
        // A torn last record: never acknowledged, since acknowledgement waits for its sync.
        match medium {
            Medium::File if parsed.valid_len < bytes.len() as u64 => {
                file.set_len(parsed.valid_len)
                    .map_err(io("cutting off a torn last record"))?;
                file.sync_data().map_err(io("syncing"))?;
            }
            Medium::Disk { .. } => {
                let start = usize::try_from(parsed.valid_len).unwrap_or(usize::MAX);
                let torn = bytes
                    .get(start..)
                    .and_then(|tail| tail.iter().rposition(|&b| b != 0))
                    .map_or(0, |last| last + 1);
                if torn > 0 {
                    use std::os::unix::fs::FileExt;
                    file.write_all_at(&vec![0u8; torn], parsed.valid_len)
                        .map_err(io("zeroing a torn last record"))?;
                    file.sync_data().map_err(io("syncing"))?;
                }
            }
            Medium::File => {}
        }
        let (durable, _) = tokio::sync::watch::channel(parsed.valid_len);
        let shared = Arc::new(Shared {
            file,
            state: Mutex::new(State {
                written: parsed.valid_len,
                synced: parsed.valid_len,
                failed: false,
                stop: false,
            }),
            work: Condvar::new(),
            done: Condvar::new(),
            durable,
        });
        let s = shared.clone();
        let syncer = std::thread::Builder::new()
            .name("receipt-log-sync".into())
            .spawn(move || sync_loop(&s))
            .map_err(io("starting the sync thread"))?;
        Ok((
            Self {
                path: path.to_path_buf(),
                medium,
                shared,
                syncer: Some(syncer),
            },
            parsed.records,
        ))
    }

    fn failed(&self) -> LogFileError {
        LogFileError::SyncFailed {
            path: self.path.display().to_string(),
        }
    }

    /// Appends a record; returns the file length that must be durable before it is
    /// acknowledged (see [`LogFile::durable`]).
    pub fn append(&self, kind: Kind, body: &[u8]) -> Result<u64, LogFileError> {
        let record = receipt_log::encode(kind, body).map_err(|reason| LogFileError::Invalid {
            path: self.path.display().to_string(),
            reason,
        })?;
        let mut state = self.shared.state.lock().map_err(|_| self.failed())?;
        if state.failed {
            return Err(self.failed());
        }
        let io = |reason| LogFileError::Io {
            path: self.path.display().to_string(),
            op: "appending",
            reason,
        };
        match self.medium {
            Medium::File => (&self.shared.file).write_all(&record).map_err(io)?,
            Medium::Disk { capacity } => {
                use std::os::unix::fs::FileExt;
                if state.written + record.len() as u64 > capacity {
                    return Err(LogFileError::Full {
                        path: self.path.display().to_string(),
                        capacity,
                    });
                }
                self.shared
                    .file
                    .write_all_at(&record, state.written)
                    .map_err(io)?;
            }
        }
        state.written += record.len() as u64;
        let end = state.written;
        drop(state);
        self.shared.work.notify_one();
        Ok(end)
    }

    /// Waits until the file is durable up to `end` (an [`LogFile::append`] result).
    pub async fn durable(&self, end: u64) -> Result<(), LogFileError> {
        let mut rx = self.shared.durable.subscribe();
        let reached = rx
            .wait_for(|&d| d >= end)
            .await
            .map(|d| *d)
            .map_err(|_| self.failed())?;
        if reached == u64::MAX {
            return Err(self.failed());
        }
        Ok(())
    }

    /// As [`LogFile::durable`], blocking the calling thread.
    pub fn durable_blocking(&self, end: u64) -> Result<(), LogFileError> {
        let mut state = self.shared.state.lock().map_err(|_| self.failed())?;
        while state.synced < end && !state.failed {
            state = self.shared.done.wait(state).map_err(|_| self.failed())?;
        }
        if state.failed {
            return Err(self.failed());
        }
        Ok(())
    }

    /// Records that a sync failed (tests use it to see what the enclave does then).
    #[cfg(test)]
    pub fn fail_for_test(&self) {
        if let Ok(mut s) = self.shared.state.lock() {
            s.failed = true;
        }
        self.shared.durable.send_replace(u64::MAX);
        self.shared.done.notify_all();
    }
}

fn sync_loop(shared: &Shared) {
    loop {
        let target = {
            let Ok(mut state) = shared.state.lock() else {
                return;
            };
            while state.written == state.synced && !state.stop && !state.failed {
                state = match shared.work.wait(state) {
                    Ok(s) => s,
                    Err(_) => return,
                };
            }
            if state.failed || (state.stop && state.written == state.synced) {
                return;
            }
            state.written
        };
        // Outside the lock: appends go on while the disk syncs, and the next sync covers them.
        let ok = shared.file.sync_data().is_ok();
        let Ok(mut state) = shared.state.lock() else {
            return;
        };
        if ok {
            state.synced = state.synced.max(target);
            shared.durable.send_replace(state.synced);
        } else {
            state.failed = true;
            shared.durable.send_replace(u64::MAX);
        }
        shared.done.notify_all();
    }
}
