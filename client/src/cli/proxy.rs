//! `secllama-verify proxy --url URL --manifest FILE [--listen 127.0.0.1:11434] [--receipts FILE]
//! [--reattest SECS] [--origins LIST] [--max-connections N] [--header-timeout SECS]
//! [--enclave-connections N] [--max-queue N]`: the verifying local proxy (see [`crate::proxy`]). Prints
//! `proxy listening on ADDR` once the enclave is attested and the listener bound; runs until
//! interrupted. Refuses to start (exit 1) when the attestation is not affirming.

use crate::proxy::Proxy;
use anyhow::Context;
use secllama_measurements::manifest::Manifest;
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Arguments of `secllama-verify proxy`.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Example:\n  $ secllama-verify proxy --url http://127.0.0.1:11435 --manifest manifest.toml --listen 127.0.0.1:11434 --receipts receipts/ --heads heads.jsonl"
)]
pub struct Args {
    /// The enclave API: unix:PATH or http://HOST:PORT (e.g. the bridge).
    #[arg(long)]
    pub url: String,
    /// The reference manifest (TOML).
    #[arg(long)]
    pub manifest: PathBuf,
    /// Where local Ollama clients connect (loopback unless you mean it).
    #[arg(long, default_value = "127.0.0.1:11434")]
    pub listen: SocketAddr,
    /// Append every verified receipt here (JSON lines, no plaintext).
    #[arg(long)]
    pub receipts: Option<PathBuf>,
    /// Keep the receipt log's signed heads in FILE (JSON lines) across runs: each new head must
    /// extend the last one kept. Every verified receipt is proven included in a signed head in
    /// the background; if one is not, the proxy answers 502 from then on (docs/log.md).
    #[arg(long)]
    pub heads: Option<PathBuf>,
    /// Seconds between re-attestations.
    #[arg(long, default_value_t = 300)]
    pub reattest: u64,
    /// More browser origins allowed to call the proxy (like OLLAMA_ORIGINS: comma-separated, one
    /// `*` wildcard each), besides Ollama's local defaults.
    #[arg(long, env = "OLLAMA_ORIGINS", default_value = "")]
    pub origins: String,
    /// Local connections served at once (more wait to be accepted).
    #[arg(long, default_value_t = 512)]
    pub max_connections: usize,
    /// Seconds a client has to send a whole request head (also ends idle keep-alive connections).
    #[arg(long, default_value_t = 10)]
    pub header_timeout: u64,
    /// Requests sent to the enclave at once, each on a kept-alive connection (stay within the
    /// bridge's --max-per-peer).
    #[arg(long, default_value_t = 8)]
    pub enclave_connections: usize,
    /// Requests that wait for a free enclave connection; more get 503 with Retry-After (like
    /// OLLAMA_MAX_QUEUE).
    #[arg(long, env = "OLLAMA_MAX_QUEUE", default_value_t = 512)]
    pub max_queue: usize,
}

#[allow(clippy::print_stdout, clippy::print_stderr)]
fn say(line: &str, err: bool) {
    if err {
        eprintln!("{line}");
    } else {
        println!("{line}");
        let _ = std::io::stdout().flush();
    }
}

/// Connections the kernel queues for the proxy while all its slots are busy (the default of 128
/// would leave a burst of clients retrying their handshakes for tens of seconds).
const ACCEPT_BACKLOG: u32 = 1024;

/// Binds `addr` with [`ACCEPT_BACKLOG`].
fn bind(addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(ACCEPT_BACKLOG)
}

/// Runs the proxy until interrupted.
pub fn run(args: &Args) -> anyhow::Result<super::Outcome> {
    let text = std::fs::read_to_string(&args.manifest)
        .with_context(|| format!("reading {}", args.manifest.display()))?;
    let manifest = Manifest::from_toml(&text)
        .with_context(|| format!("manifest {}", args.manifest.display()))?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let limits = crate::proxy::ForwardLimits {
            connections: args.enclave_connections,
            queue: args.max_queue,
        };
        let proxy = match Proxy::start_with(
            &args.url,
            manifest,
            args.receipts.as_deref(),
            args.heads.as_deref(),
            limits,
        )
        .await
        {
            Ok(p) => p,
            Err(e) => {
                return Ok(super::Outcome {
                    report: format!("secllama proxy: {e:#}"),
                    valid: false,
                });
            }
        };
        proxy.spawn_reattest(Duration::from_secs(args.reattest.max(1)));
        let listener = bind(args.listen).with_context(|| format!("binding {}", args.listen))?;
        let bound = listener.local_addr()?;
        if bound.ip().is_loopback() {
            say(
                &format!(
                    "secllama proxy: listening on loopback only ({}); local clients only",
                    bound
                ),
                true,
            );
        } else {
            say(
                &format!(
                    "WARNING: secllama proxy listens on {} (not loopback): other hosts can send \
                         prompts through it and read the answers in plaintext",
                    bound
                ),
                true,
            );
        }
        say(&format!("proxy listening on {bound}"), false);
        let mut options =
            crate::proxy::ServeOptions::new(args.listen.ip().is_loopback(), &args.origins);
        options.max_connections = args.max_connections;
        options.header_timeout = Duration::from_secs(args.header_timeout.max(1));
        let serve = crate::proxy::serve(proxy.clone(), listener, options);
        tokio::select! {
            r = serve => r.map_err(anyhow::Error::from)?,
            _ = tokio::signal::ctrl_c() => {}
        }
        Ok(super::Outcome {
            report: String::new(),
            valid: true,
        })
    })
}
