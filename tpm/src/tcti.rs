//! Strict TCTI strings. tss-esapi's `TctiNameConf::from_str` silently ignores what it cannot parse,
//! so a typo would connect to a default TPM; here every part must be understood.
//!
//! Accepted: `device[:PATH]`, `swtpm[:host=H,port=P]`, `mssim[:host=H,port=P]`, `tabrmd[:CONFIG]`,
//! and `swtpm-unix:server=PATH` — a swtpm's command channel reached through a unix socket, which
//! [`crate::Tpm::connect`] relays to loopback TCP for the TSS (see [`crate::relay`]). The swtpm
//! control channel is never reached this way: the relay answers the TSS's locality requests itself.

use crate::{Result, TpmError};
use std::path::PathBuf;
use std::str::FromStr;
use tss_esapi::tcti_ldr::{DeviceConfig, NetworkTPMConfig, TabrmdConfig, TctiNameConf};

const EXPECTED: &str = "device[:PATH], swtpm[:host=H,port=P], mssim[:host=H,port=P], \
     swtpm-unix:server=PATH or tabrmd[:CONFIG]";

fn bad(found: &str) -> TpmError {
    TpmError::Config {
        what: "TCTI",
        expected: EXPECTED,
        found: found.to_string(),
    }
}

/// The command socket of a `swtpm-unix:server=PATH` TCTI (absolute), or `None` for any other
/// TCTI.
pub fn unix_swtpm(tcti: &str) -> Result<Option<PathBuf>> {
    let Some(conf) = tcti.strip_prefix("swtpm-unix:") else {
        return Ok(None);
    };
    match conf.split_once('=') {
        Some(("server", p)) if p.starts_with('/') && !p.contains(',') => Ok(Some(PathBuf::from(p))),
        _ => Err(bad(tcti)),
    }
}

/// `host=H,port=P` (either may be left out: `localhost`, 2321).
fn host_port<'a>(tcti: &str, conf: &'a str) -> Result<(&'a str, u16)> {
    let mut host = None;
    let mut port = None;
    for part in conf.split(',').filter(|p| !p.is_empty()) {
        match part.split_once('=') {
            Some(("host", h)) if !h.is_empty() && host.is_none() => host = Some(h),
            Some(("port", p)) if port.is_none() => {
                port = Some(p.parse::<u16>().map_err(|_| bad(tcti))?);
            }
            _ => return Err(bad(tcti)),
        }
    }
    Ok((host.unwrap_or("localhost"), port.unwrap_or(2321)))
}

/// The server endpoint (host, port) of a `swtpm[:host=H,port=P]` TCTI, `None` for any other kind;
/// the control channel is on port + 1.
pub fn swtpm_endpoint(tcti: &str) -> Result<Option<(String, u16)>> {
    let (name, conf) = tcti.split_once(':').unwrap_or((tcti, ""));
    if name != "swtpm" {
        return Ok(None);
    }
    let (host, port) = host_port(tcti, conf)?;
    Ok(Some((host.to_string(), port)))
}

/// Parses a TCTI string, rejecting anything not fully understood.
pub fn parse(tcti: &str) -> Result<TctiNameConf> {
    let (name, conf) = tcti.split_once(':').unwrap_or((tcti, ""));
    match name {
        "device" => {
            let path = if conf.is_empty() { "/dev/tpmrm0" } else { conf };
            if !path.starts_with('/') {
                return Err(bad(tcti));
            }
            DeviceConfig::from_str(path)
                .map(TctiNameConf::Device)
                .map_err(|_| bad(tcti))
        }
        "swtpm" | "mssim" => {
            let (host, port) = host_port(tcti, conf)?;
            let normalized = format!("host={host},port={port}");
            let net = NetworkTPMConfig::from_str(&normalized).map_err(|_| bad(tcti))?;
            Ok(if name == "swtpm" {
                TctiNameConf::Swtpm(net)
            } else {
                TctiNameConf::Mssim(net)
            })
        }
        "tabrmd" => TabrmdConfig::from_str(conf)
            .map(TctiNameConf::Tabrmd)
            .map_err(|_| bad(tcti)),
        _ => Err(bad(tcti)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_documented_forms() {
        assert!(matches!(
            parse("swtpm:host=127.0.0.1,port=2321").unwrap(),
            TctiNameConf::Swtpm(_)
        ));
        assert!(matches!(
            parse("mssim:port=5000").unwrap(),
            TctiNameConf::Mssim(_)
        ));
        assert!(matches!(
            parse("device:/dev/tpmrm0").unwrap(),
            TctiNameConf::Device(_)
        ));
        assert!(matches!(parse("device").unwrap(), TctiNameConf::Device(_)));
        assert_eq!(
            unix_swtpm("swtpm-unix:server=/r/tpm.sock").unwrap(),
            Some("/r/tpm.sock".into())
        );
        assert_eq!(unix_swtpm("swtpm:port=1").unwrap(), None);
        for s in [
            "swtpm-unix:server=a",
            "swtpm-unix:server=/a,ctrl=/b",
            "swtpm-unix:ctrl=/b",
            "swtpm-unix:server=/a,ctrl=/b,ctrl=/c",
            "swtpm-unix:server=/a,ctl=/b",
        ] {
            assert!(unix_swtpm(s).is_err(), "{s}");
        }
    }

    #[test]
    fn rejects_what_it_does_not_understand() {
        for s in [
            "swtpm:host=127.0.0.1,prot=2321",
            "swtpm:port=99999",
            "swtpm:port=1,port=2",
            "swtpm:127.0.0.1:2321",
            "device:tpmrm0",
            "swtpm-unix:/tmp/tpm.sock",
            "tpm:/dev/tpm0",
            "",
        ] {
            let e = parse(s).unwrap_err();
            assert!(e.to_string().starts_with("TCTI: expected"), "{s}: {e}");
        }
    }
}
