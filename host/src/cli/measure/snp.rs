//! `secllama measure snp`: the SEV-SNP launch digest of a VM, computed from its artifacts with
//! `secllama_measurements::snp`. Flags, defaults and meanings are those of `sev-snp-measure` 0.0.13
//! (`--mode snp`, plus its `snp:ovmf-hash` and `snp:svsm` modes), so a reference value can be
//! checked against that tool; it prints the digest as hex and a newline.

use anyhow::{Context, bail};
use secllama_measurements::snp::{self, SnpLaunch, SvsmLaunch, VcpuType, VmmType};
use std::path::{Path, PathBuf};

/// What to measure (`sev-snp-measure --mode`; SEV and SEV-ES are not offered).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// An SNP guest booting OVMF (optionally with a measured kernel, initrd and command line).
    #[value(name = "snp")]
    Snp,
    /// Only the digest of the OVMF pages, to pass later as `--snp-ovmf-hash`.
    #[value(name = "snp:ovmf-hash")]
    OvmfHash,
    /// An SNP guest booting a Coconut SVSM below OVMF (QEMU only).
    #[value(name = "snp:svsm")]
    Svsm,
}

/// Arguments of `secllama measure snp`.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Example:\n  $ secllama measure snp --mode snp --ovmf OVMF.fd --kernel vmlinuz --initrd initrd.img --append \"console=ttyS0\" --vcpus 2 --vcpu-type EPYC-v4"
)]
pub struct Args {
    /// Guest mode.
    #[arg(long, value_enum, default_value = "snp")]
    pub mode: Mode,
    /// OVMF firmware image (with SEV metadata).
    #[arg(long, value_name = "PATH")]
    pub ovmf: PathBuf,
    /// Kernel of a measured direct boot.
    #[arg(long, value_name = "PATH")]
    pub kernel: Option<PathBuf>,
    /// Initrd (needs --kernel; absent is measured as empty).
    #[arg(long, value_name = "PATH", requires = "kernel")]
    pub initrd: Option<PathBuf>,
    /// Kernel command line (needs --kernel; absent is measured as empty). Hashed as given.
    #[arg(
        long,
        value_name = "CMDLINE",
        requires = "kernel",
        allow_hyphen_values = true
    )]
    pub append: Option<String>,
    /// Number of guest vCPUs.
    #[arg(long, value_name = "N")]
    pub vcpus: Option<u32>,
    /// Guest vCPU type (EPYC, EPYC-v1..v4, EPYC-IBPB, EPYC-Rome[-v1..v3], EPYC-Milan[-v1,-v2],
    /// EPYC-Genoa[-v1], EPYC-Turin); required for QEMU, ignored by EC2 and GCE.
    #[arg(long, value_name = "CPUTYPE")]
    pub vcpu_type: Option<VcpuType>,
    /// VMM: qemu, ec2 or gce (any case).
    #[arg(long, value_name = "VMMTYPE", default_value = "qemu")]
    pub vmm_type: VmmType,
    /// SEV_FEATURES of the VMSA, as sev-snp-measure reads it: `0x` hex (or `0o`, `0b`, decimal).
    #[arg(long, value_name = "VALUE", default_value = "0x1", value_parser = parse_int)]
    pub guest_features: u64,
    /// Precomputed OVMF hash (96 hex digits, from `--mode snp:ovmf-hash`); the OVMF pages are then
    /// not hashed, but --ovmf still supplies the SEV metadata.
    #[arg(long, value_name = "HASH")]
    pub snp_ovmf_hash: Option<String>,
    /// Coconut SVSM image (snp:svsm mode).
    #[arg(long, value_name = "PATH")]
    pub svsm: Option<PathBuf>,
    /// Size of the OVMF_VARS file in bytes (snp:svsm mode).
    #[arg(long, value_name = "SIZE", conflicts_with = "vars_file")]
    pub vars_size: Option<u64>,
    /// OVMF_VARS file, whose size is used (snp:svsm mode).
    #[arg(long, value_name = "PATH")]
    pub vars_file: Option<PathBuf>,
}

/// Parses an integer as Python's `int(s, 0)` does: `0x`/`0o`/`0b` prefixes, else decimal.
fn parse_int(s: &str) -> Result<u64, String> {
    let lower = s.to_ascii_lowercase();
    let (digits, radix) = match lower.get(..2) {
        Some("0x") => (&lower[2..], 16),
        Some("0o") => (&lower[2..], 8),
        Some("0b") => (&lower[2..], 2),
        _ if lower.len() > 1 && lower.starts_with('0') && lower.bytes().any(|b| b != b'0') => {
            return Err(format!(
                "{s:?}: a decimal number may not start with 0 (write 0x… for hex)"
            ));
        }
        _ => (lower.as_str(), 10),
    };
    if digits.is_empty() || digits.starts_with(['+', '-']) {
        return Err(format!(
            "{s:?}: expected a non-negative integer such as 0x21"
        ));
    }
    u64::from_str_radix(digits, radix).map_err(|e| format!("{s:?}: {e}"))
}

fn read(what: &str, path: &Path) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("reading the {what} {}", path.display()))
}

/// Runs the subcommand and returns the hex launch digest and a newline.
pub fn run(args: &Args) -> anyhow::Result<String> {
    let ovmf = read("OVMF image", &args.ovmf)?;
    let mode_name = match args.mode {
        Mode::Snp => "snp",
        Mode::OvmfHash => "snp:ovmf-hash",
        Mode::Svsm => "snp:svsm",
    };
    let svsm_flags = args.svsm.is_some() || args.vars_size.is_some() || args.vars_file.is_some();
    let needs_vcpus = || {
        args.vcpus
            .with_context(|| format!("missing --vcpus N in guest mode '{mode_name}'"))
    };
    let digest = match args.mode {
        Mode::OvmfHash => {
            if args.kernel.is_some() || svsm_flags || args.snp_ovmf_hash.is_some() {
                bail!("--mode snp:ovmf-hash takes only --ovmf: it hashes the firmware pages alone");
            }
            snp::ovmf_hash(&ovmf)
        }
        Mode::Snp => {
            if svsm_flags {
                bail!("--svsm, --vars-size and --vars-file belong to --mode snp:svsm");
            }
            let ovmf_hash = match &args.snp_ovmf_hash {
                None => None,
                Some(h) => Some(
                    hex::decode(h)
                        .ok()
                        .and_then(|b| <[u8; snp::LAUNCH_DIGEST_LEN]>::try_from(b).ok())
                        .with_context(|| {
                            format!("--snp-ovmf-hash {h:?}: expected 96 hex digits (a SHA-384)")
                        })?,
                ),
            };
            let launch = SnpLaunch {
                ovmf,
                ovmf_hash,
                kernel: args
                    .kernel
                    .as_deref()
                    .map(|p| read("kernel", p))
                    .transpose()?,
                initrd: args
                    .initrd
                    .as_deref()
                    .map(|p| read("initrd", p))
                    .transpose()?,
                append: args.append.clone(),
                vcpus: needs_vcpus()?,
                vcpu_type: args.vcpu_type,
                vmm: args.vmm_type,
                guest_features: args.guest_features,
            };
            snp::launch_digest(&launch)
        }
        Mode::Svsm => {
            if args.kernel.is_some() || args.snp_ovmf_hash.is_some() {
                bail!("--mode snp:svsm measures no kernel and no precomputed OVMF hash");
            }
            if args.vmm_type != VmmType::Qemu {
                bail!(
                    "--mode snp:svsm is only defined for --vmm-type qemu, found {}",
                    args.vmm_type
                );
            }
            let svsm_path = args
                .svsm
                .as_deref()
                .context("--mode snp:svsm needs --svsm PATH")?;
            let ovmf_vars_size = match (&args.vars_file, args.vars_size) {
                (Some(f), _) => std::fs::metadata(f)
                    .with_context(|| format!("reading {}", f.display()))?
                    .len(),
                (None, Some(size)) => size,
                (None, None) => bail!("--mode snp:svsm needs --vars-size SIZE or --vars-file PATH"),
            };
            let launch = SvsmLaunch {
                ovmf,
                svsm: read("SVSM image", svsm_path)?,
                ovmf_vars_size,
                vcpus: needs_vcpus()?,
                vcpu_type: args
                    .vcpu_type
                    .context("--mode snp:svsm needs --vcpu-type")?,
            };
            snp::svsm_launch_digest(&launch)
        }
    }
    .with_context(|| format!("measuring {} in mode {mode_name}", args.ovmf.display()))?;
    Ok(format!("{}\n", hex::encode(digest)))
}

#[cfg(test)]
mod tests {
    use super::parse_int;

    #[test]
    fn integers_read_like_python_int_base_0() {
        assert_eq!(parse_int("0x21"), Ok(0x21));
        assert_eq!(parse_int("0X1"), Ok(1));
        assert_eq!(parse_int("21"), Ok(21));
        assert_eq!(parse_int("0"), Ok(0));
        assert_eq!(parse_int("0b101"), Ok(5));
        assert_eq!(parse_int("0o17"), Ok(15));
        assert_eq!(parse_int("0xffffffffffffffff"), Ok(u64::MAX));
        for bad in [
            "",
            "0x",
            "021",
            "-1",
            "0x-1",
            "+1",
            "0x1g",
            "0x10000000000000000",
        ] {
            assert!(parse_int(bad).is_err(), "{bad}");
        }
    }
}
