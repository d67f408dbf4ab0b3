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
