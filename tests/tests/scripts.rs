//! The README's scripts find cargo's binaries where cargo put them: `scripts/target-dir.sh` reports
//! the target folder cargo uses however it was configured (here `CARGO_BUILD_TARGET_DIR`, the
//! environment form of `.cargo/config.toml`'s `build.target-dir`), and no script assumes
//! `target/release` or reads `CARGO_TARGET_DIR` itself.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test crate: a failed unwrap is a failed test

use std::path::Path;
use std::process::Command;

fn root() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

#[test]
fn target_dir_follows_cargos_configuration() {
    let dir = tempfile::tempdir().unwrap();
    let want = dir.path().join("elsewhere");
    let out = Command::new("bash")
        .arg(root().join("scripts/target-dir.sh"))
        .env_remove("CARGO_TARGET_DIR")
        .env("CARGO_BUILD_TARGET_DIR", &want)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        want.to_str().unwrap()
    );
}

#[test]
fn no_script_guesses_the_target_folder() {
    for entry in std::fs::read_dir(root().join("scripts")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "sh") || path.ends_with("target-dir.sh") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        for guess in ["target/release", "target/debug", "CARGO_TARGET_DIR"] {
            assert!(!text.contains(guess), "{} uses {guess}", path.display());
        }
    }
}
