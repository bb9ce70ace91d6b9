//! How a request's status is decided: errors, explicit status, cancellation.

use crate::support::Expect::{Counter, Gauge, Samples};
use crate::support::Harness;
use tracing::field::Empty;

#[derive(Debug)]
struct BackendDown;

impl std::fmt::Display for BackendDown {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("backend down")
    }
}

impl std::error::Error for BackendDown {}

#[tracing::instrument(err, skip_all, fields(model = "m", tokens_in = 4u64, tokens_out = Empty))]
fn generate(fail: bool) -> Result<u64, BackendDown> {
    tracing::info!(first_token = true);
    if fail {
        return Err(BackendDown);
    }
    tracing::Span::current().record("tokens_out", 2u64);
    Ok(2)
}

#[test]
fn instrument_err_marks_the_request_failed() {
    let h = Harness::new();
    h.run(|| {
        assert!(generate(true).is_err());
        assert!(generate(false).is_ok());
    });
    let m = h.snapshot();
    m.assert_series(&[
        Counter("llm_requests_total{model=m,status=error}", 1),
        Counter("llm_requests_total{model=m,status=ok}", 1),
    ]);
    // Latency and decode speed describe successful requests only.
    assert_eq!(
        m.histogram("llm_e2e_latency_seconds", &[("model", "m")])
            .len(),
        1
    );
    // Both produced a first token.
    assert_eq!(m.histogram("llm_ttft_seconds", &[("model", "m")]).len(), 2);
    assert_eq!(m.all_anomalies(), 0);
}

#[test]
fn an_error_event_in_a_child_span_fails_the_request() {
    let h = Harness::new();
    h.run(|| {
        let request =
            tracing::info_span!("generate", model = "m", tokens_in = 1u64, tokens_out = 1u64);
        let _r = request.enter();
        tracing::info_span!("sample").in_scope(|| tracing::error!("nan in logits"));
    });
    let m = h.snapshot();
    assert_eq!(
        m.counter("llm_requests_total", &[("model", "m"), ("status", "error")]),
        1
    );
}

#[test]
fn error_fields_fail_the_request() {
    let h = Harness::new();
    h.run(|| {
        let a = tracing::info_span!("generate", model = "m", tokens_in = 1u64, error = Empty);
        a.record("error", "timeout");
        drop(a);
        let b = tracing::info_span!("generate", model = "m", tokens_in = 1u64, error = Empty);
        b.record("error", false);
        b.record("tokens_in", 1u64);
        tracing::info!(parent: &b, finish_reason = "stop");
        drop(b);
    });
    let m = h.snapshot();
    m.assert_series(&[
        Counter("llm_requests_total{model=m,status=error}", 1),
        Counter("llm_requests_total{model=m,status=ok}", 1),
    ]);
}

#[test]
fn an_explicit_status_wins() {
    let h = Harness::new();
    h.run(|| {
        // A retried sub-call logged an error, but the request succeeded.
        let a = tracing::info_span!("generate", model = "m", tokens_in = 1u64, status = Empty);
        a.in_scope(|| tracing::error!("retrying"));
        a.record("status", "ok");
        drop(a);
        let b = tracing::info_span!(
            "generate",
            model = "m",
            tokens_in = 1u64,
            status = "cancelled"
        );
        drop(b);
        let c = tracing::info_span!(
            "generate",
            model = "m",
            tokens_in = 1u64,
            tokens_out = 3u64,
            status = "error"
        );
        drop(c);
    });
    let m = h.snapshot();
    m.assert_series(&[
        Counter("llm_requests_total{model=m,status=ok}", 1),
        Counter("llm_requests_total{model=m,status=cancelled}", 1),
        Counter("llm_requests_total{model=m,status=error}", 1),
    ]);
}

#[test]
fn a_request_that_never_completes_is_cancelled() {
    let h = Harness::new();
    h.run(|| {
        let request = tracing::info_span!(
            "generate",
            model = "m",
            tokens_in = 9u64,
            tokens_out = Empty
        );
        request.in_scope(|| {
            tracing::info!(first_token = true);
            tracing::info!(tokens_out_delta = 3u64);
        });
        // Dropped before recording tokens_out or a finish reason.
    });
    let m = h.snapshot();
    m.assert_series(&[
        Counter("llm_requests_total{model=m,status=cancelled}", 1),
        // Tokens that were produced are still counted.
        Counter("llm_tokens_total{model=m,type=output}", 3),
        Counter("llm_tokens_total{model=m,type=input}", 9),
        Samples("llm_e2e_latency_seconds{model=m}", &[]),
        Gauge("llm_active_requests{model=m}", 0.0),
    ]);
}

#[test]
fn a_panic_inside_a_request_leaves_the_gauges_right() {
    let h = Harness::new();
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        h.run(|| {
            let request = tracing::info_span!("generate", model = "m", tokens_in = 1u64);
            let _r = request.enter();
            let _q = tracing::info_span!("queue").entered();
            panic!("user code panics");
        })
    }));
    assert!(outcome.is_err());
    let m = h.snapshot();
    m.assert_series(&[
        Gauge("llm_active_requests{model=m}", 0.0),
        Gauge("llm_queue_depth{model=m}", 0.0),
        Counter("llm_requests_total{model=m,status=cancelled}", 1),
    ]);
}
