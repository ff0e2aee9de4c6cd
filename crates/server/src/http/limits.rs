//! The app's limits from its backend: its settings (room cap, daily room quota), the quota
//! used today, and the rooms it created day by day.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::Json;
use voipchat_proto::backend::{
    DayUsage, EffectiveSettings, QuotaResponse, SettingsPatch, SettingsResponse, UsageQuery,
    UsageResponse, DAILY_QUOTA_MAX, ROOM_CAP_MAX, USAGE_MAX_DAYS,
};
use voipchat_proto::ErrorCode;
use voipchat_store::{AppSettings, SettingsChange};

use super::{blocking, ApiError, ApiJson, ApiResult, AuthedApp};
use crate::days::Day;
use crate::{clock, AppState};

/// Today's quota day in the server's offset.
fn today(state: &AppState) -> String {
    clock::day_key(clock::unix_now(), state.config.utc_offset_secs())
}

/// The app's daily room limit: its own, else the server's.
fn daily_limit(state: &AppState, settings: &AppSettings) -> u64 {
    settings
        .daily_room_quota
        .unwrap_or(state.config.daily_room_quota)
}

/// Rooms the app created in the current quota day, and its daily limit.
#[utoipa::path(
    get,
    path = "/api/v1/quota",
    tag = "limits",
    responses((status = 200, description = "Today's count and the limit.", body = QuotaResponse))
)]
pub async fn quota(
    State(state): State<AppState>,
    AuthedApp(app): AuthedApp,
) -> ApiResult<QuotaResponse> {
    let day = today(&state);
    let store = state.store.clone();
    let (id, d) = (app.app_id.clone(), day.clone());
    let rooms_created = blocking(move || store.rooms_created(&id, &d)).await?;
    Ok(Json(QuotaResponse {
        day,
        rooms_created,
        daily_limit: daily_limit(&state, &app.settings),
    }))
}

/// Rooms the app created on each day of a range (both ends included, at most 366 days).
///
/// Every day of the range is listed, oldest first, days without rooms with 0. Without
/// `to`, the range ends today (in the server's `quota_utc_offset`); without `from`, it
/// starts 29 days before `to`.
#[utoipa::path(
    get,
    path = "/api/v1/quota/usage",
    tag = "limits",
    params(UsageQuery),
    responses(
        (status = 200, description = "The rooms created per day.", body = UsageResponse),
        (status = 400, description = "-10007: a day is not a `YYYY-MM-DD` date from 1970 to 9999, `from` is after `to`, the range is longer than 366 days, or another query parameter is given.", body = voipchat_proto::Status),
    )
)]
pub async fn usage(
    State(state): State<AppState>,
    AuthedApp(app): AuthedApp,
    query: Result<Query<UsageQuery>, QueryRejection>,
) -> ApiResult<UsageResponse> {
    let Query(query) = query.map_err(|e| ApiError::invalid(format!("query: {}", e.body_text())))?;
    let day = |name: &str, text: &str| {
        Day::parse(text).ok_or_else(|| {
            ApiError::invalid(format!(
                "{name} must be a date YYYY-MM-DD from 1970-01-01 to 9999-12-31"
            ))
        })
    };
    let to = match &query.to {
        Some(t) => day("to", t)?,
        // day_key writes what Day reads, for every day a clock can show.
        None => Day::parse(&today(&state)).ok_or_else(ApiError::system)?,
    };
    let from = match &query.from {
        Some(f) => day("from", f)?,
        // A `to` early in 1970 has fewer days before it.
        None => to.plus(-29).unwrap_or(Day::FIRST),
    };
    let span = from.until(to);
    if span < 0 {
        return Err(ApiError::invalid("from must not be after to"));
    }
    if span >= i64::from(USAGE_MAX_DAYS) {
        return Err(ApiError::invalid(format!(
            "the range is at most {USAGE_MAX_DAYS} days"
        )));
    }
    let store = state.store.clone();
    let (first, last) = (from.to_string(), to.to_string());
    let (f, l) = (first.clone(), last.clone());
    let counted = blocking(move || store.rooms_created_between(&app.app_id, &f, &l)).await?;
    let mut counted = counted.into_iter().peekable();
    let mut days = Vec::with_capacity(span as usize + 1);
    for i in 0..=span {
        let Some(d) = from.plus(i) else { break };
        let key = d.to_string();
        let rooms_created = match counted.peek() {
            Some((k, n)) if *k == key => {
                let n = *n;
                counted.next();
                n
            }
            _ => 0,
        };
        days.push(DayUsage {
            day: key,
            rooms_created,
        });
    }
    Ok(Json(UsageResponse {
        from: first,
        to: last,
        days,
    }))
}

fn settings_response(state: &AppState, settings: &AppSettings) -> SettingsResponse {
    SettingsResponse {
        room_cap: settings.room_cap,
        daily_room_quota: settings.daily_room_quota,
        effective: EffectiveSettings {
            room_cap: settings
                .room_cap
                .unwrap_or(u32::try_from(state.config.room_cap).unwrap_or(u32::MAX)),
            daily_room_quota: daily_limit(state, settings),
        },
    }
}

/// The app's settings: its own values (null: the server's default) and those in force.
#[utoipa::path(
    get,
    path = "/api/v1/settings",
    tag = "limits",
    responses((status = 200, description = "The app's settings.", body = SettingsResponse))
)]
pub async fn get_settings(
    State(state): State<AppState>,
    AuthedApp(app): AuthedApp,
) -> ApiResult<SettingsResponse> {
    Ok(Json(settings_response(&state, &app.settings)))
}

/// Changes the app's settings, as a JSON merge patch.
///
/// A field left out is unchanged, `null` goes back to the server's default, a value
/// replaces the app's. `roomCap` (1 to 10) applies to every join from now on, into new and
/// open rooms alike; members already in a room are never removed by a lower cap.
/// `dailyRoomQuota` (0 to 1000000000) applies to the next room created, counting the rooms
/// already created today.
#[utoipa::path(
    patch,
    path = "/api/v1/settings",
    tag = "limits",
    request_body = SettingsPatch,
    responses(
        (status = 200, description = "The app's settings after the change.", body = SettingsResponse),
        (status = 400, description = "-10007: the body is not a settings object, has an unknown field, or a value is out of its range.", body = voipchat_proto::Status),
    )
)]
pub async fn patch_settings(
    State(state): State<AppState>,
    AuthedApp(app): AuthedApp,
    ApiJson(patch): ApiJson<SettingsPatch>,
) -> ApiResult<SettingsResponse> {
    if let Some(Some(cap)) = patch.room_cap {
        if !(1..=ROOM_CAP_MAX).contains(&cap) {
            return Err(ApiError::invalid(format!(
                "roomCap must be 1 to {ROOM_CAP_MAX} (or null for the server's default)"
            )));
        }
    }
    if let Some(Some(quota)) = patch.daily_room_quota {
        if quota > DAILY_QUOTA_MAX {
            return Err(ApiError::invalid(format!(
                "dailyRoomQuota must be 0 to {DAILY_QUOTA_MAX} (or null for the server's default)"
            )));
        }
    }
    let change = SettingsChange {
        room_cap: patch.room_cap,
        daily_room_quota: patch.daily_room_quota,
    };
    let store = state.store.clone();
    let id = app.app_id.clone();
    let settings = blocking(move || store.update_app_settings(&id, &change)).await?;
    // The app was deleted between the authentication and the change: as if it never was.
    let settings = settings.ok_or_else(|| {
        ApiError(
            StatusCode::UNAUTHORIZED,
            voipchat_proto::Failure::new(ErrorCode::BadCredentials),
        )
    })?;
    tracing::info!(app_id = %app.app_id, ?settings, "app settings changed");
    Ok(Json(settings_response(&state, &settings)))
}
