//! Writing secllama's own log records (PC Client PFP §10.2): the Spec ID Event03 header and
//! TCG_PCR_EVENT2 records of type EV_EVENT_TAG whose data is a TCG_PCClientTaggedEvent describing
//! the measured thing and whose digests are of the measured content. The `tpm` crate appends these
//! bytes to the log file as it extends the PCRs, and [`crate::launch`] predicts them, so what is
//! predicted and what is extended are the same bytes.

use super::Bank;
use super::agile::SPEC_ID_EVENT03;
use super::events::{EV_EVENT_TAG, EV_NO_ACTION};

/// `taggedEventID` of secllama's events ("SLMA").
pub const SECLLAMA_TAGGED_EVENT_ID: u32 = 0x534c_4d41;

/// One measurement: what is extended into a PCR and logged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Measurement {
    /// The PCR.
    pub pcr: u32,
    /// The digest of the measured content, one per bank, in bank order.
    pub digests: Vec<(Bank, Vec<u8>)>,
    /// The event type (secllama uses EV_EVENT_TAG).
    pub event_type: u32,
    /// The event data as logged.
    pub event_data: Vec<u8>,
}

impl Measurement {
    /// An EV_EVENT_TAG measurement of `content` into `pcr` for `banks`, described by `description`.
    pub fn tagged(pcr: u32, banks: &[Bank], content: &[u8], description: &str) -> Self {
        Self::tagged_digests(
            pcr,
            banks.iter().map(|b| (*b, b.hash(&[content]))).collect(),
            description,
        )
    }

    /// An EV_EVENT_TAG measurement with precomputed digests (for content hashed while streaming).
    pub fn tagged_digests(pcr: u32, digests: Vec<(Bank, Vec<u8>)>, description: &str) -> Self {
        Self {
            pcr,
            digests,
            event_type: EV_EVENT_TAG,
            event_data: tagged_event_data(description.as_bytes()),
        }
    }

    /// The banks this measurement carries digests for.
    pub fn banks(&self) -> Vec<Bank> {
        self.digests.iter().map(|(b, _)| *b).collect()
    }

    /// The TCG_PCR_EVENT2 encoding.
    pub fn to_pcr_event2(&self) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&self.pcr.to_le_bytes());
        out.extend_from_slice(&self.event_type.to_le_bytes());
        out.extend_from_slice(&(self.digests.len() as u32).to_le_bytes());
        for (bank, d) in &self.digests {
            out.extend_from_slice(&bank.alg_id().to_le_bytes());
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
pub fn spec_id_header(banks: &[Bank]) -> Vec<u8> {
    let mut spec = Vec::new();
    spec.extend_from_slice(SPEC_ID_EVENT03);
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

/// A whole log: header then every measurement.
pub fn log_bytes(banks: &[Bank], measurements: &[Measurement]) -> Vec<u8> {
    let mut out = spec_id_header(banks);
    for m in measurements {
        out.extend(m.to_pcr_event2());
    }
    out
}
