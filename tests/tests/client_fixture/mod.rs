//! The enclave fixture the client tests share: a real agent over a real swtpm and the test runner,
//! served on a unix socket in its own runtime, and the reference manifest pinning its AK.
#![allow(dead_code)] // each test file uses part of it

use secllama_client::cli::{Format, attest};
use secllama_enclave::agent::Agent;
use secllama_enclave::service::serve;
use secllama_measurements::manifest::Manifest;
use secllama_tests::enclave::{RunnerMode, policy_for, prepare};
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub const PROMPT: &str = "why is the sky blue";

pub struct Fixture {
    pub rt: tokio::runtime::Runtime,
    pub _prepared: secllama_tests::enclave::Prepared,
    pub sock: PathBuf,
    pub dir: PathBuf,
    pub manifest: Manifest,
}

pub fn fixture() -> Fixture {
    fixture_on(false)
}

pub fn fixture_on(manufactured: bool) -> Fixture {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let runner = Path::new(env!("CARGO_BIN_EXE_secllama-test-runner"));
    let p = if manufactured {
        secllama_tests::enclave::prepare_manufactured(
            runner,
            RunnerMode::Started,
            &policy_for(PROMPT),
        )
    } else {
        prepare(runner, RunnerMode::Started, &policy_for(PROMPT))
    }
    .unwrap();
    let (config, base) = (&p.config, &p.base);
    // Pins the AK the agent will quote with, created now.
    let manifest = p.reference_manifest().unwrap();
    manifest.validate().unwrap();
    let _guard = rt.enter();
    let agent = Arc::new(Agent::start(config, base).unwrap());
    let listener = tokio::net::UnixListener::bind(&p.sock).unwrap();
    rt.spawn(serve(
        agent,
        secllama_enclave::listener::Listener::Unix(listener),
    ));
    drop(_guard);
    Fixture {
        rt,
        sock: p.sock.clone(),
        dir: p.dir.path().to_path_buf(),
        manifest,
        _prepared: p,
    }
}

impl Fixture {
    pub fn url(&self) -> String {
        format!("unix:{}", self.sock.display())
    }

    pub fn write_manifest(&self, name: &str, m: &Manifest) -> PathBuf {
        let path = self.dir.as_path().join(name);
        std::fs::write(&path, m.to_toml().unwrap()).unwrap();
        path
    }

    /// Runs `attest`; returns (exit-0?, the JSON result).
    pub fn attest(
        &self,
        url: &str,
        manifest: &Path,
        save: Option<PathBuf>,
    ) -> (bool, serde_json::Value) {
        let out = attest::run(&attest::Args {
            url: url.to_string(),
            manifest: manifest.to_path_buf(),
            save,
            save_bundle: None,
            certs: Vec::new(),
            format: Format::Json,
        })
        .unwrap();
        (out.valid, serde_json::from_str(&out.report).unwrap())
    }

    /// A TCP listener relaying each connection to the enclave socket (what the bridge does).
    pub fn tcp_relay(&self) -> String {
        let _guard = self.rt.enter();
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        std_listener.set_nonblocking(true).unwrap();
        let addr = std_listener.local_addr().unwrap();
        let listener = tokio::net::TcpListener::from_std(std_listener).unwrap();
        let sock = self.sock.clone();
        self.rt.spawn(async move {
            while let Ok((mut tcp, _)) = listener.accept().await {
                let sock = sock.clone();
                tokio::spawn(async move {
                    if let Ok(mut unix) = tokio::net::UnixStream::connect(&sock).await {
                        let _ = tokio::io::copy_bidirectional(&mut tcp, &mut unix).await;
                    }
                });
            }
        });
        format!("http://{addr}")
    }
}

pub fn status<'a>(r: &'a serde_json::Value, submod: &str) -> &'a str {
    r["submods"][submod]["ear.status"].as_str().unwrap()
}

pub fn reasons(r: &serde_json::Value, submod: &str) -> String {
    r["submods"][submod]["reasons"].to_string()
}
