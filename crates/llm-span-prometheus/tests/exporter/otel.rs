//! The `otel` naming profile: the OpenTelemetry GenAI families from the layer's operation
//! families (registered here as the layer registers them), exact samples, the conventions'
//! fixture checked by `llm_span_testkit::otel_conformance`, promtool and an independent
//! OpenMetrics parser; the roles; the `llm` output unchanged beside it.

use llm_span_layer::catalog;
use llm_span_prometheus::{ExporterBuilder, MetricsHandle, MetricsRecorder, Naming, OtelRole};
use llm_span_testkit::otel_conformance::{self, Expected};
use llm_span_testkit::{openmetrics, promtool};
use metrics::{Key, Label, Recorder};

use crate::support::{hold_max_level, META};

const OPENMETRICS: &str = "application/openmetrics-text;version=1.0.0";

const CLIENT: [&str; 2] = [
    "gen_ai_client_token_usage",
    "gen_ai_client_operation_duration_seconds",
];
const SERVER: [&str; 3] = [
    "gen_ai_server_request_duration_seconds",
    "gen_ai_server_time_to_first_token_seconds",
    "gen_ai_server_time_per_output_token_seconds",
];

/// The labels the layer gives an operation family's series: `model`, the extra labels,
/// the operation and the provider, then `last` (`status` or `type`) where it has one.
fn operation_key(
    name: &'static str,
    extra: &[(&'static str, &'static str)],
    last: Option<(&'static str, &'static str)>,
) -> Key {
    let mut labels = vec![Label::new("model", "m")];
    labels.extend(extra.iter().map(|(k, v)| Label::new(*k, *v)));
    labels.push(Label::new(catalog::OPERATION_LABEL, "chat"));
    labels.push(Label::new(catalog::PROVIDER_LABEL, "openai"));
    labels.extend(last.map(|(k, v)| Label::new(k, v)));
    Key::from_parts(name, labels)
}

/// Known requests, as the layer records them: durations of each status, first tokens
/// and a decode time of the successful ones, tokens of both types; and the layer's own
/// request counter and TTFT.
fn record(recorder: &MetricsRecorder, extra: &[(&'static str, &'static str)]) {
    let histogram =
        |name, last| recorder.register_histogram(&operation_key(name, extra, last), &META);
    let duration = |status| {
        histogram(
            catalog::OPERATION_DURATION_SECONDS,
            Some(("status", status)),
        )
    };
    duration("ok").record(0.05);
    duration("ok").record(3.0);
    duration("error").record(0.5);
    duration("cancelled").record(100.0);
    let ttft = histogram(catalog::OPERATION_TTFT_SECONDS, None);
    ttft.record(0.3);
    ttft.record(0.002);
    histogram(catalog::OPERATION_TIME_PER_OUTPUT_TOKEN_SECONDS, None).record(0.02);
    let tokens = |kind| histogram(catalog::OPERATION_TOKENS, Some(("type", kind)));
    tokens("input").record(10.0);
    tokens("input").record(300.0);
    tokens("output").record(50.0);
    for (status, n) in [("ok", 2), ("error", 1), ("cancelled", 1)] {
        let key = Key::from_parts(
            catalog::REQUESTS_TOTAL,
            vec![Label::new("model", "m"), Label::new("status", status)],
        );
        recorder.register_counter(&key, &META).increment(n);
    }
    let key = Key::from_parts(catalog::TTFT_SECONDS, vec![Label::new("model", "m")]);
    let ttft = recorder.register_histogram(&key, &META);
    ttft.record(0.3);
    ttft.record(0.002);
}

fn built(builder: ExporterBuilder) -> (MetricsRecorder, MetricsHandle) {
    builder.build().expect("recorder")
}

const LABELS: &str =
    r#"gen_ai_request_model="m",gen_ai_operation_name="chat",gen_ai_provider_name="openai""#;

#[test]
fn the_otel_profile_serves_the_conventions_exactly() {
    let (recorder, handle) = built(ExporterBuilder::new().with_naming([Naming::Otel]));
    record(&recorder, &[]);
    let text = handle.render();
    let (content_type, om) = handle.render_negotiated(Some(OPENMETRICS));
    assert!(content_type.starts_with("application/openmetrics-text"));

    let server = "gen_ai_server_request_duration_seconds";
    let client = "gen_ai_client_operation_duration_seconds";
    let usage = "gen_ai_client_token_usage";
    let ttft = "gen_ai_server_time_to_first_token_seconds";
    let tpot = "gen_ai_server_time_per_output_token_seconds";
    let input = format!(r#"{LABELS},gen_ai_token_type="input""#);
    let error = format!(r#"{LABELS},error_type="_OTHER""#);
    let cancelled = format!(r#"{LABELS},error_type="cancelled""#);
    let expected = [
        // Successful requests: no error_type.
        format!(r#"{server}_bucket{{{LABELS},le="0.04"}} 0"#),
        format!(r#"{server}_bucket{{{LABELS},le="0.08"}} 1"#),
        format!(r#"{server}_bucket{{{LABELS},le="2.56"}} 1"#),
        format!(r#"{server}_bucket{{{LABELS},le="5.12"}} 2"#),
        format!(r#"{server}_bucket{{{LABELS},le="81.92"}} 2"#),
        format!(r#"{server}_bucket{{{LABELS},le="+Inf"}} 2"#),
        format!("{server}_sum{{{LABELS}}} 3.05"),
        format!("{server}_count{{{LABELS}}} 2"),
        // The same series in the client's family.
        format!(r#"{client}_bucket{{{LABELS},le="0.08"}} 1"#),
        format!("{client}_count{{{LABELS}}} 2"),
        // Failed and cancelled ones, in both.
        format!(r#"{server}_bucket{{{error},le="0.32"}} 0"#),
        format!(r#"{server}_bucket{{{error},le="0.64"}} 1"#),
        format!("{client}_sum{{{error}}} 0.5"),
        format!("{client}_count{{{error}}} 1"),
        format!(r#"{server}_bucket{{{cancelled},le="81.92"}} 0"#),
        format!(r#"{server}_bucket{{{cancelled},le="+Inf"}} 1"#),
        format!("{client}_sum{{{cancelled}}} 100"),
        // Tokens per request, by type.
        format!(r#"{usage}_bucket{{{input},le="1"}} 0"#),
        format!(r#"{usage}_bucket{{{input},le="16"}} 1"#),
        format!(r#"{usage}_bucket{{{input},le="256"}} 1"#),
        format!(r#"{usage}_bucket{{{input},le="1024"}} 2"#),
        format!(r#"{usage}_bucket{{{input},le="67108864"}} 2"#),
        format!("{usage}_sum{{{input}}} 310"),
        format!("{usage}_count{{{input}}} 2"),
        format!(r#"{usage}_sum{{{LABELS},gen_ai_token_type="output"}} 50"#),
        // First tokens and decode time.
        format!(r#"{ttft}_bucket{{{LABELS},le="0.001"}} 0"#),
        format!(r#"{ttft}_bucket{{{LABELS},le="0.005"}} 1"#),
        format!(r#"{ttft}_bucket{{{LABELS},le="0.25"}} 1"#),
        format!(r#"{ttft}_bucket{{{LABELS},le="0.5"}} 2"#),
        format!(r#"{ttft}_bucket{{{LABELS},le="10"}} 2"#),
        format!("{ttft}_sum{{{LABELS}}} 0.302"),
        format!("{ttft}_count{{{LABELS}}} 2"),
        format!(r#"{tpot}_bucket{{{LABELS},le="0.01"}} 0"#),
        format!(r#"{tpot}_bucket{{{LABELS},le="0.025"}} 1"#),
        format!(r#"{tpot}_bucket{{{LABELS},le="2.5"}} 1"#),
        format!("{tpot}_count{{{LABELS}}} 1"),
    ];
    let lines: Vec<&str> = text.lines().collect();
    for line in &expected {
        assert!(lines.contains(&line.as_str()), "{line} in\n{text}");
    }
    // Three series per duration family (ok, _OTHER, cancelled), two of token usage, one
    // of each of the others: every one with its whole buckets.
    for (family, series, bounds) in [
        (server, 3, 14),
        (client, 3, 14),
        (usage, 2, 14),
        (ttft, 1, 16),
        (tpot, 1, 13),
    ] {
        let count = |suffix: &str| {
            let prefix = format!("{family}{suffix}{{");
            lines.iter().filter(|l| l.starts_with(&prefix)).count()
        };
        assert_eq!(
            (count("_bucket"), count("_sum"), count("_count")),
            (series * (bounds + 1), series, series),
            "{family}"
        );
    }
    // The layer's own families and the operation families are not served.
    assert!(!text.contains("llm_requests_total"), "{text}");
    assert!(!text.contains("llm_operation"), "{text}");
    assert!(!text.contains("_total{"), "{text}");
    assert!(!text.contains("status="), "{text}");

    let all: Vec<&str> = CLIENT.iter().chain(&SERVER).copied().collect();
    otel_conformance::assert_conforms(
        &otel_conformance::fixture_path(),
        &text,
        Some(&om),
        &Expected::families(&all),
    );
    promtool::assert_clean(&text);
    if let Some(parsed) = openmetrics::parse(&om) {
        for family in &all {
            assert_eq!(parsed["types"][*family], "histogram", "{family}");
        }
    }
    // OpenMetrics: the same families, no UNIT line (the writer writes none; the unit is the
    // name's suffix), the same samples.
    assert!(!om.contains("# UNIT"), "{om}");
    for line in &expected {
        assert!(om.lines().any(|l| l == line), "{line} in\n{om}");
    }
}

#[test]
fn each_role_serves_its_own_families_and_labels_stay() {
    for (roles, served, absent) in [
        (&[OtelRole::Server][..], &SERVER[..], "gen_ai_client_"),
        (&[OtelRole::Client], &CLIENT[..], "gen_ai_server_"),
    ] {
        let (recorder, handle) = built(
            ExporterBuilder::new()
                .with_naming([Naming::Otel])
                .with_otel_roles(roles.iter().copied())
                .with_global_label("service", "chat"),
        );
        // Before any request: every family of the role, with no series.
        let fresh = handle.render();
        for family in served {
            assert!(
                fresh.contains(&format!("# TYPE {family} histogram\n")),
                "{family} in {fresh}"
            );
        }
        assert!(!fresh.contains(absent), "{roles:?}: {fresh}");
        record(&recorder, &[("tenant", "t")]);
        let text = handle.render();
        let (_, om) = handle.render_negotiated(Some(OPENMETRICS));
        assert!(!text.contains(absent), "{roles:?}: {text}");
        let expected = Expected {
            extra_labels: &["service", "tenant"],
            ..Expected::families(served)
        };
        otel_conformance::assert_conforms(
            &otel_conformance::fixture_path(),
            &text,
            Some(&om),
            &expected,
        );
        promtool::assert_clean(&text);
        // Global labels first, the extra label after the model, as on the layer's series.
        let labels = r#"service="chat",gen_ai_request_model="m",tenant="t",gen_ai_operation_name="chat",gen_ai_provider_name="openai""#;
        let line = match roles[0] {
            OtelRole::Server => {
                format!("gen_ai_server_time_to_first_token_seconds_count{{{labels}}} 2")
            }
            _ => format!(
                r#"gen_ai_client_token_usage_count{{{labels},gen_ai_token_type="input"}} 2"#
            ),
        };
        assert!(text.lines().any(|l| l == line), "{line} in {text}");
    }
}

/// The body without the `gen_ai_*` families and what moves by itself (process metrics).
fn without_otel(body: &str) -> String {
    let mut kept = String::new();
    let mut skip = false;
    for line in body.lines() {
        if let Some(rest) = line
            .strip_prefix("# HELP ")
            .or_else(|| line.strip_prefix("# TYPE "))
        {
            skip = rest.starts_with("gen_ai_") || rest.starts_with("process_");
        }
        if !skip {
            kept.push_str(line);
            kept.push('\n');
        }
    }
    kept
}

#[test]
fn with_otel_beside_it_the_llm_output_is_that_of_llm_alone() {
    // Two bodies compared byte for byte: hold the filter gauge's level.
    let _level = hold_max_level();
    let (alone, alone_handle) = built(ExporterBuilder::new().with_global_label("service", "chat"));
    let (both, both_handle) = built(
        ExporterBuilder::new()
            .with_naming([Naming::Llm, Naming::Otel])
            .with_global_label("service", "chat"),
    );
    for recorder in [&alone, &both] {
        record(recorder, &[]);
    }
    let alone = alone_handle.render();
    let both = both_handle.render();
    assert!(!alone.contains("gen_ai_"), "{alone}");
    assert!(!alone.contains("llm_operation"), "{alone}");
    assert!(
        both.contains("# TYPE gen_ai_client_token_usage histogram\n"),
        "{both}"
    );
    assert_eq!(without_otel(&both), without_otel(&alone));
    // The numbers agree: the llm TTFT and the server's TTFT count the same requests, the
    // successful durations the requests counted ok.
    let (_, om_both) = both_handle.render_negotiated(Some(OPENMETRICS));
    let (_, om_alone) = alone_handle.render_negotiated(Some(OPENMETRICS));
    assert_eq!(without_otel(&om_both), without_otel(&om_alone));
    assert!(both.contains("llm_ttft_seconds_count{service=\"chat\",model=\"m\"} 2\n"));
    assert!(both.contains(&format!(
        "gen_ai_server_time_to_first_token_seconds_count{{service=\"chat\",{LABELS}}} 2\n"
    )));
    assert!(both.contains("llm_requests_total{service=\"chat\",model=\"m\",status=\"ok\"} 2\n"));
    assert!(both.contains(&format!(
        "gen_ai_server_request_duration_seconds_count{{service=\"chat\",{LABELS}}} 2\n"
    )));
}

#[test]
fn with_every_profile_the_numbers_agree() {
    let (recorder, handle) =
        built(ExporterBuilder::new().with_naming([Naming::Llm, Naming::Vllm, Naming::Otel]));
    record(&recorder, &[]);
    let text = handle.render();
    for line in [
        r#"llm_requests_total{model="m",status="ok"} 2"#.to_owned(),
        r#"vllm:request_success_total{model_name="m",finished_reason="error"} 1"#.to_owned(),
        r#"vllm:request_success_total{model_name="m",finished_reason="abort"} 1"#.to_owned(),
        format!("gen_ai_server_request_duration_seconds_count{{{LABELS}}} 2"),
        format!(
            r#"gen_ai_server_request_duration_seconds_count{{{LABELS},error_type="_OTHER"}} 1"#
        ),
        format!(
            r#"gen_ai_client_operation_duration_seconds_count{{{LABELS},error_type="cancelled"}} 1"#
        ),
        r#"llm_ttft_seconds_count{model="m"} 2"#.to_owned(),
        r#"vllm:time_to_first_token_seconds_count{model_name="m"} 2"#.to_owned(),
        format!("gen_ai_server_time_to_first_token_seconds_count{{{LABELS}}} 2"),
        r#"llm_ttft_seconds_bucket{model="m",le="0.005"} 1"#.to_owned(),
        r#"vllm:time_to_first_token_seconds_bucket{model_name="m",le="0.005"} 1"#.to_owned(),
        format!(r#"gen_ai_server_time_to_first_token_seconds_bucket{{{LABELS},le="0.005"}} 1"#),
    ] {
        assert!(text.lines().any(|l| l == line), "{line} in {text}");
    }
    let all: Vec<&str> = CLIENT.iter().chain(&SERVER).copied().collect();
    otel_conformance::assert_conforms(
        &otel_conformance::fixture_path(),
        &text,
        None,
        &Expected::families(&all),
    );
}
