//! The verifier's side of credential activation (TPM 2.0 Part 1 §24 "Credential Protection",
//! Part 3 §12.6 TPM2_MakeCredential), computed in Rust with only the EK's public key: a secret that
//! only the TPM holding that EK can recover, and only for an object with the given Name loaded
//! beside it (the AK). Also KDFa (Part 1 §11.4.10.2) and the file that `tpm2_makecredential -o`
//! writes and `tpm2_activatecredential -i` reads.
//!
//! For an RSA EK: seed ← random(|H_nameAlg|); encryptedSecret ← RSA-OAEP(H_nameAlg, label
//! "IDENTITY\0")(seed); symKey ← KDFa(nameAlg, seed, "STORAGE", Name, ∅, keyBits); encIdentity ←
//! AES-CFB(symKey, IV 0)(TPM2B_DIGEST(secret)); hmacKey ← KDFa(nameAlg, seed, "INTEGRITY", ∅, ∅,
//! |H|·8); outerHMAC ← HMAC_nameAlg(hmacKey, encIdentity ‖ Name); credentialBlob ←
//! TPM2B_DIGEST(outerHMAC) ‖ encIdentity.

use super::alg::{HashAlg, TPM_ALG_AES, TPM_ALG_CFB};
use super::error::{Result, TpmError};
use super::marshal::{Reader, put_tpm2b};
use super::public::{ObjectAttributes, PublicKey, TpmPublic};
use hmac::Mac;
use rand_core::CryptoRngCore;
use zeroize::Zeroizing;

/// The magic that starts every tpm2-tools file with a header (`lib/files.c`, `MAGIC`).
pub const TPM2_TOOLS_MAGIC: u32 = 0xBADC_C0DE;
/// The version of the `tpm2_makecredential` output format.
pub const TPM2_TOOLS_CREDENTIAL_VERSION: u32 = 1;
/// `TPM2B_ID_OBJECT` contents: `sizeof(TPMS_ID_OBJECT)` = TPM2B_DIGEST + encrypted TPM2B_DIGEST.
const MAX_ID_OBJECT: usize = 2 * (2 + 64);
/// `TPM2B_ENCRYPTED_SECRET` contents: `sizeof(TPMU_ENCRYPTED_SECRET)` (an RSA-4096 ciphertext).
const MAX_ENCRYPTED_SECRET: usize = 512;

/// HMAC with `hash` over the concatenation of `parts`.
fn hmac(hash: HashAlg, key: &[u8], parts: &[&[u8]]) -> Result<Vec<u8>> {
    fn run<D>(key: &[u8], parts: &[&[u8]]) -> Result<Vec<u8>>
    where
        D: sha2::Digest + sha2::digest::core_api::BlockSizeUser,
    {
        let mut mac = hmac::SimpleHmac::<D>::new_from_slice(key).map_err(|e| TpmError::Crypto {
            what: "HMAC key".into(),
            found: e.to_string(),
        })?;
        for p in parts {
            mac.update(p);
        }
        Ok(mac.finalize().into_bytes().to_vec())
    }
    match hash {
        HashAlg::Sha1 => run::<sha1::Sha1>(key, parts),
        HashAlg::Sha256 => run::<sha2::Sha256>(key, parts),
        HashAlg::Sha384 => run::<sha2::Sha384>(key, parts),
        HashAlg::Sha512 => run::<sha2::Sha512>(key, parts),
    }
}

/// KDFa (Part 1 §11.4.10.2, SP 800-108 counter mode with HMAC): `bits` of output from
/// HMAC_hash(key, [i]₃₂ ‖ label ‖ 0x00 ‖ contextU ‖ contextV ‖ [bits]₃₂) for i = 1, 2, …
/// `label` is given without its terminating zero, which is always hashed. `bits` must be a
/// positive multiple of 8.
pub fn kdfa(
    hash: HashAlg,
    key: &[u8],
    label: &str,
    context_u: &[u8],
    context_v: &[u8],
    bits: u32,
) -> Result<Zeroizing<Vec<u8>>> {
    if bits == 0 || bits % 8 != 0 || bits > 8 * 1024 {
        return Err(TpmError::input(
            "KDFa",
            "a positive multiple of 8 bits, at most 8192",
            format!("{bits} bits"),
        ));
    }
    let bytes = bits as usize / 8;
    let mut out = Zeroizing::new(Vec::with_capacity(bytes + hash.size()));
    let mut counter: u32 = 1;
    while out.len() < bytes {
        let block = Zeroizing::new(hmac(
            hash,
            key,
            &[
                &counter.to_be_bytes(),
                label.as_bytes(),
                &[0],
                context_u,
                context_v,
                &bits.to_be_bytes(),
            ],
        )?);
        out.extend_from_slice(&block);
        counter += 1;
    }
    out.truncate(bytes);
    Ok(out)
}

/// AES-CFB with a zero IV (Part 1 §24.4: the credential's inner encryption), in place.
fn aes_cfb_encrypt(key: &[u8], data: &mut [u8]) -> Result<()> {
    use cfb_mode::cipher::{AsyncStreamCipher, KeyIvInit};
    let iv = [0u8; 16];
    let bad = |_| TpmError::input("AES key", "16 or 32 bytes", format!("{} bytes", key.len()));
    match key.len() {
        16 => cfb_mode::Encryptor::<aes::Aes128>::new_from_slices(key, &iv)
            .map_err(bad)?
            .encrypt(data),
        32 => cfb_mode::Encryptor::<aes::Aes256>::new_from_slices(key, &iv)
            .map_err(bad)?
            .encrypt(data),
        _ => return Err(bad(cfb_mode::cipher::InvalidLength)),
    }
    Ok(())
}

/// The RSA EK's key and symmetric key size, after checking it can protect a credential: a
/// restricted decryption key (a storage parent) with AES-128 or AES-256 in CFB mode, as the default
/// EK templates have.
fn ek_parameters(ek: &TpmPublic) -> Result<(rsa::RsaPublicKey, u32)> {
    let a = ek.attributes;
    if !a.has(ObjectAttributes::RESTRICTED | ObjectAttributes::DECRYPT)
        || a.has(ObjectAttributes::SIGN_ENCRYPT)
    {
        return Err(TpmError::input(
            "EK objectAttributes",
            "a restricted decryption key (restricted|decrypt, not sign)",
            a.to_string(),
        ));
    }
    let key_bits = match ek.symmetric {
        Some(s)
            if s.algorithm == TPM_ALG_AES
                && s.mode == TPM_ALG_CFB
                && matches!(s.key_bits, 128 | 256) =>
        {
            u32::from(s.key_bits)
        }
        other => {
            return Err(TpmError::input(
                "EK parameters.symmetric",
                "AES-128-CFB or AES-256-CFB",
                format!("{other:?}"),
            ));
        }
    };
    if !matches!(ek.key, PublicKey::Rsa { .. }) {
        return Err(TpmError::input(
            "EK",
            "an RSA key (ECC EKs use KDFe, which this module does not implement)",
            "an ECC key",
        ));
    }
    match ek.verifying_key()? {
        secllama_protocol::cose::VerifyingKey::Rsa(k) => Ok((k, key_bits)),
        other => Err(TpmError::input("EK", "an RSA key", other.describe())),
    }
}

/// The TCG default RSA-2048 EK's `authPolicy`: PolicySecret(TPM_RH_ENDORSEMENT) (TCG EK
/// Credential Profile 2.0 §B.3.3 template L-1).
const EK_POLICY: [u8; 32] = [
    0x83, 0x71, 0x97, 0x67, 0x44, 0x84, 0xb3, 0xf8, 0x1a, 0x90, 0xcc, 0x8d, 0x46, 0xa5, 0xd7, 0x24,
    0xfd, 0x52, 0xd7, 0x6e, 0x06, 0x52, 0x0b, 0x64, 0xf2, 0xa1, 0xda, 0x1b, 0x33, 0x14, 0x69, 0xaa,
];

/// The EK's `TPMT_PUBLIC` from its certificate: the TCG default RSA-2048 EK template (EK
/// Credential Profile 2.0 §B.3.3, template L-1: SHA-256 name, fixedTPM|fixedParent|
/// sensitiveDataOrigin|adminWithPolicy|restricted|decrypt, PolicySecret(endorsement), AES-128-CFB,
/// exponent 65537) with the certificate's modulus — what a verifier needs for
/// [`make_credential`] when it has only the EK certificate.
///
/// # Errors
/// A certificate whose key is not RSA-2048 with exponent 65537.
pub fn ek_public_from_certificate(cert_der: &[u8]) -> Result<TpmPublic> {
    use rsa::traits::PublicKeyParts;
    let cert = crate::x509::Cert::parse(cert_der, "EK certificate")
        .map_err(|e| TpmError::input("EK certificate", "a DER X.509 certificate", e))?;
    let spki = der::Encode::to_der(cert.spki())
        .map_err(|e| TpmError::input("EK certificate", "a public key", e.to_string()))?;
    let key = secllama_protocol::cose::VerifyingKey::from_spki_der(&spki)
        .map_err(|e| TpmError::input("EK certificate key", "an RSA key", e.to_string()))?;
    let secllama_protocol::cose::VerifyingKey::Rsa(k) = key else {
        return Err(TpmError::input(
            "EK certificate key",
            "an RSA-2048 key (template L-1)",
            key.describe(),
        ));
    };
    let n = k.n().to_bytes_be();
    if n.len() != 256 || k.e() != &rsa::BigUint::from(65537u32) {
        return Err(TpmError::input(
            "EK certificate key",
            "RSA-2048 with exponent 65537 (template L-1)",
            format!("{} bits, exponent {}", n.len() * 8, k.e()),
        ));
    }
    let mut t = Vec::with_capacity(310);
    t.extend_from_slice(&0x0001u16.to_be_bytes()); // TPM_ALG_RSA
    t.extend_from_slice(&0x000bu16.to_be_bytes()); // nameAlg SHA-256
    t.extend_from_slice(&0x0003_00b2u32.to_be_bytes());
    t.extend_from_slice(&32u16.to_be_bytes());
    t.extend_from_slice(&EK_POLICY);
    t.extend_from_slice(&0x0006u16.to_be_bytes()); // AES
    t.extend_from_slice(&128u16.to_be_bytes());
    t.extend_from_slice(&0x0043u16.to_be_bytes()); // CFB
    t.extend_from_slice(&0x0010u16.to_be_bytes()); // scheme NULL
    t.extend_from_slice(&2048u16.to_be_bytes());
    t.extend_from_slice(&0u32.to_be_bytes()); // exponent: default 65537
    t.extend_from_slice(&256u16.to_be_bytes());
    t.extend_from_slice(&n);
    TpmPublic::parse(&t)
}

/// TPM2_MakeCredential without a TPM: protects `secret` (1 to |H_nameAlg| bytes, e.g. 32 for the
/// default SHA-256 EK) for the TPM holding `ek`, to be released only to the object named `ak_name`
/// (`nameAlg ‖ digest`, see [`TpmPublic::name`]). Returns `(TPM2B_ID_OBJECT, TPM2B_ENCRYPTED_SECRET)`,
/// each with its `UINT16` size prefix (tss-esapi's `IdObject` / `EncryptedSecret` take the bytes
/// after the prefix).
pub fn make_credential(
    ek: &TpmPublic,
    ak_name: &[u8],
    secret: &[u8],
    rng: &mut impl CryptoRngCore,
) -> Result<(Vec<u8>, Vec<u8>)> {
    let (ek_key, sym_bits) = ek_parameters(ek)?;
    let name_alg = ek.name_alg;
    check_name(ak_name)?;
    if secret.is_empty() || secret.len() > name_alg.size() {
        return Err(TpmError::input(
            "credential secret",
            format!(
                "1 to {} bytes (the EK's {name_alg} digest size)",
                name_alg.size()
            ),
            format!("{} bytes", secret.len()),
        ));
    }
    let mut seed = Zeroizing::new(vec![0u8; name_alg.size()]);
    rng.try_fill_bytes(&mut seed)
        .map_err(|e| TpmError::Crypto {
            what: "credential seed".into(),
            found: e.to_string(),
        })?;
    let label = "IDENTITY\0";
    let oaep = match name_alg {
        HashAlg::Sha1 => rsa::Oaep::new_with_label::<sha1::Sha1, _>(label),
        HashAlg::Sha256 => rsa::Oaep::new_with_label::<sha2::Sha256, _>(label),
        HashAlg::Sha384 => rsa::Oaep::new_with_label::<sha2::Sha384, _>(label),
        HashAlg::Sha512 => rsa::Oaep::new_with_label::<sha2::Sha512, _>(label),
    };
    let encrypted_seed = ek_key
        .encrypt(rng, oaep, &seed)
        .map_err(|e| TpmError::Crypto {
            what: "RSA-OAEP encryption of the credential seed".into(),
            found: e.to_string(),
        })?;
    let sym_key = kdfa(name_alg, &seed, "STORAGE", ak_name, &[], sym_bits)?;
    let mut enc_identity = Zeroizing::new(Vec::with_capacity(2 + secret.len()));
    put_tpm2b(&mut enc_identity, "credential", secret)?;
    aes_cfb_encrypt(&sym_key, &mut enc_identity)?;
    let hmac_key = kdfa(
        name_alg,
        &seed,
        "INTEGRITY",
        &[],
        &[],
        8 * name_alg.size() as u32,
    )?;
    let outer_hmac = hmac(name_alg, &hmac_key, &[&enc_identity, ak_name])?;
    let mut id_object = Vec::with_capacity(2 + outer_hmac.len() + enc_identity.len());
    put_tpm2b(&mut id_object, "outerHMAC", &outer_hmac)?;
    id_object.extend_from_slice(&enc_identity);
    let mut id_object_tpm2b = Vec::with_capacity(2 + id_object.len());
    put_tpm2b(&mut id_object_tpm2b, "TPM2B_ID_OBJECT", &id_object)?;
    let mut secret_tpm2b = Vec::with_capacity(2 + encrypted_seed.len());
    put_tpm2b(&mut secret_tpm2b, "TPM2B_ENCRYPTED_SECRET", &encrypted_seed)?;
    Ok((id_object_tpm2b, secret_tpm2b))
}

/// A Name of an object: a hash-algorithm id and a digest of that algorithm's size.
fn check_name(name: &[u8]) -> Result<()> {
    let alg = name
        .get(..2)
        .and_then(|b| HashAlg::from_alg_id(u16::from_be_bytes([b[0], b[1]])));
    match alg {
        Some(h) if name.len() == 2 + h.size() => Ok(()),
        _ => Err(TpmError::input(
            "AK Name",
            "a hash-algorithm id and a digest of its size (an object's Name)",
            format!("{} bytes: {}", name.len(), hex::encode(name)),
        )),
    }
}

/// The file `tpm2_makecredential -o` writes: `UINT32` magic 0xBADCC0DE, `UINT32` version 1, then
/// the `TPM2B_ID_OBJECT` and the `TPM2B_ENCRYPTED_SECRET` (all big-endian, sizes included). Takes
/// the two values [`make_credential`] returns.
pub fn to_tpm2_tools_file(id_object: &[u8], encrypted_secret: &[u8]) -> Result<Vec<u8>> {
    for (what, b, max) in [
        ("TPM2B_ID_OBJECT", id_object, MAX_ID_OBJECT),
        (
            "TPM2B_ENCRYPTED_SECRET",
            encrypted_secret,
            MAX_ENCRYPTED_SECRET,
        ),
    ] {
        let mut r = Reader::new(what, b);
        r.tpm2b("size", max)?;
        r.finish()?;
    }
    let mut out = Vec::with_capacity(8 + id_object.len() + encrypted_secret.len());
    out.extend_from_slice(&TPM2_TOOLS_MAGIC.to_be_bytes());
    out.extend_from_slice(&TPM2_TOOLS_CREDENTIAL_VERSION.to_be_bytes());
    out.extend_from_slice(id_object);
    out.extend_from_slice(encrypted_secret);
    Ok(out)
}

/// Reads a `tpm2_makecredential -o` file back into `(TPM2B_ID_OBJECT, TPM2B_ENCRYPTED_SECRET)`,
/// size prefixes included. Trailing bytes are an error.
pub fn from_tpm2_tools_file(file: &[u8]) -> Result<(Vec<u8>, Vec<u8>)> {
    let mut r = Reader::new("tpm2-tools credential file", file);
    let magic = r.u32("magic")?;
    if magic != TPM2_TOOLS_MAGIC {
        return Err(r.invalid_at(
            "magic",
            0,
            format!("0x{TPM2_TOOLS_MAGIC:08x}"),
            format!("0x{magic:08x}"),
        ));
    }
    let version = r.u32("version")?;
    if version != TPM2_TOOLS_CREDENTIAL_VERSION {
        return Err(r.invalid_at("version", 4, "1", version.to_string()));
    }
    let mut take = |field, max| -> Result<Vec<u8>> {
        let at = r.offset();
        let body = r.tpm2b(field, max)?;
        Ok(file[at..at + 2 + body.len()].to_vec())
    };
    let id_object = take("credentialBlob", MAX_ID_OBJECT)?;
    let secret = take("secret", MAX_ENCRYPTED_SECRET)?;
    r.finish()?;
    Ok((id_object, secret))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The KDFa self-test vector of the TCG reference implementation (libtpms
    /// `src/tpm2/KdfTestData.h`): key, label "KDFSELFTESTLABEL", contextU, contextV, 160 bits.
    #[test]
    fn kdfa_matches_the_reference_implementation_self_test() {
        let key = hex::decode("271fa08bbdc5060ec3dfa928ff9b73123a12da0c").unwrap();
        let u = hex::decode("ce244f395dca7391").unwrap();
        let v = hex::decode("da504031ddf12e83").unwrap();
        for (hash, expected) in [
            (HashAlg::Sha1, "55b5a7184aa07423c47dae766c26a2377d7cf851"),
            (HashAlg::Sha256, "bb0259e1c8ba607e6a2cd704b69a902e9ade84c4"),
            (HashAlg::Sha384, "1dce70c9113eb2dba47bd9cfc72bf46f45b09312"),
            (HashAlg::Sha512, "8be2c1b85b78569b9fa759f5857c56d684810fd3"),
        ] {
            let out = kdfa(hash, &key, "KDFSELFTESTLABEL", &u, &v, 160).unwrap();
            assert_eq!(hex::encode(&*out), expected, "{hash}");
        }
    }

    #[test]
    fn kdfa_output_is_a_prefix_across_lengths_only_through_l() {
        // [L] is hashed, so a shorter output is not a prefix of a longer one.
        let a = kdfa(HashAlg::Sha256, b"k", "STORAGE", b"n", &[], 128).unwrap();
        let b = kdfa(HashAlg::Sha256, b"k", "STORAGE", b"n", &[], 256).unwrap();
        assert_eq!(a.len(), 16);
        assert_eq!(b.len(), 32);
        assert_ne!(a[..], b[..16]);
        let long = kdfa(HashAlg::Sha256, b"k", "X", &[], &[], 512).unwrap();
        assert_eq!(long.len(), 64);
        assert!(kdfa(HashAlg::Sha256, b"k", "X", &[], &[], 12).is_err());
        assert!(kdfa(HashAlg::Sha256, b"k", "X", &[], &[], 0).is_err());
    }

    #[test]
    fn tpm2_tools_file_round_trips_and_rejects_garbage() {
        let id = [&[0u8, 4][..], &[1, 2, 3, 4]].concat();
        let sec = [&[0u8, 2][..], &[9, 9]].concat();
        let file = to_tpm2_tools_file(&id, &sec).unwrap();
        assert_eq!(&file[..8], &[0xBA, 0xDC, 0xC0, 0xDE, 0, 0, 0, 1]);
        assert_eq!(
            from_tpm2_tools_file(&file).unwrap(),
            (id.clone(), sec.clone())
        );
        for len in 0..file.len() {
            assert!(from_tpm2_tools_file(&file[..len]).is_err());
        }
        let mut v2 = file.clone();
        v2[7] = 2;
        assert!(from_tpm2_tools_file(&v2).is_err());
        assert!(to_tpm2_tools_file(&id[1..], &sec).is_err());
    }
}
