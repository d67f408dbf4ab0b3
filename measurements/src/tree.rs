//! Measured directory trees (`[launch] trees`): a runner that is more than one file — an
//! interpreter's standard library, a runner's own folder of scripts and extension modules — is
//! measured as one deterministic digest over everything under a folder, then bind-mounted
//! read-only (and listable) into the enclave at the same path.
//!
//! The digest of a tree is the hash of its **listing**, an unambiguous byte string:
//!
//! ```text
//! listing = "secllama/tree/v1\0" || entry*      entries sorted by path (bytewise)
//! entry   = kind (1 byte: 'd' directory, 'f' regular file, 'l' symlink)
//!           || mode (u32 big-endian: permission bits, mode & 0o7777)
//!           || u32 BE length || path (relative to the tree's root, '/'-separated, no leading '/')
//!           || for 'f': u64 BE size || SHA-256 of the content (32 bytes)
//!              for 'l': u32 BE length || the link's target, as stored (never followed)
//!              for 'd': nothing
//! ```
//!
//! The root itself is not an entry (its path is what the launch names). Owners, times and other
//! metadata are not measured; devices, FIFOs and sockets are refused, as are trees over
//! [`MAX_ENTRIES`] entries. Each TPM bank's event digest is that bank's hash of the listing; the
//! enclave claim is its SHA-256.

use sha2::Digest;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// The listing's leading domain separator.
pub const LISTING_MAGIC: &[u8] = b"secllama/tree/v1\0";

/// Most entries a measured tree may hold.
pub const MAX_ENTRIES: usize = 200_000;

/// A tree that cannot be measured.
#[derive(Debug, thiserror::Error)]
pub enum TreeError {
    /// A file or folder could not be read.
    #[error("tree {path}: {reason}")]
    Io {
        /// The path that failed.
        path: String,
        /// What went wrong (in the message, not a `source()`, so it is printed once).
        reason: std::io::Error,
    },
    /// Something in the tree cannot be measured.
    #[error("tree {path}: expected {expected}, found {found}")]
    Invalid {
        /// The offending path.
        path: String,
        /// What is allowed.
        expected: String,
        /// What was there.
        found: String,
    },
}

/// A measured tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TreeListing {
    /// The listing bytes (see the module docs).
    pub bytes: Vec<u8>,
    /// Regular files in the tree.
    pub files: usize,
    /// Their total size in bytes.
    pub file_bytes: u64,
}

impl TreeListing {
    /// SHA-256 of the listing: the tree's enclave claim.
    pub fn sha256(&self) -> [u8; 32] {
        sha2::Sha256::digest(&self.bytes).into()
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> TreeError + '_ {
    move |source| TreeError::Io {
        path: path.display().to_string(),
        reason: source,
    }
}

fn push_bytes(out: &mut Vec<u8>, b: &[u8]) -> Result<(), TreeError> {
    let len = u32::try_from(b.len()).map_err(|_| TreeError::Invalid {
        path: String::from_utf8_lossy(b).into_owned(),
        expected: "a name under 4 GiB".into(),
        found: format!("{} bytes", b.len()),
    })?;
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(b);
    Ok(())
}

fn sha256_file(path: &Path) -> Result<(u64, [u8; 32]), TreeError> {
    let mut f = std::fs::File::open(path).map_err(io(path))?;
    let mut h = sha2::Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut size = 0u64;
    loop {
        let n = f.read(&mut buf).map_err(io(path))?;
        if n == 0 {
            break;
        }
        size += n as u64;
        h.update(&buf[..n]);
    }
    Ok((size, h.finalize().into()))
}

/// Every entry under the directory `root` (a symlink to one is followed for the root only), as
/// (relative path bytes, absolute path), sorted bytewise by relative path; nothing is read but the
/// folders. At most [`MAX_ENTRIES`].
pub fn walk(root: &Path) -> Result<Vec<(Vec<u8>, PathBuf)>, TreeError> {
    let meta = std::fs::metadata(root).map_err(io(root))?;
    if !meta.is_dir() {
        return Err(TreeError::Invalid {
            path: root.display().to_string(),
            expected: "a directory".into(),
            found: "a file".into(),
        });
    }
    // (relative path bytes, absolute path), collected breadth-first, sorted afterwards.
    let mut entries: Vec<(Vec<u8>, PathBuf)> = Vec::new();
    let mut pending = vec![(Vec::new(), root.to_path_buf())];
    while let Some((rel, dir)) = pending.pop() {
        for item in std::fs::read_dir(&dir).map_err(io(&dir))? {
            let item = item.map_err(io(&dir))?;
            let name = item.file_name();
            let mut child_rel = rel.clone();
            if !child_rel.is_empty() {
                child_rel.push(b'/');
            }
            child_rel.extend_from_slice(name.as_bytes());
            let path = item.path();
            if item.file_type().map_err(io(&path))?.is_dir() {
                pending.push((child_rel.clone(), path.clone()));
            }
            entries.push((child_rel, path));
            if entries.len() > MAX_ENTRIES {
                return Err(TreeError::Invalid {
                    path: root.display().to_string(),
                    expected: format!("at most {MAX_ENTRIES} entries"),
                    found: "more".into(),
                });
            }
        }
    }
    entries.sort();
    Ok(entries)
}

/// The regular files under `root` (see [`walk`]), without reading them.
pub fn files(root: &Path) -> Result<Vec<PathBuf>, TreeError> {
    let mut out = Vec::new();
    for (_, path) in walk(root)? {
        if std::fs::symlink_metadata(&path)
            .map_err(io(&path))?
            .is_file()
        {
            out.push(path);
        }
    }
    Ok(out)
}

/// Measures the tree rooted at `root` (which must be a directory; a symlink to one is followed
/// for the root only).
pub fn measure_tree(root: &Path) -> Result<TreeListing, TreeError> {
    let entries = walk(root)?;
    let mut listing = TreeListing {
        bytes: LISTING_MAGIC.to_vec(),
        files: 0,
        file_bytes: 0,
    };
    for (rel, path) in entries {
        let m = std::fs::symlink_metadata(&path).map_err(io(&path))?;
        let ft = m.file_type();
        let kind = if ft.is_dir() {
            b'd'
        } else if ft.is_file() {
            b'f'
        } else if ft.is_symlink() {
            b'l'
        } else {
            return Err(TreeError::Invalid {
                path: path.display().to_string(),
                expected: "a regular file, a directory or a symlink".into(),
                found: "a device, FIFO or socket".into(),
            });
        };
        let out = &mut listing.bytes;
        out.push(kind);
        out.extend_from_slice(&(m.permissions().mode() & 0o7777).to_be_bytes());
        push_bytes(out, &rel)?;
        match kind {
            b'f' => {
                let (size, digest) = sha256_file(&path)?;
                out.extend_from_slice(&size.to_be_bytes());
                out.extend_from_slice(&digest);
                listing.files += 1;
                listing.file_bytes += size;
            }
            b'l' => {
                let target = std::fs::read_link(&path).map_err(io(&path))?;
                push_bytes(out, target.as_os_str().as_bytes())?;
            }
            _ => {}
        }
    }
    Ok(listing)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use std::os::unix::fs::symlink;

    fn tree() -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("lib/sub")).unwrap();
        std::fs::write(d.path().join("lib/a.py"), b"print('a')\n").unwrap();
        std::fs::write(d.path().join("lib/sub/b.py"), b"b = 1\n").unwrap();
        std::fs::write(d.path().join("run.py"), b"import a\n").unwrap();
        symlink("lib/a.py", d.path().join("link")).unwrap();
        d
    }

    #[test]
    fn listing_is_exactly_the_documented_bytes() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("s")).unwrap();
        std::fs::set_permissions(d.path().join("s"), std::fs::Permissions::from_mode(0o755))
            .unwrap();
        std::fs::write(d.path().join("s/f"), b"hi").unwrap();
        std::fs::set_permissions(d.path().join("s/f"), std::fs::Permissions::from_mode(0o644))
            .unwrap();
        symlink("s/f", d.path().join("l")).unwrap();
        let got = measure_tree(d.path()).unwrap();
        let mut want = LISTING_MAGIC.to_vec();
        // "l" < "s" < "s/f"
        want.push(b'l');
        want.extend_from_slice(&0o777u32.to_be_bytes());
        want.extend_from_slice(&1u32.to_be_bytes());
        want.extend_from_slice(b"l");
        want.extend_from_slice(&3u32.to_be_bytes());
        want.extend_from_slice(b"s/f");
        want.push(b'd');
        want.extend_from_slice(&0o755u32.to_be_bytes());
        want.extend_from_slice(&1u32.to_be_bytes());
        want.extend_from_slice(b"s");
        want.push(b'f');
        want.extend_from_slice(&0o644u32.to_be_bytes());
        want.extend_from_slice(&3u32.to_be_bytes());
        want.extend_from_slice(b"s/f");
        want.extend_from_slice(&2u64.to_be_bytes());
        want.extend_from_slice(&sha2::Sha256::digest(b"hi"));
        assert_eq!(got.bytes, want);
        assert_eq!((got.files, got.file_bytes), (1, 2));
    }

    #[test]
    fn every_kind_of_change_changes_the_digest() {
        let d = tree();
        let base = measure_tree(d.path()).unwrap().sha256();
        assert_eq!(
            measure_tree(d.path()).unwrap().sha256(),
            base,
            "deterministic"
        );
        type Change = Box<dyn Fn(&Path)>;
        let changes: Vec<(&str, Change, Change)> = vec![
            (
                "content",
                Box::new(|p| std::fs::write(p.join("lib/a.py"), b"print('A')\n").unwrap()),
                Box::new(|p| std::fs::write(p.join("lib/a.py"), b"print('a')\n").unwrap()),
            ),
            (
                "mode",
                Box::new(|p| {
                    std::fs::set_permissions(
                        p.join("run.py"),
                        std::fs::Permissions::from_mode(0o755),
                    )
                    .unwrap()
                }),
                Box::new(|p| {
                    std::fs::set_permissions(
                        p.join("run.py"),
                        std::fs::Permissions::from_mode(0o644),
                    )
                    .unwrap()
                }),
            ),
            (
                "new empty file",
                Box::new(|p| std::fs::write(p.join("lib/sub/new.py"), b"").unwrap()),
                Box::new(|p| std::fs::remove_file(p.join("lib/sub/new.py")).unwrap()),
            ),
            (
                "new empty folder",
                Box::new(|p| std::fs::create_dir(p.join("lib/empty")).unwrap()),
                Box::new(|p| std::fs::remove_dir(p.join("lib/empty")).unwrap()),
            ),
            (
                "symlink target",
                Box::new(|p| {
                    std::fs::remove_file(p.join("link")).unwrap();
                    symlink("lib/sub/b.py", p.join("link")).unwrap();
                }),
                Box::new(|p| {
                    std::fs::remove_file(p.join("link")).unwrap();
                    symlink("lib/a.py", p.join("link")).unwrap();
                }),
            ),
            (
                "rename",
                Box::new(|p| std::fs::rename(p.join("run.py"), p.join("run2.py")).unwrap()),
                Box::new(|p| std::fs::rename(p.join("run2.py"), p.join("run.py")).unwrap()),
            ),
        ];
        std::fs::set_permissions(
            d.path().join("run.py"),
            std::fs::Permissions::from_mode(0o644),
        )
        .unwrap();
        let base = measure_tree(d.path()).unwrap().sha256();
        for (what, change, undo) in changes {
            change(d.path());
            assert_ne!(measure_tree(d.path()).unwrap().sha256(), base, "{what}");
            undo(d.path());
            assert_eq!(
                measure_tree(d.path()).unwrap().sha256(),
                base,
                "{what} undone"
            );
        }
    }

    #[test]
    fn files_fifos_and_missing_roots_are_refused() {
        let d = tree();
        let e = measure_tree(&d.path().join("run.py")).unwrap_err();
        assert!(e.to_string().contains("expected a directory"), "{e}");
        let e = measure_tree(&d.path().join("nope")).unwrap_err();
        assert!(e.to_string().contains("nope"), "{e}");
        let fifo = d.path().join("lib/fifo");
        assert!(
            std::process::Command::new("mkfifo")
                .arg(&fifo)
                .status()
                .unwrap()
                .success()
        );
        let e = measure_tree(d.path()).unwrap_err().to_string();
        assert!(e.contains("fifo") && e.contains("FIFO"), "{e}");
    }
}
