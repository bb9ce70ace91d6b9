//! The trace of a request's OpenTelemetry span (feature `opentelemetry`), for exemplars
//! when the application also runs `tracing-opentelemetry`.

use std::sync::OnceLock;

use opentelemetry::trace::TraceContextExt;
use tracing::dispatcher::WeakDispatch;
use tracing_core::span::Id;

use crate::exemplar::TraceContext;

/// The dispatcher the layer is part of, as `tracing_opentelemetry::get_otel_context`
/// needs it; weak, so that the layer does not keep its own subscriber alive.
#[derive(Debug, Default)]
pub(crate) struct OtelDispatch(OnceLock<WeakDispatch>);

impl OtelDispatch {
    pub(crate) fn register(&self, dispatch: &tracing::Dispatch) {
        let _ = self.0.set(dispatch.downgrade());
    }

    /// The trace and span id of span `id`'s OpenTelemetry span, if it has a valid one.
    pub(crate) fn trace_of(&self, id: &Id) -> Option<TraceContext> {
        let dispatch = self.0.get()?.upgrade()?;
        let context = tracing_opentelemetry::get_otel_context(id, &dispatch)?;
        let span = context.span();
        let span_context = span.span_context();
        if !span_context.is_valid() {
            return None;
        }
        TraceContext::from_bytes(
            span_context.trace_id().to_bytes(),
            Some(span_context.span_id().to_bytes()),
        )
    }
}
