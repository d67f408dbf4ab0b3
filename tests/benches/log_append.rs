//! Receipt log appends on the real durability path vs the disk's own `fdatasync` rate, measured in
//! the same run and folder (`cargo bench -p secllama-tests --bench log_append`).
//!
//! - The disk: a loop of ours appending receipt-sized records (420 bytes) to a file beside the log
//!   and calling `fdatasync` after each — what one durable append at a time can reach.
//! - The agent (in process, real swtpm, test runner): sealed generates on kept-alive connections to
//!   its socket by 1, 4 and 16 concurrent clients for 3 s each; every answer's receipt is in the
//!   log and on disk before it is sent (group commit: one `fdatasync` covers every entry appended
//!   meanwhile). Printed: receipts per second and their ratio to `fdatasync`s per second (above 1:
//!   group commit at work), and the answers' p50/p90.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout,
    missing_docs
)]

use http_body_util::BodyExt;
use rand_core::OsRng;
use secllama_enclave::agent::{Agent, now_ms};
use secllama_enclave::service::{ATTESTATION_HEADER, serve};
use secllama_protocol::seal::{
    ContentKey, RequestContext, RequestPlaintext, ResponseKeys, StreamOpener, seal_request,
    seal_request_session,
};
use secllama_tests::bench::{KeptAlive, p50_p90};
use secllama_tests::enclave::{RunnerMode, policy_for, prepare};
use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

const PROMPT: &str = "why is the sky blue";
const RUN: Duration = Duration::from_secs(3);

/// `fdatasync`s per second of 420-byte appends to a new file in `dir`, for `RUN`.
fn fdatasync_rate(dir: &std::path::Path) -> f64 {
    let path = dir.join("fdatasync.bench");
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .unwrap();
    let record = [0x5au8; 420];
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < RUN {
        f.write_all(&record).unwrap();
        f.sync_data().unwrap();
        n += 1;
    }
    let rate = n as f64 / start.elapsed().as_secs_f64();
    let _ = std::fs::remove_file(&path);
    rate
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let runner_bin = std::path::Path::new(env!("CARGO_BIN_EXE_secllama-test-runner"));
    let p = prepare(runner_bin, RunnerMode::Started, &policy_for(PROMPT)).unwrap();
    let disk = fdatasync_rate(p.dir.path());
    rt.block_on(async {
        let agent = Arc::new(Agent::start(&p.config, &p.base).unwrap());
        tokio::spawn(serve(
            agent.clone(),
            secllama_enclave::listener::Listener::Unix(
                tokio::net::UnixListener::bind(&p.sock).unwrap(),
            ),
        ));
        let addr = format!("unix:{}", p.sock.display());
        let (v, doc_hex) = secllama_tests::bench::attestation(&addr).await.unwrap();
        let path = "/v1/sealed/api/generate";
        let body = format!(
            r#"{{"model":"tiny:latest","prompt":"{PROMPT}","stream":false,"options":{{"num_predict":2}}}}"#
        );
        // One RSA-wrapped request establishes the session key every client then uses.
        let ctx = RequestContext {
            method: "POST",
            path,
            attestation_digest: v.digest,
        };
        let pt = RequestPlaintext::new(body.clone().into_bytes(), now_ms(), &mut OsRng).unwrap();
        let (sealed, key) =
            seal_request(&v.payload.keys.encryption_spki, &ctx, &pt, &mut OsRng).unwrap();
        let mut conns = KeptAlive::default();
        let resp = conns
            .post(&addr, path, &[(ATTESTATION_HEADER, &doc_hex)], sealed)
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        resp.into_body().collect().await.unwrap();

        println!(
            "\n{:52} {:>12} {:>14} {:>9} {:>9}",
            "receipt log appends (sealed generates)", "per second", "vs fdatasync", "p50 ms", "p90 ms"
        );
        println!(
            "{:52} {disk:>12.0} {:>14}",
            "the disk: 420-byte append + fdatasync, one at a time", "1.00x"
        );
        for clients in [1usize, 4, 16] {
            let before = agent.receipts.lock().unwrap().len();
            let start = Instant::now();
            let mut tasks = tokio::task::JoinSet::new();
            for _ in 0..clients {
                let (addr, doc_hex, body, key) =
                    (addr.clone(), doc_hex.clone(), body.clone(), key.clone());
                let digest = v.digest;
                tasks.spawn(async move {
                    let mut conns = KeptAlive::default();
                    let mut times = Vec::new();
                    while start.elapsed() < RUN {
                        let t = Instant::now();
                        one(&mut conns, &addr, &doc_hex, digest, &key, &body).await;
                        times.push(t.elapsed());
                    }
                    times
                });
            }
            let mut times = Vec::new();
            while let Some(t) = tasks.join_next().await {
                times.extend(t.unwrap());
            }
            let secs = start.elapsed().as_secs_f64();
            let appended = agent.receipts.lock().unwrap().len() - before;
            assert_eq!(appended as usize, times.len(), "one log entry per answer");
            let rate = appended as f64 / secs;
            let (p50, p90) = p50_p90(times);
            println!(
                "{:52} {rate:>12.0} {:>13.2}x {p50:>9.2} {p90:>9.2}",
                format!("{clients} client(s), receipts durable before sending"),
                rate / disk
            );
        }
        // For scale: the same generates in plaintext straight to the runner (no sealing, no
        // receipt, no log) — on 2 cores the clients, agent and runner share the CPU.
        let runner = p.config.runner_url.trim_start_matches("http://").to_string();
        for clients in [1usize, 16] {
            let start = Instant::now();
            let mut tasks = tokio::task::JoinSet::new();
            for _ in 0..clients {
                let (runner, body) = (runner.clone(), body.clone());
                tasks.spawn(async move {
                    let mut conns = KeptAlive::default();
                    let mut n = 0u64;
                    while start.elapsed() < RUN {
                        secllama_tests::bench::timed(&mut conns, &runner, &body)
                            .await
                            .unwrap();
                        n += 1;
                    }
                    n
                });
            }
            let mut n = 0;
            while let Some(c) = tasks.join_next().await {
                n += c.unwrap();
            }
            let rate = n as f64 / start.elapsed().as_secs_f64();
            println!(
                "{:52} {rate:>12.0} {:>13.2}x",
                format!("{clients} client(s), plaintext to the runner, no log"),
                rate / disk
            );
        }
    });
}

/// One sealed generate on the session key; checks the answer opens and ends with a receipt.
async fn one(
    conns: &mut KeptAlive,
    addr: &str,
    doc_hex: &str,
    digest: secllama_protocol::Sha256Digest,
    key: &ContentKey,
    body: &str,
) {
    let path = "/v1/sealed/api/generate";
    let ctx = RequestContext {
        method: "POST",
        path,
        attestation_digest: digest,
    };
    let pt = RequestPlaintext::new(body.as_bytes().to_vec(), now_ms(), &mut OsRng).unwrap();
    let sealed = seal_request_session(key, &ctx, &pt, &mut OsRng).unwrap();
    let resp = conns
        .post(addr, path, &[(ATTESTATION_HEADER, doc_hex)], sealed)
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let answer = resp.into_body().collect().await.unwrap().to_bytes();
    let mut o = StreamOpener::new(ResponseKeys::derive(key, &pt.id).unwrap());
    let chunks = o.push(&answer).unwrap();
    o.finish().unwrap();
    let end: serde_json::Value = serde_json::from_slice(&chunks.last().unwrap().data).unwrap();
    assert!(end["receipt"].is_string(), "{end}");
}
