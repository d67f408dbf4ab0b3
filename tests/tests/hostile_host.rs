//! A hostile host and hostile local clients against real processes (the real agent with a real
//! swtpm, the `secllama bridge` and `secllama-verify proxy` binaries), loopback only, every loop
//! bounded in time:
//! - 64 slow connections from one peer (127.0.0.2), each sending one byte of a request head every
//!   second: the bridge keeps at most its per-peer limit of them, the enclave's header timeout ends
//!   those within about 10 s although bytes keep arriving, and meanwhile another peer (127.0.0.1)
//!   gets `/healthz` and a sealed, verified answer every time it asks.
//! - 500 stalled connections to the proxy: it serves at most `--max-connections` at once, ends each
//!   after `--header-timeout`, and a real request queued behind them is still answered.
//! - 128 clients × 10 requests through proxy and bridge: every one answered with a receipt (the
//!   proxy queues them over its kept-alive enclave connections), RSS printed and bounded; past
//!   `--max-queue`, `503` with `Retry-After`; a bridge that is gone is "unreachable" (503), never
//!   "did not verify".
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout
)] // test crate: a failed unwrap is a failed test; the measurements are printed

use secllama_enclave::service::HEADER_TIMEOUT;
use secllama_tests::enclave::{Reaped, Serving, policy_for, serving};
use secllama_tests::workspace_bin;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const PROMPT: &str = "why is the sky blue";
const SLOW: usize = 64;
const PER_PEER: usize = 16;

/// Starts `secllama bridge` to `sock` with a per-peer limit; returns it and its address.
fn bridge(sock: &Path) -> (Reaped, String) {
    let port = secllama_tests::launch::free_port().unwrap();
    let listen = format!("127.0.0.1:{port}");
    let mut child = Reaped(
        Command::new(workspace_bin("secllama"))
            .args([
                "bridge",
                "--listen",
                &listen,
                "--max-per-peer",
                &PER_PEER.to_string(),
            ])
            .arg("--enclave")
            .arg(format!("unix:{}", sock.display()))
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    // It says where it listens once bound.
    let mut out = BufReader::new(child.0.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    assert_eq!(
        line.trim(),
        format!("bridge listening on {listen}"),
        "{line}"
    );
    std::thread::spawn(move || for _ in out.lines() {});
    (child, listen)
}

/// A connection from source address `from` to `to`.
async fn connect_from(from: &str, to: &str) -> std::io::Result<tokio::net::TcpStream> {
    let s = tokio::net::TcpSocket::new_v4()?;
    s.bind(format!("{from}:0").parse().unwrap())?;
    s.connect(to.parse().unwrap()).await
}

/// `GET /healthz` from 127.0.0.1 through the bridge: whether `{"status":"ok"}` came back in 3 s.
async fn healthz(bridge: &str) -> bool {
    let fut = async {
        let mut s = connect_from("127.0.0.1", bridge).await.ok()?;
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: enclave\r\nConnection: close\r\n\r\n")
            .await
            .ok()?;
        let mut out = Vec::new();
        s.read_to_end(&mut out).await.ok()?;
        Some(String::from_utf8_lossy(&out).contains(r#"{"status":"ok"}"#))
    };
    matches!(
        tokio::time::timeout(Duration::from_secs(3), fut).await,
        Ok(Some(true))
    )
}

/// Whether the peer closed `s` (EOF or reset) within `wait`.
async fn closed_within(s: &mut tokio::net::TcpStream, wait: Duration) -> bool {
    let mut b = [0u8; 256];
    let deadline = Instant::now() + wait;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        match tokio::time::timeout(left, s.read(&mut b)).await {
            Err(_) => return false,
            Ok(Ok(0) | Err(_)) => return true,
            Ok(Ok(_)) => {} // an answer (e.g. hyper's 408): keep reading to the close
        }
    }
}

#[test]
fn slow_and_stalled_clients_do_not_lock_others_out() {
    let Serving {
        rt,
        p,
        agent,
        manifest,
        ..
    } = serving(
        Path::new(env!("CARGO_BIN_EXE_secllama-test-runner")),
        &policy_for(PROMPT),
    )
    .unwrap();
    let (_bridge, bridge_addr) = bridge(&p.sock);
    let url = format!("http://{bridge_addr}");

    // 64 slow connections from 127.0.0.2, each dripping a request head one byte per second.
    let head: &'static [u8] = b"GET /healthz HTTP/1.1\r\nHost: enclave\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n";
    let started = Instant::now();
    let slow: Vec<_> = (0..SLOW)
        .map(|_| {
            let to = bridge_addr.clone();
            rt.spawn(async move {
                let Ok(mut s) = connect_from("127.0.0.2", &to).await else {
                    return (false, Duration::ZERO);
                };
                let t0 = Instant::now();
                for b in head.iter().take(40) {
                    if s.write_all(&[*b]).await.is_err() {
                        return (true, t0.elapsed());
                    }
                    if closed_within(&mut s, Duration::from_secs(1)).await {
                        return (true, t0.elapsed());
                    }
                }
                (false, t0.elapsed())
            })
        })
        .collect();
    // Meanwhile, another peer: /healthz and a sealed generate keep working.
    std::thread::sleep(Duration::from_millis(500));
    for round in 0..3 {
        assert!(
            rt.block_on(healthz(&bridge_addr)),
            "round {round}: /healthz failed under the slow peer"
        );
        let out = secllama_tests::launch::verify_generate(
            &url,
            "tiny:latest",
            PROMPT,
            &manifest,
            &["--num-predict", "8"],
        )
        .unwrap();
        assert!(
            out.status.success(),
            "round {round}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        std::thread::sleep(Duration::from_secs(2));
    }
    // Every slow connection was ended: at once past the per-peer limit, by the enclave's header
    // timeout for the others — although each kept sending.
    let ends: Vec<(bool, Duration)> = slow.into_iter().map(|h| rt.block_on(h).unwrap()).collect();
    let closed_fast = ends
        .iter()
        .filter(|(c, t)| *c && *t < Duration::from_secs(2))
        .count();
    let closed_by_timeout = ends
        .iter()
        .filter(|(c, t)| {
            *c && *t >= HEADER_TIMEOUT - Duration::from_secs(1)
                && *t <= HEADER_TIMEOUT + Duration::from_secs(5)
        })
        .count();
    println!(
        "slow peer: {closed_fast} of {SLOW} closed at once, {closed_by_timeout} by the header timeout, after {:?}",
        started.elapsed()
    );
    assert!(
        ends.iter().all(|(c, _)| *c),
        "a slow connection stayed open: {ends:?}"
    );
    assert_eq!(closed_fast, SLOW - PER_PEER, "{ends:?}");
    assert_eq!(closed_by_timeout, PER_PEER, "{ends:?}");

    // 500 stalled connections to the proxy (no byte sent), then a real request behind them.
    const STALLED: usize = 500;
    const PROXY_MAX: usize = 128;
    let receipts = p.dir.path().join("proxy-receipts.jsonl");
    let (proxy, proxy_addr) = secllama_tests::launch::proxy_with(
        &url,
        &manifest,
        &receipts,
        3600,
        &[
            "--max-connections",
            &PROXY_MAX.to_string(),
            "--header-timeout",
            "2",
        ],
    )
    .unwrap();
    let pid = proxy.0.id();
    let fds = || {
        std::fs::read_dir(format!("/proc/{pid}/fd"))
            .unwrap()
            .count()
    };
    let idle_fds = fds();
    let started = Instant::now();
    let stalled: Vec<_> = (0..STALLED)
        .map(|_| {
            let to = proxy_addr.clone();
            rt.spawn(async move {
                let mut s = tokio::net::TcpStream::connect(&to).await.ok()?;
                let t0 = Instant::now();
                closed_within(&mut s, Duration::from_secs(30))
                    .await
                    .then(|| t0.elapsed())
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs(1));
    let busy_fds = fds();
    let body = format!(
        r#"{{"model":"tiny:latest","prompt":"{PROMPT}","stream":false,"options":{{"num_predict":8}}}}"#
    );
    let t = Instant::now();
    let out = Command::new("curl")
        .args(["-s", "-m", "40", "-w", "\n%{http_code}", "-d", &body])
        .arg(format!("http://{proxy_addr}/api/generate"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let queued = t.elapsed();
    let ends: Vec<Option<Duration>> = stalled
        .into_iter()
        .map(|h| rt.block_on(h).unwrap())
        .collect();
    let longest = ends.iter().flatten().max().copied().unwrap_or_default();
    println!(
        "proxy: {STALLED} stalled connections, descriptors {idle_fds} idle -> {busy_fds} under them \
         (cap {PROXY_MAX}); a real request queued behind them answered in {queued:?}; the last \
         stalled connection ended after {longest:?} ({:?} in all)",
        started.elapsed()
    );
    assert!(text.ends_with("\n200"), "{text}");
    let open = ends.iter().filter(|e| e.is_none()).count();
    assert_eq!(open, 0, "stalled connections stayed open");
    assert!(
        busy_fds <= idle_fds + PROXY_MAX + 8,
        "{busy_fds} descriptors"
    );
    drop(agent);
}

/// RSS of process `pid` in KiB.
fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// One local client: `n` generate requests on one kept-alive connection; the statuses.
async fn client(proxy: String, body: String, n: usize) -> Vec<u16> {
    use http_body_util::{BodyExt, Full};
    let s = tokio::net::TcpStream::connect(&proxy).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake::<_, Full<bytes::Bytes>>(
        hyper_util::rt::TokioIo::new(s),
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    let mut out = Vec::new();
    for _ in 0..n {
        let req = hyper::Request::post("/api/generate")
            .header("host", "127.0.0.1")
            .body(Full::new(bytes::Bytes::from(body.clone())))
            .unwrap();
        let resp = sender.send_request(req).await.unwrap();
        let status = resp.status().as_u16();
        let text = resp.into_body().collect().await.unwrap().to_bytes();
        if status != 200 {
            eprintln!("{status}: {}", String::from_utf8_lossy(&text));
        }
        out.push(status);
    }
    out
}

#[test]
fn a_burst_of_clients_queues_and_only_a_full_queue_is_busy() {
    let Serving {
        rt, p, manifest, ..
    } = serving(
        Path::new(env!("CARGO_BIN_EXE_secllama-test-runner")),
        &policy_for(PROMPT),
    )
    .unwrap();
    let (mut bridge_proc, bridge_addr) = bridge(&p.sock);
    let url = format!("http://{bridge_addr}");
    let receipts = p.dir.path().join("load-receipts.jsonl");
    let (proxy, proxy_addr) =
        secllama_tests::launch::proxy_with(&url, &manifest, &receipts, 3600, &[]).unwrap();
    let body = format!(
        r#"{{"model":"tiny:latest","prompt":"{PROMPT}","stream":false,"options":{{"num_predict":8}}}}"#
    );

    // 128 clients × 10 requests, all at once: every one answered, verified, with a receipt.
    const CLIENTS: usize = 128;
    const EACH: usize = 10;
    let t = Instant::now();
    let statuses: Vec<u16> = rt.block_on(async {
        let tasks: Vec<_> = (0..CLIENTS)
            .map(|_| tokio::spawn(client(proxy_addr.clone(), body.clone(), EACH)))
            .collect();
        let mut all = Vec::new();
        for t in tasks {
            all.extend(t.await.unwrap());
        }
        all
    });
    let took = t.elapsed();
    let ok = statuses.iter().filter(|s| **s == 200).count();
    let (proxy_rss, bridge_rss) = (rss_kib(proxy.0.id()), rss_kib(bridge_proc.0.id()));
    // The agent runs in this test process (with the swtpm and runner as children).
    let agent_rss = rss_kib(std::process::id());
    let receipts_n = std::fs::read_to_string(&receipts).unwrap().lines().count();
    println!(
        "load: {CLIENTS} clients x {EACH} requests: {ok} answered 200 in {took:?} ({:.0} requests/s); \
         RSS proxy {proxy_rss} KiB, bridge {bridge_rss} KiB, agent (this test process) \
         {agent_rss} KiB; {receipts_n} receipts",
        (CLIENTS * EACH) as f64 / took.as_secs_f64()
    );
    assert_eq!(ok, CLIENTS * EACH, "{statuses:?}");
    assert_eq!(receipts_n, CLIENTS * EACH);
    assert!(
        proxy_rss < 256 * 1024 && bridge_rss < 128 * 1024,
        "RSS bound"
    );

    // The bridge gone: 503 "unreachable" with Retry-After, never "did not verify".
    drop(proxy);
    let (_proxy, proxy_addr) =
        secllama_tests::launch::proxy_with(&url, &manifest, &receipts, 3600, &[]).unwrap();
    let _ = bridge_proc.0.kill();
    let _ = bridge_proc.0.wait();
    let out = Command::new("curl")
        .args(["-s", "-i", "-d", &body])
        .arg(format!("http://{proxy_addr}/api/generate"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_ascii_lowercase();
    assert!(text.starts_with("http/1.1 503"), "{text}");
    assert!(text.contains("retry-after: 1"), "{text}");
    assert!(text.contains("unreachable"), "{text}");
    assert!(!text.contains("did not verify"), "{text}");
}

#[test]
fn past_the_queue_requests_get_503_with_retry_after() {
    let Serving {
        rt, p, manifest, ..
    } = serving(
        Path::new(env!("CARGO_BIN_EXE_secllama-test-runner")),
        &policy_for(PROMPT),
    )
    .unwrap();
    // A slow host: each sealed request waits 2 s before it reaches the enclave.
    let slow = {
        let _g = rt.enter();
        let std_l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        std_l.set_nonblocking(true).unwrap();
        let addr = std_l.local_addr().unwrap();
        let l = tokio::net::TcpListener::from_std(std_l).unwrap();
        let sock = p.sock.clone();
        rt.spawn(async move {
            while let Ok((mut tcp, _)) = l.accept().await {
                let sock = sock.clone();
                tokio::spawn(async move {
                    let mut first = vec![0u8; 65536];
                    let Ok(n) = tcp.read(&mut first).await else {
                        return;
                    };
                    if first[..n].starts_with(b"POST /v1/sealed/") {
                        tokio::time::sleep(Duration::from_secs(2)).await;
                    }
                    let Ok(mut unix) = tokio::net::UnixStream::connect(&sock).await else {
                        return;
                    };
                    if unix.write_all(&first[..n]).await.is_ok() {
                        let _ = tokio::io::copy_bidirectional(&mut tcp, &mut unix).await;
                    }
                });
            }
        });
        format!("http://{addr}")
    };
    let receipts = p.dir.path().join("queue-receipts.jsonl");
    let (_proxy, proxy_addr) = secllama_tests::launch::proxy_with(
        &slow,
        &manifest,
        &receipts,
        3600,
        &["--enclave-connections", "1", "--max-queue", "2"],
    )
    .unwrap();
    let body = format!(
        r#"{{"model":"tiny:latest","prompt":"{PROMPT}","stream":false,"options":{{"num_predict":8}}}}"#
    );
    // Six at once: one in flight, two queued, three told to come back.
    let handles: Vec<_> = (0..6)
        .map(|_| {
            let (addr, body) = (proxy_addr.clone(), body.clone());
            std::thread::spawn(move || {
                let out = Command::new("curl")
                    .args(["-s", "-i", "-m", "30", "-d", &body])
                    .arg(format!("http://{addr}/api/generate"))
                    .output()
                    .unwrap();
                String::from_utf8_lossy(&out.stdout).to_ascii_lowercase()
            })
        })
        .collect();
    let answers: Vec<String> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    let ok = answers
        .iter()
        .filter(|a| a.starts_with("http/1.1 200"))
        .count();
    let busy: Vec<&String> = answers
        .iter()
        .filter(|a| a.starts_with("http/1.1 503"))
        .collect();
    assert_eq!((ok, busy.len()), (3, 3), "{answers:#?}");
    for b in busy {
        assert!(b.contains("retry-after: 1") && b.contains("busy"), "{b}");
    }
}
