//! The proxy's local listener: a bounded number of connections, a time limit on each request
//! head, Ollama's host and origin rules ([`super::origin`]), then [`Proxy::handle`].

use super::{Body, Proxy, error, origin};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use std::sync::Arc;
use std::time::Duration;

/// How the proxy serves its local listener.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// Which hosts and origins are served ([`origin`]).
    pub rules: origin::LocalRules,
    /// Connections served at once; further ones wait in the kernel's accept queue until one ends.
    pub max_connections: usize,
    /// Time a client has to send a whole request head, from the connection's start or from the
    /// end of the previous answer (so it also bounds idle keep-alive connections).
    pub header_timeout: Duration,
}

impl ServeOptions {
    /// Defaults for a listener on `listen`: Ollama's host and origin rules plus `origins`, 512
    /// connections, 10 s for a request head.
    pub fn new(listen_is_loopback: bool, origins: &str) -> Self {
        Self {
            rules: origin::LocalRules::new(listen_is_loopback, origins),
            max_connections: 512,
            header_timeout: Duration::from_secs(10),
        }
    }
}

/// Serves local clients on `listener` until accepting fails (other than for a transient reason
/// such as running out of descriptors, which is waited out).
pub async fn serve(
    proxy: Arc<Proxy>,
    listener: tokio::net::TcpListener,
    options: ServeOptions,
) -> std::io::Result<()> {
    let slots = Arc::new(tokio::sync::Semaphore::new(options.max_connections.max(1)));
    let options = Arc::new(options);
    loop {
        // A slot first: past the limit, connections queue in the kernel instead of being served
        // by a task each.
        let Ok(permit) = slots.clone().acquire_owned().await else {
            return Ok(());
        };
        let stream = match listener.accept().await {
            Ok((s, _)) => s,
            Err(e) if transient_accept_error(&e) => {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
            Err(e) => return Err(e),
        };
        let _ = stream.set_nodelay(true);
        let proxy = proxy.clone();
        let options = options.clone();
        tokio::spawn(async move {
            let rules = options.clone();
            let service = hyper::service::service_fn(move |req| {
                let (p, rules) = (proxy.clone(), rules.clone());
                async move { Ok::<_, std::convert::Infallible>(local(p, &rules.rules, req).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(options.header_timeout)
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                .await;
            drop(permit);
        });
    }
}

/// Accept errors that say nothing about the listener: the peer gave up, or descriptors or memory
/// ran out for a moment.
fn transient_accept_error(e: &std::io::Error) -> bool {
    use std::io::ErrorKind;
    matches!(
        e.kind(),
        ErrorKind::ConnectionAborted | ErrorKind::ConnectionReset | ErrorKind::Interrupted
    ) || matches!(
        e.raw_os_error(),
        Some(libc_errno::EMFILE | libc_errno::ENFILE | libc_errno::ENOBUFS | libc_errno::ENOMEM)
    )
}

/// errno values (Linux) of transient accept failures.
mod libc_errno {
    pub const EMFILE: i32 = 24;
    pub const ENFILE: i32 = 23;
    pub const ENOBUFS: i32 = 105;
    pub const ENOMEM: i32 = 12;
}

/// One local request: the host and origin rules, then [`Proxy::handle`], with CORS headers.
async fn local(
    proxy: Arc<Proxy>,
    rules: &origin::LocalRules,
    req: Request<Incoming>,
) -> Response<Body> {
    match rules.decide(req.method(), req.headers()) {
        origin::Decision::Forbidden(why) => {
            error(StatusCode::FORBIDDEN, format!("secllama proxy: {why}"))
        }
        origin::Decision::Preflight(o) => {
            let mut r = Response::new(
                Full::new(Bytes::new())
                    .map_err(|never| match never {})
                    .boxed(),
            );
            *r.status_mut() = StatusCode::NO_CONTENT;
            origin::preflight_headers(r.headers_mut(), o);
            r
        }
        // OPTIONS without an Origin is not a preflight: say what the proxy allows.
        origin::Decision::Serve(None) if req.method() == hyper::Method::OPTIONS => {
            let mut r = Response::new(
                Full::new(Bytes::new())
                    .map_err(|never| match never {})
                    .boxed(),
            );
            *r.status_mut() = StatusCode::NO_CONTENT;
            r.headers_mut().insert(
                hyper::header::ALLOW,
                hyper::header::HeaderValue::from_static(origin::ALLOW_METHODS),
            );
            r
        }
        origin::Decision::Serve(o) => {
            let mut r = proxy.handle(req).await;
            if let Some(o) = o {
                r.headers_mut()
                    .insert(hyper::header::ACCESS_CONTROL_ALLOW_ORIGIN, o);
                r.headers_mut().insert(
                    hyper::header::VARY,
                    hyper::header::HeaderValue::from_static("Origin"),
                );
            }
            r
        }
    }
}
