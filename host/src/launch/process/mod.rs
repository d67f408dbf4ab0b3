//! Process-mode launch (DESIGN.md "Shape", docs/isolation.md): from the agent's config, measure
//! the launch into the TPM and start two sandboxes — the agent's, and the runner's own, as
//! another host user — joined only by one unix socket.
//!
//! Order, failing closed at each step:
//! 1. the config: the measured config (`[launch] config`) must be the file launched with; the
//!    runner command must start the measured runner; the listener, event log and receipt log share
//!    one state folder, which holds no artifact and which no sandbox mounts;
//! 2. libraries: everything the agent, the runner and the TCTI module load must be listed (and so
//!    measured) in `[launch] libraries`;
//! 3. the TPM: its allocated banks must be the launch's banks, and the launch PCR and PCR 23 must
//!    still be zero (an enclave launched earlier since the TPM started would make the quote differ
//!    from any manifest); the AK exists with an auth value only the launcher and the agent hold;
//! 4. the launch events ([`predict`]) are extended and logged, exactly as `secllama measure launch`
//!    predicts them;
//! 5. ([`start`]) the runner's sandbox starts (`secllama-enclave runner-init`), then the agent's,
//!    which gets its listener, logs, AK auth, TPM channel and the runner's socket folder as open
//!    descriptors; the launch succeeds once the agent says `listening on …`.
//!
//! The launcher must run as root: the runner and the agent run as two different host users.
//! Production TPMs (`device:/dev/tpmrm0`) are not handed into the sandbox yet: the sandbox mounts
//! no TPM device node. The launcher says so rather than starting an enclave that cannot attest.

use crate::access;
use crate::libraries;
use anyhow::{Context, bail, ensure};
use secllama_enclave::config::Config;
use secllama_measurements::launch::{Prediction, predict};
use secllama_tpm::Tpm;
use secllama_tpm::eventlog::EventLogWriter;
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// The AK's TPM2B_PUBLIC, written to the state directory at launch.
pub const AK_PUBLIC: &str = "ak.pub";

/// The AK's auth value (32 random bytes, mode 0600), kept by the launcher in the state folder
/// and handed only to the agent (docs/isolation.md).
pub const AK_AUTH: &str = "ak.auth";

/// The folder (in the state folder) of the TPM relay socket, reached by the agent only through a
/// descriptor.
pub const TPM_DIR: &str = "tpm";
/// The TPM relay socket's name in [`TPM_DIR`].
pub const TPM_SOCKET: &str = "tpm.sock";

pub mod output;
mod start;
pub use start::Enclave;

/// The host side of a `swtpm:host=H,port=P` TCTI (loopback only).
fn swtpm_address(tcti: &str) -> anyhow::Result<SocketAddr> {
    if tcti.starts_with("device") {
        bail!(
            "TCTI {tcti}: process mode hands the TPM to the sandbox through a swtpm relay; mounting a \
             TPM device node into the sandbox is not implemented yet — use a swtpm \
             (swtpm:host=127.0.0.1,port=P) or VM mode"
        );
    }
    let (host, port) = secllama_tpm::tcti::swtpm_endpoint(tcti)?
        .with_context(|| format!("TCTI: expected swtpm:host=H,port=P, found {tcti:?}"))?;
    let host = if host == "localhost" {
        "127.0.0.1".to_string()
    } else {
        host
    };
    let ip: std::net::IpAddr = host
        .parse()
        .with_context(|| format!("TCTI {tcti}: host must be an IP address"))?;
    ensure!(
        ip.is_loopback(),
        "TCTI {tcti}: expected a swtpm on a loopback address, found {ip}"
    );
    Ok(SocketAddr::new(ip, port))
}

fn canonical(p: &Path, what: &str) -> anyhow::Result<PathBuf> {
    std::fs::canonicalize(p).with_context(|| format!("{what}: {}", p.display()))
}

/// Everything checked from the config before anything is touched.
struct Plan {
    config: Config,
    config_path: PathBuf,
    base: PathBuf,
    agent: PathBuf,
    /// What the agent's sandbox mounts read-only.
    read_only: Vec<PathBuf>,
    /// What the runner's sandbox mounts read-only: `read_only` without the policy.
    runner_read_only: Vec<PathBuf>,
    state: PathBuf,
}

fn plan(config_arg: &Path) -> anyhow::Result<Plan> {
    let config_path = canonical(config_arg, "the config")?;
    let (config, base) = Config::load(&config_path)?;
    let abs = |p: &Path| {
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            base.join(p)
        }
    };
    let l = &config.launch;
    let measured = canonical(&abs(&l.config), "[launch] config")?;
    ensure!(
        measured == config_path,
        "[launch] config: expected the file being launched ({}), found {}: the agent must run with \
         the config that is measured",
        config_path.display(),
        measured.display()
    );
    let agent = canonical(&abs(&l.agent), "[launch] agent")?;
    let runner = canonical(&abs(&l.runner), "[launch] runner")?;
    let command = config.runner_command.as_deref().unwrap_or_default();
    let first = command.first().context(
        "runner_command: expected the runner's command line (in process mode the agent starts \
         the runner inside the enclave), found none",
    )?;
    let started = canonical(&abs(Path::new(first)), "runner_command[0]")?;
    ensure!(
        started == runner,
        "runner_command[0]: expected the measured runner {}, found {}",
        runner.display(),
        started.display()
    );
    ensure!(
        config.tcti.is_none(),
        "tcti: in process mode the launcher hands its TPM to the agent; remove `tcti = {:?}` \
         from the config",
        config.tcti.as_deref().unwrap_or_default()
    );

    let socket = config.listener_path();
    ensure!(
        socket.is_absolute(),
        "listener: expected unix:<absolute path>, found {}",
        config.listener
    );
    let state = socket
        .parent()
        .context("listener: the socket needs a folder")?
        .to_path_buf();
    for (key, p) in [
        ("event_log", &config.event_log),
        ("receipts", &config.receipts),
    ] {
        ensure!(
            p.parent() == Some(state.as_path()),
            "{key}: expected a file in the listener's folder {} (the state folder, which the \
             launcher hands to the agent file by file), found {}",
            state.display(),
            p.display()
        );
    }

    // The state folder may not exist yet: canonicalize what does.
    let canon_state = std::fs::canonicalize(&state).unwrap_or_else(|_| {
        match (state.parent(), state.file_name()) {
            (Some(parent), Some(name)) => std::fs::canonicalize(parent)
                .map(|p| p.join(name))
                .unwrap_or_else(|_| state.clone()),
            _ => state.clone(),
        }
    });
    let mut read_only = vec![agent.clone(), runner, config_path.clone()];
    let policy = canonical(&abs(&l.policy), "[launch] policy")?;
    for t in &l.trees {
        let tree = canonical(&abs(t), "[launch] trees")?;
        ensure!(
            !canon_state.starts_with(&tree) && tree != Path::new("/"),
            "[launch] trees: {} holds the writable state folder {} (or is /): the enclave's own \
             logs and sockets cannot be part of a measured, read-only folder",
            t.display(),
            state.display()
        );
        ensure!(
            !policy.starts_with(&tree),
            "[launch] policy: {} is inside the measured tree {}: the runner's sandbox holds every \
             tree, and the policy's evaluation dataset is the agent's alone (docs/isolation.md); \
             keep the policy outside the trees",
            policy.display(),
            t.display()
        );
        access::no_link_into(&tree, &[&canon_state, &state])?;
        read_only.push(tree);
    }
    let needed = libraries::for_launch(l, &base)?;
    for m in &l.model {
        read_only.push(canonical(&abs(m), "[launch] model")?);
    }
    read_only.push(policy.clone());
    for p in &read_only {
        ensure!(
            !p.starts_with(&canon_state),
            "{}: artifacts must not live in the writable state folder {}",
            p.display(),
            state.display()
        );
    }
    // The agent and the runner open the artifacts by the paths the config writes; where such a
    // path goes through a symlink, the sandbox needs that path too (the mount plan reproduces
    // the symlinks on the way and binds the canonical file).
    let written = [
        abs(&l.agent),
        abs(&l.runner),
        abs(Path::new(first)),
        abs(&l.policy),
    ]
    .into_iter()
    .chain(l.model.iter().map(|m| abs(m)))
    .chain(l.trees.iter().map(|t| abs(t)));
    for w in written {
        if !read_only.contains(&w) {
            read_only.push(w);
        }
    }

    let missing = libraries::missing(&needed, &l.libraries);
    if !missing.is_empty() {
        bail!(
            "[launch] libraries: the agent, runner, measured trees and TCTI module load {} \
             file(s) the list does not name (they run inside the enclave, so they must be measured): {}\nput this line \
             in [launch] (or run `secllama measure libraries --config {}`):\n{}",
            missing.len(),
            missing
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", "),
            config_path.display(),
            libraries::toml_line(&needed).trim_end()
        );
    }
    for lib in &l.libraries {
        if !read_only.contains(lib) {
            read_only.push(lib.clone());
        }
    }
    // The runner's sandbox holds every artifact but the policy (its dataset is the agent's
    // business; a policy inside a tree was refused above).
    let policy_paths = [policy, abs(&l.policy)];
    let runner_read_only = read_only
        .iter()
        .filter(|f| !policy_paths.contains(f))
        .cloned()
        .collect();
    Ok(Plan {
        runner_read_only,
        config,
        config_path,
        base,
        agent,
        read_only,
        state,
    })
}

/// Measures the launch into the TPM at `tcti`; returns the prediction it extended and the AK's
/// auth value (for the agent).
fn measure_into_tpm(p: &Plan, tcti: &str) -> anyhow::Result<(Prediction, Vec<u8>)> {
    let prediction = predict(&p.config.launch, &p.base)?;
    let mut tpm = Tpm::connect(tcti).context("connecting to the TPM")?;
    let mut active = tpm.active_banks()?;
    active.sort();
    ensure!(
        active == prediction.banks,
        "[launch] banks: expected every bank the TPM has allocated ({:?}), found {:?}",
        active.iter().map(|b| b.name()).collect::<Vec<_>>(),
        prediction
            .banks
            .iter()
            .map(|b| b.name())
            .collect::<Vec<_>>()
    );
    let pcrs = [p.config.launch.pcr, secllama_enclave::config::KEYS_PCR];
    let now = tpm.read_pcrs(secllama_tpm::pcr::selection(&active, &pcrs)?)?;
    for (bank, values) in &now {
        for (pcr, v) in values {
            ensure!(
                v.iter().all(|b| *b == 0),
                "PCR {pcr} ({}) is {}: expected zero — something was launched since the TPM \
                 started (one launch per TPM lifetime: a quote over PCRs that equal the manifest \
                 then proves exactly one launch). {RECOVERY}",
                bank.name(),
                hex::encode(v)
            );
        }
    }
    // The AK the agent will quote with: created (or found) now and published beside the socket,
    // so the operator can pin it in the manifest (`secllama measure launch --ak-public`).
    let (ak, auth) = ak_with_auth(&mut tpm, p, &active)?;
    let ak_file = p.state.join(AK_PUBLIC);
    let _ = std::fs::remove_file(&ak_file);
    std::fs::write(&ak_file, &ak.public)
        .with_context(|| format!("writing {}", ak_file.display()))?;
    // PCRs are zero, so any log in the state folder is from an earlier TPM lifetime.
    let _ = std::fs::remove_file(&p.config.event_log);
    let mut log = EventLogWriter::open(&p.config.event_log, &prediction.banks)?;
    for m in &prediction.measurements {
        tpm.measure(&mut log, m)?;
    }
    Ok((prediction, auth))
}

/// The persistent AK, usable only with the auth value in `ak.auth` (created with both on first
/// launch). Checked by a quote with that auth, so a launch never hands the agent an auth value
/// that does not open the AK.
fn ak_with_auth(
    tpm: &mut Tpm,
    p: &Plan,
    banks: &[secllama_tpm::eventlog::HashAlg],
) -> anyhow::Result<(secllama_tpm::ak::AkInfo, Vec<u8>)> {
    let handle = p.config.ak_handle;
    let auth_file = p.state.join(AK_AUTH);
    let present = tpm.has_persistent(handle)?;
    let auth = match std::fs::read(&auth_file) {
        Ok(a) => a,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            ensure!(
                !present,
                "AK at {handle:#010x}: expected an AK this launcher created (its auth value in \
                 {}), found an AK whose auth value is unknown here (made by an older secllama, \
                 without auth, or the file was lost). Anyone with access to the TPM could quote \
                 with an AK without auth; remove it with `tpm2_evictcontrol -C o -c {handle:#010x}` \
                 and launch again — the new AK has a new public key: pin the new ak.pub",
                auth_file.display()
            );
            let mut a = [0u8; 32];
            std::fs::File::open("/dev/urandom")
                .and_then(|mut f| f.read_exact(&mut a))
                .context("reading 32 random bytes for the AK auth value")?;
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&auth_file)
                .with_context(|| format!("creating {}", auth_file.display()))?;
            f.write_all(&a)
                .and_then(|()| f.sync_all())
                .with_context(|| format!("writing {}", auth_file.display()))?;
            a.to_vec()
        }
        Err(e) => return Err(e).with_context(|| format!("reading {}", auth_file.display())),
    };
    ensure!(
        (1..=32).contains(&auth.len()),
        "{}: expected 1 to 32 bytes of AK auth, found {}",
        auth_file.display(),
        auth.len()
    );
    if !present {
        tpm.create_ak(handle, secllama_tpm::ak::AkKind::RsaSsaSha256, &auth)?;
    }
    tpm.set_ak_auth(&auth)?;
    tpm.quote(
        handle,
        b"secllama launch: AK auth check",
        banks,
        &[p.config.launch.pcr],
    )
    .with_context(|| {
        format!(
            "AK at {handle:#010x}: the auth value in {} does not open it (remove the AK with \
                 `tpm2_evictcontrol -C o -c {handle:#010x}` and {} to create both again)",
            auth_file.display(),
            auth_file.display()
        )
    })?;
    Ok((tpm.ak_info(handle)?, auth))
}

/// Measures and starts the enclave described by `config`, using the swtpm at `tcti`. Agent output
/// goes to `log` line by line (prefixed `enclave: `).
pub fn start(
    config: &Path,
    tcti: &str,
    log: impl Write + Send + 'static,
) -> anyhow::Result<Enclave> {
    let tpm_addr = swtpm_address(tcti)?;
    let p = plan(config)?;
    ensure!(
        rustix::process::geteuid().is_root(),
        "secllama launch: expected to run as root, found uid {}: the agent and the runner run as \
         two different host users ([sandbox] host_uid and runner_host_uid), so that a runner \
         taken over by a hostile model cannot become the agent (docs/isolation.md)",
        rustix::process::geteuid().as_raw()
    );
    let s = &p.config.sandbox;
    let owners = [
        (s.host_uid, s.host_gid),
        (s.runner_host_uid, s.runner_host_gid),
    ];

    std::fs::create_dir_all(&p.state)
        .with_context(|| format!("creating the state folder {}", p.state.display()))?;
    for (u, g) in owners {
        if let Some((pid, name)) = access::host_process_of_uid(u)? {
            bail!(
                "[sandbox]: host uid {u} is to be the agent's or the runner's own, found host \
                 process {pid} ({name}) running as it — it could signal the sandboxed process; \
                 set host_uid and runner_host_uid to ids no host process uses \
                 (docs/isolation.md)"
            );
        }
        for f in &p.read_only {
            access::reachable_by(f, u, g, 0o4)?;
            if f.is_dir() {
                access::tree_readable_by(f, u, g)?;
            }
        }
    }
    let socket = p.config.listener_path();
    for stale in [p.state.join(TPM_DIR).join(TPM_SOCKET), socket.clone()] {
        let _ = std::fs::remove_file(stale);
    }
    let (prediction, ak_auth) = measure_into_tpm(&p, tcti)?;
    let mut log = log;
    super::receipts::retire_foreign_log(&p.config.receipts, &prediction, &mut log)?;
    let pcr = p.config.launch.pcr;
    start::start_measured(p, prediction, &ak_auth, tpm_addr, socket, log).map_err(|e| {
        e.context(format!(
            "the launch was measured into PCR {pcr} but the enclave did not start; this TPM \
             lifetime cannot launch again. {RECOVERY}"
        ))
    })
}

/// How to launch again after a launch was measured: a new TPM lifetime.
pub const RECOVERY: &str = "To retry, restart the TPM (a swtpm: stop it and start it again on \
     the same state folder, or `swtpm_ioctl --tcp 127.0.0.1:<ctrl port> -i` then `tpm2_startup \
     -c`; NV, the EK and the AK survive, the PCRs reset; a hardware TPM: reboot), then launch \
     again (see docs/runner.md, \"When a launch fails\")";

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn only_loopback_swtpm_tctis_are_relayed() {
        assert_eq!(
            swtpm_address("swtpm:host=127.0.0.1,port=2400").unwrap(),
            "127.0.0.1:2400".parse().unwrap()
        );
        assert_eq!(
            swtpm_address("swtpm:port=2400,host=localhost").unwrap(),
            "127.0.0.1:2400".parse().unwrap()
        );
        for (tcti, says) in [
            ("swtpm:host=192.0.2.1,port=2321", "loopback"),
            ("swtpm:host=example.com,port=2321", "IP address"),
            ("swtpm:host=127.0.0.1,prot=2321", "TCTI: expected"),
            ("device:/dev/tpmrm0", "not implemented"),
            ("mssim:port=1", "expected swtpm"),
        ] {
            let e = swtpm_address(tcti).unwrap_err().to_string();
            assert!(e.contains(says), "{tcti}: {e}");
        }
    }
}
