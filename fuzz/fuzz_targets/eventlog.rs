//! TCG event logs (crypto-agile and SHA-1 legacy), parsed and replayed to PCR values.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    secllama_fuzz_bounds::decided(data, || {
        if let Ok(log) = secllama_measurements::eventlog::EventLog::parse(data) {
            let _ = log.replay();
        }
    });
});
