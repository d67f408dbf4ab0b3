//! `secllama-hostile-runner --listen ADDR --state DIR --swtpm-port P [--deny FILE]…
//! [--tmp-limit-mib N]`: a runner taken over by a
//! hostile model. Launched as the measured runner, it first tries, from inside the runner's
//! sandbox, everything issue 11 lists — reach the TPM (relay or swtpm, server or control
//! channel), see or read the agent, replace the listener, `ak.pub` or the logs, fill the host's
//! disk — and prints one line per attempt:
//!
//! ```text
//! ATTACK <name>: refused (<what stopped it>)
//! ATTACK <name>: SUCCEEDED (<what it got>)
//! ATTACKS DONE
//! ```
//!
//! Then it serves the deterministic Ollama-compatible runner of `secllama_tests::runner`, so the
//! enclave still answers through it. Every loop is bounded; every network attempt is on loopback.
#![allow(clippy::print_stdout, clippy::print_stderr)]
#![allow(unsafe_code)] // shmget(2) has no safe wrapper

use secllama_tests::runner::{Faults, serve};
use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

fn report(name: &str, outcome: Result<String, String>) {
    match outcome {
        Ok(refused) => println!("ATTACK {name}: refused ({refused})"),
        Err(got) => println!("ATTACK {name}: SUCCEEDED ({got})"),
    }
    let _ = std::io::stdout().flush();
}

/// Every loopback TCP port but our own: a listener there would be the agent's TPM relay or
/// anything else of the agent's or the host's.
fn scan_loopback(own: u16) -> Result<String, String> {
    let mut open = Vec::new();
    for port in 1..=u16::MAX {
        if port == own {
            continue;
        }
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        if let Ok(s) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) {
            // Scanning the ephemeral range, a connect can pick its own port as the source and
            // connect to itself (TCP simultaneous open): that is no listener.
            if s.local_addr().ok() != s.peer_addr().ok() {
                open.push(port);
            }
        }
    }
    if open.is_empty() {
        Ok("no loopback port but the runner's own answers".into())
    } else {
        Err(format!("open loopback ports {open:?}"))
    }
}

fn swtpm(port: u16) -> Result<String, String> {
    for p in [port, port.wrapping_add(1)] {
        for ip in ["127.0.0.1", "::1"] {
            let addr = SocketAddr::new(ip.parse().map_err(|e| format!("{e}"))?, p);
            if TcpStream::connect_timeout(&addr, Duration::from_millis(500)).is_ok() {
                return Err(format!("connected to the swtpm at {addr}"));
            }
        }
    }
    Ok("the swtpm's server and control ports are unreachable".into())
}

/// The host's files: each must be invisible (not mounted) and nothing may be created, renamed or
/// removed there.
fn state_files(state: &Path) -> Result<String, String> {
    let names = [
        "enclave.sock",
        "ak.pub",
        "ak.auth",
        "launch.log",
        "receipts.log",
        "tpm/tpm.sock",
        "tpm.ctrl.sock",
    ];
    for n in names {
        let p = state.join(n);
        if std::fs::symlink_metadata(&p).is_ok() {
            return Err(format!("{} is visible", p.display()));
        }
        if std::fs::remove_file(&p).is_ok() {
            return Err(format!("removed {}", p.display()));
        }
    }
    let planted = state.join("ak.pub.planted");
    if std::fs::write(&planted, b"planted").is_ok() {
        return Err(format!("created {}", planted.display()));
    }
    if std::fs::rename(&planted, state.join("ak.pub")).is_ok() {
        return Err("renamed a file over ak.pub".into());
    }
    if std::os::unix::net::UnixListener::bind(state.join("enclave.sock")).is_ok() {
        return Err("bound a socket at the listener's path".into());
    }
    Ok("none of ak.pub, ak.auth, the logs, the listener or the TPM socket is reachable".into())
}

/// The agent must not be visible: no process but ours and runner-init.
fn agent_process() -> Result<String, String> {
    let mut seen = Vec::new();
    let entries = std::fs::read_dir("/proc").map_err(|e| format!("/proc unreadable: {e}"))?;
    for e in entries.flatten().take(4096) {
        let name = e.file_name().to_string_lossy().to_string();
        if !name.chars().all(|c| c.is_ascii_digit()) {
            continue;
        }
        let cmdline = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
        let cmd = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if cmd.contains("--config") && !cmd.contains("runner-init") {
            let mem = std::fs::File::open(e.path().join("mem")).is_ok();
            return Err(format!("pid {name} ({cmd}) visible, mem readable: {mem}"));
        }
        seen.push(name);
    }
    Ok(format!(
        "only the runner's own processes are visible (pids {})",
        seen.join(",")
    ))
}

/// Files the runner must not read (the policy: its evaluation dataset).
fn hidden(paths: &[PathBuf]) -> Result<String, String> {
    for p in paths {
        if std::fs::read(p).is_ok() || std::fs::symlink_metadata(p).is_ok() {
            return Err(format!("{} is visible", p.display()));
        }
    }
    Ok(format!("{} file(s) not visible", paths.len()))
}

fn tpm_devices() -> Result<String, String> {
    for d in ["/dev/tpm0", "/dev/tpmrm0", "/dev/vhost-vsock", "/dev/vsock"] {
        if Path::new(d).exists() {
            return Err(format!("{d} exists"));
        }
    }
    Ok("no TPM or vsock device node".into())
}

/// Fill everything writable: only the private tmpfs takes data, and it is bounded.
fn disk(state: &Path, limit: u64) -> Result<String, String> {
    use std::os::unix::fs::MetadataExt;
    let private_tmp = std::fs::metadata("/tmp").map(|m| m.dev()).ok();
    for dir in [state.to_path_buf(), PathBuf::from("/"), own_dir()] {
        let p = dir.join("hostile-fill");
        if std::fs::write(&p, b"x").is_ok() {
            let dev = std::fs::metadata(&p).map(|m| m.dev()).ok();
            let _ = std::fs::remove_file(&p);
            // A folder of an artifact kept under the host's /tmp lies, in this view, inside the
            // sandbox's own private /tmp: writing there fills that bounded tmpfs, not the host.
            if dev.is_none() || dev != private_tmp {
                return Err(format!("wrote {} (not on the private /tmp)", p.display()));
            }
        }
    }
    let chunk = vec![0u8; 1 << 20];
    let mut written: u64 = 0;
    let mut n = 0;
    let stopped = loop {
        let p = PathBuf::from(format!("/tmp/fill-{n}"));
        n += 1;
        let r = std::fs::File::create(&p).and_then(|mut f| {
            for _ in 0..16 {
                f.write_all(&chunk)?;
                written += chunk.len() as u64;
            }
            Ok(())
        });
        if let Err(e) = r {
            break e.to_string();
        }
        if written > limit * 2 {
            break String::new();
        }
    };
    for i in 0..n {
        let _ = std::fs::remove_file(format!("/tmp/fill-{i}"));
    }
    if written > limit {
        Err(format!("wrote {written} bytes to /tmp, more than {limit}"))
    } else {
        Ok(format!(
            "writes stop at {} MiB in the private /tmp ({stopped}); the host's folders are read-only",
            written >> 20
        ))
    }
}

/// A System V shared-memory segment would outlive this process and count against no rlimit.
fn sysv_shm() -> Result<String, String> {
    // SAFETY: shmget only asks the kernel for a segment id; no memory is touched.
    let id = unsafe { libc::shmget(libc::IPC_PRIVATE, 64 << 20, libc::IPC_CREAT | 0o600) };
    if id >= 0 {
        // SAFETY: removing the segment just created, by its id.
        unsafe { libc::shmctl(id, libc::IPC_RMID, std::ptr::null_mut()) };
        return Err(format!("created System V segment {id}"));
    }
    Ok(format!("shmget: {}", std::io::Error::last_os_error()))
}

fn own_dir() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(Path::to_path_buf))
        .unwrap_or_else(|| PathBuf::from("/"))
}

fn main() -> std::process::ExitCode {
    let mut listen: SocketAddr = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
    let mut state = PathBuf::new();
    let mut swtpm_port = 0u16;
    let mut tmp_limit = 64u64 << 20;
    let mut deny = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let v = args.next().unwrap_or_default();
        let ok = match a.as_str() {
            "--listen" => v.parse().map(|v| listen = v).is_ok(),
            "--state" => {
                state = PathBuf::from(&v);
                true
            }
            "--swtpm-port" => v.parse().map(|v| swtpm_port = v).is_ok(),
            "--deny" => {
                deny.push(PathBuf::from(&v));
                true
            }
            "--tmp-limit-mib" => v.parse::<u64>().map(|v| tmp_limit = v << 20).is_ok(),
            _ => false,
        };
        if !ok {
            eprintln!("secllama-hostile-runner: bad argument {a} {v}");
            return std::process::ExitCode::from(2);
        }
    }
    report("tpm-relay-scan", scan_loopback(listen.port()));
    report("swtpm-channels", swtpm(swtpm_port));
    report("tpm-devices", tpm_devices());
    report("agent-memory", agent_process());
    report("host-files", state_files(&state));
    report("policy-dataset", hidden(&deny));
    report("disk-bound", disk(&state, tmp_limit));
    report("sysv-shm", sysv_shm());
    println!("ATTACKS DONE");
    let _ = std::io::stdout().flush();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("secllama-hostile-runner: {e}");
            return std::process::ExitCode::from(1);
        }
    };
    match rt.block_on(serve(listen, Faults::default(), |_| {})) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("secllama-hostile-runner: {e}");
            std::process::ExitCode::from(1)
        }
    }
}
