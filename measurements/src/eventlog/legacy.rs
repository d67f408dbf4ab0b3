//! The legacy (TCG 1.2 / PC Client "SHA-1") log format: a sequence of TCG_PCR_EVENT records,
//! `{ u32 pcrIndex, u32 eventType, BYTE digest[20], u32 eventDataSize, BYTE event[eventDataSize] }`,
//! little-endian.

use super::{Bank, Event, EventLog, EventLogError, Format, Reader};

/// Reads one TCG_PCR_EVENT at the reader's position.
pub(crate) fn read_event(r: &mut Reader<'_>, index: usize) -> Result<Event, EventLogError> {
    let offset = r.pos();
    let pcr = r.u32("TCG_PCR_EVENT.pcrIndex")?;
    let event_type = r.u32("TCG_PCR_EVENT.eventType")?;
    let digest = r.bytes("TCG_PCR_EVENT.digest", 20)?.to_vec();
    let data = r.sized("TCG_PCR_EVENT.event")?.to_vec();
    Ok(Event {
        index,
        offset,
        pcr,
        event_type,
        digests: vec![(Bank::Sha1, digest)],
        data,
    })
}

/// Parses a whole legacy log.
pub fn parse(data: &[u8]) -> Result<EventLog, EventLogError> {
    let mut r = Reader::new(data);
    let mut events = Vec::new();
    let mut padding = None;
    while r.remaining() > 0 {
        if !events.is_empty() {
            if let Some(p) = super::Padding::at(&r) {
                padding = Some(p);
                break;
            }
        }
        events.push(read_event(&mut r, events.len())?);
    }
    if events.is_empty() {
        return Err(EventLogError::Truncated {
            field: "first event".into(),
            offset: 0,
            need: 32,
            have: 0,
        });
    }
    Ok(EventLog {
        format: Format::LegacySha1,
        banks: vec![Bank::Sha1],
        events,
        warnings: padding.iter().map(super::Padding::describe).collect(),
        padding,
    })
}
