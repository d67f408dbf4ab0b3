//! NV monotonic counters (TPM 2.0 Part 3 §31.8, TPM_NT_COUNTER): an 8-byte big-endian value that
//! only increases and survives TPM restarts, so a rolled-back receipt log is detectable.

use crate::{Result, Tpm, TpmError};
use tss_esapi::attributes::NvIndexAttributesBuilder;
use tss_esapi::constants::NvIndexType;
use tss_esapi::handles::{NvIndexHandle, NvIndexTpmHandle, TpmHandle};
use tss_esapi::interface_types::algorithm::HashingAlgorithm;
use tss_esapi::interface_types::resource_handles::{NvAuth, Provision};
use tss_esapi::interface_types::session_handles::AuthSession;
use tss_esapi::structures::NvPublicBuilder;

fn nv_index(index: u32) -> Result<NvIndexTpmHandle> {
    NvIndexTpmHandle::new(index).map_err(|_| TpmError::Config {
        what: "NV index",
        expected: "an index in 0x01000000..=0x01FFFFFF",
        found: format!("{index:#010x}"),
    })
}

impl Tpm {
    fn nv_handle(&mut self, index: u32) -> Result<Option<NvIndexHandle>> {
        let handle = TpmHandle::NvIndex(nv_index(index)?);
        if !self.handle_present(index)? {
            return Ok(None);
        }
        self.ctx()
            .execute_without_session(|ctx| ctx.tr_from_tpm_public(handle))
            .map(|h| Some(h.into()))
            .map_err(TpmError::tss("opening an NV index"))
    }

    /// Defines a counter at `index` (owner read/write) unless it exists, and returns its value. A new
    /// counter is incremented once: a TPM counter cannot be read before its first increment.
    pub fn counter_define(&mut self, index: u32) -> Result<u64> {
        if self.nv_handle(index)?.is_none() {
            let attributes = NvIndexAttributesBuilder::new()
                .with_owner_write(true)
                .with_owner_read(true)
                .with_no_da(true)
                .with_nv_index_type(NvIndexType::Counter)
                .build()
                .map_err(TpmError::tss("building counter attributes"))?;
            let public = NvPublicBuilder::new()
                .with_nv_index(nv_index(index)?)
                .with_index_name_algorithm(HashingAlgorithm::Sha256)
                .with_index_attributes(attributes)
                .with_data_area_size(8)
                .build()
                .map_err(TpmError::tss("building the counter's NV public area"))?;
            self.ctx()
                .execute_with_session(Some(AuthSession::Password), |ctx| {
                    ctx.nv_define_space(Provision::Owner, None, public)
                })
                .map_err(TpmError::tss("defining the NV counter"))?;
            return self.counter_increment(index);
        }
        self.counter_read(index)
    }

    fn counter(&mut self, index: u32) -> Result<NvIndexHandle> {
        self.nv_handle(index)?.ok_or_else(|| {
            TpmError::unexpected(
                "NV counter",
                format!("an index defined at {index:#010x}"),
                "no such index",
            )
        })
    }

    /// Increments the counter and returns the new value.
    pub fn counter_increment(&mut self, index: u32) -> Result<u64> {
        let h = self.counter(index)?;
        self.ctx()
            .execute_with_session(Some(AuthSession::Password), |ctx| {
                ctx.nv_increment(NvAuth::Owner, h)
            })
            .map_err(TpmError::tss("incrementing the NV counter"))?;
        self.counter_read(index)
    }

    /// Reads the counter.
    pub fn counter_read(&mut self, index: u32) -> Result<u64> {
        let h = self.counter(index)?;
        let data = self
            .ctx()
            .execute_with_session(Some(AuthSession::Password), |ctx| {
                ctx.nv_read(NvAuth::Owner, h, 8, 0)
            })
            .map_err(TpmError::tss("reading the NV counter"))?;
        let bytes: [u8; 8] = data.value().try_into().map_err(|_| {
            TpmError::unexpected(
                "NV counter",
                "8 bytes",
                format!("{} bytes", data.value().len()),
            )
        })?;
        Ok(u64::from_be_bytes(bytes))
    }
}
