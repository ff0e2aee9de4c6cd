//! The app's rooms from its backend: list them, look at one, kick a member, mute a
//! member's microphone, close a room. Each call is one command to the media task, which
//! owns the rooms; its answer is turned into the API's bodies here.

use std::time::Instant;

use axum::extract::rejection::QueryRejection;
use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::Json;
use tokio::sync::oneshot;
use voipchat_core::{RoomSnapshot, ServerMuteError};
use voipchat_proto::backend::{
    CloseResponse, KickRequest, KickResponse, MemberInfo, MuteRequest, MuteResponse, RoomInfo,
    RoomList, RoomListQuery, ROOM_PAGE_MAX,
};
use voipchat_proto::{ErrorCode, GroupId, RoomKey};

use super::{check_id, ApiError, ApiJson, ApiResult, AuthedApp};
use crate::media::{Command, RoomPage};
use crate::{clock, AppState};

/// The `{groupId}` of a room route, checked like every id (1 to 128 characters, no
/// control characters); a path that does not decode is a 400 too, never axum's plain text.
pub struct RoomPath(pub GroupId);

impl<S: Send + Sync> FromRequestParts<S> for RoomPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Path(group_id) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|e| ApiError::invalid(format!("groupId in the path: {e}")))?;
        check_id("groupId", &group_id)?;
        Ok(RoomPath(GroupId::new(group_id)))
    }
}

/// Sends a command about a room to the room's shard, and waits for the answer.
async fn ask<T>(
    state: &AppState,
    key: RoomKey,
    command: impl FnOnce(RoomKey, oneshot::Sender<T>) -> Command,
) -> Result<T, ApiError> {
    let (tx, rx) = oneshot::channel();
    let shard = state.media.of_room(&key);
    state
        .media
        .send(shard, command(key, tx))
        .map_err(|_| ApiError::system())?;
    rx.await.map_err(|_| ApiError::system())
}

/// A page of an app's open rooms from every shard: each gives its first `limit` after
/// `after` (in groupId order), the merge keeps the first `limit` of all, and more follow if
/// any shard had more or the merge left some out.
async fn ask_rooms(
    state: &AppState,
    page: RoomPage,
) -> Result<(Vec<RoomSnapshot>, bool), ApiError> {
    let mut answers = Vec::new();
    for shard in 0..state.media.len() {
        let (tx, rx) = oneshot::channel();
        let page = RoomPage {
            app_id: page.app_id.clone(),
            after: page.after.clone(),
            limit: page.limit,
        };
        state
            .media
            .send(shard, Command::Rooms(page, tx))
            .map_err(|_| ApiError::system())?;
        answers.push(rx);
    }
    let mut rooms = Vec::new();
    let mut more = false;
    for rx in answers {
        let (part, part_more) = rx.await.map_err(|_| ApiError::system())?;
        rooms.extend(part);
        more |= part_more;
    }
    rooms.sort_by(|a, b| a.group_id.cmp(&b.group_id));
    if rooms.len() > page.limit {
        rooms.truncate(page.limit);
        more = true;
    }
    Ok((rooms, more))
}

/// A room as the API shows it; the engine's instants become Unix seconds here.
fn room_info(room: RoomSnapshot, now: Instant, now_unix: u64) -> RoomInfo {
    let unix = |t: Instant| now_unix.saturating_sub(now.saturating_duration_since(t).as_secs());
    let members: Vec<MemberInfo> = room
        .members
        .into_iter()
        .map(|m| MemberInfo {
            joined_at: unix(m.joined_at),
            open_id: m.open_id,
            muted: m.mic_muted,
            server_muted: m.server_muted,
            camera_on: m.camera_on,
        })
        .collect();
    RoomInfo {
        group_id: room.group_id,
        room_type: room.room_type,
        created_at: unix(room.opened_at),
        age_secs: now.saturating_duration_since(room.opened_at).as_secs(),
        open_id_list: members.iter().map(|m| m.open_id.clone()).collect(),
        members,
    }
}

/// The app's open rooms, ordered by groupId, one page at a time.
///
/// At most `limit` rooms (1 to 100, default 100) per answer; when more follow, `nextAfter`
/// names the last one, to pass as `after` for the next page. With several nodes, any node
/// lists every node's rooms (docs/cluster.md).
#[utoipa::path(
    get,
    path = "/api/v1/rooms",
    tag = "rooms",
    params(RoomListQuery),
    responses(
        (status = 200, description = "One page of the app's open rooms.", body = RoomList),
        (status = 400, description = "-10007: `limit` is not 1 to 100, `after` is not an id, or another query parameter is given.", body = voipchat_proto::Status),
    )
)]
pub async fn list_rooms(
    State(state): State<AppState>,
    AuthedApp(app): AuthedApp,
    headers: axum::http::HeaderMap,
    uri: axum::http::Uri,
    query: Result<Query<RoomListQuery>, QueryRejection>,
) -> ApiResult<RoomList> {
    let Query(query) = query.map_err(|e| ApiError::invalid(format!("query: {}", e.body_text())))?;
    let limit = query.limit.unwrap_or(ROOM_PAGE_MAX);
    if !(1..=ROOM_PAGE_MAX).contains(&limit) {
        return Err(ApiError::invalid(format!(
            "limit must be 1 to {ROOM_PAGE_MAX}"
        )));
    }
    if let Some(after) = &query.after {
        check_id("after", after)?;
    }
    let page = RoomPage {
        app_id: app.app_id,
        after: query.after.map(GroupId::new),
        limit: limit as usize,
    };
    let (rooms, more) = ask_rooms(&state, page).await?;
    let (now, now_unix) = (Instant::now(), clock::unix_now());
    let rooms: Vec<RoomInfo> = rooms
        .into_iter()
        .map(|r| room_info(r, now, now_unix))
        .collect();
    let next_after = more
        .then(|| rooms.last().map(|r| r.group_id.clone()))
        .flatten();
    let here = RoomList { rooms, next_after };
    match &state.cluster {
        // Asked by a client (not by another node gathering the list): every node's rooms.
        Some(cluster) if !headers.contains_key(super::forward::FORWARDED) => {
            let others =
                super::forward::pages_of_other_nodes(&state, cluster, &headers, &uri).await?;
            Ok(Json(super::forward::merge_pages(
                std::iter::once(here).chain(others),
                limit as usize,
            )))
        }
        _ => Ok(Json(here)),
    }
}

/// One open room of the app: its type, age and members.
#[utoipa::path(
    get,
    path = "/api/v1/rooms/{groupId}",
    tag = "rooms",
    params(("groupId" = GroupId, Path, description = "The room's groupId.")),
    responses(
        (status = 200, description = "The room.", body = RoomInfo),
        (status = 400, description = "-10007: the groupId is empty, too long or has control characters.", body = voipchat_proto::Status),
        (status = 404, description = "-12007: the app has no open room with this groupId.", body = voipchat_proto::Status),
    )
)]
pub async fn room(
    State(state): State<AppState>,
    AuthedApp(app): AuthedApp,
    RoomPath(group_id): RoomPath,
) -> ApiResult<RoomInfo> {
    let key = RoomKey::new(app.app_id, group_id);
    let room = ask(&state, key, Command::Room).await?;
    let room = room.ok_or_else(|| ApiError::not_found(ErrorCode::UnknownRoom))?;
    Ok(Json(room_info(room, Instant::now(), clock::unix_now())))
}

/// Removes a member from the room.
///
/// The member gets `interrupted` with -11001 and its connection is closed; the others get
/// `membersChanged`.
#[utoipa::path(
    post,
    path = "/api/v1/rooms/{groupId}/kick",
    tag = "rooms",
    params(("groupId" = GroupId, Path, description = "The room's groupId.")),
    request_body = KickRequest,
    responses(
        (status = 200, description = "The member was removed.", body = KickResponse),
        (status = 400, description = "-10007: the body is not `{openId}`, or an id is not valid.", body = voipchat_proto::Status),
        (status = 404, description = "-10009: that openId is not in that room (or the room is not open).", body = voipchat_proto::Status),
    )
)]
pub async fn kick(
    State(state): State<AppState>,
    AuthedApp(app): AuthedApp,
    RoomPath(group_id): RoomPath,
    ApiJson(req): ApiJson<KickRequest>,
) -> ApiResult<KickResponse> {
    check_id("openId", req.open_id.as_str())?;
    let key = RoomKey::new(app.app_id, group_id);
    let kicked = ask(&state, key, |key, tx| Command::Kick(key, req.open_id, tx)).await?;
    if !kicked {
        return Err(ApiError::not_found(ErrorCode::NotInRoom));
    }
    Ok(Json(KickResponse { kicked }))
}

/// Mutes a member's microphone on the server, or allows it again.
///
/// Muted: the server stops forwarding its audio, the member gets `serverMuteChanged`
/// (`serverMuted: true`), the room sees it muted (`muteChanged`), and its own unmute is
/// refused with -10014, on any connection of that openId, until this is called with
/// `muted: false` or the room ends. Allowed again, the member is told
/// (`serverMuted: false`) and its microphone stays muted until it unmutes itself.
#[utoipa::path(
    post,
    path = "/api/v1/rooms/{groupId}/mute",
    tag = "rooms",
    params(("groupId" = GroupId, Path, description = "The room's groupId.")),
    request_body = MuteRequest,
    responses(
        (status = 200, description = "The member's server mute as it is now (muting twice is no error).", body = MuteResponse),
        (status = 400, description = "-10007: the body is not `{openId, muted}`, or an id is not valid.", body = voipchat_proto::Status),
        (status = 404, description = "-12007: no such room is open; -10009: that openId is not a member of it.", body = voipchat_proto::Status),
    )
)]
pub async fn mute(
    State(state): State<AppState>,
    AuthedApp(app): AuthedApp,
    RoomPath(group_id): RoomPath,
    ApiJson(req): ApiJson<MuteRequest>,
) -> ApiResult<MuteResponse> {
    check_id("openId", req.open_id.as_str())?;
    let key = RoomKey::new(app.app_id, group_id);
    let open_id = req.open_id.clone();
    let answer = ask(&state, key, |key, tx| {
        Command::ServerMute(key, open_id, req.muted, tx)
    })
    .await?;
    match answer {
        Ok(_) => Ok(Json(MuteResponse {
            open_id: req.open_id,
            server_muted: req.muted,
        })),
        Err(ServerMuteError::NoRoom) => Err(ApiError::not_found(ErrorCode::UnknownRoom)),
        Err(ServerMuteError::NotInRoom) => Err(ApiError::not_found(ErrorCode::NotInRoom)),
        Err(e) => {
            tracing::warn!("server mute: {e}");
            Err(ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                ErrorCode::SystemError,
            ))
        }
    }
}

/// Closes the room: every member is interrupted with -11005 and the room is destroyed.
///
/// A later join with the same groupId creates a new room, which takes a unit of the app's
/// daily quota.
#[utoipa::path(
    post,
    path = "/api/v1/rooms/{groupId}/close",
    tag = "rooms",
    params(("groupId" = GroupId, Path, description = "The room's groupId.")),
    responses(
        (status = 200, description = "The room is closed; the members it had, in join order.", body = CloseResponse),
        (status = 400, description = "-10007: the groupId is not valid.", body = voipchat_proto::Status),
        (status = 404, description = "-12007: the app has no open room with this groupId.", body = voipchat_proto::Status),
    )
)]
pub async fn close(
    State(state): State<AppState>,
    AuthedApp(app): AuthedApp,
    RoomPath(group_id): RoomPath,
) -> ApiResult<CloseResponse> {
    let key = RoomKey::new(app.app_id, group_id);
    let closed = ask(&state, key, Command::Close).await?;
    let open_id_list = closed.ok_or_else(|| ApiError::not_found(ErrorCode::UnknownRoom))?;
    Ok(Json(CloseResponse {
        closed: true,
        open_id_list,
    }))
}
