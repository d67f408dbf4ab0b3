//! The runner's output inside the guest (docs/vm.md). The console is the host's to read (the
//! serial log) and the launcher acts on some of its lines (`ak public:`, `listening on vsock:`,
//! `secllama-init: …`), so the runner never writes to it directly: its stdout and stderr are
//! pipes the init reads, and each line goes to the console as `runner: <line>` — control
//! characters escaped (`\x1b` …), lines cut at [`MAX_LINE`] bytes, and at most [`BUDGET`] bytes
//! in all, after which one `runner: (further output dropped)` line ends it. A runner can thus
//! neither forge a line the launcher trusts nor fill the host's disk. In SEV-SNP mode the host is
//! untrusted and the runner's output is not relayed at all.

use std::io::{BufRead, Write};

/// Longest line relayed, in bytes (the rest of the line is dropped).
pub const MAX_LINE: usize = 4096;
/// Bytes relayed over the runner's whole life.
pub const BUDGET: usize = 4 << 20;

/// `line` with control characters and non-UTF-8 bytes escaped as `\xNN`, at most [`MAX_LINE`]
/// bytes of it.
pub fn escape(line: &[u8]) -> String {
    let cut = &line[..line.len().min(MAX_LINE)];
    let text = String::from_utf8_lossy(cut);
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_control() || c == '\u{fffd}' {
            out.push_str(&format!("\\x{:02x}", u32::from(c) & 0xff));
        } else {
            out.push(c);
        }
    }
    out
}

/// Copies `from` to `to` line by line as `runner: <escaped line>` until end of file, within
/// [`BUDGET`].
pub fn relay(from: impl std::io::Read, mut to: impl Write) {
    let mut r = std::io::BufReader::new(from);
    let mut spent = 0usize;
    let mut line = Vec::new();
    loop {
        line.clear();
        // Read at most MAX_LINE + 1 bytes of the line, then skip the rest of it.
        let n = match std::io::Read::take(&mut r, MAX_LINE as u64 + 1).read_until(b'\n', &mut line)
        {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if n > MAX_LINE && line.last() != Some(&b'\n') {
            let mut rest = Vec::new();
            let _ = r.read_until(b'\n', &mut rest);
        }
        while line.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
            line.pop();
        }
        let out = format!("runner: {}\n", escape(&line));
        spent += out.len();
        if spent > BUDGET {
            let _ = to.write_all(b"runner: (further output dropped)\n");
            // Keep draining so the runner never blocks on a full pipe.
            let _ = std::io::copy(&mut r, &mut std::io::sink());
            return;
        }
        let _ = to.write_all(out.as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_prefixed_escaped_cut_and_bounded() {
        let mut input = b"hello\n\x1b[2Jak public: 00\nsecllama-init: stage x\r\n".to_vec();
        input.extend(vec![b'a'; MAX_LINE + 100]);
        input.extend(b"\nlast\n");
        let mut out = Vec::new();
        relay(&input[..], &mut out);
        let text = String::from_utf8(out).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "runner: hello");
        assert_eq!(lines[1], "runner: \\x1b[2Jak public: 00");
        assert_eq!(lines[2], "runner: secllama-init: stage x");
        assert_eq!(lines[3].len(), "runner: ".len() + MAX_LINE);
        assert_eq!(lines[4], "runner: last");
        assert!(lines.iter().all(|l| l.starts_with("runner: ")));

        let flood = [b'x'; 100].repeat(BUDGET / 50);
        let flood: Vec<u8> = flood
            .chunks(100)
            .flat_map(|c| c.iter().copied().chain([b'\n']))
            .collect();
        let mut out = Vec::new();
        relay(&flood[..], &mut out);
        assert!(out.len() <= BUDGET + 64, "{}", out.len());
        assert!(out.ends_with(b"runner: (further output dropped)\n"));
    }
}
