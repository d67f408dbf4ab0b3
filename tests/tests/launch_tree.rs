//! A runner that is more than one file, end to end (issue 10, item 4): Debian's Python 3.11 as the
//! measured runner binary, its standard library and the runner script (`tests/py/ollama_runner.py`)
//! as measured trees (`[launch] trees`), the libraries of the stdlib's extension modules found by
//! `secllama measure libraries`, all run in the process sandbox by `secllama launch` over a swtpm;
//! `secllama-verify attest` shows the trees, `generate` gets the Python runner's answer with a
//! verified receipt; a tree changed on the host while the enclave runs ends its attestation and, at
//! the runner's next restart, the enclave; a folder given as a file is refused with one clear
//! message.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test crate: a failed unwrap is a failed test

use secllama_tests::launch::{
    EnclaveSpec, artifact_dir, bin, free_port, launch, manifest, sw_banks, verify_generate,
};
use secllama_tests::swtpm::Swtpm;
use std::path::{Path, PathBuf};
use std::process::Command;

const PROMPT: &str = "why is the sky blue";

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).to_string()
}

fn copy_tree(from: &Path, to: &Path) {
    let s = Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .status()
        .unwrap();
    assert!(s.success(), "cp -a {} {}", from.display(), to.display());
}

/// `secllama launch --no-bridge` of `config`, which must fail; its stderr.
fn refused_launch(config: impl AsRef<Path>, tcti: &str) -> String {
    let out = Command::new(bin("secllama").unwrap())
        .args(["launch", "--no-bridge", "--tcti", tcti, "--config"])
        .arg(config.as_ref())
        .output()
        .unwrap();
    let err = text(&out.stderr);
    assert!(!out.status.success(), "{err}");
    err
}

#[test]
fn python_runner_from_measured_trees() {
    let python = std::fs::canonicalize("/usr/bin/python3.11").expect(
        "Debian's python3.11 (the interpreter-based runner under test); scripts/setup.sh installs \
         python3-venv, which brings it",
    );
    let mut sw = Swtpm::start().unwrap();
    let dir = artifact_dir().unwrap();
    // Tree 1: a private copy of the standard library (PYTHONHOME/lib/python3.11), so no other
    // Python on the machine can change it (by writing bytecode) between launch and manifest.
    let home = dir.path().join("pyhome");
    std::fs::create_dir_all(home.join("lib")).unwrap();
    copy_tree(Path::new("/usr/lib/python3.11"), &home.join("lib"));
    // Tree 2: the runner's own folder.
    // Tree 2: the runner's own folder, named in the config through a symlink (the sandbox must
    // reproduce the path as written).
    let real_app = dir.path().join("app-real");
    std::fs::create_dir_all(&real_app).unwrap();
    let app = dir.path().join("app");
    std::os::unix::fs::symlink(&real_app, &app).unwrap();
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("py/ollama_runner.py"),
        app.join("ollama_runner.py"),
    )
    .unwrap();
    let art = dir.path().join("art");
    std::fs::create_dir_all(&art).unwrap();
    std::fs::write(
        art.join("model.bin"),
        b"no weights: the python runner is deterministic",
    )
    .unwrap();
    let port = free_port().unwrap();
    let spec = EnclaveSpec {
        art: art.clone(),
        state: dir.path().join("run"),
        banks: sw_banks(&sw).unwrap(),
        runner: python.clone(),
        runner_command: [
            python.display().to_string(),
            "-S".into(),
            "-B".into(),
            app.join("ollama_runner.py").display().to_string(),
            "--listen".into(),
            format!("127.0.0.1:{port}"),
        ]
        .into(),
        runner_port: port,
        runner_env: vec![
            ("PYTHONHOME".into(), home.display().to_string()),
            ("PYTHONDONTWRITEBYTECODE".into(), "1".into()),
        ],
        runner_ready_secs: 30,
        models: vec![PathBuf::from("model.bin")],
        trees: vec![home.clone(), app.clone()],
        policy: serde_json::json!({
            "dataset": [{"id": "q1", "prompt": PROMPT}],
            "models": ["py:latest"], "max_prompt_bytes": 256, "max_num_predict": 64
        })
        .to_string(),
        memory_mib: 4096,
    };
    // A tree holding the state folder is refused before anything is measured.
    let holding = EnclaveSpec {
        art: dir.path().join("art-holding"),
        trees: vec![dir.path().join("art-holding")],
        models: vec![art.join("model.bin")],
        ..spec.clone()
    };
    std::fs::create_dir_all(&holding.art).unwrap();
    std::fs::write(holding.art.join("policy.json"), &holding.policy).unwrap();
    let holding = EnclaveSpec {
        state: holding.art.join("run"),
        ..holding
    };
    let err = refused_launch(holding.write().unwrap(), &sw.tcti());
    assert!(err.contains("holds the writable state folder"), "{err}");

    let config = spec.write().unwrap();
    // The ELF scan reached the stdlib's extension modules: _hashlib links libcrypto, which
    // python3.11 itself does not.
    let cfg = std::fs::read_to_string(&config).unwrap();
    let libs = cfg.lines().find(|l| l.starts_with("libraries")).unwrap();
    assert!(libs.contains("libcrypto.so.3"), "{libs}");
    assert!(
        !libs.contains(&home.display().to_string()),
        "libraries inside a measured tree are measured with it: {libs}"
    );

    // A first attempt whose runner cannot start (no PYTHONHOME: the stdlib is not where the
    // interpreter looks) fails after `runner_ready_secs` from the measured config, saying the
    // launch is measured and how to recover; a second attempt in the same TPM lifetime is refused
    // with the same recovery; after it (a TPM restart) the good launch succeeds.
    let broken = EnclaveSpec {
        art: dir.path().join("art-broken"),
        // The same state folder: it keeps the AK auth value the first measured launch created.
        runner_env: vec![],
        runner_ready_secs: 3,
        models: vec![art.join("model.bin")],
        ..spec.clone()
    };
    let broken_config = broken.write().unwrap();
    let started = std::time::Instant::now();
    let err = refused_launch(&broken_config, &sw.tcti());
    assert!(
        started.elapsed() < std::time::Duration::from_secs(60),
        "runner_ready_secs = 3 is honoured"
    );
    assert!(
        err.contains("within 3 s") && err.contains("runner_ready_secs"),
        "{err}"
    );
    assert!(
        err.contains("cannot launch again") && err.contains("restart the TPM"),
        "{err}"
    );
    let err = refused_launch(&config, &sw.tcti());
    assert!(
        err.contains("expected zero") && err.contains("restart the TPM"),
        "{err}"
    );
    sw.restart().unwrap();

    // As root the sandbox runs as nobody: a file in a tree it cannot read is refused before
    // anything is measured (so the launch below still finds PCR 15 zero).
    if rustix::process::geteuid().is_root() {
        use std::os::unix::fs::PermissionsExt;
        let secret = real_app.join("secret.py");
        std::fs::write(&secret, b"# not for nobody\n").unwrap();
        std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
        let err = refused_launch(&config, &sw.tcti());
        assert!(
            err.contains("secret.py") && err.contains("cannot read it"),
            "{err}"
        );
        std::fs::remove_file(&secret).unwrap();
    }

    let (mut launcher, bridge) = launch(&config, &sw.tcti()).unwrap();
    let url = format!("http://{bridge}");
    let m = dir.path().join("manifest.toml");
    manifest(&config, &spec.state, &m).unwrap();
    let manifest_text = std::fs::read_to_string(&m).unwrap();
    assert!(manifest_text.contains("[enclave.trees]"), "{manifest_text}");

    let a = Command::new(bin("secllama-verify").unwrap())
        .args(["attest", "--format", "text", "--url", &url, "--manifest"])
        .arg(&m)
        .output()
        .unwrap();
    let report = text(&a.stdout);
    assert!(a.status.success(), "{report}{}", text(&a.stderr));
    for t in [&home, &app] {
        assert!(
            report.contains(&format!("tree {}: ", t.display())),
            "{report}"
        );
    }

    let want: String = std::iter::once("py:".to_string())
        .chain(PROMPT.split(' ').rev().map(|w| format!("{w} ")))
        .collect();
    for stream in [false, true] {
        let extra: &[&str] = if stream { &["--stream"] } else { &[] };
        let g = verify_generate(&url, "py:latest", PROMPT, &m, extra).unwrap();
        assert!(g.status.success(), "{}", text(&g.stderr));
        assert_eq!(text(&g.stdout).trim_end(), want.trim_end());
        assert!(
            text(&g.stderr).contains("receipt: verified"),
            "{}",
            text(&g.stderr)
        );
    }

    // The host changes a measured tree while the enclave runs (the mounts are read-only inside,
    // not on the host): no attestation document any more, and a runner that dies is not started
    // again on unmeasured code — the agent stops, and the launcher with it.
    let runner_py = app.join("ollama_runner.py");
    let code = std::fs::read_to_string(&runner_py).unwrap();
    std::fs::write(&runner_py, code.replace("[\"py:\"]", "[\"PWNED:\"]")).unwrap();
    let a = Command::new(bin("secllama-verify").unwrap())
        .args(["attest", "--format", "text", "--url", &url, "--manifest"])
        .arg(&m)
        .output()
        .unwrap();
    let said = format!("{}{}", text(&a.stdout), text(&a.stderr));
    assert!(!a.status.success(), "{said}");
    assert!(
        said.contains("ollama_runner.py") && said.contains("unchanged since launch"),
        "{said}"
    );
    let killed = Command::new("pkill")
        .args(["-KILL", "-f", &runner_py.display().to_string()])
        .status()
        .unwrap();
    assert!(killed.success(), "the runner was running");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let status = loop {
        if let Some(s) = launcher.0.try_wait().unwrap() {
            break s;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the enclave went on after a measured file changed"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    assert!(!status.success(), "{status}");

    // A folder listed as a model file: one clear error, the reason once, pointing at trees.
    let bad = art.join("bad.toml");
    std::fs::write(
        &bad,
        cfg.replace(
            "model = [\"model.bin\"]",
            &format!("model = [{:?}]", home.display().to_string()),
        ),
    )
    .unwrap();
    let out = Command::new(bin("secllama").unwrap())
        .args(["measure", "launch", "--config"])
        .arg(&bad)
        .output()
        .unwrap();
    let err = text(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("[launch] trees") && err.contains("a directory"),
        "{err}"
    );
    assert_eq!(
        err.matches("directory").count(),
        1,
        "reason printed once: {err}"
    );
}
