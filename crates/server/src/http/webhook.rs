//! The app's webhook URL (docs/webhooks.md): where its signed room and member events go.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use voipchat_proto::ErrorCode;
use voipchat_store::AppRecord;

use super::{blocking, parse_body, ApiError, ApiResult, AuthedApp};
use crate::AppState;

/// The webhook URL to set.
#[derive(serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WebhookRequest {
    /// An absolute `http://` or `https://` URL with a host, at most 2048 characters, without
    /// `user:password@` or a `#fragment`.
    #[schema(max_length = 2048)]
    url: String,
}

/// The app's webhook setting: its URL, or null when it has none.
#[derive(serde::Serialize, utoipa::ToSchema)]
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

/// The app's webhook URL.
#[utoipa::path(
    get,
    path = "/api/v1/webhook",
    tag = "webhooks",
    responses((status = 200, description = "The app's webhook URL, or null.", body = WebhookResponse))
)]
pub async fn webhook(
    State(state): State<AppState>,
    AuthedApp(app): AuthedApp,
) -> ApiResult<WebhookResponse> {
    let store = state.store.clone();
    let url = blocking(move || store.webhook_url(&app.app_id)).await?;
    Ok(Json(WebhookResponse { url }))
}

/// Sets the app's webhook URL: events from now on are sent there, and so are those still
/// waiting.
#[utoipa::path(
    put,
    path = "/api/v1/webhook",
    tag = "webhooks",
    request_body = WebhookRequest,
    responses(
        (status = 200, description = "The URL now set.", body = WebhookResponse),
        (status = 400, description = "-10007: not a JSON object with a `url` string, or the URL is not an absolute http(s) URL with a host, is too long, or has credentials or a fragment.", body = voipchat_proto::Status),
    )
)]
pub async fn set_webhook(
    State(state): State<AppState>,
    AuthedApp(app): AuthedApp,
    body: axum::body::Bytes,
) -> ApiResult<WebhookResponse> {
    let req: WebhookRequest = parse_body(&body)?;
    crate::webhooks::url::parse(&req.url).map_err(ApiError::invalid)?;
    store_webhook(&state, app, Some(req.url)).await
}

/// No more webhooks for the app; deliveries still waiting are dropped.
#[utoipa::path(
    delete,
    path = "/api/v1/webhook",
    tag = "webhooks",
    responses((status = 200, description = "The URL is cleared (`null`).", body = WebhookResponse))
)]
pub async fn clear_webhook(
    State(state): State<AppState>,
    AuthedApp(app): AuthedApp,
) -> ApiResult<WebhookResponse> {
    store_webhook(&state, app, None).await
}
