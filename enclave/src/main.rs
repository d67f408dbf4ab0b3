//! `secllama-enclave --config FILE`: the agent. Starts (keys, PCR 23, policy, digests), then serves
//! the enclave API on its listener until stopped. Prints `listening on PATH` once ready.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use anyhow::Context;
use secllama_enclave::agent::Agent;
use secllama_enclave::config::Config;
use std::process::ExitCode;
use std::sync::Arc;

fn run() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let config = match args.as_slice() {
        [_, flag, path] if flag == "--config" => std::path::PathBuf::from(path),
        _ => anyhow::bail!("usage: secllama-enclave --config FILE"),
    };
    let (config, base) = Config::load(&config)?;
    let agent = Arc::new(Agent::start(&config, &base)?);
    let path = config.listener_path();
    let _ = std::fs::remove_file(&path);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let listener = tokio::net::UnixListener::bind(&path)
            .with_context(|| format!("binding {}", path.display()))?;
        let shown = path.display().to_string();
        let env = config.runner_env.clone().into_iter().collect();
        secllama_enclave::service::run(
            agent,
            config.runner_command.clone(),
            env,
            std::time::Duration::from_secs(config.runner_ready_secs),
            listener,
            move || {
                println!("listening on {shown}");
            },
        )
        .await
    })
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("secllama-enclave: error: {e:#}");
            ExitCode::from(1)
        }
    }
}
