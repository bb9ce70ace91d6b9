//! [`MetricsRecorder`] and [`MetricsHandle`]: the recorder, the handle that renders it,
//! background upkeep and HELP/TYPE completion.

use std::collections::HashSet;
use std::fmt;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use llm_span_layer::catalog;
use metrics::{Counter, Gauge, Histogram, Key, KeyName, Metadata, Recorder, SharedString, Unit};
use metrics_exporter_prometheus::{PrometheusHandle, PrometheusRecorder};

use crate::error::ExporterError;

/// Drains histogram samples into buckets every few seconds, for as long as a
/// [`MetricsRecorder`] or a [`MetricsHandle`] exists; stops and joins when the last goes.
struct Upkeep {
    stop: Mutex<Option<mpsc::Sender<()>>>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Upkeep {
    fn start(handle: PrometheusHandle, interval: Duration) -> Result<Arc<Self>, ExporterError> {
        let (stop, stopped) = mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("llm-metrics-upkeep".into())
            .spawn(move || loop {
                match stopped.recv_timeout(interval) {
                    Err(RecvTimeoutError::Timeout) => handle.run_upkeep(),
                    // The sender is only ever dropped, never used: disconnection means stop.
                    Ok(()) | Err(RecvTimeoutError::Disconnected) => return,
                }
            })
            .map_err(ExporterError::Runtime)?;
        Ok(Arc::new(Self {
            stop: Mutex::new(Some(stop)),
            thread: Mutex::new(Some(thread)),
        }))
    }
}

impl Drop for Upkeep {
    fn drop(&mut self) {
        drop(
            self.stop
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .take(),
        );
        let thread = self
            .thread
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(thread) = thread {
            // The upkeep thread holds no Upkeep, so this is never a self-join.
            let _ = thread.join();
        }
    }
}

struct Shared {
    prometheus: PrometheusHandle,
    /// Global labels, for the lines this crate renders itself.
    #[cfg_attr(not(feature = "process"), allow(dead_code))]
    global_labels: Vec<(String, String)>,
    _upkeep: Arc<Upkeep>,
}

/// A cheap, cloneable handle that renders the metrics in the Prometheus text format.
///
/// Use it to serve `/metrics` from your own router. The output always has `# HELP` and
/// `# TYPE` for every family of [`catalog::METRICS`], also before the first request.
#[derive(Clone)]
pub struct MetricsHandle {
    shared: Arc<Shared>,
}

impl fmt::Debug for MetricsHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MetricsHandle").finish_non_exhaustive()
    }
}

impl MetricsHandle {
    /// Renders every metric in the Prometheus text exposition format (version 0.0.4).
    ///
    /// It takes time proportional to the number of series (about half a microsecond per
    /// line): call it off async worker threads, e.g. in `spawn_blocking`.
    pub fn render(&self) -> String {
        let mut out = self.shared.prometheus.render();
        complete_catalog(&mut out);
        #[cfg(feature = "process")]
        crate::process::render(&mut out, &self.shared.global_labels);
        out
    }
}

/// The Prometheus recorder, with the catalog's HELP text registered and upkeep running.
///
/// Install it globally with [`metrics::set_global_recorder`], or hand it to
/// `LlmSpanLayer::builder().with_recorder(..)`. Keep a [`MetricsHandle`] (from
/// [`MetricsRecorder::handle`]) before giving the recorder away.
pub struct MetricsRecorder {
    inner: PrometheusRecorder,
    shared: Arc<Shared>,
}

impl fmt::Debug for MetricsRecorder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MetricsRecorder").finish_non_exhaustive()
    }
}

impl MetricsRecorder {
    pub(crate) fn new(
        inner: PrometheusRecorder,
        global_labels: Vec<(String, String)>,
        upkeep_interval: Duration,
    ) -> Result<Self, ExporterError> {
        // Before any other description: the first describe of a name wins.
        catalog::describe(&inner);
        let prometheus = inner.handle();
        let upkeep = Upkeep::start(prometheus.clone(), upkeep_interval)?;
        let shared = Arc::new(Shared {
            prometheus,
            global_labels,
            _upkeep: upkeep,
        });
        Ok(Self { inner, shared })
    }

    /// A handle that renders this recorder's metrics.
    pub fn handle(&self) -> MetricsHandle {
        MetricsHandle {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl Recorder for MetricsRecorder {
    fn describe_counter(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        self.inner.describe_counter(key, unit, description);
    }

    fn describe_gauge(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        self.inner.describe_gauge(key, unit, description);
    }

    fn describe_histogram(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        self.inner.describe_histogram(key, unit, description);
    }

    fn register_counter(&self, key: &Key, metadata: &Metadata<'_>) -> Counter {
        self.inner.register_counter(key, metadata)
    }

    fn register_gauge(&self, key: &Key, metadata: &Metadata<'_>) -> Gauge {
        self.inner.register_gauge(key, metadata)
    }

    fn register_histogram(&self, key: &Key, metadata: &Metadata<'_>) -> Histogram {
        self.inner.register_histogram(key, metadata)
    }
}

/// Appends `# HELP` and `# TYPE` for every catalog family that has no series yet: the
/// Prometheus recorder renders only families with series, and a family that appears
/// only after its first request leaves dashboards and `absent()` alerts guessing.
fn complete_catalog(out: &mut String) {
    let present: HashSet<&str> = out
        .lines()
        .filter_map(|line| line.strip_prefix("# TYPE "))
        .filter_map(|rest| rest.split(' ').next())
        .collect();
    let missing: Vec<_> = catalog::METRICS
        .iter()
        .filter(|def| !present.contains(def.name))
        .collect();
    for def in missing {
        write_header(out, def.name, def.help, def.kind.as_str());
    }
}

/// Writes a family's HELP and TYPE lines, escaping HELP as the text format requires.
pub(crate) fn write_header(out: &mut String, name: &str, help: &str, kind: &str) {
    out.push_str("# HELP ");
    out.push_str(name);
    out.push(' ');
    for c in help.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out.push_str("\n# TYPE ");
    out.push_str(name);
    out.push(' ');
    out.push_str(kind);
    out.push('\n');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_escapes_help() {
        let mut out = String::new();
        write_header(&mut out, "x_total", "a\\b\nc \"q\"", "counter");
        assert_eq!(
            out,
            "# HELP x_total a\\\\b\\nc \"q\"\n# TYPE x_total counter\n"
        );
    }

    #[test]
    fn completion_adds_only_missing_families() {
        let mut out = String::from(
            "# HELP llm_requests_total x\n# TYPE llm_requests_total counter\nllm_requests_total 1\n\n",
        );
        complete_catalog(&mut out);
        assert_eq!(out.matches("# TYPE llm_requests_total ").count(), 1);
        for def in catalog::METRICS {
            assert_eq!(
                out.matches(&format!("# TYPE {} ", def.name)).count(),
                1,
                "{}",
                def.name
            );
        }
    }
}
