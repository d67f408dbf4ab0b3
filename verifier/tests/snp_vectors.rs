//! Every case in `../shared/vectors/snp-report/` (real SEV-SNP reports from virtee/sev,
//! google/go-sev-guest and confidential-containers/trustee, Milan and Genoa, versions 2 and 3, and a
//! Turin VCEK chain) appraised by [`secllama_verifier::snp::Report`] with AMD's built-in roots,
//! each reaching the verdict and the field values its `expected.json` gives.
//!
//! Negatives: a single-byte flip of every field of every report (the signature check names it), a
//! flip in each certificate of the chain (VCEK given, ASK and ARK given as roots), the two trustee
//! VCEKs not signed by the Milan ASK, a VCEK outside its validity, and every manifest check
//! (measurement, debug and other policy bits, ABI, minimum TCB per component, VMPL, HOST_DATA,
//! ID key digest, product, report data).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test crate: a failed unwrap is a failed test

use secllama_measurements::manifest::{Manifest, MinTcb, SnpReference};
use secllama_verifier::snp::report::{FIELDS, Report as Parsed, field_at};
use secllama_verifier::snp::{Product, Report, Tcb};
use secllama_verifier::{Appraiser, Collateral, Context, Status, Submod, x509};
use serde_json::Value;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

fn shared() -> PathBuf {
    std::env::var_os("SECLLAMA_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared"))
}

fn dir(name: &str) -> PathBuf {
    shared().join("vectors/snp-report").join(name)
}

fn read(path: PathBuf) -> Vec<u8> {
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn expected(name: &str) -> Value {
    serde_json::from_slice(&read(dir(name).join("expected.json"))).unwrap()
}

/// 2026-01-01: inside every VCEK's validity.
fn when() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_767_225_600)
}

/// (case, report file, VEK file, product).
const CASES: [(&str, &str, &str, Product); 4] = [
    (
        "virtee-milan-v2",
        "report.bin",
        "vcek_milan.der",
        Product::Milan,
    ),
    (
        "gosevguest-milan-v2",
        "attestation.bin",
        "vcek.testcer",
        Product::Milan,
    ),
    (
        "trustee-milan-vcek-v2",
        "test-report.bin",
        "test-vcek.der",
        Product::Milan,
    ),
    (
        "trustee-e2e-genoa-v3-reconstructed",
        "report.bin",
        "vcek.der",
        Product::Genoa,
    ),
];

fn appraise(
    report: &[u8],
    certs: Vec<Vec<u8>>,
    manifest: Option<&Manifest>,
    rd: Option<&[u8]>,
) -> Submod {
    appraise_with(
        report,
        Collateral {
            certificates: certs,
            ..Default::default()
        },
        manifest,
        rd,
    )
}

fn appraise_with(
    report: &[u8],
    c: Collateral,
    manifest: Option<&Manifest>,
    rd: Option<&[u8]>,
) -> Submod {
    Report.appraise(
        report,
        &Context {
            report_data: rd,
            manifest,
            collateral: &c,
            at: when(),
        },
    )
}

fn failed_with(s: &Submod, needle: &str) -> bool {
    s.status == Status::Contraindicated && s.reasons.iter().any(|r| r.contains(needle))
}

fn tcb_of(v: &Value) -> Tcb {
    let n = |k: &str| u8::try_from(v[k].as_u64().unwrap()).unwrap();
    Tcb {
        fmc: 0,
        bootloader: n("bootloader"),
        tee: n("tee"),
        snp: n("snp"),
        microcode: n("microcode"),
    }
}

/// A manifest whose `[snp]` section is exactly what the case's expected.json says.
fn manifest_for(e: &Value) -> Manifest {
    let f = &e["fields"];
    let tcb = tcb_of(&f["reported_tcb"]);
    let mut m: Manifest = Manifest::from_toml(
        r#"
version = 1
[required]
tpm = false
snp = true
[enclave]
agent = "0000000000000000000000000000000000000000000000000000000000000000"
runner = "0000000000000000000000000000000000000000000000000000000000000000"
model = "0000000000000000000000000000000000000000000000000000000000000000"
policy = "0000000000000000000000000000000000000000000000000000000000000000"
config = "0000000000000000000000000000000000000000000000000000000000000000"
[snp]
launch_digest = "000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000"
guest_policy = "0x30000"
"#,
    )
    .unwrap();
    m.snp = Some(SnpReference {
        launch_digest: f["measurement"].as_str().unwrap().into(),
        min_tcb: MinTcb {
            fmc: 0,
            bootloader: tcb.bootloader,
            tee: tcb.tee,
            snp: tcb.snp,
            microcode: tcb.microcode,
        },
        guest_policy: f["policy"].as_str().unwrap().into(),
        vmpl: u32::try_from(f["vmpl"].as_u64().unwrap()).unwrap(),
        product: None,
        host_data: Some(f["host_data"].as_str().unwrap().into()),
        id_key_digest: Some(f["id_key_digest"].as_str().unwrap().into()),
        author_key_digest: Some(f["author_key_digest"].as_str().unwrap().into()),
    });
    m
}

#[test]
fn every_report_verifies_and_decodes_as_its_expected_json_says() {
    for (name, report, vek, product) in CASES {
        let e = expected(name);
        let bytes = read(dir(name).join(report));
        let vek = x509::load_certificates(&read(dir(name).join(vek))).unwrap();
        let f = &e["fields"];
        let rd = hex::decode(f["report_data"].as_str().unwrap()).unwrap();
        let m = manifest_for(&e);
        let s = appraise(&bytes, vek, Some(&m), Some(&rd));
        assert_eq!(s.status, Status::Affirming, "{name}: {:#?}", s.reasons);
        assert!(
            s.passed
                .iter()
                .any(|p| p.contains(&format!("ARK-{}", product.name()))),
            "{name}: {:#?}",
            s.passed
        );
        // The parser's fields are the expected ones.
        let p = Parsed::parse(&bytes).unwrap();
        assert_eq!(
            u64::from(p.version),
            f["version"].as_u64().unwrap(),
            "{name}"
        );
        assert_eq!(
            u64::from(p.guest_svn),
            f["guest_svn"].as_u64().unwrap(),
            "{name}"
        );
        assert_eq!(
            format!("{:#x}", p.policy),
            f["policy"].as_str().unwrap(),
            "{name}"
        );
        assert_eq!(
            hex::encode(p.measurement),
            f["measurement"].as_str().unwrap(),
            "{name}"
        );
        assert_eq!(
            hex::encode(p.chip_id),
            f["chip_id"].as_str().unwrap(),
            "{name}"
        );
        assert_eq!(
            hex::encode(p.family_id),
            f["family_id"].as_str().unwrap(),
            "{name}"
        );
        assert_eq!(
            hex::encode(p.image_id),
            f["image_id"].as_str().unwrap(),
            "{name}"
        );
        assert_eq!(
            hex::encode(p.id_key_digest),
            f["id_key_digest"].as_str().unwrap(),
            "{name}"
        );
        for (field, raw) in [
            ("reported_tcb", p.reported_tcb),
            ("committed_tcb", p.committed_tcb),
            ("launch_tcb", p.launch_tcb),
            ("current_tcb", p.current_tcb),
        ] {
            assert_eq!(
                Tcb::decode(raw, product),
                tcb_of(&f[field]),
                "{name} {field}"
            );
        }
        let (maj, min, build) = p.current_version;
        assert_eq!(
            format!("{maj}.{min}.{build}"),
            f["firmware_current"].as_str().unwrap(),
            "{name}"
        );
        let cpuid: Vec<u64> = f["cpuid_fam_mod_step"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap())
            .collect();
        let got = p.cpuid.map_or(vec![0, 0, 0], |(a, b, c)| {
            vec![a.into(), b.into(), c.into()]
        });
        assert_eq!(got, cpuid, "{name}");
    }
}

#[test]
fn the_turin_vcek_chains_to_the_built_in_turin_ark() {
    let name = "virtee-turin-vcek-chain-only";
    assert_eq!(expected(name)["expected"]["vcek_chain_valid"], true);
    let vcek = read(dir(name).join("vcek_turin.der"));
    let anchors = secllama_verifier::snp::vcek::builtin();
    let path = x509::verify_path(
        &vcek,
        "VCEK",
        &anchors.intermediates,
        &anchors.roots,
        &x509::PathPolicy {
            at: when(),
            known_critical: &[],
            crls: &[],
        },
    );
    assert!(path.valid(), "{:#?}", path.reasons);
    assert!(
        path.path.last().unwrap().contains("ARK-Turin"),
        "{:?}",
        path.path
    );
    // Its extensions read with Turin's layout (an FMC SPL) and an 8-byte hwID.
    let cert = x509::Cert::parse(&vcek, "VCEK").unwrap();
    let ext = secllama_verifier::snp::vcek::extensions(&cert, Product::Turin).unwrap();
    assert_eq!(ext.hw_id.as_ref().map(Vec::len), Some(8), "{ext:?}");
    // The chain given as a bundle too (cert_chain_turin = ASK + ARK, identical to the built-in).
    let given = x509::load_certificates(&read(dir(name).join("cert_chain_turin.pem"))).unwrap();
    let sorted = secllama_verifier::snp::vcek::Anchors::sort(given);
    let path = x509::verify_path(
        &vcek,
        "VCEK",
        &sorted.intermediates,
        &sorted.roots,
        &x509::PathPolicy {
            at: when(),
            known_critical: &[],
            crls: &[],
        },
    );
    assert!(path.valid(), "{:#?}", path.reasons);
    // Expired as of 2040.
    let later = SystemTime::UNIX_EPOCH + Duration::from_secs(2_208_988_800);
    let path = x509::verify_path(
        &vcek,
        "VCEK",
        &anchors.intermediates,
        &anchors.roots,
        &x509::PathPolicy {
            at: later,
            known_critical: &[],
            crls: &[],
        },
    );
    assert!(
        path.reasons.iter().any(|r| r.contains("validity")),
        "{:#?}",
        path.reasons
    );
}

#[test]
fn a_flip_of_any_report_field_is_caught_by_the_signature_check() {
    for (name, report, vek, _) in CASES {
        let bytes = read(dir(name).join(report));
        let vek = x509::load_certificates(&read(dir(name).join(vek))).unwrap();
        for field in FIELDS {
            for at in [field.offset, field.offset + field.len - 1] {
                let mut b = bytes.clone();
                b[at] ^= 0x01;
                let s = appraise(&b, vek.clone(), None, None);
                assert_eq!(
                    s.status,
                    Status::Contraindicated,
                    "{name} {} byte {at:#x}",
                    field.name
                );
                assert!(
                    failed_with(&s, "report signature")
                        || failed_with(&s, "VERSION")
                        || failed_with(&s, "SIGNATURE_ALGO")
                        || failed_with(&s, "KEY_INFO"),
                    "{name} {} byte {at:#x}: {:#?}",
                    field.name,
                    s.reasons
                );
            }
        }
        // Reserved bytes are signed too, and each signature component's high bytes must be zero.
        for at in [0x4C, 0x18B, 0x1EB, 0x208, 0x29F] {
            assert!(field_at(at).is_none());
            let mut b = bytes.clone();
            b[at] ^= 0x80;
            assert!(failed_with(
                &appraise(&b, vek.clone(), None, None),
                "report signature"
            ));
        }
        for at in [0x2A0, 0x2A0 + 47, 0x2E8, 0x2E8 + 47] {
            let mut b = bytes.clone();
            b[at] ^= 0x01;
            assert!(
                failed_with(&appraise(&b, vek.clone(), None, None), "report signature"),
                "{name} sig byte {at:#x}"
            );
        }
        let mut b = bytes.clone();
        b[0x2A0 + 60] = 1;
        assert!(failed_with(
            &appraise(&b, vek.clone(), None, None),
            "SIGNATURE.R"
        ));
        // Truncated or extended.
        for len in [0, 0x2A0, bytes.len() - 1] {
            assert!(failed_with(
                &appraise(&bytes[..len], vek.clone(), None, None),
                "length"
            ));
        }
    }
}

#[test]
fn a_flip_in_any_certificate_of_the_chain_is_caught() {
    let name = "virtee-milan-v2";
    let report = read(dir(name).join("report.bin"));
    let vcek = read(dir(name).join("vcek_milan.der"));
    // Upstream's own case (milan_chain_invalid): VCEK byte 40 ^= 0xff.
    let mut bad = vcek.clone();
    bad[40] ^= 0xff;
    let s = appraise(&report, vec![bad], None, None);
    assert_eq!(s.status, Status::Contraindicated, "{:#?}", s);
    // Every 97th byte of the VCEK: parse error, signature or chain failure, never valid.
    for at in (0..vcek.len()).step_by(97) {
        let mut bad = vcek.clone();
        bad[at] ^= 0x01;
        let s = appraise(&report, vec![bad], None, None);
        assert_eq!(
            s.status,
            Status::Contraindicated,
            "VCEK byte {at}: {:#?}",
            s.passed
        );
        assert!(
            s.reasons
                .iter()
                .any(|r| r.contains("chain") || r.contains("report signature")),
            "VCEK byte {at}: {:#?}",
            s.reasons
        );
    }
    // The ASK and ARK given as roots (replacing the built-in ones), each flipped in its signature.
    let bundle = x509::load_certificates(&read(dir(name).join("cert_chain_milan.pem"))).unwrap();
    let ok = appraise_with(
        &report,
        Collateral {
            certificates: vec![vcek.clone()],
            roots: bundle.clone(),
            ..Default::default()
        },
        None,
        None,
    );
    assert_eq!(ok.status, Status::Warning, "{:#?}", ok.reasons);
    for (i, cert) in bundle.iter().enumerate() {
        let mut roots = bundle.clone();
        let n = cert.len();
        roots[i][n - 10] ^= 0x01;
        let s = appraise_with(
            &report,
            Collateral {
                certificates: vec![vcek.clone()],
                roots,
                ..Default::default()
            },
            None,
            None,
        );
        assert!(failed_with(&s, "chain"), "bundle cert #{i}: {:#?}", s);
    }
}

#[test]
fn the_trustee_vceks_not_signed_by_the_milan_ask_are_refused() {
    let name = "trustee-milan-vcek-v2";
    let report = read(dir(name).join("test-report.bin"));
    for bad in ["test-vcek-invalid-legacy.der", "test-vcek-invalid-new.der"] {
        let s = appraise(&report, vec![read(dir(name).join(bad))], None, None);
        assert!(failed_with(&s, "report signature"), "{bad}: {:#?}", s);
        assert!(failed_with(&s, "chain"), "{bad}: {:#?}", s);
    }
    // Upstream's TCB case: REPORTED_TCB.bootloader (byte 0x180) += 1 breaks the signature.
    let mut b = report.clone();
    b[0x180] += 1;
    let s = appraise(&b, vec![read(dir(name).join("test-vcek.der"))], None, None);
    assert!(failed_with(&s, "report signature"), "{:#?}", s);
    // Another chip's VCEK (virtee's) does not verify this report.
    let other = read(dir("virtee-milan-v2").join("vcek_milan.der"));
    assert!(failed_with(
        &appraise(&report, vec![other], None, None),
        "report signature"
    ));
    // No certificate at all.
    assert!(failed_with(
        &appraise(&report, vec![], None, None),
        "no VCEK certificate"
    ));
}

#[test]
fn every_manifest_check_fails_when_its_value_differs() {
    let name = "trustee-milan-vcek-v2";
    let e = expected(name);
    let report = read(dir(name).join("test-report.bin"));
    let vcek = vec![read(dir(name).join("test-vcek.der"))];
    let rd = hex::decode(e["fields"]["report_data"].as_str().unwrap()).unwrap();
    let base = manifest_for(&e);
    let ok = appraise(&report, vcek.clone(), Some(&base), Some(&rd));
    assert_eq!(ok.status, Status::Affirming, "{:#?}", ok.reasons);
    type Edit = fn(&mut SnpReference);
    let cases: [(Edit, &str); 12] = [
        (|r| r.launch_digest = "ab".repeat(48), "MEASUREMENT"),
        // The report's policy 0x3001f: SMT allowed; a manifest without SMT refuses it.
        (|r| r.guest_policy = "0x2001f".into(), "POLICY.SMT"),
        (
            |r| r.guest_policy = "0x13001f".into(),
            "POLICY.SINGLE_SOCKET",
        ),
        (|r| r.guest_policy = "0x30100".into(), "POLICY.ABI"),
        (|r| r.min_tcb.bootloader = 4, "REPORTED_TCB.bootloader"),
        (|r| r.min_tcb.tee = 1, "REPORTED_TCB.tee"),
        (|r| r.min_tcb.snp = 9, "REPORTED_TCB.snp"),
        (|r| r.min_tcb.microcode = 116, "REPORTED_TCB.microcode"),
        (|r| r.vmpl = 1, "VMPL"),
        (|r| r.host_data = Some("01".repeat(32)), "HOST_DATA"),
        (|r| r.id_key_digest = Some("01".repeat(48)), "ID_KEY_DIGEST"),
        (|r| r.product = Some("Genoa".into()), "product"),
    ];
    for (edit, needle) in cases {
        let mut m = base.clone();
        edit(m.snp.as_mut().unwrap());
        let s = appraise(&report, vcek.clone(), Some(&m), Some(&rd));
        assert!(failed_with(&s, needle), "{needle}: {:#?}", s);
    }
    // Report data: another binding.
    let s = appraise(&report, vcek.clone(), Some(&base), Some(&[9; 32]));
    assert!(failed_with(&s, "REPORT_DATA"), "{:#?}", s);
    // Without expected report data or a manifest: authentic, but only a warning that says why.
    let s = appraise(&report, vcek.clone(), None, None);
    assert_eq!(s.status, Status::Warning);
    assert!(
        s.reasons
            .iter()
            .any(|r| r.contains("no expected report data"))
    );
    assert!(
        s.reasons
            .iter()
            .any(|r| r.contains("no [snp] reference values"))
    );
}

#[test]
fn a_debug_policy_is_refused_unless_the_manifest_allows_debug() {
    // go-sev-guest's report has policy 0xb0000: SMT, reserved bit 17, and DEBUG (bit 19).
    let name = "gosevguest-milan-v2";
    let e = expected(name);
    assert_eq!(e["fields"]["policy"], "0xb0000");
    let report = read(dir(name).join("attestation.bin"));
    let vcek = x509::load_certificates(&read(dir(name).join("vcek.testcer"))).unwrap();
    let mut m = manifest_for(&e);
    let s = appraise(&report, vcek.clone(), Some(&m), None);
    assert!(
        s.passed.iter().any(|p| p.contains("debug allowed")),
        "{:#?}",
        s
    );
    // The stepping: go-sev-guest expects stepping 0 (productName Milan-B0); another is refused.
    m.snp.as_mut().unwrap().product = Some("Milan-B0".into());
    let s = appraise(&report, vcek.clone(), Some(&m), None);
    assert!(s.passed.iter().any(|p| p == "product Milan-B0"), "{:#?}", s);
    m.snp.as_mut().unwrap().product = Some("Milan-B1".into());
    let s = appraise(&report, vcek.clone(), Some(&m), None);
    assert!(
        failed_with(&s, "product: expected Milan-B1, found \"Milan-B0\""),
        "{:#?}",
        s
    );
    m.snp.as_mut().unwrap().product = None;
    m.snp.as_mut().unwrap().guest_policy = "0x30000".into();
    let s = appraise(&report, vcek, Some(&m), None);
    assert!(failed_with(&s, "POLICY.DEBUG"), "{:#?}", s);
}
