//! `secllama-verify azure --evidence F [--hcl-report F] [--vcek F] --nonce HEX [--manifest F]
//! [--at RFC3339] [--format json|text]`: appraises Azure confidential-VM vTPM evidence
//! ([`secllama_verifier::azure::Evidence`]): the HCL report's SNP report (VCEK → AMD ARK), its
//! binding of the runtime data, the vTPM AK from that data, then the quote under it with
//! `--nonce` as qualifying data, and the manifest's `[snp]` and SHA-256 PCRs when given.
//! `--evidence` is trustee's az-snp-vtpm evidence JSON (HCL report and VCEK inside), or a
//! `tpm-quote` JSON (`{"signature", "message", "pcrs"}`) with `--hcl-report` and `--vcek`. Exit 0
//! valid, 1 invalid, 2 unusable input.

use super::{Format, Outcome, load_certificates};
use anyhow::Context as _;
use secllama_verifier::azure::AzureEvidence;
use secllama_verifier::{Appraiser, Collateral, Context};
use std::path::PathBuf;

/// Arguments of `secllama-verify azure`.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Example:\n  $ secllama-verify azure --evidence evidence.json --nonce 1a2b3c4d --manifest manifest.toml"
)]
pub struct Args {
    /// The evidence JSON.
    #[arg(long)]
    pub evidence: PathBuf,
    /// The HCL report (binary), when the JSON does not carry it.
    #[arg(long)]
    pub hcl_report: Option<PathBuf>,
    /// The VCEK (PEM or DER; a PEM file may carry the ASK and ARK too), when the JSON does not.
    #[arg(long)]
    pub vcek: Option<PathBuf>,
    /// The quote's expected qualifying data, hex.
    #[arg(long)]
    pub nonce: String,
    /// The reference manifest (TOML): `[snp]` and `[pcrs.sha256]`.
    #[arg(long)]
    pub manifest: Option<PathBuf>,
    /// Appraise as of this time (RFC 3339); default now.
    #[arg(long)]
    pub at: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value = "json")]
    pub format: Format,
}

/// Runs `azure`.
pub fn run(args: &Args) -> anyhow::Result<Outcome> {
    let text = String::from_utf8(super::read_file(&args.evidence)?)
        .with_context(|| format!("{}: expected JSON text", args.evidence.display()))?;
    let hcl = args
        .hcl_report
        .as_deref()
        .map(super::read_file)
        .transpose()?;
    let (evidence, vcek) =
        AzureEvidence::from_json(&text, hcl).map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut certificates = vcek.into_iter().collect::<Vec<_>>();
    if let Some(p) = &args.vcek {
        certificates.extend(load_certificates(p)?);
    }
    // TPM2B_DATA qualifying data: at most 64 bytes.
    let nonce = super::parse_hex("--nonce", &args.nonce, 64)?;
    let (manifest, at) = super::manifest_and_time(args.manifest.as_deref(), args.at.as_deref())?;
    let collateral = Collateral {
        certificates,
        ..Collateral::default()
    };
    let ctx = Context {
        report_data: Some(&nonce),
        manifest: manifest.as_ref(),
        collateral: &collateral,
        at,
    };
    let submod = secllama_verifier::azure::Evidence.appraise(&evidence, &ctx);
    super::standalone("azure", &evidence.hcl_report, submod, args.format, None)
}
