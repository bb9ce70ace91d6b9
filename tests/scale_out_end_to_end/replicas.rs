//! The demo replicas of the topology (two models, basic auth on /metrics, the admin
//! endpoint through which the test slows a model down) and the load they get; and the
//! admin endpoint is off unless asked for.

use std::path::Path;

use llm_span_testkit::http;
use llm_span_testkit::process::{DemoServer, Load};
use serde_json::Value;

/// The password of the test's replicas.
pub(crate) const PASSWORD: &str = "scale-out-test-password";

/// A demo replica with two models, basic auth on /metrics and the admin endpoint.
pub(crate) fn replica(seed: u64, prices: &Path, password_file: &Path) -> DemoServer {
    let seed = seed.to_string();
    DemoServer::start_with_env(
        &[
            "--model",
            "fast:0.05:1:8",
            "--model",
            "slow:0.05:1:8",
            "--error-rate",
            "0.02",
            "--prices",
            prices.to_str().expect("path"),
            "--seed",
            &seed,
            "--admin",
        ],
        &[
            ("LLM_METRICS_BASIC_AUTH_USER", "prometheus"),
            (
                "LLM_METRICS_BASIC_AUTH_PASSWORD_FILE",
                password_file.to_str().expect("path"),
            ),
        ],
    )
}

/// The load of this test: `requests` from 8 clients, seeded with `seed`.
///
/// A tenth of the streaming clients walk away mid-stream (`abort_share: 0.1`): the demo
/// counts a streamed token once the response body took it, so its counters equal what
/// those clients received, and the store's must too.
pub(crate) fn load(seed: u64, requests: u64) -> Load {
    Load {
        requests,
        concurrency: 8,
        seed,
        abort_share: 0.1,
    }
}

#[test]
fn admin_endpoint_is_off_by_default() {
    let put = |server: &DemoServer, path: &str, body: &str| {
        http::request(server.api, "PUT", path, &[], Some(body))
    };
    let server = DemoServer::start(&["--model", "m:0:0:1"]);
    assert_eq!(put(&server, "/admin/models/m", "{}").status, 404);
    let server = DemoServer::start(&["--model", "m:0:0:1", "--admin"]);
    let response = put(
        &server,
        "/admin/models/m",
        r#"{"prefill_ms_per_token": 30}"#,
    );
    assert_eq!(response.status, 200, "{}", response.body);
    let speed: Value = serde_json::from_str(&response.body).expect("JSON");
    assert_eq!(speed["prefill_ms_per_token"], 30.0);
    assert_eq!(speed["decode_ms_per_token"], 0.0);
    assert_eq!(put(&server, "/admin/models/nope", "{}").status, 404);
    let response = put(&server, "/admin/models/m", r#"{"decode_ms_per_token": -1}"#);
    assert_eq!(response.status, 400);
}
