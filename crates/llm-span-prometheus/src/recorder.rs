//! [`MetricsRecorder`] and [`MetricsHandle`]: the recorder, the handle that renders it,
//! background upkeep and HELP/TYPE completion.
//!
//! The recorder keeps the catalog's histograms and the cost itself ([`crate::owned`])
//! and hands everything else to metrics-exporter-prometheus; a render merges both into
//! one body.

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
use crate::exposition::{self, Family, Format};
use crate::owned::{self, Owned};

/// Drains the samples of histograms outside the catalog (those the upstream recorder
/// keeps) into buckets every few seconds, for as long as a [`MetricsRecorder`] or a
/// [`MetricsHandle`] exists; stops and joins when the last goes. The catalog's
/// histograms need none.
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
    owned: Owned,
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
    /// It takes time proportional to the number of series (about a quarter of a
    /// microsecond per line): call it off async worker threads, e.g. in `spawn_blocking`.
    pub fn render(&self) -> String {
        self.render_as(Format::Text)
    }

    /// Renders in the format an `Accept` header asks for, with its content type:
    /// OpenMetrics 1.0 (with exemplars) when the scraper prefers it, as Prometheus does,
    /// else the text format 0.0.4. For serving `/metrics` from your own router.
    ///
    /// ```
    /// # let (_recorder, handle) = llm_span_prometheus::ExporterBuilder::new().build()?;
    /// let prometheus = "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5";
    /// let (content_type, body) = handle.render_negotiated(Some(prometheus));
    /// assert!(content_type.starts_with("application/openmetrics-text"));
    /// assert!(body.ends_with("# EOF\n"));
    /// let (content_type, _) = handle.render_negotiated(Some("*/*"));
    /// assert_eq!(content_type, llm_span_prometheus::CONTENT_TYPE);
    /// # Ok::<(), llm_span_prometheus::ExporterError>(())
    /// ```
    pub fn render_negotiated(&self, accept: Option<&str>) -> (&'static str, String) {
        let format = crate::negotiate::format(accept);
        (format.content_type(), self.render_as(format))
    }

    pub(crate) fn render_as(&self, format: Format) -> String {
        let shared = &*self.shared;
        let upstream = shared.prometheus.render();
        let mut families = exposition::split_families(&upstream);
        families.extend(shared.owned.families(format));
        families.push(request_spans_enabled(&shared.global_labels));
        complete_catalog(&mut families);
        // One family per name: the catalog's first, then the application's in name
        // order, then the process metrics; a family that takes a name an earlier one
        // took is left out and counted (see `exposition::taken_names`).
        families.sort_by(|a, b| {
            let catalog = |f: &Family<'_>| !owned::in_catalog(&f.name);
            catalog(a)
                .cmp(&catalog(b))
                .then_with(|| a.name.cmp(&b.name))
        });
        #[cfg(feature = "process")]
        families.extend(crate::process::families(&shared.global_labels));
        let mut taken = HashSet::from([NAME_CLASHES.to_owned()]);
        let clashes = exposition::drop_clashes(&mut families, &mut taken);
        families.push(name_clashes(&shared.global_labels, clashes));
        for family in &mut families {
            exposition::sort_series(family);
        }
        exposition::write(families, format)
    }
}

/// The exporter's count of families left out of a body for a name clash.
const NAME_CLASHES: &str = "llm_exporter_name_clashes";

/// `llm_exporter_name_clashes`: how many families this render left out.
fn name_clashes(global_labels: &[(String, String)], clashes: usize) -> Family<'static> {
    let mut labels = String::new();
    exposition::write_label_pairs(
        &mut labels,
        global_labels.iter().map(|(k, v)| (k.as_str(), v.as_str())),
    );
    let mut samples = String::new();
    exposition::write_sample(&mut samples, NAME_CLASHES, "", &labels, None, clashes);
    Family {
        name: NAME_CLASHES.into(),
        kind: "gauge".into(),
        help: Some(
            "Metric families left out of this scrape because their names clash with those of another family (one family per name: the layer's, then the application's in name order, then process metrics)."
                .into(),
        ),
        samples: samples.into(),
    }
}

/// Whether request spans can reach the layer, read now: see
/// [`llm_span_layer::request_spans_enabled`].
fn request_spans_enabled(global_labels: &[(String, String)]) -> Family<'static> {
    let def = catalog::metric(catalog::REQUEST_SPANS_ENABLED);
    let mut labels = String::new();
    exposition::write_label_pairs(
        &mut labels,
        global_labels.iter().map(|(k, v)| (k.as_str(), v.as_str())),
    );
    let mut samples = String::new();
    let value = u8::from(llm_span_layer::request_spans_enabled());
    exposition::write_sample(
        &mut samples,
        catalog::REQUEST_SPANS_ENABLED,
        "",
        &labels,
        None,
        value,
    );
    Family {
        name: catalog::REQUEST_SPANS_ENABLED.into(),
        kind: "gauge".into(),
        help: def.map(|d| exposition::escape_help(d.help).into()),
        samples: samples.into(),
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
        owned: Owned,
        global_labels: Vec<(String, String)>,
        upkeep_interval: Duration,
    ) -> Result<Self, ExporterError> {
        // Before any other description: the first describe of a name wins.
        catalog::describe(&inner);
        let prometheus = inner.handle();
        let upkeep = Upkeep::start(prometheus.clone(), upkeep_interval)?;
        let shared = Arc::new(Shared {
            prometheus,
            owned,
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
        self.shared
            .owned
            .counter(key)
            .unwrap_or_else(|| self.inner.register_counter(key, metadata))
    }

    fn register_gauge(&self, key: &Key, metadata: &Metadata<'_>) -> Gauge {
        self.shared
            .owned
            .gauge(key, metadata)
            .unwrap_or_else(|| self.inner.register_gauge(key, metadata))
    }

    fn register_histogram(&self, key: &Key, metadata: &Metadata<'_>) -> Histogram {
        self.shared
            .owned
            .histogram(key)
            .unwrap_or_else(|| self.inner.register_histogram(key, metadata))
    }
}

/// Adds `# HELP` and `# TYPE` for every catalog family that has no series yet: the
/// upstream recorder renders only families with series, and a family that appears
/// only after its first request leaves dashboards and `absent()` alerts guessing.
fn complete_catalog(families: &mut Vec<Family<'_>>) {
    for def in catalog::METRICS {
        let (name, help) = owned::served_as(def);
        if !families.iter().any(|f| f.name == name) {
            families.push(Family::empty(name, def.kind.as_str(), help));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn completion_adds_only_missing_families() {
        let text = "# HELP llm_requests_total x\n# TYPE llm_requests_total counter\nllm_requests_total 1\n";
        let mut families = exposition::split_families(text);
        complete_catalog(&mut families);
        let out = exposition::write(families, Format::Text);
        assert_eq!(out.matches("# TYPE llm_requests_total ").count(), 1);
        assert!(out.contains("llm_requests_total 1\n"));
        for def in catalog::METRICS {
            let (name, _) = owned::served_as(def);
            assert_eq!(out.matches(&format!("# TYPE {name} ")).count(), 1, "{name}");
        }
        assert!(
            !out.contains(catalog::COST_PICO_USD_TOTAL),
            "served in dollars"
        );
    }

    #[test]
    fn the_handle_shows_no_internals_in_debug() {
        let (_, handle) = crate::ExporterBuilder::new().build().expect("recorder");
        assert_eq!(format!("{handle:?}"), "MetricsHandle { .. }");
    }

    #[test]
    fn the_recorder_shows_no_internals_in_debug() {
        let (recorder, _) = crate::ExporterBuilder::new().build().expect("recorder");
        assert_eq!(format!("{recorder:?}"), "MetricsRecorder { .. }");
    }

    #[test]
    fn an_application_s_own_metrics_get_the_help_it_describes() {
        let (recorder, handle) = crate::ExporterBuilder::new().build().expect("recorder");
        let meta = Metadata::new("test", metrics::Level::INFO, None);
        recorder.describe_counter("app_jobs_total".into(), None, "Jobs run.".into());
        recorder.describe_gauge("app_queue".into(), None, "Jobs waiting.".into());
        recorder.describe_histogram("app_job_seconds".into(), None, "Job time.".into());
        recorder
            .register_counter(&Key::from_name("app_jobs_total"), &meta)
            .increment(3);
        recorder
            .register_gauge(&Key::from_name("app_queue"), &meta)
            .set(2.0);
        recorder
            .register_histogram(&Key::from_name("app_job_seconds"), &meta)
            .record(0.5);
        let text = handle.render();
        for help in [
            "# HELP app_jobs_total Jobs run.\n",
            "# HELP app_queue Jobs waiting.\n",
            "# HELP app_job_seconds Job time.\n",
        ] {
            assert!(text.contains(help), "{help} in {text}");
        }
    }
}
