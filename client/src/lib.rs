//! # secllama-client — `secllama-verify`, the remote user's tool
//!
//! Built on the appraisal library (`secllama_verifier`), which it only dispatches to: this crate
//! holds what talks to the world — the transport to the enclave (through the bridge or a unix
//! socket), attestation with a fresh nonce ([`attest`]), sealed requests and receipts
//! ([`sealed`]), the local proxy for unmodified Ollama and OpenAI clients ([`proxy`]), evidence
//! bundles, and the command-line interface ([`cli`], one file per subcommand).

pub mod attest;
pub mod cli;
pub mod log_audit;
pub mod proxy;
pub mod sealed;
pub mod transport;
