//! AMD SEV-SNP attestation reports (AMD SEV-SNP Firmware ABI 56860 §7.3; VCEK specification
//! 57230), appraised by [`Report`], the [`Appraiser`] of submod `snp`.
//!
//! | module | what |
//! |---|---|
//! | [`report`] | the 1184-byte `ATTESTATION_REPORT`, versions 2, 3 and 5 |
//! | [`vcek`] | VCEK/VLEK extensions, AMD's built-in ARK/ASK/ASVK per product |
//!
//! Checks, failing closed, each named in the submod: the report parses; one of the collateral's
//! certificates (VCEK or VLEK, as `KEY_INFO` says) verifies the report's ECDSA P-384 signature
//! over bytes 0x000–0x29F; it chains VCEK → ASK → ARK (VLEK → ASVK → ARK) to a built-in AMD root
//! (or the collateral's roots) valid at the appraisal time and not revoked by a given CRL; the
//! root's product agrees with the report's CPUID (version 3+); the VCEK's hwID equals the report's
//! CHIP_ID and its TCB extensions equal REPORTED_TCB. Then, against the manifest's `[snp]`:
//! MEASUREMENT = launch digest, the guest policy grants nothing more and restricts nothing less
//! (debug is never allowed unless the manifest's policy allows it), REPORTED_TCB ≥ the minimum per
//! component, VMPL, and HOST_DATA / ID_KEY_DIGEST / AUTHOR_KEY_DIGEST / product when pinned; and
//! REPORT_DATA = the context's report data (the DESIGN binding ‖ 32 zero bytes).

pub mod report;
pub mod vcek;

pub use report::{Product, REPORT_LEN, Tcb};

use crate::appraise::{Appraiser, Context};
use crate::ear::{Submod, tier};
use crate::x509::{self, PathPolicy};
use report::SigningKey;
use secllama_measurements::manifest::SnpReference;
use std::collections::BTreeMap;

/// The appraiser of SEV-SNP reports (submod `snp`): evidence = the 1184-byte report; the VCEK or
/// VLEK (and optionally ASK/ASVK) in the collateral's certificates.
#[derive(Debug, Clone, Copy, Default)]
pub struct Report;

impl Appraiser for Report {
    const KIND: &'static str = "snp";
    type Evidence = [u8];

    fn appraise(&self, evidence: &[u8], ctx: &Context<'_>) -> Submod {
        let mut a = Appraisal::default();
        a.run(evidence, ctx);
        a.finish(ctx)
    }
}

/// Guest policy bits (ABI Table 9) a report may only set when the manifest's policy does.
const GRANTS: [(u32, &str); 4] = [
    (16, "SMT"),
    (18, "MIGRATE_MA"),
    (19, "DEBUG"),
    (21, "CXL_ALLOW"),
];
/// Guest policy bits a report must set when the manifest's policy does.
const RESTRICTIONS: [(u32, &str); 5] = [
    (20, "SINGLE_SOCKET"),
    (22, "MEM_AES_256_XTS"),
    (23, "RAPL_DIS"),
    (24, "CIPHERTEXT_HIDING"),
    (25, "PAGE_SWAP_DISABLE"),
];

#[derive(Default)]
struct Appraisal {
    reasons: Vec<String>,
    passed: Vec<String>,
    vector: BTreeMap<String, i8>,
    warnings: Vec<String>,
    /// The VEK's productName extension (`Milan-B0`), when it has one.
    product_name: Option<String>,
    claims: BTreeMap<String, String>,
}

impl Appraisal {
    fn claim(&mut self, name: &str, ok: bool) {
        let t = self
            .vector
            .entry(name.to_string())
            .or_insert(tier::AFFIRMING);
        *t = (*t).max(tier::of(ok));
    }

    fn check(&mut self, claim: &str, ok: bool, pass: String, fail: String) {
        self.claim(claim, ok);
        if ok {
            self.passed.push(pass);
        } else {
            self.reasons.push(fail);
        }
    }

    fn run(&mut self, evidence: &[u8], ctx: &Context<'_>) {
        let report = match report::Report::parse(evidence) {
            Ok(r) => r,
            Err(e) => {
                self.claim("hardware", false);
                self.reasons.push(e.to_string());
                return;
            }
        };
        for (k, v) in [
            ("version", report.version.to_string()),
            ("measurement", hex::encode(report.measurement)),
            ("report_data", hex::encode(report.report_data)),
            ("policy", format!("{:#x}", report.policy)),
            ("vmpl", report.vmpl.to_string()),
            ("host_data", hex::encode(report.host_data)),
            ("chip_id", hex::encode(report.chip_id)),
            ("reported_tcb", format!("{:#018x}", report.reported_tcb)),
        ] {
            self.claims.insert(k.to_string(), v);
        }
        let Some(product) = self.endorsement(&report, ctx) else {
            return;
        };
        self.claims.insert("product".into(), product.name().into());
        self.report_data(&report, ctx.report_data);
        match ctx.manifest.and_then(|m| m.snp.as_ref()) {
            Some(reference) => self.reference(&report, product, reference),
            None => self.warnings.push(
                "no [snp] reference values: measurement, policy and TCB were not compared".into(),
            ),
        }
    }

    /// Signature, chain, product, chip ID and TCB. Returns the product when the report is
    /// authentic.
    fn endorsement(&mut self, report: &report::Report, ctx: &Context<'_>) -> Option<Product> {
        let (want_cn, role) = match report.signing_key {
            SigningKey::Vcek => ("SEV-VCEK", "VCEK"),
            SigningKey::Vlek => ("SEV-VLEK", "VLEK"),
            SigningKey::None => {
                self.claim("hardware", false);
                self.reasons.push(
                    "KEY_INFO.SIGNING_KEY: expected VCEK or VLEK, found none (an unsigned report)"
                        .into(),
                );
                return None;
            }
        };
        // The VEK: the collateral certificate whose key verifies the signature; failing that, the
        // first one named like a VEK, whose chain is still checked so every failure is reported.
        let mut tried = Vec::new();
        let mut vek = None;
        let mut named = None;
        for (i, der) in ctx.collateral.certificates.iter().enumerate() {
            let cert = match x509::Cert::parse(der, &format!("certificate #{i}")) {
                Ok(c) => c,
                Err(e) => {
                    tried.push(e);
                    continue;
                }
            };
            match verify_report_signature(report, &cert) {
                Ok(()) => {
                    vek = Some(cert);
                    break;
                }
                Err(e) => {
                    tried.push(format!("{}: {e}", cert.label()));
                    let cn = vcek::common_name(&cert).unwrap_or_default();
                    if named.is_none() && cn.starts_with("SEV-V") {
                        named = Some(cert);
                    }
                }
            }
        }
        let signed = vek.is_some();
        let Some(vek) = vek.or(named) else {
            self.claim("hardware", false);
            self.reasons.push(format!(
                "report signature: expected it to verify under the {role} (ECDSA P-384, SHA-384 over bytes 0x000-0x29F), found {}",
                if tried.is_empty() {
                    format!("no {role} certificate to check it with")
                } else {
                    tried.join("; ")
                }
            ));
            return None;
        };
        if signed {
            self.passed.push(format!(
                "report signature (ECDSA P-384) under {}",
                vek.label()
            ));
        } else {
            self.claim("hardware", false);
            self.reasons.push(format!(
                "report signature: expected it to verify under the {role} (ECDSA P-384, SHA-384 over bytes 0x000-0x29F), found {}",
                tried.join("; ")
            ));
        }
        let cn = vcek::common_name(&vek).unwrap_or_default();
        self.check(
            "hardware",
            cn == want_cn,
            format!("signing key is a {role} ({cn})"),
            format!("KEY_INFO says {role}: expected a certificate named {want_cn}, found {cn:?}"),
        );
        // The chain.
        let builtin = vcek::builtin();
        let (roots, mut intermediates) = if ctx.collateral.roots.is_empty() {
            (builtin.roots.clone(), builtin.intermediates.clone())
        } else {
            let given = vcek::Anchors::sort(ctx.collateral.roots.clone());
            (given.roots, given.intermediates)
        };
        intermediates.extend(ctx.collateral.certificates.iter().cloned());
        let path = x509::verify_path(
            vek.der,
            role,
            &intermediates,
            &roots,
            &PathPolicy {
                at: ctx.at,
                known_critical: &[],
                crls: &ctx.collateral.crls,
            },
        );
        let product = path
            .certificates
            .last()
            .and_then(|der| x509::Cert::parse(der, "ARK").ok())
            .and_then(|c| vcek::product_of(&c));
        if !path.valid() {
            self.claim("hardware", false);
            self.reasons
                .extend(path.reasons.iter().map(|r| format!("chain: {r}")));
            return None;
        }
        if !signed {
            return None;
        }
        let Some(product) = product else {
            self.claim("hardware", false);
            self.reasons.push(format!(
                "chain: expected a root named ARK-Milan, ARK-Genoa or ARK-Turin, found {}",
                path.path.last().cloned().unwrap_or_default()
            ));
            return None;
        };
        self.claim("hardware", true);
        self.passed
            .push(format!("chain: {}", path.path.join(" <- ")));
        // The ASK/ASVK must be the one for the key kind.
        let issuer_cn = path
            .certificates
            .get(1)
            .and_then(|d| x509::Cert::parse(d, "issuer").ok())
            .and_then(|c| vcek::common_name(&c))
            .unwrap_or_default();
        let want_issuer = match report.signing_key {
            SigningKey::Vlek => format!("SEV-VLEK-{}", product.name()),
            _ => format!("SEV-{}", product.name()),
        };
        self.check(
            "hardware",
            issuer_cn == want_issuer,
            format!("{role} issued by {issuer_cn}"),
            format!(
                "chain: expected the {role} to be issued by {want_issuer}, found {issuer_cn:?}"
            ),
        );
        if let Some(cpu) = report.product() {
            self.check(
                "hardware",
                cpu == product,
                format!("CPUID names {} like the chain", cpu.name()),
                format!(
                    "CPUID: the chain is for {}, the report's CPUID family/model names {}",
                    product.name(),
                    cpu.name()
                ),
            );
        } else if report.version >= 3 {
            let (f, m, _) = report.cpuid.unwrap_or_default();
            self.claim("hardware", false);
            self.reasons.push(format!(
                "CPUID: expected family 19h/1Ah of Milan, Genoa or Turin, found family {f:#x} model {m:#x}"
            ));
        }
        self.vek_extensions(report, &vek, product, role);
        Some(product)
    }

    fn vek_extensions(
        &mut self,
        report: &report::Report,
        vek: &x509::Cert<'_>,
        product: Product,
        role: &str,
    ) {
        let ext = match vcek::extensions(vek, product) {
            Ok(e) => e,
            Err(e) => {
                self.claim("instance-identity", false);
                self.reasons.push(e);
                return;
            }
        };
        self.product_name.clone_from(&ext.product_name);
        let reported = Tcb::decode(report.reported_tcb, product);
        self.check(
            "instance-identity",
            ext.tcb == reported,
            format!("{role} TCB = REPORTED_TCB ({reported})"),
            format!(
                "REPORTED_TCB: expected the {role}'s TCB ({}), found {reported}",
                ext.tcb
            ),
        );
        if report.signing_key == SigningKey::Vcek {
            match &ext.hw_id {
                Some(hw) => {
                    let chip = &report.chip_id;
                    let ok = !hw.is_empty()
                        && hw.len() <= chip.len()
                        && chip[..hw.len()] == hw[..]
                        && chip[hw.len()..].iter().all(|b| *b == 0);
                    let why = if report.mask_chip_key {
                        " (the report masks its chip ID)"
                    } else {
                        ""
                    };
                    self.check(
                        "instance-identity",
                        ok,
                        format!("VCEK hwID = CHIP_ID {}", hex::encode(hw)),
                        format!(
                            "CHIP_ID: expected the VCEK's hwID {}, found {}{why}",
                            hex::encode(hw),
                            hex::encode(chip)
                        ),
                    );
                }
                None => {
                    self.claim("instance-identity", false);
                    self.reasons.push(
                        "VCEK: expected a hwID extension (1.3.6.1.4.1.3704.1.4), found none".into(),
                    );
                }
            }
        } else if let Some(csp) = &ext.csp_id {
            self.passed.push(format!("VLEK of cloud provider {csp}"));
        }
    }

    fn report_data(&mut self, report: &report::Report, want: Option<&[u8]>) {
        match want {
            Some(want) => {
                let mut padded = [0u8; 64];
                let n = want.len().min(64);
                padded[..n].copy_from_slice(&want[..n]);
                let ok = want.len() <= 64 && padded == report.report_data;
                self.check(
                    "instance-identity",
                    ok,
                    "REPORT_DATA = expected report data".into(),
                    format!(
                        "REPORT_DATA: expected {}, found {}",
                        hex::encode(padded),
                        hex::encode(report.report_data)
                    ),
                );
            }
            None => self
                .warnings
                .push("no expected report data: freshness and key binding were not checked".into()),
        }
    }

    fn reference(&mut self, report: &report::Report, product: Product, r: &SnpReference) {
        let want = r.launch_digest.to_ascii_lowercase();
        let found = hex::encode(report.measurement);
        self.check(
            "executables",
            want == found,
            format!("MEASUREMENT = launch digest {found}"),
            format!("MEASUREMENT: expected launch digest {want}, found {found}"),
        );
        self.policy(report.policy, &r.guest_policy);
        let min = &r.min_tcb;
        let got = Tcb::decode(report.reported_tcb, product);
        for (name, have, need) in [
            ("fmc", got.fmc, min.fmc),
            ("bootloader", got.bootloader, min.bootloader),
            ("tee", got.tee, min.tee),
            ("snp", got.snp, min.snp),
            ("microcode", got.microcode, min.microcode),
        ] {
            self.check(
                "configuration",
                have >= need,
                format!("REPORTED_TCB.{name} {have} >= {need}"),
                format!("REPORTED_TCB.{name}: expected at least {need}, found {have}"),
            );
        }
        self.check(
            "configuration",
            report.vmpl == r.vmpl,
            format!("VMPL {}", report.vmpl),
            format!("VMPL: expected {}, found {}", r.vmpl, report.vmpl),
        );
        for (name, pinned, found) in [
            ("HOST_DATA", &r.host_data, &report.host_data[..]),
            ("ID_KEY_DIGEST", &r.id_key_digest, &report.id_key_digest[..]),
            (
                "AUTHOR_KEY_DIGEST",
                &r.author_key_digest,
                &report.author_key_digest[..],
            ),
        ] {
            if let Some(want) = pinned {
                let want = want.to_ascii_lowercase();
                let found = hex::encode(found);
                self.check(
                    "configuration",
                    want == found,
                    format!("{name} = {found}"),
                    format!("{name}: expected {want}, found {found}"),
                );
            }
        }
        if let Some(p) = &r.product {
            // `Milan` pins the product line (the chain's ARK); `Milan-B0` also the stepping (the
            // VEK's productName).
            let (found, what) = if p.contains('-') {
                (
                    self.product_name.clone().unwrap_or_default(),
                    "the VEK's productName",
                )
            } else {
                (product.name().to_string(), "the chain's ARK")
            };
            self.check(
                "hardware",
                p.eq_ignore_ascii_case(&found),
                format!("product {found}"),
                format!("product: expected {p}, found {found:?} ({what})"),
            );
        }
    }

    fn policy(&mut self, found: u64, reference: &str) {
        let Ok(want) = u64::from_str_radix(reference.trim_start_matches("0x"), 16) else {
            self.claim("configuration", false);
            self.reasons.push(format!(
                "snp.guest_policy: expected hex, found {reference:?}"
            ));
            return;
        };
        let bit = |v: u64, b: u32| v >> b & 1 == 1;
        let mut ok = true;
        for (b, name) in GRANTS {
            if bit(found, b) && !bit(want, b) {
                ok = false;
                self.reasons.push(format!(
                    "POLICY.{name}: the report's policy {found:#x} allows it, the manifest's {want:#x} does not"
                ));
            }
        }
        for (b, name) in RESTRICTIONS {
            if bit(want, b) && !bit(found, b) {
                ok = false;
                self.reasons.push(format!(
                    "POLICY.{name}: the manifest's policy {want:#x} requires it, the report's {found:#x} lacks it"
                ));
            }
        }
        let abi = |v: u64| (v >> 8 & 0xff, v & 0xff);
        if abi(found) < abi(want) {
            ok = false;
            self.reasons.push(format!(
                "POLICY.ABI: expected at least {}.{}, found {}.{}",
                abi(want).0,
                abi(want).1,
                abi(found).0,
                abi(found).1
            ));
        }
        self.claim("configuration", ok);
        if ok {
            self.passed.push(format!(
                "POLICY {found:#x} within the manifest's {want:#x} (debug {})",
                if bit(found, 19) { "allowed" } else { "off" }
            ));
        }
    }

    fn finish(self, ctx: &Context<'_>) -> Submod {
        crate::ear::Checks {
            failed: self.reasons,
            notes: self.warnings,
            passed: self.passed,
            trust_vector: self.vector,
            claims: self.claims,
        }
        .into_submod(ctx.manifest.is_some_and(|m| m.required.snp))
    }
}

/// Verifies the report's signature under `cert`'s P-384 key.
fn verify_report_signature(report: &report::Report, cert: &x509::Cert<'_>) -> Result<(), String> {
    let spki = cert.spki();
    let curve = spki
        .algorithm
        .parameters
        .as_ref()
        .and_then(|p| p.decode_as::<der::asn1::ObjectIdentifier>().ok())
        .map(|o| o.to_string())
        .unwrap_or_default();
    if spki.algorithm.oid.to_string() != "1.2.840.10045.2.1" || curve != "1.3.132.0.34" {
        return Err("expected a P-384 key, found another kind".into());
    }
    let point = spki
        .subject_public_key
        .as_bytes()
        .ok_or("key is not a whole number of bytes")?;
    let mut sig = [0u8; 96];
    sig[..48].copy_from_slice(&report.signature.0);
    sig[48..].copy_from_slice(&report.signature.1);
    aws_lc_rs::signature::UnparsedPublicKey::new(
        &aws_lc_rs::signature::ECDSA_P384_SHA384_FIXED,
        point,
    )
    .verify(report.signed(), &sig)
    .map_err(|_| "the signature does not verify under this key".to_string())
}
