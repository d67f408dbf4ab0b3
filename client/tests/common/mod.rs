//! What every `secllama-verify` CLI test shares: the binary under test.

/// The `secllama-verify` to run: `SECLLAMA_VERIFY_BIN` when set (scripts/test.sh sets it to the
/// statically linked build users run, from scripts/build-verify.sh), else cargo's build of it.
pub fn verify_bin() -> std::path::PathBuf {
    std::env::var_os("SECLLAMA_VERIFY_BIN")
        .map_or_else(|| env!("CARGO_BIN_EXE_secllama-verify").into(), Into::into)
}
