//! The receipt log end to end, with the agent in process over its unix listener, a real swtpm and
//! the test runner: sealed answers land in the RFC 9162 log; `GET /log/head`, `/log/proof` and
//! `/log/consistency` verify against the log key the attestation document binds; after a reboot
//! (swtpm restarted: PCRs reset, NV kept) the same measured enclave unseals its identity and
//! continues the same log; a changed measurement cannot; an older copy of the file is refused by
//! the TPM counter; `secllama-verify log verify|prove|consistency` check the file offline and
//! catch an edited entry; the client's log audit (what `generate` and the proxy run) proves each
//! receipt and catches a replayed older head, a head by another key and a false inclusion path.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test crate: a failed unwrap is a failed test

use bytes::Bytes;
use http_body_util::Full;
use rand_core::OsRng;
use secllama_enclave::agent::{Agent, now_ms};
use secllama_enclave::service::serve;
use secllama_protocol::attestation::open_document;
use secllama_protocol::cose::CoseP256Key;
use secllama_protocol::receipt::verify_receipt;
use secllama_protocol::receipt_log::{Kind, encode, parse};
use secllama_protocol::rfc9162::{leaf_hash, verify_consistency, verify_inclusion};
use secllama_protocol::seal::{
    RequestContext, RequestPlaintext, ResponseKeys, StreamOpener, seal_request,
};
use secllama_protocol::sha256;
use secllama_protocol::tree_head::{TreeHead, verify_tree_head};
use secllama_tests::enclave::{Prepared, RunnerMode, policy_for, prepare};
use serde_json::Value;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;

/// One exchange with the agent's unix socket (`secllama_tests::enclave::unix_http`).
async fn http(
    sock: &Path,
    method: &str,
    path: &str,
    header: Option<String>,
    body: Vec<u8>,
) -> (u16, Bytes) {
    secllama_tests::enclave::unix_http(sock, method, path, header, body)
        .await
        .unwrap()
}

const PROMPT: &str = "why is the sky blue";

async fn get_json(sock: &Path, path: &str) -> (u16, Value) {
    let (status, body) = http(sock, "GET", path, None, vec![]).await;
    (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

/// A running agent; `stop` ends it and waits until its log file is closed.
struct Running {
    agent: Arc<Agent>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Running {
    fn start(p: &Prepared) -> Result<Self, String> {
        let agent = Arc::new(Agent::start(&p.config, &p.base).map_err(|e| format!("{e:#}"))?);
        let listener = secllama_enclave::listener::Listener::Unix(
            tokio::net::UnixListener::bind(&p.sock).unwrap(),
        );
        let task = tokio::spawn(serve(agent.clone(), listener));
        Ok(Self { agent, task })
    }

    async fn stop(self) {
        self.task.abort();
        let _ = self.task.await;
        // Connection tasks end with their connections; the agent (and its log file) goes last.
        for _ in 0..200 {
            if Arc::strong_count(&self.agent) == 1 {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        panic!("the agent is still referenced after its server stopped");
    }
}

/// Attests (returns the document's log key) and sends one sealed generate; returns its receipt's
/// log index and bytes, the receipt verified.
async fn generate(sock: &Path) -> (CoseP256Key, u64, Vec<u8>) {
    let (key, end, signing) = exchange(sock, PROMPT).await;
    let receipt = hex::decode(end["receipt"].as_str().unwrap()).unwrap();
    let payload = verify_receipt(&receipt, &signing).unwrap();
    (key, payload.log_index, receipt)
}

/// One sealed generate of `prompt`: (the document's log key, the final envelope, the signing key).
async fn exchange(sock: &Path, prompt: &str) -> (CoseP256Key, Value, CoseP256Key) {
    let (status, doc) = http(
        sock,
        "GET",
        &format!("/attestation?nonce={}", "4e".repeat(32)),
        None,
        vec![],
    )
    .await;
    assert_eq!(status, 200);
    let v = open_document(&doc).unwrap();
    let path = "/v1/sealed/api/generate";
    let ctx = RequestContext {
        method: "POST",
        path,
        attestation_digest: v.digest,
    };
    let body =
        format!(r#"{{"model":"tiny:latest","prompt":"{prompt}","options":{{"num_predict":4}}}}"#);
    let pt = RequestPlaintext::new(body.into_bytes(), now_ms(), &mut OsRng).unwrap();
    let (sealed, key) =
        seal_request(&v.payload.keys.encryption_spki, &ctx, &pt, &mut OsRng).unwrap();
    let (status, answer) = http(
        sock,
        "POST",
        path,
        Some(hex::encode(sha256(&[&doc]).0)),
        sealed,
    )
    .await;
    assert_eq!(status, 200);
    let mut o = StreamOpener::new(ResponseKeys::derive(&key, &pt.id).unwrap());
    let chunks = o.push(&answer).unwrap();
    o.finish().unwrap();
    let end: Value = serde_json::from_slice(&chunks.last().unwrap().data).unwrap();
    (v.payload.log.key, end, v.payload.keys.signing)
}

async fn head(sock: &Path, key: &CoseP256Key) -> TreeHead {
    let (status, v) = get_json(sock, "/log/head").await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        hex::decode(v["log_key"].as_str().unwrap()).unwrap(),
        key.to_bytes().unwrap()
    );
    verify_tree_head(&hex::decode(v["head"].as_str().unwrap()).unwrap(), key).unwrap()
}

fn hashes(v: &Value) -> Vec<[u8; 32]> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|h| {
            hex::decode(h.as_str().unwrap())
                .unwrap()
                .try_into()
                .unwrap()
        })
        .collect()
}

fn verify_cli(args: &[&str]) -> (Option<i32>, Value, String) {
    let out = Command::new(secllama_tests::workspace_bin("secllama-verify"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code(),
        serde_json::from_slice(&out.stdout).unwrap_or(Value::Null),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn prepared() -> Prepared {
    let runner = Path::new(env!("CARGO_BIN_EXE_secllama-test-runner"));
    prepare(runner, RunnerMode::Started, &policy_for(PROMPT)).unwrap()
}

/// Waits past the agent's minimum interval between heads, so `/log/head` signs a new one.
async fn next_head_interval() {
    tokio::time::sleep(std::time::Duration::from_millis(
        secllama_enclave::agent::HEAD_INTERVAL_MS + 50,
    ))
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_enclave_continues_its_log_after_a_reboot() {
    let mut p = prepared();
    let log_file = p.dir.path().join("receipts.log");
    let run = Running::start(&p).unwrap();
    let mut receipts = Vec::new();
    let mut key = None;
    for expect in 0..3 {
        let (k, index, r) = generate(&p.sock).await;
        assert_eq!(index, expect, "log indices follow each other");
        key = Some(k);
        receipts.push(r);
    }
    let key = key.unwrap();
    next_head_interval().await;
    let h3 = head(&p.sock, &key).await;
    assert_eq!(h3.size, 3);
    // Inclusion of every receipt in the signed head, from the enclave's proof endpoint.
    for (i, r) in receipts.iter().enumerate() {
        let (status, v) = get_json(&p.sock, &format!("/log/proof?index={i}&size=3")).await;
        assert_eq!(status, 200, "{v}");
        verify_inclusion(&leaf_hash(r), i as u64, 3, &hashes(&v["path"]), &h3.root.0).unwrap();
    }
    // The operator's view: counts (never content), the log, the TPM counter, the PCRs as launched.
    let (_, refused, _) = exchange(&p.sock, "a prompt outside the dataset").await;
    assert_eq!(refused["status"], 403, "{refused}");
    let (status, st) = get_json(&p.sock, "/status").await;
    assert_eq!(status, 200, "{st}");
    assert_eq!(st["requests"]["served"], 3, "{st}");
    assert_eq!(st["requests"]["refused"], 1, "{st}");
    assert_eq!(st["log"]["size"], 3);
    assert_eq!(st["log"]["head"]["counter"], h3.counter);
    assert_eq!(st["tpm_counter"], h3.counter);
    assert_eq!(st["runner"]["reachable"], true);
    assert_eq!(st["isolation"], "process");
    assert_eq!(
        st["pcrs"]["sha256"]["15"],
        hex::encode(&p.prediction.pcrs[&secllama_measurements::eventlog::Bank::Sha256][&15])
    );
    assert!(!st.to_string().contains(PROMPT), "no prompt in the status");
    let out = Command::new(secllama_tests::workspace_bin("secllama"))
        .args(["status", "--url", &format!("unix:{}", p.sock.display())])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("3 served, 1 refused, 0 failed"), "{text}");
    assert!(text.contains(&format!("counter {}", h3.counter)), "{text}");
    // Requests outside the tree and ambiguous queries are refused.
    for bad in [
        "/log/proof?index=3&size=3",
        "/log/proof?index=0&size=9",
        "/log/proof?index=0&index=0&size=1",
        "/log/consistency?from=2",
    ] {
        assert_eq!(get_json(&p.sock, bad).await.0, 400, "{bad}");
    }
    run.stop().await;
    let out = Command::new(secllama_tests::workspace_bin("secllama"))
        .args(["status", "--url", &format!("unix:{}", p.sock.display())])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("down"),
        "a stopped enclave is down"
    );

    p.reboot(None).unwrap();
    let run = Running::start(&p).unwrap();
    let (k, index, r4) = generate(&p.sock).await;
    assert_eq!(k, key, "the same identity continues the log");
    assert_eq!(index, 3, "after the entries before the reboot");
    next_head_interval().await;
    let h4 = head(&p.sock, &key).await;
    assert_eq!(h4.size, 4);
    assert!(
        h4.counter > h3.counter,
        "the TPM counter grew: {} then {}",
        h3.counter,
        h4.counter
    );
    let (status, v) = get_json(&p.sock, "/log/consistency?from=3&to=4").await;
    assert_eq!(status, 200, "{v}");
    verify_consistency(3, 4, &h3.root.0, &h4.root.0, &hashes(&v["proof"])).unwrap();
    run.stop().await;

    // Offline, as a remote user checks the file the host keeps.
    let f = log_file.to_str().unwrap();
    let (code, v, e) = verify_cli(&["log", "verify", f]);
    assert_eq!(code, Some(0), "{e} {v}");
    assert_eq!(v["entries"], 4);
    assert_eq!(v["log_id"], key.kid().unwrap().to_hex());
    let (code, v, e) = verify_cli(&["log", "prove", f, "--index", "3"]);
    assert_eq!(code, Some(0), "{e} {v}");
    assert_eq!(v["leaf_hash"], hex::encode(leaf_hash(&r4)));
    let (code, v, e) = verify_cli(&["log", "consistency", f, "--from", "3", "--to", "4"]);
    assert_eq!(code, Some(0), "{e} {v}");
    // An entry rewritten by the host (with a valid checksum): the heads give it away.
    let bytes = std::fs::read(&log_file).unwrap();
    let records = parse(&bytes).unwrap().records;
    let entry = records.iter().find(|r| r.kind == Kind::Entry).unwrap();
    let mut forged_body = entry.body.clone();
    *forged_body.last_mut().unwrap() ^= 1;
    let forged = encode(Kind::Entry, &forged_body).unwrap();
    let off = entry.offset as usize;
    let edited = [&bytes[..off], &forged[..], &bytes[off + forged.len()..]].concat();
    let edited_path = p.dir.path().join("edited.log");
    std::fs::write(&edited_path, &edited).unwrap();
    let (code, v, e) = verify_cli(&["log", "verify", edited_path.to_str().unwrap()]);
    assert_eq!(code, Some(1), "{e} {v}");
    assert!(
        v["reasons"][0].as_str().unwrap().contains("tree head root"),
        "{v}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_measurement_or_an_older_copy_cannot_continue_the_log() {
    let mut p = prepared();
    let log_file = p.dir.path().join("receipts.log");
    let run = Running::start(&p).unwrap();
    let (key, _, _) = generate(&p.sock).await;
    next_head_interval().await;
    head(&p.sock, &key).await;
    let old = std::fs::read(&log_file).unwrap();
    generate(&p.sock).await;
    next_head_interval().await;
    head(&p.sock, &key).await;
    run.stop().await;
    let full = std::fs::read(&log_file).unwrap();

    // Another measurement in PCR 15: the identity does not unseal.
    p.reboot(Some(b"another model")).unwrap();
    let e = Running::start(&p).err().unwrap();
    assert!(e.contains("does not unseal"), "{e}");
    assert_eq!(
        std::fs::read(&log_file).unwrap(),
        full,
        "the refused log is left as it was"
    );

    // The same measurement, the older copy of the file: the TPM counter is ahead of it.
    p.reboot(None).unwrap();
    std::fs::write(&log_file, &old).unwrap();
    let e = Running::start(&p).err().unwrap();
    assert!(e.contains("rollback"), "{e}");

    // The current file continues.
    std::fs::write(&log_file, &full).unwrap();
    let run = Running::start(&p).unwrap();
    let (k, index, _) = generate(&p.sock).await;
    assert_eq!((k, index), (key, 2));
    run.stop().await;
}

/// A host in front of the enclave that answers `/log/head` with `head` (when set) and flips a
/// byte of every inclusion path (when `flip`); everything else goes to the enclave.
async fn hostile(
    real: std::path::PathBuf,
    at: std::path::PathBuf,
    head: Option<String>,
    flip: bool,
) {
    let listener = tokio::net::UnixListener::bind(&at).unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let (real, head) = (real.clone(), head.clone());
            tokio::spawn(async move {
                let service = hyper::service::service_fn(
                    move |req: hyper::Request<hyper::body::Incoming>| {
                        let (real, head) = (real.clone(), head.clone());
                        async move {
                            let path = req.uri().to_string();
                            let body = if path == "/log/head" && head.is_some() {
                                Bytes::from(head.unwrap_or_default())
                            } else {
                                let (_, mut b) = http(&real, "GET", &path, None, vec![]).await;
                                if flip && path.starts_with("/log/proof") {
                                    let mut v: Value = serde_json::from_slice(&b).unwrap();
                                    if let Some(h) = v["path"].get_mut(0) {
                                        let mut bytes = hex::decode(h.as_str().unwrap()).unwrap();
                                        bytes[0] ^= 1;
                                        *h = Value::String(hex::encode(bytes));
                                    }
                                    b = Bytes::from(v.to_string());
                                }
                                b
                            };
                            Ok::<_, std::convert::Infallible>(hyper::Response::new(Full::new(body)))
                        }
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_prove_each_receipt_and_catch_stale_foreign_or_false_proofs() {
    use secllama_client::log_audit::LogAuditor;
    use secllama_client::transport::Endpoint;
    let p = prepared();
    let run = Running::start(&p).unwrap();
    let real = Endpoint::parse(&format!("unix:{}", p.sock.display())).unwrap();
    let heads = p.dir.path().join("heads.jsonl");
    let (key, i0, r0) = generate(&p.sock).await;
    let mut auditor = LogAuditor::new(key, Some(&heads)).unwrap();
    let first = auditor.check(&real, &r0, i0).await.unwrap();
    assert!(first.consistent_with.is_none());
    assert_eq!(first.head.size, 1);
    let (_, i1, r1) = generate(&p.sock).await;
    let second = auditor.check(&real, &r1, i1).await.unwrap();
    assert_eq!(second.head.size, 2);
    assert_eq!(
        second.consistent_with.unwrap().size,
        1,
        "proven to extend the first head"
    );
    let (_, old_head) = http(&p.sock, "GET", "/log/head", None, vec![]).await;
    let (_, i2, r2) = generate(&p.sock).await;
    // A new run of the client starts from the heads it kept in the file.
    let mut later = LogAuditor::new(key, Some(&heads)).unwrap();
    assert_eq!(later.last().unwrap().size, 2);
    let third = later.check(&real, &r2, i2).await.unwrap();
    assert_eq!(
        (third.head.size, third.consistent_with.unwrap().size),
        (3, 2)
    );

    // A host that replays the older head to a client that kept a newer one: rolled back.
    let stale = p.dir.path().join("stale.sock");
    hostile(
        p.sock.clone(),
        stale.clone(),
        Some(String::from_utf8(old_head.to_vec()).unwrap()),
        false,
    )
    .await;
    let mut a = LogAuditor::new(key, Some(&heads)).unwrap();
    let e = a
        .check(
            &Endpoint::parse(&format!("unix:{}", stale.display())).unwrap(),
            &r1,
            i1,
        )
        .await
        .unwrap_err();
    assert!(format!("{e:#}").contains("rolled back"), "{e:#}");
    // A head signed by another key.
    let other = secllama_protocol::cose::SigningKey::generate(&mut OsRng);
    let forged = secllama_protocol::tree_head::sign_tree_head(
        &TreeHead {
            log_id: other.public().kid().unwrap(),
            size: 3,
            root: third.head.root,
            time_ms: 1,
            counter: 999,
        },
        &other,
    )
    .unwrap();
    let foreign = p.dir.path().join("foreign.sock");
    let body = serde_json::json!({"head": hex::encode(forged), "log_key": hex::encode(other.public().to_bytes().unwrap())});
    hostile(
        p.sock.clone(),
        foreign.clone(),
        Some(body.to_string()),
        false,
    )
    .await;
    let e = LogAuditor::new(key, None)
        .unwrap()
        .check(
            &Endpoint::parse(&format!("unix:{}", foreign.display())).unwrap(),
            &r2,
            i2,
        )
        .await
        .unwrap_err();
    assert!(format!("{e:#}").contains("attested log key"), "{e:#}");
    // A false inclusion path.
    let lying = p.dir.path().join("lying.sock");
    hostile(p.sock.clone(), lying.clone(), None, true).await;
    let e = LogAuditor::new(key, None)
        .unwrap()
        .check(
            &Endpoint::parse(&format!("unix:{}", lying.display())).unwrap(),
            &r2,
            i2,
        )
        .await
        .unwrap_err();
    assert!(
        format!("{e:#}").contains("is not in the signed head"),
        "{e:#}"
    );
    run.stop().await;
}
