//! What `secllama launch` hands the agent as open descriptors instead of writable host folders
//! (docs/isolation.md): the agent's sandbox mounts no host folder writable, so it cannot replace
//! its listener, the launch log, the receipts or `ak.pub`, and a runner — in a sandbox of its own —
//! reaches none of them.
//!
//! Each descriptor is named by an environment variable holding its number (3 and up):
//!
//! | variable | descriptor | the agent uses it for |
//! |---|---|---|
//! | [`LISTENER_FD`] | a bound, listening unix socket | the enclave API (the launcher bound the configured `listener`) |
//! | [`EVENT_LOG_FD`] | the launch event log, read-write, append | reading the launcher's events, appending its PCR 23 event |
//! | [`RECEIPTS_FD`] | the receipt log, read-write, append | the receipt chain |
//! | [`AK_AUTH_FD`] | the read end of a pipe | the AK's auth value (1–32 bytes, then end of file) |
//! | [`RUNNER_DIR_FD`] | the runner sandbox's `/tmp` | connecting to [`crate::endpoint::RUNNER_SOCKET`] |
//!
//! A variable that is set but names no open descriptor of the expected kind is an error; unset
//! variables mean the agent runs on its own (development: it binds, opens and spawns by path).

#![allow(unsafe_code)]

use std::fs::File;
use std::io::Read;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};

/// Listener descriptor variable.
pub const LISTENER_FD: &str = "SECLLAMA_LISTENER_FD";
/// Event log descriptor variable.
pub const EVENT_LOG_FD: &str = "SECLLAMA_EVENT_LOG_FD";
/// Receipt log descriptor variable.
pub const RECEIPTS_FD: &str = "SECLLAMA_RECEIPTS_FD";
/// AK auth pipe descriptor variable.
pub const AK_AUTH_FD: &str = "SECLLAMA_AK_AUTH_FD";
/// Runner directory descriptor variable.
pub const RUNNER_DIR_FD: &str = "SECLLAMA_RUNNER_DIR_FD";

/// Highest descriptor number accepted (the launcher passes at most 16, from 3).
const MAX_FD: RawFd = 3 + 16;

/// A handed-over descriptor that is missing or not what was expected.
#[derive(Debug, thiserror::Error)]
#[error("{var}: expected {expected}, found {found}")]
pub struct HandoffError {
    var: &'static str,
    expected: &'static str,
    found: String,
}

/// The descriptors the launcher handed over.
#[derive(Debug, Default)]
pub struct Handoff {
    /// The listening socket.
    pub listener: Option<OwnedFd>,
    /// The launch event log.
    pub event_log: Option<File>,
    /// The receipt log.
    pub receipts: Option<File>,
    /// The AK auth value.
    pub ak_auth: Option<Vec<u8>>,
    /// The runner sandbox's socket directory.
    pub runner_dir: Option<OwnedFd>,
}

impl Handoff {
    /// Takes the descriptors named in the environment. Call once, before anything else opens
    /// descriptors it might confuse with them.
    pub fn from_env() -> Result<Self, HandoffError> {
        Self::from_vars(|var| std::env::var(var).ok())
    }

    /// As [`Handoff::from_env`], with the variables from `get`. Each descriptor named is taken
    /// over (closed when the result is dropped), also when a later one is refused.
    pub fn from_vars(get: impl Fn(&str) -> Option<String>) -> Result<Self, HandoffError> {
        use rustix::fs::FileType;
        let mut taken: Vec<RawFd> = Vec::new();
        let mut take = |var: &'static str, kind: FileType, expected: &'static str| {
            let Some(v) = get(var) else {
                return Ok(None);
            };
            let err = |found: String| HandoffError {
                var,
                expected,
                found,
            };
            let fd: RawFd = v
                .parse()
                .ok()
                .filter(|n| (3..=MAX_FD).contains(n))
                .ok_or_else(|| err(format!("{v:?} (not a descriptor number 3..={MAX_FD})")))?;
            if taken.contains(&fd) {
                return Err(err(format!("descriptor {fd}, already taken")));
            }
            // SAFETY: fstat on a raw number only reads the kernel's descriptor table; an unused
            // number gives EBADF.
            let borrowed = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
            let st = rustix::fs::fstat(borrowed)
                .map_err(|e| err(format!("descriptor {fd} not open ({e})")))?;
            let found = FileType::from_raw_mode(st.st_mode);
            if found != kind {
                return Err(err(format!("descriptor {fd} of type {found:?}")));
            }
            taken.push(fd);
            // SAFETY: the descriptor is open (fstat succeeded), was handed over by the launcher
            // for this purpose, and is taken once (checked above), so this is its only owner.
            Ok(Some(unsafe { OwnedFd::from_raw_fd(fd) }))
        };
        let listener = take(LISTENER_FD, FileType::Socket, "a listening unix socket")?;
        let event_log = take(EVENT_LOG_FD, FileType::RegularFile, "the launch log file")?;
        let receipts = take(RECEIPTS_FD, FileType::RegularFile, "the receipt log file")?;
        let ak_auth = take(AK_AUTH_FD, FileType::Fifo, "a pipe carrying the AK auth")?;
        let runner_dir = take(RUNNER_DIR_FD, FileType::Directory, "a directory")?;
        let ak_auth = match ak_auth {
            Some(fd) => {
                let mut auth = Vec::new();
                File::from(fd)
                    .take(33)
                    .read_to_end(&mut auth)
                    .map_err(|e| HandoffError {
                        var: AK_AUTH_FD,
                        expected: "a readable pipe",
                        found: e.to_string(),
                    })?;
                if auth.is_empty() || auth.len() > 32 {
                    return Err(HandoffError {
                        var: AK_AUTH_FD,
                        expected: "1 to 32 bytes of AK auth",
                        found: format!("{} bytes", auth.len()),
                    });
                }
                Some(auth)
            }
            None => None,
        };
        Ok(Self {
            listener,
            event_log: event_log.map(File::from),
            receipts: receipts.map(File::from),
            ak_auth,
            runner_dir,
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use std::collections::BTreeMap;
    use std::io::Write;
    use std::os::fd::IntoRawFd;

    fn vars(v: &[(&'static str, String)]) -> impl Fn(&str) -> Option<String> {
        let m: BTreeMap<String, String> =
            v.iter().map(|(k, v)| (k.to_string(), v.clone())).collect();
        move |k| m.get(k).cloned()
    }

    fn pipe_with(bytes: &[u8]) -> RawFd {
        let (rx, tx) = rustix::pipe::pipe().unwrap();
        File::from(tx).write_all(bytes).unwrap();
        rx.into_raw_fd()
    }

    #[test]
    fn takes_each_descriptor_of_the_expected_kind_once() {
        let d = tempfile::tempdir().unwrap();
        let log = File::create(d.path().join("log")).unwrap().into_raw_fd();
        let dir = File::open(d.path()).unwrap().into_raw_fd();
        let auth = pipe_with(&[7; 32]);
        let h = Handoff::from_vars(vars(&[
            (EVENT_LOG_FD, log.to_string()),
            (RUNNER_DIR_FD, dir.to_string()),
            (AK_AUTH_FD, auth.to_string()),
        ]))
        .unwrap();
        assert!(h.event_log.is_some() && h.runner_dir.is_some() && h.listener.is_none());
        assert_eq!(h.ak_auth.unwrap(), vec![7; 32]);
        assert!(Handoff::from_vars(vars(&[])).unwrap().receipts.is_none());
    }

    #[test]
    fn refuses_what_is_not_what_it_should_be() {
        let d = tempfile::tempdir().unwrap();
        let cases: Vec<(Vec<(&'static str, String)>, &str)> = vec![
            (vec![(LISTENER_FD, "x".into())], "not a descriptor number"),
            (vec![(LISTENER_FD, "2".into())], "not a descriptor number"),
            (
                vec![(
                    LISTENER_FD,
                    File::create(d.path().join("a"))
                        .unwrap()
                        .into_raw_fd()
                        .to_string(),
                )],
                "of type RegularFile",
            ),
            (
                vec![(AK_AUTH_FD, pipe_with(&[1; 33]).to_string())],
                "1 to 32 bytes",
            ),
            (
                vec![(AK_AUTH_FD, pipe_with(b"").to_string())],
                "1 to 32 bytes",
            ),
        ];
        for (v, says) in cases {
            let e = Handoff::from_vars(vars(&v)).unwrap_err().to_string();
            assert!(e.contains(says), "{v:?}: {e}");
        }
        let f = File::create(d.path().join("b")).unwrap().into_raw_fd();
        let e = Handoff::from_vars(vars(&[
            (EVENT_LOG_FD, f.to_string()),
            (RECEIPTS_FD, f.to_string()),
        ]))
        .unwrap_err()
        .to_string();
        assert!(e.contains("already taken"), "{e}");
    }
}
