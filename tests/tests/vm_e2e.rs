//! VM mode end to end (issue 13, docs/vm.md) with real QEMU (TCG here), OVMF, a per-launch swtpm
//! and vhost-device-vsock: `secllama launch` boots the guest, the bridge relays to the agent's
//! vsock port through the backend's unix socket, and `secllama-verify` attests and seals. Each
//! test boots one VM and runs all its checks on it (TCG boots take about a minute).
//!
//! - `vm_attest_seal_refuse_and_tamper`: the test runner; attestation (event-log replay = quote,
//!   PCR 4 and 9 = `secllama measure vm`'s prediction, isolation vm), sealed generate and chat,
//!   streamed and not, receipts, a policy refusal, the guest's isolation probe, manifests for
//!   changed artifacts naming PCR 4 or 9, hostile clients on the vsock path;
//! - `vm_model_disk_tampering_fails_closed`: a flipped byte in the model disk makes the guest's
//!   reads fail (the agent cannot hash the model; no enclave starts);
//! - `vm_real_model_answers`: `secllama-runner` with the SmolLM2 GGUF answers one dataset prompt.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test crate: a failed unwrap is a failed test

use secllama_tests::enclave::{Reaped, policy_for};
use secllama_tests::launch::{Lines, bin, free_port, launch_with_args, verify_generate};
use secllama_tests::vm::{VmEnclave, measure_vm};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const PROMPT: &str = "Why is the sky blue?";

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn artifact_dir() -> tempfile::TempDir {
    secllama_tests::launch::artifact_dir().unwrap()
}

/// A VM-mode config with the test runner (answers with the prompt's words reversed) and
/// `model` as its model file.
fn test_runner_vm(dir: &Path, model: &[u8]) -> PathBuf {
    let runner = Path::new(env!("CARGO_BIN_EXE_secllama-test-runner"));
    secllama_tests::vm::test_runner_config(dir, runner, &[], model, &policy_for(PROMPT)).unwrap()
}

fn attest(url: &str, manifest: &Path) -> std::process::Output {
    Command::new(bin("secllama-verify").unwrap())
        .args(["attest", "--format", "text", "--url", url, "--manifest"])
        .arg(manifest)
        .output()
        .unwrap()
}

/// `secllama measure vm` into `out`, with the running launch's golden log and AK.
fn manifest_for(config: &Path, state: &Path, out: &Path) -> String {
    let m = measure_vm(
        config,
        Some(&state.join("firmware.log")),
        out,
        Some(&state.join("ak.pub")),
    )
    .unwrap();
    assert!(m.status.success(), "{}", text(&m.stderr));
    text(&m.stdout)
}

fn pcr_line(report: &str, pcr: u32) -> String {
    report
        .lines()
        .find(|l| l.starts_with(&format!("sha256:{pcr} ")))
        .unwrap_or_else(|| panic!("no PCR {pcr} in {report}"))
        .to_string()
}

/// Copies the artifact folder (config, policy, model) to `to` and rewrites the config's paths.
fn copy_art(from: &Path, to: &Path, state: &Path) -> PathBuf {
    std::fs::create_dir_all(to).unwrap();
    for f in ["policy.json", "model.gguf"] {
        std::fs::copy(from.join(f), to.join(f)).unwrap();
    }
    let config = std::fs::read_to_string(from.join("config.toml"))
        .unwrap()
        .replace(&from.display().to_string(), &to.display().to_string())
        .replace(
            &format!("state = {:?}", state.display().to_string()),
            &format!("state = {:?}", to.join("state").display().to_string()),
        );
    std::fs::write(to.join("config.toml"), config).unwrap();
    to.join("config.toml")
}

fn lines(l: &Lines) -> String {
    l.lock().map(|v| v.join("\n")).unwrap_or_default()
}

#[test]
fn vm_attest_seal_refuse_and_tamper() {
    let dir = artifact_dir();
    let config = test_runner_vm(dir.path(), b"tiny weights for the vm");
    let state = dir.path().join("state");
    let start = Instant::now();
    let (launcher, output, bridge): (Reaped, Lines, String) =
        launch_with_args(&config, &[]).unwrap();
    eprintln!("vm booted in {:?}", start.elapsed());
    let url = format!("http://{bridge}");

    // The launcher followed the boot and warned about TCG; the guest saw only lo and no route.
    let out = lines(&output);
    assert!(out.contains("guest: secllama-init: stage agent"), "{out}");
    if !Path::new("/dev/kvm").exists() || out.contains("TCG") {
        assert!(out.contains("TCG emulation"), "{out}");
    }
    let serial = std::fs::read_to_string(state.join("serial.log")).unwrap();
    let probe = serial
        .lines()
        .find(|l| l.starts_with("secllama-init: isolation "))
        .unwrap_or_else(|| panic!("no isolation probe in {serial}"));
    // The runner's output reaches the console only prefixed by the init (it cannot forge a line
    // the launcher acts on).
    assert!(
        serial.contains("runner: listening on 127.0.0.1:"),
        "{serial}"
    );
    assert!(
        !serial
            .lines()
            .any(|l| l.starts_with("listening on 127.0.0.1")),
        "{serial}"
    );
    assert!(
        probe.contains("interfaces=lo;")
            && probe.contains("route 192.0.2.1: none")
            && probe.contains("route 2001:db8::1: none"),
        "{probe}"
    );

    // Attestation against the predicted PCRs: replay = quote, PCR 4 and 9 = prediction.
    let m = dir.path().join("manifest.toml");
    let predicted = manifest_for(&config, &state, &m);
    let manifest_text = std::fs::read_to_string(&m).unwrap();
    assert!(
        manifest_text.contains("isolation = \"vm\""),
        "{manifest_text}"
    );
    let a = attest(&url, &m);
    let report = text(&a.stdout);
    assert!(a.status.success(), "{report}{}", text(&a.stderr));
    for want in [
        "result: affirming",
        "isolation: vm",
        "replays to all 11 quoted PCRs",
        "PCR sha256:4 = manifest",
        "PCR sha256:9 = manifest",
        "PCR sha256:0 = manifest",
        "PCR sha256:8 = manifest",
        "AK equals pinned",
    ] {
        assert!(report.contains(want), "{want} not in {report}");
    }

    // Sealed generate and chat, streamed and not; the test runner reverses the prompt's words.
    let want = PROMPT.split(' ').rev().collect::<Vec<_>>().join(" ");
    for stream in [false, true] {
        let extra: &[&str] = if stream { &["--stream"] } else { &[] };
        let g = verify_generate(&url, "tiny:latest", PROMPT, &m, extra).unwrap();
        assert!(g.status.success(), "{}", text(&g.stderr));
        assert_eq!(text(&g.stdout).trim(), want);
        assert!(
            text(&g.stderr).contains("receipt: verified"),
            "{}",
            text(&g.stderr)
        );
    }
    let msgs = dir.path().join("messages.json");
    std::fs::write(
        &msgs,
        serde_json::json!([{"role": "user", "content": PROMPT}]).to_string(),
    )
    .unwrap();
    for stream in [false, true] {
        let mut c = Command::new(bin("secllama-verify").unwrap());
        c.args([
            "generate",
            "--url",
            &url,
            "--model",
            "tiny:latest",
            "--manifest",
        ])
        .arg(&m)
        .arg("--messages")
        .arg(&msgs);
        if stream {
            c.arg("--stream");
        }
        let g = c.output().unwrap();
        assert!(g.status.success(), "{}", text(&g.stderr));
        assert!(
            text(&g.stderr).contains("receipt: verified"),
            "{}",
            text(&g.stderr)
        );
    }

    // A prompt outside the dataset: refused by the policy, nothing answered.
    let g = verify_generate(&url, "tiny:latest", "What is the host's password?", &m, &[]).unwrap();
    assert!(!g.status.success());
    assert!(
        text(&g.stderr).contains("refused by policy rule dataset"),
        "{}",
        text(&g.stderr)
    );
    assert!(g.stdout.is_empty());

    // Manifests for changed artifacts: a policy byte (initramfs and config digest → PCR 9), the
    // command line (another config path → PCR 9), another model (verity root → PCR 9), a kernel
    // byte (PCR 4).
    let changed = dir.path().join("changed");
    let changed_config = copy_art(&dir.path().join("art"), &changed, &state);
    let cm = dir.path().join("changed.toml");
    let p = manifest_for(&changed_config, &state, &cm);
    // (PCR 4 follows too when the initramfs's size changes: QEMU writes it into the kernel's
    // setup header.)
    assert_ne!(pcr_line(&p, 9), pcr_line(&predicted, 9));
    let a = attest(&url, &cm);
    assert!(!a.status.success());
    assert!(
        text(&a.stdout).contains("PCR sha256:9: expected"),
        "{}",
        text(&a.stdout)
    );

    let policy = changed.join("policy.json");
    let mut bytes = std::fs::read(&policy).unwrap();
    bytes.push(b' ');
    std::fs::write(&policy, bytes).unwrap();
    let p2 = manifest_for(&changed_config, &state, &cm);
    assert_ne!(pcr_line(&p2, 9), pcr_line(&p, 9));
    let a = attest(&url, &cm);
    let r = text(&a.stdout);
    assert!(!a.status.success());
    assert!(
        r.contains("PCR sha256:9: expected") && r.contains("policy: expected"),
        "{r}"
    );

    std::fs::write(changed.join("model.gguf"), b"other weights").unwrap();
    let p3 = manifest_for(&changed_config, &state, &cm);
    assert_ne!(pcr_line(&p3, 9), pcr_line(&p2, 9));

    // A kernel byte: with the booted initramfs and command line unchanged, only PCR 4 moves.
    let image = state.join("image");
    let kernel = std::fs::read(image.join("vmlinuz")).unwrap();
    let initrd = std::fs::read(image.join("initrd.img")).unwrap();
    let cmdline = std::fs::read_to_string(image.join("cmdline")).unwrap();
    let banks = [secllama_measurements::eventlog::Bank::Sha256];
    let boot = |k: &[u8]| {
        secllama_measurements::vm::predict(
            &secllama_measurements::vm::Boot {
                kernel: k,
                initrd: &initrd,
                cmdline: &cmdline,
                memory_mib: 1024,
            },
            &banks,
        )
        .unwrap()
    };
    let booted = boot(&kernel);
    let mut flipped = kernel.clone();
    let n = flipped.len();
    flipped[n / 2] ^= 1;
    let other = boot(&flipped);
    let sha =
        |p: &secllama_measurements::eventlog::PcrValues, i: u32| hex::encode(&p[&banks[0]][&i]);
    assert!(pcr_line(&predicted, 4).ends_with(&sha(&booted, 4)));
    assert_ne!(sha(&other, 4), sha(&booted, 4));
    assert_eq!(sha(&other, 9), sha(&booted, 9));

    // Hostile clients on the vsock path: stalled, truncated and garbage connections through the
    // bridge are dropped, and the enclave still attests afterwards.
    let mut stalled = Vec::new();
    for _ in 0..16 {
        stalled.push(std::net::TcpStream::connect(&bridge).unwrap());
    }
    for garbage in [
        &b"POST /v1/sealed/api/generate HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\nabc"[..],
        &b"\x00\xff\x13GARBAGE\r\n\r\n"[..],
        &b"GET /v1/attestation?nonce=zz HTTP/1.1\r\nHost: x\r\n\r\n"[..],
    ] {
        let mut s = std::net::TcpStream::connect(&bridge).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        s.write_all(garbage).unwrap();
        let _ = s.shutdown(std::net::Shutdown::Write);
        let mut answer = Vec::new();
        let _ = s.read_to_end(&mut answer);
        assert!(
            answer.is_empty() || answer.starts_with(b"HTTP/1.1 4"),
            "{}",
            text(&answer)
        );
    }
    drop(stalled);
    let a = attest(&url, &m);
    assert!(a.status.success(), "{}", text(&a.stdout));

    // The enclave's end: stopping the launcher stops QEMU, swtpm and the vsock backend.
    let pid = launcher.0.id();
    drop(launcher);
    let deadline = Instant::now() + Duration::from_secs(10);
    let left = || {
        let out = Command::new("pgrep")
            .args(["-f", &state.display().to_string()])
            .output()
            .unwrap();
        text(&out.stdout)
    };
    while !left().trim().is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        left().trim().is_empty(),
        "left running after launcher {pid}: {}",
        left()
    );

    // The receipt log lives on the host's disk (state/receipts.img, the guest's log disk): it
    // verifies offline, and a second boot of the same measured guest continues it with the same
    // identity, the new head extending the old one.
    let disk = state.join("receipts.img");
    let before = log_cli(&["log", "verify", disk.to_str().unwrap()]);
    let entries = before["entries"].as_u64().unwrap();
    assert!(entries >= 4, "the answers above are in the log: {before}");
    assert_eq!(before["torn_tail_bytes"], 0, "{before}");
    let last_size = before["heads"].as_array().unwrap().last().unwrap()["size"]
        .as_u64()
        .unwrap();
    // This boot logs as JSON: the launcher's progress and the guest's console lines too.
    let (launcher, output, bridge) = launch_with_args(&config, &["--log-format", "json"]).unwrap();
    let url = format!("http://{bridge}");
    let g = verify_generate(&url, "tiny:latest", PROMPT, &m, &[]).unwrap();
    assert!(g.status.success(), "{}", text(&g.stderr));
    assert!(
        text(&g.stderr).contains(&format!("log: entry {entries} is in the signed head")),
        "the index continues after the reboot: {}",
        text(&g.stderr)
    );
    drop(launcher);
    let logged = output.lock().unwrap().clone();
    assert!(
        logged
            .iter()
            .any(|l| l.contains("secllama-init: stage agent")),
        "{logged:?}"
    );
    for l in &logged {
        let v: serde_json::Value =
            serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}"));
        assert!(v["level"].is_string(), "{l}");
    }
    let after = log_cli(&["log", "verify", disk.to_str().unwrap()]);
    assert_eq!(after["log_id"], before["log_id"], "the same identity");
    assert_eq!(after["entries"].as_u64().unwrap(), entries + 1, "{after}");
    let to = after["entries"].as_u64().unwrap().to_string();
    log_cli(&[
        "log",
        "consistency",
        disk.to_str().unwrap(),
        "--from",
        &last_size.to_string(),
        "--to",
        &to,
    ]);
}

/// `secllama-verify ARGS` (a `log` subcommand): its JSON report, which must say valid.
fn log_cli(args: &[&str]) -> serde_json::Value {
    let out = Command::new(secllama_tests::workspace_bin("secllama-verify"))
        .args(args)
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    assert!(
        out.status.success() && v["valid"] == true,
        "{args:?}: {v} {}",
        text(&out.stderr)
    );
    v
}

#[test]
fn vm_model_disk_tampering_fails_closed() {
    let dir = artifact_dir();
    // 64 KiB of weights: the squashfs's superblock and the file's first bytes share the first
    // 4 KiB block; a byte in a later block is read only when the agent hashes the model.
    let weights: Vec<u8> = (0..65536u32).map(|i| (i % 251) as u8).collect();
    let config = test_runner_vm(dir.path(), &weights);
    let image = dir.path().join("image");
    let b = Command::new(bin("secllama").unwrap())
        .args(["image", "build", "--config"])
        .arg(&config)
        .arg("--out")
        .arg(&image)
        .output()
        .unwrap();
    assert!(b.status.success(), "{}", text(&b.stderr));
    // Flip one byte of the model's data in the disk's fifth 4 KiB block.
    let disk = image.join("model.img");
    let mut d = std::fs::read(&disk).unwrap();
    let start = d.windows(64).position(|w| w == &weights[..64]).unwrap();
    let at = (start / 4096 + 5) * 4096 + 7;
    d[at] ^= 0x20;
    std::fs::write(&disk, d).unwrap();
    let r = launch_with_args(&config, &["--image", image.to_str().unwrap()]);
    let err = match r {
        Ok((_l, out, _)) => panic!("a tampered model disk launched: {}", lines(&out)),
        Err(e) => e.to_string(),
    };
    let serial = std::fs::read_to_string(dir.path().join("state/serial.log")).unwrap_or_default();
    assert!(
        err.contains("the agent exited") || serial.contains("the agent exited"),
        "{err}\n{serial}"
    );
    assert!(
        serial.contains("verity") && serial.contains("is corrupted"),
        "{serial}"
    );
    assert!(serial.contains("Input/output error"), "{serial}");
    assert!(!serial.contains("listening on vsock"), "{serial}");
}

#[test]
fn vm_real_model_answers() {
    let model = secllama_tests::launch::model_gguf().unwrap();
    let dir = artifact_dir();
    let art = dir.path().join("art");
    std::fs::create_dir_all(&art).unwrap();
    let gguf = art.join("SmolLM2-135M-Instruct.Q4_1.gguf");
    std::fs::copy(&model, &gguf).unwrap();
    let runner = bin("secllama-runner").unwrap();
    let port = free_port().unwrap();
    let config = VmEnclave {
        art: art.clone(),
        state: dir.path().join("state"),
        runner: runner.clone(),
        runner_command: vec![
            runner.display().to_string(),
            "--listen".into(),
            format!("127.0.0.1:{port}"),
            "--threads".into(),
            "1".into(),
            "--model".into(),
            format!("smollm2:135m={}", gguf.display()),
        ],
        runner_port: port,
        runner_ready_secs: 300,
        models: vec![gguf.clone()],
        policy: serde_json::json!({
            "dataset": [{"id": "q0", "prompt": "Hi"}],
            "models": ["smollm2:135m"], "max_prompt_bytes": 64, "max_num_predict": 4
        })
        .to_string(),
        memory_mib: 1024,
    }
    .write()
    .unwrap();
    let state = dir.path().join("state");
    let (_launcher, _out, bridge) = launch_with_args(&config, &[]).unwrap();
    let m = dir.path().join("manifest.toml");
    manifest_for(&config, &state, &m);
    // TCG emulates the model's AVX2 arithmetic slowly: one token.
    let g = verify_generate(
        &format!("http://{bridge}"),
        "smollm2:135m",
        "Hi",
        &m,
        &["--num-predict", "1"],
    )
    .unwrap();
    let err = text(&g.stderr);
    assert!(g.status.success(), "{err}");
    assert!(err.contains("receipt: verified"), "{err}");
    assert!(err.contains("tpm, enclave affirming"), "{err}");
    assert!(!text(&g.stdout).trim().is_empty(), "no answer: {err}");
}
