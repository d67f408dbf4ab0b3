//! # secllama-host — the `secllama` launcher and bridge (not yet implemented)
//!
//! The host crate will measure an enclave image, launch it in process mode (namespaces, seccomp,
//! Landlock, TPM-measured) or VM mode (QEMU, OVMF, vTPM, vsock), and run the bridge that relays
//! ciphertext between remote users and the enclave with connection, time and size limits.
//!
//! It is empty until the enclave issue fills it; nothing here pretends to work.
