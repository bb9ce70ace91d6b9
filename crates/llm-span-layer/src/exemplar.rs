//! Trace ids for exemplars: which request (and so which trace) produced a sample.
//!
//! A request span may carry a trace id (the `trace_id` field, and `span_id`; or, with
//! the `opentelemetry` feature, the trace of its OpenTelemetry span). While the layer
//! records that request's time to first token, latency and queue wait, the trace is the
//! thread's [`current`] one: an exporter that keeps exemplars (llm-span-prometheus does)
//! reads it inside `HistogramFn::record`. Other recorders never look, and a request
//! without a trace id costs nothing more.

use std::cell::Cell;
use std::fmt;

/// A W3C trace id (16 bytes; also 8-byte ids, as some tracers use) and, if known, the
/// id of the span within it.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct TraceContext {
    trace_id: [u8; 16],
    /// 8 or 16.
    trace_len: u8,
    span_id: Option<[u8; 8]>,
}

impl TraceContext {
    /// Parses hex ids: a trace id of 32 (or 16) hex digits, a span id of 16; neither may
    /// be all zeros (the W3C invalid value). `None` for anything else.
    ///
    /// ```
    /// use llm_span_layer::exemplar::TraceContext;
    ///
    /// let trace = TraceContext::from_hex("4bf92f3577b34da6a3ce929d0e0e4736", Some("00f067aa0ba902b7"))
    ///     .expect("valid ids");
    /// assert_eq!(trace.trace_id_hex(), "4bf92f3577b34da6a3ce929d0e0e4736");
    /// assert_eq!(trace.span_id_hex().as_deref(), Some("00f067aa0ba902b7"));
    /// assert!(TraceContext::from_hex("00000000000000000000000000000000", None).is_none());
    /// assert!(TraceContext::from_hex("not-hex", None).is_none());
    /// ```
    pub fn from_hex(trace_id: &str, span_id: Option<&str>) -> Option<TraceContext> {
        let mut context = TraceContext {
            trace_id: [0; 16],
            trace_len: 0,
            span_id: None,
        };
        context.trace_len = match trace_id.len() {
            32 => 16,
            16 => 8,
            _ => return None,
        };
        decode_hex(
            trace_id,
            &mut context.trace_id[..usize::from(context.trace_len)],
        )?;
        if let Some(span_id) = span_id {
            context.span_id = Some(span_id_from_hex(span_id)?);
        }
        Some(context)
    }

    /// A trace from raw ids, as OpenTelemetry holds them; `None` for all-zero ids.
    pub fn from_bytes(trace_id: [u8; 16], span_id: Option<[u8; 8]>) -> Option<TraceContext> {
        if trace_id == [0; 16] || span_id == Some([0; 8]) {
            return None;
        }
        Some(TraceContext {
            trace_id,
            trace_len: 16,
            span_id,
        })
    }

    /// The trace id in lowercase hex.
    pub fn trace_id_hex(&self) -> String {
        hex(&self.trace_id[..usize::from(self.trace_len)])
    }

    /// The span id in lowercase hex, if known.
    pub fn span_id_hex(&self) -> Option<String> {
        self.span_id.map(|id| hex(&id))
    }

    /// The same trace with this span id.
    pub(crate) fn with_span_id(mut self, span_id: [u8; 8]) -> Self {
        if span_id != [0; 8] {
            self.span_id = Some(span_id);
        }
        self
    }
}

impl fmt::Debug for TraceContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TraceContext")
            .field("trace_id", &self.trace_id_hex())
            .field("span_id", &self.span_id_hex())
            .finish()
    }
}

/// A span id of 16 hex digits, not zero.
pub(crate) fn span_id_from_hex(text: &str) -> Option<[u8; 8]> {
    let mut bytes = [0; 8];
    (text.len() == 16).then_some(())?;
    decode_hex(text, &mut bytes)?;
    Some(bytes)
}

fn decode_hex(text: &str, out: &mut [u8]) -> Option<()> {
    let digit = |b: u8| char::from(b).to_digit(16);
    for (byte, pair) in out.iter_mut().zip(text.as_bytes().chunks_exact(2)) {
        *byte = u8::try_from(digit(pair[0])? << 4 | digit(pair[1])?).ok()?;
    }
    (out.iter().any(|b| *b != 0)).then_some(())
}

fn hex(bytes: &[u8]) -> String {
    use fmt::Write;
    let mut out = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        let _ = write!(out, "{byte:02x}");
    }
    out
}

thread_local! {
    /// The trace of the sample being recorded, and its time if the recorder knows it.
    static CURRENT: Cell<Option<(TraceContext, Option<f64>)>> = const { Cell::new(None) };
}

/// The trace of the sample being recorded on this thread, if the layer knows one: for
/// exporters, to read inside `HistogramFn::record`.
pub fn current() -> Option<TraceContext> {
    CURRENT.with(Cell::get).map(|(trace, _)| trace)
}

/// [`current`] and, when the layer knows it, the time the sample was taken, in seconds
/// since the Unix epoch (the layer reads its clock for the sample anyway; an exporter
/// that gets `None` reads the wall clock).
pub fn current_with_time() -> Option<(TraceContext, Option<f64>)> {
    CURRENT.with(Cell::get)
}

/// Runs `record` with `trace` as the thread's current trace (nothing to do without one):
/// histogram samples recorded inside carry it as their exemplar, in exporters that keep
/// exemplars. The layer does this for its own samples.
///
/// ```
/// use llm_span_layer::exemplar::{self, TraceContext};
///
/// let trace = TraceContext::from_hex("4bf92f3577b34da6a3ce929d0e0e4736", None);
/// exemplar::with_trace(trace, || assert_eq!(exemplar::current(), trace));
/// assert_eq!(exemplar::current(), None);
/// ```
#[inline]
pub fn with_trace<R>(trace: Option<TraceContext>, record: impl FnOnce() -> R) -> R {
    with_trace_at(trace, None, record)
}

/// [`with_trace`] for a sample taken at `unix_seconds`.
#[inline]
pub(crate) fn with_trace_at<R>(
    trace: Option<TraceContext>,
    unix_seconds: Option<f64>,
    record: impl FnOnce() -> R,
) -> R {
    let Some(trace) = trace else {
        return record();
    };
    struct Reset(Option<(TraceContext, Option<f64>)>);
    impl Drop for Reset {
        fn drop(&mut self) {
            CURRENT.with(|current| current.set(self.0));
        }
    }
    let _reset = Reset(CURRENT.with(|current| current.replace(Some((trace, unix_seconds)))));
    record()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_hex_of_the_right_length_and_not_zero() {
        let trace = TraceContext::from_hex("4BF92F3577B34DA6A3CE929D0E0E4736", None).expect("hex");
        assert_eq!(trace.trace_id_hex(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(trace.span_id_hex(), None);
        let short = TraceContext::from_hex("a3ce929d0e0e4736", None).expect("8 bytes");
        assert_eq!(short.trace_id_hex(), "a3ce929d0e0e4736");
        for bad in [
            "",
            "4bf92f3577b34da6a3ce929d0e0e473",
            "4bf92f3577b34da6a3ce929d0e0e47366",
            "4bf92f3577b34da6a3ce929d0e0e473g",
            "0000000000000000",
            "+bf92f3577b34da6",
            "4bf92f3577b34da6 a3ce929d0e0e473",
        ] {
            assert!(TraceContext::from_hex(bad, None).is_none(), "{bad:?}");
        }
        for bad_span in ["00f067aa0ba902b", "0000000000000000", "00f067aa0ba902bz"] {
            assert!(
                TraceContext::from_hex("a3ce929d0e0e4736", Some(bad_span)).is_none(),
                "{bad_span:?}"
            );
        }
        assert!(TraceContext::from_bytes([0; 16], None).is_none());
        assert!(TraceContext::from_bytes([1; 16], Some([0; 8])).is_none());
    }

    #[test]
    fn debug_shows_the_ids_in_hex() {
        let trace = TraceContext::from_hex("a3ce929d0e0e4736", Some("00f067aa0ba902b7"));
        assert_eq!(
            format!("{:?}", trace.expect("valid")),
            r#"TraceContext { trace_id: "a3ce929d0e0e4736", span_id: Some("00f067aa0ba902b7") }"#
        );
    }

    #[test]
    fn the_current_trace_is_set_while_recording_only() {
        let trace = TraceContext::from_hex("a3ce929d0e0e4736", None);
        assert_eq!(current(), None);
        assert_eq!(with_trace(trace, current), trace);
        assert_eq!(current(), None);
        assert_eq!(with_trace(None, current), None);
    }
}
