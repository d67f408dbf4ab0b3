//! The QEMU command line of a VM-mode launch, as a pure function of [`VmSpec`] (no I/O), so every
//! property that matters is checked by unit tests: no network device of any kind (`-nodefaults`,
//! `-nic none`, never `-netdev`, `-net` or a `virtio-net` device), direct kernel boot under OVMF
//! for measured boot, the per-launch swtpm as a `tpm-crb` vTPM, vsock through a vhost-user backend
//! (shared memory: memfd), the model disk read-only, the serial console to a log file.

use std::ffi::OsString;
use std::path::PathBuf;

/// How QEMU runs the guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accel {
    /// Hardware virtualisation (`/dev/kvm` usable).
    Kvm,
    /// Emulation (always here: `/dev/kvm` is not usable on these machines).
    Tcg,
}

/// Everything the QEMU command is made of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmSpec {
    /// The kernel (bzImage with EFI stub).
    pub kernel: PathBuf,
    /// The initramfs.
    pub initrd: PathBuf,
    /// The kernel command line (measured into PCR 9 by OVMF).
    pub cmdline: String,
    /// Guest memory, MiB.
    pub memory_mib: u32,
    /// Virtual CPUs.
    pub vcpus: u32,
    /// OVMF code (read-only).
    pub ovmf_code: PathBuf,
    /// This launch's copy of the OVMF variables.
    pub ovmf_vars: PathBuf,
    /// The swtpm control socket (`swtpm socket --ctrl type=unixio,path=…`).
    pub tpm_socket: PathBuf,
    /// The vhost-user socket of the vsock backend (`vhost-device-vsock --socket`).
    pub vsock_socket: PathBuf,
    /// The model disk (raw, dm-verity inside), attached read-only.
    pub model_disk: Option<PathBuf>,
    /// The receipt log disk (raw, read-write), serial `secllama-log`.
    pub log_disk: Option<PathBuf>,
    /// Where the serial console goes.
    pub serial_log: PathBuf,
    /// KVM or TCG.
    pub accel: Accel,
    /// SEV-SNP (needs KVM, QEMU ≥ 9.1 and SNP firmware): the guest's memory is encrypted, QEMU
    /// puts the kernel, initrd and command line hashes in the launch measurement
    /// (`kernel-hashes=on`), OVMF is the SNP build given as `-bios`, and the host's swtpm, which
    /// an SNP guest cannot trust, is not attached.
    pub snp: Option<SnpSpec>,
}

/// The SEV-SNP part of a [`VmSpec`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnpSpec {
    /// The SNP OVMF build (`-bios`).
    pub ovmf: PathBuf,
    /// The vCPU model (`-cpu`), e.g. `EPYC-v4`.
    pub vcpu_type: String,
    /// The guest policy (`0x30000`: SMT allowed, no debug, no migration agent).
    pub policy: u64,
    /// The C-bit position (51 on EPYC Milan/Genoa).
    pub cbitpos: u32,
    /// Physical address bits lost to encryption.
    pub reduced_phys_bits: u32,
}

fn os(s: impl Into<OsString>) -> OsString {
    s.into()
}

fn path_arg(prefix: &str, p: &std::path::Path, suffix: &str) -> OsString {
    let mut s = OsString::from(prefix);
    s.push(p.as_os_str());
    s.push(suffix);
    s
}

/// The arguments after the QEMU program name.
pub fn qemu_args(spec: &VmSpec) -> Vec<OsString> {
    let accel = match spec.accel {
        Accel::Kvm => "kvm",
        Accel::Tcg => "tcg",
    };
    let cpu = match (&spec.snp, spec.accel) {
        (Some(snp), _) => snp.vcpu_type.as_str(),
        (None, Accel::Kvm) => "host",
        (None, Accel::Tcg) => "max",
    };
    let machine = match &spec.snp {
        Some(_) => format!("q35,accel={accel},confidential-guest-support=sev0,memory-backend=mem"),
        None => format!("q35,accel={accel}"),
    };
    let mut a = vec![
        os("-nodefaults"),
        os("-no-user-config"),
        os("-nic"),
        os("none"),
        os("-machine"),
        os(machine),
        os("-cpu"),
        os(cpu),
        os("-smp"),
        os(spec.vcpus.max(1).to_string()),
        os("-m"),
        os(format!("{}M", spec.memory_mib)),
        // vhost-user needs guest memory the backend can map.
        os("-object"),
        os(format!(
            "memory-backend-memfd,id=mem,size={}M,share=on",
            spec.memory_mib
        )),
    ];
    match &spec.snp {
        Some(snp) => a.extend([
            os("-object"),
            os(format!(
                "sev-snp-guest,id=sev0,policy={:#x},cbitpos={},reduced-phys-bits={},kernel-hashes=on",
                snp.policy, snp.cbitpos, snp.reduced_phys_bits
            )),
            os("-bios"),
            os(snp.ovmf.as_os_str()),
        ]),
        None => a.extend([
            os("-numa"),
            os("node,memdev=mem"),
            os("-drive"),
            path_arg(
                "if=pflash,format=raw,unit=0,readonly=on,file=",
                &spec.ovmf_code,
                "",
            ),
            os("-drive"),
            path_arg("if=pflash,format=raw,unit=1,file=", &spec.ovmf_vars, ""),
        ]),
    }
    a.extend([
        os("-kernel"),
        os(spec.kernel.as_os_str()),
        os("-initrd"),
        os(spec.initrd.as_os_str()),
        os("-append"),
        os(spec.cmdline.as_str()),
    ]);
    if spec.snp.is_none() {
        a.extend([
            os("-chardev"),
            path_arg("socket,id=chrtpm,path=", &spec.tpm_socket, ""),
            os("-tpmdev"),
            os("emulator,id=tpm0,chardev=chrtpm"),
            os("-device"),
            os("tpm-crb,tpmdev=tpm0"),
        ]);
    }
    a.extend([
        os("-chardev"),
        path_arg("socket,id=vsock0,path=", &spec.vsock_socket, ""),
        os("-device"),
        os("vhost-user-vsock-pci,chardev=vsock0"),
    ]);
    if let Some(disk) = &spec.model_disk {
        a.extend([
            os("-drive"),
            path_arg("if=none,id=model,format=raw,readonly=on,file=", disk, ""),
            os("-device"),
            os(format!(
                "virtio-blk-pci,drive=model,serial={}",
                secllama_enclave::guest::disk::MODEL_SERIAL
            )),
        ]);
    }
    if let Some(disk) = &spec.log_disk {
        a.extend([
            os("-drive"),
            path_arg("if=none,id=log,format=raw,file=", disk, ""),
            os("-device"),
            os(format!(
                "virtio-blk-pci,drive=log,serial={}",
                secllama_enclave::guest::disk::LOG_SERIAL
            )),
        ]);
    }
    a.extend([
        os("-serial"),
        path_arg("file:", &spec.serial_log, ""),
        os("-display"),
        os("none"),
        os("-no-reboot"),
    ]);
    a
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn snp() -> SnpSpec {
        SnpSpec {
            ovmf: "/s/OVMF.amdsev.fd".into(),
            vcpu_type: "EPYC-v4".into(),
            policy: 0x30000,
            cbitpos: 51,
            reduced_phys_bits: 1,
        }
    }

    fn spec(accel: Accel, disk: bool) -> VmSpec {
        VmSpec {
            kernel: "/s/vmlinuz".into(),
            initrd: "/s/initrd".into(),
            cmdline: "console=ttyS0 secllama.verity=abc".into(),
            memory_mib: 512,
            vcpus: 1,
            ovmf_code: "/usr/share/OVMF/OVMF_CODE_4M.fd".into(),
            ovmf_vars: "/s/vars.fd".into(),
            tpm_socket: "/s/tpm/swtpm.ctrl".into(),
            vsock_socket: "/s/vsock.sock".into(),
            model_disk: disk.then(|| "/s/model.img".into()),
            log_disk: Some("/s/receipts.img".into()),
            serial_log: "/s/serial.log".into(),
            accel,
            snp: None,
        }
    }

    fn text(a: &[OsString]) -> Vec<String> {
        a.iter().map(|s| s.to_string_lossy().into_owned()).collect()
    }

    #[test]
    fn no_mode_has_a_network_device() {
        for accel in [Accel::Kvm, Accel::Tcg] {
            for (disk, confidential) in [(false, false), (true, false), (true, true)] {
                let mut s = spec(accel, disk);
                s.snp = confidential.then(snp);
                let a = text(&qemu_args(&s));
                assert!(a.contains(&"-nodefaults".to_string()), "{a:?}");
                let nic = a.iter().position(|x| x == "-nic").unwrap();
                assert_eq!(a[nic + 1], "none");
                for bad in [
                    "-netdev",
                    "-net",
                    "virtio-net",
                    "e1000",
                    "rtl8139",
                    "user,",
                    "tap,",
                    "hostfwd",
                    "forward-cid",
                ] {
                    assert!(
                        !a.iter()
                            .any(|x| x == bad || (bad.len() > 4 && x.contains(bad))),
                        "{bad} in {a:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn measured_boot_vtpm_vsock_and_a_read_only_model_disk() {
        let a = text(&qemu_args(&spec(Accel::Tcg, true))).join(" ");
        for want in [
            "-machine q35,accel=tcg",
            "if=pflash,format=raw,unit=0,readonly=on,file=/usr/share/OVMF/OVMF_CODE_4M.fd",
            "-kernel /s/vmlinuz -initrd /s/initrd -append console=ttyS0 secllama.verity=abc",
            "-tpmdev emulator,id=tpm0,chardev=chrtpm -device tpm-crb,tpmdev=tpm0",
            "memory-backend-memfd,id=mem,size=512M,share=on",
            "-device vhost-user-vsock-pci,chardev=vsock0",
            "if=none,id=model,format=raw,readonly=on,file=/s/model.img",
            "-device virtio-blk-pci,drive=model,serial=secllama-model",
            "-drive if=none,id=log,format=raw,file=/s/receipts.img",
            "-device virtio-blk-pci,drive=log,serial=secllama-log",
            "-serial file:/s/serial.log",
        ] {
            assert!(a.contains(want), "{want} not in {a}");
        }
        assert!(
            text(&qemu_args(&spec(Accel::Kvm, false)))
                .join(" ")
                .contains("accel=kvm")
        );
        assert!(!a.contains("sev-snp-guest") && !a.contains("-bios"), "{a}");
    }

    #[test]
    fn snp_mode_has_the_snp_objects_and_no_host_tpm() {
        let mut s = spec(Accel::Kvm, true);
        s.snp = Some(snp());
        let a = text(&qemu_args(&s)).join(" ");
        for want in [
            "-machine q35,accel=kvm,confidential-guest-support=sev0,memory-backend=mem",
            "-object memory-backend-memfd,id=mem,size=512M,share=on",
            "-object sev-snp-guest,id=sev0,policy=0x30000,cbitpos=51,reduced-phys-bits=1,kernel-hashes=on",
            "-bios /s/OVMF.amdsev.fd",
            "-cpu EPYC-v4",
            "-kernel /s/vmlinuz -initrd /s/initrd -append",
            "if=none,id=model,format=raw,readonly=on,file=/s/model.img",
        ] {
            assert!(a.contains(want), "{want} not in {a}");
        }
        for absent in ["tpm", "pflash", "-numa"] {
            assert!(!a.contains(absent), "{absent} in {a}");
        }
    }
}
