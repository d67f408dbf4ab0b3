//! Evidence bundles: everything one appraisal used, in one CBOR file, so it can be re-appraised
//! offline years later with no other input and the same verdict — or a statement of exactly what
//! changed (a certificate since expired at a later `--at`, one revoked by a newer CRL, another
//! manifest).
//!
//! A bundle is a deterministic CBOR map (RFC 8949 §4.2.1) with text keys:
//!
//! | key | value |
//! |---|---|
//! | `format` | `"secllama-evidence-bundle/v1"` |
//! | `kind` | the evidence kind: `enclave` (a secllama attestation document), `snp`, `nitro` |
//! | `evidence` | the evidence bytes, exactly as received |
//! | `report_data` | the nonce (`enclave`, `nitro`) or expected report data (`snp`), or null |
//! | `certificates`, `crls` | the collateral offered (DER), arrays of byte strings |
//! | `manifest` | the reference manifest, canonical TOML text, or null |
//! | `manifest_digest` | SHA-256 of `manifest` (the EAR `ear.appraisal-policy-id`) |
//! | `at`, `at_nanos` | the appraisal time: seconds since the Unix epoch (at most year 9999) and nanoseconds |
//! | `verdict` | the attestation result as recorded, JSON text |
//!
//! Trust: nothing in a bundle is trusted. Re-appraisal uses this verifier's built-in roots (AMD,
//! AWS), re-checks every signature, and compares its verdict with the recorded one only to report
//! differences; the manifest it carries is what the original appraisal used — pass your own to
//! compare against it.

use crate::appraise::{Appraiser, Collateral, Context};
use crate::ear::AttestationResult;
use ciborium::Value;
use secllama_measurements::manifest::Manifest;
use secllama_protocol::Nonce;
use secllama_protocol::cbor::{self, Key, MapReader};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The `format` value.
pub const FORMAT: &str = "secllama-evidence-bundle/v1";
/// Latest appraisal time a bundle may record: 9999-12-31T23:59:59Z.
pub const MAX_AT: u64 = 253_402_300_799;
/// Largest bundle read, bytes.
pub const MAX_BUNDLE_LEN: usize = 16 * 1024 * 1024;

/// An evidence bundle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bundle {
    /// `enclave`, `snp` or `nitro`.
    pub kind: String,
    /// The evidence bytes.
    pub evidence: Vec<u8>,
    /// The nonce or expected report data.
    pub report_data: Option<Vec<u8>>,
    /// Collateral certificates and CRLs (DER).
    pub collateral: Collateral,
    /// The manifest's canonical TOML, if one was used.
    pub manifest: Option<String>,
    /// The appraisal time, seconds since the epoch (at most [`MAX_AT`]).
    pub at: u64,
    /// Its nanoseconds (certificates expire to the second: a time a fraction past the end of a
    /// validity must stay past it).
    pub at_nanos: u32,
    /// The recorded result, JSON.
    pub verdict: String,
}

/// A bundle that cannot be read or re-appraised.
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    /// Not a bundle.
    #[error("evidence bundle: {0}")]
    Format(String),
    /// Its manifest does not parse or does not match its digest.
    #[error("evidence bundle manifest: {0}")]
    Manifest(String),
}

fn seconds(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

fn manifest_digest(toml: &str) -> Vec<u8> {
    secllama_protocol::sha256(&[toml.as_bytes()]).0.to_vec()
}

impl Bundle {
    /// Records an appraisal: `kind`, its evidence and inputs, and the `result` it produced.
    ///
    /// # Errors
    /// A manifest or result that cannot be serialized.
    pub fn record(
        kind: &str,
        evidence: &[u8],
        report_data: Option<&[u8]>,
        collateral: &Collateral,
        manifest: Option<&Manifest>,
        at: SystemTime,
        result: &AttestationResult,
    ) -> Result<Self, BundleError> {
        Ok(Self {
            kind: kind.to_string(),
            evidence: evidence.to_vec(),
            report_data: report_data.map(<[u8]>::to_vec),
            collateral: Collateral {
                roots: Vec::new(),
                credential_activation: None,
                ..collateral.clone()
            },
            manifest: manifest
                .map(Manifest::to_toml)
                .transpose()
                .map_err(|e| BundleError::Manifest(e.to_string()))?,
            at: seconds(at),
            at_nanos: at
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.subsec_nanos()),
            verdict: serde_json::to_string(result)
                .map_err(|e| BundleError::Format(e.to_string()))?,
        })
    }

    /// The deterministic CBOR encoding.
    ///
    /// # Errors
    /// Encoding failed.
    pub fn to_bytes(&self) -> Result<Vec<u8>, BundleError> {
        let list =
            |v: &[Vec<u8>]| Value::Array(v.iter().map(|b| Value::Bytes(b.clone())).collect());
        let opt_bytes = |v: &Option<Vec<u8>>| v.clone().map_or(Value::Null, Value::Bytes);
        let value = cbor::map(vec![
            (Key::Text("format"), Value::Text(FORMAT.into())),
            (Key::Text("kind"), Value::Text(self.kind.clone())),
            (Key::Text("evidence"), Value::Bytes(self.evidence.clone())),
            (Key::Text("report_data"), opt_bytes(&self.report_data)),
            (
                Key::Text("certificates"),
                list(&self.collateral.certificates),
            ),
            (Key::Text("crls"), list(&self.collateral.crls)),
            (
                Key::Text("manifest"),
                self.manifest.clone().map_or(Value::Null, Value::Text),
            ),
            (
                Key::Text("manifest_digest"),
                opt_bytes(&self.manifest.as_deref().map(manifest_digest)),
            ),
            (Key::Text("at"), Value::Integer(self.at.into())),
            (Key::Text("at_nanos"), Value::Integer(self.at_nanos.into())),
            (Key::Text("verdict"), Value::Text(self.verdict.clone())),
        ]);
        cbor::to_vec(&value).map_err(|e| BundleError::Format(e.to_string()))
    }

    /// Strictly decodes a bundle (deterministic CBOR, no unknown or duplicate keys).
    ///
    /// # Errors
    /// Anything but a v1 bundle, or a manifest that does not match its digest.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, BundleError> {
        let f = |e: secllama_protocol::ProtocolError| BundleError::Format(e.to_string());
        let value =
            cbor::decode_deterministic("evidence bundle", bytes, MAX_BUNDLE_LEN).map_err(f)?;
        let mut r = MapReader::new("bundle", value).map_err(f)?;
        let format = r.text(Key::Text("format")).map_err(f)?;
        if format != FORMAT {
            return Err(BundleError::Format(format!(
                "expected format {FORMAT}, found {format}"
            )));
        }
        let kind = r.text(Key::Text("kind")).map_err(f)?;
        let evidence = r.bytes(Key::Text("evidence")).map_err(f)?;
        let report_data = nullable_bytes(&mut r, "report_data")?;
        let mut list = |key: &'static str| -> Result<Vec<Vec<u8>>, BundleError> {
            match r.take(Key::Text(key)) {
                Some(Value::Array(items)) => items
                    .into_iter()
                    .map(|v| cbor::as_bytes(key, v).map_err(f))
                    .collect(),
                Some(other) => Err(BundleError::Format(format!(
                    "{key}: expected an array of byte strings, found {}",
                    cbor::describe_value(&other)
                ))),
                None => Err(BundleError::Format(format!(
                    "{key}: expected it, found none"
                ))),
            }
        };
        let certificates = list("certificates")?;
        let crls = list("crls")?;
        let manifest = match r.take(Key::Text("manifest")) {
            Some(Value::Text(t)) => Some(t),
            Some(Value::Null) | None => None,
            Some(other) => {
                return Err(BundleError::Format(format!(
                    "manifest: expected text or null, found {}",
                    cbor::describe_value(&other)
                )));
            }
        };
        let digest = nullable_bytes(&mut r, "manifest_digest")?;
        if manifest.as_deref().map(manifest_digest) != digest {
            return Err(BundleError::Manifest(
                "expected manifest_digest to be the SHA-256 of manifest, found another value"
                    .into(),
            ));
        }
        let at = r.uint(Key::Text("at")).map_err(f)?;
        let at_nanos = r.uint(Key::Text("at_nanos")).map_err(f)?;
        if at > MAX_AT {
            return Err(BundleError::Format(format!(
                "at: expected a time before year 10000 (at most {MAX_AT} s), found {at}"
            )));
        }
        let at_nanos = u32::try_from(at_nanos)
            .ok()
            .filter(|n| *n < 1_000_000_000)
            .ok_or_else(|| {
                BundleError::Format(format!(
                    "at_nanos: expected 0 to 999999999, found {at_nanos}"
                ))
            })?;
        let verdict = r.text(Key::Text("verdict")).map_err(f)?;
        r.finish().map_err(f)?;
        Ok(Self {
            kind,
            evidence,
            report_data,
            collateral: Collateral {
                certificates,
                crls,
                ..Collateral::default()
            },
            manifest,
            at,
            at_nanos,
            verdict,
        })
    }

    /// The recorded appraisal time (`at` is bounded by [`MAX_AT`] when decoded; a larger one from
    /// a hand-built value saturates there).
    pub fn time(&self) -> SystemTime {
        UNIX_EPOCH + Duration::new(self.at.min(MAX_AT), self.at_nanos % 1_000_000_000)
    }

    /// The manifest the bundle carries.
    ///
    /// # Errors
    /// A manifest that does not parse.
    pub fn manifest(&self) -> Result<Option<Manifest>, BundleError> {
        self.manifest
            .as_deref()
            .map(Manifest::from_toml)
            .transpose()
            .map_err(|e| BundleError::Manifest(e.to_string()))
    }
}

/// A byte string or null at `key`.
fn nullable_bytes(r: &mut MapReader, key: &'static str) -> Result<Option<Vec<u8>>, BundleError> {
    match r.take(Key::Text(key)) {
        Some(Value::Bytes(b)) => Ok(Some(b)),
        Some(Value::Null) => Ok(None),
        Some(other) => Err(BundleError::Format(format!(
            "{key}: expected a byte string or null, found {}",
            cbor::describe_value(&other)
        ))),
        None => Err(BundleError::Format(format!(
            "{key}: expected it, found none"
        ))),
    }
}

/// The outcome of [`reappraise`].
#[derive(Debug, Clone)]
pub struct Reappraisal {
    /// The new result.
    pub result: AttestationResult,
    /// Whether it is valid: affirming for `enclave`, no failed check for the other kinds.
    pub valid: bool,
    /// What differs from the recorded verdict, and why (empty: the same verdict).
    pub changes: Vec<String>,
}

/// Re-appraises `bundle` offline at `at` (default: its recorded time), with `extra_crls` (e.g. a
/// newer CRL) added to its collateral and `manifest` replacing its own when given.
///
/// # Errors
/// An unknown kind or an unreadable manifest.
pub fn reappraise(
    bundle: &Bundle,
    at: Option<SystemTime>,
    extra_crls: &[Vec<u8>],
    manifest: Option<&Manifest>,
) -> Result<Reappraisal, BundleError> {
    let own = bundle.manifest()?;
    let mut changes = Vec::new();
    let manifest = match (manifest, &own) {
        (Some(given), Some(own)) => {
            if given != own {
                changes.push(
                    "the manifest given differs from the one the bundle was appraised against"
                        .into(),
                );
            }
            Some(given.clone())
        }
        (Some(given), None) => Some(given.clone()),
        (None, own) => own.clone(),
    };
    let at = at.unwrap_or_else(|| bundle.time());
    if at != bundle.time() {
        let show =
            |t: SystemTime| crate::x509::rfc3339(t.duration_since(UNIX_EPOCH).unwrap_or_default());
        changes.push(format!(
            "appraised as of {} instead of the recorded {}",
            show(at),
            show(bundle.time())
        ));
    }
    let mut collateral = bundle.collateral.clone();
    if !extra_crls.is_empty() {
        collateral.crls.extend(extra_crls.iter().cloned());
        changes.push(format!("{} CRL(s) added", extra_crls.len()));
    }
    let digest = secllama_protocol::sha256(&[&bundle.evidence]);
    let (mut result, valid) = match bundle.kind.as_str() {
        "enclave" => {
            let m = manifest.as_ref().ok_or_else(|| {
                BundleError::Manifest("an enclave bundle needs a manifest".into())
            })?;
            let nonce = bundle
                .report_data
                .clone()
                .ok_or_else(|| BundleError::Format("report_data: expected the nonce".into()))
                .and_then(|n| Nonce::new(n).map_err(|e| BundleError::Format(e.to_string())))?;
            let a = crate::enclave::appraise_document(&bundle.evidence, &nonce, m, &collateral, at);
            let valid = a.result.affirming();
            (a.result, valid)
        }
        kind @ ("snp" | "nitro") => {
            let ctx = Context {
                report_data: bundle.report_data.as_deref(),
                manifest: manifest.as_ref(),
                collateral: &collateral,
                at,
            };
            let s = if kind == "snp" {
                crate::snp::Report.appraise(&bundle.evidence, &ctx)
            } else {
                crate::nitro::Document.appraise(&bundle.evidence, &ctx)
            };
            let valid = matches!(s.status, crate::Status::Affirming | crate::Status::Warning);
            let mut r = AttestationResult::new(digest);
            r.insert(kind, s);
            if let Some(m) = &manifest {
                r.set_appraisal_policy(m);
            }
            (r, valid)
        }
        other => {
            return Err(BundleError::Format(format!(
                "kind: expected enclave, snp or nitro, found {other}"
            )));
        }
    };
    result.iat = seconds(SystemTime::now());
    changes.extend(compare(&bundle.verdict, &result));
    Ok(Reappraisal {
        result,
        valid,
        changes,
    })
}

/// The differences between a recorded verdict (JSON) and a new result: per submod, the status and
/// the reasons that appeared or disappeared.
fn compare(recorded: &str, now: &AttestationResult) -> Vec<String> {
    let Ok(old) = serde_json::from_str::<serde_json::Value>(recorded) else {
        return vec!["the recorded verdict is not readable JSON".into()];
    };
    let Ok(new) = serde_json::to_value(now) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let empty = serde_json::Map::new();
    let old_s = old["submods"].as_object().unwrap_or(&empty);
    let new_s = new["submods"].as_object().unwrap_or(&empty);
    for name in old_s
        .keys()
        .chain(new_s.keys().filter(|k| !old_s.contains_key(*k)))
    {
        let (o, n) = (&old_s.get(name), &new_s.get(name));
        match (o, n) {
            (Some(o), Some(n)) => {
                if o["ear.status"] != n["ear.status"] {
                    out.push(format!(
                        "{name}: recorded {}, now {}",
                        o["ear.status"], n["ear.status"]
                    ));
                }
                let list = |v: &serde_json::Value| -> Vec<String> {
                    v["reasons"]
                        .as_array()
                        .map(|a| {
                            a.iter()
                                .filter_map(|x| x.as_str().map(String::from))
                                .collect()
                        })
                        .unwrap_or_default()
                };
                let (ro, rn) = (list(o), list(n));
                for r in rn.iter().filter(|r| !ro.contains(r)) {
                    out.push(format!("{name}: new: {r}"));
                }
                for r in ro.iter().filter(|r| !rn.contains(r)) {
                    out.push(format!("{name}: no longer: {r}"));
                }
            }
            (Some(_), None) => out.push(format!("{name}: recorded, now absent")),
            (None, Some(n)) => out.push(format!("{name}: new submod, {}", n["ear.status"])),
            (None, None) => {}
        }
    }
    if old["secllama.attestation-digest"] != new["secllama.attestation-digest"] {
        out.push("the evidence digest differs from the recorded one".into());
    }
    out
}
