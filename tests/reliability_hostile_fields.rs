//! Hostile field values in arbitrary orders of span operations: the layer never
//! panics, the scrape always parses (and passes `promtool check metrics`), and every
//! rejected value is counted by reason.
//!
//! `PROPTEST_CASES=20000 cargo test --test reliability_hostile_fields` fuzzes longer.

use std::sync::atomic::{AtomicUsize, Ordering};

use llm_span_layer::LlmSpanLayer;
use llm_span_prometheus::ExporterBuilder;
use llm_span_testkit::prom::Scrape;
use llm_span_testkit::promtool;
use proptest::prelude::*;
use tracing::field::Empty;
use tracing_subscriber::prelude::*;

const MAX_TOKENS: u64 = u32::MAX as u64;

#[derive(Debug, Clone)]
enum Value {
    Unsigned(u64),
    Signed(i64),
    Float(f64),
    Text(String),
    Debugged(String),
    Bool(bool),
}

fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        Just("12".to_owned()),
        Just(" 7 ".to_owned()),
        Just("llama-3.1-8b".to_owned()),
        Just("a\"b\\c".to_owned()),
        Just("line\nbreak".to_owned()),
        Just("tab\there".to_owned()),
        Just("x".repeat(129)),
        Just("y".repeat(128)),
        Just("é".repeat(70)),
        Just("OK".to_owned()),
        Just("cancelled".to_owned()),
        Just("-3".to_owned()),
        Just("4294967296".to_owned()),
        "\\PC{0,40}",
        any::<String>(),
    ]
}

fn value() -> impl Strategy<Value = Value> {
    prop_oneof![
        prop_oneof![
            Just(0u64),
            Just(1),
            Just(MAX_TOKENS),
            Just(MAX_TOKENS + 1),
            Just(u64::MAX),
            any::<u64>()
        ]
        .prop_map(Value::Unsigned),
        prop_oneof![
            Just(-1i64),
            Just(0),
            Just(i64::MIN),
            Just(i64::MAX),
            any::<i64>()
        ]
        .prop_map(Value::Signed),
        prop_oneof![
            Just(f64::NAN),
            Just(f64::INFINITY),
            Just(f64::NEG_INFINITY),
            Just(-0.0),
            Just(2.5),
            Just(3.0),
            Just(1e300),
            any::<f64>()
        ]
        .prop_map(Value::Float),
        text().prop_map(Value::Text),
        text().prop_map(Value::Debugged),
        any::<bool>().prop_map(Value::Bool),
    ]
}

#[derive(Debug, Clone)]
enum Op {
    Record(&'static str, Value),
    FirstToken,
    Delta(Value),
    Finish(Value),
}

fn op() -> impl Strategy<Value = Op> {
    let field = prop_oneof![
        Just("model"),
        Just("tokens_in"),
        Just("tokens_out"),
        Just("tokens_cached"),
        Just("finish_reason"),
        Just("status")
    ];
    prop_oneof![
        3 => (field, value()).prop_map(|(f, v)| Op::Record(f, v)),
        1 => Just(Op::FirstToken),
        1 => value().prop_map(Op::Delta),
        1 => value().prop_map(Op::Finish),
    ]
}

fn record(span: &tracing::Span, field: &str, value: &Value) {
    match value {
        Value::Unsigned(v) => span.record(field, *v),
        Value::Signed(v) => span.record(field, *v),
        Value::Float(v) => span.record(field, *v),
        Value::Text(v) => span.record(field, v.as_str()),
        Value::Debugged(v) => span.record(field, tracing::field::debug(v)),
        Value::Bool(v) => span.record(field, *v),
    };
}

/// What the layer sees of a value: `Text` for `&str`, the `Debug` text for `?`.
fn seen_text(value: &Value) -> Option<String> {
    match value {
        Value::Text(s) => Some(s.clone()),
        Value::Debugged(s) => {
            let shown = format!("{s:?}");
            // Formatting past the layer's 160-byte buffer is "too long".
            if shown.len() > 160 {
                return Some("#".repeat(200));
            }
            Some(
                shown
                    .strip_prefix('"')
                    .and_then(|t| t.strip_suffix('"'))
                    .unwrap_or(&shown)
                    .to_owned(),
            )
        }
        _ => None,
    }
}

fn is_token_count(value: &Value) -> bool {
    match value {
        Value::Unsigned(v) => *v <= MAX_TOKENS,
        Value::Signed(v) => (0..=MAX_TOKENS as i64).contains(v),
        Value::Float(v) => {
            v.is_finite() && *v >= 0.0 && v.fract() == 0.0 && *v <= MAX_TOKENS as f64
        }
        Value::Bool(_) => false,
        Value::Text(_) | Value::Debugged(_) => seen_text(value)
            .and_then(|t| t.trim().parse::<u64>().ok())
            .is_some_and(|n| n <= MAX_TOKENS),
    }
}

/// `None`: empty (no label), `Some(true)`: a usable label, `Some(false)`: invalid.
fn label_validity(value: &Value) -> Option<bool> {
    match value {
        Value::Unsigned(_) | Value::Signed(_) | Value::Bool(_) => Some(true),
        Value::Float(_) => Some(false),
        Value::Text(_) | Value::Debugged(_) => {
            let text = seen_text(value)?;
            if text.is_empty() {
                return None;
            }
            // Unicode format characters (category Cf), written out independently of the layer.
            let format = |c: char| matches!(u32::from(c), 0xAD | 0x600..=0x605 | 0x61C | 0x6DD | 0x70F | 0x890..=0x891 | 0x8E2 | 0x180E | 0x200B..=0x200F | 0x202A..=0x202E | 0x2060..=0x2064 | 0x2066..=0x206F | 0xFEFF | 0xFFF9..=0xFFFB | 0x110BD | 0x110CD | 0x13430..=0x1343F | 0x1BCA0..=0x1BCA3 | 0x1D173..=0x1D17A | 0xE0001 | 0xE0020..=0xE007F);
            Some(
                text.len() <= 128
                    && text != "unknown"
                    && text != "__overflow__"
                    && !text
                        .chars()
                        .any(|c| c == '\\' || c.is_control() || format(c)),
            )
        }
    }
}

fn is_status(value: &Value) -> bool {
    const KNOWN: [&str; 11] = [
        "ok",
        "success",
        "succeeded",
        "error",
        "failed",
        "failure",
        "cancelled",
        "canceled",
        "aborted",
        "abort",
        "unset",
    ];
    seen_text(value).is_some_and(|t| KNOWN.iter().any(|k| k.eq_ignore_ascii_case(t.trim())))
}

#[derive(Default, Debug, PartialEq, Eq)]
struct Expected {
    malformed: u64,
    invalid_label: u64,
    missing_model: u64,
}

/// Replays the documented rules for the reasons that depend only on values.
fn expect(requests: &[Vec<Op>]) -> Expected {
    let mut e = Expected::default();
    for ops in requests {
        // A request binds its labels at its first token once it has a model, or later
        // when the model arrives, or at close: it misses its model only if it never
        // names one.
        let mut has_model = false;
        for op in ops {
            match op {
                Op::Record(field, value) => match *field {
                    "model" => {
                        if let Some(valid) = label_validity(value) {
                            e.invalid_label += u64::from(!valid);
                            has_model = true;
                        }
                    }
                    "finish_reason" => e.malformed += u64::from(seen_text(value).is_none()),
                    "status" => e.malformed += u64::from(!is_status(value)),
                    _ => e.malformed += u64::from(!is_token_count(value)),
                },
                Op::FirstToken => {}
                Op::Delta(value) => e.malformed += u64::from(!is_token_count(value)),
                Op::Finish(value) => e.malformed += u64::from(seen_text(value).is_none()),
            }
        }
        e.missing_model += u64::from(!has_model);
    }
    e
}

fn run(requests: &[Vec<Op>]) -> Scrape {
    let (recorder, handle) = ExporterBuilder::new().build().expect("recorder");
    let layer = LlmSpanLayer::builder()
        .with_recorder(recorder)
        .with_max_models(10_000)
        .build()
        .expect("layer");
    let dispatch = tracing::Dispatch::new(tracing_subscriber::registry().with(layer));
    tracing::dispatcher::with_default(&dispatch, || {
        for ops in requests {
            let span = tracing::info_span!(
                "generate",
                model = Empty,
                tokens_in = Empty,
                tokens_out = Empty,
                tokens_cached = Empty,
                finish_reason = Empty,
                status = Empty
            );
            for op in ops {
                match op {
                    Op::Record(field, value) => record(&span, field, value),
                    Op::FirstToken => tracing::info!(parent: &span, first_token = true),
                    Op::Delta(value) => match value {
                        Value::Unsigned(v) => tracing::info!(parent: &span, tokens_out_delta = *v),
                        Value::Signed(v) => tracing::info!(parent: &span, tokens_out_delta = *v),
                        Value::Float(v) => tracing::info!(parent: &span, tokens_out_delta = *v),
                        Value::Text(v) => {
                            tracing::info!(parent: &span, tokens_out_delta = v.as_str())
                        }
                        Value::Debugged(v) => tracing::info!(parent: &span, tokens_out_delta = ?v),
                        Value::Bool(v) => tracing::info!(parent: &span, tokens_out_delta = *v),
                    },
                    Op::Finish(value) => match value {
                        Value::Unsigned(v) => tracing::info!(parent: &span, finish_reason = *v),
                        Value::Signed(v) => tracing::info!(parent: &span, finish_reason = *v),
                        Value::Float(v) => tracing::info!(parent: &span, finish_reason = *v),
                        Value::Text(v) => tracing::info!(parent: &span, finish_reason = v.as_str()),
                        Value::Debugged(v) => tracing::info!(parent: &span, finish_reason = ?v),
                        Value::Bool(v) => tracing::info!(parent: &span, finish_reason = *v),
                    },
                }
            }
        }
    });
    let text = handle.render();
    static CASES: AtomicUsize = AtomicUsize::new(0);
    if CASES.fetch_add(1, Ordering::Relaxed).is_multiple_of(64) {
        promtool::assert_clean(&text);
    }
    Scrape::parse_or_panic(&text)
}

fn counter(scrape: &Scrape, reason: &str) -> u64 {
    scrape
        .value("llm_layer_anomalies_total", &[("reason", reason)])
        .unwrap_or(0.0) as u64
}

proptest! {
    #![proptest_config(ProptestConfig { failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn hostile_values_are_counted_never_fatal(requests in proptest::collection::vec(proptest::collection::vec(op(), 0..12), 1..8)) {
        let scrape = run(&requests);
        let expected = expect(&requests);
        let got = Expected {
            malformed: counter(&scrape, "malformed_value"),
            invalid_label: counter(&scrape, "invalid_label"),
            missing_model: counter(&scrape, "missing_model"),
        };
        prop_assert_eq!(got, expected);
        prop_assert_eq!(scrape.sum("llm_requests_total", &[]), requests.len() as f64);
        for sample in scrape.matching("llm_active_requests", &[]) {
            prop_assert_eq!(sample.value, 0.0);
        }
    }
}
