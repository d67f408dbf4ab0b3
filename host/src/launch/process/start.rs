//! The launch after its measurement (docs/isolation.md): the runner's sandbox, then the agent's,
//! joined by one unix socket, and everything the host relies on kept out of both.
//!
//! - **The runner's sandbox** runs `secllama-enclave runner-init` as `[sandbox] runner_host_uid`,
//!   with the artifacts but the policy read-only and a private `/tmp` (mode 0711) holding the
//!   socket the agent connects to. It gets nothing else: no descriptor, no host folder, no TPM.
//! - **The agent's sandbox** runs `secllama-enclave --config` as `[sandbox] host_uid`, mounts no
//!   host folder writable, and gets open descriptors instead ([`secllama_enclave::handoff`]): the
//!   listener the launcher bound, the launch log and the receipt log (read and append), a pipe with
//!   the AK auth value, the runner's `/tmp` (opened through `/proc/PID/root`), and the TPM relay
//!   socket (an `O_PATH` descriptor: the socket sits in a root-only 0700 folder, so no host user
//!   reaches it by path).
//! - **The TPM**: only the command channel is relayed ([`UnixToTcp`]); the swtpm control channel
//!   is not reachable from either sandbox.
//!
//! Nothing in the state folder is writable by either sandbox through a path: `ak.pub`, `ak.auth`
//! and the launch log are the launcher's; the receipt log grows only through the agent's
//! descriptor, bounded by its `RLIMIT_FSIZE` (`[sandbox] file_size_mib`).

use super::{Plan, TPM_DIR, TPM_SOCKET};
use crate::sandbox::{self, Limits, SandboxChild, SandboxSpec};
use anyhow::{Context, bail};
use secllama_enclave::handoff;
use secllama_measurements::launch::Prediction;
use secllama_tpm::relay::UnixToTcp;
use std::ffi::OsString;
use std::io::Write;
use std::net::SocketAddr;
use std::os::fd::OwnedFd;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

/// A running enclave: the agent's sandbox and the runner's. Dropping it kills both and stops the
/// TPM relay.
#[derive(Debug)]
pub struct Enclave {
    // Killed before the runner and the relay.
    child: SandboxChild,
    runner: SandboxChild,
    _relay: UnixToTcp,
    /// The agent's unix socket.
    pub socket: PathBuf,
    /// The launch that was measured.
    pub prediction: Prediction,
    /// The Landlock ABI the kernel enforces on the agent.
    pub landlock_abi: u32,
}

impl Enclave {
    /// The agent's pid on the host.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The pid on the host of the runner sandbox's first process (`runner-init`).
    pub fn runner_pid(&self) -> u32 {
        self.runner.id()
    }

    /// `Some(description)` once the agent or the runner's sandbox has exited.
    pub fn exited(&mut self) -> anyhow::Result<Option<String>> {
        if let Some(s) = self.child.try_wait()? {
            return Ok(Some(format!("the agent exited ({s})")));
        }
        Ok(self
            .runner
            .try_wait()?
            .map(|s| format!("the runner's sandbox exited ({s})")))
    }

    /// Kills both sandboxes and waits for them.
    pub fn stop(&mut self) -> anyhow::Result<()> {
        self.child.kill()?;
        self.child.wait()?;
        self.runner.kill()?;
        self.runner.wait()?;
        Ok(())
    }
}

use super::output::Log;

fn mib(v: u64) -> u64 {
    v.saturating_mul(1 << 20)
}

fn limits(p: &Plan) -> Limits {
    let s = &p.config.sandbox;
    Limits {
        address_space: mib(s.memory_mib),
        processes: s.processes,
        open_files: s.open_files,
        file_size: mib(s.file_size_mib),
    }
}

/// The launcher's log settings, handed to both sandboxes: its `--log-format` and its `RUST_LOG`
/// (not measured: they change what is logged, and no setting logs content).
fn log_env() -> Vec<(OsString, OsString)> {
    use secllama_enclave::diagnostics::{FILTER_ENV, FORMAT_ENV, format};
    let mut env = vec![(
        OsString::from(FORMAT_ENV),
        OsString::from(format().as_str()),
    )];
    if let Some(filter) = std::env::var_os(FILTER_ENV) {
        env.push((OsString::from(FILTER_ENV), filter));
    }
    env
}

/// Starts the runner's sandbox and the agent's, and waits until the agent is listening.
pub(super) fn start_measured(
    p: Plan,
    prediction: Prediction,
    ak_auth: &[u8],
    tpm_addr: SocketAddr,
    socket: PathBuf,
    log: impl Write + Send + 'static,
) -> anyhow::Result<Enclave> {
    let log: Log = Arc::new(Mutex::new(log));
    let s = &p.config.sandbox;

    // What both sandboxes share; each differs in program, view, ids and descriptors.
    let agent_spec = SandboxSpec {
        program: p.agent.clone(),
        args: vec!["--config".into(), p.config_path.clone().into()],
        env: log_env(),
        read_only: p.read_only.clone(),
        writable_socket_dir: None,
        tmpfs_size: mib(s.tmpfs_mib),
        tmpfs_mode: 0o700,
        pass_fds: Vec::new(),
        // The receipt log is handed over for appending.
        no_truncate: true,
        uid: s.uid,
        gid: s.gid,
        outside_ids: Some((s.host_uid, s.host_gid)),
        limits: limits(&p),
    };

    // The runner first: the agent needs its socket folder.
    let runner_spec = SandboxSpec {
        args: vec![
            "runner-init".into(),
            "--config".into(),
            p.config_path.clone().into(),
        ],
        read_only: p.runner_read_only.clone(),
        tmpfs_mode: 0o711,
        no_truncate: false,
        outside_ids: Some((s.runner_host_uid, s.runner_host_gid)),
        ..agent_spec.clone()
    };
    let mut runner = sandbox::spawn(&runner_spec).context("starting the runner's sandbox")?;
    forward_output(&mut runner, log.clone(), "runner", None);
    let runner_dir = open_dir(&format!("/proc/{}/root/tmp", runner.id()))
        .context("opening the runner sandbox's /tmp")?;

    // The TPM relay: a socket in a root-only folder, so no host user reaches it by path; the agent
    // connects through an O_PATH descriptor of the socket itself (/proc/self/fd/N), for which only
    // the socket's own permissions count.
    let tpm_dir = p.state.join(TPM_DIR);
    std::fs::create_dir_all(&tpm_dir).with_context(|| format!("creating {}", tpm_dir.display()))?;
    std::os::unix::fs::chown(&tpm_dir, Some(0), Some(0))
        .and_then(|()| std::fs::set_permissions(&tpm_dir, std::fs::Permissions::from_mode(0o700)))
        .with_context(|| format!("securing {}", tpm_dir.display()))?;
    let tpm_socket = tpm_dir.join(TPM_SOCKET);
    let relay = UnixToTcp::start(&tpm_socket, tpm_addr)?;
    std::os::unix::fs::chown(&tpm_socket, Some(s.host_uid), Some(s.host_gid))
        .and_then(|()| {
            std::fs::set_permissions(&tpm_socket, std::fs::Permissions::from_mode(0o600))
        })
        .with_context(|| format!("giving {} to the agent", tpm_socket.display()))?;
    let tpm_socket_fd = rustix::fs::open(
        &tpm_socket,
        rustix::fs::OFlags::PATH | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )
    .with_context(|| format!("opening {}", tpm_socket.display()))?;

    // What the agent gets instead of a writable folder.
    let listener = std::os::unix::net::UnixListener::bind(&socket)
        .with_context(|| format!("binding the enclave listener {}", socket.display()))?;
    let append = |path: &Path, mode: u32| {
        std::fs::OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .mode(mode)
            .open(path)
            .with_context(|| format!("opening {}", path.display()))
    };
    let event_log = append(&p.config.event_log, 0o644)?;
    let receipts = append(&p.config.receipts, 0o600)?;
    let (auth_rx, auth_tx) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)
        .context("creating the AK auth pipe")?;
    // At most 32 bytes: one atomic pipe write (below PIPE_BUF).
    let written = rustix::io::write(&auth_tx, ak_auth).context("writing the AK auth pipe")?;
    anyhow::ensure!(
        written == ak_auth.len(),
        "the AK auth pipe took {written} of {} bytes",
        ak_auth.len()
    );
    drop(auth_tx);

    let fds: Vec<(&str, OwnedFd)> = vec![
        (handoff::LISTENER_FD, OwnedFd::from(listener)),
        (handoff::EVENT_LOG_FD, OwnedFd::from(event_log)),
        (handoff::RECEIPTS_FD, OwnedFd::from(receipts)),
        (handoff::AK_AUTH_FD, auth_rx),
        (handoff::RUNNER_DIR_FD, runner_dir),
    ];
    let tpm_fd_number = 3 + fds.len();
    let mut env: Vec<(OsString, OsString)> = fds
        .iter()
        .enumerate()
        .map(|(i, (var, _))| (OsString::from(var), OsString::from((3 + i).to_string())))
        .collect();
    env.extend(log_env());
    env.push((
        OsString::from(secllama_tpm::TCTI_ENV),
        OsString::from(format!("swtpm-unix:server=/proc/self/fd/{tpm_fd_number}")),
    ));
    let pass_fds = fds
        .into_iter()
        .map(|(_, fd)| Arc::new(fd))
        .chain([Arc::new(tpm_socket_fd)])
        .collect();
    let spec = SandboxSpec {
        env,
        pass_fds,
        ..agent_spec
    };
    let mut child = sandbox::spawn(&spec).context("starting the agent in the sandbox")?;
    let landlock_abi = child.landlock().abi;
    let (tx, ready) = mpsc::channel();
    forward_output(&mut child, log, "enclave", Some(tx));
    // The measured config says how long the runner may take; the agent's own start comes on top.
    let ready_timeout = Duration::from_secs(
        p.config.runner_ready_secs + secllama_enclave::config::AGENT_START_SECS,
    );
    let deadline = Instant::now() + ready_timeout;
    let mut enclave = Enclave {
        child,
        runner,
        _relay: relay,
        socket,
        prediction,
        landlock_abi,
    };
    loop {
        match ready.recv_timeout(Duration::from_millis(100)) {
            Ok(()) => return Ok(enclave),
            Err(mpsc::RecvTimeoutError::Timeout) if Instant::now() < deadline => {
                if let Some(what) = enclave.exited()? {
                    let _ = enclave.stop();
                    bail!("{what} before the agent was ready; the output is above");
                }
            }
            Err(e) => {
                if matches!(e, mpsc::RecvTimeoutError::Disconnected) {
                    // The agent closed its output: give it a moment to exit.
                    std::thread::sleep(Duration::from_millis(200));
                }
                if let Some(what) = enclave.exited()? {
                    let _ = enclave.stop();
                    bail!("{what} before the agent was ready; the output is above");
                }
                let _ = enclave.stop();
                bail!(
                    "the agent did not say `listening on` within {ready_timeout:?}; its output is \
                     above"
                );
            }
        }
    }
}

/// An `O_PATH` descriptor of the directory at `path` (close-on-exec: the sandbox hands it over
/// explicitly).
fn open_dir(path: &str) -> anyhow::Result<OwnedFd> {
    use rustix::fs::{Mode, OFlags};
    rustix::fs::open(
        path,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .with_context(|| format!("opening {path}"))
}

/// Copies a sandbox's stdout and stderr to `log` ([`super::output`]: lines prefixed `NAME: `,
/// bounded); `ready` gets `()` once the program prints a line starting `listening on `.
fn forward_output(
    child: &mut SandboxChild,
    log: Log,
    name: &'static str,
    ready: Option<mpsc::Sender<()>>,
) {
    for (pipe, ready) in [(child.stdout.take(), ready), (child.stderr.take(), None)] {
        let Some(pipe) = pipe else { continue };
        let log = log.clone();
        std::thread::spawn(move || {
            super::output::forward(
                pipe,
                &log,
                name,
                ready.as_ref(),
                super::output::DEFAULT_RATE,
            );
        });
    }
}
