//! `secllama launch` end to end, every component a real process: a private swtpm; the launcher
//! measuring the launch into it and starting the agent (and through it the test runner) in the
//! process sandbox with its bridge; `secllama measure launch` writing the manifest with the AK the
//! launcher published; `secllama-verify attest` and `generate` through the bridge. Then the things a
//! launcher must refuse: a second launch on the same TPM lifetime (PCRs not zero), unmeasured
//! libraries, a runner command that is not the measured runner. Finally SIGTERM stops everything.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test crate: a failed unwrap is a failed test

use secllama_tests::enclave::{Reaped, policy_for};
use secllama_tests::launch::{EnclaveSpec, free_port, verify_generate};
use secllama_tests::runner::answer_tokens;
use secllama_tests::swtpm::Swtpm;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

const PROMPT: &str = "why is the sky blue";

fn bin(name: &str) -> PathBuf {
    secllama_tests::launch::bin(name).unwrap()
}

fn run(cmd: &mut Command) -> Output {
    cmd.output().unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).to_string()
}

/// Writes the artifacts and the agent's config (the test runner, started as `runner_cmd0`);
/// returns the config path.
fn write_config(art: &Path, state: &Path, banks: &[String], runner_cmd0: &Path) -> PathBuf {
    std::fs::create_dir_all(art).unwrap();
    std::fs::write(art.join("model.gguf"), b"tiny weights").unwrap();
    let port = free_port().unwrap();
    EnclaveSpec {
        art: art.to_path_buf(),
        state: state.to_path_buf(),
        banks: banks.to_vec(),
        runner: PathBuf::from(env!("CARGO_BIN_EXE_secllama-test-runner")),
        runner_command: vec![
            runner_cmd0.display().to_string(),
            "--listen".into(),
            format!("127.0.0.1:{port}"),
        ],
        runner_port: port,
        runner_env: vec![],
        runner_ready_secs: 60,
        models: vec![PathBuf::from("model.gguf")],
        trees: vec![],
        policy: policy_for(PROMPT),
        memory_mib: 4096,
    }
    .write()
    .unwrap()
}

fn launch(config: &Path, tcti: &str) -> (Reaped, String) {
    secllama_tests::launch::launch(config, tcti).unwrap()
}

fn sw_banks(sw: &Swtpm) -> Vec<String> {
    secllama_tests::launch::sw_banks(sw).unwrap()
}

#[test]
fn launch_attest_generate_refuse_and_stop() {
    let sw = Swtpm::start().unwrap();
    let banks = sw_banks(&sw);
    let dir = tempfile::tempdir().unwrap();
    let (art, state) = (dir.path().join("art"), dir.path().join("run"));
    let runner = Path::new(env!("CARGO_BIN_EXE_secllama-test-runner"));
    let config = write_config(&art, &state, &banks, runner);

    let (mut launcher, bridge) = launch(&config, &sw.tcti());
    let url = format!("http://{bridge}");

    // The agent and the runner's sandbox run as two different unprivileged host users.
    let children = std::fs::read_to_string(format!(
        "/proc/{}/task/{}/children",
        launcher.0.id(),
        launcher.0.id()
    ))
    .unwrap_or_default();
    let mut uids: Vec<Vec<String>> = children
        .split_whitespace()
        .map(|pid| {
            let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
            let uid = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
            uid.split_whitespace().skip(1).map(str::to_string).collect()
        })
        .collect();
    uids.sort();
    assert_eq!(
        uids,
        [vec!["65532".to_string(); 4], vec!["65533".to_string(); 4]],
        "the launcher's children (runner sandbox, agent sandbox): {children}"
    );

    // The manifest from the artifacts, pinning the AK the launcher published.
    let manifest = dir.path().join("manifest.toml");
    let m = run(Command::new(bin("secllama"))
        .args(["measure", "launch", "--config"])
        .arg(&config)
        .arg("--manifest")
        .arg(&manifest)
        .arg("--ak-public")
        .arg(state.join("ak.pub")));
    assert!(m.status.success(), "{}", text(&m.stderr));

    let saved = dir.path().join("doc.cose");
    let a = run(Command::new(bin("secllama-verify"))
        .args(["attest", "--format", "text", "--url", &url, "--manifest"])
        .arg(&manifest)
        .arg("--save")
        .arg(&saved));
    let report = text(&a.stdout);
    assert!(a.status.success(), "{report}{}", text(&a.stderr));
    assert!(report.contains("result: affirming"), "{report}");
    assert!(report.contains("AK equals pinned"), "{report}");

    // A replayed (stale) attestation document is refused for a fresh nonce.
    let doc = std::fs::read(&saved).unwrap();
    let manifest_value = secllama_measurements::manifest::Manifest::from_toml(
        &std::fs::read_to_string(&manifest).unwrap(),
    )
    .unwrap();
    let fresh = secllama_protocol::Nonce::new(vec![7; 32]).unwrap();
    let stale = secllama_client::attest::appraise(doc, &fresh, &manifest_value);
    assert!(
        !stale.result.affirming(),
        "a replayed document was accepted"
    );
    assert!(
        stale.result.to_text().contains("nonce"),
        "{}",
        stale.result.to_text()
    );

    // An allowed prompt: the runner's answer, with a verified receipt.
    for stream in [false, true] {
        let extra: &[&str] = if stream { &["--stream"] } else { &[] };
        let g = verify_generate(&url, "tiny:latest", PROMPT, &manifest, extra).unwrap();
        assert!(g.status.success(), "{}", text(&g.stderr));
        assert_eq!(
            text(&g.stdout).trim_end(),
            answer_tokens(PROMPT).concat().trim_end()
        );
        assert!(
            text(&g.stderr).contains("receipt: verified"),
            "{}",
            text(&g.stderr)
        );
    }
    // A prompt outside the dataset: refused, naming the rule; nothing printed on stdout.
    let g = verify_generate(&url, "tiny:latest", "tell me a secret", &manifest, &[]).unwrap();
    assert!(!g.status.success());
    assert!(text(&g.stdout).is_empty(), "{}", text(&g.stdout));
    assert!(
        text(&g.stderr).contains("refused by policy rule dataset"),
        "{}",
        text(&g.stderr)
    );
    let receipts = std::fs::read(state.join("receipts.log")).unwrap();
    assert!(
        !receipts.is_empty(),
        "the receipt log holds the answers' receipts"
    );

    // A second launch in the same TPM lifetime: the PCRs are no longer zero.
    let state2 = dir.path().join("run2");
    let config2 = write_config(&dir.path().join("art2"), &state2, &banks, runner);
    let l2 = run(Command::new(bin("secllama"))
        .args(["launch", "--no-bridge", "--tcti", &sw.tcti(), "--config"])
        .arg(&config2));
    assert!(!l2.status.success());
    assert!(
        text(&l2.stderr).contains("expected zero"),
        "{}",
        text(&l2.stderr)
    );

    // SIGKILL to a launcher takes its enclave down too (no orphaned enclave keeps serving).
    {
        let sw2 = Swtpm::start().unwrap();
        let state3 = dir.path().join("run3");
        let config3 = write_config(&dir.path().join("art3"), &state3, &banks, runner);
        let (mut l3, _) = launch(&config3, &sw2.tcti());
        let children = format!("/proc/{0}/task/{0}/children", l3.0.id());
        let agent3 = std::fs::read_to_string(&children).unwrap();
        let agent3 = agent3.split_whitespace().next().unwrap().to_string();
        l3.0.kill().unwrap();
        l3.0.wait().unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Path::new(&format!("/proc/{agent3}")).exists()
            && std::fs::read_link(format!("/proc/{agent3}/exe")).ok()
                == Some(bin("secllama-enclave"))
        {
            assert!(
                Instant::now() < deadline,
                "the enclave outlived its SIGKILLed launcher"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    // SIGTERM: the launcher stops the sandbox and the relay, and exits 0.
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(launcher.0.id() as i32).unwrap(),
        rustix::process::Signal::TERM,
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(s) = launcher.0.try_wait().unwrap() {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "launcher did not stop on SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status:?}");
    for pid in children.split_whitespace() {
        assert!(
            !Path::new(&format!("/proc/{pid}")).exists(),
            "sandbox {pid} outlived the launcher"
        );
    }
    assert!(!state.join("tpm").join("tpm.sock").exists());
}

/// Checks made before anything is measured: unmeasured libraries, a runner that is not the
/// measured one, a TCTI the launcher cannot hand into the sandbox.
#[test]
fn launch_refuses_unmeasured_or_mismatched_launches() {
    let sw = Swtpm::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let banks = vec!["sha256".to_string()];
    let launch = |config: &Path, tcti: &str| {
        let o = run(Command::new(bin("secllama"))
            .args(["launch", "--no-bridge", "--tcti", tcti, "--config"])
            .arg(config));
        assert!(!o.status.success());
        text(&o.stderr)
    };
    // A runner command starting another program than the measured runner.
    let config = write_config(
        &dir.path().join("a"),
        &dir.path().join("ra"),
        &banks,
        Path::new("/bin/sh"),
    );
    let e = launch(&config, &sw.tcti());
    assert!(
        e.contains("runner_command[0]: expected the measured runner"),
        "{e}"
    );

    // Libraries not listed.
    let runner = Path::new(env!("CARGO_BIN_EXE_secllama-test-runner"));
    let config = write_config(
        &dir.path().join("b"),
        &dir.path().join("rb"),
        &banks,
        runner,
    );
    let full = std::fs::read_to_string(&config).unwrap();
    let cut: String = full
        .lines()
        .filter(|l| !l.starts_with("libraries"))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(&config, cut).unwrap();
    let e = launch(&config, &sw.tcti());
    assert!(
        e.contains("[launch] libraries") && e.contains("libc.so"),
        "{e}"
    );

    // Banks other than the TPM's (the swtpm allocates more than sha256).
    std::fs::write(&config, &full).unwrap();
    let e = launch(&config, &sw.tcti());
    assert!(e.contains("[launch] banks: expected every bank"), "{e}");

    // A root launcher runs the sandbox as `nobody`: a launcher-private artifact folder is refused
    // by name before anything is measured.
    if rustix::process::geteuid().is_root() {
        use std::os::unix::fs::PermissionsExt;
        let full = std::fs::read_to_string(&config).unwrap();
        let fixed = full.replace(
            "banks = [\"sha256\"]",
            &format!("banks = {:?}", sw_banks(&sw)),
        );
        std::fs::write(&config, fixed).unwrap();
        let folder = dir.path().join("b");
        std::fs::set_permissions(&folder, std::fs::Permissions::from_mode(0o700)).unwrap();
        let e = launch(&config, &sw.tcti());
        assert!(e.contains("cannot search it (mode 700"), "{e}");
        std::fs::set_permissions(&folder, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    // A TCTI that is not a loopback swtpm.
    let e = launch(&config, "swtpm:host=192.0.2.1,port=2321");
    assert!(e.contains("loopback"), "{e}");
    // Nothing was measured by any of these.
    let pcr = run(sw.tool("pcrread").arg("sha256:15"));
    assert!(
        text(&pcr.stdout)
            .contains("0x0000000000000000000000000000000000000000000000000000000000000000"),
        "{}",
        text(&pcr.stdout)
    );
}
