//! What a browser gets from `voipchat serve`: the JS SDK (`/sdk/voipchat.js` and its
//! TypeScript declarations), the demo page at `/`, the demo signer, and the test-only hooks
//! of the browser tests.
//!
//! Everything is embedded with `include_str!`, so the binary is self-contained.
//!
//! **Demo mode** (`demo`, on by default for local use): on startup the built-in demo app
//! [`DEMO_APP_ID`] is ensured in the store with VoIP enabled, `/` serves the demo page, and
//! `POST /demo/sign` signs joins — for the demo app only, since the app is not a field of the
//! request and the signature covers [`DEMO_APP_ID`]. With `demo = false` (`--no-demo`) none
//! of these routes exist and VoIP is switched off for the demo app if it exists.
//!
//! **Test hooks** (`test_hooks`, off by default): `POST /api/v1/test/drop-ws` closes
//! WebSocket connections from the server's side, the way a dying network or proxy does, so
//! the browser tests can check the SDK's reconnect. It needs [`HookedListener`] under the
//! HTTP server (and under TLS, when that is on) to reach the TCP connections.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures_util::task::AtomicWaker;
use rand::distributions::Alphanumeric;
use rand::Rng;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use voipchat_proto::signal::ID_MAX_CHARS;
use voipchat_proto::{AppId, ErrorCode, Failure, OpenId, Status};
use voipchat_store::{AppRecord, Store, StoreError};

use crate::{clock, AppState};

/// The SDK, an ES module.
pub const SDK_JS: &str = include_str!("../../../sdk/js/voipchat.js");
/// The `<voip-room>` element, a module the SDK imports (`./voip-room.js`).
pub const SDK_ROOM_JS: &str = include_str!("../../../sdk/js/voip-room.js");
/// The SDK's TypeScript declarations.
pub const SDK_DTS: &str = include_str!("../../../sdk/js/voipchat.d.ts");
/// The `wx`-shaped shim (`installWx`) and its declarations.
pub const SDK_WX_JS: &str = include_str!("../../../sdk/js/wx.js");
pub const SDK_WX_DTS: &str = include_str!("../../../sdk/js/wx.d.ts");

const JS: &str = "text/javascript; charset=utf-8";
const TS: &str = "application/typescript; charset=utf-8";

/// Every file of the browser SDK the server serves: path, content type, body.
pub const SDK_FILES: [(&str, &str, &str); 5] = [
    ("/sdk/voipchat.js", JS, SDK_JS),
    ("/sdk/voip-room.js", JS, SDK_ROOM_JS),
    ("/sdk/voipchat.d.ts", TS, SDK_DTS),
    ("/sdk/wx.js", JS, SDK_WX_JS),
    ("/sdk/wx.d.ts", TS, SDK_WX_DTS),
];
/// The demo page.
pub const DEMO_HTML: &str = include_str!("../assets/demo.html");

/// The built-in demo app of demo mode.
pub const DEMO_APP_ID: &str = "wxdemo0000000000";

/// The browser routes: the SDK always, the demo page and signer in demo mode.
pub fn routes(demo: bool) -> Router<AppState> {
    let mut router = Router::new();
    for (path, content_type, body) in SDK_FILES {
        router = router.route(path, get(move || async move { asset(content_type, body) }));
    }
    if demo {
        router
            .route("/", get(demo_page))
            .route("/demo/sign", post(demo_sign))
    } else {
        router
    }
}

async fn demo_page() -> Response {
    asset("text/html; charset=utf-8", DEMO_HTML)
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
            (header::ACCESS_CONTROL_ALLOW_ORIGIN, "*"),
        ],
        body,
    )
        .into_response()
}

/// Makes the store agree with the demo setting: with `demo`, the demo app exists with VoIP
/// enabled; without it, VoIP is off for the demo app if an earlier run created it (so old
/// demo signatures stop working along with the signer). Blocking: call it off async threads.
pub fn ensure_demo_app(store: &dyn Store, demo: bool) -> Result<(), StoreError> {
    let app_id = AppId::new(DEMO_APP_ID);
    match (store.app(&app_id)?, demo) {
        (None, true) => {
            let app = AppRecord {
                app_id: app_id.clone(),
                name: "voipchat demo".into(),
                // Nobody needs it: the demo signs on the server. It only has to be unguessable.
                secret: voipchat_auth::new_app_secret(),
                voip_enabled: true,
                created_at: clock::unix_now(),
                settings: Default::default(),
            };
            match store.create_app(&app) {
                // Another process created it meanwhile: fine, make sure VoIP is on.
                Err(StoreError::AppExists(_)) => {
                    store.set_voip_enabled(&app_id, true)?;
                }
                other => other?,
            }
            tracing::info!(app_id = DEMO_APP_ID, "demo mode: created the demo app");
        }
        (Some(app), true) if !app.voip_enabled => {
            store.set_voip_enabled(&app_id, true)?;
        }
        (Some(app), false) if app.voip_enabled => {
            store.set_voip_enabled(&app_id, false)?;
            tracing::info!(
                app_id = DEMO_APP_ID,
                "demo mode off: VoIP disabled for the demo app"
            );
        }
        _ => {}
    }
    Ok(())
}

/// The body of `POST /demo/sign`. There is deliberately no `appId`: the demo signs for the
/// demo app only, and a request that names any field besides these two is refused.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DemoSignRequest {
    pub open_id: String,
    pub group_id: String,
}

/// The answer of `POST /demo/sign`: everything `joinVoIPChat` needs.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DemoSignResponse {
    pub app_id: &'static str,
    pub open_id: String,
    pub group_id: String,
    pub nonce_str: String,
    pub time_stamp: u64,
    pub signature: String,
}

/// A refused demo signing: a status and the `{errCode, errMsg}` body of the backend API.
pub struct DemoError(StatusCode, Failure);

impl IntoResponse for DemoError {
    fn into_response(self) -> Response {
        (self.0, Json(Status::fail("api", &self.1))).into_response()
    }
}

impl DemoError {
    fn invalid(detail: String) -> Self {
        Self(
            StatusCode::BAD_REQUEST,
            Failure::with_detail(ErrorCode::InvalidField, detail),
        )
    }

    fn system() -> Self {
        Self(
            StatusCode::INTERNAL_SERVER_ERROR,
            Failure::new(ErrorCode::SystemError),
        )
    }
}

fn demo_check_id(name: &str, v: &str) -> Result<(), DemoError> {
    let n = v.chars().count();
    if n == 0 || n > ID_MAX_CHARS || v.chars().any(char::is_control) {
        return Err(DemoError::invalid(format!(
            "{name} must be 1 to {ID_MAX_CHARS} characters, no control characters"
        )));
    }
    Ok(())
}

/// One demo signing at a time, so two first requests for one openId cannot each issue a
/// session key and invalidate the other's signature.
static DEMO_SIGN_LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// `POST /demo/sign {openId, groupId}`: a signed join for the demo app. The user's session
/// key of the demo app is issued on first use and kept afterwards (so signatures handed out
/// earlier stay valid); it never leaves the server.
async fn demo_sign(
    State(state): State<AppState>,
    body: axum::body::Bytes,
) -> Result<Json<DemoSignResponse>, DemoError> {
    let req: DemoSignRequest = serde_json::from_slice(&body)
        .map_err(|e| DemoError::invalid(format!("expected {{\"openId\", \"groupId\"}}: {e}")))?;
    demo_check_id("openId", &req.open_id)?;
    demo_check_id("groupId", &req.group_id)?;
    let _guard = DEMO_SIGN_LOCK.lock().await;
    let store = state.store.clone();
    let open_id = OpenId::new(req.open_id.clone());
    let key = tokio::task::spawn_blocking(move || {
        let app_id = AppId::new(DEMO_APP_ID);
        if let Some(key) = store.session_key(&app_id, &open_id)? {
            return Ok(key);
        }
        let key = voipchat_auth::new_session_key();
        store.put_session_key(&app_id, &open_id, &key, clock::unix_now())?;
        Ok::<_, StoreError>(key)
    })
    .await
    .map_err(|_| DemoError::system())?
    .map_err(|e| {
        tracing::warn!("store error in demo sign: {e}");
        DemoError::system()
    })?;
    let nonce_str: String = rand::thread_rng()
        .sample_iter(&Alphanumeric)
        .take(16)
        .map(char::from)
        .collect();
    let time_stamp = clock::unix_now();
    let signature = voipchat_auth::sign(DEMO_APP_ID, &req.group_id, &nonce_str, time_stamp, &key);
    Ok(Json(DemoSignResponse {
        app_id: DEMO_APP_ID,
        open_id: req.open_id,
        group_id: req.group_id,
        nonce_str,
        time_stamp,
        signature,
    }))
}

// --- test hooks ---------------------------------------------------------------------------

/// The HTTP connections of a server run with `test_hooks`, so that a test can drop them.
#[derive(Clone, Default)]
pub struct TestHooks {
    conns: Arc<Mutex<HashMap<u64, Conn>>>,
    next_id: Arc<AtomicU64>,
}

struct Conn {
    kill: Arc<Kill>,
    /// The query string of the WebSocket upgrade, once the connection became one.
    ws_query: Option<String>,
}

#[derive(Default)]
struct Kill {
    killed: AtomicBool,
    waker: AtomicWaker,
}

impl Kill {
    fn fire(&self) {
        self.killed.store(true, Ordering::SeqCst);
        self.waker.wake();
    }
}

impl TestHooks {
    /// Drops every WebSocket connection whose upgrade query string contains `query` (all of
    /// them for ""); returns how many.
    pub fn drop_websockets(&self, query: &str) -> usize {
        let conns = self.conns.lock().unwrap_or_else(|e| e.into_inner());
        let mut n = 0;
        for conn in conns.values() {
            if conn.ws_query.as_deref().is_some_and(|q| q.contains(query)) {
                conn.kill.fire();
                n += 1;
            }
        }
        n
    }

    fn mark_websocket(&self, id: u64, query: &str) {
        let mut conns = self.conns.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(conn) = conns.get_mut(&id) {
            conn.ws_query = Some(query.to_string());
        }
    }
}

/// The connect info of a [`HookedListener`] connection.
#[derive(Clone, Copy, Debug)]
pub struct ConnTag {
    pub id: u64,
    pub peer: SocketAddr,
}

impl axum::extract::connect_info::Connected<axum::serve::IncomingStream<'_, HookedListener>>
    for ConnTag
{
    fn connect_info(stream: axum::serve::IncomingStream<'_, HookedListener>) -> Self {
        *stream.remote_addr()
    }
}

/// The same under TLS: the hooks act on the TCP stream below the TLS session.
impl
    axum::extract::connect_info::Connected<
        axum::serve::IncomingStream<'_, crate::tls::TlsListener<HookedListener>>,
    > for ConnTag
{
    fn connect_info(
        stream: axum::serve::IncomingStream<'_, crate::tls::TlsListener<HookedListener>>,
    ) -> Self {
        *stream.remote_addr()
    }
}

/// A TCP listener whose connections [`TestHooks`] can close from the server's side.
pub struct HookedListener {
    inner: TcpListener,
    hooks: TestHooks,
}

impl HookedListener {
    pub fn new(inner: TcpListener, hooks: TestHooks) -> Self {
        Self { inner, hooks }
    }
}

impl axum::serve::Listener for HookedListener {
    type Io = HookedStream;
    type Addr = ConnTag;

    async fn accept(&mut self) -> (HookedStream, ConnTag) {
        let (io, peer) = axum::serve::Listener::accept(&mut self.inner).await;
        // As `crate::no_delay` does for the listener without hooks.
        let _ = io.set_nodelay(true);
        let id = self.hooks.next_id.fetch_add(1, Ordering::Relaxed);
        let kill = Arc::new(Kill::default());
        self.hooks
            .conns
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(
                id,
                Conn {
                    kill: kill.clone(),
                    ws_query: None,
                },
            );
        let stream = HookedStream {
            inner: io,
            kill,
            id,
            hooks: self.hooks.clone(),
        };
        (stream, ConnTag { id, peer })
    }

    fn local_addr(&self) -> io::Result<ConnTag> {
        Ok(ConnTag {
            id: 0,
            peer: self.inner.local_addr()?,
        })
    }
}

/// A TCP stream that, once dropped by a hook, sends FIN and reads as closed, as when the
/// server's end goes away (the client sees the WebSocket close without a close frame).
pub struct HookedStream {
    inner: TcpStream,
    kill: Arc<Kill>,
    id: u64,
    hooks: TestHooks,
}

impl Drop for HookedStream {
    fn drop(&mut self) {
        self.hooks
            .conns
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.id);
    }
}

impl AsyncRead for HookedStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.kill.waker.register(cx.waker());
        if this.kill.killed.load(Ordering::SeqCst) {
            // Send FIN now; report end of stream so the server lets the connection go.
            let _ = Pin::new(&mut this.inner).poll_shutdown(cx);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for HookedStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.kill.killed.load(Ordering::SeqCst) {
            return Poll::Ready(Err(io::ErrorKind::ConnectionAborted.into()));
        }
        Pin::new(&mut this.inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// Adds the test hooks to a router served by [`HookedListener`] (with
/// `into_make_service_with_connect_info::<ConnTag>()`).
pub fn with_test_hooks(app: Router, hooks: TestHooks) -> Router {
    app.merge(
        Router::new()
            .route("/api/v1/test/drop-ws", post(drop_ws))
            .method_not_allowed_fallback(crate::http::method_not_allowed)
            .with_state(hooks.clone()),
    )
    .layer(axum::middleware::from_fn_with_state(hooks, tag_websockets))
}

/// Remembers which connections are WebSockets, and the query string they were opened with
/// (tests tag their sockets as `/ws?tag=NAME`; the signaling handler ignores the query).
async fn tag_websockets(
    State(hooks): State<TestHooks>,
    ConnectInfo(tag): ConnectInfo<ConnTag>,
    req: Request,
    next: Next,
) -> Response {
    if req.uri().path() == "/ws" {
        hooks.mark_websocket(tag.id, req.uri().query().unwrap_or(""));
    }
    next.run(req).await
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct DropWsRequest {
    /// Drop the WebSockets whose query string contains this ("" or absent: all).
    query: String,
}

#[derive(Serialize)]
struct DropWsResponse {
    dropped: usize,
}

/// `POST /api/v1/test/drop-ws {"query": "tag=bob"}` (test hooks only).
async fn drop_ws(State(hooks): State<TestHooks>, body: axum::body::Bytes) -> Response {
    let req: DropWsRequest = if body.is_empty() {
        DropWsRequest::default()
    } else {
        match serde_json::from_slice(&body) {
            Ok(r) => r,
            Err(e) => return (StatusCode::BAD_REQUEST, e.to_string()).into_response(),
        }
    };
    let dropped = hooks.drop_websockets(&req.query);
    tracing::info!(query = %req.query, dropped, "test hook: dropped WebSocket connections");
    Json(DropWsResponse { dropped }).into_response()
}
