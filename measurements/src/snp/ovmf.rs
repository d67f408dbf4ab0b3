//! The OVMF GUIDed footer table and the SEV metadata it points to (edk2
//! `OvmfPkg/ResetVector/Ia16/ResetVectorVtf0.asm` and `OvmfPkg/ResetVector/X64/OvmfSevMetadata.asm`),
//! parsed from an untrusted firmware image (OVMF, or a Coconut SVSM image using the same layout).
//!
//! Layout, read backwards from the end of the image: the table's footer entry (2-byte size, GUID
//! `96b582de-…`) ends 32 bytes before the end; the entries before it each end with a 2-byte total
//! size and a GUID, their data in front. The `OVMF_SEV_METADATA_GUID` entry holds the distance from
//! the end of the image to an `ASEV` header followed by 12-byte `{gpa, size, type}` section
//! descriptors.
//!
//! The parser borrows from the image and allocates nothing; every offset is checked against the
//! image before it is used, so a garbled image gives an [`SnpError`], never a panic.

use super::SnpError;

/// Size of a footer-table entry header: a little-endian `u16` size and a 16-byte GUID.
const ENTRY_HEADER_SIZE: usize = 18;
/// The footer table ends this many bytes before the end of the image.
const FOOTER_END_FROM_IMAGE_END: usize = 32;
/// Size of the SEV metadata header `{ "ASEV", size, version, num_items }`.
const METADATA_HEADER_SIZE: usize = 16;
/// Size of one SEV metadata section descriptor `{ gpa, size, type }`.
const SECTION_DESC_SIZE: usize = 12;
/// Guest page size.
pub(crate) const PAGE_SIZE: usize = 4096;

/// A GUID in its on-disk (mixed-endian, EFI) byte order.
pub(crate) type Guid = [u8; 16];

/// Encodes a GUID written as `d1-d2-d3-d4` in EFI byte order (first three fields little-endian).
const fn guid(d1: u32, d2: u16, d3: u16, d4: [u8; 8]) -> Guid {
    let a = d1.to_le_bytes();
    let b = d2.to_le_bytes();
    let c = d3.to_le_bytes();
    [
        a[0], a[1], a[2], a[3], b[0], b[1], c[0], c[1], d4[0], d4[1], d4[2], d4[3], d4[4], d4[5],
        d4[6], d4[7],
    ]
}

/// Formats a GUID stored in EFI byte order as the usual `8-4-4-4-12` string.
pub(crate) fn guid_string(g: &Guid) -> String {
    format!(
        "{:08x}-{:04x}-{:04x}-{:02x}{:02x}-{:02x}{:02x}{:02x}{:02x}{:02x}{:02x}",
        u32::from_le_bytes([g[0], g[1], g[2], g[3]]),
        u16::from_le_bytes([g[4], g[5]]),
        u16::from_le_bytes([g[6], g[7]]),
        g[8],
        g[9],
        g[10],
        g[11],
        g[12],
        g[13],
        g[14],
        g[15]
    )
}

/// `96b582de-1fb2-45f7-baea-a366c55a082d`: marks the end of the GUIDed footer table.
pub(crate) const OVMF_TABLE_FOOTER_GUID: Guid = guid(
    0x96b5_82de,
    0x1fb2,
    0x45f7,
    [0xba, 0xea, 0xa3, 0x66, 0xc5, 0x5a, 0x08, 0x2d],
);
/// `00f771de-1a7e-4fcb-890e-68c77e2fb44e`: the SEV-ES AP reset vector (first 4 bytes: address).
pub(crate) const SEV_ES_RESET_BLOCK_GUID: Guid = guid(
    0x00f7_71de,
    0x1a7e,
    0x4fcb,
    [0x89, 0x0e, 0x68, 0xc7, 0x7e, 0x2f, 0xb4, 0x4e],
);
/// `7255371f-3a3b-4b04-927b-1da6efa8d454`: where QEMU writes the SEV hashes table (address, size).
pub(crate) const SEV_HASH_TABLE_RV_GUID: Guid = guid(
    0x7255_371f,
    0x3a3b,
    0x4b04,
    [0x92, 0x7b, 0x1d, 0xa6, 0xef, 0xa8, 0xd4, 0x54],
);
/// `dc886566-984a-4798-a75e-5585a7bf67cc`: offset from the image end of the SEV metadata.
pub(crate) const OVMF_SEV_METADATA_GUID: Guid = guid(
    0xdc88_6566,
    0x984a,
    0x4798,
    [0xa7, 0x5e, 0x55, 0x85, 0xa7, 0xbf, 0x67, 0xcc],
);
/// `a789a612-0597-4c4b-a49f-cbb1fe9d1ddd`: Coconut SVSM entry point, as an offset into the image.
pub(crate) const SVSM_INFO_GUID: Guid = guid(
    0xa789_a612,
    0x0597,
    0x4c4b,
    [0xa4, 0x9f, 0xcb, 0xb1, 0xfe, 0x9d, 0x1d, 0xdd],
);

/// The footer-table entries this measurement reads, with their spec names.
const KNOWN_ENTRIES: [(&str, Guid); 4] = [
    ("SEV_ES_RESET_BLOCK_GUID", SEV_ES_RESET_BLOCK_GUID),
    ("SEV_HASH_TABLE_RV_GUID", SEV_HASH_TABLE_RV_GUID),
    ("OVMF_SEV_METADATA_GUID", OVMF_SEV_METADATA_GUID),
    ("SVSM_INFO_GUID", SVSM_INFO_GUID),
];

/// The type of an SEV metadata section (`OvmfSevMetadata.asm`), deciding how it is measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SectionType {
    /// `SNP_SEC_MEM` (1): pre-validated memory, measured as zero pages (unmeasured on GCE).
    SnpSecMemory,
    /// `SNP_SECRETS` (2): the secrets page the PSP fills.
    SnpSecrets,
    /// `CPUID` (3): the CPUID page the PSP validates.
    Cpuid,
    /// `SVSM_CAA` (4): the SVSM calling-area page, measured as a zero page.
    SvsmCaa,
    /// `SNP_KERNEL_HASHES` (0x10): the page QEMU fills with the SEV hashes table.
    SnpKernelHashes,
}

impl SectionType {
    fn from_u32(v: u32) -> Option<Self> {
        match v {
            1 => Some(Self::SnpSecMemory),
            2 => Some(Self::SnpSecrets),
            3 => Some(Self::Cpuid),
            4 => Some(Self::SvsmCaa),
            0x10 => Some(Self::SnpKernelHashes),
            _ => None,
        }
    }
}

/// One SEV metadata section: `size` bytes at guest-physical address `gpa`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Section {
    pub(crate) gpa: u32,
    pub(crate) size: u32,
    pub(crate) kind: SectionType,
}

/// A parsed firmware image: the image bytes, the footer entries we use, and the metadata sections.
pub(crate) struct Ovmf<'a> {
    image: &'static str,
    data: &'a [u8],
    entries: [Option<&'a [u8]>; KNOWN_ENTRIES.len()],
    /// The section descriptors (already validated), `SECTION_DESC_SIZE` bytes each.
    sections: &'a [u8],
}

fn le_u16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(
        b.get(at..at.checked_add(2)?)?.try_into().ok()?,
    ))
}

fn le_u32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(
        b.get(at..at.checked_add(4)?)?.try_into().ok()?,
    ))
}

impl<'a> Ovmf<'a> {
    /// Parses the footer table and, when present, the SEV metadata of `data`.
    /// `image` names the image in errors ("OVMF", "SVSM").
    pub(crate) fn parse(image: &'static str, data: &'a [u8]) -> Result<Self, SnpError> {
        let min = FOOTER_END_FROM_IMAGE_END + ENTRY_HEADER_SIZE;
        let footer_at = data.len().checked_sub(min).ok_or(SnpError::ImageTooSmall {
            image,
            len: data.len(),
            min,
        })?;
        let mut ovmf = Ovmf {
            image,
            data,
            entries: [None; KNOWN_ENTRIES.len()],
            sections: &[],
        };
        ovmf.parse_footer_table(footer_at)?;
        ovmf.parse_sev_metadata()?;
        Ok(ovmf)
    }

    fn parse_footer_table(&mut self, footer_at: usize) -> Result<(), SnpError> {
        let image = self.image;
        let data = self.data;
        let bad = |offset: usize, size: usize, expected: String| SnpError::BadFooterEntry {
            image,
            offset,
            size,
            expected,
        };
        let found: Guid = data
            .get(footer_at + 2..footer_at + ENTRY_HEADER_SIZE)
            .and_then(|g| g.try_into().ok())
            .ok_or(SnpError::ImageTooSmall {
                image,
                len: data.len(),
                min: footer_at + ENTRY_HEADER_SIZE,
            })?;
        if found != OVMF_TABLE_FOOTER_GUID {
            return Err(SnpError::NoFooterTable {
                image,
                offset: footer_at + 2,
                expected: guid_string(&OVMF_TABLE_FOOTER_GUID),
                found: guid_string(&found),
            });
        }
        let footer_size = usize::from(le_u16(data, footer_at).unwrap_or(0));
        let table_size = footer_size.checked_sub(ENTRY_HEADER_SIZE).ok_or_else(|| {
            bad(
                footer_at,
                footer_size,
                format!("at least {ENTRY_HEADER_SIZE}"),
            )
        })?;
        let table_start = footer_at.checked_sub(table_size).ok_or_else(|| {
            bad(
                footer_at,
                footer_size,
                format!(
                    "at most {} (the table must start inside the image)",
                    footer_at + ENTRY_HEADER_SIZE
                ),
            )
        })?;
        // Walk the entries backwards: each ends with its header; its size covers data + header.
        let mut end = footer_at;
        while end - table_start >= ENTRY_HEADER_SIZE {
            let header_at = end - ENTRY_HEADER_SIZE;
            let size = usize::from(le_u16(data, header_at).unwrap_or(0));
            if size < ENTRY_HEADER_SIZE || size > end - table_start {
                return Err(bad(
                    header_at,
                    size,
                    format!("{ENTRY_HEADER_SIZE} to {} bytes", end - table_start),
                ));
            }
            let guid: Guid = data
                .get(header_at + 2..end)
                .and_then(|g| g.try_into().ok())
                .ok_or_else(|| bad(header_at, size, "an entry inside the image".into()))?;
            if let Some(i) = KNOWN_ENTRIES.iter().position(|(_, g)| *g == guid) {
                if self.entries[i].is_some() {
                    return Err(SnpError::DuplicateFooterEntry {
                        image,
                        guid: guid_string(&guid),
                    });
                }
                self.entries[i] = data.get(end - size..header_at);
            }
            end -= size;
        }
        Ok(())
    }

    fn entry(&self, guid: &Guid) -> Option<&'a [u8]> {
        KNOWN_ENTRIES
            .iter()
            .position(|(_, g)| g == guid)
            .and_then(|i| self.entries[i])
    }

    /// The first four bytes of a required entry, as a little-endian `u32`.
    fn entry_u32(&self, wanted: &Guid) -> Result<u32, SnpError> {
        let (name, guid) = KNOWN_ENTRIES
            .iter()
            .find(|(_, g)| g == wanted)
            .copied()
            .unwrap_or(("?", *wanted));
        let entry = self
            .entry(&guid)
            .ok_or_else(|| SnpError::MissingFooterEntry {
                image: self.image,
                name,
                guid: guid_string(&guid),
            })?;
        le_u32(entry, 0).ok_or(SnpError::ShortFooterEntry {
            image: self.image,
            name,
            expected: 4,
            found: entry.len(),
        })
    }

    fn parse_sev_metadata(&mut self) -> Result<(), SnpError> {
        let image = self.image;
        let len = self.data.len();
        if self.entry(&OVMF_SEV_METADATA_GUID).is_none() {
            return Ok(()); // reported by `require_sev_metadata` when the launch needs it
        }
        let from_end = u64::from(self.entry_u32(&OVMF_SEV_METADATA_GUID)?);
        let oob = |offset: u64, size: u64, detail: String| SnpError::MetadataOutOfBounds {
            image,
            offset,
            size,
            len,
            detail,
        };
        let start = len
            .checked_sub(usize::try_from(from_end).unwrap_or(usize::MAX))
            .ok_or_else(|| {
                oob(
                    from_end,
                    METADATA_HEADER_SIZE as u64,
                    format!(" (it is {from_end:#x} bytes before the end)"),
                )
            })?;
        let header = self
            .data
            .get(start..start + METADATA_HEADER_SIZE)
            .ok_or_else(|| oob(start as u64, METADATA_HEADER_SIZE as u64, String::new()))?;
        let signature: [u8; 4] = [header[0], header[1], header[2], header[3]];
        let size = le_u32(header, 4).unwrap_or(0) as usize;
        let version = le_u32(header, 8).unwrap_or(0);
        let num_items = le_u32(header, 12).unwrap_or(0) as usize;
        if &signature != b"ASEV" || version != 1 {
            return Err(SnpError::BadMetadataHeader {
                image,
                offset: start,
                signature,
                version,
            });
        }
        let items_len = num_items.saturating_mul(SECTION_DESC_SIZE);
        if size < METADATA_HEADER_SIZE || items_len > size - METADATA_HEADER_SIZE {
            return Err(oob(
                start as u64,
                size as u64,
                format!(
                    " and {num_items} sections of {SECTION_DESC_SIZE} bytes after its {METADATA_HEADER_SIZE}-byte header"
                ),
            ));
        }
        let items_at = start + METADATA_HEADER_SIZE;
        let sections = self
            .data
            .get(start..start.saturating_add(size))
            .and_then(|_| self.data.get(items_at..items_at + items_len))
            .ok_or_else(|| oob(start as u64, size as u64, String::new()))?;
        for (index, desc) in sections.chunks_exact(SECTION_DESC_SIZE).enumerate() {
            let offset = items_at + index * SECTION_DESC_SIZE;
            let (gpa, size, found) = (
                le_u32(desc, 0).unwrap_or(0),
                le_u32(desc, 4).unwrap_or(0),
                le_u32(desc, 8).unwrap_or(0),
            );
            let kind = SectionType::from_u32(found).ok_or(SnpError::UnknownSectionType {
                image,
                index,
                offset,
                found,
            })?;
            let page = PAGE_SIZE as u32;
            let multi_page = matches!(
                kind,
                SectionType::SnpSecMemory | SectionType::SvsmCaa | SectionType::SnpKernelHashes
            );
            if gpa % page != 0 || (multi_page && size % page != 0) {
                return Err(SnpError::SectionNotPageAligned {
                    image,
                    index,
                    kind,
                    gpa,
                    size,
                });
            }
        }
        self.sections = sections;
        Ok(())
    }

    /// The image bytes.
    pub(crate) fn data(&self) -> &'a [u8] {
        self.data
    }

    /// Fails unless the image carries SEV metadata (an SNP-capable firmware).
    pub(crate) fn require_sev_metadata(&self) -> Result<(), SnpError> {
        match self.entry(&OVMF_SEV_METADATA_GUID) {
            Some(_) => Ok(()),
            None => Err(SnpError::NoSevMetadata {
                image: self.image,
                guid: guid_string(&OVMF_SEV_METADATA_GUID),
            }),
        }
    }

    /// The SEV metadata sections, in image order.
    pub(crate) fn sections(&self) -> impl Iterator<Item = Section> + 'a {
        self.sections
            .chunks_exact(SECTION_DESC_SIZE)
            .filter_map(|d| {
                Some(Section {
                    gpa: le_u32(d, 0)?,
                    size: le_u32(d, 4)?,
                    kind: SectionType::from_u32(le_u32(d, 8)?)?,
                })
            })
    }

    /// Whether a section of this type is present.
    pub(crate) fn has_section(&self, kind: SectionType) -> bool {
        self.sections().any(|s| s.kind == kind)
    }

    /// The AP reset address from `SEV_ES_RESET_BLOCK_GUID`.
    pub(crate) fn sev_es_reset_eip(&self) -> Result<u32, SnpError> {
        self.entry_u32(&SEV_ES_RESET_BLOCK_GUID)
    }

    /// The guest-physical address of the SEV hashes table from `SEV_HASH_TABLE_RV_GUID`.
    pub(crate) fn sev_hashes_table_gpa(&self) -> Result<u32, SnpError> {
        self.entry_u32(&SEV_HASH_TABLE_RV_GUID)
    }

    /// The SVSM entry offset from `SVSM_INFO_GUID`.
    pub(crate) fn svsm_entry_offset(&self) -> Result<u32, SnpError> {
        self.entry_u32(&SVSM_INFO_GUID)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guids_print_as_in_the_specs() {
        assert_eq!(
            guid_string(&OVMF_TABLE_FOOTER_GUID),
            "96b582de-1fb2-45f7-baea-a366c55a082d"
        );
        assert_eq!(
            guid_string(&SEV_ES_RESET_BLOCK_GUID),
            "00f771de-1a7e-4fcb-890e-68c77e2fb44e"
        );
        assert_eq!(
            guid_string(&SEV_HASH_TABLE_RV_GUID),
            "7255371f-3a3b-4b04-927b-1da6efa8d454"
        );
        assert_eq!(
            guid_string(&OVMF_SEV_METADATA_GUID),
            "dc886566-984a-4798-a75e-5585a7bf67cc"
        );
        assert_eq!(
            guid_string(&SVSM_INFO_GUID),
            "a789a612-0597-4c4b-a49f-cbb1fe9d1ddd"
        );
    }

    #[test]
    fn every_length_below_the_footer_is_refused() {
        for len in 0..FOOTER_END_FROM_IMAGE_END + ENTRY_HEADER_SIZE {
            assert!(matches!(
                Ovmf::parse("OVMF", &vec![0u8; len]),
                Err(SnpError::ImageTooSmall { .. })
            ));
        }
    }
}
