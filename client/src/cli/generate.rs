//! `secllama-verify generate`: attests the enclave against the reference manifest and refuses to
//! send anything unless the result is affirming; then seals an Ollama `/api/generate` (`--prompt`) or
//! `/api/chat` (`--messages`) request for the attested encryption key, POSTs it, opens the sealed
//! answer chunk by chunk and prints the answer text (the `response` / `message.content` fields of
//! the runner's NDJSON, or of its single JSON object) — only ever authenticated bytes. Without
//! `--stream` nothing is printed before the receipt has verified (the whole answer, then); with
//! `--stream` the text appears as it arrives and only the exit status says it was complete.
//! The final receipt must verify under the attested signing key and carry the salted digests of the
//! request sent and the bytes received; a summary goes to stderr.
//!
//! Exit codes: 0 answered with a verified receipt; 1 not affirming, refused by the enclave (the
//! problem's detail is printed), or any decoding or authentication failure; 2 usage or input error.

use super::Outcome;
use super::attest::{load_manifest, runtime};
use crate::attest as client;
use crate::sealed::{self, SealedAnswer, SealedEnd};
use crate::transport::Endpoint;
use anyhow::{Context, bail};
use serde_json::{Value, json};
use std::io::Write;
use std::path::PathBuf;

/// Arguments of `secllama-verify generate`.
#[derive(Debug, Clone, clap::Args)]
#[command(
    after_help = "Examples:\n  $ secllama-verify generate --url http://127.0.0.1:11435 --manifest manifest.toml --model smollm2:135m --prompt \"What is the capital of France?\" --heads heads.jsonl\n  $ secllama-verify generate --url unix:/run/secllama/enclave.sock --manifest manifest.toml --model smollm2:135m --messages chat.json --stream"
)]
#[command(group(clap::ArgGroup::new("input").required(true).args(["prompt", "messages"])))]
pub struct Args {
    /// The enclave API: unix:PATH or http://HOST:PORT.
    #[arg(long)]
    pub url: String,
    /// The reference manifest (TOML).
    #[arg(long)]
    pub manifest: PathBuf,
    /// The model, e.g. tiny:latest.
    #[arg(long)]
    pub model: String,
    /// The prompt (sent to /api/generate).
    #[arg(long)]
    pub prompt: Option<String>,
    /// A JSON file holding the chat messages array (sent to /api/chat).
    #[arg(long)]
    pub messages: Option<PathBuf>,
    /// Ask for a streamed answer.
    #[arg(long)]
    pub stream: bool,
    /// options.num_predict; left out, the enclave applies its policy's maximum (and the receipt
    /// says so).
    #[arg(long = "num-predict")]
    pub num_predict: Option<u64>,
    /// Another Ollama option, KEY=VALUE with a JSON value (e.g. `temperature=0`, `seed=42`,
    /// `stop=["\n"]`); repeatable, each key once. The enclave's policy must allow it.
    #[arg(long = "option", value_name = "KEY=JSON")]
    pub options: Vec<String>,
    /// Keep the receipt log's signed heads in FILE (JSON lines) across runs: each new head must
    /// extend the last one kept (consistency proof, counter). Without it, heads are checked within
    /// this run only.
    #[arg(long)]
    pub heads: Option<PathBuf>,
}

/// The receipt's parameters in words, e.g. `num_predict 64 (the policy's maximum: the request
/// left it out)`.
pub fn describe_params(p: &secllama_protocol::receipt::ReceiptParams) -> String {
    let mut out = match p.num_predict {
        Some(n) => format!("num_predict {n}"),
        None => "no generation parameters".to_string(),
    };
    if p.defaults.iter().any(|d| d == "num_predict") {
        out.push_str(" (the policy's maximum: the request left it out)");
    }
    let others: Vec<&String> = p.defaults.iter().filter(|d| *d != "num_predict").collect();
    if !others.is_empty() {
        out.push_str(&format!("; set by the enclave: {others:?}"));
    }
    out
}

/// The request's `options`: `num_predict` when given and every `--option`.
fn options(args: &Args) -> anyhow::Result<Value> {
    let mut map = serde_json::Map::new();
    if let Some(n) = args.num_predict {
        map.insert("num_predict".into(), json!(n));
    }
    for o in &args.options {
        let (key, value) = o
            .split_once('=')
            .with_context(|| format!("--option {o}: expected KEY=JSON"))?;
        let value: Value = serde_json::from_str(value)
            .with_context(|| format!("--option {o}: expected a JSON value after '='"))?;
        if key == "num_predict" {
            bail!("--option {o}: set num_predict with --num-predict");
        }
        if map.insert(key.to_string(), value).is_some() {
            bail!("--option {key}: given twice");
        }
    }
    Ok(Value::Object(map))
}

/// The endpoint path and Ollama request body `args` describe.
pub fn request_body(args: &Args) -> anyhow::Result<(&'static str, Vec<u8>)> {
    let options = options(args)?;
    let (path, body) = match (&args.prompt, &args.messages) {
        (Some(prompt), None) => (
            "/api/generate",
            json!({"model": args.model, "prompt": prompt, "stream": args.stream, "options": options}),
        ),
        (None, Some(file)) => {
            let text = std::fs::read_to_string(file)
                .with_context(|| format!("reading messages {}", file.display()))?;
            let messages: Value = serde_json::from_str(&text)
                .with_context(|| format!("messages {}: expected JSON", file.display()))?;
            if !messages.is_array() {
                bail!("messages {}: expected a JSON array", file.display());
            }
            (
                "/api/chat",
                json!({"model": args.model, "messages": messages, "stream": args.stream, "options": options}),
            )
        }
        _ => bail!("expected exactly one of --prompt and --messages"),
    };
    Ok((path, serde_json::to_vec(&body)?))
}

/// Prints the answer text of the runner's NDJSON lines (or single JSON object) as they complete.
#[derive(Debug, Default)]
pub struct AnswerPrinter {
    pending: Vec<u8>,
    printed: bool,
}

impl AnswerPrinter {
    fn line(&mut self, line: &[u8], out: &mut dyn Write) -> anyhow::Result<()> {
        if line.iter().all(u8::is_ascii_whitespace) {
            return Ok(());
        }
        let v: Value = serde_json::from_slice(line).context("the runner's answer is not JSON")?;
        if let Some(e) = v.get("error").and_then(Value::as_str) {
            bail!("the runner reported an error: {e}");
        }
        let text = v
            .get("response")
            .and_then(Value::as_str)
            .or_else(|| v.pointer("/message/content").and_then(Value::as_str));
        if let Some(t) = text {
            out.write_all(t.as_bytes())?;
            out.flush()?;
            self.printed |= !t.is_empty();
        }
        Ok(())
    }

    /// Feeds authenticated bytes; prints every completed line's text.
    pub fn feed(&mut self, bytes: &[u8], out: &mut dyn Write) -> anyhow::Result<()> {
        self.pending.extend_from_slice(bytes);
        while let Some(nl) = self.pending.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = self.pending.drain(..=nl).collect();
            self.line(&line, out)?;
        }
        Ok(())
    }

    /// Prints what is left (a single JSON object without a newline) and ends the line.
    pub fn finish(&mut self, out: &mut dyn Write) -> anyhow::Result<()> {
        let rest = std::mem::take(&mut self.pending);
        self.line(&rest, out)?;
        if self.printed {
            out.write_all(b"\n")?;
            out.flush()?;
        }
        Ok(())
    }
}

/// Runs `generate`, printing the answer on stdout and everything else on stderr.
pub fn run(args: &Args) -> anyhow::Result<Outcome> {
    run_with(args, &mut std::io::stdout(), &mut std::io::stderr())
}

fn fail(err: &mut dyn Write, why: &str) -> anyhow::Result<Outcome> {
    writeln!(err, "secllama-verify: generate: {why}")?;
    Ok(Outcome {
        report: String::new(),
        valid: false,
    })
}

/// Runs `generate` with the answer written to `out` and diagnostics and the receipt summary to
/// `err`. The returned report is empty (everything is already written). Must not be called from
/// inside an async runtime.
pub fn run_with(args: &Args, out: &mut dyn Write, err: &mut dyn Write) -> anyhow::Result<Outcome> {
    let manifest = load_manifest(&args.manifest)?;
    let (api_path, body) = request_body(args)?;
    let endpoint = Endpoint::parse(&args.url)?;
    let rt = runtime()?;
    let attestation = rt.block_on(client::attest(&args.url, &manifest))?;
    let Some(doc) = attestation.affirmed() else {
        writeln!(err, "{}", attestation.result.to_text())?;
        return fail(
            err,
            "the enclave's attestation is not affirming; nothing was sent",
        );
    };
    writeln!(
        err,
        "attested: sha256:{} (tpm, enclave affirming)",
        attestation.result.attestation_digest
    )?;
    let mut printer = AnswerPrinter::default();
    // Not streamed: the answer is held until its receipt verified (nothing that looks complete
    // is printed before the evidence for it).
    let mut held: Vec<u8> = Vec::new();
    let stream = args.stream;
    let answer: anyhow::Result<SealedAnswer> = rt.block_on(async {
        let mut on_data = |d: &[u8]| {
            if stream {
                printer.feed(d, out)
            } else {
                printer.feed(d, &mut held)
            }
        };
        sealed::request(&endpoint, doc, api_path, body, &mut on_data).await
    });
    let answer = match answer {
        Ok(a) => a,
        Err(e) => {
            if stream {
                let _ = writeln!(out);
            }
            return fail(err, &format!("{e:#}"));
        }
    };
    match answer.end {
        SealedEnd::Problem { status, problem } => {
            let detail = problem
                .get("detail")
                .and_then(Value::as_str)
                .map_or_else(|| problem.to_string(), str::to_string);
            fail(
                err,
                &format!("refused by the enclave (HTTP {status}): {detail}"),
            )
        }
        SealedEnd::Receipt {
            status,
            receipt,
            receipt_bytes,
        } => {
            let finished = if stream {
                printer.finish(out)
            } else {
                printer.finish(&mut held)
            };
            if let Err(e) = finished {
                return fail(err, &format!("{e:#}"));
            }
            writeln!(
                err,
                "receipt: verified under the attested signing key {}\n  log index {}, time {}, \
                 model {}, policy sha256:{}\n  {}\n  request and response digests match what was \
                 sent and received ({} bytes, salted)\n  receipt {} bytes",
                receipt.signing_kid.to_hex(),
                receipt.log_index,
                receipt.time,
                receipt.model,
                receipt.policy_digest.to_hex(),
                describe_params(&receipt.params),
                answer.data.len(),
                receipt_bytes.len(),
            )?;
            let asked = secllama_protocol::ollama_name::canonical(&args.model)
                .unwrap_or_else(|_| args.model.clone());
            if receipt.model != asked {
                return fail(
                    err,
                    &format!(
                        "receipt: model {:?}, requested {:?}",
                        receipt.model, args.model
                    ),
                );
            }
            if !(200..300).contains(&status) {
                return fail(err, &format!("the runner answered HTTP {status}"));
            }
            // The receipt is in the enclave's log: a signed head covers it, it extends the head
            // kept before, and the receipt's inclusion proof verifies (docs/log.md).
            let included = rt.block_on(async {
                let mut auditor =
                    crate::log_audit::LogAuditor::new(doc.payload.log.key, args.heads.as_deref())?;
                auditor
                    .check(&endpoint, &receipt_bytes, receipt.log_index)
                    .await
            });
            match included {
                Ok(i) => writeln!(
                    err,
                    "log: entry {} is in the signed head of {} entries (counter {}){}",
                    i.index,
                    i.head.size,
                    i.head.counter,
                    i.consistent_with.map_or_else(String::new, |p| format!(
                        ", which extends the kept head of {} entries (counter {})",
                        p.size, p.counter
                    ))
                )?,
                Err(e) => return fail(err, &format!("{e:#}")),
            }
            out.write_all(&held)?;
            out.flush()?;
            Ok(Outcome {
                report: String::new(),
                valid: true,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn printer_prints_lines_split_across_chunks_and_a_single_object() {
        let mut p = AnswerPrinter::default();
        let mut out = Vec::new();
        p.feed(br#"{"response":"hel"#, &mut out).unwrap();
        assert!(out.is_empty());
        p.feed(b"lo\"}\n{\"message\":{\"content\":\" world\"}}\n", &mut out)
            .unwrap();
        p.finish(&mut out).unwrap();
        assert_eq!(out, b"hello world\n");
        let mut p = AnswerPrinter::default();
        let mut out = Vec::new();
        p.feed(br#"{"response":"one","done":true}"#, &mut out)
            .unwrap();
        p.finish(&mut out).unwrap();
        assert_eq!(out, b"one\n");
        assert!(
            AnswerPrinter::default()
                .feed(b"not json\n", &mut out)
                .is_err()
        );
        assert!(
            AnswerPrinter::default()
                .feed(b"{\"error\":\"boom\"}\n", &mut out)
                .is_err()
        );
    }
}
