//! The proxy's streamed answer body: authenticated chunks pass on as they arrive, the part that
//! lets a client consider the answer complete only once the receipt verified.

use bytes::Bytes;
use hyper::body::Frame;
use tokio::sync::mpsc;

/// What the proxy's forwarding task reports.
pub(super) enum Event {
    /// Authenticated answer bytes.
    Data(Bytes),
    /// How the exchange ended.
    End(End),
}

pub(super) enum End {
    Done(u16),
    Problem(u16, serde_json::Value),
    UnknownDocument(String),
    Failed(String),
    /// The enclave could not be reached or the connection broke (nothing verified).
    Unreachable(String),
}

/// The streamed body: `first`, then whatever arrives, ending with an error (aborting the transfer)
/// unless the exchange ended with a verified receipt.
///
/// Nothing that lets a client consider the answer complete leaves before the receipt verified:
/// complete NDJSON lines pass on as they arrive, except the final one (`"done": true`) and
/// everything after it, which are held back — as is any unterminated tail — and released only
/// after [`End::Done`].
pub(super) struct Streamed {
    pub(super) first: Option<Event>,
    pub(super) rx: mpsc::UnboundedReceiver<Event>,
    pub(super) lines: HoldBack,
    pub(super) done: bool,
}

/// Splits NDJSON into lines that may pass now and the part held until the receipt verified.
#[derive(Debug, Default)]
pub struct HoldBack {
    /// Bytes after the last newline (an incomplete line).
    partial: Vec<u8>,
    /// The final line and everything after it.
    held: Vec<u8>,
}

impl HoldBack {
    /// Takes `data`; returns the bytes that may be passed on now.
    pub fn push(&mut self, data: &[u8]) -> Vec<u8> {
        if !self.held.is_empty() {
            self.held.extend_from_slice(data);
            return Vec::new();
        }
        self.partial.extend_from_slice(data);
        let mut out = Vec::new();
        while let Some(nl) = self.partial.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = self.partial.drain(..=nl).collect();
            if is_final_line(&line) {
                self.held = line;
                self.held.append(&mut self.partial);
                break;
            }
            out.extend_from_slice(&line);
        }
        out
    }

    /// Everything held back: released once the receipt verified.
    pub fn release(&mut self) -> Vec<u8> {
        let mut out = std::mem::take(&mut self.held);
        out.append(&mut self.partial);
        out
    }
}

/// Whether an NDJSON line is one a client treats as the end of the answer: an object whose
/// `done` member is `true` (Ollama's generate and chat streams).
pub fn is_final_line(line: &[u8]) -> bool {
    serde_json::from_slice::<serde_json::Value>(line)
        .ok()
        .is_some_and(|v| v.get("done") == Some(&serde_json::Value::Bool(true)))
}

impl hyper::body::Body for Streamed {
    type Data = Bytes;
    type Error = std::io::Error;
    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        use std::task::Poll;
        loop {
            if self.done {
                return Poll::Ready(None);
            }
            let event = match self.first.take() {
                Some(e) => Some(e),
                None => match self.rx.poll_recv(cx) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(e) => e,
                },
            };
            let out = match event {
                Some(Event::Data(d)) => {
                    let pass = self.lines.push(&d);
                    if pass.is_empty() {
                        continue;
                    }
                    Some(Ok(Frame::data(Bytes::from(pass))))
                }
                Some(Event::End(End::Done(_))) => {
                    self.done = true;
                    let rest = self.lines.release();
                    if rest.is_empty() {
                        None
                    } else {
                        Some(Ok(Frame::data(Bytes::from(rest))))
                    }
                }
                Some(Event::End(End::Problem(_, p))) => {
                    self.done = true;
                    Some(Err(std::io::Error::other(format!("enclave problem: {p}"))))
                }
                Some(Event::End(
                    End::UnknownDocument(w) | End::Failed(w) | End::Unreachable(w),
                )) => {
                    self.done = true;
                    Some(Err(std::io::Error::other(w)))
                }
                None => {
                    self.done = true;
                    Some(Err(std::io::Error::other(
                        "the exchange ended without a result",
                    )))
                }
            };
            return Poll::Ready(out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_final_line_and_what_follows_are_held_until_released() {
        let mut h = HoldBack::default();
        assert_eq!(
            h.push(b"{\"response\":\"a\",\"done\":false}\n{\"resp"),
            b"{\"response\":\"a\",\"done\":false}\n"
        );
        assert_eq!(
            h.push(b"onse\":\"b\",\"done\":false}\n"),
            b"{\"response\":\"b\",\"done\":false}\n"
        );
        // The done line, split across pushes, and bytes after it: nothing passes.
        assert!(h.push(b"{\"done\":").is_empty());
        assert!(h.push(b"true,\"eval_count\":2}\n{\"x\":1}\n").is_empty());
        assert!(h.push(b"tail").is_empty());
        assert_eq!(
            h.release(),
            b"{\"done\":true,\"eval_count\":2}\n{\"x\":1}\ntail"
        );
    }

    #[test]
    fn an_unterminated_line_is_held_and_only_done_true_is_final() {
        let mut h = HoldBack::default();
        assert!(h.push(b"{\"done\":true}").is_empty(), "no newline yet");
        assert_eq!(h.release(), b"{\"done\":true}");
        for not_final in [
            &b"{\"done\":false}\n"[..],
            b"{\"done\":\"true\"}\n",
            b"[true]\n",
            b"garbage\n",
        ] {
            let mut h = HoldBack::default();
            assert_eq!(h.push(not_final), not_final);
        }
    }
}
