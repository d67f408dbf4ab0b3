//! Which measured enclave a receipt log on the host's disk belongs to (docs/log.md). The log's
//! identity is sealed to the PCRs of the launch that created it: only that measured enclave can
//! continue it. The launcher records each launch's id beside the log (`<receipts>.launch`, hex):
//! in process mode SHA-256 over every bank's predicted PCRs ([`launch_id`]), in VM mode over the
//! booted kernel, initramfs and command line ([`vm_launch_id`]; PCRs 4 and 9 follow from them). A
//! launch whose id differs moves the previous enclave's log — a file, or VM mode's log disk image —
//! aside (`<receipts>.<its launch id prefix>.retired`, kept, never deleted) so that this enclave
//! starts its own, and says so. A log without a record is left for the agent, which refuses one
//! it cannot unseal.

use anyhow::Context;
use secllama_measurements::launch::Prediction;
use sha2::{Digest, Sha256};
use std::io::Write;
use std::path::{Path, PathBuf};

/// SHA-256 over the predicted PCR values, every bank in order, hex.
pub fn launch_id(prediction: &Prediction) -> String {
    let mut h = Sha256::new();
    for (bank, pcrs) in &prediction.pcrs {
        h.update(bank.alg_id().to_be_bytes());
        for (index, value) in pcrs {
            h.update(index.to_be_bytes());
            h.update(value);
        }
    }
    hex::encode(h.finalize())
}

fn marker(receipts: &Path) -> PathBuf {
    let mut m = receipts.as_os_str().to_owned();
    m.push(".launch");
    PathBuf::from(m)
}

/// A VM launch's id: SHA-256 over the kernel's and the initramfs's SHA-256 and the command line,
/// hex.
pub fn vm_launch_id(kernel_sha256: &[u8; 32], initrd_sha256: &[u8; 32], cmdline: &str) -> String {
    let mut h = Sha256::new();
    h.update(kernel_sha256);
    h.update(initrd_sha256);
    h.update(cmdline.as_bytes());
    hex::encode(h.finalize())
}

/// Moves a receipt log created by another measured launch aside and records this launch's id.
/// Returns where the old log went, if it moved.
pub fn retire_foreign_log(
    receipts: &Path,
    prediction: &Prediction,
    out: &mut dyn Write,
) -> anyhow::Result<Option<PathBuf>> {
    retire_foreign(receipts, &launch_id(prediction), out)
}

/// [`retire_foreign_log`] for the launch id `this`.
pub fn retire_foreign(
    receipts: &Path,
    this: &str,
    out: &mut dyn Write,
) -> anyhow::Result<Option<PathBuf>> {
    let marker = marker(receipts);
    let previous = match std::fs::read_to_string(&marker) {
        Ok(s) => Some(s.trim().to_string()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(e).with_context(|| format!("reading {}", marker.display())),
    };
    let mut moved = None;
    let has_log = std::fs::metadata(receipts).is_ok_and(|m| m.len() > 0);
    if let Some(prev) = previous.filter(|p| *p != this)
        && has_log
    {
        let prefix: String = prev
            .chars()
            .filter(char::is_ascii_hexdigit)
            .take(12)
            .collect();
        let mut n = 0;
        let target = loop {
            let mut t = receipts.as_os_str().to_owned();
            t.push(format!(
                ".{prefix}{}.retired",
                if n == 0 {
                    String::new()
                } else {
                    format!("-{n}")
                }
            ));
            let t = PathBuf::from(t);
            if !t.exists() {
                break t;
            }
            n += 1;
        };
        std::fs::rename(receipts, &target).with_context(|| {
            format!(
                "moving {} aside to {}",
                receipts.display(),
                target.display()
            )
        })?;
        let _ = writeln!(
            out,
            "secllama: the measured launch changed (launch id {prefix}… → {}…): the previous \
             enclave's receipt log is kept as {}; this enclave starts a new log",
            this.get(..12).unwrap_or(this),
            target.display()
        );
        moved = Some(target);
    }
    std::fs::write(&marker, format!("{this}\n"))
        .with_context(|| format!("writing {}", marker.display()))?;
    Ok(moved)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use secllama_measurements::eventlog::Bank;

    fn prediction(v: u8) -> Prediction {
        Prediction {
            banks: vec![Bank::Sha256],
            measurements: Vec::new(),
            pcrs: [(Bank::Sha256, [(15u32, vec![v; 32])].into())].into(),
            digests: secllama_measurements::launch::ComponentDigests {
                agent: [0; 32],
                runner: [0; 32],
                model: [0; 32],
                policy: [0; 32],
                config: [0; 32],
                trees: Vec::new(),
            },
        }
    }

    #[test]
    fn a_changed_launch_moves_the_old_log_aside_and_the_same_launch_keeps_it() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("receipts.log");
        let mut out = Vec::new();
        // An existing log without a record: left alone.
        std::fs::write(&log, b"old").unwrap();
        assert_eq!(
            retire_foreign_log(&log, &prediction(1), &mut out).unwrap(),
            None
        );
        assert_eq!(std::fs::read(&log).unwrap(), b"old");
        // The same launch again: kept.
        assert_eq!(
            retire_foreign_log(&log, &prediction(1), &mut out).unwrap(),
            None
        );
        // Another launch: moved aside, kept, named.
        let moved = retire_foreign_log(&log, &prediction(2), &mut out)
            .unwrap()
            .unwrap();
        assert_eq!(std::fs::read(&moved).unwrap(), b"old");
        assert!(!log.exists());
        assert!(
            String::from_utf8(out.clone())
                .unwrap()
                .contains("starts a new log")
        );
        // Back and forth: a second retired log gets its own name.
        std::fs::write(&log, b"second").unwrap();
        let again = retire_foreign_log(&log, &prediction(1), &mut out)
            .unwrap()
            .unwrap();
        assert_ne!(again, moved);
        assert_eq!(std::fs::read(&again).unwrap(), b"second");
    }
}
