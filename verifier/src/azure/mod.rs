//! Azure confidential-VM vTPM evidence (Azure CVM guest attestation; AMD SEV-SNP ABI): the HCL
//! report ([`hcl`]) carries an SNP report whose REPORT_DATA holds the hash of the HCL's runtime
//! data (`var_data`, JSON), which holds the vTPM's attestation key as a JWK (`kid` `HCLAkPub`); that
//! AK signs a TPM2_Quote. [`Evidence`] is the [`Appraiser`] of submod `azure`, one appraisal along
//! that chain, failing closed at each link:
//!
//! 1. the SNP report, appraised by [`crate::snp::Report`] (signature, VCEK → ASK → ARK, TCB, and
//!    the manifest's `[snp]` when given) with expected report data = hash(var_data) ‖ zeros;
//! 2. the AK: the `HCLAkPub` JWK of var_data, an RSA key;
//! 3. the quote, appraised by [`crate::tpm::appraise_quote`] under that AK (a bare
//!    RSASSA-SHA256 signature, as the vTPM tooling ships it) with qualifying data = the context's
//!    report data (the verifier's nonce) over the reported SHA-256 PCRs;
//! 4. the manifest's expected PCR values (`[pcrs.sha256]`), when it has any.

pub mod hcl;

use crate::appraise::{Appraiser, Context};
use crate::ear::{Status, Submod, tier};
use crate::tpm::{AkPublic, HashAlg, PcrValues, QuotePolicy, TpmSignature, appraise_quote};
use std::collections::BTreeMap;

/// Azure vTPM evidence: the HCL report and a quote by the vTPM's AK.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AzureEvidence {
    /// The HCL report (header, SNP report, IGVM request data, var_data).
    pub hcl_report: Vec<u8>,
    /// The quote's TPMS_ATTEST.
    pub attest: Vec<u8>,
    /// The quote's signature: a bare RSASSA-SHA256 signature, or a TPMT_SIGNATURE.
    pub signature: Vec<u8>,
    /// The SHA-256 PCR values the quote covers, by index.
    pub pcrs: BTreeMap<u32, Vec<u8>>,
}

impl AzureEvidence {
    /// Reads trustee's az-snp-vtpm evidence JSON (`{"version", "hcl_report": base64, "tpm_quote":
    /// {"signature": hex, "message": hex, "pcrs": [hex × 24]}, "vcek": base64 DER}`) or a bare
    /// `tpm_quote` object with the HCL report given apart. Returns the evidence and the VCEK when
    /// the JSON carries one.
    ///
    /// # Errors
    /// A message saying which field was expected and what was found.
    pub fn from_json(
        text: &str,
        hcl_report: Option<Vec<u8>>,
    ) -> Result<(Self, Option<Vec<u8>>), String> {
        use base64::Engine;
        let v: serde_json::Value =
            serde_json::from_str(text).map_err(|e| format!("evidence JSON: {e}"))?;
        let b64 = |s: &str| {
            let s = s.trim_end_matches('=');
            base64::engine::general_purpose::STANDARD_NO_PAD
                .decode(s)
                .or_else(|_| base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(s))
                .map_err(|e| format!("expected base64, found {e}"))
        };
        let quote = v.get("tpm_quote").unwrap_or(&v);
        let hex_field = |k: &str| {
            quote
                .get(k)
                .and_then(|x| x.as_str())
                .ok_or_else(|| format!("evidence JSON: expected tpm_quote.{k} (hex), found none"))
                .and_then(|s| hex::decode(s).map_err(|e| format!("tpm_quote.{k}: {e}")))
        };
        let hcl_report = match (hcl_report, v.get("hcl_report").and_then(|x| x.as_str())) {
            (Some(h), _) => h,
            (None, Some(s)) => b64(s).map_err(|e| format!("hcl_report: {e}"))?,
            (None, None) => return Err("evidence JSON: expected hcl_report, found none".into()),
        };
        let mut pcrs = BTreeMap::new();
        for (i, p) in quote
            .get("pcrs")
            .and_then(|x| x.as_array())
            .ok_or("evidence JSON: expected tpm_quote.pcrs (an array of hex), found none")?
            .iter()
            .enumerate()
        {
            let value = p
                .as_str()
                .and_then(|s| hex::decode(s).ok())
                .filter(|b| b.len() == 32)
                .ok_or_else(|| format!("tpm_quote.pcrs[{i}]: expected 32 bytes of hex"))?;
            pcrs.insert(u32::try_from(i).map_err(|e| e.to_string())?, value);
        }
        let vcek = match v.get("vcek").and_then(|x| x.as_str()) {
            Some(s) => Some(b64(s).map_err(|e| format!("vcek: {e}"))?),
            None => None,
        };
        Ok((
            Self {
                hcl_report,
                attest: hex_field("message")?,
                signature: hex_field("signature")?,
                pcrs,
            },
            vcek,
        ))
    }
}

/// The appraiser of Azure vTPM evidence (submod `azure`).
#[derive(Debug, Clone, Copy, Default)]
pub struct Evidence;

impl Appraiser for Evidence {
    const KIND: &'static str = "azure";
    type Evidence = AzureEvidence;

    fn appraise(&self, e: &AzureEvidence, ctx: &Context<'_>) -> Submod {
        let mut reasons = Vec::new();
        let mut passed = Vec::new();
        let mut warnings = Vec::new();
        let mut vector = BTreeMap::new();
        let mut claims = BTreeMap::new();
        let hcl = match hcl::HclReport::parse(&e.hcl_report) {
            Ok(h) => h,
            Err(err) => return Submod::failed(true, vec![err]),
        };
        // 1. The SNP report, bound to var_data.
        let mut report_data = hcl.var_data_hash();
        report_data.resize(64, 0);
        let snp = crate::snp::Report.appraise(
            &hcl.snp_report,
            &Context {
                report_data: Some(&report_data),
                ..*ctx
            },
        );
        for (k, v) in &snp.claims {
            claims.insert(format!("snp.{k}"), v.clone());
        }
        for (k, v) in &snp.trust_vector {
            vector.insert(k.clone(), *v);
        }
        passed.extend(snp.passed.iter().map(|p| format!("snp: {p}")));
        match snp.status {
            Status::Contraindicated | Status::None => {
                reasons.extend(snp.reasons.iter().map(|r| format!("snp: {r}")));
            }
            _ => warnings.extend(snp.reasons.iter().map(|r| format!("snp: {r}"))),
        }
        passed.push(format!(
            "var_data ({} bytes, {}) is what REPORT_DATA binds",
            hcl.var_data.len(),
            hcl.hash_name()
        ));
        // 2. The AK from var_data.
        let ak = match hcl.ak_jwk().and_then(|jwk| {
            AkPublic::detect(jwk.as_bytes()).map_err(|err| format!("HCLAkPub: {err}"))
        }) {
            Ok(ak) => ak,
            Err(err) => {
                reasons.push(err);
                vector.insert("instance-identity".into(), tier::CONTRAINDICATED);
                return finish(reasons, warnings, passed, vector, claims);
            }
        };
        passed.push("AK = var_data's HCLAkPub (bound by the SNP report)".into());
        // 3. The quote.
        let mut pcrs = PcrValues::new();
        for (i, v) in &e.pcrs {
            if let Err(err) = pcrs.insert(HashAlg::Sha256, *i, v.clone()) {
                reasons.push(format!("PCRs: {err}"));
            }
        }
        let signature = match TpmSignature::parse(&e.signature) {
            Ok(s) => s,
            Err(_) => TpmSignature::raw_rsassa(&e.signature, HashAlg::Sha256),
        };
        match ctx.report_data {
            Some(nonce) => {
                let a = appraise_quote(
                    &e.attest,
                    &signature,
                    &ak,
                    &QuotePolicy {
                        nonce,
                        pcrs: &pcrs,
                        allow_sha1: false,
                        qualified_signer: None,
                    },
                );
                vector.insert(
                    "hardware".into(),
                    vector
                        .get("hardware")
                        .copied()
                        .unwrap_or(tier::AFFIRMING)
                        .max(tier::of(a.valid())),
                );
                if a.valid() {
                    passed.push(format!("quote: {} checks under the HCL AK", a.checks.len()));
                } else {
                    reasons.extend(a.reasons().into_iter().map(|r| format!("quote: {r}")));
                }
            }
            None => {
                reasons.push("quote: no expected nonce (qualifying data) to compare".into());
            }
        }
        // 4. Reference PCRs.
        match ctx.manifest.map(|m| m.expected_pcrs()) {
            Some(Ok(expected)) => {
                let mut any = false;
                for (bank, values) in &expected {
                    for (i, want) in values {
                        any = true;
                        let ok = bank.name() == "sha256" && e.pcrs.get(i) == Some(want);
                        if ok {
                            passed.push(format!("PCR sha256:{i} = manifest"));
                        } else {
                            reasons.push(format!(
                                "PCR {}:{i}: expected {}, found {}",
                                bank.name(),
                                hex::encode(want),
                                e.pcrs
                                    .get(i)
                                    .filter(|_| bank.name() == "sha256")
                                    .map_or("none".into(), hex::encode)
                            ));
                        }
                    }
                }
                if !any {
                    warnings.push("the manifest pins no PCR".into());
                }
            }
            Some(Err(err)) => reasons.push(err.to_string()),
            None => warnings.push("no reference manifest: PCRs were not compared".into()),
        }
        finish(reasons, warnings, passed, vector, claims)
    }
}

fn finish(
    reasons: Vec<String>,
    warnings: Vec<String>,
    passed: Vec<String>,
    vector: BTreeMap<String, i8>,
    claims: BTreeMap<String, String>,
) -> Submod {
    crate::ear::Checks {
        failed: reasons,
        notes: warnings,
        passed,
        trust_vector: vector,
        claims,
    }
    .into_submod(true)
}
