//! The span contract: which field names mean what, and which callsites matter.
//!
//! Classification happens once per callsite, when it registers; the hot path only
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
    TraceId,
    SpanId,
    /// Seconds to the first streamed chunk, recorded when it came: marks the first token.
    FirstChunkTime,
    /// The GenAI operation (`chat`, `embeddings`, ...): whether a token stream is expected.
    Operation,
    /// The GenAI provider (`openai`, ...), for the operation families.
    Provider,
}

/// Field names the layer reads, and the one table of their aliases.
///
/// The OpenTelemetry GenAI semantic-convention names are aliases, so code written for
/// `tracing-opentelemetry` produces the same metrics unchanged.
pub mod fields {
    use super::Role;

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
    /// The request's trace id (32 hex digits, W3C), for exemplars.
    pub const TRACE_ID: &str = "trace_id";
    /// The request's span id (16 hex digits), for exemplars.
    pub const SPAN_ID: &str = "span_id";
    /// Seconds from the request to its first streamed chunk (request span), recorded when
    /// the chunk comes: marks the request's first token then, as a `first_token` event
    /// would. genai records it.
    pub const TIME_TO_FIRST_CHUNK: &str = "gen_ai.response.time_to_first_chunk";
    /// The GenAI operation (request span, at creation). `chat`, `text_completion` and
    /// `generate_content` generate a token stream; any other (`embeddings`, `rerank`,
    /// ...) answers once: such a request completes when it reports usage, and never
    /// feeds time to first token or decode speed.
    pub const OPERATION_NAME: &str = "gen_ai.operation.name";
    /// The GenAI provider (request span). Alias: `gen_ai.system`, its former name. It is
    /// the `gen_ai_provider_name` label of the
    /// [operation families](crate::catalog::OPERATION_METRICS) only; to have it on every
    /// family, allowlist it as an extra label (`with_label_as(PROVIDER_NAME, "provider")`),
    /// which the operation families then read it from.
    pub const PROVIDER_NAME: &str = "gen_ai.provider.name";

    /// One field of the contract: its name, its aliases and where it is read.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    #[non_exhaustive]
    pub struct FieldDef {
        /// The field name.
        pub name: &'static str,
        /// Other names with the same meaning (OpenTelemetry GenAI conventions).
        pub aliases: &'static [&'static str],
        /// Read on request spans.
        pub on_span: bool,
        /// Read on events.
        pub on_event: bool,
        pub(crate) role: Role,
    }

    const fn field(
        name: &'static str,
        aliases: &'static [&'static str],
        on_span: bool,
        on_event: bool,
        role: Role,
    ) -> FieldDef {
        FieldDef {
            name,
            aliases,
            on_span,
            on_event,
            role,
        }
    }

    /// Every field the layer reads, with its aliases: the tables of the
    /// [span contract](crate::manual::contract).
    pub const CONTRACT: &[FieldDef] = &[
        field(MODEL, &["gen_ai.request.model"], true, true, Role::Model),
        field(RESPONSE_MODEL, &[], true, false, Role::ResponseModel),
        field(MODEL_REVISION, &[], true, false, Role::Revision),
        field(
            TOKENS_IN,
            &["gen_ai.usage.input_tokens"],
            true,
            true,
            Role::InputTokens,
        ),
        field(
            TOKENS_OUT,
            &["gen_ai.usage.output_tokens"],
            true,
            true,
            Role::OutputTokens,
        ),
        field(
            TOKENS_CACHED,
            &[
                "gen_ai.usage.cache_read.input_tokens",
                "gen_ai.usage.cache_read_input_tokens",
            ],
            true,
            true,
            Role::CachedTokens,
        ),
        field(
            FINISH_REASON,
            &["gen_ai.response.finish_reasons"],
            true,
            true,
            Role::FinishReason,
        ),
        field(STATUS, &["otel.status_code"], true, false, Role::Status),
        field(ERROR, &["error.type"], true, false, Role::Error),
        field(TRACE_ID, &[], true, false, Role::TraceId),
        field(SPAN_ID, &[], true, false, Role::SpanId),
        field(TIME_TO_FIRST_CHUNK, &[], true, false, Role::FirstChunkTime),
        field(OPERATION_NAME, &[], true, false, Role::Operation),
        field(
            PROVIDER_NAME,
            &["gen_ai.system"],
            true,
            false,
            Role::Provider,
        ),
        field(FIRST_TOKEN, &[], false, true, Role::FirstToken),
        field(TOKENS_OUT_DELTA, &[], false, true, Role::OutputDelta),
        field(GPU, &[], false, true, Role::GpuId),
        field(GPU_MEMORY_USED_BYTES, &[], false, true, Role::GpuMemoryUsed),
        field(KV_CACHE_USAGE_RATIO, &[], false, true, Role::KvCacheUsage),
    ];

    /// A field name that means a contract field only on spans of one name: a
    /// framework's own field names, read where that framework records them and nowhere
    /// else, so that an ordinary span with the same field names never counts by accident.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    #[non_exhaustive]
    pub struct SpanAlias {
        /// The span name (the framework's request span).
        pub span: &'static str,
        /// The framework's field name.
        pub alias: &'static str,
        /// The contract field it stands for.
        pub field: &'static str,
    }

    /// Every span-scoped alias: langchain-rust's `llm.generate` span.
    pub const SPAN_ALIASES: &[SpanAlias] = &[
        SpanAlias {
            span: "llm.generate",
            alias: "prompt_tokens",
            field: TOKENS_IN,
        },
        SpanAlias {
            span: "llm.generate",
            alias: "completion_tokens",
            field: TOKENS_OUT,
        },
    ];

    /// The role of a field name on a span named `span` (span-scoped aliases first).
    pub(crate) fn span_role_of(name: &str, span: &str) -> Role {
        SPAN_ALIASES
            .iter()
            .find(|a| a.span == span && a.alias == name)
            .map_or_else(|| role_of(name, false), |a| role_of(a.field, false))
    }

    /// The role of a field name on a span (`on_event == false`) or an event.
    pub(crate) fn role_of(name: &str, on_event: bool) -> Role {
        CONTRACT
            .iter()
            .filter(|def| if on_event { def.on_event } else { def.on_span })
            .find(|def| def.name == name || def.aliases.contains(&name))
            .map_or(Role::Ignored, |def| def.role)
    }
}

/// How a callsite takes part in the contract, decided once when it registers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum CallsiteClass {
    /// A request span; the role of each field, by `Field::index()`.
    Request { roles: Box<[Role]> },
    /// A queue-phase span.
    Queue,
    /// An event that updates its request (first token, tokens, completion), and
    /// perhaps engine gauges too.
    RequestEvent {
        roles: Box<[Role]>,
        sets_gauges: bool,
        /// The index of its one contract field when that is `tokens_out_delta` (and
        /// the level is not ERROR): a delta event, which may take the stream lane.
        token_delta: Option<usize>,
    },
    /// An event that only sets engine gauges.
    GaugeEvent { roles: Box<[Role]> },
}

impl CallsiteClass {
    /// The role of the field at `field_index`.
    #[inline]
    pub(crate) fn role(&self, field_index: usize) -> Role {
        let roles = match self {
            CallsiteClass::Request { roles }
            | CallsiteClass::RequestEvent { roles, .. }
            | CallsiteClass::GaugeEvent { roles } => roles,
            CallsiteClass::Queue => return Role::Ignored,
        };
        roles.get(field_index).copied().unwrap_or(Role::Ignored)
    }

    pub(crate) fn is_request_event(&self) -> bool {
        matches!(self, CallsiteClass::RequestEvent { .. })
    }

    /// The field index of a delta event's `tokens_out_delta`.
    #[inline]
    pub(crate) fn token_delta(&self) -> Option<usize> {
        match self {
            CallsiteClass::RequestEvent { token_delta, .. } => *token_delta,
            _ => None,
        }
    }

    pub(crate) fn sets_gauges(&self) -> bool {
        match self {
            CallsiteClass::RequestEvent { sets_gauges, .. } => *sets_gauges,
            CallsiteClass::GaugeEvent { .. } => true,
            _ => false,
        }
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

/// The default name of queue-phase spans.
pub(crate) const DEFAULT_QUEUE_SPAN_NAME: &str = "queue";

impl Contract {
    fn span_role(&self, name: &str, span: &str) -> Role {
        if let Some(position) = self
            .extra_labels
            .iter()
            .position(|(field, _)| *field == name)
        {
            return Role::Label(position as u8);
        }
        fields::span_role_of(name, span)
    }

    /// Whether a span field name already has a meaning in the contract that an extra
    /// label would take away. The provider may be allowlisted: the operation families
    /// then read it from its extra label.
    pub(crate) fn is_contract_field(name: &str) -> bool {
        !matches!(fields::role_of(name, false), Role::Ignored | Role::Provider)
    }

    /// The position of the extra label that holds the GenAI provider, if it is one.
    pub(crate) fn provider_label(&self) -> Option<usize> {
        self.extra_labels
            .iter()
            .position(|(field, _)| fields::role_of(field, false) == Role::Provider)
    }

    /// Decides once per callsite whether and how it matters.
    pub(crate) fn classify(&self, metadata: &Metadata<'_>) -> Option<CallsiteClass> {
        if metadata.is_span() {
            let roles: Box<[Role]> = metadata
                .fields()
                .iter()
                .map(|f| self.span_role(f.name(), metadata.name()))
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
                return Some(CallsiteClass::Request { roles });
            }
            if metadata.name() == self.queue_span_name {
                return Some(CallsiteClass::Queue);
            }
            return None;
        }
        let roles: Box<[Role]> = metadata
            .fields()
            .iter()
            .map(|f| fields::role_of(f.name(), true))
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
        let mut contract_fields = roles
            .iter()
            .enumerate()
            .filter(|(_, role)| **role != Role::Ignored);
        let token_delta = match (contract_fields.next(), contract_fields.next()) {
            (Some((index, Role::OutputDelta)), None) if !is_error_level(metadata) => Some(index),
            _ => None,
        };
        match (updates_request, sets_gauges) {
            (true, _) => Some(CallsiteClass::RequestEvent {
                roles,
                sets_gauges,
                token_delta,
            }),
            (false, true) => Some(CallsiteClass::GaugeEvent { roles }),
            (false, false) => None,
        }
    }
}

/// Whether an event's level marks its request as failed (as `#[instrument(err)]` emits).
pub(crate) fn is_error_level(metadata: &Metadata<'_>) -> bool {
    *metadata.level() == Level::ERROR
}

#[cfg(test)]
mod tests {
    use super::fields::{role_of, CONTRACT};
    use super::*;

    #[test]
    fn names_and_aliases_are_unique_per_place() {
        for on_event in [false, true] {
            let mut seen = std::collections::HashSet::new();
            for def in CONTRACT
                .iter()
                .filter(|d| if on_event { d.on_event } else { d.on_span })
            {
                for name in std::iter::once(&def.name).chain(def.aliases) {
                    assert!(seen.insert(*name), "{name} twice");
                    assert_eq!(role_of(name, on_event), def.role, "{name}");
                }
            }
        }
        assert_eq!(role_of("first_token", false), Role::Ignored);
        assert_eq!(role_of("status", true), Role::Ignored);
        assert_eq!(role_of("nope", true), Role::Ignored);
    }
}
