//! # secllama-enclave — the agent inside the enclave (not yet implemented)
//!
//! The agent will generate its encryption (RSA-3072, opened through aws-lc-rs) and signing (ES256)
//! keys in memory, read its measured policy and config, supervise the runner over loopback, and serve
//! the enclave API (attestation, sealed Ollama requests, receipts, log) on its vsock or unix listener.
//! Wire formats come from `secllama-protocol`.
//!
//! It is empty until the enclave issue fills it; nothing here pretends to work.
