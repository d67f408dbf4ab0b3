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
//! | [`log`] | the receipt log: its file (torn-tail recovery, group-committed durability), RFC 9162 tree, signed heads, identity sealed to the TPM, NV counter |
//! | [`config`] | the agent's TOML configuration |
//! | [`diagnostics`] | the agent's and the launcher's logs (tracing, `RUST_LOG`, text or JSON): never a prompt, answer or key |
//! | [`agent`] | keys, PCR 23, policy, digests, attestation documents with fresh quotes |
//! | [`status`] | `GET /status`: the operator's view (counts, digests, PCRs, log, TPM counter; never content) |
//! | [`service`] | the enclave API over HTTP/1.1 on a unix listener: attestation, sealed generate/chat/tags streamed to and from the runner, receipts |
//! | [`runner`] | runner supervision: start, wait until the API answers, bounded restarts (never after a measured artifact changed) |
//! | [`handoff`] | the descriptors `secllama launch` hands the agent instead of writable folders |
//! | [`endpoint`] | where the agent reaches the runner: loopback TCP, or a socket beneath the runner sandbox's directory |
//! | [`runner_init`] | `secllama-enclave runner-init`: pid 1 of the runner's own sandbox — supervises the runner and relays the agent's socket to its loopback port |
//! | [`integrity`] | run-time watch over the measured artifacts: any change stops attestation, receipts and runner restarts |
//!

pub mod agent;
pub mod config;
pub mod diagnostics;
pub mod endpoint;
pub mod guest;
pub mod handoff;
pub mod integrity;
pub mod listener;
pub mod log;
pub mod policy;
pub mod replay;
pub mod runner;
pub mod runner_init;
pub mod service;
pub mod status;
