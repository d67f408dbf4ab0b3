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
use secllama_tests::enclave::read_request;
use secllama_tests::runner::{answer_tokens, stream_lines};
use std::path::{Path, PathBuf};

mod client_fixture;
use client_fixture::{Fixture, PROMPT, fixture, reasons, status};

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
        heads: None,
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
    assert!(
        err.contains("log: entry 0 is in the signed head of"),
        "the receipt is proven in the enclave's log: {err}"
    );
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
                    if let Some(eol) = req.windows(2).position(|w| w == b"\r\n") {
                        // One request per connection here: the enclave closes it after
                        // answering, so the client does not reuse a connection this relay ends.
                        req.splice(eol + 2..eol + 2, b"Connection: close\r\n".iter().copied());
                    }
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
            heads: None,
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
