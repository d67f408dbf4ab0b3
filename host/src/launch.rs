//! Process-mode launch (DESIGN.md "Shape", issue "the enclave, end to end"): from the agent's
//! config, measure the launch into the TPM and start the agent — and, through it, the runner —
//! in the [`sandbox`](crate::sandbox).
//!
//! Order, failing closed at each step:
//! 1. the config: the measured config (`[launch] config`) must be the file launched with; the
//!    runner command must start the measured runner; the listener, event log and receipt log share
//!    one state directory (the sandbox's only writable host directory), which holds no artifact;
//! 2. libraries: everything the agent, the runner and the TCTI module load must be listed (and so
//!    measured) in `[launch] libraries`;
//! 3. the TPM: its allocated banks must be the launch's banks, and the launch PCR and PCR 23 must
//!    still be zero (an enclave launched earlier since the TPM started would make the quote differ
//!    from any manifest);
//! 4. the launch events ([`predict`]) are extended and logged, exactly as `secllama measure launch`
//!    predicts them;
//! 5. the TPM is handed to the agent through unix sockets in the state directory
//!    ([`secllama_tpm::relay`]: the agent's network namespace cannot reach the host's swtpm);
//! 6. the agent starts confined, as an unprivileged host user when the launcher is root, and the
//!    launch succeeds only once it says `listening on …`.
//!
//! Production TPMs (`device:/dev/tpmrm0`) are not handed into the sandbox yet: the sandbox mounts
//! no TPM device node. The launcher says so rather than starting an enclave that cannot attest.

use crate::access;
use crate::libraries;
use crate::sandbox::{self, Limits, SandboxChild, SandboxSpec};
use anyhow::{Context, bail, ensure};
use secllama_enclave::config::Config;
use secllama_measurements::launch::{Prediction, predict};
use secllama_tpm::Tpm;
use secllama_tpm::eventlog::EventLogWriter;
use secllama_tpm::relay::UnixToTcp;
use std::ffi::OsString;
use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The AK's TPM2B_PUBLIC, written to the state directory at launch.
pub const AK_PUBLIC: &str = "ak.pub";

/// Names of the TPM relay sockets in the state directory.
pub const TPM_SOCKETS: [&str; 2] = ["tpm.sock", "tpm.ctrl.sock"];

/// A running enclave. Dropping it kills the sandbox (and the runner in it) and stops the relay.
#[derive(Debug)]
pub struct Enclave {
    // Killed before the relay closes.
    child: SandboxChild,
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

    /// `Some(description)` once the agent has exited.
    pub fn exited(&mut self) -> anyhow::Result<Option<String>> {
        Ok(self.child.try_wait()?.map(|s| format!("{s}")))
    }

    /// Kills the sandbox and waits for it.
    pub fn stop(&mut self) -> anyhow::Result<()> {
        self.child.kill()?;
        self.child.wait()?;
        Ok(())
    }
}

/// The host side of a `swtpm:host=H,port=P` TCTI (loopback only).
fn swtpm_address(tcti: &str) -> anyhow::Result<SocketAddr> {
    if tcti.starts_with("device") {
        bail!(
            "TCTI {tcti}: process mode hands the TPM to the sandbox through a swtpm relay; mounting a \
             TPM device node into the sandbox is not implemented yet — use a swtpm \
             (swtpm:host=127.0.0.1,port=P) or VM mode"
        );
    }
    let (host, port) = secllama_tpm::tcti::swtpm_endpoint(tcti)?
        .with_context(|| format!("TCTI: expected swtpm:host=H,port=P, found {tcti:?}"))?;
    let host = if host == "localhost" {
        "127.0.0.1".to_string()
    } else {
        host
    };
    let ip: std::net::IpAddr = host
        .parse()
        .with_context(|| format!("TCTI {tcti}: host must be an IP address"))?;
    ensure!(
        ip.is_loopback(),
        "TCTI {tcti}: expected a swtpm on a loopback address, found {ip}"
    );
    Ok(SocketAddr::new(ip, port))
}

fn canonical(p: &Path, what: &str) -> anyhow::Result<PathBuf> {
    std::fs::canonicalize(p).with_context(|| format!("{what}: {}", p.display()))
}

/// Everything checked from the config before anything is touched.
struct Plan {
    config: Config,
    config_path: PathBuf,
    base: PathBuf,
    agent: PathBuf,
    read_only: Vec<PathBuf>,
    state: PathBuf,
}

fn plan(config_arg: &Path) -> anyhow::Result<Plan> {
    let config_path = canonical(config_arg, "the config")?;
    let (config, base) = Config::load(&config_path)?;
    let abs = |p: &Path| {
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            base.join(p)
        }
    };
    let l = &config.launch;
    let measured = canonical(&abs(&l.config), "[launch] config")?;
    ensure!(
        measured == config_path,
        "[launch] config: expected the file being launched ({}), found {}: the agent must run with \
         the config that is measured",
        config_path.display(),
        measured.display()
    );
    let agent = canonical(&abs(&l.agent), "[launch] agent")?;
    let runner = canonical(&abs(&l.runner), "[launch] runner")?;
    let command = config.runner_command.as_deref().unwrap_or_default();
    let first = command.first().context(
        "runner_command: expected the runner's command line (in process mode the agent starts \
         the runner inside the enclave), found none",
    )?;
    let started = canonical(&abs(Path::new(first)), "runner_command[0]")?;
    ensure!(
        started == runner,
        "runner_command[0]: expected the measured runner {}, found {}",
        runner.display(),
        started.display()
    );
    ensure!(
        config.tcti.is_none(),
        "tcti: in process mode the launcher hands its TPM to the agent; remove `tcti = {:?}` \
         from the config",
        config.tcti.as_deref().unwrap_or_default()
    );

    let socket = config.listener_path();
    ensure!(
        socket.is_absolute(),
        "listener: expected unix:<absolute path>, found {}",
        config.listener
    );
    let state = socket
        .parent()
        .context("listener: the socket needs a folder")?
        .to_path_buf();
    for (key, p) in [
        ("event_log", &config.event_log),
        ("receipts", &config.receipts),
    ] {
        ensure!(
            p.parent() == Some(state.as_path()),
            "{key}: expected a file in the listener's folder {} (the sandbox's only writable \
             folder), found {}",
            state.display(),
            p.display()
        );
    }

    // The state folder may not exist yet: canonicalize what does.
    let canon_state = std::fs::canonicalize(&state).unwrap_or_else(|_| {
        match (state.parent(), state.file_name()) {
            (Some(parent), Some(name)) => std::fs::canonicalize(parent)
                .map(|p| p.join(name))
                .unwrap_or_else(|_| state.clone()),
            _ => state.clone(),
        }
    });
    let mut read_only = vec![agent.clone(), runner, config_path.clone()];
    for t in &l.trees {
        let tree = canonical(&abs(t), "[launch] trees")?;
        ensure!(
            !canon_state.starts_with(&tree) && tree != Path::new("/"),
            "[launch] trees: {} holds the writable state folder {} (or is /): the enclave's own \
             logs and sockets cannot be part of a measured, read-only folder",
            t.display(),
            state.display()
        );
        access::no_link_into(&tree, &[&canon_state, &state])?;
        read_only.push(tree);
    }
    let needed = libraries::for_launch(l, &base)?;
    for m in &l.model {
        read_only.push(canonical(&abs(m), "[launch] model")?);
    }
    read_only.push(canonical(&abs(&l.policy), "[launch] policy")?);
    for p in &read_only {
        ensure!(
            !p.starts_with(&canon_state),
            "{}: artifacts must not live in the writable state folder {}",
            p.display(),
            state.display()
        );
    }
    // The agent and the runner open the artifacts by the paths the config writes; where such a
    // path goes through a symlink, the sandbox needs that path too (the mount plan reproduces
    // the symlinks on the way and binds the canonical file).
    let written = [
        abs(&l.agent),
        abs(&l.runner),
        abs(Path::new(first)),
        abs(&l.policy),
    ]
    .into_iter()
    .chain(l.model.iter().map(|m| abs(m)))
    .chain(l.trees.iter().map(|t| abs(t)));
    for w in written {
        if !read_only.contains(&w) {
            read_only.push(w);
        }
    }

    let missing = libraries::missing(&needed, &l.libraries);
    if !missing.is_empty() {
        bail!(
            "[launch] libraries: the agent, runner, measured trees and TCTI module load {} \
             file(s) the list does not name (they run inside the enclave, so they must be measured): {}\nput this line \
             in [launch] (or run `secllama measure libraries --config {}`):\n{}",
            missing.len(),
            missing
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", "),
            config_path.display(),
            libraries::toml_line(&needed).trim_end()
        );
    }
    for lib in &l.libraries {
        if !read_only.contains(lib) {
            read_only.push(lib.clone());
        }
    }
    Ok(Plan {
        config,
        config_path,
        base,
        agent,
        read_only,
        state,
    })
}

/// Measures the launch into the TPM at `tcti`; returns the prediction it extended.
fn measure_into_tpm(p: &Plan, tcti: &str) -> anyhow::Result<Prediction> {
    let prediction = predict(&p.config.launch, &p.base)?;
    let mut tpm = Tpm::connect(tcti).context("connecting to the TPM")?;
    let mut active = tpm.active_banks()?;
    active.sort();
    ensure!(
        active == prediction.banks,
        "[launch] banks: expected every bank the TPM has allocated ({:?}), found {:?}",
        active.iter().map(|b| b.name()).collect::<Vec<_>>(),
        prediction
            .banks
            .iter()
            .map(|b| b.name())
            .collect::<Vec<_>>()
    );
    let pcrs = [p.config.launch.pcr, secllama_enclave::config::KEYS_PCR];
    let now = tpm.read_pcrs(secllama_tpm::pcr::selection(&active, &pcrs)?)?;
    for (bank, values) in &now {
        for (pcr, v) in values {
            ensure!(
                v.iter().all(|b| *b == 0),
                "PCR {pcr} ({}) is {}: expected zero — something was launched since the TPM \
                 started (one launch per TPM lifetime: a quote over PCRs that equal the manifest \
                 then proves exactly one launch). {RECOVERY}",
                bank.name(),
                hex::encode(v)
            );
        }
    }
    // The AK the agent will quote with: created (or found) now and published beside the socket,
    // so the operator can pin it in the manifest (`secllama measure launch --ak-public`).
    let ak = tpm.ensure_ak(p.config.ak_handle, secllama_tpm::ak::AkKind::RsaSsaSha256)?;
    let ak_file = p.state.join(AK_PUBLIC);
    std::fs::write(&ak_file, &ak.public)
        .with_context(|| format!("writing {}", ak_file.display()))?;
    // PCRs are zero, so any log in the state folder is from an earlier TPM lifetime.
    let _ = std::fs::remove_file(&p.config.event_log);
    let mut log = EventLogWriter::open(&p.config.event_log, &prediction.banks)?;
    for m in &prediction.measurements {
        tpm.measure(&mut log, m)?;
    }
    Ok(prediction)
}

/// Measures and starts the enclave described by `config`, using the swtpm at `tcti`. Agent output
/// goes to `log` line by line (prefixed `enclave: `).
pub fn start(
    config: &Path,
    tcti: &str,
    log: impl Write + Send + 'static,
) -> anyhow::Result<Enclave> {
    let tpm_addr = swtpm_address(tcti)?;
    let p = plan(config)?;
    let root = rustix::process::geteuid().is_root();
    let s = &p.config.sandbox;
    let owner = root.then_some((s.host_uid, s.host_gid));

    std::fs::create_dir_all(&p.state)
        .with_context(|| format!("creating the state folder {}", p.state.display()))?;
    if let Some((u, g)) = owner {
        for f in &p.read_only {
            access::reachable_by(f, u, g, 0o4)?;
            if f.is_dir() {
                access::tree_readable_by(f, u, g)?;
            }
        }
        if let Some(parent) = p.state.parent() {
            access::reachable_by(parent, u, g, 0o1)?;
        }
    }
    let socket = p.config.listener_path();
    for stale in TPM_SOCKETS
        .iter()
        .map(|n| p.state.join(n))
        .chain([socket.clone()])
    {
        let _ = std::fs::remove_file(stale);
    }
    let prediction = measure_into_tpm(&p, tcti)?;
    let pcr = p.config.launch.pcr;
    start_measured(p, prediction, tpm_addr, owner, socket, log).map_err(|e| {
        e.context(format!(
            "the launch was measured into PCR {pcr} but the enclave did not start; this TPM \
             lifetime cannot launch again. {RECOVERY}"
        ))
    })
}

/// How to launch again after a launch was measured: a new TPM lifetime.
pub const RECOVERY: &str = "To retry, restart the TPM (a swtpm: stop it and start it again on \
     the same state folder, or `swtpm_ioctl --tcp 127.0.0.1:<ctrl port> -i` then `tpm2_startup \
     -c`; NV, the EK and the AK survive, the PCRs reset; a hardware TPM: reboot), then launch \
     again (see docs/runner.md, \"When a launch fails\")";

/// The launch after its measurement: relay, sandbox, wait for the agent.
fn start_measured(
    p: Plan,
    prediction: Prediction,
    tpm_addr: SocketAddr,
    owner: Option<(u32, u32)>,
    socket: PathBuf,
    log: impl Write + Send + 'static,
) -> anyhow::Result<Enclave> {
    let s = &p.config.sandbox;
    let [server, ctrl] = TPM_SOCKETS.map(|n| p.state.join(n));
    let relay = UnixToTcp::start(&server, &ctrl, tpm_addr)?;
    if let Some((u, g)) = owner {
        for f in [
            &p.state,
            &p.config.event_log,
            &server,
            &ctrl,
            &p.config.receipts,
        ] {
            if f.exists() {
                std::os::unix::fs::chown(f, Some(u), Some(g))
                    .with_context(|| format!("giving {} to uid {u}", f.display()))?;
            }
        }
    }

    let tcti_inside = format!(
        "swtpm-unix:server={},ctrl={}",
        server.display(),
        ctrl.display()
    );
    let mib = |v: u64| v.saturating_mul(1 << 20);
    let spec = SandboxSpec {
        program: p.agent.clone(),
        args: vec!["--config".into(), p.config_path.clone().into()],
        env: vec![(
            OsString::from(secllama_tpm::TCTI_ENV),
            OsString::from(tcti_inside),
        )],
        read_only: p.read_only.clone(),
        writable_socket_dir: Some(p.state.clone()),
        tmpfs_size: mib(s.tmpfs_mib),
        uid: s.uid,
        gid: s.gid,
        outside_ids: owner,
        limits: Limits {
            address_space: mib(s.memory_mib),
            processes: s.processes,
            open_files: s.open_files,
            file_size: mib(s.file_size_mib),
        },
    };
    let mut child = sandbox::spawn(&spec).context("starting the agent in the sandbox")?;
    let landlock_abi = child.landlock().abi;
    let ready = forward_output(&mut child, log);
    // The measured config says how long the runner may take; the agent's own start comes on top.
    let ready_timeout = Duration::from_secs(
        p.config.runner_ready_secs + secllama_enclave::config::AGENT_START_SECS,
    );
    let deadline = Instant::now() + ready_timeout;
    loop {
        match ready.recv_timeout(Duration::from_millis(100)) {
            Ok(()) => break,
            Err(mpsc::RecvTimeoutError::Timeout) if Instant::now() < deadline => {
                if let Some(status) = child.try_wait()? {
                    bail!("the agent exited before it was ready ({status}); its output is above");
                }
            }
            Err(e) => {
                // The output closed (the agent exited) or the time is up.
                if let Some(status) = child.try_wait()? {
                    bail!("the agent exited before it was ready ({status}); its output is above");
                }
                if matches!(e, mpsc::RecvTimeoutError::Disconnected) {
                    // Closed its output but still running: give it a moment to exit.
                    std::thread::sleep(Duration::from_millis(200));
                    if let Some(status) = child.try_wait()? {
                        bail!(
                            "the agent exited before it was ready ({status}); its output is above"
                        );
                    }
                }
                let _ = child.kill();
                let status = child.wait()?;
                bail!(
                    "the agent did not say `listening on` within {ready_timeout:?} ({status}); its \
                     output is above"
                );
            }
        }
    }
    Ok(Enclave {
        child,
        _relay: relay,
        socket,
        prediction,
        landlock_abi,
    })
}

/// Copies the agent's stdout and stderr to `log`; the receiver gets `()` once the agent prints
/// `listening on`.
fn forward_output(
    child: &mut SandboxChild,
    log: impl Write + Send + 'static,
) -> mpsc::Receiver<()> {
    let (tx, rx) = mpsc::channel();
    let log = std::sync::Arc::new(std::sync::Mutex::new(log));
    for (pipe, ready) in [(child.stdout.take(), Some(tx)), (child.stderr.take(), None)] {
        let Some(pipe) = pipe else { continue };
        let log = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines() {
                let Ok(line) = line else { break };
                if let Some(tx) = &ready
                    && line.starts_with("listening on ")
                {
                    let _ = tx.send(());
                }
                if let Ok(mut l) = log.lock() {
                    let _ = writeln!(l, "enclave: {line}");
                }
            }
        });
    }
    rx
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn only_loopback_swtpm_tctis_are_relayed() {
        assert_eq!(
            swtpm_address("swtpm:host=127.0.0.1,port=2400").unwrap(),
            "127.0.0.1:2400".parse().unwrap()
        );
        assert_eq!(
            swtpm_address("swtpm:port=2400,host=localhost").unwrap(),
            "127.0.0.1:2400".parse().unwrap()
        );
        for (tcti, says) in [
            ("swtpm:host=192.0.2.1,port=2321", "loopback"),
            ("swtpm:host=example.com,port=2321", "IP address"),
            ("swtpm:host=127.0.0.1,prot=2321", "TCTI: expected"),
            ("device:/dev/tpmrm0", "not implemented"),
            ("mssim:port=1", "expected swtpm"),
        ] {
            let e = swtpm_address(tcti).unwrap_err().to_string();
            assert!(e.contains(says), "{tcti}: {e}");
        }
    }
}
