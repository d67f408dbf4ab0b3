//! # secllama-verifier — the remote user's verifier
//!
//! Pure Rust: never links a TPM library (no libtss2, no tss-esapi) and needs no network to verify.
//! This crate appraises TPM quotes ([`tpm`]) and COSE attestation documents, and will appraise event
//! logs and SEV-SNP reports against a reference manifest. Its inputs are bytes the user was handed:
//! marshalled TPM structures, certificates, keys and COSE objects. It also holds the
//! `secllama-verify` command-line interface ([`cli`]).

pub mod cli;
pub mod client;
pub mod proxy;
pub mod tpm;
