//! Byte relays that carry a swtpm's two channels (server: TPM commands, control: `CMD_*`) across
//! a network-namespace boundary through unix sockets.
//!
//! libtss2 3.2.1's swtpm TCTI speaks TCP only (server port P, control port P+1), and a process-mode
//! enclave's network namespace holds only its own `lo`: the host's `127.0.0.1` is unreachable from
//! inside. So a development launch goes
//!
//! ```text
//! agent ──tcp 127.0.0.1:P/P+1 (sandbox lo)──▶ LoopbackToUnix ──unix──▶ UnixToTcp ──tcp──▶ swtpm
//!         (inside the sandbox, tss-esapi)        (inside)       (state dir)  (launcher)   (host lo)
//! ```
//!
//! The relays never parse what they carry: the TPM's own authorization and the verifier's quote
//! appraisal are what protect the evidence. Production uses the kernel's `/dev/tpmrm0` instead.
//! Each direction is a thread copying bytes; when either side closes, both are shut down.

use crate::{Result, TpmError};
use std::io::{Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;

/// How many times a free consecutive port pair is looked for.
const PORT_PAIR_TRIES: usize = 64;

fn io(what: String) -> impl FnOnce(std::io::Error) -> TpmError {
    move |e| TpmError::Relay {
        what,
        reason: e.to_string(),
    }
}

/// A stream the relay can split into a reading and a writing half.
trait Duplex: Read + Write + Send + Sized + 'static {
    fn duplicate(&self) -> std::io::Result<Self>;
    fn close(&self, how: Shutdown);
}

impl Duplex for TcpStream {
    fn duplicate(&self) -> std::io::Result<Self> {
        self.try_clone()
    }
    fn close(&self, how: Shutdown) {
        let _ = self.shutdown(how);
    }
}

impl Duplex for UnixStream {
    fn duplicate(&self) -> std::io::Result<Self> {
        self.try_clone()
    }
    fn close(&self, how: Shutdown) {
        let _ = self.shutdown(how);
    }
}

/// Copies `a` ⇄ `b` on two threads until either side ends.
fn pump<A: Duplex, B: Duplex>(a: A, b: B) {
    let (Ok(a2), Ok(b2)) = (a.duplicate(), b.duplicate()) else {
        a.close(Shutdown::Both);
        b.close(Shutdown::Both);
        return;
    };
    fn one_way<R: Duplex, W: Duplex>(mut r: R, mut w: W) {
        let _ = std::io::copy(&mut r, &mut w);
        r.close(Shutdown::Both);
        w.close(Shutdown::Both);
    }
    thread::spawn(move || one_way(a, b2));
    thread::spawn(move || one_way(b, a2));
}

/// Relays every accepted connection to a new upstream connection until `stop` is set (checked
/// after each accept; the owner wakes the loop with a connection of its own). A connection whose
/// upstream cannot be reached is closed.
fn accept_loop<A: Duplex, B: Duplex>(
    incoming: impl Iterator<Item = std::io::Result<A>>,
    stop: &AtomicBool,
    connect: impl Fn() -> std::io::Result<B>,
) {
    for conn in incoming {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let Ok(conn) = conn else { continue };
        match connect() {
            Ok(up) => pump(conn, up),
            Err(_) => conn.close(Shutdown::Both),
        }
    }
}

/// Inside the sandbox: listens on `127.0.0.1:P` and `P+1` and forwards each connection to the
/// swtpm server and control unix sockets. Stops accepting when dropped.
#[derive(Debug)]
pub struct LoopbackToUnix {
    port: u16,
    stop: Arc<AtomicBool>,
}

impl LoopbackToUnix {
    /// Starts relaying `127.0.0.1:P` → `server` and `127.0.0.1:P+1` → `ctrl`.
    pub fn start(server: &Path, ctrl: &Path) -> Result<Self> {
        for p in [server, ctrl] {
            std::fs::metadata(p).map_err(io(format!(
                "the swtpm socket {} (expected a unix socket the launcher relays)",
                p.display()
            )))?;
        }
        let (a, b) = port_pair()?;
        let port = a.local_addr().map_err(io("local address".into()))?.port();
        let stop = Arc::new(AtomicBool::new(false));
        for (listener, target) in [(a, server.to_path_buf()), (b, ctrl.to_path_buf())] {
            let stop = stop.clone();
            let connect = move || UnixStream::connect(&target);
            thread::spawn(move || {
                accept_loop(
                    listener.incoming().map(|c| {
                        c.inspect(|c| {
                            let _ = c.set_nodelay(true);
                        })
                    }),
                    &stop,
                    connect,
                )
            });
        }
        Ok(Self { port, stop })
    }

    /// The server port P (the control port is P+1).
    pub fn port(&self) -> u16 {
        self.port
    }
}

impl Drop for LoopbackToUnix {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Wake both accept loops so they see the flag.
        for p in [self.port, self.port.wrapping_add(1)] {
            let _ = TcpStream::connect((Ipv4Addr::LOCALHOST, p));
        }
    }
}

fn port_pair() -> Result<(TcpListener, TcpListener)> {
    for _ in 0..PORT_PAIR_TRIES {
        let a = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .map_err(io("binding a loopback port".into()))?;
        let p = a.local_addr().map_err(io("local address".into()))?.port();
        if let Some(next) = p.checked_add(1)
            && let Ok(b) = TcpListener::bind((Ipv4Addr::LOCALHOST, next))
        {
            return Ok((a, b));
        }
    }
    Err(TpmError::Relay {
        what: "finding two consecutive free loopback ports for the swtpm TCTI".into(),
        reason: format!("none free after {PORT_PAIR_TRIES} tries"),
    })
}

/// On the host: creates the unix sockets `server` and `ctrl` and forwards each connection to the
/// swtpm at `addr` (server) and `addr`+1 (control). `addr` must be a loopback address. Removes its
/// sockets when dropped.
#[derive(Debug)]
pub struct UnixToTcp {
    paths: [PathBuf; 2],
    stop: Arc<AtomicBool>,
}

impl UnixToTcp {
    /// Starts relaying; `server` and `ctrl` must not exist yet.
    pub fn start(server: &Path, ctrl: &Path, addr: SocketAddr) -> Result<Self> {
        if !addr.ip().is_loopback() {
            return Err(TpmError::Relay {
                what: "the swtpm address".into(),
                reason: format!("expected a loopback address, found {addr}"),
            });
        }
        let ctrl_port = addr.port().checked_add(1).ok_or_else(|| TpmError::Relay {
            what: "the swtpm control port".into(),
            reason: format!("server port {} has no successor", addr.port()),
        })?;
        let stop = Arc::new(AtomicBool::new(false));
        let targets = [addr, SocketAddr::new(addr.ip(), ctrl_port)];
        for (path, target) in [server, ctrl].into_iter().zip(targets) {
            let listener = UnixListener::bind(path).map_err(io(format!(
                "binding the TPM relay socket {}",
                path.display()
            )))?;
            let stop = stop.clone();
            let connect = move || {
                TcpStream::connect(target).inspect(|up| {
                    let _ = up.set_nodelay(true);
                })
            };
            thread::spawn(move || accept_loop(listener.incoming(), &stop, connect));
        }
        Ok(Self {
            paths: [server.to_path_buf(), ctrl.to_path_buf()],
            stop,
        })
    }

    /// The socket paths (server, control).
    pub fn paths(&self) -> &[PathBuf; 2] {
        &self.paths
    }
}

impl Drop for UnixToTcp {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for p in &self.paths {
            let _ = UnixStream::connect(p);
            let _ = std::fs::remove_file(p);
        }
    }
}
