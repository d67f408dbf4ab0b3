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
    /// A guest's vsock port reached through the unix socket of a vhost-user-vsock backend
    /// (`vhost-device-vsock --uds-path`, VM mode): the hybrid-vsock handshake `CONNECT <port>\n`
    /// → `OK <host port>\n`, then bytes. The host never opens an AF_VSOCK socket (docs/vm.md).
    VsockUds {
        /// The backend's host-side unix socket.
        path: PathBuf,
        /// The guest's port.
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
            expected: "unix:PATH or vsock-uds:PATH:PORT",
            found: s.to_string(),
        };
        if let Some(path) = s.strip_prefix("unix:") {
            if path.is_empty() {
                return Err(bad());
            }
            return Ok(Self::Unix(PathBuf::from(path)));
        }
        if let Some(rest) = s.strip_prefix("vsock-uds:") {
            let (path, port) = rest.rsplit_once(':').ok_or_else(bad)?;
            let port: u32 = port
                .parse::<u32>()
                .ok()
                .filter(|p: &u32| *p != 0 && *p != u32::MAX && port == p.to_string())
                .ok_or_else(bad)?;
            if path.is_empty() {
                return Err(bad());
            }
            return Ok(Self::VsockUds {
                path: PathBuf::from(path),
                port,
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
            // The client's own limit for a silent sealed stream (`secllama-verify`, 300 s): a
            // long answer computed on a slow machine is not cut off by the bridge first.
            idle_timeout: Duration::from_secs(300),
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
            tracing::debug!(target: "secllama::bridge", %from, "closed: this peer is at its connection limit");
            drop(client); // this peer is over its limit: closed at once
            continue;
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            tracing::debug!(target: "secllama::bridge", %from, "closed: the bridge is at its connection limit");
            drop(client); // over the limit: closed at once
            continue;
        };
        let enclave = enclave.clone();
        tokio::spawn(async move {
            let r = relay(client, &enclave, limits).await;
            tracing::debug!(
                target: "secllama::bridge",
                %from,
                error = r.err().map(|e| e.to_string()),
                "connection ended"
            );
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
    let mut upstream = connect(enclave, limits.header_timeout).await?;
    upstream.write_all(&first[..n]).await?;
    drop(first);
    let (cr, cw) = client.into_split();
    let (ur, uw) = upstream.into_split();
    // Idle means nothing in either direction: a client waiting for a long answer sends nothing
    // while the answer streams (or is still being computed), and must not be cut off for it.
    let activity = Activity::new();
    let up = pump(cr, uw, limits, &activity);
    let down = pump(ur, cw, limits, &activity);
    // Either direction ending (EOF, error or idle timeout) ends the connection.
    tokio::select! {
        r = up => r,
        r = down => r,
    }
}

/// The longest handshake reply a vhost-user-vsock backend sends (`OK 4294967295\n`, with room).
const HANDSHAKE_REPLY_MAX: usize = 64;

/// A connection to the enclave's listener: the unix socket itself, or the guest's vsock port
/// through the backend's unix socket after the `CONNECT` handshake (within `timeout`).
///
/// # Errors
/// Connecting failed, or the backend refused the port or answered something else than `OK <n>`.
pub async fn connect(enclave: &EnclaveAddr, timeout: Duration) -> std::io::Result<UnixStream> {
    match enclave {
        EnclaveAddr::Unix(path) => UnixStream::connect(path).await,
        EnclaveAddr::VsockUds { path, port } => {
            let mut s = UnixStream::connect(path).await?;
            let handshake = async {
                s.write_all(format!("CONNECT {port}\n").as_bytes()).await?;
                // Byte by byte: nothing after the reply's newline belongs to the handshake.
                let mut reply = Vec::with_capacity(16);
                loop {
                    let b = s.read_u8().await?;
                    if b == b'\n' {
                        break;
                    }
                    reply.push(b);
                    if reply.len() > HANDSHAKE_REPLY_MAX {
                        return Err(std::io::Error::other(
                            "vsock backend: expected `OK <port>`, found an overlong reply",
                        ));
                    }
                }
                let text = String::from_utf8_lossy(&reply);
                let ok = text
                    .strip_prefix("OK ")
                    .is_some_and(|n| n.parse::<u32>().is_ok());
                if !ok {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::ConnectionRefused,
                        format!(
                            "vsock backend {}: CONNECT {port}: expected `OK <port>`, found {text:?}",
                            path.display()
                        ),
                    ));
                }
                Ok(())
            };
            match tokio::time::timeout(timeout, handshake).await {
                Ok(r) => r?,
                Err(_) => {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        "vsock backend: no handshake reply in time",
                    ));
                }
            }
            Ok(s)
        }
    }
}

/// When a connection last carried bytes, in either direction.
struct Activity {
    start: std::time::Instant,
    last_ms: std::sync::atomic::AtomicU64,
}

impl Activity {
    fn new() -> Self {
        Self {
            start: std::time::Instant::now(),
            last_ms: std::sync::atomic::AtomicU64::new(0),
        }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn touch(&self) {
        self.last_ms
            .store(self.now_ms(), std::sync::atomic::Ordering::Relaxed);
    }

    /// Time since the last bytes in either direction.
    fn idle(&self) -> Duration {
        let last = self.last_ms.load(std::sync::atomic::Ordering::Relaxed);
        Duration::from_millis(self.now_ms().saturating_sub(last))
    }
}

/// Copies `from` to `to` through one fixed buffer, giving up once the connection carried nothing
/// in either direction for `idle_timeout`, or `to` takes nothing for that long.
async fn pump<R, W>(
    mut from: R,
    mut to: W,
    limits: Limits,
    activity: &Activity,
) -> std::io::Result<()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut buf = vec![0u8; limits.buffer_bytes];
    loop {
        let n = loop {
            let wait = limits.idle_timeout.saturating_sub(activity.idle());
            if wait.is_zero() {
                return Ok(());
            }
            if let Ok(r) = tokio::time::timeout(wait, from.read(&mut buf)).await {
                break r?;
            }
        };
        activity.touch();
        if n == 0 {
            to.shutdown().await?;
            return Ok(());
        }
        match tokio::time::timeout(limits.idle_timeout, to.write_all(&buf[..n])).await {
            Ok(r) => r?,
            Err(_) => return Ok(()),
        }
        activity.touch();
    }
}
