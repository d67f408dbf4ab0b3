//! `secllama-verify attest`: fetches a fresh attestation document from the enclave (with a random
//! 32-byte nonce) and appraises it against the reference manifest ([`crate::attest`]). Prints the
//! EAR-style attestation result, JSON by default. Valid (exit 0) only when every required submod is
//! affirming; an unreadable manifest or an unreachable enclave is an error (exit 2). `--save` writes
//! the document as received, for later offline receipt checks; `--save-bundle` an evidence bundle
//! that `secllama-verify bundle` re-appraises offline.

use super::{Format, Outcome};
use crate::attest::{self as client, Attestation};
use anyhow::Context;
use secllama_measurements::manifest::Manifest;
use std::path::{Path, PathBuf};

/// Arguments of `secllama-verify attest`.
#[derive(Debug, Clone, clap::Args)]
#[command(
    after_help = "Examples:\n  $ secllama-verify attest --url http://127.0.0.1:11435 --manifest manifest.toml --format text\n  $ secllama-verify attest --url unix:/run/secllama/enclave.sock --manifest manifest.toml --save attestation.cbor"
)]
pub struct Args {
    /// The enclave API: unix:PATH or http://HOST:PORT.
    #[arg(long)]
    pub url: String,
    /// The reference manifest (TOML).
    #[arg(long)]
    pub manifest: PathBuf,
    /// Write the attestation document (COSE_Sign1, raw) to this file.
    #[arg(long)]
    pub save: Option<PathBuf>,
    /// Write an evidence bundle (CBOR: the document, the nonce, the collateral, the manifest and
    /// the verdict) to this file, for `secllama-verify bundle` to re-appraise offline.
    #[arg(long)]
    pub save_bundle: Option<PathBuf>,
    /// Certificates offered to the appraisal (PEM or DER file, or a folder): an AK certificate
    /// and its intermediates for `tpm.ak_roots`; repeatable. They are recorded in the bundle.
    #[arg(long = "cert")]
    pub certs: Vec<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value = "json")]
    pub format: Format,
}

/// Reads and validates a reference manifest.
pub fn load_manifest(path: &Path) -> anyhow::Result<Manifest> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading manifest {}", path.display()))?;
    Manifest::from_toml(&text).with_context(|| format!("manifest {}", path.display()))
}

/// A single-threaded runtime for one command.
pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

/// Renders an appraisal in `format`.
pub fn render(attestation: &Attestation, format: Format) -> anyhow::Result<String> {
    Ok(match format {
        Format::Json => serde_json::to_string_pretty(&attestation.result)?,
        Format::Text => attestation.result.to_text(),
    })
}

/// Runs `attest`. Must not be called from inside an async runtime.
pub fn run(args: &Args) -> anyhow::Result<Outcome> {
    let manifest = load_manifest(&args.manifest)?;
    let mut collateral = client::Collateral::default();
    for p in &args.certs {
        collateral.certificates.extend(super::load_certificates(p)?);
    }
    let attestation =
        runtime()?.block_on(client::attest_with(&args.url, &manifest, &collateral))?;
    if let Some(path) = &args.save {
        std::fs::write(path, &attestation.document)
            .with_context(|| format!("writing the attestation document to {}", path.display()))?;
    }
    if let Some(path) = &args.save_bundle {
        let bytes = attestation.bundle(&manifest)?.to_bytes()?;
        std::fs::write(path, bytes)
            .with_context(|| format!("writing the evidence bundle to {}", path.display()))?;
    }
    Ok(Outcome {
        report: render(&attestation, args.format)?,
        valid: attestation.result.affirming(),
    })
}
