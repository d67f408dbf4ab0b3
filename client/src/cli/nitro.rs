//! `secllama-verify nitro --doc F [--root F] [--nonce HEX] [--at RFC3339] [--manifest F]
//! [--format json|text]`: appraises an AWS Nitro Enclaves attestation document
//! ([`secllama_verifier::nitro::Document`]) — COSE_Sign1 ES384 under the leaf certificate, the
//! chain through `cabundle` to the AWS Nitro Enclaves Root G1 (built in, pinned by digest; `--root`
//! replaces it), validity as of `--at` (leaf certificates live about three hours), the nonce when
//! given, and the manifest's `[nitro]` PCRs and debug rule. `nonce`, `user_data` and `public_key`
//! are printed as claims. Exit 0 valid, 1 invalid, 2 unusable input.

use super::{Format, Outcome, load_certificates, read_bytes_or_hex};
use secllama_verifier::{Appraiser, Collateral, Context};
use std::path::PathBuf;

/// Arguments of `secllama-verify nitro`.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Example:\n  $ secllama-verify nitro --doc attestation.cbor --root aws_nitro_root.pem --nonce 1a2b3c4d --format text"
)]
pub struct Args {
    /// The attestation document (COSE_Sign1 CBOR, raw, hex or base64).
    #[arg(long)]
    pub doc: PathBuf,
    /// A trust anchor (PEM or DER) replacing the built-in AWS Nitro Enclaves Root G1.
    #[arg(long)]
    pub root: Option<PathBuf>,
    /// The nonce the document must carry, hex.
    #[arg(long)]
    pub nonce: Option<String>,
    /// Appraise as of this time (RFC 3339); default now.
    #[arg(long)]
    pub at: Option<String>,
    /// The reference manifest (TOML) whose `[nitro]` section the document must meet.
    #[arg(long)]
    pub manifest: Option<PathBuf>,
    /// Write an evidence bundle (the evidence, collateral, manifest, time and verdict) for
    /// `secllama-verify bundle` to re-appraise offline.
    #[arg(long)]
    pub save_bundle: Option<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value = "json")]
    pub format: Format,
}

/// Runs `nitro`.
pub fn run(args: &Args) -> anyhow::Result<Outcome> {
    let mut doc = read_bytes_or_hex(&args.doc)?;
    // base64 text (as nitrite's testdata ships documents).
    if doc.first().is_some_and(|b| b.is_ascii_alphanumeric()) {
        use base64::Engine;
        let text: Vec<u8> = doc
            .iter()
            .copied()
            .filter(|b| !b.is_ascii_whitespace())
            .collect();
        if let Ok(d) = base64::engine::general_purpose::STANDARD.decode(&text) {
            doc = d;
        }
    }
    let roots = match &args.root {
        Some(p) => load_certificates(p)?,
        None => Vec::new(),
    };
    let nonce = args
        .nonce
        .as_deref()
        .map(|h| {
            super::parse_hex(
                "--nonce",
                h,
                secllama_verifier::nitro::document::MAX_USER_FIELD,
            )
        })
        .transpose()?;
    let (manifest, at) = super::manifest_and_time(args.manifest.as_deref(), args.at.as_deref())?;
    let collateral = Collateral {
        roots,
        ..Collateral::default()
    };
    let ctx = Context {
        report_data: nonce.as_deref(),
        manifest: manifest.as_ref(),
        collateral: &collateral,
        at,
    };
    let submod = secllama_verifier::nitro::Document.appraise(&doc, &ctx);
    let bundle = args
        .save_bundle
        .as_deref()
        .map(|path| super::BundleRequest {
            path,
            report_data: nonce.as_deref(),
            collateral: &collateral,
            manifest: manifest.as_ref(),
            at,
        });
    super::standalone("nitro", &doc, submod, args.format, bundle)
}
