//! Time to first token and total time of a streamed generate through the verifying proxy → bridge
//! → enclave → runner, against the same request straight to the runner
//! (`cargo bench -p secllama-tests --bench proxy_roundtrip`). Both sides use the same HTTP client
//! (hyper, one connection per request, as the Ollama libraries do per call here); the runner paces
//! its tokens 2 ms apart, as a model would. Prints p50/p90 and the ratios (goal: ≤ 1.3× at p50 on
//! the session path — every proxied request after the first reuses the session key). Real swtpm,
//! real test runner, in-process agent, bridge and proxy, loopback only.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout,
    missing_docs
)]

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use secllama_enclave::agent::Agent;
use secllama_enclave::service::serve;
use secllama_host::bridge::{EnclaveAddr, Limits};
use secllama_tests::enclave::{RunnerMode, policy_for, prepare};
use std::sync::Arc;
use std::time::{Duration, Instant};

const PROMPT: &str = "the quick brown fox jumps over the lazy dog";
const ITERS: usize = 100;

/// (time to the first body bytes, total time, bytes).
async fn timed(addr: &str, body: &str) -> (Duration, Duration, usize) {
    let t = Instant::now();
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.set_nodelay(true).unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    let req = hyper::Request::builder()
        .method("POST")
        .uri("/api/generate")
        .header("host", "x")
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap();
    let resp = sender.send_request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    let mut body = resp.into_body();
    let mut first = None;
    let mut n = 0;
    while let Some(frame) = body.frame().await {
        if let Ok(d) = frame.unwrap().into_data() {
            if first.is_none() && !d.is_empty() {
                first = Some(t.elapsed());
            }
            n += d.len();
        }
    }
    (first.unwrap(), t.elapsed(), n)
}

fn p50_p90(mut v: Vec<Duration>) -> (f64, f64) {
    v.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    (ms(v[v.len() / 2]), ms(v[v.len() * 9 / 10]))
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let runner_bin = std::path::Path::new(env!("CARGO_BIN_EXE_secllama-test-runner"));
        let p = prepare(runner_bin, RunnerMode::Started, &policy_for(PROMPT)).unwrap();
        let manifest = p.reference_manifest().unwrap();
        let agent = Arc::new(Agent::start(&p.config, &p.base).unwrap());
        tokio::spawn(serve(
            agent,
            tokio::net::UnixListener::bind(&p.sock).unwrap(),
        ));
        let bridge = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let bridge_addr = bridge.local_addr().unwrap().to_string();
        tokio::spawn(secllama_host::bridge::serve(
            bridge,
            EnclaveAddr::Unix(p.sock.clone()),
            Limits::default(),
        ));
        let proxy = secllama_verifier::proxy::Proxy::start(
            &format!("http://{bridge_addr}"),
            manifest,
            None,
        )
        .await
        .unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let proxy_addr = listener.local_addr().unwrap().to_string();
        tokio::spawn(secllama_verifier::proxy::serve(proxy, listener));
        let runner_addr = p
            .config
            .runner_url
            .trim_start_matches("http://")
            .to_string();

        let body = format!(
            r#"{{"model":"tiny:latest","prompt":"{PROMPT}","options":{{"num_predict":64}}}}"#
        );
        // The first proxied request wraps a key with RSA and opens the session.
        let (_, _, n_first) = timed(&proxy_addr, &body).await;
        let (mut d_first, mut d_total, mut p_first, mut p_total) = (vec![], vec![], vec![], vec![]);
        for _ in 0..ITERS {
            let (f, t, n) = timed(&runner_addr, &body).await;
            d_first.push(f);
            d_total.push(t);
            let (f, t, m) = timed(&proxy_addr, &body).await;
            p_first.push(f);
            p_total.push(t);
            assert_eq!(n, m, "the proxy passes on exactly the runner's bytes");
            assert_eq!(n, n_first);
        }
        let (df50, df90) = p50_p90(d_first);
        let (dt50, dt90) = p50_p90(d_total);
        let (pf50, pf90) = p50_p90(p_first);
        let (pt50, pt90) = p50_p90(p_total);
        println!(
            "\n{:52} {:>9} {:>9} {:>10}",
            format!("streamed generate ({n_first} bytes), {ITERS} requests each"),
            "p50 ms",
            "p90 ms",
            "p50 ratio"
        );
        println!(
            "{:52} {df50:>9.3} {df90:>9.3} {:>10}",
            "time to first token, straight to the runner", "1.00x"
        );
        println!(
            "{:52} {pf50:>9.3} {pf90:>9.3} {:>9.2}x",
            "time to first token, proxy→bridge→enclave→runner",
            pf50 / df50
        );
        println!(
            "{:52} {dt50:>9.3} {dt90:>9.3} {:>10}",
            "total, straight to the runner", "1.00x"
        );
        println!(
            "{:52} {pt50:>9.3} {pt90:>9.3} {:>9.2}x",
            "total, proxy→bridge→enclave→runner",
            pt50 / dt50
        );
        drop(p);
    });
}
