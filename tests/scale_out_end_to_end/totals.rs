//! What the clients counted, and the check that a store's counters equal it exactly.

use std::collections::BTreeMap;
use std::time::Duration;

use llm_span_testkit::process::{wait_for, DemoServer};
use llm_span_testkit::prometheus::Api;
use llm_span_testkit::{http, prom};
use serde_json::Value;

use crate::replicas::PASSWORD;

/// What the load generators saw, per model: requests, input tokens, output tokens; and
/// how many streams they walked away from.
#[derive(Debug, Default)]
pub(crate) struct Totals(BTreeMap<String, [u64; 3]>, pub(crate) u64);

/// The queries whose per-model results must equal [`Totals`], in its order.
const COUNTER_QUERIES: [&str; 3] = [
    "sum by (model) (llm_requests_total)",
    r#"sum by (model) (llm_tokens_total{type="input"})"#,
    r#"sum by (model) (llm_tokens_total{type="output"})"#,
];

impl Totals {
    pub(crate) fn add(&mut self, summary: &Value) {
        for (model, s) in summary["models"].as_object().expect("models") {
            assert_eq!(s["failed"], 0, "{model}: {s}");
            self.1 += s["aborted"].as_u64().expect("aborted");
            let entry = self.0.entry(model.clone()).or_default();
            for (i, field) in ["requests", "input_tokens", "output_tokens"]
                .iter()
                .enumerate()
            {
                entry[i] += s[field]
                    .as_u64()
                    .unwrap_or_else(|| panic!("{field} in {s}"));
            }
        }
    }

    /// Whether `api`'s counters equal these totals exactly; else what differs.
    fn compare(&self, api: &Api) -> Result<(), String> {
        for (i, query) in COUNTER_QUERIES.iter().enumerate() {
            let got = api.values(query, &["model"]);
            let want: BTreeMap<Vec<String>, f64> = self
                .0
                .iter()
                .map(|(model, t)| (vec![model.clone()], t[i] as f64))
                .collect();
            if got != want {
                return Err(format!("{} {query}: {got:?}, clients: {want:?}", api.name));
            }
        }
        Ok(())
    }

    pub(crate) fn wait_until_equal(&self, api: &Api, timeout: Duration, replicas: &[DemoServer]) {
        if wait_for(timeout, || self.compare(api).ok()).is_none() {
            panic!(
                "{}; the replicas' own /metrics: {:?}",
                self.compare(api).err().unwrap_or_default(),
                direct_totals(replicas)
            );
        }
    }
}

/// [`COUNTER_QUERIES`] computed from the replicas' own /metrics, for failure messages.
fn direct_totals(replicas: &[DemoServer]) -> BTreeMap<String, [f64; 3]> {
    let mut totals: BTreeMap<String, [f64; 3]> = BTreeMap::new();
    for server in replicas {
        let authorization = http::basic_auth("prometheus", PASSWORD);
        let response = http::get_with(
            server.metrics,
            "/metrics",
            &[("Authorization", &authorization)],
        );
        assert_eq!(response.status, 200, "{}", response.body);
        let scrape = prom::Scrape::parse_or_panic(&response.body);
        for sample in &scrape.samples {
            let model = sample.labels.get("model").cloned().unwrap_or_default();
            let index = match (
                sample.name.as_str(),
                sample.labels.get("type").map(String::as_str),
            ) {
                ("llm_requests_total", _) => 0,
                ("llm_tokens_total", Some("input")) => 1,
                ("llm_tokens_total", Some("output")) => 2,
                _ => continue,
            };
            totals.entry(model).or_default()[index] += sample.value;
        }
    }
    totals
}
