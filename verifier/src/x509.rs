//! X.509 certificate path validation (RFC 5280 §6), the subset attestation roots need: a TPM
//! vendor's or cloud's AK/EK CA, AMD's ARK → ASK/ASVK → VCEK/VLEK, the AWS Nitro root → the
//! enclave's leaf. Pure: the trust anchors, the intermediates, the CRLs and the time are inputs.
//!
//! Checked on every link: the issuer's subject is the child's issuer (byte-exact DER names), the
//! child's signature verifies under the issuer's key (RSA PKCS#1 v1.5 with SHA-256/384/512,
//! RSASSA-PSS with SHA-256/384/512 and a salt as long as the hash, ECDSA P-256/P-384 with
//! SHA-256/384; aws-lc-rs), the signature algorithm inside and outside the TBS agree, every issuer
//! is a CA (basicConstraints cA, keyCertSign when keyUsage is present, pathLenConstraint), every
//! certificate is valid at the given time, no certificate carries a critical extension the caller
//! does not understand, and no certificate is listed in a CRL its issuer signed (RFC 5280 §6.3).

use aws_lc_rs::signature::{self as sig, UnparsedPublicKey, VerificationAlgorithm};
use der::{Decode, Encode, Reader as _};
use secllama_protocol::x690;
use std::time::{Duration, SystemTime};
use x509_cert::Certificate;
use x509_cert::crl::CertificateList;
use x509_cert::spki::SubjectPublicKeyInfoOwned;

/// Longest chain searched, leaf and root included.
const MAX_DEPTH: usize = 8;
/// Largest certificate or CRL accepted, bytes.
pub const MAX_CERT_LEN: usize = 64 * 1024;

/// basicConstraints.
pub const OID_BASIC_CONSTRAINTS: &str = "2.5.29.19";
/// keyUsage.
pub const OID_KEY_USAGE: &str = "2.5.29.15";
/// Critical extensions every caller understands.
const ALWAYS_KNOWN: [&str; 2] = [OID_BASIC_CONSTRAINTS, OID_KEY_USAGE];

/// Most certificates one PEM input may hold (a VCEK chain is 3, a bundle of roots a few more).
pub const MAX_PEM_CERTIFICATES: usize = 64;

/// Reads certificates from DER (one) or PEM (one to [`MAX_PEM_CERTIFICATES`] `CERTIFICATE`
/// blocks); returns DER. The PEM armour is read by [`secllama_protocol::pem`] (strict, one pass)
/// and each block's DER parsed on its own — not by `x509_cert`'s `load_pem_chain`, whose PEM
/// reader (`der` 0.7) loops forever on some inputs (issue 16: a block whose body is `MA==`).
///
/// # Errors
/// A message saying what was expected and found.
pub fn load_certificates(input: &[u8]) -> Result<Vec<Vec<u8>>, String> {
    if input.trim_ascii_start().starts_with(b"-----BEGIN") {
        let blocks = secllama_protocol::pem::blocks(input, "CERTIFICATE", MAX_PEM_CERTIFICATES)
            .map_err(|e| format!("expected PEM X.509 certificates: {e}"))?;
        for (n, der) in blocks.iter().enumerate() {
            let block = format!("PEM block {}", n + 1);
            x690::decode::<Certificate>(&block, "a DER X.509 certificate", der)
                .map_err(|e| e.to_string())?;
        }
        Ok(blocks)
    } else {
        x690::decode::<Certificate>("certificate", "DER or PEM X.509 certificates", input)
            .map_err(|e| e.to_string())?;
        Ok(vec![input.to_vec()])
    }
}

/// A parsed certificate with the bytes its issuer signed.
pub struct Cert<'a> {
    /// The whole certificate, DER.
    pub der: &'a [u8],
    /// The decoded certificate.
    pub cert: Certificate,
    tbs: &'a [u8],
    subject: Vec<u8>,
    issuer: Vec<u8>,
    /// What the certificate is (`VCEK`, `root #0`), for messages.
    role: String,
}

impl<'a> Cert<'a> {
    /// Parses `der`, naming it `role` in messages.
    ///
    /// # Errors
    /// Not a DER certificate.
    pub fn parse(der: &'a [u8], role: &str) -> Result<Self, String> {
        if der.len() > MAX_CERT_LEN {
            return Err(format!(
                "{role}: expected at most {MAX_CERT_LEN} bytes, found {}",
                der.len()
            ));
        }
        let cert = x690::decode::<Certificate>(role, "a DER X.509 certificate", der)
            .map_err(|e| e.to_string())?;
        let tbs = signed_part(der)
            .ok_or_else(|| format!("{role}: expected a TBSCertificate, found none"))?;
        let enc = |n: &x509_cert::name::Name| n.to_der().unwrap_or_default();
        let subject = enc(&cert.tbs_certificate.subject);
        let issuer = enc(&cert.tbs_certificate.issuer);
        Ok(Self {
            der,
            cert,
            tbs,
            subject,
            issuer,
            role: role.to_string(),
        })
    }

    /// `role "subject"` (or the serial number when the subject is empty), for messages: computed
    /// only when needed (naming attributes is a lookup per attribute).
    pub fn label(&self) -> String {
        let name = self.cert.tbs_certificate.subject.to_string();
        if name.is_empty() {
            format!(
                "{} (serial {})",
                self.role, self.cert.tbs_certificate.serial_number
            )
        } else {
            format!("{} \"{name}\"", self.role)
        }
    }

    /// The subject public key.
    pub fn spki(&self) -> &SubjectPublicKeyInfoOwned {
        &self.cert.tbs_certificate.subject_public_key_info
    }

    /// The extension `oid`, if present.
    pub fn extension(&self, oid: &str) -> Option<&x509_cert::ext::Extension> {
        self.cert
            .tbs_certificate
            .extensions
            .as_ref()?
            .iter()
            .find(|e| e.extn_id.to_string() == oid)
    }

    /// Whether this certificate's subject and key produced `other`'s signature.
    fn issued(&self, other: &Cert<'_>) -> Result<(), String> {
        check_signature(other, self)
    }
}

/// The first element of a SIGNED{…} structure exactly as it appears in `der` (what was signed).
fn signed_part(der: &[u8]) -> Option<&[u8]> {
    let mut r = der::SliceReader::new(der).ok()?;
    der::Header::decode(&mut r).ok()?;
    let start = usize::try_from(r.position()).ok()?;
    let header = der::Header::decode(&mut r).ok()?;
    let header_len = usize::try_from(r.position()).ok()? - start;
    let body = usize::try_from(header.length).ok()?;
    der.get(start..start.checked_add(header_len)?.checked_add(body)?)
}

/// Verifies `signature` over `message` with the algorithm `alg` under `key`.
///
/// # Errors
/// An unsupported algorithm or key, or a signature that does not verify.
pub fn verify_signature(
    alg: &x509_cert::spki::AlgorithmIdentifierOwned,
    key: &SubjectPublicKeyInfoOwned,
    message: &[u8],
    signature: &[u8],
) -> Result<(), String> {
    let oid = alg.oid.to_string();
    let algorithm: &'static dyn VerificationAlgorithm = match oid.as_str() {
        "1.2.840.113549.1.1.11" => &sig::RSA_PKCS1_2048_8192_SHA256,
        "1.2.840.113549.1.1.12" => &sig::RSA_PKCS1_2048_8192_SHA384,
        "1.2.840.113549.1.1.13" => &sig::RSA_PKCS1_2048_8192_SHA512,
        "1.2.840.113549.1.1.10" => pss_algorithm(alg)?,
        "1.2.840.10045.4.3.2" | "1.2.840.10045.4.3.3" => {
            let curve = key
                .algorithm
                .parameters
                .as_ref()
                .and_then(|p| p.decode_as::<der::asn1::ObjectIdentifier>().ok())
                .map(|o| o.to_string())
                .unwrap_or_default();
            match (oid.as_str(), curve.as_str()) {
                ("1.2.840.10045.4.3.2", "1.2.840.10045.3.1.7") => &sig::ECDSA_P256_SHA256_ASN1,
                ("1.2.840.10045.4.3.3", "1.2.840.10045.3.1.7") => &sig::ECDSA_P256_SHA384_ASN1,
                ("1.2.840.10045.4.3.2", "1.3.132.0.34") => &sig::ECDSA_P384_SHA256_ASN1,
                ("1.2.840.10045.4.3.3", "1.3.132.0.34") => &sig::ECDSA_P384_SHA384_ASN1,
                _ => {
                    return Err(format!(
                        "expected an issuer key on P-256 or P-384, found curve {curve:?}"
                    ));
                }
            }
        }
        other => {
            return Err(format!(
                "expected an RSA PKCS#1 v1.5, RSASSA-PSS or ECDSA signature (SHA-256/384/512), found algorithm {other}"
            ));
        }
    };
    let key_bits = key
        .subject_public_key
        .as_bytes()
        .ok_or("issuer key is not a whole number of bytes")?;
    UnparsedPublicKey::new(algorithm, key_bits)
        .verify(message, signature)
        .map_err(|_| "signature does not verify under the issuer's key".to_string())
}

/// The aws-lc-rs algorithm for RSASSA-PSS parameters (RFC 4055 §3.1): MGF1 with the same hash
/// and a salt as long as the hash.
fn pss_algorithm(
    alg: &x509_cert::spki::AlgorithmIdentifierOwned,
) -> Result<&'static dyn VerificationAlgorithm, String> {
    let params = alg
        .parameters
        .as_ref()
        .ok_or("RSASSA-PSS: expected parameters, found none")?;
    let p: pkcs1::RsaPssParams<'_> = params
        .decode_as()
        .map_err(|e| format!("RSASSA-PSS parameters: {e}"))?;
    let hash = p.hash.oid.to_string();
    let mgf_hash = p
        .mask_gen
        .parameters
        .as_ref()
        .map(|a| a.oid.to_string())
        .unwrap_or_default();
    let (algorithm, len): (&'static dyn VerificationAlgorithm, u8) = match hash.as_str() {
        "2.16.840.1.101.3.4.2.1" => (&sig::RSA_PSS_2048_8192_SHA256, 32),
        "2.16.840.1.101.3.4.2.2" => (&sig::RSA_PSS_2048_8192_SHA384, 48),
        "2.16.840.1.101.3.4.2.3" => (&sig::RSA_PSS_2048_8192_SHA512, 64),
        other => {
            return Err(format!(
                "RSASSA-PSS: expected SHA-256/384/512, found hash {other}"
            ));
        }
    };
    if p.mask_gen.oid.to_string() != "1.2.840.113549.1.1.8" || mgf_hash != hash {
        return Err(format!(
            "RSASSA-PSS: expected MGF1 with {hash}, found {} with {mgf_hash}",
            p.mask_gen.oid
        ));
    }
    if p.salt_len != len {
        return Err(format!(
            "RSASSA-PSS: expected a {len}-byte salt (the hash length), found {}",
            p.salt_len
        ));
    }
    Ok(algorithm)
}

/// Verifies `child`'s signature under `issuer`'s key.
fn check_signature(child: &Cert<'_>, issuer: &Cert<'_>) -> Result<(), String> {
    let outer = &child.cert.signature_algorithm;
    if outer != &child.cert.tbs_certificate.signature {
        return Err(format!(
            "{}: expected the same signature algorithm inside and outside the TBSCertificate, found {} and {}",
            child.label(),
            child.cert.tbs_certificate.signature.oid,
            outer.oid
        ));
    }
    let sig = child.cert.signature.as_bytes().ok_or_else(|| {
        format!(
            "{}: signature is not a whole number of bytes",
            child.label()
        )
    })?;
    verify_signature(outer, issuer.spki(), child.tbs, sig)
        .map_err(|e| format!("{}: {e} (issuer {})", child.label(), issuer.label()))
}

/// What [`verify_path`] found.
#[derive(Debug, Clone, Default)]
pub struct PathAppraisal {
    /// The labels from the leaf to the trusted root, when a path was found.
    pub path: Vec<String>,
    /// The DER of each certificate on the path, leaf first.
    pub certificates: Vec<Vec<u8>>,
    /// Every failed check (empty when valid).
    pub reasons: Vec<String>,
}

impl PathAppraisal {
    /// True when a path to a root was found and nothing failed.
    pub fn valid(&self) -> bool {
        !self.path.is_empty() && self.reasons.is_empty()
    }
}

/// What a path is checked against besides its certificates.
#[derive(Debug, Clone, Copy)]
pub struct PathPolicy<'a> {
    /// The time every certificate must be valid at.
    pub at: SystemTime,
    /// Critical extensions (OIDs) the caller understands besides basicConstraints and keyUsage.
    pub known_critical: &'a [&'a str],
    /// CRLs (DER); a CRL whose issuer is on the path must verify and must not list a certificate
    /// of the path.
    pub crls: &'a [Vec<u8>],
}

/// Finds a path from `leaf` (DER, named `role`) through `intermediates` to one of `roots` and
/// checks every link (see the module documentation).
pub fn verify_path(
    leaf: &[u8],
    role: &str,
    intermediates: &[impl AsRef<[u8]>],
    roots: &[impl AsRef<[u8]>],
    policy: &PathPolicy<'_>,
) -> PathAppraisal {
    let mut out = PathAppraisal::default();
    let leaf = match Cert::parse(leaf, role) {
        Ok(c) => c,
        Err(e) => {
            out.reasons.push(e);
            return out;
        }
    };
    let inter = parse_all(intermediates, "intermediate", &mut out.reasons);
    let trusted = parse_all(roots, "root", &mut out.reasons);
    let now = policy
        .at
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or(Duration::ZERO);
    let mut tried = Vec::new();
    let Some(issuers) = build(&leaf, &inter, &trusted, 1, &mut tried) else {
        check_cert(&leaf, now, policy.known_critical, &mut out.reasons);
        out.reasons.push(format!(
            "{}: expected a chain to a trusted root, found none from issuer \"{}\"{}",
            leaf.label(),
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
        check_cert(c, now, policy.known_critical, &mut out.reasons);
        if i > 0 {
            check_issuer(c, i - 1, &mut out.reasons);
        }
    }
    // A self-signed anchor's own signature too: a damaged anchor is refused rather than trusted.
    if let Some(root) = chain.last() {
        if root.subject == root.issuer && chain.len() > 1 {
            if let Err(e) = check_signature(root, root) {
                out.reasons
                    .push(format!("trust anchor self-signature: {e}"));
            }
        }
    }
    check_crls(&chain, policy, &mut out.reasons);
    out.path = chain.iter().map(|c| c.label()).collect();
    out.certificates = chain.iter().map(|c| c.der.to_vec()).collect();
    out
}

fn parse_all<'a>(
    ders: &'a [impl AsRef<[u8]>],
    what: &str,
    reasons: &mut Vec<String>,
) -> Vec<Cert<'a>> {
    let mut v = Vec::new();
    for (i, der) in ders.iter().enumerate() {
        match Cert::parse(der.as_ref(), &format!("{what} #{i}")) {
            Ok(c) => v.push(c),
            Err(e) => reasons.push(e),
        }
    }
    v
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
        if root.der == child.der {
            // A self-signed trust anchor given as the leaf: the path is the anchor itself.
            return match root.issued(child) {
                Ok(()) => Some(Vec::new()),
                Err(e) => {
                    tried.push(e);
                    None
                }
            };
        }
        match root.issued(child) {
            Ok(()) => return Some(vec![root]),
            Err(e) => tried.push(e),
        }
    }
    for next in intermediates
        .iter()
        .filter(|c| c.subject == child.issuer && c.der != child.der)
    {
        match next.issued(child) {
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

/// Validity at `now` and critical extensions.
fn check_cert(c: &Cert<'_>, now: Duration, known: &[&str], reasons: &mut Vec<String>) {
    let v = &c.cert.tbs_certificate.validity;
    let (from, to) = (
        v.not_before.to_unix_duration(),
        v.not_after.to_unix_duration(),
    );
    if now < from || now > to {
        reasons.push(format!(
            "{}: expected validity {} to {} to include {}, found it outside",
            c.label(),
            v.not_before,
            v.not_after,
            rfc3339(now)
        ));
    }
    for e in c.cert.tbs_certificate.extensions.iter().flatten() {
        let oid = e.extn_id.to_string();
        if e.critical && !ALWAYS_KNOWN.contains(&oid.as_str()) && !known.contains(&oid.as_str()) {
            reasons.push(format!(
                "{}: expected only understood critical extensions, found critical {oid}",
                c.label()
            ));
        }
    }
}

/// `now` as an RFC 3339 UTC time, with milliseconds when it has a fraction of a second.
pub fn rfc3339(now: Duration) -> String {
    let whole = der::DateTime::from_unix_duration(Duration::from_secs(now.as_secs()))
        .map(|d| d.to_string())
        .unwrap_or_else(|_| format!("{}s after the epoch", now.as_secs()));
    match now.subsec_millis() {
        0 if now.subsec_nanos() == 0 => whole,
        ms => format!("{}.{ms:03}Z", whole.trim_end_matches('Z')),
    }
}

/// An issuer `below` intermediate CAs above the leaf must be a CA allowed that path length.
fn check_issuer(c: &Cert<'_>, below: usize, reasons: &mut Vec<String>) {
    use x509_cert::ext::pkix::{BasicConstraints, KeyUsage};
    match c.extension(OID_BASIC_CONSTRAINTS).map(|e| {
        x690::decode::<BasicConstraints>("basicConstraints", "DER", e.extn_value.as_bytes())
    }) {
        Some(Ok(bc)) if bc.ca => {
            if let Some(max) = bc.path_len_constraint {
                if below > usize::from(max) {
                    reasons.push(format!(
                        "{}: expected at most {max} intermediate CAs below it (pathLenConstraint), found {below}",
                        c.label()
                    ));
                }
            }
        }
        Some(Ok(_)) => reasons.push(format!(
            "{}: expected basicConstraints cA TRUE on an issuer, found FALSE",
            c.label()
        )),
        Some(Err(e)) => reasons.push(format!("{}: {e}", c.label())),
        None => reasons.push(format!(
            "{}: expected basicConstraints cA TRUE on an issuer, found no basicConstraints",
            c.label()
        )),
    }
    match c
        .extension(OID_KEY_USAGE)
        .map(|e| x690::decode::<KeyUsage>("keyUsage", "DER", e.extn_value.as_bytes()))
    {
        Some(Ok(ku)) if !ku.key_cert_sign() => reasons.push(format!(
            "{}: expected keyUsage keyCertSign on an issuer, found {:?}",
            c.label(),
            ku.0
        )),
        Some(Err(e)) => reasons.push(format!("{}: {e}", c.label())),
        _ => {}
    }
}

/// Every CRL issued by a CA on `chain` must verify under it and must not list the certificate it
/// issued on the chain. A CRL from an issuer not on the chain is ignored (it may belong to
/// another chain appraised with the same collateral).
fn check_crls(chain: &[&Cert<'_>], policy: &PathPolicy<'_>, reasons: &mut Vec<String>) {
    for (n, der) in policy.crls.iter().enumerate() {
        let crl = match x690::decode::<CertificateList>(&format!("CRL #{n}"), "a DER CRL", der) {
            Ok(c) => c,
            Err(e) => {
                reasons.push(e.to_string());
                continue;
            }
        };
        let issuer_name = crl.tbs_cert_list.issuer.to_der().unwrap_or_default();
        for (i, issuer) in chain.iter().enumerate() {
            if issuer.subject != issuer_name {
                continue;
            }
            let signed = signed_part(der).unwrap_or_default();
            let Some(sig) = crl.signature.as_bytes() else {
                reasons.push(format!(
                    "CRL #{n}: signature is not a whole number of bytes"
                ));
                break;
            };
            if let Err(e) = verify_signature(&crl.signature_algorithm, issuer.spki(), signed, sig) {
                reasons.push(format!("CRL #{n} of {}: {e}", issuer.label()));
                break;
            }
            // The certificates this issuer signed on the path (the one below it; itself when
            // self-signed).
            let subjects = chain[..i]
                .last()
                .into_iter()
                .chain((i + 1 == chain.len() && issuer.subject == issuer.issuer).then_some(issuer));
            for c in subjects {
                let serial = &c.cert.tbs_certificate.serial_number;
                if crl
                    .tbs_cert_list
                    .revoked_certificates
                    .iter()
                    .flatten()
                    .any(|r| &r.serial_number == serial)
                {
                    reasons.push(format!(
                        "{}: revoked (serial {serial} is listed in CRL #{n} of {}, issued {})",
                        c.label(),
                        issuer.label(),
                        crl.tbs_cert_list.this_update
                    ));
                }
            }
            break;
        }
    }
}
