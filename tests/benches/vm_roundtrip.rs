//! VM mode vs process mode (`cargo bench -p secllama-tests --bench vm_roundtrip`, issue 13):
//! `secllama launch` boots a VM-mode enclave with the test runner (TCG here) and prints its boot
//! stages (QEMU start, firmware and kernel, the init's stages, agent ready) and the time to the
//! first verified attestation; then a small sealed generate and a 10 MiB sealed stream through
//! bridge → vhost-device-vsock → guest, against the same through bridge → unix socket to an
//! in-process agent (process mode), as p50 ratios. Loopback and the backend's unix socket only.
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
use secllama_host::bridge::{EnclaveAddr, Limits};
use secllama_protocol::seal::{
    RequestContext, RequestPlaintext, ResponseKeys, StreamOpener, seal_request,
    seal_request_session,
};
use secllama_tests::bench::{KeptAlive, attestation, p50_p90};
use secllama_tests::enclave::{RunnerMode, policy_for, prepare};
use secllama_tests::launch::launch_with_args;
use std::sync::Arc;
use std::time::{Duration, Instant};

const PROMPT: &str = "the quick brown fox jumps over the lazy dog";
const SMALL: usize = 50;
const BIG: usize = 5;
const BIG_BYTES: &str = "10485760";

/// Small and big sealed requests to the enclave API at `addr`: (small durations, big durations).
async fn measure(addr: &str) -> (Vec<Duration>, Vec<Duration>) {
    let (v, doc_hex) = attestation(addr).await.unwrap();
    let path = "/v1/sealed/api/generate";
    let ctx = RequestContext {
        method: "POST",
        path,
        attestation_digest: v.digest,
    };
    let mut conns = KeptAlive::default();
    let mut send = async |key: Option<&secllama_protocol::seal::ContentKey>, stream: bool| {
        let body = format!(
            r#"{{"model":"tiny:latest","prompt":"{PROMPT}","stream":{stream},"options":{{"num_predict":16}}}}"#
        );
        let pt = RequestPlaintext::new(body.into_bytes(), now_ms(), &mut OsRng).unwrap();
        let (sealed, key) = match key {
            Some(k) => (
                seal_request_session(k, &ctx, &pt, &mut OsRng).unwrap(),
                k.clone(),
            ),
            None => seal_request(&v.payload.keys.encryption_spki, &ctx, &pt, &mut OsRng).unwrap(),
        };
        let resp = conns
            .post(
                addr,
                path,
                &[(ATTESTATION_HEADER, doc_hex.as_str())],
                sealed,
            )
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        let answer = resp.into_body().collect().await.unwrap().to_bytes();
        let mut o = StreamOpener::new(ResponseKeys::derive(&key, &pt.id).unwrap());
        let chunks = o.push(&answer).unwrap();
        o.finish().unwrap();
        (key, chunks.iter().map(|c| c.data.len()).sum::<usize>())
    };
    let (key, _) = send(None, false).await;
    let mut small = Vec::new();
    for _ in 0..SMALL {
        let t = Instant::now();
        send(Some(&key), false).await;
        small.push(t.elapsed());
    }
    let mut big = Vec::new();
    for _ in 0..BIG {
        let t = Instant::now();
        let (_, n) = send(Some(&key), true).await;
        big.push(t.elapsed());
        assert!(n >= 10 * 1024 * 1024, "opened {n} bytes");
    }
    (small, big)
}

fn main() {
    let dir = secllama_tests::launch::artifact_dir().unwrap();
    let runner = std::path::PathBuf::from(env!("CARGO_BIN_EXE_secllama-test-runner"));
    let config = secllama_tests::vm::test_runner_config(
        dir.path(),
        &runner,
        &["--answer-bytes", BIG_BYTES],
        b"tiny weights",
        &policy_for(PROMPT),
    )
    .unwrap();

    let t = Instant::now();
    let (_launcher, lines, bridge) = launch_with_args(&config, &[]).unwrap();
    let booted = t.elapsed();
    let out = lines.lock().map(|l| l.join("\n")).unwrap_or_default();
    let stages = out
        .lines()
        .find_map(|l| l.strip_prefix("vm: boot stages: "))
        .unwrap_or("(not reported)");
    println!(
        "\nVM launch (TCG here), `secllama launch` to bridge ready: {:.1} s",
        booted.as_secs_f64()
    );
    println!("  boot stages from QEMU's start: {stages}");
    let state = dir.path().join("state");
    let m = dir.path().join("manifest.toml");
    let t = Instant::now();
    let o = secllama_tests::vm::measure_vm(
        &config,
        Some(&state.join("firmware.log")),
        &m,
        Some(&state.join("ak.pub")),
    )
    .unwrap();
    assert!(o.status.success());
    let measured = t.elapsed();
    let t = Instant::now();
    let a = std::process::Command::new(secllama_tests::launch::bin("secllama-verify").unwrap())
        .args(["attest", "--url", &format!("http://{bridge}"), "--manifest"])
        .arg(&m)
        .output()
        .unwrap();
    assert!(a.status.success(), "{}", String::from_utf8_lossy(&a.stdout));
    println!(
        "  secllama measure vm (image rebuilt, PCR 4/9 predicted): {:.1} s; first verified attestation: {:.2} s",
        measured.as_secs_f64(),
        t.elapsed().as_secs_f64()
    );

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (vm_small, vm_big) = rt.block_on(measure(&bridge));

    // Process mode: the same runner, an in-process agent behind the same bridge code.
    let args = ["--answer-bytes", BIG_BYTES];
    let prepared = prepare(&runner, RunnerMode::StartedWith(&args), &policy_for(PROMPT)).unwrap();
    let (p_small, p_big) = rt.block_on(async {
        let agent = Arc::new(Agent::start(&prepared.config, &prepared.base).unwrap());
        tokio::spawn(serve(
            agent,
            secllama_enclave::listener::Listener::Unix(
                tokio::net::UnixListener::bind(&prepared.sock).unwrap(),
            ),
        ));
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap().to_string();
        tokio::spawn(secllama_host::bridge::serve(
            l,
            EnclaveAddr::Unix(prepared.sock.clone()),
            Limits::default(),
        ));
        measure(&addr).await
    });

    println!(
        "\n{:56} {:>9} {:>9} {:>10}",
        "sealed requests via bridge", "p50 ms", "p90 ms", "VM/process"
    );
    for (name, p, v) in [
        (
            format!("small generate, {SMALL} requests"),
            p_small,
            vm_small,
        ),
        (format!("10 MiB stream, {BIG} requests"), p_big, vm_big),
    ] {
        let (pa, pb) = p50_p90(p);
        let (va, vb) = p50_p90(v);
        println!(
            "{:56} {pa:>9.1} {pb:>9.1} {:>10}",
            format!("{name}: process mode (unix socket)"),
            "1.00x"
        );
        println!(
            "{:56} {va:>9.1} {vb:>9.1} {:>9.2}x",
            format!("{name}: VM mode (vsock, TCG)"),
            va / pa
        );
    }
}
