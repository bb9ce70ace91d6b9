//! [`ExporterBuilder`]: buckets, labels, listener and access control, from code or env.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
#[cfg(feature = "tls")]
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use llm_span_layer::catalog;

use crate::allow::Allowlist;
use crate::auth::{Credentials, Secret};
use crate::buckets;
use crate::error::ExporterError;
use crate::naming::{Naming, Namings, OtelRole};
use crate::recorder::{MetricsHandle, MetricsRecorder};
use crate::series::{BucketLayout, Buckets, SeriesMaker};
use crate::server::{self, ExporterHandle, ServerConfig};
use crate::store::MetricStore;

/// The default listen address: loopback only, port 9000.
pub const DEFAULT_LISTEN_ADDR: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 9000);

/// The most that [`ExporterBuilder::with_max_connections`] takes: each connection holds
/// a file descriptor, and a scrape endpoint has no use for more.
pub const MAX_CONNECTIONS_LIMIT: usize = 65_536;

/// The default of [`ExporterBuilder::with_max_bytes_in_flight`]: 64 MiB.
pub const DEFAULT_MAX_BYTES_IN_FLIGHT: usize = 64 << 20;

/// The longest header-read, connection and shutdown timeout the builder takes: one day.
/// Longer ones would overflow the HTTP server's deadlines, and a scrape needs seconds.
pub const MAX_HTTP_TIMEOUT: Duration = Duration::from_secs(24 * 60 * 60);

/// Label names of the exposition format itself. Global labels may not take these, nor
/// the catalog's label names (series labels would silently shadow them on some families).
const RESERVED_LABELS: [&str; 2] = ["le", "quantile"];

/// Configures the recorder and the `/metrics` listener.
///
/// Start from [`ExporterBuilder::new`] (defaults below) or [`ExporterBuilder::from_env`]
/// (defaults overridden by `LLM_METRICS_*` variables; see the [crate docs](crate)),
/// then chain `with_*` methods, which override the environment.
///
/// | setting | default |
/// |---|---|
/// | listen address | `127.0.0.1:9000` |
/// | buckets | [`buckets::PRESETS`] for the catalog, [`buckets::DEFAULT`] otherwise |
/// | header read timeout | 5 s |
/// | connection timeout | 30 s |
/// | shutdown timeout | 5 s |
/// | max connections | 64 |
/// | max bytes in flight | 64 MiB ([`DEFAULT_MAX_BYTES_IN_FLIGHT`]) |
#[derive(Debug, Clone)]
pub struct ExporterBuilder {
    listen: SocketAddr,
    bucket_overrides: Vec<(String, Vec<f64>)>,
    default_buckets: Vec<f64>,
    global_labels: Vec<(String, String)>,
    naming: Vec<Naming>,
    otel_roles: Vec<OtelRole>,
    allow: Vec<String>,
    basic_auth: Option<(String, Secret)>,
    bearer_token: Option<Secret>,
    allow_public: bool,
    #[cfg(feature = "tls")]
    tls: Option<(PathBuf, PathBuf)>,
    header_read_timeout: Duration,
    connection_timeout: Duration,
    shutdown_timeout: Duration,
    max_connections: usize,
    max_bytes_in_flight: usize,
}

impl Default for ExporterBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl ExporterBuilder {
    /// A builder with the defaults: loopback `127.0.0.1:9000`, no authentication.
    pub fn new() -> Self {
        Self {
            listen: DEFAULT_LISTEN_ADDR,
            bucket_overrides: Vec::new(),
            default_buckets: buckets::DEFAULT.to_vec(),
            global_labels: Vec::new(),
            naming: vec![Naming::Llm],
            otel_roles: OtelRole::ALL.to_vec(),
            allow: Vec::new(),
            basic_auth: None,
            bearer_token: None,
            allow_public: false,
            #[cfg(feature = "tls")]
            tls: None,
            header_read_timeout: Duration::from_secs(5),
            connection_timeout: Duration::from_secs(30),
            shutdown_timeout: Duration::from_secs(5),
            max_connections: 64,
            max_bytes_in_flight: DEFAULT_MAX_BYTES_IN_FLIGHT,
        }
    }

    /// A builder configured from the process environment (`LLM_METRICS_*`).
    ///
    /// Credential files named by `*_FILE` variables are read now.
    pub fn from_env() -> Result<Self, ExporterError> {
        Self::from_env_map(|name| std::env::var(name).ok())
    }

    /// A builder configured from `lookup`, which maps a variable name to its value:
    /// [`from_env`](Self::from_env) without touching the process environment.
    pub fn from_env_map(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ExporterError> {
        let env = crate::env::read(&lookup)?;
        let mut builder = Self::new();
        if let Some(addr) = env.listen {
            builder = builder.with_listen_addr(addr);
        }
        for network in env.allow {
            builder = builder.with_allowed_network(network);
        }
        if let Some((user, password)) = env.basic_auth {
            builder = builder.with_basic_auth(user, password);
        }
        if let Some(token) = env.bearer_token {
            builder = builder.with_bearer_token(token);
        }
        if env.allow_public {
            builder = builder.allow_unauthenticated_public_bind();
        }
        for (name, value) in env.global_labels {
            builder = builder.with_global_label(name, value);
        }
        if let Some(naming) = env.naming {
            builder = builder.with_naming(naming);
        }
        if let Some(roles) = env.otel_roles {
            builder = builder.with_otel_roles(roles);
        }
        #[cfg(feature = "tls")]
        if let Some((cert, key)) = env.tls {
            builder = builder.with_tls(cert, key);
        }
        Ok(builder)
    }

    /// Listens on `addr` (port 0 picks a free port; see [`ExporterHandle::local_addr`]).
    /// A non-loopback address needs authentication, an allowlist, or
    /// [`allow_unauthenticated_public_bind`](Self::allow_unauthenticated_public_bind).
    pub fn with_listen_addr(mut self, addr: impl Into<SocketAddr>) -> Self {
        self.listen = addr.into();
        self
    }

    /// Uses `buckets` (upper bounds, strictly increasing, finite, not negative) for the
    /// histogram `metric`, replacing its preset. Checked when the recorder is built: a
    /// negative bound is [`ExporterError::InvalidBuckets`], since OpenMetrics forbids the
    /// `_sum` every histogram here has next to negative buckets.
    pub fn with_buckets(mut self, metric: impl Into<String>, buckets: &[f64]) -> Self {
        let metric = metric.into();
        self.bucket_overrides.retain(|(name, _)| *name != metric);
        self.bucket_overrides.push((metric, buckets.to_vec()));
        self
    }

    /// Uses `buckets` for histograms that have neither a preset nor an override (your
    /// own histograms), instead of [`buckets::DEFAULT`]; the same rules as
    /// [`with_buckets`](Self::with_buckets).
    pub fn with_default_buckets(mut self, buckets: &[f64]) -> Self {
        self.default_buckets = buckets.to_vec();
        self
    }

    /// Adds a label to every series, e.g. `service` or `region` (Prometheus sets
    /// `instance` itself, from the target). A second call with the same name replaces
    /// the value.
    pub fn with_global_label(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        let name = name.into();
        self.global_labels.retain(|(n, _)| *n != name);
        self.global_labels.push((name, value.into()));
        self
    }

    /// The naming profiles to serve the layer's metrics under (default: [`Naming::Llm`]
    /// alone): several at once for a migration, all from the same series. An empty list is
    /// refused when the recorder is built. See [`Naming`] and [`manual::naming`](crate::manual::naming).
    ///
    /// ```
    /// use llm_span_prometheus::{ExporterBuilder, Naming};
    ///
    /// let (_recorder, handle) = ExporterBuilder::new()
    ///     .with_naming([Naming::Llm, Naming::Vllm])
    ///     .build()?;
    /// let body = handle.render();
    /// assert!(body.contains("# TYPE llm_queue_depth gauge\n"));
    /// assert!(body.contains("# TYPE vllm:num_requests_waiting gauge\n"));
    /// # Ok::<(), llm_span_prometheus::ExporterError>(())
    /// ```
    pub fn with_naming(mut self, naming: impl IntoIterator<Item = Naming>) -> Self {
        self.naming = Vec::new();
        for profile in naming {
            if !self.naming.contains(&profile) {
                self.naming.push(profile);
            }
        }
        self
    }

    /// The roles whose families the [`Naming::Otel`] profile serves (default: both): the
    /// client families (`gen_ai_client_*`) for an application that calls a model, the
    /// server families (`gen_ai_server_*`) for a server that runs one. Without that
    /// profile they change nothing. An empty list is refused when the recorder is built.
    /// See [`OtelRole`] and [`manual::naming`](crate::manual::naming).
    ///
    /// ```
    /// use llm_span_prometheus::{ExporterBuilder, Naming, OtelRole};
    ///
    /// let (_recorder, handle) = ExporterBuilder::new()
    ///     .with_naming([Naming::Otel])
    ///     .with_otel_roles([OtelRole::Server])
    ///     .build()?;
    /// let body = handle.render();
    /// assert!(body.contains("# TYPE gen_ai_server_request_duration_seconds histogram\n"));
    /// assert!(!body.contains("gen_ai_client_"));
    /// # Ok::<(), llm_span_prometheus::ExporterError>(())
    /// ```
    pub fn with_otel_roles(mut self, roles: impl IntoIterator<Item = OtelRole>) -> Self {
        self.otel_roles = Vec::new();
        for role in roles {
            if !self.otel_roles.contains(&role) {
                self.otel_roles.push(role);
            }
        }
        self
    }

    /// Admits clients from `network` (`10.0.0.0/8`, `fd00::/8`, or a bare address);
    /// others get 403. Adds to the networks of `LLM_METRICS_ALLOW`, if any. With no
    /// network given, every client is admitted. Checked when the listener starts.
    pub fn with_allowed_network(mut self, network: impl Into<String>) -> Self {
        self.allow.push(network.into());
        self
    }

    /// Requires HTTP basic authentication with `user` and `password`.
    pub fn with_basic_auth(mut self, user: impl Into<String>, password: impl Into<Secret>) -> Self {
        self.basic_auth = Some((user.into(), password.into()));
        self
    }

    /// Requires `Authorization: Bearer <token>`. With basic auth also set, either works.
    pub fn with_bearer_token(mut self, token: impl Into<Secret>) -> Self {
        self.bearer_token = Some(token.into());
        self
    }

    /// Allows a non-loopback listen address with neither authentication nor an
    /// allowlist, e.g. inside a network namespace that is private already.
    pub fn allow_unauthenticated_public_bind(mut self) -> Self {
        self.allow_public = true;
        self
    }

    /// Serves HTTPS with the PEM certificate chain and private key in these files.
    #[cfg(feature = "tls")]
    pub fn with_tls(mut self, cert_pem: impl Into<PathBuf>, key_pem: impl Into<PathBuf>) -> Self {
        self.tls = Some((cert_pem.into(), key_pem.into()));
        self
    }

    /// How long a client may take to send a request's headers (also the idle time
    /// allowed between keep-alive requests) before its connection is closed; more than
    /// zero and at most [`MAX_HTTP_TIMEOUT`].
    pub fn with_header_read_timeout(mut self, timeout: Duration) -> Self {
        self.header_read_timeout = timeout;
        self
    }

    /// How long a connection may stay open in all; then it is closed once its
    /// current response is written (within the shutdown timeout); more than zero and
    /// at most [`MAX_HTTP_TIMEOUT`].
    pub fn with_connection_timeout(mut self, timeout: Duration) -> Self {
        self.connection_timeout = timeout;
        self
    }

    /// How long [`ExporterHandle::shutdown`] lets in-flight requests finish; at most
    /// [`MAX_HTTP_TIMEOUT`].
    pub fn with_shutdown_timeout(mut self, timeout: Duration) -> Self {
        self.shutdown_timeout = timeout;
        self
    }

    /// The most connections served at once, from 1 to [`MAX_CONNECTIONS_LIMIT`]. At
    /// the cap, a new connection evicts the oldest one that was never served metrics
    /// (silent, refused with 401 or 403, or asking for `/health` only); it is closed at
    /// once only when every connection was served metrics, so clients that may not
    /// scrape never lock out one that may.
    pub fn with_max_connections(mut self, max: usize) -> Self {
        self.max_connections = max;
        self
    }

    /// The most bytes that `/metrics` bodies being sent may hold together (default
    /// [`DEFAULT_MAX_BYTES_IN_FLIGHT`]). A body is held from its render until its last
    /// byte is written or its connection is gone, so clients that stop reading would
    /// otherwise hold one body each; a scrape whose body would pass the budget gets 503
    /// with `Retry-After: 1` instead. A body is always served when no other is in
    /// flight, so the bodies in flight hold at most the budget or one body, whichever
    /// is more, however many clients stall.
    pub fn with_max_bytes_in_flight(mut self, bytes: usize) -> Self {
        self.max_bytes_in_flight = bytes;
        self
    }

    /// Builds the recorder and a handle to render it, without installing anything
    /// globally or starting a listener: for serving `/metrics` from your own router,
    /// or for tests.
    pub fn build(self) -> Result<(MetricsRecorder, MetricsHandle), ExporterError> {
        let recorder = self.build_recorder()?;
        let handle = recorder.handle();
        Ok((recorder, handle))
    }

    /// Builds the recorder and installs it as the global recorder, without a listener.
    pub fn install_recorder(self) -> Result<MetricsHandle, ExporterError> {
        let (recorder, handle) = self.build()?;
        metrics::set_global_recorder(recorder)
            .map_err(|_| ExporterError::RecorderAlreadyInstalled)?;
        Ok(handle)
    }

    /// Builds the recorder and starts the listener, without installing the recorder
    /// globally: give the recorder to `LlmSpanLayer::builder().with_recorder(..)`.
    pub fn spawn(self) -> Result<(MetricsRecorder, ExporterHandle), ExporterError> {
        let config = self.server_config()?;
        let recorder = self.build_recorder()?;
        let server = server::start(config, recorder.handle())?;
        Ok((recorder, server))
    }

    /// Builds the recorder, starts the listener and installs the recorder globally.
    ///
    /// The listener runs until the returned handle is shut down or dropped.
    pub fn install(self) -> Result<ExporterHandle, ExporterError> {
        let (recorder, server) = self.spawn()?;
        // On failure the server is dropped here, which stops it.
        metrics::set_global_recorder(recorder)
            .map_err(|_| ExporterError::RecorderAlreadyInstalled)?;
        Ok(server)
    }

    fn build_recorder(&self) -> Result<MetricsRecorder, ExporterError> {
        let namings = Namings::new(&self.naming).ok_or(ExporterError::InvalidSetting {
            setting: "naming",
            reason: "must name at least one profile",
        })?;
        let namings =
            namings
                .with_otel_roles(&self.otel_roles)
                .ok_or(ExporterError::InvalidSetting {
                    setting: "otel_roles",
                    reason: "must name at least one role",
                })?;
        let otel = namings.serves(Naming::Otel);
        for (name, _) in &self.global_labels {
            check_label_name(name, otel)?;
        }
        buckets::validate("(default buckets)", &self.default_buckets)?;
        // A histogram that the `vllm` or `otel` profile serves also stores its bounds.
        let layout = |name: &str, bounds: &[f64]| {
            let vllm = namings
                .serves(Naming::Vllm)
                .then(|| crate::vllm::buckets(name))
                .flatten();
            let otel = otel.then(|| crate::otel::buckets(name)).flatten();
            BucketLayout::new(bounds, vllm, otel)
        };
        // The presets of the catalog's histograms, the conventions' boundaries for the
        // operation families (served only through `otel`), then the overrides (which win).
        let mut by_name: HashMap<String, Arc<BucketLayout>> = buckets::PRESETS
            .iter()
            .map(|(name, bounds)| ((*name).to_owned(), layout(name, bounds)))
            .collect();
        for def in catalog::OPERATION_METRICS {
            if let Some(bounds) = crate::otel::buckets(def.name) {
                by_name.insert(def.name.to_owned(), layout(def.name, bounds));
            }
        }
        for (name, bounds) in &self.bucket_overrides {
            buckets::validate(name, bounds)?;
            by_name.insert(name.clone(), layout(name, bounds));
        }
        let buckets = Buckets::new(by_name, &self.default_buckets);
        let maker = SeriesMaker::new(self.global_labels.clone(), namings, buckets);
        if otel {
            // The layer emits the operation families only once asked (process-wide).
            catalog::enable_operation_metrics();
        }
        Ok(MetricsRecorder::new(
            MetricStore::new(maker),
            &self.global_labels,
        ))
    }

    fn server_config(&self) -> Result<ServerConfig, ExporterError> {
        let allow = Allowlist::parse_all(&self.allow)?;
        let credentials = Credentials::new(self.basic_auth.clone(), self.bearer_token.clone())?;
        let ip = self.listen.ip().to_canonical();
        if !ip.is_loopback() && credentials.is_empty() && allow.is_empty() && !self.allow_public {
            return Err(ExporterError::PublicBindWithoutAuth { addr: self.listen });
        }
        for (setting, value, may_be_zero) in [
            ("header_read_timeout", self.header_read_timeout, false),
            ("connection_timeout", self.connection_timeout, false),
            ("shutdown_timeout", self.shutdown_timeout, true),
        ] {
            if value.is_zero() && !may_be_zero {
                return Err(ExporterError::InvalidSetting {
                    setting,
                    reason: "must be greater than zero",
                });
            }
            if value > MAX_HTTP_TIMEOUT {
                return Err(ExporterError::InvalidSetting {
                    setting,
                    reason: "must be at most one day",
                });
            }
        }
        if self.max_connections == 0 {
            return Err(ExporterError::InvalidSetting {
                setting: "max_connections",
                reason: "must be at least 1",
            });
        }
        if self.max_connections > MAX_CONNECTIONS_LIMIT {
            return Err(ExporterError::InvalidSetting {
                setting: "max_connections",
                reason: "must be at most 65536",
            });
        }
        Ok(ServerConfig {
            listen: self.listen,
            allow,
            credentials,
            header_read_timeout: self.header_read_timeout,
            connection_timeout: self.connection_timeout,
            shutdown_timeout: self.shutdown_timeout,
            max_connections: self.max_connections,
            max_bytes_in_flight: self.max_bytes_in_flight,
            #[cfg(feature = "tls")]
            tls: match &self.tls {
                Some((cert, key)) => Some(crate::tls::load(cert, key)?),
                None => None,
            },
        })
    }
}

/// The label names the `otel` profile writes besides the layer's: global labels may not
/// take them while it is served.
const OTEL_LABELS: [&str; 5] = [
    "gen_ai_request_model",
    "gen_ai_token_type",
    "error_type",
    catalog::OPERATION_LABEL,
    catalog::PROVIDER_LABEL,
];

/// Checks a global label's name; `otel`: whether the `otel` profile is served.
fn check_label_name(name: &str, otel: bool) -> Result<(), ExporterError> {
    let fail = |reason| {
        Err(ExporterError::InvalidLabel {
            name: name.to_owned(),
            reason,
        })
    };
    let mut chars = name.chars();
    let valid = matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !valid {
        return fail("must match [a-zA-Z_][a-zA-Z0-9_]*");
    }
    if name.starts_with("__") {
        return fail("names starting with __ are reserved by Prometheus");
    }
    let catalog_label = name == "model"
        || catalog::METRICS
            .iter()
            .any(|def| def.labels.contains(&name));
    if RESERVED_LABELS.contains(&name) || catalog_label {
        return fail("reserved: the exposition format or llm-span-layer uses this label");
    }
    if otel && OTEL_LABELS.contains(&name) {
        return fail("reserved: the otel naming profile uses this label");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_in_flight_hold_at_most_64_mib_by_default() {
        assert_eq!(DEFAULT_MAX_BYTES_IN_FLIGHT, 67_108_864);
        assert_eq!(ExporterBuilder::new().max_bytes_in_flight, 67_108_864);
        let builder = ExporterBuilder::new().with_max_bytes_in_flight(5);
        assert_eq!(
            builder.server_config().map(|c| c.max_bytes_in_flight).ok(),
            Some(5)
        );
    }

    #[test]
    fn only_a_recorder_built_with_the_otel_profile_asks_the_layer_for_operation_families() {
        // The only test of this binary that builds a recorder serving `otel`: the switch
        // is process-wide and never goes back.
        let built =
            |builder: ExporterBuilder| builder.build().map(|_| ()).map_err(|e| e.to_string());
        assert_eq!(
            built(ExporterBuilder::new().with_naming([Naming::Llm, Naming::Vllm])),
            Ok(())
        );
        assert!(!catalog::operation_metrics_enabled());
        // Refused builds ask nothing either.
        assert_eq!(
            built(
                ExporterBuilder::new()
                    .with_naming([Naming::Otel])
                    .with_otel_roles([])
            ),
            Err("invalid exporter setting otel_roles: must name at least one role".to_owned())
        );
        assert_eq!(
            built(
                ExporterBuilder::new()
                    .with_naming([Naming::Otel])
                    .with_global_label("error_type", "x")
            ),
            Err(r#"invalid global label "error_type": reserved: the otel naming profile uses this label"#.to_owned())
        );
        assert!(!catalog::operation_metrics_enabled());
        assert_eq!(
            built(ExporterBuilder::new().with_otel_roles([OtelRole::Server])),
            Ok(())
        );
        assert!(!catalog::operation_metrics_enabled());
        assert_eq!(
            built(ExporterBuilder::new().with_naming([Naming::Otel])),
            Ok(())
        );
        assert!(catalog::operation_metrics_enabled());
    }

    #[test]
    fn roles_are_kept_once_each_in_order_and_both_by_default() {
        assert_eq!(ExporterBuilder::new().otel_roles, OtelRole::ALL);
        let builder = ExporterBuilder::new().with_otel_roles([
            OtelRole::Server,
            OtelRole::Client,
            OtelRole::Server,
        ]);
        assert_eq!(builder.otel_roles, [OtelRole::Server, OtelRole::Client]);
        let builder = builder.with_otel_roles([OtelRole::Client]);
        assert_eq!(builder.otel_roles, [OtelRole::Client]);
        // An empty list is refused even without the profile: it names no role to serve.
        assert!(matches!(
            ExporterBuilder::new().with_otel_roles([]).build(),
            Err(ExporterError::InvalidSetting {
                setting: "otel_roles",
                ..
            })
        ));
    }

    #[test]
    fn label_names() {
        for ok in ["service", "instance", "_x", "env2"] {
            check_label_name(ok, false).expect(ok);
            check_label_name(ok, true).expect(ok);
        }
        // Free unless the otel profile is served.
        for otel in OTEL_LABELS {
            check_label_name(otel, false).expect(otel);
            assert_eq!(
                check_label_name(otel, true).map_err(|e| e.to_string()),
                Err(format!(
                    "invalid global label {otel:?}: reserved: the otel naming profile uses this label"
                ))
            );
        }
        for bad in [
            "", "1x", "a-b", "__name", "le", "quantile", "model", "status", "type", "gpu",
        ] {
            assert!(
                matches!(
                    check_label_name(bad, false),
                    Err(ExporterError::InvalidLabel { .. })
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn from_env_reads_the_process_environment() {
        // The only test of this binary that sets an LLM_METRICS_* variable, or reads one.
        std::env::set_var(crate::env::LISTEN, "127.0.0.1:9464");
        let builder = ExporterBuilder::from_env();
        std::env::set_var(crate::env::LISTEN, "not an address");
        let invalid = ExporterBuilder::from_env();
        std::env::remove_var(crate::env::LISTEN);
        let builder = builder.expect("a valid address");
        assert_eq!(builder.listen, SocketAddr::from(([127, 0, 0, 1], 9464)));
        let err = invalid.map(|_| ()).expect_err("not an address");
        assert_eq!(
            err.to_string(),
            ExporterBuilder::from_env_map(|name| {
                (name == crate::env::LISTEN).then(|| "not an address".to_owned())
            })
            .map(|_| ())
            .expect_err("the same error")
            .to_string()
        );
    }

    #[test]
    fn an_empty_credential_file_variable_is_an_error_of_its_own() {
        for var in [crate::env::BEARER_FILE, crate::env::BASIC_PASSWORD_FILE] {
            let err = ExporterBuilder::from_env_map(|name| {
                if name == var {
                    Some(String::new())
                } else if name == crate::env::BASIC_USER && var == crate::env::BASIC_PASSWORD_FILE {
                    Some("prometheus".to_owned())
                } else {
                    None
                }
            })
            .map(|_| ())
            .expect_err(var);
            assert_eq!(
                err.to_string(),
                format!("invalid environment variable {var}: set but empty")
            );
        }
    }

    #[test]
    fn a_credential_file_error_has_the_io_error_as_its_source() {
        use std::error::Error as _;
        let err = Secret::from_file("/nonexistent/llm-span-credential")
            .map(|_| ())
            .expect_err("missing file");
        let source = err.source().expect("the io error");
        let io = source
            .downcast_ref::<std::io::Error>()
            .expect("an io::Error");
        assert_eq!(io.kind(), std::io::ErrorKind::NotFound);
    }
}
