//! Malformed SEV-SNP inputs give clear [`SnpError`]s, never a panic: truncated and garbled OVMF
//! images (every truncation, every single-byte corruption of the footer table and SEV metadata,
//! random corruption), firmware without SEV metadata or without a kernel-hashes section, unknown
//! vCPU and VMM types, a missing vCPU type, impossible vCPU counts and SVSM layouts.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use proptest::prelude::*;
use secllama_measurements::snp::{
    self, MAX_VCPUS, SnpError, SnpLaunch, SvsmLaunch, VcpuType, VmmType, ovmf_hash,
};
use std::path::PathBuf;

fn input(name: &str) -> Vec<u8> {
    let dir = std::env::var_os("SECLLAMA_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared"));
    std::fs::read(dir.join("vectors/snp-measure/inputs").join(name)).unwrap()
}

fn amd_sev() -> Vec<u8> {
    input("ovmf_AmdSev_suffix.bin")
}

fn digest(ovmf: Vec<u8>) -> Result<[u8; 48], SnpError> {
    let mut launch = SnpLaunch::new(ovmf, 2, VcpuType::EpycV4);
    launch.kernel = Some(b"kernel".to_vec());
    snp::launch_digest(&launch)
}

/// Offset of the SEV metadata header (`ASEV`) in the AmdSev suffix.
fn metadata_at(ovmf: &[u8]) -> usize {
    ovmf.windows(4).position(|w| w == b"ASEV").unwrap()
}

#[test]
fn the_untouched_image_measures() {
    assert!(digest(amd_sev()).is_ok());
}

#[test]
fn every_truncation_is_an_error() {
    let ovmf = amd_sev();
    for len in 0..ovmf.len() {
        assert!(
            digest(ovmf[..len].to_vec()).is_err(),
            "prefix of {len} bytes"
        );
        assert!(
            digest(ovmf[ovmf.len() - len..].to_vec()).is_err(),
            "suffix of {len} bytes"
        );
        assert!(
            ovmf_hash(&ovmf[..len]).is_err(),
            "ovmf hash of a prefix of {len} bytes"
        );
    }
    let err = digest(ovmf[..40].to_vec()).unwrap_err();
    assert!(
        matches!(
            err,
            SnpError::ImageTooSmall {
                len: 40,
                min: 50,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(
        err.to_string().contains("40 bytes: expected at least 50"),
        "{err}"
    );
}

/// Every byte of the footer table and the SEV metadata, set to three other values: the result is
/// an error or a digest, never a panic; and a change to a GUID, size or type the launch reads is
/// refused.
#[test]
fn every_single_byte_corruption_of_the_tables_is_handled() {
    let ovmf = amd_sev();
    let start = metadata_at(&ovmf);
    for at in start..ovmf.len() {
        for v in [0x00, 0xff, ovmf[at] ^ 0x80] {
            let mut bad = ovmf.clone();
            bad[at] = v;
            let _ = digest(bad.clone());
            let _ = ovmf_hash(&bad);
        }
    }
}

#[test]
fn a_garbled_footer_guid_is_named() {
    let mut ovmf = amd_sev();
    let at = ovmf.len() - 32 - 16;
    ovmf[at] ^= 0xff;
    let err = digest(ovmf).unwrap_err();
    assert!(matches!(err, SnpError::NoFooterTable { .. }), "{err:?}");
    assert!(
        err.to_string()
            .contains("expected GUID 96b582de-1fb2-45f7-baea-a366c55a082d"),
        "{err}"
    );
}

#[test]
fn a_garbled_footer_size_is_refused() {
    for size in [0u16, 17, 0xffff] {
        let mut ovmf = amd_sev();
        let at = ovmf.len() - 32 - 18;
        ovmf[at..at + 2].copy_from_slice(&size.to_le_bytes());
        let err = digest(ovmf).unwrap_err();
        assert!(
            matches!(err, SnpError::BadFooterEntry { .. }),
            "size {size}: {err:?}"
        );
    }
}

#[test]
fn a_garbled_metadata_header_is_refused() {
    let ovmf = amd_sev();
    let at = metadata_at(&ovmf);
    let mut bad = ovmf.clone();
    bad[at] = b'X';
    let err = digest(bad).unwrap_err();
    assert!(matches!(err, SnpError::BadMetadataHeader { .. }), "{err:?}");
    assert!(
        err.to_string()
            .contains("expected signature \"ASEV\" version 1"),
        "{err}"
    );
    // num_items far beyond the header's size.
    let mut bad = ovmf.clone();
    bad[at + 12..at + 16].copy_from_slice(&u32::MAX.to_le_bytes());
    assert!(matches!(
        digest(bad),
        Err(SnpError::MetadataOutOfBounds { .. })
    ));
    // A section of an unknown type.
    let mut bad = ovmf.clone();
    bad[at + 16 + 8..at + 16 + 12].copy_from_slice(&7u32.to_le_bytes());
    let err = digest(bad).unwrap_err();
    assert!(
        matches!(
            err,
            SnpError::UnknownSectionType {
                index: 0,
                found: 7,
                ..
            }
        ),
        "{err:?}"
    );
    // A section that is not whole pages.
    let mut bad = ovmf;
    bad[at + 16 + 4..at + 16 + 8].copy_from_slice(&0x1234u32.to_le_bytes());
    assert!(matches!(
        digest(bad),
        Err(SnpError::SectionNotPageAligned { index: 0, .. })
    ));
}

#[test]
fn a_kernel_hashes_section_must_be_one_page() {
    let ovmf = amd_sev();
    let at = metadata_at(&ovmf) + 16;
    let index = (0..7)
        .find(|i| ovmf[at + i * 12 + 8] == 0x10)
        .expect("the AmdSev build has an SNP_KERNEL_HASHES section");
    let mut bad = ovmf;
    bad[at + index * 12 + 4..at + index * 12 + 8].copy_from_slice(&0x2000u32.to_le_bytes());
    let err = digest(bad.clone()).unwrap_err();
    assert_eq!(err, SnpError::KernelHashesSectionSize { found: 0x2000 });
    // Without a kernel the section is just zero pages, whatever its size.
    assert!(snp::launch_digest(&SnpLaunch::new(bad, 1, VcpuType::Epyc)).is_ok());
}

#[test]
fn a_metadata_offset_outside_the_image_is_refused() {
    let ovmf = amd_sev();
    // The OVMF_SEV_METADATA_GUID entry's data (its 4-byte offset) sits right before its header.
    let guid = [0x66, 0x65, 0x88, 0xdc, 0x4a, 0x98, 0x98, 0x47];
    let entry = ovmf.windows(8).position(|w| w == guid).unwrap();
    for from_end in [0u32, 1, 4097, u32::MAX] {
        let mut bad = ovmf.clone();
        bad[entry - 2 - 4..entry - 2].copy_from_slice(&from_end.to_le_bytes());
        let err = digest(bad).unwrap_err();
        assert!(
            matches!(
                err,
                SnpError::MetadataOutOfBounds { .. } | SnpError::BadMetadataHeader { .. }
            ),
            "{from_end}: {err:?}"
        );
    }
}

#[test]
fn firmware_without_sev_metadata_is_refused() {
    let mut ovmf = amd_sev();
    let guid = [0x66, 0x65, 0x88, 0xdc, 0x4a, 0x98, 0x98, 0x47];
    let entry = ovmf.windows(8).position(|w| w == guid).unwrap();
    ovmf[entry] ^= 1; // the entry becomes one the launch does not know
    let err = digest(ovmf).unwrap_err();
    assert!(matches!(err, SnpError::NoSevMetadata { .. }), "{err:?}");
    assert!(err.to_string().contains("no SEV metadata"), "{err}");
}

#[test]
fn a_misaligned_image_is_refused() {
    let mut ovmf = vec![0u8];
    ovmf.extend(amd_sev());
    assert!(matches!(
        digest(ovmf),
        Err(SnpError::ImageNotPageAligned { len: 4097, .. })
    ));
}

#[test]
fn a_kernel_needs_a_kernel_hashes_section() {
    let err = digest(input("ovmf_OvmfX64_suffix.bin")).unwrap_err();
    assert!(
        matches!(err, SnpError::NoKernelHashesSection { .. }),
        "{err:?}"
    );
    assert!(
        err.to_string()
            .contains("doesn't include SNP_KERNEL_HASHES"),
        "{err}"
    );
    let mut launch = SnpLaunch::new(amd_sev(), 1, VcpuType::Epyc);
    launch.append = Some("console=ttyS0".into());
    assert_eq!(
        snp::launch_digest(&launch),
        Err(SnpError::InitrdOrAppendWithoutKernel)
    );
}

#[test]
fn unknown_vcpu_and_vmm_types_are_named() {
    for name in ["EPYC-v5", "epyc-v4", "Zen", ""] {
        let err = name.parse::<VcpuType>().unwrap_err();
        assert_eq!(err, SnpError::UnknownVcpuType { found: name.into() });
        let msg = err.to_string();
        assert!(
            msg.contains(&format!("{name:?}"))
                && msg.contains("EPYC-Milan")
                && msg.contains("EPYC-Turin"),
            "{msg}"
        );
    }
    let err = "kvm".parse::<VmmType>().unwrap_err();
    assert!(
        err.to_string().contains("expected qemu, ec2 or gce"),
        "{err}"
    );
    assert_eq!("QEMU".parse::<VmmType>(), Ok(VmmType::Qemu));
}

#[test]
fn qemu_needs_a_vcpu_type_and_a_sane_vcpu_count() {
    let mut launch = SnpLaunch::new(amd_sev(), 1, VcpuType::Epyc);
    launch.vcpu_type = None;
    let err = snp::launch_digest(&launch).unwrap_err();
    assert_eq!(err, SnpError::MissingVcpuType { vmm: VmmType::Qemu });
    for vcpus in [0, MAX_VCPUS + 1, u32::MAX] {
        let launch = SnpLaunch::new(amd_sev(), vcpus, VcpuType::Epyc);
        assert_eq!(
            snp::launch_digest(&launch),
            Err(SnpError::VcpuCount { found: vcpus })
        );
    }
    assert!(snp::launch_digest(&SnpLaunch::new(amd_sev(), MAX_VCPUS, VcpuType::Epyc)).is_ok());
}

#[test]
fn impossible_svsm_layouts_are_refused() {
    let launch = |svsm: Vec<u8>, ovmf_vars_size| SvsmLaunch {
        ovmf: amd_sev(),
        svsm,
        ovmf_vars_size,
        vcpus: 1,
        vcpu_type: VcpuType::EpycV4,
    };
    let svsm = input("svsm.bin");
    assert!(matches!(
        snp::svsm_launch_digest(&launch(svsm.clone(), 100)),
        Err(SnpError::SvsmLayout { .. })
    ));
    assert!(matches!(
        snp::svsm_launch_digest(&launch(svsm.clone(), 1 << 40)),
        Err(SnpError::SvsmLayout { .. })
    ));
    assert!(matches!(
        snp::svsm_launch_digest(&launch(svsm, 0xffff_f000)),
        Err(SnpError::ImageTooLarge { .. })
    ));
    assert!(matches!(
        snp::svsm_launch_digest(&launch(vec![0; 4096], 0)),
        Err(SnpError::NoFooterTable { .. })
    ));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Random corruption anywhere in the image, and random tails grafted onto random data:
    /// an error or a digest, never a panic.
    #[test]
    fn random_corruption_never_panics(edits in prop::collection::vec((0usize..4096, any::<u8>()), 1..8),
                                      junk in prop::collection::vec(any::<u8>(), 0..256)) {
        let mut ovmf = amd_sev();
        for (at, v) in edits {
            ovmf[at] = v;
        }
        let _ = digest(ovmf.clone());
        let _ = ovmf_hash(&ovmf);
        let mut grafted = junk;
        grafted.extend_from_slice(&amd_sev()[4096 - 64..]);
        let _ = digest(grafted);
    }
}
