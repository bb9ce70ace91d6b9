//! [`LlmSpanLayerBuilder`]: limits, labels, prices, recorder and clock, checked into a
//! [`ConfigError`] when they cannot work, else handed to the layer as one `LayerConfig`;
//! also the layer's public constructors (`LlmSpanLayer::new`, `LlmSpanLayer::builder`),
//! so that the layer does not depend on its builder.

use std::fmt;
use std::sync::Arc;

use metrics::Recorder;
use quanta::Clock;

use crate::contract::{Contract, DEFAULT_QUEUE_SPAN_NAME};
use crate::decode::MAX_EXTRA_LABELS;
use crate::layer::{LayerConfig, LlmSpanLayer};
use crate::pricing::PriceTable;

/// Label names the layer uses itself, which extra labels may not take.
const RESERVED_LABELS: [&str; 9] = [
    "model", "status", "type", "reason", "revision", "gpu", "le", "quantile", "job",
];

const DEFAULT_MAX_MODELS: usize = 100;
const DEFAULT_MAX_LABEL_VALUES: usize = 100;
const DEFAULT_MAX_SERIES: usize = 1000;

/// Builds an [`LlmSpanLayer`] with other limits, labels, prices, recorder or clock.
///
/// ```
/// use llm_span_layer::{LlmSpanLayer, ModelPrice, PriceTable};
///
/// let prices = PriceTable::new()
///     .with_model("llama-3.1-8b", ModelPrice::usd_per_million_tokens(0.20, 0.60)?);
/// let layer = LlmSpanLayer::builder()
///     .with_prices(prices)
///     .with_label("tenant")
///     .with_max_models(20)
///     .build()?;
/// # drop(layer);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct LlmSpanLayerBuilder {
    pub(crate) extra_labels: Vec<(&'static str, &'static str)>,
    pub(crate) request_span_names: Vec<&'static str>,
    pub(crate) target_prefixes: Vec<&'static str>,
    pub(crate) queue_span_name: &'static str,
    pub(crate) prices: PriceTable,
    pub(crate) max_models: usize,
    pub(crate) max_label_values: usize,
    pub(crate) max_series: usize,
    pub(crate) recorder: Option<Arc<dyn Recorder + Send + Sync>>,
    pub(crate) clock: Option<Clock>,
}

impl Default for LlmSpanLayerBuilder {
    fn default() -> Self {
        Self {
            extra_labels: Vec::new(),
            request_span_names: Vec::new(),
            target_prefixes: Vec::new(),
            queue_span_name: DEFAULT_QUEUE_SPAN_NAME,
            prices: PriceTable::new(),
            max_models: DEFAULT_MAX_MODELS,
            max_label_values: DEFAULT_MAX_LABEL_VALUES,
            max_series: DEFAULT_MAX_SERIES,
            recorder: None,
            clock: None,
        }
    }
}

impl fmt::Debug for LlmSpanLayerBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LlmSpanLayerBuilder")
            .field("extra_labels", &self.extra_labels)
            .field("request_span_names", &self.request_span_names)
            .field("target_prefixes", &self.target_prefixes)
            .field("queue_span_name", &self.queue_span_name)
            .field("priced_models", &self.prices.len())
            .field("max_models", &self.max_models)
            .field("max_label_values", &self.max_label_values)
            .field("max_series", &self.max_series)
            .field("recorder", &self.recorder.as_ref().map(|_| "fixed"))
            .finish_non_exhaustive()
    }
}

impl LlmSpanLayerBuilder {
    /// The most [`with_max_models`](Self::with_max_models) accepts.
    pub const MAX_MODELS: usize = 1_000_000;
    /// The most [`with_max_label_values`](Self::with_max_label_values) accepts.
    pub const MAX_LABEL_VALUES: usize = 1_000_000;
    /// The most [`with_max_series`](Self::with_max_series) accepts.
    pub const MAX_SERIES: usize = 10_000_000;

    /// Promotes the request-span field `field` to a label of the same name on every
    /// request metric. At most four extra labels; each takes at most
    /// [`with_max_label_values`](Self::with_max_label_values) values.
    pub fn with_label(self, field: &'static str) -> Self {
        self.with_label_as(field, field)
    }

    /// Promotes the request-span field `field` to the label `label`.
    pub fn with_label_as(mut self, field: &'static str, label: &'static str) -> Self {
        self.extra_labels.push((field, label));
        self
    }

    /// Also treats spans with this name as request spans, whatever fields they declare.
    pub fn with_request_span_name(mut self, name: &'static str) -> Self {
        self.request_span_names.push(name);
        self
    }

    /// Only spans whose target starts with one of these prefixes are request spans.
    pub fn with_target_prefix(mut self, prefix: &'static str) -> Self {
        self.target_prefixes.push(prefix);
        self
    }

    /// The name of queue-phase spans (default `queue`), children of a request span
    /// whose lifetime is the time the request waited for a slot.
    pub fn with_queue_span_name(mut self, name: &'static str) -> Self {
        self.queue_span_name = name;
        self
    }

    /// Prices per model, for `llm_cost_pico_usd_total`.
    pub fn with_prices(mut self, prices: PriceTable) -> Self {
        self.prices = prices;
        self
    }

    /// Most distinct `model` values (default 100, at most [`MAX_MODELS`](Self::MAX_MODELS)); further
    /// models are counted under `__overflow__`. Also caps distinct `revision` values.
    /// Memory grows with the values seen, not with the cap.
    pub fn with_max_models(mut self, max: usize) -> Self {
        self.max_models = max;
        self
    }

    /// Most distinct values of each extra label (default 100, at most
    /// [`MAX_LABEL_VALUES`](Self::MAX_LABEL_VALUES)).
    pub fn with_max_label_values(mut self, max: usize) -> Self {
        self.max_label_values = max;
        self
    }

    /// Most label combinations per recorder (default 1000, at most
    /// [`MAX_SERIES`](Self::MAX_SERIES)); requests past it are counted in one series whose labels
    /// are all `__overflow__`.
    pub fn with_max_series(mut self, max: usize) -> Self {
        self.max_series = max;
        self
    }

    /// Emits to this recorder instead of the one current at each registration.
    ///
    /// Use it in tests: they create and drop recorders (the default cache knows a
    /// recorder by its address), and on a multi-thread runtime a local recorder (which
    /// is thread-local) cannot reach every thread.
    pub fn with_recorder(mut self, recorder: impl Recorder + Send + Sync + 'static) -> Self {
        self.recorder = Some(Arc::new(recorder));
        self
    }

    /// Reads time from this clock (tests use `quanta::Clock::mock()`).
    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = Some(clock);
        self
    }

    /// Checks the configuration and builds the layer.
    pub fn build(self) -> Result<LlmSpanLayer, ConfigError> {
        for (setting, value, max) in [
            ("max_models", self.max_models, Self::MAX_MODELS),
            (
                "max_label_values",
                self.max_label_values,
                Self::MAX_LABEL_VALUES,
            ),
            ("max_series", self.max_series, Self::MAX_SERIES),
        ] {
            if value == 0 {
                return Err(ConfigError::ZeroLimit { setting });
            }
            if value > max {
                return Err(ConfigError::LimitTooLarge {
                    setting,
                    max,
                    given: value,
                });
            }
        }
        if self.extra_labels.len() > MAX_EXTRA_LABELS {
            return Err(ConfigError::TooManyLabels {
                max: MAX_EXTRA_LABELS,
                given: self.extra_labels.len(),
            });
        }
        for (index, (field, label)) in self.extra_labels.iter().enumerate() {
            if !is_label_name(label) {
                return Err(ConfigError::InvalidLabelName { label });
            }
            if RESERVED_LABELS.contains(label) {
                return Err(ConfigError::ReservedLabelName { label });
            }
            if Contract::is_contract_field(field) {
                return Err(ConfigError::ContractField { field });
            }
            if self.extra_labels[..index]
                .iter()
                .any(|(f, l)| f == field || l == label)
            {
                return Err(ConfigError::DuplicateLabel { label });
            }
        }
        Ok(LlmSpanLayer::new_with(self.into_config()))
    }

    /// The settings as the layer takes them.
    fn into_config(self) -> LayerConfig {
        LayerConfig {
            contract: Contract {
                extra_labels: self.extra_labels,
                request_span_names: self.request_span_names,
                target_prefixes: self.target_prefixes,
                queue_span_name: self.queue_span_name,
            },
            prices: self.prices,
            max_models: self.max_models,
            max_label_values: self.max_label_values,
            max_series: self.max_series,
            recorder: self.recorder,
            clock: self.clock,
        }
    }
}

impl LlmSpanLayer {
    /// A layer with the default contract and limits, emitting to the current recorder.
    pub fn new() -> Self {
        Self::new_with(LlmSpanLayerBuilder::default().into_config())
    }

    /// A builder for a layer with other limits, labels, prices, recorder or clock.
    pub fn builder() -> LlmSpanLayerBuilder {
        LlmSpanLayerBuilder::default()
    }
}

impl Default for LlmSpanLayer {
    fn default() -> Self {
        Self::new()
    }
}

fn is_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !name.starts_with("__")
}

/// A layer configuration that cannot work.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConfigError {
    /// A limit was set to zero.
    ZeroLimit {
        /// The builder setting.
        setting: &'static str,
    },
    /// A limit is above its documented maximum.
    LimitTooLarge {
        /// The builder setting.
        setting: &'static str,
        /// The most it accepts.
        max: usize,
        /// What was given.
        given: usize,
    },
    /// More extra labels than the layer supports.
    TooManyLabels {
        /// The most allowed.
        max: usize,
        /// How many were given.
        given: usize,
    },
    /// Not a valid Prometheus label name (`[a-zA-Z_][a-zA-Z0-9_]*`, no leading `__`).
    InvalidLabelName {
        /// The label name.
        label: &'static str,
    },
    /// A label name the layer uses itself.
    ReservedLabelName {
        /// The label name.
        label: &'static str,
    },
    /// A field that already has a meaning in the span contract.
    ContractField {
        /// The field name.
        field: &'static str,
    },
    /// The same field or label name twice.
    DuplicateLabel {
        /// The label name.
        label: &'static str,
    },
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::ZeroLimit { setting } => write!(f, "{setting} must be at least 1"),
            ConfigError::LimitTooLarge {
                setting,
                max,
                given,
            } => write!(f, "{setting} must be at most {max}, {given} was given"),
            ConfigError::TooManyLabels { max, given } => {
                write!(f, "at most {max} extra labels are supported, {given} were given")
            }
            ConfigError::InvalidLabelName { label } => write!(
                f,
                "{label:?} is not a valid Prometheus label name ([a-zA-Z_][a-zA-Z0-9_]*, no leading __)"
            ),
            ConfigError::ReservedLabelName { label } => {
                write!(f, "label name {label:?} is used by the layer itself")
            }
            ConfigError::ContractField { field } => {
                write!(f, "field {field:?} already has a meaning in the span contract")
            }
            ConfigError::DuplicateLabel { label } => write!(f, "label {label:?} is given twice"),
        }
    }
}

impl std::error::Error for ConfigError {}
