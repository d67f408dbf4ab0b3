//! Byte relays that carry a swtpm's command channel across a network-namespace boundary through a
//! unix socket. The swtpm's control channel (`CMD_INIT`, `CMD_SHUTDOWN`, `CMD_SET_LOCALITY`, …,
//! which can reset the TPM and so zero its PCRs) is never relayed: inside, [`LoopbackToUnix`]
//! answers the TSS's only control request — locality 0, the swtpm's default — itself and refuses
//! every other one.
//!
//! libtss2 3.2.1's swtpm TCTI speaks TCP only (server port P, control port P+1), and a process-mode
//! enclave's network namespace holds only its own `lo`: the host's `127.0.0.1` is unreachable from
//! inside. So a development launch goes
//!
//! ```text
//! agent ──tcp 127.0.0.1:P (sandbox lo)──▶ LoopbackToUnix ──unix──▶ UnixToTcp ──tcp──▶ swtpm
//!         (inside the sandbox, tss-esapi)   (inside)       (state dir)  (launcher)   (host lo)
//!       ──tcp 127.0.0.1:P+1──▶ LoopbackToUnix answers `CMD_SET_LOCALITY 0` itself
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
    fn close(&self, how: Shutdown);
}

impl Duplex for TcpStream {
    fn close(&self, how: Shutdown) {
        let _ = self.shutdown(how);
    }
}

impl Duplex for UnixStream {
    fn close(&self, how: Shutdown) {
        let _ = self.shutdown(how);
    }
}

/// Largest TPM command or response relayed (TPM2 buffers are at most a few KiB).
const MAX_FRAME: usize = 64 * 1024;

/// How long a connection may take to send its command, and the TPM to answer it.
const FRAME_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(120);

/// Reads one TPM command or response: the 10-byte header (tag, size, code) and the rest of
/// `size` bytes.
fn read_frame(r: &mut impl Read) -> std::io::Result<Vec<u8>> {
    let mut frame = vec![0u8; 10];
    r.read_exact(&mut frame)?;
    let size = u32::from_be_bytes([frame[2], frame[3], frame[4], frame[5]]) as usize;
    if !(10..=MAX_FRAME).contains(&size) {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("a TPM frame of {size} bytes"),
        ));
    }
    frame.resize(size, 0);
    r.read_exact(&mut frame[10..])?;
    Ok(frame)
}

/// One exchange, the way libtss2's swtpm TCTI uses a connection (it connects for each command
/// and closes after the response): one command from `client`, sent on a new upstream
/// connection, one response back; then both are shut down by the relay itself. So a copy of the
/// client socket that a child process inherited (libtss2 does not open it close-on-exec) never
/// holds the swtpm — which serves one connection at a time — and carries nothing more.
fn exchange<A: Duplex, B: Duplex>(mut client: A, connect: &dyn Fn() -> std::io::Result<B>) {
    let result = read_frame(&mut client).and_then(|cmd| {
        let mut up = connect()?;
        up.write_all(&cmd)?;
        let response = read_frame(&mut up);
        up.close(Shutdown::Both);
        response
    });
    if let Ok(response) = result {
        let _ = client.write_all(&response);
    }
    client.close(Shutdown::Both);
}

/// Relays every accepted connection (one TPM command each, [`exchange`]) to a new upstream
/// connection until `stop` is set (checked after each accept; the owner wakes the loop with a
/// connection of its own).
fn accept_loop<A: Duplex, B: Duplex>(
    incoming: impl Iterator<Item = std::io::Result<A>>,
    stop: &AtomicBool,
    connect: impl Fn() -> std::io::Result<B> + Send + Sync + 'static,
) {
    let connect = Arc::new(connect);
    for conn in incoming {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let Ok(conn) = conn else { continue };
        let connect = connect.clone();
        thread::spawn(move || exchange(conn, &*connect));
    }
}

/// Inside the sandbox: listens on `127.0.0.1:P` and `P+1`; forwards each connection to `P` to the
/// swtpm command socket and answers the control protocol on `P+1` itself ([`control_stub`]).
/// Stops accepting when dropped.
#[derive(Debug)]
pub struct LoopbackToUnix {
    port: u16,
    stop: Arc<AtomicBool>,
}

impl LoopbackToUnix {
    /// Starts relaying `127.0.0.1:P` → `server` and answering control requests on `P+1`.
    pub fn start(server: &Path) -> Result<Self> {
        std::fs::metadata(server).map_err(io(format!(
            "the swtpm socket {} (expected a unix socket the launcher relays)",
            server.display()
        )))?;
        let target = server.to_path_buf();
        Self::start_with(move || {
            let s = UnixStream::connect(&target)?;
            s.set_read_timeout(Some(FRAME_TIMEOUT))?;
            Ok(s)
        })
    }

    /// Starts relaying `127.0.0.1:P` → a swtpm's TCP command port `addr`, one command per
    /// connection on both sides ([`exchange`]), and answering control requests on `P+1`.
    /// [`crate::Tpm::connect`] puts every `swtpm:` TCTI behind one, so that no TPM connection of
    /// this process outlives its command in a child process.
    pub fn start_tcp(addr: SocketAddr) -> Result<Self> {
        Self::start_with(move || {
            let s = TcpStream::connect_timeout(&addr, FRAME_TIMEOUT)?;
            s.set_nodelay(true)?;
            s.set_read_timeout(Some(FRAME_TIMEOUT))?;
            Ok(s)
        })
    }

    fn start_with<B: Duplex>(
        connect: impl Fn() -> std::io::Result<B> + Send + Sync + 'static,
    ) -> Result<Self> {
        let (a, b) = port_pair()?;
        let port = a.local_addr().map_err(io("local address".into()))?.port();
        let stop = Arc::new(AtomicBool::new(false));
        {
            let stop = stop.clone();
            thread::spawn(move || {
                accept_loop(
                    a.incoming().map(|c| {
                        c.inspect(|c| {
                            let _ = c.set_nodelay(true);
                            let _ = c.set_read_timeout(Some(FRAME_TIMEOUT));
                        })
                    }),
                    &stop,
                    connect,
                )
            });
        }
        {
            let stop = stop.clone();
            thread::spawn(move || {
                for conn in b.incoming() {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    if let Ok(c) = conn {
                        thread::spawn(move || control_stub(c));
                    }
                }
            });
        }
        Ok(Self { port, stop })
    }

    /// The server port P (the control port is P+1).
    pub fn port(&self) -> u16 {
        self.port
    }
}

/// swtpm control command `CMD_SET_LOCALITY` (swtpm `tpm_ioctl.h`).
pub const CMD_SET_LOCALITY: u32 = 5;
/// The result code the stub returns for anything but locality 0 (`TPM_BAD_PARAMETER`).
const REFUSED: u32 = 3;

/// Answers one control connection: `CMD_SET_LOCALITY` with locality 0 succeeds (the swtpm is at
/// locality 0 already, so nothing needs forwarding); any other command or locality gets an error
/// result and the connection is closed. Nothing ever reaches the swtpm's control channel.
pub fn control_stub(mut c: impl Read + Write) {
    loop {
        let mut cmd = [0u8; 4];
        if c.read_exact(&mut cmd).is_err() {
            return;
        }
        let ok = if u32::from_be_bytes(cmd) == CMD_SET_LOCALITY {
            let mut loc = [0u8; 1];
            if c.read_exact(&mut loc).is_err() {
                return;
            }
            loc[0] == 0
        } else {
            false
        };
        let result: u32 = if ok { 0 } else { REFUSED };
        if c.write_all(&result.to_be_bytes()).is_err() || !ok {
            return;
        }
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

/// On the host: creates the unix socket `server` and forwards each connection to the swtpm's
/// command channel at `addr` (a loopback address). The control channel (`addr`+1) is not relayed.
/// Removes its socket when dropped.
#[derive(Debug)]
pub struct UnixToTcp {
    path: PathBuf,
    stop: Arc<AtomicBool>,
}

impl UnixToTcp {
    /// Starts relaying; `server` must not exist yet.
    pub fn start(server: &Path, addr: SocketAddr) -> Result<Self> {
        if !addr.ip().is_loopback() {
            return Err(TpmError::Relay {
                what: "the swtpm address".into(),
                reason: format!("expected a loopback address, found {addr}"),
            });
        }
        let stop = Arc::new(AtomicBool::new(false));
        let listener = UnixListener::bind(server).map_err(io(format!(
            "binding the TPM relay socket {}",
            server.display()
        )))?;
        {
            let stop = stop.clone();
            let connect = move || {
                let up = TcpStream::connect(addr)?;
                up.set_nodelay(true)?;
                up.set_read_timeout(Some(FRAME_TIMEOUT))?;
                Ok(up)
            };
            thread::spawn(move || {
                let incoming = listener.incoming().map(|c| {
                    c.inspect(|c| {
                        let _ = c.set_read_timeout(Some(FRAME_TIMEOUT));
                    })
                });
                accept_loop(incoming, &stop, connect)
            });
        }
        Ok(Self {
            path: server.to_path_buf(),
            stop,
        })
    }

    /// The socket path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for UnixToTcp {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = UnixStream::connect(&self.path);
        let _ = std::fs::remove_file(&self.path);
    }
}
