//! Trust in an attestation key through its X.509 certificate: the certificate's key is the AK,
//! and it chains through the given intermediates to a trusted root ([`crate::x509`] checks every
//! link: names, signatures, CA constraints, validity). A TPM AK certificate may mark
//! subjectAltName (the TPM's manufacturer, model and version), extKeyUsage and certificatePolicies
//! critical; nothing else unknown may be critical. Revocation is checked when CRLs are given.

use super::error::{Result, TpmError};
use super::trust::same_key;
use crate::x509::{self, PathPolicy};
use secllama_protocol::cose::VerifyingKey;
use std::time::SystemTime;

/// Critical extensions an AK certificate may carry besides basicConstraints and keyUsage.
const KNOWN_CRITICAL: [&str; 3] = [
    "2.5.29.17", // subjectAltName
    "2.5.29.37", // extKeyUsage
    "2.5.29.32", // certificatePolicies
];

/// The outcome of checking an AK certificate.
#[derive(Debug, Clone, Default)]
pub struct CertAppraisal {
    /// The subjects from the leaf to the trusted root, when a path was found.
    pub path: Vec<String>,
    /// Every failed check (empty when valid).
    pub reasons: Vec<String>,
}

impl CertAppraisal {
    /// True when a path to a root was found and nothing failed.
    pub fn valid(&self) -> bool {
        !self.path.is_empty() && self.reasons.is_empty()
    }
}

/// Reads certificates from DER (one) or PEM (one or more `CERTIFICATE` blocks); returns DER.
pub fn load_certificates(input: &[u8]) -> Result<Vec<Vec<u8>>> {
    x509::load_certificates(input)
        .map_err(|e| TpmError::input("certificate", "DER or PEM X.509", e))
}

/// Checks that `cert_der` certifies `ak` and chains through `intermediates` to one of `roots`, all
/// valid at `at`. Certificates are DER (see [`load_certificates`] for PEM).
pub fn verify_ak_certificate(
    cert_der: &[u8],
    ak: &VerifyingKey,
    intermediates: &[impl AsRef<[u8]>],
    roots: &[impl AsRef<[u8]>],
    at: SystemTime,
) -> CertAppraisal {
    verify_ak_certificate_with_crls(cert_der, ak, intermediates, roots, at, &[])
}

/// [`verify_ak_certificate`], also refusing a certificate of the path that a CRL (DER) of its
/// issuer lists.
pub fn verify_ak_certificate_with_crls(
    cert_der: &[u8],
    ak: &VerifyingKey,
    intermediates: &[impl AsRef<[u8]>],
    roots: &[impl AsRef<[u8]>],
    at: SystemTime,
    crls: &[Vec<u8>],
) -> CertAppraisal {
    let policy = PathPolicy {
        at,
        known_critical: &KNOWN_CRITICAL,
        crls,
    };
    let found = x509::verify_path(cert_der, "AK certificate", intermediates, roots, &policy);
    let mut out = CertAppraisal {
        path: found.path,
        reasons: Vec::new(),
    };
    match x509::Cert::parse(cert_der, "AK certificate").and_then(|c| {
        let spki = der::Encode::to_der(c.spki()).map_err(|e| format!("AK certificate: {e}"))?;
        VerifyingKey::from_spki_der(&spki).map_err(|e| format!("AK certificate: {e}"))
    }) {
        Ok(k) if same_key(&k, ak) => {}
        Ok(k) => out.reasons.push(format!(
            "AK certificate: expected the AK's {} key, found another {} key",
            ak.describe(),
            k.describe()
        )),
        Err(e) => out.reasons.push(e),
    }
    out.reasons.extend(found.reasons);
    out
}
