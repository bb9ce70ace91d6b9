//! Bad configurations are typed errors that name the problem.

use llm_span_layer::{ConfigError, LlmSpanLayer};

#[test]
fn every_config_error_names_its_problem() {
    let cases = [
        (
            LlmSpanLayer::builder().with_max_models(0).build(),
            "max_models must be at least 1",
        ),
        (
            LlmSpanLayer::builder().with_max_series(0).build(),
            "max_series must be at least 1",
        ),
        (
            LlmSpanLayer::builder().with_max_label_values(0).build(),
            "max_label_values must be at least 1",
        ),
        (
            LlmSpanLayer::builder()
                .with_label("a")
                .with_label("b")
                .with_label("c")
                .with_label("d")
                .with_label("e")
                .build(),
            "at most 4 extra labels",
        ),
        (
            LlmSpanLayer::builder().with_label("bad-name").build(),
            "\"bad-name\" is not a valid Prometheus label name",
        ),
        (
            LlmSpanLayer::builder().with_label("__x").build(),
            "\"__x\" is not a valid",
        ),
        (
            LlmSpanLayer::builder()
                .with_label_as("tenant", "status")
                .build(),
            "\"status\" is used by the layer",
        ),
        (
            LlmSpanLayer::builder().with_label("tokens_in").build(),
            "field \"tokens_in\" already has a meaning",
        ),
        (
            LlmSpanLayer::builder()
                .with_label("tenant")
                .with_label("tenant")
                .build(),
            "\"tenant\" is given twice",
        ),
        (
            LlmSpanLayer::builder()
                .with_label_as("a", "x")
                .with_label_as("b", "x")
                .build(),
            "\"x\" is given twice",
        ),
    ];
    for (result, expected) in cases {
        let err: ConfigError = result.expect_err(expected);
        assert!(
            err.to_string().contains(expected),
            "{err} should contain {expected}"
        );
    }
}

#[test]
fn a_valid_configuration_builds() {
    let layer = LlmSpanLayer::builder()
        .with_label("tenant")
        .with_label_as("route", "endpoint")
        .with_max_models(5)
        .with_queue_span_name("wait")
        .build()
        .expect("valid");
    let debug = format!("{layer:?}");
    assert!(debug.contains("LlmSpanLayer"), "{debug}");
}
