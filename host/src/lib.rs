//! # secllama-host — the `secllama` launcher, bridge and measurement tool
//!
//! Today it holds the `measure` subcommands (`secllama measure snp`, `secllama measure launch`),
//! which compute reference values from artifacts. The launcher (process mode: namespaces, seccomp,
//! Landlock, TPM-measured; VM mode: QEMU, OVMF, vTPM, vsock) and the bridge arrive with the enclave
//! issue. `main.rs` only dispatches; each subcommand lives in `cli/`.

pub mod bridge;
pub mod cli;
pub mod sandbox;
