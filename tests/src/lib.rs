//! # secllama-tests — tests that cross crates or talk to peers we did not write
//!
//! The tests live in `tests/tests/`: interop with pycose and Python `cryptography` (from the venv
//! that `scripts/setup.sh` creates), and TPM tests over a private [`swtpm::Swtpm`] per test with
//! tpm2-tools as the peer.

pub mod enclave;
pub mod runner;
pub mod swtpm;
