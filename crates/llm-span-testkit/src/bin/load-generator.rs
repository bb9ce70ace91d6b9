//! Drives the demo inference server with seeded, mixed traffic and prints what the
//! client saw, to set beside `/metrics`.
//!
//! `cargo run -p llm-span-testkit --bin load-generator -- --help` for the flags. With a
//! fixed seed and request count, the token totals are the same on every run. A test
//! driver, not an example: it never uses the library crates, only the demo's HTTP API.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use llm_span_testkit::demo::{count_tokens, Rng};
use llm_span_testkit::http::{self, Head, ResponseReader};
use serde_json::{json, Value};

const HELP: &str = "\
load-generator: seeded, mixed traffic for the demo inference server

USAGE:
    cargo run -p llm-span-testkit --bin load-generator -- [FLAGS]

FLAGS:
    --target URL        server base URL [default http://127.0.0.1:8080]
    --requests N        send N requests, then stop [default 200]
    --duration S        send for S seconds instead of a fixed count
    --concurrency C     clients sending at once [default 8]
    --seed X            seed of every choice [default 1]
    --models A,B        models to use [default: all from GET /v1/models]
    --api API           chat (POST /v1/chat/completions) or completions (the legacy
                        POST /v1/completions) [default chat]
    --stream-share P    share of streaming requests [default 0.5]
    --abort-share P     share of streaming requests the client abandons mid-stream [default 0.1]
    --embeddings-share P  share of requests sent to POST /v1/embeddings instead [default 0]
    --json              print the summary as JSON
    --progress          report progress on stderr even when it is not a terminal
    --quiet             no progress report, even on a terminal
    --help              this text

Each request picks a model, a prompt (60 % start with one of four shared prefixes, so
the prefix cache has something to hit; in a chat request the prefix is the system
message), max_tokens, streaming or not, and whether to disconnect after a few streamed
tokens. Streamed chat requests ask for a usage chunk (stream_options.include_usage). An
embeddings request sends the prompt as one string or as an array of pieces of it. The
summary counts, per model, requests by outcome and the tokens the client saw: input
tokens as the server counts them (one per word), output tokens from `usage`, or the
chunks received before an abort; and the same counts of the embeddings requests alone.

While it runs, about once a second and at the end, a line on stderr tells the requests
done, the rate, the errors (server errors, rejections and client-side failures) and the
aborted streams: when stderr is a terminal or with --progress, never with --quiet.
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

/// Which text API the load speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Api {
    Chat,
    Completions,
}

struct Args {
    target: SocketAddr,
    api: Api,
    embeddings_share: f64,
    requests: u64,
    duration: Option<Duration>,
    concurrency: usize,
    seed: u64,
    models: Vec<String>,
    stream_share: f64,
    abort_share: f64,
    json: bool,
    progress: bool,
    quiet: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        target: "127.0.0.1:8080".parse().map_err(|e| format!("{e}"))?,
        api: Api::Chat,
        embeddings_share: 0.0,
        requests: 200,
        duration: None,
        concurrency: 8,
        seed: 1,
        models: Vec::new(),
        stream_share: 0.5,
        abort_share: 0.1,
        json: false,
        progress: false,
        quiet: false,
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
            "--embeddings-share" => args.embeddings_share = share(value()?, "--embeddings-share")?,
            "--api" => {
                args.api = match value()?.as_str() {
                    "chat" => Api::Chat,
                    "completions" => Api::Completions,
                    other => {
                        return Err(format!(
                            "--api: {other:?} is neither \"chat\" nor \"completions\""
                        ))
                    }
                }
            }
            "--json" => args.json = true,
            "--progress" => args.progress = true,
            "--quiet" => args.quiet = true,
            other => return Err(format!("unknown flag {other:?} (see --help)")),
        }
    }
    Ok(args)
}

/// What the client decided for request `index`; depends only on the seed and index.
struct Plan {
    model: String,
    /// The shared prefix, if any: a chat request's system message.
    system: Option<&'static str>,
    /// The rest: a chat request's user message.
    user: String,
    /// `system` and `user` as one prompt, as the legacy API and embeddings send it.
    prompt: String,
    max_tokens: u64,
    stream: bool,
    abort_after: Option<u64>,
    /// Sent to /v1/embeddings instead: the prompt whole (`None`) or in pieces.
    embed: Option<Option<Vec<String>>>,
}

impl Plan {
    fn new(args: &Args, index: u64) -> Plan {
        let mut rng = Rng::new(args.seed.wrapping_mul(0x2545_F491_4F6C_DD1D) ^ index);
        let model = args.models[rng.below(args.models.len() as u64) as usize].clone();
        let system = rng
            .chance(0.6)
            .then(|| PREFIXES[rng.below(PREFIXES.len() as u64) as usize]);
        let mut user = String::new();
        for _ in 0..(5 + rng.below(150)) {
            user.push_str(WORDS[rng.below(WORDS.len() as u64) as usize]);
            user.push(' ');
        }
        user.push_str(&format!("request-{index}"));
        let prompt = format!("{} {user}", system.unwrap_or_default());
        let max_tokens = 8 + rng.below(121);
        let stream = rng.chance(args.stream_share);
        let abort_after = (stream && rng.chance(args.abort_share)).then(|| 1 + rng.below(4));
        let embed = rng.chance(args.embeddings_share).then(|| {
            rng.chance(0.5).then(|| {
                let words: Vec<&str> = prompt.split_whitespace().collect();
                words.chunks(32).map(|piece| piece.join(" ")).collect()
            })
        });
        Plan {
            model,
            system,
            user,
            prompt,
            max_tokens,
            stream,
            abort_after,
            embed,
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

/// Requests by outcome and the tokens the client saw.
#[derive(Debug, Default, Clone)]
struct Counts {
    requests: u64,
    ok: u64,
    error: u64,
    aborted: u64,
    rejected: u64,
    failed: u64,
    input_tokens: u64,
    output_tokens: u64,
}

impl Counts {
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

    fn json(&self) -> Value {
        json!({
            "requests": self.requests, "ok": self.ok, "error": self.error,
            "aborted": self.aborted, "rejected": self.rejected, "failed": self.failed,
            "input_tokens": self.input_tokens, "output_tokens": self.output_tokens,
        })
    }
}

/// One model's requests, and its embeddings requests alone.
#[derive(Debug, Default, Clone)]
struct ModelSummary {
    all: Counts,
    embeddings: Counts,
}

impl ModelSummary {
    fn add(&mut self, outcome: &Outcome, embeddings: bool) {
        self.all.add(outcome);
        if embeddings {
            self.embeddings.add(outcome);
        }
    }
}

fn usage(value: &Value) -> (u64, u64) {
    let usage = &value["usage"];
    (
        usage["prompt_tokens"].as_u64().unwrap_or(0),
        usage["completion_tokens"].as_u64().unwrap_or(0),
    )
}

/// Sends one request on its own connection and reads the status line and headers. The
/// body is left to the caller, to read whole or chunk by chunk: a streamed response can
/// be abandoned half-way by half-closing the socket, which no pooled client allows.
fn open(
    target: SocketAddr,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> Result<(ResponseReader<TcpStream>, Head), String> {
    let mut stream = TcpStream::connect(target).map_err(|e| format!("connect {target}: {e}"))?;
    let headers: &[(&str, &str)] = match body {
        Some(_) => &[("Content-Type", "application/json")],
        None => &[],
    };
    stream
        .write_all(&http::format_request(target, method, path, headers, body))
        .map_err(|e| format!("send: {e}"))?;
    let mut reader = ResponseReader::new(stream);
    let head = reader.head().map_err(|e| e.to_string())?;
    Ok((reader, head))
}

/// The request's path and body.
fn request(api: Api, plan: &Plan) -> (&'static str, Value) {
    if let Some(pieces) = &plan.embed {
        let input = match pieces {
            Some(pieces) => json!(pieces),
            None => json!(plan.prompt),
        };
        return (
            "/v1/embeddings",
            json!({"model": plan.model, "input": input}),
        );
    }
    match api {
        Api::Completions => (
            "/v1/completions",
            json!({
                "model": plan.model, "prompt": plan.prompt, "max_tokens": plan.max_tokens,
                "stream": plan.stream,
            }),
        ),
        Api::Chat => {
            let mut messages = Vec::new();
            if let Some(system) = plan.system {
                messages.push(json!({"role": "system", "content": system}));
            }
            messages.push(json!({"role": "user", "content": plan.user}));
            let mut body = json!({
                "model": plan.model, "messages": messages, "max_tokens": plan.max_tokens,
                "stream": plan.stream,
            });
            if plan.stream {
                body["stream_options"] = json!({"include_usage": true});
            }
            ("/v1/chat/completions", body)
        }
    }
}

fn send(target: SocketAddr, api: Api, plan: &Plan) -> Result<Outcome, String> {
    let (path, body) = request(api, plan);
    let (mut reader, head) = open(target, "POST", path, Some(&body.to_string()))?;
    let status = head.status;
    if status == 429 {
        return Ok(Outcome::Rejected);
    }
    // What the server counts as input, for the answers that do not say (the OpenAI
    // API's errors, an abandoned stream).
    let input = count_tokens(&plan.prompt);
    if !plan.stream || plan.embed.is_some() || status != 200 {
        let bytes = reader.body(&head).map_err(|e| format!("body: {e}"))?;
        let value: Value =
            serde_json::from_slice(&bytes).map_err(|e| format!("response JSON: {e}"))?;
        let (input, output) = match value.get("usage") {
            Some(_) => usage(&value),
            None => (input, 0),
        };
        return Ok(match status {
            200 => Outcome::Ok { input, output },
            500 => Outcome::Error { input, output },
            other => Outcome::Failed(format!("HTTP {other}: {value}")),
        });
    }
    let mut pending = String::new();
    let mut received = 0u64;
    let mut finished = false;
    let mut walked_away = false;
    // The end of the stream, a reset after walking away, or a broken chunk all end it.
    while let Ok(Some(data)) = reader.chunk() {
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
                let (input, output) = match value.get("usage") {
                    Some(_) => usage(&value),
                    None => (input, received),
                };
                return Ok(Outcome::Error { input, output });
            }
            let choice = &value["choices"][0];
            match api {
                // The legacy API's last chunk has no text, the finish reason and usage.
                Api::Completions if choice["finish_reason"].is_string() => {
                    let (input, output) = usage(&value);
                    return Ok(Outcome::Ok { input, output });
                }
                Api::Completions => received += 1,
                // A chat stream's last token carries the finish reason; the usage chunk
                // (no choices) follows.
                Api::Chat if value["usage"].is_object() && finished => {
                    let (input, output) = usage(&value);
                    return Ok(Outcome::Ok { input, output });
                }
                Api::Chat => {
                    if choice["delta"]["content"].is_string() {
                        received += 1;
                    }
                    finished |= choice["finish_reason"].is_string();
                }
            }
        }
        if !walked_away && plan.abort_after.is_some_and(|k| received >= k) {
            // Walk away: the server sees the end of our side of the connection and
            // cancels. Reading on until it closes shows every token it produced.
            walked_away = true;
            let _ = reader.get_mut().shutdown(Shutdown::Write);
        }
    }
    if walked_away {
        return Ok(Outcome::Aborted {
            input,
            output: received,
        });
    }
    Err("stream ended without a final chunk".to_owned())
}

fn models(target: SocketAddr) -> Result<Vec<String>, String> {
    let (mut reader, head) = open(target, "GET", "/v1/models", None)
        .map_err(|e| format!("cannot reach the server: {e}"))?;
    let bytes = reader.body(&head).map_err(|e| format!("body: {e}"))?;
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

/// Running totals for the progress line.
#[derive(Debug, Default)]
struct Progress {
    done: AtomicU64,
    errors: AtomicU64,
    aborted: AtomicU64,
}

impl Progress {
    fn add(&self, outcome: &Outcome) {
        self.done.fetch_add(1, Ordering::Relaxed);
        match outcome {
            Outcome::Ok { .. } => {}
            Outcome::Aborted { .. } => {
                self.aborted.fetch_add(1, Ordering::Relaxed);
            }
            Outcome::Error { .. } | Outcome::Rejected | Outcome::Failed(_) => {
                self.errors.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    fn line(&self, elapsed: Duration) -> String {
        let done = self.done.load(Ordering::Relaxed);
        format!(
            "load-generator: {done} requests done, {:.1} req/s, {} errors, {} aborted",
            done as f64 / elapsed.as_secs_f64().max(1e-3),
            self.errors.load(Ordering::Relaxed),
            self.aborted.load(Ordering::Relaxed)
        )
    }

    /// Prints a line about once a second until `finished` says the run is over, then a
    /// last one.
    fn report(&self, started: Instant, finished: mpsc::Receiver<()>) {
        loop {
            let last =
                finished.recv_timeout(Duration::from_secs(1)) != Err(RecvTimeoutError::Timeout);
            eprintln!("{}", self.line(started.elapsed()));
            if last {
                return;
            }
        }
    }
}

fn run(mut args: Args) -> Result<(BTreeMap<String, ModelSummary>, Duration), String> {
    if args.models.is_empty() {
        args.models = models(args.target)?;
    }
    let show_progress = !args.quiet && (args.progress || std::io::stderr().is_terminal());
    let args = &args;
    let next = AtomicU64::new(0);
    let summary: Mutex<BTreeMap<String, ModelSummary>> = Mutex::default();
    let progress = Progress::default();
    let started = Instant::now();
    let deadline = args.duration.map(|d| started + d);
    let (finish, finished) = mpsc::channel();
    let elapsed = std::thread::scope(|s| {
        let reporter = show_progress.then(|| {
            let progress = &progress;
            s.spawn(move || progress.report(started, finished))
        });
        let workers: Vec<_> = (0..args.concurrency)
            .map(|_| {
                s.spawn(|| loop {
                    if deadline.is_some_and(|d| Instant::now() >= d) {
                        return;
                    }
                    let index = next.fetch_add(1, Ordering::Relaxed);
                    if deadline.is_none() && index >= args.requests {
                        return;
                    }
                    let plan = Plan::new(args, index);
                    let outcome =
                        send(args.target, args.api, &plan).unwrap_or_else(Outcome::Failed);
                    if let Outcome::Failed(message) = &outcome {
                        eprintln!("request {index} ({}): {message}", plan.model);
                    }
                    progress.add(&outcome);
                    if let Ok(mut summary) = summary.lock() {
                        let entry = summary.entry(plan.model.clone()).or_default();
                        entry.add(&outcome, plan.embed.is_some());
                    }
                })
            })
            .collect();
        let mut result = Ok(());
        for worker in workers {
            if worker.join().is_err() {
                result = Err("a worker panicked".to_owned());
            }
        }
        let elapsed = started.elapsed();
        let _ = finish.send(());
        if let Some(reporter) = reporter {
            let _ = reporter.join();
        }
        result.map(|()| elapsed)
    })?;
    let summary = summary.into_inner().map_err(|e| e.to_string())?;
    Ok((summary, elapsed))
}

fn print(summary: &BTreeMap<String, ModelSummary>, elapsed: Duration, as_json: bool) {
    if as_json {
        let models: serde_json::Map<String, Value> = summary
            .iter()
            .map(|(model, s)| {
                let mut value = s.all.json();
                value["embeddings"] = s.embeddings.json();
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
        "{:<26} {:>8} {:>6} {:>6} {:>8} {:>9} {:>7} {:>10} {:>10} {:>10}",
        "model",
        "requests",
        "ok",
        "error",
        "aborted",
        "rejected",
        "failed",
        "tokens_in",
        "tokens_out",
        "embeddings"
    );
    let mut total = Counts::default();
    for (model, s) in summary {
        let a = &s.all;
        println!(
            "{:<26} {:>8} {:>6} {:>6} {:>8} {:>9} {:>7} {:>10} {:>10} {:>10}",
            model,
            a.requests,
            a.ok,
            a.error,
            a.aborted,
            a.rejected,
            a.failed,
            a.input_tokens,
            a.output_tokens,
            s.embeddings.requests
        );
        total.requests += a.requests;
        total.input_tokens += a.input_tokens;
        total.output_tokens += a.output_tokens;
    }
    println!(
        "{} requests in {:.1} s; compare with llm_requests_total and llm_tokens_total on /metrics \
         (the embeddings column: requests of the row sent to /v1/embeddings, counted in the others)",
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
    match run(args) {
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
