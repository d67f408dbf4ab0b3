//! An answer as the client sees it: the answer objects in Ollama's field order (`response` for
//! generate, `message` for chat, the statistics on the last one), and the streamed NDJSON body read
//! straight from the worker's bounded channel — dropping it (the client went away) closes the
//! channel, which stops the generation.

use crate::api::{self, DoneReason, Stats};
use crate::engine::{Event, GenError, Job, Model, Prompt};
use crate::server::{Resp, error, full};
use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::{Body, Frame};
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::{Response, StatusCode};
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Instant, SystemTime};
use tokio::sync::mpsc;

/// Events buffered between a worker and a slow client.
const CHANNEL: usize = 8;

/// Which endpoint an answer is for (the shape of its chunks).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `/api/generate`: `response`.
    Generate,
    /// `/api/chat`: `message`.
    Chat,
}

/// An answer object in Ollama's field order: a chunk (`done: false`) or the last one.
#[derive(serde::Serialize)]
struct Reply<'a> {
    model: &'a str,
    created_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    response: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    message: Option<Assistant<'a>>,
    done: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    done_reason: Option<DoneReason>,
    #[serde(flatten)]
    stats: Option<&'a Stats>,
}

#[derive(serde::Serialize)]
struct Assistant<'a> {
    role: &'static str,
    content: &'a str,
}

/// One answer object; `end` makes it the last one.
pub fn reply(
    kind: Kind,
    model: &str,
    text: &str,
    end: Option<(DoneReason, Option<&Stats>)>,
) -> Vec<u8> {
    let r = Reply {
        model,
        created_at: api::rfc3339(SystemTime::now()),
        response: (kind == Kind::Generate).then_some(text),
        message: (kind == Kind::Chat).then_some(Assistant {
            role: "assistant",
            content: text,
        }),
        done: end.is_some(),
        done_reason: end.map(|(r, _)| r),
        stats: end.and_then(|(_, s)| s),
    };
    serde_json::to_vec(&r).unwrap_or_default()
}

/// One answer object as a complete `application/json` response.
pub fn reply_resp(body: Vec<u8>) -> Resp {
    full(StatusCode::OK, "application/json; charset=utf-8", body)
}

fn gen_error(e: &GenError) -> Resp {
    match e {
        GenError::BadRequest(m) => error(StatusCode::BAD_REQUEST, m),
        GenError::Internal(m) => error(StatusCode::INTERNAL_SERVER_ERROR, m),
    }
}

/// Queues the generation and answers: one object, or NDJSON once the first event is in (so that
/// an error before any text still gets its status code).
pub async fn answer(
    kind: Kind,
    model: &Arc<Model>,
    prompt: Prompt,
    options: api::Options,
    stream: bool,
    received: Instant,
) -> Resp {
    let (tx, mut rx) = mpsc::channel(CHANNEL);
    let job = Job {
        prompt,
        options,
        received,
        events: tx,
    };
    if !model.submit(job) {
        return error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the model's worker has stopped",
        );
    }
    let lost = || {
        error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the generation ended early",
        )
    };
    if !stream {
        let mut text = String::new();
        loop {
            match rx.recv().await {
                Some(Event::Text(t)) => text.push_str(&t),
                Some(Event::Done(reason, stats)) => {
                    return reply_resp(reply(
                        kind,
                        &model.name,
                        &text,
                        Some((reason, Some(&stats))),
                    ));
                }
                Some(Event::Error(e)) => return gen_error(&e),
                None => return lost(),
            }
        }
    }
    let first = match rx.recv().await {
        Some(Event::Error(e)) => return gen_error(&e),
        Some(ev) => ev,
        None => return lost(),
    };
    let body = NdjsonBody {
        kind,
        model: model.name.clone(),
        first: Some(first),
        rx,
        finished: false,
    };
    let mut r = Response::new(body.boxed());
    r.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/x-ndjson"),
    );
    r
}

/// A streamed answer: each worker event becomes one NDJSON line. Dropping it (the client went
/// away) closes the channel, which stops the generation.
struct NdjsonBody {
    kind: Kind,
    model: String,
    first: Option<Event>,
    rx: mpsc::Receiver<Event>,
    finished: bool,
}

impl NdjsonBody {
    fn line(&mut self, ev: Event) -> Bytes {
        let mut b = match ev {
            Event::Text(t) => reply(self.kind, &self.model, &t, None),
            Event::Done(reason, stats) => {
                self.finished = true;
                reply(self.kind, &self.model, "", Some((reason, Some(&stats))))
            }
            Event::Error(e) => {
                self.finished = true;
                api::error_body(&e.to_string())
            }
        };
        b.push(b'\n');
        Bytes::from(b)
    }
}

impl Body for NdjsonBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if self.finished {
            return Poll::Ready(None);
        }
        if let Some(ev) = self.first.take() {
            let b = self.line(ev);
            return Poll::Ready(Some(Ok(Frame::data(b))));
        }
        match self.rx.poll_recv(cx) {
            Poll::Ready(Some(ev)) => {
                let b = self.line(ev);
                Poll::Ready(Some(Ok(Frame::data(b))))
            }
            Poll::Ready(None) => {
                // The worker ended without a last event: say so rather than end silently.
                self.finished = true;
                let mut b = api::error_body("the generation ended early");
                b.push(b'\n');
                Poll::Ready(Some(Ok(Frame::data(Bytes::from(b)))))
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.finished
    }
}
