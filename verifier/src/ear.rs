//! The attestation result, an EAT Attestation Result (draft-fv-rats-ear): `eat_profile`, `iat`,
//! `ear.verifier-id` and one submod per evidence kind with its `ear.status`, the AR4SI
//! `ear.trustworthiness-vector` claims that apply, `ear.appraisal-policy-id` (the manifest's
//! digest) and the reason for every failure, plus the SHA-256 of the appraised attestation
//! document. `docs/attestation-result.md` documents every field.

use secllama_protocol::Sha256Digest;
use serde::Serialize;
use std::collections::BTreeMap;

/// The EAR profile.
pub const EAR_PROFILE: &str = "tag:github.com,2023:veraison/ear";

/// An EAR trust tier.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// The evidence was appraised and everything matched.
    Affirming,
    /// Everything checked matched, but something could not be established (e.g. no trust anchor).
    Warning,
    /// A check failed.
    Contraindicated,
    /// Nothing could be appraised.
    None,
}

impl Status {
    /// The EAR name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Affirming => "affirming",
            Self::Warning => "warning",
            Self::Contraindicated => "contraindicated",
            Self::None => "none",
        }
    }
}

/// The appraisal of one evidence kind.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Submod {
    /// The trust tier.
    #[serde(rename = "ear.status")]
    pub status: Status,
    /// Whether the manifest requires this submod to be affirming.
    #[serde(rename = "secllama.required")]
    pub required: bool,
    /// Why the status is not affirming (empty when affirming), or notes.
    pub reasons: Vec<String>,
    /// The checks that passed.
    #[serde(rename = "secllama.passed", skip_serializing_if = "Vec::is_empty")]
    pub passed: Vec<String>,
    /// AR4SI trustworthiness claims that apply (claim name → tier value: 2 affirming, 32
    /// warning, 96 contraindicated).
    #[serde(
        rename = "ear.trustworthiness-vector",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub trust_vector: BTreeMap<String, i8>,
    /// What the evidence says that a caller may bind to or display (hex or text): an SNP report's
    /// measurement and report data, a Nitro document's nonce, user data and public key, …
    #[serde(rename = "secllama.claims", skip_serializing_if = "BTreeMap::is_empty")]
    pub claims: BTreeMap<String, String>,
    /// The reference manifest appraised against: `sha256:<hex>` of its canonical TOML.
    #[serde(
        rename = "ear.appraisal-policy-id",
        skip_serializing_if = "String::is_empty"
    )]
    pub policy_id: String,
}

/// AR4SI tier values used in trustworthiness vectors.
pub mod tier {
    /// The claim holds (affirming).
    pub const AFFIRMING: i8 = 2;
    /// The claim could not be established (warning).
    pub const WARNING: i8 = 32;
    /// The claim is contradicted by the evidence (contraindicated).
    pub const CONTRAINDICATED: i8 = 96;

    /// [`AFFIRMING`] when `ok`, else [`CONTRAINDICATED`].
    pub fn of(ok: bool) -> i8 {
        if ok { AFFIRMING } else { CONTRAINDICATED }
    }
}

/// The outcome of a kind's checks, before it becomes a [`Submod`].
#[derive(Debug, Clone, Default)]
pub struct Checks {
    /// Failed checks: what was expected and what was found.
    pub failed: Vec<String>,
    /// What could not be compared (no manifest, no expected report data…).
    pub notes: Vec<String>,
    /// Checks that passed.
    pub passed: Vec<String>,
    /// AR4SI claims.
    pub trust_vector: BTreeMap<String, i8>,
    /// Claims exposed for binding.
    pub claims: BTreeMap<String, String>,
}

impl Checks {
    /// Raises claim `name` to contraindicated when `ok` is false (never lowers it).
    pub fn claim(&mut self, name: &str, ok: bool) {
        let t = self
            .trust_vector
            .entry(name.to_string())
            .or_insert(tier::AFFIRMING);
        *t = (*t).max(tier::of(ok));
    }

    /// The submod: contraindicated when a check failed, else warning when something was not
    /// compared, else affirming. Notes follow the failures in `reasons` either way, so a
    /// re-appraisal that starts failing does not look like it lost them.
    pub fn into_submod(self, required: bool) -> Submod {
        let status = if !self.failed.is_empty() {
            Status::Contraindicated
        } else if !self.notes.is_empty() {
            Status::Warning
        } else {
            Status::Affirming
        };
        let mut reasons = self.failed;
        reasons.extend(self.notes);
        Submod {
            status,
            required,
            reasons,
            passed: self.passed,
            trust_vector: self.trust_vector,
            claims: self.claims,
            policy_id: String::new(),
        }
    }
}

impl Submod {
    /// A contraindicated submod with `reasons`.
    pub fn failed(required: bool, reasons: Vec<String>) -> Self {
        Self {
            status: Status::Contraindicated,
            required,
            reasons,
            passed: Vec::new(),
            trust_vector: BTreeMap::new(),
            claims: BTreeMap::new(),
            policy_id: String::new(),
        }
    }
}

/// Who produced the result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VerifierId {
    /// The developer.
    pub developer: String,
    /// The build.
    pub build: String,
}

/// The attestation result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AttestationResult {
    /// [`EAR_PROFILE`].
    pub eat_profile: String,
    /// When the appraisal ran, seconds since the Unix epoch.
    pub iat: u64,
    /// Who appraised.
    #[serde(rename = "ear.verifier-id")]
    pub verifier_id: VerifierId,
    /// One appraisal per evidence kind: `tpm`, `enclave`, and `snp` when present or required.
    pub submods: BTreeMap<String, Submod>,
    /// SHA-256 of the appraised attestation document, hex (what sealed requests bind to).
    #[serde(rename = "secllama.attestation-digest")]
    pub attestation_digest: String,
}

impl AttestationResult {
    /// An empty result for the document with digest `digest`.
    pub fn new(digest: Sha256Digest) -> Self {
        let iat = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        Self {
            eat_profile: EAR_PROFILE.into(),
            iat,
            verifier_id: VerifierId {
                developer: "secllama".into(),
                build: format!("secllama-verify {}", env!("CARGO_PKG_VERSION")),
            },
            submods: BTreeMap::new(),
            attestation_digest: digest.to_hex(),
        }
    }

    /// Names the reference manifest every submod was appraised against
    /// (`ear.appraisal-policy-id`): `sha256:` of its canonical TOML.
    pub fn set_appraisal_policy(&mut self, manifest: &secllama_measurements::manifest::Manifest) {
        let id = manifest
            .to_toml()
            .map(|t| {
                format!(
                    "sha256:{}",
                    secllama_protocol::sha256(&[t.as_bytes()]).to_hex()
                )
            })
            .unwrap_or_default();
        for s in self.submods.values_mut() {
            s.policy_id = id.clone();
        }
    }

    /// Adds (or replaces) a submod.
    pub fn insert(&mut self, name: &str, submod: Submod) {
        self.submods.insert(name.to_string(), submod);
    }

    /// The status of submod `name`, if present.
    pub fn status(&self, name: &str) -> Option<Status> {
        self.submods.get(name).map(|s| s.status)
    }

    /// True only when every required submod is affirming, the `enclave` submod is present and
    /// affirming, and a hardware submod (`tpm` or `snp`) is affirming — without one, nothing binds
    /// the enclave's keys and digests to a TEE.
    pub fn affirming(&self) -> bool {
        let required_ok = self
            .submods
            .values()
            .all(|s| !s.required || s.status == Status::Affirming);
        let tee_ok = self.status("tpm") == Some(Status::Affirming)
            || self.status("snp") == Some(Status::Affirming);
        let enclave_ok = self.status("enclave") == Some(Status::Affirming);
        required_ok && tee_ok && enclave_ok
    }

    /// One line per submod and reason, for people, ending with the verdict of [`Self::affirming`].
    pub fn to_text(&self) -> String {
        let mut out = format!("attestation document sha256:{}\n", self.attestation_digest);
        out.push_str(&self.to_text_body());
        out.push_str(if self.affirming() {
            "result: affirming"
        } else {
            "result: NOT affirming"
        });
        out
    }

    /// The submods of [`Self::to_text`], without its first and last lines.
    pub fn to_text_body(&self) -> String {
        let mut out = String::new();
        for (name, s) in &self.submods {
            out.push_str(&format!(
                "{name}: {}{}\n",
                s.status.as_str(),
                if s.required { "" } else { " (not required)" }
            ));
            for p in &s.passed {
                out.push_str(&format!("  ok   {p}\n"));
            }
            if !s.trust_vector.is_empty() {
                let v: Vec<String> = s
                    .trust_vector
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect();
                out.push_str(&format!("  trustworthiness: {}\n", v.join(" ")));
            }
            for r in &s.reasons {
                let tag = if s.status == Status::Contraindicated {
                    "FAIL"
                } else {
                    "note"
                };
                out.push_str(&format!("  {tag} {r}\n"));
            }
        }
        out
    }
}
