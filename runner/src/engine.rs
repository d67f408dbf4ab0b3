//! llama.cpp: loading the models, and one worker thread per model that runs its generations one
//! at a time (others wait in its queue). A generation renders the prompt through the model's chat
//! template (llama.cpp's built-in template matching), evaluates it, samples with Ollama's options,
//! and sends text through a bounded channel; it stops as soon as the receiver is gone (the client
//! disconnected).

use crate::api::{self, DoneReason, Message, Options, Stats};
use crate::gguf::GgufInfo;
use crate::stop::{StopFilter, Utf8Buf};
use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::context::params::LlamaContextParams;
use llama_cpp_2::llama_backend::LlamaBackend;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_2::model::{LlamaChatMessage, LlamaModel};
use llama_cpp_2::sampling::LlamaSampler;
use std::num::NonZeroU32;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use tokio::sync::mpsc;

/// The smallest context a request may ask for.
pub const MIN_CTX: u32 = 64;
/// The largest context a request may ask for (also capped by the model's training context).
pub const MAX_CTX: u32 = 131_072;
/// Tokens per prompt-evaluation batch.
const N_BATCH: usize = 512;
/// llama.cpp's "draw a random seed".
const RANDOM_SEED: u32 = 0xFFFF_FFFF;

/// How the runner runs its models.
#[derive(Debug, Clone, Copy)]
pub struct Config {
    /// Threads per generation.
    pub threads: u32,
    /// The context length when a request does not set `num_ctx`.
    pub ctx: u32,
}

/// What a generation is asked to continue.
#[derive(Debug, Clone)]
pub enum Prompt {
    /// Messages rendered through the model's chat template (with the assistant turn opened).
    Chat(Vec<Message>),
    /// Text used as is (`raw`).
    Raw(String),
}

/// A failed generation.
#[derive(Debug, Clone, thiserror::Error)]
pub enum GenError {
    /// The request cannot be served as asked (HTTP 400).
    #[error("{0}")]
    BadRequest(String),
    /// llama.cpp failed (HTTP 500).
    #[error("{0}")]
    Internal(String),
}

/// What a worker reports about a generation, in order: text pieces, then `Done` or `Error`.
#[derive(Debug)]
pub enum Event {
    /// Answer text (complete UTF-8, nothing of a possible stop string).
    Text(String),
    /// The answer ended.
    Done(DoneReason, Stats),
    /// The generation failed.
    Error(GenError),
}

/// One queued generation.
#[derive(Debug)]
pub struct Job {
    /// The prompt.
    pub prompt: Prompt,
    /// Its options.
    pub options: Options,
    /// When the request arrived (for `total_duration`).
    pub received: Instant,
    /// Where the events go; closed when the client went away.
    pub events: mpsc::Sender<Event>,
}

/// A loaded model: its description and the queue of its worker.
#[derive(Debug)]
pub struct Model {
    /// The normalized name (`name:tag`).
    pub name: String,
    /// Its metadata.
    pub info: GgufInfo,
    /// Hex SHA-256 of the file.
    pub digest: String,
    /// File size in bytes.
    pub size: u64,
    /// File modification time.
    pub modified: SystemTime,
    /// The model's training context (the cap on `num_ctx`).
    pub ctx_train: u32,
    /// The context used when a request does not set `num_ctx`.
    pub default_ctx: u32,
    queue: std::sync::mpsc::Sender<Job>,
}

impl Model {
    /// Queues a generation; false when the worker is gone.
    pub fn submit(&self, job: Job) -> bool {
        self.queue.send(job).is_ok()
    }
}

/// Initializes llama.cpp once per process, with its logging silenced (it would print thousands of
/// lines per run).
pub fn backend() -> anyhow::Result<Arc<LlamaBackend>> {
    llama_cpp_2::send_logs_to_tracing(llama_cpp_2::LogOptions::default().with_logs_enabled(false));
    Ok(Arc::new(LlamaBackend::init()?))
}

/// Loads the model `name` from `path` (already checked to be a GGUF with `info`, `digest`) and
/// starts its worker thread.
pub fn load(
    backend: &Arc<LlamaBackend>,
    name: String,
    path: &Path,
    info: GgufInfo,
    digest: String,
    cfg: Config,
) -> anyhow::Result<Model> {
    let meta = std::fs::metadata(path)?;
    let model = LlamaModel::load_from_file(backend, path, &LlamaModelParams::default())
        .map_err(|e| anyhow::anyhow!("llama.cpp could not load {}: {e}", path.display()))?;
    let ctx_train = model.n_ctx_train().clamp(MIN_CTX, MAX_CTX);
    let default_ctx = cfg.ctx.clamp(MIN_CTX, ctx_train);
    let (queue, jobs) = std::sync::mpsc::channel::<Job>();
    let b = Arc::clone(backend);
    std::thread::Builder::new()
        .name(format!("gen {name}"))
        .spawn(move || Worker::new(&b, &model, cfg.threads, ctx_train, default_ctx).run(&jobs))?;
    Ok(Model {
        name,
        info,
        digest,
        size: meta.len(),
        modified: meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
        ctx_train,
        default_ctx,
        queue,
    })
}

/// Runs one model's generations one after the other, keeping the last context for reuse.
struct Worker<'m> {
    backend: &'m LlamaBackend,
    model: &'m LlamaModel,
    threads: i32,
    ctx_train: u32,
    default_ctx: u32,
    ctx: Option<LlamaContext<'m>>,
}

impl<'m> Worker<'m> {
    fn new(
        backend: &'m LlamaBackend,
        model: &'m LlamaModel,
        threads: u32,
        ctx_train: u32,
        default_ctx: u32,
    ) -> Self {
        Self {
            backend,
            model,
            threads: i32::try_from(threads).unwrap_or(1).max(1),
            ctx_train,
            default_ctx,
            ctx: None,
        }
    }

    fn run(mut self, jobs: &std::sync::mpsc::Receiver<Job>) {
        for job in jobs {
            if job.events.is_closed() {
                continue; // the client left while queued
            }
            let events = job.events.clone();
            // A panic inside llama-cpp-2 must not take the model's worker down with it.
            let result =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.generate(job)))
                    .unwrap_or_else(|_| Err(GenError::Internal("the generation panicked".into())));
            let last = match result {
                Ok(Some((reason, stats))) => Event::Done(reason, stats),
                Ok(None) => continue, // cancelled
                Err(e) => {
                    if matches!(e, GenError::Internal(_)) {
                        self.ctx = None; // do not reuse a context in an unknown state
                    }
                    Event::Error(e)
                }
            };
            let _ = events.blocking_send(last);
        }
    }

    /// A context of `n_ctx` tokens with an empty cache, reusing the last one when it fits.
    fn context(&mut self, n_ctx: u32) -> Result<&mut LlamaContext<'m>, GenError> {
        match &mut self.ctx {
            Some(c) if c.n_ctx() == n_ctx => c.clear_kv_cache(),
            slot => {
                *slot = None; // free the old cache first
                let params = LlamaContextParams::default()
                    .with_n_ctx(NonZeroU32::new(n_ctx))
                    .with_n_batch(N_BATCH as u32)
                    .with_n_ubatch(N_BATCH as u32)
                    .with_n_threads(self.threads)
                    .with_n_threads_batch(self.threads);
                let c = self
                    .model
                    .new_context(self.backend, params)
                    .map_err(|e| GenError::Internal(format!("creating a context: {e}")))?;
                *slot = Some(c);
            }
        }
        self.ctx
            .as_mut()
            .ok_or_else(|| GenError::Internal("no context".into()))
    }

    fn render(&self, prompt: &Prompt) -> Result<String, GenError> {
        let msgs = match prompt {
            Prompt::Raw(s) => return Ok(s.clone()),
            Prompt::Chat(m) => m,
        };
        let tmpl = self.model.chat_template(None).map_err(|e| {
            GenError::BadRequest(format!(
                "the model has no usable chat template ({e}); use raw"
            ))
        })?;
        let chat = msgs
            .iter()
            .map(|m| LlamaChatMessage::new(m.role.clone(), m.content.clone()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| GenError::BadRequest(format!("message: {e}")))?;
        self.model
            .apply_chat_template(&tmpl, &chat, true)
            .map_err(|e| {
                GenError::Internal(format!(
                    "llama.cpp's built-in templates do not match this model's chat template ({e})"
                ))
            })
    }

    fn sampler(&self, o: &Options, n_ctx: u32) -> LlamaSampler {
        let last_n = if o.repeat_last_n < 0 {
            i32::try_from(n_ctx).unwrap_or(i32::MAX)
        } else {
            o.repeat_last_n
        };
        let mut chain = vec![LlamaSampler::penalties(
            self.model.n_vocab(),
            last_n,
            o.repeat_penalty,
            o.frequency_penalty,
            o.presence_penalty,
        )];
        if o.temperature <= 0.0 {
            chain.push(LlamaSampler::greedy());
        } else {
            if o.top_k > 0 {
                chain.push(LlamaSampler::top_k(o.top_k));
            }
            chain.push(LlamaSampler::top_p(o.top_p, 1));
            if o.min_p > 0.0 {
                chain.push(LlamaSampler::min_p(o.min_p, 1));
            }
            chain.push(LlamaSampler::temp(o.temperature));
            chain.push(LlamaSampler::dist(o.seed.unwrap_or(RANDOM_SEED)));
        }
        LlamaSampler::chain(chain, true)
    }

    /// Runs one generation; `Ok(None)` when the client went away.
    fn generate(&mut self, job: Job) -> Result<Option<(DoneReason, Stats)>, GenError> {
        let Job {
            prompt,
            options: o,
            received,
            events,
        } = job;
        let n_ctx = o
            .num_ctx
            .unwrap_or(self.default_ctx)
            .clamp(MIN_CTX, self.ctx_train);
        let text = self.render(&prompt)?;
        let vocab = self.model.vocab();
        // A template that writes the BOS token itself must not get a second one.
        let bos = vocab.token_to_piece(vocab.bos(), true, None);
        let add_bos = bos.is_empty() || !text.as_bytes().starts_with(&bos);
        let tokens = vocab.tokenize(text.as_bytes(), add_bos, true);
        if tokens.is_empty() {
            return Err(GenError::BadRequest("the prompt is empty".into()));
        }
        if tokens.len() >= n_ctx as usize {
            return Err(GenError::BadRequest(format!(
                "the prompt is {} tokens, more than the context of {n_ctx} tokens leaves room for (raise num_ctx, at most {})",
                tokens.len(),
                self.ctx_train
            )));
        }
        let mut sampler = self.sampler(&o, n_ctx);
        let t_load = Instant::now();
        let ctx = self.context(n_ctx)?;
        let load = t_load.elapsed();

        let t_prompt = Instant::now();
        let mut batch = LlamaBatch::new(N_BATCH, 1);
        let last = tokens.len() - 1;
        let mut pos: i32 = 0;
        for chunk in tokens.chunks(N_BATCH) {
            if events.is_closed() {
                return Ok(None);
            }
            batch.clear();
            for &t in chunk {
                let want_logits = pos as usize == last;
                batch
                    .add(t, pos, &[0], want_logits)
                    .map_err(|e| GenError::Internal(format!("batch: {e}")))?;
                pos += 1;
            }
            ctx.decode(&mut batch)
                .map_err(|e| GenError::Internal(format!("evaluating the prompt: {e}")))?;
        }
        let prompt_eval = t_prompt.elapsed();

        let t_eval = Instant::now();
        let mut idx = batch.n_tokens() - 1;
        let mut utf8 = Utf8Buf::default();
        let mut stop = StopFilter::new(o.stop.clone());
        let mut eval_count: u64 = 0;
        let limit = u64::try_from(o.num_predict).ok().filter(|&n| n > 0);
        let n_ctx_i = i32::try_from(n_ctx).unwrap_or(i32::MAX);
        let mut stopped_by_string = false;
        let reason = loop {
            let tok = sampler.sample(ctx, idx);
            eval_count += 1;
            if vocab.is_eog(tok) {
                break DoneReason::Stop;
            }
            let piece = utf8.push(&vocab.token_to_piece(tok, false, None));
            let pushed = stop.push(&piece);
            if !pushed.emit.is_empty() && events.blocking_send(Event::Text(pushed.emit)).is_err() {
                return Ok(None);
            }
            if pushed.stopped {
                stopped_by_string = true;
                break DoneReason::Stop;
            }
            if limit.is_some_and(|n| eval_count >= n) || pos >= n_ctx_i {
                break DoneReason::Length;
            }
            batch.clear();
            batch
                .add(tok, pos, &[0], true)
                .map_err(|e| GenError::Internal(format!("batch: {e}")))?;
            pos += 1;
            ctx.decode(&mut batch)
                .map_err(|e| GenError::Internal(format!("generating: {e}")))?;
            idx = 0;
        };
        if !stopped_by_string {
            let tail = utf8.finish();
            let mut rest = stop.push(&tail);
            if !rest.stopped {
                rest.emit.push_str(&stop.finish());
            }
            if !rest.emit.is_empty() && events.blocking_send(Event::Text(rest.emit)).is_err() {
                return Ok(None);
            }
        }
        let eval = t_eval.elapsed();
        let stats = Stats {
            total_duration: api::nanos(received.elapsed()),
            load_duration: api::nanos(load),
            prompt_eval_count: tokens.len() as u64,
            prompt_eval_duration: api::nanos(prompt_eval),
            eval_count,
            eval_duration: api::nanos(eval.max(Duration::from_nanos(1))),
        };
        Ok(Some((reason, stats)))
    }
}
