//! The model disk (docs/vm.md): the model files in a read-only squashfs, followed in the same raw
//! image by its dm-verity hash tree, in the format `veritysetup format` writes (built by
//! `veritysetup` itself, Debian `cryptsetup-bin`). The guest's init opens it through the
//! device-mapper ioctls ([`secllama_enclave::guest::dm`]) with the parameters on the kernel command
//! line (`secllama.verity=…`), so PCR 9 covers the root hash and therefore every model byte; a
//! changed block makes its read fail in the guest.
//!
//! Layout: squashfs (`mksquashfs` 4.5, uncompressed, every file root-owned, every time the given
//! mtime: reproducible) padded to 4 KiB, then the hash tree (4 KiB blocks, SHA-256, no verity
//! superblock, salt = SHA-256 of the squashfs: fixed for the same bytes).

use anyhow::{Context, bail, ensure};
use secllama_enclave::guest::dm::VerityParams;
use sha2::{Digest, Sha256};
use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The verity data and hash block size.
pub const BLOCK: u64 = 4096;

fn run(cmd: &mut Command, what: &str) -> anyhow::Result<String> {
    let out = cmd
        .output()
        .with_context(|| format!("running {what} (Debian: squashfs-tools, cryptsetup-bin)"))?;
    ensure!(
        out.status.success(),
        "{what} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Builds `out` from `models` (each at the squashfs root under its file name, which must differ);
/// returns the verity parameters for the kernel command line.
///
/// # Errors
/// Two models with one name, a tool missing or failing, or an unexpected `veritysetup` output.
pub fn build_model_disk(
    models: &[PathBuf],
    out: &Path,
    mtime: u32,
) -> anyhow::Result<VerityParams> {
    ensure!(
        !models.is_empty(),
        "the model disk needs at least one model file"
    );
    let mut names = BTreeSet::new();
    for m in models {
        let name = m
            .file_name()
            .and_then(|n| n.to_str())
            .with_context(|| format!("[launch] model {}: no UTF-8 file name", m.display()))?;
        ensure!(
            names.insert(name.to_string()),
            "[launch] model: two files named {name}: the model disk holds each under its name"
        );
        ensure!(
            std::fs::metadata(m).is_ok_and(|md| md.is_file()),
            "[launch] model {}: expected a file",
            m.display()
        );
    }
    let _ = std::fs::remove_file(out);
    let t = mtime.to_string();
    let mut cmd = Command::new("mksquashfs");
    cmd.args(models)
        .arg(out)
        .args([
            "-noappend",
            "-no-xattrs",
            "-all-root",
            "-noI",
            "-noD",
            "-noF",
            "-noX",
            "-no-fragments",
            "-no-exports",
            "-quiet",
            "-no-progress",
        ])
        .args(["-mkfs-time", &t, "-all-time", &t])
        .env_remove("SOURCE_DATE_EPOCH");
    run(&mut cmd, "mksquashfs")?;
    let fs = std::fs::read(out).with_context(|| format!("reading {}", out.display()))?;
    let data_blocks = (fs.len() as u64).div_ceil(BLOCK);
    let salt: [u8; 32] = Sha256::digest(&fs).into();
    drop(fs);
    {
        let mut f = std::fs::OpenOptions::new().append(true).open(out)?;
        let pad = data_blocks * BLOCK - std::fs::metadata(out)?.len();
        f.write_all(&vec![0u8; usize::try_from(pad)?])?;
    }
    let hash_offset = data_blocks * BLOCK;
    let text = run(
        Command::new("veritysetup")
            .arg("format")
            .arg(out)
            .arg(out)
            .args(["--no-superblock", "--hash=sha256"])
            .arg(format!("--data-block-size={BLOCK}"))
            .arg(format!("--hash-block-size={BLOCK}"))
            .arg(format!("--data-blocks={data_blocks}"))
            .arg(format!("--hash-offset={hash_offset}"))
            .arg(format!("--salt={}", hex::encode(salt))),
        "veritysetup format",
    )?;
    let root = text
        .lines()
        .find_map(|l| l.strip_prefix("Root hash:"))
        .map(str::trim)
        .context("veritysetup format: expected a `Root hash:` line")?;
    let root: [u8; 32] = hex::decode(root)
        .ok()
        .and_then(|r| r.try_into().ok())
        .with_context(|| {
            format!("veritysetup format: root hash {root:?} is not 32 bytes of hex")
        })?;
    Ok(VerityParams {
        data_blocks,
        hash_start_block: hash_offset / BLOCK,
        root,
        salt,
    })
}

/// Checks the whole disk against `p` with `veritysetup verify` (a peer's reading of our
/// parameters).
///
/// # Errors
/// A block does not match, or the tool failed.
pub fn verify(disk: &Path, p: &VerityParams) -> anyhow::Result<()> {
    let out = Command::new("veritysetup")
        .arg("verify")
        .arg(disk)
        .arg(disk)
        .arg(hex::encode(p.root))
        .args(["--no-superblock", "--hash=sha256"])
        .arg(format!("--data-block-size={BLOCK}"))
        .arg(format!("--hash-block-size={BLOCK}"))
        .arg(format!("--data-blocks={}", p.data_blocks))
        .arg(format!("--hash-offset={}", p.hash_start_block * BLOCK))
        .arg(format!("--salt={}", hex::encode(p.salt)))
        .output()
        .context("running veritysetup verify")?;
    if !out.status.success() {
        bail!(
            "veritysetup verify {}: {}",
            disk.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}
