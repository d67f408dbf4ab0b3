//! # secllama-verifier — the appraisal library
//!
//! Pure Rust: never links a TPM library (no libtss2, no tss-esapi), opens no socket and needs no
//! async runtime, so others can embed it. It appraises evidence against a reference manifest and
//! emits an EAT attestation result ([`ear`]), one folder per evidence kind behind one trait
//! ([`appraise::Appraiser`]):
//!
//! | module | evidence | specification |
//! |---|---|---|
//! | [`tpm`] | TPM 2.0 quotes, AK certificates, credential activation | TPM 2.0 Library Part 1–3 |
//! | [`snp`] | AMD SEV-SNP attestation reports, VCEK/VLEK → ASK/ASVK → ARK | AMD SEV-SNP ABI (56860), VCEK spec (57230) |
//! | [`nitro`] | AWS Nitro Enclaves attestation documents | AWS Nitro Enclaves attestation process, RFC 9052 |
//! | [`azure`] | Azure confidential-VM vTPM evidence (HCL report + quote) | Azure CVM guest attestation |
//! | [`enclave`] | secllama's COSE attestation document | DESIGN.md "Attestation document" |
//! | [`log`] | the receipt log file, offline: records, heads, counters, inclusion and consistency proofs | RFC 9162 §2.1, DESIGN.md "Receipts and log" |
//!
//! [`x509`] validates certificate paths for all of them; [`bundle`] stores an appraisal's inputs so
//! it can be replayed offline. The client (sealing, the proxy, the `secllama-verify` CLI) is the
//! `secllama-client` crate.

pub mod appraise;
pub mod azure;
pub mod bundle;
pub mod ear;
pub mod enclave;
pub mod log;
pub mod nitro;
pub mod snp;
pub mod tpm;
pub mod x509;

pub use appraise::{Appraiser, Collateral, Context, CredentialActivation};
pub use ear::{AttestationResult, Status, Submod};
