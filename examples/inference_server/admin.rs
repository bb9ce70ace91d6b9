//! Run-time speed changes, for tests and demos of alerting: slow a model down, watch the
//! TTFT alert fire, speed it up again, watch it resolve.
//!
//! Off unless the server runs with `--admin`. Then, on the API address:
//!
//! ```text
//! PUT /admin/models/{name}   {"prefill_ms_per_token": 30, "decode_ms_per_token": 5}
//! ```
//!
//! Either field may be left out (it keeps its value); the answer is the model's speed
//! after the change. Nothing here depends on the HTTP framework: the router hands over
//! the method, path and body and sends back the status and JSON that [`handle`] returns.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde_json::{json, Value};

use crate::engine::Engine;

/// Path prefix of the admin endpoint.
pub(crate) const PREFIX: &str = "/admin/models/";

/// A model's current per-token prefill and decode times, changeable while requests run.
#[derive(Debug)]
pub(crate) struct Speed {
    prefill_ns: AtomicU64,
    decode_ns: AtomicU64,
}

impl Speed {
    pub(crate) fn new(prefill: Duration, decode: Duration) -> Self {
        let ns = |d: Duration| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        Self {
            prefill_ns: AtomicU64::new(ns(prefill)),
            decode_ns: AtomicU64::new(ns(decode)),
        }
    }

    pub(crate) fn prefill_per_token(&self) -> Duration {
        Duration::from_nanos(self.prefill_ns.load(Ordering::Relaxed))
    }

    pub(crate) fn decode_per_token(&self) -> Duration {
        Duration::from_nanos(self.decode_ns.load(Ordering::Relaxed))
    }

    fn as_json(&self, model: &str) -> Value {
        json!({
            "model": model,
            "prefill_ms_per_token": self.prefill_per_token().as_secs_f64() * 1e3,
            "decode_ms_per_token": self.decode_per_token().as_secs_f64() * 1e3,
        })
    }
}

/// Answers a request under [`PREFIX`]: `(HTTP status, JSON body)`.
pub(crate) fn handle(engine: &Engine, method: &str, path: &str, body: &[u8]) -> (u16, Value) {
    let error = |status: u16, message: String| (status, json!({"error": {"message": message}}));
    let Some(name) = path.strip_prefix(PREFIX) else {
        return error(404, "no such endpoint".to_owned());
    };
    let Some(model) = engine.model(name) else {
        return error(404, format!("model {name:?} is not served"));
    };
    if method != "PUT" {
        return error(405, "use PUT".to_owned());
    }
    let value: Value = match serde_json::from_slice(body) {
        Ok(Value::Object(map)) => Value::Object(map),
        _ => return error(400, "the body must be a JSON object".to_owned()),
    };
    let ms = |field: &str| -> Result<Option<u64>, String> {
        match value.get(field) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => v
                .as_f64()
                .filter(|ms| (0.0..=60_000.0).contains(ms))
                .map(|ms| Some((ms * 1e6) as u64))
                .ok_or(format!("{field} must be a number of ms from 0 to 60000")),
        }
    };
    let (prefill, decode) = match (ms("prefill_ms_per_token"), ms("decode_ms_per_token")) {
        (Ok(prefill), Ok(decode)) => (prefill, decode),
        (Err(message), _) | (_, Err(message)) => return error(400, message),
    };
    if let Some(ns) = prefill {
        model.speed.prefill_ns.store(ns, Ordering::Relaxed);
    }
    if let Some(ns) = decode {
        model.speed.decode_ns.store(ns, Ordering::Relaxed);
    }
    (200, model.speed.as_json(name))
}
