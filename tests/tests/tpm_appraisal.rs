//! Quotes and credentials made by a real swtpm through the `tpm` crate, checked by the pure-Rust
//! verifier; and the verifier's MakeCredential checked by the TPM (ours and tpm2-tools').
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test crate: a failed unwrap is a failed test

use rand_core::OsRng;
use secllama_tests::swtpm::Swtpm;
use secllama_tpm::Tpm;
use secllama_tpm::ak::{AkKind, DEFAULT_AK_HANDLE};
use secllama_tpm::ek::EkKind;
use secllama_tpm::eventlog::Measurement;
use secllama_tpm::quote::Quote;
use secllama_verifier::tpm::{
    self as vtpm, PcrValues, QuotePolicy, TpmPublic, appraise_quote_bytes,
};

fn pcr_values(q: &Quote) -> PcrValues {
    let mut v = PcrValues::new();
    for (bank, m) in &q.pcrs {
        for (i, val) in m {
            // The TPM crate's bank and the verifier's hash algorithm are one type.
            v.insert(*bank, *i, val.clone()).unwrap();
        }
    }
    v
}

fn quote_with(tpm: &mut Tpm, kind: AkKind, nonce: &[u8]) -> (Quote, Vec<u8>) {
    tpm.evict_ak(DEFAULT_AK_HANDLE).unwrap();
    let ak = tpm.ensure_ak(DEFAULT_AK_HANDLE, kind).unwrap();
    let banks = tpm.active_banks().unwrap();
    tpm.extend(&Measurement::tagged(16, &banks, b"agent", "agent"))
        .unwrap();
    let q = tpm
        .quote(DEFAULT_AK_HANDLE, nonce, &banks, &[0, 7, 16, 23])
        .unwrap();
    (q, ak.qualified_name)
}

#[test]
fn swtpm_quotes_appraise_in_pure_rust_and_every_flipped_byte_is_rejected() {
    let sw = Swtpm::start().unwrap();
    let mut tpm = Tpm::connect(&sw.tcti()).unwrap();
    for kind in [AkKind::RsaSsaSha256, AkKind::EcdsaP256Sha256] {
        let nonce = [0x42u8; 32];
        let (q, qn) = quote_with(&mut tpm, kind, &nonce);
        let pcrs = pcr_values(&q);
        let policy = QuotePolicy {
            nonce: &nonce,
            pcrs: &pcrs,
            allow_sha1: false,
            qualified_signer: Some(&qn),
        };
        let a = appraise_quote_bytes(&q.attest, &q.signature, &q.ak_public, &policy);
        assert!(a.valid(), "{kind:?}: {:?}", a.reasons());
        // The qualified name the verifier computes (AK under the endorsement hierarchy's EK) is the TPM's.
        let ak = TpmPublic::parse(&q.ak_public).unwrap();
        assert_eq!(
            ak.qualified_name(&vtpm::TPM_RH_ENDORSEMENT.to_be_bytes())
                .len(),
            qn.len()
        );

        let other_nonce = [0x43u8; 32];
        let wrong = QuotePolicy {
            nonce: &other_nonce,
            ..policy
        };
        assert!(!appraise_quote_bytes(&q.attest, &q.signature, &q.ak_public, &wrong).valid());

        for (what, bytes) in [
            ("attest", &q.attest),
            ("signature", &q.signature),
            ("AK", &q.ak_public),
        ] {
            let mut v = bytes.clone();
            for i in 0..v.len() {
                for mask in [0x01u8, 0xff] {
                    v[i] ^= mask;
                    let (att, sig, akp) = match what {
                        "attest" => (&v, &q.signature, &q.ak_public),
                        "signature" => (&q.attest, &v, &q.ak_public),
                        _ => (&q.attest, &q.signature, &v),
                    };
                    let a = appraise_quote_bytes(att, sig, akp, &policy);
                    assert!(
                        !a.valid(),
                        "{kind:?}: flip {mask:#04x} at {what} byte {i} accepted"
                    );
                    v[i] ^= mask;
                }
            }
        }
    }
}

#[test]
fn our_make_credential_activates_in_the_tpm_crate_and_in_tpm2_activatecredential() {
    let sw = Swtpm::start().unwrap();
    let secret = b"challenge from the verifier 0001";
    let (ek_public, ak_name) = {
        let mut tpm = Tpm::connect(&sw.tcti()).unwrap();
        let ak = tpm
            .ensure_ak(DEFAULT_AK_HANDLE, AkKind::RsaSsaSha256)
            .unwrap();
        (tpm.ek_public(EkKind::Rsa2048).unwrap(), ak.name)
    };
    let ek = TpmPublic::parse(&ek_public).unwrap();
    let (id, enc) = vtpm::make_credential(&ek, &ak_name, secret, &mut OsRng).unwrap();
    {
        let mut tpm = Tpm::connect(&sw.tcti()).unwrap();
        assert_eq!(
            tpm.activate_credential(DEFAULT_AK_HANDLE, &id, &enc)
                .unwrap()
                .as_slice(),
            secret
        );
        // Bound to the AK's name: a credential for another name is refused by the TPM.
        let mut other = ak_name.clone();
        *other.last_mut().unwrap() ^= 0x80;
        let (id2, enc2) = vtpm::make_credential(&ek, &other, secret, &mut OsRng).unwrap();
        assert!(
            tpm.activate_credential(DEFAULT_AK_HANDLE, &id2, &enc2)
                .is_err()
        );
    }

    // tpm2-tools activates the same file format our writer produces.
    let cred = sw.path("cred.out");
    std::fs::write(&cred, vtpm::to_tpm2_tools_file(&id, &enc).unwrap()).unwrap();
    let run = |tool: &str, args: &[&str]| {
        let out = sw
            .tool(tool)
            .args(args)
            .current_dir(sw.state_dir())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "tpm2_{tool}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    run("createek", &["-c", "ek.ctx", "-G", "rsa"]);
    run("flushcontext", &["-t"]);
    run(
        "startauthsession",
        &["--policy-session", "-S", "session.ctx"],
    );
    run("policysecret", &["-S", "session.ctx", "-c", "e"]);
    run(
        "activatecredential",
        &[
            "-c",
            &format!("{DEFAULT_AK_HANDLE:#x}"),
            "-C",
            "ek.ctx",
            "-i",
            "cred.out",
            "-o",
            "secret.out",
            "-P",
            "session:session.ctx",
        ],
    );
    assert_eq!(std::fs::read(sw.path("secret.out")).unwrap(), secret);
}

/// `secllama-verify quote` (its `run`, the code behind the command line) on files made entirely by
/// tpm2-tools: `tpm2_createek`, `tpm2_createak`, `tpm2_quote`, `tpm2_pcrread -o`.
#[test]
fn a_tpm2_quote_passes_secllama_verify_quote() {
    use secllama_client::cli::{Format, quote};
    let sw = Swtpm::start().unwrap();
    let run = |tool: &str, args: &[&str]| {
        let out = sw
            .tool(tool)
            .args(args)
            .current_dir(sw.state_dir())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "tpm2_{tool}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    run(
        "pcrextend",
        &["16:sha256=ab00000000000000000000000000000000000000000000000000000000000001"],
    );
    run("createek", &["-c", "ek.ctx", "-G", "rsa", "-u", "ek.pub"]);
    run("flushcontext", &["-t"]);
    run(
        "createak",
        &[
            "-C", "ek.ctx", "-c", "ak.ctx", "-G", "rsa", "-g", "sha256", "-s", "rsassa", "-u",
            "ak.pub", "-f", "pem", "-n", "ak.name",
        ],
    );
    run("flushcontext", &["-t"]);
    run("flushcontext", &["-s"]);
    let list = "sha256:0,1,7,16,23";
    run(
        "quote",
        &[
            "-c",
            "ak.ctx",
            "-l",
            list,
            "-q",
            "c0ffee00c0ffee00c0ffee00c0ffee00",
            "-m",
            "q.msg",
            "-s",
            "q.sig",
            "-g",
            "sha256",
        ],
    );
    run("pcrread", &[list, "-o", "q.pcrs"]);
    let args = |nonce: &str, format: Format| quote::Args {
        ak: sw.path("ak.pub"),
        message: sw.path("q.msg"),
        signature: sw.path("q.sig"),
        nonce: nonce.to_string(),
        pcrs: Some(sw.path("q.pcrs")),
        pcr_list: Some(list.to_string()),
        pcr_values: None,
        allow_sha1: false,
        qualified_signer: None,
        signature_format: None,
        hash: None,
        format,
    };
    let good = quote::run(&args("c0ffee00c0ffee00c0ffee00c0ffee00", Format::Json)).unwrap();
    assert!(good.valid, "{}", good.report);
    let report: serde_json::Value = serde_json::from_str(&good.report).unwrap();
    assert_eq!(report["valid"], true);
    assert!(
        report
            .to_string()
            .contains("c0ffee00c0ffee00c0ffee00c0ffee00"),
        "{report}"
    );
    let text = quote::run(&args("c0ffee00c0ffee00c0ffee00c0ffee00", Format::Text)).unwrap();
    assert!(text.valid);
    let bad = quote::run(&args("c0ffee00c0ffee00c0ffee00c0ffee01", Format::Json)).unwrap();
    assert!(!bad.valid);
    assert!(
        bad.report.contains("c0ffee00c0ffee00c0ffee00c0ffee01"),
        "{}",
        bad.report
    );
    // A PCR moved after the quote: the values no longer match the quoted digest.
    run(
        "pcrextend",
        &["16:sha256=ab00000000000000000000000000000000000000000000000000000000000002"],
    );
    run("pcrread", &[list, "-o", "q.pcrs"]);
    assert!(
        !quote::run(&args("c0ffee00c0ffee00c0ffee00c0ffee00", Format::Json))
            .unwrap()
            .valid
    );
}

/// The formats tpm2-tools writes besides its defaults, made here by tpm2-tools itself and checked
/// by the `secllama-verify quote` binary as `tpm2_checkquote` would take them: the PCR file
/// `tpm2_quote -o` writes by default (serialized, selection included) and `tpm2_quote -f plain`
/// signatures (a bare RSASSA signature, a DER ECDSA signature) with `--signature-format plain` and
/// `--hash`. tpm2_checkquote is run on the same files as the peer: both must accept them, and both
/// must refuse the same quote against a wrong nonce.
#[test]
fn tpm2_quote_plain_signatures_and_its_pcr_file_pass_secllama_verify_quote() {
    let sw = Swtpm::start().unwrap();
    let run = |tool: &str, args: &[&str]| {
        let out = sw
            .tool(tool)
            .args(args)
            .current_dir(sw.state_dir())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "tpm2_{tool} {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let verify = |args: &[&str]| {
        std::process::Command::new(secllama_tests::workspace_bin("secllama-verify"))
            .arg("quote")
            .args(args)
            .current_dir(sw.state_dir())
            .output()
            .unwrap()
    };
    run(
        "pcrextend",
        &["16:sha256=ab00000000000000000000000000000000000000000000000000000000000001"],
    );
    run("createek", &["-c", "ek.ctx", "-G", "rsa", "-u", "ek.pub"]);
    run("flushcontext", &["-t"]);
    let list = "sha256:0,1,16+sha1:16";
    for (kind, scheme, hash) in [("rsa", "rsassa", "sha256"), ("ecc", "ecdsa", "sha384")] {
        run(
            "createak",
            &[
                "-C", "ek.ctx", "-c", "ak.ctx", "-G", kind, "-g", hash, "-s", scheme, "-u",
                "ak.pub", "-f", "pem", "-n", "ak.name",
            ],
        );
        run("flushcontext", &["-t"]);
        run("flushcontext", &["-s"]);
        for (format, sig) in [("tss", "q.sig"), ("plain", "q.plain")] {
            run(
                "quote",
                &[
                    "-c", "ak.ctx", "-l", list, "-q", "abcdef01", "-m", "q.msg", "-s", sig, "-f",
                    format, "-o", "q.pcrs", "-g", hash,
                ],
            );
            run("flushcontext", &["-t"]);
            // The peer accepts the same files.
            if format == "tss" {
                run(
                    "checkquote",
                    &[
                        "-u", "ak.pub", "-m", "q.msg", "-s", sig, "-f", "q.pcrs", "-g", hash, "-q",
                        "abcdef01",
                    ],
                );
            }
            let mut args = vec![
                "--ak",
                "ak.pub",
                "--message",
                "q.msg",
                "--signature",
                sig,
                "--pcrs",
                "q.pcrs",
                "--nonce",
                "abcdef01",
                "--format",
                "json",
            ];
            if format == "plain" {
                args.extend(["--signature-format", "plain", "--hash", hash]);
            }
            let out = verify(&args);
            let report: serde_json::Value =
                serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
                    panic!(
                        "{kind} {format}: {e}: {}",
                        String::from_utf8_lossy(&out.stderr)
                    )
                });
            assert_eq!(out.status.code(), Some(0), "{kind} {format}: {report:#}");
            assert_eq!(report["signature"]["hash"], hash, "{kind} {format}");
            // The same quote against another nonce: exit 1 naming the nonce.
            let mut wrong = args.clone();
            wrong[9] = "abcdef02";
            let out = verify(&wrong);
            assert_eq!(out.status.code(), Some(1), "{kind} {format}");
            assert!(String::from_utf8_lossy(&out.stdout).contains("abcdef02"));
            if format == "plain" {
                // Without --signature-format plain the ECDSA DER or bare RSA bytes are refused or
                // (RSA) taken as a bare RSASSA signature with the AK's hash; a wrong --hash fails.
                let mut bad_hash = args.clone();
                let n = bad_hash.len();
                bad_hash[n - 1] = if hash == "sha256" { "sha384" } else { "sha256" };
                assert_eq!(
                    verify(&bad_hash).status.code(),
                    Some(1),
                    "{kind} wrong --hash"
                );
                if kind == "ecc" {
                    let out = verify(&args[..args.len() - 4]);
                    assert_ne!(out.status.code(), Some(0), "{kind}: DER ECDSA read as TPMT");
                }
            }
        }
    }
}
