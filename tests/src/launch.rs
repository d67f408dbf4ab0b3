//! `secllama launch` as real processes, for the end-to-end tests that run a whole enclave: write an
//! enclave's config (any runner, model files, measured trees; the `libraries` line from
//! `secllama measure libraries`), start the launcher and wait for its bridge, write the reference
//! manifest pinning the AK it published; start the verifying proxy in front of it.

use crate::enclave::{PrepareError, Reaped};
use crate::swtpm::Swtpm;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// A workspace binary that must have been built (`cargo build --workspace --release --bins`, as
/// `scripts/test.sh` does); an error naming the fix otherwise.
pub fn bin(name: &str) -> Result<PathBuf, PrepareError> {
    let p = crate::workspace_bin(name);
    if p.exists() {
        Ok(p)
    } else {
        Err(format!(
            "{} missing: build the binaries first (`cargo build --workspace --release --bins`, as \
             scripts/test.sh does)",
            p.display()
        )
        .into())
    }
}

/// The SmolLM2-135M-Instruct GGUF `scripts/setup.sh` provisions (`scripts/fetch-model.sh`), or an
/// error naming that script.
pub fn model_gguf() -> Result<PathBuf, PrepareError> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../.cache/models/SmolLM2-135M-Instruct.Q4_1.gguf");
    if p.exists() {
        Ok(p)
    } else {
        Err(format!(
            "{} missing: run `bash scripts/fetch-model.sh` (scripts/setup.sh does)",
            p.display()
        )
        .into())
    }
}

/// A temporary folder the sandbox's unprivileged host user can search (mode 0755, under
/// `/var/tmp`: a checkout or `/tmp` may be private, and the sandbox has its own `/tmp`).
pub fn artifact_dir() -> Result<tempfile::TempDir, PrepareError> {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir_in("/var/tmp")?;
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))?;
    Ok(dir)
}

/// A free loopback TCP port (bound, then released).
pub fn free_port() -> Result<u16, PrepareError> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// The banks the swtpm has allocated (a launch must extend exactly these).
pub fn sw_banks(sw: &Swtpm) -> Result<Vec<String>, PrepareError> {
    Ok(secllama_tpm::Tpm::connect(&sw.tcti())?
        .active_banks()?
        .iter()
        .map(|b| b.name().to_string())
        .collect())
}

/// An enclave to launch: everything its config says.
#[derive(Debug, Clone)]
pub struct EnclaveSpec {
    /// Folder of the artifacts (policy and config are written here).
    pub art: PathBuf,
    /// The state folder (socket, logs, `ak.pub`).
    pub state: PathBuf,
    /// TPM banks of the launch.
    pub banks: Vec<String>,
    /// The measured runner (`[launch] runner`).
    pub runner: PathBuf,
    /// The runner's command line; its first word must be the runner.
    pub runner_command: Vec<String>,
    /// The runner's loopback port.
    pub runner_port: u16,
    /// The runner's whole environment.
    pub runner_env: Vec<(String, String)>,
    /// Seconds the runner may take to answer.
    pub runner_ready_secs: u64,
    /// Model files (absolute, or relative to `art`).
    pub models: Vec<PathBuf>,
    /// Measured trees.
    pub trees: Vec<PathBuf>,
    /// The policy's JSON text.
    pub policy: String,
    /// The sandbox's address-space limit.
    pub memory_mib: u64,
}

impl EnclaveSpec {
    /// Writes the policy and the config (with the `libraries` line `secllama measure libraries`
    /// prints); returns the config's path.
    pub fn write(&self) -> Result<PathBuf, PrepareError> {
        std::fs::create_dir_all(&self.art)?;
        std::fs::write(self.art.join("policy.json"), &self.policy)?;
        let q = |p: &Path| format!("{:?}", p.display().to_string());
        let list = |v: &[PathBuf]| v.iter().map(|p| q(p)).collect::<Vec<_>>().join(", ");
        let env = self
            .runner_env
            .iter()
            .map(|(k, v)| format!("{k} = {v:?}"))
            .collect::<Vec<_>>()
            .join(", ");
        let command = self
            .runner_command
            .iter()
            .map(|a| format!("{a:?}"))
            .collect::<Vec<_>>()
            .join(", ");
        let body = format!(
            "listener = \"unix:{state}/enclave.sock\"\n\
             runner_url = \"http://127.0.0.1:{port}\"\n\
             runner_command = [{command}]\n\
             runner_env = {{ {env} }}\n\
             runner_ready_secs = {ready}\n\
             policy = \"policy.json\"\n\
             receipts = \"{state}/receipts.log\"\n\
             event_log = \"{state}/launch.log\"\n\
             [sandbox]\nmemory_mib = {mem}\nprocesses = 128\n\
             [launch]\nagent = {agent}\nrunner = {runner}\nmodel = [{models}]\n\
             trees = [{trees}]\npolicy = \"policy.json\"\nconfig = \"config.toml\"\n\
             banks = {banks:?}\n",
            state = self.state.display(),
            port = self.runner_port,
            ready = self.runner_ready_secs,
            mem = self.memory_mib,
            agent = q(&bin("secllama-enclave")?),
            runner = q(&self.runner),
            models = list(&self.models),
            trees = list(&self.trees),
            banks = self.banks,
        );
        write_config(&self.art.join("config.toml"), &body)
    }
}

/// Writes the config `body` to `config` followed by the `libraries = [...]` line `secllama measure
/// libraries` prints for it; returns the config's path.
pub fn write_config(config: &Path, body: &str) -> Result<PathBuf, PrepareError> {
    std::fs::write(config, body)?;
    let libs = Command::new(bin("secllama")?)
        .args(["measure", "libraries", "--config"])
        .arg(config)
        .output()?;
    if !libs.status.success() {
        return Err(format!(
            "secllama measure libraries: {}",
            String::from_utf8_lossy(&libs.stderr)
        )
        .into());
    }
    std::fs::write(
        config,
        format!("{body}{}", String::from_utf8_lossy(&libs.stdout)),
    )?;
    Ok(config.to_path_buf())
}

/// Starts `secllama launch` (bridge on a free loopback port); returns it and the bridge address
/// once the launcher printed both `enclave listening on` and `bridge listening on`. The
/// launcher's stdout is drained afterwards; its stderr (the sandboxes' output) is echoed to the
/// test's stderr.
pub fn launch(config: &Path, tcti: &str) -> Result<(Reaped, String), PrepareError> {
    launch_with_output(config, tcti).map(|(child, _, bridge)| (child, bridge))
}

/// The sandboxes' output lines (`runner: …`, `enclave: …`) as the launcher printed them so far.
pub type Lines = std::sync::Arc<std::sync::Mutex<Vec<String>>>;

/// As [`launch`], also collecting the launcher's stderr lines (each still echoed).
pub fn launch_with_output(
    config: &Path,
    tcti: &str,
) -> Result<(Reaped, Lines, String), PrepareError> {
    launch_with_args(config, &["--tcti", tcti])
}

/// `secllama launch --listen 127.0.0.1:0 --config CONFIG [args…]` as [`launch_with_output`]
/// (VM mode: no `--tcti`, maybe `--image DIR`).
pub fn launch_with_args(
    config: &Path,
    args: &[&str],
) -> Result<(Reaped, Lines, String), PrepareError> {
    launch_with_env(config, args, &[])
}

/// As [`launch_with_args`], with `env` added to the launcher's environment (e.g. `RUST_LOG`).
pub fn launch_with_env(
    config: &Path,
    args: &[&str],
    env: &[(&str, &str)],
) -> Result<(Reaped, Lines, String), PrepareError> {
    let mut child = Reaped(
        Command::new(bin("secllama")?)
            .args(["launch", "--listen", "127.0.0.1:0"])
            .args(args)
            .arg("--config")
            .arg(config)
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?,
    );
    let lines: Lines = Lines::default();
    let err = BufReader::new(child.0.stderr.take().ok_or("launcher stderr")?);
    let collected = lines.clone();
    std::thread::spawn(move || {
        for line in err.lines().map_while(Result::ok) {
            eprintln!("{line}");
            if let Ok(mut l) = collected.lock() {
                l.push(line);
            }
        }
    });
    let mut out = BufReader::new(child.0.stdout.take().ok_or("launcher stdout")?);
    let mut seen = Vec::new();
    let bridge = loop {
        let mut line = String::new();
        if out.read_line(&mut line)? == 0 {
            let output = lines.lock().map(|l| l.clone()).unwrap_or_default();
            return Err(format!(
                "launcher ended before it was ready: {seen:?}; stderr: {output:?}"
            )
            .into());
        }
        if let Some(addr) = line.trim().strip_prefix("bridge listening on ") {
            break addr.to_string();
        }
        seen.push(line);
    };
    if !seen.iter().any(|l| l.starts_with("enclave listening on ")) {
        return Err(format!("launcher did not report the enclave: {seen:?}").into());
    }
    // Keep draining stdout so the launcher never blocks on it.
    std::thread::spawn(move || for _ in out.lines() {});
    Ok((child, lines, bridge))
}

/// `secllama-verify generate --url URL --model MODEL --prompt PROMPT --manifest M [extra…]`.
pub fn verify_generate(
    url: &str,
    model: &str,
    prompt: &str,
    manifest: &Path,
    extra: &[&str],
) -> Result<std::process::Output, PrepareError> {
    Ok(Command::new(bin("secllama-verify")?)
        .args([
            "generate", "--url", url, "--model", model, "--prompt", prompt,
        ])
        .arg("--manifest")
        .arg(manifest)
        .args(extra)
        .output()?)
}

/// `secllama measure launch --config C --manifest OUT --ak-public STATE/ak.pub`.
pub fn manifest(config: &Path, state: &Path, out: &Path) -> Result<(), PrepareError> {
    let m = Command::new(bin("secllama")?)
        .args(["measure", "launch", "--config"])
        .arg(config)
        .arg("--manifest")
        .arg(out)
        .arg("--ak-public")
        .arg(state.join("ak.pub"))
        .output()?;
    if m.status.success() {
        Ok(())
    } else {
        Err(format!(
            "secllama measure launch: {}",
            String::from_utf8_lossy(&m.stderr)
        )
        .into())
    }
}

/// Starts `secllama-verify proxy --listen 127.0.0.1:0 --url URL --manifest F --receipts F
/// --reattest SECS`; returns it and its address once it says `proxy listening on`, or its status
/// and output if it exited first. Its stdout and stderr are drained afterwards.
pub fn proxy(
    url: &str,
    manifest: &Path,
    receipts: &Path,
    secs: u64,
) -> Result<(Reaped, String), String> {
    proxy_with(url, manifest, receipts, secs, &[])
}

/// [`proxy`] with more command-line arguments (`extra`, e.g. `--origins`).
pub fn proxy_with(
    url: &str,
    manifest: &Path,
    receipts: &Path,
    secs: u64,
    extra: &[&str],
) -> Result<(Reaped, String), String> {
    let secs = secs.to_string();
    let mut child = Reaped(
        Command::new(crate::workspace_bin("secllama-verify"))
            .args([
                "proxy",
                "--listen",
                "127.0.0.1:0",
                "--reattest",
                secs.as_str(),
                "--url",
                url,
            ])
            .arg("--manifest")
            .arg(manifest)
            .arg("--receipts")
            .arg(receipts)
            .args(extra)
            .env_remove("OLLAMA_ORIGINS")
            .env_remove("OLLAMA_MAX_QUEUE")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("starting secllama-verify proxy: {e}"))?,
    );
    let mut out = BufReader::new(child.0.stdout.take().ok_or("proxy stdout")?);
    let mut line = String::new();
    out.read_line(&mut line).map_err(|e| e.to_string())?;
    if let Some(addr) = line.trim().strip_prefix("proxy listening on ") {
        let addr = addr.to_string();
        std::thread::spawn(move || for _ in out.lines() {});
        // Drain stderr too: a full pipe would block the proxy.
        if let Some(err) = child.0.stderr.take() {
            std::thread::spawn(move || for _ in BufReader::new(err).lines() {});
        }
        return Ok((child, addr));
    }
    let _ = std::io::Read::read_to_string(&mut out, &mut line);
    let status = child.0.wait().map_err(|e| e.to_string())?;
    let mut err = String::new();
    if let Some(mut e) = child.0.stderr.take() {
        let _ = std::io::Read::read_to_string(&mut e, &mut err);
    }
    Err(format!("{status}: {line}{err}"))
}
