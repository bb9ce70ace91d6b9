//! W3C trace context: each request runs in the trace its client sent in `traceparent`
//! (or a new one), its span gets an id of its own, and the response names both in a
//! `traceparent` header, so a client can find the exemplar of its own request.
//!
//! The request span carries them as its `trace_id` and `span_id` fields: that is all the
//! metrics layer needs to put the trace on the time-to-first-token, latency and queue
//! buckets (an application that runs tracing-opentelemetry can use the layer's
//! `opentelemetry` feature instead).

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::http::HeaderMap;

/// The trace a request runs in.
#[derive(Debug, Clone)]
pub(crate) struct Trace {
    /// 32 lowercase hex digits.
    pub(crate) trace_id: String,
    /// This server's span: 16 lowercase hex digits.
    pub(crate) span_id: String,
}

impl Trace {
    /// The client's trace when it sent a valid `traceparent`
    /// (`00-<32 hex trace id>-<16 hex parent id>-<2 hex flags>`), else a new one.
    pub(crate) fn from_headers(headers: &HeaderMap) -> Trace {
        let client = headers
            .get("traceparent")
            .and_then(|value| value.to_str().ok())
            .and_then(parse_traceparent);
        Trace {
            trace_id: client.unwrap_or_else(|| random_hex(16)),
            span_id: random_hex(8),
        }
    }

    /// The `traceparent` header value that names this request's span.
    pub(crate) fn traceparent(&self) -> String {
        format!("00-{}-{}-01", self.trace_id, self.span_id)
    }
}

/// The trace id of a valid `traceparent`, lowercased.
fn parse_traceparent(value: &str) -> Option<String> {
    let mut parts = value.trim().split('-');
    let (version, trace_id, parent_id, flags) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let hex = |text: &str, len: usize| {
        text.len() == len
            && text.bytes().all(|b| b.is_ascii_hexdigit())
            && text.bytes().any(|b| b != b'0')
    };
    // Version ff is invalid; later versions may add fields after the flags.
    let valid = version.len() == 2
        && version.bytes().all(|b| b.is_ascii_hexdigit())
        && !version.eq_ignore_ascii_case("ff")
        && (version != "00" || parts.next().is_none())
        && hex(trace_id, 32)
        && hex(parent_id, 16)
        && flags.len() == 2
        && flags.bytes().all(|b| b.is_ascii_hexdigit());
    valid.then(|| trace_id.to_ascii_lowercase())
}

/// `bytes` random bytes as hex: a per-process random key over a counter, never zero.
fn random_hex(bytes: usize) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(1);
    static KEY: std::sync::OnceLock<RandomState> = std::sync::OnceLock::new();
    let key = KEY.get_or_init(RandomState::new);
    let mut out = String::with_capacity(bytes * 2);
    while out.len() < bytes * 2 {
        let word = key.hash_one(COUNTER.fetch_add(1, Ordering::Relaxed)) | 1;
        out.push_str(&format!("{word:016x}"));
    }
    out.truncate(bytes * 2);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparent_is_parsed_as_the_w3c_spec_says() {
        let valid = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        assert_eq!(
            parse_traceparent(valid).as_deref(),
            Some("4bf92f3577b34da6a3ce929d0e0e4736")
        );
        for invalid in [
            "",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01",
        ] {
            assert_eq!(parse_traceparent(invalid), None, "{invalid:?}");
        }
        let made = random_hex(16);
        assert_eq!(made.len(), 32);
        assert_ne!(made, random_hex(16));
    }
}
