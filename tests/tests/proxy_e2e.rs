//! The verifying local proxy (`secllama-verify proxy`, a real process) in front of the real agent
//! (real swtpm, test runner): real clients talk to it unmodified — ollama-python, ollama-js, curl,
//! LangChain (langchain-ollama) and the official `openai` client on the OpenAI-compatible API.
//! Checks: the client gets the runner's answers (generate and chat, streaming and not) and every
//! answer left a verified receipt in the receipts file; curl gets the same bytes the runner sends
//! for the same request; a prompt outside the dataset is refused; unknown paths get Ollama's 404
//! shape; a manifest that does not match stops the proxy from starting; an enclave restarted with
//! new keys is re-attested transparently; an enclave replaced by one with another policy gets 503
//! and nothing forwarded.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test crate: a failed unwrap is a failed test

use secllama_enclave::agent::Agent;
use secllama_measurements::manifest::Manifest;
use secllama_protocol::receipt::verify_receipt;
use secllama_tests::enclave::{Prepared, Reaped, Serving, policy_for, read_request, serving};
use secllama_tests::runner::answer_tokens;
use secllama_tests::workspace_bin;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

const PROMPT: &str = "why is the sky blue";

/// The agent with the test runner and the one-prompt policy, serving.
type Fixture = Serving;

fn fixture() -> Fixture {
    let runner = Path::new(env!("CARGO_BIN_EXE_secllama-test-runner"));
    serving(runner, &policy_for(PROMPT)).unwrap()
}

fn start_agent(
    rt: &tokio::runtime::Runtime,
    p: &Prepared,
) -> (Arc<Agent>, tokio::task::JoinHandle<std::io::Result<()>>) {
    secllama_tests::enclave::start_agent(rt, p).unwrap()
}

/// Starts the proxy; returns it and its address, or its output if it exited.
fn proxy(url: &str, manifest: &Path, receipts: &Path) -> Result<(Reaped, String), String> {
    proxy_every(url, manifest, receipts, 3600)
}

/// [`proxy`], re-attesting every `secs` seconds.
fn proxy_every(
    url: &str,
    manifest: &Path,
    receipts: &Path,
    secs: u64,
) -> Result<(Reaped, String), String> {
    secllama_tests::launch::proxy(url, manifest, receipts, secs)
}

fn python() -> PathBuf {
    secllama_tests::venv_python().unwrap()
}

/// Runs a peer program to completion; its stdout as JSON (it must succeed).
fn json_of(mut c: Command) -> serde_json::Value {
    let out = c.output().unwrap();
    assert!(
        out.status.success(),
        "{:?}: {}{}",
        c.get_program(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn ollama_peer(addr: &str) -> serde_json::Value {
    py_peer("ollama_peer.py", &[&format!("http://{addr}"), PROMPT])
}

/// Runs `tests/js/ollama_peer.cjs` (the official ollama-js client) against the proxy at `addr`.
fn ollama_js(addr: &str, mode: &str) -> serde_json::Value {
    let mut c = Command::new("node");
    c.arg(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("js/ollama_peer.cjs"))
        .arg(secllama_tests::js_modules().unwrap())
        .arg(format!("http://{addr}"))
        .arg(PROMPT)
        .arg(mode);
    json_of(c)
}

fn curl(addr: &str, path: &str, body: Option<&str>) -> (u16, Vec<u8>) {
    let mut c = Command::new("curl");
    c.args(["-s", "-o", "-", "-w", "\n%{http_code}"]);
    if let Some(b) = body {
        c.args([
            "-X",
            "POST",
            "-H",
            "Content-Type: application/json",
            "-d",
            b,
        ]);
    }
    let out = c.arg(format!("http://{addr}{path}")).output().unwrap();
    let mut raw = out.stdout;
    let pos = raw.iter().rposition(|b| *b == b'\n').unwrap();
    let code = std::str::from_utf8(&raw[pos + 1..])
        .unwrap()
        .parse()
        .unwrap();
    raw.truncate(pos);
    (code, raw)
}

#[test]
fn ollama_clients_get_attested_sealed_answers_through_the_proxy() {
    let mut f = fixture();
    let url = format!("unix:{}", f.p.sock.display());
    let receipts = f.p.dir.path().join("client-receipts.jsonl");
    let (_proxy, addr) = proxy(&url, &f.manifest, &receipts).unwrap();

    // The official Python client, unmodified.
    let v = ollama_peer(&addr);
    let answer = answer_tokens(PROMPT).concat();
    assert_eq!(v["generate"], answer);
    assert_eq!(v["chat"], answer);
    let joined = |k: &str| -> String {
        v[k].as_array()
            .unwrap()
            .iter()
            .map(|t| t.as_str().unwrap())
            .collect()
    };
    assert_eq!(joined("generate_stream"), answer);
    assert_eq!(joined("chat_stream"), answer);
    assert_eq!(v["models"], serde_json::json!(["tiny:latest"]));
    assert_eq!(v["unknown_model"], 403, "the policy refuses other models");

    // Every answer (generate, chat, streaming and not, tags) left a verified receipt.
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(&receipts)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 5, "{lines:?}");

    // The official JavaScript client (ollama-js), unmodified: complete answers, marked done.
    for mode in ["stream", "single", "chat-stream"] {
        let js = ollama_js(&addr, mode);
        assert!(js["error"].is_null(), "{mode}: {js}");
        assert_eq!(js["response"], answer.as_str(), "{mode}: {js}");
        assert_eq!(js["done"], true, "{mode}: {js}");
    }
    assert_eq!(
        ollama_js(&addr, "list")["parts"],
        serde_json::json!(["tiny:latest"])
    );
    let signing = f.agent.signing.public();
    let mut indexes = Vec::new();
    for l in &lines {
        let r = verify_receipt(
            &hex::decode(l["receipt"].as_str().unwrap()).unwrap(),
            &signing,
        )
        .unwrap();
        assert_eq!(r.log_index, l["log_index"].as_u64().unwrap());
        assert_eq!(l["request_id"].as_str().unwrap().len(), 32);
        indexes.push(r.log_index);
    }
    indexes.dedup();
    assert_eq!(indexes.len(), 5, "distinct log positions");

    // curl gets exactly the bytes the runner sends for the same request.
    let runner =
        f.p.config
            .runner_url
            .trim_start_matches("http://")
            .to_string();
    for body in [
        format!(
            r#"{{"model":"tiny:latest","prompt":"{PROMPT}","stream":false,"options":{{"num_predict":64}}}}"#
        ),
        format!(r#"{{"model":"tiny:latest","prompt":"{PROMPT}","options":{{"num_predict":64}}}}"#),
    ] {
        let (code, via_proxy) = curl(&addr, "/api/generate", Some(&body));
        let (runner_code, direct) = curl(&runner, "/api/generate", Some(&body));
        assert_eq!((code, runner_code), (200, 200));
        assert_eq!(
            String::from_utf8_lossy(&via_proxy),
            String::from_utf8_lossy(&direct)
        );
    }
    // Outside the dataset: refused in Ollama's error shape, naming the rule.
    let (code, body) = curl(
        &addr,
        "/api/generate",
        Some(
            r#"{"model":"tiny:latest","prompt":"tell me a secret","stream":false,"options":{"num_predict":8}}"#,
        ),
    );
    assert_eq!(code, 403);
    let e: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert!(e["error"].as_str().unwrap().contains("dataset"), "{e}");
    // A member given twice (issue 12): the runner's decoder would merge what the policy's saw
    // once; refused at the enclave, naming the duplicate.
    let twice = format!(
        r#"{{"model":"tiny:latest","prompt":"{PROMPT}","stream":false,"options":{{"num_predict":8,"temperature":2,"num_ctx":1,"stop":["the"]}},"options":{{"num_predict":8}}}}"#
    );
    let (code, body) = curl(&addr, "/api/generate", Some(&twice));
    assert_eq!(code, 403, "{}", String::from_utf8_lossy(&body));
    let e: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert!(
        e["error"]
            .as_str()
            .unwrap()
            .contains(r#"duplicate member "options" in $"#),
        "{e}"
    );
    // Neutral fields (issue 12 item 11): LangChain's always-sent `"format":""` and a
    // `keep_alive` are served like the request without them.
    let langchain = format!(
        r#"{{"model":"tiny:latest","prompt":"{PROMPT}","stream":false,"format":"","keep_alive":"5m","options":{{"num_predict":8}}}}"#
    );
    let (code, body) = curl(&addr, "/api/generate", Some(&langchain));
    assert_eq!(code, 200, "{}", String::from_utf8_lossy(&body));
    // Ollama's heartbeats (issue 12 item 7) and an Ollama version clients can gate on (item 8).
    let (code, body) = curl(&addr, "/", None);
    assert_eq!((code, body.as_slice()), (200, &b"Ollama is running"[..]));
    for path in ["/", "/api/version", "/api/tags"] {
        let out = Command::new("curl")
            .args(["-sS", "-I", "-o", "/dev/null", "-w", "%{http_code}"])
            .arg(format!("http://{addr}{path}"))
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), "200", "HEAD {path}");
    }
    let (code, body) = curl(&addr, "/api/version", None);
    assert_eq!(code, 200);
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let version = v["version"].as_str().unwrap();
    let parts: Vec<u32> = version.split('.').map(|p| p.parse().unwrap()).collect();
    assert!(
        parts >= vec![0, 6, 4],
        "an Ollama version clients accept: {version}"
    );
    // Unknown paths: Ollama's 404 shape.
    let (code, body) = curl(&addr, "/api/nothing", None);
    assert_eq!(code, 404);
    assert!(serde_json::from_slice::<serde_json::Value>(&body).unwrap()["error"].is_string());

    // Offline: the stored receipts verify against the saved attestation document, with their log
    // positions; a tampered receipt does not.
    let doc = f.p.dir.path().join("doc.cose");
    let a = Command::new(workspace_bin("secllama-verify"))
        .args(["attest", "--format", "text", "--url", &url, "--manifest"])
        .arg(&f.manifest)
        .arg("--save")
        .arg(&doc)
        .output()
        .unwrap();
    assert!(a.status.success(), "{}", String::from_utf8_lossy(&a.stdout));
    let check = |file: &Path| {
        Command::new(workspace_bin("secllama-verify"))
            .args(["receipt", "--receipts"])
            .arg(file)
            .arg("--attestation")
            .arg(&doc)
            .output()
            .unwrap()
    };
    let r = check(&receipts);
    let report = String::from_utf8_lossy(&r.stdout).to_string();
    assert!(r.status.success(), "{report}");
    assert!(report.contains("12 verified, 0 failed"), "{report}");
    assert!(report.contains("log index 0,"), "{report}");
    let text = std::fs::read_to_string(&receipts).unwrap();
    let mut first: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    let mut bytes = hex::decode(first["receipt"].as_str().unwrap()).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    first["receipt"] = hex::encode(bytes).into();
    let tampered = f.p.dir.path().join("tampered.jsonl");
    std::fs::write(&tampered, format!("{first}\n")).unwrap();
    let r = check(&tampered);
    assert_eq!(r.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&r.stdout).contains("FAIL line 1"),
        "{}",
        String::from_utf8_lossy(&r.stdout)
    );

    // The proxy's status endpoint is the EAR.
    let (code, ear) = curl(&addr, "/secllama/attestation", None);
    assert_eq!(code, 200);
    let ear: serde_json::Value = serde_json::from_slice(&ear).unwrap();
    assert_eq!(ear["submods"]["tpm"]["ear.status"], "affirming");
    assert!(
        ear["submods"]["enclave"]["ear.appraisal-policy-id"]
            .as_str()
            .unwrap()
            .starts_with("sha256:")
    );

    // The enclave restarts with new keys: the proxy re-attests and carries on.
    let before = curl(&addr, "/secllama/attestation", None).1;
    f.serving.abort();
    let (agent, serving) = start_agent(&f.rt, &f.p);
    assert_ne!(agent.signing.public(), f.agent.signing.public());
    f.serving = serving;
    let v = ollama_peer(&addr);
    assert_eq!(v["generate"], answer);
    let after = curl(&addr, "/secllama/attestation", None).1;
    let digest = |b: &[u8]| {
        serde_json::from_slice::<serde_json::Value>(b).unwrap()["secllama.attestation-digest"]
            .clone()
    };
    assert_ne!(digest(&before), digest(&after), "re-attested");

    // Replaced by an enclave with another policy: 503, nothing forwarded.
    f.serving.abort();
    std::fs::write(f.p.base.join("policy.json"), policy_for("another prompt")).unwrap();
    let (_agent, serving) = start_agent(&f.rt, &f.p);
    f.serving = serving;
    let receipts_before = std::fs::read_to_string(&receipts).unwrap().lines().count();
    let body = r#"{"model":"tiny:latest","prompt":"another prompt","stream":false,"options":{"num_predict":8}}"#;
    let (code, text) = curl(&addr, "/api/generate", Some(body));
    assert_eq!(code, 503, "{}", String::from_utf8_lossy(&text));
    assert!(
        String::from_utf8_lossy(&text).contains("policy"),
        "{}",
        String::from_utf8_lossy(&text)
    );
    assert_eq!(
        std::fs::read_to_string(&receipts).unwrap().lines().count(),
        receipts_before
    );
}

#[test]
fn the_proxy_refuses_to_start_for_a_manifest_that_does_not_match() {
    let mut f = fixture();
    let url = format!("unix:{}", f.p.sock.display());
    let text = std::fs::read_to_string(&f.manifest).unwrap();
    let mut m = Manifest::from_toml(&text).unwrap();
    m.enclave.model = "11".repeat(32);
    let bad = f.p.dir.path().join("bad.toml");
    std::fs::write(&bad, m.to_toml().unwrap()).unwrap();
    let err = proxy(&url, &bad, &f.p.dir.path().join("r.jsonl")).unwrap_err();
    assert!(
        err.contains("not affirming") && err.contains("model"),
        "{err}"
    );
    assert!(err.starts_with("exit status: 1"), "{err}");

    // Periodic re-attestation: with no request at all, a proxy notices within its interval that
    // the enclave was replaced by one with another policy, and stops vouching for it.
    let (_proxy, addr) =
        proxy_every(&url, &f.manifest, &f.p.dir.path().join("r2.jsonl"), 1).unwrap();
    assert_eq!(curl(&addr, "/secllama/attestation", None).0, 200);
    f.serving.abort();
    std::fs::write(f.p.base.join("policy.json"), policy_for("another prompt")).unwrap();
    let (_agent, serving) = start_agent(&f.rt, &f.p);
    f.serving = serving;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while curl(&addr, "/secllama/attestation", None).0 != 503 {
        assert!(
            std::time::Instant::now() < deadline,
            "no re-attestation within 20 s"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}

/// What a hostile bridge between the proxy and the enclave does to sealed exchanges.
#[derive(Debug, Clone, Copy)]
enum Attack {
    /// Flip one bit of every sealed answer at this byte offset.
    Flip(usize),
    /// Close every sealed answer after this many bytes.
    Truncate(usize),
    /// Send the first sealed request again in place of every later one.
    Replay,
    /// Drop the final sealed frame (the receipt) and end the chunked body cleanly.
    DropFinal,
}

/// Relays one HTTP response from `from` to `to`, parsing its chunked body into sealed frames
/// (`u32 BE length ‖ COSE_Encrypt0`), holding each frame until the next arrives, and at the
/// terminal chunk dropping the held (final) frame and ending the body cleanly.
async fn relay_without_final_frame(
    from: &mut tokio::net::UnixStream,
    to: &mut tokio::net::TcpStream,
) -> Option<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut raw = Vec::new();
    let mut buf = vec![0u8; 65536];
    let mut read = async |raw: &mut Vec<u8>| -> Option<()> {
        let n = from.read(&mut buf).await.ok()?;
        (n > 0).then(|| raw.extend_from_slice(&buf[..n]))
    };
    let head_end = loop {
        if let Some(h) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            break h + 4;
        }
        read(&mut raw).await?;
    };
    let head = String::from_utf8_lossy(&raw[..head_end]).to_ascii_lowercase();
    assert!(head.contains("transfer-encoding: chunked"), "{head}");
    to.write_all(&raw[..head_end]).await.ok()?;
    raw.drain(..head_end);
    let (mut body, mut held): (Vec<u8>, Option<Vec<u8>>) = (Vec::new(), None);
    loop {
        // One HTTP chunk: `size-hex\r\n data \r\n`.
        let line_end = loop {
            if let Some(e) = raw.windows(2).position(|w| w == b"\r\n") {
                break e;
            }
            read(&mut raw).await?;
        };
        let size =
            usize::from_str_radix(std::str::from_utf8(&raw[..line_end]).ok()?.trim(), 16).ok()?;
        while raw.len() < line_end + 2 + size + 2 {
            read(&mut raw).await?;
        }
        body.extend_from_slice(&raw[line_end + 2..line_end + 2 + size]);
        raw.drain(..line_end + 2 + size + 2);
        if size == 0 {
            // The terminal chunk: the held frame was the final one. Drop it; end cleanly.
            assert!(held.is_some(), "a sealed stream has a final frame");
            to.write_all(b"0\r\n\r\n").await.ok()?;
            return Some(());
        }
        while body.len() >= 4 {
            let len = u32::from_be_bytes(body[..4].try_into().ok()?) as usize;
            if body.len() < 4 + len {
                break;
            }
            let frame: Vec<u8> = body.drain(..4 + len).collect();
            if let Some(prev) = held.replace(frame) {
                to.write_all(format!("{:x}\r\n", prev.len()).as_bytes())
                    .await
                    .ok()?;
                to.write_all(&prev).await.ok()?;
                to.write_all(b"\r\n").await.ok()?;
            }
        }
    }
}

/// A relay (TCP → the enclave's socket) that attacks every sealed exchange but the first.
fn hostile_bridge(f: &Fixture, attack: Attack) -> String {
    use std::sync::{Arc, Mutex};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let _guard = f.rt.enter();
    let std_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    std_listener.set_nonblocking(true).unwrap();
    let addr = std_listener.local_addr().unwrap();
    let listener = tokio::net::TcpListener::from_std(std_listener).unwrap();
    let sock = f.p.sock.clone();
    let first: Arc<Mutex<Option<Vec<u8>>>> = Arc::new(Mutex::new(None));
    f.rt.spawn(async move {
        while let Ok((mut tcp, _)) = listener.accept().await {
            let (sock, first) = (sock.clone(), first.clone());
            tokio::spawn(async move {
                let Some(mut req) = read_request(&mut tcp).await else {
                    return;
                };
                // One exchange per connection: the enclave closes it after answering, so the
                // proxy does not wait on a kept-alive connection this relay no longer reads.
                if let Some(at) = req.windows(2).position(|w| w == b"\r\n") {
                    req.splice(at..at, b"\r\nConnection: close".iter().copied());
                }
                let mut buf = vec![0u8; 65536];
                let sealed = req.starts_with(b"POST /v1/sealed/");
                let attack_this = sealed && {
                    let mut f = first.lock().unwrap();
                    if f.is_none() {
                        *f = Some(req.clone());
                        false
                    } else {
                        if let Attack::Replay = attack {
                            req = f.clone().unwrap();
                        }
                        true
                    }
                };
                let Ok(mut unix) = tokio::net::UnixStream::connect(&sock).await else {
                    return;
                };
                if unix.write_all(&req).await.is_err() {
                    return;
                }
                if attack_this && matches!(attack, Attack::DropFinal) {
                    let _ = relay_without_final_frame(&mut unix, &mut tcp).await;
                    return;
                }
                let mut pos = 0usize;
                loop {
                    let n = match unix.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => n,
                    };
                    let chunk = &mut buf[..n];
                    if attack_this {
                        match attack {
                            Attack::Flip(at) if at >= pos && at < pos + n => chunk[at - pos] ^= 1,
                            Attack::Truncate(at) if at < pos + n => {
                                let _ = tcp.write_all(&chunk[..at.saturating_sub(pos)]).await;
                                return;
                            }
                            _ => {}
                        }
                    }
                    if tcp.write_all(chunk).await.is_err() {
                        return;
                    }
                    pos += n;
                }
            });
        }
    });
    format!("http://{addr}")
}

#[test]
fn a_hostile_bridge_gets_ollama_clients_an_error_never_a_forged_answer() {
    let f = fixture();
    let answer = answer_tokens(PROMPT).concat();
    let stream_body =
        format!(r#"{{"model":"tiny:latest","prompt":"{PROMPT}","options":{{"num_predict":64}}}}"#);
    let single_body = format!(
        r#"{{"model":"tiny:latest","prompt":"{PROMPT}","stream":false,"options":{{"num_predict":64}}}}"#
    );
    let runner =
        f.p.config
            .runner_url
            .trim_start_matches("http://")
            .to_string();
    let honest_stream = curl(&runner, "/api/generate", Some(&stream_body)).1;
    for attack in [
        // Past the HTTP head (~130 bytes): a flipped header byte changes nothing authenticated.
        Attack::Flip(200),
        Attack::Flip(300),
        Attack::Flip(700),
        Attack::Truncate(150),
        Attack::Truncate(600),
        Attack::Replay,
        Attack::DropFinal,
    ] {
        let url = hostile_bridge(&f, attack);
        let receipts = f.p.dir.path().join(format!("{attack:?}.jsonl"));
        let (_proxy, addr) = proxy(&url, &f.manifest, &receipts).unwrap();
        // The first sealed exchange goes through untouched (the relay records it).
        let (code, _) = curl(&addr, "/api/generate", Some(&single_body));
        assert_eq!(code, 200, "{attack:?}: the first exchange is honest");
        // Not streamed: an error status in Ollama's shape, never the answer.
        let (code, body) = curl(&addr, "/api/generate", Some(&single_body));
        assert_ne!(code, 200, "{attack:?}: {}", String::from_utf8_lossy(&body));
        let e: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert!(e["error"].is_string(), "{attack:?}: {e}");
        // Streamed: an error status before any data, or a broken transfer after authentic data.
        let out = Command::new("curl")
            .args([
                "-s",
                "-N",
                "-w",
                "\n%{http_code}",
                "-X",
                "POST",
                "-d",
                &stream_body,
            ])
            .arg(format!("http://{addr}/api/generate"))
            .output()
            .unwrap();
        let mut raw = out.stdout.clone();
        let cut = raw.iter().rposition(|b| *b == b'\n').unwrap();
        let code = String::from_utf8_lossy(&raw[cut + 1..]).to_string();
        raw.truncate(cut);
        if code == "200" {
            assert!(
                !out.status.success(),
                "{attack:?}: curl completed a forged stream"
            );
            // Nothing that marks the answer complete left before the receipt verified.
            assert!(
                !String::from_utf8_lossy(&raw).contains(r#""done":true"#),
                "{attack:?}: the final line left before the receipt: {}",
                String::from_utf8_lossy(&raw)
            );
            assert!(
                honest_stream.starts_with(&raw),
                "{attack:?}: forged bytes: {}",
                String::from_utf8_lossy(&raw)
            );
        } else {
            let e: serde_json::Value = serde_json::from_slice(&raw).unwrap();
            assert!(e["error"].is_string(), "{attack:?}: {e}");
        }
        // The official client: an exception, never the answer.
        let py = Command::new(python())
            .arg("-c")
            .arg("import sys, ollama\nc = ollama.Client(host=sys.argv[1])\nprint(c.generate(model='tiny:latest', prompt=sys.argv[2], options={'num_predict': 64}, stream=False)['response'])")
            .arg(format!("http://{addr}"))
            .arg(PROMPT)
            .output()
            .unwrap();
        assert!(
            !py.status.success(),
            "{attack:?}: {}",
            String::from_utf8_lossy(&py.stdout)
        );
        assert!(
            !String::from_utf8_lossy(&py.stdout).contains(answer.trim()),
            "{attack:?}"
        );
        // An HTTP/1.0 client reads to the end of the connection: it gets an error status, not
        // a stream whose abort would look like its end.
        let (code, _, text) = curl_i(
            &addr,
            "/api/generate",
            &["-0", "-X", "POST", "-d", &stream_body],
        );
        assert_ne!(code, 200, "{attack:?}: HTTP/1.0 got 200: {text}");
        assert!(!text.contains(r#""done":true"#), "{attack:?}: {text}");
        // The official Python client, streaming: an exception, and no part marked done.
        let py = Command::new(python())
            .arg("-c")
            .arg("import sys, ollama\nc = ollama.Client(host=sys.argv[1])\nfor p in c.generate(model='tiny:latest', prompt=sys.argv[2], options={'num_predict': 64}, stream=True):\n    print('DONE' if p['done'] else 'part', flush=True)")
            .arg(format!("http://{addr}"))
            .arg(PROMPT)
            .output()
            .unwrap();
        let printed = String::from_utf8_lossy(&py.stdout);
        assert!(!py.status.success(), "{attack:?}: {printed}");
        assert!(!printed.contains("DONE"), "{attack:?}: {printed}");
        // The official JavaScript client (ollama-js), streaming and not: an error, never done.
        for mode in ["stream", "single"] {
            let v = ollama_js(&addr, mode);
            assert!(v["error"].is_string(), "{attack:?} {mode}: {v}");
            assert_eq!(v["done"], false, "{attack:?} {mode}: {v}");
        }
        // The official OpenAI client, streaming: an error, and no chunk with a finish reason.
        let v = py_peer(
            "openai_peer.py",
            &[&format!("http://{addr}"), PROMPT, "stream"],
        );
        assert!(v["error"].is_string(), "{attack:?}: {v}");
        assert!(v["finish_reason"].is_null(), "{attack:?}: {v}");
        // Only the honest exchange left a receipt.
        assert_eq!(
            std::fs::read_to_string(&receipts).unwrap().lines().count(),
            1,
            "{attack:?}"
        );
    }
}

/// `curl -i` with extra arguments: (status, headers lower-cased, body).
fn curl_i(addr: &str, path: &str, args: &[&str]) -> (u16, String, String) {
    let out = Command::new("curl")
        .args(["-s", "-i"])
        .args(args)
        .arg(format!("http://{addr}{path}"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let code = head.split(' ').nth(1).unwrap().parse().unwrap();
    (code, head.to_ascii_lowercase(), body.to_string())
}

#[test]
fn a_local_web_page_cannot_drive_the_proxy() {
    let f = fixture();
    let url = format!("unix:{}", f.p.sock.display());
    let receipts = f.p.dir.path().join("origin-receipts.jsonl");
    let (_proxy, addr) = secllama_tests::launch::proxy_with(
        &url,
        &f.manifest,
        &receipts,
        3600,
        &["--origins", "https://*.example.org"],
    )
    .unwrap();
    let body = format!(
        r#"{{"model":"tiny:latest","prompt":"{PROMPT}","stream":false,"options":{{"num_predict":8}}}}"#
    );
    let receipts_count = || {
        std::fs::read_to_string(&receipts)
            .map(|t| t.lines().count())
            .unwrap_or(0)
    };

    // DNS rebinding: a page at attacker.example resolved to 127.0.0.1 sends its own Host.
    for (path, post) in [
        ("/api/tags", false),
        ("/secllama/attestation", false),
        ("/api/version", false),
        ("/api/generate", true),
    ] {
        let mut args = vec!["-H", "Host: attacker.example:11434"];
        if post {
            args.extend(["-X", "POST", "-d", &body]);
        }
        let (code, _, text) = curl_i(&addr, path, &args);
        assert_eq!(code, 403, "{path}: {text}");
        assert!(text.contains("attacker.example"), "{path}: {text}");
    }
    // A cross-site "simple" request (text/plain POST, no preflight) from a page elsewhere.
    let (code, _, text) = curl_i(
        &addr,
        "/api/generate",
        &[
            "-H",
            "Origin: http://attacker.example",
            "-H",
            "Content-Type: text/plain",
            "-X",
            "POST",
            "-d",
            &body,
        ],
    );
    assert_eq!(code, 403, "{text}");
    assert_eq!(receipts_count(), 0, "nothing was forwarded");

    // Preflights: 204 with the CORS headers for an allowed origin, 403 otherwise.
    let preflight = |origin: &str| {
        curl_i(
            &addr,
            "/api/chat",
            &[
                "-X",
                "OPTIONS",
                "-H",
                &format!("Origin: {origin}"),
                "-H",
                "Access-Control-Request-Method: POST",
                "-H",
                "Access-Control-Request-Headers: content-type",
            ],
        )
    };
    let (code, head, _) = preflight("http://localhost:5173");
    assert_eq!(code, 204, "{head}");
    assert!(
        head.contains("access-control-allow-origin: http://localhost:5173"),
        "{head}"
    );
    assert!(
        head.contains("access-control-allow-methods: get, post"),
        "{head}"
    );
    assert!(
        head.contains("access-control-allow-headers: authorization, content-type"),
        "{head}"
    );
    let (code, head, _) = preflight("https://app.example.org");
    assert_eq!(code, 204, "--origins is honoured: {head}");
    let (code, head, _) = preflight("http://attacker.example");
    assert_eq!(code, 403, "{head}");
    assert!(!head.contains("access-control-allow-origin"), "{head}");
    // OPTIONS without Origin is not a preflight: what the proxy allows, no CORS headers.
    let (code, head, _) = curl_i(&addr, "/v1/chat/completions", &["-X", "OPTIONS"]);
    assert_eq!(code, 204, "{head}");
    assert!(head.contains("allow: get, post"), "{head}");
    assert!(!head.contains("access-control-allow-origin"), "{head}");

    // An allowed origin is served, with the CORS answer headers.
    let (code, head, text) = curl_i(
        &addr,
        "/api/generate",
        &[
            "-H",
            "Origin: http://localhost:5173",
            "-H",
            "Content-Type: application/json",
            "-X",
            "POST",
            "-d",
            &body,
        ],
    );
    assert_eq!(code, 200, "{text}");
    assert!(
        head.contains("access-control-allow-origin: http://localhost:5173"),
        "{head}"
    );
    assert_eq!(receipts_count(), 1);
    // Local names are served as before.
    for host in ["localhost:11434", "127.0.0.1", "[::1]:11434"] {
        let (code, _, text) = curl_i(&addr, "/api/version", &["-H", &format!("Host: {host}")]);
        assert_eq!(code, 200, "{host}: {text}");
    }
}

#[test]
fn default_calls_model_names_show_and_ps_are_served() {
    // A policy whose maximum is visible in the answer: 2 tokens.
    let runner = Path::new(env!("CARGO_BIN_EXE_secllama-test-runner"));
    let mut policy: serde_json::Value = serde_json::from_str(&policy_for(PROMPT)).unwrap();
    policy["max_num_predict"] = serde_json::json!(2);
    let Serving {
        rt: _rt,
        p,
        agent,
        manifest,
        ..
    } = serving(runner, &policy.to_string()).unwrap();
    let url = format!("unix:{}", p.sock.display());
    let receipts = p.dir.path().join("default-receipts.jsonl");
    let (_proxy, addr) = proxy(&url, &manifest, &receipts).unwrap();
    let two = answer_tokens(PROMPT)[..2].concat();

    // Every client's default call: no options, and the model as users type it. The test runner
    // knows only "tiny:latest" and honours num_predict, so a 2-token answer shows the runner was
    // sent the canonical name and the policy's maximum.
    let py = Command::new(python())
        .arg("-c")
        .arg(
            "import json, sys, ollama\n\
             c = ollama.Client(host=sys.argv[1])\n\
             out = {\n\
               'generate': c.generate(model='tiny', prompt=sys.argv[2])['response'],\n\
               'chat': c.chat(model='TINY:latest', messages=[{'role': 'user', 'content': sys.argv[2]}])['message']['content'],\n\
               'stream': ''.join(p['response'] for p in c.generate(model='library/tiny', prompt=sys.argv[2], stream=True)),\n\
             }\n\
             print(json.dumps(out))",
        )
        .arg(format!("http://{addr}"))
        .arg(PROMPT)
        .output()
        .unwrap();
    assert!(
        py.status.success(),
        "{}",
        String::from_utf8_lossy(&py.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&py.stdout).unwrap();
    for k in ["generate", "chat", "stream"] {
        assert_eq!(v[k], two.as_str(), "{k}: {v}");
    }
    let (code, body) = curl(
        &addr,
        "/api/generate",
        Some(&format!(
            r#"{{"model":"registry.ollama.ai/library/Tiny","prompt":"{PROMPT}","stream":false}}"#
        )),
    );
    assert_eq!(code, 200, "{}", String::from_utf8_lossy(&body));
    // Names that are not the policy's model, or not names, are still refused.
    for other in ["tiny:other", "tinyx", "tiny@sha256:00"] {
        let (code, body) = curl(
            &addr,
            "/api/generate",
            Some(&format!(
                r#"{{"model":"{other}","prompt":"{PROMPT}","stream":false}}"#
            )),
        );
        assert_eq!(code, 403, "{other}: {}", String::from_utf8_lossy(&body));
    }
    // A limit above the policy's is refused, not lowered.
    let (code, _) = curl(
        &addr,
        "/api/generate",
        Some(&format!(
            r#"{{"model":"tiny","prompt":"{PROMPT}","stream":false,"options":{{"num_predict":3}}}}"#
        )),
    );
    assert_eq!(code, 403);

    // Each receipt says the enclave applied the maximum, and names the canonical model.
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(&receipts)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 4, "{lines:?}");
    for l in &lines {
        let r = verify_receipt(
            &hex::decode(l["receipt"].as_str().unwrap()).unwrap(),
            &agent.signing.public(),
        )
        .unwrap();
        assert_eq!(r.model, "tiny:latest");
        assert_eq!(r.params.num_predict, Some(2));
        assert_eq!(r.params.defaults, vec!["num_predict".to_string()]);
    }
    // /api/show and /api/ps, sealed through the enclave (several clients call show first).
    let py = Command::new(python())
        .arg("-c")
        .arg(
            "import json, sys, ollama\n\
             c = ollama.Client(host=sys.argv[1])\n\
             s = c.show('tiny')\n\
             print(json.dumps({'family': s.details.family, 'ps': [m.model for m in c.ps().models]}))\n\
             try:\n    c.show('other')\nexcept ollama.ResponseError as e:\n    print(e.status_code)",
        )
        .arg(format!("http://{addr}"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&py.stdout);
    assert!(
        py.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&py.stderr)
    );
    let mut out = text.lines();
    let v: serde_json::Value = serde_json::from_str(out.next().unwrap()).unwrap();
    assert_eq!(
        v,
        serde_json::json!({"family": "test", "ps": ["tiny:latest"]})
    );
    assert_eq!(
        out.next(),
        Some("403"),
        "a model outside the policy: {text}"
    );
    let js = ollama_js(&addr, "show");
    assert_eq!(
        js["parts"],
        serde_json::json!(["test", "completion"]),
        "{js}"
    );
    assert_eq!(
        ollama_js(&addr, "ps")["parts"],
        serde_json::json!(["tiny:latest"])
    );
    let lines = std::fs::read_to_string(&receipts).unwrap().lines().count();
    assert_eq!(lines, 4 + 4, "show and ps answers have receipts too");

    // secllama-verify generate without --num-predict: the same, in words.
    let out =
        secllama_tests::launch::verify_generate(&url, "Tiny", PROMPT, &manifest, &[]).unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("num_predict 2 (the policy's maximum: the request left it out)"),
        "{err}"
    );
}

/// Runs a Python peer script from `tests/py` with `args`; its JSON output.
fn py_peer(script: &str, args: &[&str]) -> serde_json::Value {
    let mut c = Command::new(python());
    c.arg(
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("py")
            .join(script),
    )
    .args(args);
    json_of(c)
}

#[test]
fn openai_and_langchain_clients_get_sealed_answers() {
    let f = fixture();
    let url = format!("unix:{}", f.p.sock.display());
    let receipts = f.p.dir.path().join("openai-receipts.jsonl");
    let (_proxy, addr) = proxy(&url, &f.manifest, &receipts).unwrap();
    let base = format!("http://{addr}");
    let answer = answer_tokens(PROMPT).concat();
    let count = || std::fs::read_to_string(&receipts).map_or(0, |t| t.lines().count());

    // The official OpenAI client, unmodified, on the OpenAI-compatible API.
    let v = py_peer("openai_peer.py", &[&base, PROMPT, "all"]);
    assert_eq!(v["models"], serde_json::json!(["tiny:latest"]), "{v}");
    assert_eq!(v["model"], "tiny:latest", "{v}");
    for k in ["chat", "chat_stream"] {
        assert_eq!(v[k], answer.as_str(), "{k}: {v}");
    }
    assert_eq!(v["chat_finish"], "stop", "{v}");
    assert_eq!(v["chat_stream_finish"], "stop", "{v}");
    assert!(
        v["chat_usage"].as_u64().unwrap() > 0 && v["chat_stream_usage"] == v["chat_usage"],
        "{v}"
    );
    assert_eq!(
        v["completion"],
        answer_tokens(PROMPT)[..2].concat(),
        "max_tokens is num_predict: {v}"
    );
    // The test runner always says done_reason "stop" (the "length" mapping is unit-tested).
    assert_eq!(v["completion_finish"], "stop", "{v}");
    assert_eq!(v["completion_stream"], answer.as_str(), "{v}");
    assert_eq!(v["refused"], 403, "outside the dataset: {v}");
    assert_eq!(v["n2"], 400, "two choices cannot be honoured: {v}");
    // models, retrieve and four answers: six sealed exchanges, six receipts (the refused one
    // has none; n = 2 was never sent).
    assert_eq!(count(), 6);

    // SSE as it is on the wire: chunks, the finish chunk, usage, then [DONE].
    let out = Command::new("curl")
        .args(["-s", "-N", "-H", "Content-Type: application/json", "-d"])
        .arg(format!(
            r#"{{"model":"tiny","stream":true,"stream_options":{{"include_usage":true}},"messages":[{{"role":"user","content":"{PROMPT}"}}]}}"#
        ))
        .arg(format!("{base}/v1/chat/completions"))
        .output()
        .unwrap();
    let sse = String::from_utf8_lossy(&out.stdout);
    let events: Vec<&str> = sse.split("\n\n").filter(|e| !e.is_empty()).collect();
    assert!(events.iter().all(|e| e.starts_with("data: ")), "{sse}");
    assert_eq!(events.last(), Some(&"data: [DONE]"), "{sse}");
    let finish: Vec<&&str> = events
        .iter()
        .filter(|e| e.contains(r#""finish_reason":"stop""#))
        .collect();
    assert_eq!(finish.len(), 1, "{sse}");
    assert!(events[events.len() - 2].contains(r#""usage""#), "{sse}");

    // LangChain's Ollama integration with its defaults (OllamaLLM sends "format": "").
    let v = py_peer("langchain_peer.py", &[&base, PROMPT]);
    for k in ["llm", "llm_stream", "chat", "chat_stream"] {
        assert_eq!(v[k], answer.as_str(), "{k}: {v}");
    }
}
