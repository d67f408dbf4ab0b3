//! Launch prediction against a real TPM: the predicted events, extended through the `tpm` crate into
//! a swtpm, give exactly the PCRs `tpm2_pcrread` reports; the log written on the way parses in
//! `tpm2_eventlog` and replays (with our parser) to the same values.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test crate: a failed unwrap is a failed test

use secllama_measurements::eventlog::EventLog;
use secllama_measurements::launch::{LaunchDescription, predict};
use secllama_tests::swtpm::Swtpm;
use secllama_tpm::Tpm;
use secllama_tpm::eventlog::EventLogWriter;

#[test]
fn extending_the_prediction_gives_the_predicted_pcrs() {
    let sw = Swtpm::start().unwrap();
    let mut tpm = Tpm::connect(&sw.tcti()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    for (name, size) in [
        ("agent", 3000),
        ("runner", 70_000),
        ("model.gguf", 3_000_000),
        ("policy.toml", 10),
        ("config.toml", 20),
    ] {
        let content: Vec<u8> = (0..size).map(|i| (i * 7 % 251) as u8).collect();
        std::fs::write(dir.path().join(name), content).unwrap();
    }
    let banks: Vec<String> = tpm
        .active_banks()
        .unwrap()
        .iter()
        .map(|b| b.name().to_string())
        .collect();
    let desc = format!(
        "[launch]\nagent = \"agent\"\nrunner = \"runner\"\nmodel = [\"model.gguf\"]\npolicy = \"policy.toml\"\nconfig = \"config.toml\"\nbanks = {banks:?}\n"
    );
    let launch = LaunchDescription::from_toml(&desc).unwrap().launch;
    let p = predict(&launch, dir.path()).unwrap();

    let log_path = sw.path("launch.log");
    let mut log = EventLogWriter::open(&log_path, &p.banks).unwrap();
    for m in &p.measurements {
        tpm.measure(&mut log, m).unwrap();
    }
    for bank in &p.banks {
        let out = sw
            .tool("pcrread")
            .arg(format!("{}:15", bank.name()))
            .output()
            .unwrap();
        let text = String::from_utf8(out.stdout).unwrap().to_ascii_lowercase();
        let predicted = hex::encode(&p.pcrs[bank][&15]);
        assert!(
            text.contains(&predicted),
            "{}: tpm2_pcrread {text} vs predicted {predicted}",
            bank.name()
        );
    }
    let written = std::fs::read(&log_path).unwrap();
    assert_eq!(EventLog::parse(&written).unwrap().replay(), p.pcrs);
    let out = sw.tool("eventlog").arg(&log_path).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8(out.stdout)
            .unwrap()
            .matches("EV_EVENT_TAG")
            .count(),
        5
    );
}
