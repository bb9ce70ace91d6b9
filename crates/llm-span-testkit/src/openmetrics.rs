//! OpenMetrics text checked by an independent parser: the one of the Python
//! `prometheus-client` package (`pip install prometheus-client`).

use std::io::Write;
use std::process::{Command, Stdio};

/// The parser run over stdin; prints families, types and every sample's exemplar as JSON.
const SCRIPT: &str = r#"
import json, sys
from prometheus_client.openmetrics.parser import text_string_to_metric_families
families = list(text_string_to_metric_families(sys.stdin.read()))
print(json.dumps({
    "types": {f.name: f.type for f in families},
    "samples": sum(len(f.samples) for f in families),
    "exemplars": [
        {"sample": s.name, "labels": s.labels, "exemplar": s.exemplar.labels,
         "value": s.exemplar.value, "timestamp": float(s.exemplar.timestamp)}
        for f in families for s in f.samples if s.exemplar
    ],
}))
"#;

/// Parses `text` as OpenMetrics with `prometheus-client`: `None` when the parser is not
/// installed (see [`crate::tools::require_python_module`]); panics with the parser's
/// message when the text is not valid OpenMetrics.
pub fn parse(text: &str) -> Option<serde_json::Value> {
    if !crate::tools::require_python_module("prometheus_client", "pip install prometheus-client") {
        return None;
    }
    let mut child = Command::new("python3")
        .args(["-c", SCRIPT])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run python3");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("write the exposition");
    let output = child.wait_with_output().expect("python3 output");
    assert!(
        output.status.success(),
        "prometheus-client rejects the exposition: {}\n{text}",
        String::from_utf8_lossy(&output.stderr)
    );
    Some(serde_json::from_slice(&output.stdout).expect("the parser's JSON"))
}
