//! Where the agent reaches the runner: a loopback TCP address (the agent and the runner share a
//! network namespace: development, or a runner the agent starts itself), or a unix socket inside
//! the runner's own sandbox, reached through a directory descriptor the launcher handed over
//! (process mode, docs/isolation.md).
//!
//! The runner owns that directory, so every connection resolves the socket name beneath the
//! descriptor with `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS |
//! RESOLVE_NO_XDEV)` and connects through the resulting `O_PATH` descriptor: a runner that puts a
//! symlink or anything else in place of its socket cannot point the agent at another socket in
//! the agent's own view (its TPM channel, say).

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The socket the runner's sandbox serves the Ollama API on, in the directory handed to the
/// agent (the sandbox's `/tmp`): the runner itself when it listens there, else
/// `secllama-enclave runner-init`'s relay to the runner's loopback port.
pub const RUNNER_SOCKET: &str = "secllama-runner.sock";

/// How to reach the runner.
#[derive(Debug, Clone)]
pub enum RunnerAddr {
    /// `host:port` on loopback in the agent's own network namespace.
    Tcp(String),
    /// A unix socket named `name` beneath a directory descriptor.
    Dir {
        /// The directory (an `O_PATH` or ordinary directory descriptor).
        dir: Arc<OwnedFd>,
        /// The socket's name in it (one path component).
        name: String,
    },
}

impl std::fmt::Display for RunnerAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RunnerAddr::Tcp(a) => f.write_str(a),
            RunnerAddr::Dir { name, .. } => write!(f, "the runner sandbox's socket {name}"),
        }
    }
}

impl RunnerAddr {
    /// The value of the `Host` header for requests to the runner.
    pub fn host(&self) -> &str {
        match self {
            RunnerAddr::Tcp(a) => a,
            RunnerAddr::Dir { .. } => "localhost",
        }
    }

    /// A new connection.
    pub async fn connect(&self) -> io::Result<RunnerStream> {
        match self {
            RunnerAddr::Tcp(a) => {
                let s = tokio::net::TcpStream::connect(a).await?;
                let _ = s.set_nodelay(true);
                Ok(RunnerStream::Tcp(s))
            }
            RunnerAddr::Dir { dir, name } => {
                let socket = beneath(dir, name)?;
                let path = format!("/proc/self/fd/{}", socket.as_raw_fd());
                let s = tokio::net::UnixStream::connect(path).await;
                drop(socket);
                Ok(RunnerStream::Unix(s?))
            }
        }
    }
}

/// Opens `name` beneath `dir` as an `O_PATH` descriptor of a unix socket, refusing symlinks,
/// magic links, other mounts, `..` and anything that is not a socket.
fn beneath(dir: &OwnedFd, name: &str) -> io::Result<OwnedFd> {
    use rustix::fs::{FileType, Mode, OFlags, ResolveFlags};
    if name.is_empty() || name.contains('/') || name == "." || name == ".." {
        return Err(io::Error::other(format!(
            "runner socket name: expected one path component, found {name:?}"
        )));
    }
    let fd = rustix::fs::openat2(
        dir,
        name,
        OFlags::PATH | OFlags::CLOEXEC | OFlags::NOFOLLOW,
        Mode::empty(),
        ResolveFlags::BENEATH
            | ResolveFlags::NO_SYMLINKS
            | ResolveFlags::NO_MAGICLINKS
            | ResolveFlags::NO_XDEV,
    )?;
    let st = rustix::fs::fstat(&fd)?;
    let kind = FileType::from_raw_mode(st.st_mode);
    if kind != FileType::Socket {
        return Err(io::Error::other(format!(
            "runner socket {name}: expected a unix socket, found {kind:?}"
        )));
    }
    Ok(fd)
}

/// A connection to the runner.
#[derive(Debug)]
pub enum RunnerStream {
    /// Over loopback TCP.
    Tcp(tokio::net::TcpStream),
    /// Over a unix socket.
    Unix(tokio::net::UnixStream),
}

impl AsyncRead for RunnerStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            RunnerStream::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            RunnerStream::Unix(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for RunnerStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            RunnerStream::Tcp(s) => Pin::new(s).poll_write(cx, buf),
            RunnerStream::Unix(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            RunnerStream::Tcp(s) => Pin::new(s).poll_flush(cx),
            RunnerStream::Unix(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            RunnerStream::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            RunnerStream::Unix(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[tokio::test]
    async fn connects_beneath_the_directory_and_refuses_symlinks_and_other_files() {
        let d = tempfile::tempdir().unwrap();
        let listener = std::os::unix::net::UnixListener::bind(d.path().join("ok.sock")).unwrap();
        std::os::unix::fs::symlink(d.path().join("ok.sock"), d.path().join("link.sock")).unwrap();
        std::fs::write(d.path().join("file"), b"x").unwrap();
        let dir = Arc::new(OwnedFd::from(std::fs::File::open(d.path()).unwrap()));
        let at = |name: &str| RunnerAddr::Dir {
            dir: dir.clone(),
            name: name.into(),
        };
        at("ok.sock").connect().await.unwrap();
        assert!(listener.accept().is_ok());
        for (name, says) in [
            ("link.sock", ""),
            ("file", "expected a unix socket"),
            ("../x", "one path component"),
            ("missing", ""),
        ] {
            let e = at(name).connect().await.unwrap_err().to_string();
            assert!(e.contains(says), "{name}: {e}");
        }
    }
}
