//! `secllama`: the operator's tool. `main` only parses arguments, sets up the logs
//! (`--log-format`, `RUST_LOG`: `secllama_enclave::diagnostics`) and dispatches to
//! `secllama_host::cli`. Exit codes ([`EXIT_CODES`]): 0 success, 1 failure (the error chain is
//! printed), 2 usage error.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use clap::{CommandFactory, Parser, Subcommand};
use secllama_host::cli;
use std::process::ExitCode;

/// The exit codes, as `--help` and the man page state them.
const EXIT_CODES: &str = "Exit codes:
  0  success
  1  failure: the error chain is printed on stderr (a launch that could not start or whose
     enclave stopped on its own, a status query that got no answer, …)
  2  usage error (unknown subcommand or flag, bad value)

Logs: stderr, filtered by RUST_LOG (default info; e.g. RUST_LOG=secllama::bridge=debug), as text
or JSON lines (--log-format json). No prompt, answer or key is ever logged.";

#[derive(Parser)]
#[command(
    name = "secllama",
    version,
    about = "Measure, launch and bridge secllama enclaves",
    after_help = EXIT_CODES
)]
struct Cli {
    /// Log lines on stderr as text or one JSON object per line (also handed to the enclave).
    #[arg(long, global = true, default_value = "text", value_parser = ["text", "json"])]
    log_format: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Compute reference values from artifacts.
    #[command(subcommand)]
    Measure(cli::measure::Measure),
    /// Build the VM guest image (kernel, initramfs, command line).
    #[command(subcommand)]
    Image(cli::image::Image),
    /// Measure a launch into the TPM and run the enclave in the process sandbox, with its bridge.
    Launch(cli::launch::Args),
    /// Relay TCP connections from remote users to the enclave's listener.
    Bridge(cli::bridge::Args),
    /// Show a running enclave: mode, digests, PCRs, runner, request counts, receipt log, TPM counter.
    Status(cli::status::Args),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    #[command(
        after_help = "Example:\n  $ secllama completions bash > /etc/bash_completion.d/secllama"
    )]
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Print the manual page (roff), one section per subcommand.
    #[command(after_help = "Example:\n  $ secllama man > /usr/local/share/man/man1/secllama.1")]
    Man,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let format = cli
        .log_format
        .parse()
        .and_then(secllama_enclave::diagnostics::init);
    if let Err(e) = format {
        eprintln!("secllama: error: {e}");
        return ExitCode::from(2);
    }
    let result = match &cli.command {
        Command::Measure(m) => cli::measure::run(m),
        Command::Image(i) => cli::image::run(i),
        Command::Launch(a) => cli::launch::run(a),
        Command::Bridge(a) => cli::bridge::run(a),
        Command::Status(a) => cli::status::run(a),
        Command::Completions { shell } => Ok(cli::completions::completions(*shell, Cli::command())),
        Command::Man => cli::completions::man(Cli::command()),
    };
    match result {
        Ok(out) => {
            // Not print!: a closed pipe (`| head`) must end the output, not panic.
            use std::io::Write;
            let mut stdout = std::io::stdout().lock();
            let _ = stdout
                .write_all(out.as_bytes())
                .and_then(|()| stdout.flush());
            ExitCode::SUCCESS
        }
        Err(e) => {
            use secllama_enclave::diagnostics::{LogFormat, format};
            if format() == LogFormat::Json {
                tracing::error!(target: "secllama", error = %format!("{e:#}"), "failed");
            } else {
                eprintln!("secllama: error: {e:#}");
            }
            ExitCode::from(1)
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
