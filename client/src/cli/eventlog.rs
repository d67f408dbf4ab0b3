//! `secllama-verify eventlog FILE [--format json|text]`: parses a TCG event log (legacy SHA-1 or
//! crypto-agile) and prints its events (type, PCR, digests, decoded summary), the replayed PCRs
//! and the warnings (unknown algorithms skipped, digests that do not match their data).
//! JSON: `{"pcrs": {"sha256": {"0": "<hex>", ...}, ...}, "events": [...], "warnings": [...],
//! "padding": null | {"offset", "len", "fill"}}` — `padding` says where the records ended when an
//! all-0xFF or all-zero record header (the fill of a fixed-size area such as TDX's CCEL) stopped
//! them.

use super::{Format, Outcome};
use anyhow::Context;
use secllama_measurements::eventlog::events::{summary, type_name};
use secllama_measurements::eventlog::{EventLog, Format as LogFormat};
use serde_json::{Value, json};
use std::path::PathBuf;

/// Arguments of `secllama-verify eventlog`.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Example:\n  $ secllama-verify eventlog /sys/kernel/security/tpm0/binary_bios_measurements --format text"
)]
pub struct Args {
    /// The binary event log (e.g. /sys/kernel/security/tpm0/binary_bios_measurements).
    pub file: PathBuf,
    /// Output format.
    #[arg(long, value_enum, default_value = "json")]
    pub format: Format,
}

/// The report for a parsed log.
pub fn report(log: &EventLog) -> Value {
    let pcrs: serde_json::Map<String, Value> = log
        .replay()
        .iter()
        .map(|(b, m)| {
            let v: serde_json::Map<String, Value> = m
                .iter()
                .map(|(i, d)| (i.to_string(), Value::String(hex::encode(d))))
                .collect();
            (b.name().to_string(), Value::Object(v))
        })
        .collect();
    let events: Vec<Value> = log
        .events
        .iter()
        .map(|e| {
            let digests: serde_json::Map<String, Value> =
                e.digests.iter().map(|(b, d)| (b.name().to_string(), Value::String(hex::encode(d)))).collect();
            json!({"index": e.index, "offset": e.offset, "pcr": e.pcr, "type": type_name(e.event_type),
                   "digests": digests, "data_size": e.data.len(), "summary": summary(e)})
        })
        .collect();
    let format = match log.format {
        LogFormat::LegacySha1 => "legacy-sha1",
        LogFormat::CryptoAgile => "crypto-agile",
    };
    let padding = log
        .padding
        .map(|p| json!({"offset": p.offset, "len": p.len, "fill": p.fill}));
    json!({"format": format, "pcrs": pcrs, "events": events, "warnings": log.warnings, "padding": padding})
}

fn text(v: &Value) -> String {
    let mut out = format!("event log ({})\n", v["format"].as_str().unwrap_or("?"));
    for e in v["events"].as_array().into_iter().flatten() {
        out.push_str(&format!(
            "  #{:<3} PCR {:<10} {:<34} {}\n",
            e["index"],
            e["pcr"],
            e["type"].as_str().unwrap_or(""),
            e["summary"].as_str().unwrap_or("")
        ));
    }
    out.push_str("replayed PCRs:\n");
    for (bank, m) in v["pcrs"].as_object().into_iter().flatten() {
        let mut values: Vec<(u32, &str)> = m
            .as_object()
            .into_iter()
            .flatten()
            .map(|(i, d)| (i.parse().unwrap_or(u32::MAX), d.as_str().unwrap_or("")))
            .collect();
        values.sort_unstable();
        for (i, d) in values {
            out.push_str(&format!("  {bank}:{i:<3} {d}\n"));
        }
    }
    for w in v["warnings"].as_array().into_iter().flatten() {
        out.push_str(&format!("warning: {}\n", w.as_str().unwrap_or("")));
    }
    out
}

/// Runs the subcommand. Valid means the log parsed; warnings do not change that.
pub fn run(args: &Args) -> anyhow::Result<Outcome> {
    let bytes =
        std::fs::read(&args.file).with_context(|| format!("reading {}", args.file.display()))?;
    let log = EventLog::parse(&bytes).with_context(|| format!("{}", args.file.display()))?;
    let v = report(&log);
    let report = match args.format {
        Format::Json => serde_json::to_string_pretty(&v)?,
        Format::Text => text(&v),
    };
    Ok(Outcome {
        report,
        valid: true,
    })
}
