//! The `otel` naming profile: the OpenTelemetry GenAI metric conventions each of the
//! layer's operation series appears in, under the OpenTelemetry to Prometheus name
//! translation, with the conventions' advisory bucket boundaries.
//!
//! Source: open-telemetry/semantic-conventions v1.41.0, `model/gen-ai/metrics.yaml` and
//! `docs/gen-ai/gen-ai-metrics.md` (the last release with the GenAI conventions in-tree),
//! and the OpenTelemetry specification's `compatibility/prometheus_and_openmetrics.md`;
//! the workspace's `tests/fixtures/otel-genai-semconv-1.41.0.json` holds what was read, and
//! the conformance test checks the output against it.

use llm_span_layer::catalog;

use crate::naming::{Namings, OtelRole};

/// `gen_ai.client.token.usage`: powers of 4 from 1 to 4^13.
pub(crate) const TOKEN_USAGE_BUCKETS: &[f64] = &[
    1.0,
    4.0,
    16.0,
    64.0,
    256.0,
    1024.0,
    4096.0,
    16384.0,
    65536.0,
    262_144.0,
    1_048_576.0,
    4_194_304.0,
    16_777_216.0,
    67_108_864.0,
];
/// `gen_ai.client.operation.duration` and `gen_ai.server.request.duration`: 0.01 s
/// doubling to 81.92 s.
pub(crate) const DURATION_BUCKETS: &[f64] = &[
    0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92,
];
/// `gen_ai.server.time_to_first_token`.
pub(crate) const TTFT_BUCKETS: &[f64] = &[
    0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
];
/// `gen_ai.server.time_per_output_token`.
pub(crate) const TIME_PER_OUTPUT_TOKEN_BUCKETS: &[f64] = &[
    0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5,
];

/// The `error.type` of a request whose span closed before it completed: a custom value of
/// low cardinality, as the conventions allow.
pub(crate) const CANCELLED_ERROR_TYPE: &str = "cancelled";
/// The conventions' fallback `error.type`: the layer knows that a request failed, not how.
pub(crate) const OTHER_ERROR_TYPE: &str = "_OTHER";

/// One of the conventions' metrics, as Prometheus names it, and the operation family
/// (a histogram of [`catalog::OPERATION_METRICS`]) it comes from.
#[derive(Debug)]
pub(crate) struct OtelFamily {
    /// The Prometheus name (the unit `s` as `_seconds`, `{token}` dropped).
    pub(crate) name: &'static str,
    pub(crate) role: OtelRole,
    /// The conventions' description.
    pub(crate) help: &'static str,
    pub(crate) source: &'static str,
    /// The conventions' advisory boundaries.
    pub(crate) buckets: &'static [f64],
}

const fn family(
    name: &'static str,
    role: OtelRole,
    help: &'static str,
    source: &'static str,
    buckets: &'static [f64],
) -> OtelFamily {
    OtelFamily {
        name,
        role,
        help,
        source,
        buckets,
    }
}

/// Every family of the profile (all histograms), client first, with the conventions'
/// descriptions.
pub(crate) const FAMILIES: &[OtelFamily] = &[
    family(
        "gen_ai_client_token_usage",
        OtelRole::Client,
        "Number of input and output tokens used.",
        catalog::OPERATION_TOKENS,
        TOKEN_USAGE_BUCKETS,
    ),
    family(
        "gen_ai_client_operation_duration_seconds",
        OtelRole::Client,
        "GenAI operation duration.",
        catalog::OPERATION_DURATION_SECONDS,
        DURATION_BUCKETS,
    ),
    family(
        "gen_ai_server_request_duration_seconds",
        OtelRole::Server,
        "Generative AI server request duration such as time-to-last byte or last output token.",
        catalog::OPERATION_DURATION_SECONDS,
        DURATION_BUCKETS,
    ),
    family(
        "gen_ai_server_time_to_first_token_seconds",
        OtelRole::Server,
        "Time to generate first token for successful responses.",
        catalog::OPERATION_TTFT_SECONDS,
        TTFT_BUCKETS,
    ),
    family(
        "gen_ai_server_time_per_output_token_seconds",
        OtelRole::Server,
        "Time per output token generated after the first token for successful responses.",
        catalog::OPERATION_TIME_PER_OUTPUT_TOKEN_SECONDS,
        TIME_PER_OUTPUT_TOKEN_BUCKETS,
    ),
];

/// The conventions' boundaries for an operation family (the same for every family it
/// feeds), if the profile serves it.
pub(crate) fn buckets(catalog_name: &str) -> Option<&'static [f64]> {
    FAMILIES
        .iter()
        .find(|f| f.source == catalog_name)
        .map(|f| f.buckets)
}

/// The `error_type` of a request that ended with `status`: none when it completed.
fn error_type(status: &str) -> Option<&str> {
    if status == catalog::Status::Ok.as_str() {
        None
    } else if status == catalog::Status::Error.as_str() {
        Some(OTHER_ERROR_TYPE)
    } else if status == catalog::Status::Cancelled.as_str() {
        Some(CANCELLED_ERROR_TYPE)
    } else {
        // Not one of the layer's; kept as it is, so that no two series become one.
        Some(status)
    }
}

/// The families of the roles `namings` serves that one series of the layer appears in,
/// each with its label pairs: `model` becomes `gen_ai_request_model`, `type` becomes
/// `gen_ai_token_type`, `status` becomes `error_type` (none for `ok`), every other label
/// stays as it is. `pairs` are the series' label pairs as written (names already valid).
pub(crate) fn targets(
    catalog_name: &str,
    pairs: &[(String, &str)],
    namings: Namings,
) -> Vec<(&'static str, Vec<(String, String)>)> {
    let families: Vec<&'static str> = FAMILIES
        .iter()
        .filter(|f| f.source == catalog_name && namings.serves_otel(f.role))
        .map(|f| f.name)
        .collect();
    if families.is_empty() {
        return Vec::new();
    }
    let labels: Vec<(String, String)> = pairs
        .iter()
        .filter_map(|(name, value)| {
            let (name, value) = match name.as_str() {
                "model" => ("gen_ai_request_model", *value),
                "type" => ("gen_ai_token_type", *value),
                "status" => ("error_type", error_type(value)?),
                other => (other, *value),
            };
            Some((name.to_owned(), value.to_owned()))
        })
        .collect();
    families
        .into_iter()
        .map(|family| (family, labels.clone()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exposition::Float;
    use crate::naming::Naming;

    fn pairs<'a>(list: &[(&str, &'a str)]) -> Vec<(String, &'a str)> {
        list.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect()
    }

    fn owned(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn otel() -> Namings {
        Namings::new(&[Naming::Otel]).expect("otel")
    }

    const OPERATION: [(&str, &str); 2] = [
        (catalog::OPERATION_LABEL, "chat"),
        (catalog::PROVIDER_LABEL, "openai"),
    ];

    #[test]
    fn durations_land_in_both_roles_with_error_type_by_status() {
        let duration = |status| {
            let mut list = vec![("model", "m"), ("tenant", "t")];
            list.extend(OPERATION);
            list.push(("status", status));
            targets(catalog::OPERATION_DURATION_SECONDS, &pairs(&list), otel())
        };
        let labels = |error_type: Option<&str>| {
            let mut list = vec![
                ("gen_ai_request_model", "m"),
                ("tenant", "t"),
                (catalog::OPERATION_LABEL, "chat"),
                (catalog::PROVIDER_LABEL, "openai"),
            ];
            list.extend(error_type.map(|e| ("error_type", e)));
            owned(&list)
        };
        for (status, error_type) in [
            ("ok", None),
            ("error", Some("_OTHER")),
            ("cancelled", Some("cancelled")),
            ("other", Some("other")),
        ] {
            assert_eq!(
                duration(status),
                [
                    (
                        "gen_ai_client_operation_duration_seconds",
                        labels(error_type)
                    ),
                    ("gen_ai_server_request_duration_seconds", labels(error_type)),
                ],
                "{status}"
            );
        }
    }

    #[test]
    fn tokens_are_client_and_first_token_and_decode_times_server() {
        let mut list = vec![("model", "m")];
        list.extend(OPERATION);
        let renamed = owned(&[
            ("gen_ai_request_model", "m"),
            (catalog::OPERATION_LABEL, "chat"),
            (catalog::PROVIDER_LABEL, "openai"),
        ]);
        let mut tokens = list.clone();
        tokens.push(("type", "output"));
        let mut token_labels = renamed.clone();
        token_labels.push(("gen_ai_token_type".to_owned(), "output".to_owned()));
        assert_eq!(
            targets(catalog::OPERATION_TOKENS, &pairs(&tokens), otel()),
            [("gen_ai_client_token_usage", token_labels)]
        );
        assert_eq!(
            targets(catalog::OPERATION_TTFT_SECONDS, &pairs(&list), otel()),
            [("gen_ai_server_time_to_first_token_seconds", renamed.clone())]
        );
        assert_eq!(
            targets(
                catalog::OPERATION_TIME_PER_OUTPUT_TOKEN_SECONDS,
                &pairs(&list),
                otel()
            ),
            [("gen_ai_server_time_per_output_token_seconds", renamed)]
        );
        // The layer's other families, and the application's, are in none.
        for name in [catalog::TTFT_SECONDS, catalog::TOKENS_TOTAL, "app_seconds"] {
            assert_eq!(targets(name, &pairs(&list), otel()), [], "{name}");
        }
    }

    #[test]
    fn only_the_families_of_the_roles_served() {
        let list = pairs(&[("model", "m"), ("status", "ok")]);
        let with = |roles: &[OtelRole]| -> Vec<&str> {
            let namings = otel().with_otel_roles(roles).expect("roles");
            targets(catalog::OPERATION_DURATION_SECONDS, &list, namings)
                .into_iter()
                .map(|(family, _)| family)
                .collect()
        };
        assert_eq!(
            with(&[OtelRole::Server]),
            ["gen_ai_server_request_duration_seconds"]
        );
        assert_eq!(
            with(&[OtelRole::Client]),
            ["gen_ai_client_operation_duration_seconds"]
        );
        let tokens = pairs(&[("model", "m"), ("type", "input")]);
        let server = otel().with_otel_roles(&[OtelRole::Server]).expect("server");
        assert_eq!(targets(catalog::OPERATION_TOKENS, &tokens, server), []);
        let client = otel().with_otel_roles(&[OtelRole::Client]).expect("client");
        let ttft = pairs(&[("model", "m")]);
        assert_eq!(targets(catalog::OPERATION_TTFT_SECONDS, &ttft, client), []);
        // Without the profile, none.
        assert_eq!(
            targets(catalog::OPERATION_TOKENS, &tokens, Namings::default()),
            []
        );
    }

    #[test]
    fn the_manual_lists_every_family_of_the_profile() {
        let manual = include_str!("../docs/naming.md");
        // The table of families: a family, its type, unit, source, labels and buckets.
        let rows: Vec<&str> = manual
            .lines()
            .filter(|line| line.starts_with("| `gen_ai_") && line.contains(" | histogram | "))
            .collect();
        let listed: Vec<&str> = rows
            .iter()
            .filter_map(|row| row.strip_prefix("| `")?.split('`').next())
            .collect();
        let served: Vec<&str> = FAMILIES.iter().map(|f| f.name).collect();
        assert_eq!(listed, served);
        for (row, family) in rows.iter().zip(FAMILIES) {
            let bounds: Vec<String> = family
                .buckets
                .iter()
                .map(|b| Float(*b).to_string())
                .collect();
            assert!(
                row.ends_with(&format!(" | {} |", bounds.join(" "))),
                "{row}"
            );
            assert!(row.contains(&format!("`{}`", family.source)), "{row}");
            let unit = if family.name.ends_with("_seconds") {
                " | seconds | "
            } else {
                " | none ("
            };
            assert!(row.contains(unit), "{row}");
        }
        assert!(manual.contains("**v1.41.0**"));
        for status in [
            "| `ok` | absent",
            "| `error` | `_OTHER`",
            "| `cancelled` | `cancelled`",
        ] {
            assert!(manual.contains(status), "{status}");
        }
    }

    #[test]
    fn histograms_of_the_profile_have_the_advisory_boundaries() {
        assert_eq!(
            buckets(catalog::OPERATION_TOKENS),
            Some(TOKEN_USAGE_BUCKETS)
        );
        assert_eq!(
            buckets(catalog::OPERATION_DURATION_SECONDS),
            Some(DURATION_BUCKETS)
        );
        assert_eq!(buckets(catalog::OPERATION_TTFT_SECONDS), Some(TTFT_BUCKETS));
        assert_eq!(
            buckets(catalog::OPERATION_TIME_PER_OUTPUT_TOKEN_SECONDS),
            Some(TIME_PER_OUTPUT_TOKEN_BUCKETS)
        );
        assert_eq!(buckets(catalog::TTFT_SECONDS), None);
        // Every operation family has them, the same for each family it feeds.
        for def in catalog::OPERATION_METRICS {
            let own = buckets(def.name).expect("boundaries");
            for family in FAMILIES.iter().filter(|f| f.source == def.name) {
                assert_eq!(family.buckets, own, "{}", family.name);
            }
        }
        // Powers of 4; doubling from 0.01 (within rounding of the decimal text).
        let mut bound = 1.0;
        for b in TOKEN_USAGE_BUCKETS {
            assert_eq!(*b, bound);
            bound *= 4.0;
        }
        let mut bound = 0.01_f64;
        for b in DURATION_BUCKETS {
            assert!((b - bound).abs() < 1e-12, "{b}");
            bound *= 2.0;
        }
        // Written with the exporter's float writer.
        let les: Vec<String> = [1.0, 0.01, 67_108_864.0, 81.92, 0.001]
            .iter()
            .map(|b| Float(*b).to_string())
            .collect();
        assert_eq!(les, ["1", "0.01", "67108864", "81.92", "0.001"]);
    }
}
