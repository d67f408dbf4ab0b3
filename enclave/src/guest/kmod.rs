//! Kernel modules the guest needs (virtio-pci, virtio-blk, vsock over virtio, dm-verity and
//! squashfs for the model disk): the image builder puts them under [`MODULE_DIR`] named
//! `NN-name.ko`, in dependency order (from each module's `.modinfo` `depends=`), and the init loads
//! them with `finit_module(2)` in name order. They are part of the measured initramfs.

use std::path::{Path, PathBuf};

/// Where the image keeps the modules to load, in load order by file name.
pub const MODULE_DIR: &str = "/usr/lib/modules/secllama";

/// The modules in `dir`, in load order.
///
/// # Errors
/// `dir` cannot be read.
pub fn in_order(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut ko: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "ko"))
        .collect();
    ko.sort();
    Ok(ko)
}

/// Loads one module; one already loaded (or built in) is fine.
///
/// # Errors
/// The file cannot be opened or the kernel refused it.
pub fn load(path: &Path) -> std::io::Result<()> {
    let f = std::fs::File::open(path)?;
    match rustix::system::finit_module(&f, c"", 0) {
        Ok(()) => Ok(()),
        Err(rustix::io::Errno::EXIST) => Ok(()),
        Err(e) => Err(std::io::Error::other(format!(
            "finit_module {}: {e}",
            path.display()
        ))),
    }
}
