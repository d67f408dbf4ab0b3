//! `secllama image build`: the VM guest's boot artifacts from a VM-mode config (docs/vm.md).
//!
//! - `vmlinuz`: the pinned Debian kernel, copied byte for byte (OVMF measures it into PCR 4);
//! - `initrd.img`: a newc archive ([`super::cpio`]) holding `/init` (`secllama-init`), `/dev/console`,
//!   the kernel modules in load order ([`super::kmod`]), and every artifact of the launch at its
//!   host path — agent, runner, config, policy, measured trees, the listed shared libraries and
//!   those `secllama-init` loads — with the host's symlinks on the way, so the config's paths mean
//!   the same inside the guest. Sorted, uid/gid 0, one mtime: two builds of the same inputs are the
//!   same bytes;
//! - `cmdline`: the kernel command line (`console=ttyS0 … secllama.config=PATH`), measured into
//!   PCR 9 with the initramfs.
//!
//! - `model.img` (when the launch has model files): the model disk ([`super::verity`]); the
//!   initramfs links each model's configured path to its place on the disk's mount point, and the
//!   command line carries the verity parameters (`secllama.verity=…`).

use super::cpio::{Entry, Kind, write_newc};
use super::kmod;
use crate::libraries;
use anyhow::{Context, bail, ensure};
use secllama_enclave::config::Config;
use secllama_measurements::launch::Isolation;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// What a build wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Built {
    /// The kernel.
    pub kernel: PathBuf,
    /// The initramfs.
    pub initrd: PathBuf,
    /// The kernel command line.
    pub cmdline: String,
    /// SHA-256 of the kernel file.
    pub kernel_sha256: [u8; 32],
    /// SHA-256 of the initramfs (what OVMF extends into PCR 9 as "Linux initrd").
    pub initrd_sha256: [u8; 32],
    /// The model disk and its verity parameters, when the launch has model files.
    pub model_disk: Option<(PathBuf, secllama_enclave::guest::dm::VerityParams)>,
}

impl Built {
    /// A prebuilt image in `dir` (`vmlinuz`, `initrd.img`, `cmdline`, optional `model.img`; the
    /// verity parameters are read back from the command line).
    ///
    /// # Errors
    /// A file is missing, or the command line's verity parameters are malformed.
    pub fn read(dir: &Path) -> anyhow::Result<Self> {
        let kernel = dir.join("vmlinuz");
        let initrd = dir.join("initrd.img");
        let cmdline = std::fs::read_to_string(dir.join("cmdline"))
            .with_context(|| format!("reading {}/cmdline", dir.display()))?;
        let verity =
            secllama_enclave::guest::param(&cmdline, secllama_enclave::guest::dm::VERITY_PARAM)
                .map(secllama_enclave::guest::dm::VerityParams::from_param)
                .transpose()
                .map_err(|e| anyhow::anyhow!("{}/cmdline: expected {e}", dir.display()))?;
        let disk = dir.join("model.img");
        let model_disk = match verity {
            Some(p) => {
                ensure!(disk.is_file(), "expected the model disk {}", disk.display());
                Some((disk, p))
            }
            None => None,
        };
        Ok(Self {
            kernel_sha256: sha256_file(&kernel)?,
            initrd_sha256: sha256_file(&initrd)?,
            kernel,
            initrd,
            cmdline,
            model_disk,
        })
    }
}

/// The guest's console.
pub const CONSOLE: &str = "ttyS0";

/// The archive's entries by path (later insertions of the same path must agree).
#[derive(Default)]
struct Tree {
    entries: BTreeMap<String, Entry>,
}

fn rel(p: &Path) -> anyhow::Result<String> {
    let s = p
        .to_str()
        .with_context(|| format!("{}: not UTF-8", p.display()))?;
    Ok(s.trim_start_matches('/').to_string())
}

impl Tree {
    fn put(&mut self, path: String, kind: Kind, perm: u32) -> anyhow::Result<()> {
        let e = Entry {
            path: path.clone(),
            kind,
            perm,
        };
        if let Some(old) = self.entries.get(&path) {
            ensure!(
                *old == e,
                "initramfs: {path} would be added twice with different contents"
            );
            return Ok(());
        }
        self.entries.insert(path, e);
        Ok(())
    }

    fn file(&mut self, host: &Path, at: &Path) -> anyhow::Result<()> {
        for m in secllama_enclave::guest::MOUNT_POINTS {
            ensure!(
                !at.starts_with(m),
                "{}: the guest's init mounts over {m}, which would hide this artifact; keep the \
                 launch's files elsewhere",
                at.display()
            );
        }
        let bytes = std::fs::read(host).with_context(|| format!("reading {}", host.display()))?;
        let mode = std::fs::metadata(host)?.permissions().mode();
        // Executables stay executable; nothing is writable or set-id in the image.
        let perm = if mode & 0o111 != 0 { 0o755 } else { 0o644 };
        self.put(rel(at)?, Kind::File(bytes), perm)
    }

    /// Adds `path` as the host resolves it: every symlink on the way as a symlink (at its
    /// resolved folder), and the file or folder it ends at.
    fn host_path(&mut self, path: &Path) -> anyhow::Result<()> {
        ensure!(
            path.is_absolute(),
            "{}: expected an absolute path",
            path.display()
        );
        let mut cur = PathBuf::from("/");
        let mut hops = 0;
        for comp in path.components().skip(1) {
            let next = cur.join(comp);
            let md =
                std::fs::symlink_metadata(&next).with_context(|| format!("{}", next.display()))?;
            if md.file_type().is_symlink() {
                hops += 1;
                ensure!(hops < 40, "{}: too many symlinks", path.display());
                let target = std::fs::read_link(&next)?;
                let target = target
                    .to_str()
                    .with_context(|| format!("{}: link target not UTF-8", next.display()))?;
                self.put(rel(&next)?, Kind::Symlink(target.to_string()), 0o777)?;
                cur = std::fs::canonicalize(&next)
                    .with_context(|| format!("resolving {}", next.display()))?;
                // The link's target may itself be reached through links (e.g. /lib64 → usr/lib64).
                self.host_path(&cur)?;
            } else {
                cur = next;
            }
        }
        let md = std::fs::metadata(&cur)?;
        if md.is_file() {
            self.file(&cur, &cur)?;
        }
        Ok(())
    }

    /// A measured folder: every file, folder and symlink under it, as on the host.
    fn tree(&mut self, root: &Path) -> anyhow::Result<()> {
        let root = std::fs::canonicalize(root)?;
        self.host_path(&root)?;
        let mut stack = vec![root];
        while let Some(d) = stack.pop() {
            self.put(rel(&d)?, Kind::Dir, 0o755)?;
            for e in std::fs::read_dir(&d).with_context(|| format!("reading {}", d.display()))? {
                let p = e?.path();
                let md = std::fs::symlink_metadata(&p)?;
                if md.file_type().is_symlink() {
                    let t = std::fs::read_link(&p)?;
                    let t = t.to_str().context("link target not UTF-8")?.to_string();
                    self.put(rel(&p)?, Kind::Symlink(t), 0o777)?;
                } else if md.is_dir() {
                    stack.push(p);
                } else if md.is_file() {
                    self.file(&p, &p)?;
                }
            }
        }
        Ok(())
    }
}

fn sha256_file(p: &Path) -> anyhow::Result<[u8; 32]> {
    let bytes = std::fs::read(p).with_context(|| format!("reading {}", p.display()))?;
    Ok(Sha256::digest(&bytes).into())
}

/// The kernel command line for `config_path` (absolute, as in the image) and the model disk.
pub fn cmdline(
    config_path: &Path,
    verity: Option<&secllama_enclave::guest::dm::VerityParams>,
) -> String {
    let mut c = format!(
        "console={CONSOLE} panic=-1 quiet {}={}",
        secllama_enclave::guest::CONFIG_PARAM,
        config_path.display()
    );
    if let Some(v) = verity {
        c.push_str(&format!(
            " {}={}",
            secllama_enclave::guest::dm::VERITY_PARAM,
            v.to_param()
        ));
    }
    c
}

/// Builds the guest's kernel, initramfs and command line for the VM-mode config at `config_arg`
/// into `out` (created if needed). `mtime` is every archive entry's mtime (`SOURCE_DATE_EPOCH`).
///
/// # Errors
/// The config is not a VM-mode config, an artifact or module is missing, or writing failed.
pub fn build(config_arg: &Path, out: &Path, mtime: u32) -> anyhow::Result<Built> {
    let config_path = std::fs::canonicalize(config_arg)
        .with_context(|| format!("the config {}", config_arg.display()))?;
    let (config, base) = Config::load(&config_path)?;
    let l = &config.launch;
    ensure!(
        l.isolation == Isolation::Vm,
        "[launch] isolation: expected \"vm\" to build a guest image, found \"{}\"",
        l.isolation.as_str()
    );
    let abs = |p: &Path| {
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            base.join(p)
        }
    };
    let vm = &config.vm;
    ensure!(
        !vm.kernel_version.is_empty() && !vm.kernel.as_os_str().is_empty(),
        "[vm] kernel and kernel_version: expected the unpacked kernel package and its release \
         (scripts/setup.sh fetches linux-image-6.1.0-57-amd64), found none"
    );
    let kdir = abs(&vm.kernel);
    let vmlinuz = kdir
        .join("boot")
        .join(format!("vmlinuz-{}", vm.kernel_version));
    let modules_dir = kdir.join("lib/modules").join(&vm.kernel_version);
    ensure!(
        vmlinuz.is_file() && modules_dir.is_dir(),
        "[vm] kernel: expected {} and {}, found {}",
        vmlinuz.display(),
        modules_dir.display(),
        if vmlinuz.is_file() {
            "no modules folder"
        } else {
            "no kernel"
        }
    );
    // What the guest runs must be what the document's digests describe (as in process mode).
    let canon = |p: &Path, what: &str| {
        std::fs::canonicalize(abs(p)).with_context(|| format!("{what} {}", p.display()))
    };
    let measured_config = canon(&l.config, "[launch] config")?;
    ensure!(
        measured_config == config_path,
        "[launch] config: expected the file being built ({}), found {}",
        config_path.display(),
        measured_config.display()
    );
    let runner = canon(&l.runner, "[launch] runner")?;
    let first = config
        .runner_command
        .as_ref()
        .and_then(|c| c.first())
        .context("runner_command: expected the runner's command line, found none")?;
    let started = canon(Path::new(first), "runner_command[0]")?;
    ensure!(
        started == runner,
        "runner_command[0]: expected the measured runner {}, found {}",
        runner.display(),
        started.display()
    );
    let policy = canon(&l.policy, "[launch] policy")?;
    for tree in &l.trees {
        let tree = canon(tree, "[launch] trees")?;
        ensure!(
            !policy.starts_with(&tree),
            "[launch] policy: {} is inside the measured tree {}: the runner sees every tree, \
             and the policy's dataset is the agent's alone",
            policy.display(),
            tree.display()
        );
    }
    let init = std::fs::canonicalize(abs(&vm.init))
        .with_context(|| format!("[vm] init {}", vm.init.display()))?;

    let mut t = Tree::default();
    for d in ["proc", "sys", "dev", "run", "tmp", "etc"] {
        t.put(d.into(), Kind::Dir, 0o755)?;
    }
    t.put(
        "dev/console".into(),
        Kind::CharDevice { major: 5, minor: 1 },
        0o600,
    )?;
    t.file(&init, Path::new("/init"))?;
    for lib in libraries::needed(&[&init], "device")? {
        t.host_path(&lib)?;
    }
    for p in [&l.agent, &l.runner, &l.config, &l.policy] {
        t.host_path(&abs(p))?;
    }
    if let Some(first) = config.runner_command.as_ref().and_then(|c| c.first()) {
        t.host_path(&abs(Path::new(first)))?;
    }
    for tree in &l.trees {
        t.tree(&abs(tree))?;
    }
    for lib in &l.libraries {
        t.host_path(lib)?;
    }
    let needed = libraries::for_launch(l, &base)?;
    let missing = libraries::missing(&needed, &l.libraries);
    if !missing.is_empty() {
        bail!(
            "[launch] libraries: the agent, runner and TCTI module load {} file(s) the list does \
             not name (they are in the guest, so they must be measured): {}",
            missing.len(),
            missing
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    let index = kmod::index(&modules_dir)?;
    for (n, (name, path)) in kmod::load_order(&index, &vm.modules)?.iter().enumerate() {
        let at = Path::new(secllama_enclave::guest::kmod::MODULE_DIR)
            .join(format!("{:03}-{name}.ko", n + 1));
        t.file(path, &at)?;
    }

    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    // The model files: on the model disk, each configured path a link to its place there.
    let mut on_disk = Vec::new();
    for m in &l.model {
        let written = abs(m);
        let file = std::fs::canonicalize(&written)
            .with_context(|| format!("[launch] model {}", written.display()))?;
        let (Some(parent), Some(name)) = (written.parent(), written.file_name()) else {
            bail!("[launch] model {}: expected a file path", written.display());
        };
        t.host_path(parent)?;
        let at = std::fs::canonicalize(parent)?.join(name);
        let disk_name = file
            .file_name()
            .and_then(|n| n.to_str())
            .with_context(|| format!("{}: no UTF-8 file name", file.display()))?;
        let target = Path::new(secllama_enclave::guest::MODEL_MOUNT).join(disk_name);
        let target = target.to_str().context("model path not UTF-8")?.to_string();
        t.put(rel(&at)?, Kind::Symlink(target), 0o777)?;
        on_disk.push(file);
    }
    let model_disk = if on_disk.is_empty() {
        None
    } else {
        let disk = out.join("model.img");
        let params = super::verity::build_model_disk(&on_disk, &disk, mtime)?;
        Some((disk, params))
    };

    let entries: Vec<Entry> = t.entries.into_values().collect();
    let archive = write_newc(&entries, mtime)?;
    let initrd = out.join("initrd.img");
    let kernel = out.join("vmlinuz");
    std::fs::write(&initrd, &archive).with_context(|| format!("writing {}", initrd.display()))?;
    std::fs::copy(&vmlinuz, &kernel).with_context(|| format!("writing {}", kernel.display()))?;
    let cmdline = cmdline(&config_path, model_disk.as_ref().map(|(_, p)| p));
    std::fs::write(out.join("cmdline"), &cmdline)?;
    Ok(Built {
        kernel_sha256: sha256_file(&kernel)?,
        initrd_sha256: Sha256::digest(&archive).into(),
        kernel,
        initrd,
        cmdline,
        model_disk,
    })
}
