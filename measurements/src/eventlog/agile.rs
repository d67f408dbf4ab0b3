//! The crypto-agile log format (PC Client PFP §10.2): a legacy TCG_PCR_EVENT header of type
//! EV_NO_ACTION whose data is TCG_EfiSpecIdEvent ("Spec ID Event03", the digest algorithms and their
//! sizes), then TCG_PCR_EVENT2 records:
//! `{ u32 pcrIndex, u32 eventType, TPML_DIGEST_VALUES { u32 count, { u16 algId, digest }[count] },
//!    u32 eventSize, event }`, little-endian.

use super::events::EV_NO_ACTION;
use super::{Bank, Event, EventLog, EventLogError, Format, Reader, legacy};

/// Signature of the crypto-agile Spec ID event.
pub const SPEC_ID_EVENT03: &[u8; 16] = b"Spec ID Event03\0";

/// Whether the log starts with a Spec ID Event03 header. Its PCR index is not checked: PC Client
/// firmware records it at 0, Intel TDX firmware (the CCEL table) at 1.
pub fn is_crypto_agile(data: &[u8]) -> bool {
    let mut r = Reader::new(data);
    legacy::read_event(&mut r, 0)
        .is_ok_and(|e| e.event_type == EV_NO_ACTION && e.data.starts_with(SPEC_ID_EVENT03))
}

/// A digest algorithm as the Spec ID event declares it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeclaredAlg {
    /// TPM_ALG_ID.
    pub alg_id: u16,
    /// Declared digest size.
    pub size: u16,
}

/// Reads TCG_EfiSpecIdEvent from the header event's data (at `base` in the file).
fn spec_id(data: &[u8], base: usize) -> Result<Vec<DeclaredAlg>, EventLogError> {
    let mut r = Reader::new(data);
    let at = |r: &Reader<'_>| base + r.pos();
    r.bytes("SpecIdEvent.signature", 16)?;
    r.u32("SpecIdEvent.platformClass")?;
    let (minor, major) = (
        r.u8("SpecIdEvent.specVersionMinor")?,
        r.u8("SpecIdEvent.specVersionMajor")?,
    );
    if major != 2 {
        return Err(EventLogError::Invalid {
            field: "SpecIdEvent.specVersionMajor".into(),
            offset: at(&r) - 1,
            expected: "2".into(),
            found: format!("{major}.{minor}"),
        });
    }
    r.u8("SpecIdEvent.specErrata")?;
    r.u8("SpecIdEvent.uintnSize")?;
    let count_at = at(&r);
    let count = r.u32("SpecIdEvent.numberOfAlgorithms")? as usize;
    if count == 0 || count.saturating_mul(4) > r.remaining() {
        return Err(EventLogError::Invalid {
            field: "SpecIdEvent.numberOfAlgorithms".into(),
            offset: count_at,
            expected: format!(
                "1 to {} algorithms (what the event's size allows)",
                r.remaining() / 4
            ),
            found: count.to_string(),
        });
    }
    let mut algs = Vec::with_capacity(count);
    for _ in 0..count {
        let alg_id = r.u16("SpecIdEvent.digestSizes.algorithmId")?;
        let size_at = at(&r);
        let size = r.u16("SpecIdEvent.digestSizes.digestSize")?;
        if let Some(b) = Bank::from_alg_id(alg_id)
            && usize::from(size) != b.size()
        {
            return Err(EventLogError::Invalid {
                field: format!("SpecIdEvent digest size of {}", b.name()),
                offset: size_at,
                expected: b.size().to_string(),
                found: size.to_string(),
            });
        }
        algs.push(DeclaredAlg { alg_id, size });
    }
    let vendor = r.u8("SpecIdEvent.vendorInfoSize")?;
    r.bytes("SpecIdEvent.vendorInfo", usize::from(vendor))?;
    Ok(algs)
}

/// Parses a whole crypto-agile log.
pub fn parse(data: &[u8]) -> Result<EventLog, EventLogError> {
    let mut r = Reader::new(data);
    let header = legacy::read_event(&mut r, 0)?;
    let algs = spec_id(&header.data, header.offset + 32)?;
    let mut warnings = Vec::new();
    for a in &algs {
        if Bank::from_alg_id(a.alg_id).is_none() {
            warnings.push(format!(
                "algorithm {:#06x} ({} bytes) declared by the Spec ID event is not supported: its digests are skipped",
                a.alg_id, a.size
            ));
        }
    }
    let banks: Vec<Bank> = algs
        .iter()
        .filter_map(|a| Bank::from_alg_id(a.alg_id))
        .collect();
    let mut events = vec![header];
    let mut padding = None;
    while r.remaining() > 0 {
        if let Some(p) = super::Padding::at(&r) {
            warnings.push(p.describe());
            padding = Some(p);
            break;
        }
        let index = events.len();
        let offset = r.pos();
        let pcr = r.u32("TCG_PCR_EVENT2.pcrIndex")?;
        let event_type = r.u32("TCG_PCR_EVENT2.eventType")?;
        let count_at = r.pos();
        let count = r.u32("TCG_PCR_EVENT2.digests.count")? as usize;
        if count > algs.len() {
            return Err(EventLogError::Invalid {
                field: "TCG_PCR_EVENT2.digests.count".into(),
                offset: count_at,
                expected: format!(
                    "at most {} (the algorithms the Spec ID event declares)",
                    algs.len()
                ),
                found: count.to_string(),
            });
        }
        let mut digests = Vec::with_capacity(count);
        for _ in 0..count {
            let alg_at = r.pos();
            let alg_id = r.u16("TCG_PCR_EVENT2.digests.hashAlg")?;
            let declared =
                algs.iter()
                    .find(|a| a.alg_id == alg_id)
                    .ok_or_else(|| EventLogError::Invalid {
                        field: "TCG_PCR_EVENT2.digests.hashAlg".into(),
                        offset: alg_at,
                        expected: "an algorithm the Spec ID event declares".into(),
                        found: format!("{alg_id:#06x}"),
                    })?;
            let digest = r.bytes("TCG_PCR_EVENT2.digests.digest", usize::from(declared.size))?;
            if let Some(bank) = Bank::from_alg_id(alg_id) {
                digests.push((bank, digest.to_vec()));
            }
        }
        let data = r.sized("TCG_PCR_EVENT2.event")?.to_vec();
        events.push(Event {
            index,
            offset,
            pcr,
            event_type,
            digests,
            data,
        });
    }
    Ok(EventLog {
        format: Format::CryptoAgile,
        banks,
        events,
        warnings,
        padding,
    })
}
