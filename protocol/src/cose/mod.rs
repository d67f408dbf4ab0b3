//! COSE (RFC 9052, RFC 9053, RFC 8230): signature algorithms, public keys, COSE_Sign1.
//!
//! `key` reads verification keys from PEM SubjectPublicKeyInfo, COSE_Key (RFC 9052 §7) and JWK
//! (RFC 7517) and holds the enclave's ES256 signing key; `sign1` signs and verifies COSE_Sign1.

pub mod key;
pub mod sign1;

pub use key::{CoseP256Key, SigAlg, SigningKey, VerifyingKey};
pub use sign1::{Sign1Policy, VerifiedSign1, sign, verify};

/// COSE header labels used by secllama (RFC 9052 §3.1).
pub mod label {
    /// alg
    pub const ALG: i64 = 1;
    /// content type
    pub const CONTENT_TYPE: i64 = 3;
    /// kid
    pub const KID: i64 = 4;
    /// IV
    pub const IV: i64 = 5;
    /// Partial IV
    pub const PARTIAL_IV: i64 = 6;
}
