//! The OpenAI-style HTTP API on axum: routing, request validation, JSON and SSE responses.
//!
//! Three endpoints share one path through [`handle`]: the OpenAI API that clients and
//! frameworks speak (`POST /v1/chat/completions`, `POST /v1/embeddings`) and the legacy
//! `POST /v1/completions`. They differ only in how a body is read ([`parse_request`]) and
//! how answers and errors are written ([`Reply`], [`ApiError`]); validation, the model
//! lookup, the prompt limit, the queue and the engine are the same for all three.
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
use base64::Engine as _;
use futures_util::{stream, Stream, StreamExt};
use llm_span_testkit::demo::{count_tokens, embedding};
use serde_json::{json, Map, Value};
use tokio::sync::mpsc;
use tracing::field::Empty;

use crate::admin;
use crate::engine::{
    Completion, Engine, EngineFailure, Job, Message, Operation, Outcome, Sink, Token,
};
use crate::trace::Trace;

/// Largest request body accepted.
const MAX_BODY_BYTES: usize = 1 << 20;
/// Largest `max_tokens` accepted.
const MAX_OUTPUT_TOKENS: u64 = 4096;
/// `max_tokens` of a legacy completion that does not say.
const DEFAULT_COMPLETION_TOKENS: u64 = 16;
/// Components of an embedding when the request gives no `dimensions`.
const DEFAULT_EMBEDDING_DIMENSIONS: u64 = 16;
/// Largest `dimensions` accepted.
const MAX_EMBEDDING_DIMENSIONS: u64 = 4096;

/// What every handler shares (axum's router state).
pub(crate) struct Api {
    engine: Arc<Engine>,
    max_prompt_tokens: u64,
    next_id: AtomicU64,
    /// Unix time the server started: the `created` of its models.
    started: u64,
}

impl Api {
    pub(crate) fn new(engine: Arc<Engine>, max_prompt_tokens: u64) -> Self {
        Self {
            engine,
            max_prompt_tokens,
            next_id: AtomicU64::new(1),
            started: unix_now(),
        }
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The API's routes, with `/admin/models/{name}` when `admin` is set (`--admin`). Unknown
/// paths and methods get the same JSON errors as the rest.
pub(crate) fn router(api: Api, admin: bool) -> Router {
    let mut router = Router::new()
        .route("/health", get(health))
        .route("/v1/models", get(models))
        .route("/v1/chat/completions", post(chat_completions))
        .route("/v1/embeddings", post(embeddings))
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
        // Bodies over the limit make the `Bytes` extractor fail with 413 (see `handle`).
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(Arc::new(api))
}

async fn health() -> &'static str {
    "ok\n"
}

/// `GET /v1/models`: `{"object": "list", "data": [{"id", "object": "model", "created", "owned_by"}]}`.
async fn models(State(api): State<Arc<Api>>) -> Json<Value> {
    let data: Vec<Value> = api
        .engine
        .models
        .iter()
        .map(|m| {
            json!({
                "id": m.spec.name, "object": "model", "created": api.started,
                "owned_by": "llm-span-demo",
            })
        })
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

/// `POST /v1/chat/completions`: `messages` in, a `chat.completion` or an SSE stream of
/// `chat.completion.chunk`s out.
async fn chat_completions(
    State(api): State<Arc<Api>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    serve(Operation::Chat, api, &headers, body).await
}

/// `POST /v1/embeddings`: one vector per input (a string, strings, or token arrays).
async fn embeddings(
    State(api): State<Arc<Api>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    serve(Operation::Embeddings, api, &headers, body).await
}

/// `POST /v1/completions`, the legacy API: `prompt` in, `text_completion` out.
async fn completions(
    State(api): State<Arc<Api>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    serve(Operation::TextCompletion, api, &headers, body).await
}

/// Every endpoint: runs the request in its trace and names that trace in the answer's
/// `traceparent` header (see `trace.rs`), errors included.
///
/// The body is taken as raw `Bytes`, not `Json<T>`: any content type is accepted (as
/// `curl -d` sends it), and the validation messages are this API's own.
async fn serve(
    operation: Operation,
    api: Arc<Api>,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let trace = Trace::from_headers(headers);
    let traceparent = trace.traceparent();
    let mut response = handle(operation, api, trace, body).await.into_response();
    if let Ok(value) = HeaderValue::from_str(&traceparent) {
        response.headers_mut().insert("traceparent", value);
    }
    response
}

/// Validates, queues, then answers with JSON or an SSE stream; what every endpoint shares.
async fn handle(
    operation: Operation,
    api: Arc<Api>,
    trace: Trace,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let fail = |status, code, message: String| ApiError::new(status, code, message).of(operation);
    // Taking the rejection instead of letting axum answer it: the request still counts.
    let body = body.map_err(|rejection| match rejection.status() {
        StatusCode::PAYLOAD_TOO_LARGE => fail(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            "request body over 1 MiB".to_owned(),
        )
        .counted(None),
        _ => fail(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            rejection.body_text(),
        )
        .counted(None),
    })?;
    let request = parse_request(operation, &body).map_err(|invalid| {
        fail(StatusCode::BAD_REQUEST, "invalid_request", invalid.message)
            .param(invalid.param)
            .counted(None)
    })?;
    let Some(model) = api.engine.model(&request.model).cloned() else {
        // The requested name is client-controlled: it never becomes a label.
        let message = format!(
            "model {:?} is not served; see GET /v1/models",
            request.model
        );
        return Err(fail(StatusCode::NOT_FOUND, "model_not_found", message)
            .param(Some("model".to_owned()))
            .counted(None));
    };
    let model_name = Some(model.spec.name.as_str());
    if request.prompt_tokens > api.max_prompt_tokens {
        let message = format!(
            "prompt has {} tokens, the limit is {}",
            request.prompt_tokens, api.max_prompt_tokens
        );
        // The legacy API's 413; the OpenAI API's 400 with the code its clients know.
        let error = match operation {
            Operation::TextCompletion => {
                fail(StatusCode::PAYLOAD_TOO_LARGE, "prompt_too_long", message)
            }
            Operation::Chat => fail(StatusCode::BAD_REQUEST, "context_length_exceeded", message)
                .param(Some("messages".to_owned())),
            Operation::Embeddings => {
                fail(StatusCode::BAD_REQUEST, "context_length_exceeded", message)
                    .param(Some("input".to_owned()))
            }
        };
        return Err(error.counted(model_name));
    }
    let Some(ticket) = model.enqueue() else {
        return Err(fail(
            StatusCode::TOO_MANY_REQUESTS,
            "queue_full",
            "the model's queue is full; retry later".to_owned(),
        )
        .counted(model_name));
    };
    let job = Job {
        ticket,
        operation,
        prompt: request.prompt,
        prompt_tokens: request.prompt_tokens,
        max_tokens: request.max_tokens,
        stream: request.stream,
        trace,
    };
    let reply = Reply {
        id: format!(
            "{}-{}",
            request.format.id_prefix(),
            api.next_id.fetch_add(1, Ordering::Relaxed)
        ),
        model: model.spec.name.clone(),
        created: unix_now(),
        format: request.format,
    };
    if let Format::Embeddings(inputs) = &reply.format {
        let data = inputs.data();
        // If the client goes away, hyper drops this future and the span closes early.
        let response = match api.engine.embed(job).await {
            Ok(true) => Json(reply.embeddings(data, request.prompt_tokens)).into_response(),
            Ok(false) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
            Err(failure) => reply.failure(&failure).into_response(),
        };
        return Ok(response);
    }
    if request.stream {
        return Ok(stream_completion(api.engine.clone(), job, reply).into_response());
    }
    // Not streamed: if the client goes away, hyper drops this future, and with it the
    // generation; its span closes unfinished and counts as cancelled.
    let mut sink = Sink::Buffer(String::new());
    let response = match api.engine.generate(job, &mut sink).await {
        Ok(Outcome::Completed(completion)) => Json(reply.completion(&completion)).into_response(),
        // Only a streaming sink can find its client gone.
        Ok(Outcome::ClientGone) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
        Err(failure) => reply.failure(&failure).into_response(),
    };
    Ok(response)
}

/// An SSE response fed by a generation task: one `data: {chunk}` event per token, what
/// the format sends after the last token (see [`Reply::stream_end`]) or an error, then
/// `data: [DONE]`.
///
/// No keep-alive comments: OpenAI-style clients read every event as JSON.
fn stream_completion(
    engine: Arc<Engine>,
    job: Job,
    reply: Reply,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    // One message at a time: the engine waits for each token to be taken (see
    // `Sink::emit`) before it makes the next.
    let (tx, mut rx) = mpsc::channel::<Message>(1);
    tokio::spawn(async move {
        let chunk = |token: Token<'_>| reply.token_chunk(token).to_string();
        let mut sink = Sink::Stream {
            tx: tx.clone(),
            chunk: &chunk,
        };
        let last = match engine.generate(job, &mut sink).await {
            Ok(Outcome::Completed(completion)) => reply.stream_end(&completion),
            Ok(Outcome::ClientGone) => return,
            Err(failure) => Some(reply.failure(&failure).1 .0),
        };
        let done = "[DONE]".to_owned();
        for data in last.map(|v| v.to_string()).into_iter().chain([done]) {
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
/// and status error, of its operation. `model` is `None` when the client did not name a
/// served model, so the layer files it under `model="unknown"`.
fn reject(operation: Operation, model: Option<&str>, reason: &'static str) {
    // A span's name is fixed where it is written: one callsite per name.
    let span = match operation {
        Operation::Embeddings => tracing::info_span!(
            "embeddings",
            gen_ai.operation.name = operation.as_str(),
            gen_ai.provider.name = crate::engine::PROVIDER,
            model = Empty,
            tokens_in = Empty,
            status = "error",
            error.type = reason
        ),
        Operation::Chat | Operation::TextCompletion => tracing::info_span!(
            "completion",
            gen_ai.operation.name = operation.as_str(),
            gen_ai.provider.name = crate::engine::PROVIDER,
            model = Empty,
            tokens_in = Empty,
            status = "error",
            error.type = reason
        ),
    };
    if let Some(model) = model {
        span.record("model", model);
    }
}

/// How an endpoint writes its errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Style {
    /// `{"error": {"type": CODE, "message"}}`: the legacy API and the fallbacks.
    Legacy,
    /// OpenAI's `{"error": {"message", "type", "param", "code"}}`.
    OpenAi,
}

/// An OpenAI error object. `type` is the class OpenAI's clients branch on, from the
/// status; `code` says what exactly happened.
fn openai_error(status: StatusCode, code: &str, param: Option<&str>, message: &str) -> Value {
    let kind = match status.as_u16() {
        429 => "rate_limit_error",
        500..=599 => "server_error",
        _ => "invalid_request_error",
    };
    json!({"error": {"message": message, "type": kind, "param": param, "code": code}})
}

/// An error response: a status and an error object in the endpoint's [`Style`].
struct ApiError {
    status: StatusCode,
    /// Legacy `type`, OpenAI `code`, and the span's `error.type` when counted.
    code: &'static str,
    /// The request field at fault (OpenAI style only).
    param: Option<String>,
    message: String,
    style: Style,
}

impl ApiError {
    /// A legacy-style error.
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            param: None,
            message: message.into(),
            style: Style::Legacy,
        }
    }

    /// In the style of `operation`'s endpoint, and remembered for [`ApiError::counted`].
    fn of(mut self, operation: Operation) -> OperationError {
        if operation != Operation::TextCompletion {
            self.style = Style::OpenAi;
        }
        OperationError {
            error: self,
            operation,
        }
    }
}

/// An [`ApiError`] of a request to one of the model endpoints, not yet counted.
struct OperationError {
    error: ApiError,
    operation: Operation,
}

impl OperationError {
    fn param(mut self, param: Option<String>) -> Self {
        self.error.param = param;
        self
    }

    /// Counts the request (see [`reject`]) and gives the error to answer with.
    fn counted(self, model: Option<&str>) -> ApiError {
        reject(self.operation, model, self.error.code);
        self.error
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = match self.style {
            Style::Legacy => json!({"error": {"type": self.code, "message": self.message}}),
            Style::OpenAi => {
                openai_error(self.status, self.code, self.param.as_deref(), &self.message)
            }
        };
        (self.status, Json(body)).into_response()
    }
}

/// A field of the body is wrong: the message, and the field for OpenAI's `param`.
struct Invalid {
    message: String,
    param: Option<String>,
}

impl Invalid {
    fn new(param: &str, message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            param: Some(param.to_owned()),
        }
    }

    fn body(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            param: None,
        }
    }
}

/// A request that passed validation.
struct Request {
    model: String,
    /// What the engine reads: the prompt, the messages' contents or the inputs, joined by
    /// newlines.
    prompt: String,
    /// `count_tokens(prompt)`, or a token array's length.
    prompt_tokens: u64,
    max_tokens: u64,
    stream: bool,
    format: Format,
}

/// What an answer looks like, by endpoint.
enum Format {
    /// `text_completion` objects (legacy).
    Text,
    /// `chat.completion` and `chat.completion.chunk` objects.
    Chat {
        /// `stream_options.include_usage`: a last chunk with `usage` and no choices.
        include_usage: bool,
    },
    /// A list of `embedding` objects.
    Embeddings(EmbeddingInputs),
}

impl Format {
    fn id_prefix(&self) -> &'static str {
        match self {
            Format::Text => "cmpl",
            Format::Chat { .. } => "chatcmpl",
            Format::Embeddings(_) => "embd",
        }
    }
}

/// The inputs of an embeddings request, each as the text its vector is seeded by.
struct EmbeddingInputs {
    texts: Vec<String>,
    dimensions: usize,
    base64: bool,
}

impl EmbeddingInputs {
    /// The `data` array of the answer.
    fn data(&self) -> Vec<Value> {
        (0..)
            .zip(&self.texts)
            .map(|(index, text): (u64, _)| {
                let vector = embedding(text, self.dimensions);
                let value = if self.base64 {
                    // As OpenAI sends it: the little-endian f32s, in base64.
                    let bytes: Vec<u8> = vector.iter().flat_map(|x| x.to_le_bytes()).collect();
                    Value::from(base64::prelude::BASE64_STANDARD.encode(bytes))
                } else {
                    Value::from(vector)
                };
                json!({"object": "embedding", "index": index, "embedding": value})
            })
            .collect()
    }
}

/// The body's fields, read one by one so that each mistake gets its own message.
struct Fields<'a>(&'a Map<String, Value>);

impl Fields<'_> {
    fn get(&self, name: &str) -> Option<&Value> {
        self.0.get(name).filter(|v| !v.is_null())
    }

    fn string(&self, name: &str) -> Result<String, Invalid> {
        match self.0.get(name) {
            Some(Value::String(s)) => Ok(s.clone()),
            Some(_) => Err(Invalid::new(
                name,
                format!("field {name:?} must be a string"),
            )),
            None => Err(Invalid::new(name, format!("missing field {name:?}"))),
        }
    }

    fn bool(&self, name: &str) -> Result<bool, Invalid> {
        match self.get(name) {
            None => Ok(false),
            Some(Value::Bool(b)) => Ok(*b),
            Some(_) => Err(Invalid::new(name, format!("{name} must be a boolean"))),
        }
    }

    /// An integer from 1 to `max`, `default` when absent or null.
    fn count(&self, name: &str, default: u64, max: u64) -> Result<u64, Invalid> {
        match self.get(name) {
            None => Ok(default),
            Some(v) => v.as_u64().filter(|n| (1..=max).contains(n)).ok_or_else(|| {
                Invalid::new(name, format!("{name} must be an integer from 1 to {max}"))
            }),
        }
    }
}

/// Reads the body of a request to `operation`'s endpoint.
fn parse_request(operation: Operation, body: &[u8]) -> Result<Request, Invalid> {
    let value: Value =
        serde_json::from_slice(body).map_err(|e| Invalid::body(format!("invalid JSON: {e}")))?;
    let object = value
        .as_object()
        .ok_or_else(|| Invalid::body("the body must be a JSON object"))?;
    let fields = Fields(object);
    let model = fields.string("model")?;
    let request = |prompt: String, max_tokens, stream, format| {
        let prompt_tokens = count_tokens(&prompt);
        Request {
            model: model.clone(),
            prompt,
            prompt_tokens,
            max_tokens,
            stream,
            format,
        }
    };
    match operation {
        Operation::TextCompletion => {
            let prompt = fields.string("prompt")?;
            let max_tokens =
                fields.count("max_tokens", DEFAULT_COMPLETION_TOKENS, MAX_OUTPUT_TOKENS)?;
            let stream = fields.bool("stream")?;
            Ok(request(prompt, max_tokens, stream, Format::Text))
        }
        Operation::Chat => {
            let prompt = chat_prompt(fields.get("messages"))?;
            // The newer name wins; without either, the answer ends by itself ("stop").
            let max_tokens = match fields.get("max_completion_tokens") {
                Some(_) => fields.count(
                    "max_completion_tokens",
                    MAX_OUTPUT_TOKENS,
                    MAX_OUTPUT_TOKENS,
                )?,
                None => fields.count("max_tokens", MAX_OUTPUT_TOKENS, MAX_OUTPUT_TOKENS)?,
            };
            if fields.count("n", 1, u64::MAX)? != 1 {
                return Err(Invalid::new("n", "only n = 1 is supported"));
            }
            let stream = fields.bool("stream")?;
            // Accepted, and ignored, without `stream` too.
            let include_usage = match fields.get("stream_options") {
                None => false,
                Some(Value::Object(options)) => {
                    Fields(options).bool("include_usage").map_err(|_| {
                        Invalid::new(
                            "stream_options",
                            "stream_options.include_usage must be a boolean",
                        )
                    })?
                }
                Some(_) => {
                    return Err(Invalid::new(
                        "stream_options",
                        "stream_options must be an object",
                    ))
                }
            };
            let format = Format::Chat { include_usage };
            Ok(request(prompt, max_tokens, stream, format))
        }
        Operation::Embeddings => {
            let texts = embedding_texts(fields.get("input"))?;
            let dimensions = fields.count(
                "dimensions",
                DEFAULT_EMBEDDING_DIMENSIONS,
                MAX_EMBEDDING_DIMENSIONS,
            )?;
            let base64 = match fields.get("encoding_format") {
                None => false,
                Some(Value::String(f)) if f == "float" => false,
                Some(Value::String(f)) if f == "base64" => true,
                Some(_) => {
                    return Err(Invalid::new(
                        "encoding_format",
                        "encoding_format must be \"float\" or \"base64\"",
                    ))
                }
            };
            let inputs = EmbeddingInputs {
                texts,
                dimensions: dimensions as usize,
                base64,
            };
            let prompt = inputs.texts.join("\n");
            Ok(request(prompt, 0, false, Format::Embeddings(inputs)))
        }
    }
}

/// The text of a chat request's `messages`: every message's content, joined by newlines.
/// A content is a string, an array of `{"type": "text", "text"}` parts, or null (an
/// assistant message with tool calls).
fn chat_prompt(messages: Option<&Value>) -> Result<String, Invalid> {
    const ROLES: [&str; 6] = [
        "system",
        "developer",
        "user",
        "assistant",
        "tool",
        "function",
    ];
    let messages = match messages {
        None => return Err(Invalid::new("messages", "missing field \"messages\"")),
        Some(Value::Array(messages)) if messages.is_empty() => {
            return Err(Invalid::new("messages", "messages must not be empty"))
        }
        Some(Value::Array(messages)) => messages,
        Some(_) => return Err(Invalid::new("messages", "messages must be an array")),
    };
    let mut texts = Vec::with_capacity(messages.len());
    for (i, message) in messages.iter().enumerate() {
        let field = |name: &str| format!("messages[{i}].{name}");
        let invalid = |name: &str, message: String| Invalid::new(&field(name), message);
        let role = message.get("role").and_then(Value::as_str);
        if !role.is_some_and(|role| ROLES.contains(&role)) {
            let message = format!("{} must be one of {}", field("role"), ROLES.join(", "));
            return Err(invalid("role", message));
        }
        match message.get("content") {
            None | Some(Value::Null) => {}
            Some(Value::String(text)) => texts.push(text.as_str()),
            Some(Value::Array(parts)) => {
                for part in parts {
                    let text = (part.get("type").and_then(Value::as_str) == Some("text"))
                        .then(|| part.get("text").and_then(Value::as_str))
                        .flatten()
                        .ok_or_else(|| {
                            let message = format!(
                                "{} parts must be {{\"type\": \"text\", \"text\": ...}}: only text is supported",
                                field("content")
                            );
                            invalid("content", message)
                        })?;
                    texts.push(text);
                }
            }
            Some(_) => {
                let message = format!("{} must be a string or an array", field("content"));
                return Err(invalid("content", message));
            }
        }
    }
    Ok(texts.join("\n"))
}

/// An embeddings request's `input` as texts: a string, an array of strings, a token
/// array (integers) or an array of token arrays. A token array is embedded and counted
/// as its ids written out (`count_tokens` of "1 2 3" is 3).
fn embedding_texts(input: Option<&Value>) -> Result<Vec<String>, Invalid> {
    let wrong = || {
        Invalid::new(
            "input",
            "input must be a string, an array of strings, an array of token ids or an array of arrays of token ids",
        )
    };
    let tokens = |values: &[Value]| -> Option<String> {
        let ids: Option<Vec<String>> = values
            .iter()
            .map(|v| v.as_u64().map(|id| id.to_string()))
            .collect();
        ids.map(|ids| ids.join(" "))
    };
    match input {
        None => Err(Invalid::new("input", "missing field \"input\"")),
        Some(Value::String(text)) => Ok(vec![text.clone()]),
        Some(Value::Array(items)) if items.is_empty() => {
            Err(Invalid::new("input", "input must not be empty"))
        }
        Some(Value::Array(items)) => {
            if items.iter().all(Value::is_string) {
                return Ok(items
                    .iter()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect());
            }
            if items.iter().all(Value::is_number) {
                return tokens(items).map(|text| vec![text]).ok_or_else(wrong);
            }
            items
                .iter()
                .map(|item| item.as_array().and_then(|ids| tokens(ids)))
                .collect::<Option<Vec<String>>>()
                .ok_or_else(wrong)
        }
        Some(_) => Err(wrong()),
    }
}

/// How one answer is written: what every object of one response repeats, and its format.
struct Reply {
    id: String,
    model: String,
    created: u64,
    format: Format,
}

fn usage(prompt_tokens: u64, completion_tokens: u64) -> Value {
    json!({
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    })
}

impl Reply {
    /// A legacy `text_completion` object.
    fn text(&self, text: &str, finish_reason: Option<&str>) -> Value {
        json!({
            "id": self.id, "object": "text_completion", "created": self.created, "model": self.model,
            "choices": [{"index": 0, "text": text, "finish_reason": finish_reason}],
        })
    }

    /// A `chat.completion.chunk` with these `choices`.
    fn chat_chunk(&self, choices: Value) -> Value {
        json!({
            "id": self.id, "object": "chat.completion.chunk", "created": self.created,
            "model": self.model, "choices": choices,
        })
    }

    /// The event of one streamed token. A chat chunk says the role on the first token
    /// and the finish reason on the last; with `include_usage`, its `usage` is null.
    fn token_chunk(&self, token: Token<'_>) -> Value {
        match self.format {
            Format::Chat { include_usage } => {
                let delta = match token.index {
                    0 => json!({"role": "assistant", "content": token.text}),
                    _ => json!({"content": token.text}),
                };
                let choice = json!({
                    "index": 0, "delta": delta, "logprobs": null,
                    "finish_reason": token.finish_reason,
                });
                let mut chunk = self.chat_chunk(json!([choice]));
                if include_usage {
                    chunk["usage"] = Value::Null;
                }
                chunk
            }
            Format::Text | Format::Embeddings(_) => self.text(token.text, None),
        }
    }

    /// The whole completion, for a JSON response.
    fn completion(&self, c: &Completion) -> Value {
        let mut body = match self.format {
            Format::Chat { .. } => json!({
                "id": self.id, "object": "chat.completion", "created": self.created,
                "model": self.model,
                "choices": [{
                    "index": 0, "message": {"role": "assistant", "content": c.text},
                    "logprobs": null, "finish_reason": c.finish_reason,
                }],
            }),
            Format::Text | Format::Embeddings(_) => self.text(&c.text, Some(c.finish_reason)),
        };
        body["usage"] = usage(c.prompt_tokens, c.completion_tokens);
        body
    }

    /// What a stream sends after its last token, before `[DONE]`: the legacy API a chunk
    /// with no text, the finish reason and usage; the chat API a chunk with `usage` and
    /// empty `choices` when the request set `include_usage`, else nothing.
    fn stream_end(&self, c: &Completion) -> Option<Value> {
        let usage = usage(c.prompt_tokens, c.completion_tokens);
        let mut chunk = match self.format {
            Format::Chat {
                include_usage: false,
            } => return None,
            Format::Chat {
                include_usage: true,
            } => self.chat_chunk(json!([])),
            Format::Text | Format::Embeddings(_) => self.text("", Some(c.finish_reason)),
        };
        chunk["usage"] = usage;
        Some(chunk)
    }

    /// The answer to an embeddings request.
    fn embeddings(&self, data: Vec<Value>, prompt_tokens: u64) -> Value {
        json!({
            "object": "list", "data": data, "model": self.model,
            "usage": {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens},
        })
    }

    /// An engine failure: 500 and its error object (the legacy one adds `usage`).
    fn failure(&self, failure: &EngineFailure) -> (StatusCode, Json<Value>) {
        let status = StatusCode::INTERNAL_SERVER_ERROR;
        let message = failure.to_string();
        let body = match self.format {
            Format::Text => json!({
                "error": {"type": "engine_error", "message": message},
                "usage": usage(failure.prompt_tokens, 0),
            }),
            Format::Chat { .. } | Format::Embeddings(_) => {
                openai_error(status, "engine_error", None, &message)
            }
        };
        (status, Json(body))
    }
}
