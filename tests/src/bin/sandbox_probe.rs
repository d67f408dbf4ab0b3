//! `secllama-sandbox-probe`: runs INSIDE the process-mode sandbox and prints one JSON object with
//! what it observes — identity, capabilities, `NoNewPrivs`/`Seccomp` status, namespaces, network
//! interfaces and routes, which sockets it may create, which files it may read, write and execute,
//! the rlimits in force — so `tests/tests/sandbox.rs` can assert the confinement from the outside.
//!
//! Network checks stay on loopback: routes to 192.0.2.1 and 2001:db8::1 (documentation prefixes)
//! are asked of the kernel with a UDP `connect()`, which sends nothing; `AF_VSOCK` and
//! `AF_PACKET` sockets are only created, never connected or used. Every loop is bounded.
//!
//! Modes:
//! - `report [--host-port PORT] [--socket-dir DIR]`: print the JSON report; with `--socket-dir`,
//!   then accept one connection on `DIR/probe.sock` (for at most 20 s) and answer `hello from the
//!   sandbox\n`.
//! - `sleep`: start one child (`sleep-child`), print `ready`, sleep at most 60 s.
//! - `sleep-child`: sleep at most 60 s.
//! - `echo`: print `echo-ok`.
//! - `truncate`: try `ftruncate(3, 0)` and a write to descriptor 3; print both results.
//! - `fds`: print, on one line, what descriptors 3 to 6 are: `fifo:<what it read>`, `file`, `dir`,
//!   `socket`, `other` or `closed`.
//!
//! This binary allows `unsafe_code` for two calls no safe API offers: the `SIOCGIFFLAGS` ioctl
//! (interface flags; `getifaddrs` needs the `AF_NETLINK` socket the sandbox refuses) and ignoring
//! `SIGXFSZ` so that exceeding `RLIMIT_FSIZE` shows up as `EFBIG` instead of killing the probe.

#![allow(unsafe_code)]
#![allow(clippy::print_stdout)]

use std::collections::BTreeMap;
use std::error::Error;
use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rustix::net::{AddressFamily, SocketType};
use rustix::process::Resource;
use serde_json::{Value, json};

type Result<T> = std::result::Result<T, Box<dyn Error>>;

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("report") => report(&args[1..]),
        Some("sleep") => sleep_with_child(),
        Some("sleep-child") => {
            bounded_sleep(Duration::from_secs(60));
            Ok(())
        }
        Some("echo") => {
            println!("echo-ok");
            Ok(())
        }
        Some("fds") => {
            fds();
            Ok(())
        }
        Some("truncate") => {
            // SAFETY: descriptor 3 was handed over by the test for this.
            let b = unsafe { std::os::fd::BorrowedFd::borrow_raw(3) };
            let t = rustix::fs::ftruncate(b, 0)
                .map_or_else(|e| format!("errno {}", e.raw_os_error()), |()| "ok".into());
            let w = rustix::io::write(b, b"appended")
                .map_or_else(|e| format!("errno {}", e.raw_os_error()), |n| n.to_string());
            println!("ftruncate={t} write={w}");
            Ok(())
        }
        other => {
            Err(format!("usage: secllama-sandbox-probe report|sleep|echo (got {other:?})").into())
        }
    }
}

fn fds() {
    use rustix::fs::FileType;
    let mut out = Vec::new();
    for fd in 3..=6 {
        // SAFETY: fstat only reads the descriptor table; a closed number gives EBADF.
        let b = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
        let what = match rustix::fs::fstat(b) {
            Err(_) => "closed".to_string(),
            Ok(st) => match FileType::from_raw_mode(st.st_mode) {
                FileType::Fifo => {
                    let mut buf = [0u8; 64];
                    let n = rustix::io::read(b, &mut buf).unwrap_or(0);
                    format!("fifo:{}", String::from_utf8_lossy(&buf[..n]))
                }
                FileType::RegularFile => "file".into(),
                FileType::Directory => "dir".into(),
                FileType::Socket => "socket".into(),
                _ => "other".into(),
            },
        };
        out.push(format!("{fd}={what}"));
    }
    println!("{}", out.join(" "));
}

fn bounded_sleep(total: Duration) {
    let start = Instant::now();
    while start.elapsed() < total {
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn sleep_with_child() -> Result<()> {
    let exe = std::env::current_exe()?;
    let mut child = Command::new(exe)
        .arg("sleep-child")
        .stdin(Stdio::null())
        .spawn()?;
    println!("ready {}", child.id());
    io::stdout().flush()?;
    bounded_sleep(Duration::from_secs(60));
    let _ = child.kill();
    let _ = child.wait();
    Ok(())
}

/// `{"ok": true}` or `{"ok": false, "errno": N, "error": "..."}`.
fn outcome<T>(result: io::Result<T>) -> Value {
    match result {
        Ok(_) => json!({"ok": true}),
        Err(e) => json!({"ok": false, "errno": e.raw_os_error(), "error": e.to_string()}),
    }
}

fn errno_outcome<T>(result: rustix::io::Result<T>) -> Value {
    outcome(result.map_err(io::Error::from))
}

fn flag<'a>(args: &'a [String], name: &str) -> Option<&'a str> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map(String::as_str)
}

fn report(args: &[String]) -> Result<()> {
    let host_port: Option<u16> = flag(args, "--host-port").map(str::parse).transpose()?;
    let socket_dir = flag(args, "--socket-dir").map(PathBuf::from);

    let mut out = serde_json::Map::new();
    // First, before the probe opens anything: the descriptors it inherited.
    out.insert("inherited_fds".into(), inherited_fds());
    out.insert("pid".into(), json!(std::process::id()));
    out.insert(
        "ppid".into(),
        json!(rustix::process::getppid().map_or(0, |p| p.as_raw_nonzero().get())),
    );
    out.insert("uid".into(), json!(rustix::process::getuid().as_raw()));
    out.insert("euid".into(), json!(rustix::process::geteuid().as_raw()));
    out.insert("gid".into(), json!(rustix::process::getgid().as_raw()));
    out.insert("egid".into(), json!(rustix::process::getegid().as_raw()));
    out.insert(
        "groups".into(),
        json!(
            rustix::process::getgroups()
                .map(|g| g.iter().map(|g| g.as_raw()).collect::<Vec<_>>())
                .unwrap_or_default()
        ),
    );
    out.insert("status".into(), proc_status());
    out.insert("namespaces".into(), namespaces());
    out.insert(
        "hostname".into(),
        json!(rustix::system::uname().nodename().to_string_lossy()),
    );
    out.insert("mounts".into(), mounts());
    out.insert(
        "cgroup".into(),
        json!(std::fs::read_to_string("/proc/self/cgroup").ok()),
    );

    // Network.
    out.insert("interfaces".into(), interfaces());
    out.insert(
        "route_v4".into(),
        udp_route_query(SocketAddr::from((Ipv4Addr::new(192, 0, 2, 1), 9))),
    );
    out.insert(
        "route_v6".into(),
        udp_route_query(SocketAddr::from((
            Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1),
            9,
        ))),
    );
    out.insert("loopback_v4".into(), loopback_self_connect("127.0.0.1:0"));
    out.insert("loopback_v6".into(), loopback_self_connect("[::1]:0"));
    if let Some(port) = host_port {
        out.insert(
            "host_tcp_connect".into(),
            outcome(TcpStream::connect_timeout(
                &SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
                Duration::from_secs(2),
            )),
        );
    }
    let mut sockets = serde_json::Map::new();
    for (name, family, kind) in [
        ("vsock", AddressFamily::VSOCK, SocketType::STREAM),
        ("packet", AddressFamily::PACKET, SocketType::RAW),
        ("netlink", AddressFamily::NETLINK, SocketType::RAW),
        ("unix", AddressFamily::UNIX, SocketType::STREAM),
        ("inet", AddressFamily::INET, SocketType::DGRAM),
        ("inet6", AddressFamily::INET6, SocketType::DGRAM),
    ] {
        // Creating a socket sends nothing; these are dropped unused.
        sockets.insert(
            name.into(),
            errno_outcome(rustix::net::socket(family, kind, None)),
        );
    }
    out.insert("sockets".into(), Value::Object(sockets));

    // Files.
    let exe = std::env::current_exe()?;
    let exe_dir = exe.parent().unwrap_or(Path::new("/")).to_path_buf();
    let mut files = serde_json::Map::new();
    files.insert(
        "write_root".into(),
        outcome(std::fs::write("/probe-write", b"x")),
    );
    files.insert(
        "write_artifact_dir".into(),
        outcome(std::fs::write(exe_dir.join("probe-write"), b"x")),
    );
    files.insert(
        "write_tmp".into(),
        outcome(
            std::fs::write("/tmp/probe-write", b"hello")
                .and_then(|()| std::fs::read("/tmp/probe-write"))
                .and_then(|b| {
                    if b == b"hello" {
                        Ok(())
                    } else {
                        Err(io::Error::other("read back differs"))
                    }
                }),
        ),
    );
    files.insert(
        "mkdir_root".into(),
        outcome(std::fs::create_dir("/probe-dir")),
    );
    // A sysctl of the sandbox's own UTS namespace: harmless if it worked, but the sandboxed
    // process may own /proc/sys files by uid, so /proc must refuse writes as a whole.
    files.insert(
        "write_proc_sys".into(),
        outcome(std::fs::write("/proc/sys/kernel/hostname", b"probe")),
    );
    files.insert("read_shadow".into(), outcome(std::fs::read("/etc/shadow")));
    files.insert("read_passwd".into(), outcome(std::fs::read("/etc/passwd")));
    files.insert("readdir_root".into(), outcome(std::fs::read_dir("/")));
    files.insert("readdir_dev".into(), outcome(std::fs::read_dir("/dev")));
    files.insert("read_self".into(), outcome(std::fs::read(&exe)));
    files.insert(
        "write_dev_null".into(),
        outcome(
            std::fs::OpenOptions::new()
                .write(true)
                .open("/dev/null")
                .and_then(|mut f| f.write_all(b"x")),
        ),
    );
    files.insert(
        "read_urandom".into(),
        outcome(std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut [0u8; 16]))),
    );
    if let Some(dir) = &socket_dir {
        files.insert(
            "write_socket_dir".into(),
            outcome(std::fs::write(dir.join("probe-file"), b"x")),
        );
    }
    let root = rustix::fs::statvfs("/").map_err(io::Error::from)?;
    files.insert(
        "root_read_only".into(),
        json!(root.f_flag.contains(rustix::fs::StatVfsMountFlags::RDONLY)),
    );
    let tmp = rustix::fs::statvfs("/tmp").map_err(io::Error::from)?;
    files.insert("tmp_bytes".into(), json!(tmp.f_blocks * tmp.f_frsize));
    out.insert("files".into(), Value::Object(files));

    // Exec.
    let mut exec = serde_json::Map::new();
    exec.insert(
        "host_sh".into(),
        spawn_outcome(Path::new("/bin/sh"), &["-c", "true"]),
    );
    exec.insert("tmp_copy".into(), exec_tmp_copy(&exe));
    exec.insert("self_echo".into(), self_echo(&exe));
    out.insert("exec".into(), Value::Object(exec));

    // System calls the seccomp allow-list refuses (each would fail anyway without capabilities;
    // /proc/self/status "Seccomp: 2" is what shows the filter).
    let mut syscalls = serde_json::Map::new();
    syscalls.insert(
        "unshare_user".into(),
        outcome(
            nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWUSER).map_err(io::Error::from),
        ),
    );
    syscalls.insert(
        "mount_tmpfs".into(),
        errno_outcome(rustix::mount::mount(
            "none",
            "/tmp",
            "tmpfs",
            rustix::mount::MountFlags::empty(),
            None,
        )),
    );
    syscalls.insert(
        "chroot".into(),
        errno_outcome(rustix::process::chroot("/tmp")),
    );
    syscalls.insert(
        "setuid_root".into(),
        errno_outcome(rustix::thread::set_thread_uid(rustix::process::Uid::ROOT)),
    );
    out.insert("syscalls".into(), Value::Object(syscalls));

    // Limits.
    let mut rlimits = serde_json::Map::new();
    for (name, resource) in [
        ("as", Resource::As),
        ("nproc", Resource::Nproc),
        ("nofile", Resource::Nofile),
        ("fsize", Resource::Fsize),
        ("core", Resource::Core),
    ] {
        let limit = rustix::process::getrlimit(resource);
        rlimits.insert(name.into(), json!([limit.current, limit.maximum]));
    }
    out.insert("rlimits".into(), Value::Object(rlimits));
    out.insert("nofile_enforced".into(), nofile_enforced());
    out.insert("fsize_enforced".into(), fsize_enforced());
    out.insert("as_enforced".into(), as_enforced());
    out.insert("nproc_observed".into(), nproc_observed());

    // The listener socket in the shared directory.
    let listener = match &socket_dir {
        Some(dir) => {
            let path = dir.join("probe.sock");
            let _ = std::fs::remove_file(&path);
            match UnixListener::bind(&path) {
                Ok(listener) => {
                    out.insert("socket_dir_bind".into(), json!({"ok": true}));
                    Some(listener)
                }
                Err(e) => {
                    out.insert("socket_dir_bind".into(), outcome::<()>(Err(e)));
                    None
                }
            }
        }
        None => None,
    };

    println!("{}", Value::Object(out));
    io::stdout().flush()?;

    if let Some(listener) = listener {
        serve_once(&listener)?;
    }
    Ok(())
}

/// Open descriptors and what they point to (the directory handle used to list them included).
fn inherited_fds() -> Value {
    let mut map = BTreeMap::new();
    if let Ok(entries) = std::fs::read_dir("/proc/self/fd") {
        for entry in entries.flatten() {
            let target = std::fs::read_link(entry.path())
                .map(|p| p.display().to_string())
                .unwrap_or_else(|e| format!("error: {e}"));
            map.insert(entry.file_name().to_string_lossy().into_owned(), target);
        }
    }
    json!(map)
}

fn proc_status() -> Value {
    let text = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let mut map = BTreeMap::new();
    for line in text.lines() {
        if let Some((key, value)) = line.split_once(':') {
            if key.starts_with("Cap") || key.starts_with("Seccomp") || key == "NoNewPrivs" {
                map.insert(key.to_string(), value.trim().to_string());
            }
        }
    }
    json!(map)
}

fn namespaces() -> Value {
    let mut map = BTreeMap::new();
    for ns in ["user", "mnt", "pid", "net", "ipc", "uts", "cgroup"] {
        let link = std::fs::read_link(format!("/proc/self/ns/{ns}"))
            .map(|p| p.display().to_string())
            .unwrap_or_else(|e| format!("error: {e}"));
        map.insert(ns, link);
    }
    json!(map)
}

fn mounts() -> Value {
    let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let points: Vec<String> = text
        .lines()
        .filter_map(|l| l.split(' ').nth(4).map(str::to_string))
        .collect();
    json!(points)
}

/// Layout of `struct ifreq` for `SIOCGIFFLAGS`: 16-byte name, then the flags in the 24-byte union.
#[repr(C)]
struct IfReqFlags {
    name: [u8; 16],
    flags: i16,
    _pad: [u8; 22],
}

const SIOCGIFFLAGS: u32 = 0x8913;
const IFF_UP: i16 = 0x1;
const IFF_LOOPBACK: i16 = 0x8;

fn interfaces() -> Value {
    let sock = match rustix::net::socket(AddressFamily::INET, SocketType::DGRAM, None) {
        Ok(s) => s,
        Err(e) => return json!({"error": e.to_string()}),
    };
    let mut list = Vec::new();
    // Interface indices in a fresh namespace are small; 64 is a generous bound.
    for index in 1..=64u32 {
        let Ok(name) = rustix::net::netdevice::index_to_name(&sock, index) else {
            continue;
        };
        let mut req = IfReqFlags {
            name: [0; 16],
            flags: 0,
            _pad: [0; 22],
        };
        let bytes = name.as_bytes();
        let n = bytes.len().min(15);
        req.name[..n].copy_from_slice(&bytes[..n]);
        // SAFETY: SIOCGIFFLAGS reads the NUL-terminated name and writes the 16-bit flags inside
        // the 40-byte `struct ifreq` layout that `IfReqFlags` reproduces; `req` outlives the call.
        let flags = unsafe {
            let ioctl = rustix::ioctl::Updater::<{ SIOCGIFFLAGS }, IfReqFlags>::new(&mut req);
            rustix::ioctl::ioctl(&sock, ioctl)
        }
        .map(|()| req.flags);
        list.push(match flags {
            Ok(flags) => json!({
                "index": index, "name": name,
                "up": flags & IFF_UP != 0, "loopback": flags & IFF_LOOPBACK != 0,
            }),
            Err(e) => json!({"index": index, "name": name, "error": e.to_string()}),
        });
    }
    json!(list)
}

/// Asks the kernel for a route by connecting a UDP socket (which sends nothing).
fn udp_route_query(target: SocketAddr) -> Value {
    let bind = if target.is_ipv4() {
        "0.0.0.0:0"
    } else {
        "[::]:0"
    };
    let mut v = outcome(UdpSocket::bind(bind).and_then(|s| s.connect(target)));
    if let Value::Object(m) = &mut v {
        m.insert("target".into(), json!(target.to_string()));
    }
    v
}

fn loopback_self_connect(bind: &str) -> Value {
    outcome(TcpListener::bind(bind).and_then(|l| {
        let addr = l.local_addr()?;
        let mut client = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
        let (mut server, _) = l.accept()?;
        client.write_all(b"ping")?;
        let mut buf = [0u8; 4];
        server.read_exact(&mut buf)?;
        if &buf == b"ping" {
            Ok(())
        } else {
            Err(io::Error::other("loopback echo differs"))
        }
    }))
}

fn spawn_outcome(program: &Path, args: &[&str]) -> Value {
    let spawned = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
    match spawned {
        Ok(mut child) => {
            // Unexpected: it started. Report it and clean up.
            let _ = child.kill();
            let _ = child.wait();
            json!({"ok": true})
        }
        Err(e) => outcome::<()>(Err(e)),
    }
}

/// Copies this (executable) binary to /tmp and tries to run the copy.
fn exec_tmp_copy(exe: &Path) -> Value {
    let copy = Path::new("/tmp/probe-copy");
    let prepared = std::fs::copy(exe, copy)
        .and_then(|_| std::fs::set_permissions(copy, std::fs::Permissions::from_mode(0o755)));
    if let Err(e) = prepared {
        return json!({"ok": false, "prepare_error": e.to_string(), "errno": e.raw_os_error()});
    }
    spawn_outcome(copy, &["echo"])
}

fn self_echo(exe: &Path) -> Value {
    let output = Command::new(exe).arg("echo").stdin(Stdio::null()).output();
    match output {
        Ok(o) => json!({
            "ok": o.status.success(),
            "stdout": String::from_utf8_lossy(&o.stdout).trim(),
        }),
        Err(e) => outcome::<()>(Err(e)),
    }
}

fn nofile_enforced() -> Value {
    let limit = rustix::process::getrlimit(Resource::Nofile)
        .current
        .unwrap_or(u64::MAX);
    let bound = limit.saturating_add(16).min(4096);
    let mut files = Vec::new();
    let mut error = None;
    for _ in 0..bound {
        match std::fs::File::open("/dev/null") {
            Ok(f) => files.push(f),
            Err(e) => {
                error = e.raw_os_error();
                break;
            }
        }
    }
    json!({"opened": files.len(), "errno": error})
}

fn fsize_enforced() -> Value {
    let limit = rustix::process::getrlimit(Resource::Fsize)
        .current
        .unwrap_or(u64::MAX);
    if limit > 64 << 20 {
        return json!({"skipped": "limit above 64 MiB"});
    }
    // SAFETY: SIG_IGN installs no handler; it only turns the SIGXFSZ that exceeding
    // RLIMIT_FSIZE raises into an EFBIG error from write().
    let ignored = unsafe {
        nix::sys::signal::signal(
            nix::sys::signal::Signal::SIGXFSZ,
            nix::sys::signal::SigHandler::SigIgn,
        )
    };
    if let Err(e) = ignored {
        return json!({"error": e.to_string()});
    }
    let path = Path::new("/tmp/probe-big");
    let result = std::fs::File::create(path).and_then(|mut f| {
        let chunk = vec![0u8; 64 << 10];
        let mut written = 0u64;
        while written <= limit {
            f.write_all(&chunk)?;
            written += chunk.len() as u64;
        }
        Ok(())
    });
    let size = std::fs::metadata(path).map(|m| m.len()).ok();
    let _ = std::fs::remove_file(path);
    let mut v = outcome(result);
    if let Value::Object(m) = &mut v {
        m.insert("size".into(), json!(size));
    }
    v
}

fn as_enforced() -> Value {
    let limit = rustix::process::getrlimit(Resource::As)
        .current
        .unwrap_or(u64::MAX);
    if limit == u64::MAX {
        return json!({"skipped": "unlimited"});
    }
    let mut v: Vec<u8> = Vec::new();
    let refused = v.try_reserve_exact(limit as usize).is_err();
    json!({"reserve_of_limit_refused": refused})
}

/// Starts threads (bounded) until the kernel refuses one; reports how many started.
fn nproc_observed() -> Value {
    let limit = rustix::process::getrlimit(Resource::Nproc)
        .current
        .unwrap_or(u64::MAX);
    if limit > 256 {
        return json!({"skipped": "limit above 256"});
    }
    let attempts = limit + 16;
    let (stop_tx, stop_rx) = std::sync::mpsc::channel::<()>();
    let stop_rx = std::sync::Arc::new(std::sync::Mutex::new(stop_rx));
    let mut handles = Vec::new();
    let mut error = None;
    for _ in 0..attempts {
        let rx = std::sync::Arc::clone(&stop_rx);
        let spawned = std::thread::Builder::new()
            .stack_size(64 << 10)
            .spawn(move || {
                if let Ok(rx) = rx.lock() {
                    let _ = rx.recv_timeout(Duration::from_secs(10));
                }
            });
        match spawned {
            Ok(h) => handles.push(h),
            Err(e) => {
                error = e.raw_os_error();
                break;
            }
        }
    }
    let started = handles.len();
    drop(stop_tx);
    for h in handles {
        let _ = h.join();
    }
    json!({"attempted": attempts, "started": started, "errno": error})
}

fn serve_once(listener: &UnixListener) -> Result<()> {
    listener.set_nonblocking(true)?;
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        match listener.accept() {
            Ok((mut stream, _)) => {
                stream.set_nonblocking(false)?;
                stream.write_all(b"hello from the sandbox\n")?;
                return Ok(());
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(e) => return Err(e.into()),
        }
    }
    Err("nobody connected to the socket within 20 s".into())
}
