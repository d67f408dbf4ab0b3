//! The one appraisal trait every evidence kind implements ([`Appraiser`]), and what an appraisal
//! is given besides the evidence bytes ([`Context`], [`Collateral`]).
//!
//! An appraiser turns evidence (bytes, or their parts), the report data the evidence must carry, the reference
//! manifest, the collateral (certificates, CRLs) and the time of appraisal into one EAR submod
//! ([`crate::ear::Submod`]) listing every check that passed and the reason for every one that did
//! not. Appraisers never do I/O: everything they use is in their arguments, so an appraisal can be
//! replayed offline, years later, from an evidence bundle ([`crate::bundle`]). Adding an evidence
//! kind is adding a folder with one type implementing [`Appraiser`].

use crate::ear::Submod;
use secllama_measurements::manifest::Manifest;
use std::time::SystemTime;

/// Certificates and revocation lists an appraisal may use besides the evidence itself.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Collateral {
    /// Certificates (DER) offered to build chains: an SNP VCEK/VLEK and its ASK/ASVK, an AK
    /// certificate and its intermediates. Untrusted: every one must chain to a trust anchor.
    pub certificates: Vec<Vec<u8>>,
    /// Certificate revocation lists (DER), checked against every certificate of a chain whose
    /// issuer signed them.
    pub crls: Vec<Vec<u8>>,
    /// Trust anchors (DER) replacing the built-in roots of a kind, when not empty.
    pub roots: Vec<Vec<u8>>,
    /// A credential activation the caller performed with the enclave (TPM 2.0 Part 1 §24): not
    /// evidence anyone can re-check later (the caller chose the secret), so it is never stored in
    /// a bundle and an offline re-appraisal cannot rely on it.
    pub credential_activation: Option<CredentialActivation>,
}

/// The outcome of a credential activation: the caller made a credential for the EK of
/// `ek_certificate` bound to the Name of `ak_public`, and the enclave's TPM returned its secret
/// (`Ok`) or did not (`Err`, why).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CredentialActivation {
    /// The AK's TPM2B_PUBLIC or TPMT_PUBLIC, as the document carries it.
    pub ak_public: Vec<u8>,
    /// The EK certificate (DER) whose key the credential was made for.
    pub ek_certificate: Vec<u8>,
    /// Whether the TPM released the secret.
    pub outcome: Result<(), String>,
}

/// Everything an appraisal uses besides the evidence bytes.
#[derive(Debug, Clone, Copy)]
pub struct Context<'a> {
    /// The data the evidence must carry (the DESIGN.md binding for TPM quotes and SNP reports, the
    /// nonce for an enclave document), or `None` when the caller has none to compare.
    pub report_data: Option<&'a [u8]>,
    /// The reference manifest (each kind reads its own section), or `None`: then the evidence is
    /// checked for authenticity only and the submod is at most `warning`.
    pub manifest: Option<&'a Manifest>,
    /// Certificates, CRLs and roots.
    pub collateral: &'a Collateral,
    /// The time certificates must be valid at.
    pub at: SystemTime,
}

/// An evidence kind: one folder of this crate (`tpm`, `snp`, `nitro`, `enclave`, `azure`).
pub trait Appraiser {
    /// The submod name in the attestation result (`"snp"`, `"nitro"`, …).
    const KIND: &'static str;

    /// The evidence: the kind's wire format (`[u8]`), or its parts when the kind has several.
    type Evidence: ?Sized;

    /// Appraises `evidence` in `ctx`; never fails: unusable evidence is a contraindicated submod
    /// saying what was expected and what was found.
    fn appraise(&self, evidence: &Self::Evidence, ctx: &Context<'_>) -> Submod;
}
