//! `secllama measure launch`: TOML and JSON output, and the reference manifest it writes, which
//! `secllama_measurements::manifest` reads back with the same PCRs and digests.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test crate: a failed unwrap is a failed test

use secllama_measurements::manifest::Manifest;
use std::process::Command;

#[test]
fn prints_the_prediction_and_writes_a_manifest() {
    let dir = tempfile::tempdir().unwrap();
    for name in [
        "agent",
        "runner",
        "model.gguf",
        "policy.toml",
        "config.toml",
    ] {
        std::fs::write(dir.path().join(name), name.as_bytes()).unwrap();
    }
    let config = dir.path().join("launch.toml");
    std::fs::write(
        &config,
        "[launch]\nagent = \"agent\"\nrunner = \"runner\"\nmodel = [\"model.gguf\"]\npolicy = \"policy.toml\"\nconfig = \"config.toml\"\n",
    )
    .unwrap();
    let manifest = dir.path().join("manifest.toml");
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_secllama"))
            .args(["measure", "launch", "--config"])
            .arg(&config)
            .args(args)
            .output()
            .unwrap()
    };

    let out = run(&["--format", "json", "--manifest", manifest.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["events"].as_array().unwrap().len(), 5);
    assert_eq!(v["events"][0]["description"], "agent:agent");
    let pcr15 = v["pcrs"]["sha256"]["15"].as_str().unwrap().to_string();

    let m = Manifest::from_toml(&std::fs::read_to_string(&manifest).unwrap()).unwrap();
    assert_eq!(m.pcrs["sha256"]["15"], pcr15);
    assert_eq!(m.enclave.agent, v["enclave"]["agent"].as_str().unwrap());
    assert!(m.required.tpm);

    let toml_out = run(&[]);
    let t: toml::Value = toml::from_str(&String::from_utf8(toml_out.stdout).unwrap()).unwrap();
    assert_eq!(t["pcrs"]["sha256"]["15"].as_str().unwrap(), pcr15);

    std::fs::remove_file(dir.path().join("runner")).unwrap();
    let out = run(&[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("runner"));
}
