//! A prepared enclave for tests and benchmarks, so that each does not rebuild it: a private swtpm,
//! the test runner (started here, or left for the agent to supervise), artifacts, a policy, the
//! agent's config, and the launcher's part — the predicted launch events extended into the TPM and
//! written to the event log. The caller starts the agent (`Agent::start` + `serve`/`run`) on the
//! runtime it owns.

use secllama_enclave::config::Config;
use secllama_measurements::launch::{LaunchDescription, Prediction, predict};
use secllama_tpm::Tpm;
use secllama_tpm::eventlog::EventLogWriter;
use std::error::Error;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// What can go wrong while preparing.
pub type PrepareError = Box<dyn Error + Send + Sync>;

/// A child process killed and reaped on drop (an orphan would hold the test's output open).
#[derive(Debug)]
pub struct Reaped(pub Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts a runner binary `bin` with `args` (the test runner, which prints `listening on ADDR`, or
/// `secllama-runner`, which prints `secllama-runner listening on ADDR`); returns it and the
/// address it listens on.
pub fn start_runner(bin: &Path, args: &[&str]) -> Result<(Reaped, String), PrepareError> {
    let mut child = Reaped(
        Command::new(bin)
            .args(args)
            .stdout(Stdio::piped())
            .spawn()?,
    );
    let stdout = child.0.stdout.as_mut().ok_or("runner stdout")?;
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line)?;
    let addr = line
        .trim()
        .trim_start_matches("secllama-runner ")
        .strip_prefix("listening on ")
        .ok_or_else(|| format!("runner said {line:?}"))?;
    Ok((child, addr.to_string()))
}

/// A policy whose dataset is `prompt` for generate and a one-message chat of it.
pub fn policy_for(prompt: &str) -> String {
    serde_json::json!({
        "dataset": [
            {"id": "q1", "prompt": prompt},
            {"id": "c1", "messages": [{"role": "user", "content": prompt}]}
        ],
        "models": ["tiny:latest"],
        "max_prompt_bytes": 256,
        "max_num_predict": 64
    })
    .to_string()
}

/// How the runner is run.
#[derive(Debug, Clone, Copy)]
pub enum RunnerMode<'a> {
    /// Started here; the agent only connects to it.
    Started,
    /// Started here with these arguments.
    StartedWith(&'a [&'a str]),
    /// Started and supervised by the agent, with these extra arguments.
    Supervised(&'a [&'a str]),
}

/// Everything a test needs to start the agent and talk to it.
#[derive(Debug)]
pub struct Prepared {
    /// The TPM.
    pub swtpm: crate::swtpm::Swtpm,
    /// The runner, when started here.
    pub runner: Option<Reaped>,
    /// The folder holding artifacts, config, logs and the socket.
    pub dir: tempfile::TempDir,
    /// The agent's unix socket.
    pub sock: PathBuf,
    /// The launch prediction (what the launcher extended).
    pub prediction: Prediction,
    /// The agent's config, loaded.
    pub config: Config,
    /// The folder relative config paths are taken from.
    pub base: PathBuf,
}

/// Prepares an enclave whose runner is `runner_bin` and whose policy is `policy_json`.
pub fn prepare(
    runner_bin: &Path,
    mode: RunnerMode<'_>,
    policy_json: &str,
) -> Result<Prepared, PrepareError> {
    prepare_on(crate::swtpm::Swtpm::start()?, runner_bin, mode, policy_json)
}

/// [`prepare`] on a TPM provisioned like a manufactured one (an EK certificate in NV, signed by
/// swtpm's local CA: `/var/lib/swtpm-localca`).
pub fn prepare_manufactured(
    runner_bin: &Path,
    mode: RunnerMode<'_>,
    policy_json: &str,
) -> Result<Prepared, PrepareError> {
    prepare_on(
        crate::swtpm::Swtpm::start_manufactured()?,
        runner_bin,
        mode,
        policy_json,
    )
}

fn prepare_on(
    swtpm: crate::swtpm::Swtpm,
    runner_bin: &Path,
    mode: RunnerMode<'_>,
    policy_json: &str,
) -> Result<Prepared, PrepareError> {
    let (runner, runner_addr) = match mode {
        RunnerMode::Started => {
            let (r, addr) = start_runner(runner_bin, &[])?;
            (Some(r), addr)
        }
        RunnerMode::StartedWith(args) => {
            let (r, addr) = start_runner(runner_bin, args)?;
            (Some(r), addr)
        }
        RunnerMode::Supervised(_) => {
            let port = std::net::TcpListener::bind("127.0.0.1:0")?
                .local_addr()?
                .port();
            (None, format!("127.0.0.1:{port}"))
        }
    };
    let dir = tempfile::tempdir()?;
    let d = dir.path();
    std::fs::write(d.join("agent"), b"agent binary")?;
    std::fs::write(d.join("runner"), b"runner binary")?;
    std::fs::write(d.join("model.gguf"), b"weights")?;
    std::fs::write(d.join("policy.json"), policy_json)?;
    let mut tpm = Tpm::connect(&swtpm.tcti())?;
    let banks: Vec<String> = tpm
        .active_banks()?
        .iter()
        .map(|b| b.name().to_string())
        .collect();
    let sock = d.join("enclave.sock");
    let launch = format!(
        "[launch]\nagent = \"agent\"\nrunner = \"runner\"\nmodel = [\"model.gguf\"]\npolicy = \"policy.json\"\nconfig = \"config.toml\"\nbanks = {banks:?}\n"
    );
    let mut config = format!(
        "listener = \"unix:{}\"\nrunner_url = \"http://{runner_addr}\"\npolicy = \"policy.json\"\nreceipts = \"receipts.log\"\nevent_log = \"launch.log\"\ntcti = \"{}\"\n",
        sock.display(),
        swtpm.tcti()
    );
    if let RunnerMode::Supervised(args) = mode {
        let mut cmd = vec![
            runner_bin.display().to_string(),
            "--listen".into(),
            runner_addr.clone(),
        ];
        cmd.extend(args.iter().map(|a| a.to_string()));
        config.push_str(&format!("runner_command = {cmd:?}\n"));
    }
    config.push_str(&launch);
    std::fs::write(d.join("config.toml"), &config)?;
    // The launcher's part: extend the predicted launch events and write the log.
    let prediction = predict(&LaunchDescription::from_toml(&launch)?.launch, d)?;
    let mut log = EventLogWriter::open(&d.join("launch.log"), &prediction.banks)?;
    for m in &prediction.measurements {
        tpm.measure(&mut log, m)?;
    }
    drop((log, tpm));
    let (config, base) = Config::load(&d.join("config.toml"))?;
    Ok(Prepared {
        swtpm,
        runner,
        dir,
        sock,
        prediction,
        config,
        base,
    })
}

impl Prepared {
    /// A reboot and the same launch again: swtpm restarts on its state (NV, persistent objects
    /// and the receipt log's counter survive; PCRs reset) and the launcher's measurements are
    /// extended anew, plus `extra` (a changed launch) when given. The agent must be stopped first.
    pub fn reboot(&mut self, extra: Option<&[u8]>) -> Result<(), PrepareError> {
        self.swtpm.restart()?;
        // A restarted swtpm may listen on other ports.
        self.config.tcti = Some(self.swtpm.tcti());
        let mut tpm = Tpm::connect(&self.swtpm.tcti())?;
        let log_path = self.dir.path().join("launch.log");
        std::fs::remove_file(&log_path)?;
        let mut log = EventLogWriter::open(&log_path, &self.prediction.banks)?;
        for m in &self.prediction.measurements {
            tpm.measure(&mut log, m)?;
        }
        if let Some(extra) = extra {
            tpm.measure(
                &mut log,
                &secllama_tpm::eventlog::Measurement::tagged(
                    15,
                    &self.prediction.banks,
                    extra,
                    "changed",
                ),
            )?;
        }
        let _ = std::fs::remove_file(&self.sock);
        Ok(())
    }

    /// The reference manifest for this launch (its PCRs and enclave digests), pinning the AK the
    /// agent will quote with — created now (`ensure_ak` at the config's handle, as the agent and
    /// the launcher do).
    pub fn reference_manifest(
        &self,
    ) -> Result<secllama_measurements::manifest::Manifest, PrepareError> {
        let ak = Tpm::connect(&self.swtpm.tcti())?.ensure_ak(
            self.config.ak_handle,
            secllama_tpm::ak::AkKind::RsaSsaSha256,
        )?;
        let mut m = secllama_measurements::manifest::Manifest::for_launch(&self.prediction);
        m.tpm.ak_publics = vec![hex::encode(&ak.public)];
        Ok(m)
    }
}

/// A prepared enclave whose agent serves on its socket in `rt`, with the reference manifest
/// written to `manifest` (what the end-to-end tests of the proxy and the bridge start from).
pub struct Serving {
    /// The runtime the agent runs in.
    pub rt: tokio::runtime::Runtime,
    /// The enclave's files, TPM and runner.
    pub p: Prepared,
    /// The agent.
    pub agent: std::sync::Arc<secllama_enclave::agent::Agent>,
    /// Its accept loop (abort it to stop serving: its connections end with it).
    pub serving: tokio::task::JoinHandle<std::io::Result<()>>,
    /// The reference manifest (TOML).
    pub manifest: PathBuf,
}

/// Starts the agent of `p` serving on `p.sock` in `rt` (removing a stale socket first).
pub fn start_agent(
    rt: &tokio::runtime::Runtime,
    p: &Prepared,
) -> Result<
    (
        std::sync::Arc<secllama_enclave::agent::Agent>,
        tokio::task::JoinHandle<std::io::Result<()>>,
    ),
    PrepareError,
> {
    let _guard = rt.enter();
    let agent = std::sync::Arc::new(secllama_enclave::agent::Agent::start(&p.config, &p.base)?);
    let _ = std::fs::remove_file(&p.sock);
    let listener =
        secllama_enclave::listener::Listener::Unix(tokio::net::UnixListener::bind(&p.sock)?);
    let serving = rt.spawn(secllama_enclave::service::serve(agent.clone(), listener));
    Ok((agent, serving))
}

/// [`prepare`] with the test runner `runner_bin` and `policy_json`, then [`start_agent`] in a
/// two-worker runtime, and the reference manifest written next to the enclave's files.
pub fn serving(runner_bin: &Path, policy_json: &str) -> Result<Serving, PrepareError> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let p = prepare(runner_bin, RunnerMode::Started, policy_json)?;
    let manifest = p.dir.path().join("manifest.toml");
    std::fs::write(&manifest, p.reference_manifest()?.to_toml()?)?;
    let (agent, serving) = start_agent(&rt, &p)?;
    Ok(Serving {
        rt,
        p,
        agent,
        serving,
        manifest,
    })
}

/// Reads one whole HTTP/1.1 request (head and `Content-Length` body) from `stream`; `None` if the
/// peer closes first. For test relays that rewrite or replay requests.
pub async fn read_request<S: tokio::io::AsyncRead + Unpin>(stream: &mut S) -> Option<Vec<u8>> {
    use tokio::io::AsyncReadExt;
    let mut req = Vec::new();
    let mut buf = vec![0u8; 65536];
    loop {
        let n = stream.read(&mut buf).await.ok()?;
        if n == 0 {
            return None;
        }
        req.extend_from_slice(&buf[..n]);
        if let Some(h) = req.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&req[..h]).to_ascii_lowercase();
            let len = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse::<usize>().ok())
                .unwrap_or(0);
            if req.len() >= h + 4 + len {
                return Some(req);
            }
        }
    }
}

/// One HTTP/1.1 exchange with the agent over its unix socket `sock` (a new connection): `header`
/// is the `X-Secllama-Attestation` value when given; returns the status and the whole body.
pub async fn unix_http(
    sock: &Path,
    method: &str,
    path: &str,
    header: Option<String>,
    body: Vec<u8>,
) -> Result<(u16, bytes::Bytes), String> {
    use http_body_util::BodyExt;
    let fail = |what: &str, e: &dyn std::fmt::Display| format!("{method} {path}: {what}: {e}");
    let stream = tokio::net::UnixStream::connect(sock)
        .await
        .map_err(|e| fail("connecting", &e))?;
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .map_err(|e| fail("handshake", &e))?;
    tokio::spawn(conn);
    let mut req = hyper::Request::builder()
        .method(method)
        .uri(path)
        .header("host", "enclave");
    if let Some(h) = header {
        req = req.header(secllama_enclave::service::ATTESTATION_HEADER, h);
    }
    let req = req
        .body(http_body_util::Full::new(bytes::Bytes::from(body)))
        .map_err(|e| fail("request", &e))?;
    let resp = sender
        .send_request(req)
        .await
        .map_err(|e| fail("sending", &e))?;
    let status = resp.status().as_u16();
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| fail("body", &e))?
        .to_bytes();
    Ok((status, body))
}
