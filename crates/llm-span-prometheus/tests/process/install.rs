//! `install()` puts the recorder in the global slot, which a process has once.

use llm_span_layer::LlmSpanLayer;
use llm_span_prometheus::{ExporterBuilder, ExporterError};
use tracing_subscriber::prelude::*;

pub(crate) fn install_serves_the_global_recorder_and_refuses_a_second() {
    let server = ExporterBuilder::new()
        .with_listen_addr(([127, 0, 0, 1], 0))
        .with_global_label("service", "global")
        .install()
        .expect("install");
    let addr = server.local_addr();

    // The default layer emits to the global recorder.
    let subscriber = tracing_subscriber::registry().with(LlmSpanLayer::new());
    tracing::subscriber::with_default(subscriber, || {
        let span = tracing::info_span!(
            "generate",
            model = "g",
            tokens_in = 4_u64,
            tokens_out = 2_u64
        );
        let _enter = span.enter();
        tracing::info!(first_token = true);
    });
    metrics::counter!("app_own_events_total").increment(3);

    let response = llm_span_testkit::http::get(addr, "/metrics");
    assert_eq!(response.status, 200);
    let s = llm_span_testkit::prom::series(&response.body);
    assert_eq!(
        s.get(r#"llm_tokens_total{model="g",service="global",type="input"}"#),
        Some(&4.0),
        "{}",
        response.body
    );
    assert_eq!(
        s.get(r#"app_own_events_total{service="global"}"#),
        Some(&3.0)
    );

    // A second install fails with a typed error, and its listener does not linger.
    let second = ExporterBuilder::new()
        .with_listen_addr(([127, 0, 0, 1], 0))
        .install();
    assert!(
        matches!(second, Err(ExporterError::RecorderAlreadyInstalled)),
        "{second:?}"
    );
    let again = ExporterBuilder::new().install_recorder();
    assert!(
        matches!(again, Err(ExporterError::RecorderAlreadyInstalled)),
        "{again:?}"
    );

    server.shutdown();
    assert!(std::net::TcpStream::connect(addr).is_err());
}
