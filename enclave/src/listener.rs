//! The agent's listener (DESIGN.md "Shape"): a unix socket in process mode (`unix:PATH`), a vsock
//! port inside the VM (`vsock:PORT`, AF_VSOCK on the guest side of virtio-vsock). Both are served
//! by the same HTTP code through [`Listener::accept`].
//!
//! AF_VSOCK is opened only inside a guest: the agent binds `vsock:PORT` when it runs as the VM's
//! enclave (started by `secllama-init`); on a host, vsock leaves the machine toward its hypervisor,
//! so nothing on the host side of secllama ever opens one (docs/vm.md).

use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::pin::Pin;
use tokio::io::{AsyncRead, AsyncWrite};

/// Where the agent listens, from the config's `listener`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListenerAddr {
    /// `unix:PATH`: a unix socket (process mode).
    Unix(PathBuf),
    /// `vsock:PORT`: a vsock port of the guest, any CID (VM mode).
    Vsock(u32),
}

impl ListenerAddr {
    /// Parses `unix:<absolute or relative path>` or `vsock:<port 1..=u32::MAX-1>`.
    ///
    /// # Errors
    /// What was expected and what was found.
    pub fn parse(s: &str) -> Result<Self, String> {
        if let Some(p) = s.strip_prefix("unix:") {
            if p.is_empty() {
                return Err(format!("unix:PATH with a path, found {s:?}"));
            }
            return Ok(Self::Unix(PathBuf::from(p)));
        }
        if let Some(port) = s.strip_prefix("vsock:") {
            // VMADDR_PORT_ANY (u32::MAX) is not a port to listen on; port 0 is reserved.
            return match port.parse::<u32>() {
                Ok(n) if n != 0 && n != u32::MAX && port == n.to_string() => Ok(Self::Vsock(n)),
                _ => Err(format!(
                    "vsock:PORT with a decimal port from 1 to {}, found {s:?}",
                    u32::MAX - 1
                )),
            };
        }
        Err(format!("unix:PATH or vsock:PORT, found {s:?}"))
    }
}

impl std::fmt::Display for ListenerAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Unix(p) => write!(f, "unix:{}", p.display()),
            Self::Vsock(port) => write!(f, "vsock:{port}"),
        }
    }
}

/// A connection accepted by a [`Listener`].
pub trait Connection: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Connection for T {}

/// A bound, listening socket of either kind.
#[derive(Debug)]
pub enum Listener {
    /// A unix socket.
    Unix(tokio::net::UnixListener),
    /// A vsock port (inside a guest only).
    Vsock(tokio_vsock::VsockListener),
}

impl Listener {
    /// Binds `addr` (a stale unix socket file is replaced). Called within a tokio runtime.
    ///
    /// # Errors
    /// The bind failed.
    pub fn bind(addr: &ListenerAddr) -> std::io::Result<Self> {
        match addr {
            ListenerAddr::Unix(p) => {
                let _ = std::fs::remove_file(p);
                Ok(Self::Unix(tokio::net::UnixListener::bind(p)?))
            }
            ListenerAddr::Vsock(port) => {
                let a = tokio_vsock::VsockAddr::new(tokio_vsock::VMADDR_CID_ANY, *port);
                Ok(Self::Vsock(tokio_vsock::VsockListener::bind(a)?))
            }
        }
    }

    /// A listening unix socket handed over as a descriptor by `secllama launch` (process mode;
    /// in a VM the agent binds its vsock port itself). Called within a tokio runtime.
    ///
    /// # Errors
    /// Not a unix socket, or not usable by tokio.
    pub fn from_fd(fd: OwnedFd) -> std::io::Result<Self> {
        let family = rustix::net::getsockname(&fd)?.address_family();
        if family != rustix::net::AddressFamily::UNIX {
            return Err(std::io::Error::other(format!(
                "the handed-over listener: expected a unix socket, found address family {}",
                family.as_raw()
            )));
        }
        let std = std::os::unix::net::UnixListener::from(fd);
        std.set_nonblocking(true)?;
        Ok(Self::Unix(tokio::net::UnixListener::from_std(std)?))
    }

    /// The next connection.
    ///
    /// # Errors
    /// As `accept(2)`.
    pub async fn accept(&self) -> std::io::Result<Pin<Box<dyn Connection>>> {
        Ok(match self {
            Self::Unix(l) => Box::pin(l.accept().await?.0),
            Self::Vsock(l) => Box::pin(l.accept().await?.0),
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn addresses_parse_strictly() {
        assert_eq!(
            ListenerAddr::parse("unix:/run/a.sock").unwrap(),
            ListenerAddr::Unix("/run/a.sock".into())
        );
        assert_eq!(
            ListenerAddr::parse("vsock:1024").unwrap(),
            ListenerAddr::Vsock(1024)
        );
        for bad in [
            "vsock:0",
            "vsock:4294967295",
            "vsock:+5",
            "vsock:05",
            "vsock:",
            "unix:",
            "tcp:1",
            "vsock:1:2",
        ] {
            assert!(ListenerAddr::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(ListenerAddr::Vsock(7).to_string(), "vsock:7");
    }
}
