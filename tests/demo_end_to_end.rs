//! The demo server under seeded load: /metrics agrees exactly with what the client saw;
//! and its OpenAI API (chat completions, embeddings, models, errors) answers exactly as
//! that API says, over real HTTP.

use std::io::Write;
use std::process::Command;

use llm_span_testkit::demo::{count_tokens, embedding, fake_token, natural_length, stable_hash};
use llm_span_testkit::http;
use llm_span_testkit::process::{self, binary, unix_time, DemoServer, Load};
use llm_span_testkit::prom::{scrape, Scrape};
use serde_json::{json, Value};

const MODELS: [&str; 2] = ["fast", "slow"];

/// The demo's prices, USD per million tokens (cached input at the input price), and the
/// same in picodollars per token: (model, input, output).
const PRICE_FILE: &str = "fast 0.5 - 1.5\nslow 2.25 - 7.125\n";
const PICO_PER_TOKEN: [(&str, u128, u128); 2] =
    [("fast", 500_000, 1_500_000), ("slow", 2_250_000, 7_125_000)];

fn prices() -> String {
    let path = std::env::temp_dir().join(format!("llm-demo-prices-{}.txt", std::process::id()));
    std::fs::write(&path, PRICE_FILE).expect("write the price file");
    path.display().to_string()
}

fn start() -> DemoServer {
    let prices = prices();
    DemoServer::start(&[
        "--prices",
        &prices,
        "--model",
        "fast:0.05:2:8",
        "--model",
        "slow:3:6:2",
        "--error-rate",
        "0.05",
        "--seed",
        "3",
    ])
}

/// The seeded load of these tests: `requests` from 8 clients, 30 % of the streaming ones
/// walking away mid-stream.
fn load(server: &DemoServer, requests: u64) -> Value {
    load_with(server, requests, &[])
}

/// The seeded load of [`load`] with `extra` flags (`--api completions`, `--embeddings-share P`).
fn load_with(server: &DemoServer, requests: u64, extra: &[&str]) -> Value {
    let spec = Load {
        requests,
        concurrency: 8,
        seed: 11,
        abort_share: 0.3,
    };
    process::load(server, spec, extra)
}

/// A model's count `field` in the load generator's summary; `embeddings` for the
/// embeddings requests' own counts.
fn count(summary: &Value, model: &str, field: &str) -> f64 {
    let s = &summary["models"][model];
    s[field]
        .as_u64()
        .unwrap_or_else(|| panic!("{model}.{field} in {s}")) as f64
}

fn embeddings_count(summary: &Value, model: &str, field: &str) -> f64 {
    let s = &summary["models"][model]["embeddings"];
    s[field]
        .as_u64()
        .unwrap_or_else(|| panic!("{model}.embeddings.{field} in {s}")) as f64
}

/// A model's series of `name` with `labels` besides `model`; panics when it is missing.
fn series(m: &Scrape, name: &str, model: &str, labels: &[(&str, &str)]) -> f64 {
    let mut all = vec![("model", model)];
    all.extend_from_slice(labels);
    m.value(name, &all)
        .unwrap_or_else(|| panic!("no {name}{all:?}"))
}

/// The tokens on /metrics are the tokens the client saw, model by model: input tokens of
/// every request, output tokens from `usage` or the chunks received before an abort.
fn assert_tokens_match(summary: &Value, m: &Scrape) {
    for model in MODELS {
        let n = |field: &str| count(summary, model, field);
        assert_eq!(n("failed"), 0.0, "{summary}");
        assert_eq!(n("rejected"), 0.0, "{summary}");
        assert_eq!(
            series(m, "llm_tokens_total", model, &[("type", "input")]),
            n("input_tokens"),
            "{model} input"
        );
        assert_eq!(
            series(m, "llm_tokens_total", model, &[("type", "output")]),
            n("output_tokens"),
            "{model} output"
        );
        // Every request counts once, whatever its status.
        assert_eq!(
            m.sum("llm_requests_total", &[("model", model)]),
            n("requests"),
            "{model} requests"
        );
        assert_eq!(
            series(m, "llm_active_requests", model, &[]),
            0.0,
            "{model} active"
        );
        assert_eq!(
            series(m, "llm_queue_depth", model, &[]),
            0.0,
            "{model} queue depth"
        );
        assert_eq!(
            series(m, "llm_queue_wait_seconds_count", model, &[]),
            n("requests"),
            "{model} queue waits"
        );
    }
    assert_eq!(m.sum("llm_layer_anomalies_total", &[]), 0.0);
}

/// Requests by status on /metrics are the client's outcomes, model by model, and the
/// histograms count what they describe. An embeddings request is `ok` when answered and
/// has no first token.
fn assert_statuses_match(summary: &Value, m: &Scrape) {
    for model in MODELS {
        let n = |field: &str| count(summary, model, field);
        let status = |status: &str| series(m, "llm_requests_total", model, &[("status", status)]);
        assert_eq!(status("ok"), n("ok"), "{model} ok");
        assert_eq!(status("error"), n("error"), "{model} error");
        assert_eq!(status("cancelled"), n("aborted"), "{model} cancelled");
        // Latency describes successful requests; TTFT every request that produced a token
        // (failures happen in prefill, aborts come after at least one token).
        assert_eq!(
            series(m, "llm_e2e_latency_seconds_count", model, &[]),
            n("ok"),
            "{model} e2e count"
        );
        assert_eq!(
            series(m, "llm_ttft_seconds_count", model, &[]),
            n("ok") - embeddings_count(summary, model, "ok") + n("aborted"),
            "{model} ttft count"
        );
    }
}

/// Cost in dollars, exact: the price table times the tokens the client saw.
fn assert_cost_matches(summary: &Value, server: &DemoServer) {
    let body = http::get(server.metrics, "/metrics").body;
    for (model, input_price, output_price) in PICO_PER_TOKEN {
        let s = &summary["models"][model];
        let tokens = |field: &str| u128::from(s[field].as_u64().expect("tokens"));
        let pico = tokens("input_tokens") * input_price + tokens("output_tokens") * output_price;
        let (whole, fraction) = (pico / 1_000_000_000_000, pico % 1_000_000_000_000);
        let usd = format!("{whole}.{fraction:012}");
        let usd = usd.trim_end_matches('0').trim_end_matches('.');
        let line = format!("llm_cost_usd_total{{model=\"{model}\"}} {usd}\n");
        assert!(body.contains(&line), "{line:?} not in\n{body}");
    }
}

/// The load speaks the chat API (its default): what /metrics says is what the clients saw.
#[test]
fn metrics_match_the_client_side_totals() {
    let server = start();
    let summary = load(&server, 80);
    let m = scrape(server.metrics);
    assert_tokens_match(&summary, &m);
    assert_statuses_match(&summary, &m);
    assert_cost_matches(&summary, &server);
    let total: f64 = MODELS
        .iter()
        .map(|model| count(&summary, model, "requests"))
        .sum();
    assert_eq!(total, 80.0);
    assert!(
        summary["models"]["fast"]["aborted"].as_u64() > Some(0),
        "the load aborts some streams"
    );
    let mean_ttft = |model| {
        m.value("llm_ttft_seconds_sum", &[("model", model)])
            .expect("sum")
            / m.value("llm_ttft_seconds_count", &[("model", model)])
                .expect("count")
    };
    assert!(
        mean_ttft("slow") > mean_ttft("fast"),
        "slow {} vs fast {}",
        mean_ttft("slow"),
        mean_ttft("fast")
    );
}

/// The same load on the legacy `POST /v1/completions` (`--api completions`).
#[test]
fn metrics_match_the_client_side_totals_on_the_legacy_api() {
    let server = start();
    let summary = load_with(&server, 60, &["--api", "completions"]);
    let m = scrape(server.metrics);
    assert_tokens_match(&summary, &m);
    assert_statuses_match(&summary, &m);
    assert_cost_matches(&summary, &server);
    assert!(
        summary["models"]["fast"]["aborted"].as_u64() > Some(0),
        "the load aborts some streams"
    );
}

/// A third of the load goes to `POST /v1/embeddings`: every token still counts exactly.
#[test]
fn tokens_match_with_embeddings_in_the_load() {
    let server = start();
    let summary = load_with(&server, 60, &["--embeddings-share", "0.3"]);
    let m = scrape(server.metrics);
    assert_tokens_match(&summary, &m);
    assert_cost_matches(&summary, &server);
    for model in MODELS {
        assert!(
            embeddings_count(&summary, model, "ok") > 0.0,
            "{model}: {summary}"
        );
        assert_eq!(embeddings_count(&summary, model, "output_tokens"), 0.0);
    }
}

/// The same load, by status: an answered embeddings request is `ok`, never cancelled for
/// having no output, and feeds no TTFT.
#[test]
fn statuses_match_with_embeddings_in_the_load() {
    let server = start();
    let summary = load_with(&server, 60, &["--embeddings-share", "0.3"]);
    let m = scrape(server.metrics);
    assert_statuses_match(&summary, &m);
}

/// A seed fixes the plan: models, prompts, lengths, which requests stream. Not how many
/// tokens an abandoned stream still gets (that depends on when the server notices the
/// client left), so this run abandons none: with `--abort-share 0.3` the output tokens
/// differed in 2 of 12 runs.
#[test]
fn a_fixed_seed_reproduces_the_token_totals() {
    let run = || load_with(&start(), 30, &["--abort-share", "0"]);
    let (first, second) = (run(), run());
    for model in MODELS {
        for field in ["input_tokens", "output_tokens", "ok", "error", "aborted"] {
            assert_eq!(
                first["models"][model][field], second["models"][model][field],
                "{model}.{field}"
            );
        }
    }
}

/// Progress lines on stderr only when asked for (stderr is a pipe here, not a terminal),
/// never with `--quiet`; the summary on stdout comes either way.
#[test]
fn the_load_generator_reports_progress_only_when_asked() {
    let server = start();
    let target = format!("http://{}", server.api);
    let run = |extra: &[&str]| {
        let output = Command::new(binary("llm-span-testkit", "load-generator"))
            .args(["--target", &target, "--requests", "20", "--json"])
            .args(extra)
            .output()
            .expect("run load-generator");
        assert!(output.status.success(), "{output:?}");
        let summary: Value = serde_json::from_slice(&output.stdout).expect("summary JSON");
        let total = |field: &str| -> u64 {
            MODELS
                .iter()
                .map(|m| summary["models"][m][field].as_u64().unwrap_or(0))
                .sum()
        };
        assert_eq!(total("requests"), 20, "{summary}");
        let errors = total("error") + total("rejected") + total("failed");
        let stderr = String::from_utf8(output.stderr).expect("UTF-8");
        (stderr, errors, total("aborted"))
    };
    assert_eq!(
        run(&[]).0,
        "",
        "nothing extra when stderr is not a terminal"
    );
    assert_eq!(run(&["--progress", "--quiet"]).0, "", "--quiet wins");
    let (progress, errors, aborted) = run(&["--progress"]);
    let last = progress.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("load-generator: 20 requests done, ")
            && last.contains(" req/s, ")
            && last.ends_with(&format!(" {errors} errors, {aborted} aborted")),
        "{progress}"
    );
}

#[test]
fn bad_requests_get_clear_errors_and_are_counted() {
    let server = start();
    let post = |body: &str| {
        let response = http::request(
            server.api,
            "POST",
            "/v1/completions",
            &[("Content-Type", "application/json")],
            Some(body),
        );
        (response.status, response.body)
    };
    let cases = [
        ("{not json", 400, "invalid_request"),
        (r#"{"prompt":"hi"}"#, 400, "missing field \\\"model\\\""),
        (r#"{"model":"fast","prompt":7}"#, 400, "must be a string"),
        (
            r#"{"model":"fast","prompt":"hi","max_tokens":0}"#,
            400,
            "max_tokens",
        ),
        (
            r#"{"model":"gpt-unknown","prompt":"hi"}"#,
            404,
            "model_not_found",
        ),
    ];
    for (body, status, needle) in cases {
        let (got, text) = post(body);
        assert_eq!(got, status, "{body}: {text}");
        assert!(text.contains(needle), "{body}: {text}");
        let _: Value = serde_json::from_str(&text).expect("errors are JSON");
    }
    let long_prompt = "word ".repeat(5000);
    let (got, text) = post(&format!(r#"{{"model":"fast","prompt":"{long_prompt}"}}"#));
    assert_eq!(got, 413, "{text}");
    assert!(text.contains("prompt_too_long"));
    assert_eq!(http::get(server.api, "/v1/completions").status, 405);
    assert_eq!(http::get(server.api, "/nowhere").status, 404);

    // Still serving.
    let (got, text) = post(r#"{"model":"fast","prompt":"hello there","max_tokens":4}"#);
    assert_eq!(got, 200, "{text}");
    let http::Response {
        status: got,
        body: text,
        ..
    } = http::get(server.api, "/v1/models");
    assert_eq!(got, 200);
    assert!(
        text.contains("\"fast\"") && text.contains("\"slow\""),
        "{text}"
    );

    let m = scrape(server.metrics);
    // Unusable model names never become labels: they count under "unknown".
    assert_eq!(
        m.value(
            "llm_requests_total",
            &[("model", "unknown"), ("status", "error")]
        ),
        Some(5.0)
    );
    assert_eq!(
        m.value(
            "llm_requests_total",
            &[("model", "fast"), ("status", "error")]
        ),
        Some(1.0)
    );
    assert_eq!(
        m.value("llm_requests_total", &[("model", "fast"), ("status", "ok")]),
        Some(1.0)
    );
    assert!(m
        .label_values("llm_requests_total", "model")
        .iter()
        .all(|v| v != "gpt-unknown"));
    // Rejected prompts were never processed: their tokens do not count.
    assert_eq!(
        m.value("llm_tokens_total", &[("model", "fast"), ("type", "input")]),
        Some(2.0)
    );
}

// ---------------------------------------------------------------------------------------
// The OpenAI API: POST /v1/chat/completions, POST /v1/embeddings, GET /v1/models.

/// A server whose requests never fail, so that every answer is known in advance.
fn start_reliable(extra: &[&str]) -> DemoServer {
    let mut args = vec![
        "--model",
        "fast:0.05:2:8",
        "--model",
        "slow:3:6:2",
        "--error-rate",
        "0",
    ];
    args.extend_from_slice(extra);
    DemoServer::start(&args)
}

/// `POST path` with a JSON body: the status, the parsed body (the raw text when it is not
/// JSON) and the raw body.
fn post_json(server: &DemoServer, path: &str, body: &Value) -> (u16, Value, String) {
    let response = http::request(
        server.api,
        "POST",
        path,
        &[("Content-Type", "application/json")],
        Some(&body.to_string()),
    );
    let value = serde_json::from_str(&response.body).unwrap_or(Value::Null);
    (response.status, value, response.body)
}

/// The payloads of an SSE body, in order: every event must be one `data: ...` line.
fn sse_payloads(body: &str) -> Vec<String> {
    assert!(body.ends_with("\n\n"), "{body:?}");
    body.trim_end_matches("\n\n")
        .split("\n\n")
        .map(|event| {
            let payload = event
                .strip_prefix("data: ")
                .unwrap_or_else(|| panic!("not a data line: {event:?}"));
            assert!(!payload.contains('\n'), "{event:?}");
            payload.to_owned()
        })
        .collect()
}

/// What the demo's fake model answers to `prompt` within `max_tokens`: its tokens and
/// the finish reason.
fn expected_answer(prompt: &str, max_tokens: u64) -> (Vec<String>, &'static str) {
    let seed = stable_hash(prompt);
    let natural = natural_length(seed);
    let tokens = (0..natural.min(max_tokens))
        .map(|i| fake_token(seed, i))
        .collect();
    (
        tokens,
        if natural > max_tokens {
            "length"
        } else {
            "stop"
        },
    )
}

fn now() -> u64 {
    unix_time().as_secs()
}

/// `id` and `created` of an answer: an id with `prefix`, a time during the test.
fn id_and_created(body: &Value, prefix: &str, since: u64) -> (String, u64) {
    let id = body["id"]
        .as_str()
        .unwrap_or_else(|| panic!("id in {body}"));
    assert!(id.starts_with(prefix), "{id}");
    let created = body["created"]
        .as_u64()
        .unwrap_or_else(|| panic!("created in {body}"));
    assert!((since..=now()).contains(&created), "{created}");
    (id.to_owned(), created)
}

fn usage(prompt_tokens: u64, completion_tokens: u64) -> Value {
    json!({
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    })
}

#[test]
fn models_are_listed_in_the_openai_shape() {
    let since = now();
    let server = start_reliable(&[]);
    let response = http::get(server.api, "/v1/models");
    assert_eq!(response.status, 200);
    let body: Value = serde_json::from_str(&response.body).expect("JSON");
    let created = body["data"][0]["created"].as_u64().expect("created");
    assert!((since..=now()).contains(&created), "{created}");
    let model = |id: &str| json!({"id": id, "object": "model", "created": created, "owned_by": "llm-span-demo"});
    assert_eq!(
        body,
        json!({"object": "list", "data": [model("fast"), model("slow")]})
    );
}

/// Unary and streamed chat completions, with and without the usage chunk, answer exactly
/// as the OpenAI API does, and /metrics counts exactly those requests and tokens.
#[test]
fn chat_completions_answer_in_the_openai_shape_and_count_exactly() {
    let since = now();
    let server = start_reliable(&[]);
    let mut input_tokens = 0;
    let mut output_tokens = 0;

    // Unary; the content as a string and as text parts, the newer max_completion_tokens.
    let messages = json!([
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": [{"type": "text", "text": "hello there"}, {"type": "text", "text": "general kenobi"}]},
    ]);
    let prompt = "You are terse.\nhello there\ngeneral kenobi";
    let request = json!({"model": "fast", "messages": messages, "max_completion_tokens": 5});
    let (status, body, text) = post_json(&server, "/v1/chat/completions", &request);
    assert_eq!(status, 200, "{text}");
    let (tokens, finish_reason) = expected_answer(prompt, 5);
    assert_eq!((tokens.len(), finish_reason), (5, "length"));
    let (id, created) = id_and_created(&body, "chatcmpl-", since);
    assert_eq!(
        body,
        json!({
            "id": id, "object": "chat.completion", "created": created, "model": "fast",
            "choices": [{
                "index": 0, "message": {"role": "assistant", "content": tokens.concat()},
                "logprobs": null, "finish_reason": "length",
            }],
            "usage": usage(7, 5),
        })
    );
    input_tokens += 7;
    output_tokens += 5;

    // Streamed with the usage chunk; without max_tokens the answer stops by itself.
    let prompt = "tell me a story about metrics";
    let request = json!({
        "model": "fast", "messages": [{"role": "user", "content": prompt}],
        "stream": true, "stream_options": {"include_usage": true},
    });
    let (status, _, text) = post_json(&server, "/v1/chat/completions", &request);
    assert_eq!(status, 200, "{text}");
    let (tokens, finish_reason) = expected_answer(prompt, 4096);
    assert_eq!(finish_reason, "stop");
    let n = tokens.len();
    let payloads = sse_payloads(&text);
    assert_eq!(payloads.len(), n + 2, "{text}");
    assert_eq!(payloads[n + 1], "[DONE]");
    let chunks: Vec<Value> = payloads[..=n]
        .iter()
        .map(|p| serde_json::from_str(p).expect("chunk JSON"))
        .collect();
    let (id, created) = id_and_created(&chunks[0], "chatcmpl-", since);
    let chunk = |choices: Value, usage: Value| {
        json!({
            "id": id, "object": "chat.completion.chunk", "created": created, "model": "fast",
            "choices": choices, "usage": usage,
        })
    };
    for (i, token) in tokens.iter().enumerate() {
        let delta = match i {
            0 => json!({"role": "assistant", "content": token}),
            _ => json!({"content": token}),
        };
        let finish = (i + 1 == n).then_some("stop");
        let choice =
            json!([{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}]);
        assert_eq!(chunks[i], chunk(choice, Value::Null), "chunk {i}");
    }
    let words = count_tokens(prompt);
    assert_eq!(
        chunks[n],
        chunk(json!([]), usage(words, n as u64)),
        "the usage chunk"
    );
    input_tokens += words;
    output_tokens += n as u64;

    // Streamed without the usage chunk, cut by max_tokens: no `usage` key at all.
    let prompt = "a short one";
    let request = json!({
        "model": "fast", "messages": [{"role": "user", "content": prompt}],
        "stream": true, "max_tokens": 3,
    });
    let (status, _, text) = post_json(&server, "/v1/chat/completions", &request);
    assert_eq!(status, 200, "{text}");
    let (tokens, _) = expected_answer(prompt, 3);
    let payloads = sse_payloads(&text);
    assert_eq!(payloads.len(), 4, "{text}");
    assert_eq!(payloads[3], "[DONE]");
    let mut content = String::new();
    for (i, payload) in payloads[..3].iter().enumerate() {
        let chunk: Value = serde_json::from_str(payload).expect("chunk JSON");
        assert_eq!(chunk["object"], "chat.completion.chunk");
        assert!(chunk.get("usage").is_none(), "{chunk}");
        let finish = if i == 2 { json!("length") } else { Value::Null };
        assert_eq!(chunk["choices"][0]["finish_reason"], finish, "{chunk}");
        content.push_str(
            chunk["choices"][0]["delta"]["content"]
                .as_str()
                .expect("content"),
        );
    }
    assert_eq!(content, tokens.concat());
    input_tokens += 3;
    output_tokens += 3;

    let m = scrape(server.metrics);
    let requests = |status: &str| series(&m, "llm_requests_total", "fast", &[("status", status)]);
    assert_eq!(
        (requests("ok"), requests("error"), requests("cancelled")),
        (3.0, 0.0, 0.0)
    );
    let tokens = |kind: &str| series(&m, "llm_tokens_total", "fast", &[("type", kind)]);
    assert_eq!(tokens("input"), input_tokens as f64);
    assert_eq!(tokens("output"), output_tokens as f64);
    assert_eq!(series(&m, "llm_ttft_seconds_count", "fast", &[]), 3.0);
    let reasons = |reason: &str| {
        series(
            &m,
            "llm_finish_reasons_total",
            "fast",
            &[("reason", reason)],
        )
    };
    assert_eq!((reasons("stop"), reasons("length")), (1.0, 2.0));
    assert_eq!(m.sum("llm_requests_total", &[("model", "unknown")]), 0.0);
    assert_eq!(m.sum("llm_layer_anomalies_total", &[]), 0.0);
}

/// The embeddings of one request: `usage.prompt_tokens`, and each vector the demo's own
/// function of its text, component by component as the `f32` the server sent (JSON's
/// decimal is parsed back to the nearest `f64`, which rounds to the same `f32`).
fn assert_embeddings(body: &Value, texts: &[&str], dimensions: usize, prompt_tokens: u64) {
    let mut shape = body.clone();
    let mut vectors = Vec::new();
    for item in shape["data"].as_array_mut().expect("data") {
        let vector = item["embedding"].take();
        let vector: Vec<f32> = vector
            .as_array()
            .expect("a float array")
            .iter()
            .map(|x| x.as_f64().expect("a number") as f32)
            .collect();
        vectors.push(vector);
    }
    let data: Vec<Value> = (0..texts.len())
        .map(|index| json!({"object": "embedding", "index": index, "embedding": null}))
        .collect();
    let usage = json!({"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens});
    assert_eq!(
        shape,
        json!({"object": "list", "data": data, "model": "slow", "usage": usage})
    );
    for (vector, text) in vectors.iter().zip(texts) {
        assert_eq!(vector.len(), dimensions);
        assert_eq!(*vector, embedding(text, dimensions), "{text}");
        let norm: f64 = vector.iter().map(|x| f64::from(*x).powi(2)).sum();
        assert!((norm - 1.0).abs() < 1e-5, "a unit vector: {norm}");
    }
}

/// `POST /v1/embeddings` with a string, strings, token arrays and `dimensions`: exact
/// usage, vectors of the asked length, the same vector for the same text every time.
fn send_embeddings(server: &DemoServer) -> u64 {
    let mut input_tokens = 0;
    let text = "the quick brown fox jumps";
    let request = json!({"model": "slow", "input": text});
    let (status, first, raw) = post_json(server, "/v1/embeddings", &request);
    assert_eq!(status, 200, "{raw}");
    assert_embeddings(&first, &[text], 16, 5);
    input_tokens += 5;
    // Deterministic: the same input, the same answer.
    let (_, again, _) = post_json(server, "/v1/embeddings", &request);
    assert_eq!(again, first);
    input_tokens += 5;

    let texts = ["the quick brown fox jumps", "over the lazy dog", "again"];
    let request = json!({"model": "slow", "input": texts, "dimensions": 8});
    let (status, body, raw) = post_json(server, "/v1/embeddings", &request);
    assert_eq!(status, 200, "{raw}");
    assert_embeddings(&body, &texts, 8, 10);
    input_tokens += 10;

    // Token arrays, one and several: counted by their length.
    let request = json!({"model": "slow", "input": [[1, 2, 3], [40, 50]]});
    let (status, body, raw) = post_json(server, "/v1/embeddings", &request);
    assert_eq!(status, 200, "{raw}");
    assert_embeddings(&body, &["1 2 3", "40 50"], 16, 5);
    input_tokens += 5;
    let request = json!({"model": "slow", "input": [7, 8, 9, 10]});
    let (status, body, raw) = post_json(server, "/v1/embeddings", &request);
    assert_eq!(status, 200, "{raw}");
    assert_embeddings(&body, &["7 8 9 10"], 16, 4);
    input_tokens += 4;
    input_tokens
}

#[test]
fn embeddings_answer_in_the_openai_shape_and_count_their_input_tokens() {
    let server = start_reliable(&[]);
    let input_tokens = send_embeddings(&server);

    // base64, as OpenAI's Python client asks by default: the same f32s, little-endian.
    let request = json!({"model": "slow", "input": "hello", "encoding_format": "base64"});
    let (status, body, raw) = post_json(&server, "/v1/embeddings", &request);
    assert_eq!(status, 200, "{raw}");
    let expected: Vec<u8> = embedding("hello", 16)
        .iter()
        .flat_map(|x| x.to_le_bytes())
        .collect();
    use base64::Engine as _;
    assert_eq!(
        body["data"][0]["embedding"],
        json!(base64::prelude::BASE64_STANDARD.encode(expected))
    );
    let input_tokens = input_tokens + 1;

    let m = scrape(server.metrics);
    assert_eq!(
        series(&m, "llm_tokens_total", "slow", &[("type", "input")]),
        input_tokens as f64
    );
    assert_eq!(m.sum("llm_tokens_total", &[("type", "output")]), 0.0);
    // Six requests, whatever status the layer gives them, and none under another model.
    assert_eq!(m.sum("llm_requests_total", &[("model", "slow")]), 6.0);
    assert_eq!(m.sum("llm_requests_total", &[]), 6.0);
    assert_eq!(m.sum("llm_ttft_seconds_count", &[]), 0.0);
    assert_eq!(m.sum("llm_layer_anomalies_total", &[]), 0.0);
}

/// Answered embeddings requests are `ok`: never cancelled for having no output tokens.
#[test]
fn answered_embeddings_count_as_ok() {
    let server = start_reliable(&[]);
    send_embeddings(&server);
    let m = scrape(server.metrics);
    let requests = |status: &str| series(&m, "llm_requests_total", "slow", &[("status", status)]);
    assert_eq!(
        (requests("ok"), requests("error"), requests("cancelled")),
        (5.0, 0.0, 0.0)
    );
    assert_eq!(
        series(&m, "llm_e2e_latency_seconds_count", "slow", &[]),
        5.0
    );
    assert_eq!(m.sum("llm_ttft_seconds_count", &[]), 0.0);
}

/// An OpenAI error object.
fn error_object(kind: &str, code: &str, param: Option<&str>, message: &str) -> Value {
    json!({"error": {"message": message, "type": kind, "param": param, "code": code}})
}

/// Invalid requests, unknown models and prompts over the limit get OpenAI error objects
/// with the status OpenAI gives them, and count as errors (under `model="unknown"` when
/// no served model was named).
#[test]
fn openai_errors_are_error_objects_with_the_right_status() {
    let server = start_reliable(&["--max-prompt-tokens", "8"]);
    let user = |text: &str| json!([{"role": "user", "content": text}]);
    let invalid = "invalid_request_error";
    let cases = [
        (
            "/v1/chat/completions",
            json!({"model": "gpt-unknown", "messages": user("hi")}),
            404,
            error_object(invalid, "model_not_found", Some("model"), "model \"gpt-unknown\" is not served; see GET /v1/models"),
        ),
        (
            "/v1/chat/completions",
            json!({"model": "fast"}),
            400,
            error_object(invalid, "invalid_request", Some("messages"), "missing field \"messages\""),
        ),
        (
            "/v1/chat/completions",
            json!({"model": "fast", "messages": []}),
            400,
            error_object(invalid, "invalid_request", Some("messages"), "messages must not be empty"),
        ),
        (
            "/v1/chat/completions",
            json!({"model": "fast", "messages": [{"role": "robot", "content": "hi"}]}),
            400,
            error_object(invalid, "invalid_request", Some("messages[0].role"), "messages[0].role must be one of system, developer, user, assistant, tool, function"),
        ),
        (
            "/v1/chat/completions",
            json!({"model": "fast", "messages": user("hi"), "max_tokens": 0}),
            400,
            error_object(invalid, "invalid_request", Some("max_tokens"), "max_tokens must be an integer from 1 to 4096"),
        ),
        (
            "/v1/chat/completions",
            json!({"model": "fast", "messages": user("hi"), "stream": true, "stream_options": {"include_usage": "yes"}}),
            400,
            error_object(invalid, "invalid_request", Some("stream_options"), "stream_options.include_usage must be a boolean"),
        ),
        (
            "/v1/embeddings",
            json!({"model": "fast", "input": []}),
            400,
            error_object(invalid, "invalid_request", Some("input"), "input must not be empty"),
        ),
        (
            "/v1/embeddings",
            json!({"model": "fast", "input": "hi", "dimensions": 0}),
            400,
            error_object(invalid, "invalid_request", Some("dimensions"), "dimensions must be an integer from 1 to 4096"),
        ),
        (
            "/v1/embeddings",
            json!({"model": "ada", "input": "hi"}),
            404,
            error_object(invalid, "model_not_found", Some("model"), "model \"ada\" is not served; see GET /v1/models"),
        ),
        // Over --max-prompt-tokens: the OpenAI API's 400 (the legacy API answers 413).
        (
            "/v1/chat/completions",
            json!({"model": "fast", "messages": user("one two three four five six seven eight nine")}),
            400,
            error_object(invalid, "context_length_exceeded", Some("messages"), "prompt has 9 tokens, the limit is 8"),
        ),
        (
            "/v1/embeddings",
            json!({"model": "slow", "input": ["one two three four five", "six seven eight nine"]}),
            400,
            error_object(invalid, "context_length_exceeded", Some("input"), "prompt has 9 tokens, the limit is 8"),
        ),
    ];
    for (path, request, status, error) in &cases {
        let (got, body, raw) = post_json(&server, path, request);
        assert_eq!((got, &body), (*status, error), "{path} {request}: {raw}");
    }
    // Not JSON: no param.
    let response = http::request(
        server.api,
        "POST",
        "/v1/chat/completions",
        &[],
        Some("{oops"),
    );
    assert_eq!(response.status, 400, "{}", response.body);
    let body: Value = serde_json::from_str(&response.body).expect("JSON");
    assert_eq!(body["error"]["type"], invalid);
    assert_eq!(body["error"]["param"], Value::Null);
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("invalid JSON: ")),
        "{body}"
    );
    assert_eq!(http::get(server.api, "/v1/chat/completions").status, 405);
    assert_eq!(http::get(server.api, "/v1/embeddings").status, 405);

    let m = scrape(server.metrics);
    let errors = |model: &str| series(&m, "llm_requests_total", model, &[("status", "error")]);
    // 10 without a served model (2 unknown models, 7 invalid bodies, the bad JSON), and
    // one for each model over the prompt limit.
    assert_eq!(errors("unknown"), 10.0);
    assert_eq!(errors("fast"), 1.0);
    assert_eq!(errors("slow"), 1.0);
    assert_eq!(m.sum("llm_requests_total", &[]), 12.0);
    // Rejected before the engine: their tokens never count.
    assert_eq!(m.sum("llm_tokens_total", &[]), 0.0);
}

/// A full queue is a 429 and a failing engine a 500, in OpenAI error objects; a stream
/// whose engine fails sends the error object as an event, then `[DONE]`.
#[test]
fn queue_full_and_engine_failures_are_openai_errors() {
    // One slot, no queue, and a first token followed by a minute of decoding: while the
    // first stream holds the slot, every other request is turned away.
    let busy = DemoServer::start(&[
        "--model",
        "one:0:60000:1",
        "--max-queue",
        "0",
        "--error-rate",
        "0",
    ]);
    let body = json!({"model": "one", "messages": [{"role": "user", "content": "hold on"}], "stream": true});
    let mut stream = http::connect(busy.api).expect("connect");
    stream
        .write_all(&http::format_request(
            busy.api,
            "POST",
            "/v1/chat/completions",
            &[("Content-Type", "application/json")],
            Some(&body.to_string()),
        ))
        .expect("send");
    let mut reader = http::ResponseReader::new(stream);
    assert_eq!(reader.head().expect("head").status, 200);
    let first = reader.chunk().expect("first chunk").expect("a token");
    assert!(String::from_utf8_lossy(&first).contains("\"role\":\"assistant\""));
    let full = error_object(
        "rate_limit_error",
        "queue_full",
        None,
        "the model's queue is full; retry later",
    );
    let chat = json!({"model": "one", "messages": [{"role": "user", "content": "me too"}]});
    let (status, body, _) = post_json(&busy, "/v1/chat/completions", &chat);
    assert_eq!((status, body), (429, full.clone()));
    let embed = json!({"model": "one", "input": "me too"});
    let (status, body, _) = post_json(&busy, "/v1/embeddings", &embed);
    assert_eq!((status, body), (429, full));
    let m = scrape(busy.metrics);
    let errors = series(&m, "llm_requests_total", "one", &[("status", "error")]);
    assert_eq!(errors, 2.0);
    drop(reader);

    // Every prefill fails.
    let failing = DemoServer::start(&["--model", "fast:0.05:2:8", "--error-rate", "1"]);
    let failure = error_object(
        "server_error",
        "engine_error",
        None,
        "simulated engine failure: CUDA error: an illegal memory access",
    );
    let chat = json!({"model": "fast", "messages": [{"role": "user", "content": "two words"}]});
    let (status, body, _) = post_json(&failing, "/v1/chat/completions", &chat);
    assert_eq!((status, body), (500, failure.clone()));
    let mut streamed = chat.clone();
    streamed["stream"] = json!(true);
    streamed["stream_options"] = json!({"include_usage": true});
    let (status, _, text) = post_json(&failing, "/v1/chat/completions", &streamed);
    assert_eq!(status, 200);
    let payloads = sse_payloads(&text);
    assert_eq!(payloads.len(), 2, "{text}");
    let event: Value = serde_json::from_str(&payloads[0]).expect("JSON");
    assert_eq!((event, payloads[1].as_str()), (failure.clone(), "[DONE]"));
    let embed = json!({"model": "fast", "input": ["three more words"]});
    let (status, body, _) = post_json(&failing, "/v1/embeddings", &embed);
    assert_eq!((status, body), (500, failure));
    let m = scrape(failing.metrics);
    let requests = |status: &str| series(&m, "llm_requests_total", "fast", &[("status", status)]);
    assert_eq!(
        (requests("ok"), requests("error"), requests("cancelled")),
        (0.0, 3.0, 0.0)
    );
    // Failed in prefill: their input tokens count, no output, no first token.
    assert_eq!(
        series(&m, "llm_tokens_total", "fast", &[("type", "input")]),
        7.0
    );
    assert_eq!(
        series(&m, "llm_tokens_total", "fast", &[("type", "output")]),
        0.0
    );
    assert_eq!(series(&m, "llm_ttft_seconds_count", "fast", &[]), 0.0);
}
