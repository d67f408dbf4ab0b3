//! The `tpm` submod ([`Quote`], the [`Appraiser`] of TPM evidence: a quote, its AK, the quoted
//! PCR values and the event log). Failing closed:
//!
//! - the quote: every check of [`crate::tpm::appraise`], with qualifying data = the context's
//!   report data (the DESIGN binding for the verifier's nonce and the document's keys), over the
//!   PCR values the evidence reports;
//! - the AK: trusted by the manifest — equal to a pinned `tpm.ak_publics` entry, or certified by a
//!   certificate in the collateral that chains to a `tpm.ak_roots` root (`tpm.ek_cas` needs
//!   credential activation, which the caller performs before: it then pins the AK). Without any
//!   trust anchor the submod is `warning`, never affirming, and says so;
//! - the event log replays to every quoted PCR value;
//! - every manifest PCR equals the quoted value (a manifest PCR the quote lacks is a failure).

use crate::appraise::{Appraiser, Context};
use crate::ear::{Status, Submod, tier};
use crate::tpm::trust::check_pinned_ak;
use crate::tpm::{AkPublic, HashAlg, PcrValues, QuotePolicy, appraise_quote_bytes};
use secllama_measurements::eventlog::{Bank, EventLog};
use secllama_measurements::manifest::Manifest;
use secllama_protocol::attestation::TpmEvidence;

/// The certificates of a manifest list (`tpm.ak_roots`, `tpm.ek_cas`: PEM text or hex DER), DER.
fn manifest_certificates(list: &[String]) -> Result<Vec<Vec<u8>>, String> {
    let mut out = Vec::new();
    for (i, r) in list.iter().enumerate() {
        let bytes = pinned_bytes(r).map_err(|e| format!("[{i}]: {e}"))?;
        out.extend(crate::tpm::cert::load_certificates(&bytes).map_err(|e| format!("[{i}]: {e}"))?);
    }
    Ok(out)
}

/// Decodes one `tpm.ak_publics` entry: PEM as is, else hex.
fn pinned_bytes(entry: &str) -> Result<Vec<u8>, String> {
    if entry.trim_start().starts_with("-----BEGIN") {
        return Ok(entry.as_bytes().to_vec());
    }
    hex::decode(entry.trim()).map_err(|e| format!("not hex: {e}"))
}

/// The appraiser of TPM evidence (submod `tpm`).
#[derive(Debug, Clone, Copy, Default)]
pub struct Quote;

impl Appraiser for Quote {
    const KIND: &'static str = "tpm";
    type Evidence = TpmEvidence;

    fn appraise(&self, tpm: &TpmEvidence, ctx: &Context<'_>) -> Submod {
        appraise(tpm, ctx)
    }
}

/// No TPM evidence where the manifest may require some.
pub fn missing(required: bool) -> Submod {
    Submod {
        status: if required {
            Status::Contraindicated
        } else {
            Status::None
        },
        required,
        reasons: vec!["the attestation document carries no TPM evidence".into()],
        passed: Vec::new(),
        trust_vector: Default::default(),
        claims: Default::default(),
        policy_id: String::new(),
    }
}

fn appraise(tpm: &TpmEvidence, ctx: &Context<'_>) -> Submod {
    let Some(manifest) = ctx.manifest else {
        return Submod::failed(
            true,
            vec!["no reference manifest: TPM evidence cannot be appraised without one".into()],
        );
    };
    let required = manifest.required.tpm;
    let mut reasons = Vec::new();
    let mut passed = Vec::new();
    let mut vector = std::collections::BTreeMap::new();
    let n = reasons.len();
    quote(ctx.report_data, tpm, manifest, &mut reasons, &mut passed);
    // The quote's structure and signature verified under the AK: evidence from a TPM.
    vector.insert("hardware".to_string(), tier::of(reasons.len() == n));
    let n = reasons.len();
    let anchored = ak_trust(tpm, ctx, manifest, &mut reasons, &mut passed);
    vector.insert(
        "instance-identity".to_string(),
        match (anchored, reasons.len() == n) {
            (_, false) => tier::CONTRAINDICATED,
            (true, true) => tier::AFFIRMING,
            (false, true) => tier::WARNING,
        },
    );
    let n = reasons.len();
    replay(tpm, &mut reasons, &mut passed);
    reference_pcrs(tpm, manifest, &mut reasons, &mut passed);
    // The launch events (agent, runner, model, policy, config, libraries) in the PCRs.
    vector.insert("executables".to_string(), tier::of(reasons.len() == n));
    let status = if !reasons.is_empty() {
        Status::Contraindicated
    } else if !anchored {
        reasons.push(
            "AK not trusted: the manifest has no trust anchor (tpm.ak_publics, tpm.ak_roots), so \
             the quote's signer is unauthenticated"
                .into(),
        );
        Status::Warning
    } else {
        Status::Affirming
    };
    Submod {
        status,
        required,
        reasons,
        passed,
        trust_vector: vector,
        claims: Default::default(),
        policy_id: String::new(),
    }
}

fn quote(
    binding: Option<&[u8]>,
    tpm: &TpmEvidence,
    manifest: &Manifest,
    reasons: &mut Vec<String>,
    passed: &mut Vec<String>,
) {
    let Some(binding) = binding else {
        reasons.push("quote: no expected qualifying data (key binding) to compare".into());
        return;
    };
    let mut pcrs = PcrValues::new();
    for (bank, values) in &tpm.pcrs {
        let Some(alg) = HashAlg::from_name(bank) else {
            reasons.push(format!("quoted PCRs: unknown bank {bank}"));
            return;
        };
        for (i, v) in values {
            if let Err(e) = pcrs.insert(alg, *i, v.clone()) {
                reasons.push(format!("quoted PCRs: {e}"));
                return;
            }
        }
    }
    let policy = QuotePolicy {
        nonce: binding,
        pcrs: &pcrs,
        allow_sha1: manifest.tpm.allow_sha1,
        qualified_signer: None,
    };
    let a = appraise_quote_bytes(&tpm.attest, &tpm.signature, &tpm.ak_public, &policy);
    if a.valid() {
        passed.push(format!(
            "quote: {} checks, qualifying data = key binding {}",
            a.checks.len(),
            hex::encode(binding)
        ));
    } else {
        reasons.extend(a.reasons().into_iter().map(|r| format!("quote: {r}")));
    }
}

/// Checks AK trust; returns whether the manifest had an anchor that could be applied.
fn ak_trust(
    tpm: &TpmEvidence,
    ctx: &Context<'_>,
    manifest: &Manifest,
    reasons: &mut Vec<String>,
    passed: &mut Vec<String>,
) -> bool {
    let t = &manifest.tpm;
    if t.ak_publics.is_empty() && t.ak_roots.is_empty() && t.ek_cas.is_empty() {
        return false;
    }
    let ak = match AkPublic::detect(&tpm.ak_public) {
        Ok(ak) => ak,
        Err(e) => {
            reasons.push(format!("AK: {e}"));
            return true;
        }
    };
    let mut misses = Vec::new();
    for (i, entry) in t.ak_publics.iter().enumerate() {
        match pinned_bytes(entry)
            .map_err(|e| e.to_string())
            .and_then(|b| check_pinned_ak(&ak, &b).map_err(|e| e.to_string()))
        {
            Ok(()) => {
                passed.push(format!("AK equals pinned tpm.ak_publics[{i}]"));
                return true;
            }
            Err(e) => misses.push(format!("tpm.ak_publics[{i}]: {e}")),
        }
    }
    if !t.ak_roots.is_empty() {
        match ak_certificate(&ak, ctx, &t.ak_roots) {
            Ok(path) => {
                passed.push(format!("AK certificate chains to tpm.ak_roots: {path}"));
                return true;
            }
            Err(e) => misses.push(format!("tpm.ak_roots: {e}")),
        }
    }
    if !t.ek_cas.is_empty() {
        match activated(tpm, ctx, &t.ek_cas) {
            Ok(path) => {
                passed.push(format!(
                    "AK resident beside the EK (credential activation), EK certificate chains to tpm.ek_cas: {path}"
                ));
                return true;
            }
            Err(e) => misses.push(format!("tpm.ek_cas: {e}")),
        }
    }
    reasons.push(format!(
        "AK not trusted by the manifest: {}",
        misses.join("; ")
    ));
    true
}

/// The caller's credential activation for this AK succeeded, and the EK certificate it used is
/// the document's and chains to one of `cas` (PEM text or hex DER); the path, or why not.
fn activated(tpm: &TpmEvidence, ctx: &Context<'_>, cas: &[String]) -> Result<String, String> {
    let a = ctx.collateral.credential_activation.as_ref().ok_or(
        "no credential activation was performed (the client performs it against the live enclave; \
         it cannot be replayed offline)",
    )?;
    if a.ak_public != tpm.ak_public {
        return Err("the credential activation was for another AK".into());
    }
    let ek = tpm
        .ek_cert
        .as_ref()
        .ok_or("the attestation document carries no EK certificate")?;
    if &a.ek_certificate != ek {
        return Err(
            "the credential activation used another EK certificate than the document's".into(),
        );
    }
    a.outcome
        .clone()
        .map_err(|e| format!("credential activation failed: {e}"))?;
    let anchors = manifest_certificates(cas)?;
    let path = crate::x509::verify_path(
        ek,
        "EK certificate",
        &ctx.collateral.certificates,
        &anchors,
        &crate::x509::PathPolicy {
            at: ctx.at,
            // TCG EK Credential Profile: SAN (manufacturer, model, version) critical when the
            // subject is empty; extKeyUsage and certificatePolicies may be critical.
            known_critical: &["2.5.29.17", "2.5.29.37", "2.5.29.32"],
            crls: &ctx.collateral.crls,
        },
    );
    if path.valid() {
        Ok(path.path.join(" <- "))
    } else {
        Err(path.reasons.join("; "))
    }
}

/// A certificate of the collateral certifying `ak` and chaining to one of `roots` (PEM text or
/// hex DER, as the manifest holds them); the path, or why none.
fn ak_certificate(ak: &AkPublic, ctx: &Context<'_>, roots: &[String]) -> Result<String, String> {
    let key = ak.verifying_key().map_err(|e| e.to_string())?;
    let anchors = manifest_certificates(roots)?;
    let certs = &ctx.collateral.certificates;
    if certs.is_empty() {
        return Err("no AK certificate was given to chain".into());
    }
    let mut why = Vec::new();
    for (i, c) in certs.iter().enumerate() {
        let a = crate::tpm::cert::verify_ak_certificate_with_crls(
            c,
            &key,
            certs,
            &anchors,
            ctx.at,
            &ctx.collateral.crls,
        );
        if a.valid() {
            return Ok(a.path.join(" <- "));
        }
        why.push(format!("certificate #{i}: {}", a.reasons.join("; ")));
    }
    Err(why.join("; "))
}

fn replay(tpm: &TpmEvidence, reasons: &mut Vec<String>, passed: &mut Vec<String>) {
    let log = match EventLog::parse(&tpm.event_log) {
        Ok(l) => l,
        Err(e) => {
            reasons.push(format!("event log: {e}"));
            return;
        }
    };
    let replayed = log.replay();
    let mut n = 0;
    for (bank, values) in &tpm.pcrs {
        let got = Bank::from_name(bank).and_then(|b| replayed.get(&b));
        for (i, quoted) in values {
            match got.and_then(|m| m.get(i)) {
                Some(r) if r == quoted => n += 1,
                Some(r) => reasons.push(format!(
                    "event log: {bank}:{i} replays to {}, quoted {}",
                    hex::encode(r),
                    hex::encode(quoted)
                )),
                // A PCR nothing extended holds its reset value (zero; all ones for 17–22).
                None if Bank::from_name(bank).is_some_and(|b| quoted.len() == b.size())
                    && quoted
                        .iter()
                        .all(|x| *x == if (17..=22).contains(i) { 0xff } else { 0 }) =>
                {
                    n += 1
                }
                None => reasons.push(format!(
                    "event log: no events for quoted PCR {bank}:{i}, which is not at its reset \
                     value ({})",
                    hex::encode(quoted)
                )),
            }
        }
    }
    if n > 0 {
        passed.push(format!(
            "event log ({} events) replays to all {n} quoted PCRs",
            log.events.len()
        ));
    }
}

fn reference_pcrs(
    tpm: &TpmEvidence,
    manifest: &Manifest,
    reasons: &mut Vec<String>,
    passed: &mut Vec<String>,
) {
    let expected = match manifest.expected_pcrs() {
        Ok(p) => p,
        Err(e) => {
            reasons.push(e.to_string());
            return;
        }
    };
    if expected.values().all(|m| m.is_empty()) {
        reasons.push("manifest: no expected PCR values".into());
        return;
    }
    for (bank, values) in &expected {
        let quoted = tpm.pcrs.get(bank.name());
        for (i, want) in values {
            let name = format!("{}:{i}", bank.name());
            match quoted.and_then(|m| m.get(i)) {
                Some(q) if q == want => passed.push(format!("PCR {name} = manifest")),
                Some(q) => reasons.push(format!(
                    "PCR {name}: expected {}, quoted {}",
                    hex::encode(want),
                    hex::encode(q)
                )),
                None => reasons.push(format!("PCR {name}: in the manifest but not in the quote")),
            }
        }
    }
}
