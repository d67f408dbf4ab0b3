//! # secllama-runner — llama.cpp behind Ollama's HTTP API, on loopback only
//!
//! `secllama-runner --listen ADDR --model NAME=GGUF [--model ...] [--threads N] [--ctx N]`
//!
//! The bundled runner of secllama: GGUF models loaded at start (by name, `name` meaning
//! `name:latest`), served with Ollama's API (`/`, `/api/version`, `/api/tags`, `/api/show`,
//! `/api/ps`, `/api/generate`, `/api/chat`, streamed NDJSON or single objects) on a loopback TCP
//! address or a unix socket, CPU only, llama.cpp linked statically. The enclave agent supervises it
//! like any Ollama-API server and never depends on it; it depends on nothing of ours.
//!
//! Modules: [`listen`] (the `--listen` address), [`gguf`] (GGUF metadata), [`api`] (Ollama's JSON
//! shapes and options), [`stop`] (UTF-8 and stop-string streaming), [`engine`] (llama.cpp and the
//! per-model workers), [`server`] (hyper and the routes), [`answer`] (answer objects and the NDJSON stream).

mod answer;
mod api;
mod engine;
mod gguf;
mod listen;
mod server;
mod stop;

use anyhow::Context as _;
use clap::Parser;
use listen::Listen;
use sha2::{Digest, Sha256};
use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

/// llama.cpp behind Ollama's HTTP API, on loopback or a unix socket.
#[derive(Debug, Parser)]
#[command(name = "secllama-runner", version)]
struct Cli {
    /// Where to listen: a loopback address (127.0.0.0/8:PORT, [::1]:PORT, localhost:PORT; port 0
    /// picks one) or unix:PATH. Anything else is refused.
    #[arg(long, value_name = "ADDR", value_parser = listen::parse_listen)]
    listen: Listen,
    /// A model to serve, as NAME=GGUF (e.g. smollm2:135m=/models/smollm2.gguf); repeatable. A name
    /// without a tag means NAME:latest.
    #[arg(long = "model", value_name = "NAME=GGUF", required = true, value_parser = parse_model)]
    models: Vec<(String, PathBuf)>,
    /// Threads per generation. Two are faster on an idle machine and far slower on a busy one.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=256))]
    threads: u32,
    /// Context length (tokens) when a request does not set num_ctx (capped by the model's).
    #[arg(long, default_value_t = 2048, value_parser = clap::value_parser!(u32).range(64..=131_072))]
    ctx: u32,
}

fn parse_model(s: &str) -> Result<(String, PathBuf), String> {
    let (name, path) = s
        .split_once('=')
        .ok_or_else(|| format!("expected NAME=GGUF, found {s:?}"))?;
    if !api::valid_name(name) {
        return Err(format!(
            "expected NAME=GGUF with NAME like smollm2:135m (letters, digits, . _ - / and one :), found {name:?}"
        ));
    }
    if path.is_empty() {
        return Err(format!("expected NAME=GGUF, found {s:?} (no path)"));
    }
    Ok((api::normalize_name(name), PathBuf::from(path)))
}

/// A usage error: exit code 2, like clap's.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Usage(String);

fn sha256_file(path: &std::path::Path) -> std::io::Result<String> {
    let mut f = std::fs::File::open(path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex::encode(h.finalize()))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("secllama-runner: {e:#}");
            if e.downcast_ref::<Usage>().is_some() {
                ExitCode::from(2)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    // Check every model file before loading any.
    let mut checked = Vec::new();
    for (name, path) in &cli.models {
        if checked.iter().any(|(n, _, _)| n == name) {
            return Err(Usage(format!("--model {name}: the name is given twice")).into());
        }
        // A FIFO or device would block the open or never end: regular files only.
        let meta = std::fs::metadata(path)
            .map_err(|e| Usage(format!("--model {name}={}: {e}", path.display())))?;
        if !meta.is_file() {
            return Err(Usage(format!(
                "--model {name}={}: expected a regular GGUF file, found {}",
                path.display(),
                if meta.is_dir() {
                    "a directory"
                } else {
                    "a FIFO, socket or device"
                }
            ))
            .into());
        }
        let info = gguf::read(path)
            .map_err(|e| Usage(format!("--model {name}={}: {e}", path.display())))?;
        checked.push((name.clone(), path.clone(), info));
    }
    let backend = engine::backend()?;
    let cfg = engine::Config {
        threads: cli.threads,
        ctx: cli.ctx,
    };
    let mut models = Vec::new();
    for (name, path, info) in checked {
        let digest = sha256_file(&path).with_context(|| format!("reading {}", path.display()))?;
        let t = std::time::Instant::now();
        // A GGUF whose header parses but whose tensors llama.cpp cannot load (truncated, an
        // unknown architecture) is a bad --model too: exit 2.
        let m = engine::load(&backend, name, &path, info, digest, cfg)
            .map_err(|e| Usage(format!("--model {}: {e:#}", path.display())))?;
        eprintln!(
            "secllama-runner: loaded {} ({}, {} {}, context {} of {}) in {:.2} s",
            m.name,
            path.display(),
            gguf::human_number(m.info.parameter_count),
            m.info.quantization_level(),
            m.default_ctx,
            m.ctx_train,
            t.elapsed().as_secs_f64()
        );
        models.push(Arc::new(m));
    }
    let state = Arc::new(server::State { models });
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(serve(cli.listen, state))
}

fn ready(addr: &str) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "secllama-runner listening on {addr}")?;
    out.flush()?;
    Ok(())
}

/// Resolves on SIGTERM or SIGINT. The handlers are installed when this is called (before the ready
/// line), not when first polled, so a signal sent right after the ready line is not lost.
fn shutdown() -> anyhow::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
    })
}

async fn serve(listen: Listen, state: Arc<server::State>) -> anyhow::Result<()> {
    match listen {
        Listen::Tcp(addr) => {
            let l = tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("listening on {addr}"))?;
            let stop = shutdown()?;
            ready(&l.local_addr()?.to_string())?;
            tokio::pin!(stop);
            loop {
                tokio::select! {
                    () = &mut stop => return Ok(()),
                    r = l.accept() => {
                        let Ok((s, _)) = r else { continue };
                        let _ = s.set_nodelay(true);
                        tokio::spawn(server::serve_connection(s, Arc::clone(&state)));
                    }
                }
            }
        }
        Listen::Unix(path) => {
            // Replace a stale socket from an earlier run, never any other file.
            if let Ok(m) = std::fs::symlink_metadata(&path) {
                use std::os::unix::fs::FileTypeExt;
                if m.file_type().is_socket() {
                    std::fs::remove_file(&path)?;
                }
            }
            let l = tokio::net::UnixListener::bind(&path)
                .with_context(|| format!("listening on unix:{}", path.display()))?;
            let stop = shutdown()?;
            ready(&format!("unix:{}", path.display()))?;
            tokio::pin!(stop);
            let r = loop {
                tokio::select! {
                    () = &mut stop => break Ok(()),
                    r = l.accept() => {
                        let Ok((s, _)) = r else { continue };
                        tokio::spawn(server::serve_connection(s, Arc::clone(&state)));
                    }
                }
            };
            let _ = std::fs::remove_file(&path);
            r
        }
    }
}
