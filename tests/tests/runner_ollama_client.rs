//! The test runner speaks Ollama's API well enough for the official `ollama` Python client (from the
//! venv `scripts/setup.sh` makes): generate and chat, streaming and not, the model list, and the
//! error for an unknown model. Its crash and stall switches do what the enclave tests rely on.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test crate: a failed unwrap is a failed test

use secllama_tests::enclave::{Reaped, start_runner};
use secllama_tests::runner::{answer_tokens, stream_lines};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

/// The runner process (reaped on drop) and its address.
struct Runner(Reaped, String);

fn start(args: &[&str]) -> Runner {
    let (child, addr) = start_runner(
        std::path::Path::new(env!("CARGO_BIN_EXE_secllama-test-runner")),
        args,
    )
    .unwrap();
    Runner(child, addr)
}

fn python() -> PathBuf {
    secllama_tests::venv_python().unwrap()
}

#[test]
fn the_official_ollama_client_talks_to_the_runner() {
    let r = start(&[]);
    let prompt = "why is the sky blue";
    let out = Command::new(python())
        .arg(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("py/ollama_peer.py"))
        .arg(format!("http://{}", r.1))
        .arg(prompt)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let tokens = answer_tokens(prompt);
    assert_eq!(v["generate"], tokens.concat());
    assert_eq!(
        v["generate_stream"].as_array().unwrap().len(),
        tokens.len() + 1,
        "tokens then the final object"
    );
    assert_eq!(v["chat"], tokens.concat());
    assert_eq!(
        v["chat_stream"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t.as_str().unwrap())
            .collect::<String>(),
        tokens.concat()
    );
    assert_eq!(v["models"], serde_json::json!(["tiny:latest"]));
    assert_eq!(v["unknown_model"], 404);
}

fn post(addr: &str, path: &str, body: &str) -> TcpStream {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(s, "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len()).unwrap();
    s
}

#[test]
fn streamed_bytes_are_ollamas_ndjson_and_faults_work() {
    let r = start(&[]);
    let mut s = post(
        &r.1,
        "/api/generate",
        r#"{"model":"tiny:latest","prompt":"a b c"}"#,
    );
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    for line in stream_lines(false, &answer_tokens("a b c")) {
        assert!(raw.contains(&line), "missing {line} in {raw}");
    }
    drop(r);

    // Crash after one chunk: the process exits and the stream ends early.
    let mut r = start(&["--crash-after", "1"]);
    let mut s = post(
        &r.1,
        "/api/generate",
        r#"{"model":"tiny:latest","prompt":"a b c"}"#,
    );
    let mut raw = String::new();
    let _ = s.read_to_string(&mut raw);
    assert!(raw.matches("\"done\":false").count() <= 1, "{raw}");
    assert!(!raw.contains("\"done\":true"));
    let status = r.0.0.wait().unwrap();
    assert_eq!(status.code(), Some(3));

    // Stall after one chunk: the first chunk arrives, then nothing (the read times out).
    let r = start(&["--stall-after", "1"]);
    let mut s = post(
        &r.1,
        "/api/chat",
        r#"{"model":"tiny:latest","messages":[{"role":"user","content":"a b c"}]}"#,
    );
    s.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let mut buf = vec![0u8; 4096];
    let mut got = Vec::new();
    loop {
        match s.read(&mut buf) {
            Ok(0) => panic!("stream ended instead of stalling"),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(_) => break, // timed out: stalled
        }
    }
    let text = String::from_utf8_lossy(&got);
    assert_eq!(text.matches("\"done\":false").count(), 1, "{text}");
}
