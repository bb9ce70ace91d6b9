//! Command-line flags, declared with clap's derive API.
//!
//! Shows: one struct is the whole configuration; doc comments become `--help`; a flag
//! can fall back to an environment variable (`env = ...`); values that need checking
//! (model specs, shares) go through small value parsers, so a bad value fails at
//! start-up with the flag's name in the message.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::error::ErrorKind;
use clap::{CommandFactory, Parser};

/// Printed after the flags by `--help`.
const AFTER_HELP: &str = "\
Endpoints (on --listen), the OpenAI API's shapes and errors:
  POST /v1/chat/completions  {\"model\", \"messages\", \"max_tokens\"?, \"stream\"?, \"stream_options\"?};
                             SSE chunks when stream=true, a usage chunk with {\"include_usage\": true}
  POST /v1/embeddings   {\"model\", \"input\", \"dimensions\"? (default 16), \"encoding_format\"?}
  GET  /v1/models       the served models
  POST /v1/completions  legacy: {\"model\", \"prompt\", \"max_tokens\"?, \"stream\"?}; SSE when stream=true
  GET  /health          ok
  PUT  /admin/models/NAME  {\"prefill_ms_per_token\"?, \"decode_ms_per_token\"?}, with --admin only
Metrics (on --metrics-listen): GET /metrics, Prometheus text format.

A model SPEC is NAME:PREFILL_MS_PER_TOKEN:DECODE_MS_PER_TOKEN:CONCURRENCY, e.g. tiny:0.05:5:8.

Access to /metrics (basic auth, bearer token, IP allowlist, TLS) is configured with the
exporter's environment variables: LLM_METRICS_BASIC_AUTH_USER, LLM_METRICS_BASIC_AUTH_PASSWORD_FILE,
LLM_METRICS_BEARER_TOKEN_FILE, LLM_METRICS_ALLOW, LLM_METRICS_TLS_CERT, ... (see llm-span-prometheus's docs).
Log output is filtered with RUST_LOG (default: warn); the metrics see every request whatever it says.

Rejected requests are counted as llm_requests_total{status=\"error\"}: under their model for an
oversized prompt or a full queue, under model=\"unknown\" for malformed JSON or an unknown model
(never under the requested name, which a client controls).";

/// A simulated OpenAI-style LLM server instrumented with llm-span-layer.
#[derive(Debug, Clone, Parser)]
#[command(name = "inference_server", after_help = AFTER_HELP)]
pub(crate) struct Config {
    /// API address
    #[arg(
        long,
        value_name = "ADDR",
        env = "DEMO_LISTEN",
        default_value = "127.0.0.1:8080"
    )]
    pub(crate) listen: SocketAddr,

    /// /metrics address [default: LLM_METRICS_LISTEN, else 127.0.0.1:9000]
    // No `env` here: the exporter reads LLM_METRICS_LISTEN itself; the flag overrides it.
    #[arg(long, value_name = "ADDR")]
    pub(crate) metrics_listen: Option<SocketAddr>,

    /// A served model (SPEC below); repeatable or comma-separated, replaces the defaults
    #[arg(
        long = "model",
        value_name = "SPEC",
        env = "DEMO_MODELS",
        value_delimiter = ',',
        value_parser = parse_model
    )]
    pub(crate) models: Vec<ModelSpec>,

    /// Requests waiting per model before 429
    #[arg(long, value_name = "N", default_value_t = 256)]
    pub(crate) max_queue: usize,

    /// Longer prompts get 413
    #[arg(long, value_name = "N", default_value_t = 4096)]
    pub(crate) max_prompt_tokens: u64,

    /// Share of requests that fail in prefill, decided per prompt
    #[arg(long, value_name = "P", default_value_t = 0.02, value_parser = parse_share)]
    pub(crate) error_rate: f64,

    /// +/- share of random variation of each step's time
    #[arg(long, value_name = "P", default_value_t = 0.2, value_parser = parse_share)]
    pub(crate) jitter: f64,

    /// Price file (model input cached_input output, USD per 1M tokens) [default: built-in prices of the default models]
    #[arg(long, value_name = "FILE")]
    pub(crate) prices: Option<PathBuf>,

    /// Seed of jitter and failures
    #[arg(long, value_name = "N", default_value_t = 7)]
    pub(crate) seed: u64,

    /// Serve PUT /admin/models/NAME on the API address: changes a model's per-token times while it runs (for alerting demos and tests; off by default)
    #[arg(long)]
    pub(crate) admin: bool,
}

#[derive(Debug, Clone)]
pub(crate) struct ModelSpec {
    pub(crate) name: String,
    pub(crate) prefill_per_token: Duration,
    pub(crate) decode_per_token: Duration,
    pub(crate) concurrency: usize,
    pub(crate) revision: String,
    pub(crate) gpu: u32,
}

impl Config {
    /// Parses the command line (and the environment); on a bad flag or `--help`, clap
    /// prints and exits, with status 2 or 0.
    pub(crate) fn from_args() -> Config {
        let mut config = Config::parse();
        if config.models.is_empty() {
            config.models = default_models();
        } else {
            // Custom models get a simulated GPU each.
            for (gpu, model) in (0..).zip(&mut config.models) {
                model.gpu = gpu;
            }
        }
        // A check across values, after parsing: reported in clap's format all the same.
        let mut names: Vec<&str> = config.models.iter().map(|m| m.name.as_str()).collect();
        names.sort_unstable();
        if let Some(pair) = names.windows(2).find(|w| w[0] == w[1]) {
            let message = format!("model {:?} is given twice", pair[0]);
            Config::command()
                .error(ErrorKind::ValueValidation, message)
                .exit();
        }
        config
    }
}

pub(crate) fn default_models() -> Vec<ModelSpec> {
    let model = |name: &str, prefill_ms: f64, decode_ms: f64, concurrency, gpu| ModelSpec {
        name: name.to_owned(),
        prefill_per_token: Duration::from_secs_f64(prefill_ms / 1e3),
        decode_per_token: Duration::from_secs_f64(decode_ms / 1e3),
        concurrency,
        revision: "2024-07-23".to_owned(),
        gpu,
    };
    vec![
        model("llama-3.1-8b-instruct", 0.2, 8.0, 8, 0),
        model("mistral-7b-instruct", 0.3, 10.0, 8, 0),
        model("llama-3.1-70b-instruct", 6.0, 45.0, 3, 1),
    ]
}

/// Built-in prices of the default models, USD per million tokens.
pub(crate) const DEFAULT_PRICES: &str = "\
llama-3.1-8b-instruct   0.18  0.09  0.18
mistral-7b-instruct     0.15  -     0.15
llama-3.1-70b-instruct  0.88  0.44  0.88
";

/// `NAME:PREFILL_MS:DECODE_MS:CONCURRENCY`, a value parser for `--model`.
fn parse_model(spec: &str) -> Result<ModelSpec, String> {
    let [name, prefill, decode, concurrency] = spec.split(':').collect::<Vec<_>>()[..] else {
        return Err("expected NAME:PREFILL_MS:DECODE_MS:CONCURRENCY".to_owned());
    };
    if name.is_empty() {
        return Err("empty name".to_owned());
    }
    let ms = |text: &str, what: &str| -> Result<Duration, String> {
        let value: f64 = text
            .parse()
            .map_err(|_| format!("{what} {text:?} is not a number"))?;
        if !(0.0..=60_000.0).contains(&value) {
            return Err(format!("{what} must be between 0 and 60000 ms"));
        }
        Ok(Duration::from_secs_f64(value / 1e3))
    };
    let concurrency = concurrency
        .parse()
        .ok()
        .filter(|c| *c > 0)
        .ok_or("concurrency must be a positive integer")?;
    Ok(ModelSpec {
        name: name.to_owned(),
        prefill_per_token: ms(prefill, "prefill")?,
        decode_per_token: ms(decode, "decode")?,
        concurrency,
        revision: "custom".to_owned(),
        // Numbered by `Config::from_args`, which sees the whole list.
        gpu: 0,
    })
}

/// A number from 0 to 1, a value parser for `--error-rate` and `--jitter`.
fn parse_share(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(p) if (0.0..=1.0).contains(&p) => Ok(p),
        _ => Err("must be a number from 0 to 1".to_owned()),
    }
}
