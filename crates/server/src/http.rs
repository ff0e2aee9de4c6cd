//! The backend HTTP API (docs/api.md): what a game's server calls, authenticated with HTTP
//! Basic `appId:appSecret`. Session keys are issued here (our `code2Session`) and joins can be
//! signed here (our `getVoIPSign`) so the key need never leave the server.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::Engine as _;
use tokio::sync::oneshot;
use voipchat_auth::{new_session_key, secrets_equal, sign};
use voipchat_proto::backend::{SessionKeyRequest, SessionKeyResponse, SignRequest, SignResponse};
use voipchat_proto::signal::{ID_MAX_CHARS, NONCE_MAX_CHARS};
use voipchat_proto::{AppId, ErrorCode, Failure, GroupId, RoomKey, Status};
use voipchat_store::AppRecord;

use crate::media::Command;
use crate::{clock, AppState};

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
    fn invalid(detail: impl Into<String>) -> Self {
        Self(
            StatusCode::BAD_REQUEST,
            Failure::with_detail(ErrorCode::InvalidField, detail),
        )
    }
    fn system() -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, ErrorCode::SystemError)
    }
}

type ApiResult<T> = Result<Json<T>, ApiError>;

/// Runs a store call off the async threads.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, voipchat_store::StoreError> + Send + 'static,
) -> Result<T, ApiError> {
    match tokio::task::spawn_blocking(f).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => {
            tracing::warn!("store error in backend api: {e}");
            Err(ApiError::system())
        }
        Err(_) => Err(ApiError::system()),
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
        Some(app) if secrets_equal(app.secret.expose(), secret) => Ok(app),
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

fn parse_body<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| ApiError::invalid(format!("invalid body: {e}")))
}

/// `POST /api/v1/session-key`: a new session key for a user; the previous one stops working.
pub async fn session_key(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> ApiResult<SessionKeyResponse> {
    let app = authenticate(&state, &headers).await?;
    let req: SessionKeyRequest = parse_body(&body)?;
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

/// `POST /api/v1/voip-sign`: the join signature for a user, computed with the user's current
/// session key, which stays on the server. A missing nonce is a fresh random one (16
/// alphanumeric characters) and a missing timestamp the server's current time; the answer
/// carries both with the signature, so a backend can hand it to the client as it is.
pub async fn voip_sign(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> ApiResult<SignResponse> {
    use rand::Rng as _;
    let app = authenticate(&state, &headers).await?;
    let req: SignRequest = parse_body(&body)?;
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

#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct QuotaResponse {
    day: String,
    rooms_created: u64,
    daily_limit: u64,
}

/// `GET /api/v1/quota`: rooms the app created today and its limit.
pub async fn quota(State(state): State<AppState>, headers: HeaderMap) -> ApiResult<QuotaResponse> {
    let app = authenticate(&state, &headers).await?;
    let day = clock::day_key(clock::unix_now(), state.config.utc_offset_secs());
    let store = state.store.clone();
    let d = day.clone();
    let rooms_created = blocking(move || store.rooms_created(&app.app_id, &d)).await?;
    Ok(Json(QuotaResponse {
        day,
        rooms_created,
        daily_limit: state.config.daily_room_quota,
    }))
}

#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RoomResponse {
    group_id: GroupId,
    open_id_list: Vec<voipchat_proto::OpenId>,
}

/// `GET /api/v1/rooms/{groupId}`: who is in a room now (an empty list: no such room).
pub async fn room(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(group_id): Path<String>,
) -> ApiResult<RoomResponse> {
    let app = authenticate(&state, &headers).await?;
    check_id("groupId", &group_id)?;
    let group_id = GroupId::new(group_id);
    let (tx, rx) = oneshot::channel();
    let key = RoomKey::new(app.app_id, group_id.clone());
    state
        .media
        .send(Command::Members(key, tx))
        .map_err(|_| ApiError::system())?;
    let open_id_list = rx.await.map_err(|_| ApiError::system())?;
    Ok(Json(RoomResponse {
        group_id,
        open_id_list,
    }))
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct KickRequest {
    open_id: voipchat_proto::OpenId,
}

#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct KickResponse {
    kicked: bool,
}

/// `POST /api/v1/rooms/{groupId}/kick`: removes a member from a room; it gets an
/// `interrupted` event with -11001 and the others a members-changed event.
pub async fn kick(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(group_id): Path<String>,
    body: axum::body::Bytes,
) -> ApiResult<KickResponse> {
    let app = authenticate(&state, &headers).await?;
    check_id("groupId", &group_id)?;
    let req: KickRequest = parse_body(&body)?;
    check_id("openId", req.open_id.as_str())?;
    let (tx, rx) = oneshot::channel();
    let key = RoomKey::new(app.app_id, GroupId::new(group_id));
    state
        .media
        .send(Command::Kick(key, req.open_id, tx))
        .map_err(|_| ApiError::system())?;
    let kicked = rx.await.map_err(|_| ApiError::system())?;
    if !kicked {
        return Err(ApiError::new(StatusCode::NOT_FOUND, ErrorCode::NotInRoom));
    }
    Ok(Json(KickResponse { kicked }))
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WebhookRequest {
    url: String,
}

/// The app's webhook setting: its URL, or null when it has none.
#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WebhookResponse {
    url: Option<String>,
}

/// Writes the app's webhook URL (`None`: clears it and drops its pending deliveries).
async fn store_webhook(
    state: &AppState,
    app: AppRecord,
    url: Option<String>,
) -> ApiResult<WebhookResponse> {
    let store = state.store.clone();
    let u = url.clone();
    let app_id = app.app_id.clone();
    let found = blocking(move || store.set_webhook_url(&app_id, u.as_deref())).await?;
    if !found {
        // Deleted between the authentication and now.
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            ErrorCode::BadCredentials,
        ));
    }
    tracing::info!(app_id = %app.app_id, set = url.is_some(), "webhook URL changed");
    Ok(Json(WebhookResponse { url }))
}

/// `GET /api/v1/webhook`: the app's webhook URL (docs/webhooks.md).
pub async fn webhook(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> ApiResult<WebhookResponse> {
    let app = authenticate(&state, &headers).await?;
    let store = state.store.clone();
    let url = blocking(move || store.webhook_url(&app.app_id)).await?;
    Ok(Json(WebhookResponse { url }))
}

/// `PUT /api/v1/webhook {"url"}`: sets the app's webhook URL; events from now on are sent
/// there, and so are those still waiting.
pub async fn set_webhook(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> ApiResult<WebhookResponse> {
    let app = authenticate(&state, &headers).await?;
    let req: WebhookRequest = parse_body(&body)?;
    crate::webhooks::url::parse(&req.url).map_err(ApiError::invalid)?;
    store_webhook(&state, app, Some(req.url)).await
}

/// `DELETE /api/v1/webhook`: no more webhooks for the app; deliveries still waiting are
/// dropped.
pub async fn clear_webhook(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> ApiResult<WebhookResponse> {
    let app = authenticate(&state, &headers).await?;
    store_webhook(&state, app, None).await
}

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
