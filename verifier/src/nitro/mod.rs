//! AWS Nitro Enclaves attestation documents ("Verifying the root of trust", AWS Nitro Enclaves
//! User Guide; RFC 9052), appraised by [`Document`], the [`Appraiser`] of submod `nitro`.
//!
//! Checks, failing closed, each named in the submod: the document parses ([`document`]); the
//! protected header says ES384; the leaf `certificate` chains through `cabundle` to the AWS Nitro
//! Enclaves Root G1 (built in and pinned by its SHA-256 [`ROOT_G1_SHA256`], or the collateral's
//! roots), every certificate valid at the appraisal time — leaf certificates live about three
//! hours, so an old document is appraised `--at` a time inside its window; `cabundle[0]` is that
//! root; the COSE signature verifies under the leaf's P-384 key; the nonce equals the context's
//! report data when given; and against the manifest's `[nitro]`: every pinned PCR equals the
//! document's, and a debug-mode enclave (PCR0–2 zero) is refused unless allowed. `nonce`,
//! `user_data`, `public_key`, `module_id` and `timestamp` are exposed as claims for binding.

pub mod document;

use crate::appraise::{Appraiser, Context};
use crate::ear::{Submod, tier};
use crate::x509::{self, PathPolicy};
use document::{ES384, NitroDocument};
use std::collections::BTreeMap;

/// The AWS Nitro Enclaves Root G1 (CN=aws.nitro-enclaves, 2019-10-28 to 2049-10-28), PEM.
pub const ROOT_G1_PEM: &[u8] = include_bytes!("aws_nitro_enclaves_root_g1.pem");
/// SHA-256 of the Root G1's DER, as AWS publishes it.
pub const ROOT_G1_SHA256: &str = "641a0321a3e244efe456463195d606317ed7cdcc3c1756e09893f3c68f79bb5b";

/// The built-in root, DER, only if its digest is the pinned one.
pub fn root_g1() -> Result<Vec<u8>, String> {
    let der = x509::load_certificates(ROOT_G1_PEM)?
        .into_iter()
        .next()
        .ok_or("built-in Nitro root: no certificate")?;
    let digest = hex::encode(secllama_protocol::sha256(&[&der]).0);
    if digest != ROOT_G1_SHA256 {
        return Err(format!(
            "built-in Nitro root: expected SHA-256 {ROOT_G1_SHA256}, found {digest}"
        ));
    }
    Ok(der)
}

/// The appraiser of Nitro attestation documents (submod `nitro`); report data = the expected
/// `nonce`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Document;

impl Appraiser for Document {
    const KIND: &'static str = "nitro";
    type Evidence = [u8];

    fn appraise(&self, evidence: &[u8], ctx: &Context<'_>) -> Submod {
        let mut reasons = Vec::new();
        let mut passed = Vec::new();
        let mut warnings = Vec::new();
        let mut vector = BTreeMap::new();
        let mut claims = BTreeMap::new();
        let claim = |v: &mut BTreeMap<String, i8>, name: &str, ok: bool| {
            let t = v.entry(name.to_string()).or_insert(tier::AFFIRMING);
            *t = (*t).max(tier::of(ok));
        };
        let doc = match NitroDocument::parse(evidence) {
            Ok(d) => d,
            Err(e) => {
                return Submod::failed(true, vec![e]);
            }
        };
        claims.insert("module_id".into(), doc.module_id.clone());
        claims.insert("timestamp_ms".into(), doc.timestamp_ms.to_string());
        for (k, v) in [
            ("nonce", &doc.nonce),
            ("user_data", &doc.user_data),
            ("public_key", &doc.public_key),
        ] {
            if let Some(v) = v {
                claims.insert(k.into(), hex::encode(v));
            }
        }
        for (i, v) in &doc.pcrs {
            claims.insert(format!("pcr{i}"), hex::encode(v));
        }
        claim(&mut vector, "hardware", doc.problems.is_empty());
        reasons.extend(doc.problems.iter().cloned());
        if doc.alg == Some(ES384) {
            passed.push("protected header alg ES384".to_string());
        } else {
            claim(&mut vector, "hardware", false);
            reasons.push(format!(
                "COSE alg: expected ES384 (-35), found {:?}",
                doc.alg
            ));
        }
        // The chain.
        let roots = if ctx.collateral.roots.is_empty() {
            match root_g1() {
                Ok(r) => vec![r],
                Err(e) => return Submod::failed(true, vec![e]),
            }
        } else {
            ctx.collateral.roots.clone()
        };
        let mut intermediates = doc.cabundle.clone();
        intermediates.extend(ctx.collateral.certificates.iter().cloned());
        let path = x509::verify_path(
            &doc.certificate,
            "leaf",
            &intermediates,
            &roots,
            &PathPolicy {
                at: ctx.at,
                known_critical: &[],
                crls: &ctx.collateral.crls,
            },
        );
        claim(&mut vector, "hardware", path.valid());
        if path.valid() {
            passed.push(format!("chain: {}", path.path.join(" <- ")));
        } else {
            reasons.extend(path.reasons.iter().map(|r| format!("chain: {r}")));
        }
        match doc.cabundle.first() {
            Some(first) if roots.iter().any(|r| r == first) => {
                passed.push("cabundle[0] is the trusted root".into())
            }
            Some(_) => {
                claim(&mut vector, "hardware", false);
                reasons.push(
                    "cabundle[0]: expected the trusted root, found another certificate".into(),
                );
            }
            None => {
                claim(&mut vector, "hardware", false);
                reasons.push("cabundle: expected the root first, found no certificates".into());
            }
        }
        // The COSE signature under the leaf key (checked even when the chain fails, to say so).
        let sig = x509::Cert::parse(&doc.certificate, "leaf").and_then(|leaf| {
            let tbs = doc.to_be_signed()?;
            let point = leaf
                .spki()
                .subject_public_key
                .as_bytes()
                .ok_or("leaf key is not a whole number of bytes")?;
            aws_lc_rs::signature::UnparsedPublicKey::new(
                &aws_lc_rs::signature::ECDSA_P384_SHA384_FIXED,
                point,
            )
            .verify(&tbs, &doc.signature)
            .map_err(|_| "does not verify under the leaf certificate's P-384 key".to_string())
        });
        claim(&mut vector, "hardware", sig.is_ok());
        match sig {
            Ok(()) => passed.push("COSE_Sign1 signature (ES384) under the leaf".into()),
            Err(e) => reasons.push(format!("COSE signature: {e}")),
        }
        // Freshness.
        match (ctx.report_data, &doc.nonce) {
            (Some(want), Some(got)) if want == &got[..] => {
                claim(&mut vector, "instance-identity", true);
                passed.push("nonce = expected report data".into());
            }
            (Some(want), got) => {
                claim(&mut vector, "instance-identity", false);
                reasons.push(format!(
                    "nonce: expected {}, found {}",
                    hex::encode(want),
                    got.as_ref().map_or("none".into(), hex::encode)
                ));
            }
            (None, _) => warnings.push("no expected nonce: freshness was not checked".to_string()),
        }
        // Reference values.
        match ctx.manifest.and_then(|m| m.nitro.as_ref()) {
            Some(r) => {
                if doc.debug_mode() && !r.allow_debug {
                    claim(&mut vector, "configuration", false);
                    reasons.push(
                        "debug mode: PCR0, PCR1 and PCR2 are all zero (a debug enclave); the manifest does not allow debug (nitro.allow_debug)".into(),
                    );
                }
                if r.pcrs.is_empty() {
                    warnings.push("the manifest's [nitro] pins no PCR".into());
                }
                for (i, want) in &r.pcrs {
                    let found = i
                        .parse::<u8>()
                        .ok()
                        .and_then(|i| doc.pcrs.get(&i))
                        .map(hex::encode);
                    let ok = found.as_deref() == Some(&want.to_ascii_lowercase()[..]);
                    claim(&mut vector, "executables", ok);
                    if ok {
                        passed.push(format!("PCR{i} = manifest"));
                    } else {
                        reasons.push(format!(
                            "PCR{i}: expected {}, found {}",
                            want.to_ascii_lowercase(),
                            found.unwrap_or_else(|| "none".into())
                        ));
                    }
                }
            }
            None => warnings
                .push("no [nitro] reference values: PCRs and debug mode were not compared".into()),
        }
        crate::ear::Checks {
            failed: reasons,
            notes: warnings,
            passed,
            trust_vector: vector,
            claims,
        }
        .into_submod(true)
    }
}
