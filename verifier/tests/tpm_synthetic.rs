//! Evidence built in the test with keys the test holds, for the paths no public vector covers:
//! quotes signed with ECDSA P-256/P-384, RSASSA-PSS (both salt lengths TPMs use) and RSASSA-SHA384;
//! a quote from a key that is not a restricted AK; and TPM2_MakeCredential, opened again by a
//! TPM2_ActivateCredential written here from Part 1 §24 (the swtpm cross-check with
//! `tpm2_activatecredential` lives in the `tests` crate).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test crate: a failed unwrap is a failed test

use ecdsa::signature::hazmat::PrehashSigner;
use rsa::pkcs8::DecodePrivateKey;
use rsa::traits::PublicKeyParts;
use secllama_verifier::tpm::attest::{ClockInfo, QuoteInfo};
use secllama_verifier::tpm::signature::SignatureValue;
use secllama_verifier::tpm::{
    Attest, HashAlg, PcrSelection, PcrValues, QuotePolicy, SigScheme, TPM_GENERATED_VALUE,
    TPM_ST_ATTEST_QUOTE, TpmPublic, TpmSignature, appraise_quote_bytes, from_tpm2_tools_file, kdfa,
    make_credential, to_tpm2_tools_file,
};

/// A throwaway RSA-2048 key for tests only (generated with `openssl genpkey`).
const TEST_RSA_KEY: &str = "\
-----BEGIN PRIVATE KEY-----
MIIEvgIBADANBgkqhkiG9w0BAQEFAASCBKgwggSkAgEAAoIBAQCV92GwV95KGJ4A
VrWaGptJsG+2crHXJO1gNzdzWpngeUPTwq7mSI9U87JNa/nd/1+13eosZqZATMQ0
pGMPvpoSzlZMkr9Pxj8gaSvrj3Sw+6RNMHkqSycqWGjDHKcdT7XlSXnH87QlhMn+
mMlI/vqHMDmWoBusDI1r43SzrTa6Pv/m54q6jWy6LFpx5r0hw6O3hXFNjsZ1zmWn
kNuAIx8LjqQbCJV1DYhNCX3xDRz8bTVdEVoq4oh6Jy/w1Wu499/x2XD5+qPM3iER
JBK81LJt94Ljo5sJyZapY59eOBH05AwQZd87/UuCIqHshXc2Xi8/YtVpPORAnlnf
g2LJHw5tAgMBAAECggEAAiV6RnXbfp//ku2qx7vdwR4/WxMlLHkg1KG1r3b6gNX7
fIpqymz7cDHUuXr0JpNDIW09rskBVCZFIKPBrzYBKoe9gHcROekSejpHIKX6+5V+
coRhF5PfyaFeTnyYf7jmV5PHpG7+gxL1eSliqCLOHyU3jcpY2wuK8qJcxz2RbPT4
QRaUxhOt6dwCXaW/IChQm7UG0xiweNTikJxU9f5sfYgdPdwvoAM1vasLtd9o169H
N3XyCCl+yCq1dRkiijdzDRnurkqTxHNwtWkz1xvhKzSBgCaxWHDZOWrSyL2aTwF/
7Qcp8ZY5qRwKUbynOacOnMeH1mSTeQVu3EaXNYc5GQKBgQDSlHBFKnv1MsE/b5QN
MugLEutQ6SNPjyqRj6PM0odp4z9TWK4bhpAVP7tBDO509ZyL/FoeUxfZSdHEBXqF
onJFC+CNwEL16Uix8F2xL3si8heh7JdNNq4YZmq8RXap1MlyP8hcu349/v6ccEdW
F9LYEG/jJUpbnXbMtdOCQxJVcwKBgQC2UA32PG5DQQab6+msryWfL+Q3SLbokR5D
CX1Gz55OAWPYrlA+7Suj8ClKSVc6jz4hQuxRpbQMEv9H8koTkeKZHEm7UWQmPVFu
5U1okCfQJKDqEKZeb7YO1lYr0A2JzTAuI9TrpQWJDd3Df8xU5A/obAtXRGFgWtsq
ceNTqfUUnwKBgBWeN4hiPCeH9l7UzZYtS7UXVCESThW01OHspRw54Lz2H2InEHiy
78e+qzKaaUCIlnGojnfef+xGr8o35cQiUSjVd1AWFMm6EURzMKsn/LQxtkthRoce
vfCzUvHRD8WPmr6n3aHnfaZPr0PQIwKrn3Ge/l2LTn7pQ3Dwma4dxJwRAoGBAKV1
JhaxZYiX/T2I73wPQN+mAULDNW0ANyyz8gRP7OXykQFXwfA6Iv8XuQF4ajf1RHe/
WuYGss66dwB+vgfgwHwgljHwfinOQJead5RMMDXQ6FFFZxgR3nK8x1vf6EmF9RIK
5vQtwkZOVVNWKsVobZ+MXwaGQrHGA14UGjIV7x0VAoGBAMyQXmikhTvlIV/xQFBE
56+8G9U7RWz38RE/lE3TfETK1bvmCKCRCiJRmeUNvs9lGsM8gxsLpQX7ZBAEui0i
+lRFvuS1Aaa8o6wOXSnAA3nvY/cILCp0TS/mvHzij36m3ZRqi1w/WPJTpwKnLyo9
MYlPWaEzd92gMO3zpIl4maZr
-----END PRIVATE KEY-----
";

fn rsa_key() -> rsa::RsaPrivateKey {
    rsa::RsaPrivateKey::from_pkcs8_pem(TEST_RSA_KEY).unwrap()
}

/// Attributes of an AK as tpm2_createak makes it: fixedtpm|fixedparent|sensitivedataorigin|
/// userwithauth|restricted|sign.
const AK_ATTRIBUTES: u32 = 0x0005_0072;

fn rsa_public(attributes: u32, scheme: [u16; 2], sym: &[u16], n: &[u8], policy: &[u8]) -> Vec<u8> {
    let mut b = Vec::new();
    for v in [0x0001u16, 0x000b] {
        b.extend_from_slice(&v.to_be_bytes());
    }
    b.extend_from_slice(&attributes.to_be_bytes());
    b.extend_from_slice(&(policy.len() as u16).to_be_bytes());
    b.extend_from_slice(policy);
    for v in sym.iter().chain(if scheme[0] == 0x0010 {
        &scheme[..1]
    } else {
        &scheme[..]
    }) {
        b.extend_from_slice(&v.to_be_bytes());
    }
    b.extend_from_slice(&((n.len() * 8) as u16).to_be_bytes());
    b.extend_from_slice(&0u32.to_be_bytes()); // exponent 0: 65537
    b.extend_from_slice(&(n.len() as u16).to_be_bytes());
    b.extend_from_slice(n);
    b
}

fn ecc_public(curve: u16, hash: HashAlg, x: &[u8], y: &[u8]) -> Vec<u8> {
    let mut b = Vec::new();
    for v in [0x0023u16, 0x000b] {
        b.extend_from_slice(&v.to_be_bytes());
    }
    b.extend_from_slice(&AK_ATTRIBUTES.to_be_bytes());
    for v in [0u16, 0x0010, 0x0018, hash.alg_id(), curve, 0x0010] {
        b.extend_from_slice(&v.to_be_bytes());
    }
    for c in [x, y] {
        b.extend_from_slice(&(c.len() as u16).to_be_bytes());
        b.extend_from_slice(c);
    }
    b
}

struct Pcrs {
    selection: PcrSelection,
    values: PcrValues,
}

fn pcrs() -> Pcrs {
    let selection = PcrSelection::parse_tpm2_tools("sha256:0,7,23+sha1:4").unwrap();
    let mut values = PcrValues::new();
    for (i, (bank, index)) in selection.iter().enumerate() {
        values
            .insert(bank, index, vec![i as u8 + 1; bank.size()])
            .unwrap();
    }
    Pcrs { selection, values }
}

fn attest(nonce: &[u8], p: &Pcrs, hash: HashAlg, magic: u32) -> Vec<u8> {
    Attest {
        magic,
        attest_type: TPM_ST_ATTEST_QUOTE,
        qualified_signer: vec![0, 0x0b, 0xAA],
        extra_data: nonce.to_vec(),
        clock_info: ClockInfo {
            clock: 1000,
            reset_count: 1,
            restart_count: 0,
            safe: true,
        },
        firmware_version: 1,
        quote: QuoteInfo {
            pcr_select: p.selection.clone(),
            pcr_digest: p.values.digest(&p.selection, hash).unwrap(),
        },
        was_tpm2b: false,
    }
    .marshal()
    .unwrap()
}

fn policy<'a>(nonce: &'a [u8], p: &'a Pcrs) -> QuotePolicy<'a> {
    QuotePolicy {
        nonce,
        pcrs: &p.values,
        allow_sha1: false,
        qualified_signer: None,
    }
}

fn failed(a: &secllama_verifier::tpm::Appraisal) -> Vec<&'static str> {
    a.checks
        .iter()
        .filter(|c| !c.passed)
        .map(|c| c.name)
        .collect()
}

#[test]
fn ecdsa_p256_and_p384_quotes_verify() {
    let p = pcrs();
    let nonce = [7u8; 32];
    let sk256 = p256::ecdsa::SigningKey::from_slice(&[3u8; 32]).unwrap();
    let pt = sk256.verifying_key().to_encoded_point(false);
    let ak256 = ecc_public(0x0003, HashAlg::Sha256, pt.x().unwrap(), pt.y().unwrap());
    let sk384 = p384::ecdsa::SigningKey::from_slice(&[5u8; 48]).unwrap();
    let pt = sk384.verifying_key().to_encoded_point(false);
    let ak384 = ecc_public(0x0004, HashAlg::Sha384, pt.x().unwrap(), pt.y().unwrap());
    for (ak, hash) in [(&ak256, HashAlg::Sha256), (&ak384, HashAlg::Sha384)] {
        let msg = attest(&nonce, &p, hash, TPM_GENERATED_VALUE);
        let digest = hash.hash(&[&msg]);
        let (r, s) = if hash == HashAlg::Sha256 {
            let sig: p256::ecdsa::Signature = sk256.sign_prehash(&digest).unwrap();
            let (r, s) = sig.split_bytes();
            (r.to_vec(), s.to_vec())
        } else {
            let sig: p384::ecdsa::Signature = sk384.sign_prehash(&digest).unwrap();
            let (r, s) = sig.split_bytes();
            (r.to_vec(), s.to_vec())
        };
        let sig = TpmSignature {
            scheme: SigScheme::EcDsa,
            hash,
            value: SignatureValue::Ecc {
                r: r.clone(),
                s: s.clone(),
            },
            raw: false,
        }
        .marshal()
        .unwrap();
        let a = appraise_quote_bytes(&msg, &sig, ak, &policy(&nonce, &p));
        assert!(a.valid(), "{hash}: {:?}", a.reasons());
        let mut bad_s = s.clone();
        bad_s[0] ^= 0x80;
        let bad = TpmSignature {
            scheme: SigScheme::EcDsa,
            hash,
            value: SignatureValue::Ecc { r, s: bad_s },
            raw: false,
        }
        .marshal()
        .unwrap();
        assert_eq!(
            failed(&appraise_quote_bytes(&msg, &bad, ak, &policy(&nonce, &p))),
            ["signature"]
        );
    }
    // A P-256 AK bound to ECDSA-SHA256 signing with SHA-384: verifies, but not under its scheme.
    let msg = attest(&nonce, &p, HashAlg::Sha384, TPM_GENERATED_VALUE);
    let sig: p256::ecdsa::Signature = sk256.sign_prehash(&HashAlg::Sha384.hash(&[&msg])).unwrap();
    let (r, s) = sig.split_bytes();
    let sig = TpmSignature {
        scheme: SigScheme::EcDsa,
        hash: HashAlg::Sha384,
        value: SignatureValue::Ecc {
            r: r.to_vec(),
            s: s.to_vec(),
        },
        raw: false,
    }
    .marshal()
    .unwrap();
    let a = appraise_quote_bytes(&msg, &sig, &ak256, &policy(&nonce, &p));
    assert_eq!(failed(&a), ["ak_scheme"], "{:?}", a.reasons());
}

#[test]
fn rsapss_with_either_salt_and_rsassa_sha384_verify() {
    let key = rsa_key();
    let n = key.n().to_bytes_be();
    let p = pcrs();
    let nonce = [9u8; 20];
    let mut rng = rand_core::OsRng;
    let ak_pss = rsa_public(AK_ATTRIBUTES, [0x0016, 0x000b], &[0x0010], &n, &[]);
    let msg = attest(&nonce, &p, HashAlg::Sha256, TPM_GENERATED_VALUE);
    let digest = HashAlg::Sha256.hash(&[&msg]);
    for salt in [32, 256 - 32 - 2] {
        let sig = key
            .sign_with_rng(
                &mut rng,
                rsa::Pss::new_with_salt::<sha2::Sha256>(salt),
                &digest,
            )
            .unwrap();
        let t = TpmSignature {
            scheme: SigScheme::RsaPss,
            hash: HashAlg::Sha256,
            value: SignatureValue::Rsa(sig),
            raw: false,
        };
        let a = appraise_quote_bytes(&msg, &t.marshal().unwrap(), &ak_pss, &policy(&nonce, &p));
        assert!(a.valid(), "salt {salt}: {:?}", a.reasons());
    }
    let sig = key
        .sign_with_rng(
            &mut rng,
            rsa::Pss::new_with_salt::<sha2::Sha256>(20),
            &digest,
        )
        .unwrap();
    let odd_salt = TpmSignature {
        scheme: SigScheme::RsaPss,
        hash: HashAlg::Sha256,
        value: SignatureValue::Rsa(sig),
        raw: false,
    };
    let a = appraise_quote_bytes(
        &msg,
        &odd_salt.marshal().unwrap(),
        &ak_pss,
        &policy(&nonce, &p),
    );
    assert_eq!(failed(&a), ["signature"], "a salt TPMs do not use");

    let ak_384 = rsa_public(AK_ATTRIBUTES, [0x0014, 0x000c], &[0x0010], &n, &[]);
    let msg = attest(&nonce, &p, HashAlg::Sha384, TPM_GENERATED_VALUE);
    let sig = key
        .sign(
            rsa::Pkcs1v15Sign::new::<sha2::Sha384>(),
            &HashAlg::Sha384.hash(&[&msg]),
        )
        .unwrap();
    let t = TpmSignature {
        scheme: SigScheme::RsaSsa,
        hash: HashAlg::Sha384,
        value: SignatureValue::Rsa(sig),
        raw: false,
    };
    let a = appraise_quote_bytes(&msg, &t.marshal().unwrap(), &ak_384, &policy(&nonce, &p));
    assert!(a.valid(), "{:?}", a.reasons());
}

#[test]
fn a_key_that_is_not_a_restricted_ak_cannot_vouch_for_a_quote() {
    // An unrestricted signing key can sign any bytes, including a forged TPMS_ATTEST.
    let key = rsa_key();
    let n = key.n().to_bytes_be();
    let p = pcrs();
    let nonce = [1u8; 16];
    let forged = attest(&nonce, &p, HashAlg::Sha256, TPM_GENERATED_VALUE);
    let sig = key
        .sign(
            rsa::Pkcs1v15Sign::new::<sha2::Sha256>(),
            &HashAlg::Sha256.hash(&[&forged]),
        )
        .unwrap();
    let sig = TpmSignature::raw_rsassa(&sig, HashAlg::Sha256);
    let sig = TpmSignature { raw: false, ..sig }.marshal().unwrap();
    let unrestricted = rsa_public(0x0004_0072, [0x0014, 0x000b], &[0x0010], &n, &[]);
    let a = appraise_quote_bytes(&forged, &sig, &unrestricted, &policy(&nonce, &p));
    assert_eq!(failed(&a), ["ak_attributes"], "{:?}", a.reasons());
    assert!(a.reasons()[0].contains("expected restricted set"));
    let restricted = rsa_public(AK_ATTRIBUTES, [0x0014, 0x000b], &[0x0010], &n, &[]);
    assert!(appraise_quote_bytes(&forged, &sig, &restricted, &policy(&nonce, &p)).valid());

    // Bytes that are not a TPM-generated structure: the magic check names them.
    let other = attest(&nonce, &p, HashAlg::Sha256, 0xdead_beef);
    let sig = key
        .sign(
            rsa::Pkcs1v15Sign::new::<sha2::Sha256>(),
            &HashAlg::Sha256.hash(&[&other]),
        )
        .unwrap();
    let sig = TpmSignature {
        raw: false,
        ..TpmSignature::raw_rsassa(&sig, HashAlg::Sha256)
    };
    let a = appraise_quote_bytes(
        &other,
        &sig.marshal().unwrap(),
        &restricted,
        &policy(&nonce, &p),
    );
    assert_eq!(failed(&a), ["magic"], "{:?}", a.reasons());
    assert!(a.reasons()[0].contains("found 0xdeadbeef"));
}

/// The default EK template (TCG EK Credential Profile, template L-1): RSA-2048, SHA-256,
/// fixedtpm|fixedparent|sensitivedataorigin|adminwithpolicy|restricted|decrypt, the EK policy,
/// AES-128-CFB, no scheme.
fn ek_public(n: &[u8]) -> Vec<u8> {
    let policy =
        hex::decode("837197674484b3f81a90cc8d46a5d724fd52d76e06520b64f2a1da1b331469aa").unwrap();
    rsa_public(
        0x0003_00b2,
        [0x0010, 0],
        &[0x0006, 0x0080, 0x0043],
        n,
        &policy,
    )
}

/// TPM2_ActivateCredential as Part 1 §24 describes it, with the EK's private key.
fn activate(
    ek: &rsa::RsaPrivateKey,
    name: &[u8],
    id_object: &[u8],
    secret: &[u8],
) -> Result<Vec<u8>, String> {
    use cfb_mode::cipher::{AsyncStreamCipher, KeyIvInit};
    use hmac::Mac;
    let body = |b: &[u8]| -> Vec<u8> {
        assert_eq!(usize::from(u16::from_be_bytes([b[0], b[1]])), b.len() - 2);
        b[2..].to_vec()
    };
    let seed = ek
        .decrypt(
            rsa::Oaep::new_with_label::<sha2::Sha256, _>("IDENTITY\0"),
            &body(secret),
        )
        .map_err(|e| format!("seed: {e}"))?;
    let id = body(id_object);
    let hmac_len = usize::from(u16::from_be_bytes([id[0], id[1]]));
    let (outer_hmac, enc_identity) = id[2..].split_at(hmac_len);
    let hmac_key = kdfa(HashAlg::Sha256, &seed, "INTEGRITY", &[], &[], 256).unwrap();
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(&hmac_key).unwrap();
    mac.update(enc_identity);
    mac.update(name);
    mac.verify_slice(outer_hmac)
        .map_err(|_| "integrity check failed".to_string())?;
    let sym = kdfa(HashAlg::Sha256, &seed, "STORAGE", name, &[], 128).unwrap();
    let mut plain = enc_identity.to_vec();
    cfb_mode::Decryptor::<aes::Aes128>::new_from_slices(&sym, &[0u8; 16])
        .unwrap()
        .decrypt(&mut plain);
    let size = usize::from(u16::from_be_bytes([plain[0], plain[1]]));
    assert_eq!(size, plain.len() - 2);
    Ok(plain[2..].to_vec())
}

#[test]
fn make_credential_is_opened_by_activate_credential_only_for_the_named_key() {
    let ek_key = rsa_key();
    let ek = TpmPublic::parse(&ek_public(&ek_key.n().to_bytes_be())).unwrap();
    let gce_ak = std::fs::read(
        std::env::var_os("SECLLAMA_SHARED")
            .map(std::path::PathBuf::from)
            .unwrap_or_else(|| {
                std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared")
            })
            .join("vectors/tpm-quote/gce-cos85-nonce9009/ak_pub.tpmt_public.bin"),
    )
    .unwrap();
    let name = TpmPublic::parse(&gce_ak).unwrap().name();
    let mut rng = rand_core::OsRng;
    for secret in [&[0x5a; 32][..], b"sixteen byte key", &[1]] {
        let (id, enc) = make_credential(&ek, &name, secret, &mut rng).unwrap();
        assert_eq!(enc.len(), 2 + 256, "RSA-2048 OAEP ciphertext");
        assert_eq!(
            id.len(),
            2 + 2 + 32 + 2 + secret.len(),
            "outer HMAC + encrypted TPM2B_DIGEST"
        );
        assert_eq!(activate(&ek_key, &name, &id, &enc).unwrap(), secret);
        let mut other = name.clone();
        other[2] ^= 1;
        assert_eq!(
            activate(&ek_key, &other, &id, &enc).unwrap_err(),
            "integrity check failed"
        );

        let file = to_tpm2_tools_file(&id, &enc).unwrap();
        assert_eq!(&file[..8], &[0xba, 0xdc, 0xc0, 0xde, 0, 0, 0, 1]);
        assert_eq!(file[8..], [id.clone(), enc.clone()].concat()[..]);
        assert_eq!(from_tpm2_tools_file(&file).unwrap(), (id, enc));
    }
    // Two credentials for the same inputs differ (fresh seed).
    let a = make_credential(&ek, &name, &[1; 32], &mut rng).unwrap();
    let b = make_credential(&ek, &name, &[1; 32], &mut rng).unwrap();
    assert_ne!(a, b);
}

#[test]
fn make_credential_refuses_what_a_tpm_would() {
    let ek_key = rsa_key();
    let ek = TpmPublic::parse(&ek_public(&ek_key.n().to_bytes_be())).unwrap();
    let name = [&[0u8, 0x0b][..], &[7; 32]].concat();
    let mut rng = rand_core::OsRng;
    let err = |r: Result<_, secllama_verifier::tpm::TpmError>| r.unwrap_err().to_string();
    assert!(err(make_credential(&ek, &name, &[0; 33], &mut rng)).contains("1 to 32 bytes"));
    assert!(err(make_credential(&ek, &name, &[], &mut rng)).contains("1 to 32 bytes"));
    assert!(err(make_credential(&ek, &name[..20], &[1], &mut rng)).contains("AK Name"));
    assert!(err(make_credential(&ek, &[0x40, 0, 0, 0x0b], &[1], &mut rng)).contains("AK Name"));
    // A signing key (an AK) is not a storage parent: nothing protects what is encrypted to it.
    let ak = TpmPublic::parse(&rsa_public(
        AK_ATTRIBUTES,
        [0x0014, 0x000b],
        &[0x0010],
        &ek_key.n().to_bytes_be(),
        &[],
    ))
    .unwrap();
    assert!(err(make_credential(&ak, &name, &[1], &mut rng)).contains("restricted decryption key"));
    // An EK without a symmetric algorithm.
    let no_sym = TpmPublic::parse(&rsa_public(
        0x0003_00b2,
        [0x0010, 0],
        &[0x0010],
        &ek_key.n().to_bytes_be(),
        &[],
    ))
    .unwrap();
    assert!(err(make_credential(&no_sym, &name, &[1], &mut rng)).contains("AES-128-CFB"));
}
