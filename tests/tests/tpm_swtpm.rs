//! The `tpm` crate against a real swtpm (one per test, its own port pair, killed on drop), with
//! tpm2-tools as the independent peer: event-log parsing and replay, PCR-policy sealing, NV counters
//! across a TPM restart, persistent AKs, and quotes checked by `tpm2_checkquote`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test crate: a failed unwrap is a failed test

use secllama_tests::swtpm::Swtpm;
use secllama_tpm::Tpm;
use secllama_tpm::ak::{AkKind, DEFAULT_AK_HANDLE};
use secllama_tpm::eventlog::{EventLogWriter, HashAlg, Measurement};
use std::collections::BTreeMap;
use std::process::Output;

fn ok(out: Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// `tpm2_pcrread` values for `bank:indices`, parsed from its YAML.
fn pcrread(tpm: &Swtpm, spec: &str) -> BTreeMap<(String, u32), String> {
    let text = ok(
        tpm.tool("pcrread").arg(spec).output().unwrap(),
        "tpm2_pcrread",
    );
    let mut bank = String::new();
    let mut out = BTreeMap::new();
    for line in text.lines() {
        let t = line.trim();
        if let Some(b) = t.strip_suffix(':') {
            bank = b.to_string();
        } else if let Some((i, v)) = t.split_once(':') {
            if let (Ok(i), Some(v)) = (i.trim().parse::<u32>(), v.trim().strip_prefix("0x")) {
                out.insert((bank.clone(), i), v.to_ascii_lowercase());
            }
        }
    }
    out
}

fn measure_three(tpm: &mut Tpm, log_path: &std::path::Path) -> Vec<HashAlg> {
    let banks = tpm.active_banks().unwrap();
    let mut log = EventLogWriter::open(log_path, &banks).unwrap();
    for (pcr, content, what) in [
        (16, &b"agent binary"[..], "agent:/usr/bin/secllama-enclave"),
        (16, &b"runner binary"[..], "runner:/usr/bin/ollama"),
        (23, &b"keys"[..], "keys:sha256"),
    ] {
        tpm.measure(&mut log, &Measurement::tagged(pcr, &banks, content, what))
            .unwrap();
    }
    banks
}

#[test]
fn our_event_log_parses_in_tpm2_eventlog_and_replays_to_pcrread() {
    let sw = Swtpm::start().unwrap();
    let mut tpm = Tpm::connect(&sw.tcti()).unwrap();
    let log_path = sw.path("events.bin");
    let banks = measure_three(&mut tpm, &log_path);
    assert!(
        banks.contains(&HashAlg::Sha256),
        "swtpm allocates SHA-256: {banks:?}"
    );

    let yaml = ok(
        sw.tool("eventlog").arg(&log_path).output().unwrap(),
        "tpm2_eventlog",
    );
    assert!(yaml.contains("EV_EVENT_TAG"), "{yaml}");
    assert_eq!(yaml.matches("EventType: EV_EVENT_TAG").count(), 3, "{yaml}");
    // tpm2_eventlog's replayed PCRs (its "pcrs:" section) equal the TPM's.
    let replay = yaml
        .split("pcrs:")
        .nth(1)
        .expect("tpm2_eventlog prints replayed pcrs");
    for bank in &banks {
        let read = pcrread(&sw, &format!("{}:16,23", bank.name()));
        for pcr in [16u32, 23] {
            let value = &read[&(bank.name().to_string(), pcr)];
            assert!(
                replay.to_ascii_lowercase().contains(value.as_str()),
                "{} PCR {pcr} = {value} not in replay:\n{replay}",
                bank.name()
            );
        }
    }
    // Reopening the log with the same banks appends; with other banks it is refused.
    assert!(EventLogWriter::open(&log_path, &banks).is_ok());
    assert!(EventLogWriter::open(&log_path, &[HashAlg::Sha384]).is_err());
}

/// What the receipt log relies on: a blob stored as bytes unseals after a reboot (swtpm restarted,
/// PCRs reset) once the same measurements are extended again (the SHA-256 bank, as the agent
/// seals).
#[test]
fn a_sealed_blob_unseals_after_a_reboot_into_the_same_state() {
    let mut sw = Swtpm::start().unwrap();
    let mut tpm = Tpm::connect(&sw.tcti()).unwrap();
    let banks = tpm.active_banks().unwrap();
    tpm.extend(&Measurement::tagged(15, &banks, b"launch", "launch"))
        .unwrap();
    let blob = tpm
        .seal(b"log identity", &[HashAlg::Sha256], &[15])
        .unwrap()
        .to_bytes();
    drop(tpm);
    sw.restart().unwrap();
    let mut tpm = Tpm::connect(&sw.tcti()).unwrap();
    let sealed = secllama_tpm::seal::SealedSecret::from_bytes(&blob).unwrap();
    assert!(
        tpm.unseal(&sealed).is_err(),
        "PCR 15 is reset: not the sealed state"
    );
    tpm.extend(&Measurement::tagged(15, &banks, b"launch", "launch"))
        .unwrap();
    assert_eq!(tpm.unseal(&sealed).unwrap().as_slice(), b"log identity");
    assert!(secllama_tpm::seal::SealedSecret::from_bytes(&blob[..blob.len() - 1]).is_err());
    assert!(secllama_tpm::seal::SealedSecret::from_bytes(&[&blob[..], &[0]].concat()).is_err());
}

#[test]
fn unseal_works_until_a_policy_pcr_changes() {
    let sw = Swtpm::start().unwrap();
    let mut tpm = Tpm::connect(&sw.tcti()).unwrap();
    let banks = [HashAlg::Sha256];
    tpm.extend(&Measurement::tagged(23, &banks, b"enclave keys", "keys"))
        .unwrap();
    let sealed = tpm.seal(b"log signing key", &banks, &[16, 23]).unwrap();
    assert_eq!(tpm.unseal(&sealed).unwrap().as_slice(), b"log signing key");
    assert_eq!(
        tpm.unseal(&sealed).unwrap().as_slice(),
        b"log signing key",
        "unseal is repeatable"
    );
    // A PCR outside the policy does not matter; one inside does.
    tpm.extend(&Measurement::tagged(15, &banks, b"other", "other"))
        .unwrap();
    assert!(tpm.unseal(&sealed).is_ok());
    tpm.extend(&Measurement::tagged(16, &banks, b"another agent", "agent"))
        .unwrap();
    let e = tpm.unseal(&sealed).unwrap_err();
    assert!(e.to_string().contains("unsealing"), "{e}");
    assert!(
        tpm.seal(&[0u8; 129], &banks, &[16]).is_err(),
        "oversized secrets are refused"
    );
}

#[test]
fn nv_counter_only_grows_and_survives_a_restart() {
    let mut sw = Swtpm::start().unwrap();
    let index = 0x0150_0042;
    let (first, second) = {
        let mut tpm = Tpm::connect(&sw.tcti()).unwrap();
        let first = tpm.counter_define(index).unwrap();
        let second = tpm.counter_increment(index).unwrap();
        assert_eq!(second, first + 1);
        assert_eq!(
            tpm.counter_define(index).unwrap(),
            second,
            "defining again keeps the value"
        );
        (first, second)
    };
    sw.restart().unwrap();
    let mut tpm = Tpm::connect(&sw.tcti()).unwrap();
    assert_eq!(tpm.counter_read(index).unwrap(), second);
    assert_eq!(tpm.counter_increment(index).unwrap(), first + 2);
    // tpm2-tools reads the same 8-byte big-endian value.
    let out = sw
        .tool("nvread")
        .args(["-C", "o", "-s", "8"])
        .arg(format!("{index:#x}"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        u64::from_be_bytes(out.stdout[..8].try_into().unwrap()),
        first + 2
    );
    assert!(
        tpm.counter_read(0x0150_0043).is_err(),
        "an undefined counter is an error"
    );
}

#[test]
fn the_ak_is_persistent_across_restarts() {
    let mut sw = Swtpm::start().unwrap();
    let before = Tpm::connect(&sw.tcti())
        .unwrap()
        .ensure_ak(DEFAULT_AK_HANDLE, AkKind::RsaSsaSha256)
        .unwrap();
    sw.restart().unwrap();
    let mut tpm = Tpm::connect(&sw.tcti()).unwrap();
    let after = tpm
        .ensure_ak(DEFAULT_AK_HANDLE, AkKind::RsaSsaSha256)
        .unwrap();
    assert_eq!(before, after);
    assert_eq!(after.name.len(), 34, "SHA-256 name: alg id + digest");
    // tpm2-tools sees the same object at the handle.
    let out = ok(
        sw.tool("readpublic")
            .args(["-c", &format!("{DEFAULT_AK_HANDLE:#x}")])
            .output()
            .unwrap(),
        "readpublic",
    );
    assert!(out.contains(&hex::encode(&after.name)), "{out}");
    // Evicted, it is gone; ensure_ak makes a new one.
    tpm.evict_ak(DEFAULT_AK_HANDLE).unwrap();
    assert!(tpm.ak_info(DEFAULT_AK_HANDLE).is_err());
    let ecc = tpm
        .ensure_ak(DEFAULT_AK_HANDLE, AkKind::EcdsaP256Sha256)
        .unwrap();
    assert_ne!(ecc.public, after.public);
}

#[test]
fn our_quote_passes_tpm2_checkquote() {
    let sw = Swtpm::start().unwrap();
    let mut tpm = Tpm::connect(&sw.tcti()).unwrap();
    let log = sw.path("events.bin");
    measure_three(&mut tpm, &log);
    for kind in [AkKind::RsaSsaSha256, AkKind::EcdsaP256Sha256] {
        tpm.evict_ak(DEFAULT_AK_HANDLE).unwrap();
        tpm.ensure_ak(DEFAULT_AK_HANDLE, kind).unwrap();
        let nonce = [0x5au8; 32];
        let q = tpm
            .quote(DEFAULT_AK_HANDLE, &nonce, &[HashAlg::Sha256], &[0, 16, 23])
            .unwrap();
        let (ak, msg, sig, pcrs) = (
            sw.path("ak.pub"),
            sw.path("q.msg"),
            sw.path("q.sig"),
            sw.path("q.pcrs"),
        );
        std::fs::write(&ak, &q.ak_public).unwrap();
        std::fs::write(&msg, &q.attest).unwrap();
        std::fs::write(&sig, &q.signature).unwrap();
        let values: Vec<u8> = q.pcrs[&HashAlg::Sha256]
            .values()
            .flatten()
            .copied()
            .collect();
        std::fs::write(&pcrs, &values).unwrap();
        let check = |nonce_hex: &str| {
            sw.tool("checkquote")
                .arg("-u")
                .arg(&ak)
                .arg("-m")
                .arg(&msg)
                .arg("-s")
                .arg(&sig)
                .arg("-f")
                .arg(&pcrs)
                .args(["-l", "sha256:0,16,23", "-g", "sha256", "-q", nonce_hex])
                .output()
                .unwrap()
        };
        ok(check(&hex::encode(nonce)), "tpm2_checkquote");
        assert!(
            !check(&hex::encode([0x5bu8; 32])).status.success(),
            "tpm2_checkquote must refuse another nonce"
        );
        // The PCR values we return are the TPM's.
        let read = pcrread(&sw, "sha256:0,16,23");
        for (i, v) in &q.pcrs[&HashAlg::Sha256] {
            assert_eq!(read[&("sha256".to_string(), *i)], hex::encode(v));
        }
    }
}

#[test]
fn ek_certificate_is_read_from_nv_when_provisioned() {
    use secllama_tpm::ek::EkKind;
    let plain = Swtpm::start().unwrap();
    let mut tpm = Tpm::connect(&plain.tcti()).unwrap();
    assert_eq!(tpm.ek_certificate(EkKind::Rsa2048).unwrap(), None);
    let rsa = tpm.ek_public(EkKind::Rsa2048).unwrap();
    let ecc = tpm.ek_public(EkKind::EccP256).unwrap();
    assert_eq!(
        rsa,
        tpm.ek_public(EkKind::Rsa2048).unwrap(),
        "the EK is a primary: same template, same key"
    );
    assert_ne!(rsa, ecc);

    let made = Swtpm::start_manufactured().unwrap();
    let mut tpm = Tpm::connect(&made.tcti()).unwrap();
    let cert = tpm
        .ek_certificate(EkKind::Rsa2048)
        .unwrap()
        .expect("swtpm_setup provisions an EK certificate");
    let der = made.path("ek.der");
    std::fs::write(&der, &cert).unwrap();
    // openssl (a peer) reads it, and its key is the EK's: the modulus is inside our TPM2B_PUBLIC.
    let modulus = ok(
        std::process::Command::new("openssl")
            .args(["x509", "-inform", "der", "-noout", "-modulus", "-in"])
            .arg(&der)
            .output()
            .unwrap(),
        "openssl x509",
    );
    let modulus = hex::decode(modulus.trim().trim_start_matches("Modulus=")).unwrap();
    let ek_public = tpm.ek_public(EkKind::Rsa2048).unwrap();
    assert!(
        ek_public
            .windows(modulus.len())
            .any(|w| w == modulus.as_slice()),
        "certificate key is not the EK"
    );
    // The pure-Rust verifier chains it to swtpm's local EK CA (the trusted EK CA in this setup).
    use secllama_verifier::tpm::{TpmPublic, cert};
    let ca = std::path::Path::new("/var/lib/swtpm-localca");
    let load = |f: &str| cert::load_certificates(&std::fs::read(ca.join(f)).unwrap()).unwrap();
    let (issuer, root) = (
        load("issuercert.pem"),
        load("swtpm-localca-rootca-cert.pem"),
    );
    let ek_key = TpmPublic::parse(&ek_public)
        .unwrap()
        .verifying_key()
        .unwrap();
    let now = std::time::SystemTime::now();
    let chain = cert::verify_ak_certificate(&cert, &ek_key, &issuer, &root, now);
    assert!(chain.valid(), "{:?}", chain.reasons);
    let no_intermediate: [Vec<u8>; 0] = [];
    assert!(!cert::verify_ak_certificate(&cert, &ek_key, &no_intermediate, &root, now).valid());
    let ecc_ek = tpm.ek_public(EkKind::EccP256).unwrap();
    let other_key = TpmPublic::parse(&ecc_ek).unwrap().verifying_key().unwrap();
    assert!(!cert::verify_ak_certificate(&cert, &other_key, &issuer, &root, now).valid());
}

/// Splits a tpm2-tools credential file: u32 magic 0xBADCC0DE, u32 version 1, TPM2B_ID_OBJECT,
/// TPM2B_ENCRYPTED_SECRET (all big-endian).
fn split_credential_file(b: &[u8]) -> (Vec<u8>, Vec<u8>) {
    assert_eq!(
        &b[..8],
        &[0xba, 0xdc, 0xc0, 0xde, 0, 0, 0, 1],
        "tpm2-tools credential header"
    );
    let n1 = usize::from(u16::from_be_bytes([b[8], b[9]]));
    let id = b[8..10 + n1].to_vec();
    let rest = &b[10 + n1..];
    let n2 = usize::from(u16::from_be_bytes([rest[0], rest[1]]));
    assert_eq!(rest.len(), 2 + n2, "no trailing bytes");
    (id, rest.to_vec())
}

#[test]
fn activate_credential_releases_a_tpm2_makecredential_secret_only_to_the_right_ak() {
    use secllama_tpm::ek::EkKind;
    let sw = Swtpm::start().unwrap();
    let mut tpm = Tpm::connect(&sw.tcti()).unwrap();
    let ak = tpm
        .ensure_ak(DEFAULT_AK_HANDLE, AkKind::RsaSsaSha256)
        .unwrap();
    let ek_pub = sw.path("ek.pub");
    std::fs::write(&ek_pub, tpm.ek_public(EkKind::Rsa2048).unwrap()).unwrap();
    let secret = sw.path("secret");
    std::fs::write(&secret, b"a verifier's 32-byte challenge!!").unwrap();
    let make = |name: &[u8], out: &std::path::Path| {
        let o = std::process::Command::new("tpm2_makecredential")
            .args(["-T", "none", "-u"])
            .arg(&ek_pub)
            .arg("-s")
            .arg(&secret)
            .args(["-n", &hex::encode(name)])
            .arg("-o")
            .arg(out)
            .output()
            .unwrap();
        ok(o, "tpm2_makecredential");
        split_credential_file(&std::fs::read(out).unwrap())
    };
    let (id, enc) = make(&ak.name, &sw.path("cred.out"));
    let got = tpm
        .activate_credential(DEFAULT_AK_HANDLE, &id, &enc)
        .unwrap();
    assert_eq!(got.as_slice(), b"a verifier's 32-byte challenge!!");
    // Made for another AK name: the TPM refuses (the integrity HMAC binds the name).
    let mut other = ak.name.clone();
    *other.last_mut().unwrap() ^= 1;
    let (id, enc) = make(&other, &sw.path("cred2.out"));
    assert!(
        tpm.activate_credential(DEFAULT_AK_HANDLE, &id, &enc)
            .is_err()
    );
    // Malformed TPM2B input is refused before reaching the TPM.
    assert!(
        tpm.activate_credential(DEFAULT_AK_HANDLE, &[0, 9, 1], &enc)
            .is_err()
    );
}

/// The launcher hands a development TPM into a sandbox as one unix socket (`UnixToTcp`, the
/// command channel only), and the agent's `swtpm-unix:` TCTI relays it back to loopback TCP for the
/// TSS (`LoopbackToUnix`, which answers the TSS's locality requests itself). Everything done
/// through both relays is what tpm2-tools, connected directly, sees; the swtpm control channel is
/// never reached: `CMD_INIT` through the stub is refused and the PCRs keep their values.
#[test]
fn swtpm_unix_tcti_relays_the_command_channel_only() {
    use secllama_tpm::relay::UnixToTcp;
    use std::io::{Read, Write};
    let sw = Swtpm::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let server = dir.path().join("tpm.sock");
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], sw.port()));
    let relay = UnixToTcp::start(&server, addr).unwrap();
    let tcti = format!("swtpm-unix:server={}", server.display());
    let mut tpm = Tpm::connect(&tcti).unwrap();
    let banks = measure_three(&mut tpm, &dir.path().join("log"));
    assert!(!banks.is_empty());
    let log = std::fs::read(dir.path().join("log")).unwrap();
    let replay = secllama_measurements::eventlog::EventLog::parse(&log)
        .unwrap()
        .replay();
    let direct = pcrread(&sw, "sha256:16,23");
    for pcr in [16u32, 23] {
        let ours = hex::encode(&replay[&secllama_measurements::eventlog::Bank::Sha256][&pcr]);
        assert_eq!(direct[&("sha256".to_string(), pcr)], ours, "PCR {pcr}");
    }
    // The control stub: locality 0 succeeds, CMD_INIT (what a hostile process would send to reset
    // the TPM) gets an error and a closed connection; the PCRs are unchanged.
    let mut stub = std::os::unix::net::UnixStream::pair().unwrap();
    std::thread::spawn(move || secllama_tpm::relay::control_stub(stub.1));
    stub.0.write_all(&[0, 0, 0, 5, 0]).unwrap();
    let mut rc = [0u8; 4];
    stub.0.read_exact(&mut rc).unwrap();
    assert_eq!(rc, [0, 0, 0, 0]);
    stub.0.write_all(&[0, 0, 0, 2, 0, 0, 0, 0]).unwrap(); // CMD_INIT
    stub.0.read_exact(&mut rc).unwrap();
    assert_ne!(rc, [0, 0, 0, 0]);
    // Closed: end of file, or a reset (the stub closes with the command's payload unread).
    let mut rest = Vec::new();
    match stub.0.read_to_end(&mut rest) {
        Ok(_) => assert!(rest.is_empty(), "{rest:?}"),
        Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset, "{e}"),
    }
    assert_eq!(pcrread(&sw, "sha256:16,23"), direct);
    // A second connection through the same relay works too; the socket goes away with the relay.
    drop(tpm);
    Tpm::connect(&tcti).unwrap().active_banks().unwrap();
    drop(relay);
    assert!(!server.exists());
    // A relay only forwards to loopback.
    let err = UnixToTcp::start(&server, "192.0.2.1:2321".parse().unwrap()).unwrap_err();
    assert!(err.to_string().contains("loopback"), "{err}");
}

/// libtss2's swtpm TCTI opens a socket per command, without close-on-exec; a child process
/// started during a command inherits it, and swtpm (one connection at a time) would then serve
/// that copy for as long as the child lives — every later TPM user hangs. Behind `Tpm`'s relay a
/// child can only inherit a socket to the relay, which ends each exchange itself: children that
/// live on while this process runs TPM commands never stop another TPM user (tpm2-tools here).
#[test]
fn children_started_during_tpm_commands_do_not_hold_the_tpm() {
    let sw = Swtpm::start().unwrap();
    let mut tpm = Tpm::connect(&sw.tcti()).unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let s2 = stop.clone();
    let spawner = std::thread::spawn(move || {
        let mut children = Vec::new();
        while !s2.load(std::sync::atomic::Ordering::Relaxed) && children.len() < 200 {
            children.push(
                std::process::Command::new("sleep")
                    .arg("60")
                    .spawn()
                    .unwrap(),
            );
        }
        children
    });
    let started = std::time::Instant::now();
    for _ in 0..200 {
        tpm.active_banks().unwrap();
    }
    let took = started.elapsed();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut children = spawner.join().unwrap();
    drop(tpm);
    // Another TPM user gets through while every child still runs.
    let out = std::process::Command::new("timeout")
        .arg("10")
        .args(["tpm2_getrandom", "--hex", "8"])
        .env("TPM2TOOLS_TCTI", sw.tcti())
        .output()
        .unwrap();
    for c in &mut children {
        let _ = c.kill();
        let _ = c.wait();
    }
    assert!(
        took < std::time::Duration::from_secs(30),
        "200 TPM commands took {took:?}: a child held the swtpm"
    );
    assert!(
        out.status.success(),
        "the swtpm is held by a child: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
