//! Cross-check against the real `sev-snp-measure` 0.0.13 (PyPI, installed in the test venv by
//! `scripts/setup.sh`): for launches varied over every vCPU type, vCPU counts 1/2/4/64, the three
//! VMMs (QEMU, EC2, GCE), kernels/initrds of several sizes or none, command lines (empty, padded
//! with spaces, quoted, non-ASCII, long), guest features, a precomputed OVMF hash, three firmware
//! images, and Coconut SVSM launches, our digest equals the one the Python tool prints.
//!
//! The peer is `$SECLLAMA_VENV/bin/sev-snp-measure` (default `<workspace>/.venv`); when it is
//! missing the test fails and says how to install it — it is never skipped.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use secllama_measurements::snp::{self, SnpLaunch, SvsmLaunch, VcpuType, VmmType};
use std::path::{Path, PathBuf};
use std::process::Command;

fn inputs() -> PathBuf {
    std::env::var_os("SECLLAMA_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared"))
        .join("vectors/snp-measure/inputs")
}

fn peer_bin() -> PathBuf {
    let venv = std::env::var_os("SECLLAMA_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.venv"));
    let bin = venv.join("bin/sev-snp-measure");
    assert!(
        bin.exists(),
        "{} is missing: run scripts/setup.sh (it installs sev-snp-measure==0.0.13 into the venv), \
         or set SECLLAMA_VENV to a venv that has it",
        bin.display()
    );
    bin
}

/// Runs the peer and returns the hex digest it prints.
fn peer(args: &[String]) -> String {
    let out = Command::new(peer_bin())
        .args(args)
        .output()
        .expect("run sev-snp-measure");
    assert!(
        out.status.success(),
        "sev-snp-measure {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// Deterministic, non-repeating bytes (xorshift) so that every size gives a distinct file.
fn blob(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// One launch, described once and turned into both the peer's arguments and our input.
#[derive(Clone)]
struct Case {
    ovmf: &'static str,
    kernel: Option<usize>,
    initrd: Option<usize>,
    append: Option<String>,
    vcpus: u32,
    vcpu_type: Option<VcpuType>,
    vmm: VmmType,
    features: u64,
    precomputed_ovmf_hash: bool,
}

impl Case {
    fn base(vcpus: u32, vcpu_type: VcpuType) -> Self {
        Case {
            ovmf: "ovmf_AmdSev_suffix.bin",
            kernel: None,
            initrd: None,
            append: None,
            vcpus,
            vcpu_type: Some(vcpu_type),
            vmm: VmmType::Qemu,
            features: 0x1,
            precomputed_ovmf_hash: false,
        }
    }

    fn with_kernel(mut self, kernel: usize, initrd: Option<usize>, append: Option<&str>) -> Self {
        self.kernel = Some(kernel);
        self.initrd = initrd;
        self.append = append.map(str::to_string);
        self
    }

    fn check(&self, tmp: &Path) {
        let ovmf_path = inputs().join(self.ovmf);
        let ovmf = std::fs::read(&ovmf_path).unwrap();
        let file = |kind: &str, len: usize, seed: u64| {
            let path = tmp.join(format!("{kind}-{len}"));
            let data = blob(len, seed);
            std::fs::write(&path, &data).unwrap();
            (path, data)
        };
        let mut args: Vec<String> = vec![
            "--mode".into(),
            "snp".into(),
            "--ovmf".into(),
            ovmf_path.display().to_string(),
        ];
        args.extend(["--vcpus".into(), self.vcpus.to_string()]);
        if let Some(t) = self.vcpu_type {
            args.extend(["--vcpu-type".into(), t.name().into()]);
        }
        // sev-snp-measure 0.0.13 spells the QEMU VMM type in capitals.
        let vmm = if self.vmm == VmmType::Qemu {
            "QEMU".to_string()
        } else {
            self.vmm.to_string()
        };
        args.extend([
            "--vmm-type".into(),
            vmm,
            "--guest-features".into(),
            format!("{:#x}", self.features),
        ]);
        let mut launch = SnpLaunch {
            ovmf: ovmf.clone(),
            ovmf_hash: None,
            kernel: None,
            initrd: None,
            append: self.append.clone(),
            vcpus: self.vcpus,
            vcpu_type: self.vcpu_type,
            vmm: self.vmm,
            guest_features: self.features,
        };
        if let Some(len) = self.kernel {
            let (path, data) = file("kernel", len, 1);
            args.extend(["--kernel".into(), path.display().to_string()]);
            launch.kernel = Some(data);
        }
        if let Some(len) = self.initrd {
            let (path, data) = file("initrd", len, 2);
            args.extend(["--initrd".into(), path.display().to_string()]);
            launch.initrd = Some(data);
        }
        if let Some(append) = &self.append {
            args.push(format!("--append={append}"));
        }
        if self.precomputed_ovmf_hash {
            let hash = peer(&[
                "--mode".into(),
                "snp:ovmf-hash".into(),
                "--ovmf".into(),
                ovmf_path.display().to_string(),
            ]);
            assert_eq!(
                hex::encode(snp::ovmf_hash(&ovmf).unwrap()),
                hash,
                "ovmf hash of {}",
                self.ovmf
            );
            launch.ovmf_hash = Some(hex::decode(&hash).unwrap().try_into().unwrap());
            args.extend(["--snp-ovmf-hash".into(), hash]);
        }
        let ours = snp::launch_digest(&launch).unwrap_or_else(|e| panic!("{args:?}: {e}"));
        assert_eq!(
            hex::encode(ours),
            peer(&args),
            "sev-snp-measure {}",
            args.join(" ")
        );
    }
}

fn cases() -> Vec<Case> {
    let mut cases = Vec::new();
    // Every vCPU type, cycling through the vCPU counts, with a kernel.
    for (i, t) in VcpuType::all().enumerate() {
        let vcpus = [1, 2, 4, 64][i % 4];
        cases.push(Case::base(vcpus, t).with_kernel(
            4096 * 3 + 17,
            Some(1000),
            Some("console=ttyS0"),
        ));
    }
    // Every VMM × vCPU count, alternately with and without kernel; EC2/GCE also without a vCPU type.
    for vmm in [VmmType::Qemu, VmmType::Ec2, VmmType::Gce] {
        for (i, vcpus) in [1, 2, 4, 64].into_iter().enumerate() {
            let mut c = Case::base(vcpus, VcpuType::EpycGenoa);
            c.vmm = vmm;
            c.features = [0x1, 0x21][i % 2];
            if i % 2 == 0 {
                c = c.with_kernel(8192, Some(4096), Some("root=/dev/vda ro"));
            }
            if vmm != VmmType::Qemu && i == 3 {
                c.vcpu_type = None;
            }
            cases.push(c);
        }
    }
    // Command lines, as given (not trimmed), including none and empty.
    let long = "x=".repeat(1500);
    for append in [
        None,
        Some(""),
        Some("console=ttyS0 loglevel=7"),
        Some("  padded  "),
        Some("q=\"a b\" = c"),
        Some("ünïcødé=✓"),
        Some(long.as_str()),
        Some("-starts-with-dash"),
    ] {
        cases.push(Case::base(2, VcpuType::EpycMilan).with_kernel(100_000, None, append));
    }
    // Kernel and initrd presence and sizes.
    for (kernel, initrd) in [
        (0, None),
        (0, Some(0)),
        (1, Some(3)),
        (4096, Some(65_536)),
        (12_345, None),
    ] {
        cases.push(Case::base(1, VcpuType::EpycV4).with_kernel(kernel, initrd, None));
    }
    // Guest features (SEV_FEATURES is written as given).
    for features in [0x0, 0x1, 0x21, 0x3ff, 0x8000_0000_0000_0001, u64::MAX] {
        let mut c = Case::base(4, VcpuType::EpycRome);
        c.features = features;
        cases.push(c);
    }
    // Other firmware images (no kernel-hashes section), on each VMM.
    for (ovmf, vmm) in [
        ("ovmf_OvmfX64_suffix.bin", VmmType::Qemu),
        ("ovmf_OvmfX64_suffix.bin", VmmType::Ec2),
        ("ovmf_OvmfX64_suffix.bin", VmmType::Gce),
        ("svsm_ovmf.fd", VmmType::Qemu),
    ] {
        let mut c = Case::base(2, VcpuType::EpycTurin);
        c.ovmf = ovmf;
        c.vmm = vmm;
        cases.push(c);
    }
    // A precomputed OVMF hash (computed by the peer's snp:ovmf-hash, and compared with ours).
    for vmm in [VmmType::Qemu, VmmType::Ec2] {
        let mut c = Case::base(2, VcpuType::EpycV4).with_kernel(5000, Some(6000), Some("a"));
        c.vmm = vmm;
        c.precomputed_ovmf_hash = true;
        cases.push(c);
    }
    cases
}

#[test]
fn snp_digests_equal_sev_snp_measure() {
    let tmp = tempfile::tempdir().unwrap();
    let cases = cases();
    assert!(cases.len() >= 50);
    for case in &cases {
        case.check(tmp.path());
    }
}

#[test]
fn svsm_digests_equal_sev_snp_measure() {
    let (ovmf_path, svsm_path) = (inputs().join("svsm_ovmf.fd"), inputs().join("svsm.bin"));
    let (ovmf, svsm) = (
        std::fs::read(&ovmf_path).unwrap(),
        std::fs::read(&svsm_path).unwrap(),
    );
    for (vcpus, vcpu_type, vars_size) in [
        (1, VcpuType::EpycV4, 540_672u64),
        (2, VcpuType::EpycMilan, 4096),
        (64, VcpuType::EpycGenoa, 1 << 20),
    ] {
        let args: Vec<String> = [
            "--mode",
            "snp:svsm",
            "--ovmf",
            &ovmf_path.display().to_string(),
            "--svsm",
            &svsm_path.display().to_string(),
            "--vars-size",
            &vars_size.to_string(),
            "--vcpus",
            &vcpus.to_string(),
            "--vcpu-type",
            vcpu_type.name(),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let launch = SvsmLaunch {
            ovmf: ovmf.clone(),
            svsm: svsm.clone(),
            ovmf_vars_size: vars_size,
            vcpus,
            vcpu_type,
        };
        let ours = snp::svsm_launch_digest(&launch).unwrap();
        assert_eq!(
            hex::encode(ours),
            peer(&args),
            "sev-snp-measure {}",
            args.join(" ")
        );
    }
}
