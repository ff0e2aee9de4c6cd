//! The backend HTTP API (docs/api.md): what a game's server calls, authenticated with HTTP
//! Basic `appId:appSecret`. Session keys are issued here (our `code2Session`) and joins can be
//! signed here (our `getVoIPSign`) so the key need never leave the server; the rooms
//! (`rooms`) and the app's limits (`limits`) are run from here too. Every `/api/v1` route is
//! registered with its OpenAPI description in one place (`openapi`).

mod forward;
pub use forward::to_owner as forward_to_owner;
mod limits;
pub mod openapi;
mod rooms;
mod webhook;

use axum::extract::rejection::BytesRejection;
use axum::extract::{FromRequest, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::Engine as _;
use voipchat_auth::{new_session_key, sign};
use voipchat_proto::backend::{SessionKeyRequest, SessionKeyResponse, SignRequest, SignResponse};
use voipchat_proto::signal::{ID_MAX_CHARS, NONCE_MAX_CHARS};
use voipchat_proto::{AppId, ErrorCode, Failure, Status};
use voipchat_store::AppRecord;

use crate::{clock, AppState};

/// Largest request body of the backend API; every body it takes is a small JSON object.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// A failed backend call: an HTTP status and the `{errCode, errMsg}` body.
pub struct ApiError(StatusCode, Failure);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(Status::fail("api", &self.1))).into_response()
    }
}

impl ApiError {
    fn new(status: StatusCode, code: ErrorCode) -> Self {
        Self(status, Failure::new(code))
    }
    /// 404 with this code and its default reason.
    fn not_found(code: ErrorCode) -> Self {
        Self::new(StatusCode::NOT_FOUND, code)
    }
    fn invalid(detail: impl Into<String>) -> Self {
        Self(
            StatusCode::BAD_REQUEST,
            Failure::with_detail(ErrorCode::InvalidField, detail),
        )
    }
    fn system() -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, ErrorCode::SystemError)
    }

    /// -1000 that says what failed.
    fn system_detail(detail: impl Into<String>) -> Self {
        Self(
            StatusCode::INTERNAL_SERVER_ERROR,
            Failure::with_detail(ErrorCode::SystemError, detail.into()),
        )
    }
}

type ApiResult<T> = Result<Json<T>, ApiError>;

/// -1000 for a failed store call; one that could not reach the store (Redis down) says so,
/// so a client knows to try again later.
pub fn store_failure(e: &voipchat_store::StoreError) -> Failure {
    if e.is_unavailable() {
        Failure::with_detail(
            ErrorCode::SystemError,
            "system error: the store is unavailable, try again later",
        )
    } else {
        Failure::new(ErrorCode::SystemError)
    }
}

/// Runs a store call off the async threads.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, voipchat_store::StoreError> + Send + 'static,
) -> Result<T, ApiError> {
    match tokio::task::spawn_blocking(f).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => {
            tracing::warn!("store error in backend api: {e}");
            Err(ApiError(
                StatusCode::INTERNAL_SERVER_ERROR,
                store_failure(&e),
            ))
        }
        Err(_) => Err(ApiError::system()),
    }
}

/// The app a backend call authenticated as: the extractor checks HTTP Basic
/// `appId:appSecret` before anything else of the request is looked at.
pub struct AuthedApp(pub AppRecord);

impl FromRequestParts<AppState> for AuthedApp {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        authenticate(state, &parts.headers).await.map(AuthedApp)
    }
}

/// A JSON request body of the backend API: at most [`MAX_BODY_BYTES`], parsed into `T`.
/// Whatever is wrong with it is a typed refusal in the API's `{errCode, errMsg}` form: 413
/// (-12008) when too large, else 400 (-10007) saying what serde found (not JSON, a wrong
/// type, a missing or unknown field). The `Content-Type` is not looked at.
pub struct ApiJson<T>(pub T);

impl<T: serde::de::DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let body = axum::body::Bytes::from_request(req, state)
            .await
            .map_err(|e| match e {
                BytesRejection::FailedToBufferBody(f)
                    if f.status() == StatusCode::PAYLOAD_TOO_LARGE =>
                {
                    ApiError(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        Failure::with_detail(
                            ErrorCode::BodyTooLarge,
                            format!(
                                "{}: at most {MAX_BODY_BYTES} bytes",
                                ErrorCode::BodyTooLarge.reason()
                            ),
                        ),
                    )
                }
                other if crate::serve::is_body_timeout(&other) => ApiError(
                    StatusCode::REQUEST_TIMEOUT,
                    Failure::new(ErrorCode::RequestTimeout),
                ),
                other => ApiError::invalid(format!("cannot read the body: {other}")),
            })?;
        parse_body(&body).map(ApiJson)
    }
}

/// Checks HTTP Basic `appId:appSecret` and returns the app. Every refusal is -12004 with a
/// reason that says whether credentials were missing, malformed or wrong, and is logged at
/// info with the appId tried (never the secret).
async fn authenticate(state: &AppState, headers: &HeaderMap) -> Result<AppRecord, ApiError> {
    let refuse = |reason: &'static str, detail: &str, app_id: Option<&str>| {
        let code = ErrorCode::BadCredentials;
        // Debug formatting escapes control characters: the appId is the caller's text.
        let tried = app_id.map(|id| id.chars().take(ID_MAX_CHARS).collect::<String>());
        tracing::info!(
            err_code = code.code(),
            app_id = tried.as_deref().map(tracing::field::debug),
            reason,
            "backend api: authentication failed"
        );
        ApiError(
            StatusCode::UNAUTHORIZED,
            Failure::with_detail(code, detail.to_string()),
        )
    };
    const MALFORMED: &str = "Authorization is not HTTP Basic appId:appSecret";
    let Some(value) = headers.get(axum::http::header::AUTHORIZATION) else {
        return Err(refuse(
            "no credentials",
            "missing credentials: use HTTP Basic appId:appSecret",
            None,
        ));
    };
    let decoded = value
        .to_str()
        .ok()
        .and_then(|v| {
            let (scheme, token) = v.trim().split_once(' ')?;
            scheme.eq_ignore_ascii_case("basic").then_some(token)
        })
        .and_then(|token| {
            base64::engine::general_purpose::STANDARD
                .decode(token.trim())
                .ok()
        })
        .and_then(|bytes| String::from_utf8(bytes).ok());
    let Some(decoded) = decoded else {
        return Err(refuse("malformed credentials", MALFORMED, None));
    };
    let Some((app_id, secret)) = decoded.split_once(':') else {
        // No colon: the whole text may be a secret, so it is not logged.
        return Err(refuse("malformed credentials", MALFORMED, None));
    };
    let tried = app_id.to_string();
    let app_id = AppId::new(app_id);
    let store = state.store.clone();
    let app = blocking(move || store.app(&app_id)).await?;
    let wrong = ErrorCode::BadCredentials.reason();
    match app {
        Some(app) if voipchat_store::app_secret_matches(&app, secret) => Ok(app),
        Some(_) => Err(refuse("wrong appSecret", wrong, Some(&tried))),
        None => Err(refuse("unknown appId", wrong, Some(&tried))),
    }
}

fn check_id(name: &str, v: &str) -> Result<(), ApiError> {
    let n = v.chars().count();
    if n == 0 || n > ID_MAX_CHARS || v.chars().any(char::is_control) {
        return Err(ApiError::invalid(format!(
            "{name} must be 1 to {ID_MAX_CHARS} characters, no control characters"
        )));
    }
    Ok(())
}

/// Every body is a JSON object: serde's derive would also read a struct from an array
/// (`[]` as "no fields given"), a shape the API does not have.
fn parse_body<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    let first = body
        .iter()
        .find(|b| !matches!(b, b' ' | b'\t' | b'\n' | b'\r'));
    if first != Some(&b'{') {
        return Err(ApiError::invalid("invalid body: expected a JSON object"));
    }
    serde_json::from_slice(body).map_err(|e| ApiError::invalid(format!("invalid body: {e}")))
}

/// A new session key for a user (our `code2Session`); the previous one stops working.
///
/// Every call replaces the user's one key, so signatures made with the old key stop
/// verifying. Give the key to the game backend's own signing code, never to the client.
#[utoipa::path(
    post,
    path = "/api/v1/session-key",
    tag = "keys",
    request_body = SessionKeyRequest,
    responses(
        (status = 200, description = "The user's new session key.", body = SessionKeyResponse),
        (status = 400, description = "-10007: the body is not `{openId}` or the openId is empty, too long or has control characters.", body = voipchat_proto::Status),
    )
)]
pub async fn session_key(
    State(state): State<AppState>,
    AuthedApp(app): AuthedApp,
    ApiJson(req): ApiJson<SessionKeyRequest>,
) -> ApiResult<SessionKeyResponse> {
    check_id("openId", req.open_id.as_str())?;
    let key = new_session_key();
    let store = state.store.clone();
    let (open_id, k) = (req.open_id.clone(), key.clone());
    blocking(move || store.put_session_key(&app.app_id, &open_id, &k, clock::unix_now())).await?;
    Ok(Json(SessionKeyResponse {
        open_id: req.open_id,
        session_key: key,
    }))
}

/// The join signature for a user (our `cloud.getVoIPSign`).
///
/// Computed with the user's current session key, which stays on the server. A missing
/// nonce is a fresh random one (16 alphanumeric characters) and a missing timestamp the
/// server's current time; the answer carries both with the signature, so a backend can hand
/// it to the client as it is.
#[utoipa::path(
    post,
    path = "/api/v1/voip-sign",
    tag = "keys",
    request_body = SignRequest,
    responses(
        (status = 200, description = "What `joinVoIPChat` needs besides the groupId.", body = SignResponse),
        (status = 400, description = "-10007: the body is not a sign request, or a field is out of its range.", body = voipchat_proto::Status),
        (status = 404, description = "-10006: the openId has no session key.", body = voipchat_proto::Status),
    )
)]
pub async fn voip_sign(
    State(state): State<AppState>,
    AuthedApp(app): AuthedApp,
    ApiJson(req): ApiJson<SignRequest>,
) -> ApiResult<SignResponse> {
    use rand::Rng as _;
    check_id("openId", req.open_id.as_str())?;
    check_id("groupId", req.group_id.as_str())?;
    let nonce_str = match req.nonce {
        Some(nonce) => {
            let nonce_chars = nonce.chars().count();
            if nonce_chars == 0 || nonce_chars >= NONCE_MAX_CHARS {
                return Err(ApiError::invalid(format!(
                    "nonceStr must be 1 to {} characters",
                    NONCE_MAX_CHARS - 1
                )));
            }
            nonce
        }
        None => rand::thread_rng()
            .sample_iter(&rand::distributions::Alphanumeric)
            .take(16)
            .map(char::from)
            .collect(),
    };
    let time_stamp = req.timestamp.unwrap_or_else(clock::unix_now);
    if time_stamp > MAX_SAFE_INTEGER {
        // A join refuses it (a JS client cannot send it as the same number), so signing it
        // would only hand out a signature nobody can use.
        return Err(ApiError::invalid(format!(
            "timestamp must be at most {MAX_SAFE_INTEGER}"
        )));
    }
    let store = state.store.clone();
    let (app_id, open_id) = (app.app_id.clone(), req.open_id.clone());
    let key = blocking(move || store.session_key(&app_id, &open_id)).await?;
    let Some(key) = key else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            ErrorCode::UnknownSession,
        ));
    };
    let signature = sign(
        app.app_id.as_str(),
        req.group_id.as_str(),
        &nonce_str,
        time_stamp,
        &key,
    );
    Ok(Json(SignResponse {
        nonce_str,
        time_stamp,
        signature,
    }))
}

/// JavaScript's `Number.MAX_SAFE_INTEGER`, the largest `timeStamp` a join accepts.
const MAX_SAFE_INTEGER: u64 = (1 << 53) - 1;

/// `/metrics`: every metric in the Prometheus text exposition format (OpenMetrics).
pub async fn metrics(State(state): State<AppState>) -> Response {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.encode(),
    )
        .into_response()
}

/// `/healthz`: the process is up and answering HTTP.
pub async fn healthz() -> &'static str {
    "ok"
}

/// `/readyz`'s answer: each part, "ok" or why not.
#[derive(serde::Serialize)]
pub struct Readiness {
    ready: bool,
    store: String,
    media: String,
}

/// `/readyz`: ready for joins. 200 when the store answers a read and the media task (which
/// owns the bound UDP socket) runs and the server is not stopping; else 503 saying which
/// part is not.
pub async fn readyz(State(state): State<AppState>) -> (StatusCode, Json<Readiness>) {
    let store = state.store.clone();
    let store = match tokio::task::spawn_blocking(move || store.ready()).await {
        Ok(Ok(())) => "ok".to_string(),
        Ok(Err(e)) => format!("the store does not answer: {e}"),
        Err(_) => "the store check failed".to_string(),
    };
    let media = if *state.shutdown.borrow() {
        "the server is stopping".to_string()
    } else if state.media.is_closed() {
        "the media task has stopped".to_string()
    } else {
        "ok".to_string()
    };
    let ready = store == "ok" && media == "ok";
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        Json(Readiness {
            ready,
            store,
            media,
        }),
    )
}

/// Any path no route has: 404 with -12005, in the API's `{errCode, errMsg}` form.
pub async fn not_found(method: Method, uri: Uri) -> ApiError {
    ApiError(
        StatusCode::NOT_FOUND,
        Failure::with_detail(
            ErrorCode::UnknownRoute,
            format!(
                "{}: {method} {}",
                ErrorCode::UnknownRoute.reason(),
                uri.path()
            ),
        ),
    )
}

/// A route that exists, called with a method it does not take: 405 with -12006.
pub async fn method_not_allowed(method: Method, uri: Uri) -> ApiError {
    ApiError(
        StatusCode::METHOD_NOT_ALLOWED,
        Failure::with_detail(
            ErrorCode::MethodNotAllowed,
            format!(
                "{}: {method} {}",
                ErrorCode::MethodNotAllowed.reason(),
                uri.path()
            ),
        ),
    )
}
