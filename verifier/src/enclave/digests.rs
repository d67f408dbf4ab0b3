//! The `enclave` submod: each of the five component digests the signed document reports (agent,
//! runner, model, policy, config) must equal the manifest's, and the measured folders (`trees`)
//! must be exactly the manifest's, by name and digest; a mismatch names the component and both
//! values. Trustworthiness claims: `executables` (agent, runner, trees), `file-system` (model),
//! `configuration` (policy, config).

use crate::ear::{Status, Submod, tier};
use secllama_measurements::manifest::{self, Manifest};
use secllama_protocol::attestation::{EnclaveDigests, VerifiedDocument};

/// Appraises the document's enclave digests and isolation mode against the manifest.
pub fn appraise(doc: &VerifiedDocument, manifest: &Manifest) -> Submod {
    let mut s = appraise_digests(&doc.payload.measurements, &manifest.enclave);
    let found = doc.payload.enclave.mode.as_str();
    let expected = manifest.isolation.as_str();
    if found == expected {
        s.passed.push(format!("isolation: {found}"));
    } else {
        s.reasons.push(format!(
            "isolation: expected {expected} (the manifest's `isolation`), found {found}"
        ));
        s.status = Status::Contraindicated;
        s.trust_vector
            .insert("configuration".into(), tier::CONTRAINDICATED);
    }
    s
}

/// Appraises reported enclave digests `d` against the manifest's `m`.
fn appraise_digests(d: &EnclaveDigests, m: &manifest::EnclaveDigests) -> Submod {
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
    // Measured folders: the same set of names, each with the manifest's digest. They are
    // executables' code (an interpreter's library, a runner's scripts).
    let names: std::collections::BTreeSet<&String> = d.trees.keys().chain(m.trees.keys()).collect();
    for name in names {
        let found = d.trees.get(name).map(|t| t.to_hex());
        let expected = m.trees.get(name).map(|t| t.to_ascii_lowercase());
        let ok = found.is_some() && found == expected;
        let t = vector
            .entry("executables".to_string())
            .or_insert(tier::AFFIRMING);
        *t = (*t).max(tier::of(ok));
        match (found, expected) {
            (Some(f), _) if ok => passed.push(format!("tree {name}: {f}")),
            (Some(f), Some(e)) => reasons.push(format!("tree {name}: expected {e}, found {f}")),
            (Some(f), None) => reasons.push(format!(
                "tree {name}: the enclave runs a measured folder the manifest does not name \
                 (found {f})"
            )),
            (None, Some(e)) => reasons.push(format!(
                "tree {name}: expected {e}, found no such folder in the enclave's claims"
            )),
            (None, None) => {}
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
        claims: Default::default(),
        policy_id: String::new(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use secllama_protocol::Sha256Digest;

    fn reported(trees: &[(&str, u8)]) -> EnclaveDigests {
        EnclaveDigests {
            agent: Sha256Digest([1; 32]),
            runner: Sha256Digest([2; 32]),
            model: Sha256Digest([3; 32]),
            policy: Sha256Digest([4; 32]),
            config: Sha256Digest([5; 32]),
            trees: trees
                .iter()
                .map(|(n, b)| (n.to_string(), Sha256Digest([*b; 32])))
                .collect(),
        }
    }

    fn expected(trees: &[(&str, u8)]) -> manifest::EnclaveDigests {
        let h = |b: u8| hex::encode([b; 32]);
        manifest::EnclaveDigests {
            agent: h(1),
            runner: h(2),
            model: h(3),
            policy: h(4),
            config: h(5),
            trees: trees.iter().map(|(n, b)| (n.to_string(), h(*b))).collect(),
        }
    }

    #[test]
    fn trees_must_be_exactly_the_manifests() {
        let ok = appraise_digests(&reported(&[("/a", 7)]), &expected(&[("/a", 7)]));
        assert_eq!(ok.status, Status::Affirming, "{:?}", ok.reasons);
        assert!(ok.passed.iter().any(|p| p.starts_with("tree /a: ")));
        for (d, m, says) in [
            (vec![("/a", 7)], vec![("/a", 8)], "tree /a: expected 0808"),
            (
                vec![("/a", 7), ("/b", 9)],
                vec![("/a", 7)],
                "tree /b: the enclave runs a measured folder the manifest does not name",
            ),
            (vec![], vec![("/a", 7)], "tree /a: expected 0707"),
        ] {
            let s = appraise_digests(&reported(&d), &expected(&m));
            assert_eq!(s.status, Status::Contraindicated);
            assert!(
                s.reasons.iter().any(|r| r.starts_with(says)),
                "{:?}",
                s.reasons
            );
            assert_eq!(
                s.trust_vector.get("executables"),
                Some(&tier::CONTRAINDICATED)
            );
        }
    }
}
