//! The initial VMSA pages (AMD64 APM Vol. 2 Table B-4, "VMSA Layout, State Save Area for SEV-ES")
//! that the VMM measures for each vCPU: one for the boot processor (reset at `0xfffffff0`) and one
//! shared by every application processor (reset at OVMF's SEV-ES reset block address).
//!
//! The pages are built by `sev::measurement::vmsa::VMSA`, which encodes the 4 KiB layout and the
//! QEMU reset state correctly. Where `sev` 8 differs from sev-snp-measure 0.0.13 the registers are
//! then set here, each one named below:
//! - **EC2**: sev-snp-measure (since its EC2 VMSA update) loads RDX with `0x600`, EC2's reset value;
//!   `sev` 8 leaves RDX at 0.
//! - **GCE**: `sev` has no GCE model. GCE resets like QEMU but with `G_PAT = 0x70106`,
//!   `RDX = 0x600`, and MXCSR/x87 FCW left at 0.
//! - **Coconut SVSM**: `sev` has no SVSM model; its VMSA starts in 32-bit protected mode
//!   (flat segments, `CR0 = 0x11`) at the SVSM entry point, and (as in sev-snp-measure) its x87 FCW
//!   stays 0.

use sev::measurement::vcpu_types::CpuType;
use sev::measurement::vmsa::{GuestFeatures, VMMType as SevVmm, VMSA};
use sev::parser::ByteParser;

use super::ovmf::PAGE_SIZE;
use super::{SnpError, VcpuType, VmmType};

/// The most vCPUs a launch may have: KVM's `KVM_MAX_VCPUS` on x86-64 (`CONFIG_MAXSMP`), also
/// QEMU's q35 limit.
pub const MAX_VCPUS: u32 = 4096;

/// One VMSA page.
pub(crate) type Page = [u8; PAGE_SIZE];

/// Byte offsets of the VMSA fields set here (APM Vol. 2 Table B-4).
mod offset {
    pub(super) const ES: usize = 0x000;
    pub(super) const CS: usize = 0x010;
    pub(super) const SS: usize = 0x020;
    pub(super) const DS: usize = 0x030;
    pub(super) const FS: usize = 0x040;
    pub(super) const CR0: usize = 0x158;
    pub(super) const RIP: usize = 0x178;
    pub(super) const G_PAT: usize = 0x268;
    pub(super) const RDX: usize = 0x310;
    pub(super) const MXCSR: usize = 0x408;
    pub(super) const X87_FCW: usize = 0x410;
}

/// RDX at reset on EC2 and GCE (family 6, model 0), instead of QEMU's vCPU signature.
const RESET_RDX_EC2_GCE: u64 = 0x600;
/// The PAT MSR value the GCE hypervisor loads instead of the architectural default.
const GCE_G_PAT: u64 = 0x0007_0106;

fn put(page: &mut Page, at: usize, bytes: &[u8]) {
    page[at..at + bytes.len()].copy_from_slice(bytes);
}

/// A VMCB segment register `{ selector, attrib, limit, base }`.
fn put_segment(page: &mut Page, at: usize, selector: u16, attrib: u16, limit: u32, base: u64) {
    put(page, at, &selector.to_le_bytes());
    put(page, at + 2, &attrib.to_le_bytes());
    put(page, at + 4, &limit.to_le_bytes());
    put(page, at + 8, &base.to_le_bytes());
}

fn to_page(bytes: &[u8]) -> Result<Page, SnpError> {
    bytes
        .try_into()
        .map_err(|_| SnpError::Vmsa(format!("a {}-byte page, expected {PAGE_SIZE}", bytes.len())))
}

/// Builds the BSP page and, when `ap_eip` is non-zero, the AP page with the `sev` crate.
fn sev_pages(
    ap_eip: u32,
    cpu: CpuType,
    vmm: SevVmm,
    features: u64,
) -> Result<(Page, Option<Page>), SnpError> {
    let features = GuestFeatures::from_bytes(&features.to_le_bytes())
        .map_err(|e| SnpError::Vmsa(e.to_string()))?;
    let vmsa = VMSA::new(u64::from(ap_eip), cpu, vmm, None, features);
    let pages = vmsa
        .pages(if ap_eip == 0 { 1 } else { 2 })
        .map_err(|e| SnpError::Vmsa(e.to_string()))?;
    let bsp = to_page(pages.first().map_or(&[][..], Vec::as_slice))?;
    let ap = pages.get(1).map(|p| to_page(p)).transpose()?;
    Ok((bsp, ap))
}

/// The VMSA pages of an SNP guest booting OVMF.
pub(crate) struct SnpVmsas {
    bsp: Page,
    ap: Option<Page>,
}

impl SnpVmsas {
    /// Builds the pages for `vmm`; QEMU needs the vCPU type (its signature goes into RDX), EC2 and
    /// GCE ignore it. Fails when `vcpus` is out of range or APs are needed but `ap_eip` is 0.
    pub(crate) fn new(
        vmm: VmmType,
        ap_eip: u32,
        vcpus: u32,
        vcpu_type: Option<VcpuType>,
        guest_features: u64,
    ) -> Result<Self, SnpError> {
        check_vcpus(vcpus)?;
        if vcpus > 1 && ap_eip == 0 {
            return Err(SnpError::NoApResetAddress { vcpus });
        }
        let cpu = match (vmm, vcpu_type) {
            (_, Some(t)) => t.sev_cpu_type(),
            (VmmType::Qemu, None) => return Err(SnpError::MissingVcpuType { vmm }),
            // RDX is set to EC2's/GCE's reset value below; the type does not matter.
            (VmmType::Ec2 | VmmType::Gce, None) => CpuType::Epyc,
        };
        let sev_vmm = match vmm {
            VmmType::Qemu | VmmType::Gce => SevVmm::QEMU,
            VmmType::Ec2 => SevVmm::EC2,
        };
        let (mut bsp, mut ap) = sev_pages(ap_eip, cpu, sev_vmm, guest_features)?;
        for page in std::iter::once(&mut bsp).chain(ap.as_mut()) {
            match vmm {
                VmmType::Qemu => {}
                VmmType::Ec2 => put(page, offset::RDX, &RESET_RDX_EC2_GCE.to_le_bytes()),
                VmmType::Gce => {
                    put(page, offset::G_PAT, &GCE_G_PAT.to_le_bytes());
                    put(page, offset::RDX, &RESET_RDX_EC2_GCE.to_le_bytes());
                    put(page, offset::MXCSR, &0u32.to_le_bytes());
                    put(page, offset::X87_FCW, &0u16.to_le_bytes());
                }
            }
        }
        Ok(SnpVmsas { bsp, ap })
    }

    /// The page of vCPU `index` (0 is the boot processor).
    pub(crate) fn page(&self, index: u32) -> Option<&Page> {
        if index == 0 {
            Some(&self.bsp)
        } else {
            self.ap.as_ref()
        }
    }
}

/// Fails unless `1 <= vcpus <= MAX_VCPUS`.
pub(crate) fn check_vcpus(vcpus: u32) -> Result<(), SnpError> {
    if (1..=MAX_VCPUS).contains(&vcpus) {
        Ok(())
    } else {
        Err(SnpError::VcpuCount { found: vcpus })
    }
}

/// The VMSA page every vCPU of a Coconut SVSM guest starts from (QEMU, `SEV_FEATURES = SNPActive`):
/// flat 32-bit protected mode at `eip`, the SVSM entry point.
pub(crate) fn svsm_page(eip: u64, vcpu_type: VcpuType) -> Result<Page, SnpError> {
    const SNP_ACTIVE: u64 = 0x1;
    let (mut page, _) = sev_pages(0, vcpu_type.sev_cpu_type(), SevVmm::QEMU, SNP_ACTIVE)?;
    for at in [offset::ES, offset::SS, offset::DS, offset::FS] {
        put_segment(&mut page, at, 0x10, 0xc93, 0xffff_ffff, 0);
    }
    put_segment(&mut page, offset::CS, 0x08, 0xc9b, 0xffff_ffff, 0);
    put(&mut page, offset::CR0, &0x11u64.to_le_bytes());
    put(&mut page, offset::RIP, &eip.to_le_bytes());
    put(&mut page, offset::X87_FCW, &0u16.to_le_bytes());
    Ok(page)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn u64_at(p: &Page, at: usize) -> u64 {
        u64::from_le_bytes(p[at..at + 8].try_into().unwrap())
    }

    /// QEMU is where `sev` is right: its page is used as is, and it holds the values the
    /// register table of sev-snp-measure gives.
    #[test]
    fn qemu_page_is_the_sev_crates() {
        let v = SnpVmsas::new(VmmType::Qemu, 0x80b004, 2, Some(VcpuType::EpycMilan), 0x21).unwrap();
        let (bsp, ap) = (v.page(0).unwrap(), v.page(1).unwrap());
        assert_eq!(u64_at(bsp, offset::RDX), 0xa00f11);
        assert_eq!(u64_at(bsp, offset::RIP), 0xfff0);
        assert_eq!(u64_at(ap, offset::RIP), 0xb004);
        assert_eq!(u64_at(bsp, offset::CS + 8), 0xffff_0000);
        assert_eq!(u64_at(ap, offset::CS + 8), 0x0080_0000);
        assert_eq!(u64_at(bsp, offset::G_PAT), 0x0007_0406_0007_0406);
        assert_eq!(u64_at(bsp, 0x3b0), 0x21); // SEV_FEATURES
        assert_eq!(
            u32::from_le_bytes(bsp[offset::MXCSR..offset::MXCSR + 4].try_into().unwrap()),
            0x1f80
        );
        assert_eq!(
            u16::from_le_bytes([bsp[offset::X87_FCW], bsp[offset::X87_FCW + 1]]),
            0x37f
        );
    }

    #[test]
    fn ec2_and_gce_ignore_the_vcpu_type() {
        for vmm in [VmmType::Ec2, VmmType::Gce] {
            let a = SnpVmsas::new(vmm, 0x80b004, 2, None, 1).unwrap();
            let b = SnpVmsas::new(vmm, 0x80b004, 2, Some(VcpuType::EpycGenoa), 1).unwrap();
            assert_eq!(a.page(0), b.page(0));
            assert_eq!(u64_at(a.page(1).unwrap(), offset::RDX), 0x600);
        }
        assert!(matches!(
            SnpVmsas::new(VmmType::Qemu, 0x80b004, 1, None, 1),
            Err(SnpError::MissingVcpuType { vmm: VmmType::Qemu })
        ));
    }

    #[test]
    fn aps_need_a_reset_address() {
        assert!(SnpVmsas::new(VmmType::Qemu, 0, 1, Some(VcpuType::Epyc), 1).is_ok());
        assert!(matches!(
            SnpVmsas::new(VmmType::Qemu, 0, 2, Some(VcpuType::Epyc), 1),
            Err(SnpError::NoApResetAddress { vcpus: 2 })
        ));
    }
}
