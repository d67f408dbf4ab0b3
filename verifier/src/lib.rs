//! # secllama-verifier — the remote user's verifier
//!
//! Pure Rust: never links a TPM library and needs no network to verify. This crate will appraise TPM
//! quotes, event logs, SEV-SNP reports and COSE attestation documents against a reference manifest;
//! today it holds the `secllama-verify` command-line interface and its first subcommand, `cose`.

pub mod cli;
