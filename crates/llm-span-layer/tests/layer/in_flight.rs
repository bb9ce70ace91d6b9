//! More requests open at once than the in-flight table's first level holds: it grows,
//! and every request is still counted exactly.

use crate::support::Expect::{Absent, Counter, Gauge};
use crate::support::Harness;
use tracing::field::Empty;

#[test]
fn thousands_of_open_requests_are_all_counted() {
    const OPEN: u64 = 10_000;
    let h = Harness::new();
    h.run(|| {
        let spans: Vec<tracing::Span> = (0..OPEN)
            .map(|i| {
                tracing::info_span!(
                    "generate",
                    model = "m",
                    tokens_in = i % 7,
                    tokens_out = Empty
                )
            })
            .collect();
        let during = h.snapshot();
        during.assert_series(&[
            Gauge("llm_active_requests{model=m}", OPEN as f64),
            // Input tokens wait for the first token.
            Absent("llm_tokens_total{model=m,type=input}"),
        ]);
        for (i, span) in spans.iter().enumerate() {
            tracing::info!(parent: span, first_token = true);
            span.record("tokens_out", 2 + i as u64 % 3);
            let queue = tracing::info_span!(parent: span, "queue");
            drop(queue);
        }
    });
    let m = h.snapshot();
    let input: u64 = (0..OPEN).map(|i| i % 7).sum();
    let output: u64 = (0..OPEN).map(|i| 2 + i % 3).sum();
    m.assert_series(&[
        Counter("llm_requests_total{model=m,status=ok}", OPEN),
        Counter("llm_tokens_total{model=m,type=input}", input),
        Counter("llm_tokens_total{model=m,type=output}", output),
        // A gauge's change since the last snapshot.
        Gauge("llm_active_requests{model=m}", -(OPEN as f64)),
        Gauge("llm_queue_depth{model=m}", 0.0),
    ]);
    assert_eq!(
        m.histogram("llm_ttft_seconds", &[("model", "m")]).len() as u64,
        OPEN
    );
    assert_eq!(
        m.histogram("llm_queue_wait_seconds", &[("model", "m")])
            .len() as u64,
        OPEN
    );
    assert_eq!(m.all_anomalies(), 0);
}
