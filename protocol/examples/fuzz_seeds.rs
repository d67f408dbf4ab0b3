//! `fuzz_seeds CORPUS_DIR`: writes seeds the project's own code produces into `CORPUS_DIR/TARGET/`
//! (`gen-*` files), so every target starts from valid inputs of its formats, not only from the
//! shared vectors: attestation documents, receipts, signed tree heads, a whole receipt log, sealed
//! requests (RSA-OAEP and session), sealed single answers and streams, CBOR values, policy
//! decisions and the proxy's requests and streams. Fresh keys each run (nothing secret is kept);
//! scripts/fuzz.sh runs it before fuzzing (`cargo run --release -p secllama-protocol --example
//! fuzz_seeds -- fuzz/corpus`). An example of this crate rather than a binary of `fuzz/`: it needs
//! no coverage instrumentation, and the test build already compiles it.

#[path = "../tests/common/mod.rs"]
mod common;

use rand_core::OsRng;
use secllama_protocol::attestation::sign_document;
use secllama_protocol::cose::SigningKey;
use secllama_protocol::receipt::{ReceiptParams, ReceiptPayload, sign_receipt};
use secllama_protocol::receipt_log::{Kind, encode};
use secllama_protocol::rfc9162::{Tree, leaf_hash};
use secllama_protocol::seal::{
    ContentKey, RequestContext, RequestPlaintext, ResponseKeys, StreamSealer, seal_request,
    seal_request_session, seal_single,
};
use secllama_protocol::tree_head::{LogIdentity, TreeHead, sign_tree_head};
use secllama_protocol::{RequestId, Sha256Digest, sha256};
use std::path::Path;

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

fn write(dir: &Path, target: &str, name: &str, bytes: &[u8]) -> Result<()> {
    let d = dir.join(target);
    std::fs::create_dir_all(&d)?;
    std::fs::write(d.join(format!("gen-{name}")), bytes)?;
    Ok(())
}

fn receipt(key: &SigningKey, index: u64) -> Result<Vec<u8>> {
    Ok(sign_receipt(
        &ReceiptPayload {
            request_digest: sha256(&[b"request"]),
            response_digest: sha256(&[b"response"]),
            model: "smollm2:135m".into(),
            policy_digest: sha256(&[b"policy"]),
            signing_kid: key.public().kid()?,
            log_index: index,
            time: 1_790_000_000_000 + index,
            params: ReceiptParams {
                num_predict: Some(32),
                defaults: vec!["num_predict".into()],
            },
        },
        key,
    )?)
}

/// A receipt log of `entries` receipts, a head after each: identity, (entry, head)*.
fn log_file(signer: &SigningKey, log_key: &SigningKey, entries: u64) -> Result<Vec<u8>> {
    let log_id = log_key.public().kid()?;
    let mut out = encode(
        Kind::Identity,
        &LogIdentity {
            key: log_key.public(),
            sealed: vec![0x5e; 64],
        }
        .to_bytes()?,
    )?;
    let mut tree = Tree::new();
    for i in 0..entries {
        let r = receipt(signer, i)?;
        tree.push(leaf_hash(&r));
        out.extend(encode(Kind::Entry, &r)?);
        let head = TreeHead {
            log_id,
            size: tree.len(),
            root: Sha256Digest(tree.root(tree.len())?),
            time_ms: 1_790_000_000_000 + i,
            counter: i + 1,
        };
        out.extend(encode(Kind::TreeHead, &sign_tree_head(&head, log_key)?)?);
    }
    Ok(out)
}

fn main() -> Result<()> {
    let dir = std::env::args()
        .nth(1)
        .ok_or("usage: fuzz_seeds CORPUS_DIR (scripts/fuzz.sh runs it)")?;
    let dir = Path::new(&dir);
    let signer = SigningKey::generate(&mut OsRng);
    let log_key = SigningKey::generate(&mut OsRng);
    let rsa = common::enclave_key();

    let doc = sign_document(
        &common::full_payload(&signer, rsa.public_key_der()),
        &signer,
    )?;
    let r0 = receipt(&signer, 0)?;
    let head = sign_tree_head(
        &TreeHead {
            log_id: log_key.public().kid()?,
            size: 1,
            root: Sha256Digest(leaf_hash(&r0)),
            time_ms: 1_790_000_000_000,
            counter: 1,
        },
        &log_key,
    )?;
    let log = log_file(&signer, &log_key, 3)?;
    // Seeds of valid inputs must be valid: the parsers agree, or the generator is wrong.
    secllama_protocol::attestation::open_document(&doc)?;
    let parsed = secllama_protocol::receipt_log::parse(&log)?;
    let verified = secllama_protocol::receipt_log::verify(&parsed.records)?;
    if verified.heads.len() != 3 || parsed.valid_len != log.len() as u64 {
        return Err(format!(
            "the generated log does not verify whole: {} heads",
            verified.heads.len()
        )
        .into());
    }
    for target in ["cbor", "cose", "attestation", "receipt_log"] {
        write(dir, target, "attestation", &doc)?;
        write(dir, target, "receipt", &r0)?;
        write(dir, target, "tree-head", &head)?;
    }
    write(dir, "receipt_log", "log", &log)?;
    write(dir, "cose", "cose-key", &signer.public().to_bytes()?)?;

    let ctx = RequestContext {
        method: "POST",
        path: "/v1/sealed/api/generate",
        attestation_digest: sha256(&[b"fuzz"]),
    };
    let body = br#"{"model":"smollm2:135m","prompt":"What is 2+2?","stream":true}"#.to_vec();
    let plain = RequestPlaintext::new(body, 1_790_000_000_000, &mut OsRng)?;
    let (sealed, key) = seal_request(rsa.public_key_der(), &ctx, &plain, &mut OsRng)?;
    let session = seal_request_session(&key, &ctx, &plain, &mut OsRng)?;
    let keys = ResponseKeys::derive(&key, &RequestId([7; 16]))?;
    let single = seal_single(&keys, br#"{"response":"4","done":true}"#)?;
    let mut sealer = StreamSealer::new(keys);
    let mut stream = sealer.seal_chunk(b"{\"response\":\"4\",\"done\":false}\n", false)?;
    stream.extend(sealer.seal_chunk(b"{\"response\":\"\",\"done\":true}\n", true)?);
    let other = ContentKey::generate(&mut OsRng)?;
    for (name, bytes) in [
        ("request-rsa", &sealed),
        ("request-session", &session),
        ("single", &single),
        ("stream", &stream),
    ] {
        write(dir, "sealed", name, bytes)?;
        write(dir, "cbor", name, bytes)?;
    }
    write(dir, "sealed", "session-key", other.as_bytes())?;

    // Policy: endpoint byte, then the body (fuzz/fuzz_targets/policy.rs).
    for (name, which, body) in [
        (
            "generate",
            0u8,
            &br#"{"model":"tiny","prompt":"What is 2+2?","options":{"num_predict":8,"seed":1}}"#[..],
        ),
        (
            "chat",
            1,
            br#"{"model":"smollm2:135m","stream":false,"messages":[{"role":"system","content":"Be brief."},{"role":"user","content":"Why is the sky blue?","images":[]}],"keep_alive":"5m","format":""}"#,
        ),
        ("show", 2, br#"{"name":"tiny","verbose":true}"#),
        ("tags", 3, b"{}"),
        (
            "policy-file",
            0xff,
            br#"{"dataset":[{"id":"a","prompt":"p"},{"id":"b","messages":[{"role":"user","content":"x"}]}],"models":["Tiny"],"max_prompt_bytes":8,"max_num_predict":2,"allowed_options":["seed"]}"#,
        ),
    ] {
        write(dir, "policy", name, &[&[which][..], body].concat())?;
    }
    // Proxy: 0 chat request, 1 completion request, 2 a stream to hold back, 3 a stream to
    // translate (fuzz/fuzz_targets/proxy.rs).
    let ollama_stream: &[u8] = b"{\"model\":\"tiny:latest\",\"message\":{\"role\":\"assistant\",\"content\":\"he\"},\"done\":false}\n{\"model\":\"tiny:latest\",\"message\":{\"role\":\"assistant\",\"content\":\"\"},\"done\":true,\"done_reason\":\"length\",\"prompt_eval_count\":3,\"eval_count\":2}\n";
    for (name, which, body) in [
        (
            "chat",
            0u8,
            &br#"{"model":"tiny","messages":[{"role":"developer","content":"Be brief."},{"role":"user","content":[{"type":"text","text":"Hello"}]}],"max_tokens":8,"temperature":0,"stop":"x","stream":true,"stream_options":{"include_usage":true},"user":"u1"}"#[..],
        ),
        (
            "completion",
            1,
            br#"{"model":"tiny","prompt":["What is 2+2?"],"n":1,"echo":false,"max_completion_tokens":4,"seed":3}"#,
        ),
        ("translate-chat", 3 | 8, ollama_stream),
        (
            "translate-completion",
            3 | 4,
            b"{\"response\":\"x\",\"done\":false}\n{\"error\":\"boom\"}\n{\"response\":\"\",\"done\":true}\n",
        ),
    ] {
        write(dir, "proxy", name, &[&[which][..], body].concat())?;
    }
    // The hold-back's first byte is how the stream is cut.
    write(
        dir,
        "proxy",
        "hold-back",
        &[&[2u8, 5][..], ollama_stream].concat(),
    )?;
    use std::io::Write;
    writeln!(
        std::io::stdout(),
        "fuzz_seeds: written under {}",
        dir.display()
    )?;
    Ok(())
}
