//! The Authenticode digest of a PE/COFF image (Microsoft PE Format, "Appendix A: Calculating
//! the PE Image Hash"), which UEFI firmware measures for an `EV_EFI_BOOT_SERVICES_APPLICATION`
//! event (TCG PC Client PFP §10.4.4): the headers without the `CheckSum` field and the
//! Certificate Table directory entry, then every section's raw data in file order, then any data
//! after the last section except the attribute certificates.

use crate::eventlog::Bank;

/// A file that is not a PE/COFF image this module can hash.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("PE image: {0}")]
pub struct PeError(pub String);

fn u16_at(b: &[u8], at: usize) -> Result<u16, PeError> {
    b.get(at..at + 2)
        .and_then(|s| s.try_into().ok())
        .map(u16::from_le_bytes)
        .ok_or_else(|| PeError(format!("truncated at offset {at}")))
}

fn u32_at(b: &[u8], at: usize) -> Result<u32, PeError> {
    b.get(at..at + 4)
        .and_then(|s| s.try_into().ok())
        .map(u32::from_le_bytes)
        .ok_or_else(|| PeError(format!("truncated at offset {at}")))
}

fn range(b: &[u8], from: usize, to: usize) -> Result<&[u8], PeError> {
    b.get(from..to).ok_or_else(|| {
        PeError(format!(
            "bytes {from}..{to} are outside the {}-byte file",
            b.len()
        ))
    })
}

/// The Authenticode digest of `image` in `bank`.
///
/// # Errors
/// Not a PE32/PE32+ image, or its headers point outside the file.
pub fn digest(image: &[u8], bank: Bank) -> Result<Vec<u8>, PeError> {
    let pe = u32_at(image, 0x3c)? as usize;
    if range(image, pe, pe + 4)? != b"PE\0\0" {
        return Err(PeError(format!("no PE signature at offset {pe}")));
    }
    let coff = pe + 4;
    let sections = u16_at(image, coff + 2)? as usize;
    let optional_size = u16_at(image, coff + 16)? as usize;
    let opt = coff + 20;
    let (dirs, count_at) = match u16_at(image, opt)? {
        0x10b => (opt + 96, opt + 92),
        0x20b => (opt + 112, opt + 108),
        m => return Err(PeError(format!("optional header magic {m:#x}"))),
    };
    let checksum = opt + 64;
    let headers = u32_at(image, opt + 60)? as usize;
    let directories = u32_at(image, count_at)? as usize;
    // The Certificate Table is data directory 4 (when present).
    let cert_entry = dirs + 4 * 8;
    let (cert_at, cert_size) = if directories > 4 {
        (
            u32_at(image, cert_entry)? as usize,
            u32_at(image, cert_entry + 4)? as usize,
        )
    } else {
        (0, 0)
    };
    let mut parts: Vec<&[u8]> = vec![range(image, 0, checksum)?];
    if directories > 4 {
        parts.push(range(image, checksum + 4, cert_entry)?);
        parts.push(range(image, cert_entry + 8, headers)?);
    } else {
        parts.push(range(image, checksum + 4, headers)?);
    }
    let table = opt + optional_size;
    let mut raw: Vec<(usize, usize)> = Vec::with_capacity(sections);
    for i in 0..sections {
        let s = table + 40 * i;
        let size = u32_at(image, s + 16)? as usize;
        let at = u32_at(image, s + 20)? as usize;
        if size > 0 {
            raw.push((at, size));
        }
    }
    raw.sort_unstable();
    let mut hashed = headers;
    for (at, size) in raw {
        parts.push(range(image, at, at + size)?);
        hashed += size;
    }
    if image.len() > hashed {
        let certs = if cert_at != 0 { cert_size } else { 0 };
        let extra = (image.len() - hashed).saturating_sub(certs);
        parts.push(range(image, hashed, hashed + extra)?);
    }
    Ok(bank.hash(&parts))
}
