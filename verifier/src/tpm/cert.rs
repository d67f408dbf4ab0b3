//! Trust in an attestation key through its X.509 certificate (RFC 5280 §6 path validation, the
//! subset a TPM vendor or cloud AK/EK CA needs): the certificate's key is the AK, and it chains
//! through the given intermediates to a trusted root.
//!
//! Checked on every link: the issuer's subject is the child's issuer (byte-exact DER names), the
//! child's signature verifies under the issuer's key (RSA PKCS#1 v1.5 with SHA-256/384/512, ECDSA
//! P-256/P-384 with SHA-256/384), the signature algorithm inside and outside the TBS agree, every
//! issuer is a CA (basicConstraints cA, keyCertSign when keyUsage is present, pathLenConstraint),
//! every certificate is valid at the given time, and no certificate carries a critical extension
//! this module does not understand. Revocation is not checked (no network).

use super::alg::HashAlg;
use super::error::{Result, TpmError};
use super::signature::{SigScheme, SignatureValue, TpmSignature};
use super::trust::same_key;
use der::{Decode, Encode, Reader as _};
use secllama_protocol::cose::VerifyingKey;
use std::time::{Duration, SystemTime};
use x509_cert::Certificate;

/// Longest chain searched, leaf and root included.
const MAX_DEPTH: usize = 8;

const OID_BASIC_CONSTRAINTS: &str = "2.5.29.19";
const OID_KEY_USAGE: &str = "2.5.29.15";
/// Critical extensions this module understands (or, for SAN, EKU and policies, has no constraint
/// to apply).
const KNOWN_CRITICAL: [&str; 5] = [
    OID_BASIC_CONSTRAINTS,
    OID_KEY_USAGE,
    "2.5.29.17", // subjectAltName (a TPM's manufacturer, model and version)
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
    let bad = |e: der::Error| TpmError::input("certificate", "DER or PEM X.509", e.to_string());
    if input.trim_ascii_start().starts_with(b"-----BEGIN") {
        Certificate::load_pem_chain(input)
            .map_err(bad)?
            .iter()
            .map(|c| c.to_der().map_err(bad))
            .collect()
    } else {
        Certificate::from_der(input).map_err(bad)?;
        Ok(vec![input.to_vec()])
    }
}

struct Cert<'a> {
    der: &'a [u8],
    cert: Certificate,
    tbs: &'a [u8],
    subject: Vec<u8>,
    issuer: Vec<u8>,
    label: String,
}

impl<'a> Cert<'a> {
    fn parse(der: &'a [u8], role: &str) -> Result<Self, String> {
        let cert = Certificate::from_der(der)
            .map_err(|e| format!("{role}: expected a DER X.509 certificate, found {e}"))?;
        let tbs = tbs_bytes(der)
            .ok_or_else(|| format!("{role}: expected a TBSCertificate, found none"))?;
        let enc = |n: &x509_cert::name::Name| n.to_der().unwrap_or_default();
        let subject = enc(&cert.tbs_certificate.subject);
        let issuer = enc(&cert.tbs_certificate.issuer);
        let name = cert.tbs_certificate.subject.to_string();
        let label = if name.is_empty() {
            format!("{role} (serial {})", cert.tbs_certificate.serial_number)
        } else {
            format!("{role} \"{name}\"")
        };
        Ok(Self {
            der,
            cert,
            tbs,
            subject,
            issuer,
            label,
        })
    }

    fn key(&self) -> Result<VerifyingKey, String> {
        let spki = self
            .cert
            .tbs_certificate
            .subject_public_key_info
            .to_der()
            .map_err(|e| format!("{}: public key: {e}", self.label))?;
        VerifyingKey::from_spki_der(&spki).map_err(|e| format!("{}: {e}", self.label))
    }

    fn extension(&self, oid: &str) -> Option<&x509_cert::ext::Extension> {
        self.cert
            .tbs_certificate
            .extensions
            .as_ref()?
            .iter()
            .find(|e| e.extn_id.to_string() == oid)
    }
}

/// The TBSCertificate exactly as it appears in `der` (what the issuer signed).
fn tbs_bytes(der: &[u8]) -> Option<&[u8]> {
    let mut r = der::SliceReader::new(der).ok()?;
    der::Header::decode(&mut r).ok()?;
    let start = usize::try_from(r.position()).ok()?;
    let header = der::Header::decode(&mut r).ok()?;
    let header_len = usize::try_from(r.position()).ok()? - start;
    let body = usize::try_from(header.length).ok()?;
    der.get(start..start.checked_add(header_len)?.checked_add(body)?)
}

/// Verifies `child`'s signature under `issuer`'s key.
fn check_signature(child: &Cert<'_>, issuer: &Cert<'_>) -> Result<(), String> {
    let outer = &child.cert.signature_algorithm;
    if outer != &child.cert.tbs_certificate.signature {
        return Err(format!(
            "{}: expected the same signature algorithm inside and outside the TBSCertificate, found {} and {}",
            child.label, child.cert.tbs_certificate.signature.oid, outer.oid
        ));
    }
    let sig = child
        .cert
        .signature
        .as_bytes()
        .ok_or_else(|| format!("{}: signature is not a whole number of bytes", child.label))?;
    let (scheme, hash) = match outer.oid.to_string().as_str() {
        "1.2.840.113549.1.1.11" => (SigScheme::RsaSsa, HashAlg::Sha256),
        "1.2.840.113549.1.1.12" => (SigScheme::RsaSsa, HashAlg::Sha384),
        "1.2.840.113549.1.1.13" => (SigScheme::RsaSsa, HashAlg::Sha512),
        "1.2.840.10045.4.3.2" => (SigScheme::EcDsa, HashAlg::Sha256),
        "1.2.840.10045.4.3.3" => (SigScheme::EcDsa, HashAlg::Sha384),
        other => {
            return Err(format!(
                "{}: expected an RSA PKCS#1 v1.5 (SHA-256/384/512) or ECDSA (SHA-256/384) signature, found algorithm {other}",
                child.label
            ));
        }
    };
    let value = match scheme {
        SigScheme::EcDsa => {
            let (r, s) = ecdsa_der(sig)
                .ok_or_else(|| format!("{}: expected a DER ECDSA signature", child.label))?;
            SignatureValue::Ecc { r, s }
        }
        _ => SignatureValue::Rsa(sig.to_vec()),
    };
    let t = TpmSignature {
        scheme,
        hash,
        value,
        raw: true,
    };
    let key = issuer.key()?;
    t.verify_as(&child.label, &key, child.tbs)
        .map_err(|e| format!("{e} (issuer {})", issuer.label))
}

/// r and s of a DER `ECDSA-Sig-Value`, without leading zeros.
fn ecdsa_der(sig: &[u8]) -> Option<(Vec<u8>, Vec<u8>)> {
    #[derive(der::Sequence)]
    struct EcdsaSig<'a> {
        r: der::asn1::UintRef<'a>,
        s: der::asn1::UintRef<'a>,
    }
    let v = EcdsaSig::from_der(sig).ok()?;
    Some((v.r.as_bytes().to_vec(), v.s.as_bytes().to_vec()))
}

/// Finds a path from `child` to a root: each step an issuer whose subject is the child's issuer and
/// whose key verifies the child. Records why candidates failed.
fn build<'c>(
    child: &'c Cert<'c>,
    intermediates: &'c [Cert<'c>],
    roots: &'c [Cert<'c>],
    depth: usize,
    tried: &mut Vec<String>,
) -> Option<Vec<&'c Cert<'c>>> {
    if depth >= MAX_DEPTH {
        return None;
    }
    for root in roots.iter().filter(|r| r.subject == child.issuer) {
        match check_signature(child, root) {
            Ok(()) => return Some(vec![root]),
            Err(e) => tried.push(e),
        }
    }
    for next in intermediates
        .iter()
        .filter(|c| c.subject == child.issuer && c.der != child.der)
    {
        match check_signature(child, next) {
            Ok(()) => {
                if let Some(mut rest) = build(next, intermediates, roots, depth + 1, tried) {
                    rest.insert(0, next);
                    return Some(rest);
                }
            }
            Err(e) => tried.push(e),
        }
    }
    None
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
    let mut out = CertAppraisal::default();
    let leaf = match Cert::parse(cert_der, "AK certificate") {
        Ok(c) => c,
        Err(e) => {
            out.reasons.push(e);
            return out;
        }
    };
    let mut inter = Vec::new();
    for (i, der) in intermediates.iter().enumerate() {
        match Cert::parse(der.as_ref(), &format!("intermediate #{i}")) {
            Ok(c) => inter.push(c),
            Err(e) => out.reasons.push(e),
        }
    }
    let mut trusted = Vec::new();
    for (i, der) in roots.iter().enumerate() {
        match Cert::parse(der.as_ref(), &format!("root #{i}")) {
            Ok(c) => trusted.push(c),
            Err(e) => out.reasons.push(e),
        }
    }
    match leaf.key() {
        Ok(k) if same_key(&k, ak) => {}
        Ok(k) => out.reasons.push(format!(
            "AK certificate: expected the AK's {} key, found another {} key",
            ak.describe(),
            k.describe()
        )),
        Err(e) => out.reasons.push(e),
    }
    let now = at
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or(Duration::ZERO);
    let mut tried = Vec::new();
    let path = build(&leaf, &inter, &trusted, 1, &mut tried);
    let Some(issuers) = path else {
        check_cert(&leaf, now, &mut out.reasons);
        out.reasons.push(format!(
            "AK certificate: expected a chain to a trusted root, found none from issuer \"{}\"{}",
            leaf.cert.tbs_certificate.issuer,
            if tried.is_empty() {
                String::new()
            } else {
                format!(" ({})", tried.join("; "))
            }
        ));
        return out;
    };
    let mut chain = vec![&leaf];
    chain.extend(issuers);
    for (i, c) in chain.iter().enumerate() {
        check_cert(c, now, &mut out.reasons);
        if i > 0 {
            check_issuer(c, i - 1, &mut out.reasons);
        }
    }
    out.path = chain.iter().map(|c| c.label.clone()).collect();
    out
}

/// Validity at `now` and critical extensions.
fn check_cert(c: &Cert<'_>, now: Duration, reasons: &mut Vec<String>) {
    let v = &c.cert.tbs_certificate.validity;
    let (from, to) = (
        v.not_before.to_unix_duration(),
        v.not_after.to_unix_duration(),
    );
    if now < from || now > to {
        reasons.push(format!(
            "{}: expected validity {} to {} to include {}s after the epoch, found it outside",
            c.label,
            v.not_before,
            v.not_after,
            now.as_secs()
        ));
    }
    for e in c.cert.tbs_certificate.extensions.iter().flatten() {
        let oid = e.extn_id.to_string();
        if e.critical && !KNOWN_CRITICAL.contains(&oid.as_str()) {
            reasons.push(format!(
                "{}: expected only understood critical extensions, found critical {oid}",
                c.label
            ));
        }
    }
}

/// An issuer `below` intermediate CAs above the leaf must be a CA allowed that path length.
fn check_issuer(c: &Cert<'_>, below: usize, reasons: &mut Vec<String>) {
    use x509_cert::ext::pkix::{BasicConstraints, KeyUsage};
    match c
        .extension(OID_BASIC_CONSTRAINTS)
        .map(|e| BasicConstraints::from_der(e.extn_value.as_bytes()))
    {
        Some(Ok(bc)) if bc.ca => {
            if let Some(max) = bc.path_len_constraint {
                if below > usize::from(max) {
                    reasons.push(format!(
                        "{}: expected at most {max} intermediate CAs below it (pathLenConstraint), found {below}",
                        c.label
                    ));
                }
            }
        }
        Some(Ok(_)) => reasons.push(format!(
            "{}: expected basicConstraints cA TRUE on an issuer, found FALSE",
            c.label
        )),
        Some(Err(e)) => reasons.push(format!("{}: basicConstraints: {e}", c.label)),
        None => reasons.push(format!(
            "{}: expected basicConstraints cA TRUE on an issuer, found no basicConstraints",
            c.label
        )),
    }
    match c
        .extension(OID_KEY_USAGE)
        .map(|e| KeyUsage::from_der(e.extn_value.as_bytes()))
    {
        Some(Ok(ku)) if !ku.key_cert_sign() => reasons.push(format!(
            "{}: expected keyUsage keyCertSign on an issuer, found {:?}",
            c.label, ku.0
        )),
        Some(Err(e)) => reasons.push(format!("{}: keyUsage: {e}", c.label)),
        _ => {}
    }
}
