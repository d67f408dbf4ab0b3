//! `secllama measure libraries --config FILE`: the shared libraries the agent, the runner, every
//! ELF object in a measured tree and the TCTI module will load inside the enclave, as the `libraries = [...]` line for `[launch]`
//! (see [`crate::libraries`]).

use anyhow::Context;
use secllama_measurements::launch::Launch;
use std::path::{Path, PathBuf};

/// Arguments of `secllama measure libraries`.
#[derive(Debug, clap::Args)]
#[command(after_help = "Example:\n  $ secllama measure libraries --config enclave.toml")]
pub struct Args {
    /// The agent's config or a launch description (its [launch] agent and runner).
    #[arg(long)]
    pub config: PathBuf,
}

/// Runs the subcommand.
pub fn run(args: &Args) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(&args.config)
        .with_context(|| format!("reading {}", args.config.display()))?;
    let launch =
        Launch::from_embedding_toml(&text).with_context(|| format!("{}", args.config.display()))?;
    let base = args.config.parent().unwrap_or(Path::new("."));
    let libs = crate::libraries::for_launch(&launch, base)?;
    Ok(crate::libraries::toml_line(&libs))
}
