//! The `secllama-verify` subcommands, one file each (clap derive). Each `run` returns the report to
//! print and whether the check passed; `main.rs` only dispatches, prints and sets the exit code.

pub mod attest;
pub mod cose;
pub mod eventlog;
pub mod generate;
pub mod proxy;
pub mod quote;
pub mod receipt;

use std::path::Path;

/// Output format of a report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Machine-readable JSON.
    Json,
    /// One line per check, for people.
    Text,
}

/// What a subcommand produced: the rendered report and whether everything verified.
#[derive(Debug)]
pub struct Outcome {
    /// The report, rendered in the requested format.
    pub report: String,
    /// True only when every check passed.
    pub valid: bool,
}

/// Reads a file that may hold raw bytes or hex text (whitespace ignored).
pub fn read_bytes_or_hex(path: &Path) -> anyhow::Result<Vec<u8>> {
    use anyhow::Context;
    let raw = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let text: Vec<u8> = raw
        .iter()
        .copied()
        .filter(|b| !b.is_ascii_whitespace())
        .collect();
    if !text.is_empty() && text.len() % 2 == 0 && text.iter().all(u8::is_ascii_hexdigit) {
        return hex::decode(&text).with_context(|| format!("decoding hex in {}", path.display()));
    }
    Ok(raw)
}
