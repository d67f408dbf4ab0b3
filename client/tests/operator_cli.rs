//! Operator conventions of `secllama-verify`: completion scripts for every shell clap_complete
//! knows (bash's parses with `bash -n` and names every subcommand) and a manual page with a
//! section per subcommand, generated from the parser's own definitions.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test crate: a failed unwrap is a failed test

mod common;

use std::process::Command;

const SUBCOMMANDS: [&str; 12] = [
    "cose", "quote", "eventlog", "attest", "generate", "proxy", "receipt", "snp", "nitro", "azure",
    "bundle", "log",
];

fn run(args: &[&str]) -> String {
    let out = Command::new(common::verify_bin())
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
        assert!(script.contains("secllama-verify"), "{shell}");
        for sub in SUBCOMMANDS {
            assert!(script.contains(sub), "{shell}: no {sub}");
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let bash = dir.path().join("secllama-verify.bash");
    std::fs::write(&bash, run(&["completions", "bash"])).unwrap();
    let check = Command::new("bash").arg("-n").arg(&bash).output().unwrap();
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );
    let man = run(&["man"]);
    assert!(man.contains(".TH secllama-verify 1"));
    for sub in SUBCOMMANDS {
        assert!(
            man.contains(&format!(".TH secllama-verify-{sub} 1")),
            "no page for {sub}"
        );
    }
    assert!(man.contains("signature\\-format"), "options are documented");
    // A shell clap_complete does not know is a usage error.
    let out = Command::new(common::verify_bin())
        .args(["completions", "tcsh"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}
