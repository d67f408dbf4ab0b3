//! The event log file the TPM's extensions are recorded in: the crypto-agile TCG format (PC Client
//! PFP §10.2) that the platform tool `tpm2_eventlog` parses. The record encoding — Spec ID header,
//! TCG_PCR_EVENT2, EV_EVENT_TAG — lives in `secllama_measurements::eventlog::record`, shared with
//! launch prediction; this module owns the file: creating it with its header, checking the header of
//! an existing one, appending records durably.

use crate::{Result, TpmError};
pub use secllama_measurements::eventlog::Bank as HashAlg;
pub use secllama_measurements::eventlog::events::{EV_EVENT_TAG, EV_NO_ACTION};
pub use secllama_measurements::eventlog::record::{
    Measurement, SECLLAMA_TAGGED_EVENT_ID, spec_id_header, tagged_event_data,
};
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

/// Largest event log [`EventLogWriter::read_all`] reads (a launch log is a few KiB).
pub const MAX_LOG_BYTES: usize = 16 << 20;

/// Appends measurements to a crypto-agile event log file, creating it with its header.
#[derive(Debug)]
pub struct EventLogWriter {
    path: PathBuf,
    file: File,
    banks: Vec<HashAlg>,
}

impl EventLogWriter {
    /// Opens `path` for appending. A new or empty file gets the header for `banks`; an existing
    /// file must start with exactly that header (a log for other banks is an error, not a merge).
    pub fn open(path: &Path, banks: &[HashAlg]) -> Result<Self> {
        let file = OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .open(path)
            .map_err(|source| TpmError::Io {
                path: path.display().to_string(),
                op: "opening",
                reason: source,
            })?;
        Self::from_file(file, path, banks)
    }

    /// As [`EventLogWriter::open`], on a file already open for reading and appending (a
    /// descriptor the launcher handed over); `name` is what messages call it.
    pub fn from_file(mut file: File, name: &Path, banks: &[HashAlg]) -> Result<Self> {
        let io = |op: &'static str| {
            let path = name.display().to_string();
            move |source| TpmError::Io {
                path,
                op,
                reason: source,
            }
        };
        let header = spec_id_header(banks);
        let mut existing = Vec::new();
        (&mut file)
            .take(header.len() as u64)
            .read_to_end(&mut existing)
            .map_err(io("reading the header"))?;
        if existing.is_empty() {
            file.write_all(&header).map_err(io("writing the header"))?;
            file.sync_data().map_err(io("syncing"))?;
        } else if existing != header {
            return Err(TpmError::unexpected(
                "event log header",
                format!("a Spec ID Event03 header for banks {banks:?}"),
                format!(
                    "{} bytes of another header in {}",
                    existing.len(),
                    name.display()
                ),
            ));
        }
        Ok(Self {
            path: name.to_path_buf(),
            file,
            banks: banks.to_vec(),
        })
    }

    /// Continues a firmware's TCG event log (VM mode: the copy of
    /// `/sys/kernel/security/tpm0/binary_bios_measurements` that `secllama-init` made): the file
    /// must already hold a crypto-agile log (TCG PC Client PFP 10.4.5.1, Spec ID Event03) whose
    /// banks are exactly `banks`; events are appended after the firmware's.
    ///
    /// # Errors
    /// The file is empty, not a crypto-agile log, or records other banks.
    pub fn continuing(mut file: File, name: &Path, banks: &[HashAlg]) -> Result<Self> {
        let mut existing = Vec::new();
        (&mut file)
            .take(MAX_LOG_BYTES as u64)
            .read_to_end(&mut existing)
            .map_err(|source| TpmError::Io {
                path: name.display().to_string(),
                op: "reading the firmware log",
                reason: source,
            })?;
        let log = secllama_measurements::eventlog::EventLog::parse(&existing).map_err(|e| {
            TpmError::unexpected(
                "firmware event log",
                "a crypto-agile TCG event log (Spec ID Event03)".to_string(),
                format!("{} ({e})", name.display()),
            )
        })?;
        if log.format != secllama_measurements::eventlog::Format::CryptoAgile {
            return Err(TpmError::unexpected(
                "firmware event log",
                "a crypto-agile TCG event log (Spec ID Event03)".to_string(),
                format!("a legacy SHA-1 log in {}", name.display()),
            ));
        }
        let mut found: Vec<HashAlg> = log.banks.clone();
        found.sort();
        let mut want = banks.to_vec();
        want.sort();
        if found != want {
            return Err(TpmError::unexpected(
                "firmware event log banks",
                format!("the TPM's active banks {want:?}"),
                format!("{found:?} in {}", name.display()),
            ));
        }
        Ok(Self {
            path: name.to_path_buf(),
            file,
            banks: banks.to_vec(),
        })
    }

    /// The whole log as it is now (read from offset 0, whatever the file position).
    pub fn read_all(&self) -> Result<Vec<u8>> {
        use std::os::unix::fs::FileExt;
        let io = |source| TpmError::Io {
            path: self.path.display().to_string(),
            op: "reading",
            reason: source,
        };
        let len = self.file.metadata().map_err(io)?.len();
        let mut bytes = vec![
            0u8;
            usize::try_from(len)
                .unwrap_or(usize::MAX)
                .min(MAX_LOG_BYTES)
        ];
        self.file.read_exact_at(&mut bytes, 0).map_err(io)?;
        Ok(bytes)
    }

    /// The banks this log records.
    pub fn banks(&self) -> &[HashAlg] {
        &self.banks
    }

    /// Appends one event and syncs it to disk.
    pub fn append(&mut self, m: &Measurement) -> Result<()> {
        let algs: Vec<HashAlg> = m.digests.iter().map(|(a, _)| *a).collect();
        if algs != self.banks {
            return Err(TpmError::unexpected(
                "measurement digests",
                format!("{:?}", self.banks),
                format!("{algs:?}"),
            ));
        }
        let path = self.path.display().to_string();
        self.file
            .write_all(&m.to_pcr_event2())
            .and_then(|_| self.file.sync_data())
            .map_err(|source| TpmError::Io {
                path,
                op: "appending an event",
                reason: source,
            })
    }
}
