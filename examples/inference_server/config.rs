//! Command-line flags (each also readable from an environment variable).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

pub(crate) const HELP: &str = "\
inference_server: a simulated OpenAI-style LLM server instrumented with llm-span-layer

USAGE:
    cargo run --example inference_server -- [FLAGS]

ENDPOINTS (on --listen):
    POST /v1/completions   {\"model\", \"prompt\", \"max_tokens\"?, \"stream\"?}; SSE when stream=true
    GET  /v1/models        the served models
    GET  /health           ok
METRICS (on --metrics-listen): GET /metrics, Prometheus text format

FLAGS:
    --listen ADDR          API address [env DEMO_LISTEN, default 127.0.0.1:8080]
    --metrics-listen ADDR  /metrics address [env LLM_METRICS_LISTEN, default 127.0.0.1:9000]
    --model SPEC           a served model, repeatable, replacing the defaults:
                           NAME:PREFILL_MS_PER_TOKEN:DECODE_MS_PER_TOKEN:CONCURRENCY
                           e.g. tiny:0.05:5:8 [env DEMO_MODELS, comma-separated]
    --max-queue N          requests waiting per model before 429 [default 256]
    --max-prompt-tokens N  longer prompts get 413 [default 4096]
    --error-rate P         share of requests that fail in prefill, decided per prompt [default 0.02]
    --jitter P             +/- share of random variation of each step's time [default 0.2]
    --prices FILE          price file (model input cached_input output, USD per 1M tokens);
                           default: built-in prices for the default models
    --seed N               seed of jitter and failures [default 7]
    --help                 this text

Access to /metrics (basic auth, bearer token, IP allowlist, TLS) is configured with the
exporter's environment variables: LLM_METRICS_BASIC_AUTH_USER, LLM_METRICS_BASIC_AUTH_PASSWORD_FILE,
LLM_METRICS_BEARER_TOKEN_FILE, LLM_METRICS_ALLOW, ... (see README).

Rejected requests are counted as llm_requests_total{status=\"error\"}: under their model for an
oversized prompt or a full queue, under model=\"unknown\" for malformed JSON or an unknown model
(never under the requested name, which a client controls).
";

#[derive(Debug, Clone)]
pub(crate) struct ModelSpec {
    pub(crate) name: String,
    pub(crate) prefill_per_token: Duration,
    pub(crate) decode_per_token: Duration,
    pub(crate) concurrency: usize,
    pub(crate) revision: String,
    pub(crate) gpu: u32,
}

#[derive(Debug, Clone)]
pub(crate) struct Config {
    pub(crate) listen: SocketAddr,
    pub(crate) metrics_listen: Option<SocketAddr>,
    pub(crate) models: Vec<ModelSpec>,
    pub(crate) max_queue: usize,
    pub(crate) max_prompt_tokens: u64,
    pub(crate) error_rate: f64,
    pub(crate) jitter: f64,
    pub(crate) prices: Option<PathBuf>,
    pub(crate) seed: u64,
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

fn parse_model(spec: &str, index: usize) -> Result<ModelSpec, String> {
    let parts: Vec<&str> = spec.split(':').collect();
    let [name, prefill, decode, concurrency] = parts[..] else {
        return Err(format!(
            "model {spec:?}: expected NAME:PREFILL_MS:DECODE_MS:CONCURRENCY"
        ));
    };
    let ms = |text: &str, what: &str| -> Result<Duration, String> {
        let value: f64 = text
            .parse()
            .map_err(|_| format!("model {spec:?}: {what} {text:?} is not a number"))?;
        if !(0.0..=60_000.0).contains(&value) {
            return Err(format!(
                "model {spec:?}: {what} must be between 0 and 60000 ms"
            ));
        }
        Ok(Duration::from_secs_f64(value / 1e3))
    };
    let concurrency: usize = concurrency
        .parse()
        .ok()
        .filter(|c| *c > 0)
        .ok_or_else(|| format!("model {spec:?}: concurrency must be a positive integer"))?;
    if name.is_empty() {
        return Err(format!("model {spec:?}: empty name"));
    }
    Ok(ModelSpec {
        name: name.to_owned(),
        prefill_per_token: ms(prefill, "prefill")?,
        decode_per_token: ms(decode, "decode")?,
        concurrency,
        revision: "custom".to_owned(),
        gpu: index as u32,
    })
}

impl Config {
    /// Reads flags, falling back to environment variables, then defaults.
    pub(crate) fn from_args(args: impl Iterator<Item = String>) -> Result<Config, String> {
        let env = |name: &str| std::env::var(name).ok();
        let mut config = Config {
            listen: "127.0.0.1:8080".parse().map_err(|e| format!("{e}"))?,
            metrics_listen: None,
            models: Vec::new(),
            max_queue: 256,
            max_prompt_tokens: 4096,
            error_rate: 0.02,
            jitter: 0.2,
            prices: None,
            seed: 7,
        };
        if let Some(listen) = env("DEMO_LISTEN") {
            config.listen = parse_addr(&listen, "DEMO_LISTEN")?;
        }
        if let Some(models) = env("DEMO_MODELS") {
            for (i, spec) in models.split(',').filter(|s| !s.is_empty()).enumerate() {
                config.models.push(parse_model(spec, i)?);
            }
        }
        let mut args = args.peekable();
        let mut cli_models = Vec::new();
        while let Some(flag) = args.next() {
            let mut value = |flag: &str| {
                args.next()
                    .ok_or_else(|| format!("{flag} needs a value (see --help)"))
            };
            match flag.as_str() {
                "--help" | "-h" => return Err(HELP.to_owned()),
                "--listen" => config.listen = parse_addr(&value("--listen")?, "--listen")?,
                "--metrics-listen" => {
                    config.metrics_listen =
                        Some(parse_addr(&value("--metrics-listen")?, "--metrics-listen")?)
                }
                "--model" => {
                    let spec = value("--model")?;
                    cli_models.push(parse_model(&spec, cli_models.len())?);
                }
                "--max-queue" => {
                    config.max_queue = parse_num(&value("--max-queue")?, "--max-queue")?
                }
                "--max-prompt-tokens" => {
                    config.max_prompt_tokens =
                        parse_num(&value("--max-prompt-tokens")?, "--max-prompt-tokens")?
                }
                "--error-rate" => {
                    config.error_rate = parse_share(&value("--error-rate")?, "--error-rate")?
                }
                "--jitter" => config.jitter = parse_share(&value("--jitter")?, "--jitter")?,
                "--prices" => config.prices = Some(PathBuf::from(value("--prices")?)),
                "--seed" => config.seed = parse_num(&value("--seed")?, "--seed")?,
                other => return Err(format!("unknown flag {other:?} (see --help)")),
            }
        }
        if !cli_models.is_empty() {
            config.models = cli_models;
        }
        if config.models.is_empty() {
            config.models = default_models();
        }
        let mut names: Vec<&str> = config.models.iter().map(|m| m.name.as_str()).collect();
        names.sort_unstable();
        if names.windows(2).any(|w| w[0] == w[1]) {
            return Err("a model name is given twice".to_owned());
        }
        Ok(config)
    }
}

fn parse_addr(text: &str, what: &str) -> Result<SocketAddr, String> {
    text.parse()
        .map_err(|_| format!("{what}: {text:?} is not an address like 127.0.0.1:8080"))
}

fn parse_num<T: std::str::FromStr>(text: &str, what: &str) -> Result<T, String> {
    text.parse()
        .map_err(|_| format!("{what}: {text:?} is not a non-negative integer"))
}

fn parse_share(text: &str, what: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(p) if (0.0..=1.0).contains(&p) => Ok(p),
        _ => Err(format!("{what}: {text:?} must be a number from 0 to 1")),
    }
}
