//! Turning token bytes into the text a client sees: [`Utf8Buf`] holds back a character cut between
//! two tokens (never emitting invalid UTF-8), and [`StopFilter`] cuts the answer before a stop
//! string, holding back text that could still be the start of one until it is decided.

/// Accumulates token bytes and releases only complete UTF-8.
#[derive(Debug, Default)]
pub struct Utf8Buf {
    pending: Vec<u8>,
}

impl Utf8Buf {
    /// Adds `bytes` and returns the text that is now complete. An incomplete character at the end
    /// is kept for the next call; bytes that can never be valid UTF-8 become U+FFFD.
    pub fn push(&mut self, bytes: &[u8]) -> String {
        self.pending.extend_from_slice(bytes);
        let mut out = String::new();
        loop {
            match std::str::from_utf8(&self.pending) {
                Ok(s) => {
                    out.push_str(s);
                    self.pending.clear();
                    return out;
                }
                Err(e) => {
                    let valid = e.valid_up_to();
                    // `valid` bytes are UTF-8 by the error's contract.
                    out.push_str(&String::from_utf8_lossy(&self.pending[..valid]));
                    match e.error_len() {
                        // Incomplete character at the end: keep it.
                        None => {
                            self.pending.drain(..valid);
                            return out;
                        }
                        Some(bad) => {
                            out.push(char::REPLACEMENT_CHARACTER);
                            self.pending.drain(..valid + bad);
                        }
                    }
                }
            }
        }
    }

    /// Releases what is left at the end of the answer (an incomplete character becomes U+FFFD).
    pub fn finish(&mut self) -> String {
        let out = String::from_utf8_lossy(&self.pending).into_owned();
        self.pending.clear();
        out
    }
}

/// What [`StopFilter::push`] decided.
#[derive(Debug, PartialEq, Eq)]
pub struct Pushed {
    /// Text that can be sent to the client now.
    pub emit: String,
    /// A stop string was found: the answer ends after `emit`.
    pub stopped: bool,
}

/// Cuts the answer before the first stop string, like Ollama: text that may still turn out to be
/// the start of a stop string is held back.
#[derive(Debug, Default)]
pub struct StopFilter {
    stops: Vec<String>,
    pending: String,
}

impl StopFilter {
    /// A filter for `stops` (empty strings are ignored).
    pub fn new(stops: Vec<String>) -> Self {
        Self {
            stops: stops.into_iter().filter(|s| !s.is_empty()).collect(),
            pending: String::new(),
        }
    }

    /// Adds `text`; returns what may be sent now, and whether a stop string ended the answer.
    pub fn push(&mut self, text: &str) -> Pushed {
        self.pending.push_str(text);
        let first = self
            .stops
            .iter()
            .filter_map(|s| self.pending.find(s.as_str()))
            .min();
        if let Some(at) = first {
            let emit = self.pending[..at].to_string();
            self.pending.clear();
            return Pushed {
                emit,
                stopped: true,
            };
        }
        // Hold back the longest suffix that is a proper prefix of some stop string.
        let hold_from = self
            .pending
            .char_indices()
            .map(|(i, _)| i)
            .find(|&i| {
                let tail = &self.pending[i..];
                self.stops.iter().any(|s| s.starts_with(tail))
            })
            .unwrap_or(self.pending.len());
        let emit = self.pending[..hold_from].to_string();
        self.pending.drain(..hold_from);
        Pushed {
            emit,
            stopped: false,
        }
    }

    /// Releases held-back text at the end of the answer (it did not become a stop string).
    pub fn finish(&mut self) -> String {
        std::mem::take(&mut self.pending)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utf8_is_held_until_complete() {
        let mut b = Utf8Buf::default();
        let snow = "☃".as_bytes(); // e2 98 83
        assert_eq!(b.push(b"a"), "a");
        assert_eq!(b.push(&snow[..1]), "");
        assert_eq!(b.push(&snow[1..2]), "");
        assert_eq!(b.push(&[snow[2], b'b']), "☃b");
        let emoji = "😀".as_bytes();
        assert_eq!(b.push(&emoji[..3]), "");
        assert_eq!(b.push(&emoji[3..]), "😀");
        assert_eq!(b.finish(), "");
    }

    #[test]
    fn utf8_never_emits_invalid_bytes() {
        let mut b = Utf8Buf::default();
        assert_eq!(b.push(b"x\xffy"), "x\u{fffd}y");
        assert_eq!(b.push(b"\xe2\x98"), "");
        assert_eq!(b.finish(), "\u{fffd}");
        // Every split of a mixed string gives back the string.
        let s = "añ☃😀z";
        for cut in 0..=s.len() {
            let mut b = Utf8Buf::default();
            let mut out = b.push(&s.as_bytes()[..cut]);
            out += &b.push(&s.as_bytes()[cut..]);
            out += &b.finish();
            assert_eq!(out, s);
        }
    }

    #[test]
    fn stop_strings_cut_and_hold() {
        let mut f = StopFilter::new(vec!["STOP".into(), "\n\n".into()]);
        assert_eq!(
            f.push("hello S"),
            Pushed {
                emit: "hello ".into(),
                stopped: false
            }
        );
        assert_eq!(
            f.push("T"),
            Pushed {
                emit: "".into(),
                stopped: false
            }
        );
        assert_eq!(
            f.push("x"),
            Pushed {
                emit: "STx".into(),
                stopped: false
            }
        );
        assert_eq!(
            f.push(" and\n"),
            Pushed {
                emit: " and".into(),
                stopped: false
            }
        );
        assert_eq!(
            f.push("\nmore"),
            Pushed {
                emit: "".into(),
                stopped: true
            }
        );
    }

    #[test]
    fn stop_inside_one_piece_and_at_end() {
        let mut f = StopFilter::new(vec!["cat".into()]);
        assert_eq!(
            f.push("a big cat sat"),
            Pushed {
                emit: "a big ".into(),
                stopped: true
            }
        );
        let mut f = StopFilter::new(vec!["cat".into()]);
        assert_eq!(f.push("the ca").emit, "the ");
        assert_eq!(f.finish(), "ca");
        let mut f = StopFilter::new(vec![]);
        assert_eq!(f.push("anything").emit, "anything");
    }

    #[test]
    fn stop_strings_split_at_any_point_and_multibyte() {
        let answer = "je vais à la plage ☃ demain";
        for stop in ["plage", "☃ d", "à"] {
            let want = &answer[..answer.find(stop).unwrap()];
            for cut in answer.char_indices().map(|(i, _)| i) {
                let mut f = StopFilter::new(vec![stop.into()]);
                let a = f.push(&answer[..cut]);
                let mut out = a.emit;
                let mut stopped = a.stopped;
                if !stopped {
                    let b = f.push(&answer[cut..]);
                    out += &b.emit;
                    stopped = b.stopped;
                }
                assert!(stopped);
                assert_eq!(out, want, "stop {stop:?} cut {cut}");
            }
        }
    }
}
