//! Reading the fields of a span, record or event into a typed [`Update`], without
//! allocating.
//!
//! Values arrive in whatever form the user wrote (`u64`, `i64`, `f64`, `&str`, or
//! `%`/`?` formatted). Anything that cannot be used is dropped and counted as an
//! anomaly by reason, never a panic.

use std::fmt::{self, Write as _};

use tracing_core::field::{Field, Visit};

use crate::catalog::{Anomaly, FinishReason, Status};
use crate::containers::labels::{Interned, LabelId, LabelSets, LabelValues};
use crate::contract::{CallsiteClass, Role};
use crate::exemplar::TraceContext;
use crate::pricing::PriceId;

/// Largest token count accepted in one field value: 2^32 - 1.
pub(crate) const MAX_TOKENS: u64 = u32::MAX as u64;
/// How many extra labels may be allowlisted.
pub(crate) const MAX_EXTRA_LABELS: usize = 4;

/// Anomalies seen while handling one callback, counted before they are emitted.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Anomalies([u32; Anomaly::COUNT]);

impl Anomalies {
    pub(crate) fn add(&mut self, anomaly: Anomaly) {
        self.0[anomaly.index()] += 1;
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.0.iter().all(|n| *n == 0)
    }

    /// Each anomaly seen at least once, with its count.
    pub(crate) fn counts(&self) -> impl Iterator<Item = (Anomaly, u32)> + '_ {
        Anomaly::ALL
            .iter()
            .zip(self.0)
            .filter(|(_, n)| *n > 0)
            .map(|(anomaly, n)| (*anomaly, n))
    }

    #[cfg(test)]
    pub(crate) fn count(&self, anomaly: Anomaly) -> u32 {
        self.0[anomaly.index()]
    }
}

/// Normalizes a finish reason to the fixed vocabulary, so that it cannot explode.
fn parse_finish_reason(text: &str) -> FinishReason {
    // OpenTelemetry records an array: take its first element.
    let text = text.trim().trim_start_matches('[');
    let first = text.split([',', ']']).next().unwrap_or("");
    let first = strip_quotes(first.trim());
    const STOP: [&str; 5] = ["stop", "eos", "end_turn", "stop_sequence", "end"];
    const LENGTH: [&str; 3] = ["length", "max_tokens", "max_length"];
    const TOOLS: [&str; 3] = ["tool_calls", "tool_use", "function_call"];
    let is = |set: &[&str]| set.iter().any(|s| s.eq_ignore_ascii_case(first));
    if is(&STOP) {
        FinishReason::Stop
    } else if is(&LENGTH) {
        FinishReason::Length
    } else if is(&TOOLS) {
        FinishReason::ToolCalls
    } else if first.eq_ignore_ascii_case("content_filter") {
        FinishReason::ContentFilter
    } else {
        FinishReason::Other
    }
}

/// What a request does, from its GenAI operation name.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Operation {
    /// It generates a token stream (`chat`, `text_completion`, `generate_content`, or no
    /// operation named): time to first token and decode speed apply.
    #[default]
    Generation,
    /// It answers once (`embeddings`, `rerank`, ...): no first token, no decode phase.
    SingleAnswer,
}

impl Operation {
    /// The operation names of the GenAI conventions that generate a token stream.
    const GENERATION: [&'static str; 3] = ["chat", "text_completion", "generate_content"];

    fn parse(name: &str) -> Self {
        if Self::GENERATION.contains(&name.trim()) {
            Operation::Generation
        } else {
            Operation::SingleAnswer
        }
    }
}

/// A model as a request names it: its label, and its price (also for a name that
/// became `__overflow__`, so that a priced model past the cap is still priced).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ModelRef {
    pub(crate) label: LabelId,
    pub(crate) price: Option<PriceId>,
}

/// Everything one span creation, record or event said, decoded.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Update {
    pub(crate) model: Option<ModelRef>,
    pub(crate) response_model: Option<ModelRef>,
    pub(crate) revision: Option<LabelId>,
    pub(crate) labels: [Option<LabelId>; MAX_EXTRA_LABELS],
    pub(crate) input_tokens: Option<u64>,
    pub(crate) output_tokens: Option<u64>,
    pub(crate) cached_tokens: Option<u64>,
    pub(crate) output_delta: Option<u64>,
    pub(crate) first_token: bool,
    pub(crate) finish_reason: Option<FinishReason>,
    /// `Some(None)`: explicitly unset.
    pub(crate) status: Option<Option<Status>>,
    pub(crate) error: bool,
    pub(crate) gpu: Option<LabelId>,
    pub(crate) gpu_memory_used: Option<f64>,
    pub(crate) kv_cache_usage: Option<f64>,
    pub(crate) trace_id: Option<TraceContext>,
    pub(crate) span_id: Option<[u8; 8]>,
    pub(crate) operation: Option<Operation>,
    /// The operation's name, interned only while the operation families are emitted.
    pub(crate) operation_name: Option<LabelId>,
    /// The provider, interned only while the operation families are emitted.
    pub(crate) provider: Option<LabelId>,
    pub(crate) anomalies: Anomalies,
}

/// A value as it arrived, before its role decides what it must be.
#[derive(Debug, Clone, Copy)]
enum Value<'a> {
    Unsigned(u128),
    Signed(i128),
    Float(f64),
    Bool(bool),
    Text(&'a str),
}

/// Visits the fields of one span, record or event into an [`Update`].
pub(crate) struct FieldVisitor<'a> {
    class: &'a CallsiteClass,
    labels: &'a LabelSets,
    update: &'a mut Update,
}

impl<'a> FieldVisitor<'a> {
    /// Decodes into `update`, which the caller keeps (it is not small: no copies).
    pub(crate) fn new(
        class: &'a CallsiteClass,
        labels: &'a LabelSets,
        update: &'a mut Update,
    ) -> Self {
        Self {
            class,
            labels,
            update,
        }
    }

    fn apply(&mut self, role: Role, value: Value<'_>) {
        let update = &mut *self.update;
        match role {
            Role::Ignored => {}
            Role::Model => update.model = intern_model(self.labels, value, &mut update.anomalies),
            Role::ResponseModel => {
                update.response_model = intern_model(self.labels, value, &mut update.anomalies)
            }
            Role::Revision => {
                update.revision = intern(&self.labels.revision, value, &mut update.anomalies)
            }
            Role::Label(index) => {
                if let (Some(set), Some(slot)) = (
                    self.labels.extra.get(usize::from(index)),
                    update.labels.get_mut(usize::from(index)),
                ) {
                    *slot = intern(set, value, &mut update.anomalies);
                }
            }
            Role::GpuId => update.gpu = intern(&self.labels.gpu, value, &mut update.anomalies),
            Role::InputTokens => update.input_tokens = tokens(value, &mut update.anomalies),
            Role::OutputTokens => update.output_tokens = tokens(value, &mut update.anomalies),
            Role::CachedTokens => update.cached_tokens = tokens(value, &mut update.anomalies),
            Role::OutputDelta => update.output_delta = tokens(value, &mut update.anomalies),
            Role::FirstToken => update.first_token = flag(value),
            Role::Error => update.error = flag(value),
            Role::FinishReason => match value {
                Value::Text(text) => update.finish_reason = Some(parse_finish_reason(text)),
                _ => update.anomalies.add(Anomaly::MalformedValue),
            },
            Role::Status => match status(value) {
                Some(parsed) => update.status = Some(parsed),
                None => update.anomalies.add(Anomaly::MalformedValue),
            },
            Role::GpuMemoryUsed => {
                update.gpu_memory_used = non_negative(value, f64::MAX, &mut update.anomalies)
            }
            Role::KvCacheUsage => {
                update.kv_cache_usage = non_negative(value, 1.0, &mut update.anomalies)
            }
            Role::TraceId => {
                update.trace_id = match value {
                    Value::Text(text) => TraceContext::from_hex(text.trim(), None),
                    _ => None,
                };
                if update.trace_id.is_none() {
                    update.anomalies.add(Anomaly::InvalidTraceId);
                }
            }
            Role::FirstChunkTime => {
                let seconds = non_negative(value, f64::MAX, &mut update.anomalies);
                update.first_token = seconds.is_some();
            }
            Role::Operation => match value {
                Value::Text(name) => {
                    update.operation = Some(Operation::parse(name));
                    if crate::catalog::operation_metrics_enabled() {
                        update.operation_name =
                            intern(&self.labels.operation, value, &mut update.anomalies);
                    }
                }
                _ => update.anomalies.add(Anomaly::MalformedValue),
            },
            Role::Provider => {
                if crate::catalog::operation_metrics_enabled() {
                    update.provider = intern(&self.labels.provider, value, &mut update.anomalies);
                }
            }
            Role::SpanId => {
                update.span_id = match value {
                    Value::Text(text) => crate::exemplar::span_id_from_hex(text.trim()),
                    _ => None,
                };
                if update.span_id.is_none() {
                    update.anomalies.add(Anomaly::InvalidTraceId);
                }
            }
        }
    }

    fn visit(&mut self, field: &Field, value: Value<'_>) {
        let role = self.class.role(field.index());
        if role != Role::Ignored {
            self.apply(role, value);
        }
    }
}

impl Visit for FieldVisitor<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if self.class.role(field.index()) == Role::Ignored {
            return;
        }
        let mut text = StackText::new();
        if write!(text, "{value:?}").is_err() || text.overflowed {
            // Longer than any label or number we accept: the role decides how to count it.
            self.visit(field, Value::Text(TOO_LONG));
            return;
        }
        self.visit(field, Value::Text(strip_quotes(text.as_str())));
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.visit(field, Value::Text(value));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.visit(field, Value::Unsigned(u128::from(value)));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.visit(field, Value::Signed(i128::from(value)));
    }

    fn record_u128(&mut self, field: &Field, value: u128) {
        self.visit(field, Value::Unsigned(value));
    }

    fn record_i128(&mut self, field: &Field, value: i128) {
        self.visit(field, Value::Signed(value));
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.visit(field, Value::Float(value));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.visit(field, Value::Bool(value));
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.record_debug(field, &format_args!("{value}"));
    }
}

/// Stands in for a formatted value that did not fit the stack buffer: no valid
/// number is this long, and as a label it is past the length limit.
const TOO_LONG: &str = concat!(
    "################################################################",
    "################################################################",
    "#"
);

fn strip_quotes(text: &str) -> &str {
    text.strip_prefix('"')
        .and_then(|t| t.strip_suffix('"'))
        .unwrap_or(text)
}

/// A delta event's `tokens_out_delta` (field `index`) when it is a plain integer count
/// above zero; `None` leaves the event to the full decoding, which flags what is wrong.
#[inline]
pub(crate) fn plain_delta(event: &tracing_core::Event<'_>, index: usize) -> Option<u64> {
    struct Delta {
        index: usize,
        value: Option<u64>,
    }
    impl Visit for Delta {
        fn record_debug(&mut self, _: &Field, _: &dyn fmt::Debug) {}
        fn record_u64(&mut self, field: &Field, value: u64) {
            if field.index() == self.index {
                self.value = Some(value);
            }
        }
        fn record_i64(&mut self, field: &Field, value: i64) {
            if field.index() == self.index {
                self.value = u64::try_from(value).ok();
            }
        }
    }
    let mut delta = Delta { index, value: None };
    event.record(&mut delta);
    delta.value.filter(|n| (1..=MAX_TOKENS).contains(n))
}

fn tokens(value: Value<'_>, anomalies: &mut Anomalies) -> Option<u64> {
    let parsed = match value {
        Value::Unsigned(n) => u64::try_from(n).ok(),
        Value::Signed(n) => u64::try_from(n).ok(),
        // An integral float is an exact count (JSON numbers arrive this way); a fraction is not.
        Value::Float(f)
            if f.is_finite() && f >= 0.0 && f.fract() == 0.0 && f <= MAX_TOKENS as f64 =>
        {
            Some(f as u64)
        }
        Value::Float(_) | Value::Bool(_) => None,
        Value::Text(text) => text.trim().parse::<u64>().ok(),
    };
    match parsed {
        Some(n) if n <= MAX_TOKENS => Some(n),
        _ => {
            anomalies.add(Anomaly::MalformedValue);
            None
        }
    }
}

fn non_negative(value: Value<'_>, max: f64, anomalies: &mut Anomalies) -> Option<f64> {
    let parsed = match value {
        Value::Unsigned(n) => Some(n as f64),
        Value::Signed(n) => Some(n as f64),
        Value::Float(f) => Some(f),
        Value::Bool(_) => None,
        Value::Text(text) => text.trim().parse::<f64>().ok(),
    };
    match parsed {
        Some(f) if f.is_finite() && (0.0..=max).contains(&f) => Some(f),
        _ => {
            anomalies.add(Anomaly::MalformedValue);
            None
        }
    }
}

fn flag(value: Value<'_>) -> bool {
    match value {
        Value::Bool(b) => b,
        Value::Text(text) => !text.eq_ignore_ascii_case("false"),
        _ => true,
    }
}

/// `Some(None)` means "explicitly unset" (OpenTelemetry's `UNSET`).
fn status(value: Value<'_>) -> Option<Option<Status>> {
    let Value::Text(text) = value else {
        return None;
    };
    let text = text.trim();
    let is = |set: &[&str]| set.iter().any(|s| s.eq_ignore_ascii_case(text));
    if is(&["ok", "success", "succeeded"]) {
        Some(Some(Status::Ok))
    } else if is(&["error", "failed", "failure"]) {
        Some(Some(Status::Error))
    } else if is(&["cancelled", "canceled", "aborted", "abort"]) {
        Some(Some(Status::Cancelled))
    } else if is(&["unset"]) {
        Some(None)
    } else {
        None
    }
}

/// A label value's text: numbers and booleans are written out, floats are refused.
fn label_text<'t>(value: Value<'t>, buffer: &'t mut StackText) -> Option<&'t str> {
    match value {
        Value::Text(text) => Some(text),
        Value::Unsigned(n) => {
            let _ = write!(buffer, "{n}");
            Some(buffer.as_str())
        }
        Value::Signed(n) => {
            let _ = write!(buffer, "{n}");
            Some(buffer.as_str())
        }
        Value::Bool(b) => Some(if b { "true" } else { "false" }),
        Value::Float(_) => None,
    }
}

fn intern(set: &LabelValues, value: Value<'_>, anomalies: &mut Anomalies) -> Option<LabelId> {
    let mut buffer = StackText::new();
    let interned = label_text(value, &mut buffer).map_or(Interned::Invalid, |t| set.intern(t));
    label_id(interned, anomalies)
}

fn intern_model(
    labels: &LabelSets,
    value: Value<'_>,
    anomalies: &mut Anomalies,
) -> Option<ModelRef> {
    let mut buffer = StackText::new();
    let text = label_text(value, &mut buffer);
    let interned = text.map_or(Interned::Invalid, |t| {
        labels.model.intern_priced(t, |t| labels.prices.id_of(t))
    });
    let label = label_id(interned, anomalies)?;
    let price = match interned {
        Interned::Value(id) => labels.model.price(id),
        // Past the cap or not a sensible label: still priced by its name.
        _ => text.and_then(|t| labels.prices.id_of(t)),
    };
    Some(ModelRef { label, price })
}

fn label_id(interned: Interned, anomalies: &mut Anomalies) -> Option<LabelId> {
    match interned {
        Interned::Value(id) => Some(id),
        // An empty value says nothing; the request keeps whatever it had.
        Interned::Empty => None,
        Interned::Invalid => {
            anomalies.add(Anomaly::InvalidLabel);
            Some(LabelId::OVERFLOW)
        }
        Interned::Overflow => {
            anomalies.add(Anomaly::LabelOverflow);
            Some(LabelId::OVERFLOW)
        }
    }
}

/// A fixed buffer for formatting `%`/`?` values without allocating.
struct StackText {
    buf: [u8; 160],
    len: usize,
    overflowed: bool,
}

impl StackText {
    fn new() -> Self {
        Self {
            buf: [0; 160],
            len: 0,
            overflowed: false,
        }
    }

    fn as_str(&self) -> &str {
        // Only whole `&str` pieces are ever copied in, so this is always valid UTF-8.
        std::str::from_utf8(&self.buf[..self.len]).unwrap_or("")
    }
}

impl fmt::Write for StackText {
    fn write_str(&mut self, piece: &str) -> fmt::Result {
        let end = self.len + piece.len();
        if end > self.buf.len() {
            self.overflowed = true;
            return Err(fmt::Error);
        }
        self.buf[self.len..end].copy_from_slice(piece.as_bytes());
        self.len = end;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn anomaly_counts_list_only_the_anomalies_seen() {
        let mut anomalies = Anomalies::default();
        assert_eq!(anomalies.counts().count(), 0);
        anomalies.add(Anomaly::DuplicateFirstToken);
        anomalies.add(Anomaly::DuplicateFirstToken);
        anomalies.add(Anomaly::MissingModel);
        let mut counts: Vec<_> = anomalies.counts().collect();
        counts.sort_by_key(|(anomaly, _)| anomaly.as_str());
        let mut expected = vec![
            (Anomaly::DuplicateFirstToken, 2),
            (Anomaly::MissingModel, 1),
        ];
        expected.sort_by_key(|(anomaly, _)| anomaly.as_str());
        assert_eq!(counts, expected);
    }

    #[test]
    fn token_values_in_every_natural_form() {
        let mut a = Anomalies::default();
        assert_eq!(tokens(Value::Unsigned(12), &mut a), Some(12));
        assert_eq!(tokens(Value::Signed(12), &mut a), Some(12));
        assert_eq!(tokens(Value::Float(12.0), &mut a), Some(12));
        assert_eq!(tokens(Value::Text(" 12 "), &mut a), Some(12));
        assert_eq!(
            tokens(Value::Unsigned(u128::from(MAX_TOKENS)), &mut a),
            Some(MAX_TOKENS)
        );
        assert!(a.is_empty());
        for bad in [
            Value::Signed(-1),
            Value::Float(1.5),
            Value::Float(f64::NAN),
            Value::Float(f64::INFINITY),
            Value::Float(-3.0),
            Value::Text("twelve"),
            Value::Text("-4"),
            Value::Bool(true),
            Value::Unsigned(u128::from(u64::MAX)),
            Value::Unsigned(u128::from(MAX_TOKENS) + 1),
            Value::Text(TOO_LONG),
        ] {
            let mut a = Anomalies::default();
            assert_eq!(tokens(bad, &mut a), None, "{bad:?}");
            assert_eq!(a.count(Anomaly::MalformedValue), 1, "{bad:?}");
        }
    }

    #[test]
    fn finish_reasons_normalize() {
        assert_eq!(parse_finish_reason("stop"), FinishReason::Stop);
        assert_eq!(parse_finish_reason("EOS"), FinishReason::Stop);
        assert_eq!(parse_finish_reason("[\"length\"]"), FinishReason::Length);
        assert_eq!(
            parse_finish_reason("[\"tool_calls\", \"stop\"]"),
            FinishReason::ToolCalls
        );
        assert_eq!(
            parse_finish_reason("content_filter"),
            FinishReason::ContentFilter
        );
        assert_eq!(parse_finish_reason("banana"), FinishReason::Other);
    }

    #[test]
    fn statuses_normalize() {
        assert_eq!(status(Value::Text("OK")), Some(Some(Status::Ok)));
        assert_eq!(status(Value::Text("ERROR")), Some(Some(Status::Error)));
        assert_eq!(
            status(Value::Text("canceled")),
            Some(Some(Status::Cancelled))
        );
        assert_eq!(status(Value::Text("UNSET")), Some(None));
        assert_eq!(status(Value::Text("maybe")), None);
        assert_eq!(status(Value::Unsigned(200)), None);
    }

    #[test]
    fn stack_text_refuses_what_does_not_fit() {
        let mut text = StackText::new();
        assert!(write!(text, "{}", "x".repeat(200)).is_err());
        assert!(text.overflowed);
        let mut text = StackText::new();
        write!(text, "{:?}", "quoted").expect("fits");
        assert_eq!(strip_quotes(text.as_str()), "quoted");
        // The whole buffer is usable, not a byte more.
        let mut text = StackText::new();
        write!(text, "{}", "x".repeat(160)).expect("fits exactly");
        assert_eq!((text.as_str().len(), text.overflowed), (160, false));
        assert!(write!(text, "y").is_err());
        assert!(text.overflowed);
    }
}
