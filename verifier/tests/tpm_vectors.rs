//! Every case in `../shared/vectors/tpm-quote/` (real quotes from GCE, a GCP Windows VM and Azure
//! confidential VMs) appraised by the library, each reaching the verdict its `expected.json` gives
//! for the TPM-quote claims: signature, nonce (extraData), PCR digest, and for GCE the AK
//! certificate chain and that the certificate's key is the AK. For the Azure HCL cases the AK is the
//! JWK with kid `HCLAkPub` in the HCL report's variable data (the SNP-report claims of those cases
//! belong to the SNP verifier and are not checked here).
//!
//! Negatives: wrong nonce, flipped signature byte, wrong PCR value, a PCR missing or extra, SHA-1
//! without `allow_sha1`, wrong qualified signer, the wrong key, an expired or unchained certificate.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test crate: a failed unwrap is a failed test

use secllama_verifier::tpm::cert::{load_certificates, verify_ak_certificate};
use secllama_verifier::tpm::trust::check_pinned_ak;
use secllama_verifier::tpm::{
    AkPublic, Appraisal, Attest, HashAlg, PcrValues, QuotePolicy, TPM_RH_ENDORSEMENT, TpmSignature,
    appraise_quote, appraise_quote_bytes,
};
use serde_json::Value;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

fn shared() -> PathBuf {
    std::env::var_os("SECLLAMA_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared"))
}

fn case(name: &str) -> PathBuf {
    shared().join("vectors/tpm-quote").join(name)
}

fn read(path: PathBuf) -> Vec<u8> {
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn expected(name: &str) -> Value {
    serde_json::from_slice(&read(case(name).join("expected.json"))).unwrap()
}

/// `{"0": "<hex>", ...}` of one bank as PCR values.
fn pcrs(bank: HashAlg, map: &Value) -> PcrValues {
    let mut v = PcrValues::new();
    for (i, hex_value) in map.as_object().unwrap() {
        v.insert(
            bank,
            i.parse().unwrap(),
            hex::decode(hex_value.as_str().unwrap()).unwrap(),
        )
        .unwrap();
    }
    v
}

fn policy<'a>(nonce: &'a [u8], pcrs: &'a PcrValues) -> QuotePolicy<'a> {
    QuotePolicy {
        nonce,
        pcrs,
        allow_sha1: false,
        qualified_signer: None,
    }
}

fn assert_valid(a: &Appraisal, what: &str) {
    assert!(a.valid(), "{what}: {:?}", a.reasons());
}

/// Asserts the appraisal failed exactly the named checks, each with a reason, and passed the rest.
fn assert_fails_only(a: &Appraisal, names: &[&str], what: &str) {
    assert!(!a.valid(), "{what}: expected rejection");
    let failed: Vec<&str> = a
        .checks
        .iter()
        .filter(|c| !c.passed)
        .map(|c| c.name)
        .collect();
    assert_eq!(failed, names, "{what}: {:?}", a.reasons());
    for r in a.reasons() {
        assert!(
            r.contains("expected") && r.contains("found"),
            "{what}: reason without expected/found: {r}"
        );
    }
}

struct Gce {
    ak: Vec<u8>,
    quotes: Vec<(HashAlg, Vec<u8>, Vec<u8>, PcrValues)>,
}

fn gce() -> Gce {
    let dir = case("gce-cos85-nonce9009");
    let exp = expected("gce-cos85-nonce9009");
    let quotes = exp["quotes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|q| {
            let bank = HashAlg::from_name(q["bank"].as_str().unwrap()).unwrap();
            (
                bank,
                read(dir.join(q["attest"].as_str().unwrap())),
                read(dir.join(q["signature"].as_str().unwrap())),
                pcrs(bank, &q["pcrs"]),
            )
        })
        .collect();
    Gce {
        ak: read(dir.join("ak_pub.tpmt_public.bin")),
        quotes,
    }
}

#[test]
fn gce_quotes_in_all_three_banks_are_valid() {
    let g = gce();
    let exp = expected("gce-cos85-nonce9009");
    let nonce = hex::decode(exp["expected"]["nonce_extraData_hex"].as_str().unwrap()).unwrap();
    assert_eq!(g.quotes.len(), 3);
    for ((bank, attest, sig, values), q) in g.quotes.iter().zip(exp["quotes"].as_array().unwrap()) {
        let a = appraise_quote_bytes(attest, sig, &g.ak, &policy(&nonce, values));
        assert_valid(&a, bank.name());
        // The PCR digest is SHA-256 (the signing hash) even for the SHA-1 and SHA-384 banks.
        let s = a.signature.as_ref().unwrap();
        assert_eq!(
            (
                s.describe().as_str(),
                a.quote.as_ref().unwrap().quote.pcr_digest.len()
            ),
            ("RSASSA-SHA256", 32)
        );
        let quote = a.quote.unwrap();
        assert_eq!(
            quote.quote.pcr_select.to_string(),
            format!(
                "{bank}:{}",
                (0..24).map(|i| i.to_string()).collect::<Vec<_>>().join(",")
            )
        );
        assert_eq!(quote.clock_info.clock, q["clock"].as_u64().unwrap());
        assert_eq!(
            u64::from(quote.clock_info.reset_count),
            q["resetCount"].as_u64().unwrap()
        );
        assert_eq!(
            u64::from(quote.clock_info.restart_count),
            q["restartCount"].as_u64().unwrap()
        );
        assert_eq!(quote.clock_info.safe, q["safe"].as_u64().unwrap() == 1);
        assert_eq!(
            format!("0x{:016x}", quote.firmware_version),
            q["firmwareVersion"].as_str().unwrap()
        );
    }
}

#[test]
fn gce_qualified_signer_is_the_aks_qualified_name_under_the_endorsement_hierarchy() {
    let g = gce();
    let ak = AkPublic::detect(&g.ak).unwrap();
    let qn = ak
        .tpm_public()
        .unwrap()
        .qualified_name(&TPM_RH_ENDORSEMENT.to_be_bytes());
    let (_, attest, sig, values) = &g.quotes[1];
    let mut p = policy(&[0x90, 0x09], values);
    p.qualified_signer = Some(&qn);
    assert_valid(
        &appraise_quote_bytes(attest, sig, &g.ak, &p),
        "qualified signer",
    );
    let mut wrong = qn.clone();
    wrong[5] ^= 1;
    p.qualified_signer = Some(&wrong);
    let a = appraise_quote_bytes(attest, sig, &g.ak, &p);
    assert_fails_only(&a, &["qualified_signer"], "wrong qualified signer");
}

#[test]
fn gce_negatives_are_rejected_with_reasons_and_other_checks_still_run() {
    let g = gce();
    let (_, attest, sig, values) = &g.quotes[1];
    let a = appraise_quote_bytes(attest, sig, &g.ak, &policy(&[0x90, 0x08], values));
    assert_fails_only(&a, &["nonce"], "wrong nonce");
    assert!(
        a.reasons()[0].contains("expected extraData 9008, found 9009"),
        "{:?}",
        a.reasons()
    );

    let mut flipped = sig.clone();
    flipped[100] ^= 0x01;
    let a = appraise_quote_bytes(attest, &flipped, &g.ak, &policy(&[0x90, 0x09], values));
    assert_fails_only(&a, &["signature"], "flipped signature byte");

    let mut wrong = values.clone();
    wrong.insert(HashAlg::Sha256, 7, vec![0x42; 32]).unwrap();
    let a = appraise_quote_bytes(attest, sig, &g.ak, &policy(&[0x90, 0x09], &wrong));
    assert_fails_only(&a, &["pcr_digest"], "wrong PCR 7");

    let mut extra = values.clone();
    extra.insert(HashAlg::Sha1, 0, vec![0; 20]).unwrap();
    let a = appraise_quote_bytes(attest, sig, &g.ak, &policy(&[0x90, 0x09], &extra));
    assert_fails_only(&a, &["pcr_selection"], "extra PCR supplied");

    let mut missing = PcrValues::new();
    for i in 0..23 {
        missing
            .insert(
                HashAlg::Sha256,
                i,
                values.get(HashAlg::Sha256, i).unwrap().to_vec(),
            )
            .unwrap();
    }
    let a = appraise_quote_bytes(attest, sig, &g.ak, &policy(&[0x90, 0x09], &missing));
    assert_fails_only(&a, &["pcr_selection", "pcr_digest"], "PCR 23 missing");
    assert!(
        a.reasons()[1].contains("none for sha256:23"),
        "{:?}",
        a.reasons()
    );

    // Every failure at once: all reported.
    let a = appraise_quote_bytes(attest, &flipped, &g.ak, &policy(&[1], &wrong));
    assert_fails_only(&a, &["nonce", "pcr_digest", "signature"], "three failures");

    // The quote of another bank, checked against this bank's values.
    let (_, attest1, sig1, _) = &g.quotes[0];
    let a = appraise_quote_bytes(attest1, sig1, &g.ak, &policy(&[0x90, 0x09], values));
    assert_fails_only(
        &a,
        &["pcr_selection", "pcr_digest"],
        "sha1 quote, sha256 values",
    );

    // The right quote under the wrong key.
    let windows = read(case("windows-gcp-shieldedvm").join("ak_pub.tpmt_public.bin"));
    let a = appraise_quote_bytes(attest, sig, &windows, &policy(&[0x90, 0x09], values));
    assert_fails_only(&a, &["ak_scheme", "signature"], "Windows AK");
}

#[test]
fn gce_ak_certificate_chains_to_the_gce_root_and_holds_the_ak() {
    let dir = case("gce-cos85-nonce9009");
    let g = gce();
    let ak = AkPublic::detect(&g.ak).unwrap().verifying_key().unwrap();
    let cert = read(dir.join("ak_cert.der"));
    let ca = |f: &str| {
        load_certificates(&read(dir.join("gce_ca").join(f)))
            .unwrap()
            .remove(0)
    };
    let roots = vec![ca("tpm_ek_root_1.cer"), ca("gcp_ek_ak_ca_root.crt")];
    let intermediates = vec![
        ca("tpm_ek_intermediate_2.crt"),
        ca("tpm_ek_intermediate_3.crt"),
        ca("gcp_ek_ak_ca_intermediate_v3.crt"),
    ];
    let at = |year: u64| {
        SystemTime::UNIX_EPOCH + Duration::from_secs((year - 1970) * 365 * 86_400 + 200 * 86_400)
    };
    let ok = verify_ak_certificate(&cert, &ak, &intermediates, &roots, at(2025));
    assert!(ok.valid(), "{:?}", ok.reasons);
    assert_eq!(ok.path.len(), 3);
    assert!(
        ok.path[1].contains("tpm_ek_v1_cloud_host-signer-0-2020-10-22"),
        "{:?}",
        ok.path
    );
    assert!(
        ok.path[2].contains("tpm_ek_v1_cloud_host_root-signer"),
        "{:?}",
        ok.path
    );

    let expired = verify_ak_certificate(&cert, &ak, &intermediates, &roots, at(2052));
    assert!(!expired.valid());
    assert!(
        expired
            .reasons
            .iter()
            .any(|r| r.starts_with("AK certificate") && r.contains("validity")),
        "{:?}",
        expired.reasons
    );
    let early = verify_ak_certificate(&cert, &ak, &intermediates, &roots, at(2020));
    assert!(!early.valid(), "not yet valid in 2020");

    let no_chain = verify_ak_certificate(&cert, &ak, &[] as &[Vec<u8>], &roots, at(2025));
    assert!(!no_chain.valid());
    assert!(
        no_chain.reasons[0].contains("expected a chain to a trusted root"),
        "{:?}",
        no_chain.reasons
    );
    let other_root = verify_ak_certificate(&cert, &ak, &intermediates, &roots[1..], at(2025));
    assert!(!other_root.valid());

    let windows = AkPublic::detect(&read(
        case("windows-gcp-shieldedvm").join("ak_pub.tpmt_public.bin"),
    ))
    .unwrap()
    .verifying_key()
    .unwrap();
    let wrong_key = verify_ak_certificate(&cert, &windows, &intermediates, &roots, at(2025));
    assert!(!wrong_key.valid());
    assert_eq!(wrong_key.reasons.len(), 1, "{:?}", wrong_key.reasons);
    assert!(wrong_key.reasons[0].contains("expected the AK's RSA-2048 key"));

    let mut tampered = cert.clone();
    let n = tampered.len();
    tampered[n - 10] ^= 1; // inside the signature
    let bad_sig = verify_ak_certificate(&tampered, &ak, &intermediates, &roots, at(2025));
    assert!(!bad_sig.valid());
    assert!(
        bad_sig
            .reasons
            .iter()
            .any(|r| r.contains("does not verify")),
        "{:?}",
        bad_sig.reasons
    );
}

#[test]
fn pinned_aks_match_only_themselves() {
    let g = gce();
    let ak = AkPublic::detect(&g.ak).unwrap();
    check_pinned_ak(&ak, &g.ak).unwrap();
    let windows = read(case("windows-gcp-shieldedvm").join("ak_pub.tpmt_public.bin"));
    let e = check_pinned_ak(&ak, &windows).unwrap_err().to_string();
    assert!(e.contains("expected the pinned TPMT_PUBLIC"), "{e}");
    let pem = read(case("azure-vtpm-quote-challenge").join("akpub.pem"));
    let azure = AkPublic::detect(&pem).unwrap();
    check_pinned_ak(&azure, &pem).unwrap();
    assert!(check_pinned_ak(&azure, &g.ak).is_err());
    assert!(check_pinned_ak(&ak, &pem).is_err());
}

#[test]
fn windows_sha1_quote_is_valid_only_when_sha1_is_allowed() {
    let dir = case("windows-gcp-shieldedvm");
    let exp = expected("windows-gcp-shieldedvm");
    let (ak, attest, sig) = (
        read(dir.join("ak_pub.tpmt_public.bin")),
        read(dir.join("quote.tpms_attest.bin")),
        read(dir.join("quote.tpmt_signature.bin")),
    );
    let values = pcrs(HashAlg::Sha1, &exp["pcrs_sha1"]);
    let nonce = hex::decode(exp["expected"]["nonce_extraData_hex"].as_str().unwrap()).unwrap();
    let mut p = policy(&nonce, &values);
    let a = appraise_quote_bytes(&attest, &sig, &ak, &p);
    assert_fails_only(&a, &["signature_hash"], "SHA-1 without allow_sha1");
    assert!(a.reasons()[0].contains("found SHA-1"));
    p.allow_sha1 = true;
    let a = appraise_quote_bytes(&attest, &sig, &ak, &p);
    assert_valid(&a, "SHA-1 allowed");
    assert_eq!(a.signature.unwrap().describe(), "RSASSA-SHA1");
    let q = a.quote.unwrap();
    assert_eq!(
        q.quote.pcr_digest.len(),
        20,
        "SHA-1 signing hash gives a SHA-1 PCR digest"
    );
    assert_eq!(q.clock_info.clock, exp["clock"].as_u64().unwrap());
    assert_eq!(
        u64::from(q.clock_info.reset_count),
        exp["resetCount"].as_u64().unwrap()
    );
    assert_eq!(
        format!("0x{:016x}", q.firmware_version),
        exp["firmwareVersion"].as_str().unwrap()
    );
    // And the original JSON dump agrees with the derived files.
    let dump: Value =
        serde_json::from_slice(&read(dir.join("windows_gcp_shielded_vm.json"))).unwrap();
    use base64::Engine;
    let b64 = |v: &Value| {
        base64::engine::general_purpose::STANDARD
            .decode(v.as_str().unwrap())
            .unwrap()
    };
    assert_eq!(b64(&dump["Quote"]["Quote"]), attest);
    assert_eq!(b64(&dump["Quote"]["Signature"]), sig);
    assert_eq!(b64(&dump["AK"]["Public"]), ak);
}

/// The `HCLAkPub` JWK in an Azure HCL report's variable data.
fn hcl_ak(var_data: &[u8]) -> AkPublic {
    let doc: Value = serde_json::from_slice(var_data).unwrap();
    let jwk = doc["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kid"] == "HCLAkPub")
        .expect("HCLAkPub in the variable data");
    AkPublic::detect(jwk.to_string().as_bytes()).unwrap()
}

/// The variable data of an HCL report: after a 32-byte header, the 1184-byte SNP report and the
/// IGVM request data (five u32 LE, the last the variable data's size).
fn hcl_var_data(report: &[u8]) -> &[u8] {
    let size = u32::from_le_bytes(report[1232..1236].try_into().unwrap()) as usize;
    &report[1236..1236 + size]
}

fn azure_values(list: &[Value]) -> PcrValues {
    let mut v = PcrValues::new();
    for (i, h) in list.iter().enumerate() {
        v.insert(
            HashAlg::Sha256,
            i as u32,
            hex::decode(h.as_str().unwrap()).unwrap(),
        )
        .unwrap();
    }
    v
}

#[test]
fn azure_vtpm_quote_with_a_raw_signature_and_pem_ak() {
    let dir = case("azure-vtpm-quote-challenge");
    let exp = expected("azure-vtpm-quote-challenge");
    let ak = AkPublic::detect(&read(dir.join("akpub.pem"))).unwrap();
    let attest = read(dir.join("quote.tpms_attest.bin"));
    let raw = read(dir.join("quote.rsassa_sha256.sig"));
    assert_eq!(raw.len(), 256);
    let sig = TpmSignature::raw_rsassa(&raw, HashAlg::Sha256);
    let values = pcrs(HashAlg::Sha256, &exp["pcrs_sha256"]);
    let nonce = exp["expected"]["nonce_extraData_utf8"]
        .as_str()
        .unwrap()
        .as_bytes();
    let a = appraise_quote(&attest, &sig, &ak, &policy(nonce, &values));
    assert_valid(&a, "azure");
    let sel = &a.quote.as_ref().unwrap().quote.pcr_select;
    assert_eq!(sel.banks.len(), 1);
    assert_eq!(sel.banks[0].pcrs, (0..24).collect::<Vec<u32>>());

    // Upstream negatives: nonce [1,2,3,4]; the signature reversed.
    let a = appraise_quote(&attest, &sig, &ak, &policy(&[1, 2, 3, 4], &values));
    assert_fails_only(&a, &["nonce"], "nonce 01020304");
    let reversed: Vec<u8> = raw.iter().rev().copied().collect();
    let a = appraise_quote(
        &attest,
        &TpmSignature::raw_rsassa(&reversed, HashAlg::Sha256),
        &ak,
        &policy(nonce, &values),
    );
    assert_fails_only(&a, &["signature"], "reversed signature");

    // The bincode container (u64-LE-prefixed signature, message, then 24 PCRs) holds the same bytes.
    let bin = read(dir.join("quote.bin"));
    let len = |at: usize| u64::from_le_bytes(bin[at..at + 8].try_into().unwrap()) as usize;
    let sig_len = len(0);
    assert_eq!(&bin[8..8 + sig_len], &raw[..]);
    let msg_len = len(8 + sig_len);
    assert_eq!(&bin[16 + sig_len..16 + sig_len + msg_len], &attest[..]);
}

#[test]
fn azure_hcl_quote_verifies_under_the_hcl_ak_pub() {
    let dir = case("azure-snp-vtpm-hcl-quote-milan");
    let exp = expected("azure-snp-vtpm-hcl-quote-milan");
    let var_data = read(dir.join("var_data.json"));
    assert_eq!(
        hcl_var_data(&read(dir.join("hcl-report.bin"))),
        &var_data[..]
    );
    let ak = hcl_ak(&var_data);
    let quote: Value = serde_json::from_slice(&read(dir.join("tpm-quote-v1.json"))).unwrap();
    let attest = hex::decode(quote["message"].as_str().unwrap()).unwrap();
    let raw = hex::decode(quote["signature"].as_str().unwrap()).unwrap();
    let values = azure_values(quote["pcrs"].as_array().unwrap());
    assert_eq!(
        hex::encode(values.get(HashAlg::Sha256, 0).unwrap()),
        exp["expected"]["pcr0"].as_str().unwrap()
    );
    let nonce = exp["expected"]["nonce_extraData_utf8"]
        .as_str()
        .unwrap()
        .as_bytes();
    let sig = TpmSignature::raw_rsassa(&raw, HashAlg::Sha256);
    assert_valid(
        &appraise_quote(&attest, &sig, &ak, &policy(nonce, &values)),
        "azure hcl",
    );

    // Upstream negative: one bit of the signature flipped.
    let mut flipped = raw.clone();
    flipped[0] ^= 1;
    let a = appraise_quote(
        &attest,
        &TpmSignature::raw_rsassa(&flipped, HashAlg::Sha256),
        &ak,
        &policy(nonce, &values),
    );
    assert_fails_only(&a, &["signature"], "flipped bit");
    // The other key in the variable data (the EK) does not verify the quote.
    let doc: Value = serde_json::from_slice(&var_data).unwrap();
    let ek = doc["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kid"] == "HCLEkPub")
        .unwrap();
    let ek = AkPublic::detect(ek.to_string().as_bytes()).unwrap();
    assert_fails_only(
        &appraise_quote(&attest, &sig, &ek, &policy(nonce, &values)),
        &["signature"],
        "HCLEkPub",
    );
}

#[test]
fn azure_evidence_v1_quote_verifies_under_the_hcl_ak_pub() {
    let dir = case("azure-snp-vtpm-evidence-v1-milan");
    let exp = expected("azure-snp-vtpm-evidence-v1-milan");
    let ak = hcl_ak(hcl_var_data(&read(dir.join("hcl-report.bin"))));
    let attest = read(dir.join("quote.tpms_attest.bin"));
    let raw = read(dir.join("quote.rsassa_sha256.sig"));
    let values = pcrs(HashAlg::Sha256, &exp["pcrs_sha256"]);
    let nonce = hex::decode(exp["expected"]["nonce_extraData_hex"].as_str().unwrap()).unwrap();
    let sig = TpmSignature::raw_rsassa(&raw, HashAlg::Sha256);
    let a = appraise_quote(&attest, &sig, &ak, &policy(&nonce, &values));
    assert_valid(&a, "azure evidence v1");
    // The evidence JSON carries the same quote and PCRs.
    let ev: Value = serde_json::from_slice(&read(dir.join("evidence-v1.json"))).unwrap();
    assert_eq!(
        hex::decode(ev["tpm_quote"]["message"].as_str().unwrap()).unwrap(),
        attest
    );
    assert_eq!(
        hex::decode(ev["tpm_quote"]["signature"].as_str().unwrap()).unwrap(),
        raw
    );
    assert_eq!(
        azure_values(ev["tpm_quote"]["pcrs"].as_array().unwrap()),
        values
    );
    // PCR 0 changed: the digest no longer matches.
    let mut wrong = values.clone();
    wrong.insert(HashAlg::Sha256, 0, vec![0; 32]).unwrap();
    assert_fails_only(
        &appraise_quote(&attest, &sig, &ak, &policy(&nonce, &wrong)),
        &["pcr_digest"],
        "pcr0",
    );
}

#[test]
fn tpm2b_attest_and_tpm2b_public_forms_are_accepted() {
    let g = gce();
    let (_, attest, sig, values) = &g.quotes[2];
    let mut attest2b = (attest.len() as u16).to_be_bytes().to_vec();
    attest2b.extend_from_slice(attest);
    let mut ak2b = (g.ak.len() as u16).to_be_bytes().to_vec();
    ak2b.extend_from_slice(&g.ak);
    let a = appraise_quote_bytes(&attest2b, sig, &ak2b, &policy(&[0x90, 0x09], values));
    assert_valid(&a, "TPM2B forms");
    assert!(a.quote.unwrap().was_tpm2b);
    assert_eq!(
        Attest::parse(&attest2b).unwrap(),
        Attest {
            was_tpm2b: true,
            ..Attest::parse(attest).unwrap()
        }
    );
}
