//! Hardware attestation reports from inside a confidential guest (docs/vm.md, "SEV-SNP"): in SNP
//! mode the host's swtpm is untrusted, so the agent's evidence is an SNP report whose
//! `REPORT_DATA` binds its keys (the same binding a TPM quote's qualifying data carries).
//!
//! [`PlatformReport`] is the one interface; [`ConfigfsTsm`] implements it through the kernel's
//! configfs-tsm ABI (Linux ≥ 6.7, `Documentation/ABI/testing/configfs-tsm`): make a folder under
//! `/sys/kernel/config/tsm/report/`, write the 64 bytes of report data to `inblob`, read the
//! report from `outblob` and the provider (`sev_guest`) from `provider`, remove the folder.
//! (`/dev/sev-guest`'s `SNP_GET_REPORT` ioctl is the older path, not implemented here.) The
//! Debian 6.1 guest kernel has `sev-guest` as a module but no configfs-tsm (Linux 6.7), and this
//! QEMU cannot run SNP guests: the hardware test is `#[ignore]`d and runs with `--ignored` inside
//! an SNP guest with a newer kernel.

use std::path::{Path, PathBuf};

/// Bytes of report data an SNP report binds (SEV-SNP ABI, `MSG_REPORT_REQ.REPORT_DATA`).
pub const REPORT_DATA_LEN: usize = 64;

/// A report that could not be obtained.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// No such interface in this guest.
    #[error(
        "attestation report: expected {expected}, found none (not a confidential guest, or a kernel without it)"
    )]
    Unavailable {
        /// What was looked for.
        expected: String,
    },
    /// The interface failed.
    #[error("attestation report: {op} {path}: {source}")]
    Io {
        /// The operation.
        op: &'static str,
        /// The file.
        path: String,
        /// The error.
        source: std::io::Error,
    },
    /// Another provider than the expected one answered.
    #[error("attestation report: expected provider {expected}, found {found}")]
    Provider {
        /// The provider wanted.
        expected: String,
        /// The provider found.
        found: String,
    },
}

/// A source of hardware attestation reports.
pub trait PlatformReport {
    /// The provider's name (`sev_guest` for SEV-SNP).
    fn provider(&self) -> &str;
    /// A fresh report binding `report_data`.
    ///
    /// # Errors
    /// The interface is missing or failed.
    fn report(&self, report_data: &[u8; REPORT_DATA_LEN]) -> Result<Vec<u8>, ReportError>;
}

/// configfs-tsm reports (`/sys/kernel/config/tsm/report`).
#[derive(Debug, Clone)]
pub struct ConfigfsTsm {
    root: PathBuf,
    provider: String,
}

/// The configfs-tsm report folder.
pub const TSM_REPORT_ROOT: &str = "/sys/kernel/config/tsm/report";

impl ConfigfsTsm {
    /// The interface at [`TSM_REPORT_ROOT`], expecting `provider` (e.g. `sev_guest`).
    ///
    /// # Errors
    /// The folder does not exist.
    pub fn open(provider: &str) -> Result<Self, ReportError> {
        Self::at(Path::new(TSM_REPORT_ROOT), provider)
    }

    /// As [`ConfigfsTsm::open`], at `root`.
    ///
    /// # Errors
    /// The folder does not exist.
    pub fn at(root: &Path, provider: &str) -> Result<Self, ReportError> {
        if !root.is_dir() {
            return Err(ReportError::Unavailable {
                expected: format!("configfs-tsm at {}", root.display()),
            });
        }
        Ok(Self {
            root: root.to_path_buf(),
            provider: provider.to_string(),
        })
    }
}

impl PlatformReport for ConfigfsTsm {
    fn provider(&self) -> &str {
        &self.provider
    }

    fn report(&self, report_data: &[u8; REPORT_DATA_LEN]) -> Result<Vec<u8>, ReportError> {
        let io = |op: &'static str, path: &Path| {
            let path = path.display().to_string();
            move |source| ReportError::Io { op, path, source }
        };
        let mut nonce = [0u8; 8];
        getrandom_bytes(&mut nonce);
        let dir = self.root.join(format!(
            "secllama-{}-{}",
            std::process::id(),
            hex::encode(nonce)
        ));
        std::fs::create_dir(&dir).map_err(io("creating", &dir))?;
        let result = (|| {
            let inblob = dir.join("inblob");
            std::fs::write(&inblob, report_data).map_err(io("writing", &inblob))?;
            let provider_file = dir.join("provider");
            let provider =
                std::fs::read_to_string(&provider_file).map_err(io("reading", &provider_file))?;
            if provider.trim() != self.provider {
                return Err(ReportError::Provider {
                    expected: self.provider.clone(),
                    found: provider.trim().to_string(),
                });
            }
            let outblob = dir.join("outblob");
            std::fs::read(&outblob).map_err(io("reading", &outblob))
        })();
        let _ = std::fs::remove_dir(&dir);
        result
    }
}

fn getrandom_bytes(buf: &mut [u8]) {
    use rand_core::RngCore;
    rand_core::OsRng.fill_bytes(buf);
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_guest_without_configfs_tsm_says_so() {
        let e = ConfigfsTsm::at(Path::new("/nonexistent/tsm/report"), "sev_guest").unwrap_err();
        assert!(e.to_string().contains("configfs-tsm"), "{e}");
    }

    /// Inside an SEV-SNP guest (Linux ≥ 6.7 with sev-guest): a report binding our data, of the
    /// ABI's size, with the data at its offset (0x50).
    #[test]
    #[ignore = "needs an SEV-SNP guest: run with --ignored inside one"]
    fn an_snp_guest_reports_our_data() {
        let tsm = ConfigfsTsm::open("sev_guest").unwrap();
        let data = [0x5a; REPORT_DATA_LEN];
        let r = tsm.report(&data).unwrap();
        assert_eq!(r.len(), 0x4a0);
        assert_eq!(&r[0x50..0x90], &data);
    }
}
