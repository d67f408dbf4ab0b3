//! Runner supervision: the agent starts the runner (any Ollama-compatible server) as its child,
//! waits until its API answers on loopback, and restarts it when it dies — a bounded number of times,
//! so a runner that cannot stay up makes the agent fail rather than loop. Requests in flight when the
//! runner dies end with a sealed 502 problem (the stream from the runner breaks); later requests go
//! to the restarted runner. A runner is never started again once a measured artifact changed
//! ([`crate::integrity`]): the agent stops instead.

use crate::endpoint::RunnerAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;
use tokio::process::{Child, Command};

/// Restarts allowed before the agent gives up on the runner.
pub const MAX_RESTARTS: u32 = 5;

/// A runner the agent supervises.
#[derive(Debug)]
pub struct Supervisor {
    command: Vec<String>,
    env: Vec<(String, String)>,
    addr: RunnerAddr,
    forward_output: bool,
    ready_within: Duration,
    integrity: Option<Arc<crate::integrity::Snapshot>>,
    restarts: AtomicU32,
}

/// A runner that could not be started or kept alive.
#[derive(Debug, thiserror::Error)]
pub enum RunnerError {
    /// The command is empty.
    #[error("runner_command: expected a program and its arguments, found an empty list")]
    Empty,
    /// Spawning failed.
    #[error("runner {program}: could not start: {reason}")]
    Spawn {
        /// The program.
        program: String,
        /// The error.
        reason: std::io::Error,
    },
    /// The API did not answer in time.
    #[error(
        "runner at {addr}: expected GET /api/version to answer within {secs} s, found no answer \
         (a slow-loading model needs a larger `runner_ready_secs` in the config)"
    )]
    NotReady {
        /// The runner's address.
        addr: String,
        /// The wait.
        secs: u64,
    },
    /// A measured artifact changed: starting the runner again would run unmeasured code.
    #[error("runner: not started again: {0}")]
    Changed(crate::integrity::Changed),
    /// It died too often.
    #[error("runner: expected it to stay up, found it restarted {0} times")]
    TooManyRestarts(u32),
}

/// Whether GET /api/version answers 200 at `addr`.
pub async fn ready(addr: &RunnerAddr) -> bool {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Ok(mut s) = addr.connect().await else {
        return false;
    };
    let req = format!(
        "GET /api/version HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
        addr.host()
    );
    if s.write_all(req.as_bytes()).await.is_err() {
        return false;
    }
    let mut head = [0u8; 12];
    matches!(
        tokio::time::timeout(Duration::from_secs(2), s.read_exact(&mut head)).await,
        Ok(Ok(_))
    ) && head.starts_with(b"HTTP/1.1 200")
}

/// Waits (bounded) until the runner at `addr` answers.
pub async fn wait_ready(addr: &RunnerAddr, within: Duration) -> Result<(), RunnerError> {
    let deadline = tokio::time::Instant::now() + within;
    while tokio::time::Instant::now() < deadline {
        if ready(addr).await {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Err(RunnerError::NotReady {
        addr: addr.to_string(),
        secs: within.as_secs(),
    })
}

impl Supervisor {
    /// Starts the runner (with exactly the environment `env`) and waits until it answers, at most
    /// `ready_within` (the config's `runner_ready_secs`, also for each restart). With
    /// `forward_output` the runner's stdout and stderr are the caller's; else stdout is
    /// discarded.
    pub async fn start(
        command: Vec<String>,
        env: Vec<(String, String)>,
        addr: RunnerAddr,
        forward_output: bool,
        ready_within: Duration,
        integrity: Option<Arc<crate::integrity::Snapshot>>,
    ) -> Result<(Arc<Self>, Child), RunnerError> {
        let s = Arc::new(Self {
            command,
            env,
            addr,
            forward_output,
            ready_within,
            integrity,
            restarts: AtomicU32::new(0),
        });
        let child = s.spawn().await?;
        Ok((s, child))
    }

    async fn spawn(&self) -> Result<Child, RunnerError> {
        let (program, args) = self.command.split_first().ok_or(RunnerError::Empty)?;
        if let Some(i) = &self.integrity {
            i.check().map_err(RunnerError::Changed)?;
        }
        let child = Command::new(program)
            .args(args)
            .env_clear()
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(std::process::Stdio::null())
            .stdout(if self.forward_output {
                std::process::Stdio::inherit()
            } else {
                std::process::Stdio::null()
            })
            .kill_on_drop(true)
            .spawn()
            .map_err(|source| RunnerError::Spawn {
                program: program.clone(),
                reason: source,
            })?;
        wait_ready(&self.addr, self.ready_within).await?;
        Ok(child)
    }

    /// Watches the runner and restarts it when it exits; returns when the restart budget is spent.
    pub async fn watch(self: Arc<Self>, mut child: Child) -> RunnerError {
        loop {
            let _ = child.wait().await;
            let n = self.restarts.fetch_add(1, Ordering::SeqCst) + 1;
            if n > MAX_RESTARTS {
                tracing::error!(target: "secllama::runner", restarts = n - 1, "runner exited; no restart left");
                return RunnerError::TooManyRestarts(n - 1);
            }
            tracing::warn!(target: "secllama::runner", restart = n, max = MAX_RESTARTS, "runner exited; restarting it");
            match self.spawn().await {
                Ok(c) => child = c,
                Err(e) => return e,
            }
        }
    }

    /// How many times the runner was restarted.
    pub fn restarts(&self) -> u32 {
        self.restarts.load(Ordering::SeqCst)
    }
}

/// Idle HTTP/1 connections to the runner, reused across requests (a new loopback TCP connection
/// and handshake per request would be most of the agent's own latency). A connection goes back to
/// the pool only after its answer was read to the end; a runner restart closes them, and closed
/// ones are dropped on the way out.
#[derive(Debug, Default)]
pub struct Pool {
    idle: std::sync::Mutex<Vec<RunnerConnection>>,
}

/// One HTTP/1 connection to the runner.
pub type RunnerConnection =
    hyper::client::conn::http1::SendRequest<http_body_util::Full<bytes::Bytes>>;

/// Idle connections kept.
const MAX_IDLE: usize = 16;

impl Pool {
    /// An idle connection ready for a request, if one is left; `fresh` tells whether it is new.
    pub async fn get(&self, runner: &RunnerAddr) -> Result<(RunnerConnection, bool), String> {
        loop {
            let idle = self.idle.lock().ok().and_then(|mut v| v.pop());
            let Some(mut c) = idle else { break };
            if !c.is_closed() && c.ready().await.is_ok() {
                return Ok((c, false));
            }
        }
        Ok((Self::connect(runner).await?, true))
    }

    /// A new connection.
    pub async fn connect(runner: &RunnerAddr) -> Result<RunnerConnection, String> {
        let stream = runner
            .connect()
            .await
            .map_err(|e| format!("connecting to the runner at {runner}: {e}"))?;
        let (sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                .await
                .map_err(|e| format!("runner handshake: {e}"))?;
        tokio::spawn(conn);
        Ok(sender)
    }

    /// Returns a connection whose answer was read completely.
    pub fn put(&self, c: RunnerConnection) {
        if c.is_closed() {
            return;
        }
        if let Ok(mut v) = self.idle.lock()
            && v.len() < MAX_IDLE
        {
            v.push(c);
        }
    }
}
