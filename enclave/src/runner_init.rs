//! `secllama-enclave runner-init --config FILE`: the first process of the runner's own sandbox
//! (process mode, docs/isolation.md). It runs as the runner's uid, in the runner's namespaces —
//! nothing in it is more trusted than the runner — and does two things the agent, in its separate
//! sandbox, cannot:
//!
//! - **supervises the runner**: starts `runner_command` with `runner_env`, waits until
//!   `runner_url` answers, restarts it when it exits (at most [`crate::runner::MAX_RESTARTS`]
//!   times, never after a measured artifact changed) and exits when it cannot keep it up, which
//!   ends the sandbox and, through the launcher, the enclave;
//! - **relays the agent's connections**: it listens on `/tmp/`[`RUNNER_SOCKET`] (mode 0666 in the
//!   sandbox's 0711 `/tmp`, the directory the launcher hands the agent) and carries each
//!   connection to the runner's loopback port — a port in the runner's own network namespace,
//!   which the agent cannot reach otherwise. It never parses what it carries.
//!
//! It prints `runner ready` once the runner first answers.

use crate::config::Config;
use crate::endpoint::{RUNNER_SOCKET, RunnerAddr};
use crate::integrity::Snapshot;
use crate::runner::Supervisor;
use anyhow::Context;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// The folder of the relay socket inside the runner's sandbox (its private tmpfs).
pub const SOCKET_DIR: &str = "/tmp";

/// Environment variable naming another folder for the relay socket (absolute path): inside a
/// VM guest the init gives the runner its own tmpfs at `/run/secllama-runner` rather than `/tmp`.
pub const SOCKET_DIR_ENV: &str = "SECLLAMA_RUNNER_SOCKET_DIR";

/// The relay socket's path: in [`SOCKET_DIR_ENV`]'s folder when that is an absolute path, else in
/// [`SOCKET_DIR`].
pub fn socket_path() -> PathBuf {
    let dir = std::env::var_os(SOCKET_DIR_ENV)
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .unwrap_or_else(|| PathBuf::from(SOCKET_DIR));
    dir.join(RUNNER_SOCKET)
}

/// Accept errors that pass once connections in flight end.
pub(crate) fn transient(e: &std::io::Error) -> bool {
    use rustix::io::Errno;
    e.kind() == std::io::ErrorKind::ConnectionAborted
        || e.raw_os_error()
            .map(Errno::from_raw_os_error)
            .is_some_and(|n| [Errno::MFILE, Errno::NFILE, Errno::NOBUFS, Errno::NOMEM].contains(&n))
}

/// Runs until the runner cannot be kept alive or the relay fails; `ready` is called once the
/// runner first answers.
pub async fn run(config: &Config, base: &Path, ready: impl FnOnce()) -> anyhow::Result<()> {
    let integrity = Arc::new(
        Snapshot::take_runner_view(&config.launch, base)
            .context("watching the measured artifacts")?,
    );
    let command = config.runner_command.clone().context(
        "runner_command: expected the runner's command line (runner-init starts the runner), \
         found none",
    )?;
    let runner = RunnerAddr::Tcp(config.runner_host_port());
    let path = socket_path();
    let _ = std::fs::remove_file(&path);
    // The agent (another uid) connects: the socket is 0666 in the 0711 folder.
    let old = rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o111));
    let bound = tokio::net::UnixListener::bind(&path);
    rustix::process::umask(old);
    let listener = bound.with_context(|| format!("binding {}", path.display()))?;
    let (supervisor, child) = Supervisor::start(
        command,
        config.runner_env.clone().into_iter().collect(),
        runner.clone(),
        true,
        Duration::from_secs(config.runner_ready_secs),
        Some(integrity),
    )
    .await?;
    ready();
    let relay = async {
        loop {
            let conn = match listener.accept().await {
                Ok((conn, _)) => conn,
                // Out of descriptors or memory for a moment: the connections in flight end and
                // free them; the relay must not end the enclave over it.
                Err(e) if transient(&e) => {
                    // runner-init's stderr is the launcher's log of the runner's sandbox.
                    tracing::warn!(target: "secllama::runner_init", error = %e, "accepting failed; retrying");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
                Err(e) => return e,
            };
            let runner = runner.clone();
            tokio::spawn(async move {
                let Ok(mut up) = runner.connect().await else {
                    return;
                };
                let mut conn = conn;
                let _ = tokio::io::copy_bidirectional(&mut conn, &mut up).await;
            });
        }
    };
    tokio::select! {
        e = relay => Err(anyhow::Error::from(e).context(format!("relaying {}", path.display()))),
        e = supervisor.watch(child) => Err(anyhow::Error::from(e)),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn only_passing_accept_errors_are_retried() {
        for errno in [
            rustix::io::Errno::MFILE,
            rustix::io::Errno::NFILE,
            rustix::io::Errno::NOBUFS,
            rustix::io::Errno::NOMEM,
        ] {
            assert!(transient(&std::io::Error::from_raw_os_error(
                errno.raw_os_error()
            )));
        }
        assert!(transient(&std::io::ErrorKind::ConnectionAborted.into()));
        for errno in [rustix::io::Errno::BADF, rustix::io::Errno::INVAL] {
            assert!(!transient(&std::io::Error::from_raw_os_error(
                errno.raw_os_error()
            )));
        }
    }
}
