//! Random sequences of span operations: counters equal what was sent, gauges end at 0.

use std::collections::HashMap;

use crate::support::Harness;
use proptest::prelude::*;
use tracing::field::Empty;

const MODELS: [&str; 3] = ["a", "b", "c"];
const SLOTS: usize = 4;

#[derive(Debug, Clone)]
enum Op {
    Open {
        slot: usize,
        model: usize,
        tokens_in: u64,
    },
    RecordOut {
        slot: usize,
        total: u64,
    },
    FirstToken {
        slot: usize,
    },
    Delta {
        slot: usize,
        tokens: u64,
    },
    Finish {
        slot: usize,
    },
    Error {
        slot: usize,
    },
    Queue {
        slot: usize,
    },
    Dequeue {
        slot: usize,
    },
    Close {
        slot: usize,
    },
}

fn op() -> impl Strategy<Value = Op> {
    let slot = 0..SLOTS;
    prop_oneof![
        (slot.clone(), 0..MODELS.len(), 0..5_000u64).prop_map(|(slot, model, tokens_in)| {
            Op::Open {
                slot,
                model,
                tokens_in,
            }
        }),
        (slot.clone(), 0..200u64).prop_map(|(slot, total)| Op::RecordOut { slot, total }),
        slot.clone().prop_map(|slot| Op::FirstToken { slot }),
        (slot.clone(), 0..20u64).prop_map(|(slot, tokens)| Op::Delta { slot, tokens }),
        slot.clone().prop_map(|slot| Op::Finish { slot }),
        slot.clone().prop_map(|slot| Op::Error { slot }),
        slot.clone().prop_map(|slot| Op::Queue { slot }),
        slot.clone().prop_map(|slot| Op::Dequeue { slot }),
        slot.prop_map(|slot| Op::Close { slot }),
    ]
}

/// What the layer should conclude about one request.
#[derive(Default)]
struct Expected {
    model: usize,
    mismatches: u64,
    input: u64,
    output: u64,
    completed: bool,
    error: bool,
}

struct Open {
    span: tracing::Span,
    queue: Option<tracing::Span>,
    expected: Expected,
}

#[derive(Default, Debug, PartialEq, Eq)]
struct Totals {
    input: HashMap<&'static str, u64>,
    output: HashMap<&'static str, u64>,
    by_status: HashMap<(&'static str, &'static str), u64>,
    mismatches: u64,
}

impl Totals {
    fn finish(&mut self, e: Expected) {
        let model = MODELS[e.model];
        self.mismatches += e.mismatches;
        *self.input.entry(model).or_default() += e.input;
        *self.output.entry(model).or_default() += e.output;
        let status = if e.error {
            "error"
        } else if e.completed {
            "ok"
        } else {
            "cancelled"
        };
        *self.by_status.entry((model, status)).or_default() += 1;
    }
}

fn run(ops: &[Op]) -> (Totals, crate::support::Metrics) {
    let h = Harness::new();
    let mut totals = Totals::default();
    h.run(|| {
        let mut open: Vec<Option<Open>> = (0..SLOTS).map(|_| None).collect();
        for op in ops {
            h.advance(0.001);
            match *op {
                Op::Open {
                    slot,
                    model,
                    tokens_in,
                } => {
                    if let Some(old) = open[slot].take() {
                        drop(old.queue);
                        drop(old.span);
                        totals.finish(old.expected);
                    }
                    let span = tracing::info_span!(
                        "generate",
                        model = MODELS[model],
                        tokens_in,
                        tokens_out = Empty
                    );
                    open[slot] = Some(Open {
                        span,
                        queue: None,
                        expected: Expected {
                            model,
                            input: tokens_in,
                            ..Expected::default()
                        },
                    });
                }
                Op::RecordOut { slot, total } => {
                    if let Some(o) = open[slot].as_mut() {
                        o.span.record("tokens_out", total);
                        if total < o.expected.output {
                            o.expected.mismatches += 1;
                        }
                        o.expected.output = o.expected.output.max(total);
                        o.expected.completed = true;
                    }
                }
                Op::FirstToken { slot } => {
                    if let Some(o) = open[slot].as_ref() {
                        tracing::info!(parent: &o.span, first_token = true);
                    }
                }
                Op::Delta { slot, tokens } => {
                    if let Some(o) = open[slot].as_mut() {
                        tracing::info!(parent: &o.span, tokens_out_delta = tokens);
                        o.expected.output += tokens;
                    }
                }
                Op::Finish { slot } => {
                    if let Some(o) = open[slot].as_mut() {
                        tracing::info!(parent: &o.span, finish_reason = "stop");
                        o.expected.completed = true;
                    }
                }
                Op::Error { slot } => {
                    if let Some(o) = open[slot].as_mut() {
                        tracing::error!(parent: &o.span, "failed");
                        o.expected.error = true;
                    }
                }
                Op::Queue { slot } => {
                    if let Some(o) = open[slot].as_mut() {
                        o.queue = Some(tracing::info_span!(parent: &o.span, "queue"));
                    }
                }
                Op::Dequeue { slot } => {
                    if let Some(o) = open[slot].as_mut() {
                        o.queue = None;
                    }
                }
                Op::Close { slot } => {
                    if let Some(old) = open[slot].take() {
                        drop(old.queue);
                        drop(old.span);
                        totals.finish(old.expected);
                    }
                }
            }
        }
        for o in open.into_iter().flatten() {
            drop(o.queue);
            drop(o.span);
            totals.finish(o.expected);
        }
    });
    (totals, h.snapshot())
}

proptest! {
    // PROPTEST_CASES sets the number of cases (256 by default).
    #![proptest_config(ProptestConfig { failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn counters_match_and_gauges_return_to_zero(ops in proptest::collection::vec(op(), 0..60)) {
        let (totals, m) = run(&ops);
        for model in MODELS {
            let input = m.get("llm_tokens_total", &[("model", model), ("type", "input")]);
            let output = m.get("llm_tokens_total", &[("model", model), ("type", "output")]);
            if input.is_none() {
                prop_assert!(!totals.input.contains_key(model));
                continue;
            }
            prop_assert_eq!(m.counter("llm_tokens_total", &[("model", model), ("type", "input")]), totals.input[model]);
            prop_assert!(output.is_some());
            prop_assert_eq!(m.counter("llm_tokens_total", &[("model", model), ("type", "output")]), totals.output[model]);
            for status in ["ok", "error", "cancelled"] {
                let expected = totals.by_status.get(&(model, status)).copied().unwrap_or(0);
                prop_assert_eq!(
                    m.counter("llm_requests_total", &[("model", model), ("status", status)]),
                    expected,
                    "{} {}", model, status
                );
            }
            prop_assert_eq!(m.gauge("llm_active_requests", &[("model", model)]), 0.0);
            prop_assert_eq!(m.gauge("llm_queue_depth", &[("model", model)]), 0.0);
        }
        // Every input is well formed: repeats (first token, completion) and totals
        // below what was streamed are the only anomalies.
        let mismatches = m.get("llm_layer_anomalies_total", &[("reason", "token_count_mismatch")]).map_or(0, |_| m.anomalies("token_count_mismatch"));
        prop_assert_eq!(mismatches, totals.mismatches);
        let repeats = m.sum("llm_layer_anomalies_total")
            - mismatches
            - m.get("llm_layer_anomalies_total", &[("reason", "duplicate_first_token")]).map_or(0, |_| m.anomalies("duplicate_first_token"))
            - m.get("llm_layer_anomalies_total", &[("reason", "duplicate_completion")]).map_or(0, |_| m.anomalies("duplicate_completion"));
        prop_assert_eq!(repeats, 0);
    }
}
