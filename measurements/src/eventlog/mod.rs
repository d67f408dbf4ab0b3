//! TCG event logs (TCG PC Client Platform Firmware Profile §10): parsing of the legacy SHA-1 format
//! (TCG_PCR_EVENT, [`legacy`]) and the crypto-agile format (Spec ID Event03 + TCG_PCR_EVENT2,
//! [`agile`]), decoding of the common events ([`events`]), and replay to final PCR values.
//!
//! Parsing is strict and bounded: every length is checked against the bytes that remain before it
//! is used, so a malformed log gives an [`EventLogError`] with the byte offset and never an
//! allocation larger than the input. Algorithms the log declares but this crate does not know are
//! skipped by their declared size and reported in [`EventLog::warnings`].

pub mod agile;
pub mod events;
pub mod legacy;
pub mod record;

use sha2::Digest;
use std::collections::BTreeMap;

/// A PCR bank's hash algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Bank {
    /// TPM_ALG_SHA1.
    Sha1,
    /// TPM_ALG_SHA256.
    Sha256,
    /// TPM_ALG_SHA384.
    Sha384,
    /// TPM_ALG_SHA512.
    Sha512,
}

impl Bank {
    /// Every bank, by TPM_ALG_ID.
    pub const ALL: [Bank; 4] = [Bank::Sha1, Bank::Sha256, Bank::Sha384, Bank::Sha512];

    /// The TPM_ALG_ID.
    pub fn alg_id(self) -> u16 {
        match self {
            Bank::Sha1 => 0x0004,
            Bank::Sha256 => 0x000b,
            Bank::Sha384 => 0x000c,
            Bank::Sha512 => 0x000d,
        }
    }

    /// The bank for a TPM_ALG_ID.
    pub fn from_alg_id(id: u16) -> Option<Self> {
        Self::ALL.into_iter().find(|b| b.alg_id() == id)
    }

    /// Digest size in bytes.
    pub fn size(self) -> usize {
        match self {
            Bank::Sha1 => 20,
            Bank::Sha256 => 32,
            Bank::Sha384 => 48,
            Bank::Sha512 => 64,
        }
    }

    /// The name tpm2-tools uses ("sha256").
    pub fn name(self) -> &'static str {
        match self {
            Bank::Sha1 => "sha1",
            Bank::Sha256 => "sha256",
            Bank::Sha384 => "sha384",
            Bank::Sha512 => "sha512",
        }
    }

    /// The bank for a name.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|b| b.name() == name)
    }

    /// Hashes the concatenation of `parts`.
    pub fn hash(self, parts: &[&[u8]]) -> Vec<u8> {
        fn run<D: Digest>(parts: &[&[u8]]) -> Vec<u8> {
            let mut h = D::new();
            for p in parts {
                h.update(p);
            }
            h.finalize().to_vec()
        }
        match self {
            Bank::Sha1 => run::<sha1::Sha1>(parts),
            Bank::Sha256 => run::<sha2::Sha256>(parts),
            Bank::Sha384 => run::<sha2::Sha384>(parts),
            Bank::Sha512 => run::<sha2::Sha512>(parts),
        }
    }
}

impl std::fmt::Display for Bank {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A malformed event log.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventLogError {
    /// The log ends inside a field.
    #[error("event log: {field} at byte offset {offset}: expected {need} bytes, found {have}")]
    Truncated {
        /// The field being read.
        field: String,
        /// Its offset.
        offset: usize,
        /// Bytes it needs.
        need: usize,
        /// Bytes left.
        have: usize,
    },
    /// A field has a value the format does not allow.
    #[error("event log: {field} at byte offset {offset}: expected {expected}, found {found}")]
    Invalid {
        /// The field.
        field: String,
        /// Its offset.
        offset: usize,
        /// What the format allows.
        expected: String,
        /// What was there.
        found: String,
    },
}

/// A bounds-checked little-endian reader over the log.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(data: &'a [u8]) -> Self {
        Self { data, pos: 0 }
    }

    pub(crate) fn pos(&self) -> usize {
        self.pos
    }

    pub(crate) fn remaining(&self) -> usize {
        self.data.len() - self.pos
    }

    pub(crate) fn bytes(&mut self, field: &str, n: usize) -> Result<&'a [u8], EventLogError> {
        if self.remaining() < n {
            return Err(EventLogError::Truncated {
                field: field.to_string(),
                offset: self.pos,
                need: n,
                have: self.remaining(),
            });
        }
        let out = &self.data[self.pos..self.pos + n];
        self.pos += n;
        Ok(out)
    }

    pub(crate) fn u8(&mut self, field: &str) -> Result<u8, EventLogError> {
        Ok(self.bytes(field, 1)?[0])
    }

    pub(crate) fn u16(&mut self, field: &str) -> Result<u16, EventLogError> {
        let b = self.bytes(field, 2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }

    pub(crate) fn u32(&mut self, field: &str) -> Result<u32, EventLogError> {
        let b = self.bytes(field, 4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    pub(crate) fn u64(&mut self, field: &str) -> Result<u64, EventLogError> {
        let b = self.bytes(field, 8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }

    /// A u32 length followed by that many bytes.
    pub(crate) fn sized(&mut self, field: &str) -> Result<&'a [u8], EventLogError> {
        let n = self.u32(&format!("{field} size"))?;
        self.bytes(field, n as usize)
    }
}

/// The format of a log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// TCG 1.2-style TCG_PCR_EVENT records, SHA-1 only.
    LegacySha1,
    /// Spec ID Event03 header, then TCG_PCR_EVENT2 records.
    CryptoAgile,
}

/// One event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// Position in the log (the Spec ID header is event 0 of an agile log).
    pub index: usize,
    /// Byte offset of the record.
    pub offset: usize,
    /// PCR index.
    pub pcr: u32,
    /// Event type.
    pub event_type: u32,
    /// Digests of known banks, in log order.
    pub digests: Vec<(Bank, Vec<u8>)>,
    /// The event data.
    pub data: Vec<u8>,
}

impl Event {
    /// The digest for `bank`, if the event carries one.
    pub fn digest(&self, bank: Bank) -> Option<&[u8]> {
        self.digests
            .iter()
            .find(|(b, _)| *b == bank)
            .map(|(_, d)| d.as_slice())
    }
}

/// A parsed event log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventLog {
    /// Its format.
    pub format: Format,
    /// The banks it records (SHA-1 only for a legacy log).
    pub banks: Vec<Bank>,
    /// Every event, the Spec ID header included.
    pub events: Vec<Event>,
    /// What a reader should know: unknown algorithms skipped, digests that do not match their data.
    pub warnings: Vec<String>,
    /// Where the records ended before the end of the input, when they did: an all-0xFF or
    /// all-zero record header (the fill of a fixed-size log area, as Intel TDX firmware leaves
    /// the CCEL table) and what follows it.
    pub padding: Option<Padding>,
}

/// The unused rest of a fixed-size log area.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Padding {
    /// Byte offset where the records ended.
    pub offset: usize,
    /// Bytes from there to the end of the input.
    pub len: usize,
    /// The fill byte, when every one of those bytes is it (0xFF or 0x00).
    pub fill: Option<u8>,
}

impl Padding {
    /// The padding at `r`'s position if the next record header (pcrIndex, eventType) is all 0xFF
    /// or all zero; `None` if a record follows.
    pub(crate) fn at(r: &Reader<'_>) -> Option<Self> {
        let rest = &r.data[r.pos..];
        // A whole header: fewer bytes are a truncated record, not padding.
        let header = rest.get(..8)?;
        let fill = header.first().copied()?;
        if !(fill == 0xff || fill == 0) || header.iter().any(|b| *b != fill) {
            return None;
        }
        Some(Self {
            offset: r.pos,
            len: rest.len(),
            fill: rest.iter().all(|b| *b == fill).then_some(fill),
        })
    }

    /// For people: where the log ended and what followed.
    pub fn describe(&self) -> String {
        match self.fill {
            Some(f) => format!(
                "the log ends at byte offset {}: {} bytes of {f:#04x} padding follow (an empty record header)",
                self.offset, self.len
            ),
            None => format!(
                "the log ends at byte offset {} (an empty record header); {} bytes follow that are not uniform padding and were not read",
                self.offset, self.len
            ),
        }
    }
}

/// PCR values by bank and index.
pub type PcrValues = BTreeMap<Bank, BTreeMap<u32, Vec<u8>>>;

/// Highest PCR index that a replay extends; events for other indices (Windows' 0xFFFFFFFF) are logged only.
pub const MAX_PCR: u32 = 23;

impl EventLog {
    /// Parses a log in either format (detected from its first event).
    pub fn parse(data: &[u8]) -> Result<Self, EventLogError> {
        let mut log = if agile::is_crypto_agile(data) {
            agile::parse(data)?
        } else {
            legacy::parse(data)?
        };
        events::check_digests(&mut log);
        Ok(log)
    }

    /// Replays the log: for every extending event (not EV_NO_ACTION, PCR ≤ 23),
    /// PCR = H(PCR ‖ digest) per bank. PCRs start at zero (all-ones for 17–22); a StartupLocality
    /// EV_NO_ACTION event sets the last byte of PCR 0's start value. Only PCRs the log extends appear.
    pub fn replay(&self) -> PcrValues {
        let locality = self
            .events
            .iter()
            .find_map(events::startup_locality)
            .unwrap_or(0);
        let mut out = PcrValues::new();
        for ev in self
            .events
            .iter()
            .filter(|e| e.event_type != events::EV_NO_ACTION && e.pcr <= MAX_PCR)
        {
            for (bank, digest) in &ev.digests {
                let pcr = out
                    .entry(*bank)
                    .or_default()
                    .entry(ev.pcr)
                    .or_insert_with(|| {
                        let mut v =
                            vec![if (17..=22).contains(&ev.pcr) { 0xff } else { 0 }; bank.size()];
                        if ev.pcr == 0 {
                            if let Some(last) = v.last_mut() {
                                *last = locality;
                            }
                        }
                        v
                    });
                *pcr = bank.hash(&[pcr, digest]);
            }
        }
        out
    }
}
