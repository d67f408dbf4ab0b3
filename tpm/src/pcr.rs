//! PCRs (TPM 2.0 Part 3 §22): which banks are allocated, extending every allocated bank at once
//! (an unextended bank would be a measurement gap), and reading values.

use crate::eventlog::{EventLogWriter, HashAlg, Measurement};
use crate::{Result, Tpm, TpmError};
use std::collections::BTreeMap;
use tss_esapi::abstraction::pcr;
use tss_esapi::constants::CapabilityType;
use tss_esapi::handles::PcrHandle;
use tss_esapi::interface_types::algorithm::HashingAlgorithm;
use tss_esapi::interface_types::session_handles::AuthSession;
use tss_esapi::structures::{
    CapabilityData, Digest, DigestValues, PcrSelectionList, PcrSelectionListBuilder, PcrSlot,
};

/// PCR values by bank and index.
pub type PcrValues = BTreeMap<HashAlg, BTreeMap<u32, Vec<u8>>>;

pub(crate) fn hashing(alg: HashAlg) -> HashingAlgorithm {
    match alg {
        HashAlg::Sha1 => HashingAlgorithm::Sha1,
        HashAlg::Sha256 => HashingAlgorithm::Sha256,
        HashAlg::Sha384 => HashingAlgorithm::Sha384,
        HashAlg::Sha512 => HashingAlgorithm::Sha512,
    }
}

fn from_hashing(alg: HashingAlgorithm) -> Option<HashAlg> {
    match alg {
        HashingAlgorithm::Sha1 => Some(HashAlg::Sha1),
        HashingAlgorithm::Sha256 => Some(HashAlg::Sha256),
        HashingAlgorithm::Sha384 => Some(HashAlg::Sha384),
        HashingAlgorithm::Sha512 => Some(HashAlg::Sha512),
        _ => None,
    }
}

pub(crate) fn slot(index: u32) -> Result<PcrSlot> {
    if index > 23 {
        return Err(TpmError::Config {
            what: "PCR index",
            expected: "0 to 23",
            found: index.to_string(),
        });
    }
    PcrSlot::try_from(1u32 << index).map_err(TpmError::tss("naming a PCR slot"))
}

fn handle(index: u32) -> Result<PcrHandle> {
    PcrHandle::try_from(index).map_err(TpmError::tss("naming a PCR handle"))
}

/// A selection of the same PCR indices in each of `banks`.
pub fn selection(banks: &[HashAlg], indices: &[u32]) -> Result<PcrSelectionList> {
    let slots = indices
        .iter()
        .map(|i| slot(*i))
        .collect::<Result<Vec<_>>>()?;
    let mut b = PcrSelectionListBuilder::new();
    for bank in banks {
        b = b.with_selection(hashing(*bank), &slots);
    }
    b.build().map_err(TpmError::tss("building a PCR selection"))
}

impl Tpm {
    /// The banks that have at least one PCR allocated, in TPM_ALG_ID order.
    pub fn active_banks(&mut self) -> Result<Vec<HashAlg>> {
        let (data, _) = self
            .ctx()
            .get_capability(CapabilityType::AssignedPcr, 0, 8)
            .map_err(TpmError::tss("reading the PCR allocation"))?;
        let CapabilityData::AssignedPcr(list) = data else {
            return Err(TpmError::unexpected(
                "PCR allocation",
                "TPM_CAP_PCRS data",
                "another capability",
            ));
        };
        let mut banks: Vec<HashAlg> = list
            .get_selections()
            .iter()
            .filter(|s| !s.is_empty())
            .filter_map(|s| from_hashing(s.hashing_algorithm()))
            .collect();
        banks.sort();
        banks.dedup();
        if banks.is_empty() {
            return Err(TpmError::unexpected(
                "PCR allocation",
                "at least one SHA bank",
                "none",
            ));
        }
        Ok(banks)
    }

    /// Extends `m.pcr` with each of its digests (one per bank, all in one TPM2_PCR_Extend).
    pub fn extend(&mut self, m: &Measurement) -> Result<()> {
        let mut values = DigestValues::new();
        for (alg, d) in &m.digests {
            if d.len() != alg.size() {
                return Err(TpmError::unexpected(
                    "measurement digest",
                    format!("{} bytes for {}", alg.size(), alg.name()),
                    format!("{} bytes", d.len()),
                ));
            }
            values.set(
                hashing(*alg),
                Digest::try_from(d.clone()).map_err(TpmError::tss("building a digest"))?,
            );
        }
        let pcr = handle(m.pcr)?;
        self.ctx()
            .execute_with_session(Some(AuthSession::Password), |ctx| {
                ctx.pcr_extend(pcr, values)
            })
            .map_err(TpmError::tss("extending a PCR"))
    }

    /// Extends the PCR and appends the event to the log (extend first: a crash between the two leaves a
    /// log that no longer replays to the PCRs, which a verifier rejects — never a silent gap).
    pub fn measure(&mut self, log: &mut EventLogWriter, m: &Measurement) -> Result<()> {
        let banks: Vec<HashAlg> = m.digests.iter().map(|(a, _)| *a).collect();
        if banks != log.banks() {
            return Err(TpmError::unexpected(
                "measurement",
                format!("digests for {:?}", log.banks()),
                format!("{banks:?}"),
            ));
        }
        self.extend(m)?;
        log.append(m)
    }

    /// Reads the PCRs in `selection`.
    pub fn read_pcrs(&mut self, selection: PcrSelectionList) -> Result<PcrValues> {
        let data = self
            .ctx()
            .execute_without_session(|ctx| pcr::read_all(ctx, selection.clone()))
            .map_err(TpmError::tss("reading PCRs"))?;
        let mut out = PcrValues::new();
        for sel in selection.get_selections() {
            let Some(alg) = from_hashing(sel.hashing_algorithm()) else {
                continue;
            };
            let Some(bank) = data.pcr_bank(sel.hashing_algorithm()) else {
                return Err(TpmError::unexpected(
                    "PCR read",
                    format!("the {} bank", alg.name()),
                    "no values",
                ));
            };
            let values = out.entry(alg).or_default();
            for s in sel.selected() {
                let index = u32::from(s).trailing_zeros();
                let d = bank.get_digest(s).ok_or_else(|| {
                    TpmError::unexpected("PCR read", format!("{}:{index}", alg.name()), "no value")
                })?;
                values.insert(index, d.value().to_vec());
            }
        }
        Ok(out)
    }
}
