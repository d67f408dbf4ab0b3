//! `secllama-enclave --config FILE`: the agent. Starts (keys, PCR 23, policy, digests), then serves
//! the enclave API on its listener until stopped. Prints `listening on PATH` once ready.
//!
//! `secllama-enclave runner-init --config FILE`: the first process of the runner's own sandbox
//! ([`secllama_enclave::runner_init`]). Prints `runner ready` once the runner answers.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use anyhow::Context;
use secllama_enclave::agent::Agent;
use secllama_enclave::config::Config;
use secllama_enclave::handoff::Handoff;
use secllama_enclave::listener::{Listener, ListenerAddr};
use std::process::ExitCode;
use std::sync::Arc;

/// The console line prefix carrying the AK's TPM2B_PUBLIC in hex (VM mode).
const AK_PUBLIC_LINE: &str = "ak public: ";

const USAGE: &str =
    "usage: secllama-enclave --config FILE | secllama-enclave runner-init --config FILE";

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

fn agent(config: &std::path::Path) -> anyhow::Result<()> {
    // The agent's memory holds the private keys: no core dumps, and no process of the same uid
    // may read /proc/PID/mem or ptrace it (PR_SET_DUMPABLE 0, before any key exists).
    rustix::process::set_dumpable_behavior(rustix::process::DumpableBehavior::NotDumpable)
        .context("PR_SET_DUMPABLE 0")?;
    let mut handoff = Handoff::from_env()?;
    let (config, base) = Config::load(config)?;
    let listener = handoff.listener.take();
    let runner_elsewhere = handoff.runner_dir.is_some();
    let addr = config.listener_addr();
    let agent = Arc::new(Agent::start_with(&config, &base, handoff)?);
    if let ListenerAddr::Vsock(_) = addr {
        // In a VM the launcher cannot read the vTPM (the guest owns it): the AK's public part
        // goes to the console, from where `secllama launch` writes ak.pub for the manifest.
        println!("{AK_PUBLIC_LINE}{}", hex::encode(agent.ak_public()?));
    }
    runtime()?.block_on(async move {
        let listener = match listener {
            Some(fd) => Listener::from_fd(fd).context("the handed-over listener")?,
            None => Listener::bind(&addr).with_context(|| format!("binding {addr}"))?,
        };
        let shown = match &addr {
            ListenerAddr::Unix(p) => p.display().to_string(),
            ListenerAddr::Vsock(_) => addr.to_string(),
        };
        let env = config.runner_env.clone().into_iter().collect();
        // A runner in its own sandbox is started and supervised there (runner-init).
        let command = if runner_elsewhere {
            None
        } else {
            config.runner_command.clone()
        };
        secllama_enclave::service::run(
            agent,
            command,
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

fn runner_init(config: &std::path::Path) -> anyhow::Result<()> {
    let (config, base) = Config::load(config)?;
    runtime()?.block_on(secllama_enclave::runner_init::run(&config, &base, || {
        println!("runner ready");
    }))
}

fn run() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    match args.as_slice() {
        [_, flag, path] if flag == "--config" => agent(std::path::Path::new(path)),
        [_, cmd, flag, path] if cmd == "runner-init" && flag == "--config" => {
            runner_init(std::path::Path::new(path))
        }
        _ => anyhow::bail!(USAGE),
    }
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
