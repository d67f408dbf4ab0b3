//! # secllama-protocol — the wire formats every secllama component shares
//!
//! This crate owns the exact bytes that cross trust boundaries, and nothing else: it performs no I/O,
//! opens no socket and reads no file. Everything that is signed or authenticated is encoded with
//! deterministic CBOR (RFC 8949 §4.2.1) and decoded strictly (size limits, no duplicate keys, no
//! trailing bytes, no non-canonical encodings, no unknown fields).
//!
//! | module | specification | what |
//! |---|---|---|
//! | [`cbor`] | RFC 8949 | deterministic encoding and strict decoding of CBOR values |
//! | [`cose`] | RFC 9052/9053, RFC 8230, RFC 7517 | COSE_Sign1 (ES256/384/512, PS256/384/512), public keys from PEM, COSE_Key and JWK |
//! | [`ijson`] | RFC 7493 §2.3 | JSON request bodies whose member names are unique at every depth (the policy, the runner and the proxy read one request) |
//! | [`pem`] | RFC 7468 | the PEM armour of certificates, CRLs and keys, strictly and in one pass |
//! | [`attestation`] | RFC 9711 (EAT) | the attestation document payload and the key binding |
//! | [`seal`] | RFC 9052 COSE_Encrypt / COSE_Encrypt0, RFC 5869 | sealed requests (RSA-OAEP-256 + A256GCM, session reuse), sealed single and streamed responses |
//! | [`receipt`] | RFC 9052 COSE_Sign1 | the signed receipt that closes every answer |
//! | [`rfc9162`] | RFC 9162 §2.1 | Merkle tree hashing, inclusion and consistency proofs of the receipt log |
//! | [`tree_head`] | RFC 9162 §4.10 fields, RFC 9052 COSE_Sign1 | signed tree heads and the log identity record |
//! | [`receipt_log`] | DESIGN.md "Receipts and log" | the receipt log file's records and their verification |
//!
//! Private-key rule: the `rsa` crate is only ever given public keys here (client-side OAEP wrapping and
//! RSA signature verification). Opening a sealed request unwraps its content key through the
//! [`seal::Unwrap`] trait, whose implementation [`seal::AwsLcRsaOaep`] uses aws-lc-rs (constant time).

pub mod attestation;
pub mod cbor;
pub mod cose;
mod error;
pub mod ijson;
pub mod ollama_name;
pub mod pem;
pub mod receipt;
pub mod receipt_log;
pub mod rfc9162;
pub mod seal;
pub mod tree_head;
mod types;
pub mod x690;

pub use error::{ProtocolError, Result};
pub use types::{Kid, Nonce, RequestId, Salt, Sha256Digest, sha256};
