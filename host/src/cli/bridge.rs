//! `secllama bridge --listen ADDR:PORT --enclave unix:PATH|vsock-uds:PATH:PORT [limits]`: relays TCP
//! connections to the enclave (see [`crate::bridge`]). Binds loopback by default and warns loudly
//! when asked to listen elsewhere. Prints `bridge listening on ADDR:PORT` on stdout once bound.

use crate::bridge::{EnclaveAddr, Limits, serve};
use std::net::SocketAddr;
use std::time::Duration;

/// Arguments of `secllama bridge`.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Example:\n  $ secllama bridge --listen 127.0.0.1:11435 --enclave unix:/run/secllama/enclave.sock"
)]
pub struct Args {
    /// TCP address to accept remote users on.
    #[arg(long, default_value = "127.0.0.1:11435")]
    pub listen: SocketAddr,
    /// The enclave's listener: unix:PATH (process mode) or vsock-uds:PATH:PORT (VM mode: the
    /// vhost-device-vsock host socket and the guest's port; never AF_VSOCK on the host).
    #[arg(long)]
    pub enclave: EnclaveAddr,
    /// Connections relayed at once.
    #[arg(long, default_value_t = 64)]
    pub max_connections: usize,
    /// Connections relayed at once from one source address.
    #[arg(long, default_value_t = 16)]
    pub max_per_peer: usize,
    /// Seconds a client has to send its first bytes.
    #[arg(long, default_value_t = 10)]
    pub header_timeout: u64,
    /// Seconds a connection may carry nothing in either direction.
    #[arg(long, default_value_t = 300)]
    pub idle_timeout: u64,
    /// Bytes in flight per connection and direction.
    #[arg(long, default_value_t = 65536)]
    pub buffer_bytes: usize,
}

/// Runs the bridge until it fails or is interrupted.
pub fn run(args: &Args) -> anyhow::Result<String> {
    let limits = Limits {
        max_connections: args.max_connections,
        max_per_peer: args.max_per_peer.max(1),
        header_timeout: Duration::from_secs(args.header_timeout),
        idle_timeout: Duration::from_secs(args.idle_timeout),
        buffer_bytes: args.buffer_bytes.max(1024),
    };
    if !args.listen.ip().is_loopback() {
        warn_public(args.listen);
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let listener = tokio::net::TcpListener::bind(args.listen).await?;
        // The line scripts wait for, on stdout (as `secllama launch` prints it).
        #[allow(clippy::print_stdout)]
        {
            use std::io::Write;
            println!("bridge listening on {}", listener.local_addr()?);
            let _ = std::io::stdout().flush();
        }
        tracing::info!(
            target: "secllama::bridge",
            listen = %listener.local_addr()?,
            enclave = ?args.enclave,
            "bridge relaying"
        );
        tokio::select! {
            r = serve(listener, args.enclave.clone(), limits) => r.map_err(anyhow::Error::from),
            _ = tokio::signal::ctrl_c() => Ok(()),
        }
    })?;
    Ok(String::new())
}

/// Warns that the bridge accepts connections from other hosts.
pub fn warn_public(listen: SocketAddr) {
    tracing::warn!(
        target: "secllama::bridge",
        %listen,
        "the bridge listens on a non-loopback address: remote hosts can reach it; it carries only \
         ciphertext, but make sure this is intended"
    );
}
