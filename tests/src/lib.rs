//! # secllama-tests — tests that cross crates or talk to peers we did not write
//!
//! The tests live in `tests/tests/`: interop with pycose and Python `cryptography` (from the venv
//! that `scripts/setup.sh` creates), and TPM tests over a private [`swtpm::Swtpm`] per test with
//! tpm2-tools as the peer.

pub mod enclave;
pub mod runner;
pub mod swtpm;

/// A binary of another workspace package in the same target folder as this test executable
/// (`target/<profile>/`); `scripts/test.sh` builds every binary (`cargo build --workspace --bins`)
/// before the tests.
pub fn workspace_bin(name: &str) -> std::path::PathBuf {
    let exe = std::env::current_exe().unwrap_or_default();
    // target/<profile>/deps/<test> → target/<profile>/<name>
    let dir = exe
        .parent()
        .and_then(std::path::Path::parent)
        .map(std::path::Path::to_path_buf)
        .unwrap_or_default();
    dir.join(name)
}
