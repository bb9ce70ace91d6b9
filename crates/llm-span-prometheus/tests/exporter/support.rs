//! What several modules of this binary use: a builder on a free loopback port, the
//! environment as a map, a check that the server hung up, fixed process metrics, and a
//! hold on the process-wide `tracing` maximum level.

use std::collections::HashMap;
use std::io::Read;
use std::net::TcpStream;
use std::time::Duration;

use llm_span_prometheus::{ExporterBuilder, ExporterError, MetricsRecorder};
use metrics::{Key, Metadata, Recorder};

pub(crate) const META: Metadata<'static> = Metadata::new("test", metrics::Level::INFO, None);

/// A builder that listens on 127.0.0.1, on a port the system picks.
pub(crate) fn loopback() -> ExporterBuilder {
    ExporterBuilder::new().with_listen_addr(([127, 0, 0, 1], 0))
}

/// A builder from `vars` as the environment (`ExporterBuilder::from_env_map`): the
/// process's own environment is never read or changed.
pub(crate) fn env(vars: &[(&str, &str)]) -> Result<ExporterBuilder, ExporterError> {
    let map: HashMap<String, String> = vars
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    ExporterBuilder::from_env_map(move |name| map.get(name).cloned())
}

/// True if the server closed the connection (EOF or reset) within `within`.
pub(crate) fn closed_by_server(stream: &mut TcpStream, within: Duration) -> bool {
    stream
        .set_read_timeout(Some(within))
        .expect("set read timeout");
    let mut buf = [0u8; 64];
    match stream.read(&mut buf) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => matches!(
            e.kind(),
            std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::ConnectionAborted
        ),
    }
}

/// Registers the four `process_*` metrics as the application's own (as the metrics-process
/// crate does), with fixed values: with the `process` feature, the exporter's readings,
/// which move between scrapes, are left out, so two scrapes of unchanged metrics match.
pub(crate) fn own_process_metrics(recorder: &MetricsRecorder) {
    recorder
        .register_counter(&Key::from_name("process_cpu_seconds_total"), &META)
        .absolute(7);
    for name in [
        "process_start_time_seconds",
        "process_resident_memory_bytes",
        "process_open_fds",
    ] {
        recorder
            .register_gauge(&Key::from_name(name), &META)
            .set(5.0);
    }
}

/// Holds the `tracing` maximum level at TRACE while the returned dispatcher lives.
///
/// Every scrape has `llm_layer_request_spans_enabled`, which reads that process-wide
/// level; a new subscriber moves it (from OFF to TRACE the first time), and the tests of
/// `layer` and `openmetrics` make theirs at any moment. While this one lives, every
/// recomputation of the level counts it, so a test that compares two scrapes byte for
/// byte sees the same value in both.
#[must_use = "the level is held only while the dispatcher lives"]
pub(crate) fn hold_max_level() -> tracing::Dispatch {
    tracing::Dispatch::new(tracing_subscriber::registry())
}
