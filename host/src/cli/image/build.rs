//! `secllama image build --config FILE --out DIR`: writes `vmlinuz`, `initrd.img` and `cmdline`
//! into DIR ([`crate::image::build`]) and prints their digests. Every archive mtime is
//! `SOURCE_DATE_EPOCH` (0 when unset): two builds of the same inputs give the same bytes.

use anyhow::Context;
use std::path::PathBuf;

/// Arguments of `secllama image build`.
#[derive(Debug, clap::Args)]
#[command(after_help = "Example:\n  $ secllama image build --config enclave-vm.toml --out image/")]
pub struct Args {
    /// The agent's VM-mode config (`[launch] isolation = "vm"`, a `[vm]` table).
    #[arg(long)]
    pub config: PathBuf,
    /// Where to write the image.
    #[arg(long)]
    pub out: PathBuf,
}

/// `SOURCE_DATE_EPOCH` as a 32-bit mtime, 0 when unset.
///
/// # Errors
/// Set but not a number of seconds that fits the archive format.
pub fn source_date_epoch() -> anyhow::Result<u32> {
    match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(v) => v.parse::<u32>().with_context(|| {
            format!("SOURCE_DATE_EPOCH: expected seconds since 1970 (32 bits), found {v:?}")
        }),
        Err(_) => Ok(0),
    }
}

/// Builds and reports.
///
/// # Errors
/// As [`crate::image::build::build`].
pub fn run(a: &Args) -> anyhow::Result<String> {
    let built = crate::image::build::build(&a.config, &a.out, source_date_epoch()?)?;
    let mut out = format!(
        "kernel  {}  sha256:{}\ninitrd  {}  sha256:{}\n",
        built.kernel.display(),
        hex::encode(built.kernel_sha256),
        built.initrd.display(),
        hex::encode(built.initrd_sha256),
    );
    if let Some((disk, p)) = &built.model_disk {
        out.push_str(&format!(
            "model   {}  verity root {}\n",
            disk.display(),
            hex::encode(p.root)
        ));
    }
    out.push_str(&format!("cmdline {}\n", built.cmdline));
    Ok(out)
}
