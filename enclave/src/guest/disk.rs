//! The guest's virtio disks by serial number: `/dev/disk/by-id/virtio-SERIAL` links, as udev names
//! them on a normal system (the guest has no udev). The launcher attaches the model disk with
//! serial [`MODEL_SERIAL`] and the receipt log disk with serial [`LOG_SERIAL`], so neither
//! depends on the order in which the kernel probes them.

use anyhow::{Context, ensure};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The model disk's serial (read-only, dm-verity, squashfs).
pub const MODEL_SERIAL: &str = "secllama-model";
/// The receipt log disk's serial (raw, written in place by the agent).
pub const LOG_SERIAL: &str = "secllama-log";
/// Where links are made.
pub const BY_ID: &str = "/dev/disk/by-id";
/// The model disk's path in the guest.
pub const MODEL_DISK: &str = "/dev/disk/by-id/virtio-secllama-model";
/// The log disk's path in the guest: a VM-mode config's `receipts`.
pub const LOG_DISK: &str = "/dev/disk/by-id/virtio-secllama-log";

/// The serial a `/dev/disk/by-id/virtio-SERIAL` path names, if it is one.
#[must_use]
pub fn serial_of(path: &Path) -> Option<&str> {
    path.strip_prefix(BY_ID)
        .ok()?
        .to_str()?
        .strip_prefix("virtio-")
        .filter(|s| !s.is_empty() && !s.contains('/'))
}

/// The `/dev/vdX` whose serial is `serial`, if the kernel has probed it.
fn find(serial: &str) -> Option<PathBuf> {
    let entries = std::fs::read_dir("/sys/block").ok()?;
    entries.filter_map(Result::ok).find_map(|e| {
        let name = e.file_name().to_str()?.to_string();
        let found = std::fs::read_to_string(e.path().join("serial")).ok()?;
        (name.starts_with("vd") && found.trim() == serial).then(|| Path::new("/dev").join(name))
    })
}

/// Waits up to 10 s (probing is asynchronous) for the disk with `serial`, links it as
/// `/dev/disk/by-id/virtio-SERIAL` and returns its device node.
///
/// # Errors
/// No such disk within 10 s (the launcher did not attach it), or the link cannot be made.
pub fn link(serial: &str) -> anyhow::Result<PathBuf> {
    let start = Instant::now();
    let dev = loop {
        if let Some(d) = find(serial)
            && d.exists()
        {
            break d;
        }
        ensure!(
            start.elapsed() < Duration::from_secs(10),
            "expected a virtio disk with serial {serial} within 10 s (the launcher attaches it), \
             found none"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    std::fs::create_dir_all(BY_ID).with_context(|| format!("creating {BY_ID}"))?;
    let at = Path::new(BY_ID).join(format!("virtio-{serial}"));
    let _ = std::fs::remove_file(&at);
    std::os::unix::fs::symlink(&dev, &at)
        .with_context(|| format!("linking {} to {}", at.display(), dev.display()))?;
    Ok(dev)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serials_come_from_by_id_paths_only() {
        assert_eq!(serial_of(Path::new(LOG_DISK)), Some(LOG_SERIAL));
        assert_eq!(serial_of(Path::new(MODEL_DISK)), Some(MODEL_SERIAL));
        for other in [
            "/run/secllama/receipts.log",
            "/dev/disk/by-id/virtio-",
            "/dev/disk/by-id/ata-x",
            "/dev/vdb",
        ] {
            assert_eq!(serial_of(Path::new(other)), None, "{other}");
        }
    }
}
