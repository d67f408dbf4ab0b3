//! `secllama-verify snp --report F (--vcek F | --certs PATH) [--crl F] [--report-data HEX]
//! [--manifest F] [--at RFC3339] [--format json|text]`: appraises an AMD SEV-SNP attestation
//! report ([`secllama_verifier::snp::Report`]) — signature under the VCEK or VLEK, chain to AMD's
//! built-in ARK, chip ID and TCB against the certificate, then the manifest's `[snp]` section and
//! the expected report data when given. Exit 0 valid, 1 invalid, 2 unusable input.

use super::{Format, Outcome, load_certificates, load_crl, read_bytes_or_hex};
use secllama_verifier::{Appraiser, Collateral, Context};
use std::path::PathBuf;

/// Arguments of `secllama-verify snp`.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Example:\n  $ secllama-verify snp --report report.bin --certs certs/ --manifest manifest.toml --format text"
)]
pub struct Args {
    /// The 1184-byte attestation report (raw or hex).
    #[arg(long)]
    pub report: PathBuf,
    /// The VCEK or VLEK certificate, PEM or DER (a PEM file may also hold the ASK/ASVK and ARK).
    #[arg(long, conflicts_with = "certs")]
    pub vcek: Option<PathBuf>,
    /// A PEM bundle, or a folder of certificates as `snpguest fetch` writes them.
    #[arg(long)]
    pub certs: Option<PathBuf>,
    /// A certificate revocation list (AMD KDS `crl`), DER or PEM; repeatable.
    #[arg(long)]
    pub crl: Vec<PathBuf>,
    /// The REPORT_DATA the report must carry, hex, up to 64 bytes (zero-padded to 64).
    #[arg(long)]
    pub report_data: Option<String>,
    /// The reference manifest (TOML) whose `[snp]` section the report must meet.
    #[arg(long)]
    pub manifest: Option<PathBuf>,
    /// Appraise as of this time (RFC 3339); default now.
    #[arg(long)]
    pub at: Option<String>,
    /// Write an evidence bundle (the evidence, collateral, manifest, time and verdict) for
    /// `secllama-verify bundle` to re-appraise offline.
    #[arg(long)]
    pub save_bundle: Option<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value = "json")]
    pub format: Format,
}

/// Runs `snp`.
pub fn run(args: &Args) -> anyhow::Result<Outcome> {
    let report = read_bytes_or_hex(&args.report)?;
    let certificates = match (&args.vcek, &args.certs) {
        (Some(p), _) | (None, Some(p)) => load_certificates(p)?,
        (None, None) => anyhow::bail!(
            "expected the VCEK or VLEK: --vcek F (PEM or DER) or --certs PATH (a PEM bundle or an snpguest folder)"
        ),
    };
    let crls = args
        .crl
        .iter()
        .map(|p| load_crl(p))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let report_data = args
        .report_data
        .as_deref()
        .map(|h| super::parse_hex("--report-data", h, 64))
        .transpose()?;
    let (manifest, at) = super::manifest_and_time(args.manifest.as_deref(), args.at.as_deref())?;
    let collateral = Collateral {
        certificates,
        crls,
        ..Collateral::default()
    };
    let ctx = Context {
        report_data: report_data.as_deref(),
        manifest: manifest.as_ref(),
        collateral: &collateral,
        at,
    };
    let submod = secllama_verifier::snp::Report.appraise(&report, &ctx);
    let bundle = args
        .save_bundle
        .as_deref()
        .map(|path| super::BundleRequest {
            path,
            report_data: report_data.as_deref(),
            collateral: &collateral,
            manifest: manifest.as_ref(),
            at,
        });
    super::standalone("snp", &report, submod, args.format, bundle)
}
