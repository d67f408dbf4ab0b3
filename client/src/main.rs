//! `secllama-verify`: the remote user's verifier. `main` only parses arguments and dispatches; each
//! subcommand lives in `secllama_client::cli::<name>`. Exit codes: 0 valid, 1 invalid, 2 usage or
//! input error.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use clap::{CommandFactory, Parser, Subcommand};
use secllama_client::cli;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "secllama-verify",
    version,
    about = "Verify secllama evidence, receipts, COSE objects and TPM quotes"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Check a COSE_Sign1 against a public key (PEM SPKI, COSE_Key or JWK).
    Cose(cli::cose::Args),
    /// Check a TPM2_Quote: AK, TPMS_ATTEST, TPMT_SIGNATURE, nonce and PCR values (tpm2_checkquote inputs).
    Quote(cli::quote::Args),
    /// Parse a TCG event log and replay it to PCR values.
    Eventlog(cli::eventlog::Args),
    /// Attest an enclave (fresh nonce) against a reference manifest; prints an EAR-style result.
    Attest(cli::attest::Args),
    /// Attest, then send one sealed generate/chat request and verify its receipt.
    Generate(cli::generate::Args),
    /// Serve Ollama's API locally, forwarding every request sealed to the attested enclave.
    Proxy(cli::proxy::Args),
    /// Verify stored receipts offline against a saved attestation document.
    Receipt(cli::receipt::Args),
    /// Appraise an AMD SEV-SNP attestation report (VCEK/VLEK → ASK/ASVK → AMD ARK, TCB, policy).
    Snp(cli::snp::Args),
    /// Appraise an AWS Nitro Enclaves attestation document (COSE ES384, chain to the AWS root, PCRs).
    Nitro(cli::nitro::Args),
    /// Appraise Azure confidential-VM vTPM evidence (HCL report → SNP report → AK → quote).
    Azure(cli::azure::Args),
    /// Re-appraise an evidence bundle offline (same verdict, or exactly what changed).
    Bundle(cli::bundle::Args),
    /// Verify a receipt log file offline: records, heads, counters; inclusion and consistency proofs.
    Log(cli::log::Args),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Print the manual page (roff), one section per subcommand.
    Man,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match &cli.command {
        Command::Cose(args) => cli::cose::run(args),
        Command::Quote(args) => cli::quote::run(args),
        Command::Eventlog(args) => cli::eventlog::run(args),
        Command::Attest(args) => cli::attest::run(args),
        Command::Generate(args) => cli::generate::run(args),
        Command::Proxy(args) => cli::proxy::run(args),
        Command::Receipt(args) => cli::receipt::run(args),
        Command::Snp(args) => cli::snp::run(args),
        Command::Nitro(args) => cli::nitro::run(args),
        Command::Azure(args) => cli::azure::run(args),
        Command::Bundle(args) => cli::bundle::run(args),
        Command::Log(args) => cli::log::run(args),
        Command::Completions { shell } => Ok(cli::Outcome {
            report: cli::completions::completions(*shell, Cli::command()),
            valid: true,
        }),
        Command::Man => cli::completions::man(Cli::command()).map(|report| cli::Outcome {
            report,
            valid: true,
        }),
    };
    match result {
        Ok(outcome) => {
            if !outcome.report.is_empty() {
                // Not println!: a closed pipe (`| head`) must end the output, not panic.
                use std::io::Write;
                let mut out = std::io::stdout().lock();
                if writeln!(out, "{}", outcome.report)
                    .and_then(|()| out.flush())
                    .is_err()
                {
                    return ExitCode::from(if outcome.valid { 0 } else { 1 });
                }
            }
            if outcome.valid {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Err(e) => {
            eprintln!("secllama-verify: error: {e:#}");
            ExitCode::from(2)
        }
    }
}
