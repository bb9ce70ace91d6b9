//! The variants of the overhead ladder, each serving the same request.
//!
//! One request: a `generate` span with `model` and `tokens_in`, entered, a first-token
//! event, `tokens_out` recorded, exited, closed. Every metric variant emits the same
//! metric updates per request into a `metrics-exporter-prometheus` recorder with the
//! real bucket presets: input and output tokens, requests by status, cost, TTFT,
//! end-to-end latency, tokens per second and time per output token, active requests
//! +1/-1 and the hit-rate gauge. Models rotate over five names of realistic length.
#![allow(dead_code, unreachable_pub)]

use std::sync::Arc;

#[cfg(feature = "bench-peers")]
pub mod containers;

use llm_span_layer::{LlmSpanLayer, ModelPrice, PriceTable};
use llm_span_prometheus::{ExporterBuilder, MetricsHandle, MetricsRecorder};
use metrics::{Counter, Gauge, Histogram, Key, Label, Recorder};
use tracing::field::Empty;
use tracing::Dispatch;
use tracing_subscriber::prelude::*;

pub const MODELS: [&str; 5] = [
    "llama-3.1-8b-instruct",
    "mistral-7b-instruct-v0.3",
    "qwen2.5-72b-instruct",
    "gemma-2-27b-it",
    "phi-3.5-mini-instruct",
];

/// A layer that does nothing: the registry's own span bookkeeping.
pub struct Identity;

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Identity {}

/// What one ladder rung runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Variant {
    /// B: registry + identity layer.
    Baseline,
    /// P: registry + llm-span-layer + the Prometheus recorder.
    Product,
    /// E: no tracing; cached handles into llm-span-prometheus, the same metric
    /// updates, three clock reads.
    Ideal,
    /// E_mep: the same, into plain metrics-exporter-prometheus (with upkeep every 5 s):
    /// what a server that writes its metrics by hand pays.
    IdealMep,
    /// A layer that calls `counter!`/`histogram!` with dynamic labels per request.
    Naive,
    /// P with a `trace_id` on every request (exemplars on).
    ProductTraced,
    /// B, streaming: a request with 100 `tokens_out_delta` events.
    StreamBaseline,
    /// P, streaming.
    StreamProduct,
    /// E_stream: the streaming request's metric updates by hand, into llm-span-prometheus.
    StreamIdeal,
    /// A span that is not an LLM request, through B.
    OtherSpanBaseline,
    /// A span that is not an LLM request, through P.
    OtherSpanProduct,
    /// tracing-opentelemetry's `MetricsLayer`, metrics as prefixed event fields.
    #[cfg(feature = "bench-peers")]
    OpenTelemetry,
    /// metrics-tracing-context: span fields as labels on `metrics` macros.
    #[cfg(feature = "bench-peers")]
    TracingContext,
    /// A container of the layer, or its replacement, doing one request's operations.
    #[cfg(feature = "bench-peers")]
    Container(containers::Work),
}

impl Variant {
    pub fn all() -> Vec<Variant> {
        let all = vec![
            Variant::Baseline,
            Variant::Product,
            Variant::Ideal,
            Variant::IdealMep,
            Variant::ProductTraced,
            Variant::StreamBaseline,
            Variant::StreamProduct,
            Variant::StreamIdeal,
            Variant::Naive,
            Variant::OtherSpanBaseline,
            Variant::OtherSpanProduct,
        ];
        #[cfg(feature = "bench-peers")]
        let all = [
            all,
            vec![Variant::OpenTelemetry, Variant::TracingContext],
            containers::Work::ALL.map(Variant::Container).to_vec(),
        ]
        .concat();
        all
    }

    /// Whether a request of this rung is a streaming one (100 deltas).
    pub fn streams(self) -> bool {
        match self {
            Variant::StreamBaseline | Variant::StreamProduct | Variant::StreamIdeal => true,
            #[cfg(feature = "bench-peers")]
            Variant::Container(work) => work.streams(),
            _ => false,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Variant::Baseline => "B  registry + identity layer",
            Variant::Product => "P  registry + llm-span-layer",
            Variant::Ideal => "E  cached handles, no tracing",
            Variant::IdealMep => "E_mep  cached handles into plain MEP",
            Variant::ProductTraced => "P with a trace id (exemplars)",
            Variant::StreamBaseline => "B_stream  100 deltas, registry + identity",
            Variant::StreamProduct => "P_stream  100 deltas, llm-span-layer",
            Variant::StreamIdeal => "E_stream  100 deltas by hand",
            Variant::Naive => "naive layer (dynamic labels)",
            Variant::OtherSpanBaseline => "non-LLM span through B",
            Variant::OtherSpanProduct => "non-LLM span through P",
            #[cfg(feature = "bench-peers")]
            Variant::OpenTelemetry => "tracing-opentelemetry MetricsLayer",
            #[cfg(feature = "bench-peers")]
            Variant::TracingContext => "metrics-tracing-context",
            #[cfg(feature = "bench-peers")]
            Variant::Container(work) => work.name(),
        }
    }
}

/// The recorder every metric variant writes to: the exporter's, with its buckets.
pub fn recorder() -> (MetricsRecorder, MetricsHandle) {
    ExporterBuilder::new().build().expect("recorder")
}

/// Plain metrics-exporter-prometheus with the same buckets, and an upkeep thread every
/// 5 s as `PrometheusBuilder::build()` gives: what a hand-instrumented server runs.
pub struct MepRecorder {
    recorder: metrics_exporter_prometheus::PrometheusRecorder,
    pub handle: metrics_exporter_prometheus::PrometheusHandle,
    stop: Arc<std::sync::atomic::AtomicBool>,
}

impl Drop for MepRecorder {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Release);
    }
}

impl std::ops::Deref for MepRecorder {
    type Target = metrics_exporter_prometheus::PrometheusRecorder;
    fn deref(&self) -> &Self::Target {
        &self.recorder
    }
}

pub fn mep_recorder() -> MepRecorder {
    use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};
    let mut builder = PrometheusBuilder::new()
        .set_buckets(llm_span_prometheus::buckets::DEFAULT)
        .expect("buckets");
    for (name, preset) in llm_span_prometheus::buckets::PRESETS {
        builder = builder
            .set_buckets_for_metric(Matcher::Full((*name).to_owned()), preset)
            .expect("buckets");
    }
    let recorder = builder.build_recorder();
    let handle = recorder.handle();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    {
        let (handle, stop) = (handle.clone(), Arc::clone(&stop));
        std::thread::spawn(move || {
            while !stop.load(std::sync::atomic::Ordering::Acquire) {
                std::thread::sleep(std::time::Duration::from_millis(100));
                // Every 5 s, in 100 ms steps so that a dropped rung stops soon.
                static TICKS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
                if TICKS
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
                    .is_multiple_of(50)
                {
                    handle.run_upkeep();
                }
            }
        });
    }
    MepRecorder {
        recorder,
        handle,
        stop,
    }
}

/// Registers every per-request family of the catalog for `model` (every label value) in
/// `recorder` and gives each a value: the same series whichever recorder it is.
pub fn fill_series(recorder: &dyn Recorder, model: &str) {
    use llm_span_layer::catalog::{self, FinishReason, MetricKind, Status, TokenType};
    static META: metrics::Metadata<'static> =
        metrics::Metadata::new("bench", metrics::Level::INFO, None);
    for def in catalog::METRICS.iter().filter(|d| d.per_request_series) {
        let values: Vec<(&str, &str)> = match def.labels.first() {
            Some(&"status") => Status::ALL.iter().map(|v| ("status", v.as_str())).collect(),
            Some(&"type") => TokenType::ALL
                .iter()
                .map(|v| ("type", v.as_str()))
                .collect(),
            Some(&"reason") => FinishReason::ALL
                .iter()
                .map(|v| ("reason", v.as_str()))
                .collect(),
            _ => vec![("", "")],
        };
        for (label, value) in values {
            let mut labels = vec![Label::new("model", model.to_owned())];
            if !label.is_empty() {
                labels.push(Label::new(label, value));
            }
            let key = Key::from_parts(def.name, labels);
            match def.kind {
                MetricKind::Counter => recorder.register_counter(&key, &META).increment(7),
                MetricKind::Gauge => recorder.register_gauge(&key, &META).set(3.0),
                _ => {
                    let histogram = recorder.register_histogram(&key, &META);
                    for sample in [0.03, 0.3, 3.0] {
                        histogram.record(sample);
                    }
                }
            }
        }
    }
}

pub fn prices() -> PriceTable {
    MODELS.iter().fold(PriceTable::new(), |table, model| {
        table.with_model(
            *model,
            ModelPrice::usd_per_million_tokens(0.2, 0.6).expect("price"),
        )
    })
}

/// Handles of one model, for E.
struct IdealHandles {
    input: Counter,
    output: Counter,
    requests_ok: Counter,
    cost: Counter,
    ttft: Histogram,
    e2e: Histogram,
    tokens_per_second: Histogram,
    time_per_output_token: Histogram,
    active: Gauge,
    hit_rate: Gauge,
}

impl IdealHandles {
    fn register(recorder: &dyn Recorder, model: &'static str) -> Self {
        static META: metrics::Metadata<'static> =
            metrics::Metadata::new("bench", metrics::Level::INFO, None);
        let key = |name: &'static str, extra: Option<(&'static str, &'static str)>| {
            let mut labels = vec![Label::new("model", model)];
            if let Some((k, v)) = extra {
                labels.push(Label::new(k, v));
            }
            Key::from_parts(name, labels)
        };
        Self {
            input: recorder
                .register_counter(&key("llm_tokens_total", Some(("type", "input"))), &META),
            output: recorder
                .register_counter(&key("llm_tokens_total", Some(("type", "output"))), &META),
            requests_ok: recorder
                .register_counter(&key("llm_requests_total", Some(("status", "ok"))), &META),
            cost: recorder.register_counter(&key("llm_cost_pico_usd_total", None), &META),
            ttft: recorder.register_histogram(&key("llm_ttft_seconds", None), &META),
            e2e: recorder.register_histogram(&key("llm_e2e_latency_seconds", None), &META),
            tokens_per_second: recorder
                .register_histogram(&key("llm_tokens_per_second", None), &META),
            time_per_output_token: recorder
                .register_histogram(&key("llm_time_per_output_token_seconds", None), &META),
            active: recorder.register_gauge(&key("llm_active_requests", None), &META),
            hit_rate: recorder.register_gauge(&key("llm_kv_cache_hit_rate", None), &META),
        }
    }
}

/// One rung, ready to serve requests.
pub struct Rung {
    pub variant: Variant,
    dispatch: Option<Dispatch>,
    ideal: Vec<IdealHandles>,
    clock: quanta::Clock,
    /// Keeps the recorder (and its upkeep thread) alive; used by the naive layer.
    recorder: Option<Arc<MetricsRecorder>>,
    pub handle: Option<MetricsHandle>,
    /// E_mep's recorder and upkeep.
    mep: Option<Arc<MepRecorder>>,
    #[cfg(feature = "bench-peers")]
    context_recorder: Option<Arc<dyn Recorder + Send + Sync>>,
    #[cfg(feature = "bench-peers")]
    _meter_provider: Option<opentelemetry_sdk::metrics::SdkMeterProvider>,
    #[cfg(feature = "bench-peers")]
    container: Option<containers::Bench>,
}

impl Rung {
    pub fn new(variant: Variant) -> Rung {
        let mut rung = Rung {
            variant,
            dispatch: None,
            ideal: Vec::new(),
            clock: quanta::Clock::new(),
            recorder: None,
            handle: None,
            mep: None,
            #[cfg(feature = "bench-peers")]
            context_recorder: None,
            #[cfg(feature = "bench-peers")]
            _meter_provider: None,
            #[cfg(feature = "bench-peers")]
            container: None,
        };
        match variant {
            Variant::Baseline | Variant::OtherSpanBaseline | Variant::StreamBaseline => {
                rung.dispatch = Some(Dispatch::new(tracing_subscriber::registry().with(Identity)));
            }
            Variant::Product
            | Variant::OtherSpanProduct
            | Variant::ProductTraced
            | Variant::StreamProduct => {
                let (recorder, handle) = recorder();
                let layer = LlmSpanLayer::builder()
                    .with_recorder(recorder)
                    .with_prices(prices())
                    .build()
                    .expect("layer");
                rung.dispatch = Some(Dispatch::new(tracing_subscriber::registry().with(layer)));
                rung.handle = Some(handle);
            }
            Variant::Ideal | Variant::StreamIdeal => {
                let (recorder, handle) = recorder();
                rung.ideal = MODELS
                    .iter()
                    .map(|m| IdealHandles::register(&recorder, m))
                    .collect();
                rung.recorder = Some(Arc::new(recorder));
                rung.handle = Some(handle);
            }
            Variant::IdealMep => {
                let recorder = mep_recorder();
                rung.ideal = MODELS
                    .iter()
                    .map(|m| IdealHandles::register(&*recorder, m))
                    .collect();
                rung.mep = Some(Arc::new(recorder));
            }
            Variant::Naive => {
                let (recorder, handle) = recorder();
                rung.dispatch = Some(Dispatch::new(
                    tracing_subscriber::registry().with(naive::NaiveLayer),
                ));
                rung.recorder = Some(Arc::new(recorder));
                rung.handle = Some(handle);
            }
            #[cfg(feature = "bench-peers")]
            Variant::OpenTelemetry => {
                let reader = opentelemetry_sdk::metrics::ManualReader::builder().build();
                let provider = opentelemetry_sdk::metrics::SdkMeterProvider::builder()
                    .with_reader(reader)
                    .build();
                let layer = tracing_opentelemetry::MetricsLayer::new(provider.clone());
                rung.dispatch = Some(Dispatch::new(tracing_subscriber::registry().with(layer)));
                rung._meter_provider = Some(provider);
            }
            #[cfg(feature = "bench-peers")]
            Variant::TracingContext => {
                use metrics_util::layers::Layer as _;
                let (recorder, handle) = recorder();
                let wrapped = metrics_tracing_context::TracingContextLayer::all().layer(recorder);
                rung.context_recorder = Some(Arc::new(wrapped));
                rung.dispatch = Some(Dispatch::new(
                    tracing_subscriber::registry()
                        .with(metrics_tracing_context::MetricsLayer::new()),
                ));
                rung.handle = Some(handle);
            }
            #[cfg(feature = "bench-peers")]
            Variant::Container(work) => rung.container = Some(containers::Bench::new(work)),
        }
        rung
    }

    /// Serves requests `first..first + count` on this thread.
    pub fn run(&self, first: u64, count: u64) {
        let _default = self.dispatch.as_ref().map(tracing::dispatcher::set_default);
        match self.variant {
            Variant::Baseline | Variant::Product => (first..first + count).for_each(llm_request),
            Variant::ProductTraced => (first..first + count).for_each(traced_request),
            Variant::StreamBaseline | Variant::StreamProduct => {
                (first..first + count).for_each(streamed_request)
            }
            Variant::StreamIdeal => (first..first + count).for_each(|i| self.ideal_stream(i)),
            Variant::OtherSpanBaseline | Variant::OtherSpanProduct => {
                (first..first + count).for_each(other_request)
            }
            Variant::Ideal | Variant::IdealMep => {
                (first..first + count).for_each(|i| self.ideal_request(i))
            }
            Variant::Naive => {
                let recorder: &dyn Recorder = self.recorder.as_deref().expect("recorder");
                metrics::with_local_recorder(recorder, || {
                    (first..first + count).for_each(llm_request)
                });
            }
            #[cfg(feature = "bench-peers")]
            Variant::OpenTelemetry => (first..first + count).for_each(peers::otel_request),
            #[cfg(feature = "bench-peers")]
            Variant::TracingContext => {
                let recorder: &dyn Recorder = self.context_recorder.as_deref().expect("recorder");
                metrics::with_local_recorder(recorder, || {
                    (first..first + count).for_each(peers::context_request)
                });
            }
            #[cfg(feature = "bench-peers")]
            Variant::Container(_) => {
                if let Some(bench) = &self.container {
                    bench.run(first, count);
                }
            }
        }
    }

    /// The streaming request's updates by hand: per delta, the output tokens and their cost.
    fn ideal_stream(&self, i: u64) {
        let h = &self.ideal[(i % MODELS.len() as u64) as usize];
        let (tokens_in, _) = tokens(i);
        let start = self.clock.now();
        h.active.increment(1.0);
        let first = self.clock.now();
        h.input.increment(tokens_in);
        h.cost.increment(tokens_in * 200_000);
        h.ttft
            .record(first.saturating_duration_since(start).as_secs_f64());
        for _ in 0..STREAMED {
            h.output.increment(1);
            h.cost.increment(600_000);
        }
        let end = self.clock.now();
        h.requests_ok.increment(1);
        h.e2e
            .record(end.saturating_duration_since(start).as_secs_f64());
        let decode = end.saturating_duration_since(first).as_secs_f64().max(1e-9);
        h.tokens_per_second.record((STREAMED - 1) as f64 / decode);
        h.time_per_output_token
            .record(decode / (STREAMED - 1) as f64);
        h.hit_rate.set(0.0);
        h.active.decrement(1.0);
    }

    fn ideal_request(&self, i: u64) {
        let h = &self.ideal[(i % MODELS.len() as u64) as usize];
        let (tokens_in, tokens_out) = tokens(i);
        let start = self.clock.now();
        h.active.increment(1.0);
        h.input.increment(tokens_in);
        let first = self.clock.now();
        let end = self.clock.now();
        h.output.increment(tokens_out);
        h.requests_ok.increment(1);
        // Picodollars, as the layer counts them: input at the first token, output at the end.
        h.cost.increment(tokens_in * 200_000);
        h.cost.increment(tokens_out * 600_000);
        h.ttft
            .record(first.saturating_duration_since(start).as_secs_f64());
        h.e2e
            .record(end.saturating_duration_since(start).as_secs_f64());
        let decode = end.saturating_duration_since(first).as_secs_f64().max(1e-9);
        h.tokens_per_second.record((tokens_out - 1) as f64 / decode);
        h.time_per_output_token
            .record(decode / (tokens_out - 1) as f64);
        h.hit_rate.set(0.0);
        h.active.decrement(1.0);
    }
}

pub fn tokens(i: u64) -> (u64, u64) {
    (100 + i % 50, 20 + i % 10)
}

/// The request as instrumented code performs it; the layer (if any) does the rest.
#[inline(never)]
pub fn llm_request(i: u64) {
    let model = MODELS[(i % MODELS.len() as u64) as usize];
    let (tokens_in, tokens_out) = tokens(i);
    let span = tracing::info_span!("generate", model, tokens_in, tokens_out = Empty);
    let entered = span.enter();
    tracing::info!(first_token = true);
    span.record("tokens_out", tokens_out);
    drop(entered);
}

/// Output tokens of a streaming request: one `tokens_out_delta` event each.
pub const STREAMED: u64 = 100;

/// `llm_request` with a trace id on the span, as a server that honours `traceparent` has.
#[inline(never)]
pub fn traced_request(i: u64) {
    let model = MODELS[(i % MODELS.len() as u64) as usize];
    let (tokens_in, tokens_out) = tokens(i);
    let span = tracing::info_span!(
        "generate",
        model,
        tokens_in,
        tokens_out = Empty,
        trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    );
    let entered = span.enter();
    tracing::info!(first_token = true);
    span.record("tokens_out", tokens_out);
    drop(entered);
}

/// A streaming request: every output token is a `tokens_out_delta` event.
#[inline(never)]
pub fn streamed_request(i: u64) {
    let model = MODELS[(i % MODELS.len() as u64) as usize];
    let (tokens_in, _) = tokens(i);
    let span = tracing::info_span!("generate", model, tokens_in, tokens_out = Empty);
    let entered = span.enter();
    for _ in 0..STREAMED {
        tracing::info!(tokens_out_delta = 1u64);
    }
    span.record("tokens_out", STREAMED);
    drop(entered);
}

/// The same operations on a span that is not an LLM request.
#[inline(never)]
pub fn other_request(i: u64) {
    let span = tracing::info_span!(
        "handle_http",
        path = "/v1/models",
        attempt = i,
        status_code = Empty
    );
    let entered = span.enter();
    tracing::info!(cache_hit = true);
    span.record("status_code", 200u64);
    drop(entered);
}

/// The naive alternative: per-request state in extensions, `counter!` with dynamic
/// labels at close.
mod naive {
    use std::time::Instant;

    use tracing::field::{Field, Visit};
    use tracing::span::{Attributes, Id, Record};
    use tracing::{Event, Subscriber};
    use tracing_subscriber::layer::Context;
    use tracing_subscriber::registry::LookupSpan;

    pub struct NaiveLayer;

    #[derive(Default)]
    struct State {
        model: Option<String>,
        tokens_in: u64,
        tokens_out: u64,
        start: Option<Instant>,
        first: Option<Instant>,
    }

    struct Fields<'a>(&'a mut State);

    impl Visit for Fields<'_> {
        fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
            if field.name() == "model" {
                self.0.model = Some(format!("{value:?}"));
            }
        }
        fn record_str(&mut self, field: &Field, value: &str) {
            if field.name() == "model" {
                self.0.model = Some(value.to_owned());
            }
        }
        fn record_u64(&mut self, field: &Field, value: u64) {
            match field.name() {
                "tokens_in" => self.0.tokens_in = value,
                "tokens_out" => self.0.tokens_out = value,
                _ => {}
            }
        }
    }

    impl<S: Subscriber + for<'a> LookupSpan<'a>> tracing_subscriber::Layer<S> for NaiveLayer {
        fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
            let mut state = State {
                start: Some(Instant::now()),
                ..State::default()
            };
            attrs.record(&mut Fields(&mut state));
            if state.model.is_none() {
                return;
            }
            if let Some(span) = ctx.span(id) {
                let model = state.model.clone().unwrap_or_default();
                metrics::gauge!("llm_active_requests", "model" => model).increment(1.0);
                span.extensions_mut().insert(state);
            }
        }

        fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
            if let Some(span) = ctx.span(id) {
                if let Some(state) = span.extensions_mut().get_mut::<State>() {
                    values.record(&mut Fields(state));
                }
            }
        }

        fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
            if event.metadata().fields().field("first_token").is_none() {
                return;
            }
            if let Some(span) = ctx.event_span(event) {
                if let Some(state) = span.extensions_mut().get_mut::<State>() {
                    state.first.get_or_insert_with(Instant::now);
                }
            }
        }

        fn on_close(&self, id: Id, ctx: Context<'_, S>) {
            let Some(span) = ctx.span(&id) else { return };
            let Some(state) = span.extensions_mut().remove::<State>() else {
                return;
            };
            let model = state.model.unwrap_or_default();
            let end = Instant::now();
            let start = state.start.unwrap_or(end);
            let first = state.first.unwrap_or(end);
            metrics::counter!("llm_tokens_total", "model" => model.clone(), "type" => "input")
                .increment(state.tokens_in);
            metrics::counter!("llm_tokens_total", "model" => model.clone(), "type" => "output")
                .increment(state.tokens_out);
            metrics::counter!("llm_requests_total", "model" => model.clone(), "status" => "ok")
                .increment(1);
            metrics::counter!("llm_cost_pico_usd_total", "model" => model.clone())
                .increment((state.tokens_in * 200_000 + state.tokens_out * 600_000) / 1_000_000);
            metrics::histogram!("llm_ttft_seconds", "model" => model.clone())
                .record((first - start).as_secs_f64());
            metrics::histogram!("llm_e2e_latency_seconds", "model" => model.clone())
                .record((end - start).as_secs_f64());
            let decode = (end - first).as_secs_f64().max(1e-9);
            let decoded = state.tokens_out.saturating_sub(1) as f64;
            metrics::histogram!("llm_tokens_per_second", "model" => model.clone())
                .record(decoded / decode);
            metrics::histogram!("llm_time_per_output_token_seconds", "model" => model.clone())
                .record(decode / decoded);
            metrics::gauge!("llm_kv_cache_hit_rate", "model" => model.clone()).set(0.0);
            metrics::gauge!("llm_active_requests", "model" => model).decrement(1.0);
        }
    }
}

/// The two peers a user would pick instead, instrumented the way their docs show.
#[cfg(feature = "bench-peers")]
mod peers {
    use super::{tokens, MODELS};
    use std::time::Instant;
    use tracing::field::Empty;

    /// tracing-opentelemetry: the application computes durations and emits each metric
    /// as a prefixed event field; other fields become attributes.
    #[inline(never)]
    pub fn otel_request(i: u64) {
        let model = MODELS[(i % MODELS.len() as u64) as usize];
        let (tokens_in, tokens_out) = tokens(i);
        let start = Instant::now();
        let span = tracing::info_span!("generate", model, tokens_in, tokens_out = Empty);
        let entered = span.enter();
        tracing::info!(counter.llm_active_requests = 1i64, model);
        tracing::info!(
            monotonic_counter.llm_tokens_total = tokens_in,
            model,
            token_type = "input"
        );
        tracing::info!(first_token = true);
        let first = Instant::now();
        span.record("tokens_out", tokens_out);
        let end = Instant::now();
        let decode = (end - first).as_secs_f64().max(1e-9);
        tracing::info!(
            monotonic_counter.llm_tokens_total = tokens_out,
            model,
            token_type = "output"
        );
        tracing::info!(
            monotonic_counter.llm_requests_total = 1u64,
            model,
            status = "ok"
        );
        tracing::info!(
            monotonic_counter.llm_cost_pico_usd_total =
                (tokens_in * 200_000 + tokens_out * 600_000) / 1_000_000,
            model
        );
        tracing::info!(
            histogram.llm_ttft_seconds = (first - start).as_secs_f64(),
            model
        );
        tracing::info!(
            histogram.llm_e2e_latency_seconds = (end - start).as_secs_f64(),
            model
        );
        tracing::info!(
            histogram.llm_tokens_per_second = (tokens_out - 1) as f64 / decode,
            model
        );
        tracing::info!(
            histogram.llm_time_per_output_token_seconds = decode / (tokens_out - 1) as f64,
            model
        );
        tracing::info!(gauge.llm_kv_cache_hit_rate = 0.0, model);
        tracing::info!(counter.llm_active_requests = -1i64, model);
        drop(entered);
    }

    /// metrics-tracing-context: `metrics` macros inside the span; the `model` label
    /// comes from the span's fields at each registration.
    #[inline(never)]
    pub fn context_request(i: u64) {
        let model = MODELS[(i % MODELS.len() as u64) as usize];
        let (tokens_in, tokens_out) = tokens(i);
        let start = Instant::now();
        let span = tracing::info_span!("generate", model, tokens_in, tokens_out = Empty);
        let entered = span.enter();
        metrics::gauge!("llm_active_requests").increment(1.0);
        metrics::counter!("llm_tokens_total", "type" => "input").increment(tokens_in);
        tracing::info!(first_token = true);
        let first = Instant::now();
        span.record("tokens_out", tokens_out);
        let end = Instant::now();
        let decode = (end - first).as_secs_f64().max(1e-9);
        metrics::counter!("llm_tokens_total", "type" => "output").increment(tokens_out);
        metrics::counter!("llm_requests_total", "status" => "ok").increment(1);
        metrics::counter!("llm_cost_pico_usd_total")
            .increment((tokens_in * 200_000 + tokens_out * 600_000) / 1_000_000);
        metrics::histogram!("llm_ttft_seconds").record((first - start).as_secs_f64());
        metrics::histogram!("llm_e2e_latency_seconds").record((end - start).as_secs_f64());
        metrics::histogram!("llm_tokens_per_second").record((tokens_out - 1) as f64 / decode);
        metrics::histogram!("llm_time_per_output_token_seconds")
            .record(decode / (tokens_out - 1) as f64);
        metrics::gauge!("llm_kv_cache_hit_rate").set(0.0);
        metrics::gauge!("llm_active_requests").decrement(1.0);
        drop(entered);
    }
}
