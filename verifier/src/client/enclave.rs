//! The `enclave` submod: each of the five component digests the signed document reports (agent,
//! runner, model, policy, config) must equal the manifest's; a mismatch names the component and both
//! values. Trustworthiness claims: `executables` (agent, runner), `file-system` (model),
//! `configuration` (policy, config).

use super::result::{Status, Submod, tier};
use secllama_measurements::manifest::Manifest;
use secllama_protocol::attestation::VerifiedDocument;

/// Appraises the document's enclave digests against the manifest.
pub fn appraise(doc: &VerifiedDocument, manifest: &Manifest) -> Submod {
    let d = &doc.payload.measurements;
    let m = &manifest.enclave;
    let mut reasons = Vec::new();
    let mut passed = Vec::new();
    let mut vector = std::collections::BTreeMap::new();
    for (name, found, expected) in [
        ("agent", &d.agent, &m.agent),
        ("runner", &d.runner, &m.runner),
        ("model", &d.model, &m.model),
        ("policy", &d.policy, &m.policy),
        ("config", &d.config, &m.config),
    ] {
        let found = found.to_hex();
        let ok = found.eq_ignore_ascii_case(expected);
        // agent and runner are what executes, the model is the data it loads, policy and config
        // configure it.
        let claim = match name {
            "agent" | "runner" => "executables",
            "model" => "file-system",
            _ => "configuration",
        };
        let t = vector.entry(claim.to_string()).or_insert(tier::AFFIRMING);
        *t = (*t).max(tier::of(ok));
        if ok {
            passed.push(format!("{name}: {found}"));
        } else {
            reasons.push(format!(
                "{name}: expected {}, found {found}",
                expected.to_ascii_lowercase()
            ));
        }
    }
    Submod {
        status: if reasons.is_empty() {
            Status::Affirming
        } else {
            Status::Contraindicated
        },
        required: true,
        reasons,
        passed,
        trust_vector: vector,
        policy_id: String::new(),
    }
}
