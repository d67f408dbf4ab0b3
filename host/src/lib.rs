//! # secllama-host — the `secllama` launcher, bridge and measurement tool
//!
//! | module | what |
//! |---|---|
//! | [`cli`] | one module per subcommand: `measure {snp,launch,libraries}`, `launch`, `bridge` |
//! | [`launch`] | process-mode launch: checks, TPM measurement, TPM relay, sandboxed agent |
//! | [`sandbox`] | namespaces, mounts, seccomp, Landlock, capabilities, rlimits |
//! | [`bridge`] | the untrusted TCP → enclave byte relay |
//! | [`libraries`] | the shared libraries an enclave loads (measured and mounted) |
//! | [`access`] | before measuring: the sandbox's user reaches every artifact; trees link nowhere host-written |
//!
//! VM mode (QEMU, OVMF, vTPM, vsock) arrives with its issue. `main.rs` only dispatches.

pub mod access;
pub mod bridge;
pub mod cli;
pub mod image;
pub mod launch;
pub mod libraries;
pub mod sandbox;
