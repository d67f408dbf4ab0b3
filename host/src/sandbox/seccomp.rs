//! The seccomp filters, compiled by the parent with seccompiler and installed by the child as
//! the very last step before `execve`.
//!
//! The main filter is an allow-list: what a server process (the agent, an Ollama-style runner: threads,
//! files, sockets, epoll, timers, mmap) needs, and nothing that administers the machine. Anything
//! not listed fails with `EPERM`, among them `ptrace`, `mount`, `umount2`, `pivot_root`, `chroot`,
//! `bpf`, `keyctl`, `add_key`, `request_key`, `kexec_*`, `init_module`, `finit_module`,
//! `delete_module`, `perf_event_open`, `userfaultfd`, `unshare`, `setns`, `process_vm_readv`,
//! `process_vm_writev`, `io_uring_*` (its own socket path would bypass the `socket()` rule),
//! `memfd_create` and `execveat` (exec of an unmounted file), `open_by_handle_at`, `set*id`,
//! `capset`, `seccomp`, `swapon`, `reboot`, clock setters. Argument rules:
//! - `socket()` only for `AF_UNIX`, `AF_INET`, `AF_INET6` — `AF_VSOCK` (which ignores network
//!   namespaces and would reach the hypervisor), `AF_PACKET` and `AF_NETLINK` are refused;
//!   `socketpair()` only for `AF_UNIX`;
//! - `clone()` only without namespace flags;
//! - `ioctl()` never with `TIOCSTI` / `TIOCLINUX` (compared on the low 32 bits, as the kernel does);
//! - `personality()` only to query.
//!
//! A second filter makes `clone3` fail with `ENOSYS`: its flags sit in memory a filter cannot read,
//! and `ENOSYS` makes libc fall back to `clone`, whose flags the allow-list checks. It is installed
//! first (the allow-list does not allow `seccomp()` itself, so nothing can be added after it); the
//! allow-list lets `clone3` through to it, and the kernel applies the stricter answer of the two.
//!
//! Both filters kill the process on a foreign architecture (x32 and i386 entry points).

use std::collections::BTreeMap;

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch,
};

use super::child::StepFailure;
use super::error::{SandboxError, SetupStep};

/// `clone` flags that create or enter namespaces.
const NAMESPACE_FLAGS: u64 = (libc::CLONE_NEWNS
    | libc::CLONE_NEWUSER
    | libc::CLONE_NEWPID
    | libc::CLONE_NEWNET
    | libc::CLONE_NEWIPC
    | libc::CLONE_NEWUTS
    | libc::CLONE_NEWCGROUP) as u64;

// The ioctl request type differs between targets (c_ulong, c_int); the values are small.
#[allow(clippy::unnecessary_cast)]
const TIOCSTI: u64 = libc::TIOCSTI as u64;
#[allow(clippy::unnecessary_cast)]
const TIOCLINUX: u64 = libc::TIOCLINUX as u64;

/// System calls allowed without conditions on every architecture.
const ALLOWED: &[libc::c_long] = &[
    // I/O on descriptors
    libc::SYS_read,
    libc::SYS_write,
    libc::SYS_readv,
    libc::SYS_writev,
    libc::SYS_pread64,
    libc::SYS_pwrite64,
    libc::SYS_preadv,
    libc::SYS_pwritev,
    libc::SYS_preadv2,
    libc::SYS_pwritev2,
    libc::SYS_lseek,
    libc::SYS_close,
    libc::SYS_close_range,
    libc::SYS_dup,
    libc::SYS_dup3,
    libc::SYS_fcntl,
    libc::SYS_flock,
    libc::SYS_fsync,
    libc::SYS_fdatasync,
    libc::SYS_ftruncate,
    libc::SYS_fallocate,
    libc::SYS_copy_file_range,
    libc::SYS_sendfile,
    libc::SYS_splice,
    libc::SYS_tee,
    libc::SYS_pipe2,
    // files and directories (Landlock and the mount tree decide which)
    libc::SYS_openat,
    libc::SYS_openat2,
    libc::SYS_newfstatat,
    libc::SYS_fstat,
    libc::SYS_statx,
    libc::SYS_statfs,
    libc::SYS_fstatfs,
    libc::SYS_faccessat,
    libc::SYS_faccessat2,
    libc::SYS_getdents64,
    libc::SYS_getcwd,
    libc::SYS_chdir,
    libc::SYS_fchdir,
    libc::SYS_mkdirat,
    libc::SYS_mknodat,
    libc::SYS_unlinkat,
    libc::SYS_renameat,
    libc::SYS_renameat2,
    libc::SYS_linkat,
    libc::SYS_symlinkat,
    libc::SYS_readlinkat,
    libc::SYS_fchmod,
    libc::SYS_fchmodat,
    libc::SYS_fchown,
    libc::SYS_fchownat,
    libc::SYS_truncate,
    libc::SYS_umask,
    libc::SYS_utimensat,
    libc::SYS_getxattr,
    libc::SYS_lgetxattr,
    libc::SYS_fgetxattr,
    libc::SYS_listxattr,
    libc::SYS_llistxattr,
    libc::SYS_flistxattr,
    libc::SYS_fadvise64,
    libc::SYS_readahead,
    libc::SYS_inotify_init1,
    libc::SYS_inotify_add_watch,
    libc::SYS_inotify_rm_watch,
    // memory
    libc::SYS_brk,
    libc::SYS_mmap,
    libc::SYS_munmap,
    libc::SYS_mprotect,
    libc::SYS_mremap,
    libc::SYS_madvise,
    libc::SYS_msync,
    libc::SYS_mincore,
    libc::SYS_mlock,
    libc::SYS_mlock2,
    libc::SYS_munlock,
    libc::SYS_mlockall,
    libc::SYS_munlockall,
    libc::SYS_membarrier,
    libc::SYS_get_mempolicy,
    libc::SYS_set_mempolicy,
    libc::SYS_mbind,
    // waiting, events, time
    libc::SYS_ppoll,
    libc::SYS_pselect6,
    libc::SYS_epoll_create1,
    libc::SYS_epoll_ctl,
    libc::SYS_epoll_pwait,
    libc::SYS_epoll_pwait2,
    libc::SYS_eventfd2,
    libc::SYS_signalfd4,
    libc::SYS_timerfd_create,
    libc::SYS_timerfd_settime,
    libc::SYS_timerfd_gettime,
    libc::SYS_timer_create,
    libc::SYS_timer_settime,
    libc::SYS_timer_gettime,
    libc::SYS_timer_getoverrun,
    libc::SYS_timer_delete,
    libc::SYS_nanosleep,
    libc::SYS_clock_nanosleep,
    libc::SYS_clock_gettime,
    libc::SYS_clock_getres,
    libc::SYS_gettimeofday,
    libc::SYS_getitimer,
    libc::SYS_setitimer,
    libc::SYS_futex,
    libc::SYS_futex_waitv,
    libc::SYS_sched_yield,
    libc::SYS_sched_getaffinity,
    libc::SYS_sched_setaffinity,
    libc::SYS_sched_getparam,
    libc::SYS_sched_getscheduler,
    libc::SYS_sched_getattr,
    libc::SYS_sched_get_priority_max,
    libc::SYS_sched_get_priority_min,
    libc::SYS_getpriority,
    libc::SYS_setpriority,
    libc::SYS_getcpu,
    libc::SYS_getrandom,
    // signals (the pid namespace bounds who can be reached)
    libc::SYS_rt_sigaction,
    libc::SYS_rt_sigprocmask,
    libc::SYS_rt_sigreturn,
    libc::SYS_rt_sigpending,
    libc::SYS_rt_sigtimedwait,
    libc::SYS_rt_sigsuspend,
    libc::SYS_rt_sigqueueinfo,
    libc::SYS_rt_tgsigqueueinfo,
    libc::SYS_sigaltstack,
    libc::SYS_kill,
    libc::SYS_tkill,
    libc::SYS_tgkill,
    libc::SYS_pidfd_open,
    libc::SYS_pidfd_send_signal,
    // processes and threads (clone is conditional, below)
    libc::SYS_execve,
    libc::SYS_exit,
    libc::SYS_exit_group,
    libc::SYS_wait4,
    libc::SYS_waitid,
    libc::SYS_set_tid_address,
    libc::SYS_set_robust_list,
    libc::SYS_get_robust_list,
    libc::SYS_rseq,
    libc::SYS_prctl,
    libc::SYS_restart_syscall,
    // identity and limits (read; rlimits can only be lowered)
    libc::SYS_getpid,
    libc::SYS_getppid,
    libc::SYS_gettid,
    libc::SYS_getuid,
    libc::SYS_geteuid,
    libc::SYS_getgid,
    libc::SYS_getegid,
    libc::SYS_getgroups,
    libc::SYS_getresuid,
    libc::SYS_getresgid,
    libc::SYS_getpgid,
    libc::SYS_getsid,
    libc::SYS_setsid,
    libc::SYS_setpgid,
    libc::SYS_capget,
    libc::SYS_uname,
    libc::SYS_sysinfo,
    libc::SYS_times,
    libc::SYS_getrusage,
    libc::SYS_getrlimit,
    libc::SYS_setrlimit,
    libc::SYS_prlimit64,
    // sockets (socket/socketpair are conditional, below)
    libc::SYS_bind,
    libc::SYS_listen,
    libc::SYS_accept,
    libc::SYS_accept4,
    libc::SYS_connect,
    libc::SYS_shutdown,
    libc::SYS_getsockname,
    libc::SYS_getpeername,
    libc::SYS_setsockopt,
    libc::SYS_getsockopt,
    libc::SYS_sendto,
    libc::SYS_recvfrom,
    libc::SYS_sendmsg,
    libc::SYS_recvmsg,
    libc::SYS_sendmmsg,
    libc::SYS_recvmmsg,
    // No System V IPC: a shared-memory segment outlives the process that made it and is counted
    // against no rlimit of the sandbox (a runner could hold host memory beyond `memory_mib`).
];

/// The x86-64 entry points that newer architectures dropped (libc still uses some of them).
#[cfg(target_arch = "x86_64")]
const ALLOWED_LEGACY: &[libc::c_long] = &[
    libc::SYS_open,
    libc::SYS_creat,
    libc::SYS_stat,
    libc::SYS_lstat,
    libc::SYS_access,
    libc::SYS_pipe,
    libc::SYS_select,
    libc::SYS_poll,
    libc::SYS_epoll_create,
    libc::SYS_epoll_wait,
    libc::SYS_eventfd,
    libc::SYS_signalfd,
    libc::SYS_inotify_init,
    libc::SYS_dup2,
    libc::SYS_pause,
    libc::SYS_alarm,
    libc::SYS_time,
    libc::SYS_fork,
    libc::SYS_vfork,
    libc::SYS_getdents,
    libc::SYS_getpgrp,
    libc::SYS_arch_prctl,
    libc::SYS_rename,
    libc::SYS_mkdir,
    libc::SYS_rmdir,
    libc::SYS_link,
    libc::SYS_unlink,
    libc::SYS_symlink,
    libc::SYS_readlink,
    libc::SYS_chmod,
    libc::SYS_chown,
    libc::SYS_lchown,
    libc::SYS_mknod,
    libc::SYS_utime,
    libc::SYS_utimes,
    libc::SYS_futimesat,
];
#[cfg(not(target_arch = "x86_64"))]
const ALLOWED_LEGACY: &[libc::c_long] = &[];

fn cond(
    arg: u8,
    len: SeccompCmpArgLen,
    op: SeccompCmpOp,
    value: u64,
) -> Result<SeccompCondition, SandboxError> {
    SeccompCondition::new(arg, len, op, value).map_err(compile_error)
}

fn rule(conditions: Vec<SeccompCondition>) -> Result<SeccompRule, SandboxError> {
    SeccompRule::new(conditions).map_err(compile_error)
}

fn compile_error(e: impl std::fmt::Display) -> SandboxError {
    SandboxError::Seccomp {
        arch: std::env::consts::ARCH,
        reason: e.to_string(),
    }
}

fn target_arch() -> Result<TargetArch, SandboxError> {
    TargetArch::try_from(std::env::consts::ARCH).map_err(compile_error)
}

/// The allow-list (installed last).
/// Left out with [`super::SandboxSpec::no_truncate`]: what shortens or punches holes in a file.
const TRUNCATING: [libc::c_long; 3] =
    [libc::SYS_truncate, libc::SYS_ftruncate, libc::SYS_fallocate];

fn allow_list(no_truncate: bool) -> Result<SeccompFilter, SandboxError> {
    use SeccompCmpArgLen::{Dword, Qword};
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> = BTreeMap::new();
    for nr in ALLOWED.iter().chain(ALLOWED_LEGACY) {
        if !(no_truncate && TRUNCATING.contains(nr)) {
            rules.insert(*nr, Vec::new());
        }
    }
    let families = [libc::AF_UNIX, libc::AF_INET, libc::AF_INET6];
    let mut socket_rules = Vec::new();
    for family in families {
        socket_rules.push(rule(vec![cond(
            0,
            Dword,
            SeccompCmpOp::Eq,
            family as u64,
        )?])?);
    }
    rules.insert(libc::SYS_socket, socket_rules);
    rules.insert(
        libc::SYS_socketpair,
        vec![rule(vec![cond(
            0,
            Dword,
            SeccompCmpOp::Eq,
            libc::AF_UNIX as u64,
        )?])?],
    );
    rules.insert(
        libc::SYS_clone,
        vec![rule(vec![cond(
            0,
            Qword,
            SeccompCmpOp::MaskedEq(NAMESPACE_FLAGS),
            0,
        )?])?],
    );
    rules.insert(
        libc::SYS_ioctl,
        vec![rule(vec![
            cond(1, Dword, SeccompCmpOp::Ne, TIOCSTI)?,
            cond(1, Dword, SeccompCmpOp::Ne, TIOCLINUX)?,
        ])?],
    );
    // Answered ENOSYS by the clone3 filter installed before this one (see the module docs).
    rules.insert(libc::SYS_clone3, Vec::new());
    rules.insert(
        libc::SYS_personality,
        vec![rule(vec![cond(0, Dword, SeccompCmpOp::Eq, 0xffff_ffff)?])?],
    );
    SeccompFilter::new(
        rules,
        SeccompAction::Errno(libc::EPERM as u32),
        SeccompAction::Allow,
        target_arch()?,
    )
    .map_err(compile_error)
}

/// `clone3` → `ENOSYS` (installed first).
fn clone3_enosys() -> Result<SeccompFilter, SandboxError> {
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> = BTreeMap::new();
    rules.insert(libc::SYS_clone3, Vec::new());
    SeccompFilter::new(
        rules,
        SeccompAction::Allow,
        SeccompAction::Errno(libc::ENOSYS as u32),
        target_arch()?,
    )
    .map_err(compile_error)
}

/// Parent side: both filters as BPF, in installation order (the allow-list last: it refuses
/// `seccomp()`).
pub(super) fn build(no_truncate: bool) -> Result<Vec<BpfProgram>, SandboxError> {
    let mut programs = Vec::new();
    for filter in [clone3_enosys()?, allow_list(no_truncate)?] {
        programs.push(BpfProgram::try_from(filter).map_err(compile_error)?);
    }
    Ok(programs)
}

/// Parent side: refuses early when this kernel has no seccomp filter mode.
pub(super) fn check_available() -> Result<(), SandboxError> {
    let status = std::fs::read_to_string("/proc/self/status")
        .map_err(|e| SandboxError::os("reading /proc/self/status", e))?;
    let has = |key: &str| status.lines().any(|l| l.starts_with(key));
    if !has("Seccomp:") {
        return Err(SandboxError::KernelFeature {
            feature: "seccomp",
            expected: "a 'Seccomp:' line in /proc/self/status",
            found: "none".into(),
            how: "build the kernel with CONFIG_SECCOMP=y and CONFIG_SECCOMP_FILTER=y",
        });
    }
    Ok(())
}

/// Child side: installs the filters (they also set `no_new_privs`, already set by then).
pub(super) fn install(programs: &[BpfProgram]) -> Result<(), StepFailure> {
    for program in programs {
        seccompiler::apply_filter(program)
            .map_err(|e| StepFailure::from_error(SetupStep::Seccomp, &e))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    #[test]
    fn filters_compile_for_this_architecture() {
        for no_truncate in [false, true] {
            let programs = build(no_truncate).unwrap();
            assert_eq!(programs.len(), 2);
            assert!(programs.iter().all(|p| !p.is_empty() && p.len() < 4096));
        }
    }

    #[test]
    fn forbidden_syscalls_are_not_on_the_allow_list() {
        let forbidden = [
            libc::SYS_ptrace,
            libc::SYS_mount,
            libc::SYS_umount2,
            libc::SYS_pivot_root,
            libc::SYS_bpf,
            libc::SYS_keyctl,
            libc::SYS_add_key,
            libc::SYS_request_key,
            libc::SYS_kexec_load,
            libc::SYS_kexec_file_load,
            libc::SYS_init_module,
            libc::SYS_finit_module,
            libc::SYS_delete_module,
            libc::SYS_perf_event_open,
            libc::SYS_userfaultfd,
            libc::SYS_unshare,
            libc::SYS_setns,
            libc::SYS_process_vm_readv,
            libc::SYS_process_vm_writev,
            libc::SYS_io_uring_setup,
            libc::SYS_memfd_create,
            libc::SYS_execveat,
            libc::SYS_clone3,
            libc::SYS_socket,
            libc::SYS_clone,
            libc::SYS_shmget,
            libc::SYS_shmat,
            libc::SYS_msgget,
            libc::SYS_semget,
        ];
        for nr in forbidden {
            assert!(
                !ALLOWED.contains(&nr) && !ALLOWED_LEGACY.contains(&nr),
                "syscall {nr} must not be unconditionally allowed"
            );
        }
    }
}
