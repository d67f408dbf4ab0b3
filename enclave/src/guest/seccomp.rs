//! The runner's system-call filter inside the guest (docs/vm.md). The guest has no network
//! device, but it has virtio-vsock for the agent's listener, and vsock reaches the host: a runner
//! taken over by a hostile model could `connect()` to the host's CID and carry prompts out past
//! the agent. So `runner-init` and everything it starts get a seccomp filter (installed between
//! fork and exec by the init) that refuses, with `EPERM`:
//! - `socket()` and `socketpair()` for `AF_VSOCK`, `AF_PACKET` and `AF_NETLINK`;
//! - `io_uring_setup` (its `IORING_OP_SOCKET` would bypass the `socket()` rule);
//!
//! (also by their x32 numbers) and kills the process on a foreign architecture (i386
//! `socketcall`). The agent, which
//! must listen on vsock, is not filtered. Process mode has the full allow-list of the host's
//! sandbox; this is the guest's narrower rule for the one channel the guest adds.

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule,
};

/// Address families the runner may not open.
pub const DENIED_FAMILIES: [i32; 3] = [libc::AF_VSOCK, libc::AF_PACKET, libc::AF_NETLINK];

/// The compiled filter (built before `fork`; installed with [`install`] in the child).
///
/// # Errors
/// This architecture is not supported by seccompiler, or the filter does not compile.
pub fn runner_filter() -> Result<BpfProgram, String> {
    let arch: seccompiler::TargetArch = std::env::consts::ARCH
        .try_into()
        .map_err(|e| format!("seccomp: {e:?}"))?;
    let family_rules = |arg: u8| -> Result<Vec<SeccompRule>, String> {
        DENIED_FAMILIES
            .iter()
            .map(|f| {
                let c = SeccompCondition::new(
                    arg,
                    SeccompCmpArgLen::Dword,
                    SeccompCmpOp::Eq,
                    *f as u64,
                )
                .map_err(|e| format!("seccomp: {e}"))?;
                SeccompRule::new(vec![c]).map_err(|e| format!("seccomp: {e}"))
            })
            .collect()
    };
    // x32 system calls carry the x86_64 audit architecture with bit 30 set in the number: the
    // same rules for those numbers (a kernel with x32 enabled would otherwise let them through).
    const X32: i64 = 0x4000_0000;
    let mut rules = std::collections::BTreeMap::new();
    for base in [0, X32] {
        rules.insert(base + libc::SYS_socket, family_rules(0)?);
        rules.insert(base + libc::SYS_socketpair, family_rules(0)?);
        rules.insert(base + libc::SYS_io_uring_setup, vec![]);
    }
    let filter = SeccompFilter::new(
        rules,
        SeccompAction::Allow,
        SeccompAction::Errno(libc::EPERM as u32),
        arch,
    )
    .map_err(|e| format!("seccomp: {e}"))?;
    BpfProgram::try_from(filter).map_err(|e| format!("seccomp: {e}"))
}

/// Installs `program` in the calling process (sets `no_new_privs` first). For a `pre_exec` hook.
///
/// # Errors
/// The kernel refused the filter.
pub fn install(program: &BpfProgram) -> std::io::Result<()> {
    seccompiler::apply_filter(program).map_err(|e| std::io::Error::other(e.to_string()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// In a child process: the filter refuses the denied families with EPERM and still allows
    /// unix and loopback sockets. AF_NETLINK stands in for AF_VSOCK (the same rule): a test on a
    /// host never opens AF_VSOCK, not even one the filter should refuse.
    #[test]
    fn the_runner_filter_refuses_the_denied_families_and_allows_loopback() {
        let program = runner_filter().unwrap();
        // SAFETY: fork in a test; the child only makes system calls and leaves with _exit.
        #[allow(unsafe_code)]
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            let code = match install(&program) {
                Err(_) => 2,
                Ok(()) => {
                    // SAFETY: plain socket(2) calls; the descriptors close with the process.
                    #[allow(unsafe_code)]
                    let (n, p, u, i) = unsafe {
                        (
                            libc::socket(libc::AF_NETLINK, libc::SOCK_RAW, 0),
                            libc::socket(libc::AF_PACKET, libc::SOCK_RAW, 0),
                            libc::socket(libc::AF_UNIX, libc::SOCK_STREAM, 0),
                            libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0),
                        )
                    };
                    let errno = std::io::Error::last_os_error().raw_os_error();
                    let _ = errno;
                    i32::from(!(n == -1 && p == -1 && u >= 0 && i >= 0))
                }
            };
            // SAFETY: leaving the forked child without running the parent's destructors.
            #[allow(unsafe_code)]
            unsafe {
                libc::_exit(code)
            };
        }
        let mut status = 0;
        // SAFETY: waiting for the child forked above.
        #[allow(unsafe_code)]
        unsafe {
            libc::waitpid(pid, &mut status, 0)
        };
        assert!(libc::WIFEXITED(status));
        assert_eq!(
            libc::WEXITSTATUS(status),
            0,
            "a denied family allowed, or loopback refused"
        );
    }
}
