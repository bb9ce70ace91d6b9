//! The OpenAI-style HTTP API on axum: routing, request validation, JSON and SSE responses.
//!
//! Shows: a `Router` with shared state; handlers as async functions of extractors; one
//! error type that renders as JSON; a streamed completion as `Sse` over a channel that
//! the generation task feeds; and that a request rejected before the engine still
//! counts in the metrics ([`reject`]).

use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use axum::{Json, Router};
use futures_util::{stream, Stream, StreamExt};
use llm_span_testkit::demo::count_tokens;
use serde_json::{json, Value};
use tokio::sync::mpsc;
use tracing::field::Empty;

use crate::admin;
use crate::engine::{Completion, Engine, EngineFailure, Job, Message, Outcome, Sink};
use crate::trace::Trace;

/// Largest request body accepted.
const MAX_BODY_BYTES: usize = 1 << 20;
/// Largest `max_tokens` accepted.
const MAX_OUTPUT_TOKENS: u64 = 4096;

/// What every handler shares (axum's router state).
pub(crate) struct Api {
    engine: Arc<Engine>,
    max_prompt_tokens: u64,
    next_id: AtomicU64,
}

impl Api {
    pub(crate) fn new(engine: Arc<Engine>, max_prompt_tokens: u64) -> Self {
        Self {
            engine,
            max_prompt_tokens,
            next_id: AtomicU64::new(1),
        }
    }
}

/// The API's routes, with `/admin/models/{name}` when `admin` is set (`--admin`). Unknown
/// paths and methods get the same JSON errors as the rest.
pub(crate) fn router(api: Api, admin: bool) -> Router {
    let mut router = Router::new()
        .route("/health", get(health))
        .route("/v1/models", get(models))
        .route("/v1/completions", post(completions));
    if admin {
        // Every method: admin.rs answers all but PUT with 405 itself.
        router = router.route(&format!("{}{{name}}", admin::PREFIX), any(set_speed));
    }
    router
        .fallback(|| async {
            ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such endpoint")
        })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "method not allowed",
            )
        })
        // Bodies over the limit make the `Bytes` extractor fail with 413 (see `completions`).
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(Arc::new(api))
}

async fn health() -> &'static str {
    "ok\n"
}

async fn models(State(api): State<Arc<Api>>) -> Json<Value> {
    let data: Vec<Value> = api
        .engine
        .models
        .iter()
        .map(|m| json!({"id": m.spec.name, "object": "model", "owned_by": "llm-span-demo"}))
        .collect();
    Json(json!({"object": "list", "data": data}))
}

/// `/admin/models/{name}` (`--admin` only): hands method, path and body to admin.rs, which
/// knows nothing of axum.
async fn set_speed(
    State(api): State<Arc<Api>>,
    method: Method,
    uri: Uri,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let body = match body {
        Ok(body) => body,
        Err(rejection) => {
            let error = ApiError::new(rejection.status(), "invalid_request", rejection.body_text());
            return error.into_response();
        }
    };
    let (status, value) = admin::handle(&api.engine, method.as_str(), uri.path(), &body);
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (status, Json(value)).into_response()
}

/// `POST /v1/completions`: validates, queues, then answers with JSON or an SSE stream.
///
/// The body is taken as raw `Bytes`, not `Json<T>`: any content type is accepted (as
/// `curl -d` sends it), and the validation messages are this API's own. Every answer
/// carries the request's `traceparent` (see `trace.rs`).
async fn completions(
    State(api): State<Arc<Api>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let trace = Trace::from_headers(&headers);
    let traceparent = trace.traceparent();
    let mut response = complete(api, trace, body).await.into_response();
    if let Ok(value) = HeaderValue::from_str(&traceparent) {
        response.headers_mut().insert("traceparent", value);
    }
    response
}

/// The completion itself, in the trace `completions` chose.
async fn complete(
    api: Arc<Api>,
    trace: Trace,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    // Taking the rejection instead of letting axum answer it: the request still counts.
    let body = body.map_err(|rejection| match rejection.status() {
        StatusCode::PAYLOAD_TOO_LARGE => ApiError::rejected(
            None,
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            "request body over 1 MiB",
        ),
        _ => ApiError::rejected(
            None,
            StatusCode::BAD_REQUEST,
            "invalid_request",
            rejection.body_text(),
        ),
    })?;
    let request = parse_request(&body).map_err(|message| {
        ApiError::rejected(None, StatusCode::BAD_REQUEST, "invalid_request", message)
    })?;
    let Some(model) = api.engine.model(&request.model).cloned() else {
        // The requested name is client-controlled: it never becomes a label.
        let message = format!(
            "model {:?} is not served; see GET /v1/models",
            request.model
        );
        return Err(ApiError::rejected(
            None,
            StatusCode::NOT_FOUND,
            "model_not_found",
            message,
        ));
    };
    let model_name = Some(model.spec.name.as_str());
    let prompt_tokens = count_tokens(&request.prompt);
    if prompt_tokens > api.max_prompt_tokens {
        let message = format!(
            "prompt has {prompt_tokens} tokens, the limit is {}",
            api.max_prompt_tokens
        );
        return Err(ApiError::rejected(
            model_name,
            StatusCode::PAYLOAD_TOO_LARGE,
            "prompt_too_long",
            message,
        ));
    }
    let Some(ticket) = model.enqueue() else {
        return Err(ApiError::rejected(
            model_name,
            StatusCode::TOO_MANY_REQUESTS,
            "queue_full",
            "the model's queue is full; retry later",
        ));
    };
    let job = Job {
        ticket,
        prompt: request.prompt,
        prompt_tokens,
        max_tokens: request.max_tokens,
        stream: request.stream,
        trace,
    };
    let meta = ChunkMeta {
        id: format!("cmpl-{}", api.next_id.fetch_add(1, Ordering::Relaxed)),
        model: model.spec.name.clone(),
        created: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
    };
    if request.stream {
        return Ok(stream_completion(api.engine.clone(), job, meta).into_response());
    }
    // Not streamed: if the client goes away, hyper drops this future, and with it the
    // generation; its span closes unfinished and counts as cancelled.
    let mut sink = Sink::Buffer(String::new());
    let response = match api.engine.generate(job, &mut sink).await {
        Ok(Outcome::Completed(completion)) => Json(meta.completion(&completion)).into_response(),
        // Only a streaming sink can find its client gone.
        Ok(Outcome::ClientGone) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
        Err(failure) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            Json(meta.failure(&failure)),
        )
            .into_response(),
    };
    Ok(response)
}

/// An SSE response fed by a generation task: one `data: {chunk}` event per token, a
/// last chunk with `finish_reason` and `usage` (or an error), then `data: [DONE]`.
///
/// No keep-alive comments: OpenAI-style clients read every event as JSON.
fn stream_completion(
    engine: Arc<Engine>,
    job: Job,
    meta: ChunkMeta,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    // One message at a time: the engine waits for each token to be taken (see
    // `Sink::emit`) before it makes the next.
    let (tx, mut rx) = mpsc::channel::<Message>(1);
    tokio::spawn(async move {
        let chunk = |text: &str| meta.chunk(text, None).to_string();
        let mut sink = Sink::Stream {
            tx: tx.clone(),
            chunk: &chunk,
        };
        let last = match engine.generate(job, &mut sink).await {
            Ok(Outcome::Completed(completion)) => meta.completion_chunk(&completion),
            Ok(Outcome::ClientGone) => return,
            Err(failure) => meta.failure(&failure),
        };
        for data in [last.to_string(), "[DONE]".to_owned()] {
            if tx.send(Message { data, taken: None }).await.is_err() {
                return;
            }
        }
    });
    // The body polls the receiver directly. When the client goes away, hyper drops the
    // body and the receiver with it: the engine's next send fails and generation stops.
    let events = stream::poll_fn(move |cx| rx.poll_recv(cx)).map(|message| {
        if let Some(taken) = message.taken {
            // The token is on its way to the client: the engine counts it now.
            let _ = taken.send(());
        }
        Ok::<_, Infallible>(Event::default().data(message.data))
    });
    Sse::new(events)
}

/// A request turned away before the engine still counts: a request span with no tokens
/// and status error. `model` is `None` when the client did not name a served model, so
/// the layer files it under `model="unknown"`.
fn reject(model: Option<&str>, reason: &'static str) {
    let span = tracing::info_span!(
        "completion",
        model = Empty,
        tokens_in = Empty,
        status = "error",
        error.type = reason
    );
    if let Some(model) = model {
        span.record("model", model);
    }
}

/// An error response: a status and `{"error": {"type": ..., "message": ...}}`.
struct ApiError {
    status: StatusCode,
    kind: &'static str,
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, kind: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            kind,
            message: message.into(),
        }
    }

    /// The error for a request turned away before the engine, counted by [`reject`].
    fn rejected(
        model: Option<&str>,
        status: StatusCode,
        kind: &'static str,
        message: impl Into<String>,
    ) -> Self {
        reject(model, kind);
        Self::new(status, kind, message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({"error": {"type": self.kind, "message": self.message}});
        (self.status, Json(body)).into_response()
    }
}

struct CompletionRequest {
    model: String,
    prompt: String,
    max_tokens: u64,
    stream: bool,
}

/// Checks the body field by field, so that each mistake gets its own message.
fn parse_request(body: &[u8]) -> Result<CompletionRequest, String> {
    let value: Value = serde_json::from_slice(body).map_err(|e| format!("invalid JSON: {e}"))?;
    let object = value.as_object().ok_or("the body must be a JSON object")?;
    let string = |name: &str| -> Result<String, String> {
        match object.get(name) {
            Some(Value::String(s)) => Ok(s.clone()),
            Some(_) => Err(format!("field {name:?} must be a string")),
            None => Err(format!("missing field {name:?}")),
        }
    };
    let model = string("model")?;
    let prompt = string("prompt")?;
    let max_tokens = match object.get("max_tokens") {
        None | Some(Value::Null) => 16,
        Some(v) => v
            .as_u64()
            .filter(|n| (1..=MAX_OUTPUT_TOKENS).contains(n))
            .ok_or(format!(
                "max_tokens must be an integer from 1 to {MAX_OUTPUT_TOKENS}"
            ))?,
    };
    let stream = match object.get("stream") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err("stream must be a boolean".into()),
    };
    Ok(CompletionRequest {
        model,
        prompt,
        max_tokens,
        stream,
    })
}

/// What every chunk of one completion repeats.
struct ChunkMeta {
    id: String,
    model: String,
    created: u64,
}

impl ChunkMeta {
    fn chunk(&self, text: &str, finish_reason: Option<&str>) -> Value {
        json!({
            "id": self.id, "object": "text_completion", "created": self.created, "model": self.model,
            "choices": [{"index": 0, "text": text, "finish_reason": finish_reason}],
        })
    }

    fn usage(prompt_tokens: u64, completion_tokens: u64) -> Value {
        json!({
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        })
    }

    /// The whole completion, for a JSON response.
    fn completion(&self, c: &Completion) -> Value {
        let mut body = self.chunk(&c.text, Some(c.finish_reason));
        body["usage"] = Self::usage(c.prompt_tokens, c.completion_tokens);
        body
    }

    /// The last chunk of a stream: no text, the finish reason and usage.
    fn completion_chunk(&self, c: &Completion) -> Value {
        let mut body = self.chunk("", Some(c.finish_reason));
        body["usage"] = Self::usage(c.prompt_tokens, c.completion_tokens);
        body
    }

    fn failure(&self, failure: &EngineFailure) -> Value {
        json!({
            "error": {"type": "engine_error", "message": failure.to_string()},
            "usage": Self::usage(failure.prompt_tokens, 0),
        })
    }
}
