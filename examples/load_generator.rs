//! Drives the demo inference server with seeded, mixed traffic and prints what the
//! client saw, to set beside `/metrics`.
//!
//! `cargo run --example load_generator -- --help` for the flags. With a fixed seed and
//! request count, the token totals are the same on every run.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use llm_span_testkit::demo::{count_tokens, Rng};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const HELP: &str = "\
load_generator: seeded, mixed traffic for the demo inference server

USAGE:
    cargo run --example load_generator -- [FLAGS]

FLAGS:
    --target URL        server base URL [default http://127.0.0.1:8080]
    --requests N        send N requests, then stop [default 200]
    --duration S        send for S seconds instead of a fixed count
    --concurrency C     clients sending at once [default 8]
    --seed X            seed of every choice [default 1]
    --models A,B        models to use [default: all from GET /v1/models]
    --stream-share P    share of streaming requests [default 0.5]
    --abort-share P     share of streaming requests the client abandons mid-stream [default 0.1]
    --json              print the summary as JSON
    --help              this text

Each request picks a model, a prompt (60 % start with one of four shared prefixes, so
the prefix cache has something to hit), max_tokens, streaming or not, and whether to
disconnect after a few streamed tokens. The summary counts, per model, requests by
outcome and the tokens the client saw: input tokens as the server counts them (one per
word), output tokens from `usage`, or the chunks received before an abort.
";

const PREFIXES: [&str; 4] = [
    "You are a helpful assistant. Answer briefly and precisely, cite sources when you can, and say so when you do not know. Keep a friendly tone, avoid jargon, and prefer short sentences with concrete examples over long abstract explanations of the topic at hand.",
    "System: you summarize documents for busy engineers. Lead with the conclusion, then list the three most important facts, then any risks. Never invent numbers. Use plain words and keep every bullet under twenty words so that the summary fits on one screen.",
    "You translate user text from English into French. Keep names, code and numbers unchanged. Preserve line breaks and markdown formatting. If a sentence is ambiguous, choose the most common meaning and add nothing else to the output at all, not even notes.",
    "You are a code reviewer. Point out bugs first, then performance problems, then style. Quote the exact line you mean. Suggest a fix for every problem you raise and keep each comment to at most three sentences so authors can act on them quickly today.",
];

const WORDS: [&str; 24] = [
    "latency",
    "token",
    "model",
    "cache",
    "prompt",
    "queue",
    "batch",
    "decode",
    "prefill",
    "gpu",
    "memory",
    "request",
    "stream",
    "error",
    "metric",
    "cost",
    "throughput",
    "replica",
    "alert",
    "dashboard",
    "budget",
    "window",
    "sample",
    "histogram",
];

struct Args {
    target: SocketAddr,
    requests: u64,
    duration: Option<Duration>,
    concurrency: usize,
    seed: u64,
    models: Vec<String>,
    stream_share: f64,
    abort_share: f64,
    json: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        target: "127.0.0.1:8080".parse().map_err(|e| format!("{e}"))?,
        requests: 200,
        duration: None,
        concurrency: 8,
        seed: 1,
        models: Vec::new(),
        stream_share: 0.5,
        abort_share: 0.1,
        json: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || {
            it.next()
                .ok_or_else(|| format!("{flag} needs a value (see --help)"))
        };
        let share = |text: String, what: &str| match text.parse::<f64>() {
            Ok(p) if (0.0..=1.0).contains(&p) => Ok(p),
            _ => Err(format!("{what}: {text:?} must be a number from 0 to 1")),
        };
        match flag.as_str() {
            "--help" | "-h" => return Err(HELP.to_owned()),
            "--target" => {
                let url = value()?;
                let hostport = url.trim_start_matches("http://").trim_end_matches('/');
                args.target = hostport
                    .parse()
                    .map_err(|_| format!("--target: {url:?} is not http://IP:PORT"))?;
            }
            "--requests" => {
                args.requests = value()?.parse().map_err(|_| "--requests: not a number")?
            }
            "--duration" => {
                let seconds: f64 = value()?.parse().map_err(|_| "--duration: not a number")?;
                args.duration = Some(Duration::from_secs_f64(seconds.max(0.0)));
            }
            "--concurrency" => {
                args.concurrency = value()?
                    .parse()
                    .ok()
                    .filter(|c| *c > 0)
                    .ok_or("--concurrency: must be a positive integer")?
            }
            "--seed" => args.seed = value()?.parse().map_err(|_| "--seed: not a number")?,
            "--models" => args.models = value()?.split(',').map(str::to_owned).collect(),
            "--stream-share" => args.stream_share = share(value()?, "--stream-share")?,
            "--abort-share" => args.abort_share = share(value()?, "--abort-share")?,
            "--json" => args.json = true,
            other => return Err(format!("unknown flag {other:?} (see --help)")),
        }
    }
    Ok(args)
}

/// What the client decided for request `index`; depends only on the seed and index.
struct Plan {
    model: String,
    prompt: String,
    max_tokens: u64,
    stream: bool,
    abort_after: Option<u64>,
}

impl Plan {
    fn new(args: &Args, index: u64) -> Plan {
        let mut rng = Rng::new(args.seed.wrapping_mul(0x2545_F491_4F6C_DD1D) ^ index);
        let model = args.models[rng.below(args.models.len() as u64) as usize].clone();
        let mut prompt = String::new();
        if rng.chance(0.6) {
            prompt.push_str(PREFIXES[rng.below(PREFIXES.len() as u64) as usize]);
        }
        for _ in 0..(5 + rng.below(150)) {
            prompt.push(' ');
            prompt.push_str(WORDS[rng.below(WORDS.len() as u64) as usize]);
        }
        prompt.push_str(&format!(" request-{index}"));
        let max_tokens = 8 + rng.below(121);
        let stream = rng.chance(args.stream_share);
        let abort_after = (stream && rng.chance(args.abort_share)).then(|| 1 + rng.below(4));
        Plan {
            model,
            prompt,
            max_tokens,
            stream,
            abort_after,
        }
    }
}

#[derive(Debug)]
enum Outcome {
    Ok { input: u64, output: u64 },
    Error { input: u64, output: u64 },
    Aborted { input: u64, output: u64 },
    Rejected,
    Failed(String),
}

#[derive(Debug, Default, Clone)]
struct ModelSummary {
    requests: u64,
    ok: u64,
    error: u64,
    aborted: u64,
    rejected: u64,
    failed: u64,
    input_tokens: u64,
    output_tokens: u64,
}

impl ModelSummary {
    fn add(&mut self, outcome: &Outcome) {
        self.requests += 1;
        let (input, output) = match *outcome {
            Outcome::Ok { input, output } => {
                self.ok += 1;
                (input, output)
            }
            Outcome::Error { input, output } => {
                self.error += 1;
                (input, output)
            }
            Outcome::Aborted { input, output } => {
                self.aborted += 1;
                (input, output)
            }
            Outcome::Rejected => {
                self.rejected += 1;
                (0, 0)
            }
            Outcome::Failed(_) => {
                self.failed += 1;
                (0, 0)
            }
        };
        self.input_tokens += input;
        self.output_tokens += output;
    }
}

fn usage(value: &Value) -> (u64, u64) {
    let usage = &value["usage"];
    (
        usage["prompt_tokens"].as_u64().unwrap_or(0),
        usage["completion_tokens"].as_u64().unwrap_or(0),
    )
}

/// A minimal HTTP/1.1 client over one connection: enough to read a streamed
/// response after half-closing the socket, which no pooled client allows.
struct Connection {
    stream: TcpStream,
    buffer: Vec<u8>,
    closed: bool,
}

impl Connection {
    async fn open(target: SocketAddr) -> Result<Self, String> {
        let stream = TcpStream::connect(target)
            .await
            .map_err(|e| format!("connect {target}: {e}"))?;
        Ok(Self {
            stream,
            buffer: Vec::new(),
            closed: false,
        })
    }

    /// Reads more bytes; `false` at end of stream (or a reset after we walked away).
    async fn fill(&mut self) -> bool {
        if self.closed {
            return false;
        }
        let mut chunk = [0u8; 8192];
        match self.stream.read(&mut chunk).await {
            Ok(0) | Err(_) => {
                self.closed = true;
                false
            }
            Ok(n) => {
                self.buffer.extend_from_slice(&chunk[..n]);
                true
            }
        }
    }

    async fn line(&mut self) -> Option<String> {
        loop {
            if let Some(end) = self.buffer.windows(2).position(|w| w == b"\r\n") {
                let line: Vec<u8> = self.buffer.drain(..end + 2).collect();
                return Some(String::from_utf8_lossy(&line[..end]).into_owned());
            }
            if !self.fill().await {
                return None;
            }
        }
    }

    async fn exact(&mut self, len: usize) -> Option<Vec<u8>> {
        while self.buffer.len() < len {
            if !self.fill().await {
                return None;
            }
        }
        Some(self.buffer.drain(..len).collect())
    }

    /// Status code and whether the body is chunked (else its length).
    async fn head(&mut self) -> Result<(u16, Option<usize>), String> {
        let status_line = self
            .line()
            .await
            .ok_or("connection closed before a response")?;
        let status = status_line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| format!("bad status line {status_line:?}"))?;
        let mut length = None;
        loop {
            let line = self.line().await.ok_or("connection closed in headers")?;
            if line.is_empty() {
                return Ok((status, length));
            }
            let lower = line.to_ascii_lowercase();
            if let Some(value) = lower.strip_prefix("content-length:") {
                length = value.trim().parse().ok();
            }
        }
    }

    /// The next piece of a chunked body; `None` at its end or when the peer left.
    async fn chunk(&mut self) -> Option<Vec<u8>> {
        let size_line = self.line().await?;
        let size = usize::from_str_radix(size_line.split(';').next()?.trim(), 16).ok()?;
        if size == 0 {
            return None;
        }
        let data = self.exact(size).await?;
        self.exact(2).await?;
        Some(data)
    }

    async fn send(
        &mut self,
        target: SocketAddr,
        method: &str,
        path: &str,
        body: &str,
    ) -> Result<(), String> {
        let request = format!(
            "{method} {path} HTTP/1.1\r\nHost: {target}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        self.stream
            .write_all(request.as_bytes())
            .await
            .map_err(|e| format!("send: {e}"))
    }

    /// A whole (non-chunked or chunked) body.
    async fn body(&mut self, length: Option<usize>) -> Result<Vec<u8>, String> {
        match length {
            Some(length) => self
                .exact(length)
                .await
                .ok_or_else(|| "body cut short".to_owned()),
            None => {
                let mut body = Vec::new();
                while let Some(piece) = self.chunk().await {
                    body.extend(piece);
                }
                Ok(body)
            }
        }
    }
}

async fn send(target: SocketAddr, plan: &Plan) -> Result<Outcome, String> {
    let mut connection = Connection::open(target).await?;
    let body = json!({
        "model": plan.model, "prompt": plan.prompt, "max_tokens": plan.max_tokens, "stream": plan.stream,
    })
    .to_string();
    connection
        .send(target, "POST", "/v1/completions", &body)
        .await?;
    let (status, length) = connection.head().await?;
    if status == 429 {
        return Ok(Outcome::Rejected);
    }
    if !plan.stream || status != 200 {
        let bytes = connection.body(length).await?;
        let value: Value =
            serde_json::from_slice(&bytes).map_err(|e| format!("response JSON: {e}"))?;
        let (input, output) = usage(&value);
        return Ok(match status {
            200 => Outcome::Ok { input, output },
            500 => Outcome::Error { input, output },
            other => Outcome::Failed(format!("HTTP {other}: {value}")),
        });
    }
    let mut pending = String::new();
    let mut received = 0u64;
    let mut walked_away = false;
    while let Some(data) = connection.chunk().await {
        pending.push_str(&String::from_utf8_lossy(&data));
        while let Some(end) = pending.find("\n\n") {
            let event: String = pending.drain(..end + 2).collect();
            let payload = event.trim().trim_start_matches("data:").trim();
            if payload == "[DONE]" {
                continue;
            }
            let value: Value =
                serde_json::from_str(payload).map_err(|e| format!("event JSON: {e}"))?;
            if value.get("error").is_some() {
                let (input, output) = usage(&value);
                return Ok(Outcome::Error { input, output });
            }
            if value["choices"][0]["finish_reason"].is_string() {
                let (input, output) = usage(&value);
                return Ok(Outcome::Ok { input, output });
            }
            received += 1;
        }
        if !walked_away && plan.abort_after.is_some_and(|k| received >= k) {
            // Walk away: the server sees the end of our side of the connection and
            // cancels. Reading on until it closes shows every token it produced.
            walked_away = true;
            let _ = connection.stream.shutdown().await;
        }
    }
    if walked_away {
        return Ok(Outcome::Aborted {
            input: count_tokens(&plan.prompt),
            output: received,
        });
    }
    Err("stream ended without a final chunk".to_owned())
}

async fn models(target: SocketAddr) -> Result<Vec<String>, String> {
    let mut connection = Connection::open(target)
        .await
        .map_err(|e| format!("cannot reach the server: {e}"))?;
    connection.send(target, "GET", "/v1/models", "").await?;
    let (_, length) = connection.head().await?;
    let bytes = connection.body(length).await?;
    let value: Value = serde_json::from_slice(&bytes).map_err(|e| e.to_string())?;
    let names: Vec<String> = value["data"]
        .as_array()
        .map(|models| {
            models
                .iter()
                .filter_map(|m| m["id"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    if names.is_empty() {
        return Err("the server lists no models".to_owned());
    }
    Ok(names)
}

async fn run(mut args: Args) -> Result<(BTreeMap<String, ModelSummary>, Duration), String> {
    if args.models.is_empty() {
        args.models = models(args.target).await?;
    }
    let args = Arc::new(args);
    let next = Arc::new(AtomicU64::new(0));
    let summary: Arc<Mutex<BTreeMap<String, ModelSummary>>> = Arc::default();
    let started = Instant::now();
    let deadline = args.duration.map(|d| started + d);
    let workers: Vec<_> = (0..args.concurrency)
        .map(|_| {
            let (args, next, summary) = (args.clone(), next.clone(), summary.clone());
            tokio::spawn(async move {
                loop {
                    if deadline.is_some_and(|d| Instant::now() >= d) {
                        return;
                    }
                    let index = next.fetch_add(1, Ordering::Relaxed);
                    if deadline.is_none() && index >= args.requests {
                        return;
                    }
                    let plan = Plan::new(&args, index);
                    let outcome = send(args.target, &plan)
                        .await
                        .unwrap_or_else(Outcome::Failed);
                    if let Outcome::Failed(message) = &outcome {
                        eprintln!("request {index} ({}): {message}", plan.model);
                    }
                    if let Ok(mut summary) = summary.lock() {
                        summary.entry(plan.model.clone()).or_default().add(&outcome);
                    }
                }
            })
        })
        .collect();
    for worker in workers {
        worker.await.map_err(|e| e.to_string())?;
    }
    let summary = summary.lock().map_err(|e| e.to_string())?.clone();
    Ok((summary, started.elapsed()))
}

fn print(summary: &BTreeMap<String, ModelSummary>, elapsed: Duration, as_json: bool) {
    if as_json {
        let models: serde_json::Map<String, Value> = summary
            .iter()
            .map(|(model, s)| {
                let value = json!({
                    "requests": s.requests, "ok": s.ok, "error": s.error, "aborted": s.aborted,
                    "rejected": s.rejected, "failed": s.failed,
                    "input_tokens": s.input_tokens, "output_tokens": s.output_tokens,
                });
                (model.clone(), value)
            })
            .collect();
        println!(
            "{}",
            json!({"elapsed_seconds": elapsed.as_secs_f64(), "models": models})
        );
        return;
    }
    println!(
        "{:<26} {:>8} {:>6} {:>6} {:>8} {:>9} {:>7} {:>10} {:>10}",
        "model",
        "requests",
        "ok",
        "error",
        "aborted",
        "rejected",
        "failed",
        "tokens_in",
        "tokens_out"
    );
    let mut total = ModelSummary::default();
    for (model, s) in summary {
        println!(
            "{:<26} {:>8} {:>6} {:>6} {:>8} {:>9} {:>7} {:>10} {:>10}",
            model,
            s.requests,
            s.ok,
            s.error,
            s.aborted,
            s.rejected,
            s.failed,
            s.input_tokens,
            s.output_tokens
        );
        total.requests += s.requests;
        total.input_tokens += s.input_tokens;
        total.output_tokens += s.output_tokens;
    }
    println!(
        "{} requests in {:.1} s; compare with llm_requests_total and llm_tokens_total on /metrics",
        total.requests,
        elapsed.as_secs_f64()
    );
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(args) => args,
        Err(message) if message == HELP => {
            print!("{HELP}");
            return ExitCode::SUCCESS;
        }
        Err(message) => {
            eprintln!("error: {message}");
            return ExitCode::from(2);
        }
    };
    let as_json = args.json;
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args)) {
        Ok((summary, elapsed)) => {
            print(&summary, elapsed, as_json);
            ExitCode::SUCCESS
        }
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}
