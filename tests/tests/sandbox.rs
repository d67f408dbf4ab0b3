//! Process-mode sandbox, end to end: `secllama_host::sandbox::spawn` starts
//! `secllama-sandbox-probe` confined, the probe reports what it sees from inside, and these tests
//! assert every promise of the sandbox against that report and against the host's view.
//!
//! Network checks use loopback only: the host listener is on 127.0.0.1, route checks are UDP
//! `connect()`s (which send nothing), and `AF_VSOCK`/`AF_PACKET` sockets are only created.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::ffi::OsString;
use std::io::{BufRead, BufReader, Read};
use std::net::TcpListener;
use std::os::unix::net::UnixStream;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use rustix::io::Errno;
use secllama_host::sandbox::{self, Limits, SandboxChild, SandboxError, SandboxSpec};
use serde_json::Value;

const BUILT_PROBE: &str = env!("CARGO_BIN_EXE_secllama-sandbox-probe");

/// The probe, copied outside /tmp: inside the sandbox /tmp is the private tmpfs, so an artifact
/// whose path lies under the host's /tmp (a checkout there) would sit in writable space and the
/// read-only checks around it would not mean what they say.
fn probe() -> &'static Path {
    static COPY: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    COPY.get_or_init(|| {
        let dir = tempfile::Builder::new()
            .prefix("secllama-sandbox-test-")
            .tempdir_in("/var/tmp")
            .unwrap()
            .keep();
        let to = dir.join("secllama-sandbox-probe");
        std::fs::copy(BUILT_PROBE, &to).unwrap();
        to
    })
}
const UID: u32 = 1000;
const GID: u32 = 1000;
const TMPFS: u64 = 32 << 20;
const LIMITS: Limits = Limits {
    address_space: 1 << 30,
    processes: 32,
    open_files: 64,
    file_size: 8 << 20,
};

/// The probe's loader and shared libraries, as `ldd` lists them (absolute paths only).
fn shared_libraries(program: &Path) -> Vec<PathBuf> {
    let out = std::process::Command::new("ldd")
        .arg(program)
        .output()
        .expect("ldd (Debian package libc-bin) must be installed");
    assert!(out.status.success(), "ldd {} failed", program.display());
    String::from_utf8(out.stdout)
        .unwrap()
        .split_whitespace()
        .filter(|t| t.starts_with('/'))
        .map(PathBuf::from)
        .collect()
}

fn spec(args: &[&str], socket_dir: Option<&Path>) -> SandboxSpec {
    let mut read_only = vec![probe().to_path_buf()];
    read_only.extend(shared_libraries(probe()));
    SandboxSpec {
        program: probe().to_path_buf(),
        args: args.iter().map(OsString::from).collect(),
        env: vec![(OsString::from("RUST_BACKTRACE"), OsString::from("1"))],
        read_only,
        writable_socket_dir: socket_dir.map(Path::to_path_buf),
        tmpfs_size: TMPFS,
        tmpfs_mode: 0o700,
        pass_fds: vec![],
        no_truncate: false,
        uid: UID,
        gid: GID,
        outside_ids: None,
        limits: LIMITS,
    }
}

/// Reads one line from the child's stdout, giving up after `timeout`.
fn first_line(child: &mut SandboxChild, timeout: Duration) -> String {
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    match rx.recv_timeout(timeout) {
        Ok(line) => line,
        Err(_) => {
            let mut err = String::new();
            if let Some(mut e) = child.stderr.take() {
                child.kill().unwrap();
                let _ = e.read_to_string(&mut err);
            }
            panic!("no line from the probe within {timeout:?}; stderr: {err}");
        }
    }
}

fn e(errno: Errno) -> i64 {
    i64::from(errno.raw_os_error())
}

fn errno(v: &Value) -> Option<i64> {
    v["errno"].as_i64()
}

fn assert_refused(v: &Value, what: &str) {
    assert_eq!(v["ok"], Value::Bool(false), "{what} must be refused: {v}");
}

fn assert_ok(v: &Value, what: &str) {
    assert_eq!(v["ok"], Value::Bool(true), "{what} must work: {v}");
}

#[test]
fn probe_sees_only_what_the_sandbox_allows() {
    let host_listener = TcpListener::bind("127.0.0.1:0").unwrap();
    host_listener.set_nonblocking(true).unwrap();
    let port = host_listener.local_addr().unwrap().port();
    let socket_dir = tempfile::tempdir().unwrap();
    let socket_dir_path = socket_dir.path().canonicalize().unwrap();

    // AF_VSOCK exists on this host (when it does) — so its refusal inside is the sandbox's doing.
    let host_vsock = rustix::net::socket(
        rustix::net::AddressFamily::VSOCK,
        rustix::net::SocketType::STREAM,
        None,
    )
    .is_ok();

    // A descriptor the launcher leaks (no O_CLOEXEC) must still not reach the sandbox.
    let leaked = rustix::fs::open(
        "/dev/zero",
        rustix::fs::OFlags::RDONLY,
        rustix::fs::Mode::empty(),
    )
    .unwrap();

    let port_arg = port.to_string();
    let socket_arg = socket_dir_path.to_str().unwrap().to_string();
    let mut child = sandbox::spawn(&spec(
        &[
            "report",
            "--host-port",
            &port_arg,
            "--socket-dir",
            &socket_arg,
        ],
        Some(&socket_dir_path),
    ))
    .expect("spawn the probe in the sandbox");
    drop(leaked);
    let landlock = child.landlock();
    assert!(landlock.abi >= 1, "Landlock ABI reported: {landlock:?}");

    let line = first_line(&mut child, Duration::from_secs(60));
    let report: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"));
    eprintln!("probe report: {report:#}");

    // The listener socket in the shared directory reaches the probe from the host.
    assert_ok(&report["socket_dir_bind"], "bind in the socket dir");
    let mut greeting = String::new();
    UnixStream::connect(socket_dir_path.join("probe.sock"))
        .unwrap()
        .read_to_string(&mut greeting)
        .unwrap();
    assert_eq!(greeting, "hello from the sandbox\n");
    let status = child.wait().unwrap();
    assert!(status.success(), "probe exit: {status:?}");

    // Only stdin (/dev/null), stdout and stderr (pipes) crossed execve; the one other entry is
    // the directory handle the probe used to list them.
    let fds = report["inherited_fds"].as_object().unwrap();
    assert_eq!(fds["0"], "/dev/null", "{fds:?}");
    assert!(fds["1"].as_str().unwrap().starts_with("pipe:"), "{fds:?}");
    assert!(fds["2"].as_str().unwrap().starts_with("pipe:"), "{fds:?}");
    let others: Vec<_> = fds
        .iter()
        .filter(|(k, _)| !["0", "1", "2"].contains(&k.as_str()))
        .collect();
    assert!(
        others.len() == 1 && others[0].1.as_str().unwrap().ends_with("/fd"),
        "unexpected inherited descriptors: {fds:?}"
    );

    // Identity: pid 1 of a new pid namespace, the requested non-root ids.
    assert_eq!(report["pid"], 1);
    assert_eq!(report["ppid"], 0);
    for key in ["uid", "euid"] {
        assert_eq!(report[key], UID, "{key}");
    }
    for key in ["gid", "egid"] {
        assert_eq!(report[key], GID, "{key}");
    }
    assert_eq!(report["hostname"], "secllama-sandbox");

    // Namespaces: every one differs from the test process's.
    for ns in ["user", "mnt", "pid", "net", "ipc", "uts", "cgroup"] {
        let ours = std::fs::read_link(format!("/proc/self/ns/{ns}")).unwrap();
        let theirs = report["namespaces"][ns].as_str().unwrap();
        assert_ne!(
            ours.display().to_string(),
            theirs,
            "{ns} namespace must be new"
        );
    }

    // Capabilities all empty, no_new_privs, seccomp filter mode with our two filters.
    let status_fields = &report["status"];
    for cap in ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"] {
        assert_eq!(
            status_fields[cap], "0000000000000000",
            "{cap}: {status_fields}"
        );
    }
    assert_eq!(status_fields["NoNewPrivs"], "1");
    assert_eq!(status_fields["Seccomp"], "2");
    assert_eq!(status_fields["Seccomp_filters"], "2");

    // Network: only lo, and it is up; nothing but loopback is routable.
    let interfaces = report["interfaces"].as_array().unwrap();
    assert_eq!(interfaces.len(), 1, "interfaces: {interfaces:?}");
    assert_eq!(interfaces[0]["name"], "lo");
    assert_eq!(interfaces[0]["up"], true);
    assert_eq!(interfaces[0]["loopback"], true);
    // IPv6 checks only where the host kernel has IPv6 at all (ipv6.disable=1 removes it).
    let host_ipv6 = std::net::UdpSocket::bind("[::1]:0").is_ok();
    let routes: &[&str] = if host_ipv6 {
        &["route_v4", "route_v6"]
    } else {
        eprintln!("IPv6 is disabled on this host: skipping the ::1 and 2001:db8::1 checks");
        &["route_v4"]
    };
    for route in routes {
        assert_refused(&report[route], route);
        assert_eq!(errno(&report[route]), Some(e(Errno::NETUNREACH)), "{route}");
    }
    assert_ok(&report["loopback_v4"], "TCP over 127.0.0.1 inside");
    if host_ipv6 {
        assert_ok(&report["loopback_v6"], "TCP over ::1 inside");
    }
    assert_refused(
        &report["host_tcp_connect"],
        "TCP to the host's 127.0.0.1 listener",
    );
    assert!(
        matches!(host_listener.accept(), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
        "the host listener must never see a connection"
    );

    // Sockets: vsock, packet and netlink refused by seccomp (EPERM); unix, inet, inet6 allowed.
    let sockets = &report["sockets"];
    for family in ["vsock", "packet", "netlink"] {
        assert_refused(&sockets[family], family);
        assert_eq!(errno(&sockets[family]), Some(e(Errno::PERM)), "{family}");
    }
    for family in ["unix", "inet", "inet6"] {
        if family == "inet6" && !host_ipv6 {
            continue;
        }
        assert_ok(&sockets[family], family);
    }
    eprintln!("AF_VSOCK socket creation on the host: {host_vsock}");

    // Files: read-only root and artifacts, writable /tmp and socket dir, nothing else.
    let files = &report["files"];
    assert_eq!(files["root_read_only"], true);
    assert_refused(&files["write_root"], "write to /");
    assert_refused(&files["mkdir_root"], "mkdir in /");
    assert_refused(&files["write_artifact_dir"], "write next to the artifact");
    assert_ok(&files["write_tmp"], "write in /tmp");
    assert_ok(&files["write_socket_dir"], "write in the socket dir");
    assert!(socket_dir_path.join("probe-file").exists());
    assert!(!probe().parent().unwrap().join("probe-write").exists());
    assert_refused(&files["write_proc_sys"], "write under /proc/sys");
    assert_refused(&files["read_shadow"], "read /etc/shadow");
    assert_refused(&files["read_passwd"], "read /etc/passwd");
    assert_eq!(errno(&files["read_shadow"]), Some(e(Errno::NOENT)));
    // Landlock: `/` is mounted and readable by mode bits, yet listing it is refused.
    assert_eq!(
        errno(&files["readdir_root"]),
        Some(e(Errno::ACCESS)),
        "{files}"
    );
    assert_eq!(
        errno(&files["readdir_dev"]),
        Some(e(Errno::ACCESS)),
        "{files}"
    );
    assert_ok(&files["read_self"], "read the artifact");
    assert_ok(&files["write_dev_null"], "write /dev/null");
    assert_ok(&files["read_urandom"], "read /dev/urandom");
    assert_eq!(files["tmp_bytes"], TMPFS);

    // The mount table holds only what the sandbox put there.
    let mounts: Vec<&str> = report["mounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m.as_str().unwrap())
        .collect();
    let mut allowed: Vec<String> = vec![
        "/",
        "/tmp",
        "/proc",
        "/dev/null",
        "/dev/zero",
        "/dev/urandom",
        "/dev/random",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    for p in spec(&[], None).read_only {
        allowed.push(p.canonicalize().unwrap().display().to_string());
    }
    allowed.push(socket_dir_path.display().to_string());
    for m in &mounts {
        assert!(
            allowed.iter().any(|a| a == m),
            "unexpected mount {m} (all: {mounts:?})"
        );
    }

    // Exec: only artifacts run.
    let exec = &report["exec"];
    assert_refused(&exec["host_sh"], "exec of the host's /bin/sh");
    assert_eq!(errno(&exec["host_sh"]), Some(e(Errno::NOENT)));
    assert_refused(&exec["tmp_copy"], "exec of a copy written to /tmp");
    assert_eq!(errno(&exec["tmp_copy"]), Some(e(Errno::ACCESS)), "{exec}");
    assert_ok(&exec["self_echo"], "exec of the artifact itself");
    assert_eq!(exec["self_echo"]["stdout"], "echo-ok");

    // Forbidden system calls.
    let syscalls = &report["syscalls"];
    for call in ["unshare_user", "mount_tmpfs", "chroot", "setuid_root"] {
        assert_refused(&syscalls[call], call);
        assert_eq!(errno(&syscalls[call]), Some(e(Errno::PERM)), "{call}");
    }

    // rlimits in force (soft = hard), and core dumps off.
    let rl = &report["rlimits"];
    for (name, value) in [
        ("as", LIMITS.address_space),
        ("nproc", LIMITS.processes),
        ("nofile", LIMITS.open_files),
        ("fsize", LIMITS.file_size),
        ("core", 0),
    ] {
        assert_eq!(rl[name], serde_json::json!([value, value]), "{name}");
    }
    let nofile = &report["nofile_enforced"];
    assert_eq!(errno(nofile), Some(e(Errno::MFILE)), "{nofile}");
    assert!(
        nofile["opened"].as_u64().unwrap() < LIMITS.open_files,
        "{nofile}"
    );
    let fsize = &report["fsize_enforced"];
    assert_eq!(errno(fsize), Some(e(Errno::FBIG)), "{fsize}");
    assert_eq!(fsize["size"], LIMITS.file_size, "{fsize}");
    assert_eq!(report["as_enforced"]["reserve_of_limit_refused"], true);
    // RLIMIT_NPROC: the kernel does not enforce it for processes whose real uid is the initial
    // namespace's root — which the sandbox is when the launcher runs as root, because inside ids
    // map to the launcher's. Asserted where it holds, reported where it cannot.
    let nproc = &report["nproc_observed"];
    if rustix::process::geteuid().is_root() {
        eprintln!("RLIMIT_NPROC not enforced for a root launcher (kernel exemption): {nproc}");
    } else {
        assert_eq!(errno(nproc), Some(e(Errno::AGAIN)), "{nproc}");
        assert!(
            nproc["started"].as_u64().unwrap() < LIMITS.processes,
            "{nproc}"
        );
    }
}

/// `pass_fds` hands exactly the given descriptors over as 3, 4, 5 — whatever their numbers in the
/// launcher — and nothing else; the setup's own report pipe (needed after the hand-over) is not
/// overwritten, so the spawn still reports success.
#[test]
fn passed_descriptors_arrive_as_3_4_5_and_nothing_else() {
    use std::io::Write;
    use std::sync::Arc;
    let dir = tempfile::tempdir().unwrap();
    let (rx, tx) = rustix::pipe::pipe().unwrap();
    std::fs::File::from(tx).write_all(b"handed").unwrap();
    let file = std::os::fd::OwnedFd::from(std::fs::File::create(dir.path().join("f")).unwrap());
    let folder = std::os::fd::OwnedFd::from(std::fs::File::open(dir.path()).unwrap());
    // An unrelated descriptor of the launcher stays behind.
    let _kept = std::fs::File::open(dir.path().join("f")).unwrap();
    let mut s = spec(&["fds"], None);
    s.pass_fds = vec![Arc::new(folder), Arc::new(rx), Arc::new(file)];
    let mut child = sandbox::spawn(&s).unwrap();
    let line = first_line(&mut child, Duration::from_secs(20));
    assert_eq!(line.trim(), "3=dir 4=fifo:handed 5=file 6=closed");
    child.wait().unwrap();
}

/// `no_truncate`: a file handed over for appending cannot be shortened (seccomp refuses
/// `ftruncate`), and appending still works; without it, `ftruncate` works (the control).
#[test]
fn no_truncate_keeps_a_handed_file_append_only() {
    use std::sync::Arc;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log");
    std::fs::write(&path, b"kept|").unwrap();
    for (no_truncate, says, left) in [
        (true, "ftruncate=errno 1 write=8", "kept|appended"),
        (false, "ftruncate=ok write=8", "appended"),
    ] {
        std::fs::write(&path, b"kept|").unwrap();
        let f = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        let mut s = spec(&["truncate"], None);
        s.pass_fds = vec![Arc::new(std::os::fd::OwnedFd::from(f))];
        s.no_truncate = no_truncate;
        let mut child = sandbox::spawn(&s).unwrap();
        let line = first_line(&mut child, Duration::from_secs(20));
        child.wait().unwrap();
        assert!(line.starts_with(says), "no_truncate={no_truncate}: {line}");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), left);
    }
}

#[test]
fn program_outside_read_only_cannot_run() {
    let mut s = spec(&[], None);
    s.program = PathBuf::from("/usr/bin/true");
    assert!(s.program.exists(), "/usr/bin/true exists on the host");
    match sandbox::spawn(&s) {
        Err(SandboxError::Exec { reason, .. }) => {
            assert_eq!(
                reason.raw_os_error(),
                Some(Errno::NOENT.raw_os_error()),
                "{reason}"
            );
        }
        Err(other) => panic!("expected an Exec error, got {other}"),
        Ok(_) => panic!("a program outside read_only must not start"),
    }
}

/// A root launcher maps the sandbox to an unprivileged host user: seen from the host, the
/// sandboxed process runs as that user, not as root. A launcher without CAP_SETUID may not ask.
#[test]
fn outside_ids_map_to_an_unprivileged_host_user() {
    let mut s = spec(&["sleep"], None);
    s.outside_ids = Some((65534, 65534));
    if !rustix::process::geteuid().is_root() {
        let err = sandbox::spawn(&s).unwrap_err();
        assert!(err.to_string().contains("outside_ids"), "{err}");
        return;
    }
    let mut child = sandbox::spawn(&s).unwrap();
    let line = first_line(&mut child, Duration::from_secs(30));
    assert!(line.starts_with("ready"), "{line}");
    let status = std::fs::read_to_string(format!("/proc/{}/status", child.id())).unwrap();
    let ids = |key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .map(|v| v.split_whitespace().collect::<Vec<_>>())
            .unwrap()
    };
    assert_eq!(ids("Uid:"), ["65534"; 4], "{status}");
    assert_eq!(ids("Gid:"), ["65534"; 4], "{status}");
    child.kill().unwrap();
    child.wait().unwrap();

    s.outside_ids = Some((0, 0));
    let err = sandbox::spawn(&s).unwrap_err();
    assert!(err.to_string().contains("non-root host ids"), "{err}");
}

#[test]
fn kill_reaps_the_whole_sandbox() {
    let mut child = sandbox::spawn(&spec(&["sleep"], None)).unwrap();
    let line = first_line(&mut child, Duration::from_secs(30));
    assert!(line.starts_with("ready"), "{line}");
    let pid = child.id();

    // The probe's own child, seen from the host.
    let children_file = format!("/proc/{pid}/task/{pid}/children");
    let grandchildren: Vec<u32> = std::fs::read_to_string(&children_file)
        .map(|s| s.split_whitespace().map(|p| p.parse().unwrap()).collect())
        .unwrap_or_default();
    eprintln!("sandbox pid {pid}, its children on the host: {grandchildren:?}");
    if grandchildren.is_empty() {
        eprintln!(
            "{children_file} is empty or missing (CONFIG_PROC_CHILDREN?): grandchild check skipped"
        );
    }

    child.kill().unwrap();
    let status = child.wait().unwrap();
    assert_eq!(
        status.signal(),
        Some(rustix::process::Signal::KILL.as_raw()),
        "{status:?}"
    );
    assert!(
        !Path::new(&format!("/proc/{pid}")).exists(),
        "pid {pid} reaped"
    );

    // Killing pid 1 of the namespace ends every process in it.
    let deadline = Instant::now() + Duration::from_secs(10);
    for gc in grandchildren {
        while Path::new(&format!("/proc/{gc}")).exists() {
            // A reused pid would belong to another process; only ours has our probe as exe.
            let exe = std::fs::read_link(format!("/proc/{gc}/exe")).ok();
            if exe.as_deref() != Some(probe()) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "sandbox grandchild {gc} outlived the kill"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    // kill after reaping is a no-op, never a signal to a recycled pid.
    child.kill().unwrap();
}

#[test]
fn spec_errors_name_the_field() {
    let mut s = spec(&[], None);
    s.uid = 0;
    let err = sandbox::spawn(&s).err().unwrap();
    assert!(
        matches!(&err, SandboxError::InvalidSpec { field, .. } if field == "uid"),
        "{err}"
    );

    let mut s = spec(&[], None);
    s.read_only.push(PathBuf::from("/proc/self"));
    let err = sandbox::spawn(&s).err().unwrap();
    assert!(err.to_string().contains("read_only"), "{err}");

    let mut s = spec(&[], None);
    s.read_only.push(PathBuf::from("relative/path"));
    let err = sandbox::spawn(&s).err().unwrap();
    assert!(err.to_string().contains("absolute"), "{err}");

    let mut s = spec(&[], None);
    s.limits.open_files = 0;
    let err = sandbox::spawn(&s).err().unwrap();
    assert!(err.to_string().contains("RLIMIT_NOFILE"), "{err}");
}
