//! Issue 11 — the runner must not be able to become the agent (docs/isolation.md). A hostile
//! runner (`secllama-hostile-runner`, launched by the real `secllama launch` as the measured
//! runner) attacks from inside its sandbox: it scans loopback for the TPM relay, tries the swtpm's
//! server and control ports and TPM device nodes, looks for the agent's process and memory, tries
//! to remove, replace or plant `ak.pub`, `ak.auth`, the logs, the listener and the TPM socket, and
//! fills every writable place. Every attempt must be refused — and the enclave must still attest
//! and answer through that runner. From the host, the same test checks what the runner could not
//! even try: a quote with the AK without the agent's auth value is refused by the TPM (and works
//! with it; four refusals do not lock the agent out: the AK is `noDA`), the agent is not dumpable (its `/proc` entries belong to root; a process of the
//! agent's host uid cannot open its memory), the host's files belong to root, and the swtpm
//! control channel has no relay socket.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test crate: a failed unwrap is a failed test

use secllama_tests::enclave::{Reaped, policy_for};
use secllama_tests::launch::{
    EnclaveSpec, bin, free_port, launch_with_output, manifest, sw_banks, verify_generate,
};
use secllama_tests::runner::answer_tokens;
use secllama_tests::swtpm::Swtpm;
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

const PROMPT: &str = "why is the sky blue";
const ATTACKS: [&str; 8] = [
    "tpm-relay-scan",
    "swtpm-channels",
    "tpm-devices",
    "agent-memory",
    "host-files",
    "policy-dataset",
    "disk-bound",
    "sysv-shm",
];

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).to_string()
}

fn children(pid: u32) -> Vec<u32> {
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .map(|p| p.parse().unwrap())
        .collect()
}

fn uid_of(pid: u32) -> u32 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let uid = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
    uid.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[test]
fn a_hostile_runner_reaches_nothing_of_the_agent_and_the_enclave_still_answers() {
    assert!(
        rustix::process::geteuid().is_root(),
        "this test launches enclaves, which needs root (two host users); run scripts/test.sh as root"
    );
    let sw = Swtpm::start().unwrap();
    let banks = sw_banks(&sw).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (art, state) = (dir.path().join("art"), dir.path().join("run"));
    std::fs::create_dir_all(&art).unwrap();
    std::fs::write(art.join("model.gguf"), b"tiny weights").unwrap();
    let runner = bin("secllama-hostile-runner").unwrap();
    let port = free_port().unwrap();
    let config = EnclaveSpec {
        art: art.clone(),
        state: state.clone(),
        banks,
        runner: runner.clone(),
        runner_command: vec![
            runner.display().to_string(),
            "--listen".into(),
            format!("127.0.0.1:{port}"),
            "--state".into(),
            state.display().to_string(),
            "--swtpm-port".into(),
            sw.port().to_string(),
            "--tmp-limit-mib".into(),
            "64".into(),
            "--deny".into(),
            art.join("policy.json").display().to_string(),
        ],
        runner_port: port,
        runner_env: vec![],
        runner_ready_secs: 120,
        models: vec![PathBuf::from("model.gguf")],
        trees: vec![],
        policy: policy_for(PROMPT),
        memory_mib: 4096,
    }
    .write()
    .unwrap();

    // A policy inside a measured tree would be in the runner's view: refused before measuring.
    let in_tree = EnclaveSpec {
        art: dir.path().join("art-tree"),
        state: state.clone(),
        banks: sw_banks(&sw).unwrap(),
        runner: runner.clone(),
        runner_command: vec![runner.display().to_string()],
        runner_port: port,
        runner_env: vec![],
        runner_ready_secs: 5,
        models: vec![art.join("model.gguf")],
        trees: vec![dir.path().join("art-tree")],
        policy: policy_for(PROMPT),
        memory_mib: 4096,
    }
    .write()
    .unwrap();
    let refused = Command::new(bin("secllama").unwrap())
        .args(["launch", "--no-bridge", "--tcti", &sw.tcti(), "--config"])
        .arg(&in_tree)
        .output()
        .unwrap();
    assert!(!refused.status.success());
    assert!(
        text(&refused.stderr).contains("is inside the measured tree"),
        "{}",
        text(&refused.stderr)
    );

    // A host process already running as the agent's uid could signal it: refused before anything
    // is measured.
    let squatter = Reaped(
        Command::new("sleep")
            .arg("30")
            .uid(65532)
            .gid(65532)
            .spawn()
            .unwrap(),
    );
    let refused = Command::new(bin("secllama").unwrap())
        .args(["launch", "--no-bridge", "--tcti", &sw.tcti(), "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(!refused.status.success());
    let says = text(&refused.stderr);
    assert!(
        says.contains(&format!("host process {}", squatter.0.id()))
            && says.contains("host uid 65532"),
        "{says}"
    );
    drop(squatter);

    let (launcher, lines, bridge) = launch_with_output(&config, &sw.tcti()).unwrap();

    // Every attack from inside the runner's sandbox was refused.
    let deadline = Instant::now() + Duration::from_secs(120);
    while !lines
        .lock()
        .unwrap()
        .iter()
        .any(|l| l.ends_with("ATTACKS DONE"))
    {
        assert!(
            Instant::now() < deadline,
            "the hostile runner did not finish"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let seen = lines.lock().unwrap().clone();
    for attack in ATTACKS {
        let line = seen
            .iter()
            .find(|l| l.contains(&format!("ATTACK {attack}:")))
            .unwrap_or_else(|| panic!("no result for {attack}: {seen:?}"));
        assert!(
            line.starts_with("runner: ") && line.contains(": refused ("),
            "{line}"
        );
    }
    assert!(!seen.iter().any(|l| l.contains("SUCCEEDED")), "{seen:?}");

    // Two sandboxes as two host users; the agent is not dumpable, runner-init is.
    let kids = children(launcher.0.id());
    assert_eq!(kids.len(), 2, "{kids:?}");
    let agent = *kids.iter().find(|p| uid_of(**p) == 65532).unwrap();
    let runner_init = *kids.iter().find(|p| uid_of(**p) == 65533).unwrap();
    let owner = |pid: u32| std::fs::metadata(format!("/proc/{pid}/mem")).unwrap().uid();
    assert_eq!(
        owner(agent),
        0,
        "a non-dumpable process's /proc entries belong to root"
    );
    assert_eq!(owner(runner_init), 65533, "control: a dumpable process's");
    let peek = Command::new("python3")
        .args(["-c", &format!("open('/proc/{agent}/mem', 'rb')")])
        .uid(65532)
        .gid(65532)
        .output()
        .unwrap();
    assert!(
        !peek.status.success() && text(&peek.stderr).contains("Permission denied"),
        "uid 65532 opened the agent's memory: {}",
        text(&peek.stderr)
    );

    // The AK: a quote without the agent's auth value is refused by the TPM; with it, it works.
    let quote = |auth: Option<String>| {
        let mut c = sw.tool("quote");
        c.args(["-c", "0x81010002", "-l", "sha256:15", "-q", "00112233"]);
        if let Some(a) = auth {
            c.args(["-p", &format!("hex:{a}")]);
        }
        c.output().unwrap()
    };
    // Four wrong tries: the AK is noDA, so they do not lock the TPM out for the agent.
    for _ in 0..4 {
        let refused = quote(None);
        assert!(
            !refused.status.success(),
            "a quote without the AK auth value was made: {}",
            text(&refused.stdout)
        );
        assert!(
            text(&refused.stderr).to_lowercase().contains("auth"),
            "{}",
            text(&refused.stderr)
        );
    }
    let auth = std::fs::read(state.join("ak.auth")).unwrap();
    assert_eq!(auth.len(), 32);
    let made = quote(Some(hex::encode(&auth)));
    assert!(made.status.success(), "{}", text(&made.stderr));

    // The enclave still attests and answers through that runner.
    let manifest_file = dir.path().join("manifest.toml");
    manifest(&config, &state, &manifest_file).unwrap();
    let url = format!("http://{bridge}");
    let g = verify_generate(&url, "tiny:latest", PROMPT, &manifest_file, &[]).unwrap();
    assert!(g.status.success(), "{}", text(&g.stderr));
    assert_eq!(
        text(&g.stdout).trim_end(),
        answer_tokens(PROMPT).concat().trim_end()
    );
    assert!(text(&g.stderr).contains("receipt: verified"));

    // What the host relies on belongs to root and is not writable by anyone else; the control
    // channel has no relay socket.
    for (name, mode) in [
        ("ak.pub", 0o644),
        ("ak.auth", 0o600),
        ("launch.log", 0o644),
        ("receipts.log", 0o600),
    ] {
        let m = std::fs::metadata(state.join(name)).unwrap();
        assert_eq!((m.uid(), m.mode() & 0o777), (0, mode), "{name}");
    }
    let tpm_dir = std::fs::metadata(state.join("tpm")).unwrap();
    assert_eq!((tpm_dir.uid(), tpm_dir.mode() & 0o777), (0, 0o700));
    let names: Vec<String> = std::fs::read_dir(&state)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .collect();
    assert!(
        !names.iter().any(|n| n.contains("ctrl")),
        "a control-channel socket in the state folder: {names:?}"
    );
    let tpm_names: Vec<String> = std::fs::read_dir(state.join("tpm"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .collect();
    assert_eq!(tpm_names, ["tpm.sock"]);
}
