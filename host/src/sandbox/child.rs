//! The pre-exec child: the sequence of confinement steps between `clone` and `execve`, and the
//! report pipe that tells the parent how it went.
//!
//! The child is a copy of a possibly multi-threaded launcher made with a raw `clone`, so another
//! thread may have held the allocator's lock at that instant: nothing here allocates. Every string
//! and pointer array is built by the parent ([`Exec::new`], the mount plan, the seccomp programs);
//! the child only issues system calls. A failing step writes a fixed-size record (step, errno) on a
//! close-on-exec pipe and the child exits 127; a successful `execve` closes the pipe, which the
//! parent reads as "running, confined".

use std::convert::Infallible;
use std::ffi::{CString, c_char};
use std::io;
use std::os::fd::{BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::time::Duration;

use landlock::RulesetCreated;
use rustix::process::{Resource, Rlimit};
use seccompiler::BpfProgram;

use super::error::{SandboxError, SetupStep};
use super::mounts::MountPlan;
use super::process::LandlockReport;
use super::{SandboxSpec, caps, landlock as sandbox_landlock, namespaces, rlimits, seccomp};

/// How long the parent waits for the child to finish confining itself and `execve`.
const SETUP_TIMEOUT: Duration = Duration::from_secs(30);

/// A failed step and the errno the kernel gave (0 when the failing library gave none).
#[derive(Clone, Copy, Debug)]
pub(super) struct StepFailure {
    pub step: SetupStep,
    pub errno: i32,
}

impl StepFailure {
    pub(super) fn new(step: SetupStep, err: rustix::io::Errno) -> Self {
        StepFailure {
            step,
            errno: err.raw_os_error(),
        }
    }

    /// For errors from libraries that wrap an `io::Error` somewhere in their source chain.
    pub(super) fn from_error(step: SetupStep, err: &(dyn std::error::Error + 'static)) -> Self {
        let mut current: Option<&(dyn std::error::Error + 'static)> = Some(err);
        while let Some(e) = current {
            if let Some(io) = e.downcast_ref::<io::Error>() {
                if let Some(errno) = io.raw_os_error() {
                    return StepFailure { step, errno };
                }
            }
            current = e.source();
        }
        StepFailure { step, errno: 0 }
    }
}

/// `execve` arguments, built by the parent. The pointer arrays point into the `CString`s kept
/// alongside them and end with a null pointer.
pub(super) struct Exec {
    program: CString,
    _strings: Vec<CString>,
    argv: Vec<*const c_char>,
    envp: Vec<*const c_char>,
}

impl Exec {
    pub(super) fn new(spec: &SandboxSpec) -> Result<Exec, SandboxError> {
        let cstring = |field: String, bytes: &[u8]| {
            CString::new(bytes).map_err(|_| {
                SandboxError::spec(
                    field,
                    "no NUL byte",
                    String::from_utf8_lossy(bytes).into_owned(),
                )
            })
        };
        let program = cstring("program".into(), spec.program.as_os_str().as_bytes())?;
        let mut args = vec![program.clone()];
        for (i, arg) in spec.args.iter().enumerate() {
            args.push(cstring(format!("args[{i}]"), arg.as_bytes())?);
        }
        let mut env = Vec::with_capacity(spec.env.len());
        for (key, value) in &spec.env {
            let key = key.as_bytes();
            if key.is_empty() || key.contains(&b'=') {
                return Err(SandboxError::spec(
                    "env",
                    "a non-empty variable name without '='",
                    String::from_utf8_lossy(key).into_owned(),
                ));
            }
            let mut entry = key.to_vec();
            entry.push(b'=');
            entry.extend_from_slice(value.as_bytes());
            env.push(cstring(
                format!("env {}", String::from_utf8_lossy(key)),
                &entry,
            )?);
        }
        let pointers = |strings: &[CString]| {
            let mut v: Vec<*const c_char> = strings.iter().map(|s| s.as_ptr()).collect();
            v.push(std::ptr::null());
            v
        };
        let argv = pointers(&args);
        let envp = pointers(&env);
        let mut strings = args;
        strings.extend(env);
        Ok(Exec {
            program,
            _strings: strings,
            argv,
            envp,
        })
    }

    /// Replaces the process image; returns only on failure.
    fn exec(&self) -> StepFailure {
        // SAFETY: `program` is a valid NUL-terminated string; `argv` and `envp` are
        // null-terminated arrays of pointers into `self._strings`, which outlives this call
        // (on success the address space is replaced; on failure nothing was freed). Moving a
        // `CString` into `_strings` does not move its heap buffer, so the pointers stay valid.
        unsafe {
            libc::execve(
                self.program.as_ptr(),
                self.argv.as_ptr(),
                self.envp.as_ptr(),
            );
        }
        StepFailure {
            step: SetupStep::Exec,
            errno: io::Error::last_os_error().raw_os_error().unwrap_or(0),
        }
    }
}

/// Everything the child needs, prepared by the parent.
pub(super) struct ChildPlan {
    pub go: OwnedFd,
    pub report: OwnedFd,
    pub stdin: OwnedFd,
    pub stdout: OwnedFd,
    pub stderr: OwnedFd,
    /// The launcher had `CAP_SETGID`, so `setgroups` stayed allowed and the child empties its
    /// supplementary groups.
    pub clear_groups: bool,
    pub uid: u32,
    pub gid: u32,
    pub mounts: MountPlan,
    pub rlimits: Vec<(Resource, Rlimit)>,
    pub landlock: Option<RulesetCreated>,
    pub seccomp: Vec<BpfProgram>,
    /// Descriptors (numbers in this, the parent's copy of the table) to hand over as 3, 4, …
    pub pass_fds: Vec<RawFd>,
    pub exec: Exec,
}

/// The child's entry point (called on the clone's own stack). Returns only on failure, with the
/// exit code.
pub(super) fn run(plan: &mut ChildPlan) -> isize {
    match confine_and_exec(plan) {
        Ok(never) => match never {},
        Err(failure) => {
            send(
                &plan.report,
                Report::Failed {
                    step: failure.step,
                    errno: failure.errno,
                },
            );
            127
        }
    }
}

fn confine_and_exec(plan: &mut ChildPlan) -> Result<Infallible, StepFailure> {
    reset_signals()?;
    await_id_maps(&plan.go)?;
    check_ids(plan.uid, plan.gid)?;
    // If the launcher dies (even by SIGKILL), the sandbox dies with it. Set after the id change,
    // which would clear it; execve keeps it (the program is neither set-id nor file-capable).
    rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::KILL))
        .map_err(|e| StepFailure::new(SetupStep::Signals, e))?;
    wire_stdio(plan)?;
    rustix::process::setsid().map_err(|e| StepFailure::new(SetupStep::Session, e))?;
    if plan.clear_groups {
        rustix::thread::set_thread_groups(&[])
            .map_err(|e| StepFailure::new(SetupStep::Groups, e))?;
    }
    plan.mounts.apply()?;
    namespaces::loopback_up()?;
    namespaces::set_hostname()?;
    rlimits::apply(&plan.rlimits)?;
    caps::drop_all()?;
    caps::set_no_new_privs()?;
    let ruleset = plan.landlock.take().ok_or(StepFailure {
        step: SetupStep::LandlockRules,
        errno: libc::EBADF,
    })?;
    let landlock = sandbox_landlock::restrict_self(ruleset)?;
    send(&plan.report, Report::Landlock(landlock));
    close_inherited_fds()?;
    pass_fds(plan)?;
    seccomp::install(&plan.seccomp)?;
    Err(plan.exec.exec())
}

fn reset_signals() -> Result<(), StepFailure> {
    use nix::sys::signal::{SigHandler, SigSet, SigmaskHow, Signal, signal, sigprocmask};
    for sig in Signal::iterator() {
        if sig == Signal::SIGKILL || sig == Signal::SIGSTOP {
            continue;
        }
        // SAFETY: installing SIG_DFL runs no Rust code in signal context; the launcher's
        // handlers (copied into this child) must not run here, and ignored signals (SIGPIPE)
        // must not stay ignored across execve.
        unsafe { signal(sig, SigHandler::SigDfl) }.map_err(|e| StepFailure {
            step: SetupStep::Signals,
            errno: e as i32,
        })?;
    }
    sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None).map_err(|e| StepFailure {
        step: SetupStep::Signals,
        errno: e as i32,
    })
}

fn await_id_maps(go: &OwnedFd) -> Result<(), StepFailure> {
    let mut byte = [0u8; 1];
    loop {
        match rustix::io::read(go, &mut byte) {
            Ok(1) => return Ok(()),
            // The parent closed the pipe without releasing us: it failed to write the maps.
            Ok(_) => {
                return Err(StepFailure {
                    step: SetupStep::AwaitIdMaps,
                    errno: libc::ECANCELED,
                });
            }
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(StepFailure::new(SetupStep::AwaitIdMaps, e)),
        }
    }
}

fn check_ids(uid: u32, gid: u32) -> Result<(), StepFailure> {
    // When the launcher mapped the inside ids to ids other than its own, this process still holds
    // the launcher's kernel ids (unmapped inside): take the mapped ones. With the launcher's own
    // ids mapped these calls change nothing. Either way no capability is lost: the inside uid 0 is
    // unmapped, so the kernel's "leaving uid 0" rule does not apply.
    let fail = |e| StepFailure::new(SetupStep::CheckIds, e);
    let (g, u) = (
        rustix::process::Gid::from_raw(gid),
        rustix::process::Uid::from_raw(uid),
    );
    rustix::thread::set_thread_res_gid(g, g, g).map_err(fail)?;
    rustix::thread::set_thread_res_uid(u, u, u).map_err(fail)?;
    let ok = rustix::process::getuid().as_raw() == uid
        && rustix::process::geteuid().as_raw() == uid
        && rustix::process::getgid().as_raw() == gid
        && rustix::process::getegid().as_raw() == gid;
    if ok {
        Ok(())
    } else {
        Err(StepFailure {
            step: SetupStep::CheckIds,
            errno: libc::EPERM,
        })
    }
}

fn wire_stdio(plan: &ChildPlan) -> Result<(), StepFailure> {
    let err = |e| StepFailure::new(SetupStep::Stdio, e);
    rustix::stdio::dup2_stdin(&plan.stdin).map_err(err)?;
    rustix::stdio::dup2_stdout(&plan.stdout).map_err(err)?;
    rustix::stdio::dup2_stderr(&plan.stderr).map_err(err)
}

fn close_inherited_fds() -> Result<(), StepFailure> {
    // SAFETY: close_range with CLOSE_RANGE_CLOEXEC only sets a flag on descriptors 3..=MAX; it
    // closes nothing and touches no memory. The report pipe and the Landlock ruleset are already
    // close-on-exec.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_close_range,
            3u32,
            u32::MAX,
            libc::CLOSE_RANGE_CLOEXEC as libc::c_uint,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(StepFailure {
            step: SetupStep::CloseFds,
            errno: io::Error::last_os_error().raw_os_error().unwrap_or(0),
        })
    }
}

/// Moves the passed descriptors to 3, 4, … (not close-on-exec). Every source — and the report
/// pipe, still needed after this — is first copied above the targets, so no target overwrites a
/// descriptor still to be read.
fn pass_fds(plan: &mut ChildPlan) -> Result<(), StepFailure> {
    let n = plan.pass_fds.len();
    if n == 0 {
        return Ok(());
    }
    let fail = |e| StepFailure::new(SetupStep::PassFds, e);
    let above = (3 + n) as i32;
    let report = rustix::io::fcntl_dupfd_cloexec(&plan.report, above).map_err(fail)?;
    plan.report = report;
    let mut temps: [Option<OwnedFd>; super::MAX_PASSED_FDS] = Default::default();
    for (slot, &raw) in temps.iter_mut().zip(plan.pass_fds.iter()) {
        // SAFETY: `raw` is open in this (copied) table for the whole call: the parent keeps the
        // `OwnedFd` alive until the child has exec'd, and nothing here closes it before the dup.
        let src = unsafe { BorrowedFd::borrow_raw(raw) };
        *slot = Some(rustix::io::fcntl_dupfd_cloexec(src, above).map_err(fail)?);
    }
    for (i, temp) in temps.iter().take(n).enumerate() {
        let Some(temp) = temp else {
            return Err(StepFailure {
                step: SetupStep::PassFds,
                errno: libc::EBADF,
            });
        };
        // SAFETY: `3 + i` is below every temporary copy, so dup3 replaces only a descriptor this
        // child no longer reads (an original source, already copied, or an unused number); the
        // `OwnedFd` made here is forgotten, so the descriptor stays open across execve.
        let mut target = unsafe { OwnedFd::from_raw_fd((3 + i) as i32) };
        let moved = rustix::io::dup3(temp, &mut target, rustix::io::DupFlags::empty());
        std::mem::forget(target);
        moved.map_err(fail)?;
    }
    Ok(())
}

// ---- the report pipe ----------------------------------------------------------------------

const REPORT_LEN: usize = 12;
const TAG_FAILED: u32 = 1;
const TAG_LANDLOCK: u32 = 2;

enum Report {
    Failed { step: SetupStep, errno: i32 },
    Landlock(LandlockReport),
}

fn send(fd: &OwnedFd, report: Report) {
    let (tag, a, b) = match report {
        Report::Failed { step, errno } => (TAG_FAILED, step as u32, errno as u32),
        Report::Landlock(l) => (TAG_LANDLOCK, l.abi, u32::from(l.fully_enforced)),
    };
    let mut buf = [0u8; REPORT_LEN];
    buf[0..4].copy_from_slice(&tag.to_le_bytes());
    buf[4..8].copy_from_slice(&a.to_le_bytes());
    buf[8..12].copy_from_slice(&b.to_le_bytes());
    // A pipe write of 12 bytes is atomic (≤ PIPE_BUF). If it fails there is nobody to tell; the
    // parent then sees EOF without a Landlock report and refuses the child.
    let _ = rustix::io::write(fd, &buf);
}

/// Parent side: reads the child's reports until the pipe closes (the child exec'd or exited).
pub(super) fn read_reports(fd: OwnedFd, program: &Path) -> Result<LandlockReport, SandboxError> {
    let mut buf = [0u8; 4 * REPORT_LEN];
    let mut len = 0;
    loop {
        wait_readable(&fd)?;
        let Some(space) = buf.get_mut(len..) else {
            return Err(SandboxError::Protocol {
                expected: "at most 4 reports",
                found: "more".into(),
            });
        };
        if space.is_empty() {
            return Err(SandboxError::Protocol {
                expected: "at most 4 reports",
                found: "more".into(),
            });
        }
        match rustix::io::read(&fd, space) {
            Ok(0) => break,
            Ok(n) => len += n,
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(SandboxError::os("reading the sandbox child's reports", e)),
        }
    }
    if len % REPORT_LEN != 0 {
        return Err(SandboxError::Protocol {
            expected: "whole 12-byte reports",
            found: format!("{len} bytes"),
        });
    }
    let mut landlock = None;
    for record in buf.get(..len).unwrap_or_default().chunks_exact(REPORT_LEN) {
        let word = |i: usize| {
            let mut w = [0u8; 4];
            w.copy_from_slice(record.get(i * 4..i * 4 + 4).unwrap_or(&[0; 4]));
            u32::from_le_bytes(w)
        };
        match word(0) {
            TAG_LANDLOCK => {
                landlock = Some(LandlockReport {
                    abi: word(1),
                    fully_enforced: word(2) == 1,
                })
            }
            TAG_FAILED => {
                let errno = word(2) as i32;
                let step = SetupStep::from_u32(word(1)).ok_or_else(|| SandboxError::Protocol {
                    expected: "a known setup step",
                    found: word(1).to_string(),
                })?;
                let source = io::Error::from_raw_os_error(errno);
                return Err(if step == SetupStep::Exec {
                    SandboxError::Exec {
                        program: program.to_path_buf(),
                        reason: source,
                    }
                } else {
                    SandboxError::Setup {
                        step,
                        reason: source,
                    }
                });
            }
            other => {
                return Err(SandboxError::Protocol {
                    expected: "a report tag",
                    found: other.to_string(),
                });
            }
        }
    }
    landlock.ok_or(SandboxError::Protocol {
        expected: "a Landlock report before execve",
        found: "the child exited without one".into(),
    })
}

fn wait_readable(fd: &OwnedFd) -> Result<(), SandboxError> {
    use rustix::event::{PollFd, PollFlags, Timespec, poll};
    let timeout = Timespec {
        tv_sec: SETUP_TIMEOUT.as_secs() as i64,
        tv_nsec: 0,
    };
    loop {
        let mut fds = [PollFd::new(fd, PollFlags::IN)];
        match poll(&mut fds, Some(&timeout)) {
            Ok(0) => {
                return Err(SandboxError::os(
                    "waiting for the sandbox child to confine itself",
                    io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!("no execve within {} s", SETUP_TIMEOUT.as_secs()),
                    ),
                ));
            }
            Ok(_) => return Ok(()),
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(SandboxError::os("poll on the report pipe", e)),
        }
    }
}
