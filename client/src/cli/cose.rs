//! `secllama-verify cose`: checks any COSE_Sign1 (tagged 18 or untagged) against a public key given as
//! PEM SubjectPublicKeyInfo, COSE_Key (CBOR) or JWK (JSON). Valid only when the signature verifies
//! under the key with the protected-header algorithm that fits it (ES256/384/512, PS256/384/512).

use super::{Format, Outcome, read_bytes_or_hex};
use anyhow::Context;
use secllama_protocol::cose::{self, Sign1Policy, VerifyingKey};
use serde::Serialize;
use std::path::PathBuf;

/// Arguments of `secllama-verify cose`.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  $ secllama-verify cose --key key.pem --in sign1.cbor\n  $ secllama-verify cose --key cose_key.cbor --in receipt.cbor --format text"
)]
pub struct Args {
    /// Public key: PEM SubjectPublicKeyInfo, COSE_Key (CBOR) or JWK (JSON).
    #[arg(long)]
    pub key: PathBuf,
    /// The COSE_Sign1, as raw CBOR or hex text.
    #[arg(long = "in")]
    pub input: PathBuf,
    /// External AAD bound into the signature, in hex.
    #[arg(long)]
    pub external_aad: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value = "json")]
    pub format: Format,
}

/// The report `cose` prints.
#[derive(Debug, Serialize)]
pub struct Report {
    /// True only when the signature verified.
    pub valid: bool,
    /// The protected-header algorithm, when it could be read.
    pub alg: Option<String>,
    /// The kid (hex), protected header first, when present.
    pub kid: Option<String>,
    /// Why verification failed (empty when valid).
    pub reasons: Vec<String>,
    /// The verified payload in hex (null unless valid).
    pub payload: Option<String>,
    /// Whether the input carried tag 18 (null if unparseable).
    pub tagged: Option<bool>,
    /// The key that was used, e.g. "EC P-256".
    pub key: String,
}

/// Runs the check.
pub fn run(args: &Args) -> anyhow::Result<Outcome> {
    let key_bytes =
        std::fs::read(&args.key).with_context(|| format!("reading key {}", args.key.display()))?;
    let key =
        VerifyingKey::detect(&key_bytes).with_context(|| format!("key {}", args.key.display()))?;
    let input = read_bytes_or_hex(&args.input)?;
    let aad = match &args.external_aad {
        Some(h) => hex::decode(h.trim()).context("--external-aad: expected hex")?,
        None => Vec::new(),
    };
    let report = check(&key, &input, &aad);
    let rendered = match args.format {
        Format::Json => serde_json::to_string_pretty(&report)?,
        Format::Text => text(&report),
    };
    Ok(Outcome {
        report: rendered,
        valid: report.valid,
    })
}

/// Verifies `input` under `key` and describes the result.
pub fn check(key: &VerifyingKey, input: &[u8], external_aad: &[u8]) -> Report {
    let policy = Sign1Policy {
        external_aad,
        max_len: 1 << 20,
        ..Sign1Policy::default()
    };
    let mut report = Report {
        valid: false,
        alg: None,
        kid: None,
        reasons: Vec::new(),
        payload: None,
        tagged: None,
        key: key.describe(),
    };
    let parsed = match cose::sign1::parse(input, &policy) {
        Ok(p) => p,
        Err(e) => {
            report.reasons.push(e.to_string());
            return report;
        }
    };
    report.tagged = Some(parsed.tagged);
    let header = &parsed.sign1.protected.header;
    report.alg = header.alg.as_ref().map(alg_name);
    let kid = if header.key_id.is_empty() {
        &parsed.sign1.unprotected.key_id
    } else {
        &header.key_id
    };
    report.kid = (!kid.is_empty()).then(|| hex::encode(kid));
    match parsed.verify(key, &policy) {
        Ok(v) => {
            report.valid = true;
            report.alg = Some(v.alg.name().into());
            report.payload = Some(hex::encode(v.payload));
        }
        Err(e) => report.reasons.push(e.to_string()),
    }
    report
}

fn alg_name(a: &coset::Algorithm) -> String {
    match a {
        coset::RegisteredLabelWithPrivate::Assigned(x) => {
            secllama_protocol::cose::SigAlg::from_cose_id(*x as i64)
                .map(|s| s.name().to_string())
                .unwrap_or_else(|| format!("{}", *x as i64))
        }
        coset::RegisteredLabelWithPrivate::PrivateUse(p) => p.to_string(),
        coset::RegisteredLabelWithPrivate::Text(t) => format!("{t:?}"),
    }
}

fn text(r: &Report) -> String {
    let mut out = format!(
        "COSE_Sign1: {}\n  key:     {}\n  alg:     {}\n  kid:     {}\n  tagged:  {}\n",
        if r.valid { "VALID" } else { "INVALID" },
        r.key,
        r.alg.as_deref().unwrap_or("-"),
        r.kid.as_deref().unwrap_or("-"),
        r.tagged.map_or("-".to_string(), |t| t.to_string()),
    );
    if let Some(p) = &r.payload {
        out.push_str(&format!("  payload: {} bytes: {p}\n", p.len() / 2));
    }
    for reason in &r.reasons {
        out.push_str(&format!("  reason:  {reason}\n"));
    }
    out
}
