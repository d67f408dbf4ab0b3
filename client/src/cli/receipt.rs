//! `secllama-verify receipt --receipts FILE --attestation DOC [--format json|text]`: verifies stored
//! receipts offline against a saved attestation document (`secllama-verify attest --save DOC`).
//!
//! The receipts file is what `secllama-verify proxy --receipts` writes: one JSON object per line
//! with `request_id`, `time`, `log_index`, `attestation` (the digest of the document the request was
//! sealed for) and `receipt` (COSE_Sign1, hex). Every receipt naming the document's signing key
//! must verify under it, with the log index the line records (any document of the same enclave
//! instance serves: they share the key); receipts naming another key (the enclave restarted with
//! new keys) are listed as such and need that instance's document. Valid (exit 0) only if at least one receipt verified and none failed. The
//! report lists the log positions: they must increase; gaps are other clients' receipts.

use super::{Format, Outcome};
use anyhow::Context;
use coset::{CborSerializable, TaggedCborSerializable};
use secllama_protocol::attestation::open_document;
use secllama_protocol::receipt::verify_receipt;
use serde_json::{Value, json};
use std::path::PathBuf;

/// Arguments of `secllama-verify receipt`.
#[derive(Debug, Clone, clap::Args)]
#[command(
    after_help = "Example:\n  $ secllama-verify receipt --receipts receipts/ --attestation attestation.cbor --format text"
)]
pub struct Args {
    /// The receipts file (JSON lines, as `secllama-verify proxy --receipts` writes).
    #[arg(long)]
    pub receipts: PathBuf,
    /// The attestation document the receipts were issued under (`attest --save`).
    #[arg(long)]
    pub attestation: PathBuf,
    /// Output format.
    #[arg(long, value_enum, default_value = "text")]
    pub format: Format,
}

/// Runs `receipt`.
pub fn run(args: &Args) -> anyhow::Result<Outcome> {
    let doc_bytes = std::fs::read(&args.attestation)
        .with_context(|| format!("reading {}", args.attestation.display()))?;
    let doc = open_document(&doc_bytes).with_context(|| {
        format!(
            "{}: expected an attestation document signed under its own key",
            args.attestation.display()
        )
    })?;
    let digest = doc.digest.to_hex();
    let doc_kid = doc.payload.keys.signing.kid()?.0;
    let text = std::fs::read_to_string(&args.receipts)
        .with_context(|| format!("reading {}", args.receipts.display()))?;
    let mut rows = Vec::new();
    let (mut verified, mut failed, mut other) = (0usize, 0usize, 0usize);
    let mut last_index: Option<u64> = None;
    for (n, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let line_no = n + 1;
        let row = (|| -> Result<Value, String> {
            let v: Value = serde_json::from_str(line).map_err(|e| format!("not JSON: {e}"))?;
            let field = |k: &str| v.get(k).ok_or_else(|| format!("no field {k:?}"));
            let hexed = field("receipt")?.as_str().ok_or("receipt: expected hex")?;
            let bytes = hex::decode(hexed).map_err(|e| format!("receipt: not hex: {e}"))?;
            // Receipts name their signing key (kid): one enclave instance signs with one key, so
            // a receipt naming another key was issued by another instance (a restart) and needs
            // that instance's document. Anything unreadable is a failure, not "another key".
            let sign1 = coset::CoseSign1::from_tagged_slice(&bytes)
                .or_else(|_| coset::CoseSign1::from_slice(&bytes))
                .map_err(|e| format!("receipt: not a COSE_Sign1: {e}"))?;
            let kid = &sign1.protected.header.key_id;
            if !kid.is_empty() && kid[..] != doc_kid[..] {
                let for_doc = v.get("attestation").and_then(Value::as_str).unwrap_or("");
                return Ok(
                    json!({"line": line_no, "status": "other-key", "kid": hex::encode(kid), "attestation": for_doc}),
                );
            }
            let r = verify_receipt(&bytes, &doc.payload.keys.signing).map_err(|e| {
                format!("receipt does not verify under the document's signing key: {e}")
            })?;
            let recorded = field("log_index")?.as_u64();
            if recorded != Some(r.log_index) {
                return Err(format!(
                    "log index: the line records {recorded:?}, the signed receipt says {}",
                    r.log_index
                ));
            }
            if let Some(prev) = last_index
                && r.log_index <= prev
            {
                return Err(format!(
                    "log index {} does not follow {prev}: positions must increase",
                    r.log_index
                ));
            }
            last_index = Some(r.log_index);
            Ok(json!({
                "line": line_no, "status": "verified", "log_index": r.log_index,
                "request_id": v.get("request_id"), "time": r.time, "model": r.model,
                "policy": r.policy_digest.to_hex(),
                "num_predict": r.params.num_predict, "defaults": r.params.defaults,
            }))
        })();
        match row {
            Ok(v) => {
                match v["status"].as_str() {
                    Some("verified") => verified += 1,
                    _ => other += 1,
                }
                rows.push(v);
            }
            Err(e) => {
                failed += 1;
                rows.push(json!({"line": line_no, "status": "failed", "reason": e}));
            }
        }
    }
    let valid = verified > 0 && failed == 0;
    let report = match args.format {
        Format::Json => serde_json::to_string_pretty(&json!({
            "attestation": digest, "verified": verified, "failed": failed,
            "other_keys": other, "receipts": rows, "valid": valid,
        }))?,
        Format::Text => {
            let mut out = format!("attestation document sha256:{digest}\n");
            for r in &rows {
                match r["status"].as_str() {
                    Some("verified") => out.push_str(&format!(
                        "  ok   line {}: log index {}, model {}, time {}\n",
                        r["line"],
                        r["log_index"],
                        r["model"].as_str().unwrap_or(""),
                        r["time"]
                    )),
                    Some("failed") => out.push_str(&format!(
                        "  FAIL line {}: {}\n",
                        r["line"],
                        r["reason"].as_str().unwrap_or("")
                    )),
                    _ => out.push_str(&format!(
                        "  --   line {}: signed by another enclave key ({}); check it against that instance's document\n",
                        r["line"],
                        r["kid"].as_str().unwrap_or("")
                    )),
                }
            }
            out.push_str(&format!(
                "{verified} verified, {failed} failed, {other} signed by other enclave keys: {}",
                if valid { "valid" } else { "NOT valid" }
            ));
            out
        }
    };
    Ok(Outcome { report, valid })
}
