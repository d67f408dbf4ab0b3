//! `secllama-verify snp`, `nitro`, `azure` and `bundle` as processes on the shared vectors: exit 0
//! valid, 1 invalid (naming the check), 2 unusable input; `--certs` as a folder the way `snpguest
//! fetch` writes it; `--at` for Nitro's three-hour leaf certificates; and evidence bundles that
//! give the same verdict years later (a 2023 Nitro document still valid as of its recorded time) or
//! say exactly what changed (`--at` past a certificate's validity).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test crate: a failed unwrap is a failed test

mod common;

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

fn vectors() -> PathBuf {
    std::env::var_os("SECLLAMA_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared"))
        .join("vectors")
}

fn run(args: &[&str]) -> (Option<i32>, Value, String) {
    let out = Command::new(common::verify_bin())
        .args(args)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let v = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    (out.status.code(), v, stderr)
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn snp_exit_codes_folders_and_report_data() {
    let case = vectors().join("snp-report/virtee-milan-v2");
    let (report, vcek) = (case.join("report.bin"), case.join("vcek_milan.der"));
    let at = "2026-01-01T00:00:00Z";
    let (code, v, e) = run(&[
        "snp",
        "--report",
        s(&report),
        "--vcek",
        s(&vcek),
        "--at",
        at,
    ]);
    assert_eq!(code, Some(0), "{e}");
    assert_eq!(v["submods"]["snp"]["ear.status"], "warning");
    // The hex form of the same report, and the folder snpguest would write (.pem and .der files
    // among others: the report and expected.json are skipped).
    let (code, _, e) = run(&[
        "snp",
        "--report",
        s(&case.join("report_milan.hex")),
        "--certs",
        s(&case),
        "--at",
        at,
    ]);
    assert_eq!(code, Some(0), "{e}");
    // Its report data, and another one.
    let rd = hex::encode(&std::fs::read(&report).unwrap()[0x50..0x90]);
    let (code, v, _) = run(&[
        "snp",
        "--report",
        s(&report),
        "--vcek",
        s(&vcek),
        "--at",
        at,
        "--report-data",
        &rd,
    ]);
    assert_eq!(code, Some(0));
    assert!(
        v["submods"]["snp"]["secllama.passed"]
            .to_string()
            .contains("REPORT_DATA")
    );
    let (code, v, _) = run(&[
        "snp",
        "--report",
        s(&report),
        "--vcek",
        s(&vcek),
        "--at",
        at,
        "--report-data",
        "00",
    ]);
    assert_eq!(code, Some(1));
    assert!(
        v["submods"]["snp"]["reasons"]
            .to_string()
            .contains("REPORT_DATA: expected")
    );
    // Another chip's VCEK: invalid, naming the signature.
    let other = vectors().join("snp-report/trustee-milan-vcek-v2/test-vcek.der");
    let (code, v, _) = run(&[
        "snp",
        "--report",
        s(&report),
        "--vcek",
        s(&other),
        "--at",
        at,
    ]);
    assert_eq!(code, Some(1));
    assert!(
        v["submods"]["snp"]["reasons"]
            .to_string()
            .contains("report signature")
    );
    // Unusable input: exit 2 with a message.
    for bad in [
        vec!["snp", "--report", "/nonexistent", "--vcek", s(&vcek)],
        vec!["snp", "--report", s(&report), "--vcek", s(&report)],
        vec![
            "snp",
            "--report",
            s(&report),
            "--vcek",
            s(&vcek),
            "--at",
            "yesterday",
        ],
        vec![
            "snp",
            "--report",
            s(&report),
            "--vcek",
            s(&vcek),
            "--report-data",
            "zz",
        ],
    ] {
        let (code, _, e) = run(&bad);
        assert_eq!(code, Some(2), "{bad:?}: {e}");
        assert!(e.contains("error:"), "{e}");
    }
}

#[test]
fn nitro_and_azure_exit_codes() {
    let doc =
        vectors().join("nitro/blindai-debug-2023-03-22/nitro_attestation_document_valid.cbor");
    let (code, v, e) = run(&[
        "nitro",
        "--doc",
        s(&doc),
        "--at",
        "2023-03-22T14:28:27.405Z",
    ]);
    assert_eq!(code, Some(0), "{e}");
    assert_eq!(
        v["submods"]["nitro"]["secllama.claims"]["user_data"],
        hex::encode("hello, world!")
    );
    let (code, v, _) = run(&["nitro", "--doc", s(&doc)]);
    assert_eq!(code, Some(1), "now, the leaf has long expired");
    assert!(
        v["submods"]["nitro"]["reasons"]
            .to_string()
            .contains("validity")
    );
    // The base64 form nitrite ships.
    let b64 = vectors().join("nitro/nitrite-debug-2024-09-07/nitro_attestation_debug.b64");
    let (code, _, e) = run(&[
        "nitro",
        "--doc",
        s(&b64),
        "--at",
        "2024-09-07T14:38:06.508Z",
    ]);
    assert_eq!(code, Some(0), "{e}");
    let selfsigned = vectors().join("nitro/nitrite-selfsigned-negative/attestation_doc.cbor");
    assert_eq!(
        run(&[
            "nitro",
            "--doc",
            s(&selfsigned),
            "--at",
            "2024-04-17T18:51:46Z"
        ])
        .0,
        Some(1)
    );
    let az = vectors().join("tpm-quote/azure-snp-vtpm-evidence-v1-milan/evidence-v1.json");
    let nonce = hex::encode("challenge");
    let (code, _, e) = run(&[
        "azure",
        "--evidence",
        s(&az),
        "--nonce",
        &nonce,
        "--at",
        "2026-01-01T00:00:00Z",
    ]);
    assert_eq!(code, Some(0), "{e}");
    assert_eq!(
        run(&[
            "azure",
            "--evidence",
            s(&az),
            "--nonce",
            "01",
            "--at",
            "2026-01-01T00:00:00Z"
        ])
        .0,
        Some(1)
    );
}

#[test]
fn bundles_give_the_recorded_verdict_years_later_or_say_what_changed() {
    let dir = tempfile::tempdir().unwrap();
    // A Nitro document appraised inside its window, re-appraised "now" (years later) from the bundle.
    let doc =
        vectors().join("nitro/blindai-debug-2023-03-22/nitro_attestation_document_valid.cbor");
    let nb = dir.path().join("nitro.bundle");
    let (code, _, e) = run(&[
        "nitro",
        "--doc",
        s(&doc),
        "--at",
        "2023-03-22T14:28:27.405Z",
        "--save-bundle",
        s(&nb),
    ]);
    assert_eq!(code, Some(0), "{e}");
    let (code, v, e) = run(&["bundle", s(&nb)]);
    assert_eq!(code, Some(0), "{e}");
    assert_eq!(v["same_verdict"], true, "{v:#}");
    assert_eq!(v["kind"], "nitro");
    let (code, v, _) = run(&["bundle", s(&nb), "--at", "2023-03-22T18:28:27Z"]);
    assert_eq!(code, Some(1));
    let changes = v["changes"].to_string();
    assert!(
        changes.contains("nitro: recorded \\\"warning\\\", now \\\"contraindicated\\\"")
            && changes.contains("validity"),
        "{changes}"
    );
    // An SNP report: as of 2040 its VCEK (valid to 2030) has expired.
    let case = vectors().join("snp-report/virtee-milan-v2");
    let sb = dir.path().join("snp.bundle");
    let (code, _, e) = run(&[
        "snp",
        "--report",
        s(&case.join("report.bin")),
        "--vcek",
        s(&case.join("vcek_milan.der")),
        "--at",
        "2026-01-01T00:00:00Z",
        "--save-bundle",
        s(&sb),
    ]);
    assert_eq!(code, Some(0), "{e}");
    assert_eq!(run(&["bundle", s(&sb)]).1["same_verdict"], true);
    let (code, v, _) = run(&[
        "bundle",
        s(&sb),
        "--at",
        "2040-01-01T00:00:00Z",
        "--format",
        "json",
    ]);
    assert_eq!(code, Some(1));
    assert!(v["changes"].to_string().contains("VCEK"), "{v:#}");
    // Text form says it in words.
    let out = Command::new(common::verify_bin())
        .args(["bundle", s(&sb), "--format", "text"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("the same verdict as recorded"));
    // A truncated bundle or another file: unusable (exit 2).
    let bytes = std::fs::read(&sb).unwrap();
    let cut = dir.path().join("cut.bundle");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    assert_eq!(run(&["bundle", s(&cut)]).0, Some(2));
    assert_eq!(run(&["bundle", s(&doc)]).0, Some(2));
}

/// What a new user broke on a fresh clone, each now a usage error (exit 2) or the right verdict:
/// a non-ASCII `--at`, a device or FIFO given as a file, empty hex, a bundle whose time is out of
/// range, and a time a fraction of a second past a certificate's end, which must stay past it in
/// the bundle.
#[test]
fn hostile_inputs_are_usage_errors_and_bundles_keep_sub_second_times() {
    let case = vectors().join("snp-report/virtee-milan-v2");
    let (report, vcek) = (case.join("report.bin"), case.join("vcek_milan.der"));
    for bad in [
        vec![
            "snp",
            "--report",
            s(&report),
            "--vcek",
            s(&vcek),
            "--at",
            "2024-09-07T14:38:06+0\u{e9}00",
        ],
        vec!["snp", "--report", "/dev/zero", "--vcek", s(&vcek)],
        vec!["snp", "--report", s(&case), "--vcek", s(&vcek)],
        vec![
            "snp",
            "--report",
            s(&report),
            "--vcek",
            s(&vcek),
            "--report-data",
            "",
        ],
        vec![
            "snp",
            "--report",
            s(&report),
            "--vcek",
            s(&vcek),
            "--report-data",
            "01 02",
        ],
        vec!["snp", "--report", s(&report)],
        vec!["nitro", "--doc", s(&report), "--nonce", ""],
    ] {
        let (code, _, e) = run(&bad);
        assert_eq!(code, Some(2), "{bad:?}: {e}");
        assert!(e.contains("error:") && !e.contains("panicked"), "{e}");
    }
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("fifo");
    assert!(
        Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    let (code, _, e) = run(&["snp", "--report", s(&fifo), "--vcek", s(&vcek)]);
    assert_eq!(code, Some(2), "{e}");
    assert!(e.contains("expected a regular file"), "{e}");
    // A Nitro document appraised 0.9 s after its leaf expired: INVALID, and so is its bundle.
    let doc =
        vectors().join("nitro/blindai-debug-2023-03-22/nitro_attestation_document_valid.cbor");
    let b = dir.path().join("late.bundle");
    let (code, v, _) = run(&[
        "nitro",
        "--doc",
        s(&doc),
        "--at",
        "2023-03-22T17:28:27.900Z",
        "--save-bundle",
        s(&b),
    ]);
    assert_eq!(code, Some(1));
    assert!(
        v["submods"]["nitro"]["reasons"]
            .to_string()
            .contains("17:28:27.900Z"),
        "{v:#}"
    );
    let (code, v, _) = run(&["bundle", s(&b)]);
    assert_eq!(code, Some(1), "{v:#}");
    assert_eq!(v["same_verdict"], true, "{v:#}");
    // A bundle edited to an appraisal time past year 9999: refused, not a panic.
    let bytes = std::fs::read(&b).unwrap();
    let ciborium::Value::Map(mut m) =
        ciborium::de::from_reader::<ciborium::Value, _>(&bytes[..]).unwrap()
    else {
        panic!("a bundle is a map");
    };
    for (k, v) in &mut m {
        if k.as_text() == Some("at") {
            *v = ciborium::Value::Integer(u64::MAX.into());
        }
    }
    let edited = dir.path().join("edited.bundle");
    std::fs::write(
        &edited,
        secllama_protocol::cbor::to_vec(&ciborium::Value::Map(m)).unwrap(),
    )
    .unwrap();
    let (code, _, e) = run(&["bundle", s(&edited)]);
    assert_eq!(code, Some(2), "{e}");
    assert!(e.contains("before year 10000"), "{e}");
    // A manifest for a bare SNP report: no [enclave], [required] with one key.
    let m = dir.path().join("snp.toml");
    let digest = hex::encode(&std::fs::read(&report).unwrap()[0x90..0xC0]);
    std::fs::write(&m, format!("version = 1\n[required]\ntpm = false\n[snp]\nlaunch_digest = \"{digest}\"\nguest_policy = \"0x30000\"\n")).unwrap();
    let (code, v, e) = run(&[
        "snp",
        "--report",
        s(&report),
        "--vcek",
        s(&vcek),
        "--manifest",
        s(&m),
        "--at",
        "2026-01-01T00:00:00Z",
    ]);
    assert_eq!(code, Some(0), "{e} {v:#}");
    assert!(
        v["submods"]["snp"]["secllama.passed"]
            .to_string()
            .contains("MEASUREMENT = launch digest")
    );
}

/// The shipped `secllama-verify` is linked statically (scripts/build-verify.sh; scripts/test.sh
/// runs these tests on it): host names must still resolve through glibc's NSS modules. A loopback
/// listener is reached as `localhost` and then closes; nothing leaves the machine.
#[test]
fn host_names_resolve_in_the_shipped_build() {
    use std::sync::mpsc;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        // One connection, closed at once: the client's request fails after it connected.
        if let Ok((stream, _)) = listener.accept() {
            drop(stream);
            let _ = tx.send(());
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("manifest.toml");
    std::fs::write(&manifest, "version = 1\n[required]\ntpm = false\n").unwrap();
    let url = format!("http://localhost:{port}");
    let (code, _, e) = run(&["attest", "--url", &url, "--manifest", s(&manifest)]);
    assert_eq!(code, Some(2), "{e}");
    assert!(
        rx.recv_timeout(std::time::Duration::from_secs(10)).is_ok(),
        "secllama-verify never connected to localhost:{port}: {e}"
    );
    assert!(!e.contains("lookup"), "{e}");
    assert!(e.contains(&format!("localhost:{port}")), "{e}");
}
