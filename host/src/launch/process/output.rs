//! The sandboxes' stdout and stderr on the launcher's output, with bounds: a hostile runner must
//! not grow the launcher's memory (one endless line), the host's disk (the launcher's output
//! redirected to a file) or write terminal escape sequences into the operator's terminal.
//!
//! Each line is cut at [`MAX_LINE`] bytes (the cut is marked with the number of bytes left out),
//! control characters other than tab are shown escaped (`\u{1b}`), and each of a sandbox's stdout
//! and stderr may put at most [`BYTES_PER_MINUTE`] on the output per minute; lines beyond that are
//! dropped and counted, and the count is reported once output is allowed again.

use std::io::{BufRead, Write};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

/// Longest line forwarded, in bytes.
pub const MAX_LINE: usize = 4096;
/// Bytes one sandbox may put on the launcher's output per minute.
pub const BYTES_PER_MINUTE: usize = 1 << 20;

/// Where the lines go.
pub type Log = Arc<Mutex<dyn Write + Send>>;

/// Reads one line of at most `max` bytes (the rest of a longer line is read and counted, not
/// kept); `None` at end of input.
pub fn read_line_bounded(
    r: &mut impl BufRead,
    max: usize,
) -> std::io::Result<Option<(Vec<u8>, usize)>> {
    let mut line = Vec::new();
    let mut cut = 0usize;
    loop {
        let buf = r.fill_buf()?;
        if buf.is_empty() {
            return Ok((!line.is_empty() || cut > 0).then_some((line, cut)));
        }
        let newline = buf.iter().position(|b| *b == b'\n');
        let chunk = &buf[..newline.unwrap_or(buf.len())];
        let take = chunk.len().min(max.saturating_sub(line.len()));
        line.extend_from_slice(&chunk[..take]);
        cut += chunk.len() - take;
        let consumed = newline.map_or(buf.len(), |i| i + 1);
        r.consume(consumed);
        if newline.is_some() {
            return Ok(Some((line, cut)));
        }
    }
}

/// The line as text: invalid UTF-8 replaced, control characters (but tab) escaped.
pub fn shown(line: &[u8]) -> String {
    let mut out = String::with_capacity(line.len());
    for c in String::from_utf8_lossy(line).chars() {
        if c.is_control() && c != '\t' {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// How much one stream may write: `bytes` per `window`, counted as written (prefix and newline
/// included, so empty lines cost too).
#[derive(Debug, Clone, Copy)]
pub struct Rate {
    /// Bytes per window.
    pub bytes: usize,
    /// The window.
    pub window: Duration,
}

/// [`BYTES_PER_MINUTE`] per minute.
pub const DEFAULT_RATE: Rate = Rate {
    bytes: BYTES_PER_MINUTE,
    window: Duration::from_secs(60),
};

/// What a stream used in the current window.
#[derive(Debug)]
struct Budget {
    rate: Rate,
    start: Instant,
    used: usize,
    dropped_lines: u64,
    dropped_bytes: usize,
}

impl Budget {
    fn roll(&mut self) {
        if self.start.elapsed() >= self.rate.window {
            self.start = Instant::now();
            self.used = 0;
            self.dropped_bytes = 0;
        }
    }

    fn take(&mut self, n: usize) -> bool {
        self.roll();
        if self.used.saturating_add(n) > self.rate.bytes {
            self.dropped_lines += 1;
            self.dropped_bytes = self.dropped_bytes.saturating_add(n);
            false
        } else {
            self.used += n;
            true
        }
    }

    /// A stream that keeps writing far past its budget is no longer read until the window ends:
    /// its writer blocks on the full pipe instead of keeping the launcher busy dropping lines.
    fn throttle(&mut self) {
        if self.dropped_bytes > self.rate.bytes.saturating_mul(8) {
            std::thread::sleep(self.rate.window.saturating_sub(self.start.elapsed()));
            self.roll();
        }
    }
}

/// Copies `pipe` to `log` line by line, each prefixed `NAME: `, within the bounds above and
/// `rate`; `ready` gets `()` once a line starts with `listening on `. Returns when the pipe ends.
pub fn forward(
    pipe: impl std::io::Read,
    log: &Log,
    name: &str,
    ready: Option<&mpsc::Sender<()>>,
    rate: Rate,
) {
    let mut r = std::io::BufReader::new(pipe);
    let mut budget = Budget {
        rate,
        start: Instant::now(),
        used: 0,
        dropped_lines: 0,
        dropped_bytes: 0,
    };
    while let Ok(Some((line, cut))) = read_line_bounded(&mut r, MAX_LINE) {
        if let Some(tx) = ready
            && line.starts_with(b"listening on ")
        {
            let _ = tx.send(());
        }
        let mut text = format!("{name}: {}", shown(&line));
        if cut > 0 {
            text.push_str(&format!(" [… {cut} more bytes of this line left out]"));
        }
        text.push('\n');
        let dropped = budget.dropped_lines;
        if !budget.take(text.len()) {
            budget.throttle();
            continue;
        }
        if secllama_enclave::diagnostics::format() == secllama_enclave::diagnostics::LogFormat::Json
        {
            // One JSON object per line: the sandbox's line is a string field, so a sandbox
            // cannot write a line that passes for one of the launcher's own.
            if dropped > 0 {
                tracing::warn!(target: "secllama::sandbox", sandbox = name, dropped, "lines left out: over the output budget");
                budget.dropped_lines = 0;
            }
            tracing::info!(target: "secllama::sandbox", sandbox = name, cut, line = %shown(&line), "output");
            continue;
        }
        if let Ok(mut l) = log.lock() {
            if dropped > 0 {
                let _ = writeln!(
                    l,
                    "{name}: [{dropped} line(s) left out: more than {} bytes of output in {:?}]",
                    rate.bytes, rate.window
                );
                budget.dropped_lines = 0;
            }
            let _ = l.write_all(text.as_bytes());
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use std::io::Read;

    fn run(input: &[u8], bytes: usize) -> String {
        let out: Arc<Mutex<Vec<u8>>> = Arc::new(Mutex::new(Vec::new()));
        let log: Log = out.clone();
        let rate = Rate {
            bytes,
            window: Duration::from_secs(60),
        };
        forward(input, &log, "runner", None, rate);
        String::from_utf8(out.lock().unwrap().clone()).unwrap()
    }

    #[test]
    fn long_lines_are_cut_and_escapes_shown() {
        let mut input = vec![b'a'; MAX_LINE + 10];
        input.extend_from_slice(b"\nred \x1b[31m bell \x07\tok\n\xff\nlast");
        let out = run(&input, BYTES_PER_MINUTE);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 4, "{out}");
        assert_eq!(
            lines[0],
            format!(
                "runner: {} [… 10 more bytes of this line left out]",
                "a".repeat(MAX_LINE)
            )
        );
        assert_eq!(lines[1], "runner: red \\u{1b}[31m bell \\u{7}\tok");
        assert_eq!(lines[2], "runner: \u{fffd}");
        assert_eq!(lines[3], "runner: last");
    }

    #[test]
    fn output_beyond_the_budget_is_dropped_and_counted() {
        // Each line costs what is written: "runner: 0123456789\n" is 19 bytes; three fit in 60.
        let input = "0123456789\n".repeat(10);
        let out = run(input.as_bytes(), 60);
        assert_eq!(out.lines().count(), 3, "{out}");
        // Empty lines cost their prefix and newline too (a flood of them once bypassed the bound).
        let out = run("\n".repeat(500).as_bytes(), 1000);
        assert_eq!(
            out.len(),
            111 * "runner: \n".len(),
            "{} bytes written",
            out.len()
        );
    }

    #[test]
    fn a_stream_far_over_its_budget_is_throttled_then_reported() {
        // Window 300 ms, 100 bytes; each "runner: x\n" costs 10. Per window 10 lines are written,
        // then 81 dropped (810 > 8 × 100 bytes) and the stream is not read until the window ends:
        // 182 lines take two windows, and the line after them opens the third, reported with the
        // count of what was left out.
        let out: Arc<Mutex<Vec<u8>>> = Arc::new(Mutex::new(Vec::new()));
        let log: Log = out.clone();
        let rate = Rate {
            bytes: 100,
            window: Duration::from_millis(300),
        };
        let mut input = "x\n".repeat(182).into_bytes();
        input.extend_from_slice(b"after\n");
        let started = Instant::now();
        forward(&input[..], &log, "runner", None, rate);
        assert!(started.elapsed() >= Duration::from_millis(550));
        let text = String::from_utf8(out.lock().unwrap().clone()).unwrap();
        assert!(text.contains("[81 line(s) left out"), "{text}");
        assert_eq!(text.lines().count(), 10 + 1 + 10 + 1 + 1, "{text}");
        assert!(text.ends_with("runner: after\n"), "{text}");
    }

    #[test]
    fn an_endless_line_is_read_in_bounded_memory() {
        let endless = std::io::repeat(b'x').take(64 << 20);
        let mut r = std::io::BufReader::new(endless);
        let (line, cut) = read_line_bounded(&mut r, MAX_LINE).unwrap().unwrap();
        assert_eq!((line.len(), cut), (MAX_LINE, (64 << 20) - MAX_LINE));
        assert!(read_line_bounded(&mut r, MAX_LINE).unwrap().is_none());
    }
}
