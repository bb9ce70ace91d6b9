//! The `otel` naming profile on the live demo: served with `llm` (`LLM_METRICS_NAMING=llm,otel`)
//! under the load generator (chat streams, aborts, engine errors, embeddings), its families
//! conform to the OpenTelemetry GenAI conventions' fixture in both formats, agree exactly
//! with the layer's own families of the same scrape, and a live Prometheus scrapes them and
//! answers the queries a GenAI dashboard runs on them.
//!
//! Needs Debian's `prometheus` package for the Prometheus part. Without it the test says so
//! and passes, unless `LLM_SPAN_REQUIRE_TOOLS=1` is set: then a missing binary is a failure.

use std::time::Duration;

use llm_span_testkit::otel_conformance::{self, Expected};
use llm_span_testkit::process::{self, wait_for, DemoServer, Load};
use llm_span_testkit::prom::Scrape;
use llm_span_testkit::prometheus::{scrape_config, Prometheus};
use llm_span_testkit::{http, promtool, tools};

const MODEL: &str = "m";
const MODEL_SPEC: &str = "m:0.05:15:2";
const OPENMETRICS: &str = "application/openmetrics-text;version=1.0.0";

const CLIENT_DURATION: &str = "gen_ai_client_operation_duration_seconds";
const SERVER_DURATION: &str = "gen_ai_server_request_duration_seconds";
const TOKEN_USAGE: &str = "gen_ai_client_token_usage";
const TTFT: &str = "gen_ai_server_time_to_first_token_seconds";
const PER_TOKEN: &str = "gen_ai_server_time_per_output_token_seconds";

/// Every family of both roles (the default).
const FAMILIES: &[&str] = &[
    CLIENT_DURATION,
    TOKEN_USAGE,
    SERVER_DURATION,
    TTFT,
    PER_TOKEN,
];

/// The sum of a family's `_count` (or `_sum`) over the series whose labels include
/// `labels`, and whose `error_type` is `error_type` (`None`: no such label, a success).
fn total(scrape: &Scrape, name: &str, labels: &[(&str, &str)], error_type: Option<&str>) -> f64 {
    scrape
        .matching(name, labels)
        .filter(|s| s.labels.get("error_type").map(String::as_str) == error_type)
        .map(|s| s.value)
        .sum()
}

#[test]
fn the_demo_s_otel_families_conform_and_agree_with_its_llm_families() {
    let server = DemoServer::start_with_env(
        &["--model", MODEL_SPEC, "--error-rate", "0.1"],
        &[("LLM_METRICS_NAMING", "llm,otel")],
    );
    let prometheus = tools::require("prometheus")
        .then(|| Prometheus::start(&scrape_config(&[server.metrics], &[]), &[]));

    let spec = Load {
        requests: 80,
        concurrency: 8,
        seed: 11,
        abort_share: 0.15,
    };
    let summary = process::load(&server, spec, &["--embeddings-share", "0.25"]);
    let client = |field: &str| summary["models"][MODEL][field].as_u64().unwrap_or(0) as f64;

    // Spans close just after the client has its answer: wait until none is open.
    let scrape = wait_for(Duration::from_secs(15), || {
        let body = http::get(server.metrics, "/metrics").body;
        let scrape = Scrape::parse_or_panic(&body);
        (scrape.sum("llm_active_requests", &[]) == 0.0).then_some((body, scrape))
    });
    let (body, scrape) = scrape.expect("every request span closed");
    let openmetrics = http::get_with(server.metrics, "/metrics", &[("Accept", OPENMETRICS)]).body;

    // The conventions: names, types, HELP, units, labels, required attributes, buckets.
    otel_conformance::assert_conforms(
        &otel_conformance::fixture_path(),
        &body,
        Some(&openmetrics),
        &Expected::families(FAMILIES),
    );
    if let Some(outcome) = promtool::check_metrics(&body) {
        assert!(outcome.output().trim().is_empty(), "{}", outcome.output());
    }
    assert_eq!(
        scrape.label_values(&format!("{SERVER_DURATION}_count"), "gen_ai_provider_name"),
        ["llm-span-demo"]
    );
    assert_eq!(
        scrape.label_values(&format!("{SERVER_DURATION}_count"), "gen_ai_operation_name"),
        ["chat", "embeddings"]
    );

    // Exactly the layer's numbers, from the same scrape. The client saw the tokens too.
    let model = [("gen_ai_request_model", MODEL)];
    let requests = |status: &str| {
        scrape.sum(
            "llm_requests_total",
            &[("model", MODEL), ("status", status)],
        )
    };
    for duration in [CLIENT_DURATION, SERVER_DURATION] {
        let count = format!("{duration}_count");
        assert_eq!(
            total(&scrape, &count, &model, None),
            requests("ok"),
            "{duration}"
        );
        assert_eq!(
            total(&scrape, &count, &model, Some("_OTHER")),
            requests("error")
        );
        assert_eq!(
            total(&scrape, &count, &model, Some("cancelled")),
            requests("cancelled")
        );
    }
    assert!(requests("ok") > 0.0 && requests("error") > 0.0 && requests("cancelled") > 0.0);
    for (token_type, field) in [("input", "input_tokens"), ("output", "output_tokens")] {
        let usage = total(
            &scrape,
            &format!("{TOKEN_USAGE}_sum"),
            &[
                ("gen_ai_request_model", MODEL),
                ("gen_ai_token_type", token_type),
            ],
            None,
        );
        let counted = scrape.sum(
            "llm_tokens_total",
            &[("model", MODEL), ("type", token_type)],
        );
        assert_eq!(usage, counted, "{token_type}");
        assert_eq!(counted, client(field), "{token_type}");
    }
    // Time to first token of successful generations only: every successful chat, no
    // embeddings, none of the failed or aborted ones the layer's own family has.
    let ok_embeddings = total(
        &scrape,
        &format!("{SERVER_DURATION}_count"),
        &[
            ("gen_ai_request_model", MODEL),
            ("gen_ai_operation_name", "embeddings"),
        ],
        None,
    );
    let ttft = total(&scrape, &format!("{TTFT}_count"), &model, None);
    assert_eq!(ttft, requests("ok") - ok_embeddings);
    let every_ttft = scrape.sum("llm_ttft_seconds_count", &[("model", MODEL)]);
    assert!(
        ttft < every_ttft,
        "{ttft} of {every_ttft}: aborted streams had a first token"
    );
    assert_eq!(
        total(&scrape, &format!("{PER_TOKEN}_count"), &model, None),
        scrape.sum(
            "llm_time_per_output_token_seconds_count",
            &[("model", MODEL)]
        )
    );

    // A live Prometheus reads them: the same totals once it has a scrape after the load,
    // and a dashboard's p95 time to first token and mean tokens per request.
    let Some(prometheus) = prometheus else {
        return;
    };
    let ok = requests("ok");
    let settled = wait_for(Duration::from_secs(20), || {
        let count =
            prometheus.scalar(&format!("sum({SERVER_DURATION}_count{{error_type=\"\"}})"))?;
        (count == ok).then_some(count)
    });
    assert!(settled.is_some(), "Prometheus has the final scrape");
    assert_eq!(prometheus.scalar(&format!("sum({TTFT}_count)")), Some(ttft));
    let p95 = prometheus.scalar(&format!(
        "histogram_quantile(0.95, sum by (le) (rate({TTFT}_bucket[5m])))"
    ));
    assert!(p95.is_some_and(|p95| p95 > 0.0 && p95 <= 10.0), "{p95:?}");
    let mean_output = prometheus.scalar(&format!(
        "sum({TOKEN_USAGE}_sum{{gen_ai_token_type=\"output\"}}) / sum({TOKEN_USAGE}_count{{gen_ai_token_type=\"output\"}})"
    ));
    assert!(
        mean_output.is_some_and(|mean| mean > 0.0),
        "{mean_output:?}"
    );
}
