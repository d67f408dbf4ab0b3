//! Namespaces: the preflight check for user namespaces, the `clone` into new user, mount, pid,
//! network, IPC, UTS and cgroup namespaces, the uid/gid maps the parent writes, and — in the child —
//! bringing the new network namespace's `lo` up and naming the new UTS namespace.

use std::fs;
use std::io;

use nix::sched::CloneFlags;
use rustix::process::Pid;

use super::child::StepFailure;
use super::error::{SandboxError, SetupStep};

/// The hostname inside the sandbox.
const HOSTNAME: &[u8] = b"secllama-sandbox";

fn clone_flags() -> CloneFlags {
    CloneFlags::CLONE_NEWUSER
        | CloneFlags::CLONE_NEWNS
        | CloneFlags::CLONE_NEWPID
        | CloneFlags::CLONE_NEWNET
        | CloneFlags::CLONE_NEWIPC
        | CloneFlags::CLONE_NEWUTS
        | CloneFlags::CLONE_NEWCGROUP
}

fn read_sysctl(path: &str) -> Option<i64> {
    fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// Fails with the sysctl to set when this kernel does not let us create a user namespace.
pub(super) fn check_user_namespaces() -> Result<(), SandboxError> {
    if !std::path::Path::new("/proc/self/ns/user").exists() {
        return Err(SandboxError::KernelFeature {
            feature: "user namespaces",
            expected: "/proc/self/ns/user",
            found: "absent".into(),
            how: "build the kernel with CONFIG_USER_NS=y (and CONFIG_PID_NS, CONFIG_NET_NS, \
                  CONFIG_IPC_NS, CONFIG_UTS_NS)",
        });
    }
    if let Some(max) = read_sysctl("/proc/sys/user/max_user_namespaces") {
        if max == 0 {
            return Err(SandboxError::KernelFeature {
                feature: "user namespaces",
                expected: "user.max_user_namespaces > 0",
                found: "0".into(),
                how: "sysctl -w user.max_user_namespaces=15000",
            });
        }
    }
    if !rustix::process::geteuid().is_root() {
        if read_sysctl("/proc/sys/kernel/unprivileged_userns_clone") == Some(0) {
            return Err(SandboxError::KernelFeature {
                feature: "unprivileged user namespaces",
                expected: "kernel.unprivileged_userns_clone = 1",
                found: "0".into(),
                how: "sysctl -w kernel.unprivileged_userns_clone=1, or run the launcher as root",
            });
        }
        if read_sysctl("/proc/sys/kernel/apparmor_restrict_unprivileged_userns") == Some(1) {
            return Err(SandboxError::KernelFeature {
                feature: "unprivileged user namespaces",
                expected: "kernel.apparmor_restrict_unprivileged_userns = 0",
                found: "1".into(),
                how: "sysctl -w kernel.apparmor_restrict_unprivileged_userns=0, an AppArmor \
                      profile granting 'userns', or run the launcher as root",
            });
        }
    }
    Ok(())
}

/// Whether the launcher holds `CAP_SETUID` and `CAP_SETGID`: then it writes the id maps as a
/// privileged process (`setgroups` stays allowed, and the child empties its supplementary groups);
/// otherwise it must write `deny` to `setgroups` first and the groups are kept.
pub(super) fn may_map_any_id() -> bool {
    use rustix::thread::CapabilitySet;
    rustix::thread::capabilities(None)
        .map(|c| {
            c.effective
                .contains(CapabilitySet::SETUID | CapabilitySet::SETGID)
        })
        .unwrap_or(false)
}

/// `clone` with every namespace flag; `child` runs on `stack` in the new process.
pub(super) fn clone_into_namespaces(
    child: Box<dyn FnMut() -> isize + '_>,
    stack: &mut [u8],
) -> Result<Pid, SandboxError> {
    // SAFETY: without CLONE_VM the child gets a private copy of the address space, so `child`
    // and `stack` cannot race with the parent. The child is a copy of one thread of a possibly
    // multi-threaded process; `child` (child::run) therefore performs no allocation and takes no
    // lock — it only issues system calls on data prepared before the clone, then execve's or
    // exits. `stack` is a live, exclusively borrowed buffer for the whole call.
    let pid = unsafe { nix::sched::clone(child, stack, clone_flags(), Some(libc::SIGCHLD)) };
    match pid {
        Ok(pid) => Pid::from_raw(pid.as_raw()).ok_or(SandboxError::Protocol {
            expected: "a positive pid from clone",
            found: pid.as_raw().to_string(),
        }),
        Err(errno) => {
            let source = io::Error::from_raw_os_error(errno as i32);
            Err(match errno {
                nix::errno::Errno::EPERM
                | nix::errno::Errno::ENOSPC
                | nix::errno::Errno::EUSERS
                | nix::errno::Errno::EINVAL => SandboxError::KernelFeature {
                    feature: "user/pid/net/mount namespaces",
                    expected: "clone(CLONE_NEWUSER|NEWNS|NEWPID|NEWNET|NEWIPC|NEWUTS|NEWCGROUP) to succeed",
                    found: source.to_string(),
                    how: "check user.max_user_namespaces (and the other user.max_*_namespaces \
                          sysctls), kernel.unprivileged_userns_clone, AppArmor/SELinux userns \
                          policy, and that the kernel has CONFIG_USER_NS/PID_NS/NET_NS/IPC_NS/\
                          UTS_NS/CGROUPS",
                },
                _ => SandboxError::os("clone into new namespaces", source),
            })
        }
    }
}

/// Parent side: maps the single inside uid/gid to `outside` (uid, gid), by default the launcher's
/// effective ids.
pub(super) fn write_id_maps(
    pid: Pid,
    inside_uid: u32,
    inside_gid: u32,
    outside: Option<(u32, u32)>,
    deny_setgroups: bool,
) -> Result<(), SandboxError> {
    let base = format!("/proc/{}", pid.as_raw_nonzero());
    let write = |file: &str, contents: String| {
        let path = format!("{base}/{file}");
        fs::write(&path, contents.as_bytes())
            .map_err(|e| SandboxError::os(format!("writing {path} ({})", contents.trim()), e))
    };
    if deny_setgroups {
        write("setgroups", "deny".into())?;
    }
    let (outside_uid, outside_gid) = outside.unwrap_or((
        rustix::process::geteuid().as_raw(),
        rustix::process::getegid().as_raw(),
    ));
    write("uid_map", format!("{inside_uid} {outside_uid} 1\n"))?;
    write("gid_map", format!("{inside_gid} {outside_gid} 1\n"))
}

// ---- child side ---------------------------------------------------------------------------

const RTM_NEWLINK: u16 = 16;
const NLMSG_ERROR: u16 = 2;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const IFF_UP: u32 = 0x1;

/// Child side: `ip link set lo up` as one RTM_NEWLINK request, built on the stack. The kernel
/// assigns 127.0.0.1/8 and ::1 when `lo` comes up. This socket is closed before seccomp forbids
/// `AF_NETLINK`.
pub(super) fn loopback_up() -> Result<(), StepFailure> {
    use rustix::net::{
        AddressFamily, RecvFlags, SendFlags, SocketFlags, SocketType, recv, send, socket_with,
    };
    let fail = |e| StepFailure::new(SetupStep::LoopbackUp, e);
    // Protocol `None` is 0, NETLINK_ROUTE.
    let sock = socket_with(
        AddressFamily::NETLINK,
        SocketType::RAW,
        SocketFlags::CLOEXEC,
        None,
    )
    .map_err(fail)?;
    let index = rustix::net::netdevice::name_to_index(&sock, "lo").map_err(fail)?;

    let mut msg = [0u8; 32];
    msg[0..4].copy_from_slice(&32u32.to_ne_bytes()); // nlmsg_len
    msg[4..6].copy_from_slice(&RTM_NEWLINK.to_ne_bytes()); // nlmsg_type
    msg[6..8].copy_from_slice(&(NLM_F_REQUEST | NLM_F_ACK).to_ne_bytes()); // nlmsg_flags
    msg[8..12].copy_from_slice(&1u32.to_ne_bytes()); // nlmsg_seq
    // nlmsg_pid 0 (kernel); struct ifinfomsg: family AF_UNSPEC, type 0
    msg[20..24].copy_from_slice(&index.to_ne_bytes()); // ifi_index
    msg[24..28].copy_from_slice(&IFF_UP.to_ne_bytes()); // ifi_flags
    msg[28..32].copy_from_slice(&IFF_UP.to_ne_bytes()); // ifi_change
    send(&sock, &msg, SendFlags::empty()).map_err(fail)?;

    let mut reply = [0u8; 256];
    let (n, _) = recv(&sock, &mut reply[..], RecvFlags::empty()).map_err(fail)?;
    let field = |range: std::ops::Range<usize>| reply.get(..n).and_then(|r| r.get(range));
    let kind = field(4..6).map(|b| u16::from_ne_bytes([b[0], b[1]]));
    let error = field(16..20).map(|b| i32::from_ne_bytes([b[0], b[1], b[2], b[3]]));
    match (kind, error) {
        (Some(NLMSG_ERROR), Some(0)) => Ok(()),
        (Some(NLMSG_ERROR), Some(e)) if e < 0 => Err(StepFailure {
            step: SetupStep::LoopbackUp,
            errno: -e,
        }),
        _ => Err(StepFailure {
            step: SetupStep::LoopbackUp,
            errno: libc::EPROTO,
        }),
    }
}

/// Child side: the new UTS namespace gets a fixed hostname (not the host's).
pub(super) fn set_hostname() -> Result<(), StepFailure> {
    rustix::system::sethostname(HOSTNAME).map_err(|e| StepFailure::new(SetupStep::Hostname, e))
}
