//! The SEV-SNP launch digest of a VM, computed from its artifacts exactly as
//! `sev-snp-measure` 0.0.13 computes it (`--mode snp`, `snp:ovmf-hash` and `snp:svsm`).
//!
//! The digest is the SHA-384 chain of `SNP_LAUNCH_UPDATE` page records (AMD SEV-SNP ABI spec
//! §8.17) over, in order:
//! 1. the OVMF image, as normal pages ending at 4 GiB (or a precomputed [`ovmf_hash`] of them);
//! 2. the sections OVMF's SEV metadata declares (`ovmf.rs`): `SNP_SEC_MEM` zero pages (unmeasured on
//!    GCE), the `SNP_SECRETS` page, the `CPUID` page (last on EC2), `SVSM_CAA` zero pages, and the
//!    `SNP_KERNEL_HASHES` page holding QEMU's SEV hashes table of kernel, initrd and command line
//!    ([`SevHashes`]) — or zero pages without a kernel;
//! 3. one VMSA page per vCPU (`vmsa.rs`), which carries the vCPU signature ([`VcpuType`]), the
//!    VMM's reset state ([`VmmType`]) and the guest features (`SEV_FEATURES`).
//!
//! | file | specification |
//! |---|---|
//! | `ovmf.rs` | edk2 OVMF GUIDed footer table and SEV metadata (`OvmfSevMetadata.asm`) |
//! | `sev_hashes.rs` | QEMU `target/i386/sev.c` SEV hashes table |
//! | `gctx.rs` | AMD SEV-SNP ABI §8.17 `PAGE_INFO` launch-digest chain |
//! | `vmsa.rs` | AMD64 APM Vol. 2 Table B-4 VMSA layout, per-VMM reset state |
//! | `vcpu_types.rs` | CPUID `Fn0000_0001_EAX` signatures of QEMU's EPYC models |
//!
//! Inputs are untrusted: a malformed firmware gives an [`SnpError`], never a panic, and the parser
//! allocates nothing (it borrows from the image). Everything is checked before any page is hashed.

mod error;
mod gctx;
mod ovmf;
mod sev_hashes;
mod vcpu_types;
mod vmsa;

use std::fmt;
use std::str::FromStr;

pub use error::SnpError;
pub use ovmf::SectionType;
pub use sev_hashes::SevHashes;
pub use vcpu_types::VcpuType;
pub use vmsa::MAX_VCPUS;

use gctx::Gctx;
use ovmf::{Ovmf, PAGE_SIZE};

/// Length of a SEV-SNP launch digest (SHA-384).
pub const LAUNCH_DIGEST_LEN: usize = gctx::LD_SIZE;

/// OVMF ends at 4 GiB: its first byte is at `FOUR_GB - len`.
const FOUR_GB: u64 = 0x1_0000_0000;

/// The VMM that launches the guest: the reset state it loads differs (sev-snp-measure `VMMType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum VmmType {
    /// QEMU/KVM (sev-snp-measure's `QEMU`, the default).
    #[default]
    Qemu,
    /// AWS EC2 (`ec2`): its own segment flags and RDX, the CPUID page measured last.
    Ec2,
    /// Google Compute Engine (`gce`): its own PAT and RDX, `SNP_SEC_MEM` unmeasured.
    Gce,
}

impl FromStr for VmmType {
    type Err = SnpError;

    /// Parses `qemu`, `ec2` or `gce`, in any case (sev-snp-measure itself spells QEMU `QEMU`).
    fn from_str(s: &str) -> Result<Self, SnpError> {
        match s.to_ascii_lowercase().as_str() {
            "qemu" => Ok(VmmType::Qemu),
            "ec2" => Ok(VmmType::Ec2),
            "gce" => Ok(VmmType::Gce),
            _ => Err(SnpError::UnknownVmmType {
                found: s.to_string(),
            }),
        }
    }
}

impl fmt::Display for VmmType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            VmmType::Qemu => "qemu",
            VmmType::Ec2 => "ec2",
            VmmType::Gce => "gce",
        })
    }
}

/// Everything that goes into the launch digest of an SNP guest booting OVMF
/// (`sev-snp-measure --mode snp`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnpLaunch {
    /// The OVMF firmware image (`-bios`), with its SEV metadata.
    pub ovmf: Vec<u8>,
    /// The digest of the OVMF pages computed earlier ([`ovmf_hash`], `--snp-ovmf-hash`); when set,
    /// the chain starts from it instead of hashing `ovmf` (whose metadata is still used).
    pub ovmf_hash: Option<[u8; LAUNCH_DIGEST_LEN]>,
    /// The kernel of a measured direct boot (`-kernel`); `None` boots without one.
    pub kernel: Option<Vec<u8>>,
    /// The initrd (`-initrd`); `None` is measured as an empty initrd. Needs `kernel`.
    pub initrd: Option<Vec<u8>>,
    /// The kernel command line (`-append`); `None` is measured as `""`. Needs `kernel`.
    pub append: Option<String>,
    /// Number of vCPUs (1 to [`MAX_VCPUS`]).
    pub vcpus: u32,
    /// The vCPU model; required for QEMU, ignored by EC2 and GCE.
    pub vcpu_type: Option<VcpuType>,
    /// The VMM.
    pub vmm: VmmType,
    /// The VMSA `SEV_FEATURES` value (bit 0 SNPActive; sev-snp-measure's default is `0x1`).
    pub guest_features: u64,
}

impl SnpLaunch {
    /// A QEMU launch of `ovmf` without a kernel, with sev-snp-measure's default guest features.
    pub fn new(ovmf: Vec<u8>, vcpus: u32, vcpu_type: VcpuType) -> Self {
        SnpLaunch {
            ovmf,
            ovmf_hash: None,
            kernel: None,
            initrd: None,
            append: None,
            vcpus,
            vcpu_type: Some(vcpu_type),
            vmm: VmmType::Qemu,
            guest_features: 0x1,
        }
    }
}

/// Everything that goes into the launch digest of a Coconut SVSM guest (`--mode snp:svsm`, QEMU).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SvsmLaunch {
    /// The OVMF image the SVSM loads, ending at 4 GiB.
    pub ovmf: Vec<u8>,
    /// The SVSM image, ending where OVMF's variable store begins.
    pub svsm: Vec<u8>,
    /// Size of the OVMF variable store (`OVMF_VARS`) between the SVSM and OVMF, in bytes.
    pub ovmf_vars_size: u64,
    /// Number of vCPUs (1 to [`MAX_VCPUS`]).
    pub vcpus: u32,
    /// The vCPU model.
    pub vcpu_type: VcpuType,
}

/// Checks that `data` is whole pages that fit below `end`, and returns its first address.
fn place(image: &'static str, data: &[u8], end: u64) -> Result<u64, SnpError> {
    if data.len() % PAGE_SIZE != 0 {
        return Err(SnpError::ImageNotPageAligned {
            image,
            len: data.len(),
        });
    }
    u64::try_from(data.len())
        .ok()
        .and_then(|len| end.checked_sub(len))
        .ok_or(SnpError::ImageTooLarge {
            image,
            len: data.len(),
            max: end,
            end,
        })
}

/// The SNP launch digest of `launch`, equal to sev-snp-measure 0.0.13's `--mode snp`.
pub fn launch_digest(launch: &SnpLaunch) -> Result<[u8; LAUNCH_DIGEST_LEN], SnpError> {
    let ovmf = Ovmf::parse("OVMF", &launch.ovmf)?;
    let ovmf_gpa = place("OVMF", ovmf.data(), FOUR_GB)?;
    ovmf.require_sev_metadata()?;
    let hashes = match &launch.kernel {
        Some(kernel) => Some(SevHashes::new(
            kernel,
            launch.initrd.as_deref().unwrap_or_default(),
            launch.append.as_deref(),
        )),
        None if launch.initrd.is_some() || launch.append.is_some() => {
            return Err(SnpError::InitrdOrAppendWithoutKernel);
        }
        None => None,
    };
    let hashes_page = match hashes {
        None => None,
        Some(_) if !ovmf.has_section(SectionType::SnpKernelHashes) => {
            return Err(SnpError::NoKernelHashesSection {
                found: ovmf.sections().map(|s| s.kind).collect(),
            });
        }
        Some(h) => {
            let page = h.page((ovmf.sev_hashes_table_gpa()? & 0xfff) as usize)?;
            let one_page = |s: &ovmf::Section| s.size as usize == PAGE_SIZE;
            if let Some(s) = ovmf
                .sections()
                .find(|s| s.kind == SectionType::SnpKernelHashes && !one_page(s))
            {
                return Err(SnpError::KernelHashesSectionSize { found: s.size });
            }
            Some(page)
        }
    };
    let vmsas = vmsa::SnpVmsas::new(
        launch.vmm,
        ovmf.sev_es_reset_eip()?,
        launch.vcpus,
        launch.vcpu_type,
        launch.guest_features,
    )?;

    let mut gctx = match launch.ovmf_hash {
        Some(seed) => Gctx::with_seed(seed),
        None => {
            let mut g = Gctx::new();
            g.update_normal_pages(ovmf_gpa, ovmf.data());
            g
        }
    };
    update_metadata_pages(&mut gctx, &ovmf, hashes_page.as_ref(), launch.vmm)?;
    for i in 0..launch.vcpus {
        let page = vmsas.page(i).ok_or(SnpError::NoApResetAddress {
            vcpus: launch.vcpus,
        })?;
        gctx.update_vmsa_page(page);
    }
    Ok(gctx.ld())
}

/// Measures the pages OVMF's SEV metadata declares, in order (sev-snp-measure
/// `snp_update_metadata_pages`).
fn update_metadata_pages(
    gctx: &mut Gctx,
    ovmf: &Ovmf<'_>,
    hashes_page: Option<&[u8; PAGE_SIZE]>,
    vmm: VmmType,
) -> Result<(), SnpError> {
    for s in ovmf.sections() {
        let gpa = u64::from(s.gpa);
        match s.kind {
            SectionType::SnpSecMemory if vmm == VmmType::Gce => {
                gctx.update_unmeasured_pages(gpa, s.size)
            }
            SectionType::SnpSecMemory | SectionType::SvsmCaa => gctx.update_zero_pages(gpa, s.size),
            SectionType::SnpSecrets => gctx.update_secrets_page(gpa),
            SectionType::Cpuid if vmm == VmmType::Ec2 => {} // measured last, below
            SectionType::Cpuid => gctx.update_cpuid_page(gpa),
            SectionType::SnpKernelHashes => match hashes_page {
                // Checked before hashing started; kept so that this function is safe on its own.
                Some(_) if s.size as usize != PAGE_SIZE => {
                    return Err(SnpError::KernelHashesSectionSize { found: s.size });
                }
                Some(page) => gctx.update_normal_pages(gpa, page),
                None => gctx.update_zero_pages(gpa, s.size),
            },
        }
    }
    if vmm == VmmType::Ec2 {
        for s in ovmf.sections().filter(|s| s.kind == SectionType::Cpuid) {
            gctx.update_cpuid_page(u64::from(s.gpa));
        }
    }
    Ok(())
}

/// The digest of the OVMF pages alone (`sev-snp-measure --mode snp:ovmf-hash`), to pass later as
/// [`SnpLaunch::ovmf_hash`].
pub fn ovmf_hash(ovmf: &[u8]) -> Result<[u8; LAUNCH_DIGEST_LEN], SnpError> {
    let parsed = Ovmf::parse("OVMF", ovmf)?;
    let gpa = place("OVMF", parsed.data(), FOUR_GB)?;
    let mut gctx = Gctx::new();
    gctx.update_normal_pages(gpa, parsed.data());
    Ok(gctx.ld())
}

/// The launch digest of a Coconut SVSM guest under QEMU, equal to sev-snp-measure 0.0.13's
/// `--mode snp:svsm`: OVMF pages, SVSM pages, the SVSM's metadata sections, then one SVSM VMSA
/// per vCPU (`SEV_FEATURES` is always SNPActive there).
pub fn svsm_launch_digest(launch: &SvsmLaunch) -> Result<[u8; LAUNCH_DIGEST_LEN], SnpError> {
    vmsa::check_vcpus(launch.vcpus)?;
    let ovmf = Ovmf::parse("OVMF", &launch.ovmf)?;
    let ovmf_gpa = place("OVMF", ovmf.data(), FOUR_GB)?;
    let layout = |detail| SnpError::SvsmLayout {
        svsm_len: launch.svsm.len(),
        ovmf_gpa,
        vars_size: launch.ovmf_vars_size,
        detail,
    };
    if launch.ovmf_vars_size % PAGE_SIZE as u64 != 0 {
        return Err(layout("a variable-store size that is a multiple of 4096"));
    }
    let svsm_end = ovmf_gpa
        .checked_sub(launch.ovmf_vars_size)
        .ok_or(layout("the variable store to fit below OVMF"))?;
    let svsm = Ovmf::parse("SVSM", &launch.svsm)?;
    let svsm_gpa = place("SVSM", svsm.data(), svsm_end)?;
    svsm.require_sev_metadata()?;
    let eip = u64::from(svsm.svsm_entry_offset()?) + svsm_gpa;
    let page = vmsa::svsm_page(eip, launch.vcpu_type)?;

    let mut gctx = Gctx::new();
    gctx.update_normal_pages(ovmf_gpa, ovmf.data());
    gctx.update_normal_pages(svsm_gpa, svsm.data());
    update_metadata_pages(&mut gctx, &svsm, None, VmmType::Qemu)?;
    for _ in 0..launch.vcpus {
        gctx.update_vmsa_page(&page);
    }
    Ok(gctx.ld())
}
