//! The bridge (DESIGN.md "Shape"): accepts TCP connections from remote users and relays bytes to the
//! enclave's listener. It is untrusted by design and sees only ciphertext, so it never parses what it
//! carries; it only protects the host and keeps the enclave reachable: a connection limit and a
//! per-peer (source IP) limit (connections past either are closed at once, so a few misbehaving
//! peers cannot take every slot), a first-bytes timeout, an idle timeout, and a fixed buffer per
//! direction — the cap on bytes in flight per connection, so it never buffers a whole stream. The
//! whole request head is bounded in time by the enclave's HTTP server (`header_read_timeout`),
//! which sees the bytes the bridge relays.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UnixStream};
use tokio::sync::Semaphore;

/// Where the enclave listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EnclaveAddr {
    /// A unix socket (process mode).
    Unix(PathBuf),
    /// A vsock address (VM mode).
    Vsock {
        /// Context id of the guest.
        cid: u32,
        /// Port.
        port: u32,
    },
}

/// A bridge that cannot start or a malformed address.
#[derive(Debug, thiserror::Error)]
pub enum BridgeError {
    /// The enclave address is malformed or unsupported.
    #[error("--enclave: expected {expected}, found {found:?}")]
    Address {
        /// The accepted forms.
        expected: &'static str,
        /// What was given.
        found: String,
    },
    /// Listening failed.
    #[error("bridge: {op}: {reason}")]
    Io {
        /// The operation.
        op: &'static str,
        /// The error.
        reason: std::io::Error,
    },
}

impl std::str::FromStr for EnclaveAddr {
    type Err = BridgeError;
    fn from_str(s: &str) -> Result<Self, BridgeError> {
        let bad = || BridgeError::Address {
            expected: "unix:PATH or vsock:CID:PORT",
            found: s.to_string(),
        };
        if let Some(path) = s.strip_prefix("unix:") {
            if path.is_empty() {
                return Err(bad());
            }
            return Ok(Self::Unix(PathBuf::from(path)));
        }
        if let Some(rest) = s.strip_prefix("vsock:") {
            let (cid, port) = rest.split_once(':').ok_or_else(bad)?;
            return Ok(Self::Vsock {
                cid: cid.parse().map_err(|_| bad())?,
                port: port.parse().map_err(|_| bad())?,
            });
        }
        Err(bad())
    }
}

/// Limits of the bridge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Connections relayed at once; more are closed on accept.
    pub max_connections: usize,
    /// Connections relayed at once from one source IP address; more are closed on accept.
    pub max_per_peer: usize,
    /// Time a client has to send its first bytes.
    pub header_timeout: Duration,
    /// Time a connection may carry nothing in either direction.
    pub idle_timeout: Duration,
    /// Buffer per direction: the most bytes in flight per connection and direction.
    pub buffer_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_connections: 64,
            max_per_peer: 16,
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(120),
            buffer_bytes: 64 * 1024,
        }
    }
}

/// Relays every connection accepted on `listener` to `enclave` until the listener fails.
pub async fn serve(
    listener: TcpListener,
    enclave: EnclaveAddr,
    limits: Limits,
) -> Result<(), BridgeError> {
    if let EnclaveAddr::Vsock { .. } = enclave {
        // Host-side vsock arrives with VM mode (vhost-vsock / vhost-user-vsock); refusing here is
        // better than silently relaying nowhere.
        return Err(BridgeError::Address {
            expected: "unix:PATH (vsock:CID:PORT arrives with VM mode)",
            found: format!("{enclave:?}"),
        });
    }
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let peers = Arc::new(Peers::default());
    loop {
        let (client, from) = match listener.accept().await {
            Ok(c) => c,
            Err(e) if transient(&e) => {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
            Err(source) => {
                return Err(BridgeError::Io {
                    op: "accepting",
                    reason: source,
                });
            }
        };
        let Some(peer) = peers.enter(from.ip(), limits.max_per_peer) else {
            drop(client); // this peer is over its limit: closed at once
            continue;
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            drop(client); // over the limit: closed at once
            continue;
        };
        let enclave = enclave.clone();
        tokio::spawn(async move {
            let _ = relay(client, &enclave, limits).await;
            drop(permit);
            drop(peer);
        });
    }
}

/// Accept errors that say nothing about the listener (the peer gave up; descriptors or memory ran
/// out for a moment): waited out rather than ending the bridge.
fn transient(e: &std::io::Error) -> bool {
    use std::io::ErrorKind;
    matches!(
        e.kind(),
        ErrorKind::ConnectionAborted | ErrorKind::ConnectionReset | ErrorKind::Interrupted
    ) || matches!(e.raw_os_error(), Some(23 | 24 | 105 | 12)) // ENFILE EMFILE ENOBUFS ENOMEM
}

/// Connections open per source address.
#[derive(Debug, Default)]
struct Peers(std::sync::Mutex<std::collections::HashMap<std::net::IpAddr, usize>>);

/// One connection counted against its peer; uncounted when dropped.
struct PeerSlot {
    peers: Arc<Peers>,
    ip: std::net::IpAddr,
}

impl Peers {
    /// Counts a connection from `ip` unless it already has `max`.
    fn enter(self: &Arc<Self>, ip: std::net::IpAddr, max: usize) -> Option<PeerSlot> {
        let mut map = self.0.lock().ok()?;
        let n = map.entry(ip).or_insert(0);
        if *n >= max {
            return None;
        }
        *n += 1;
        Some(PeerSlot {
            peers: self.clone(),
            ip,
        })
    }
}

impl Drop for PeerSlot {
    fn drop(&mut self) {
        if let Ok(mut map) = self.peers.0.lock()
            && let Some(n) = map.get_mut(&self.ip)
        {
            *n -= 1;
            if *n == 0 {
                map.remove(&self.ip);
            }
        }
    }
}

async fn relay(
    mut client: TcpStream,
    enclave: &EnclaveAddr,
    limits: Limits,
) -> std::io::Result<()> {
    // Answers are streamed in small sealed chunks: send each at once rather than coalescing.
    let _ = client.set_nodelay(true);
    let mut first = vec![0u8; limits.buffer_bytes];
    let n = match tokio::time::timeout(limits.header_timeout, client.read(&mut first)).await {
        Ok(r) => r?,
        Err(_) => return Ok(()), // no request in time: close
    };
    if n == 0 {
        return Ok(());
    }
    let EnclaveAddr::Unix(path) = enclave else {
        return Ok(());
    };
    let mut upstream = UnixStream::connect(path).await?;
    upstream.write_all(&first[..n]).await?;
    drop(first);
    let (cr, cw) = client.into_split();
    let (ur, uw) = upstream.into_split();
    let up = pump(cr, uw, limits);
    let down = pump(ur, cw, limits);
    // Either direction ending (EOF, error or idle timeout) ends the connection.
    tokio::select! {
        r = up => r,
        r = down => r,
    }
}

/// Copies `from` to `to` through one fixed buffer, giving up after `idle_timeout` without bytes.
async fn pump<R, W>(mut from: R, mut to: W, limits: Limits) -> std::io::Result<()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut buf = vec![0u8; limits.buffer_bytes];
    loop {
        let n = match tokio::time::timeout(limits.idle_timeout, from.read(&mut buf)).await {
            Ok(r) => r?,
            Err(_) => return Ok(()),
        };
        if n == 0 {
            to.shutdown().await?;
            return Ok(());
        }
        match tokio::time::timeout(limits.idle_timeout, to.write_all(&buf[..n])).await {
            Ok(r) => r?,
            Err(_) => return Ok(()),
        }
    }
}
