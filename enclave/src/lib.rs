//! # secllama-enclave — the agent inside the enclave
//!
//! The agent generates its encryption (RSA-3072, opened through aws-lc-rs) and signing (ES256) keys
//! in memory, reads its measured policy and config, supervises the runner over loopback, and serves
//! the enclave API (attestation, sealed Ollama requests, receipts) on its unix or vsock listener.
//! Wire formats come from `secllama-protocol`.
//!
//! Built so far (each complete and tested on its own):
//!
//! | module | what |
//! |---|---|
//! | [`policy`] | the measured evaluation policy: dataset, models, limits; exact-match decisions with the refusing rule named |
//! | [`replay`] | request-id replay window and the bounded, expiring session cache of content keys |
//! | [`receipts`] | the append-only, hash-chained receipt log file |
//!
//! The HTTP service, runner supervision and attestation endpoint arrive with the rest of the
//! enclave issue; nothing here pretends to serve requests yet.

pub mod policy;
pub mod receipts;
pub mod replay;
