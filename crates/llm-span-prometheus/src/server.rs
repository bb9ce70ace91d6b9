//! The `/metrics` HTTP/1.1 listener: its own thread, its own current-thread runtime.
//!
//! Running on a dedicated thread keeps scrapes off the application's runtime (and works
//! in applications that have none); rendering goes to `spawn_blocking` so that a large
//! render does not stall other connections or `/health`.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::fmt;
use std::future::{poll_fn, Future};
use std::net::{IpAddr, SocketAddr};
use std::pin::pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::Poll;
use std::thread::JoinHandle;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{self, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tokio::task::{AbortHandle, JoinSet};

use crate::allow::Allowlist;
use crate::auth::{AuthResult, Credentials};
use crate::error::ExporterError;
use crate::negotiate;
use crate::recorder::MetricsHandle;

/// The content type of the Prometheus text exposition format.
pub(crate) const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Requests are a line and a few headers: hyper's smallest read buffer is plenty.
const MAX_BUF_SIZE: usize = 8192;
const MAX_HEADERS: usize = 32;
/// How long a new connection waits for the one it evicts to let go of its slot.
const HANDOVER_TIMEOUT: Duration = Duration::from_secs(1);

pub(crate) struct ServerConfig {
    pub(crate) listen: SocketAddr,
    pub(crate) allow: Allowlist,
    pub(crate) credentials: Credentials,
    pub(crate) header_read_timeout: Duration,
    pub(crate) connection_timeout: Duration,
    pub(crate) shutdown_timeout: Duration,
    pub(crate) max_connections: usize,
    pub(crate) max_bytes_in_flight: usize,
    #[cfg(feature = "tls")]
    pub(crate) tls: Option<Arc<rustls::ServerConfig>>,
}

struct State {
    config: ServerConfig,
    metrics: MetricsHandle,
    /// Bytes of the `/metrics` bodies being sent now.
    in_flight: Arc<AtomicUsize>,
    #[cfg(feature = "tls")]
    tls: Option<tokio_rustls::TlsAcceptor>,
}

/// The running listener. Dropping it (or [`shutdown`](Self::shutdown)) stops the
/// listener; keep it alive for as long as metrics should be served, or
/// [`detach`](Self::detach) it.
#[must_use = "dropping the ExporterHandle stops the /metrics listener; keep it, or call detach()"]
pub struct ExporterHandle {
    local_addr: SocketAddr,
    metrics: MetricsHandle,
    stop: Option<watch::Sender<bool>>,
    thread: Option<JoinHandle<()>>,
}

impl fmt::Debug for ExporterHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ExporterHandle")
            .field("local_addr", &self.local_addr)
            .finish_non_exhaustive()
    }
}

impl ExporterHandle {
    /// The address the listener is bound to (the actual port when port 0 was asked for).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// A handle that renders the same metrics the listener serves.
    pub fn metrics(&self) -> &MetricsHandle {
        &self.metrics
    }

    /// Stops accepting connections (the port is closed when this returns), lets
    /// in-flight requests finish within the shutdown timeout, and joins the thread.
    pub fn shutdown(mut self) {
        self.stop_and_join();
    }

    /// Lets the listener run for the rest of the process, without a handle.
    pub fn detach(mut self) {
        if let Some(stop) = self.stop.take() {
            // The listener stops when the sender goes away: never let it go.
            std::mem::forget(stop);
        }
        self.thread = None;
    }

    fn stop_and_join(&mut self) {
        if let Some(stop) = self.stop.take() {
            stop.send_replace(true);
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for ExporterHandle {
    fn drop(&mut self) {
        self.stop_and_join();
    }
}

pub(crate) fn start(
    config: ServerConfig,
    metrics: MetricsHandle,
) -> Result<ExporterHandle, ExporterError> {
    let addr = config.listen;
    // Bound here, on the caller's thread, so that a taken port fails at once.
    let listener = std::net::TcpListener::bind(addr).map_err(|source| {
        if source.kind() == std::io::ErrorKind::AddrInUse {
            ExporterError::AddressInUse { addr }
        } else {
            ExporterError::Bind { addr, source }
        }
    })?;
    listener
        .set_nonblocking(true)
        .map_err(ExporterError::Runtime)?;
    let local_addr = listener.local_addr().map_err(ExporterError::Runtime)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .max_blocking_threads(4)
        .thread_name("llm-metrics-render")
        .build()
        .map_err(ExporterError::Runtime)?;
    let (stop, stopped) = watch::channel(false);
    let state = Arc::new(State {
        #[cfg(feature = "tls")]
        tls: config.tls.clone().map(tokio_rustls::TlsAcceptor::from),
        config,
        metrics: metrics.clone(),
        in_flight: Arc::default(),
    });
    let thread = std::thread::Builder::new()
        .name("llm-metrics-http".into())
        .spawn(move || {
            runtime.block_on(accept_loop(listener, state, stopped));
            // Renders still running past the drain bound are left to finish detached.
            runtime.shutdown_timeout(Duration::from_secs(1));
        })
        .map_err(ExporterError::Runtime)?;
    Ok(ExporterHandle {
        local_addr,
        metrics,
        stop: Some(stop),
        thread: Some(thread),
    })
}

async fn accept_loop(
    listener: std::net::TcpListener,
    state: Arc<State>,
    mut stopped: watch::Receiver<bool>,
) {
    let Ok(listener) = TcpListener::from_std(listener) else {
        return;
    };
    let permits = Arc::new(Semaphore::new(state.config.max_connections));
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(state.config.header_read_timeout)
        .max_buf_size(MAX_BUF_SIZE)
        .max_headers(MAX_HEADERS)
        .keep_alive(true);
    let mut connections = JoinSet::new();
    // Connections in accept order, with whether each was served metrics yet.
    let mut open: VecDeque<(AbortHandle, Arc<AtomicBool>)> = VecDeque::new();
    loop {
        let accepted = match race(listener.accept(), wait_stop(&mut stopped)).await {
            Either::Left(accepted) => accepted,
            Either::Right(()) => break,
        };
        while connections.try_join_next().is_some() {}
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(_) => {
                // Out of file descriptors, say: back off instead of spinning.
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        open.retain(|(handle, _)| !handle.is_finished());
        let permit = match Arc::clone(&permits).try_acquire_owned() {
            Ok(permit) => permit,
            // Full: make room by evicting the oldest connection that was never served
            // metrics (a silent or byte-a-second client, one that was refused or asked
            // for /health only), so that such clients cannot lock Prometheus out; the
            // new one takes its place once it is gone.
            Err(_) => match open
                .iter()
                .position(|(_, authorized)| !authorized.load(Ordering::Acquire))
            {
                Some(index) => {
                    if let Some((victim, _)) = open.remove(index) {
                        victim.abort();
                    }
                    // The loop waits for the victim's permit before it accepts again, so
                    // the server holds at most one connection beyond the cap: a flood
                    // waits in the kernel's listen queue (the backlog), not in the server.
                    let handover = tokio::time::timeout(
                        HANDOVER_TIMEOUT,
                        Arc::clone(&permits).acquire_owned(),
                    );
                    match race(handover, wait_stop(&mut stopped)).await {
                        Either::Left(Ok(Ok(permit))) => permit,
                        Either::Left(_) => continue,
                        Either::Right(()) => break,
                    }
                }
                // Every connection was served metrics: refuse the new one.
                None => {
                    drop(stream);
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let state = Arc::clone(&state);
        let http = http.clone();
        let stopped = stopped.clone();
        let authorized = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&authorized);
        let handle = connections.spawn(async move {
            connection(stream, peer.ip(), state, http, stopped, flag).await;
            drop(permit);
        });
        open.push_back((handle, authorized));
    }
    // Closes the port before waiting for in-flight requests.
    drop(listener);
    let drain = async { while connections.join_next().await.is_some() {} };
    // Cannot overflow, whatever the timeout (the builder also caps it at a day).
    let bound = state
        .config
        .shutdown_timeout
        .saturating_add(Duration::from_millis(100));
    let _ = tokio::time::timeout(bound, drain).await;
    connections.abort_all();
}

async fn connection(
    stream: tokio::net::TcpStream,
    peer: IpAddr,
    state: Arc<State>,
    http: http1::Builder,
    stopped: watch::Receiver<bool>,
    authorized: Arc<AtomicBool>,
) {
    #[cfg(feature = "tls")]
    if let Some(acceptor) = state.tls.clone() {
        // The handshake counts against the header timeout: a silent client must not linger.
        let handshake =
            tokio::time::timeout(state.config.header_read_timeout, acceptor.accept(stream));
        if let Ok(Ok(tls)) = handshake.await {
            serve(TokioIo::new(tls), peer, state, http, stopped, authorized).await;
        }
        return;
    }
    serve(TokioIo::new(stream), peer, state, http, stopped, authorized).await;
}

async fn serve<I>(
    io: I,
    peer: IpAddr,
    state: Arc<State>,
    http: http1::Builder,
    mut stopped: watch::Receiver<bool>,
    authorized: Arc<AtomicBool>,
) where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let service_state = Arc::clone(&state);
    let service = service_fn(move |request| {
        let state = Arc::clone(&service_state);
        let authorized = Arc::clone(&authorized);
        async move { Ok::<_, Infallible>(respond(request, peer, &state, &authorized).await) }
    });
    let mut conn = pin!(http.serve_connection(io, service));
    let deadline = tokio::time::sleep(state.config.connection_timeout);
    if let Either::Right(_) = race(conn.as_mut(), race(deadline, wait_stop(&mut stopped))).await {
        // Too old, or shutting down: finish the response in progress, then close.
        conn.as_mut().graceful_shutdown();
        let _ = tokio::time::timeout(state.config.shutdown_timeout, conn).await;
    }
}

/// Answers one request; sets `authorized` when it serves metrics, which makes the
/// connection one that a new connection at the cap does not evict.
async fn respond(
    request: Request<Incoming>,
    peer: IpAddr,
    state: &State,
    authorized: &AtomicBool,
) -> Response<Full<Bytes>> {
    let has_body = request.headers().contains_key(header::TRANSFER_ENCODING)
        || request
            .headers()
            .get(header::CONTENT_LENGTH)
            .is_some_and(|len| len.as_bytes() != b"0");
    if has_body {
        // Nothing here takes a body: refuse without reading it.
        let mut response = text(
            StatusCode::PAYLOAD_TOO_LARGE,
            "request bodies are not accepted\n",
        );
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
        return response;
    }
    match request.uri().path() {
        // Liveness only: no allowlist, no auth, reveals nothing (probes come from anywhere).
        "/health" => match *request.method() {
            Method::GET | Method::HEAD => text(StatusCode::OK, "ok\n"),
            _ => method_not_allowed(),
        },
        "/metrics" => {
            if !state.config.allow.admits(peer) {
                return text(StatusCode::FORBIDDEN, "forbidden\n");
            }
            let authorization = request
                .headers()
                .get(header::AUTHORIZATION)
                .map(HeaderValue::as_bytes);
            if state.config.credentials.check(authorization) == AuthResult::Denied {
                let mut response = text(StatusCode::UNAUTHORIZED, "unauthorized\n");
                for challenge in state.config.credentials.challenges() {
                    response.headers_mut().append(
                        header::WWW_AUTHENTICATE,
                        HeaderValue::from_static(challenge),
                    );
                }
                return response;
            }
            if !matches!(*request.method(), Method::GET | Method::HEAD) {
                return method_not_allowed();
            }
            let headers = request.headers();
            let gzip = negotiate::accepts_gzip(&negotiate::joined(
                headers.get_all(header::ACCEPT_ENCODING),
            ));
            let accept = negotiate::joined(headers.get_all(header::ACCEPT));
            let format = negotiate::format(Some(&accept));
            // HEAD renders too, so its Content-Length is the one GET would send;
            // hyper leaves the body out.
            let metrics = state.metrics.clone();
            let rendered = tokio::task::spawn_blocking(move || {
                let body = metrics.render_as(format);
                if gzip {
                    compress(body.as_bytes())
                } else {
                    Ok(body.into_bytes())
                }
            })
            .await;
            match rendered {
                Ok(Ok(body)) => {
                    let budget = state.config.max_bytes_in_flight;
                    let Some(body) = admit(body, &state.in_flight, budget) else {
                        let mut response = text(
                            StatusCode::SERVICE_UNAVAILABLE,
                            "too many bodies in flight\n",
                        );
                        response
                            .headers_mut()
                            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
                        return response;
                    };
                    authorized.store(true, Ordering::Release);
                    let mut response = Response::new(Full::new(body));
                    let headers = response.headers_mut();
                    headers.insert(
                        header::CONTENT_TYPE,
                        HeaderValue::from_static(format.content_type()),
                    );
                    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
                    headers.insert(
                        header::VARY,
                        HeaderValue::from_static("Accept, Accept-Encoding"),
                    );
                    if gzip {
                        headers.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
                    }
                    response
                }
                Ok(Err(_)) | Err(_) => {
                    text(StatusCode::INTERNAL_SERVER_ERROR, "rendering failed\n")
                }
            }
        }
        _ => text(StatusCode::NOT_FOUND, "not found\n"),
    }
}

/// A body being sent, counted in the bytes in flight until the last of it is dropped
/// (written, or its connection gone).
struct InFlight {
    body: Vec<u8>,
    bytes: Arc<AtomicUsize>,
}

impl AsRef<[u8]> for InFlight {
    fn as_ref(&self) -> &[u8] {
        &self.body
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.bytes.fetch_sub(self.body.len(), Ordering::AcqRel);
    }
}

/// `body`, counted in `bytes` while it is in flight; `None` when the bodies in flight
/// and it would hold more than `budget` bytes (a body alone is always admitted).
fn admit(body: Vec<u8>, bytes: &Arc<AtomicUsize>, budget: usize) -> Option<Bytes> {
    let len = body.len();
    bytes
        .fetch_update(Ordering::AcqRel, Ordering::Acquire, |held| {
            (held == 0 || held + len <= budget).then_some(held + len)
        })
        .ok()?;
    let bytes = Arc::clone(bytes);
    Some(Bytes::from_owner(InFlight { body, bytes }))
}

/// gzip at the fastest level: a 25,000-series body (about 3 MB) compresses in a few
/// tens of milliseconds to about a tenth of its size.
fn compress(body: &[u8]) -> std::io::Result<Vec<u8>> {
    use std::io::Write;
    let mut encoder = flate2::write::GzEncoder::new(
        Vec::with_capacity(body.len() / 8),
        flate2::Compression::fast(),
    );
    encoder.write_all(body)?;
    encoder.finish()
}

fn text(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

fn method_not_allowed() -> Response<Full<Bytes>> {
    let mut response = text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
    response
        .headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
    response
}

/// Resolves when shutdown is requested (or the handle that requests it is gone).
async fn wait_stop(stopped: &mut watch::Receiver<bool>) {
    loop {
        if *stopped.borrow_and_update() {
            return;
        }
        if stopped.changed().await.is_err() {
            return;
        }
    }
}

enum Either<A, B> {
    Left(A),
    Right(B),
}

/// Polls both futures and returns the first output (`a` first on ties): a two-armed
/// `select!` without tokio's `macros` feature.
async fn race<A: Future, B: Future>(a: A, b: B) -> Either<A::Output, B::Output> {
    let mut a = pin!(a);
    let mut b = pin!(b);
    poll_fn(|cx| {
        if let Poll::Ready(out) = a.as_mut().poll(cx) {
            return Poll::Ready(Either::Left(out));
        }
        if let Poll::Ready(out) = b.as_mut().poll(cx) {
            return Poll::Ready(Either::Right(out));
        }
        Poll::Pending
    })
    .await
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use llm_span_testkit::http;

    fn loopback() -> crate::ExporterBuilder {
        crate::ExporterBuilder::new().with_listen_addr(SocketAddr::from(([127, 0, 0, 1], 0)))
    }

    fn health(addr: SocketAddr) -> Option<u16> {
        http::try_request(addr, "GET", "/health", &[], None)
            .ok()
            .map(|response| response.status)
    }

    #[test]
    fn a_detached_listener_keeps_serving() {
        let (_, handle) = loopback().spawn().expect("listener");
        let addr = handle.local_addr();
        assert_eq!(
            format!("{handle:?}"),
            format!("ExporterHandle {{ local_addr: {addr}, .. }}")
        );
        handle.detach();
        // The listener runs for the rest of this test binary, on a loopback port.
        assert_eq!(health(addr), Some(200));
    }
}
