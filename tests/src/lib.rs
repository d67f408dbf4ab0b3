//! # secllama-tests — tests that cross crates or talk to peers we did not write
//!
//! The tests live in `tests/tests/`: interop with pycose and Python `cryptography` (from the venv
//! that `scripts/setup.sh` creates), and TPM tests over a private [`swtpm::Swtpm`] per test with
//! tpm2-tools as the peer.

pub mod bench;
pub mod enclave;
pub mod launch;
pub mod runner;
pub mod swtpm;
pub mod vm;

/// A binary of another workspace package in the same target folder as this test executable
/// (`target/<profile>/`); `scripts/test.sh` builds every binary (`cargo build --workspace --bins`)
/// before the tests. `secllama-verify` is `SECLLAMA_VERIFY_BIN` when set (scripts/test.sh sets it to
/// the statically linked build of scripts/build-verify.sh).
pub fn workspace_bin(name: &str) -> std::path::PathBuf {
    if name == "secllama-verify" {
        if let Some(p) = std::env::var_os("SECLLAMA_VERIFY_BIN") {
            return p.into();
        }
    }
    let exe = std::env::current_exe().unwrap_or_default();
    // target/<profile>/deps/<test> → target/<profile>/<name>
    let dir = exe
        .parent()
        .and_then(std::path::Path::parent)
        .map(std::path::Path::to_path_buf)
        .unwrap_or_default();
    dir.join(name)
}

/// The folder of the JavaScript test peers' `node_modules` (`SECLLAMA_JS`, else `.cache/js` at the
/// repository root), which `scripts/setup.sh` fills with the pinned peers (ollama-js); an error
/// naming the fix when it or `node` is missing (the tests fail on it: they never skip silently).
pub fn js_modules() -> Result<std::path::PathBuf, String> {
    let dir = std::env::var_os("SECLLAMA_JS")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../.cache/js"))
        .join("node_modules");
    if !dir.join("ollama/package.json").exists() {
        return Err(format!(
            "{} has no ollama-js: run scripts/setup.sh to install the JavaScript peers",
            dir.display()
        ));
    }
    match std::process::Command::new("node").arg("--version").output() {
        Ok(o) if o.status.success() => Ok(dir),
        _ => Err("node is missing: run scripts/setup.sh to install it".into()),
    }
}

/// The test venv's Python (`SECLLAMA_VENV`, else `.venv` at the repository root), which
/// `scripts/setup.sh` creates with the pinned peers (pycose, cryptography, cbor2, ollama); an
/// error naming the fix when it is missing (the tests fail on it: they never skip silently).
pub fn venv_python() -> Result<std::path::PathBuf, String> {
    let venv = std::env::var_os("SECLLAMA_VENV")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../.venv"));
    let py = venv.join("bin/python");
    if py.exists() {
        Ok(py)
    } else {
        Err(format!(
            "{} is missing: run scripts/setup.sh to create the test venv",
            py.display()
        ))
    }
}
