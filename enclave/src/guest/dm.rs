//! dm-verity for the model disk (docs/vm.md; kernel `Documentation/admin-guide/device-mapper/
//! verity.rst`, ioctl interface `include/uapi/linux/dm-ioctl.h`). The init creates a read-only
//! mapped device over the model disk (`guest::disk::MODEL_DISK`) whose every read is checked against the hash tree; its parameters
//! come from the kernel command line (`secllama.verity=DATA_BLOCKS,HASH_START,ROOT,SALT`), which
//! PCR 9 covers. A block that does not match its hash fails with an I/O error: the runner gets an
//! error, never different weights.
//!
//! The three ioctls used are `DM_DEV_CREATE`, `DM_TABLE_LOAD` (one `verity` target, read-only) and
//! `DM_DEV_SUSPEND` without the suspend flag (which makes the loaded table live). No udev: the
//! device node is devtmpfs's `/dev/dm-N`.

#![allow(unsafe_code)]

use std::os::fd::AsRawFd;
use std::path::PathBuf;

/// The kernel command line parameter carrying [`VerityParams`].
pub const VERITY_PARAM: &str = "secllama.verity";

/// The verity data and hash block size (bytes).
pub const BLOCK: u64 = 4096;

/// The model disk's verity parameters (SHA-256, 4 KiB blocks, format version 1, data and hash
/// tree in one device).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerityParams {
    /// Data blocks (the squashfs, padded to 4 KiB).
    pub data_blocks: u64,
    /// The first hash block, in 4 KiB blocks from the start of the device.
    pub hash_start_block: u64,
    /// The root hash.
    pub root: [u8; 32],
    /// The salt.
    pub salt: [u8; 32],
}

impl VerityParams {
    /// `DATA_BLOCKS,HASH_START,ROOT,SALT` (hex digests), the command line value.
    pub fn to_param(&self) -> String {
        format!(
            "{},{},{},{}",
            self.data_blocks,
            self.hash_start_block,
            hex::encode(self.root),
            hex::encode(self.salt)
        )
    }

    /// Parses [`VerityParams::to_param`]'s form, strictly.
    ///
    /// # Errors
    /// What was expected and found.
    pub fn from_param(s: &str) -> Result<Self, String> {
        let bad = || format!("{VERITY_PARAM}=DATA_BLOCKS,HASH_START,ROOT,SALT, found {s:?}");
        let parts: Vec<&str> = s.split(',').collect();
        let [d, h, r, salt] = parts.as_slice() else {
            return Err(bad());
        };
        let num = |x: &str| {
            x.parse::<u64>()
                .ok()
                .filter(|n| *n > 0 && x == n.to_string())
        };
        let digest = |x: &str| -> Option<[u8; 32]> {
            if x.len() != 64 || x.bytes().any(|b| b.is_ascii_uppercase()) {
                return None;
            }
            hex::decode(x).ok()?.try_into().ok()
        };
        let p = Self {
            data_blocks: num(d).ok_or_else(bad)?,
            hash_start_block: num(h).ok_or_else(bad)?,
            root: digest(r).ok_or_else(bad)?,
            salt: digest(salt).ok_or_else(bad)?,
        };
        if p.hash_start_block < p.data_blocks {
            return Err(bad());
        }
        Ok(p)
    }

    /// The device-mapper table line for `device` (`0 SECTORS verity 1 DEV DEV 4096 4096 …`).
    pub fn table(&self, device: &str) -> String {
        format!(
            "verity 1 {device} {device} {BLOCK} {BLOCK} {} {} sha256 {} {}",
            self.data_blocks,
            self.hash_start_block,
            hex::encode(self.root),
            hex::encode(self.salt)
        )
    }
}

const DM_NAME_LEN: usize = 128;
const DM_UUID_LEN: usize = 129;
const DM_READONLY_FLAG: u32 = 1 << 0;

/// `struct dm_ioctl` (312 bytes).
#[repr(C)]
#[derive(Clone, Copy)]
struct DmIoctl {
    version: [u32; 3],
    data_size: u32,
    data_start: u32,
    target_count: u32,
    open_count: i32,
    flags: u32,
    event_nr: u32,
    padding: u32,
    dev: u64,
    name: [u8; DM_NAME_LEN],
    uuid: [u8; DM_UUID_LEN],
    data: [u8; 7],
}

/// `struct dm_target_spec` (40 bytes), followed by the NUL-terminated parameters.
#[repr(C)]
#[derive(Clone, Copy)]
struct DmTargetSpec {
    sector_start: u64,
    length: u64,
    status: i32,
    next: u32,
    target_type: [u8; 16],
}

const HEADER: usize = std::mem::size_of::<DmIoctl>();

const fn dm_iowr(nr: u32) -> libc::c_ulong {
    // _IOWR(0xfd, nr, struct dm_ioctl)
    ((3u32 << 30) | ((HEADER as u32) << 16) | (0xfd << 8) | nr) as libc::c_ulong
}
const DM_DEV_CREATE: libc::c_ulong = dm_iowr(3);
const DM_DEV_SUSPEND: libc::c_ulong = dm_iowr(6);
const DM_TABLE_LOAD: libc::c_ulong = dm_iowr(9);

fn header(name: &str, data_size: usize) -> std::io::Result<DmIoctl> {
    // SAFETY: DmIoctl is plain old data; all-zero is valid.
    let mut h: DmIoctl = unsafe { std::mem::zeroed() };
    h.version = [4, 0, 0];
    h.data_size = u32::try_from(data_size).map_err(std::io::Error::other)?;
    h.data_start = HEADER as u32;
    if name.len() >= DM_NAME_LEN {
        return Err(std::io::Error::other("device-mapper name too long"));
    }
    h.name[..name.len()].copy_from_slice(name.as_bytes());
    Ok(h)
}

/// Runs one ioctl on `/dev/mapper/control` with `buf` (a `DmIoctl` header then its data);
/// returns the header the kernel wrote back.
fn dm_ioctl(
    control: &std::fs::File,
    cmd: libc::c_ulong,
    buf: &mut [u8],
) -> std::io::Result<DmIoctl> {
    if buf.len() < HEADER {
        return Err(std::io::Error::other("device-mapper buffer too short"));
    }
    // SAFETY: buf is valid for its whole length, which the header's data_size states; the kernel
    // reads and writes at most data_size bytes.
    if unsafe { libc::ioctl(control.as_raw_fd(), cmd, buf.as_mut_ptr()) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: buf holds at least HEADER bytes; read_unaligned copies them into a POD value.
    Ok(unsafe { std::ptr::read_unaligned(buf.as_ptr().cast::<DmIoctl>()) })
}

fn as_bytes<T: Copy>(v: &T) -> &[u8] {
    // SAFETY: T is a repr(C) plain-old-data struct without padding-dependent invariants; viewing
    // its bytes is sound for the lifetime of the borrow.
    unsafe { std::slice::from_raw_parts((v as *const T).cast::<u8>(), std::mem::size_of::<T>()) }
}

/// Creates the read-only verity device `name` over `device` (the model disk); returns its node
/// (`/dev/dm-N`).
///
/// # Errors
/// An ioctl failed (e.g. `dm_verity` is not loaded, or the table is refused).
pub fn open_verity(name: &str, device: &str, p: &VerityParams) -> std::io::Result<PathBuf> {
    let control = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/mapper/control")?;
    let mut buf = as_bytes(&header(name, HEADER)?).to_vec();
    let created = dm_ioctl(&control, DM_DEV_CREATE, &mut buf)?;

    let params = p.table(device);
    let params = params.strip_prefix("verity ").unwrap_or(&params).as_bytes();
    let mut target = DmTargetSpec {
        sector_start: 0,
        length: p.data_blocks * (BLOCK / 512),
        status: 0,
        next: 0,
        target_type: [0; 16],
    };
    target.target_type[..6].copy_from_slice(b"verity");
    // Header, target spec, parameters with their NUL, padded to 8 bytes.
    let total =
        (HEADER + std::mem::size_of::<DmTargetSpec>() + params.len() + 1).next_multiple_of(8);
    let mut h = header(name, total)?;
    h.target_count = 1;
    h.flags = DM_READONLY_FLAG;
    let mut buf = Vec::with_capacity(total);
    buf.extend_from_slice(as_bytes(&h));
    buf.extend_from_slice(as_bytes(&target));
    buf.extend_from_slice(params);
    buf.resize(total, 0);
    dm_ioctl(&control, DM_TABLE_LOAD, &mut buf)?;

    // Resume (no DM_SUSPEND_FLAG): the loaded table goes live.
    let mut buf = as_bytes(&header(name, HEADER)?).to_vec();
    dm_ioctl(&control, DM_DEV_SUSPEND, &mut buf)?;
    let minor = (created.dev & 0xff) | ((created.dev >> 12) & 0xfff_ff00);
    Ok(PathBuf::from(format!("/dev/dm-{minor}")))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_ioctl_structures_have_the_kernel_sizes() {
        assert_eq!(HEADER, 312);
        assert_eq!(std::mem::size_of::<DmTargetSpec>(), 40);
        // _IOWR(0xfd, 3, struct dm_ioctl) as in dm-ioctl.h.
        assert_eq!(DM_DEV_CREATE, 0xc138fd03);
    }

    #[test]
    fn parameters_round_trip_and_refuse_other_forms() {
        let p = VerityParams {
            data_blocks: 25,
            hash_start_block: 25,
            root: [0xab; 32],
            salt: [0x01; 32],
        };
        assert_eq!(VerityParams::from_param(&p.to_param()).unwrap(), p);
        assert_eq!(
            p.table("/dev/vda"),
            format!(
                "verity 1 /dev/vda /dev/vda 4096 4096 25 25 sha256 {} {}",
                "ab".repeat(32),
                "01".repeat(32)
            )
        );
        let good = p.to_param();
        for bad in [
            good.to_uppercase(),
            format!("{good},x"),
            good.replacen("25", "025", 1),
            good.replacen("25,25", "25,24", 1),
            good.replacen("25", "0", 1),
            String::new(),
        ] {
            assert!(VerityParams::from_param(&bad).is_err(), "{bad}");
        }
    }
}
