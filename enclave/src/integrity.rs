//! Run-time integrity of the measured artifacts. In process mode the artifacts (agent, runner,
//! models, policy, config, libraries, measured trees) are bind-mounted read-only from the host:
//! the sandbox cannot write them, but whoever owns them on the host can, and a runner restarted —
//! or a module imported lazily — after such a write would run code that was never measured while
//! the attestation still shows the launch's digests.
//!
//! The agent therefore records, before it hashes the artifacts, the identity and change times of
//! every measured file, folder and link ([`Snapshot::take`]: device, inode, size, mode, mtime and
//! ctime, which no unprivileged writer can set back), checks that nothing changed while it hashed,
//! and checks again ([`Snapshot::check`]) before every attestation document, every receipt and
//! every runner restart. Any change is fatal to the enclave's evidence: no document, no receipt,
//! no restart. (Root on the host can forge times; in process mode the host kernel and its root
//! are trusted at run time — DESIGN.md "Trust model".)

use secllama_measurements::launch::Launch;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// Most entries watched (as [`secllama_measurements::tree::MAX_ENTRIES`], plus the files).
const MAX_WATCHED: usize = 250_000;

/// What is recorded of one path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    dev: u64,
    ino: u64,
    size: u64,
    mode: u32,
    mtime_ns: i128,
    ctime_ns: i128,
}

impl Stamp {
    fn of(m: &std::fs::Metadata) -> Self {
        Self {
            dev: m.dev(),
            ino: m.ino(),
            size: m.size(),
            mode: m.mode(),
            mtime_ns: i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec()),
            ctime_ns: i128::from(m.ctime()) * 1_000_000_000 + i128::from(m.ctime_nsec()),
        }
    }
}

/// A measured artifact that changed, or could not be watched.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("measured artifact {path}: expected it unchanged since launch, found {found}")]
pub struct Changed {
    /// The path.
    pub path: String,
    /// What differs.
    pub found: String,
}

/// The recorded state of every measured path.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// (path, whether a final symlink is followed, what was recorded).
    entries: Vec<(PathBuf, bool, Stamp)>,
}

fn changed(path: &Path, found: impl Into<String>) -> Changed {
    Changed {
        path: path.display().to_string(),
        found: found.into(),
    }
}

fn stat(path: &Path, follow: bool) -> Result<Stamp, Changed> {
    let m = if follow {
        std::fs::metadata(path)
    } else {
        std::fs::symlink_metadata(path)
    };
    m.map(|m| Stamp::of(&m))
        .map_err(|e| changed(path, format!("it cannot be read: {e}")))
}

impl Snapshot {
    /// Records every path `launch` measures (relative paths from `base`), walking each tree.
    pub fn take(launch: &Launch, base: &Path) -> Result<Self, Changed> {
        Self::take_with(launch, base, true)
    }

    /// As [`Snapshot::take`] without the policy: what the runner's sandbox holds (the policy's
    /// dataset is the agent's business; docs/isolation.md).
    pub fn take_runner_view(launch: &Launch, base: &Path) -> Result<Self, Changed> {
        Self::take_with(launch, base, false)
    }

    fn take_with(launch: &Launch, base: &Path, with_policy: bool) -> Result<Self, Changed> {
        let abs = |p: &Path| {
            if p.is_absolute() {
                p.to_path_buf()
            } else {
                base.join(p)
            }
        };
        let mut entries = Vec::new();
        let files = [&launch.agent, &launch.runner, &launch.config]
            .into_iter()
            .chain(with_policy.then_some(&launch.policy))
            .chain(&launch.model)
            .chain(&launch.libraries);
        for f in files {
            let p = abs(f);
            let s = stat(&p, true)?;
            entries.push((p, true, s));
        }
        for t in &launch.trees {
            let root = abs(t);
            let s = stat(&root, true)?;
            entries.push((root.clone(), true, s));
            let mut pending = vec![root];
            while let Some(dir) = pending.pop() {
                let list = std::fs::read_dir(&dir)
                    .map_err(|e| changed(&dir, format!("it cannot be listed: {e}")))?;
                for item in list {
                    let item = item.map_err(|e| changed(&dir, e.to_string()))?;
                    let p = item.path();
                    let s = stat(&p, false)?;
                    if item.file_type().is_ok_and(|t| t.is_dir()) {
                        pending.push(p.clone());
                    }
                    entries.push((p, false, s));
                    if entries.len() > MAX_WATCHED {
                        return Err(changed(
                            &abs(t),
                            format!("more than {MAX_WATCHED} measured entries"),
                        ));
                    }
                }
            }
        }
        Ok(Self { entries })
    }

    /// Checks every recorded path; the first that changed (or vanished) is the error.
    pub fn check(&self) -> Result<(), Changed> {
        for (path, follow, was) in &self.entries {
            let now = stat(path, *follow)?;
            if now != *was {
                let what = if now.ino != was.ino || now.dev != was.dev {
                    "another file at that path"
                } else if now.size != was.size {
                    "another size"
                } else if now.mode != was.mode {
                    "other permissions"
                } else {
                    "it was written (its change time moved)"
                };
                return Err(changed(path, what));
            }
        }
        Ok(())
    }

    /// Paths watched.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether nothing is watched.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    fn launch(d: &Path) -> Launch {
        for f in ["agent", "runner", "model", "policy", "config"] {
            std::fs::write(d.join(f), f).unwrap();
        }
        std::fs::create_dir_all(d.join("tree/sub")).unwrap();
        std::fs::write(d.join("tree/sub/a.py"), "a").unwrap();
        Launch {
            agent: "agent".into(),
            runner: "runner".into(),
            model: vec!["model".into()],
            policy: "policy".into(),
            config: "config".into(),
            trees: vec!["tree".into()],
            libraries: vec![],
            pcr: 15,
            banks: vec!["sha256".into()],
            isolation: Default::default(),
        }
    }

    #[test]
    fn any_write_rename_or_new_entry_is_caught() {
        let d = tempfile::tempdir().unwrap();
        let l = launch(d.path());
        type Write = Box<dyn Fn(&Path)>;
        let writes: Vec<(&str, Write)> = vec![
            (
                "runner",
                Box::new(|p| std::fs::write(p.join("runner"), "runner").unwrap()),
            ),
            (
                "a.py",
                Box::new(|p| std::fs::write(p.join("tree/sub/a.py"), "b").unwrap()),
            ),
            (
                "sub",
                Box::new(|p| std::fs::write(p.join("tree/sub/new.py"), "").unwrap()),
            ),
            (
                "model",
                Box::new(|p| {
                    std::fs::write(p.join("model2"), "model").unwrap();
                    std::fs::rename(p.join("model2"), p.join("model")).unwrap();
                }),
            ),
        ];
        for (what, write) in writes {
            let s = Snapshot::take(&l, d.path()).unwrap();
            assert!(s.len() >= 8);
            s.check().unwrap();
            // Same content, same size: only the change time tells.
            std::thread::sleep(std::time::Duration::from_millis(20));
            write(d.path());
            let e = s.check().unwrap_err();
            assert!(e.path.ends_with(what), "{what}: {e}");
        }
        let s = Snapshot::take(&l, d.path()).unwrap();
        std::fs::remove_file(d.path().join("policy")).unwrap();
        assert!(s.check().unwrap_err().found.contains("cannot be read"));
    }
}
