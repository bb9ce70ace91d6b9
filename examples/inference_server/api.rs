//! The OpenAI-style HTTP API: routing, request validation, JSON and SSE responses.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{SystemTime, UNIX_EPOCH};

use http_body_util::{combinators::BoxBody, BodyExt, Full, Limited};
use hyper::body::{Body, Bytes, Frame, Incoming};
use hyper::{header, Method, Request, Response, StatusCode};
use llm_span_suite::demo::count_tokens;
use serde_json::{json, Value};
use tokio::sync::mpsc;
use tracing::field::Empty;

use crate::engine::{Completion, Engine, EngineFailure, Job, Message, Outcome, Sink};

/// Largest request body accepted.
const MAX_BODY_BYTES: usize = 1 << 20;
/// Largest `max_tokens` accepted.
const MAX_OUTPUT_TOKENS: u64 = 4096;

pub(crate) type ResponseBody = BoxBody<Bytes, Infallible>;

pub(crate) struct Api {
    pub(crate) engine: Arc<Engine>,
    pub(crate) max_prompt_tokens: u64,
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

    pub(crate) async fn handle(
        self: Arc<Self>,
        request: Request<Incoming>,
    ) -> Result<Response<ResponseBody>, Infallible> {
        let response = match (request.method(), request.uri().path()) {
            (&Method::GET, "/health") => text(StatusCode::OK, "ok\n"),
            (&Method::GET, "/v1/models") => self.models(),
            (&Method::POST, "/v1/completions") => self.completions(request).await,
            (_, "/v1/completions" | "/v1/models" | "/health") => error(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "method not allowed",
            ),
            _ => error(StatusCode::NOT_FOUND, "not_found", "no such endpoint"),
        };
        Ok(response)
    }

    fn models(&self) -> Response<ResponseBody> {
        let data: Vec<Value> = self
            .engine
            .models
            .iter()
            .map(|m| json!({"id": m.spec.name, "object": "model", "owned_by": "llm-span-demo"}))
            .collect();
        json_response(StatusCode::OK, &json!({"object": "list", "data": data}))
    }

    async fn completions(&self, request: Request<Incoming>) -> Response<ResponseBody> {
        let body = match Limited::new(request.into_body(), MAX_BODY_BYTES)
            .collect()
            .await
        {
            Ok(collected) => collected.to_bytes(),
            Err(_) => {
                reject(None, "body_too_large");
                return error(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "body_too_large",
                    "request body over 1 MiB",
                );
            }
        };
        let parsed = match parse_request(&body) {
            Ok(parsed) => parsed,
            Err(message) => {
                reject(None, "invalid_request");
                return error(StatusCode::BAD_REQUEST, "invalid_request", &message);
            }
        };
        let Some(model) = self.engine.model(&parsed.model).cloned() else {
            // The requested name is client-controlled: it never becomes a label.
            reject(None, "model_not_found");
            let message = format!("model {:?} is not served; see GET /v1/models", parsed.model);
            return error(StatusCode::NOT_FOUND, "model_not_found", &message);
        };
        let prompt_tokens = count_tokens(&parsed.prompt);
        if prompt_tokens > self.max_prompt_tokens {
            reject(Some(&model.spec.name), "prompt_too_long");
            let message = format!(
                "prompt has {prompt_tokens} tokens, the limit is {}",
                self.max_prompt_tokens
            );
            return error(StatusCode::PAYLOAD_TOO_LARGE, "prompt_too_long", &message);
        }
        let Some(ticket) = model.enqueue() else {
            reject(Some(&model.spec.name), "queue_full");
            return error(
                StatusCode::TOO_MANY_REQUESTS,
                "queue_full",
                "the model's queue is full; retry later",
            );
        };
        let job = Job {
            ticket,
            prompt: parsed.prompt,
            prompt_tokens,
            max_tokens: parsed.max_tokens,
            stream: parsed.stream,
        };
        let meta = ChunkMeta {
            id: format!("cmpl-{}", self.next_id.fetch_add(1, Ordering::Relaxed)),
            model: model.spec.name.clone(),
            created: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
        };
        if parsed.stream {
            self.stream(job, meta)
        } else {
            let mut sink = Sink::Buffer(String::new());
            let result = self.engine.generate(job, &mut sink).await;
            match result {
                Ok(Outcome::Completed(completion)) => {
                    json_response(StatusCode::OK, &meta.completion(&completion))
                }
                // Only a streaming sink can find its client gone.
                Ok(Outcome::ClientGone) => internal(),
                Err(failure) => {
                    json_response(StatusCode::INTERNAL_SERVER_ERROR, &meta.failure(&failure))
                }
            }
        }
    }

    fn stream(&self, job: Job, meta: ChunkMeta) -> Response<ResponseBody> {
        let (tx, rx) = mpsc::channel(1);
        let engine = self.engine.clone();
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
        Response::builder()
            .status(StatusCode::OK)
            .header(header::CONTENT_TYPE, "text/event-stream")
            .header(header::CACHE_CONTROL, "no-cache")
            .body(ChannelBody(rx).boxed())
            .unwrap_or_else(|_| internal())
    }
}

/// A rejected request still counts: a request span with no tokens and status error.
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

struct ParsedRequest {
    model: String,
    prompt: String,
    max_tokens: u64,
    stream: bool,
}

fn parse_request(body: &[u8]) -> Result<ParsedRequest, String> {
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
    Ok(ParsedRequest {
        model,
        prompt,
        max_tokens,
        stream,
    })
}

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

    fn completion(&self, c: &Completion) -> Value {
        let mut body = self.chunk(&c.text, Some(c.finish_reason));
        body["usage"] = Self::usage(c.prompt_tokens, c.completion_tokens);
        body
    }

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

/// A response body fed by the generation task, one SSE event at a time.
struct ChannelBody(mpsc::Receiver<Message>);

impl Body for ChannelBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.0.poll_recv(cx).map(|message| {
            message.map(|message| {
                if let Some(taken) = message.taken {
                    // The token is on its way to the client: the engine counts it now.
                    let _ = taken.send(());
                }
                Ok(Frame::data(Bytes::from(format!(
                    "data: {}\n\n",
                    message.data
                ))))
            })
        })
    }
}

fn text(status: StatusCode, body: &'static str) -> Response<ResponseBody> {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
        .body(Full::new(Bytes::from_static(body.as_bytes())).boxed())
        .unwrap_or_else(|_| internal())
}

fn json_response(status: StatusCode, value: &Value) -> Response<ResponseBody> {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(value.to_string())).boxed())
        .unwrap_or_else(|_| internal())
}

fn error(status: StatusCode, kind: &str, message: &str) -> Response<ResponseBody> {
    json_response(
        status,
        &json!({"error": {"type": kind, "message": message}}),
    )
}

fn internal() -> Response<ResponseBody> {
    let mut response = Response::new(Full::new(Bytes::new()).boxed());
    *response.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
    response
}
