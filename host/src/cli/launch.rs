//! `secllama launch --config FILE [--tcti T] [--listen ADDR:PORT] [--no-bridge]` (as root): starts
//! the enclave in the config's isolation mode ([`crate::launch`]) — process mode measures the launch
//! into the TPM and starts the runner and the agent in two process sandboxes as two host users
//! (docs/isolation.md); VM mode builds the guest image and boots it under QEMU (docs/vm.md) — and
//! relays remote users to the agent with the bridge, until interrupted (SIGINT/SIGTERM) or the
//! enclave ends.
//!
//! Prints, once ready: `enclave listening on unix:PATH (pid N, runner sandbox pid R, landlock ABI
//! A)` or `enclave listening on vsock-uds:PATH:PORT (VM pid N, TCG, booted in S s)` and, unless
//! `--no-bridge`, `bridge listening on ADDR:PORT`.

use crate::bridge::{Limits, serve};
use anyhow::Context;
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Arguments of `secllama launch`.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  $ secllama launch --config enclave.toml --tcti swtpm:host=127.0.0.1,port=2321 --listen 127.0.0.1:11435\n  $ RUST_LOG=debug secllama launch --config enclave.toml --log-format json"
)]
pub struct Args {
    /// The agent's config (its [launch] table names what is measured; [sandbox] the limits).
    #[arg(long)]
    pub config: PathBuf,
    /// The TPM (a swtpm on loopback: swtpm:host=127.0.0.1,port=P); default: SECLLAMA_TCTI.
    #[arg(long)]
    pub tcti: Option<String>,
    /// Where the bridge accepts remote users (port 0: any free port).
    #[arg(long, default_value = "127.0.0.1:11435")]
    pub listen: SocketAddr,
    /// VM mode: boot this prebuilt guest image (`secllama image build --out DIR`) instead of
    /// building one.
    #[arg(long)]
    pub image: Option<PathBuf>,
    /// Do not start the bridge.
    #[arg(long)]
    pub no_bridge: bool,
}

/// The launch's progress and the guest's console lines (VM mode) as log events, one per line,
/// for `--log-format json`: every line on stderr is then one JSON object, the text a string field.
#[derive(Default)]
struct JsonLines(Vec<u8>);

impl JsonLines {
    fn emit(line: &[u8]) {
        let text = crate::launch::process::output::shown(line);
        tracing::info!(target: "secllama::launch", line = %text, "output");
    }
}

impl Write for JsonLines {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.extend_from_slice(buf);
        while let Some(i) = self.0.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = self.0.drain(..=i).collect();
            Self::emit(&line[..i]);
        }
        // A line without its end so far is bounded like the sandboxes' lines.
        if self.0.len() > crate::launch::process::output::MAX_LINE {
            Self::emit(&std::mem::take(&mut self.0));
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for JsonLines {
    fn drop(&mut self) {
        if !self.0.is_empty() {
            Self::emit(&std::mem::take(&mut self.0));
        }
    }
}

/// A line for scripts on stdout; with `--log-format json` also a log event on stderr.
#[allow(clippy::print_stdout, clippy::print_stderr)]
fn say(line: &str) {
    println!("{line}");
    let _ = std::io::stdout().flush();
    if secllama_enclave::diagnostics::format() == secllama_enclave::diagnostics::LogFormat::Json {
        tracing::info!(target: "secllama::launch", "{line}");
    }
}

/// Runs the enclave until interrupted or until the agent or the runner's sandbox exits.
pub fn run(args: &Args) -> anyhow::Result<String> {
    let tcti = args
        .tcti
        .clone()
        .or_else(|| std::env::var(secllama_tpm::TCTI_ENV).ok());
    if !args.listen.ip().is_loopback() && !args.no_bridge {
        super::bridge::warn_public(args.listen);
    }
    let json =
        secllama_enclave::diagnostics::format() == secllama_enclave::diagnostics::LogFormat::Json;
    let log: Box<dyn Write + Send> = if json {
        Box::new(JsonLines::default())
    } else {
        Box::new(std::io::stderr())
    };
    let mut enclave =
        crate::launch::start(&args.config, tcti.as_deref(), args.image.as_deref(), log)?;
    say(&enclave.describe());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let addr = enclave.enclave_addr();
    let no_bridge = args.no_bridge;
    let listen = args.listen;
    let outcome: anyhow::Result<String> = rt.block_on(async {
        let bridge = async {
            if no_bridge {
                return std::future::pending::<anyhow::Result<()>>().await;
            }
            let listener = tokio::net::TcpListener::bind(listen)
                .await
                .with_context(|| format!("bridge: binding {listen}"))?;
            say(&format!("bridge listening on {}", listener.local_addr()?));
            serve(listener, addr, Limits::default())
                .await
                .map_err(anyhow::Error::from)
        };
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        let exited = async {
            loop {
                tokio::time::sleep(Duration::from_millis(200)).await;
                match enclave.exited() {
                    Ok(Some(status)) => return status,
                    Ok(None) => {}
                    Err(e) => return e.to_string(),
                }
            }
        };
        tokio::select! {
            r = bridge => r.map(|()| String::new()),
            _ = tokio::signal::ctrl_c() => Ok("interrupted".into()),
            _ = term.recv() => Ok("terminated".into()),
            status = exited => Err(anyhow::anyhow!("{status}")),
        }
    });
    enclave.stop()?;
    let reason = outcome?;
    say(&format!("enclave stopped ({reason})"));
    Ok(String::new())
}
