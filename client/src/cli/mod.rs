//! The `secllama-verify` subcommands, one file each (clap derive). Each `run` returns the report to
//! print and whether the check passed; `main.rs` only dispatches, prints and sets the exit code.

pub mod attest;
pub mod azure;
pub mod bundle;
pub mod completions;
pub mod cose;
pub mod eventlog;
pub mod generate;
pub mod log;
pub mod nitro;
pub mod proxy;
pub mod quote;
pub mod receipt;
pub mod snp;

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

/// Largest input file read, bytes (evidence, certificates, bundles are far smaller).
pub const MAX_INPUT: u64 = 16 * 1024 * 1024;

/// Reads a regular file of at most [`MAX_INPUT`] bytes: a device, FIFO or folder is refused
/// rather than read forever.
pub fn read_file(path: &Path) -> anyhow::Result<Vec<u8>> {
    use anyhow::Context;
    use std::io::Read;
    let meta = std::fs::metadata(path).with_context(|| format!("reading {}", path.display()))?;
    if !meta.is_file() {
        anyhow::bail!(
            "{}: expected a regular file, found {}",
            path.display(),
            if meta.is_dir() {
                "a folder"
            } else {
                "a device, FIFO or socket"
            }
        );
    }
    let mut buf = Vec::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(MAX_INPUT + 1).read_to_end(&mut buf))
        .with_context(|| format!("reading {}", path.display()))?;
    if buf.len() as u64 > MAX_INPUT {
        anyhow::bail!(
            "{}: expected at most {MAX_INPUT} bytes, found more",
            path.display()
        );
    }
    Ok(buf)
}

/// Hex from the command line: `what` names the flag; empty or odd input is a usage error.
pub fn parse_hex(what: &str, text: &str, max: usize) -> anyhow::Result<Vec<u8>> {
    let t = text.trim();
    if t.is_empty() {
        anyhow::bail!("{what}: expected hex, found an empty value");
    }
    if !t.bytes().all(|b| b.is_ascii_hexdigit()) || t.len() % 2 != 0 {
        anyhow::bail!("{what}: expected an even number of hex digits (no spaces), found {t:?}");
    }
    let b = hex::decode(t).map_err(|e| anyhow::anyhow!("{what}: {e}"))?;
    if b.len() > max {
        anyhow::bail!("{what}: expected at most {max} bytes, found {}", b.len());
    }
    Ok(b)
}

/// Reads a file that may hold raw bytes or hex text (whitespace ignored).
pub fn read_bytes_or_hex(path: &Path) -> anyhow::Result<Vec<u8>> {
    use anyhow::Context;
    let raw = read_file(path)?;
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

/// Parses an RFC 3339 time (`2023-03-22T14:28:27.405Z`, `2024-09-07T14:38:06+00:00`); fractions of
/// a second are kept.
pub fn parse_time(text: &str) -> anyhow::Result<std::time::SystemTime> {
    use anyhow::{anyhow, bail};
    let bad =
        || anyhow!("--at: expected an RFC 3339 time such as 2024-09-07T14:38:06Z, found {text:?}");
    let t = text.trim();
    if t.len() < 20 || !t.is_ascii() {
        return Err(bad());
    }
    let (main, rest) = t.split_at(19);
    let num = |r: std::ops::Range<usize>| -> anyhow::Result<u32> {
        main.get(r).and_then(|s| s.parse().ok()).ok_or_else(bad)
    };
    let b = main.as_bytes();
    if b[4] != b'-'
        || b[7] != b'-'
        || !matches!(b[10], b'T' | b't' | b' ')
        || b[13] != b':'
        || b[16] != b':'
    {
        return Err(bad());
    }
    let (y, mo, d, h, mi, s) = (
        num(0..4)?,
        num(5..7)?,
        num(8..10)?,
        num(11..13)?,
        num(14..16)?,
        num(17..19)?,
    );
    let dt = der::DateTime::new(
        u16::try_from(y).map_err(|_| bad())?,
        u8::try_from(mo).map_err(|_| bad())?,
        u8::try_from(d).map_err(|_| bad())?,
        u8::try_from(h).map_err(|_| bad())?,
        u8::try_from(mi).map_err(|_| bad())?,
        u8::try_from(s).map_err(|_| bad())?,
    )
    .map_err(|_| bad())?;
    let mut when = dt.unix_duration();
    let mut rest = rest;
    if let Some(frac) = rest.strip_prefix('.') {
        let digits: String = frac.chars().take_while(char::is_ascii_digit).collect();
        if digits.is_empty() || digits.len() > 9 {
            return Err(bad());
        }
        let nanos: u32 = format!("{digits:0<9}").parse().map_err(|_| bad())?;
        when += std::time::Duration::from_nanos(nanos.into());
        rest = &frac[digits.len()..];
    }
    let offset_secs: i64 = match rest {
        "Z" | "z" => 0,
        o if o.len() == 6 && (o.starts_with('+') || o.starts_with('-')) && &o[3..4] == ":" => {
            let hh: i64 = o[1..3].parse().map_err(|_| bad())?;
            let mm: i64 = o[4..6].parse().map_err(|_| bad())?;
            let v = hh * 3600 + mm * 60;
            if o.starts_with('-') { -v } else { v }
        }
        _ => bail!("--at: expected Z or an offset ±HH:MM after the time, found {rest:?}"),
    };
    let secs = i64::try_from(when.as_secs()).map_err(|_| bad())? - offset_secs;
    let secs = u64::try_from(secs).map_err(|_| bad())?;
    Ok(std::time::UNIX_EPOCH + std::time::Duration::new(secs, when.subsec_nanos()))
}

/// The optional `--manifest` and `--at` of the single-kind subcommands: the manifest read and
/// validated, the time parsed (now when not given).
pub fn manifest_and_time(
    manifest: Option<&Path>,
    at: Option<&str>,
) -> anyhow::Result<(
    Option<secllama_measurements::manifest::Manifest>,
    std::time::SystemTime,
)> {
    Ok((
        manifest.map(attest::load_manifest).transpose()?,
        at.map(parse_time)
            .transpose()?
            .unwrap_or_else(std::time::SystemTime::now),
    ))
}

/// Reads certificates (DER or PEM, one or many) from a file, or from every `.pem`, `.der`,
/// `.crt`, `.cer` or `.cert` file of a folder (as `snpguest fetch` writes them: `vcek.der`/`vcek.pem`, `ask.pem`, `ark.pem`, or one
/// `cert_chain.pem`), in name order.
pub fn load_certificates(path: &Path) -> anyhow::Result<Vec<Vec<u8>>> {
    use anyhow::Context;
    let files: Vec<std::path::PathBuf> = if path.is_dir() {
        let mut v: Vec<_> = std::fs::read_dir(path)
            .with_context(|| format!("reading {}", path.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.is_file()
                    && p.extension().and_then(|e| e.to_str()).is_some_and(|e| {
                        ["pem", "der", "crt", "cer", "cert"]
                            .contains(&e.to_ascii_lowercase().as_str())
                    })
            })
            .collect();
        v.sort();
        v
    } else {
        vec![path.to_path_buf()]
    };
    let mut out = Vec::new();
    for f in &files {
        let bytes = read_file(f)?;
        out.extend(
            secllama_verifier::x509::load_certificates(&bytes)
                .map_err(|e| anyhow::anyhow!("{}: {e}", f.display()))?,
        );
    }
    if out.is_empty() {
        anyhow::bail!("{}: expected certificates, found none", path.display());
    }
    Ok(out)
}

/// Reads a CRL, DER or PEM (`X509 CRL`).
pub fn load_crl(path: &Path) -> anyhow::Result<Vec<u8>> {
    let bytes = read_file(path)?;
    let der = if bytes.trim_ascii_start().starts_with(b"-----BEGIN") {
        secllama_protocol::pem::blocks(&bytes, "X509 CRL", 1)
            .map_err(|e| anyhow::anyhow!("{}: expected a PEM CRL: {e}", path.display()))?
            .into_iter()
            .next()
            .unwrap_or_default()
    } else {
        bytes
    };
    let what = path.display().to_string();
    secllama_protocol::x690::decode::<x509_cert::crl::CertificateList>(&what, "a DER CRL", &der)?;
    Ok(der)
}

/// What a single-kind subcommand (`snp`, `nitro`) records in an evidence bundle when asked.
pub struct BundleRequest<'a> {
    /// Where to write it.
    pub path: &'a Path,
    /// The report data or nonce compared.
    pub report_data: Option<&'a [u8]>,
    /// The collateral used.
    pub collateral: &'a secllama_verifier::Collateral,
    /// The manifest used.
    pub manifest: Option<&'a secllama_measurements::manifest::Manifest>,
    /// The appraisal time.
    pub at: std::time::SystemTime,
}

/// Renders a standalone appraisal (one evidence kind, no enclave document) and its verdict: valid
/// when no check failed (a `warning` submod is valid and says what was not compared). With
/// `bundle`, also writes an evidence bundle of it.
pub fn standalone(
    kind: &str,
    evidence: &[u8],
    submod: secllama_verifier::Submod,
    format: Format,
    bundle: Option<BundleRequest<'_>>,
) -> anyhow::Result<Outcome> {
    use anyhow::Context;
    use secllama_verifier::{AttestationResult, Status};
    let valid = matches!(submod.status, Status::Affirming | Status::Warning);
    let mut result = AttestationResult::new(secllama_protocol::sha256(&[evidence]));
    result.insert(kind, submod);
    if let Some(m) = bundle.as_ref().and_then(|b| b.manifest) {
        result.set_appraisal_policy(m);
    }
    if let Some(b) = bundle {
        let bytes = secllama_verifier::bundle::Bundle::record(
            kind,
            evidence,
            b.report_data,
            b.collateral,
            b.manifest,
            b.at,
            &result,
        )?
        .to_bytes()?;
        std::fs::write(b.path, bytes)
            .with_context(|| format!("writing the evidence bundle to {}", b.path.display()))?;
    }
    let report = match format {
        Format::Json => serde_json::to_string_pretty(&result)?,
        Format::Text => format!(
            "{kind} evidence sha256:{}\n{}result: {}",
            result.attestation_digest,
            result.to_text_body(),
            if valid { "valid" } else { "INVALID" }
        ),
    };
    Ok(Outcome { report, valid })
}
