//! `secllama-verify bundle F [--at RFC3339] [--crl F]... [--manifest F] [--format json|text]`:
//! re-appraises an evidence bundle ([`secllama_verifier::bundle`], written by `attest
//! --save-bundle`) offline — no network, no input besides the bundle — as of its recorded time,
//! and says whether the verdict is the recorded one or exactly what changed: a later `--at` (a
//! certificate since expired), a newer CRL (a certificate since revoked), another manifest. Exit 0
//! when the re-appraisal is valid (affirming for an enclave document), 1 when not, 2 when the
//! bundle cannot be read.

use super::{Format, Outcome, load_crl, parse_time};
use secllama_verifier::bundle::{Bundle, reappraise};
use std::path::PathBuf;

/// Arguments of `secllama-verify bundle`.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  $ secllama-verify bundle evidence.bundle --format text\n  $ secllama-verify bundle evidence.bundle --at 2026-11-30T12:00:00Z"
)]
pub struct Args {
    /// The evidence bundle (CBOR).
    pub bundle: PathBuf,
    /// Re-appraise as of this time (RFC 3339) instead of the recorded one.
    #[arg(long)]
    pub at: Option<String>,
    /// A (newer) certificate revocation list, DER or PEM; repeatable.
    #[arg(long)]
    pub crl: Vec<PathBuf>,
    /// A reference manifest to appraise against instead of the bundle's own.
    #[arg(long)]
    pub manifest: Option<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value = "json")]
    pub format: Format,
}

/// Runs `bundle`.
pub fn run(args: &Args) -> anyhow::Result<Outcome> {
    let bytes = super::read_file(&args.bundle)?;
    let bundle = Bundle::from_bytes(&bytes)?;
    let at = args.at.as_deref().map(parse_time).transpose()?;
    let crls = args
        .crl
        .iter()
        .map(|p| load_crl(p))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let manifest = args
        .manifest
        .as_deref()
        .map(super::attest::load_manifest)
        .transpose()?;
    let r = reappraise(&bundle, at, &crls, manifest.as_ref())?;
    let same = r.changes.is_empty();
    let report = match args.format {
        Format::Json => serde_json::to_string_pretty(&serde_json::json!({
            "kind": bundle.kind,
            "recorded_at": bundle.at,
            "same_verdict": same,
            "changes": r.changes,
            "result": r.result,
        }))?,
        Format::Text => {
            let mut out = format!(
                "evidence bundle ({}), appraised as of {}\n{}",
                bundle.kind,
                secllama_verifier::x509::rfc3339(
                    bundle
                        .time()
                        .duration_since(std::time::UNIX_EPOCH)
                        .unwrap_or_default()
                ),
                r.result.to_text_body()
            );
            if same {
                out.push_str("the same verdict as recorded\n");
            } else {
                out.push_str("changed since the recorded appraisal:\n");
                for c in &r.changes {
                    out.push_str(&format!("  {c}\n"));
                }
            }
            out.push_str(if r.valid {
                "result: valid"
            } else {
                "result: INVALID"
            });
            out
        }
    };
    Ok(Outcome {
        report,
        valid: r.valid,
    })
}
