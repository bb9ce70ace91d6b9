//! The span contract: which field names mean what, and which callsites matter.
//!
//! Classification happens once per callsite, in `register_callsite`; the hot path only
//! reads the result.

use tracing_core::{Level, Metadata};

/// What a field means to the layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    Ignored,
    Model,
    ResponseModel,
    Revision,
    InputTokens,
    OutputTokens,
    CachedTokens,
    OutputDelta,
    FirstToken,
    FinishReason,
    Status,
    Error,
    /// An allowlisted extra label, by its position in the configuration.
    Label(u8),
    GpuId,
    GpuMemoryUsed,
    KvCacheUsage,
}

/// Field names the layer reads, shared by spans and events.
///
/// The OpenTelemetry GenAI semantic-convention names are aliases, so code written for
/// `tracing-opentelemetry` produces the same metrics unchanged.
pub mod fields {
    /// Model name (request span). Alias: `gen_ai.request.model`.
    pub const MODEL: &str = "model";
    /// Model name reported by the response; used only when the request names none.
    pub const RESPONSE_MODEL: &str = "gen_ai.response.model";
    /// Model revision (request span); feeds `llm_model_info`.
    pub const MODEL_REVISION: &str = "model_revision";
    /// Prompt tokens. Alias: `gen_ai.usage.input_tokens`.
    pub const TOKENS_IN: &str = "tokens_in";
    /// Generated tokens, the request's total. Alias: `gen_ai.usage.output_tokens`.
    pub const TOKENS_OUT: &str = "tokens_out";
    /// Prompt tokens served from the prefix cache. Alias: `gen_ai.usage.cache_read.input_tokens`.
    pub const TOKENS_CACHED: &str = "tokens_cached";
    /// Event field: this many more output tokens were streamed.
    pub const TOKENS_OUT_DELTA: &str = "tokens_out_delta";
    /// Event field: the first output token was produced.
    pub const FIRST_TOKEN: &str = "first_token";
    /// Why generation stopped; on an event it marks completion.
    /// Alias: `gen_ai.response.finish_reasons`.
    pub const FINISH_REASON: &str = "finish_reason";
    /// Request outcome (`ok`, `error`, `cancelled`). Alias: `otel.status_code`.
    pub const STATUS: &str = "status";
    /// Any value marks the request as failed. Alias: `error.type`.
    pub const ERROR: &str = "error";
    /// Event field: GPU index or name for `gpu_memory_used_bytes`.
    pub const GPU: &str = "gpu";
    /// Event field: GPU memory in use, in bytes.
    pub const GPU_MEMORY_USED_BYTES: &str = "gpu_memory_used_bytes";
    /// Event field: share of the KV cache in use, from 0 to 1.
    pub const KV_CACHE_USAGE_RATIO: &str = "kv_cache_usage_ratio";
}

/// Field names recognised on request spans.
const SPAN_FIELDS: &[(&str, Role)] = &[
    (fields::MODEL, Role::Model),
    ("gen_ai.request.model", Role::Model),
    (fields::RESPONSE_MODEL, Role::ResponseModel),
    (fields::MODEL_REVISION, Role::Revision),
    (fields::TOKENS_IN, Role::InputTokens),
    ("gen_ai.usage.input_tokens", Role::InputTokens),
    (fields::TOKENS_OUT, Role::OutputTokens),
    ("gen_ai.usage.output_tokens", Role::OutputTokens),
    (fields::TOKENS_CACHED, Role::CachedTokens),
    ("gen_ai.usage.cache_read.input_tokens", Role::CachedTokens),
    ("gen_ai.usage.cache_read_input_tokens", Role::CachedTokens),
    (fields::FINISH_REASON, Role::FinishReason),
    ("gen_ai.response.finish_reasons", Role::FinishReason),
    (fields::STATUS, Role::Status),
    ("otel.status_code", Role::Status),
    (fields::ERROR, Role::Error),
    ("error.type", Role::Error),
];

/// Field names recognised on events.
const EVENT_FIELDS: &[(&str, Role)] = &[
    (fields::FIRST_TOKEN, Role::FirstToken),
    (fields::TOKENS_OUT_DELTA, Role::OutputDelta),
    (fields::FINISH_REASON, Role::FinishReason),
    ("gen_ai.response.finish_reasons", Role::FinishReason),
    (fields::TOKENS_IN, Role::InputTokens),
    ("gen_ai.usage.input_tokens", Role::InputTokens),
    (fields::TOKENS_OUT, Role::OutputTokens),
    ("gen_ai.usage.output_tokens", Role::OutputTokens),
    (fields::TOKENS_CACHED, Role::CachedTokens),
    ("gen_ai.usage.cache_read.input_tokens", Role::CachedTokens),
    ("gen_ai.usage.cache_read_input_tokens", Role::CachedTokens),
    (fields::MODEL, Role::Model),
    ("gen_ai.request.model", Role::Model),
    (fields::GPU, Role::GpuId),
    (fields::GPU_MEMORY_USED_BYTES, Role::GpuMemoryUsed),
    (fields::KV_CACHE_USAGE_RATIO, Role::KvCacheUsage),
];

/// How a callsite takes part in the contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Request,
    Queue,
    /// An event that updates its request (first token, tokens, completion).
    RequestEvent,
    /// An event that only sets engine gauges.
    GaugeEvent,
}

#[derive(Debug, Clone)]
pub(crate) struct CallsiteSpec {
    pub(crate) kind: Kind,
    /// Role of each field, by `Field::index()`.
    pub(crate) roles: Box<[Role]>,
    /// Whether an event also sets engine gauges.
    pub(crate) sets_gauges: bool,
}

impl CallsiteSpec {
    #[inline]
    pub(crate) fn role(&self, field_index: usize) -> Role {
        self.roles
            .get(field_index)
            .copied()
            .unwrap_or(Role::Ignored)
    }
}

/// The user's choices about which spans are requests.
#[derive(Debug, Clone)]
pub(crate) struct Contract {
    pub(crate) extra_labels: Vec<(&'static str, &'static str)>,
    pub(crate) request_span_names: Vec<&'static str>,
    pub(crate) target_prefixes: Vec<&'static str>,
    pub(crate) queue_span_name: &'static str,
}

impl Default for Contract {
    fn default() -> Self {
        Self {
            extra_labels: Vec::new(),
            request_span_names: Vec::new(),
            target_prefixes: Vec::new(),
            queue_span_name: "queue",
        }
    }
}

impl Contract {
    fn span_role(&self, name: &str) -> Role {
        if let Some(position) = self
            .extra_labels
            .iter()
            .position(|(field, _)| *field == name)
        {
            return Role::Label(position as u8);
        }
        lookup(SPAN_FIELDS, name)
    }

    /// Whether a span field name already has a meaning in the contract.
    pub(crate) fn is_contract_field(&self, name: &str) -> bool {
        lookup(SPAN_FIELDS, name) != Role::Ignored
    }

    /// Decides once per callsite whether and how it matters.
    pub(crate) fn classify(&self, metadata: &Metadata<'_>) -> Option<CallsiteSpec> {
        if metadata.is_span() {
            let roles: Box<[Role]> = metadata
                .fields()
                .iter()
                .map(|f| self.span_role(f.name()))
                .collect();
            let has = |wanted: &[Role]| roles.iter().any(|r| wanted.contains(r));
            let in_scope = self.target_prefixes.is_empty()
                || self
                    .target_prefixes
                    .iter()
                    .any(|p| metadata.target().starts_with(p));
            let named = self.request_span_names.contains(&metadata.name());
            let by_fields = has(&[Role::Model, Role::ResponseModel]) && has(&[Role::InputTokens]);
            if in_scope && (named || by_fields) {
                return Some(CallsiteSpec {
                    kind: Kind::Request,
                    roles,
                    sets_gauges: false,
                });
            }
            if metadata.name() == self.queue_span_name {
                return Some(CallsiteSpec {
                    kind: Kind::Queue,
                    roles: Box::new([]),
                    sets_gauges: false,
                });
            }
            return None;
        }
        let roles: Box<[Role]> = metadata
            .fields()
            .iter()
            .map(|f| lookup(EVENT_FIELDS, f.name()))
            .collect();
        let updates_request = roles.iter().any(|r| {
            matches!(
                r,
                Role::FirstToken
                    | Role::OutputDelta
                    | Role::FinishReason
                    | Role::InputTokens
                    | Role::OutputTokens
                    | Role::CachedTokens
            )
        });
        let sets_gauges = roles
            .iter()
            .any(|r| matches!(r, Role::GpuMemoryUsed | Role::KvCacheUsage));
        let kind = match (updates_request, sets_gauges) {
            (true, _) => Kind::RequestEvent,
            (false, true) => Kind::GaugeEvent,
            (false, false) => return None,
        };
        Some(CallsiteSpec {
            kind,
            roles,
            sets_gauges,
        })
    }
}

fn lookup(table: &[(&str, Role)], name: &str) -> Role {
    table
        .iter()
        .find(|(field, _)| *field == name)
        .map_or(Role::Ignored, |(_, role)| *role)
}

/// Whether an event's level marks its request as failed (as `#[instrument(err)]` emits).
pub(crate) fn is_error_level(metadata: &Metadata<'_>) -> bool {
    *metadata.level() == Level::ERROR
}
