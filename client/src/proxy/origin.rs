//! Which local requests the proxy serves: Ollama's allowed-hosts check and its CORS rules
//! (ollama `server/routes.go` `allowedHostsMiddleware`, `envconfig.AllowedOrigins`, gin-contrib/cors),
//! so a web page the user visits cannot drive the proxy through the browser.
//!
//! - **Host** (DNS rebinding): when the proxy listens on loopback, the `Host` header's host must be
//!   empty, an IP literal that is loopback, private or unspecified, `localhost`, the machine's
//!   hostname, or end in `.localhost`, `.local` or `.internal`; otherwise `403`.
//! - **Origin** (cross-site requests): a request without `Origin`, or whose `Origin` is the
//!   request's own `http(s)://Host`, is not a CORS request. Otherwise the origin must match one of
//!   the allowed patterns — `--origins` (like `OLLAMA_ORIGINS`: comma-separated, one `*` wildcard
//!   each, `*` alone allows every origin) and Ollama's defaults (`http(s)://localhost`,
//!   `127.0.0.1`, `0.0.0.0`, each with any port, `app://*`, `file://*`, `tauri://*`,
//!   `vscode-webview://*`, `vscode-file://*`) — or the request gets `403`, with nothing forwarded.
//!   Unlike Ollama, browser extensions are not allowed by default (name them in `--origins`).
//! - **Preflight**: `OPTIONS` from an allowed origin gets `204` with
//!   `Access-Control-Allow-{Origin,Methods,Headers}` and `Access-Control-Max-Age` (12 h, gin's
//!   default); other requests from an allowed origin get `Access-Control-Allow-Origin` and
//!   `Vary: Origin`.

use hyper::header::{HeaderMap, HeaderValue};
use std::net::IpAddr;

/// Ollama's default allowed origins (`envconfig.AllowedOrigins`), without browser extensions.
const DEFAULT_ORIGINS: [&str; 17] = [
    "http://localhost",
    "https://localhost",
    "http://localhost:*",
    "https://localhost:*",
    "http://127.0.0.1",
    "https://127.0.0.1",
    "http://127.0.0.1:*",
    "https://127.0.0.1:*",
    "http://0.0.0.0",
    "https://0.0.0.0",
    "http://0.0.0.0:*",
    "https://0.0.0.0:*",
    "app://*",
    "file://*",
    "tauri://*",
    "vscode-webview://*",
    "vscode-file://*",
];

/// Methods a preflight allows (gin-contrib/cors defaults).
pub const ALLOW_METHODS: &str = "GET, POST, PUT, PATCH, DELETE, HEAD, OPTIONS";
/// Request headers a preflight allows (Ollama's list, including the OpenAI client's).
pub const ALLOW_HEADERS: &str = "Authorization, Content-Type, User-Agent, Accept, X-Requested-With, \
OpenAI-Beta, x-stainless-arch, x-stainless-async, x-stainless-custom-poll-interval, \
x-stainless-helper-method, x-stainless-lang, x-stainless-os, x-stainless-package-version, \
x-stainless-poll-helper, x-stainless-retry-count, x-stainless-runtime, \
x-stainless-runtime-version, x-stainless-timeout";
/// Seconds a browser may cache a preflight answer.
pub const MAX_AGE_SECS: u32 = 12 * 3600;

/// The rules for one listener.
#[derive(Debug, Clone)]
pub struct LocalRules {
    /// Whether the `Host` header is checked (the proxy listens on loopback).
    pub check_host: bool,
    /// Allowed origin patterns: `--origins` first, then the defaults.
    pub origins: Vec<String>,
    /// The machine's hostname (lower case), an allowed `Host`.
    pub hostname: Option<String>,
}

/// What to do with a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Serve it; add `Access-Control-Allow-Origin: <origin>` when given.
    Serve(Option<HeaderValue>),
    /// A preflight from an allowed origin: answer `204` with the CORS headers.
    Preflight(HeaderValue),
    /// Refuse with `403`, saying why.
    Forbidden(String),
}

impl LocalRules {
    /// Rules for a listener on `listen`, with `--origins` (comma-separated patterns).
    pub fn new(listen_is_loopback: bool, extra_origins: &str) -> Self {
        let mut origins: Vec<String> = extra_origins
            .split(',')
            .map(str::trim)
            .filter(|o| !o.is_empty())
            .map(str::to_string)
            .collect();
        origins.extend(DEFAULT_ORIGINS.iter().map(|o| (*o).to_string()));
        let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .map(|h| h.trim().to_ascii_lowercase())
            .filter(|h| !h.is_empty());
        Self {
            check_host: listen_is_loopback,
            origins,
            hostname,
        }
    }

    /// Decides on a request with `method` and `headers`.
    pub fn decide(&self, method: &hyper::Method, headers: &HeaderMap) -> Decision {
        let host_header = match headers.get_all(hyper::header::HOST).iter().count() {
            0 => "",
            1 => match headers.get(hyper::header::HOST).map(HeaderValue::to_str) {
                Some(Ok(h)) => h,
                _ => return Decision::Forbidden("the Host header is not text".into()),
            },
            _ => return Decision::Forbidden("more than one Host header".into()),
        };
        let origin = match headers.get_all(hyper::header::ORIGIN).iter().count() {
            0 => None,
            1 => headers.get(hyper::header::ORIGIN).cloned(),
            _ => return Decision::Forbidden("more than one Origin header".into()),
        };
        if self.check_host && !self.allowed_host(host_header) {
            return Decision::Forbidden(format!(
                "Host {host_header:?} is not a local name (expected localhost or a loopback address)"
            ));
        }
        let Some(origin) = origin else {
            return Decision::Serve(None);
        };
        let Ok(o) = origin.to_str() else {
            return Decision::Forbidden("the Origin header is not text".into());
        };
        let same_origin = !host_header.is_empty()
            && (o == format!("http://{host_header}") || o == format!("https://{host_header}"));
        if !same_origin && !self.origins.iter().any(|p| matches_pattern(p, o)) {
            return Decision::Forbidden(format!(
                "origin {o:?} is not allowed (allow it with --origins)"
            ));
        }
        if method == hyper::Method::OPTIONS {
            Decision::Preflight(origin)
        } else {
            Decision::Serve(Some(origin))
        }
    }

    fn allowed_host(&self, host_header: &str) -> bool {
        let host = split_host(host_header).to_ascii_lowercase();
        if let Ok(ip) = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
        {
            return ip.is_loopback()
                || ip.is_unspecified()
                || match ip {
                    IpAddr::V4(v4) => v4.is_private(),
                    IpAddr::V6(v6) => v6.is_unique_local(),
                };
        }
        host.is_empty()
            || host == "localhost"
            || self.hostname.as_deref() == Some(host.as_str())
            || [".localhost", ".local", ".internal"]
                .iter()
                .any(|tld| host.ends_with(tld))
    }
}

/// The host part of a `Host` header (`host`, `host:port`, `[v6]`, `[v6]:port`).
fn split_host(h: &str) -> &str {
    if let Some(rest) = h.strip_prefix('[') {
        return rest.split_once(']').map_or(h, |(v6, _)| v6);
    }
    match h.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') && port.bytes().all(|b| b.is_ascii_digit()) => {
            host
        }
        _ => h,
    }
}

/// gin-contrib/cors wildcard matching: `*` alone matches everything; one `*` splits the pattern
/// into a prefix and a suffix; otherwise an exact (case-sensitive) match.
fn matches_pattern(pattern: &str, origin: &str) -> bool {
    if pattern == "*" {
        return true;
    }
    match pattern.split_once('*') {
        Some((prefix, suffix)) => {
            origin.len() >= prefix.len() + suffix.len()
                && origin.starts_with(prefix)
                && origin.ends_with(suffix)
        }
        None => pattern == origin,
    }
}

/// Adds the preflight headers for `origin` to `headers`.
pub fn preflight_headers(headers: &mut HeaderMap, origin: HeaderValue) {
    headers.insert(hyper::header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
    headers.insert(
        hyper::header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static(ALLOW_METHODS),
    );
    headers.insert(
        hyper::header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static(ALLOW_HEADERS),
    );
    headers.insert(
        hyper::header::ACCESS_CONTROL_MAX_AGE,
        HeaderValue::from(MAX_AGE_SECS),
    );
    headers.insert(hyper::header::VARY, HeaderValue::from_static("Origin"));
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use hyper::Method;

    fn req(host: Option<&str>, origin: Option<&str>) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Some(v) = host {
            h.insert(hyper::header::HOST, HeaderValue::from_str(v).unwrap());
        }
        if let Some(v) = origin {
            h.insert(hyper::header::ORIGIN, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    fn rules(extra: &str) -> LocalRules {
        let mut r = LocalRules::new(true, extra);
        r.hostname = Some("enclave-box".into());
        r
    }

    #[test]
    fn only_local_host_names_are_served_on_loopback() {
        let r = rules("");
        for ok in [
            "127.0.0.1:11434",
            "localhost:11434",
            "LOCALHOST",
            "[::1]:11434",
            "::1",
            "0.0.0.0:1",
            "10.1.2.3",
            "192.168.0.2:80",
            "a.localhost",
            "printer.local",
            "svc.internal",
            "enclave-box:11434",
            "",
        ] {
            let h = if ok.is_empty() { None } else { Some(ok) };
            assert_eq!(
                r.decide(&Method::GET, &req(h, None)),
                Decision::Serve(None),
                "{ok}"
            );
        }
        for bad in [
            "attacker.example",
            "attacker.example:11434",
            "localhost.attacker.example",
            "8.8.8.8",
            "[2001:db8::1]:80",
            "127.0.0.1.nip.io",
        ] {
            assert!(
                matches!(
                    r.decide(&Method::GET, &req(Some(bad), None)),
                    Decision::Forbidden(_)
                ),
                "{bad}"
            );
        }
        // Not on loopback: the operator chose to expose it; Host is not checked (as Ollama).
        let open = LocalRules::new(false, "");
        assert_eq!(
            open.decide(&Method::GET, &req(Some("attacker.example"), None)),
            Decision::Serve(None)
        );
    }

    #[test]
    fn origins_follow_ollamas_defaults_and_the_origins_option() {
        let r = rules("");
        for ok in [
            "http://localhost:3000",
            "https://127.0.0.1",
            "app://obsidian.md",
            "vscode-webview://x",
            "http://127.0.0.1:11434",
        ] {
            assert_eq!(
                r.decide(&Method::POST, &req(Some("127.0.0.1:11434"), Some(ok))),
                Decision::Serve(Some(HeaderValue::from_str(ok).unwrap())),
                "{ok}"
            );
        }
        for bad in [
            "http://attacker.example",
            "http://localhost.attacker.example",
            "chrome-extension://abc",
            "null",
            "http://127.0.0.1.attacker.example:80",
        ] {
            assert!(
                matches!(
                    r.decide(&Method::POST, &req(Some("127.0.0.1:11434"), Some(bad))),
                    Decision::Forbidden(_)
                ),
                "{bad}"
            );
        }
        // Same origin (the page is the proxy itself): not a cross-site request.
        assert!(matches!(
            r.decide(
                &Method::POST,
                &req(Some("localhost:11434"), Some("http://localhost:11434"))
            ),
            Decision::Serve(Some(_))
        ));
        let wide = rules("https://*.example.org, chrome-extension://abc");
        assert!(matches!(
            wide.decide(
                &Method::POST,
                &req(Some("localhost"), Some("https://app.example.org"))
            ),
            Decision::Serve(Some(_))
        ));
        assert!(matches!(
            wide.decide(
                &Method::POST,
                &req(Some("localhost"), Some("chrome-extension://abc"))
            ),
            Decision::Serve(Some(_))
        ));
        assert!(matches!(
            wide.decide(
                &Method::POST,
                &req(Some("localhost"), Some("https://example.org.evil"))
            ),
            Decision::Forbidden(_)
        ));
        assert!(matches!(
            rules("*").decide(
                &Method::POST,
                &req(Some("localhost"), Some("http://anything"))
            ),
            Decision::Serve(Some(_))
        ));
    }

    #[test]
    fn preflights_from_allowed_origins_are_answered_and_others_refused() {
        let r = rules("");
        assert!(matches!(
            r.decide(
                &Method::OPTIONS,
                &req(Some("localhost"), Some("http://localhost:5173"))
            ),
            Decision::Preflight(_)
        ));
        assert!(matches!(
            r.decide(
                &Method::OPTIONS,
                &req(Some("localhost"), Some("http://attacker.example"))
            ),
            Decision::Forbidden(_)
        ));
        let mut two = req(Some("localhost"), None);
        two.append(
            hyper::header::HOST,
            HeaderValue::from_static("attacker.example"),
        );
        assert!(matches!(
            r.decide(&Method::GET, &two),
            Decision::Forbidden(_)
        ));
    }
}
