//! `secllama-verify log`: the receipt log file, offline ([`secllama_verifier::log`]; docs/log.md).
//!
//! - `log verify FILE [--attestation DOC]`: every record (checksums; a torn last record is
//!   reported, not an error), the identity first, every head signed by it over exactly the
//!   entries before it, counters strictly increasing; with `--attestation`, the identity must be
//!   the log key that document bound.
//! - `log prove FILE --index N [--size S]`: the inclusion proof of entry N in the file's signed
//!   head of S entries (default: the last head), verified against that head's root.
//! - `log consistency FILE --from A --to B`: the consistency proof between the file's signed heads
//!   of A and B entries, verified against both roots.
//!
//! Exit 0 valid, 1 the log or a proof does not verify (with the reason), 2 unusable input.

use super::{Format, Outcome};
use anyhow::Context;
use secllama_protocol::tree_head::TreeHead;
use secllama_verifier::log::{LogFileReport, prove_consistency, prove_inclusion, verify_file};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};

/// Largest log file read (about 4 million receipts).
pub const MAX_LOG: u64 = 2 << 30;

/// Arguments of `secllama-verify log`.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  $ secllama-verify log verify receipts.log --attestation attestation.cbor --format text\n  $ secllama-verify log prove receipts.log --index 2\n  $ secllama-verify log consistency receipts.log --from 3 --to 7"
)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Verify a whole log file: records, identity, every head, the counter sequence.
    #[command(
        after_help = "Example:\n  $ secllama-verify log verify receipts.log --attestation attestation.cbor --format text"
    )]
    Verify {
        /// The receipt log file (the enclave's `receipts` file).
        file: PathBuf,
        /// An attestation document (`attest --save`): the log identity must be its log key.
        #[arg(long)]
        attestation: Option<PathBuf>,
        /// Output format.
        #[arg(long, value_enum, default_value = "json")]
        format: Format,
    },
    /// Prove and verify that entry INDEX is in the signed head of SIZE entries.
    #[command(
        after_help = "Example:\n  $ secllama-verify log prove receipts.log --index 2 --size 5"
    )]
    Prove {
        /// The receipt log file.
        file: PathBuf,
        /// The entry's index (the receipt's log index).
        #[arg(long)]
        index: u64,
        /// The size of a signed head in the file (default: the last head's).
        #[arg(long)]
        size: Option<u64>,
        /// Output format.
        #[arg(long, value_enum, default_value = "json")]
        format: Format,
    },
    /// Prove and verify that the signed head of TO entries extends the one of FROM entries.
    #[command(
        after_help = "Example:\n  $ secllama-verify log consistency receipts.log --from 3 --to 7"
    )]
    Consistency {
        /// The receipt log file.
        file: PathBuf,
        /// The earlier head's size.
        #[arg(long)]
        from: u64,
        /// The later head's size.
        #[arg(long)]
        to: u64,
        /// Output format.
        #[arg(long, value_enum, default_value = "json")]
        format: Format,
    },
}

fn read_log(path: &Path) -> anyhow::Result<Vec<u8>> {
    let meta = std::fs::metadata(path).with_context(|| format!("reading {}", path.display()))?;
    if !meta.is_file() || meta.len() > MAX_LOG {
        anyhow::bail!(
            "{}: expected a regular file of at most {MAX_LOG} bytes",
            path.display()
        );
    }
    std::fs::read(path).with_context(|| format!("reading {}", path.display()))
}

fn head_json(h: &TreeHead) -> Value {
    json!({"size": h.size, "root": h.root.to_hex(), "time_ms": h.time_ms, "counter": h.counter})
}

fn render(
    format: Format,
    valid: bool,
    v: &Value,
    text: impl FnOnce() -> String,
) -> anyhow::Result<Outcome> {
    Ok(Outcome {
        report: match format {
            Format::Json => serde_json::to_string_pretty(v)?,
            Format::Text => text(),
        },
        valid,
    })
}

fn invalid(format: Format, what: &str, why: &str) -> anyhow::Result<Outcome> {
    let v = json!({"valid": false, "reasons": [why]});
    render(format, false, &v, || {
        format!("receipt log {what}: INVALID\n  {why}")
    })
}

fn verified(
    bytes: &[u8],
    attestation: Option<&Path>,
) -> anyhow::Result<Result<LogFileReport, String>> {
    let key = match attestation {
        None => None,
        Some(p) => {
            let doc = super::read_file(p)?;
            let v = secllama_protocol::attestation::open_document(&doc).with_context(|| {
                format!(
                    "{}: expected an attestation document signed under its own key",
                    p.display()
                )
            })?;
            Some(v.payload.log.key)
        }
    };
    Ok(verify_file(bytes, key.as_ref()).map_err(|e| e.to_string()))
}

/// Runs `log`.
pub fn run(args: &Args) -> anyhow::Result<Outcome> {
    match &args.command {
        Command::Verify {
            file,
            attestation,
            format,
        } => {
            let bytes = read_log(file)?;
            let r = match verified(&bytes, attestation.as_deref())? {
                Ok(r) => r,
                Err(why) => return invalid(*format, "verify", &why),
            };
            let id = r
                .log
                .identity
                .as_ref()
                .map(|i| i.key.kid().map(|k| k.to_hex()))
                .transpose()?
                .unwrap_or_default();
            let heads: Vec<Value> = r.log.heads.iter().map(|h| head_json(&h.head)).collect();
            let v = json!({
                "valid": true,
                "log_id": id,
                "entries": r.log.tree.len(),
                "heads": heads,
                "torn_tail_bytes": r.torn_tail,
            });
            render(*format, true, &v, || {
                let mut t = format!(
                    "receipt log: VALID\n  log id:   {id}\n  entries:  {}\n  heads:    {}\n",
                    r.log.tree.len(),
                    r.log.heads.len()
                );
                for h in &r.log.heads {
                    t.push_str(&format!(
                        "    size {:>8}  counter {:>6}  time {} ms  root {}\n",
                        h.head.size,
                        h.head.counter,
                        h.head.time_ms,
                        h.head.root.to_hex()
                    ));
                }
                if r.torn_tail > 0 {
                    t.push_str(&format!(
                        "  note: {} bytes after the last complete record (a write torn by a crash; the enclave cuts them off)\n",
                        r.torn_tail
                    ));
                }
                t
            })
        }
        Command::Prove {
            file,
            index,
            size,
            format,
        } => {
            let bytes = read_log(file)?;
            let r = match verified(&bytes, None)? {
                Ok(r) => r,
                Err(why) => return invalid(*format, "prove", &why),
            };
            let size = size.unwrap_or_else(|| r.log.last_head().map_or(0, |h| h.head.size));
            match prove_inclusion(&r, *index, size) {
                Ok(c) => {
                    let path: Vec<String> = c.path.iter().map(hex::encode).collect();
                    let v = json!({
                        "valid": true,
                        "index": index,
                        "leaf_hash": hex::encode(c.leaf),
                        "path": path,
                        "head": head_json(&c.head),
                    });
                    render(*format, true, &v, || {
                        format!(
                            "inclusion: VALID\n  entry {index} (leaf {}) is in the head of {size} entries (counter {}, root {})\n  path: {} hashes\n",
                            hex::encode(c.leaf),
                            c.head.counter,
                            c.head.root.to_hex(),
                            c.path.len()
                        )
                    })
                }
                Err(e) => invalid(*format, "prove", &e.to_string()),
            }
        }
        Command::Consistency {
            file,
            from,
            to,
            format,
        } => {
            let bytes = read_log(file)?;
            let r = match verified(&bytes, None)? {
                Ok(r) => r,
                Err(why) => return invalid(*format, "consistency", &why),
            };
            match prove_consistency(&r, *from, *to) {
                Ok(c) => {
                    let proof: Vec<String> = c.proof.iter().map(hex::encode).collect();
                    let v = json!({
                        "valid": true,
                        "from": head_json(&c.from),
                        "to": head_json(&c.to),
                        "proof": proof,
                    });
                    render(*format, true, &v, || {
                        format!(
                            "consistency: VALID\n  the head of {to} entries (counter {}) extends the head of {from} (counter {})\n  proof: {} hashes\n",
                            c.to.counter,
                            c.from.counter,
                            c.proof.len()
                        )
                    })
                }
                Err(e) => invalid(*format, "consistency", &e.to_string()),
            }
        }
    }
}
