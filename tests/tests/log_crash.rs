//! The receipt log under crashes (issue 15): `secllama launch` (process mode, a real swtpm, the
//! test runner) while three clients send sealed requests through the bridge; at a random moment
//! the agent — or the launcher, whose sandboxes then die with it — gets `kill -9`. The operator's
//! recovery follows (the TPM restarted on its state: PCRs reset, NV kept; `secllama launch`
//! again), three times. Afterwards `secllama-verify log verify` accepts the file, every receipt a
//! client received is the entry at its index, no index was handed out twice, and every launch
//! attested the same log key: the same identity continued the log.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test crate: a failed unwrap is a failed test

use rand_core::RngCore;
use secllama_client::sealed::SealedEnd;
use secllama_protocol::receipt_log::{Kind, parse};
use secllama_tests::enclave::{Reaped, policy_for};
use secllama_tests::launch::{EnclaveSpec, free_port, launch_with_output, manifest};
use secllama_tests::swtpm::Swtpm;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const PROMPT: &str = "why is the sky blue";
const CLIENTS: usize = 3;

/// Each process's parent, from /proc.
fn parents() -> Vec<(u32, u32)> {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            // pid (comm) state ppid …: comm may hold spaces, so read after the last ')'.
            let ppid = stat
                .rsplit_once(')')?
                .1
                .split_whitespace()
                .nth(1)?
                .parse()
                .ok()?;
            Some((pid, ppid))
        })
        .collect()
}

/// The agent's process: the first descendant of the launcher running `secllama-enclave --config`
/// (not `runner-init`).
fn agent_pid(launcher: u32) -> u32 {
    let all = parents();
    let mut todo = vec![launcher];
    while let Some(p) = todo.pop() {
        for &(child, parent) in &all {
            if parent != p {
                continue;
            }
            let cmdline = std::fs::read(format!("/proc/{child}/cmdline")).unwrap_or_default();
            let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
            let is_agent = args
                .first()
                .is_some_and(|a| a.ends_with(b"secllama-enclave"))
                && args.get(1) == Some(&&b"--config"[..]);
            if is_agent {
                return child;
            }
            todo.push(child);
        }
    }
    panic!("no agent below launcher {launcher}");
}

fn kill9(pid: u32) {
    let st = Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .unwrap();
    assert!(st.success(), "kill -9 {pid}");
}

/// Waits (bounded) for the launcher to end.
fn wait_exit(launcher: &mut Reaped) {
    let until = Instant::now() + Duration::from_secs(30);
    while Instant::now() < until {
        if launcher.0.try_wait().unwrap().is_some() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("the launcher did not end after its enclave was killed");
}

/// What the clients received: (log index, receipt bytes), each receipt verified by the client.
type Received = Arc<Mutex<Vec<(u64, Vec<u8>)>>>;

/// Attests; then `CLIENTS` clients send sealed generates in a loop until a request fails (the
/// enclave was killed) or `limit` passes. Returns the attested log key.
async fn load(url: &str, manifest: &Path, received: &Received, limit: Duration) -> Vec<u8> {
    let m = secllama_client::cli::attest::load_manifest(manifest).unwrap();
    let att = secllama_client::attest::attest(url, &m).await.unwrap();
    let doc = att.affirmed().expect("an affirming attestation").clone();
    let key = doc.payload.log.key.to_bytes().unwrap();
    let endpoint = secllama_client::transport::Endpoint::parse(url).unwrap();
    let doc = Arc::new(doc);
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..CLIENTS {
        let (endpoint, doc, received) = (endpoint.clone(), doc.clone(), received.clone());
        tasks.spawn(async move {
            let until = Instant::now() + limit;
            while Instant::now() < until {
                let body = format!(
                    r#"{{"model":"tiny:latest","prompt":"{PROMPT}","options":{{"num_predict":2}}}}"#
                );
                let answer = secllama_client::sealed::request_with(
                    &endpoint,
                    &doc,
                    "/api/generate",
                    body.into_bytes(),
                    None,
                    |_: &[u8]| Ok(()),
                )
                .await;
                match answer.map(|a| a.end) {
                    Ok(SealedEnd::Receipt {
                        receipt,
                        receipt_bytes,
                        ..
                    }) => received
                        .lock()
                        .unwrap()
                        .push((receipt.log_index, receipt_bytes)),
                    Ok(SealedEnd::Problem { status, problem }) => {
                        panic!("refused while running: {status} {problem}")
                    }
                    Err(_) => return, // the enclave is gone
                }
            }
        });
    }
    while let Some(r) = tasks.join_next().await {
        r.unwrap();
    }
    key
}

fn config(dir: &Path, sw: &Swtpm) -> (PathBuf, PathBuf) {
    let art = dir.join("art");
    let state = dir.join("run");
    std::fs::create_dir_all(&art).unwrap();
    std::fs::write(art.join("model.gguf"), b"tiny weights").unwrap();
    let port = free_port().unwrap();
    let runner = PathBuf::from(env!("CARGO_BIN_EXE_secllama-test-runner"));
    let config = EnclaveSpec {
        art: art.clone(),
        state: state.clone(),
        banks: secllama_tests::launch::sw_banks(sw).unwrap(),
        runner: runner.clone(),
        runner_command: vec![
            runner.display().to_string(),
            "--listen".into(),
            format!("127.0.0.1:{port}"),
        ],
        runner_port: port,
        runner_env: vec![],
        runner_ready_secs: 60,
        models: vec![PathBuf::from("model.gguf")],
        trees: vec![],
        policy: policy_for(PROMPT),
        memory_mib: 4096,
    }
    .write()
    .unwrap();
    (config, state)
}

#[test]
fn kill_9_under_load_loses_no_acknowledged_receipt() {
    let dir = secllama_tests::launch::artifact_dir().unwrap();
    let mut sw = Swtpm::start().unwrap();
    let (config, state) = config(dir.path(), &sw);
    let m = dir.path().join("manifest.toml");
    let received: Received = Received::default();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut keys = Vec::new();
    for victim in ["agent", "launcher", "agent", "none"] {
        let (mut launcher, _lines, bridge) = launch_with_output(&config, &sw.tcti()).unwrap();
        manifest(&config, &state, &m).unwrap();
        let url = format!("http://{bridge}");
        let before = received.lock().unwrap().len();
        // The kill lands 200–1200 ms into the load (printed, to replay a failure).
        let delay = Duration::from_millis(200 + u64::from(rand_core::OsRng.next_u32() % 1000));
        eprintln!("round: kill -9 the {victim} after {delay:?}");
        let pid = match victim {
            "agent" => Some(agent_pid(launcher.0.id())),
            "launcher" => Some(launcher.0.id()),
            _ => None,
        };
        let killer = std::thread::spawn(move || {
            std::thread::sleep(delay);
            if let Some(pid) = pid {
                kill9(pid);
            }
        });
        let limit = if pid.is_some() {
            Duration::from_secs(60)
        } else {
            delay
        };
        keys.push(rt.block_on(load(&url, &m, &received, limit)));
        killer.join().unwrap();
        let got = received.lock().unwrap().len() - before;
        eprintln!("round: {got} receipts received");
        assert!(got > 0, "the load generator got no answer before the kill");
        if pid.is_some() {
            wait_exit(&mut launcher);
        } else {
            Command::new("kill")
                .args(["-TERM", &launcher.0.id().to_string()])
                .status()
                .unwrap();
            wait_exit(&mut launcher);
        }
        drop(launcher);
        // The operator's recovery: a new TPM lifetime on the same state, then launch again.
        sw.restart().unwrap();
    }
    assert!(
        keys.windows(2).all(|k| k[0] == k[1]),
        "every launch attested the same log key"
    );

    // The file the host keeps.
    let log = state.join("receipts.log");
    let out = Command::new(secllama_tests::workspace_bin("secllama-verify"))
        .args(["log", "verify"])
        .arg(&log)
        .output()
        .unwrap();
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{report} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let bytes = std::fs::read(&log).unwrap();
    let entries: Vec<Vec<u8>> = parse(&bytes)
        .unwrap()
        .records
        .into_iter()
        .filter(|r| r.kind == Kind::Entry)
        .map(|r| r.body)
        .collect();
    assert_eq!(report["entries"], entries.len());
    let received = received.lock().unwrap();
    let mut indexes: Vec<u64> = received.iter().map(|(i, _)| *i).collect();
    indexes.sort_unstable();
    indexes.dedup();
    assert_eq!(indexes.len(), received.len(), "an index handed out twice");
    for (index, receipt) in received.iter() {
        let entry = entries
            .get(usize::try_from(*index).unwrap())
            .unwrap_or_else(|| {
                panic!(
                    "receipt {index} is past the log's {} entries",
                    entries.len()
                )
            });
        assert_eq!(
            entry, receipt,
            "entry {index} is not the receipt its client got"
        );
    }
    eprintln!(
        "{} receipts received, {} entries in the log",
        received.len(),
        entries.len()
    );
}
