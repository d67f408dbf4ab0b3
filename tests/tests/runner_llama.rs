//! secllama-runner (llama.cpp and a real GGUF model) against peers we did not write: the official
//! `ollama` Python client (list, show, ps, generate and chat, streamed and not, greedy answers
//! identical across runs and modes, the unknown-model error) and curl (the NDJSON bytes); plus
//! raw-socket checks of the HTTP edges, the unix-socket listener, stop strings, the refusal of a
//! non-loopback listen address, and a client disconnect stopping its generation.
//!
//! One runner serves the tests of this file (started on first use, tests serialized by a lock);
//! a shell watchdog kills it when this test process exits. Needs `cargo build --release -p
//! secllama-runner` (scripts/test.sh builds every binary) and the model from
//! `bash scripts/fetch-model.sh`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test crate: a failed unwrap is a failed test

use serde_json::{Value, json};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{LazyLock, Mutex, MutexGuard};
use std::time::{Duration, Instant};

const MODEL: &str = "smollm2:135m";

fn model_path() -> PathBuf {
    secllama_tests::launch::model_gguf().unwrap()
}

fn runner_bin() -> PathBuf {
    secllama_tests::launch::bin("secllama-runner").unwrap()
}

/// A runner process and the address it printed.
struct Runner {
    child: Child,
    addr: String,
}

impl Drop for Runner {
    /// Closes the watchdog's stdin: it kills the runner and waits for it, then exits.
    fn drop(&mut self) {
        drop(self.child.stdin.take());
        let _ = self.child.wait();
    }
}

/// Starts the runner under a shell that kills it when our end of its stdin closes (this test
/// process exited), and waits for its `listening on` line.
fn start(listen: &str) -> Runner {
    let model = format!("{MODEL}={}", model_path().display());
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(r#""$0" "$@" & p=$!; cat >/dev/null; kill $p 2>/dev/null; wait $p"#)
        .arg(runner_bin())
        .args(["--listen", listen, "--model", &model])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line
        .trim()
        .strip_prefix("secllama-runner listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_string();
    Runner { child, addr }
}

static SHARED: LazyLock<Mutex<Runner>> = LazyLock::new(|| Mutex::new(start("127.0.0.1:0")));

/// The shared runner, to one test at a time (timings and the one worker stay predictable).
fn shared() -> MutexGuard<'static, Runner> {
    SHARED.lock().unwrap_or_else(|e| e.into_inner())
}

/// Sends one request on a fresh connection (`Connection: close`) and returns the stream.
fn send(addr: &str, method: &str, path: &str, body: &str) -> TcpStream {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(120))).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    s
}

/// Status line, headers (lower-cased names) and the de-chunked body of a whole response.
fn request(addr: &str, method: &str, path: &str, body: &str) -> (u16, String, Vec<u8>) {
    let mut raw = Vec::new();
    send(addr, method, path, body)
        .read_to_end(&mut raw)
        .unwrap();
    split_response(&raw)
}

fn split_response(raw: &[u8]) -> (u16, String, Vec<u8>) {
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = String::from_utf8(raw[..end].to_vec())
        .unwrap()
        .to_lowercase();
    let status: u16 = head.split(' ').nth(1).unwrap().parse().unwrap();
    let mut body = raw[end + 4..].to_vec();
    if head.contains("transfer-encoding: chunked") {
        body = dechunk(&body);
    }
    (status, head, body)
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let nl = b.windows(2).position(|w| w == b"\r\n").unwrap();
        let n = usize::from_str_radix(std::str::from_utf8(&b[..nl]).unwrap().trim(), 16).unwrap();
        if n == 0 {
            return out;
        }
        out.extend_from_slice(&b[nl + 2..nl + 2 + n]);
        b = &b[nl + 2 + n + 2..];
    }
}

fn generate(addr: &str, body: &Value) -> Value {
    let (status, _, b) = request(addr, "POST", "/api/generate", &body.to_string());
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&b));
    serde_json::from_slice(&b).unwrap()
}

fn greedy(prompt: &str, extra: Value) -> Value {
    let mut v = json!({"model": MODEL, "prompt": prompt, "stream": false,
        "options": {"temperature": 0, "seed": 1, "num_predict": 64}});
    for (k, x) in extra.as_object().unwrap() {
        v["options"][k] = x.clone();
    }
    v
}

#[test]
fn the_official_ollama_client_gets_greedy_answers_that_repeat() {
    let r = shared();
    let out = Command::new(secllama_tests::venv_python().unwrap())
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("py/runner_llama_peer.py"))
        .arg(format!("http://{}", r.addr))
        .arg(MODEL)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();

    let list = v["list"].as_array().unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["model"], MODEL);
    assert_eq!(list[0]["digest"].as_str().unwrap().len(), 64);
    assert_eq!(
        list[0]["size"].as_u64().unwrap(),
        std::fs::metadata(model_path()).unwrap().len()
    );
    let d = &list[0]["details"];
    assert_eq!(d["format"], "gguf");
    assert_eq!(d["family"], "llama");
    assert_eq!(d["families"], json!(["llama"]));
    assert_eq!(d["parameter_size"], "134.52M");
    assert_eq!(d["quantization_level"], "Q4_1");
    assert_eq!(v["show"]["details"], *d);
    assert!(
        v["show"]["template"]
            .as_str()
            .unwrap()
            .contains("<|im_start|>")
    );
    assert_eq!(v["show"]["architecture"], "llama");
    assert_eq!(v["show"]["parameter_count"], 134_515_008);
    assert_eq!(v["show"]["tokens"], Value::Null, "long arrays left out");
    assert!(v["show"]["modified_at"].is_string());
    assert_eq!(v["ps"], json!([MODEL]));
    assert!(v["version"]["version"].is_string());

    for kind in ["generate", "chat"] {
        let runs = v[kind].as_array().unwrap();
        let first = runs[0][0].as_str().unwrap();
        assert!(!first.trim().is_empty(), "{kind}: empty answer");
        for run in runs {
            assert_eq!(run[0], first, "{kind}: greedy answers differ: {v}");
            let f = &run[1];
            assert!(
                ["stop", "length"].contains(&f["done_reason"].as_str().unwrap()),
                "{f}"
            );
            let evals = f["eval_count"].as_u64().unwrap();
            assert!(evals > 0 && evals <= 64, "{f}");
            assert!(f["prompt_eval_count"].as_u64().unwrap() > 5, "{f}");
            for k in [
                "total_duration",
                "load_duration",
                "prompt_eval_duration",
                "eval_duration",
            ] {
                assert!(f[k].as_u64().unwrap() > 0, "{k}: {f}");
            }
            assert!(
                f["total_duration"].as_u64().unwrap() >= f["eval_duration"].as_u64().unwrap(),
                "{f}"
            );
        }
    }
    // The generate prompt goes through the chat template as a user message: same as chat.
    assert_eq!(v["generate"][0][0], v["chat"][0][0]);
    assert_eq!(v["unknown_model"][0], 404);
    assert_eq!(
        v["unknown_model"][1],
        "model \"no-such-model\" not found, try pulling it first"
    );
    assert_eq!(v["bad_option"][0], 400);
}

#[test]
fn a_stop_string_cuts_the_answer_before_it() {
    let r = shared();
    let prompt = "Write three sentences about the sea.";
    let full = generate(&r.addr, &greedy(prompt, json!({})));
    let text = full["response"].as_str().unwrap().to_string();
    // A word from the middle of the answer, its first occurrence well inside.
    let word = text
        .split_whitespace()
        .map(|w| w.trim_matches(|c: char| !c.is_alphanumeric()))
        .filter(|w| w.len() >= 4)
        .find(|w| text.find(w).unwrap() > 10)
        .unwrap_or_else(|| panic!("no usable word in {text:?}"))
        .to_string();
    let cut = &text[..text.find(&word).unwrap()];
    let stopped = generate(&r.addr, &greedy(prompt, json!({"stop": [word]})));
    assert_eq!(stopped["response"], cut, "stop {word:?} in {text:?}");
    assert_eq!(stopped["done_reason"], "stop");
    assert!(stopped["eval_count"].as_u64().unwrap() < full["eval_count"].as_u64().unwrap());

    // Streamed: the same text, and nothing of the stop string in any chunk.
    let mut body = greedy(prompt, json!({"stop": [word]}));
    body["stream"] = json!(true);
    let (status, head, b) = request(&r.addr, "POST", "/api/generate", &body.to_string());
    assert_eq!(status, 200);
    assert!(
        head.contains("content-type: application/x-ndjson"),
        "{head}"
    );
    let lines: Vec<Value> = b
        .split(|&c| c == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_slice(l).unwrap())
        .collect();
    let streamed: String = lines
        .iter()
        .map(|l| l["response"].as_str().unwrap())
        .collect();
    assert_eq!(streamed, cut);
    assert_eq!(lines.last().unwrap()["done_reason"], "stop");
}

#[test]
fn a_client_that_disconnects_stops_its_generation() {
    let r = shared();
    // A prompt the model continues for a long time; num_predict 300 shows it does not stop early.
    let prompt = "1, 2, 3, 4, 5, 6, 7, 8, 9, 10,";
    let long = |n: i64, stream: bool| {
        json!({"model": MODEL, "prompt": prompt, "raw": true, "stream": stream,
            "options": {"temperature": 0, "num_predict": n, "repeat_penalty": 1.0, "num_ctx": 4096}})
    };
    let probe = generate(&r.addr, &long(300, false));
    assert_eq!(probe["done_reason"], "length", "{probe}");
    assert_eq!(probe["eval_count"], 300);
    let per_token = probe["eval_duration"].as_u64().unwrap() / 300;

    // Start 3000 tokens (minutes of work), read one chunk, hang up.
    let mut s = send(
        &r.addr,
        "POST",
        "/api/generate",
        &long(3000, true).to_string(),
    );
    let mut buf = [0u8; 512];
    let n = s.read(&mut buf).unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).contains("\"done\":false"));
    drop(s);

    // The worker is free again long before the 3000 tokens would have been made.
    let t = Instant::now();
    let after = generate(&r.addr, &greedy("Say hi.", json!({"num_predict": 8})));
    let waited = t.elapsed();
    let budget = Duration::from_nanos(per_token * 3000) / 4;
    assert!(
        waited < budget,
        "the next request took {waited:?} (3000 tokens take about {:?})",
        Duration::from_nanos(per_token * 3000)
    );
    assert!(after["eval_count"].as_u64().unwrap() <= 8);
}

#[test]
fn curl_gets_ndjson_and_the_http_edges_are_ollamas() {
    let r = shared();
    let body = json!({"model": "smollm2:135m", "prompt": "Name a color.",
        "options": {"temperature": 0, "num_predict": 16}});
    let out = Command::new("curl")
        .args(["-sS", "-N", "-D", "-", "--max-time", "120"])
        .arg(format!("http://{}/api/generate", r.addr))
        .args(["-d", &body.to_string()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let raw = String::from_utf8(out.stdout).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(
        head.to_lowercase()
            .contains("content-type: application/x-ndjson"),
        "{head}"
    );
    assert!(body.ends_with("}\n"), "{body:?}");
    let lines: Vec<&str> = body.lines().collect();
    assert!(lines.len() >= 2, "{body}");
    for (i, line) in lines.iter().enumerate() {
        let v: Value = serde_json::from_str(line).unwrap();
        let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        // Ollama's field order, byte for byte around the values.
        assert!(
            line.starts_with(r#"{"model":"smollm2:135m","created_at":""#),
            "{line}"
        );
        if i + 1 < lines.len() {
            assert!(line.contains(r#"Z","response":""#), "{line}");
            assert!(line.ends_with(r#"","done":false}"#), "{line}");
            assert_eq!(keys.len(), 4, "{line}");
            assert_eq!(v["done"], false);
        } else {
            assert!(
                line.contains(r#"Z","response":"","done":true,"done_reason":""#),
                "{line}"
            );
            for k in [
                "done_reason",
                "total_duration",
                "load_duration",
                "prompt_eval_count",
                "prompt_eval_duration",
                "eval_count",
                "eval_duration",
            ] {
                assert!(keys.contains(&k), "{k} missing in {line}");
            }
        }
    }

    // The edges.
    let (s, head, b) = request(&r.addr, "GET", "/", "");
    assert_eq!((s, b.as_slice()), (200, b"Ollama is running".as_slice()));
    assert!(head.contains("content-type: text/plain"));
    let (s, _, b) = request(&r.addr, "HEAD", "/", "");
    assert_eq!((s, b.len()), (200, 0));
    let (s, _, _) = request(&r.addr, "GET", "/api/nothing", "");
    assert_eq!(s, 404);
    let (s, head, b) = request(&r.addr, "GET", "/api/generate", "");
    assert_eq!(s, 405);
    assert!(head.contains("allow: post"), "{head}");
    assert!(serde_json::from_slice::<Value>(&b).unwrap()["error"].is_string());
    let (s, _, b) = request(&r.addr, "POST", "/api/generate", "{not json");
    assert_eq!(s, 400);
    assert!(serde_json::from_slice::<Value>(&b).unwrap()["error"].is_string());
    let (s, _, b) = request(&r.addr, "POST", "/api/chat", r#"{"messages":[]}"#);
    assert_eq!(
        (s, serde_json::from_slice::<Value>(&b).unwrap()),
        (400, json!({"error": "model is required"}))
    );
    // A body over 1 MiB is refused on its Content-Length (only the head is sent, so the refusal
    // cannot race a half-written body).
    let mut c = TcpStream::connect(&r.addr).unwrap();
    write!(
        c,
        "POST /api/generate HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        2 << 20
    )
    .unwrap();
    let mut raw = Vec::new();
    c.read_to_end(&mut raw).unwrap();
    assert_eq!(split_response(&raw).0, 413);
    // A prompt longer than the context: 400, not a silent truncation.
    let long = json!({"model": MODEL, "prompt": "word ".repeat(400), "stream": false,
        "options": {"num_ctx": 128}});
    let (s, _, b) = request(&r.addr, "POST", "/api/generate", &long.to_string());
    assert_eq!(s, 400, "{}", String::from_utf8_lossy(&b));
    // An empty prompt only "loads" the model.
    let v = generate(&r.addr, &json!({"model": "SmolLM2:135m", "prompt": ""}));
    assert_eq!(v["done_reason"], "load");
}

#[test]
fn a_unix_socket_listener_serves_the_api() {
    use std::os::unix::net::UnixStream;
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("runner.sock");
    let r = start(&format!("unix:{}", sock.display()));
    assert_eq!(r.addr, format!("unix:{}", sock.display()));
    let body = json!({"model": MODEL, "messages": [{"role": "user", "content": "Hello!"}],
        "stream": false, "options": {"temperature": 0, "num_predict": 8}})
    .to_string();
    let mut s = UnixStream::connect(&sock).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(120))).unwrap();
    write!(s, "POST /api/chat HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len()).unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let (status, head, b) = split_response(&raw);
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&b));
    assert!(head.contains("content-type: application/json"), "{head}");
    let v: Value = serde_json::from_slice(&b).unwrap();
    assert_eq!(v["message"]["role"], "assistant");
    assert!(!v["message"]["content"].as_str().unwrap().is_empty());
    assert!(v["eval_count"].as_u64().unwrap() <= 8);
    drop(r);
}

#[test]
fn a_listen_address_off_loopback_is_refused_at_start() {
    let model = format!("{MODEL}={}", model_path().display());
    for addr in ["0.0.0.0:0", "192.0.2.1:80", "[::]:0", "vsock:3:5000"] {
        let out = Command::new(runner_bin())
            .args(["--listen", addr, "--model", &model])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{addr}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("expected a loopback address") && err.contains(addr),
            "{addr}: {err}"
        );
        assert!(out.stdout.is_empty());
    }
    // A model file that is not a GGUF is refused too, naming the file.
    let out = Command::new(runner_bin())
        .args(["--listen", "127.0.0.1:0", "--model"])
        .arg(format!("x={}", runner_bin().display()))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a GGUF file"));
}
