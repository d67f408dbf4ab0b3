//! The SEV-SNP guest context's launch digest (AMD SEV-SNP ABI spec §8.17 SNP_LAUNCH_UPDATE,
//! Table "PAGE_INFO"): every page added to the guest extends a SHA-384 chain,
//! `LD' = SHA-384(PAGE_INFO)` with `PAGE_INFO = LD ‖ CONTENTS ‖ LENGTH ‖ PAGE_TYPE ‖ IMI_PAGE ‖
//! VMPL3/2/1_PERMS ‖ reserved ‖ GPA`.
//!
//! The `sev` crate has the same chain (`sev::measurement::gctx::Gctx`), but it cannot hand its digest
//! out to another crate (`finished`/`ld` are crate-private), so the chain lives here; its page-type
//! codes come from `sev::launch::PageType`.

use sev::launch::PageType;
use sha2::{Digest, Sha384};

use super::ovmf::PAGE_SIZE;

/// Size of the launch digest (SHA-384).
pub(crate) const LD_SIZE: usize = 48;
/// Length of the `PAGE_INFO` structure.
const PAGE_INFO_LEN: u16 = 0x70;
/// VMSA pages are recorded at GPA `(u64)-1`, page-aligned with bits above 51 cleared.
const VMSA_GPA: u64 = 0xFFFF_FFFF_F000;
/// `CONTENTS` of pages whose data is not hashed (zero, unmeasured, secrets, CPUID).
const ZEROS: [u8; LD_SIZE] = [0; LD_SIZE];

/// A launch digest being extended, one `PAGE_INFO` at a time.
pub(crate) struct Gctx {
    ld: [u8; LD_SIZE],
}

impl Gctx {
    /// Starts from the all-zero digest.
    pub(crate) fn new() -> Self {
        Self::with_seed([0; LD_SIZE])
    }

    /// Starts from a digest computed earlier (e.g. a precomputed OVMF hash).
    pub(crate) fn with_seed(ld: [u8; LD_SIZE]) -> Self {
        Self { ld }
    }

    /// The launch digest so far.
    pub(crate) fn ld(&self) -> [u8; LD_SIZE] {
        self.ld
    }

    fn update(&mut self, page_type: PageType, gpa: u64, contents: &[u8; LD_SIZE]) {
        let (is_imi, vmpl3_perms, vmpl2_perms, vmpl1_perms, reserved) = (0u8, 0u8, 0u8, 0u8, 0u8);
        let mut h = Sha384::new();
        h.update(self.ld);
        h.update(contents);
        h.update(PAGE_INFO_LEN.to_le_bytes());
        h.update([
            page_type as u8,
            is_imi,
            vmpl3_perms,
            vmpl2_perms,
            vmpl1_perms,
            reserved,
        ]);
        h.update(gpa.to_le_bytes());
        self.ld = h.finalize().into();
    }

    /// Adds `data` as normal pages starting at `gpa`; `data` is a whole number of pages (checked
    /// by the callers, a trailing partial page would be ignored).
    pub(crate) fn update_normal_pages(&mut self, gpa: u64, data: &[u8]) {
        for (i, page) in data.chunks_exact(PAGE_SIZE).enumerate() {
            self.update(
                PageType::Normal,
                gpa + (i * PAGE_SIZE) as u64,
                &Sha384::digest(page).into(),
            );
        }
    }

    /// Adds one VMSA page.
    pub(crate) fn update_vmsa_page(&mut self, page: &[u8; PAGE_SIZE]) {
        self.update(PageType::Vmsa, VMSA_GPA, &Sha384::digest(page).into());
    }

    fn update_empty_pages(&mut self, page_type: PageType, gpa: u64, len: u32) {
        for offset in (0..u64::from(len)).step_by(PAGE_SIZE) {
            self.update(page_type, gpa + offset, &ZEROS);
        }
    }

    /// Adds `len` bytes of zero pages at `gpa`.
    pub(crate) fn update_zero_pages(&mut self, gpa: u64, len: u32) {
        self.update_empty_pages(PageType::Zero, gpa, len);
    }

    /// Adds `len` bytes of unmeasured pages at `gpa`.
    pub(crate) fn update_unmeasured_pages(&mut self, gpa: u64, len: u32) {
        self.update_empty_pages(PageType::Unmeasured, gpa, len);
    }

    /// Adds the secrets page at `gpa`.
    pub(crate) fn update_secrets_page(&mut self, gpa: u64) {
        self.update(PageType::Secrets, gpa, &ZEROS);
    }

    /// Adds the CPUID page at `gpa`.
    pub(crate) fn update_cpuid_page(&mut self, gpa: u64) {
        self.update(PageType::Cpuid, gpa, &ZEROS);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One `PAGE_INFO` spelled out byte by byte, as the spec's table lays it out.
    #[test]
    fn page_info_layout_matches_the_spec_table() {
        let mut g = Gctx::new();
        g.update_secrets_page(0x80d000);
        let mut page_info = Vec::new();
        page_info.extend_from_slice(&[0; 48]); // DIGEST_CUR
        page_info.extend_from_slice(&[0; 48]); // CONTENTS
        page_info.extend_from_slice(&[0x70, 0x00]); // LENGTH
        page_info.extend_from_slice(&[0x05, 0, 0, 0, 0, 0]); // PAGE_TYPE secrets, IMI, VMPL3..1, rsvd
        page_info.extend_from_slice(&0x80d000u64.to_le_bytes()); // GPA
        assert_eq!(page_info.len(), 0x70);
        assert_eq!(g.ld(), <[u8; 48]>::from(Sha384::digest(&page_info)));
    }
}
