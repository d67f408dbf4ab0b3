//! The enclave client end to end: `secllama-verify attest` and `generate` (driven through their
//! `run` functions) against the real agent in process over its unix listener — and over TCP through a
//! byte relay, as through the bridge — with a real swtpm and the test runner. The reference manifest
//! is written from the launch prediction and the AK the agent will use (created with `ensure_ak`
//! before the agent starts and pinned by its TPM2B_PUBLIC). Checks: affirming; a wrong model digest
//! contraindicates `enclave` naming `model`; no AK trust is not affirming; a wrong PCR contraindicates
//! `tpm`; an allowed prompt prints the runner's answer with a verified receipt; a disallowed prompt
//! exits 1 with the policy's detail.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test crate: a failed unwrap is a failed test

use secllama_client::cli::{Format, attest, generate};
use secllama_enclave::agent::Agent;
use secllama_enclave::service::serve;
use secllama_measurements::manifest::Manifest;
use secllama_tests::enclave::{RunnerMode, policy_for, prepare, read_request};
use secllama_tests::runner::{answer_tokens, stream_lines};
use std::path::{Path, PathBuf};
use std::sync::Arc;

const PROMPT: &str = "why is the sky blue";

struct Fixture {
    rt: tokio::runtime::Runtime,
    _prepared: secllama_tests::enclave::Prepared,
    sock: PathBuf,
    dir: PathBuf,
    manifest: Manifest,
}

fn fixture() -> Fixture {
    fixture_on(false)
}

fn fixture_on(manufactured: bool) -> Fixture {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let runner = Path::new(env!("CARGO_BIN_EXE_secllama-test-runner"));
    let p = if manufactured {
        secllama_tests::enclave::prepare_manufactured(
            runner,
            RunnerMode::Started,
            &policy_for(PROMPT),
        )
    } else {
        prepare(runner, RunnerMode::Started, &policy_for(PROMPT))
    }
    .unwrap();
    let (config, base) = (&p.config, &p.base);
    // Pins the AK the agent will quote with, created now.
    let manifest = p.reference_manifest().unwrap();
    manifest.validate().unwrap();
    let _guard = rt.enter();
    let agent = Arc::new(Agent::start(config, base).unwrap());
    let listener = tokio::net::UnixListener::bind(&p.sock).unwrap();
    rt.spawn(serve(
        agent,
        secllama_enclave::listener::Listener::Unix(listener),
    ));
    drop(_guard);
    Fixture {
        rt,
        sock: p.sock.clone(),
        dir: p.dir.path().to_path_buf(),
        manifest,
        _prepared: p,
    }
}

impl Fixture {
    fn url(&self) -> String {
        format!("unix:{}", self.sock.display())
    }

    fn write_manifest(&self, name: &str, m: &Manifest) -> PathBuf {
        let path = self.dir.as_path().join(name);
        std::fs::write(&path, m.to_toml().unwrap()).unwrap();
        path
    }

    /// Runs `attest`; returns (exit-0?, the JSON result).
    fn attest(
        &self,
        url: &str,
        manifest: &Path,
        save: Option<PathBuf>,
    ) -> (bool, serde_json::Value) {
        let out = attest::run(&attest::Args {
            url: url.to_string(),
            manifest: manifest.to_path_buf(),
            save,
            save_bundle: None,
            certs: Vec::new(),
            format: Format::Json,
        })
        .unwrap();
        (out.valid, serde_json::from_str(&out.report).unwrap())
    }

    /// A TCP listener relaying each connection to the enclave socket (what the bridge does).
    fn tcp_relay(&self) -> String {
        let _guard = self.rt.enter();
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        std_listener.set_nonblocking(true).unwrap();
        let addr = std_listener.local_addr().unwrap();
        let listener = tokio::net::TcpListener::from_std(std_listener).unwrap();
        let sock = self.sock.clone();
        self.rt.spawn(async move {
            while let Ok((mut tcp, _)) = listener.accept().await {
                let sock = sock.clone();
                tokio::spawn(async move {
                    if let Ok(mut unix) = tokio::net::UnixStream::connect(&sock).await {
                        let _ = tokio::io::copy_bidirectional(&mut tcp, &mut unix).await;
                    }
                });
            }
        });
        format!("http://{addr}")
    }
}

fn status<'a>(r: &'a serde_json::Value, submod: &str) -> &'a str {
    r["submods"][submod]["ear.status"].as_str().unwrap()
}

fn reasons(r: &serde_json::Value, submod: &str) -> String {
    r["submods"][submod]["reasons"].to_string()
}

#[test]
fn attest_affirms_and_contraindicates_on_every_mismatch() {
    let f = fixture();
    let good = f.write_manifest("good.toml", &f.manifest);
    let saved = f.dir.as_path().join("doc.cose");
    let (valid, r) = f.attest(&f.url(), &good, Some(saved.clone()));
    assert!(valid, "{r:#}");
    assert_eq!(r["eat_profile"], "tag:github.com,2023:veraison/ear");
    assert_eq!(r["ear.verifier-id"]["developer"], "secllama");
    assert!(r["iat"].as_u64().unwrap() > 0);
    assert_eq!(status(&r, "tpm"), "affirming", "{r:#}");
    assert_eq!(status(&r, "enclave"), "affirming", "{r:#}");
    // AR4SI trustworthiness claims and the appraisal policy (the manifest's digest) per submod.
    let policy_id = format!(
        "sha256:{}",
        secllama_protocol::sha256(&[f.manifest.to_toml().unwrap().as_bytes()]).to_hex()
    );
    for (submod, claims) in [
        ("tpm", &["hardware", "instance-identity", "executables"][..]),
        (
            "enclave",
            &["executables", "file-system", "configuration"][..],
        ),
    ] {
        assert_eq!(r["submods"][submod]["ear.appraisal-policy-id"], policy_id);
        for c in claims {
            assert_eq!(
                r["submods"][submod]["ear.trustworthiness-vector"][c], 2,
                "{submod}.{c}: {r:#}"
            );
        }
    }
    // --save wrote the document the result names.
    let doc = std::fs::read(&saved).unwrap();
    assert_eq!(
        r["secllama.attestation-digest"],
        secllama_protocol::sha256(&[&doc]).to_hex()
    );
    assert!(secllama_protocol::attestation::open_document(&doc).is_ok());

    // Over TCP, as through the bridge.
    let (valid, r) = f.attest(&f.tcp_relay(), &good, None);
    assert!(valid, "{r:#}");

    // Another model digest: enclave contraindicated, naming the component and both values.
    let mut m = f.manifest.clone();
    let expected_model = m.enclave.model.clone();
    m.enclave.model = "ab".repeat(32);
    let (valid, r) = f.attest(&f.url(), &f.write_manifest("model.toml", &m), None);
    assert!(!valid);
    assert_eq!(status(&r, "enclave"), "contraindicated");
    assert_eq!(status(&r, "tpm"), "affirming");
    let why = reasons(&r, "enclave");
    assert!(why.contains("model: expected abab"), "{why}");
    let v = &r["submods"]["enclave"]["ear.trustworthiness-vector"];
    assert_eq!(
        (v["file-system"].as_i64(), v["executables"].as_i64()),
        (Some(96), Some(2)),
        "{v}"
    );
    assert!(why.contains(&expected_model), "{why}");

    // No AK trust anchor: the quote checks pass but the tpm submod does not affirm, and says so.
    let mut m = f.manifest.clone();
    m.tpm.ak_publics.clear();
    let (valid, r) = f.attest(&f.url(), &f.write_manifest("noak.toml", &m), None);
    assert!(!valid);
    assert_ne!(status(&r, "tpm"), "affirming");
    assert!(reasons(&r, "tpm").contains("no trust anchor"), "{r:#}");
    assert_eq!(
        r["submods"]["tpm"]["ear.trustworthiness-vector"]["instance-identity"],
        32
    );

    // Another pinned AK: contraindicated.
    let mut m = f.manifest.clone();
    m.tpm.ak_publics = vec![hex::encode(
        secllama_protocol::attestation::open_document(&doc)
            .unwrap()
            .payload
            .keys
            .encryption_spki,
    )];
    let (valid, r) = f.attest(&f.url(), &f.write_manifest("otherak.toml", &m), None);
    assert!(!valid);
    assert_eq!(status(&r, "tpm"), "contraindicated", "{r:#}");

    // A wrong PCR value, and a PCR the quote does not cover: tpm contraindicated.
    let mut m = f.manifest.clone();
    let bank = m.pcrs.get_mut("sha256").unwrap();
    bank.insert("15".into(), "00".repeat(32));
    let (valid, r) = f.attest(&f.url(), &f.write_manifest("pcr.toml", &m), None);
    assert!(!valid);
    assert_eq!(status(&r, "tpm"), "contraindicated");
    assert!(
        reasons(&r, "tpm").contains("PCR sha256:15: expected 0000"),
        "{r:#}"
    );
    let mut m = f.manifest.clone();
    m.pcrs
        .get_mut("sha256")
        .unwrap()
        .insert("7".into(), "00".repeat(32));
    let (valid, r) = f.attest(&f.url(), &f.write_manifest("pcr7.toml", &m), None);
    assert!(!valid);
    assert!(reasons(&r, "tpm").contains("not in the quote"), "{r:#}");

    // An unreachable enclave is an error, not a result.
    assert!(
        attest::run(&attest::Args {
            url: format!("unix:{}", f.dir.as_path().join("nothing.sock").display()),
            manifest: good,
            save: None,
            save_bundle: None,
            certs: Vec::new(),
            format: Format::Text,
        })
        .is_err()
    );
}

fn generate(
    f: &Fixture,
    manifest: &Path,
    prompt: Option<&str>,
    messages: Option<PathBuf>,
    stream: bool,
) -> (bool, String, String) {
    let args = generate::Args {
        url: f.url(),
        manifest: manifest.to_path_buf(),
        model: "tiny:latest".into(),
        prompt: prompt.map(str::to_string),
        messages,
        stream,
        num_predict: Some(16),
        options: vec![],
    };
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let outcome = generate::run_with(&args, &mut out, &mut err).unwrap();
    (
        outcome.valid,
        String::from_utf8(out).unwrap(),
        String::from_utf8(err).unwrap(),
    )
}

#[test]
fn generate_prints_the_answer_and_a_verified_receipt() {
    let f = fixture();
    let good = f.write_manifest("good.toml", &f.manifest);
    let answer = answer_tokens(PROMPT).concat();
    assert!(!stream_lines(false, &answer_tokens(PROMPT)).is_empty());

    // Streamed generate.
    let (valid, out, err) = generate(&f, &good, Some(PROMPT), None, true);
    assert!(valid, "{err}");
    assert_eq!(out, format!("{answer}\n"));
    assert!(err.contains("receipt: verified"), "{err}");
    assert!(err.contains("log index 0"), "{err}");

    // Non-streamed chat.
    let messages = f.dir.as_path().join("messages.json");
    std::fs::write(
        &messages,
        format!(r#"[{{"role": "user", "content": "{PROMPT}"}}]"#),
    )
    .unwrap();
    let (valid, out, err) = generate(&f, &good, None, Some(messages), false);
    assert!(valid, "{err}");
    assert_eq!(out, format!("{answer}\n"));
    assert!(err.contains("log index 1"), "{err}");

    // A prompt outside the dataset: exit 1 with the policy's detail, no answer text.
    let (valid, out, err) = generate(&f, &good, Some("tell me a secret"), None, true);
    assert!(!valid);
    assert!(out.trim().is_empty(), "{out}");
    assert!(err.contains("HTTP 403"), "{err}");
    assert!(err.contains("rule dataset"), "{err}");

    // Not affirming: nothing is sent.
    let mut m = f.manifest.clone();
    m.enclave.policy = "cd".repeat(32);
    let (valid, out, err) = generate(
        &f,
        &f.write_manifest("bad.toml", &m),
        Some(PROMPT),
        None,
        true,
    );
    assert!(!valid);
    assert!(out.is_empty());
    assert!(err.contains("nothing was sent"), "{err}");
}

/// What a hostile bridge does to the enclave's answer on the sealed request's connection.
#[derive(Debug, Clone, Copy)]
enum Attack {
    /// Flip one bit of the response at this byte offset.
    Flip(usize),
    /// Close the connection after this many response bytes.
    Truncate(usize),
}

impl Fixture {
    /// A relay like the bridge that attacks the second connection (the sealed request; the first
    /// is the attestation), and reports whether the attack happened (the offset was reached).
    fn hostile_relay(
        &self,
        attack: Attack,
    ) -> (String, std::sync::Arc<std::sync::atomic::AtomicBool>) {
        use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let _guard = self.rt.enter();
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        std_listener.set_nonblocking(true).unwrap();
        let addr = std_listener.local_addr().unwrap();
        let listener = tokio::net::TcpListener::from_std(std_listener).unwrap();
        let sock = self.sock.clone();
        let hit = std::sync::Arc::new(AtomicBool::new(false));
        let seen = std::sync::Arc::new(AtomicUsize::new(0));
        let hit2 = hit.clone();
        self.rt.spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let attack_this = seen.fetch_add(1, Ordering::SeqCst) == 1;
                let (sock, hit) = (sock.clone(), hit2.clone());
                tokio::spawn(async move {
                    let Ok(unix) = tokio::net::UnixStream::connect(&sock).await else {
                        return;
                    };
                    let (mut cr, mut cw) = tcp.into_split();
                    let (mut ur, mut uw) = unix.into_split();
                    tokio::spawn(async move {
                        let _ = tokio::io::copy(&mut cr, &mut uw).await;
                    });
                    let mut buf = vec![0u8; 1024];
                    let mut pos = 0usize;
                    loop {
                        let n = match ur.read(&mut buf).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => n,
                        };
                        let chunk = &mut buf[..n];
                        if attack_this {
                            match attack {
                                Attack::Flip(at) if at >= pos && at < pos + n => {
                                    chunk[at - pos] ^= 0x01;
                                    hit.store(true, Ordering::SeqCst);
                                }
                                Attack::Truncate(at) if at < pos + n => {
                                    let keep = at.saturating_sub(pos);
                                    let _ = cw.write_all(&chunk[..keep]).await;
                                    hit.store(true, Ordering::SeqCst);
                                    return; // drops both halves: the connection closes mid-answer
                                }
                                _ => {}
                            }
                        }
                        if cw.write_all(chunk).await.is_err() {
                            break;
                        }
                        pos += n;
                    }
                });
            }
        });
        (format!("http://{addr}"), hit)
    }
}

/// Chunk-level attacks on the sealed answer, which arrives as HTTP/1.1 chunked encoding with one
/// sealed chunk per HTTP chunk.
#[derive(Debug, Clone, Copy)]
enum ChunkAttack {
    /// Leave out sealed chunk k (the HTTP framing stays valid).
    Drop(usize),
    /// Swap sealed chunks k and k+1.
    Swap(usize),
    /// Send chunk k twice.
    Duplicate(usize),
    /// Send the first sealed request a second time in place of the next one.
    Replay,
    /// Re-frame the answer unchanged (the control: the relay itself breaks nothing).
    Identity,
}

/// Splits an HTTP/1.1 response with a chunked body into (head, chunks); `None` if incomplete.
fn split_chunked(resp: &[u8]) -> Option<(Vec<u8>, Vec<Vec<u8>>)> {
    let head_end = resp.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let mut chunks = Vec::new();
    let mut pos = head_end;
    loop {
        let line_end = pos + resp[pos..].windows(2).position(|w| w == b"\r\n")?;
        let size =
            usize::from_str_radix(std::str::from_utf8(&resp[pos..line_end]).ok()?, 16).ok()?;
        let data = line_end + 2;
        if size == 0 {
            return Some((resp[..head_end].to_vec(), chunks));
        }
        chunks.push(resp.get(data..data + size)?.to_vec());
        pos = data + size + 2;
        if pos > resp.len() {
            return None;
        }
    }
}

fn join_chunked(head: &[u8], chunks: &[Vec<u8>]) -> Vec<u8> {
    let mut out = head.to_vec();
    for c in chunks {
        out.extend_from_slice(format!("{:x}\r\n", c.len()).as_bytes());
        out.extend_from_slice(c);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"0\r\n\r\n");
    out
}

impl Fixture {
    /// A relay that forwards everything but rewrites sealed answers per `attack` (on every
    /// sealed request after the first, which it records), and reports whether it did.
    fn rechunking_relay(
        &self,
        attack: ChunkAttack,
    ) -> (String, std::sync::Arc<std::sync::atomic::AtomicBool>) {
        use std::sync::atomic::{AtomicBool, Ordering};
        use std::sync::{Arc, Mutex};
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let _guard = self.rt.enter();
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        std_listener.set_nonblocking(true).unwrap();
        let addr = std_listener.local_addr().unwrap();
        let listener = tokio::net::TcpListener::from_std(std_listener).unwrap();
        let sock = self.sock.clone();
        let hit = Arc::new(AtomicBool::new(false));
        let recorded: Arc<Mutex<Option<Vec<u8>>>> = Arc::new(Mutex::new(None));
        let hit2 = hit.clone();
        self.rt.spawn(async move {
            while let Ok((mut tcp, _)) = listener.accept().await {
                let (sock, hit, recorded) = (sock.clone(), hit2.clone(), recorded.clone());
                tokio::spawn(async move {
                    let Some(mut req) = read_request(&mut tcp).await else {
                        return;
                    };
                    let mut buf = vec![0u8; 65536];
                    let sealed = req.starts_with(b"POST /v1/sealed/");
                    let mut attack_this = false;
                    if sealed {
                        let mut r = recorded.lock().unwrap();
                        match r.as_ref() {
                            None => *r = Some(req.clone()),
                            Some(first) => {
                                attack_this = true;
                                if let ChunkAttack::Replay = attack {
                                    req = first.clone();
                                    hit.store(true, Ordering::SeqCst);
                                }
                            }
                        }
                    }
                    let Ok(mut unix) = tokio::net::UnixStream::connect(&sock).await else {
                        return;
                    };
                    if unix.write_all(&req).await.is_err() {
                        return;
                    }
                    let mut resp = Vec::new();
                    loop {
                        if sealed && split_chunked(&resp).is_some() {
                            break;
                        }
                        match unix.read(&mut buf).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => resp.extend_from_slice(&buf[..n]),
                        }
                        if !sealed && !resp.is_empty() {
                            // Attestation: plain Content-Length answer, pass it on as it comes.
                            let _ = tcp.write_all(&resp).await;
                            resp.clear();
                        }
                    }
                    if attack_this && let Some((head, mut chunks)) = split_chunked(&resp) {
                        let n = chunks.len();
                        match attack {
                            ChunkAttack::Drop(k) if k < n => {
                                chunks.remove(k);
                                hit.store(true, Ordering::SeqCst);
                            }
                            ChunkAttack::Swap(k) if k + 1 < n => {
                                chunks.swap(k, k + 1);
                                hit.store(true, Ordering::SeqCst);
                            }
                            ChunkAttack::Identity => hit.store(true, Ordering::SeqCst),
                            ChunkAttack::Duplicate(k) if k < n => {
                                let c = chunks[k].clone();
                                chunks.insert(k, c);
                                hit.store(true, Ordering::SeqCst);
                            }
                            _ => {}
                        }
                        resp = join_chunked(&head, &chunks);
                    }
                    let _ = tcp.write_all(&resp).await;
                    let _ = tcp.shutdown().await;
                });
            }
        });
        (format!("http://{addr}"), hit)
    }
}

#[test]
fn a_hostile_bridge_never_gets_a_forged_answer_printed() {
    let f = fixture();
    let good = f.write_manifest("good.toml", &f.manifest);
    let run_with = |url: String, stream: bool| {
        let args = generate::Args {
            url,
            manifest: good.clone(),
            model: "tiny:latest".into(),
            prompt: Some("why is the sky blue".into()),
            messages: None,
            stream,
            num_predict: Some(16),
            options: vec![],
        };
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let valid = generate::run_with(&args, &mut out, &mut err)
            .map(|o| o.valid)
            .unwrap_or(false);
        (
            valid,
            String::from_utf8(out).unwrap(),
            String::from_utf8(err).unwrap(),
        )
    };
    let run = |url: String| run_with(url, true);
    let (valid, honest, _) = run(f.tcp_relay());
    assert!(
        valid && !honest.is_empty(),
        "the honest relay must work: {honest}"
    );
    let mut attacked = 0;
    for attack in [
        Attack::Flip(5),
        Attack::Flip(150),
        Attack::Flip(260),
        Attack::Flip(400),
        Attack::Flip(700),
        Attack::Flip(1100),
        Attack::Flip(1500),
        Attack::Truncate(200),
        Attack::Truncate(600),
        Attack::Truncate(1200),
    ] {
        let (url, hit) = f.hostile_relay(attack);
        let (valid, out, err) = run(url);
        if !hit.load(std::sync::atomic::Ordering::SeqCst) {
            continue; // the answer was shorter than the offset
        }
        attacked += 1;
        assert!(!valid, "{attack:?}: accepted; stdout {out:?}, stderr {err}");
        assert!(
            honest.starts_with(out.trim_end()), /* a trailing newline is formatting */
            "{attack:?}: printed text that is not the authentic answer: {out:?}"
        );
        // Not streamed, nothing at all is printed before the receipt verified.
        let (url, hit) = f.hostile_relay(attack);
        let (valid, out, err) = run_with(url, false);
        if hit.load(std::sync::atomic::Ordering::SeqCst) {
            assert!(!valid, "{attack:?} (not streamed): accepted; stderr {err}");
            assert!(
                out.is_empty(),
                "{attack:?}: printed before the receipt: {out:?}"
            );
        }
    }
    assert!(attacked >= 6, "only {attacked} attacks reached the answer");
    let (valid, whole, _) = run_with(f.tcp_relay(), false);
    assert!(valid && !whole.is_empty());

    // Chunk-level attacks and a replayed request: the first run through each relay is honest (it
    // records the sealed request), the second is attacked.
    let (url, hit) = f.rechunking_relay(ChunkAttack::Identity);
    assert!(run(url.clone()).0);
    let (valid, out, err) = run(url);
    assert!(hit.load(std::sync::atomic::Ordering::SeqCst));
    assert!(
        valid && out == honest,
        "the re-framing relay alone broke the answer: {err}"
    );
    let mut attacked = 0;
    for attack in [
        ChunkAttack::Drop(0),
        ChunkAttack::Drop(1),
        ChunkAttack::Drop(3),
        ChunkAttack::Swap(0),
        ChunkAttack::Swap(2),
        ChunkAttack::Duplicate(1),
        ChunkAttack::Replay,
    ] {
        let (url, hit) = f.rechunking_relay(attack);
        let (valid, out, err) = run(url.clone());
        assert!(
            valid && out == honest,
            "{attack:?}: the recording run must be honest: {err}"
        );
        let (valid, out, err) = run(url);
        assert!(
            hit.load(std::sync::atomic::Ordering::SeqCst),
            "{attack:?}: the answer had too few chunks to attack"
        );
        attacked += 1;
        assert!(!valid, "{attack:?}: accepted; stdout {out:?}, stderr {err}");
        assert!(
            honest.starts_with(out.trim_end()),
            "{attack:?}: printed text that is not the authentic answer: {out:?}"
        );
    }
    assert_eq!(attacked, 7);
}

/// Runs `openssl` with `args` in `dir`; panics with its stderr on failure.
fn openssl(dir: &Path, args: &[&str]) {
    let out = std::process::Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `secllama-verify bundle` as a process: (exit code, JSON).
fn bundle_cli(args: &[&str]) -> (Option<i32>, serde_json::Value) {
    let out = std::process::Command::new(secllama_tests::workspace_bin("secllama-verify"))
        .arg("bundle")
        .args(args)
        .output()
        .unwrap();
    let v = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "bundle {args:?}: {e}: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.code(), v)
}

/// AK trust through `tpm.ak_roots` from the client (an AK certificate given with `--cert`,
/// issued by a test CA that openssl runs), then an evidence bundle re-appraised offline after the
/// enclave and its TPM are gone: the same verdict at its recorded time; a newer CRL revoking the
/// AK certificate, a later `--at` past its validity, another manifest and a flipped evidence byte
/// each change it, and the output says exactly what.
#[test]
fn ak_roots_from_the_client_and_a_bundle_reappraised_after_the_enclave_is_gone() {
    use rsa::pkcs8::EncodePublicKey;
    let f = fixture();
    // Files that outlive the enclave's own folder.
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().to_path_buf();
    // The AK's public key, from a document.
    let doc_path = dir.join("first.cose");
    let (valid, _) = f.attest(
        &f.url(),
        &f.write_manifest("pinned.toml", &f.manifest),
        Some(doc_path.clone()),
    );
    assert!(valid);
    let doc =
        secllama_protocol::attestation::open_document(&std::fs::read(&doc_path).unwrap()).unwrap();
    let ak = secllama_verifier::tpm::AkPublic::detect(&doc.payload.tpm.unwrap().ak_public).unwrap();
    let secllama_protocol::cose::VerifyingKey::Rsa(k) = ak.verifying_key().unwrap() else {
        panic!("the test AK is RSA");
    };
    std::fs::write(
        dir.join("ak.pem"),
        k.to_public_key_pem(rsa::pkcs8::LineEnding::LF).unwrap(),
    )
    .unwrap();
    // A CA with a database, so it can revoke.
    std::fs::write(dir.join("index.txt"), "").unwrap();
    std::fs::write(dir.join("crlnumber"), "01\n").unwrap();
    std::fs::write(
        dir.join("ca.cnf"),
        "[ca]\ndefault_ca = test\n[test]\ndatabase = index.txt\ncrlnumber = crlnumber\ndefault_md = sha256\ndefault_crl_days = 30\n\
         [v3_ca]\nbasicConstraints = critical, CA:TRUE\nkeyUsage = critical, keyCertSign, cRLSign\n\
         [v3_ak]\nbasicConstraints = critical, CA:FALSE\nkeyUsage = critical, digitalSignature\n",
    )
    .unwrap();
    openssl(
        &dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "3650",
            "-subj",
            "/CN=secllama test AK CA",
            "-config",
            "ca.cnf",
            "-extensions",
            "v3_ca",
        ],
    );
    // The AK certificate: the AK's key, valid one day, issued by the CA (force_pubkey: the CA never
    // sees the AK's private key, as with a real AK CA after credential activation).
    openssl(
        &dir,
        &[
            "genpkey",
            "-algorithm",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-out",
            "dummy.key",
        ],
    );
    openssl(
        &dir,
        &[
            "req",
            "-new",
            "-key",
            "dummy.key",
            "-subj",
            "/CN=secllama test AK",
            "-out",
            "ak.csr",
        ],
    );
    openssl(
        &dir,
        &[
            "x509",
            "-req",
            "-in",
            "ak.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-force_pubkey",
            "ak.pem",
            "-days",
            "1",
            "-set_serial",
            "4242",
            "-extfile",
            "ca.cnf",
            "-extensions",
            "v3_ak",
            "-out",
            "akcert.pem",
        ],
    );
    let mut m = f.manifest.clone();
    m.tpm.ak_publics.clear();
    m.tpm.ak_roots = vec![std::fs::read_to_string(dir.join("ca.pem")).unwrap()];
    let roots_manifest = dir.join("roots.toml");
    std::fs::write(&roots_manifest, m.to_toml().unwrap()).unwrap();
    // Without the AK certificate: the root cannot be applied.
    let (valid, r) = f.attest(&f.url(), &roots_manifest, None);
    assert!(!valid);
    assert!(reasons(&r, "tpm").contains("no AK certificate"), "{r:#}");
    // With it (--cert), recorded in a bundle.
    let bundle = dir.join("evidence.bundle");
    let out = attest::run(&attest::Args {
        url: f.url(),
        manifest: roots_manifest.clone(),
        save: None,
        save_bundle: Some(bundle.clone()),
        certs: vec![dir.join("akcert.pem")],
        format: Format::Json,
    })
    .unwrap();
    let r: serde_json::Value = serde_json::from_str(&out.report).unwrap();
    assert!(out.valid, "{r:#}");
    assert!(
        r["submods"]["tpm"]["secllama.passed"]
            .to_string()
            .contains("AK certificate chains to tpm.ak_roots"),
        "{r:#}"
    );
    // The enclave, its agent and its TPM go away.
    drop(f);
    let b = bundle.to_str().unwrap();
    let (code, v) = bundle_cli(&[b]);
    assert_eq!(code, Some(0), "{v:#}");
    assert_eq!(v["same_verdict"], true, "{v:#}");
    assert_eq!(v["result"]["submods"]["tpm"]["ear.status"], "affirming");
    // A newer CRL revoking the AK certificate.
    openssl(
        &dir,
        &[
            "ca",
            "-config",
            "ca.cnf",
            "-keyfile",
            "ca.key",
            "-cert",
            "ca.pem",
            "-revoke",
            "akcert.pem",
        ],
    );
    openssl(
        &dir,
        &[
            "ca", "-config", "ca.cnf", "-keyfile", "ca.key", "-cert", "ca.pem", "-gencrl", "-out",
            "ca.crl",
        ],
    );
    let crl = dir.join("ca.crl");
    let (code, v) = bundle_cli(&[b, "--crl", crl.to_str().unwrap()]);
    assert_eq!(code, Some(1), "{v:#}");
    assert_eq!(v["same_verdict"], false);
    let changes = v["changes"].to_string();
    assert!(
        changes.contains("revoked") && changes.contains("serial 10:92"),
        "{changes}"
    );
    assert!(
        changes.contains("tpm: recorded \\\"affirming\\\", now \\\"contraindicated\\\""),
        "{changes}"
    );
    // Later than the AK certificate's validity.
    let (code, v) = bundle_cli(&[b, "--at", "2100-01-01T00:00:00Z"]);
    assert_eq!(code, Some(1));
    assert!(v["changes"].to_string().contains("validity"), "{v:#}");
    // Another manifest (the model digest changed).
    m.enclave.model = "11".repeat(32);
    let other = dir.join("other.toml");
    std::fs::write(&other, m.to_toml().unwrap()).unwrap();
    let (code, v) = bundle_cli(&[b, "--manifest", other.to_str().unwrap()]);
    assert_eq!(code, Some(1));
    let changes = v["changes"].to_string();
    assert!(
        changes.contains("manifest given differs") && changes.contains("model"),
        "{changes}"
    );
    // A flipped byte inside the recorded evidence.
    let mut bytes = std::fs::read(&bundle).unwrap();
    let document = std::fs::read(dir.join("first.cose")).unwrap();
    let at = bytes
        .windows(16)
        .position(|w| w == &document[40..56])
        .unwrap();
    bytes[at + 8] ^= 1;
    let tampered = dir.join("tampered.bundle");
    std::fs::write(&tampered, &bytes).unwrap();
    let (code, v) = bundle_cli(&[tampered.to_str().unwrap()]);
    assert_eq!(code, Some(1), "{v:#}");
    assert!(
        v["changes"].to_string().contains("evidence digest differs"),
        "{v:#}"
    );
    // Not a bundle: exit 2.
    let out = std::process::Command::new(secllama_tests::workspace_bin("secllama-verify"))
        .args(["bundle", roots_manifest.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

/// AK trust through `tpm.ek_cas` from the client: on a TPM provisioned with an EK certificate
/// (swtpm's local CA), the client makes a credential for the document's EK and AK, the enclave's
/// TPM activates it (`POST /attestation/credential`), and the EK certificate chains to the CA the
/// manifest names: affirming. Another CA: not affirming, naming the chain. A bundle of that
/// appraisal re-appraised offline says the activation cannot be replayed.
#[test]
fn ek_cas_through_credential_activation_from_the_client() {
    let f = fixture_on(true);
    let localca = |name: &str| {
        std::fs::read_to_string(Path::new("/var/lib/swtpm-localca").join(name)).unwrap()
    };
    let mut m = f.manifest.clone();
    m.tpm.ak_publics.clear();
    m.tpm.ek_cas = vec![
        localca("issuercert.pem"),
        localca("swtpm-localca-rootca-cert.pem"),
    ];
    let path = f.write_manifest("ek.toml", &m);
    let bundle = f.dir.join("ek.bundle");
    let out = attest::run(&attest::Args {
        url: f.url(),
        manifest: path.clone(),
        save: None,
        save_bundle: Some(bundle.clone()),
        certs: Vec::new(),
        format: Format::Json,
    })
    .unwrap();
    let r: serde_json::Value = serde_json::from_str(&out.report).unwrap();
    assert!(out.valid, "{r:#}");
    assert!(
        r["submods"]["tpm"]["secllama.passed"]
            .to_string()
            .contains("credential activation"),
        "{r:#}"
    );
    // Through the TCP relay too (the bridge relays the activation like any request).
    let (valid, _) = f.attest(&f.tcp_relay(), &path, None);
    assert!(valid);
    // Another CA (a fresh self-signed one): the EK certificate does not chain to it.
    let work = tempfile::tempdir().unwrap();
    openssl(
        work.path(),
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            "k.pem",
            "-out",
            "other.pem",
            "-days",
            "30",
            "-subj",
            "/CN=swtpm-localca",
        ],
    );
    m.tpm.ek_cas = vec![std::fs::read_to_string(work.path().join("other.pem")).unwrap()];
    let (valid, r) = f.attest(&f.url(), &f.write_manifest("other-ca.toml", &m), None);
    assert!(!valid);
    assert!(reasons(&r, "tpm").contains("tpm.ek_cas"), "{r:#}");
    // Offline, the activation is not in the bundle: the AK is no longer trusted, and it says why.
    let (code, v) = bundle_cli(&[bundle.to_str().unwrap()]);
    assert_eq!(code, Some(1), "{v:#}");
    assert!(
        v["changes"]
            .to_string()
            .contains("cannot be replayed offline"),
        "{v:#}"
    );
}
