//! Operator conventions of `secllama`: completion scripts for every shell clap_complete knows
//! (bash's parses with `bash -n`) and a manual page with a section per subcommand.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test crate: a failed unwrap is a failed test

use std::process::Command;

const SUBCOMMANDS: [&str; 5] = ["measure", "image", "launch", "bridge", "status"];

fn run(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_secllama"))
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn completions_and_man_pages_cover_every_subcommand() {
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let script = run(&["completions", shell]);
        for sub in SUBCOMMANDS {
            assert!(script.contains(sub), "{shell}: no {sub}");
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let bash = dir.path().join("secllama.bash");
    std::fs::write(&bash, run(&["completions", "bash"])).unwrap();
    let check = Command::new("bash").arg("-n").arg(&bash).output().unwrap();
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );
    let man = run(&["man"]);
    for sub in SUBCOMMANDS {
        assert!(
            man.contains(&format!(".TH secllama-{sub} 1")),
            "no page for {sub}"
        );
    }
}

/// Runs `secllama` with `env` added; returns (exit code, stdout, stderr).
fn run_env(args: &[&str], env: &[(&str, &str)]) -> (Option<i32>, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_secllama"))
        .args(args)
        .env_remove("RUST_LOG")
        .envs(env.iter().copied())
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn exit_codes_are_the_documented_ones() {
    let dir = tempfile::tempdir().unwrap();
    let missing = format!("unix:{}", dir.path().join("no-such.sock").display());
    // 1: the command ran and failed; the error chain says what was expected.
    let (code, _, err) = run_env(&["status", "--url", &missing], &[]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.starts_with("secllama: error: "), "{err}");
    // 2: usage errors — an unknown flag, a bad value, a log format or filter that does not parse.
    for args in [
        &["status", "--no-such-flag"][..],
        &["--log-format", "yaml", "status", "--url", &missing],
        &["launch"],
    ] {
        let (code, _, err) = run_env(args, &[]);
        assert_eq!(code, Some(2), "{args:?}: {err}");
    }
    let (code, _, err) = run_env(
        &["status", "--url", &missing],
        &[("RUST_LOG", "secllama=notalevel")],
    );
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("RUST_LOG: expected a tracing filter"), "{err}");
    // The help states them.
    let (_, help, _) = run_env(&["--help"], &[]);
    assert!(help.contains("Exit codes:"), "{help}");
}

#[test]
fn json_logs_are_one_object_per_line() {
    let dir = tempfile::tempdir().unwrap();
    let missing = format!("unix:{}", dir.path().join("no-such.sock").display());
    let (code, out, err) = run_env(
        &["status", "--url", &missing, "--log-format", "json"],
        &[("RUST_LOG", "debug")],
    );
    assert_eq!(code, Some(1), "{err}");
    assert!(out.is_empty(), "{out}");
    let lines: Vec<serde_json::Value> = err
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let last = lines.last().expect("an error event");
    assert_eq!(last["level"], "ERROR", "{err}");
    assert!(
        last["error"].as_str().unwrap().contains("no-such.sock"),
        "{err}"
    );
    assert!(last["timestamp"].is_string(), "{err}");
}
