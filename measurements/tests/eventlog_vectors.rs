//! Every event log in `../shared/vectors/eventlog/` replays to the final PCRs its `expected.json`
//! lists, for every bank listed; the one log whose digest does not match its data is reported, and
//! no other warning appears. Truncating any vector at every byte offset gives an error or a shorter
//! valid log, never a panic.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test crate: a failed unwrap is a failed test

use secllama_measurements::eventlog::{Bank, EventLog};
use std::path::PathBuf;

fn vectors() -> PathBuf {
    std::env::var_os("SECLLAMA_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared"))
        .join("vectors/eventlog")
}

fn cases() -> Vec<(String, Vec<u8>, serde_json::Value)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(vectors()).expect("shared event-log vectors") {
        let dir = entry.unwrap().path();
        let (log, expected) = (dir.join("eventlog.bin"), dir.join("expected.json"));
        if log.exists() && expected.exists() {
            let name = dir.file_name().unwrap().to_string_lossy().to_string();
            out.push((
                name,
                std::fs::read(log).unwrap(),
                serde_json::from_slice(&std::fs::read(expected).unwrap()).unwrap(),
            ));
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

#[test]
fn every_vector_replays_to_its_expected_pcrs() {
    let cases = cases();
    assert!(
        cases.len() >= 14,
        "expected the shared event-log set, found {}",
        cases.len()
    );
    let mut compared = 0;
    for (name, bytes, expected) in &cases {
        let log = EventLog::parse(bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
        let replay = log.replay();
        for (bank, pcrs) in expected["expected_final_pcrs"].as_object().unwrap() {
            let bank = Bank::from_name(bank).unwrap_or_else(|| panic!("{name}: bank {bank}"));
            for (index, value) in pcrs.as_object().unwrap() {
                let index: u32 = index.parse().unwrap();
                // A PCR the log never extends keeps its reset value (all zero, all ones for 17-22).
                let reset = hex::encode(vec![
                    if (17..=22).contains(&index) {
                        0xffu8
                    } else {
                        0
                    };
                    bank.size()
                ]);
                let got = replay
                    .get(&bank)
                    .and_then(|b| b.get(&index))
                    .map(hex::encode)
                    .or(Some(reset));
                assert_eq!(
                    got.as_deref(),
                    Some(value.as_str().unwrap().to_ascii_lowercase().as_str()),
                    "{name}: {}:{index}",
                    bank.name()
                );
                compared += 1;
            }
        }
        // The count is asserted for agile logs only: for the legacy t2t log the field (6) contradicts
        // the vector's own description ("17 events"), and the replay of all 17 matches every PCR.
        if let Some(n) = expected
            .get("expected_event_count_including_specid")
            .and_then(|v| v.as_u64())
            && log.format == secllama_measurements::eventlog::Format::CryptoAgile
        {
            assert_eq!(log.events.len() as u64, n, "{name}: event count");
        }
        // Digest/data mismatches: exactly the ones the vectors document. t2t-archlinux-variant's
        // expected.json names event 24 (tpm2_eventlog's warning) and says the event is identical in
        // the go-tpm-tools archlinux log, so both must report it; no other log may.
        let mismatches: Vec<&String> = log
            .warnings
            .iter()
            .filter(|w| w.contains("does not match its data"))
            .collect();
        let documented = match expected.get("expected_warning").and_then(|w| w.as_str()) {
            Some(w) => Some(
                w.split_whitespace()
                    .nth(1)
                    .unwrap()
                    .trim_end_matches("'s")
                    .to_string(),
            ),
            None if name == "archlinux-workstation-sdboot" => Some("24".to_string()),
            None => None,
        };
        match documented {
            Some(event) => {
                assert_eq!(mismatches.len(), 1, "{name}: {mismatches:?}");
                assert!(
                    mismatches[0].starts_with(&format!("event {event} (PCR 8, EV_IPL)")),
                    "{name}: {mismatches:?}"
                );
            }
            None => assert!(mismatches.is_empty(), "{name}: unexpected {mismatches:?}"),
        }
    }
    assert!(compared > 150, "compared {compared} PCR values");
}

#[test]
fn truncation_at_every_offset_is_an_error_not_a_panic() {
    for (name, bytes, _) in cases() {
        let full = EventLog::parse(&bytes).unwrap();
        let boundaries: Vec<usize> = full
            .events
            .iter()
            .map(|e| e.offset)
            .chain([bytes.len()])
            .collect();
        for len in 0..bytes.len() {
            match EventLog::parse(&bytes[..len]) {
                Ok(log) => assert!(
                    boundaries.contains(&len) && log.events.len() < full.events.len(),
                    "{name}: prefix {len} parsed"
                ),
                Err(e) => assert!(e.to_string().contains("byte offset"), "{name}: {e}"),
            }
        }
    }
}
