//! Kernel modules for the guest image: find each module of a Debian kernel package by name, read
//! its dependencies from the `depends=` string of its ELF `.modinfo` section (the package ships no
//! `modules.dep`), and order them so each loads after what it depends on.

use anyhow::{Context, bail};
use object::{Object, ObjectSection};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Module names compare with `-` and `_` as the same character (as the kernel does).
pub fn normalize(name: &str) -> String {
    name.replace('-', "_")
}

/// Every `.ko` under `dir`, by normalized name.
///
/// # Errors
/// `dir` cannot be walked.
pub fn index(dir: &Path) -> anyhow::Result<BTreeMap<String, PathBuf>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).with_context(|| format!("reading {}", d.display()))? {
            let p = e?.path();
            if p.is_dir() {
                stack.push(p);
            } else if let Some(name) = p.file_name().and_then(|n| n.to_str()) {
                if let Some(stem) = name.strip_suffix(".ko") {
                    out.insert(normalize(stem), p);
                }
            }
        }
    }
    Ok(out)
}

/// The `depends=` list of a module's `.modinfo` section.
///
/// # Errors
/// Not an ELF object, no `.modinfo` section, or no `depends=` entry.
pub fn depends(ko: &[u8], what: &Path) -> anyhow::Result<Vec<String>> {
    let file = object::File::parse(ko).with_context(|| format!("{}: not ELF", what.display()))?;
    let section = file.section_by_name(".modinfo").with_context(|| {
        format!(
            "{}: expected a .modinfo section, found none",
            what.display()
        )
    })?;
    let data = section.data()?;
    for entry in data.split(|b| *b == 0) {
        if let Some(list) = entry.strip_prefix(b"depends=") {
            let list = std::str::from_utf8(list)?;
            return Ok(list
                .split(',')
                .filter(|s| !s.is_empty())
                .map(normalize)
                .collect());
        }
    }
    bail!(
        "{}: expected a depends= entry in .modinfo, found none",
        what.display()
    )
}

/// `wanted` and everything they depend on, each after its dependencies (ties by name).
///
/// # Errors
/// A module that is not in `index`, or a dependency cycle.
pub fn load_order(
    index: &BTreeMap<String, PathBuf>,
    wanted: &[String],
) -> anyhow::Result<Vec<(String, PathBuf)>> {
    let mut deps: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut todo: Vec<String> = wanted.iter().map(|w| normalize(w)).collect();
    while let Some(m) = todo.pop() {
        if deps.contains_key(&m) {
            continue;
        }
        let path = index
            .get(&m)
            .with_context(|| format!("kernel module {m}: not found in the kernel package"))?;
        let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        let d = depends(&bytes, path)?;
        todo.extend(d.iter().cloned());
        deps.insert(m, d);
    }
    let mut done: BTreeSet<String> = BTreeSet::new();
    let mut order = Vec::new();
    while done.len() < deps.len() {
        let ready: Vec<String> = deps
            .iter()
            .filter(|(m, d)| !done.contains(*m) && d.iter().all(|x| done.contains(x)))
            .map(|(m, _)| m.clone())
            .collect();
        if ready.is_empty() {
            bail!("kernel modules: a dependency cycle among {:?}", deps.keys());
        }
        for m in ready {
            done.insert(m.clone());
            let p = index.get(&m).cloned().unwrap_or_default();
            order.push((m, p));
        }
    }
    Ok(order)
}
