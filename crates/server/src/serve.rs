//! The HTTP accept loop: hyper's HTTP/1.1 server with the limits axum's `serve` has no
//! settings for (docs/security.md#limits):
//!
//! - connections per client IP and in total ([`ConnLimits`]); one over a limit gets one
//!   answer, 503 (-12009) or 429 (-12010) with `Connection: close`, from a small pool of
//!   refusers (past that pool it is closed unanswered: a flood cannot make refusals cost);
//! - a header read timeout (hyper's, which also closes idle keep-alive connections) and a
//!   body read timeout ([`GuardedBody`]: the whole body within `http_body_timeout_ms`);
//! - a body size limit on every route (`http_max_body_bytes`): a declared `Content-Length`
//!   above it is refused before routing (413, -12008), a streamed body stops at it.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes, HttpBody};
use axum::http::{header, HeaderValue, Request, Response, StatusCode};
use axum::response::IntoResponse;
use axum::serve::Listener;
use axum::Router;
use http_body_util::Limited;
use hyper::body::{Frame, Incoming};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{mpsc, watch, Semaphore};
use voipchat_proto::{ErrorCode, Failure, Status};

use crate::conn_limits::{ConnLimits, PeerIp, Permit};
use crate::metrics::Metrics;

/// Connections being refused at once; more over-limit connections are closed unanswered.
const REFUSERS: usize = 64;
/// A refused connection gets this long to send the request it is refused.
const REFUSE_HEADER_TIMEOUT: Duration = Duration::from_secs(2);

/// The HTTP limits of one server.
#[derive(Clone)]
pub struct HttpLimits {
    pub conns: ConnLimits,
    pub header_timeout: Duration,
    pub body_timeout: Duration,
    pub max_body_bytes: usize,
}

impl HttpLimits {
    pub fn from_config(config: &crate::Config) -> Self {
        Self {
            conns: ConnLimits::new(
                config.max_connections,
                config.max_connections_per_ip,
                config.trusted_proxies.clone(),
            ),
            header_timeout: Duration::from_millis(config.http_header_timeout_ms),
            body_timeout: Duration::from_millis(config.http_body_timeout_ms),
            max_body_bytes: config.http_max_body_bytes,
        }
    }
}

/// Serves `app` on `listener` in a task until `stop` turns true; the task ends once the
/// connections it serves have finished (WebSockets end on their own: see `ws`).
pub fn spawn<L>(
    mut listener: L,
    app: Router,
    limits: HttpLimits,
    metrics: Arc<Metrics>,
    mut stop: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<std::io::Result<()>>
where
    L: Listener,
    L::Addr: PeerIp + Clone + Send + Sync + 'static,
{
    tokio::spawn(async move {
        let refusers = Arc::new(Semaphore::new(REFUSERS));
        // Every connection task holds a sender: when all are gone, all connections ended.
        let (alive, mut all_gone) = mpsc::channel::<()>(1);
        loop {
            let (io, addr) = tokio::select! {
                accepted = listener.accept() => accepted,
                _ = stop.wait_for(|s| *s) => break,
            };
            match limits.conns.acquire(addr.peer_ip()) {
                Ok(permit) => {
                    metrics.http_connections.inc();
                    let io = Counted {
                        io,
                        _permit: permit,
                        metrics: metrics.clone(),
                    };
                    tokio::spawn(serve_connection(
                        io,
                        addr,
                        app.clone(),
                        limits.clone(),
                        metrics.clone(),
                        stop.clone(),
                        alive.clone(),
                    ));
                }
                Err(refusal) => {
                    let Ok(refuser) = refusers.clone().try_acquire_owned() else {
                        metrics.http_refused("overflow");
                        continue;
                    };
                    metrics.http_refused(refusal.reason());
                    tracing::debug!(peer = ?addr.peer_ip(), reason = refusal.reason(), "connection refused");
                    let code = refusal.code();
                    tokio::spawn(async move {
                        let _refuser = refuser;
                        refuse(io, code).await;
                    });
                }
            }
        }
        drop(alive);
        let _ = all_gone.recv().await;
        Ok(())
    })
}

async fn serve_connection<I, A>(
    io: I,
    addr: A,
    app: Router,
    limits: HttpLimits,
    metrics: Arc<Metrics>,
    mut stop: watch::Receiver<bool>,
    _alive: mpsc::Sender<()>,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    A: Clone + Send + Sync + 'static,
{
    let guard = BodyGuard {
        timeout: limits.body_timeout,
        max: limits.max_body_bytes,
        metrics: metrics.clone(),
    };
    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
        let mut app = app.clone();
        let guard = guard.clone();
        let addr = addr.clone();
        async move {
            if let Some(refused) = guard.refuse_declared_length(&req) {
                return Ok::<_, std::convert::Infallible>(refused);
            }
            let mut req = req.map(|body| guard.wrap(body));
            // What axum's `ConnectInfo` extractor reads (the test hooks' connection tag).
            req.extensions_mut()
                .insert(axum::extract::ConnectInfo(addr));
            tower_service::Service::call(&mut app, req).await
        }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .serve_connection(TokioIo::new(io), service)
        .with_upgrades();
    tokio::pin!(conn);
    let stopping = async move {
        let _ = stop.wait_for(|s| *s).await;
    };
    let result = tokio::select! {
        r = conn.as_mut() => r,
        _ = stopping => {
            // Finish the request in progress, then close; an idle connection closes now.
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = result {
        if e.is_timeout() {
            metrics.http_timeout("header");
        }
        tracing::debug!("http connection: {e}");
    }
}

/// Answers one request on an over-limit connection with `code`, then closes it.
async fn refuse<I>(io: I, code: ErrorCode)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |_req: Request<Incoming>| async move {
        let status = match code {
            ErrorCode::TooManyConnectionsFromAddress => StatusCode::TOO_MANY_REQUESTS,
            _ => StatusCode::SERVICE_UNAVAILABLE,
        };
        let mut response = refusal(status, Failure::new(code));
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        Ok::<_, std::convert::Infallible>(response)
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(REFUSE_HEADER_TIMEOUT)
        .keep_alive(false)
        .serve_connection(TokioIo::new(io), service);
    let _ = tokio::time::timeout(REFUSE_HEADER_TIMEOUT * 2, conn).await;
}

/// A refusal in the API's `{errCode, errMsg}` form, closing the connection.
fn refusal(status: StatusCode, failure: Failure) -> Response<Body> {
    let mut response = (status, axum::Json(Status::fail("api", &failure))).into_response();
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

/// What every request body is wrapped in.
#[derive(Clone)]
struct BodyGuard {
    timeout: Duration,
    max: usize,
    metrics: Arc<Metrics>,
}

impl BodyGuard {
    /// 413 for a declared `Content-Length` above the limit, before any route sees it.
    fn refuse_declared_length<B>(&self, req: &Request<B>) -> Option<Response<Body>> {
        let declared = req
            .headers()
            .get(header::CONTENT_LENGTH)?
            .to_str()
            .ok()?
            .parse::<u64>()
            .ok()?;
        (declared > self.max as u64).then(|| {
            refusal(
                StatusCode::PAYLOAD_TOO_LARGE,
                Failure::with_detail(
                    ErrorCode::BodyTooLarge,
                    format!(
                        "{}: at most {} bytes",
                        ErrorCode::BodyTooLarge.reason(),
                        self.max
                    ),
                ),
            )
        })
    }

    fn wrap(&self, body: Incoming) -> Body {
        let timed = GuardedBody {
            inner: body,
            deadline: Box::pin(tokio::time::sleep(self.timeout)),
            metrics: Some(self.metrics.clone()),
        };
        Body::new(Limited::new(timed, self.max))
    }
}

/// The body did not arrive within `http_body_timeout_ms`.
#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive within its timeout")]
pub struct BodyTimeout;

/// A request body that fails with [`BodyTimeout`] once its deadline passes unfinished.
struct GuardedBody {
    inner: Incoming,
    deadline: Pin<Box<tokio::time::Sleep>>,
    /// Taken when the timeout is counted, so it is counted once.
    metrics: Option<Arc<Metrics>>,
}

impl HttpBody for GuardedBody {
    type Data = Bytes;
    type Error = axum::BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        if let Poll::Ready(frame) = Pin::new(&mut self.inner).poll_frame(cx) {
            return Poll::Ready(frame.map(|f| f.map_err(Into::into)));
        }
        if self.deadline.as_mut().poll(cx).is_ready() {
            if let Some(m) = self.metrics.take() {
                m.http_timeout("body");
            }
            return Poll::Ready(Some(Err(Box::new(BodyTimeout))));
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

/// Whether an error (a body extractor's rejection) comes from [`BodyTimeout`].
pub fn is_body_timeout(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut next = Some(e);
    while let Some(e) = next {
        if e.is::<BodyTimeout>() {
            return true;
        }
        next = e.source();
    }
    false
}

/// A connection's socket with its place in the counts: given back when the socket is
/// dropped, which for a WebSocket is when the WebSocket ends.
struct Counted<I> {
    io: I,
    _permit: Permit,
    metrics: Arc<Metrics>,
}

impl<I> Drop for Counted<I> {
    fn drop(&mut self) {
        self.metrics.http_connections.dec();
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for Counted<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Counted<I> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}
