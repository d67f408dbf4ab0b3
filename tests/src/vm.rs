//! VM-mode fixtures (docs/vm.md): a VM-mode config over real artifacts, the pinned kernel and the
//! vsock backend `scripts/setup.sh` installs under `.cache/`, and `secllama measure vm`.

use crate::enclave::PrepareError;
use crate::launch::bin;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The pinned guest kernel release (`scripts/setup.sh`).
pub const KERNEL_RELEASE: &str = "6.1.0-57-amd64";

fn cache(rel: &str) -> Result<PathBuf, PrepareError> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../.cache")
        .join(rel);
    if p.exists() {
        Ok(std::fs::canonicalize(p)?)
    } else {
        Err(format!("{} is missing: run scripts/setup.sh", p.display()).into())
    }
}

/// The unpacked kernel package.
pub fn kernel_dir() -> Result<PathBuf, PrepareError> {
    cache(&format!("kernel/{KERNEL_RELEASE}"))
}

/// `vhost-device-vsock`.
pub fn vsock_backend() -> Result<PathBuf, PrepareError> {
    cache("tools/bin/vhost-device-vsock")
}

/// A VM-mode enclave to write a config for.
#[derive(Debug, Clone)]
pub struct VmEnclave {
    /// Folder of the artifacts (policy and config are written here).
    pub art: PathBuf,
    /// `[vm] state`.
    pub state: PathBuf,
    /// The measured runner.
    pub runner: PathBuf,
    /// The runner's command line (first word: the runner).
    pub runner_command: Vec<String>,
    /// The runner's loopback port in the guest.
    pub runner_port: u16,
    /// Seconds the runner may take to answer.
    pub runner_ready_secs: u64,
    /// Model files (on the model disk).
    pub models: Vec<PathBuf>,
    /// The policy's JSON text.
    pub policy: String,
    /// Guest RAM, MiB.
    pub memory_mib: u32,
}

impl VmEnclave {
    /// Writes the policy and the config (with its `libraries` line); returns the config's path.
    pub fn write(&self) -> Result<PathBuf, PrepareError> {
        std::fs::create_dir_all(&self.art)?;
        std::fs::write(self.art.join("policy.json"), &self.policy)?;
        let q = |p: &Path| format!("{:?}", p.display().to_string());
        let list = |v: &[PathBuf]| v.iter().map(|p| q(p)).collect::<Vec<_>>().join(", ");
        let command = self
            .runner_command
            .iter()
            .map(|a| format!("{a:?}"))
            .collect::<Vec<_>>()
            .join(", ");
        let body = format!(
            "listener = \"vsock:1024\"\n\
             runner_url = \"http://127.0.0.1:{port}\"\n\
             runner_command = [{command}]\n\
             runner_ready_secs = {ready}\n\
             policy = \"policy.json\"\n\
             receipts = \"/dev/disk/by-id/virtio-secllama-log\"\n\
             event_log = \"/run/secllama/launch.log\"\n\
             tcti = \"device:/dev/tpmrm0\"\n\
             quote_pcrs = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 23]\n\
             [vm]\nkernel = {kernel}\nkernel_version = \"{KERNEL_RELEASE}\"\ninit = {init}\n\
             state = {state}\nvsock_backend = {backend}\nmemory_mib = {mem}\n\
             boot_timeout_secs = 600\n\
             [launch]\nisolation = \"vm\"\nagent = {agent}\nrunner = {runner}\n\
             model = [{models}]\npolicy = \"policy.json\"\nconfig = \"config.toml\"\n\
             banks = [\"sha256\"]\n",
            port = self.runner_port,
            ready = self.runner_ready_secs,
            kernel = q(&kernel_dir()?),
            init = q(&bin("secllama-init")?),
            state = q(&self.state),
            backend = q(&vsock_backend()?),
            mem = self.memory_mib,
            agent = q(&bin("secllama-enclave")?),
            runner = q(&self.runner),
            models = list(&self.models),
        );
        crate::launch::write_config(&self.art.join("config.toml"), &body)
    }
}

/// A VM-mode config in `dir` (`art/`, `state/`) for `runner` (the test runner's path, whose
/// binary a test or bench gets from `CARGO_BIN_EXE_…`) listening on a free port with `extra`
/// arguments, `model` as its one model file and `policy` (JSON); returns the config's path.
pub fn test_runner_config(
    dir: &Path,
    runner: &Path,
    extra: &[&str],
    model: &[u8],
    policy: &str,
) -> Result<PathBuf, PrepareError> {
    let art = dir.join("art");
    std::fs::create_dir_all(&art)?;
    std::fs::write(art.join("model.gguf"), model)?;
    let port = crate::launch::free_port()?;
    let mut runner_command = vec![
        runner.display().to_string(),
        "--listen".into(),
        format!("127.0.0.1:{port}"),
    ];
    runner_command.extend(extra.iter().map(|a| a.to_string()));
    VmEnclave {
        art: art.clone(),
        state: dir.join("state"),
        runner: runner.to_path_buf(),
        runner_command,
        runner_port: port,
        runner_ready_secs: 120,
        models: vec![art.join("model.gguf")],
        policy: policy.to_string(),
        memory_mib: 1024,
    }
    .write()
}

/// `secllama measure vm --config C (--golden-log G | --unpinned-firmware) --manifest OUT
/// [--ak-public AK]`; returns its output.
pub fn measure_vm(
    config: &Path,
    golden: Option<&Path>,
    manifest: &Path,
    ak: Option<&Path>,
) -> Result<std::process::Output, PrepareError> {
    let mut c = Command::new(bin("secllama")?);
    c.args(["measure", "vm", "--config"]).arg(config);
    match golden {
        Some(g) => c.arg("--golden-log").arg(g),
        None => c.arg("--unpinned-firmware"),
    };
    c.arg("--manifest").arg(manifest);
    if let Some(a) = ak {
        c.arg("--ak-public").arg(a);
    }
    Ok(c.output()?)
}
