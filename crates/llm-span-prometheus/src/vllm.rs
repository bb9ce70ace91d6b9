//! The `vllm` naming profile: which of vLLM's Prometheus families each of the layer's series
//! appears in, under which labels, and vLLM's bucket boundaries.
//!
//! Sources: vllm-project/vllm, `vllm/v1/metrics/loggers.py` and `vllm/v1/metrics/buckets.py`
//! (the families, their HELP text and the boundaries, unchanged from v0.10 to the newest
//! release read), and `examples/observability/prometheus_grafana/grafana.json`.

use llm_span_layer::catalog;

use crate::exposition::Float;

/// vLLM's time-to-first-token boundaries.
pub(crate) const TTFT_BUCKETS: &[f64] = &[
    0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
    20.0, 40.0, 80.0, 160.0, 640.0, 2560.0,
];
/// vLLM's inter-token latency boundaries (also its time per output token per request).
pub(crate) const ITL_BUCKETS: &[f64] = &[
    0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0,
    40.0, 80.0,
];
/// vLLM's request latency boundaries (end-to-end, queue time).
pub(crate) const REQUEST_LATENCY_BUCKETS: &[f64] = &[
    0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0, 120.0, 240.0,
    480.0, 960.0, 1920.0, 7680.0,
];

/// Where a family's series come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Source {
    /// A family of the catalog, every series.
    Family(&'static str),
    /// The series of a catalog family with one label at one value (the label is dropped).
    Selected {
        family: &'static str,
        label: &'static str,
        value: &'static str,
    },
    /// `vllm:request_success_total`: finish reasons as they are, and the requests that
    /// ended `cancelled` (`abort`) or `error` (`error`).
    FinishedRequests,
    /// `vllm:num_requests_running`: requests open (`llm_active_requests`) and not waiting
    /// in a queue (`llm_queue_depth` of the same labels), as vLLM counts requests in
    /// execution batches apart from waiting ones.
    Running,
}

/// One of vLLM's families that the layer's series give.
#[derive(Debug)]
pub(crate) struct VllmFamily {
    pub(crate) name: &'static str,
    pub(crate) kind: catalog::MetricKind,
    pub(crate) help: &'static str,
    pub(crate) source: Source,
    /// A histogram's boundaries.
    pub(crate) buckets: &'static [f64],
}

const fn family(
    name: &'static str,
    kind: catalog::MetricKind,
    help: &'static str,
    source: Source,
) -> VllmFamily {
    VllmFamily {
        name,
        kind,
        help,
        source,
        buckets: &[],
    }
}

const fn histogram(
    name: &'static str,
    help: &'static str,
    from: &'static str,
    buckets: &'static [f64],
) -> VllmFamily {
    VllmFamily {
        name,
        kind: catalog::MetricKind::Histogram,
        help,
        source: Source::Family(from),
        buckets,
    }
}

const fn selected(family: &'static str, label: &'static str, value: &'static str) -> Source {
    Source::Selected {
        family,
        label,
        value,
    }
}

use catalog::MetricKind::{Counter, Gauge};

/// Every vLLM family the profile serves, with vLLM's own HELP text.
pub(crate) const FAMILIES: &[VllmFamily] = &[
    family(
        "vllm:num_requests_running",
        Gauge,
        "Number of requests in model execution batches.",
        Source::Running,
    ),
    family(
        "vllm:num_requests_waiting",
        Gauge,
        "Number of requests waiting to be processed.",
        Source::Family(catalog::QUEUE_DEPTH),
    ),
    family(
        "vllm:kv_cache_usage_perc",
        Gauge,
        "KV-cache usage. 1 means 100 percent usage.",
        Source::Family(catalog::KV_CACHE_USAGE_RATIO),
    ),
    family(
        "vllm:prompt_tokens_total",
        Counter,
        "Number of prefill tokens processed.",
        selected(catalog::TOKENS_TOTAL, "type", "input"),
    ),
    family(
        "vllm:generation_tokens_total",
        Counter,
        "Number of generation tokens processed.",
        selected(catalog::TOKENS_TOTAL, "type", "output"),
    ),
    family(
        "vllm:request_success_total",
        Counter,
        "Count of successfully processed requests.",
        Source::FinishedRequests,
    ),
    family(
        "vllm:prefix_cache_queries_total",
        Counter,
        "Prefix cache queries, in terms of number of queried tokens.",
        selected(catalog::TOKENS_TOTAL, "type", "input"),
    ),
    family(
        "vllm:prefix_cache_hits_total",
        Counter,
        "Prefix cache hits, in terms of number of cached tokens.",
        Source::Family(catalog::CACHED_INPUT_TOKENS_TOTAL),
    ),
    histogram(
        "vllm:time_to_first_token_seconds",
        "Histogram of time to first token in seconds.",
        catalog::TTFT_SECONDS,
        TTFT_BUCKETS,
    ),
    histogram(
        "vllm:request_time_per_output_token_seconds",
        "Histogram of time_per_output_token_seconds per request.",
        catalog::TIME_PER_OUTPUT_TOKEN_SECONDS,
        ITL_BUCKETS,
    ),
    histogram(
        "vllm:e2e_request_latency_seconds",
        "Histogram of e2e request latency in seconds.",
        catalog::E2E_LATENCY_SECONDS,
        REQUEST_LATENCY_BUCKETS,
    ),
    histogram(
        "vllm:request_queue_time_seconds",
        "Histogram of time spent in WAITING phase for request.",
        catalog::QUEUE_WAIT_SECONDS,
        REQUEST_LATENCY_BUCKETS,
    ),
];

/// vLLM's boundaries for a histogram of the catalog, if the profile serves it.
pub(crate) fn buckets(catalog_name: &str) -> Option<&'static [f64]> {
    FAMILIES
        .iter()
        .find(|f| matches!(f.source, Source::Family(name) if name == catalog_name))
        .filter(|f| !f.buckets.is_empty())
        .map(|f| f.buckets)
}

/// The families one series of the layer appears in, each with its label pairs: `model`
/// becomes `model_name`, a selecting label is dropped, a finish reason or status becomes
/// `finished_reason`. `pairs` are the series' label pairs as written (names already valid).
pub(crate) fn targets(
    catalog_name: &str,
    pairs: &[(String, &str)],
) -> Vec<(&'static str, Vec<(String, String)>)> {
    let renamed = |skip: Option<&str>| -> Vec<(String, String)> {
        pairs
            .iter()
            .filter(|(name, _)| Some(name.as_str()) != skip)
            .map(|(name, value)| {
                let name = if name == "model" { "model_name" } else { name };
                (name.to_owned(), (*value).to_owned())
            })
            .collect()
    };
    let value_of = |label: &str| {
        pairs
            .iter()
            .find(|(name, _)| name == label)
            .map(|(_, value)| *value)
    };
    let mut targets = Vec::new();
    for family in FAMILIES {
        match family.source {
            Source::Family(name) if name == catalog_name => {
                targets.push((family.name, renamed(None)));
            }
            Source::Selected {
                family: name,
                label,
                value,
            } if name == catalog_name && value_of(label) == Some(value) => {
                targets.push((family.name, renamed(Some(label))));
            }
            Source::Running if catalog_name == catalog::ACTIVE_REQUESTS => {
                targets.push((family.name, renamed(None)));
            }
            Source::FinishedRequests => {
                let reason = match catalog_name {
                    catalog::FINISH_REASONS_TOTAL => value_of("reason"),
                    catalog::REQUESTS_TOTAL => match value_of("status") {
                        Some("cancelled") => Some("abort"),
                        Some("error") => Some("error"),
                        _ => None,
                    },
                    _ => None,
                };
                if let Some(reason) = reason {
                    let mut labels = renamed(Some(if catalog_name == catalog::REQUESTS_TOTAL {
                        "status"
                    } else {
                        "reason"
                    }));
                    labels.push(("finished_reason".to_owned(), reason.to_owned()));
                    targets.push((family.name, labels));
                }
            }
            _ => {}
        }
    }
    targets
}

/// A bucket bound as vLLM's client writes it: Python's `repr` of a float (`1.0`, `0.25`).
pub(crate) fn le(bound: f64) -> String {
    let text = Float(bound).to_string();
    if bound.is_finite() && bound.fract() == 0.0 && !text.contains('e') {
        format!("{text}.0")
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs<'a>(list: &[(&str, &'a str)]) -> Vec<(String, &'a str)> {
        list.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect()
    }

    fn owned(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn series_land_in_vllm_families_under_model_name() {
        let input = pairs(&[("service", "chat"), ("model", "m"), ("type", "input")]);
        assert_eq!(
            targets(catalog::TOKENS_TOTAL, &input),
            [
                (
                    "vllm:prompt_tokens_total",
                    owned(&[("service", "chat"), ("model_name", "m")])
                ),
                (
                    "vllm:prefix_cache_queries_total",
                    owned(&[("service", "chat"), ("model_name", "m")])
                ),
            ]
        );
        let output = pairs(&[("model", "m"), ("type", "output")]);
        assert_eq!(
            targets(catalog::TOKENS_TOTAL, &output),
            [(
                "vllm:generation_tokens_total",
                owned(&[("model_name", "m")])
            )]
        );
        let active = pairs(&[("model", "m"), ("tenant", "t")]);
        assert_eq!(
            targets(catalog::ACTIVE_REQUESTS, &active),
            [(
                "vllm:num_requests_running",
                owned(&[("model_name", "m"), ("tenant", "t")])
            )]
        );
        assert_eq!(
            targets(catalog::TTFT_SECONDS, &pairs(&[("model", "m")])),
            [(
                "vllm:time_to_first_token_seconds",
                owned(&[("model_name", "m")])
            )]
        );
        assert_eq!(
            targets(catalog::TOKENS_PER_SECOND, &pairs(&[("model", "m")])),
            []
        );
        assert_eq!(targets("app_total", &pairs(&[("model", "m")])), []);
    }

    #[test]
    fn finished_requests_come_from_finish_reasons_aborts_and_errors() {
        let reason = pairs(&[("model", "m"), ("reason", "length")]);
        assert_eq!(
            targets(catalog::FINISH_REASONS_TOTAL, &reason),
            [(
                "vllm:request_success_total",
                owned(&[("model_name", "m"), ("finished_reason", "length")])
            )]
        );
        let status = |status| {
            let pairs = pairs(&[("model", "m"), ("status", status)]);
            targets(catalog::REQUESTS_TOTAL, &pairs)
        };
        assert_eq!(
            status("cancelled"),
            [(
                "vllm:request_success_total",
                owned(&[("model_name", "m"), ("finished_reason", "abort")])
            )]
        );
        assert_eq!(
            status("error"),
            [(
                "vllm:request_success_total",
                owned(&[("model_name", "m"), ("finished_reason", "error")])
            )]
        );
        assert_eq!(status("ok"), []);
    }

    #[test]
    fn the_manual_lists_every_family_of_the_profile() {
        let manual = include_str!("../docs/naming.md");
        // The mapping table: a family, its type, its source, its labels.
        let listed: Vec<&str> = manual
            .lines()
            .filter(|line| {
                [" | gauge | ", " | counter | ", " | histogram | "]
                    .iter()
                    .any(|t| line.contains(t))
            })
            .filter_map(|line| line.strip_prefix("| `vllm:"))
            .filter_map(|rest| rest.split('`').next())
            .collect();
        let served: Vec<&str> = FAMILIES
            .iter()
            .filter_map(|f| f.name.strip_prefix("vllm:"))
            .collect();
        assert_eq!(listed, served);
        for family in FAMILIES.iter().filter(|f| !f.buckets.is_empty()) {
            let bounds: Vec<String> = family.buckets.iter().map(|b| le(*b)).collect();
            let row = manual
                .lines()
                .find(|line| line.contains(family.name) && line.contains(" 0."))
                .unwrap_or_else(|| panic!("no bucket row for {}", family.name));
            assert!(row.contains(&bounds.join(" ")), "{row}");
        }
    }

    #[test]
    fn histograms_of_the_profile_have_vllm_s_boundaries() {
        assert_eq!(buckets(catalog::TTFT_SECONDS), Some(TTFT_BUCKETS));
        assert_eq!(
            buckets(catalog::E2E_LATENCY_SECONDS),
            Some(REQUEST_LATENCY_BUCKETS)
        );
        assert_eq!(
            buckets(catalog::QUEUE_WAIT_SECONDS),
            Some(REQUEST_LATENCY_BUCKETS)
        );
        assert_eq!(
            buckets(catalog::TIME_PER_OUTPUT_TOKEN_SECONDS),
            Some(ITL_BUCKETS)
        );
        assert_eq!(buckets(catalog::TOKENS_PER_SECOND), None);
        assert_eq!(buckets(catalog::ACTIVE_REQUESTS), None);
        let les: Vec<String> = [1.0, 0.25, 2560.0, 0.001].iter().map(|b| le(*b)).collect();
        assert_eq!(les, ["1.0", "0.25", "2560.0", "0.001"]);
    }
}
