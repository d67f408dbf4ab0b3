//! The Azure HCL (host compatibility layer) attestation report, as the vTPM's NV index 0x01400001
//! holds it: a 32-byte header (`HCLA`, version, size, request type, status), the 1184-byte SEV-SNP
//! report at offset 32, the IGVM request data at 1216 (u32 data size, version, report type,
//! report-data hash type, variable-data size, little-endian) and the variable data (runtime
//! claims, JSON) at 1236.

use crate::snp::REPORT_LEN;
use sha2::Digest;

const HEADER_LEN: usize = 32;
const SNP_AT: usize = HEADER_LEN;
const IGVM_AT: usize = SNP_AT + REPORT_LEN;
const VAR_AT: usize = IGVM_AT + 20;
/// IGVM report type: SEV-SNP.
const REPORT_TYPE_SNP: u32 = 2;

/// A parsed HCL report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HclReport {
    /// The SNP report.
    pub snp_report: Vec<u8>,
    /// The report-data hash type: 1 SHA-256, 2 SHA-384, 3 SHA-512.
    pub hash_type: u32,
    /// The variable data (runtime claims JSON).
    pub var_data: Vec<u8>,
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

impl HclReport {
    /// Parses an HCL report; bytes after the variable data (the NV index's fill) are ignored.
    ///
    /// # Errors
    /// A message saying which field was expected and what was found.
    pub fn parse(b: &[u8]) -> Result<Self, String> {
        if b.len() < VAR_AT {
            return Err(format!(
                "HCL report: expected at least {VAR_AT} bytes, found {}",
                b.len()
            ));
        }
        if &b[..4] != b"HCLA" {
            return Err(format!(
                "HCL report: expected the signature HCLA, found {}",
                hex::encode(&b[..4])
            ));
        }
        let report_type = u32_at(b, IGVM_AT + 8);
        if report_type != REPORT_TYPE_SNP {
            return Err(format!(
                "HCL report: expected report type 2 (SEV-SNP), found {report_type}"
            ));
        }
        let hash_type = u32_at(b, IGVM_AT + 12);
        if !(1..=3).contains(&hash_type) {
            return Err(format!(
                "HCL report: expected hash type 1, 2 or 3 (SHA-256/384/512), found {hash_type}"
            ));
        }
        let size = u32_at(b, IGVM_AT + 16) as usize;
        let var_data = b
            .get(VAR_AT..VAR_AT.saturating_add(size))
            .ok_or_else(|| {
                format!(
                    "HCL report: expected {size} bytes of variable data at {VAR_AT}, found {}",
                    b.len() - VAR_AT
                )
            })?
            .to_vec();
        Ok(Self {
            snp_report: b[SNP_AT..IGVM_AT].to_vec(),
            hash_type,
            var_data,
        })
    }

    /// The hash of the variable data the SNP report's REPORT_DATA must start with.
    pub fn var_data_hash(&self) -> Vec<u8> {
        match self.hash_type {
            2 => sha2::Sha384::digest(&self.var_data).to_vec(),
            3 => sha2::Sha512::digest(&self.var_data).to_vec(),
            _ => sha2::Sha256::digest(&self.var_data).to_vec(),
        }
    }

    /// `SHA-256`, `SHA-384` or `SHA-512`.
    pub fn hash_name(&self) -> &'static str {
        match self.hash_type {
            2 => "SHA-384",
            3 => "SHA-512",
            _ => "SHA-256",
        }
    }

    /// The JWK with `kid` `HCLAkPub` in the variable data, as JSON text.
    ///
    /// # Errors
    /// Variable data that is not JSON or has no such key.
    pub fn ak_jwk(&self) -> Result<String, String> {
        let v: serde_json::Value = serde_json::from_slice(&self.var_data)
            .map_err(|e| format!("HCL variable data: expected JSON, found {e}"))?;
        v.get("keys")
            .and_then(|k| k.as_array())
            .and_then(|keys| keys.iter().find(|k| k["kid"] == "HCLAkPub"))
            .map(|k| k.to_string())
            .ok_or_else(|| {
                "HCL variable data: expected a key with kid HCLAkPub, found none".to_string()
            })
    }
}
