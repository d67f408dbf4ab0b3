//! # secllama-measurements — reference values (not yet implemented)
//!
//! This crate will parse and replay TCG event logs (legacy SHA-1 and crypto-agile), predict the PCRs
//! of a launch from its artifacts, compute SEV-SNP launch digests, and read and write the reference
//! manifest that `secllama measure` produces and `secllama-verify` consumes.
//!
//! It is pure Rust and must never link a TPM library. It is empty until the measurements issue fills it.
