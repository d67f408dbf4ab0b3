//! TPM 2.0 Part 2 §6.3 `TPM_ALG_ID`: the algorithm identifiers secllama reads, and the hash
//! algorithms (`TPMI_ALG_HASH`) it can compute.

/// `TPM_ALG_RSA`: an RSA key.
pub const TPM_ALG_RSA: u16 = 0x0001;
/// `TPM_ALG_SHA1`.
pub const TPM_ALG_SHA1: u16 = 0x0004;
/// `TPM_ALG_HMAC`.
pub const TPM_ALG_HMAC: u16 = 0x0005;
/// `TPM_ALG_AES`.
pub const TPM_ALG_AES: u16 = 0x0006;
/// `TPM_ALG_MGF1`.
pub const TPM_ALG_MGF1: u16 = 0x0007;
/// `TPM_ALG_KEYEDHASH`: a keyed-hash object.
pub const TPM_ALG_KEYEDHASH: u16 = 0x0008;
/// `TPM_ALG_XOR`.
pub const TPM_ALG_XOR: u16 = 0x000A;
/// `TPM_ALG_SHA256`.
pub const TPM_ALG_SHA256: u16 = 0x000B;
/// `TPM_ALG_SHA384`.
pub const TPM_ALG_SHA384: u16 = 0x000C;
/// `TPM_ALG_SHA512`.
pub const TPM_ALG_SHA512: u16 = 0x000D;
/// `TPM_ALG_NULL`.
pub const TPM_ALG_NULL: u16 = 0x0010;
/// `TPM_ALG_RSASSA`: RSASSA-PKCS1-v1_5.
pub const TPM_ALG_RSASSA: u16 = 0x0014;
/// `TPM_ALG_RSAES`: RSAES-PKCS1-v1_5.
pub const TPM_ALG_RSAES: u16 = 0x0015;
/// `TPM_ALG_RSAPSS`.
pub const TPM_ALG_RSAPSS: u16 = 0x0016;
/// `TPM_ALG_OAEP`.
pub const TPM_ALG_OAEP: u16 = 0x0017;
/// `TPM_ALG_ECDSA`.
pub const TPM_ALG_ECDSA: u16 = 0x0018;
/// `TPM_ALG_ECDH`.
pub const TPM_ALG_ECDH: u16 = 0x0019;
/// `TPM_ALG_ECDAA`.
pub const TPM_ALG_ECDAA: u16 = 0x001A;
/// `TPM_ALG_SM2`.
pub const TPM_ALG_SM2: u16 = 0x001B;
/// `TPM_ALG_ECSCHNORR`.
pub const TPM_ALG_ECSCHNORR: u16 = 0x001C;
/// `TPM_ALG_ECMQV`.
pub const TPM_ALG_ECMQV: u16 = 0x001D;
/// `TPM_ALG_KDF1_SP800_56A`.
pub const TPM_ALG_KDF1_SP800_56A: u16 = 0x0020;
/// `TPM_ALG_KDF2`.
pub const TPM_ALG_KDF2: u16 = 0x0021;
/// `TPM_ALG_KDF1_SP800_108`.
pub const TPM_ALG_KDF1_SP800_108: u16 = 0x0022;
/// `TPM_ALG_ECC`: an elliptic-curve key.
pub const TPM_ALG_ECC: u16 = 0x0023;
/// `TPM_ALG_SYMCIPHER`: a symmetric-cipher object.
pub const TPM_ALG_SYMCIPHER: u16 = 0x0025;
/// `TPM_ALG_CFB`.
pub const TPM_ALG_CFB: u16 = 0x0043;

/// `TPM_ECC_NIST_P256` (Part 2 §6.4).
pub const TPM_ECC_NIST_P256: u16 = 0x0003;
/// `TPM_ECC_NIST_P384`.
pub const TPM_ECC_NIST_P384: u16 = 0x0004;

/// A hash algorithm secllama computes (`TPMI_ALG_HASH` less SM3): the same type as an event-log
/// bank, so PCR values from quotes and from log replay need no conversion.
pub use secllama_measurements::eventlog::Bank as HashAlg;

/// The algorithm for a name as users type it: a tpm2-tools name in any case (`sha256`, `SHA256`)
/// or a `0x`-prefixed `TPM_ALG_ID`.
pub fn parse_hash_alg(name: &str) -> Option<HashAlg> {
    let lower = name.trim().to_ascii_lowercase();
    if let Some(hex) = lower.strip_prefix("0x") {
        return u16::from_str_radix(hex, 16)
            .ok()
            .and_then(HashAlg::from_alg_id);
    }
    HashAlg::from_name(&lower)
}

/// A spec name for an algorithm identifier, for messages (`TPM_ALG_RSASSA (0x0014)`).
pub fn alg_name(id: u16) -> String {
    let name = match id {
        TPM_ALG_RSA => "TPM_ALG_RSA",
        TPM_ALG_SHA1 => "TPM_ALG_SHA1",
        TPM_ALG_HMAC => "TPM_ALG_HMAC",
        TPM_ALG_AES => "TPM_ALG_AES",
        TPM_ALG_MGF1 => "TPM_ALG_MGF1",
        TPM_ALG_KEYEDHASH => "TPM_ALG_KEYEDHASH",
        TPM_ALG_XOR => "TPM_ALG_XOR",
        TPM_ALG_SHA256 => "TPM_ALG_SHA256",
        TPM_ALG_SHA384 => "TPM_ALG_SHA384",
        TPM_ALG_SHA512 => "TPM_ALG_SHA512",
        TPM_ALG_NULL => "TPM_ALG_NULL",
        TPM_ALG_RSASSA => "TPM_ALG_RSASSA",
        TPM_ALG_RSAES => "TPM_ALG_RSAES",
        TPM_ALG_RSAPSS => "TPM_ALG_RSAPSS",
        TPM_ALG_OAEP => "TPM_ALG_OAEP",
        TPM_ALG_ECDSA => "TPM_ALG_ECDSA",
        TPM_ALG_ECDH => "TPM_ALG_ECDH",
        TPM_ALG_ECDAA => "TPM_ALG_ECDAA",
        TPM_ALG_SM2 => "TPM_ALG_SM2",
        TPM_ALG_ECSCHNORR => "TPM_ALG_ECSCHNORR",
        TPM_ALG_ECMQV => "TPM_ALG_ECMQV",
        TPM_ALG_KDF1_SP800_56A => "TPM_ALG_KDF1_SP800_56A",
        TPM_ALG_KDF2 => "TPM_ALG_KDF2",
        TPM_ALG_KDF1_SP800_108 => "TPM_ALG_KDF1_SP800_108",
        TPM_ALG_ECC => "TPM_ALG_ECC",
        TPM_ALG_SYMCIPHER => "TPM_ALG_SYMCIPHER",
        TPM_ALG_CFB => "TPM_ALG_CFB",
        _ => return format!("0x{id:04x}"),
    };
    format!("{name} (0x{id:04x})")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_names_and_sizes_round_trip() {
        for h in HashAlg::ALL {
            assert_eq!(HashAlg::from_alg_id(h.alg_id()), Some(h));
            assert_eq!(parse_hash_alg(h.name()), Some(h));
            assert_eq!(h.hash(&[b"abc"]).len(), h.size());
        }
        assert_eq!(parse_hash_alg("SHA256"), Some(HashAlg::Sha256));
        assert_eq!(parse_hash_alg("0x000b"), Some(HashAlg::Sha256));
        assert_eq!(parse_hash_alg("sm3_256"), None);
        assert_eq!(HashAlg::from_alg_id(TPM_ALG_NULL), None);
        assert_eq!(alg_name(0x0014), "TPM_ALG_RSASSA (0x0014)");
        assert_eq!(alg_name(0x7777), "0x7777");
    }

    #[test]
    fn digest_concatenates() {
        assert_eq!(
            HashAlg::Sha256.hash(&[b"a", b"bc"]),
            HashAlg::Sha256.hash(&[b"abc"])
        );
        assert_eq!(
            hex::encode(HashAlg::Sha1.hash(&[b"abc"])),
            "a9993e364706816aba3e25717850c26c9cd0d89d"
        );
    }
}
