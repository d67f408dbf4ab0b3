//! Shared libraries a process-mode enclave loads: the dynamic loader and every library of the
//! agent, the runner and every ELF object inside a measured tree (as `ldd` lists them), plus the TSS TCTI module the agent `dlopen`s
//! (`libtss2-tctildr` loads `libtss2-tcti-<name>.so.0` at run time, which `ldd` cannot see) and
//! that module's own libraries.
//!
//! These files run inside the enclave, so they are measured like the binaries (`[launch]
//! libraries`, `library:<path>` events) and bind-mounted read-only into the sandbox. The launcher
//! refuses a launch whose programs need a library the list does not name.
//!
//! `ldd` runs the binary's dynamic loader in trace mode; it is pointed only at the operator's own
//! artifacts, on the host, before launch.

use anyhow::{Context, bail};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The TCTI modules the agent may load inside the sandbox, by TCTI kind.
const TCTI_MODULES: &[(&str, &str)] = &[
    ("swtpm", "libtss2-tcti-swtpm.so.0"),
    ("device", "libtss2-tcti-device.so.0"),
];

/// Absolute paths `ldd` lists for `program`; empty for a statically linked program.
pub fn ldd(program: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let out = Command::new("ldd")
        .arg(program)
        .output()
        .context("running ldd (Debian package libc-bin)")?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        // ldd says "not a dynamic executable" (exit 1) for static binaries and scripts.
        let err = String::from_utf8_lossy(&out.stderr);
        if text.contains("not a dynamic executable") || err.contains("not a dynamic executable") {
            return Ok(Vec::new());
        }
        bail!("ldd {}: {}", program.display(), err.trim());
    }
    let mut libs = Vec::new();
    for line in text.lines() {
        if line.contains("not found") {
            bail!(
                "ldd {}: a library is missing on this host: {}",
                program.display(),
                line.trim()
            );
        }
        libs.extend(
            line.split_whitespace()
                .filter(|t| t.starts_with('/'))
                .map(PathBuf::from),
        );
    }
    Ok(libs)
}

/// Everything `programs` load, plus the TCTI module for `tcti_kind` (`swtpm`, `device`) found
/// beside `libtss2-tctildr` when one of the programs links it. Sorted, without duplicates.
pub fn needed(programs: &[&Path], tcti_kind: &str) -> anyhow::Result<Vec<PathBuf>> {
    let mut all = BTreeSet::new();
    for p in programs {
        all.extend(ldd(p)?);
    }
    let tctildr = all
        .iter()
        .find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("libtss2-tctildr.so"))
        })
        .cloned();
    if let Some(loader) = tctildr {
        let module = TCTI_MODULES
            .iter()
            .find(|(kind, _)| *kind == tcti_kind)
            .map(|(_, m)| *m)
            .with_context(|| format!("TCTI kind {tcti_kind:?}: expected one of swtpm, device"))?;
        let dir = loader.parent().unwrap_or(Path::new("/"));
        let module = dir.join(module);
        if !module.exists() {
            bail!(
                "the agent loads TCTI modules at run time and {} is missing (Debian package libtss2-tcti-{tcti_kind}0)",
                module.display()
            );
        }
        all.extend(ldd(&module)?);
        all.insert(module);
    }
    Ok(all.into_iter().collect())
}

/// Whether `path` is an ELF object (starts with `\x7fELF`).
pub fn is_elf(path: &Path) -> bool {
    use std::io::Read;
    let mut magic = [0u8; 4];
    std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut magic))
        .is_ok()
        && magic == *b"\x7fELF"
}

/// What a launch loads that must be listed in `[launch] libraries`: the libraries of every ELF
/// object in the measured set — agent, runner, any model file that is ELF, every ELF file inside
/// a measured tree (an
/// interpreter's extension modules load libstdc++, libgomp, …) and the TCTI module — except
/// those inside a measured tree (already measured with it). Sorted, without duplicates.
pub fn for_launch(
    launch: &secllama_measurements::launch::Launch,
    base: &Path,
) -> anyhow::Result<Vec<PathBuf>> {
    let abs = |p: &Path| {
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            base.join(p)
        }
    };
    let mut objects = vec![abs(&launch.agent), abs(&launch.runner)];
    // Any other measured file that is an ELF object (a model store may ship a helper binary).
    objects.extend(launch.model.iter().map(|m| abs(m)).filter(|p| is_elf(p)));
    let mut roots = Vec::new();
    for t in &launch.trees {
        let root = std::fs::canonicalize(abs(t))
            .with_context(|| format!("[launch] trees: {}", t.display()))?;
        // Listed, not hashed: only the ELF objects matter here.
        let files = secllama_measurements::tree::files(&root)?;
        objects.extend(files.into_iter().filter(|p| is_elf(p)));
        roots.push(root);
    }
    let refs: Vec<&Path> = objects.iter().map(PathBuf::as_path).collect();
    // Process mode relays a swtpm into the sandbox; a VM guest has its vTPM as a device.
    let tcti = match launch.isolation {
        secllama_measurements::launch::Isolation::Process => "swtpm",
        secllama_measurements::launch::Isolation::Vm => "device",
    };
    let all = needed(&refs, tcti)?;
    let canon = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
    Ok(all
        .into_iter()
        .filter(|lib| {
            let c = canon(lib);
            !roots.iter().any(|r| c.starts_with(r))
        })
        .collect())
}

/// The libraries of `needed` that `listed` does not name (compared by canonical path, so a
/// `/lib/…` entry covers the same file under `/usr/lib/…`).
pub fn missing(needed: &[PathBuf], listed: &[PathBuf]) -> Vec<PathBuf> {
    let canon = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
    let have: BTreeSet<PathBuf> = listed.iter().map(|p| canon(p)).collect();
    needed
        .iter()
        .filter(|p| !have.contains(&canon(p)))
        .cloned()
        .collect()
}

/// `libraries = [...]` as a TOML line for the `[launch]` table.
pub fn toml_line(libs: &[PathBuf]) -> String {
    let items: Vec<String> = libs
        .iter()
        .map(|p| format!("{:?}", p.display().to_string()))
        .collect();
    format!("libraries = [{}]\n", items.join(", "))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn ldd_lists_the_loader_and_libc_of_a_dynamic_program() {
        let libs = ldd(Path::new("/bin/sh")).unwrap();
        assert!(
            libs.iter()
                .any(|p| p.to_string_lossy().contains("ld-linux")),
            "{libs:?}"
        );
        assert!(
            libs.iter().any(|p| p.to_string_lossy().contains("libc.so")),
            "{libs:?}"
        );
    }

    #[test]
    fn elf_objects_are_told_by_their_magic() {
        assert!(is_elf(Path::new("/bin/sh")));
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("model.gguf");
        std::fs::write(&f, b"GGUF\x03\0\0\0").unwrap();
        assert!(!is_elf(&f));
        assert!(!is_elf(&d.path().join("missing")));
        assert!(!is_elf(d.path()));
    }

    #[test]
    fn missing_compares_canonical_paths() {
        let libs = ldd(Path::new("/bin/sh")).unwrap();
        assert_eq!(missing(&libs, &libs), Vec::<PathBuf>::new());
        let canonical: Vec<PathBuf> = libs
            .iter()
            .map(|p| std::fs::canonicalize(p).unwrap())
            .collect();
        assert_eq!(missing(&libs, &canonical), Vec::<PathBuf>::new());
        assert_eq!(missing(&libs, &[]), libs);
        assert_eq!(
            toml_line(&[PathBuf::from("/a"), PathBuf::from("/b")]),
            "libraries = [\"/a\", \"/b\"]\n"
        );
    }
}
