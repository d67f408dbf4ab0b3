//! `secllama-enclave --config FILE`: the agent. Starts (keys, PCR 23, policy, digests), then serves
//! the enclave API on its listener until stopped. Prints `listening on PATH` once ready.
//!
//! `secllama-enclave runner-init --config FILE`: the first process of the runner's own sandbox
//! ([`secllama_enclave::runner_init`]). Prints `runner ready` once the runner answers.
//!
//! Both take `--log-format text|json` first (default: `SECLLAMA_LOG_FORMAT`, else text) and
//! `RUST_LOG` ([`secllama_enclave::diagnostics`]); logs go to stderr, the ready lines to stdout.
//! Exit codes: 0 stopped cleanly, 1 failed (the error chain is printed), 2 usage error.
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

const USAGE: &str = "usage: secllama-enclave [--log-format text|json] --config FILE | \
     secllama-enclave [--log-format text|json] runner-init --config FILE";

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
    tracing::info!(
        target: "secllama::agent",
        isolation = ?config.launch.isolation,
        listener = %addr,
        "agent started: keys generated, PCR 23 extended, policy loaded"
    );
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
                tracing::info!(target: "secllama::agent", listener = %shown, "runner ready; serving");
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

/// What the command line asks for.
enum Mode<'a> {
    Agent(&'a str),
    RunnerInit(&'a str),
}

/// The log format (flag, else environment) and the mode; `None` for a usage error.
fn parse(args: &[String]) -> Option<(Option<&str>, Mode<'_>)> {
    let (format, rest) = match args {
        [flag, f, rest @ ..] if flag == "--log-format" => (Some(f.as_str()), rest),
        rest => (None, rest),
    };
    let mode = match rest {
        [flag, path] if flag == "--config" => Mode::Agent(path),
        [cmd, flag, path] if cmd == "runner-init" && flag == "--config" => Mode::RunnerInit(path),
        _ => return None,
    };
    Some((format, mode))
}

fn run(format: Option<&str>, mode: &Mode<'_>) -> anyhow::Result<()> {
    use secllama_enclave::diagnostics;
    let format = match format {
        Some(f) => f.parse()?,
        None => diagnostics::format_from_env()?,
    };
    diagnostics::init(format)?;
    match mode {
        Mode::Agent(path) => agent(std::path::Path::new(path)),
        Mode::RunnerInit(path) => runner_init(std::path::Path::new(path)),
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some((format, mode)) = parse(&args) else {
        eprintln!("{USAGE}");
        return ExitCode::from(2);
    };
    match run(format, &mode) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            use secllama_enclave::diagnostics::{LogFormat, format};
            if format() == LogFormat::Json {
                tracing::error!(target: "secllama::agent", error = %format!("{e:#}"), "stopped");
            } else {
                eprintln!("secllama-enclave: error: {e:#}");
            }
            ExitCode::from(1)
        }
    }
}
