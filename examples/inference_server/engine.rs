//! The simulated inference engine: per-model scheduler with a bounded queue, a prefix
//! cache, prefill and decode with real wall-clock timing, and occasional failures.
//!
//! Instrumented only through the span contract: `#[instrument]` fields, `Span::record`
//! and events. There is not a single `metrics` call here. A streamed token counts once
//! the response body took it ([`Sink::emit`]), so the metrics agree exactly with what a
//! client that walks away mid-stream received.

use std::collections::{HashSet, VecDeque};
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::trace::Trace;
use llm_span_testkit::demo::{fake_token, natural_length, stable_hash, Rng};
use tokio::sync::{mpsc, oneshot, Semaphore};
use tracing::field::Empty;
use tracing::Instrument;

use crate::admin::Speed;
use crate::config::{Config, ModelSpec};

/// Prompt tokens per prefix-cache block.
const BLOCK: usize = 16;
/// Blocks each model's prefix cache keeps.
const CACHE_BLOCKS: usize = 8192;
/// Simulated KV-cache size per model, in tokens.
const KV_CAPACITY_TOKENS: i64 = 262_144;
/// Simulated bytes of KV cache per token.
const KV_BYTES_PER_TOKEN: i64 = 131_072;

pub(crate) struct Model {
    pub(crate) spec: ModelSpec,
    /// Per-token times, starting at the spec's; `--admin` can change them (admin.rs).
    pub(crate) speed: Speed,
    slots: Semaphore,
    waiting: AtomicUsize,
    max_queue: usize,
    cache: Mutex<PrefixCache>,
    kv_tokens: AtomicI64,
}

impl Model {
    /// A place in the queue, or `None` when the queue is full.
    pub(crate) fn enqueue(self: &Arc<Self>) -> Option<QueueTicket> {
        let previous = self.waiting.fetch_add(1, Ordering::AcqRel);
        if previous >= self.max_queue + self.spec.concurrency {
            self.waiting.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        Some(QueueTicket(self.clone()))
    }
}

/// Holds a request's place in its model's queue (and then its slot).
pub(crate) struct QueueTicket(Arc<Model>);

impl Drop for QueueTicket {
    fn drop(&mut self) {
        self.0.waiting.fetch_sub(1, Ordering::AcqRel);
    }
}

pub(crate) struct Engine {
    pub(crate) models: Vec<Arc<Model>>,
    error_rate: f64,
    jitter: f64,
    seed: u64,
}

/// The `gen_ai.provider.name` of the demo's request spans: the OpenTelemetry GenAI
/// conventions name the provider of every operation, and a self-hosted server is its own.
pub(crate) const PROVIDER: &str = "llm-span-demo";

/// What a request asks for, as OpenTelemetry's `gen_ai.operation.name` says it: the
/// request span carries it from its creation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Operation {
    /// `POST /v1/chat/completions`.
    Chat,
    /// `POST /v1/completions`, the legacy API.
    TextCompletion,
    /// `POST /v1/embeddings`: prefill only, no output tokens.
    Embeddings,
}

impl Operation {
    /// The value of `gen_ai.operation.name`.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Operation::Chat => "chat",
            Operation::TextCompletion => "text_completion",
            Operation::Embeddings => "embeddings",
        }
    }
}

/// A request the API accepted.
pub(crate) struct Job {
    pub(crate) ticket: QueueTicket,
    pub(crate) operation: Operation,
    pub(crate) prompt: String,
    pub(crate) prompt_tokens: u64,
    pub(crate) max_tokens: u64,
    pub(crate) stream: bool,
    /// The trace the request runs in (see `trace.rs`).
    pub(crate) trace: Trace,
}

/// What a finished request produced.
pub(crate) struct Completion {
    pub(crate) text: String,
    pub(crate) prompt_tokens: u64,
    pub(crate) completion_tokens: u64,
    pub(crate) finish_reason: &'static str,
}

/// How a request ended.
pub(crate) enum Outcome {
    Completed(Completion),
    /// The streaming client went away. Not an error of the server: the span closes
    /// without a completion and the layer counts the request as `cancelled`.
    ClientGone,
}

/// The simulated engine failed in prefill.
#[derive(Debug)]
pub(crate) struct EngineFailure {
    pub(crate) prompt_tokens: u64,
}

impl std::fmt::Display for EngineFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("simulated engine failure: CUDA error: an illegal memory access")
    }
}

impl std::error::Error for EngineFailure {}

/// The client went away.
struct Gone;

/// One generated token, as a streaming sink formats it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Token<'a> {
    pub(crate) text: &'a str,
    /// 0 for the first token.
    pub(crate) index: u64,
    /// The request's finish reason, on its last token only.
    pub(crate) finish_reason: Option<&'static str>,
}

/// Where generated tokens go.
pub(crate) enum Sink<'a> {
    /// Collected for a JSON response.
    Buffer(String),
    /// Streamed to the client through the response body, each token turned into one
    /// message by `chunk`; see [`Sink::emit`].
    Stream {
        tx: mpsc::Sender<Message>,
        chunk: &'a (dyn Fn(Token<'_>) -> String + Sync),
    },
}

/// A message for a streaming response body.
#[derive(Debug)]
pub(crate) struct Message {
    pub(crate) data: String,
    /// For a token: the body fires it when it takes the message.
    pub(crate) taken: Option<oneshot::Sender<()>>,
}

impl Sink<'_> {
    /// Hands a token over and, when streaming, waits until the response body took it:
    /// a token counts as produced once it is on its way to the client, so a client that
    /// disconnects sees exactly the tokens the server counted.
    async fn emit(&mut self, token: Token<'_>) -> Result<(), Gone> {
        match self {
            Sink::Buffer(buffer) => {
                buffer.push_str(token.text);
                Ok(())
            }
            Sink::Stream { tx, chunk } => {
                let (taken, mut was_taken) = oneshot::channel();
                let message = Message {
                    data: chunk(token),
                    taken: Some(taken),
                };
                // Fails when the body, and the receiver with it, is gone: the client left.
                tx.send(message).await.map_err(|_| Gone)?;
                // Sent is not taken: count only on the body's word. (Waiting for the
                // channel's capacity to come back is not enough: that wait fails on a
                // closed channel even when the body took the message just before the
                // client left.) An untaken message is dropped with the receiver, which
                // fails `was_taken`; one that raced with the close may linger in the
                // channel, and `closed` ends that wait. When both are ready they agree.
                tokio::select! {
                    result = &mut was_taken => result.map_err(|_| Gone),
                    () = tx.closed() => was_taken.try_recv().map_err(|_| Gone),
                }
            }
        }
    }
}

impl Engine {
    pub(crate) fn new(config: &Config) -> Self {
        let models = config
            .models
            .iter()
            .map(|spec| {
                Arc::new(Model {
                    slots: Semaphore::new(spec.concurrency),
                    waiting: AtomicUsize::new(0),
                    max_queue: config.max_queue,
                    cache: Mutex::new(PrefixCache::default()),
                    kv_tokens: AtomicI64::new(0),
                    speed: Speed::new(spec.prefill_per_token, spec.decode_per_token),
                    spec: spec.clone(),
                })
            })
            .collect();
        Self {
            models,
            error_rate: config.error_rate,
            jitter: config.jitter,
            seed: config.seed,
        }
    }

    pub(crate) fn model(&self, name: &str) -> Option<&Arc<Model>> {
        self.models.iter().find(|m| m.spec.name == name)
    }

    fn scaled(&self, base: Duration, rng: &mut Rng) -> Duration {
        let factor = 1.0 + self.jitter * (2.0 * rng.unit() - 1.0);
        base.mul_f64(factor.max(0.0))
    }

    /// Runs one generation request (chat or text completion): queue, prefill (with
    /// prefix cache), decode.
    #[tracing::instrument(
        name = "completion",
        skip_all,
        err(Display),
        fields(
            gen_ai.operation.name = job.operation.as_str(),
            gen_ai.provider.name = crate::engine::PROVIDER,
            model = %job.ticket.0.spec.name,
            model_revision = %job.ticket.0.spec.revision,
            tokens_in = job.prompt_tokens,
            tokens_cached = Empty,
            tokens_out = Empty,
            finish_reason = Empty,
            stream = job.stream,
            trace_id = %job.trace.trace_id,
            span_id = %job.trace.span_id,
        )
    )]
    pub(crate) async fn generate(
        &self,
        job: Job,
        sink: &mut Sink<'_>,
    ) -> Result<Outcome, EngineFailure> {
        let model = job.ticket.0.clone();
        let prompt_seed = stable_hash(&job.prompt);
        let mut rng = Rng::new(self.seed ^ prompt_seed);
        let Some(mut running) = self.prefill(&model, &job, &mut rng, true).await? else {
            return Ok(Outcome::ClientGone);
        };

        let natural = natural_length(prompt_seed);
        let produced = natural.min(job.max_tokens);
        let finish_reason = if natural > job.max_tokens {
            "length"
        } else {
            "stop"
        };
        for index in 0..produced {
            if index > 0 {
                tokio::time::sleep(self.scaled(model.speed.decode_per_token(), &mut rng)).await;
            }
            let text = fake_token(prompt_seed, index);
            let token = Token {
                text: &text,
                index,
                finish_reason: (index + 1 == produced).then_some(finish_reason),
            };
            if sink.emit(token).await.is_err() {
                return Ok(Outcome::ClientGone);
            }
            running.kv.grow(1);
            tracing::info!(tokens_out_delta = 1u64);
        }
        tracing::info!(finish_reason);
        tracing::Span::current().record("tokens_out", produced);
        Ok(Outcome::Completed(Completion {
            text: match sink {
                Sink::Buffer(text) => std::mem::take(text),
                Sink::Stream { .. } => String::new(),
            },
            prompt_tokens: job.prompt_tokens,
            completion_tokens: produced,
            finish_reason,
        }))
    }

    /// Runs one embeddings request: queue and prefill, no decode and no output tokens.
    /// The vectors themselves are the API's to compute (`demo::embedding`); the engine
    /// spends the time and may fail as a prefill does. Returns `false` when the request
    /// was dropped while it waited.
    #[tracing::instrument(
        name = "embeddings",
        skip_all,
        err(Display),
        fields(
            gen_ai.operation.name = job.operation.as_str(),
            gen_ai.provider.name = crate::engine::PROVIDER,
            model = %job.ticket.0.spec.name,
            model_revision = %job.ticket.0.spec.revision,
            tokens_in = job.prompt_tokens,
            trace_id = %job.trace.trace_id,
            span_id = %job.trace.span_id,
        )
    )]
    pub(crate) async fn embed(&self, job: Job) -> Result<bool, EngineFailure> {
        let model = job.ticket.0.clone();
        let mut rng = Rng::new(self.seed ^ stable_hash(&job.prompt));
        let running = self.prefill(&model, &job, &mut rng, false).await?;
        Ok(running.is_some())
    }

    /// What every request goes through: a slot of its model (the `queue` span while it
    /// waits), the KV cache its prompt takes, the prefill time of its uncached tokens
    /// (with the prefix cache when `use_cache`, recorded as `tokens_cached`), and the
    /// simulated failure, decided per prompt. `None` when the model's slots are gone.
    async fn prefill<'m>(
        &self,
        model: &'m Model,
        job: &Job,
        rng: &mut Rng,
        use_cache: bool,
    ) -> Result<Option<Running<'m>>, EngineFailure> {
        let Ok(slot) = model
            .slots
            .acquire()
            .instrument(tracing::info_span!("queue"))
            .await
        else {
            return Ok(None);
        };
        let kv = KvUsage::new(model, job.prompt_tokens);
        let mut cached = 0;
        if use_cache {
            let words: Vec<&str> = job.prompt.split_whitespace().collect();
            cached = model
                .cache
                .lock()
                .map(|mut cache| cache.lookup_and_insert(&words))
                .unwrap_or(0);
            tracing::Span::current().record("tokens_cached", cached);
        }
        let uncached = job.prompt_tokens.saturating_sub(cached);
        tokio::time::sleep(self.scaled(
            model.speed.prefill_per_token().mul_f64(uncached as f64),
            rng,
        ))
        .await;
        if rng.chance(self.error_rate) {
            return Err(EngineFailure {
                prompt_tokens: job.prompt_tokens,
            });
        }
        Ok(Some(Running { _slot: slot, kv }))
    }

    /// Reports simulated GPU memory and KV-cache usage as engine gauge events, forever.
    pub(crate) async fn report_gpu_memory(self: Arc<Self>) {
        const WEIGHTS: i64 = 16_000_000_000;
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tick.tick().await;
            let mut per_gpu: std::collections::BTreeMap<u32, i64> = Default::default();
            for model in &self.models {
                let tokens = model.kv_tokens.load(Ordering::Relaxed).max(0);
                *per_gpu.entry(model.spec.gpu).or_default() +=
                    WEIGHTS + tokens * KV_BYTES_PER_TOKEN;
                let ratio = tokens as f64 / KV_CAPACITY_TOKENS as f64;
                tracing::info!(model = %model.spec.name, kv_cache_usage_ratio = ratio.min(1.0));
            }
            for (gpu, bytes) in per_gpu {
                tracing::info!(gpu, gpu_memory_used_bytes = bytes);
            }
        }
    }
}

/// A request past its prefill: it holds a slot of its model and KV cache until dropped.
struct Running<'m> {
    _slot: tokio::sync::SemaphorePermit<'m>,
    kv: KvUsage<'m>,
}

/// Tokens a request holds in its model's KV cache, released however it ends.
struct KvUsage<'a> {
    model: &'a Model,
    tokens: i64,
}

impl<'a> KvUsage<'a> {
    fn new(model: &'a Model, prompt_tokens: u64) -> Self {
        let tokens = prompt_tokens as i64;
        model.kv_tokens.fetch_add(tokens, Ordering::Relaxed);
        Self { model, tokens }
    }

    fn grow(&mut self, tokens: i64) {
        self.tokens += tokens;
        self.model.kv_tokens.fetch_add(tokens, Ordering::Relaxed);
    }
}

impl Drop for KvUsage<'_> {
    fn drop(&mut self) {
        self.model
            .kv_tokens
            .fetch_sub(self.tokens, Ordering::Relaxed);
    }
}

/// Remembers prompt prefixes in blocks of [`BLOCK`] tokens, oldest evicted first.
#[derive(Default)]
struct PrefixCache {
    blocks: HashSet<u64>,
    order: VecDeque<u64>,
}

impl PrefixCache {
    /// Tokens of `words` whose leading blocks were cached; caches every full block.
    fn lookup_and_insert(&mut self, words: &[&str]) -> u64 {
        let mut chain = 0u64;
        let mut hit = true;
        let mut cached = 0u64;
        for block in words.chunks_exact(BLOCK) {
            chain = stable_hash(&format!("{chain:x} {}", block.join(" ")));
            if hit && self.blocks.contains(&chain) {
                cached += BLOCK as u64;
                continue;
            }
            hit = false;
            if self.blocks.insert(chain) {
                self.order.push_back(chain);
                if self.order.len() > CACHE_BLOCKS {
                    if let Some(old) = self.order.pop_front() {
                        self.blocks.remove(&old);
                    }
                }
            }
        }
        cached
    }
}
