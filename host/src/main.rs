//! `secllama`: the operator's tool. `main` only parses arguments and dispatches to
//! `secllama_host::cli`. Exit codes: 0 success, 1 failure (the error chain is printed).
#![allow(clippy::print_stdout, clippy::print_stderr)]

use clap::{CommandFactory, Parser, Subcommand};
use secllama_host::cli;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "secllama",
    version,
    about = "Measure, launch and bridge secllama enclaves"
)]
struct Cli {
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
            eprintln!("secllama: error: {e:#}");
            ExitCode::from(1)
        }
    }
}
