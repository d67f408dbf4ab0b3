//! Versioned endorsement key certificates (AMD "Versioned Chip Endorsement Key (VCEK) Certificate
//! and KDS Interface Specification" 57230, §3 "Certificate extensions") and AMD's built-in roots.
//!
//! A VCEK certifies a chip's P-384 key for one TCB: its extensions carry the TCB's SPLs
//! (`1.3.6.1.4.1.3704.1.3.*`) and the chip's hardware ID (`…1.4`, 64 bytes; 8 bytes on Turin). A
//! VLEK certifies a cloud provider's key for a TCB and carries the provider's ID (`…1.5`) instead.
//! Chains: VCEK ← ASK (`SEV-<product>`) ← ARK (`ARK-<product>`); VLEK ← ASVK
//! (`SEV-VLEK-<product>`) ← ARK. All RSASSA-PSS SHA-384.
//!
//! The built-in bundles (ASK, ARK, ASVK per product, from confidential-containers/trustee
//! `deps/verifier/src/snp/*_ask_ark_asvk.pem`; digests in `docs/attestation-result.md`) are compiled
//! in: only the ARKs are trust anchors, the ASK and ASVK are intermediates that must chain to them.

use super::report::{Product, Tcb};
use crate::x509;
use secllama_protocol::x690;
use std::sync::OnceLock;

/// AMD's bundles per product: ASK, ARK and ASVK, PEM.
pub const BUILTIN: [(Product, &str, &[u8]); 3] = [
    (
        Product::Milan,
        "milan_ask_ark_asvk.pem",
        include_bytes!("roots/milan_ask_ark_asvk.pem"),
    ),
    (
        Product::Genoa,
        "genoa_ask_ark_asvk.pem",
        include_bytes!("roots/genoa_ask_ark_asvk.pem"),
    ),
    (
        Product::Turin,
        "turin_ask_ark_asvk.pem",
        include_bytes!("roots/turin_ask_ark_asvk.pem"),
    ),
];

/// Trust anchors (ARKs) and intermediates (ASKs, ASVKs), DER.
#[derive(Debug, Clone, Default)]
pub struct Anchors {
    /// Self-signed roots.
    pub roots: Vec<Vec<u8>>,
    /// Everything else.
    pub intermediates: Vec<Vec<u8>>,
}

impl Anchors {
    /// Sorts `certs` into self-signed roots and intermediates.
    pub fn sort(certs: Vec<Vec<u8>>) -> Self {
        let mut out = Self::default();
        for der in certs {
            let self_signed = x690::parse::<x509_cert::Certificate>(&der)
                .map(|c| c.tbs_certificate.subject == c.tbs_certificate.issuer)
                .unwrap_or(false);
            if self_signed {
                out.roots.push(der);
            } else {
                out.intermediates.push(der);
            }
        }
        out
    }
}

/// The built-in anchors, parsed once.
pub fn builtin() -> &'static Anchors {
    static ANCHORS: OnceLock<Anchors> = OnceLock::new();
    ANCHORS.get_or_init(|| {
        Anchors::sort(
            BUILTIN
                .iter()
                .flat_map(|(_, _, pem)| x509::load_certificates(pem).unwrap_or_default())
                .collect(),
        )
    })
}

/// The product an ARK or ASK/ASVK names in its common name (`ARK-Milan`, `SEV-VLEK-Genoa`).
pub fn product_of(cert: &x509::Cert<'_>) -> Option<Product> {
    let cn = common_name(cert)?;
    let name = cn.rsplit('-').next()?;
    Product::from_name(name)
}

/// The subject common name.
pub fn common_name(cert: &x509::Cert<'_>) -> Option<String> {
    cert.cert
        .tbs_certificate
        .subject
        .0
        .iter()
        .flat_map(|rdn| rdn.0.iter())
        .find(|atv| atv.oid.to_string() == "2.5.4.3")
        .and_then(|atv| {
            atv.value
                .decode_as::<der::asn1::PrintableStringRef<'_>>()
                .map(|s| s.to_string())
                .or_else(|_| atv.value.decode_as::<String>())
                .or_else(|_| {
                    atv.value
                        .decode_as::<der::asn1::Ia5StringRef<'_>>()
                        .map(|s| s.to_string())
                })
                .ok()
        })
}

const OID_SPL: &str = "1.3.6.1.4.1.3704.1.3";
const OID_HWID: &str = "1.3.6.1.4.1.3704.1.4";
const OID_CSP_ID: &str = "1.3.6.1.4.1.3704.1.5";
const OID_PRODUCT_NAME: &str = "1.3.6.1.4.1.3704.1.2";

/// The extensions of a VCEK or VLEK.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VekExtensions {
    /// `productName` (e.g. `Milan-B0`), when present.
    pub product_name: Option<String>,
    /// The TCB the key was derived for.
    pub tcb: Tcb,
    /// `hwID` (VCEK only).
    pub hw_id: Option<Vec<u8>>,
    /// `cspId` (VLEK only).
    pub csp_id: Option<String>,
}

/// An extension value holding a DER INTEGER 0–255 (as `02 01 xx` or `02 02 00 xx`).
fn spl(cert: &x509::Cert<'_>, oid: &str, name: &str) -> Result<Option<u8>, String> {
    let Some(e) = cert.extension(oid) else {
        return Ok(None);
    };
    let what = format!("VEK extension {name} ({oid})");
    x690::decode::<u8>(&what, "an INTEGER 0–255", e.extn_value.as_bytes())
        .map(Some)
        .map_err(|err| err.to_string())
}

/// Reads the VCEK/VLEK extensions of `cert` for `product` (whose TCB layout applies).
///
/// # Errors
/// A required SPL missing or malformed.
pub fn extensions(cert: &x509::Cert<'_>, product: Product) -> Result<VekExtensions, String> {
    let need = |n: u8, name: &str| -> Result<u8, String> {
        spl(cert, &format!("{OID_SPL}.{n}"), name)?
            .ok_or_else(|| format!("VEK: expected extension {name} ({OID_SPL}.{n}), found none"))
    };
    let tcb = Tcb {
        fmc: match product {
            Product::Turin => need(9, "fmcSPL")?,
            _ => 0,
        },
        bootloader: need(1, "blSPL")?,
        tee: need(2, "teeSPL")?,
        snp: need(3, "snpSPL")?,
        microcode: need(8, "ucodeSPL")?,
    };
    // hwID: an OCTET STRING, or (older KDS certificates) the raw bytes.
    let hw_id = cert.extension(OID_HWID).map(|e| {
        let v = e.extn_value.as_bytes();
        x690::parse::<der::asn1::OctetString>(v)
            .map(|o| o.as_bytes().to_vec())
            .unwrap_or_else(|_| v.to_vec())
    });
    let text = |oid: &str| {
        cert.extension(oid).map(|e| {
            let v = e.extn_value.as_bytes();
            x690::parse::<der::asn1::Ia5StringRef<'_>>(v)
                .map(|s| s.to_string())
                .or_else(|_| x690::parse::<String>(v))
                .unwrap_or_else(|_| String::from_utf8_lossy(v).into_owned())
        })
    };
    Ok(VekExtensions {
        product_name: text(OID_PRODUCT_NAME),
        tcb,
        hw_id,
        csp_id: text(OID_CSP_ID),
    })
}
