//! Sealed round trip through the bridge and the enclave vs a plaintext request straight to the same
//! runner (`cargo bench -p secllama-tests --bench sealed_roundtrip`): a small non-streamed generate,
//! first request (RSA-wrapped key) and session reuse (also straight to the agent's socket, to
//! show the bridge's share); then a 10 MiB streamed answer. Every side keeps one connection alive
//! per address (the plaintext baseline too); a plain byte relay in front of the runner shows what one
//! loopback hop alone costs. Prints p50/p90 and the ratios to
//! plaintext (goal: session path ≤ 1.3× plaintext at p50). Real swtpm, real test runner, in-process agent and
//! bridge, loopback only.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout,
    missing_docs
)]

use bytes::Bytes;
use http_body_util::BodyExt;
use rand_core::OsRng;
use secllama_enclave::agent::{Agent, now_ms};
use secllama_enclave::service::{ATTESTATION_HEADER, serve};
use secllama_host::bridge::{EnclaveAddr, Limits};
use secllama_protocol::seal::{
    RequestContext, RequestPlaintext, ResponseKeys, StreamOpener, seal_request,
    seal_request_session,
};
use secllama_tests::bench::KeptAlive;
use secllama_tests::enclave::{Prepared, RunnerMode, policy_for, prepare};
use std::sync::Arc;
use std::time::{Duration, Instant};

const PROMPT: &str = "the quick brown fox jumps over the lazy dog";
const ITERS: usize = 200;
const BIG_ITERS: usize = 10;

/// `POST path` to `addr` on its kept-alive connection; the whole answer (status 200).
async fn post(
    conns: &mut KeptAlive,
    addr: &str,
    path: &str,
    header: Option<&str>,
    body: Vec<u8>,
) -> Bytes {
    let headers: Vec<(&str, &str)> = header
        .map(|h| (ATTESTATION_HEADER, h))
        .into_iter()
        .collect();
    let resp = conns.post(addr, path, &headers, body).await.unwrap();
    assert_eq!(resp.status(), 200);
    resp.into_body().collect().await.unwrap().to_bytes()
}

fn percentiles(mut v: Vec<Duration>) -> (f64, f64) {
    v.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    (ms(v[v.len() / 2]), ms(v[v.len() * 9 / 10]))
}

/// A prepared enclave with the agent and a bridge in this runtime, attested once through the bridge.
async fn start_enclave(
    runner_bin: &std::path::Path,
    mode: RunnerMode<'_>,
) -> (
    Prepared,
    String,
    secllama_protocol::attestation::VerifiedDocument,
    String,
) {
    let prepared = prepare(runner_bin, mode, &policy_for(PROMPT)).unwrap();
    let sock = prepared.sock.clone();
    let agent = Arc::new(Agent::start(&prepared.config, &prepared.base).unwrap());
    tokio::spawn(serve(
        agent,
        secllama_enclave::listener::Listener::Unix(tokio::net::UnixListener::bind(&sock).unwrap()),
    ));
    let bridge = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let bridge_addr = bridge.local_addr().unwrap().to_string();
    tokio::spawn(secllama_host::bridge::serve(
        bridge,
        EnclaveAddr::Unix(sock),
        Limits::default(),
    ));
    let (v, doc_hex) = secllama_tests::bench::attestation(&bridge_addr)
        .await
        .unwrap();
    (prepared, bridge_addr, v, doc_hex)
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let runner_bin = std::path::Path::new(env!("CARGO_BIN_EXE_secllama-test-runner"));
        let (prepared, bridge_addr, v, doc_hex) = start_enclave(runner_bin, RunnerMode::Started).await;
        let runner_addr = prepared.config.runner_url.trim_start_matches("http://").to_string();
        let sock = prepared.sock.clone();
        let path = "/v1/sealed/api/generate";
        let ctx = RequestContext { method: "POST", path, attestation_digest: v.digest };
        let body = format!(r#"{{"model":"tiny:latest","prompt":"{PROMPT}","stream":false,"options":{{"num_predict":16}}}}"#);

        let open = |key: &secllama_protocol::seal::ContentKey, pt: &RequestPlaintext, answer: &[u8]| {
            let mut o = StreamOpener::new(ResponseKeys::derive(key, &pt.id).unwrap());
            let chunks = o.push(answer).unwrap();
            o.finish().unwrap();
            assert!(chunks.len() >= 2);
        };

        let mut plain = Vec::new();
        let mut rsa = Vec::new();
        let mut session = Vec::new();
        let mut direct = Vec::new();
        let mut relayed = Vec::new();
        // The cost of one loopback hop alone: a byte relay (as the bridge is) in front of the
        // plaintext runner.
        let relay_addr = {
            let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = l.local_addr().unwrap().to_string();
            let to = runner_addr.clone();
            tokio::spawn(async move {
                while let Ok((mut a, _)) = l.accept().await {
                    let to = to.clone();
                    tokio::spawn(async move {
                        let _ = a.set_nodelay(true);
                        let Ok(mut b) = tokio::net::TcpStream::connect(&to).await else { return };
                        let _ = b.set_nodelay(true);
                        let _ = tokio::io::copy_bidirectional(&mut a, &mut b).await;
                    });
                }
            });
            addr
        };
        let unix_addr = format!("unix:{}", sock.display());
        let mut session_key = None;
        // Every side on kept-alive connections (one per address), as a client's pool does.
        let mut conns = KeptAlive::default();
        for _ in 0..ITERS {
            let t = Instant::now();
            post(&mut conns, &runner_addr, "/api/generate", None, body.clone().into_bytes()).await;
            plain.push(t.elapsed());

            let t = Instant::now();
            post(&mut conns, &relay_addr, "/api/generate", None, body.clone().into_bytes()).await;
            relayed.push(t.elapsed());

            let t = Instant::now();
            let pt = RequestPlaintext::new(body.clone().into_bytes(), now_ms(), &mut OsRng).unwrap();
            let (sealed, key) = seal_request(&v.payload.keys.encryption_spki, &ctx, &pt, &mut OsRng).unwrap();
            let answer = post(&mut conns, &bridge_addr, path, Some(&doc_hex), sealed).await;
            open(&key, &pt, &answer);
            rsa.push(t.elapsed());
            let key = session_key.get_or_insert(key).clone();

            let t = Instant::now();
            let pt = RequestPlaintext::new(body.clone().into_bytes(), now_ms(), &mut OsRng).unwrap();
            let sealed = seal_request_session(&key, &ctx, &pt, &mut OsRng).unwrap();
            let answer = post(&mut conns, &bridge_addr, path, Some(&doc_hex), sealed).await;
            open(&key, &pt, &answer);
            session.push(t.elapsed());

            let t = Instant::now();
            let pt = RequestPlaintext::new(body.clone().into_bytes(), now_ms(), &mut OsRng).unwrap();
            let sealed = seal_request_session(&key, &ctx, &pt, &mut OsRng).unwrap();
            let answer = post(&mut conns, &unix_addr, path, Some(&doc_hex), sealed).await;
            open(&key, &pt, &answer);
            direct.push(t.elapsed());
        }
        let (p50, p90) = percentiles(plain);
        println!("\n{:58} {:>9} {:>9} {:>12}", format!("small generate, {ITERS} requests each"), "p50 ms", "p90 ms", "p50 ratio");
        println!("{:58} {p50:>9.3} {p90:>9.3} {:>12}", "plaintext, straight to the runner", "1.00x");
        for (name, v) in [("plaintext through a byte relay (one more hop, no sealing)", relayed), ("sealed, first request (RSA-3072 wrapped key), via bridge", rsa), ("sealed, session reuse, via bridge", session), ("sealed, session reuse, straight to the agent's socket", direct)] {
            let (a, b) = percentiles(v);
            println!("{name:58} {a:>9.3} {b:>9.3} {:>11.2}x", a / p50);
        }
        drop(prepared);

        // A 10 MiB streamed answer: the runner streams 4 KiB tokens without pacing.
        let args = ["--answer-bytes", "10485760"];
        let (big, bridge_addr, v, doc_hex) = start_enclave(runner_bin, RunnerMode::StartedWith(&args)).await;
        let runner_addr = big.config.runner_url.trim_start_matches("http://").to_string();
        let ctx = RequestContext { method: "POST", path, attestation_digest: v.digest };
        let body = format!(r#"{{"model":"tiny:latest","prompt":"{PROMPT}","stream":true,"options":{{"num_predict":64}}}}"#);
        let pt = RequestPlaintext::new(body.clone().into_bytes(), now_ms(), &mut OsRng).unwrap();
        let (sealed, key) = seal_request(&v.payload.keys.encryption_spki, &ctx, &pt, &mut OsRng).unwrap();
        let mut conns = KeptAlive::default();
        let first = post(&mut conns, &bridge_addr, path, Some(&doc_hex), sealed).await;
        let mut answer_len = 0;
        let (mut plain, mut session) = (Vec::new(), Vec::new());
        let mut o = StreamOpener::new(ResponseKeys::derive(&key, &pt.id).unwrap());
        o.push(&first).unwrap();
        o.finish().unwrap();
        for _ in 0..BIG_ITERS {
            let t = Instant::now();
            let answer = post(&mut conns, &runner_addr, "/api/generate", None, body.clone().into_bytes()).await;
            plain.push(t.elapsed());
            answer_len = answer.len();

            let t = Instant::now();
            let pt = RequestPlaintext::new(body.clone().into_bytes(), now_ms(), &mut OsRng).unwrap();
            let sealed = seal_request_session(&key, &ctx, &pt, &mut OsRng).unwrap();
            let answer = post(&mut conns, &bridge_addr, path, Some(&doc_hex), sealed).await;
            let mut o = StreamOpener::new(ResponseKeys::derive(&key, &pt.id).unwrap());
            let chunks = o.push(&answer).unwrap();
            o.finish().unwrap();
            let opened: usize = chunks.iter().map(|c| c.data.len()).sum();
            let last = chunks.last().map(|c| String::from_utf8_lossy(&c.data).to_string()).unwrap_or_default();
            session.push(t.elapsed());
            assert!(opened >= answer_len, "opened {opened} bytes, the runner sent {answer_len}: {:?}", last);
        }
        let (p50, p90) = percentiles(plain);
        let mib = answer_len as f64 / (1024.0 * 1024.0);
        println!("\n{:58} {:>9} {:>9} {:>12}", format!("streamed answer of {mib:.1} MiB NDJSON, {BIG_ITERS} requests each"), "p50 ms", "p90 ms", "p50 ratio");
        println!("{:58} {p50:>9.1} {p90:>9.1} {:>12}   ({:.0} MiB/s)", "plaintext, straight to the runner", "1.00x", mib / (p50 / 1e3));
        let (a, b) = percentiles(session);
        println!("{:58} {a:>9.1} {b:>9.1} {:>11.2}x   ({:.0} MiB/s)", "sealed, session reuse, via bridge", a / p50, mib / (a / 1e3));
        drop(big);
    });
}
