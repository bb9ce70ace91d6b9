//! Every metric the layer emits (name, type, labels, unit and help text) and the closed
//! sets of label values it uses ([`Status`], [`TokenType`], [`FinishReason`],
//! [`Anomaly`]).
//!
//! Exporters use [`METRICS`] to describe families before the first request and to
//! pick histogram buckets per metric; the
//! [metrics reference](crate::manual::metrics_reference) lists the same.

/// The type of a metric family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum MetricKind {
    /// A monotonic `u64` counter (`_total` suffix).
    Counter,
    /// A value that goes up and down.
    Gauge,
    /// A distribution of observations.
    Histogram,
}

impl MetricKind {
    /// The Prometheus `# TYPE` name: `counter`, `gauge` or `histogram`.
    pub const fn as_str(self) -> &'static str {
        match self {
            MetricKind::Counter => "counter",
            MetricKind::Gauge => "gauge",
            MetricKind::Histogram => "histogram",
        }
    }
}

/// Description of one metric family the layer can emit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct MetricDef {
    /// Prometheus metric name.
    pub name: &'static str,
    /// Counter, gauge or histogram.
    pub kind: MetricKind,
    /// Labels besides `model` and the configured extra labels on request metrics.
    pub labels: &'static [&'static str],
    /// Whether the family carries `model` and the allowlisted extra labels.
    pub per_request_series: bool,
    /// Unit of the value, for humans (`seconds`, `tokens`, ...).
    pub unit: &'static str,
    /// The HELP text.
    pub help: &'static str,
}

/// `llm_requests_total{model,status}`.
pub const REQUESTS_TOTAL: &str = "llm_requests_total";
/// `llm_tokens_total{model,type}`.
pub const TOKENS_TOTAL: &str = "llm_tokens_total";
/// `llm_cached_input_tokens_total{model}`.
pub const CACHED_INPUT_TOKENS_TOTAL: &str = "llm_cached_input_tokens_total";
/// `llm_finish_reasons_total{model,reason}`.
pub const FINISH_REASONS_TOTAL: &str = "llm_finish_reasons_total";
/// `llm_cost_pico_usd_total{model}`: cost in picodollars (10^-12 USD).
pub const COST_PICO_USD_TOTAL: &str = "llm_cost_pico_usd_total";
/// `llm_unpriced_tokens_total{model,type}`.
pub const UNPRICED_TOKENS_TOTAL: &str = "llm_unpriced_tokens_total";
/// `llm_ttft_seconds{model}`.
pub const TTFT_SECONDS: &str = "llm_ttft_seconds";
/// `llm_e2e_latency_seconds{model}`.
pub const E2E_LATENCY_SECONDS: &str = "llm_e2e_latency_seconds";
/// `llm_time_per_output_token_seconds{model}`.
pub const TIME_PER_OUTPUT_TOKEN_SECONDS: &str = "llm_time_per_output_token_seconds";
/// `llm_tokens_per_second{model}`.
pub const TOKENS_PER_SECOND: &str = "llm_tokens_per_second";
/// `llm_queue_wait_seconds{model}`.
pub const QUEUE_WAIT_SECONDS: &str = "llm_queue_wait_seconds";
/// `llm_active_requests{model}`.
pub const ACTIVE_REQUESTS: &str = "llm_active_requests";
/// `llm_queue_depth{model}`.
pub const QUEUE_DEPTH: &str = "llm_queue_depth";
/// `llm_kv_cache_hit_rate{model}`.
pub const KV_CACHE_HIT_RATE: &str = "llm_kv_cache_hit_rate";
/// `llm_kv_cache_usage_ratio{model}`.
pub const KV_CACHE_USAGE_RATIO: &str = "llm_kv_cache_usage_ratio";
/// `llm_gpu_memory_used_bytes{gpu}`.
pub const GPU_MEMORY_USED_BYTES: &str = "llm_gpu_memory_used_bytes";
/// `llm_model_info{model,revision}`.
pub const MODEL_INFO: &str = "llm_model_info";
/// `llm_layer_anomalies_total{reason}`.
pub const LAYER_ANOMALIES_TOTAL: &str = "llm_layer_anomalies_total";
/// `llm_layer_request_spans_enabled`: whether request spans can reach the layer.
pub const REQUEST_SPANS_ENABLED: &str = "llm_layer_request_spans_enabled";

/// `llm_operation_duration_seconds{model,gen_ai_operation_name,gen_ai_provider_name,status}`:
/// an [operation family](OPERATION_METRICS).
pub const OPERATION_DURATION_SECONDS: &str = "llm_operation_duration_seconds";
/// `llm_operation_ttft_seconds{model,gen_ai_operation_name,gen_ai_provider_name}`: an
/// [operation family](OPERATION_METRICS).
pub const OPERATION_TTFT_SECONDS: &str = "llm_operation_ttft_seconds";
/// `llm_operation_time_per_output_token_seconds{model,gen_ai_operation_name,gen_ai_provider_name}`:
/// an [operation family](OPERATION_METRICS).
pub const OPERATION_TIME_PER_OUTPUT_TOKEN_SECONDS: &str =
    "llm_operation_time_per_output_token_seconds";
/// `llm_operation_tokens{model,gen_ai_operation_name,gen_ai_provider_name,type}`: an
/// [operation family](OPERATION_METRICS).
pub const OPERATION_TOKENS: &str = "llm_operation_tokens";

/// The label of the operation families that holds the request's GenAI operation
/// (`gen_ai.operation.name`), `unknown` when its span names none.
pub const OPERATION_LABEL: &str = "gen_ai_operation_name";
/// The label of the operation families that holds the request's GenAI provider
/// (`gen_ai.provider.name`, formerly `gen_ai.system`), `unknown` when its span names none.
pub const PROVIDER_LABEL: &str = "gen_ai_provider_name";

/// The metadata target of the gauges (`llm_active_requests`, `llm_queue_depth`) of a
/// label set that only requests not bound yet passed through, such as
/// `tenant="unknown"` before authentication. A recorder may leave such a series out of
/// its output while it is 0 and no registration with another target shares its key
/// (llm-span-prometheus does), so that no label set a request merely passed through
/// stays in the output; every other registration of the layer has target
/// `llm_span_layer`.
pub const PENDING_GAUGE_TARGET: &str = "llm_span_layer::pending";

/// Label value used when a request never names its model (or an extra label is absent).
pub const UNKNOWN_LABEL_VALUE: &str = "unknown";
/// Label value that replaces values past a label's cap, and invalid values.
pub const OVERFLOW_LABEL_VALUE: &str = "__overflow__";

/// Defines a closed set of label values: an enum, its values in order, and their text.
macro_rules! vocabulary {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident => $text:literal,)+ }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[non_exhaustive]
        pub enum $name {
            $($(#[$vmeta])* $variant,)+
        }

        impl $name {
            /// Every value, in the order the layer registers them.
            pub const ALL: &'static [$name] = &[$($name::$variant,)+];
            /// How many values there are.
            pub(crate) const COUNT: usize = $name::ALL.len();

            /// The label value.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)+
                }
            }

            /// Position in [`Self::ALL`], for arrays of handles indexed by value.
            pub(crate) const fn index(self) -> usize {
                self as usize
            }
        }
    };
}

vocabulary! {
    /// How a request ended: the `status` label of [`REQUESTS_TOTAL`].
    Status {
        /// It completed.
        Ok => "ok",
        /// It failed.
        Error => "error",
        /// Its span closed before it completed (a dropped future, a client gone).
        Cancelled => "cancelled",
    }
}

vocabulary! {
    /// The `type` label of [`TOKENS_TOTAL`] and [`UNPRICED_TOKENS_TOTAL`].
    TokenType {
        /// Prompt tokens.
        Input => "input",
        /// Generated tokens.
        Output => "output",
    }
}

vocabulary! {
    /// Why generation stopped, normalized: the `reason` label of [`FINISH_REASONS_TOTAL`].
    FinishReason {
        /// A natural stop (end of sequence, a stop sequence).
        Stop => "stop",
        /// The token limit.
        Length => "length",
        /// The model called a tool.
        ToolCalls => "tool_calls",
        /// A content filter ended it.
        ContentFilter => "content_filter",
        /// Anything else.
        Other => "other",
    }
}

vocabulary! {
    /// Why the layer could not use an input as given: the `reason` label of
    /// [`LAYER_ANOMALIES_TOTAL`].
    Anomaly {
        /// A request closed without naming its model (counted under `model="unknown"`).
        MissingModel => "missing_model",
        /// A value of the wrong type or out of range.
        MalformedValue => "malformed_value",
        /// A label value too long or with control or format characters.
        InvalidLabel => "invalid_label",
        /// A label value past its cap.
        LabelOverflow => "label_overflow",
        /// A label combination past the series cap.
        SeriesOverflow => "series_overflow",
        /// A second first-token event.
        DuplicateFirstToken => "duplicate_first_token",
        /// A second completion event.
        DuplicateCompletion => "duplicate_completion",
        /// A request event outside any request span.
        EventOutsideRequest => "event_outside_request",
        /// A token total below what was already counted, or more cached than input tokens.
        TokenCountMismatch => "token_count_mismatch",
        /// A model or extra label that changed after the request's labels were bound.
        LateLabel => "late_label",
        /// A `trace_id` or `span_id` that is not an id (hex of the right length, not zero).
        InvalidTraceId => "invalid_trace_id",
    }
}

/// Every metric family the layer can emit, in reference-table order.
pub const METRICS: &[MetricDef] = &[
    MetricDef {
        name: REQUESTS_TOTAL,
        kind: MetricKind::Counter,
        labels: &["status"],
        per_request_series: true,
        unit: "requests",
        help: "LLM requests finished, by status (ok, error, cancelled).",
    },
    MetricDef {
        name: TOKENS_TOTAL,
        kind: MetricKind::Counter,
        labels: &["type"],
        per_request_series: true,
        unit: "tokens",
        help: "Tokens processed, by type (input = prompt, output = generated).",
    },
    MetricDef {
        name: CACHED_INPUT_TOKENS_TOTAL,
        kind: MetricKind::Counter,
        labels: &[],
        per_request_series: true,
        unit: "tokens",
        help: "Input tokens served from the prefix (KV) cache; a subset of llm_tokens_total{type=\"input\"}.",
    },
    MetricDef {
        name: FINISH_REASONS_TOTAL,
        kind: MetricKind::Counter,
        labels: &["reason"],
        per_request_series: true,
        unit: "requests",
        help: "Requests that reported a finish reason, by normalized reason.",
    },
    MetricDef {
        name: COST_PICO_USD_TOTAL,
        kind: MetricKind::Counter,
        labels: &[],
        per_request_series: true,
        unit: "picodollars",
        help: "Cost of the tokens of priced models, in picodollars (10^-12 US dollars).",
    },
    MetricDef {
        name: UNPRICED_TOKENS_TOTAL,
        kind: MetricKind::Counter,
        labels: &["type"],
        per_request_series: true,
        unit: "tokens",
        help: "Tokens of models that have no entry in the price table, by type.",
    },
    MetricDef {
        name: TTFT_SECONDS,
        kind: MetricKind::Histogram,
        labels: &[],
        per_request_series: true,
        unit: "seconds",
        help: "Time to first token: from the request span's creation to its first-token event.",
    },
    MetricDef {
        name: E2E_LATENCY_SECONDS,
        kind: MetricKind::Histogram,
        labels: &[],
        per_request_series: true,
        unit: "seconds",
        help: "End-to-end latency of successful requests: creation to completion event (or span close).",
    },
    MetricDef {
        name: TIME_PER_OUTPUT_TOKEN_SECONDS,
        kind: MetricKind::Histogram,
        labels: &[],
        per_request_series: true,
        unit: "seconds",
        help: "Decode time per output token after the first: (end - first token) / (output tokens - 1).",
    },
    MetricDef {
        name: TOKENS_PER_SECOND,
        kind: MetricKind::Histogram,
        labels: &[],
        per_request_series: true,
        unit: "tokens per second",
        help: "Decode throughput per request: (output tokens - 1) / (end - first token).",
    },
    MetricDef {
        name: QUEUE_WAIT_SECONDS,
        kind: MetricKind::Histogram,
        labels: &[],
        per_request_series: true,
        unit: "seconds",
        help: "Time requests spent waiting in the queue phase.",
    },
    MetricDef {
        name: ACTIVE_REQUESTS,
        kind: MetricKind::Gauge,
        labels: &[],
        per_request_series: true,
        unit: "requests",
        help: "Requests in flight: request spans opened and not yet closed.",
    },
    MetricDef {
        name: QUEUE_DEPTH,
        kind: MetricKind::Gauge,
        labels: &[],
        per_request_series: true,
        unit: "requests",
        help: "Requests waiting in the queue phase.",
    },
    MetricDef {
        name: KV_CACHE_HIT_RATE,
        kind: MetricKind::Gauge,
        labels: &[],
        per_request_series: true,
        unit: "ratio",
        help: "Share of input tokens served from the prefix cache since start; use the counters for rates.",
    },
    MetricDef {
        name: KV_CACHE_USAGE_RATIO,
        kind: MetricKind::Gauge,
        labels: &["model"],
        per_request_series: false,
        unit: "ratio",
        help: "Share of the KV cache in use, as last reported by the engine.",
    },
    MetricDef {
        name: GPU_MEMORY_USED_BYTES,
        kind: MetricKind::Gauge,
        labels: &["gpu"],
        per_request_series: false,
        unit: "bytes",
        help: "GPU memory in use, as last reported by the engine.",
    },
    MetricDef {
        name: MODEL_INFO,
        kind: MetricKind::Gauge,
        labels: &["model", "revision"],
        per_request_series: false,
        unit: "info",
        help: "1 for the model revision most recently served, 0 for revisions it replaced.",
    },
    MetricDef {
        name: LAYER_ANOMALIES_TOTAL,
        kind: MetricKind::Counter,
        labels: &["reason"],
        per_request_series: false,
        unit: "events",
        help: "Inputs the LLM span layer could not use as given, by reason.",
    },
    MetricDef {
        name: REQUEST_SPANS_ENABLED,
        kind: MetricKind::Gauge,
        labels: &[],
        per_request_series: false,
        unit: "boolean",
        help: "1 when INFO request spans can reach the layer; 0 when a global filter (a global EnvFilter at warn, say) disables them for every layer. Filter logs with fmt::layer().with_filter(..) instead.",
    },
];

/// The operation families: per-request measurements by GenAI operation and provider, for
/// recorders that serve the OpenTelemetry GenAI metric conventions (llm-span-prometheus's
/// `otel` naming profile), which need what [`METRICS`] aggregates away: the duration of
/// every request with its outcome, time to first token and decode time of successful
/// requests only, and each request's token counts as a distribution.
///
/// The layer emits them only once [`enable_operation_metrics`] was called in the process
/// (llm-span-prometheus does when it serves `otel`), so that no other recorder gets them
/// unasked. Their labels are `model`, the allowlisted extra labels, [`OPERATION_LABEL`],
/// [`PROVIDER_LABEL`], then `status` or `type` where listed.
pub const OPERATION_METRICS: &[MetricDef] = &[
    MetricDef {
        name: OPERATION_DURATION_SECONDS,
        kind: MetricKind::Histogram,
        labels: &[OPERATION_LABEL, PROVIDER_LABEL, "status"],
        per_request_series: true,
        unit: "seconds",
        help: "Duration of every finished request, by operation, provider and status: creation to completion event (or span close).",
    },
    MetricDef {
        name: OPERATION_TTFT_SECONDS,
        kind: MetricKind::Histogram,
        labels: &[OPERATION_LABEL, PROVIDER_LABEL],
        per_request_series: true,
        unit: "seconds",
        help: "Time to first token of successful requests, by operation and provider.",
    },
    MetricDef {
        name: OPERATION_TIME_PER_OUTPUT_TOKEN_SECONDS,
        kind: MetricKind::Histogram,
        labels: &[OPERATION_LABEL, PROVIDER_LABEL],
        per_request_series: true,
        unit: "seconds",
        help: "Decode time per output token after the first, of successful requests, by operation and provider.",
    },
    MetricDef {
        name: OPERATION_TOKENS,
        kind: MetricKind::Histogram,
        labels: &[OPERATION_LABEL, PROVIDER_LABEL, "type"],
        per_request_series: true,
        unit: "tokens",
        help: "Tokens per request, by operation, provider and type, for requests that reported them.",
    },
];

static OPERATION_METRICS_ENABLED: std::sync::atomic::AtomicBool =
    std::sync::atomic::AtomicBool::new(false);

/// Makes every layer in the process emit the [operation families](OPERATION_METRICS)
/// from now on, for requests that finish after the call. There is no way back: a recorder
/// that served them once keeps getting them.
pub fn enable_operation_metrics() {
    OPERATION_METRICS_ENABLED.store(true, std::sync::atomic::Ordering::Relaxed);
}

/// Whether [`enable_operation_metrics`] was called.
#[inline]
pub fn operation_metrics_enabled() -> bool {
    OPERATION_METRICS_ENABLED.load(std::sync::atomic::Ordering::Relaxed)
}

/// Looks up a metric family by name.
pub fn metric(name: &str) -> Option<&'static MetricDef> {
    METRICS.iter().find(|m| m.name == name)
}

/// Registers HELP text and units for every family with `recorder`.
pub fn describe(recorder: &dyn metrics::Recorder) {
    for def in METRICS {
        let name = metrics::KeyName::from_const_str(def.name);
        let unit = match def.unit {
            "seconds" => Some(metrics::Unit::Seconds),
            "bytes" => Some(metrics::Unit::Bytes),
            _ => None,
        };
        let help = metrics::SharedString::const_str(def.help);
        match def.kind {
            MetricKind::Counter => recorder.describe_counter(name, unit, help),
            MetricKind::Gauge => recorder.describe_gauge(name, unit, help),
            MetricKind::Histogram => recorder.describe_histogram(name, unit, help),
        }
    }
}
