//! The TCG crypto-agile event log (TCG PC Client Platform Firmware Profile §10.2): one legacy
//! TCG_PCR_EVENT header carrying the `Spec ID Event03` (TCG_EfiSpecIdEvent) that lists the digest
//! algorithms, then one TCG_PCR_EVENT2 per extension. secllama's own events are `EV_EVENT_TAG`
//! (TCG_PCClientTaggedEvent: tag id, size, data) whose data is a short description of what was
//! measured; the digests are of the measured content itself. The platform tool `tpm2_eventlog`
//! parses this file. All integers are little-endian, as the spec requires.

use crate::{Result, TpmError};
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

/// EV_NO_ACTION: not extended; used for the Spec ID header.
pub const EV_NO_ACTION: u32 = 0x0000_0003;
/// EV_EVENT_TAG: a tagged event (TCG_PCClientTaggedEvent).
pub const EV_EVENT_TAG: u32 = 0x0000_0006;
/// `taggedEventID` of secllama's events ("SLMA").
pub const SECLLAMA_TAGGED_EVENT_ID: u32 = 0x534c_4d41;
const SPEC_ID_SIGNATURE: &[u8; 16] = b"Spec ID Event03\0";

/// A digest algorithm of a PCR bank.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum HashAlg {
    /// TPM_ALG_SHA1 (0x0004).
    Sha1,
    /// TPM_ALG_SHA256 (0x000B).
    Sha256,
    /// TPM_ALG_SHA384 (0x000C).
    Sha384,
    /// TPM_ALG_SHA512 (0x000D).
    Sha512,
}

impl HashAlg {
    /// The TPM_ALG_ID.
    pub fn alg_id(self) -> u16 {
        match self {
            HashAlg::Sha1 => 0x0004,
            HashAlg::Sha256 => 0x000b,
            HashAlg::Sha384 => 0x000c,
            HashAlg::Sha512 => 0x000d,
        }
    }

    /// Digest size in bytes.
    pub fn size(self) -> usize {
        match self {
            HashAlg::Sha1 => 20,
            HashAlg::Sha256 => 32,
            HashAlg::Sha384 => 48,
            HashAlg::Sha512 => 64,
        }
    }

    /// The bank name tpm2-tools uses ("sha256").
    pub fn name(self) -> &'static str {
        match self {
            HashAlg::Sha1 => "sha1",
            HashAlg::Sha256 => "sha256",
            HashAlg::Sha384 => "sha384",
            HashAlg::Sha512 => "sha512",
        }
    }

    /// Hashes `data`.
    pub fn digest(self, data: &[u8]) -> Vec<u8> {
        use sha2::Digest;
        match self {
            HashAlg::Sha1 => sha1::Sha1::digest(data).to_vec(),
            HashAlg::Sha256 => sha2::Sha256::digest(data).to_vec(),
            HashAlg::Sha384 => sha2::Sha384::digest(data).to_vec(),
            HashAlg::Sha512 => sha2::Sha512::digest(data).to_vec(),
        }
    }

    /// The PCR extend operation: H(old ‖ digest).
    pub fn extend(self, old: &[u8], digest: &[u8]) -> Vec<u8> {
        let mut buf = Vec::with_capacity(old.len() + digest.len());
        buf.extend_from_slice(old);
        buf.extend_from_slice(digest);
        self.digest(&buf)
    }
}

/// One measurement: what is extended and logged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Measurement {
    /// The PCR.
    pub pcr: u32,
    /// The digest of the measured content, one per bank, in bank order.
    pub digests: Vec<(HashAlg, Vec<u8>)>,
    /// The event type (secllama uses [`EV_EVENT_TAG`]).
    pub event_type: u32,
    /// The event data as logged.
    pub event_data: Vec<u8>,
}

impl Measurement {
    /// An `EV_EVENT_TAG` measurement of `content` into `pcr` for `banks`, described by `description`.
    pub fn tagged(pcr: u32, banks: &[HashAlg], content: &[u8], description: &str) -> Self {
        Self {
            pcr,
            digests: banks.iter().map(|b| (*b, b.digest(content))).collect(),
            event_type: EV_EVENT_TAG,
            event_data: tagged_event_data(description.as_bytes()),
        }
    }

    /// The TCG_PCR_EVENT2 encoding of this measurement.
    pub fn to_pcr_event2(&self) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&self.pcr.to_le_bytes());
        out.extend_from_slice(&self.event_type.to_le_bytes());
        out.extend_from_slice(&(self.digests.len() as u32).to_le_bytes());
        for (alg, d) in &self.digests {
            out.extend_from_slice(&alg.alg_id().to_le_bytes());
            out.extend_from_slice(d);
        }
        out.extend_from_slice(&(self.event_data.len() as u32).to_le_bytes());
        out.extend_from_slice(&self.event_data);
        out
    }
}

/// TCG_PCClientTaggedEvent { taggedEventID, taggedEventDataSize, taggedEventData }.
pub fn tagged_event_data(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + data.len());
    out.extend_from_slice(&SECLLAMA_TAGGED_EVENT_ID.to_le_bytes());
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
    out.extend_from_slice(data);
    out
}

/// The log header: a TCG_PCR_EVENT (SHA-1 format) of type EV_NO_ACTION holding TCG_EfiSpecIdEvent.
pub fn spec_id_header(banks: &[HashAlg]) -> Vec<u8> {
    let mut spec = Vec::new();
    spec.extend_from_slice(SPEC_ID_SIGNATURE);
    spec.extend_from_slice(&0u32.to_le_bytes()); // platformClass: client
    spec.extend_from_slice(&[0, 2, 0, 2]); // specVersionMinor 0, Major 2, errata 0, uintnSize 2 (UINT64)
    spec.extend_from_slice(&(banks.len() as u32).to_le_bytes());
    for b in banks {
        spec.extend_from_slice(&b.alg_id().to_le_bytes());
        spec.extend_from_slice(&(b.size() as u16).to_le_bytes());
    }
    spec.push(0); // vendorInfoSize
    let mut out = Vec::new();
    out.extend_from_slice(&0u32.to_le_bytes()); // pcrIndex
    out.extend_from_slice(&EV_NO_ACTION.to_le_bytes());
    out.extend_from_slice(&[0u8; 20]); // SHA-1 digest: zero for EV_NO_ACTION
    out.extend_from_slice(&(spec.len() as u32).to_le_bytes());
    out.extend_from_slice(&spec);
    out
}

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
        let io = |op: &'static str| {
            let path = path.display().to_string();
            move |source| TpmError::Io { path, op, source }
        };
        let mut file = OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .open(path)
            .map_err(io("opening"))?;
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
                    path.display()
                ),
            ));
        }
        Ok(Self {
            path: path.to_path_buf(),
            file,
            banks: banks.to_vec(),
        })
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
                source,
            })
    }
}
