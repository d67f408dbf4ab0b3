//! The sandbox's file system: planned by the parent, built by the child.
//!
//! Parent ([`MountPlan::build`]): validates every path of the spec, walks each one component by
//! component so that symlinks on the way (`/lib64 -> usr/lib64`, `ld-linux -> /lib/...`) are
//! reproduced inside, and turns the result into a flat list of operations on pre-built C strings,
//! plus the list of host objects Landlock must grant.
//!
//! Child ([`MountPlan::apply`]), without allocating:
//! 1. every inherited mount becomes private (nothing propagates back to the host);
//! 2. a small staging tmpfs is mounted over `/tmp` and becomes the root with `pivot_root`, the
//!    host's root staying reachable at `/oldroot` (so host paths under `/tmp` stay reachable too);
//! 3. the new root is a tmpfs at `/newroot`: `/tmp` (private tmpfs, `nosuid,nodev,noexec`),
//!    `/proc` (new proc instance, read-only), `/dev/{null,zero,urandom,random}` (read-only binds
//!    of the host nodes) with `/dev/fd` and `/dev/std*` symlinks, then the artifacts (read-only,
//!    `nosuid,nodev`), the socket directory (read-write, `nosuid,nodev,noexec`) and the symlinks;
//! 4. the new root is remounted read-only, `/oldroot` is detached, and a second `pivot_root` makes
//!    `/newroot` the root while the staging tmpfs is detached.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::{CStr, CString};
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileTypeExt;
use std::path::{Component, Path, PathBuf};

use rustix::fs::{Mode, OFlags, StatVfsMountFlags};
use rustix::mount::{MountFlags, MountPropagationFlags, UnmountFlags};

use super::SandboxSpec;
use super::child::StepFailure;
use super::error::{SandboxError, SetupStep};

const STAGING: &CStr = c"/tmp";
const OLD_ROOT: &str = "/oldroot";
const NEW_ROOT: &str = "/newroot";
/// Symlink hops allowed while resolving one spec path (the kernel's own limit is 40).
const MAX_SYMLINKS: u32 = 40;
/// Host device nodes exposed inside, and whether they are writable.
const DEVICES: [(&str, bool); 4] = [
    ("/dev/null", true),
    ("/dev/zero", true),
    ("/dev/urandom", false),
    ("/dev/random", false),
];
const DEV_SYMLINKS: [(&CStr, &CStr); 4] = [
    (c"/newroot/dev/fd", c"/proc/self/fd"),
    (c"/newroot/dev/stdin", c"/proc/self/fd/0"),
    (c"/newroot/dev/stdout", c"/proc/self/fd/1"),
    (c"/newroot/dev/stderr", c"/proc/self/fd/2"),
];
/// Top-level directories the sandbox itself provides; spec paths may not replace them.
const RESERVED: [&str; 2] = ["/proc", "/dev"];

/// How a bind mount is remounted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum BindAccess {
    /// Artifacts: read-only, nosuid, nodev; executable.
    ReadOnly,
    /// Device nodes: read-only mount (device writes are not file-system writes), nosuid, noexec.
    Device,
    /// The socket directory: read-write, nosuid, nodev, noexec.
    ReadWrite,
}

/// What Landlock must grant on a host object that is exposed inside.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Grant {
    /// Artifacts: read and execute.
    Artifact,
    /// The socket directory: read, write, create and remove entries; no execute.
    SocketDir,
    /// `/dev/null`, `/dev/zero`: read and write.
    WritableDevice,
    /// `/dev/urandom`, `/dev/random`: read.
    ReadableDevice,
}

/// A host file or directory the sandbox exposes, for the Landlock rules.
#[derive(Clone, Debug)]
pub(super) struct Exposed {
    /// Canonical host path (also the path inside).
    pub path: PathBuf,
    pub is_dir: bool,
    pub grant: Grant,
}

#[derive(Debug)]
enum Op {
    Dir(CString),
    File(CString),
    Symlink {
        target: CString,
        link: CString,
    },
    Bind {
        source: CString,
        target: CString,
        access: BindAccess,
    },
}

/// The child's mount operations, all strings pre-built.
#[derive(Debug)]
pub(super) struct MountPlan {
    tmp_options: CString,
    ops: Vec<Op>,
}

/// Resolved skeleton: which directories and symlinks must exist inside the new root.
#[derive(Default)]
struct Skeleton {
    symlinks: BTreeMap<PathBuf, PathBuf>,
}

impl Skeleton {
    /// Walks `path` from `/`, recording every symlink met on the way, and returns the canonical
    /// path (no symlinks, no `..`) of what it names.
    fn resolve(&mut self, path: &Path, budget: &mut u32) -> Result<PathBuf, SandboxError> {
        let mut current = PathBuf::from("/");
        for component in path.components() {
            match component {
                Component::RootDir | Component::CurDir => {}
                Component::Prefix(_) => {
                    return Err(SandboxError::spec(
                        path.display().to_string(),
                        "a Unix path",
                        "a path prefix",
                    ));
                }
                Component::ParentDir => {
                    current.pop();
                }
                Component::Normal(name) => {
                    let next = current.join(name);
                    let meta =
                        fs::symlink_metadata(&next).map_err(|source| SandboxError::Path {
                            path: next.clone(),
                            reason: source,
                        })?;
                    if meta.file_type().is_symlink() {
                        if *budget == 0 {
                            return Err(SandboxError::spec(
                                path.display().to_string(),
                                "at most 40 symlinks on the way",
                                "more (a loop?)",
                            ));
                        }
                        *budget -= 1;
                        let target = fs::read_link(&next).map_err(|source| SandboxError::Path {
                            path: next.clone(),
                            reason: source,
                        })?;
                        self.symlinks.insert(next, target.clone());
                        let absolute = if target.is_absolute() {
                            target
                        } else {
                            current.join(target)
                        };
                        current = self.resolve(&absolute, budget)?;
                    } else {
                        current = next;
                    }
                }
            }
        }
        Ok(current)
    }
}

fn prefixed(prefix: &str, path: &Path) -> Result<CString, SandboxError> {
    let mut bytes = prefix.as_bytes().to_vec();
    bytes.extend_from_slice(path.as_os_str().as_bytes());
    CString::new(bytes).map_err(|_| {
        SandboxError::spec(
            path.display().to_string(),
            "a path without NUL bytes",
            "a NUL byte",
        )
    })
}

fn is_reserved(path: &Path) -> bool {
    path == Path::new("/")
        || path == Path::new("/tmp")
        || RESERVED.iter().any(|r| path.starts_with(r))
}

impl MountPlan {
    /// Plans the mount tree for `spec` and lists what Landlock must grant.
    pub(super) fn build(spec: &SandboxSpec) -> Result<(MountPlan, Vec<Exposed>), SandboxError> {
        let mut skeleton = Skeleton::default();
        // (canonical path, is_dir, access, grant)
        let mut binds: Vec<(PathBuf, bool, BindAccess, Grant)> = Vec::new();

        let mut expose = |field: String,
                          path: &Path,
                          access: BindAccess,
                          grant: Grant,
                          skeleton: &mut Skeleton|
         -> Result<(), SandboxError> {
            if !path.is_absolute() {
                return Err(SandboxError::spec(
                    field,
                    "an absolute path",
                    path.display().to_string(),
                ));
            }
            let mut budget = MAX_SYMLINKS;
            let canonical = skeleton.resolve(path, &mut budget)?;
            if is_reserved(&canonical) {
                return Err(SandboxError::spec(
                    field,
                    "a path other than /, /tmp and not under /proc or /dev",
                    canonical.display().to_string(),
                ));
            }
            let meta = fs::metadata(&canonical).map_err(|source| SandboxError::Path {
                path: canonical.clone(),
                reason: source,
            })?;
            let is_dir = meta.is_dir();
            if access == BindAccess::ReadWrite && !is_dir {
                return Err(SandboxError::spec(
                    field,
                    "a directory",
                    canonical.display().to_string(),
                ));
            }
            if !is_dir && !meta.is_file() {
                return Err(SandboxError::spec(
                    field,
                    "a regular file or a directory",
                    canonical.display().to_string(),
                ));
            }
            binds.push((canonical, is_dir, access, grant));
            Ok(())
        };

        for (i, path) in spec.read_only.iter().enumerate() {
            expose(
                format!("read_only[{i}]"),
                path,
                BindAccess::ReadOnly,
                Grant::Artifact,
                &mut skeleton,
            )?;
        }
        if let Some(dir) = &spec.writable_socket_dir {
            expose(
                "writable_socket_dir".into(),
                dir,
                BindAccess::ReadWrite,
                Grant::SocketDir,
                &mut skeleton,
            )?;
        }

        // Outer mounts before the ones nested in them.
        binds.sort_by(|a, b| {
            (a.0.components().count(), &a.0).cmp(&(b.0.components().count(), &b.0))
        });
        binds.dedup_by(|a, b| a.0 == b.0 && a.2 == b.2);

        let mut ops = Vec::new();
        let mut made_dirs: BTreeSet<PathBuf> = BTreeSet::new();

        let mut exposed = Vec::new();
        for (device, writable) in DEVICES {
            let meta = fs::metadata(device).map_err(|source| SandboxError::Path {
                path: device.into(),
                reason: source,
            })?;
            if !meta.file_type().is_char_device() {
                return Err(SandboxError::spec(
                    device,
                    "a character device on the host",
                    "something else",
                ));
            }
            let path = Path::new(device);
            ops.push(Op::File(prefixed(NEW_ROOT, path)?));
            ops.push(Op::Bind {
                source: prefixed(OLD_ROOT, path)?,
                target: prefixed(NEW_ROOT, path)?,
                access: BindAccess::Device,
            });
            exposed.push(Exposed {
                path: path.to_path_buf(),
                is_dir: false,
                grant: if writable {
                    Grant::WritableDevice
                } else {
                    Grant::ReadableDevice
                },
            });
        }

        for (path, is_dir, access, grant) in &binds {
            ensure_parents(path, &mut made_dirs, &mut ops)?;
            let target = prefixed(NEW_ROOT, path)?;
            ops.push(if *is_dir {
                made_dirs.insert(path.clone());
                Op::Dir(target.clone())
            } else {
                Op::File(target.clone())
            });
            ops.push(Op::Bind {
                source: prefixed(OLD_ROOT, path)?,
                target,
                access: *access,
            });
            exposed.push(Exposed {
                path: path.clone(),
                is_dir: *is_dir,
                grant: *grant,
            });
        }
        for (link, target) in &skeleton.symlinks {
            if is_reserved(link) {
                continue;
            }
            ensure_parents(link, &mut made_dirs, &mut ops)?;
            let target = CString::new(target.as_os_str().as_bytes()).map_err(|_| {
                SandboxError::spec(
                    link.display().to_string(),
                    "a symlink target without NUL",
                    "NUL",
                )
            })?;
            ops.push(Op::Symlink {
                target,
                link: prefixed(NEW_ROOT, link)?,
            });
        }

        let tmp_options = CString::new(format!(
            "size={},mode={:o}",
            spec.tmpfs_size, spec.tmpfs_mode
        ))
        .map_err(|_| SandboxError::spec("tmpfs_size", "a number", "NUL"))?;
        Ok((MountPlan { tmp_options, ops }, exposed))
    }

    /// Child side: builds the new root and pivots into it (see the module docs for the order).
    pub(super) fn apply(&self) -> Result<(), StepFailure> {
        let at = |step| move |e| StepFailure::new(step, e);

        rustix::mount::mount_change(
            c"/",
            MountPropagationFlags::PRIVATE | MountPropagationFlags::REC,
        )
        .map_err(at(SetupStep::MountPrivate))?;

        // Staging root; the host root moves to /oldroot.
        let step = at(SetupStep::MountStaging);
        rustix::mount::mount(
            c"tmpfs",
            STAGING,
            c"tmpfs",
            MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOEXEC,
            c"size=64k,mode=0700",
        )
        .map_err(step)?;
        rustix::process::chdir(STAGING).map_err(step)?;
        rustix::fs::mkdir(c"oldroot", Mode::RWXU).map_err(step)?;
        rustix::process::pivot_root(c".", c"oldroot").map_err(step)?;
        rustix::process::chdir(c"/").map_err(step)?;

        // The new root.
        let step = at(SetupStep::MountRoot);
        rustix::fs::mkdir(c"/newroot", Mode::RWXU).map_err(step)?;
        rustix::mount::mount(
            c"tmpfs",
            c"/newroot",
            c"tmpfs",
            MountFlags::NOSUID | MountFlags::NODEV,
            c"size=1m,mode=0755",
        )
        .map_err(step)?;
        for dir in [c"/newroot/tmp", c"/newroot/proc", c"/newroot/dev"] {
            rustix::fs::mkdir(dir, Mode::from_raw_mode(0o755)).map_err(step)?;
        }
        rustix::mount::mount(
            c"tmpfs",
            c"/newroot/tmp",
            c"tmpfs",
            MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOEXEC,
            self.tmp_options.as_c_str(),
        )
        .map_err(at(SetupStep::MountTmp))?;
        // Must happen while the host's /proc is still visible (at /oldroot/proc): the kernel
        // only lets a user namespace mount proc if an unobstructed one is already visible.
        rustix::mount::mount(
            c"proc",
            c"/newroot/proc",
            c"proc",
            MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOEXEC | MountFlags::RDONLY,
            None,
        )
        .map_err(at(SetupStep::MountProc))?;
        for (link, target) in DEV_SYMLINKS {
            rustix::fs::symlink(target, link).map_err(at(SetupStep::MountSkeleton))?;
        }

        for op in &self.ops {
            apply_op(op)?;
        }

        let step = at(SetupStep::MountRootReadOnly);
        rustix::mount::mount_remount(
            c"/newroot",
            MountFlags::BIND | MountFlags::RDONLY | MountFlags::NOSUID | MountFlags::NODEV,
            c"",
        )
        .map_err(step)?;

        let step = at(SetupStep::MountPivot);
        rustix::mount::unmount(c"/oldroot", UnmountFlags::DETACH).map_err(step)?;
        rustix::process::chdir(c"/newroot").map_err(step)?;
        // pivot_root(".", ".") stacks the staging root on top of the new root; detaching "."
        // then removes it (and everything that was under it).
        rustix::process::pivot_root(c".", c".").map_err(step)?;
        rustix::mount::unmount(c".", UnmountFlags::DETACH).map_err(step)?;
        rustix::process::chdir(c"/").map_err(step)?;
        Ok(())
    }
}

/// Emits a `Dir` op for every ancestor of `path` (outermost first) not made yet.
fn ensure_parents(
    path: &Path,
    made_dirs: &mut BTreeSet<PathBuf>,
    ops: &mut Vec<Op>,
) -> Result<(), SandboxError> {
    let mut ancestors: Vec<&Path> = path.ancestors().skip(1).collect();
    ancestors.reverse();
    for dir in ancestors {
        if dir == Path::new("/") || !made_dirs.insert(dir.to_path_buf()) {
            continue;
        }
        ops.push(Op::Dir(prefixed(NEW_ROOT, dir)?));
    }
    Ok(())
}

fn exists(path: &CStr) -> bool {
    rustix::fs::lstat(path).is_ok()
}

fn apply_op(op: &Op) -> Result<(), StepFailure> {
    let skeleton = |e| StepFailure::new(SetupStep::MountSkeleton, e);
    match op {
        Op::Dir(path) => match rustix::fs::mkdir(path.as_c_str(), Mode::from_raw_mode(0o755)) {
            Ok(()) => Ok(()),
            // Already there: made for another path, or part of an artifact directory.
            Err(_) if exists(path) => Ok(()),
            Err(e) => Err(skeleton(e)),
        },
        Op::File(path) => match rustix::fs::open(
            path.as_c_str(),
            OFlags::CREATE | OFlags::EXCL | OFlags::WRONLY | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o644),
        ) {
            Ok(_fd) => Ok(()),
            Err(_) if exists(path) => Ok(()),
            Err(e) => Err(skeleton(e)),
        },
        Op::Symlink { target, link } => {
            match rustix::fs::symlink(target.as_c_str(), link.as_c_str()) {
                Ok(()) => Ok(()),
                Err(_) if exists(link) => Ok(()),
                Err(e) => Err(skeleton(e)),
            }
        }
        Op::Bind {
            source,
            target,
            access,
        } => bind(source, target, *access),
    }
}

/// Non-recursive bind (submounts of an artifact are not exposed), then a remount that sets our
/// flags while keeping the flags the kernel locked on the source (an unprivileged user namespace
/// may not clear `noexec`, `nodev`, atime flags... of a mount it inherited).
fn bind(source: &CStr, target: &CStr, access: BindAccess) -> Result<(), StepFailure> {
    rustix::mount::mount_bind(source, target)
        .map_err(|e| StepFailure::new(SetupStep::MountBind, e))?;
    let remount = |e| StepFailure::new(SetupStep::MountRemount, e);
    let inherited = rustix::fs::statvfs(target).map_err(remount)?.f_flag;
    let mut flags = MountFlags::BIND;
    for (vfs, mount) in [
        (StatVfsMountFlags::RDONLY, MountFlags::RDONLY),
        (StatVfsMountFlags::NOSUID, MountFlags::NOSUID),
        (StatVfsMountFlags::NODEV, MountFlags::NODEV),
        (StatVfsMountFlags::NOEXEC, MountFlags::NOEXEC),
        (StatVfsMountFlags::NOATIME, MountFlags::NOATIME),
        (StatVfsMountFlags::NODIRATIME, MountFlags::NODIRATIME),
        (StatVfsMountFlags::RELATIME, MountFlags::RELATIME),
        (StatVfsMountFlags::SYNCHRONOUS, MountFlags::SYNCHRONOUS),
    ] {
        if inherited.contains(vfs) {
            flags |= mount;
        }
    }
    flags |= match access {
        BindAccess::ReadOnly => MountFlags::RDONLY | MountFlags::NOSUID | MountFlags::NODEV,
        BindAccess::Device => MountFlags::RDONLY | MountFlags::NOSUID | MountFlags::NOEXEC,
        BindAccess::ReadWrite => MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOEXEC,
    };
    rustix::mount::mount_remount(target, flags, c"").map_err(remount)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    #[test]
    fn resolve_records_symlinks_and_returns_canonical_path() {
        let dir = tempfile::tempdir().unwrap();
        let root = fs::canonicalize(dir.path()).unwrap();
        fs::create_dir_all(root.join("usr/lib")).unwrap();
        fs::write(root.join("usr/lib/ld.so"), b"x").unwrap();
        std::os::unix::fs::symlink("usr/lib", root.join("lib")).unwrap();
        std::os::unix::fs::symlink(root.join("lib/ld.so"), root.join("usr/lib/ld-link")).unwrap();

        let mut skeleton = Skeleton::default();
        let mut budget = MAX_SYMLINKS;
        let canonical = skeleton
            .resolve(&root.join("lib/ld-link"), &mut budget)
            .unwrap();
        assert_eq!(canonical, root.join("usr/lib/ld.so"));
        assert_eq!(
            skeleton.symlinks.get(&root.join("lib")),
            Some(&PathBuf::from("usr/lib"))
        );
        assert_eq!(
            skeleton.symlinks.get(&root.join("usr/lib/ld-link")),
            Some(&root.join("lib/ld.so"))
        );
    }

    #[test]
    fn resolve_stops_symlink_loops() {
        let dir = tempfile::tempdir().unwrap();
        let root = fs::canonicalize(dir.path()).unwrap();
        std::os::unix::fs::symlink(root.join("b"), root.join("a")).unwrap();
        std::os::unix::fs::symlink(root.join("a"), root.join("b")).unwrap();
        let mut skeleton = Skeleton::default();
        let mut budget = MAX_SYMLINKS;
        assert!(skeleton.resolve(&root.join("a"), &mut budget).is_err());
    }

    #[test]
    fn reserved_paths_are_refused() {
        for p in ["/", "/tmp", "/proc", "/proc/self", "/dev", "/dev/null"] {
            assert!(is_reserved(Path::new(p)), "{p}");
        }
        for p in ["/tmp/x", "/usr", "/devices"] {
            assert!(!is_reserved(Path::new(p)), "{p}");
        }
    }
}
