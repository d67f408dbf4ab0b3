//! TPM 2.0 evidence, verified in pure Rust: this module never links a TPM library (no libtss2, no
//! tss-esapi) and needs no TPM. Its inputs are the marshalled structures a TPM (or tss-esapi's
//! `marshall()`, or tpm2-tools' output files) produces.
//!
//! | module | specification | what |
//! |---|---|---|
//! | [`attest`] | Part 2 §10.12 `TPMS_ATTEST` | a quote's signed structure |
//! | [`pcr`] | Part 2 §10.6, §10.9.7 `TPML_PCR_SELECTION` | PCR selections, supplied PCR values, the PCR digest |
//! | [`signature`] | Part 2 §11.3 `TPMT_SIGNATURE` | RSASSA, RSAPSS, ECDSA signatures and their verification |
//! | [`public`] | Part 2 §12.2 `TPMT_PUBLIC`, Part 1 §16 | keys, attributes, Names and qualified names |
//! | [`appraise`] | Part 3 §18.4 TPM2_Quote | every check of a quote against a nonce and PCR values |
//! | [`submod`] | DESIGN.md "Attestation document" | the `tpm` submod: quote, AK trust, event-log replay, reference PCRs |
//! | [`trust`] | — | an AK pinned by the reference manifest |
//! | [`cert`] | RFC 5280 | an AK certificate chained to a trusted root |
//! | [`credential`] | Part 1 §24, §11.4.10.2 | TPM2_MakeCredential for an RSA EK, KDFa, the tpm2-tools file |
//! | [`alg`] | Part 2 §6.3 `TPM_ALG_ID` | algorithm identifiers and hashes |
//!
//! Parsers take `&[u8]` and return owned structures; a malformed input of any size is an error
//! naming the structure, field and byte offset ([`TpmError`]), never a panic, and no allocation is
//! sized by a length field before it is checked against the input.

pub mod alg;
pub mod appraise;
pub mod attest;
pub mod cert;
pub mod credential;
mod error;
mod marshal;
pub mod pcr;
pub mod public;
pub mod signature;
pub mod submod;
pub mod trust;

pub use alg::HashAlg;
pub use appraise::{AkPublic, Appraisal, Check, QuotePolicy, appraise_quote, appraise_quote_bytes};
pub use attest::{Attest, TPM_GENERATED_VALUE, TPM_ST_ATTEST_QUOTE};
pub use credential::{from_tpm2_tools_file, kdfa, make_credential, to_tpm2_tools_file};
pub use error::{Result, TpmError};
pub use pcr::{PcrIndex, PcrSelection, PcrValues};
pub use public::{ObjectAttributes, TPM_RH_ENDORSEMENT, TpmPublic, qualified_name};
pub use signature::{SigScheme, TpmSignature};
pub use submod::Quote;
