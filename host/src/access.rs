//! Before anything is measured: the sandboxes' host users (`[sandbox] host_uid`,
//! `runner_host_uid`) can reach every artifact and read every file of every measured tree, no
//! host process already runs as either of them, and no measured tree links into a folder the host
//! writes while the enclave runs. Each failure names
//! the path, so a launch never spends its one measurement per TPM lifetime on a fixable mistake.

use anyhow::{Context, ensure};
use std::path::{Path, PathBuf};

/// Checks that host user `uid`/`gid` (the sandbox's, when the launcher is root) can search every
/// folder above `path` and has `want` (0o4 read, 0o1 search) on `path` itself: the sandbox binds
/// each artifact by path as that user, and a launcher-private folder (mode 0700) would stop it.
pub fn reachable_by(path: &Path, uid: u32, gid: u32, want: u32) -> anyhow::Result<()> {
    use std::os::unix::fs::MetadataExt;
    let allows = |m: &std::fs::Metadata, bits: u32| allows(m, uid, gid, bits);
    let mut checks: Vec<(PathBuf, u32)> = path
        .ancestors()
        .skip(1)
        .map(|a| (a.to_path_buf(), 0o1))
        .collect();
    checks.push((path.to_path_buf(), want));
    for (p, bits) in checks {
        let m = std::fs::metadata(&p).with_context(|| format!("{}", p.display()))?;
        ensure!(
            allows(&m, bits),
            "{}: the sandbox runs as host uid {uid} (gid {gid}), which cannot {} it (mode {:o}, \
             owner {}:{}); make it {} for others or set [sandbox] host_uid/host_gid",
            p.display(),
            if bits == 0o1 { "search" } else { "read" },
            m.mode() & 0o7777,
            m.uid(),
            m.gid(),
            if bits == 0o1 {
                "searchable (o+x)"
            } else {
                "readable (o+r)"
            }
        );
    }
    Ok(())
}

/// Refuses a symlink inside the measured tree `root` that leads into one of `writable` (the
/// state folder, which the host writes while the enclave runs): only the link's target text is
/// measured, so such a link would load host-written, unmeasured content. Links are resolved as
/// written (lexically) and, when they resolve on the host, canonically.
pub fn no_link_into(root: &Path, writable: &[&Path]) -> anyhow::Result<()> {
    fn lexical(p: &Path) -> PathBuf {
        let mut out = PathBuf::from("/");
        for c in p.components() {
            match c {
                std::path::Component::ParentDir => {
                    out.pop();
                }
                std::path::Component::Normal(n) => out.push(n),
                _ => {}
            }
        }
        out
    }
    let mut pending = vec![root.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for item in std::fs::read_dir(&dir).with_context(|| format!("{}", dir.display()))? {
            let item = item.with_context(|| format!("{}", dir.display()))?;
            let path = item.path();
            let ft = item.file_type()?;
            if ft.is_dir() {
                pending.push(path);
            } else if ft.is_symlink() {
                let target = std::fs::read_link(&path)?;
                let joined = lexical(&dir.join(&target));
                let canon = std::fs::canonicalize(&path).ok();
                for w in writable {
                    ensure!(
                        !joined.starts_with(w) && !canon.as_ref().is_some_and(|c| c.starts_with(w)),
                        "[launch] trees: {} links to {}, inside the writable state folder {}: \
                         content there is written by the host and never measured",
                        path.display(),
                        target.display(),
                        w.display()
                    );
                }
            }
        }
    }
    Ok(())
}

/// Whether `uid`/`gid` has permission `bits` (0o4 read, 0o1 search) on `m`.
fn allows(m: &std::fs::Metadata, uid: u32, gid: u32, bits: u32) -> bool {
    use std::os::unix::fs::MetadataExt;
    let mode = m.mode();
    (mode & bits) != 0
        || (m.uid() == uid && mode & (bits << 6) != 0)
        || (m.gid() == gid && mode & (bits << 3) != 0)
}

/// Checks, before anything is measured, that `uid`/`gid` can list and search every folder and
/// read every file of the measured tree at `root` (the agent hashes it again as that user inside
/// the sandbox; an unreadable file found only then would cost a TPM lifetime).
pub fn tree_readable_by(root: &Path, uid: u32, gid: u32) -> anyhow::Result<()> {
    let mut pending = vec![root.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for item in std::fs::read_dir(&dir).with_context(|| format!("{}", dir.display()))? {
            let path = item.with_context(|| format!("{}", dir.display()))?.path();
            let m =
                std::fs::symlink_metadata(&path).with_context(|| format!("{}", path.display()))?;
            let (need, what) = if m.is_dir() {
                pending.push(path.clone());
                (0o5, "list and search")
            } else if m.is_file() {
                (0o4, "read")
            } else {
                continue; // links are measured as links; special files are refused when measured
            };
            ensure!(
                (0o4 & need == 0 || allows(&m, uid, gid, 0o4))
                    && (0o1 & need == 0 || allows(&m, uid, gid, 0o1)),
                "[launch] trees: {}: the sandbox runs as host uid {uid} (gid {gid}), which cannot \
                 {what} it (mode {:o}); fix its permissions or set [sandbox] host_uid/host_gid",
                path.display(),
                std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o7777,
            );
        }
    }
    Ok(())
}

/// A process in the launcher's own pid namespace running as host `uid` (real, effective, saved
/// or filesystem id), as `(pid, command name)`: such a process could signal a sandboxed process
/// of that uid, so the sandboxes' host users must be dedicated to them (docs/isolation.md).
/// Processes in other pid namespaces (other enclaves' sandboxes, containers) cannot address ours
/// and are not counted.
pub fn host_process_of_uid(uid: u32) -> anyhow::Result<Option<(u32, String)>> {
    let own_ns = std::fs::read_link("/proc/self/ns/pid").context("reading /proc/self/ns/pid")?;
    for entry in std::fs::read_dir("/proc")
        .context("listing /proc")?
        .flatten()
    {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        // Processes come and go while we look: one that vanished is no match.
        let Ok(ns) = std::fs::read_link(entry.path().join("ns/pid")) else {
            continue;
        };
        if ns != own_ns {
            continue;
        }
        let Ok(status) = std::fs::read_to_string(entry.path().join("status")) else {
            continue;
        };
        let uses = status
            .lines()
            .find_map(|l| l.strip_prefix("Uid:"))
            .is_some_and(|ids| ids.split_whitespace().any(|id| id.parse() == Ok(uid)));
        if uses {
            let name = status
                .lines()
                .find_map(|l| l.strip_prefix("Name:"))
                .unwrap_or("?")
                .trim()
                .to_string();
            return Ok(Some((pid, name)));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn tree_links_into_the_state_folder_are_refused() {
        let d = tempfile::tempdir().unwrap();
        let (tree, state) = (d.path().join("tree"), d.path().join("run"));
        std::fs::create_dir_all(tree.join("sub")).unwrap();
        std::fs::create_dir_all(&state).unwrap();
        std::os::unix::fs::symlink("/usr/lib/os-release", tree.join("ok")).unwrap();
        no_link_into(&tree, &[&state]).unwrap();
        for (name, target) in [
            ("abs", state.join("x.py")),
            ("rel", PathBuf::from("../../run/x.py")),
        ] {
            let link = tree.join("sub").join(name);
            std::os::unix::fs::symlink(&target, &link).unwrap();
            let e = no_link_into(&tree, &[&state]).unwrap_err().to_string();
            assert!(
                e.contains("inside the writable state folder"),
                "{name}: {e}"
            );
            std::fs::remove_file(&link).unwrap();
        }
    }

    #[test]
    fn finds_host_processes_by_uid_in_this_pid_namespace() {
        let me = rustix::process::geteuid().as_raw();
        let (pid, _) = host_process_of_uid(me)
            .unwrap()
            .expect("this test process itself");
        assert!(pid > 0);
        assert_eq!(host_process_of_uid(4_000_000_123).unwrap(), None);
    }
}
