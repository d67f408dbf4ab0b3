//! The SEV hashes table QEMU writes for measured direct kernel boot (QEMU `target/i386/sev.c`,
//! `SevHashTable`/`PaddedSevHashTable`; read back by OVMF's `BlobVerifierLibSevHashes`): a
//! GUID-keyed table of the SHA-256 of the kernel command line (with its NUL), the initrd and the
//! kernel, padded to 16 bytes and placed in the `SNP_KERNEL_HASHES` page at the offset OVMF's
//! `SEV_HASH_TABLE_RV_GUID` entry gives.
//!
//! The `sev` crate builds the same table but only from file paths, and trims the command line
//! before hashing it, which QEMU and sev-snp-measure do not; so the table is built here.

use sha2::{Digest, Sha256};

use super::SnpError;
use super::ovmf::{Guid, PAGE_SIZE};

/// `9438d606-4f22-4cc9-b479-a793d411fd21`: the table header.
const SEV_HASH_TABLE_HEADER_GUID: Guid = [
    0x06, 0xd6, 0x38, 0x94, 0x22, 0x4f, 0xc9, 0x4c, 0xb4, 0x79, 0xa7, 0x93, 0xd4, 0x11, 0xfd, 0x21,
];
/// `97d02dd8-bd20-4c94-aa78-e7714d36ab2a`: the command-line entry.
const SEV_CMDLINE_ENTRY_GUID: Guid = [
    0xd8, 0x2d, 0xd0, 0x97, 0x20, 0xbd, 0x94, 0x4c, 0xaa, 0x78, 0xe7, 0x71, 0x4d, 0x36, 0xab, 0x2a,
];
/// `44baf731-3a2f-4bd7-9af1-41e29169781d`: the initrd entry.
const SEV_INITRD_ENTRY_GUID: Guid = [
    0x31, 0xf7, 0xba, 0x44, 0x2f, 0x3a, 0xd7, 0x4b, 0x9a, 0xf1, 0x41, 0xe2, 0x91, 0x69, 0x78, 0x1d,
];
/// `4de79437-abd2-427f-b835-d5b172d2045b`: the kernel entry.
const SEV_KERNEL_ENTRY_GUID: Guid = [
    0x37, 0x94, 0xe7, 0x4d, 0xd2, 0xab, 0x7f, 0x42, 0xb8, 0x35, 0xd5, 0xb1, 0x72, 0xd2, 0x04, 0x5b,
];

/// `SevHashTableEntry`: GUID, `u16` length, SHA-256.
const ENTRY_LEN: usize = 16 + 2 + 32;
/// `SevHashTable`: GUID, `u16` length, then the cmdline, initrd and kernel entries.
const TABLE_LEN: usize = 16 + 2 + 3 * ENTRY_LEN;
/// `PaddedSevHashTable`: the table rounded up to 16 bytes.
pub(crate) const PADDED_TABLE_LEN: usize = TABLE_LEN.next_multiple_of(16);

/// The three hashes of a measured direct kernel boot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SevHashes {
    /// SHA-256 of the kernel image.
    pub kernel: [u8; 32],
    /// SHA-256 of the initrd (of nothing when there is none).
    pub initrd: [u8; 32],
    /// SHA-256 of the command line followed by one NUL byte (just the NUL when there is none).
    pub cmdline: [u8; 32],
}

impl SevHashes {
    /// Hashes a kernel, an initrd (empty when absent) and a command line (`None` and `""` are the
    /// same: QEMU hashes a single NUL byte). The command line is hashed as given, not trimmed.
    pub fn new(kernel: &[u8], initrd: &[u8], append: Option<&str>) -> Self {
        let mut cmdline = Sha256::new();
        cmdline.update(append.unwrap_or("").as_bytes());
        cmdline.update([0u8]);
        SevHashes {
            kernel: Sha256::digest(kernel).into(),
            initrd: Sha256::digest(initrd).into(),
            cmdline: cmdline.finalize().into(),
        }
    }

    /// The padded table, byte for byte as QEMU lays it out.
    pub fn table(&self) -> [u8; PADDED_TABLE_LEN] {
        let mut t = [0u8; PADDED_TABLE_LEN];
        t[..16].copy_from_slice(&SEV_HASH_TABLE_HEADER_GUID);
        t[16..18].copy_from_slice(&(TABLE_LEN as u16).to_le_bytes());
        let entries = [
            (SEV_CMDLINE_ENTRY_GUID, &self.cmdline),
            (SEV_INITRD_ENTRY_GUID, &self.initrd),
            (SEV_KERNEL_ENTRY_GUID, &self.kernel),
        ];
        for (i, (guid, hash)) in entries.iter().enumerate() {
            let at = 18 + i * ENTRY_LEN;
            t[at..at + 16].copy_from_slice(guid);
            t[at + 16..at + 18].copy_from_slice(&(ENTRY_LEN as u16).to_le_bytes());
            t[at + 18..at + ENTRY_LEN].copy_from_slice(*hash);
        }
        t
    }

    /// The `SNP_KERNEL_HASHES` page: zeros with the table at `offset` (the low 12 bits of the
    /// `SEV_HASH_TABLE_RV_GUID` address).
    pub(crate) fn page(&self, offset: usize) -> Result<[u8; PAGE_SIZE], SnpError> {
        let max = PAGE_SIZE - PADDED_TABLE_LEN;
        if offset > max {
            return Err(SnpError::HashesTableOffset {
                offset,
                table_len: PADDED_TABLE_LEN,
                max,
            });
        }
        let mut page = [0u8; PAGE_SIZE];
        page[offset..offset + PADDED_TABLE_LEN].copy_from_slice(&self.table());
        Ok(page)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snp::ovmf::guid_string;

    #[test]
    fn guids_and_sizes_are_qemus() {
        assert_eq!(
            guid_string(&SEV_HASH_TABLE_HEADER_GUID),
            "9438d606-4f22-4cc9-b479-a793d411fd21"
        );
        assert_eq!(
            guid_string(&SEV_CMDLINE_ENTRY_GUID),
            "97d02dd8-bd20-4c94-aa78-e7714d36ab2a"
        );
        assert_eq!(
            guid_string(&SEV_INITRD_ENTRY_GUID),
            "44baf731-3a2f-4bd7-9af1-41e29169781d"
        );
        assert_eq!(
            guid_string(&SEV_KERNEL_ENTRY_GUID),
            "4de79437-abd2-427f-b835-d5b172d2045b"
        );
        assert_eq!((TABLE_LEN, PADDED_TABLE_LEN), (168, 176));
    }

    #[test]
    fn absent_and_empty_cmdline_are_one_nul() {
        let nul: [u8; 32] = Sha256::digest([0u8]).into();
        assert_eq!(SevHashes::new(b"", b"", None).cmdline, nul);
        assert_eq!(SevHashes::new(b"", b"", Some("")).cmdline, nul);
        assert_ne!(
            SevHashes::new(b"", b"", Some(" a")).cmdline,
            SevHashes::new(b"", b"", Some("a")).cmdline
        );
    }

    #[test]
    fn table_must_fit_in_its_page() {
        let h = SevHashes::new(b"k", b"i", Some("c"));
        assert!(h.page(PAGE_SIZE - PADDED_TABLE_LEN).is_ok());
        assert!(matches!(
            h.page(PAGE_SIZE - PADDED_TABLE_LEN + 1),
            Err(SnpError::HashesTableOffset { .. })
        ));
    }
}
