//! The proxy's receipt log audit against a hostile host (issue 15), every component real: the
//! agent (real swtpm, test runner), `secllama-verify proxy --heads FILE` (a real process) and curl
//! as the client. Between proxy and agent sits the host's relay, which passes every byte through
//! (sealed requests and answers untouched) but lies about the log:
//! - **rollback**: once the proxy kept a newer head, the relay answers `GET /log/head` with the
//!   first head it saw (what a host that restored an older copy of the log shows);
//! - **edited entry**: the relay changes one hash of each inclusion proof (what an edited,
//!   dropped or reordered entry looks like: the path no longer leads to the signed root).
//!
//! Each time the answer whose receipt was verified still reaches the client, the background audit
//! then fails, and from then on the proxy answers `502` naming the failure (never another
//! answer). A new proxy started on the same heads file meets the stale head at its first check.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test crate: a failed unwrap is a failed test

use secllama_tests::enclave::{Serving, policy_for, read_request, serving};
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const PROMPT: &str = "why is the sky blue";

#[derive(Debug, Clone, Copy)]
enum Lie {
    /// `GET /log/head` answered with the first head recorded.
    StaleHead,
    /// One hex digit of each `GET /log/proof` answer's path changed.
    EditedProof,
}

/// The host's relay (TCP → the agent's socket, one exchange per connection); lies as `lie` says
/// once `on` is set.
fn lying_relay(f: &Serving, lie: Lie, on: Arc<AtomicBool>) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let _guard = f.rt.enter();
    let std_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    std_listener.set_nonblocking(true).unwrap();
    let addr = std_listener.local_addr().unwrap();
    let listener = tokio::net::TcpListener::from_std(std_listener).unwrap();
    let sock = f.p.sock.clone();
    let first_head: Arc<Mutex<Option<Vec<u8>>>> = Arc::default();
    f.rt.spawn(async move {
        while let Ok((mut tcp, _)) = listener.accept().await {
            let (sock, first_head, on) = (sock.clone(), first_head.clone(), on.clone());
            tokio::spawn(async move {
                let Some(mut req) = read_request(&mut tcp).await else {
                    return;
                };
                if let Some(at) = req.windows(2).position(|w| w == b"\r\n") {
                    req.splice(at..at, b"\r\nConnection: close".iter().copied());
                }
                let lying = on.load(Ordering::SeqCst);
                let is_head = req.starts_with(b"GET /log/head ");
                if lying && is_head && matches!(lie, Lie::StaleHead) {
                    let stale = first_head.lock().unwrap().clone().unwrap();
                    let _ = tcp.write_all(&stale).await;
                    return;
                }
                let Ok(mut unix) = tokio::net::UnixStream::connect(&sock).await else {
                    return;
                };
                if unix.write_all(&req).await.is_err() {
                    return;
                }
                let mut answer = Vec::new();
                if unix.read_to_end(&mut answer).await.is_err() {
                    return;
                }
                if is_head {
                    first_head.lock().unwrap().get_or_insert(answer.clone());
                }
                if lying && req.starts_with(b"GET /log/proof?") && matches!(lie, Lie::EditedProof) {
                    // The first hash of "path": one hex digit changed, the length kept.
                    let text = String::from_utf8_lossy(&answer).into_owned();
                    let at = text.find("\"path\":[\"").unwrap() + "\"path\":[\"".len();
                    let digit = if &text[at..=at] == "0" { "1" } else { "0" };
                    answer = format!("{}{digit}{}", &text[..at], &text[at + 1..]).into_bytes();
                }
                let _ = tcp.write_all(&answer).await;
            });
        }
    });
    format!("http://{addr}")
}

/// One non-streamed generate through the proxy with curl: (status, body).
fn generate(addr: &str) -> (u16, String) {
    let body = format!(
        r#"{{"model":"tiny:latest","prompt":"{PROMPT}","stream":false,"options":{{"num_predict":4}}}}"#
    );
    let out = Command::new("curl")
        .args(["-s", "-w", "\n%{http_code}", "-X", "POST", "-d", &body])
        .arg(format!("http://{addr}/api/generate"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap();
    (code.parse().unwrap(), body.to_string())
}

/// Waits (at most 20 s) until the heads file holds `n` lines.
fn wait_heads(heads: &Path, n: usize) {
    let until = Instant::now() + Duration::from_secs(20);
    while Instant::now() < until {
        let have = std::fs::read_to_string(heads).map_or(0, |s| s.lines().count());
        if have >= n {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("the proxy kept fewer than {n} heads in {}", heads.display());
}

/// Sends generates until one gets 502 (at most 20 s); returns its body.
fn until_502(addr: &str) -> String {
    let until = Instant::now() + Duration::from_secs(20);
    while Instant::now() < until {
        let (code, body) = generate(addr);
        if code == 502 {
            return body;
        }
        assert_eq!(code, 200, "before the audit failed: {body}");
        std::thread::sleep(Duration::from_millis(300));
    }
    panic!("the proxy kept answering although the log lied");
}

#[test]
fn the_proxy_stops_serving_when_the_host_rolls_back_or_edits_the_log() {
    let f = serving(
        Path::new(env!("CARGO_BIN_EXE_secllama-test-runner")),
        &policy_for(PROMPT),
    )
    .unwrap();
    for lie in [Lie::StaleHead, Lie::EditedProof] {
        let on = Arc::new(AtomicBool::new(false));
        let url = lying_relay(&f, lie, on.clone());
        let receipts = f.p.dir.path().join(format!("{lie:?}.receipts.jsonl"));
        let heads = f.p.dir.path().join(format!("{lie:?}.heads.jsonl"));
        let heads_arg = heads.to_str().unwrap();
        let (proxy, addr) = secllama_tests::launch::proxy_with(
            &url,
            &f.manifest,
            &receipts,
            3600,
            &["--heads", heads_arg],
        )
        .unwrap();
        // Honest at first: answers, and the audit keeps a head per batch.
        assert_eq!(generate(&addr).0, 200, "{lie:?}");
        wait_heads(&heads, 1);
        // The agent signs a new head when the last one is older than its interval.
        std::thread::sleep(Duration::from_millis(
            secllama_enclave::agent::HEAD_INTERVAL_MS + 100,
        ));
        assert_eq!(generate(&addr).0, 200, "{lie:?}");
        wait_heads(&heads, 2);
        on.store(true, Ordering::SeqCst);
        std::thread::sleep(Duration::from_millis(
            secllama_enclave::agent::HEAD_INTERVAL_MS + 100,
        ));
        let why = until_502(&addr);
        let e: serde_json::Value = serde_json::from_str(&why).unwrap();
        let e = e["error"].as_str().unwrap();
        assert!(e.contains("receipt log failed its audit"), "{lie:?}: {e}");
        let expected = match lie {
            Lie::StaleHead => "rolled back",
            Lie::EditedProof => "is not in the signed head",
        };
        assert!(
            e.contains(expected),
            "{lie:?}: expected {expected:?} in {e}"
        );
        // And it stays closed.
        assert_eq!(generate(&addr).0, 502, "{lie:?}");
        drop(proxy);

        if let Lie::StaleHead = lie {
            // A new proxy on the same heads file: the stale head fails its first check.
            let (_proxy, addr) = secllama_tests::launch::proxy_with(
                &url,
                &f.manifest,
                &receipts,
                3600,
                &["--heads", heads_arg],
            )
            .unwrap();
            let why = until_502(&addr);
            assert!(why.contains("rolled back"), "{why}");
        }
    }
}
