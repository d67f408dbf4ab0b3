//! `secllama-verify quote`: checks a TPM2_Quote with the inputs `tpm2_checkquote` takes. The AK
//! (`--ak`) is PEM or DER SubjectPublicKeyInfo, a JWK, a `TPM2B_PUBLIC` or a `TPMT_PUBLIC`; the quote
//! (`--message`) a `TPMS_ATTEST` or `TPM2B_ATTEST`; the signature a `TPMT_SIGNATURE`, or a bare
//! RSASSA signature exactly as long as the RSA AK's modulus (the report says so), or with
//! `--signature-format plain` what `tpm2_quote -f plain` writes (a bare RSA signature, a DER ECDSA
//! signature) with its hash from `--hash` (tpm2_checkquote's names). PCR values come as the file
//! `tpm2_quote -o` writes by default (`--pcrs` alone), raw and concatenated in `--pcr-list` order
//! (`tpm2_pcrread -o`, `-F values`), or as JSON.
//!
//! Valid (exit 0) only when every check of [`secllama_verifier::tpm::appraise`] passes. Unreadable files and a
//! malformed AK, nonce or PCR input are usage errors (exit 2); a quote or signature that does not
//! parse is evidence that fails its checks (exit 1).

use super::{Format, Outcome, read_bytes_or_hex};
use anyhow::Context;
use rsa::traits::PublicKeyParts;
use secllama_protocol::cose::VerifyingKey;
use secllama_verifier::tpm::{
    AkPublic, Appraisal, HashAlg, PcrSelection, PcrValues, QuotePolicy, SigScheme, TpmSignature,
    appraise_quote, appraise_quote_bytes,
};
use serde::Serialize;
use std::path::PathBuf;

/// Arguments of `secllama-verify quote`.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Example:\n  $ secllama-verify quote --ak ak.pub --message quote.msg --signature quote.sig --nonce 1a2b3c4d --pcrs pcrs.bin --pcr-list sha256:0,1,2,3,7"
)]
pub struct Args {
    /// Attestation key: PEM/DER SubjectPublicKeyInfo, JWK, TPM2B_PUBLIC or TPMT_PUBLIC.
    #[arg(long)]
    pub ak: PathBuf,
    /// The quote: TPMS_ATTEST or TPM2B_ATTEST (raw or hex).
    #[arg(long)]
    pub message: PathBuf,
    /// The signature: TPMT_SIGNATURE, or a bare RSASSA signature as long as the AK's modulus.
    #[arg(long)]
    pub signature: PathBuf,
    /// How --signature is encoded: tpmt (TPMT_SIGNATURE) or plain (`tpm2_quote -f plain`: a bare
    /// RSA signature, a DER ECDSA signature). Default: TPMT_SIGNATURE, or a bare RSASSA signature
    /// when it is exactly as long as the RSA AK's modulus.
    #[arg(long, value_enum)]
    pub signature_format: Option<SignatureFormat>,
    /// The hash of a plain signature: sha1, sha256, sha384 or sha512 (default: the AK's scheme
    /// hash, else sha256). With a TPMT_SIGNATURE it must be the one the signature names.
    #[arg(long)]
    pub hash: Option<String>,
    /// The qualifying data the quote must carry (extraData), in hex; may be empty.
    #[arg(long)]
    pub nonce: String,
    /// PCR values: the file `tpm2_quote -o` writes (its default serialized form, selection
    /// included), or with --pcr-list raw values concatenated in that order (`tpm2_pcrread -o`).
    #[arg(long, conflicts_with = "pcr_values")]
    pub pcrs: Option<PathBuf>,
    /// The selection of --pcrs, in tpm2-tools syntax, e.g. sha1:0,1+sha256:0,1,16.
    #[arg(long = "pcr-list", requires = "pcrs")]
    pub pcr_list: Option<String>,
    /// PCR values as JSON: {"sha256": {"0": "<hex>", ...}, ...}.
    #[arg(long = "pcr-values")]
    pub pcr_values: Option<PathBuf>,
    /// Accept a signature whose hash is SHA-1.
    #[arg(long)]
    pub allow_sha1: bool,
    /// The AK's expected qualified name, in hex, compared to the quote's qualifiedSigner.
    #[arg(long)]
    pub qualified_signer: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value = "json")]
    pub format: Format,
}

/// How a signature file is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SignatureFormat {
    /// A `TPMT_SIGNATURE` (tpm2-tools' default).
    Tpmt,
    /// No header: a bare RSA signature, or a DER ECDSA signature (`tpm2_quote -f plain`).
    Plain,
}

/// The report `quote` prints.
#[derive(Debug, Serialize)]
pub struct Report {
    /// True only when every check passed.
    pub valid: bool,
    /// Every failed check, with what was expected and what was found.
    pub reasons: Vec<String>,
    /// Every check that ran.
    pub checks: Vec<CheckReport>,
    /// The parsed quote (null if it did not parse).
    pub quote: Option<QuoteReport>,
    /// The signature scheme and hash (null if it did not parse).
    pub signature: Option<SignatureReport>,
    /// The attestation key.
    pub ak: AkReport,
}

/// One check.
#[derive(Debug, Serialize)]
pub struct CheckReport {
    /// Its name.
    pub name: &'static str,
    /// Whether it passed.
    pub passed: bool,
    /// What was found.
    pub detail: String,
}

/// The fields of the `TPMS_ATTEST`.
#[derive(Debug, Serialize)]
pub struct QuoteReport {
    /// `TPMS_ATTEST` or `TPM2B_ATTEST`.
    pub form: &'static str,
    /// `magic`, as 0x-hex.
    pub magic: String,
    /// `type`, as 0x-hex.
    pub attest_type: String,
    /// `qualifiedSigner`, hex.
    pub qualified_signer: String,
    /// `extraData`, hex.
    pub qualifying_data: String,
    /// `clockInfo`.
    pub clock_info: ClockReport,
    /// `firmwareVersion`, as 0x-hex.
    pub firmware_version: String,
    /// The quoted PCRs.
    pub selection: Vec<BankReport>,
    /// The quoted PCRs in tpm2-tools syntax.
    pub selection_tpm2_tools: String,
    /// `pcrDigest`, hex.
    pub pcr_digest: String,
}

/// `TPMS_CLOCK_INFO`.
#[derive(Debug, Serialize)]
pub struct ClockReport {
    /// `clock` (ms).
    pub clock: u64,
    /// `resetCount`.
    pub reset_count: u32,
    /// `restartCount`.
    pub restart_count: u32,
    /// `safe`.
    pub safe: bool,
}

/// One bank of a selection.
#[derive(Debug, Serialize)]
pub struct BankReport {
    /// e.g. `sha256`.
    pub bank: &'static str,
    /// The PCR indices, ascending.
    pub pcrs: Vec<u32>,
}

/// The signature.
#[derive(Debug, Serialize)]
pub struct SignatureReport {
    /// `RSASSA`, `RSAPSS` or `ECDSA`.
    pub scheme: &'static str,
    /// e.g. `sha256`.
    pub hash: &'static str,
    /// How it was read.
    pub encoding: String,
}

/// The attestation key.
#[derive(Debug, Serialize)]
pub struct AkReport {
    /// e.g. `RSA-2048`.
    pub key: String,
    /// `TPMT_PUBLIC`, or `public key` for SPKI/JWK.
    pub form: &'static str,
    /// The AK's Name, hex (TPMT_PUBLIC only).
    pub name: Option<String>,
    /// The AK's objectAttributes (TPMT_PUBLIC only).
    pub attributes: Option<String>,
}

/// Runs the check.
pub fn run(args: &Args) -> anyhow::Result<Outcome> {
    let ak_bytes =
        std::fs::read(&args.ak).with_context(|| format!("reading AK {}", args.ak.display()))?;
    let ak = AkPublic::detect(&ak_bytes).with_context(|| format!("AK {}", args.ak.display()))?;
    let ak_key = ak
        .verifying_key()
        .with_context(|| format!("AK {}", args.ak.display()))?;
    let message = read_bytes_or_hex(&args.message)?;
    let signature = read_bytes_or_hex(&args.signature)?;
    let nonce = hex::decode(args.nonce.trim()).context("--nonce: expected hex")?;
    let qualified_signer = args
        .qualified_signer
        .as_deref()
        .map(|h| hex::decode(h.trim()))
        .transpose()
        .context("--qualified-signer: expected hex")?;
    let pcrs = match (&args.pcrs, &args.pcr_list, &args.pcr_values) {
        (Some(file), None, None) => {
            let raw = std::fs::read(file)
                .with_context(|| format!("reading PCR values {}", file.display()))?;
            PcrValues::from_tpm2_tools_serialized(&raw)
                .with_context(|| {
                    format!(
                        "PCR values {} (without --pcr-list: the file tpm2_quote -o writes)",
                        file.display()
                    )
                })?
                .1
        }
        (Some(file), Some(list), None) => {
            let selection = PcrSelection::parse_tpm2_tools(list).context("--pcr-list")?;
            let raw = std::fs::read(file)
                .with_context(|| format!("reading PCR values {}", file.display()))?;
            PcrValues::from_concatenated(&selection, &raw)
                .with_context(|| format!("PCR values {}", file.display()))?
        }
        (None, None, Some(file)) => {
            let text = std::fs::read_to_string(file)
                .with_context(|| format!("reading PCR values {}", file.display()))?;
            PcrValues::from_json(&text).with_context(|| format!("PCR values {}", file.display()))?
        }
        _ => {
            anyhow::bail!(
                "give the PCR values with --pcrs (tpm2_quote -o), --pcrs and --pcr-list, or --pcr-values"
            )
        }
    };
    let policy = QuotePolicy {
        nonce: &nonce,
        pcrs: &pcrs,
        allow_sha1: args.allow_sha1,
        qualified_signer: qualified_signer.as_deref(),
    };
    let hash = args
        .hash
        .as_deref()
        .map(|h| {
            HashAlg::from_name(h).ok_or_else(|| {
                anyhow::anyhow!("--hash: expected sha1, sha256, sha384 or sha512, found {h:?}")
            })
        })
        .transpose()?;
    let (appraisal, encoding) = match args.signature_format {
        Some(SignatureFormat::Plain) => {
            let (scheme, ak_hash) = ak
                .tpm_public()
                .and_then(|p| p.signing_scheme())
                .map_or((SigScheme::RsaSsa, None), |(s, h)| (s, Some(h)));
            let (h, source) = match (hash, ak_hash) {
                (Some(h), _) => (h, "--hash"),
                (None, Some(h)) => (h, "the AK's scheme"),
                (None, None) => (HashAlg::Sha256, "assumed"),
            };
            let sig = TpmSignature::plain(&signature, &ak_key, scheme, h)
                .context("--signature (plain)")?;
            let why = format!(
                "plain {} signature ({} bytes, no TPMT_SIGNATURE header); hash {h} ({source})",
                sig.scheme.name(),
                signature.len()
            );
            (appraise_quote(&message, &sig, &ak, &policy), why)
        }
        Some(SignatureFormat::Tpmt) | None => {
            if let (Some(h), Ok(t)) = (hash, TpmSignature::parse(&signature)) {
                if t.hash != h {
                    anyhow::bail!(
                        "--hash {h}: the TPMT_SIGNATURE names {}; drop --hash or give that one",
                        t.hash
                    );
                }
            }
            match raw_rsassa(&signature, &ak, &ak_key, hash)
                .filter(|_| args.signature_format.is_none())
            {
                Some((sig, why)) => (appraise_quote(&message, &sig, &ak, &policy), why),
                None => (
                    appraise_quote_bytes(&message, &signature, &ak_bytes, &policy),
                    "TPMT_SIGNATURE".to_string(),
                ),
            }
        }
    };
    let report = report(&appraisal, &ak, &ak_key, encoding);
    let rendered = match args.format {
        Format::Json => serde_json::to_string_pretty(&report)?,
        Format::Text => text(&report),
    };
    Ok(Outcome {
        report: rendered,
        valid: report.valid,
    })
}

/// A bare RSASSA signature: not a `TPMT_SIGNATURE`, and exactly as long as the RSA AK's modulus. Its
/// hash is the AK's RSASSA scheme hash when the AK is a `TPMT_PUBLIC` with one, else SHA-256.
fn raw_rsassa(
    signature: &[u8],
    ak: &AkPublic,
    key: &VerifyingKey,
    hash: Option<HashAlg>,
) -> Option<(TpmSignature, String)> {
    let VerifyingKey::Rsa(k) = key else {
        return None;
    };
    if signature.len() != k.size() || TpmSignature::parse(signature).is_ok() {
        return None;
    }
    let (hash, source) = match (hash, ak.tpm_public().and_then(|p| p.signing_scheme())) {
        (Some(h), _) => (h, "--hash"),
        (None, Some((SigScheme::RsaSsa, h))) => (h, "the AK's scheme"),
        _ => (HashAlg::Sha256, "assumed"),
    };
    Some((
        TpmSignature::raw_rsassa(signature, hash),
        format!(
            "raw RSASSA signature: no TPMT_SIGNATURE header, {} bytes = the AK modulus size; hash {hash} ({source})",
            signature.len()
        ),
    ))
}

fn report(a: &Appraisal, ak: &AkPublic, key: &VerifyingKey, encoding: String) -> Report {
    Report {
        valid: a.valid(),
        reasons: a.reasons(),
        checks: a
            .checks
            .iter()
            .map(|c| CheckReport {
                name: c.name,
                passed: c.passed,
                detail: c.detail.clone(),
            })
            .collect(),
        quote: a.quote.as_ref().map(|q| QuoteReport {
            form: if q.was_tpm2b {
                "TPM2B_ATTEST"
            } else {
                "TPMS_ATTEST"
            },
            magic: format!("0x{:08x}", q.magic),
            attest_type: format!("0x{:04x}", q.attest_type),
            qualified_signer: hex::encode(&q.qualified_signer),
            qualifying_data: hex::encode(&q.extra_data),
            clock_info: ClockReport {
                clock: q.clock_info.clock,
                reset_count: q.clock_info.reset_count,
                restart_count: q.clock_info.restart_count,
                safe: q.clock_info.safe,
            },
            firmware_version: format!("0x{:016x}", q.firmware_version),
            selection: q
                .quote
                .pcr_select
                .banks
                .iter()
                .map(|b| BankReport {
                    bank: b.bank.name(),
                    pcrs: b.pcrs.clone(),
                })
                .collect(),
            selection_tpm2_tools: q.quote.pcr_select.to_string(),
            pcr_digest: hex::encode(&q.quote.pcr_digest),
        }),
        signature: a.signature.as_ref().map(|s| SignatureReport {
            scheme: s.scheme.name(),
            hash: s.hash.name(),
            encoding,
        }),
        ak: AkReport {
            key: key.describe(),
            form: if ak.tpm_public().is_some() {
                "TPMT_PUBLIC"
            } else {
                "public key"
            },
            name: ak.tpm_public().map(|p| hex::encode(p.name())),
            attributes: ak.tpm_public().map(|p| p.attributes.to_string()),
        },
    }
}

fn text(r: &Report) -> String {
    let mut out = format!(
        "TPM quote: {}\n  ak:         {} ({}{})\n",
        if r.valid { "VALID" } else { "INVALID" },
        r.ak.key,
        r.ak.form,
        r.ak.name
            .as_ref()
            .map(|n| format!(", name {n}"))
            .unwrap_or_default()
    );
    if let Some(s) = &r.signature {
        out.push_str(&format!(
            "  signature:  {}-{} ({})\n",
            s.scheme,
            s.hash.to_ascii_uppercase(),
            s.encoding
        ));
    }
    if let Some(q) = &r.quote {
        let data = if q.qualifying_data.is_empty() {
            "(empty)"
        } else {
            &q.qualifying_data
        };
        out.push_str(&format!(
            "  extraData:  {data}\n  selection:  {}\n  pcrDigest:  {}\n  clock:      {} ms, resetCount {}, restartCount {}, safe {}\n  firmware:   {}\n  signer:     {}\n",
            q.selection_tpm2_tools,
            q.pcr_digest,
            q.clock_info.clock,
            q.clock_info.reset_count,
            q.clock_info.restart_count,
            q.clock_info.safe,
            q.firmware_version,
            q.qualified_signer,
        ));
    }
    for c in &r.checks {
        out.push_str(&format!(
            "  [{}] {}: {}\n",
            if c.passed { "ok  " } else { "FAIL" },
            c.name,
            c.detail
        ));
    }
    out
}
