//! `secllama measure`: reference values computed from artifacts.

pub mod launch;
pub mod libraries;
pub mod snp;
pub mod vm;

/// `secllama measure <what>`.
#[derive(Debug, clap::Subcommand)]
pub enum Measure {
    /// SEV-SNP launch digest of a VM (same flags and meanings as `sev-snp-measure --mode snp`).
    Snp(snp::Args),
    /// Predicted TPM events and PCRs of a launch, and optionally a reference manifest.
    Launch(launch::Args),
    /// Reference PCRs (4, 9; firmware from a golden log) and manifest of a VM-mode launch.
    Vm(vm::Args),
    /// The shared libraries a launch loads, as the `libraries = [...]` line for [launch].
    Libraries(libraries::Args),
}

/// Runs a `measure` subcommand and returns what to print.
pub fn run(m: &Measure) -> anyhow::Result<String> {
    match m {
        Measure::Snp(a) => snp::run(a),
        Measure::Launch(a) => launch::run(a),
        Measure::Libraries(a) => libraries::run(a),
        Measure::Vm(a) => vm::run(a),
    }
}
