//! `secllama measure vm --config FILE [--golden-log LOG] [--manifest OUT] [--ak-public AK]`:
//! the reference values of a VM-mode launch (docs/vm.md). Builds the guest image exactly as
//! `secllama launch` does (reproducible: same bytes), then predicts PCR 4 (the kernel as OVMF
//! measures it) and PCR 9 (command line with the model disk's verity root hash, and the
//! initramfs) in every bank of `[launch] banks` ([`secllama_measurements::vm`]). The firmware's
//! PCRs 0–3 and 5–8 come from `--golden-log`: a TCG log of a boot with the same QEMU, OVMF,
//! vCPUs and memory size (`secllama launch` writes the guest's as `firmware.log` in `[vm]
//! state`); `--manifest` needs it, unless `--unpinned-firmware` asks for a manifest pinning PCR 4
//! and 9 only. The manifest has `isolation = "vm"` and the enclave digests.
//!
//! With `[vm] confidential = "sev-snp"` it prints instead the SEV-SNP launch digest of exactly
//! this image (kernel, initrd and command line hashed by QEMU's `kernel-hashes=on`), `[vm]
//! snp_ovmf`, `vcpus` and `snp_vcpu_type` (as `secllama measure snp` and `sev-snp-measure`
//! compute it), and the manifest requires an SNP report with that digest rather than the host's
//! vTPM, which an SNP guest cannot trust.

use anyhow::{Context, ensure};
use secllama_enclave::config::Config;
use secllama_measurements::eventlog::{Bank, EventLog, PcrValues};
use secllama_measurements::launch::{Isolation, predict};
use secllama_measurements::manifest::Manifest;
use secllama_measurements::vm::{Boot, firmware_pcrs};
use std::fmt::Write as _;
use std::path::PathBuf;

/// Arguments of `secllama measure vm`.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Example:\n  $ secllama measure vm --config enclave-vm.toml --golden-log firmware.log --manifest manifest.toml --ak-public ak.pub"
)]
pub struct Args {
    /// The agent's VM-mode config.
    #[arg(long)]
    pub config: PathBuf,
    /// A golden TCG event log of the same QEMU/OVMF/memory, for the firmware's PCRs.
    #[arg(long)]
    pub golden_log: Option<PathBuf>,
    /// Write a reference manifest here (needs --golden-log, or --unpinned-firmware).
    #[arg(long)]
    pub manifest: Option<PathBuf>,
    /// Write the manifest without firmware PCRs (0-3, 5-8): any firmware that measures the same
    /// kernel, command line and initramfs is then accepted. For development only.
    #[arg(long, conflicts_with = "golden_log")]
    pub unpinned_firmware: bool,
    /// Pin this AK (TPM2B_PUBLIC file; `secllama launch` writes `ak.pub` in `[vm] state`).
    #[arg(long, requires = "manifest")]
    pub ak_public: Vec<PathBuf>,
}

/// The PCRs of a VM-mode launch of `config`: PCR 4 and 9 predicted, 0–3 and 5–7 from `golden`.
///
/// # Errors
/// The image cannot be built or the kernel is not a bzImage OVMF can load.
pub fn pcrs(config: &std::path::Path, golden: Option<&EventLog>) -> anyhow::Result<PcrValues> {
    let (c, _) = Config::load(config)?;
    ensure!(
        c.launch.isolation == Isolation::Vm,
        "[launch] isolation: expected \"vm\", found \"{}\"",
        c.launch.isolation.as_str()
    );
    let banks: Vec<Bank> = c
        .launch
        .banks
        .iter()
        .map(|b| Bank::from_name(b).with_context(|| format!("[launch] banks: {b}")))
        .collect::<anyhow::Result<_>>()?;
    let dir = tempfile::tempdir()?;
    let mtime = crate::cli::image::build::source_date_epoch()?;
    let built = crate::image::build::build(config, dir.path(), mtime)?;
    let kernel = std::fs::read(&built.kernel)?;
    let initrd = std::fs::read(&built.initrd)?;
    let boot = Boot {
        kernel: &kernel,
        initrd: &initrd,
        cmdline: &built.cmdline,
        memory_mib: u64::from(c.vm.memory_mib),
    };
    let mut out = secllama_measurements::vm::predict(&boot, &banks)?;
    if let Some(g) = golden {
        for (bank, values) in firmware_pcrs(g, &banks) {
            out.entry(bank).or_default().extend(values);
        }
    }
    Ok(out)
}

/// The SEV-SNP launch digest (hex) of the image `config` builds, for `[vm] snp_ovmf`, `vcpus`
/// and `snp_vcpu_type`.
///
/// # Errors
/// No `snp_ovmf`, an unknown vCPU type, or the image or digest cannot be computed.
pub fn snp_digest(config: &std::path::Path) -> anyhow::Result<String> {
    let (c, base) = Config::load(config)?;
    ensure!(
        !c.vm.snp_ovmf.as_os_str().is_empty(),
        "[vm] snp_ovmf: expected the SEV-SNP OVMF build (OVMF.amdsev.fd) the launch digest covers, \
         found none"
    );
    let dir = tempfile::tempdir()?;
    let mtime = crate::cli::image::build::source_date_epoch()?;
    let built = crate::image::build::build(config, dir.path(), mtime)?;
    let vcpu_type =
        c.vm.snp_vcpu_type
            .parse()
            .map_err(|e| anyhow::anyhow!("[vm] snp_vcpu_type: {e}"))?;
    let ovmf = if c.vm.snp_ovmf.is_absolute() {
        c.vm.snp_ovmf.clone()
    } else {
        base.join(&c.vm.snp_ovmf)
    };
    let out = super::snp::run(&super::snp::Args {
        mode: super::snp::Mode::Snp,
        ovmf,
        kernel: Some(built.kernel.clone()),
        initrd: Some(built.initrd.clone()),
        append: Some(built.cmdline.clone()),
        vcpus: Some(c.vm.vcpus),
        vcpu_type: Some(vcpu_type),
        vmm_type: secllama_measurements::snp::VmmType::Qemu,
        guest_features: 0x1,
        snp_ovmf_hash: None,
        svsm: None,
        vars_size: None,
        vars_file: None,
    })?;
    Ok(out.trim().to_string())
}

/// Runs the subcommand.
pub fn run(a: &Args) -> anyhow::Result<String> {
    let (c, _) = Config::load(&a.config)?;
    if c.vm.confidential == secllama_enclave::config::Confidential::SevSnp {
        let digest = snp_digest(&a.config)?;
        let mut out = format!("snp launch digest: {digest}\n");
        if let Some(path) = &a.manifest {
            let (c, base) = Config::load(&a.config)?;
            let prediction = predict(&c.launch, &base)?;
            let mut m = Manifest::for_launch(&prediction);
            m.isolation = Isolation::Vm;
            m.pcrs.clear();
            m.required = secllama_measurements::manifest::Required {
                tpm: false,
                snp: true,
            };
            m.snp = Some(secllama_measurements::manifest::SnpReference {
                launch_digest: digest,
                min_tcb: Default::default(),
                guest_policy: "0x30000".into(),
                vmpl: 0,
                product: None,
                host_data: None,
                id_key_digest: None,
                author_key_digest: None,
            });
            std::fs::write(path, m.to_toml()?)
                .with_context(|| format!("writing {}", path.display()))?;
            let _ = writeln!(out, "# reference manifest written to {}", path.display());
        }
        return Ok(out);
    }
    let golden = match &a.golden_log {
        Some(p) => Some(
            EventLog::parse(&std::fs::read(p).with_context(|| format!("reading {}", p.display()))?)
                .with_context(|| format!("--golden-log {}", p.display()))?,
        ),
        None => None,
    };
    let pcrs = pcrs(&a.config, golden.as_ref())?;
    let mut out = String::new();
    for (bank, values) in &pcrs {
        for (i, v) in values {
            let _ = writeln!(out, "{}:{i:<2} {}", bank.name(), hex::encode(v));
        }
    }
    if golden.is_none() {
        out.push_str(
            "# PCR 0-3 and 5-7 (firmware) not pinned: pass --golden-log (state/firmware.log of a \
             boot with the same QEMU, OVMF and memory)\n",
        );
    }
    if let Some(path) = &a.manifest {
        ensure!(
            golden.is_some() || a.unpinned_firmware,
            "--manifest: expected --golden-log (the firmware's PCRs 0-3 and 5-8 from a boot of \
             the same QEMU, OVMF and memory: `secllama launch` saves it as firmware.log in [vm] \
             state), found none; without them any firmware measuring the same kernel would be \
             accepted (pass --unpinned-firmware to write such a manifest anyway)"
        );
        let (c, base) = Config::load(&a.config)?;
        let prediction = predict(&c.launch, &base)?;
        let mut m = Manifest::for_launch(&prediction);
        m.isolation = Isolation::Vm;
        m.set_pcrs(&pcrs);
        for f in &a.ak_public {
            let public = std::fs::read(f).with_context(|| format!("reading {}", f.display()))?;
            m.tpm.ak_publics.push(hex::encode(public));
        }
        std::fs::write(path, m.to_toml()?)
            .with_context(|| format!("writing {}", path.display()))?;
        let _ = writeln!(out, "# reference manifest written to {}", path.display());
    }
    Ok(out)
}
