//! The guest's network (docs/vm.md): the VM has no network device (QEMU `-nodefaults -nic none`),
//! so the only interface is `lo`, which the init brings up for the agent ↔ runner loopback. The
//! isolation probe reports what a verifier would want to see: the interfaces under
//! `/sys/class/net`, and the route lookups for documentation addresses (RFC 5737 192.0.2.1,
//! RFC 3849 2001:db8::1) — a UDP `connect()` only consults the routing table and sends nothing.

#![allow(unsafe_code)]

use std::os::fd::AsRawFd;

/// Brings `lo` up (`SIOCSIFFLAGS` with `IFF_UP | IFF_LOOPBACK | IFF_RUNNING`).
///
/// # Errors
/// The socket or the ioctl failed.
pub fn loopback_up() -> std::io::Result<()> {
    let sock = std::net::UdpSocket::bind("0.0.0.0:0").or_else(|_| {
        // Before lo is up, binding an IPv4 wildcard works on Linux; this is only the fallback.
        std::net::UdpSocket::bind("[::]:0")
    })?;
    // SAFETY: ifreq is plain old data; all-zero is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(b"lo\0") {
        *dst = *src as libc::c_char;
    }
    // SAFETY: SIOCGIFFLAGS reads the flags into the ifreq we own, valid for the call.
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: after SIOCGIFFLAGS the union holds ifru_flags.
    let flags = unsafe { req.ifr_ifru.ifru_flags };
    req.ifr_ifru.ifru_flags = flags | (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
    // SAFETY: SIOCSIFFLAGS reads the ifreq we own, valid for the call.
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &req) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// The interfaces in `/sys/class/net`, sorted.
///
/// # Errors
/// `/sys/class/net` cannot be read.
pub fn interfaces() -> std::io::Result<Vec<String>> {
    let mut names = std::fs::read_dir("/sys/class/net")?
        .map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()))
        .collect::<std::io::Result<Vec<_>>>()?;
    names.sort();
    Ok(names)
}

/// The route lookup for `addr`: `Err` with the error (`ENETUNREACH` when there is no route), `Ok`
/// with the local address the kernel would use. Sends no packet.
pub fn route_to(addr: std::net::SocketAddr) -> std::io::Result<std::net::SocketAddr> {
    let local = if addr.is_ipv4() {
        "0.0.0.0:0"
    } else {
        "[::]:0"
    };
    let s = std::net::UdpSocket::bind(local)?;
    s.connect(addr)?;
    s.local_addr()
}

/// One line for the serial log: `interfaces=lo; route 192.0.2.1: none (…); route 2001:db8::1:
/// none (…)`, and whether the guest is isolated (only `lo`, no route to either address).
pub fn probe() -> (String, bool) {
    let ifs = interfaces().unwrap_or_default();
    let mut isolated = ifs == ["lo"];
    let mut line = format!("interfaces={}", ifs.join(","));
    for a in ["192.0.2.1:9", "[2001:db8::1]:9"] {
        let Ok(addr) = a.parse::<std::net::SocketAddr>() else {
            continue;
        };
        match route_to(addr) {
            Ok(via) => {
                isolated = false;
                line.push_str(&format!("; route {}: via {}", addr.ip(), via.ip()));
            }
            Err(e) => line.push_str(&format!("; route {}: none ({e})", addr.ip())),
        }
    }
    (line, isolated)
}
