//! [`SnpError`]: every way a SEV-SNP launch digest can be refused. Each variant says what was
//! expected and what was found, with byte offsets into the firmware image where there is one.

use super::ovmf::SectionType;
use super::{VmmType, vmsa::MAX_VCPUS};

/// Why a SEV-SNP launch digest could not be computed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SnpError {
    /// The image is shorter than the OVMF footer (the GUIDed table ends 32 bytes before the end).
    #[error(
        "{image} is {len} bytes: expected at least {min} bytes to hold the OVMF GUIDed footer table"
    )]
    ImageTooSmall {
        /// Which image ("OVMF" or "SVSM").
        image: &'static str,
        /// Its length.
        len: usize,
        /// The smallest length that can hold a footer table.
        min: usize,
    },
    /// The image is not a whole number of 4 KiB pages, so it cannot be measured page by page.
    #[error("{image} is {len} bytes: expected a multiple of 4096 (whole pages)")]
    ImageNotPageAligned {
        /// Which image.
        image: &'static str,
        /// Its length.
        len: usize,
    },
    /// The image does not fit below the address where it must end (4 GiB for OVMF).
    #[error("{image} is {len} bytes: expected at most {max} bytes (it must fit below {end:#x})")]
    ImageTooLarge {
        /// Which image.
        image: &'static str,
        /// Its length.
        len: usize,
        /// The largest length that fits.
        max: u64,
        /// The guest-physical address the image ends at.
        end: u64,
    },
    /// The GUID where the footer table must be is not the OVMF table footer GUID.
    #[error(
        "{image} has no OVMF GUIDed footer table: expected GUID {expected} at offset {offset:#x}, found {found}"
    )]
    NoFooterTable {
        /// Which image.
        image: &'static str,
        /// Offset of the GUID that was read.
        offset: usize,
        /// `96b582de-1fb2-45f7-baea-a366c55a082d`.
        expected: String,
        /// The GUID found there.
        found: String,
    },
    /// A footer-table length field points outside the table or the image.
    #[error(
        "{image} footer table entry at offset {offset:#x} declares {size} bytes: expected {expected}"
    )]
    BadFooterEntry {
        /// Which image.
        image: &'static str,
        /// Offset of the entry header (its 2-byte size field).
        offset: usize,
        /// The declared size.
        size: usize,
        /// What a valid size would be.
        expected: String,
    },
    /// The same known GUID appears twice in the footer table, so which one counts is ambiguous.
    #[error("{image} footer table has GUID {guid} twice: expected each entry at most once")]
    DuplicateFooterEntry {
        /// Which image.
        image: &'static str,
        /// The repeated GUID.
        guid: String,
    },
    /// A footer-table entry the launch needs is absent.
    #[error("{image} footer table has no {name} ({guid}) entry: expected one for a SEV-SNP launch")]
    MissingFooterEntry {
        /// Which image.
        image: &'static str,
        /// Spec name of the entry (e.g. `SEV_ES_RESET_BLOCK_GUID`).
        name: &'static str,
        /// Its GUID.
        guid: String,
    },
    /// A footer-table entry is too short for the value it must hold.
    #[error("{image} footer entry {name} holds {found} bytes: expected at least {expected}")]
    ShortFooterEntry {
        /// Which image.
        image: &'static str,
        /// Spec name of the entry.
        name: &'static str,
        /// Bytes needed.
        expected: usize,
        /// Bytes present.
        found: usize,
    },
    /// The OVMF has no SEV metadata (`OvmfSevMetadataGuid` entry): it cannot boot an SNP guest.
    #[error(
        "{image} has no SEV metadata (footer entry {guid}): expected an SEV-SNP capable firmware (e.g. edk2 OvmfPkg/AmdSev)"
    )]
    NoSevMetadata {
        /// Which image.
        image: &'static str,
        /// The SEV metadata GUID.
        guid: String,
    },
    /// The SEV metadata header or its section list lies (partly) outside the image.
    #[error(
        "{image} SEV metadata at offset {offset:#x} spans {size} bytes: expected it inside the {len}-byte image{detail}"
    )]
    MetadataOutOfBounds {
        /// Which image.
        image: &'static str,
        /// Offset of the metadata header (may be the offset that would underflow).
        offset: u64,
        /// Bytes it claims.
        size: u64,
        /// Image length.
        len: usize,
        /// Extra explanation (e.g. item count versus header size).
        detail: String,
    },
    /// The SEV metadata header does not start with `ASEV` version 1.
    #[error(
        "{image} SEV metadata at offset {offset:#x}: expected signature \"ASEV\" version 1, found {signature:02x?} version {version}"
    )]
    BadMetadataHeader {
        /// Which image.
        image: &'static str,
        /// Offset of the header.
        offset: usize,
        /// Signature found.
        signature: [u8; 4],
        /// Version found.
        version: u32,
    },
    /// A metadata section has a type this measurement does not know.
    #[error(
        "{image} SEV metadata section {index} (offset {offset:#x}) has type {found:#x}: expected 1 (SNP_SEC_MEM), 2 (SNP_SECRETS), 3 (CPUID), 4 (SVSM_CAA) or 0x10 (SNP_KERNEL_HASHES)"
    )]
    UnknownSectionType {
        /// Which image.
        image: &'static str,
        /// Index of the section.
        index: usize,
        /// Offset of the section descriptor.
        offset: usize,
        /// The type found.
        found: u32,
    },
    /// A metadata section is not made of whole, page-aligned pages.
    #[error(
        "{image} SEV metadata section {index} ({kind:?}) at gpa {gpa:#x} size {size:#x}: expected a page-aligned address and a size that is a multiple of 4096"
    )]
    SectionNotPageAligned {
        /// Which image.
        image: &'static str,
        /// Index of the section.
        index: usize,
        /// Section type.
        kind: SectionType,
        /// Its guest-physical address.
        gpa: u32,
        /// Its size.
        size: u32,
    },
    /// An initrd or a command line was given without a kernel: QEMU would not measure them.
    #[error(
        "an initrd or a kernel command line was given without a kernel: expected a kernel with them"
    )]
    InitrdOrAppendWithoutKernel,
    /// A kernel was given, but the firmware has no `SNP_KERNEL_HASHES` section to measure it into.
    #[error(
        "Kernel specified but OVMF metadata doesn't include SNP_KERNEL_HASHES section: expected an OVMF built with kernel-hashes support (edk2 OvmfPkg/AmdSev), found sections {found:?}"
    )]
    NoKernelHashesSection {
        /// The section types the firmware has.
        found: Vec<SectionType>,
    },
    /// The `SNP_KERNEL_HASHES` section is not the one page the hashes table is written into.
    #[error("SNP_KERNEL_HASHES section is {found:#x} bytes: expected exactly one page (0x1000)")]
    KernelHashesSectionSize {
        /// Its size.
        found: u32,
    },
    /// The SEV hashes table does not fit in its page at the offset the firmware gives.
    #[error(
        "SEV hashes table at page offset {offset:#x} is {table_len} bytes: expected it to fit in the page (offset at most {max:#x})"
    )]
    HashesTableOffset {
        /// `SEV_HASH_TABLE_RV_GUID` address & 0xfff.
        offset: usize,
        /// Length of the padded table.
        table_len: usize,
        /// Largest offset that fits.
        max: usize,
    },
    /// The vCPU count is outside what a SEV-SNP guest can have.
    #[error("vCPU count {found}: expected 1 to {max}", max = MAX_VCPUS)]
    VcpuCount {
        /// The count given.
        found: u32,
    },
    /// QEMU puts the vCPU signature into RDX, so the vCPU type must be known.
    #[error(
        "VMM type {vmm} needs a vCPU type (its signature goes into the VMSA's RDX): expected one of {known}, found none",
        known = super::VcpuType::NAMES.join(", ")
    )]
    MissingVcpuType {
        /// The VMM type.
        vmm: VmmType,
    },
    /// A vCPU type name sev-snp-measure does not know.
    #[error("unknown vCPU type {found:?}: expected one of {known}", known = super::VcpuType::NAMES.join(", "))]
    UnknownVcpuType {
        /// The name given.
        found: String,
    },
    /// A VMM type name sev-snp-measure does not know.
    #[error("unknown VMM type {found:?}: expected qemu, ec2 or gce")]
    UnknownVmmType {
        /// The name given.
        found: String,
    },
    /// More than one vCPU, but the firmware's AP reset address is 0: there is no AP VMSA to build.
    #[error(
        "{vcpus} vCPUs, but the SEV-ES reset block gives AP reset address 0: expected a non-zero address for the application processors"
    )]
    NoApResetAddress {
        /// The vCPU count.
        vcpus: u32,
    },
    /// The SVSM image does not fit below OVMF and its variable store.
    #[error(
        "SVSM of {svsm_len} bytes below OVMF at {ovmf_gpa:#x} and {vars_size} bytes of OVMF variables: expected {detail}"
    )]
    SvsmLayout {
        /// SVSM image length.
        svsm_len: usize,
        /// OVMF guest-physical address.
        ovmf_gpa: u64,
        /// OVMF_VARS size.
        vars_size: u64,
        /// What is wrong.
        detail: &'static str,
    },
    /// The `sev` crate refused to build a VMSA page (an internal inconsistency, not an input error).
    #[error("building the VMSA page with the sev crate failed: {0}")]
    Vmsa(String),
}
