//! Time to first token and total time of a streamed generate through the verifying proxy → bridge
//! → enclave → runner, against the same request straight to the runner
//! (`cargo bench -p secllama-tests --bench proxy_roundtrip`). Both sides use the same HTTP client
//! (hyper, one kept-alive connection per address, as the Ollama libraries' pools do; the proxy's
//! own pool to the enclave is warm after the first request); the runner paces
//! its tokens 2 ms apart, as a model would. Prints p50/p90 and the ratios (goal: ≤ 1.3× at p50 on
//! the session path — every proxied request after the first reuses the session key). Real swtpm,
//! real test runner, in-process agent, bridge and proxy, loopback only.
//!
//! With `SECLLAMA_BENCH_GGUF=<SmolLM2 GGUF>` the runner is `secllama-runner` with that real model
//! (one thread, greedy, fixed seed; 16 requests each): the goal there is ≤ 1.05× for both.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout,
    missing_docs
)]

use secllama_enclave::agent::Agent;
use secllama_enclave::service::serve;
use secllama_host::bridge::{EnclaveAddr, Limits};
use secllama_tests::bench::{KeptAlive, p50_p90, timed};
use secllama_tests::enclave::{RunnerMode, policy_for, prepare};
use std::sync::Arc;

const PROMPT: &str = "the quick brown fox jumps over the lazy dog";
const ITERS: usize = 100;
const MODEL_PROMPT: &str = "Why is the sky blue?";
const MODEL_ITERS: usize = 16;

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let gguf = std::env::var("SECLLAMA_BENCH_GGUF").ok();
        let model_arg = gguf.as_ref().map(|g| format!("smollm2:135m={g}"));
        let (p, body, iters) = match &model_arg {
            None => {
                let runner_bin =
                    std::path::Path::new(env!("CARGO_BIN_EXE_secllama-test-runner"));
                let p = prepare(runner_bin, RunnerMode::Started, &policy_for(PROMPT)).unwrap();
                let body = format!(
                    r#"{{"model":"tiny:latest","prompt":"{PROMPT}","options":{{"num_predict":64}}}}"#
                );
                (p, body, ITERS)
            }
            Some(model) => {
                let runner_bin = secllama_tests::workspace_bin("secllama-runner");
                let args = ["--listen", "127.0.0.1:0", "--threads", "1", "--model", model];
                let policy = serde_json::json!({
                    "dataset": [{"id": "q1", "prompt": MODEL_PROMPT}],
                    "models": ["smollm2:135m"], "max_prompt_bytes": 256, "max_num_predict": 64,
                    "allowed_options": ["temperature", "seed"]
                });
                let p = prepare(
                    &runner_bin,
                    RunnerMode::StartedWith(&args),
                    &policy.to_string(),
                )
                .unwrap();
                let body = serde_json::json!({
                    "model": "smollm2:135m", "prompt": MODEL_PROMPT,
                    "options": {"num_predict": 64, "temperature": 0, "seed": 42}
                });
                (p, body.to_string(), MODEL_ITERS)
            }
        };
        let manifest = p.reference_manifest().unwrap();
        let agent = Arc::new(Agent::start(&p.config, &p.base).unwrap());
        tokio::spawn(serve(
            agent,
            secllama_enclave::listener::Listener::Unix(tokio::net::UnixListener::bind(&p.sock).unwrap()),
        ));
        let bridge = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let bridge_addr = bridge.local_addr().unwrap().to_string();
        tokio::spawn(secllama_host::bridge::serve(
            bridge,
            EnclaveAddr::Unix(p.sock.clone()),
            Limits::default(),
        ));
        let proxy = secllama_client::proxy::Proxy::start(
            &format!("http://{bridge_addr}"),
            manifest,
            None,
        )
        .await
        .unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let proxy_addr = listener.local_addr().unwrap().to_string();
        tokio::spawn(secllama_client::proxy::serve(
            proxy,
            listener,
            secllama_client::proxy::ServeOptions::new(true, ""),
        ));
        let runner_addr = p
            .config
            .runner_url
            .trim_start_matches("http://")
            .to_string();

        // The first proxied request wraps a key with RSA and opens the session.
        // Both sides on kept-alive connections, as a client library's pool does.
        let mut conns = KeptAlive::default();
        let (_, _, n_first) = timed(&mut conns, &proxy_addr, &body).await.unwrap();
        timed(&mut conns, &runner_addr, &body).await.unwrap();
        let (mut d_first, mut d_total, mut p_first, mut p_total) = (vec![], vec![], vec![], vec![]);
        for _ in 0..iters {
            let (f, t, n) = timed(&mut conns, &runner_addr, &body).await.unwrap();
            d_first.push(f);
            d_total.push(t);
            let (f, t, m) = timed(&mut conns, &proxy_addr, &body).await.unwrap();
            p_first.push(f);
            p_total.push(t);
            if gguf.is_none() {
                // The real model's lines carry times and durations, so sizes vary by a few bytes.
                assert_eq!(n, m, "the proxy passes on exactly the runner's bytes");
                assert_eq!(n, n_first);
            }
        }
        let (df50, df90) = p50_p90(d_first);
        let (dt50, dt90) = p50_p90(d_total);
        let (pf50, pf90) = p50_p90(p_first);
        let (pt50, pt90) = p50_p90(p_total);
        println!(
            "\n{:52} {:>9} {:>9} {:>10}",
            format!(
                "{} ({n_first} bytes), {iters} requests each",
                if gguf.is_some() {
                    "SmolLM2 streamed generate"
                } else {
                    "streamed generate"
                }
            ),
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
