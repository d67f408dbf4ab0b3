//! AK trust from the client and evidence bundles, against the real agent over swtpm: an AK
//! certificate (`attest --cert`) chaining to `tpm.ak_roots`, credential activation for
//! `tpm.ek_cas`, and bundles re-appraised offline after the enclave is gone.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test crate: a failed unwrap is a failed test

mod client_fixture;
use client_fixture::{fixture, fixture_on, reasons};
use secllama_client::cli::{Format, attest};
use std::path::Path;

/// Runs `openssl` with `args` in `dir`; panics with its stderr on failure.
fn openssl(dir: &Path, args: &[&str]) {
    let out = std::process::Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `secllama-verify bundle` as a process: (exit code, JSON).
fn bundle_cli(args: &[&str]) -> (Option<i32>, serde_json::Value) {
    let out = std::process::Command::new(secllama_tests::workspace_bin("secllama-verify"))
        .arg("bundle")
        .args(args)
        .output()
        .unwrap();
    let v = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "bundle {args:?}: {e}: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.code(), v)
}

/// AK trust through `tpm.ak_roots` from the client (an AK certificate given with `--cert`,
/// issued by a test CA that openssl runs), then an evidence bundle re-appraised offline after the
/// enclave and its TPM are gone: the same verdict at its recorded time; a newer CRL revoking the
/// AK certificate, a later `--at` past its validity, another manifest and a flipped evidence byte
/// each change it, and the output says exactly what.
#[test]
fn ak_roots_from_the_client_and_a_bundle_reappraised_after_the_enclave_is_gone() {
    use rsa::pkcs8::EncodePublicKey;
    let f = fixture();
    // Files that outlive the enclave's own folder.
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().to_path_buf();
    // The AK's public key, from a document.
    let doc_path = dir.join("first.cose");
    let (valid, _) = f.attest(
        &f.url(),
        &f.write_manifest("pinned.toml", &f.manifest),
        Some(doc_path.clone()),
    );
    assert!(valid);
    let doc =
        secllama_protocol::attestation::open_document(&std::fs::read(&doc_path).unwrap()).unwrap();
    let ak = secllama_verifier::tpm::AkPublic::detect(&doc.payload.tpm.unwrap().ak_public).unwrap();
    let secllama_protocol::cose::VerifyingKey::Rsa(k) = ak.verifying_key().unwrap() else {
        panic!("the test AK is RSA");
    };
    std::fs::write(
        dir.join("ak.pem"),
        k.to_public_key_pem(rsa::pkcs8::LineEnding::LF).unwrap(),
    )
    .unwrap();
    // A CA with a database, so it can revoke.
    std::fs::write(dir.join("index.txt"), "").unwrap();
    std::fs::write(dir.join("crlnumber"), "01\n").unwrap();
    std::fs::write(
        dir.join("ca.cnf"),
        "[ca]\ndefault_ca = test\n[test]\ndatabase = index.txt\ncrlnumber = crlnumber\ndefault_md = sha256\ndefault_crl_days = 30\n\
         [v3_ca]\nbasicConstraints = critical, CA:TRUE\nkeyUsage = critical, keyCertSign, cRLSign\n\
         [v3_ak]\nbasicConstraints = critical, CA:FALSE\nkeyUsage = critical, digitalSignature\n",
    )
    .unwrap();
    openssl(
        &dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "3650",
            "-subj",
            "/CN=secllama test AK CA",
            "-config",
            "ca.cnf",
            "-extensions",
            "v3_ca",
        ],
    );
    // The AK certificate: the AK's key, valid one day, issued by the CA (force_pubkey: the CA never
    // sees the AK's private key, as with a real AK CA after credential activation).
    openssl(
        &dir,
        &[
            "genpkey",
            "-algorithm",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-out",
            "dummy.key",
        ],
    );
    openssl(
        &dir,
        &[
            "req",
            "-new",
            "-key",
            "dummy.key",
            "-subj",
            "/CN=secllama test AK",
            "-out",
            "ak.csr",
        ],
    );
    openssl(
        &dir,
        &[
            "x509",
            "-req",
            "-in",
            "ak.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-force_pubkey",
            "ak.pem",
            "-days",
            "1",
            "-set_serial",
            "4242",
            "-extfile",
            "ca.cnf",
            "-extensions",
            "v3_ak",
            "-out",
            "akcert.pem",
        ],
    );
    let mut m = f.manifest.clone();
    m.tpm.ak_publics.clear();
    m.tpm.ak_roots = vec![std::fs::read_to_string(dir.join("ca.pem")).unwrap()];
    let roots_manifest = dir.join("roots.toml");
    std::fs::write(&roots_manifest, m.to_toml().unwrap()).unwrap();
    // Without the AK certificate: the root cannot be applied.
    let (valid, r) = f.attest(&f.url(), &roots_manifest, None);
    assert!(!valid);
    assert!(reasons(&r, "tpm").contains("no AK certificate"), "{r:#}");
    // With it (--cert), recorded in a bundle.
    let bundle = dir.join("evidence.bundle");
    let out = attest::run(&attest::Args {
        url: f.url(),
        manifest: roots_manifest.clone(),
        save: None,
        save_bundle: Some(bundle.clone()),
        certs: vec![dir.join("akcert.pem")],
        format: Format::Json,
    })
    .unwrap();
    let r: serde_json::Value = serde_json::from_str(&out.report).unwrap();
    assert!(out.valid, "{r:#}");
    assert!(
        r["submods"]["tpm"]["secllama.passed"]
            .to_string()
            .contains("AK certificate chains to tpm.ak_roots"),
        "{r:#}"
    );
    // The enclave, its agent and its TPM go away.
    drop(f);
    let b = bundle.to_str().unwrap();
    let (code, v) = bundle_cli(&[b]);
    assert_eq!(code, Some(0), "{v:#}");
    assert_eq!(v["same_verdict"], true, "{v:#}");
    assert_eq!(v["result"]["submods"]["tpm"]["ear.status"], "affirming");
    // A newer CRL revoking the AK certificate.
    openssl(
        &dir,
        &[
            "ca",
            "-config",
            "ca.cnf",
            "-keyfile",
            "ca.key",
            "-cert",
            "ca.pem",
            "-revoke",
            "akcert.pem",
        ],
    );
    openssl(
        &dir,
        &[
            "ca", "-config", "ca.cnf", "-keyfile", "ca.key", "-cert", "ca.pem", "-gencrl", "-out",
            "ca.crl",
        ],
    );
    let crl = dir.join("ca.crl");
    let (code, v) = bundle_cli(&[b, "--crl", crl.to_str().unwrap()]);
    assert_eq!(code, Some(1), "{v:#}");
    assert_eq!(v["same_verdict"], false);
    let changes = v["changes"].to_string();
    assert!(
        changes.contains("revoked") && changes.contains("serial 10:92"),
        "{changes}"
    );
    assert!(
        changes.contains("tpm: recorded \\\"affirming\\\", now \\\"contraindicated\\\""),
        "{changes}"
    );
    // Later than the AK certificate's validity.
    let (code, v) = bundle_cli(&[b, "--at", "2100-01-01T00:00:00Z"]);
    assert_eq!(code, Some(1));
    assert!(v["changes"].to_string().contains("validity"), "{v:#}");
    // Another manifest (the model digest changed).
    m.enclave.model = "11".repeat(32);
    let other = dir.join("other.toml");
    std::fs::write(&other, m.to_toml().unwrap()).unwrap();
    let (code, v) = bundle_cli(&[b, "--manifest", other.to_str().unwrap()]);
    assert_eq!(code, Some(1));
    let changes = v["changes"].to_string();
    assert!(
        changes.contains("manifest given differs") && changes.contains("model"),
        "{changes}"
    );
    // A flipped byte inside the recorded evidence.
    let mut bytes = std::fs::read(&bundle).unwrap();
    let document = std::fs::read(dir.join("first.cose")).unwrap();
    let at = bytes
        .windows(16)
        .position(|w| w == &document[40..56])
        .unwrap();
    bytes[at + 8] ^= 1;
    let tampered = dir.join("tampered.bundle");
    std::fs::write(&tampered, &bytes).unwrap();
    let (code, v) = bundle_cli(&[tampered.to_str().unwrap()]);
    assert_eq!(code, Some(1), "{v:#}");
    assert!(
        v["changes"].to_string().contains("evidence digest differs"),
        "{v:#}"
    );
    // Not a bundle: exit 2.
    let out = std::process::Command::new(secllama_tests::workspace_bin("secllama-verify"))
        .args(["bundle", roots_manifest.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

/// AK trust through `tpm.ek_cas` from the client: on a TPM provisioned with an EK certificate
/// (swtpm's local CA), the client makes a credential for the document's EK and AK, the enclave's
/// TPM activates it (`POST /attestation/credential`), and the EK certificate chains to the CA the
/// manifest names: affirming. Another CA: not affirming, naming the chain. A bundle of that
/// appraisal re-appraised offline says the activation cannot be replayed.
#[test]
fn ek_cas_through_credential_activation_from_the_client() {
    let f = fixture_on(true);
    let localca = |name: &str| {
        std::fs::read_to_string(Path::new("/var/lib/swtpm-localca").join(name)).unwrap()
    };
    let mut m = f.manifest.clone();
    m.tpm.ak_publics.clear();
    m.tpm.ek_cas = vec![
        localca("issuercert.pem"),
        localca("swtpm-localca-rootca-cert.pem"),
    ];
    let path = f.write_manifest("ek.toml", &m);
    let bundle = f.dir.join("ek.bundle");
    let out = attest::run(&attest::Args {
        url: f.url(),
        manifest: path.clone(),
        save: None,
        save_bundle: Some(bundle.clone()),
        certs: Vec::new(),
        format: Format::Json,
    })
    .unwrap();
    let r: serde_json::Value = serde_json::from_str(&out.report).unwrap();
    assert!(out.valid, "{r:#}");
    assert!(
        r["submods"]["tpm"]["secllama.passed"]
            .to_string()
            .contains("credential activation"),
        "{r:#}"
    );
    // Through the TCP relay too (the bridge relays the activation like any request).
    let (valid, _) = f.attest(&f.tcp_relay(), &path, None);
    assert!(valid);
    // Another CA (a fresh self-signed one): the EK certificate does not chain to it.
    let work = tempfile::tempdir().unwrap();
    openssl(
        work.path(),
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            "k.pem",
            "-out",
            "other.pem",
            "-days",
            "30",
            "-subj",
            "/CN=swtpm-localca",
        ],
    );
    m.tpm.ek_cas = vec![std::fs::read_to_string(work.path().join("other.pem")).unwrap()];
    let (valid, r) = f.attest(&f.url(), &f.write_manifest("other-ca.toml", &m), None);
    assert!(!valid);
    assert!(reasons(&r, "tpm").contains("tpm.ek_cas"), "{r:#}");
    // Offline, the activation is not in the bundle: the AK is no longer trusted, and it says why.
    let (code, v) = bundle_cli(&[bundle.to_str().unwrap()]);
    assert_eq!(code, Some(1), "{v:#}");
    assert!(
        v["changes"]
            .to_string()
            .contains("cannot be replayed offline"),
        "{v:#}"
    );
}
