//! Launch prediction from artifacts, and the reference manifest's reading, writing and validation.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test crate: a failed unwrap is a failed test

use secllama_measurements::eventlog::events::EV_EVENT_TAG;
use secllama_measurements::eventlog::{Bank, EventLog};
use secllama_measurements::launch::{Launch, LaunchDescription, predict};
use secllama_measurements::manifest::{Manifest, ManifestError};
use sha2::Digest;
use std::path::Path;

fn artifacts(dir: &Path) -> Launch {
    for (name, content) in [
        ("agent", &b"agent binary"[..]),
        ("runner", b"runner binary"),
        ("m1.gguf", b"model part one"),
        ("m2.gguf", b"model part two"),
        ("policy.toml", b"[policy]"),
        ("config.toml", b"[config]"),
    ] {
        std::fs::write(dir.join(name), content).unwrap();
    }
    LaunchDescription::from_toml(
        r#"[launch]
agent = "agent"
runner = "runner"
model = ["m1.gguf", "m2.gguf"]
policy = "policy.toml"
config = "config.toml"
banks = ["sha256", "sha1"]
"#,
    )
    .unwrap()
    .launch
}

#[test]
fn prediction_is_the_replay_of_the_documented_events() {
    let dir = tempfile::tempdir().unwrap();
    let launch = artifacts(dir.path());
    let p = predict(&launch, dir.path()).unwrap();
    assert_eq!(
        p.banks,
        vec![Bank::Sha1, Bank::Sha256],
        "banks in TPM_ALG_ID order"
    );
    let descriptions: Vec<String> = p
        .measurements
        .iter()
        .map(|m| String::from_utf8(m.event_data[8..].to_vec()).unwrap())
        .collect();
    assert_eq!(
        descriptions,
        [
            "agent:agent",
            "runner:runner",
            "model:m1.gguf",
            "model:m2.gguf",
            "policy:policy.toml",
            "config:config.toml"
        ]
    );
    assert!(
        p.measurements
            .iter()
            .all(|m| m.pcr == 15 && m.event_type == EV_EVENT_TAG)
    );
    // PCR 15 by hand: H(H(...H(0 ‖ d1) ‖ d2...) ‖ d6) with each d the file's digest.
    for bank in [Bank::Sha1, Bank::Sha256] {
        let mut pcr = vec![0u8; bank.size()];
        for c in [
            &b"agent binary"[..],
            b"runner binary",
            b"model part one",
            b"model part two",
            b"[policy]",
            b"[config]",
        ] {
            pcr = bank.hash(&[&pcr, &bank.hash(&[c])]);
        }
        assert_eq!(p.pcrs[&bank][&15], pcr, "{}", bank.name());
    }
    let model: [u8; 32] = sha2::Sha256::digest(
        [
            sha2::Sha256::digest(b"model part one"),
            sha2::Sha256::digest(b"model part two"),
        ]
        .concat(),
    )
    .into();
    assert_eq!(p.digests.model, model);
    assert_eq!(
        p.digests.agent,
        <[u8; 32]>::from(sha2::Sha256::digest(b"agent binary"))
    );
    // Changing any artifact changes the PCR.
    std::fs::write(dir.path().join("m2.gguf"), b"model part 2").unwrap();
    assert_ne!(predict(&launch, dir.path()).unwrap().pcrs, p.pcrs);
    // The events form a log our own parser reads back.
    let log = secllama_measurements::eventlog::record::log_bytes(&p.banks, &p.measurements);
    assert_eq!(EventLog::parse(&log).unwrap().events.len(), 7);
}

#[test]
fn bad_descriptions_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut launch = artifacts(dir.path());
    launch.banks = vec!["md5".into()];
    assert!(
        predict(&launch, dir.path())
            .unwrap_err()
            .to_string()
            .contains("found md5")
    );
    launch.banks = vec!["sha256".into()];
    launch.pcr = 24;
    assert!(predict(&launch, dir.path()).is_err());
    launch.pcr = 15;
    launch.model = vec![];
    assert!(predict(&launch, dir.path()).is_err());
    launch.model = vec!["missing.gguf".into()];
    assert!(
        predict(&launch, dir.path())
            .unwrap_err()
            .to_string()
            .contains("missing.gguf")
    );
    assert!(LaunchDescription::from_toml("[launch]\nagent = \"a\"\nsurprise = 1\n").is_err());
}

fn manifest_text() -> String {
    let h32 = "ab".repeat(32);
    format!(
        r#"version = 1
[required]
tpm = true
snp = false
[pcrs.sha256]
15 = "{h32}"
[enclave]
agent = "{h32}"
runner = "{h32}"
model = "{h32}"
policy = "{h32}"
config = "{h32}"
[tpm]
ak_publics = ["0118000b00050472000000100014000b0800000000000100"]
"#
    )
}

#[test]
fn manifest_round_trips_and_rejects_what_it_does_not_define() {
    let m = Manifest::from_toml(&manifest_text()).unwrap();
    assert_eq!(
        m.expected_pcrs().unwrap()[&Bank::Sha256][&15],
        vec![0xab; 32]
    );
    assert_eq!(Manifest::from_toml(&m.to_toml().unwrap()).unwrap(), m);
    let cases = [
        (
            manifest_text().replace("version = 1", "version = 2"),
            "version",
        ),
        (
            manifest_text().replace("[tpm]", "[tpm]\nextra = 1"),
            "unknown field",
        ),
        (manifest_text() + "\nsurprise = true\n", "unknown field"),
        (manifest_text().replace("15 = ", "24 = "), "pcrs.sha256.24"),
        (
            manifest_text().replace("[pcrs.sha256]", "[pcrs.md5]"),
            "pcrs.md5",
        ),
        (
            manifest_text().replacen(&"ab".repeat(32), &"ab".repeat(20), 1),
            "pcrs.sha256.15",
        ),
        (
            manifest_text().replace(
                &format!("agent = \"{}\"", "ab".repeat(32)),
                "agent = \"zz\"",
            ),
            "enclave.agent",
        ),
        (
            manifest_text().replace("snp = false", "snp = true"),
            "[snp]",
        ),
    ];
    for (text, needle) in cases {
        let e: ManifestError = Manifest::from_toml(&text).unwrap_err();
        assert!(e.to_string().contains(needle), "{needle}: {e}");
    }
}
