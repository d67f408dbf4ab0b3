//! `secllama-init`: PID 1 of the VM guest ([`secllama_enclave::guest`], docs/vm.md). Prepares the
//! guest, starts the runner and the agent, and powers the VM off when either ends or a stage fails.
#![allow(clippy::print_stderr)]

fn main() {
    if std::process::id() != 1 {
        eprintln!("secllama-init: expected to run as PID 1 of a secllama VM guest; refusing");
        std::process::exit(2);
    }
    if let Err(e) = secllama_enclave::guest::run() {
        eprintln!("secllama-init: error: {e:#}");
    }
    secllama_enclave::guest::power_off()
}
