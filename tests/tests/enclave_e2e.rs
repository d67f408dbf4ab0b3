//! The enclave agent end to end, in process, over its real unix listener, with a real swtpm and the
//! test runner: attestation (COSE signature, quote appraised in pure Rust, binding, event-log replay,
//! launch PCR and digests as predicted), sealed generate and chat (streaming and not) whose answers
//! are the runner's exact bytes and end with a verified receipt, session reuse, policy refusal and
//! replay refusal — both sealed.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test crate: a failed unwrap is a failed test

use bytes::Bytes;
use rand_core::OsRng;
use secllama_enclave::agent::{Agent, now_ms};
use secllama_enclave::service::{run, serve};
use secllama_measurements::eventlog::EventLog;
use secllama_protocol::attestation::{VerifiedDocument, check_nonce, open_document};
use secllama_protocol::receipt::verify_receipt;
use secllama_protocol::seal::{
    ContentKey, RequestContext, RequestPlaintext, ResponseKeys, StreamOpener, seal_request,
    seal_request_session,
};
use secllama_protocol::{Nonce, sha256};
use secllama_tests::enclave::{RunnerMode, policy_for, prepare};
use secllama_tests::runner::{answer_tokens, stream_lines};
use secllama_verifier::tpm::{HashAlg, PcrValues, QuotePolicy, appraise_quote_bytes};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// One exchange with the agent's unix socket (`secllama_tests::enclave::unix_http`).
async fn http(
    sock: &Path,
    method: &str,
    path: &str,
    header: Option<String>,
    body: Vec<u8>,
) -> (u16, Bytes) {
    secllama_tests::enclave::unix_http(sock, method, path, header, body)
        .await
        .unwrap()
}

const PROMPT: &str = "why is the sky blue";

/// Opens a sealed stream: (data bytes, final envelope).
fn open_stream(
    key: &ContentKey,
    pt: &RequestPlaintext,
    body: &[u8],
) -> (Vec<u8>, serde_json::Value) {
    let mut o = StreamOpener::new(ResponseKeys::derive(key, &pt.id).unwrap());
    let chunks = o.push(body).unwrap();
    o.finish().unwrap();
    let (last, data) = chunks.split_last().unwrap();
    assert!(last.last);
    (
        data.iter().flat_map(|c| c.data.clone()).collect(),
        serde_json::from_slice(&last.data).unwrap(),
    )
}

struct Fixture {
    _prepared: secllama_tests::enclave::Prepared,
    sock: PathBuf,
    predicted: secllama_measurements::launch::Prediction,
}

fn fixture() -> Fixture {
    fixture_with(false)
}

/// With `supervised`, the agent starts the runner itself (crashing after one streamed chunk).
fn fixture_with(supervised: bool) -> Fixture {
    let runner = std::path::Path::new(env!("CARGO_BIN_EXE_secllama-test-runner"));
    let mode = if supervised {
        RunnerMode::Supervised(&["--crash-after", "1"])
    } else {
        RunnerMode::Started
    };
    let p = prepare(runner, mode, &policy_for(PROMPT)).unwrap();
    let agent = Arc::new(Agent::start(&p.config, &p.base).unwrap());
    let listener = secllama_enclave::listener::Listener::Unix(
        tokio::net::UnixListener::bind(&p.sock).unwrap(),
    );
    if supervised {
        let (tx, rx) = std::sync::mpsc::channel();
        tokio::spawn(run(
            agent,
            p.config.runner_command.clone(),
            p.config.runner_env.clone().into_iter().collect(),
            std::time::Duration::from_secs(p.config.runner_ready_secs),
            listener,
            move || {
                let _ = tx.send(());
            },
        ));
        rx.recv_timeout(std::time::Duration::from_secs(30))
            .expect("the supervised runner became ready");
    } else {
        tokio::spawn(serve(agent, listener));
    }
    Fixture {
        sock: p.sock.clone(),
        predicted: p.prediction.clone(),
        _prepared: p,
    }
}

async fn attest(f: &Fixture) -> (Vec<u8>, VerifiedDocument) {
    let nonce = [0x4e; 32];
    let (status, doc) = http(
        &f.sock,
        "GET",
        &format!("/attestation?nonce={}", hex::encode(nonce)),
        None,
        vec![],
    )
    .await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&doc));
    let v = open_document(&doc).unwrap();
    check_nonce(&v, &Nonce::new(nonce.to_vec()).unwrap()).unwrap();
    (doc.to_vec(), v)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attestation_binds_keys_quote_log_and_digests() {
    let f = fixture();
    let (_, v) = attest(&f).await;
    let p = &v.payload;
    let tpm = p.tpm.as_ref().unwrap();
    let mut pcrs = PcrValues::new();
    for (bank, values) in &tpm.pcrs {
        for (i, d) in values {
            pcrs.insert(HashAlg::from_name(bank).unwrap(), *i, d.clone())
                .unwrap();
        }
    }
    let binding = p.binding().unwrap();
    let policy = QuotePolicy {
        nonce: &binding.0,
        pcrs: &pcrs,
        allow_sha1: false,
        qualified_signer: None,
    };
    let a = appraise_quote_bytes(&tpm.attest, &tpm.signature, &tpm.ak_public, &policy);
    assert!(a.valid(), "{:?}", a.reasons());
    // The event log replays to the quoted PCRs; PCR 15 is the prediction; PCR 23 holds the keys.
    let replay = EventLog::parse(&tpm.event_log).unwrap().replay();
    for (bank, values) in &tpm.pcrs {
        let b = secllama_measurements::eventlog::Bank::from_name(bank).unwrap();
        for (i, d) in values {
            assert_eq!(replay[&b].get(i), Some(d), "{bank}:{i}");
        }
        assert_eq!(values[&15], f.predicted.pcrs[&b][&15]);
    }
    assert_eq!(p.measurements.model.0, f.predicted.digests.model);
    assert_eq!(p.measurements.policy.0, f.predicted.digests.policy);
    // A short nonce is refused.
    let (status, _) = http(&f.sock, "GET", "/attestation?nonce=00", None, vec![]).await;
    assert_eq!(status, 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sealed_generate_and_chat_end_with_verified_receipts() {
    let f = fixture();
    let (doc, v) = attest(&f).await;
    let doc_hex = hex::encode(sha256(&[&doc]).0);
    let spki = v.payload.keys.encryption_spki.clone();
    let path = "/v1/sealed/api/generate";
    let ctx = RequestContext {
        method: "POST",
        path,
        attestation_digest: v.digest,
    };
    let body =
        format!(r#"{{"model":"tiny:latest","prompt":"{PROMPT}","options":{{"num_predict":16}}}}"#);
    let pt = RequestPlaintext::new(body.clone().into_bytes(), now_ms(), &mut OsRng).unwrap();
    let (sealed, key) = seal_request(&spki, &ctx, &pt, &mut OsRng).unwrap();
    let (status, answer) = http(&f.sock, "POST", path, Some(doc_hex.clone()), sealed.clone()).await;
    assert_eq!(status, 200);
    let (data, end) = open_stream(&key, &pt, &answer);
    let expected: String = stream_lines(false, &answer_tokens(PROMPT))
        .iter()
        .map(|l| format!("{l}\n"))
        .collect();
    assert_eq!(
        String::from_utf8(data.clone()).unwrap(),
        expected,
        "the runner's exact NDJSON"
    );
    assert_eq!(end["status"], 200);
    let receipt = verify_receipt(
        &hex::decode(end["receipt"].as_str().unwrap()).unwrap(),
        &v.payload.keys.signing,
    )
    .unwrap();
    assert_eq!(receipt.request_digest, pt.salt.digest(body.as_bytes()));
    assert_eq!(receipt.response_digest, pt.salt.digest(&data));
    assert_eq!(receipt.model, "tiny:latest");
    assert_eq!(receipt.log_index, 0);

    // The same sealed bytes again: refused as a replay, inside the sealed channel.
    let (_, again) = http(&f.sock, "POST", path, Some(doc_hex.clone()), sealed).await;
    let (data, end) = open_stream(&key, &pt, &again);
    assert!(data.is_empty());
    assert_eq!(end["status"], 409, "{end}");

    // Session reuse, non-streaming chat.
    let chat_path = "/v1/sealed/api/chat";
    let chat = format!(
        r#"{{"model":"tiny:latest","stream":false,"messages":[{{"role":"user","content":"{PROMPT}"}}],"options":{{"num_predict":16}}}}"#
    );
    let pt2 = RequestPlaintext::new(chat.into_bytes(), now_ms(), &mut OsRng).unwrap();
    let ctx2 = RequestContext {
        path: chat_path,
        ..ctx
    };
    let sealed2 = seal_request_session(&key, &ctx2, &pt2, &mut OsRng).unwrap();
    let (_, answer2) = http(&f.sock, "POST", chat_path, Some(doc_hex.clone()), sealed2).await;
    let (data2, end2) = open_stream(&key, &pt2, &answer2);
    let v2: serde_json::Value = serde_json::from_slice(&data2).unwrap();
    assert_eq!(v2["message"]["content"], answer_tokens(PROMPT).concat());
    assert_eq!(
        verify_receipt(
            &hex::decode(end2["receipt"].as_str().unwrap()).unwrap(),
            &v.payload.keys.signing
        )
        .unwrap()
        .log_index,
        1
    );

    // A prompt outside the dataset: a sealed 403 naming the rule; nothing reaches the runner.
    let pt3 = RequestPlaintext::new(
        br#"{"model":"tiny:latest","prompt":"tell me a secret","options":{"num_predict":4}}"#
            .to_vec(),
        now_ms(),
        &mut OsRng,
    )
    .unwrap();
    let sealed3 = seal_request_session(&key, &ctx, &pt3, &mut OsRng).unwrap();
    let (_, answer3) = http(&f.sock, "POST", path, Some(doc_hex.clone()), sealed3).await;
    let (data3, end3) = open_stream(&key, &pt3, &answer3);
    assert!(data3.is_empty());
    assert_eq!(end3["status"], 403);
    assert!(
        end3["problem"]["detail"]
            .as_str()
            .unwrap()
            .contains("rule dataset"),
        "{end3}"
    );

    // Bound to the attestation document: an unknown document digest is refused before opening.
    let (status, _) = http(&f.sock, "POST", path, Some("00".repeat(32)), vec![1, 2, 3]).await;
    assert_eq!(status, 409);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runner_crash_mid_stream_is_a_sealed_error_and_the_runner_is_restarted() {
    let f = fixture_with(true);
    let (doc, v) = attest(&f).await;
    let doc_hex = hex::encode(sha256(&[&doc]).0);
    let path = "/v1/sealed/api/generate";
    let ctx = RequestContext {
        method: "POST",
        path,
        attestation_digest: v.digest,
    };
    let body =
        format!(r#"{{"model":"tiny:latest","prompt":"{PROMPT}","options":{{"num_predict":16}}}}"#);
    let pt = RequestPlaintext::new(body.into_bytes(), now_ms(), &mut OsRng).unwrap();
    let (sealed, key) =
        seal_request(&v.payload.keys.encryption_spki, &ctx, &pt, &mut OsRng).unwrap();
    let (_, answer) = http(&f.sock, "POST", path, Some(doc_hex.clone()), sealed).await;
    let (_, end) = open_stream(&key, &pt, &answer);
    assert_eq!(end["status"], 502, "{end}");
    assert!(
        end.get("receipt").is_none(),
        "no receipt for a broken answer"
    );

    // The supervisor restarts the runner; a non-streamed request (which this runner does not crash
    // on) then succeeds with a receipt. Bounded wait.
    let body = format!(
        r#"{{"model":"tiny:latest","prompt":"{PROMPT}","stream":false,"options":{{"num_predict":16}}}}"#
    );
    let mut last = serde_json::Value::Null;
    for _ in 0..50 {
        let pt = RequestPlaintext::new(body.clone().into_bytes(), now_ms(), &mut OsRng).unwrap();
        let sealed = seal_request_session(&key, &ctx, &pt, &mut OsRng).unwrap();
        let (_, answer) = http(&f.sock, "POST", path, Some(doc_hex.clone()), sealed).await;
        let (data, end) = open_stream(&key, &pt, &answer);
        if end["status"] == 200 {
            let v2: serde_json::Value = serde_json::from_slice(&data).unwrap();
            assert_eq!(v2["response"], answer_tokens(PROMPT).concat());
            assert!(end["receipt"].is_string());
            return;
        }
        last = end;
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("the runner was not restarted: last answer {last}");
}

/// A client that goes away ends the agent's request to the runner, also while the runner sends
/// nothing: twenty requests to a runner that stalls before its first token, each abandoned after
/// 300 ms, leave the runner with no more open connections than before (a hostile or slow runner
/// could otherwise make the agent hold a connection per abandoned request until it runs out of
/// descriptors).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_abandoned_request_ends_the_runner_request() {
    let runner = std::path::Path::new(env!("CARGO_BIN_EXE_secllama-test-runner"));
    let p = prepare(
        runner,
        RunnerMode::StartedWith(&["--stall-after", "0"]),
        &policy_for(PROMPT),
    )
    .unwrap();
    let runner_pid = p.runner.as_ref().unwrap().0.id();
    let fds = || {
        std::fs::read_dir(format!("/proc/{runner_pid}/fd"))
            .unwrap()
            .count()
    };
    let agent = Arc::new(Agent::start(&p.config, &p.base).unwrap());
    let listener = secllama_enclave::listener::Listener::Unix(
        tokio::net::UnixListener::bind(&p.sock).unwrap(),
    );
    tokio::spawn(serve(agent, listener));
    let f = Fixture {
        sock: p.sock.clone(),
        predicted: p.prediction.clone(),
        _prepared: p,
    };
    let (doc, v) = attest(&f).await;
    let doc_hex = hex::encode(sha256(&[&doc]).0);
    let path = "/v1/sealed/api/generate";
    let ctx = RequestContext {
        method: "POST",
        path,
        attestation_digest: v.digest,
    };
    let before = fds();
    for i in 0..20 {
        let body = format!(
            r#"{{"model":"tiny:latest","prompt":"{PROMPT}","options":{{"num_predict":16}}}}"#
        );
        let pt = RequestPlaintext::new(body.into_bytes(), now_ms(), &mut OsRng).unwrap();
        let (sealed, _) =
            seal_request(&v.payload.keys.encryption_spki, &ctx, &pt, &mut OsRng).unwrap();
        let sock = f.sock.clone();
        let h = doc_hex.clone();
        let task = tokio::spawn(async move { http(&sock, "POST", path, Some(h), sealed).await });
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        if i == 0 {
            assert!(fds() > before, "the request did not reach the runner");
        }
        task.abort();
    }
    // Bounded wait for the runner to see its connections closed.
    let mut now = fds();
    for _ in 0..50 {
        if now <= before + 2 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        now = fds();
    }
    assert!(
        now <= before + 2,
        "the runner holds {now} descriptors after 20 abandoned requests, {before} before"
    );
    // The agent still answers.
    attest(&f).await;
}
