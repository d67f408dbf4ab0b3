//! `secllama-test-runner [--listen ADDR] [--crash-after N] [--stall-after N] [--answer-bytes N]`: the deterministic
//! Ollama-compatible runner of `secllama_tests::runner`. Prints `listening on ADDR` once bound.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use secllama_tests::runner::{Faults, serve};
use std::net::SocketAddr;
use std::process::ExitCode;

fn main() -> ExitCode {
    let mut addr: SocketAddr = SocketAddr::from(([127, 0, 0, 1], 0));
    let mut faults = Faults::default();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let value = args.next();
        let parsed = match (a.as_str(), value.as_deref()) {
            ("--listen", Some(v)) => v.parse().map(|v| addr = v).map_err(|e| e.to_string()),
            ("--crash-after", Some(v)) => v
                .parse()
                .map(|v| faults.crash_after = Some(v))
                .map_err(|e| e.to_string()),
            ("--stall-after", Some(v)) => v
                .parse()
                .map(|v| faults.stall_after = Some(v))
                .map_err(|e| e.to_string()),
            ("--answer-bytes", Some(v)) => v
                .parse()
                .map(|v| faults.answer_bytes = Some(v))
                .map_err(|e| e.to_string()),
            _ => Err(format!("unknown or incomplete argument {a}")),
        };
        if let Err(e) = parsed {
            eprintln!("secllama-test-runner: {e}");
            return ExitCode::from(2);
        }
    }
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("secllama-test-runner: {e}");
            return ExitCode::from(1);
        }
    };
    let result = rt.block_on(serve(addr, faults, |bound| {
        println!("listening on {bound}");
    }));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("secllama-test-runner: {e}");
            ExitCode::from(1)
        }
    }
}
