//! Reproducible initramfs archives: the "newc" cpio format the Linux kernel unpacks
//! (`Documentation/driver-api/early-userspace/buffer-format.rst`).
//!
//! Each entry is a 110-byte ASCII header — magic `070701`, then 13 fields of 8 hex digits: inode,
//! mode, uid, gid, nlink, mtime, file size, device major/minor, rdev major/minor, name size
//! (with its NUL), check (0) — then the name and its NUL padded to 4 bytes, then the data padded to
//! 4 bytes; the archive ends with the entry `TRAILER!!!`.
//!
//! Nothing host-specific goes in: paths are sorted bytewise, every missing parent folder is added
//! (the kernel creates no parents), owners are uid/gid 0, every mtime is the one given (e.g.
//! `SOURCE_DATE_EPOCH`, or 0), inodes are numbered in path order from 1, and the modes are the
//! ones given. The same entries always give the same bytes.

use std::collections::BTreeMap;

/// What one archive entry is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// A regular file with these bytes.
    File(Vec<u8>),
    /// A folder.
    Dir,
    /// A symbolic link to this target.
    Symlink(String),
    /// A character device (e.g. `/dev/console` 5:1).
    CharDevice {
        /// Major number.
        major: u32,
        /// Minor number.
        minor: u32,
    },
}

/// One entry: a relative path (`bin/init`, no leading `/`, no `.` or `..` parts), its kind and
/// its permission bits (`0o755`; the file-type bits come from the kind).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The path inside the archive.
    pub path: String,
    /// What it is.
    pub kind: Kind,
    /// Permission bits (at most `0o7777`).
    pub perm: u32,
}

/// An archive that cannot be written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CpioError {
    /// A path that is empty, absolute, has `.`/`..`/empty parts or a NUL.
    #[error(
        "initramfs entry: expected a relative path without '.', '..' or empty parts, found {0:?}"
    )]
    Path(String),
    /// The same path twice (with different contents), or a file where a folder is needed.
    #[error("initramfs entry {0:?}: given twice, or needed as a folder")]
    Conflict(String),
    /// A field that does not fit the format's 32 bits.
    #[error("initramfs entry {path:?}: {field} does not fit in 32 bits")]
    TooLarge {
        /// The entry.
        path: String,
        /// The field.
        field: &'static str,
    },
}

const S_IFREG: u32 = 0o100_000;
const S_IFDIR: u32 = 0o040_000;
const S_IFLNK: u32 = 0o120_000;
const S_IFCHR: u32 = 0o020_000;

fn valid_path(p: &str) -> bool {
    !p.is_empty()
        && !p.starts_with('/')
        && !p.contains('\0')
        && p.split('/').all(|c| !c.is_empty() && c != "." && c != "..")
}

/// Writes `entries` as a newc archive whose every mtime is `mtime` (seconds since the epoch).
pub fn write_newc(entries: &[Entry], mtime: u32) -> Result<Vec<u8>, CpioError> {
    let mut all: BTreeMap<&str, (Kind, u32)> = BTreeMap::new();
    for e in entries {
        if !valid_path(&e.path) {
            return Err(CpioError::Path(e.path.clone()));
        }
        if all
            .insert(&e.path, (e.kind.clone(), e.perm & 0o7777))
            .is_some()
        {
            return Err(CpioError::Conflict(e.path.clone()));
        }
    }
    // Every parent of every entry is a folder: given as one, or added (0755).
    let mut parents = Vec::new();
    for path in all.keys() {
        let mut at = 0;
        while let Some(i) = path[at..].find('/') {
            parents.push(&path[..at + i]);
            at += i + 1;
        }
    }
    for p in parents {
        match all.get(p) {
            Some((Kind::Dir, _)) => {}
            Some(_) => return Err(CpioError::Conflict(p.to_string())),
            None => {
                all.insert(p, (Kind::Dir, 0o755));
            }
        }
    }
    let mut out = Vec::new();
    for (ino, (path, (kind, perm))) in all.iter().enumerate() {
        let (mode, data, nlink, rdev): (u32, &[u8], u32, (u32, u32)) = match kind {
            Kind::File(d) => (S_IFREG | perm, d, 1, (0, 0)),
            Kind::Dir => (S_IFDIR | perm, &[], 2, (0, 0)),
            Kind::Symlink(t) => (S_IFLNK | perm, t.as_bytes(), 1, (0, 0)),
            Kind::CharDevice { major, minor } => (S_IFCHR | perm, &[], 1, (*major, *minor)),
        };
        let ino = u32::try_from(ino + 1).map_err(|_| CpioError::TooLarge {
            path: (*path).to_string(),
            field: "the inode number",
        })?;
        header(&mut out, path, ino, mode, nlink, mtime, data, rdev)?;
    }
    header(&mut out, "TRAILER!!!", 0, 0, 1, 0, &[], (0, 0))?;
    Ok(out)
}

#[allow(clippy::too_many_arguments)]
fn header(
    out: &mut Vec<u8>,
    path: &str,
    ino: u32,
    mode: u32,
    nlink: u32,
    mtime: u32,
    data: &[u8],
    rdev: (u32, u32),
) -> Result<(), CpioError> {
    let too_large = |field| CpioError::TooLarge {
        path: path.to_string(),
        field,
    };
    let size = u32::try_from(data.len()).map_err(|_| too_large("the size"))?;
    let namesize = u32::try_from(path.len() + 1).map_err(|_| too_large("the name"))?;
    out.extend_from_slice(b"070701");
    for v in [
        ino, mode, 0, 0, nlink, mtime, size, 0, 0, rdev.0, rdev.1, namesize, 0,
    ] {
        out.extend_from_slice(format!("{v:08x}").as_bytes());
    }
    out.extend_from_slice(path.as_bytes());
    out.push(0);
    pad4(out);
    out.extend_from_slice(data);
    pad4(out);
    Ok(())
}

fn pad4(out: &mut Vec<u8>) {
    while out.len() % 4 != 0 {
        out.push(0);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn file(path: &str, data: &[u8], perm: u32) -> Entry {
        Entry {
            path: path.into(),
            kind: Kind::File(data.to_vec()),
            perm,
        }
    }

    #[test]
    fn the_same_entries_in_any_order_give_the_same_bytes() {
        let a = vec![
            file("bin/init", b"#!/bin/sh\n", 0o755),
            file("etc/policy.json", b"{}", 0o644),
            Entry {
                path: "dev/console".into(),
                kind: Kind::CharDevice { major: 5, minor: 1 },
                perm: 0o600,
            },
            Entry {
                path: "sbin".into(),
                kind: Kind::Symlink("bin".into()),
                perm: 0o777,
            },
        ];
        let mut b = a.clone();
        b.reverse();
        let x = write_newc(&a, 0).unwrap();
        assert_eq!(x, write_newc(&b, 0).unwrap());
        assert_ne!(x, write_newc(&a, 1).unwrap(), "the mtime is in the bytes");
        assert!(x.starts_with(b"070701"));
        assert_eq!(x.len() % 4, 0);
        // Parents first, added as folders: bin, bin/init, dev, dev/console, etc, ..., sbin.
        let names: Vec<String> = x
            .windows(6)
            .enumerate()
            .filter(|(_, w)| *w == b"070701")
            .map(|(i, _)| {
                let n =
                    usize::from_str_radix(std::str::from_utf8(&x[i + 94..i + 102]).unwrap(), 16)
                        .unwrap();
                String::from_utf8(x[i + 110..i + 110 + n - 1].to_vec()).unwrap()
            })
            .collect();
        assert_eq!(
            names,
            [
                "bin",
                "bin/init",
                "dev",
                "dev/console",
                "etc",
                "etc/policy.json",
                "sbin",
                "TRAILER!!!"
            ]
        );
    }

    #[test]
    fn bad_paths_and_conflicts_are_refused() {
        for p in ["", "/abs", "a/../b", "a//b", "./a", "a/"] {
            assert!(
                matches!(
                    write_newc(&[file(p, b"", 0o644)], 0),
                    Err(CpioError::Path(_))
                ),
                "{p:?}"
            );
        }
        assert!(write_newc(&[file("a", b"1", 0o644), file("a", b"2", 0o644)], 0).is_err());
        assert!(write_newc(&[file("a", b"1", 0o644), file("a/b", b"2", 0o644)], 0).is_err());
    }
}
