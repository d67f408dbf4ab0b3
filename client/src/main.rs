//! `secllama-verify`: the remote user's verifier. `main` only parses arguments and dispatches; each
//! subcommand lives in `secllama_client::cli::<name>`. Exit codes ([`EXIT_CODES`]): 0 valid, 1
//! invalid, 2 usage or input error.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use clap::{CommandFactory, Parser, Subcommand};
use secllama_client::cli;
use std::process::ExitCode;

/// The exit codes, as `--help` and the man page state them.
const EXIT_CODES: &str = "Exit codes:
  0  everything checked verified (a proxy or generate run that ended normally)
  1  a check failed: the evidence, receipt, proof or log was read and does not verify (the report
     says which check and why)
  2  nothing could be checked: usage error, unreadable or malformed input, enclave unreachable";

#[derive(Parser)]
#[command(
    name = "secllama-verify",
    version,
    about = "Verify secllama evidence, receipts, COSE objects and TPM quotes",
    after_help = EXIT_CODES
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
    #[command(
        after_help = "Example:\n  $ secllama-verify completions bash > /etc/bash_completion.d/secllama-verify"
    )]
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Print the manual page (roff), one section per subcommand.
    #[command(
        after_help = "Example:\n  $ secllama-verify man > /usr/local/share/man/man1/secllama-verify.1"
    )]
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    use super::*;

    /// The `$ NAME …` lines of a command's after-help, as argument lists (a `> file` redirection
    /// and a leading `VAR=value` are shell, not arguments; quoted words are one argument).
    fn examples(help: &str) -> Vec<Vec<String>> {
        help.lines()
            .filter_map(|l| l.trim_start().strip_prefix("$ "))
            .map(|l| {
                let l = l.split(" > ").next().unwrap_or(l);
                let mut words = Vec::new();
                let mut quoted = false;
                let mut word = String::new();
                for c in l.chars() {
                    match c {
                        '"' => quoted = !quoted,
                        ' ' if !quoted => words.push(std::mem::take(&mut word)),
                        c => word.push(c),
                    }
                }
                words.push(word);
                words.retain(|w| !w.is_empty());
                while words.first().is_some_and(|w| w.contains('=')) {
                    words.remove(0);
                }
                words
            })
            .collect()
    }

    fn leaves(cmd: &clap::Command, path: &mut Vec<String>, out: &mut Vec<(String, String)>) {
        path.push(cmd.get_name().to_string());
        let subs: Vec<_> = cmd
            .get_subcommands()
            .filter(|c| c.get_name() != "help")
            .collect();
        if subs.is_empty() {
            let help = cmd
                .get_after_help()
                .map(ToString::to_string)
                .unwrap_or_default();
            out.push((path.join(" "), help));
        }
        for s in subs {
            leaves(s, path, out);
        }
        path.pop();
    }

    #[test]
    fn every_subcommand_has_an_example_that_parses() {
        let mut all = Vec::new();
        leaves(&Cli::command(), &mut Vec::new(), &mut all);
        assert!(all.len() > 5, "{all:?}");
        for (name, help) in &all {
            let ex = examples(help);
            assert!(!ex.is_empty(), "{name}: no example in its --help");
            for words in ex {
                assert_eq!(
                    words
                        .join(" ")
                        .split(' ')
                        .take(name.split(' ').count())
                        .collect::<Vec<_>>()
                        .join(" "),
                    *name,
                    "{name}: the example runs another subcommand: {words:?}"
                );
                if let Err(e) = Cli::command().try_get_matches_from(&words) {
                    panic!("{name}: the example {words:?} does not parse: {e}");
                }
            }
        }
    }

    #[test]
    fn the_help_states_the_exit_codes() {
        let help = Cli::command().render_long_help().to_string();
        for code in ["  0  ", "  1  ", "  2  "] {
            assert!(help.contains(code), "{help}");
        }
    }
}
