//! Several nodes: a backend call about one room (`/api/v1/rooms/{groupId}…`) made at a node
//! that does not hold the room is passed to the node that does, and its answer returned as
//! it is (docs/cluster.md). The call is authenticated here first, so only an app's own
//! calls travel; the owner authenticates it again. A passed-on call carries
//! [`FORWARDED`], and a node answers such a call itself, so a call is passed on once.
//!
//! The room list (`GET /api/v1/rooms`) is the one call about every room: the node asked
//! gathers the same page from every other live node and merges them ([`merge_pages`]).

use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use tracing::{debug, warn};
use voipchat_proto::backend::{RoomInfo, RoomList};
use voipchat_proto::{GroupId, RoomKey};

use super::ApiError;
use crate::media::Command;
use crate::webhooks::client::Answer;
use crate::{clock, AppState};

/// The header of a call passed on by another node.
pub const FORWARDED: &str = "x-voipchat-forwarded";
/// The routes about one room start with this.
const ROOM_PREFIX: &str = "/api/v1/rooms/";
/// A passed-on call, connecting included, ends by this.
pub(super) const TIMEOUT: Duration = Duration::from_secs(5);

/// The groupId of a room route's path, percent-decoded; None for other paths.
fn room_of_path(path: &str) -> Option<String> {
    let segment = path.strip_prefix(ROOM_PREFIX)?.split('/').next()?;
    if segment.is_empty() {
        return None;
    }
    percent_encoding::percent_decode_str(segment)
        .decode_utf8()
        .ok()
        .map(|s| s.into_owned())
}

/// Middleware of every route: passes a room call on to the room's node when that is
/// another node; everything else runs here.
pub async fn to_owner(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let Some(cluster) = state.cluster.clone() else {
        return next.run(req).await;
    };
    let Some(group) = room_of_path(req.uri().path()) else {
        return next.run(req).await;
    };
    if req.headers().contains_key(FORWARDED) {
        return next.run(req).await;
    }
    // Unauthenticated or invalid: the route's own handler answers as always.
    let Ok(app) = super::authenticate(&state, req.headers()).await else {
        return next.run(req).await;
    };
    if super::check_id("groupId", &group).is_err() {
        return next.run(req).await;
    }
    let key = RoomKey::new(app.app_id.clone(), GroupId::new(&group));
    let (tx, rx) = tokio::sync::oneshot::channel();
    if state
        .media
        .send_room(&key, Command::Room(key.clone(), tx))
        .is_err()
    {
        return next.run(req).await;
    }
    if matches!(rx.await, Ok(Some(_))) {
        return next.run(req).await;
    }
    let store = state.store.clone();
    let k = key.clone();
    let owner =
        tokio::task::spawn_blocking(move || store.directory().room_owner(&k, clock::unix_now_ms()))
            .await;
    let owner = match owner {
        Ok(Ok(Some(owner))) if owner.id != cluster.node().id => owner,
        Ok(Err(e)) => {
            return ApiError(
                axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                super::store_failure(&e),
            )
            .into_response()
        }
        _ => return next.run(req).await,
    };
    debug!(room = %key, node = %owner.id, "backend call passed to the room's node");
    match tokio::time::timeout(TIMEOUT, pass_on(&cluster, &owner.url, req)).await {
        Ok(Ok(response)) => response,
        Ok(Err(e)) => {
            warn!(room = %key, node = %owner.id, "backend call not passed on: {e}");
            ApiError::system().into_response()
        }
        Err(_) => {
            warn!(room = %key, node = %owner.id, "backend call: the room's node did not answer in time");
            ApiError::system().into_response()
        }
    }
}

/// Sends `req` to the node whose signaling URL is `ws_url` and returns its answer.
async fn pass_on(
    cluster: &crate::cluster::Cluster,
    ws_url: &str,
    req: Request,
) -> Result<Response, String> {
    let (parts, body) = req.into_parts();
    let body = body
        .collect()
        .await
        .map_err(|e| format!("request body: {e}"))?
        .to_bytes();
    let path = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "/".into());
    let answer = call_node(cluster, ws_url, parts.method, &path, &parts.headers, body).await?;
    let mut out = Response::builder().status(answer.status);
    for (name, value) in &answer.headers {
        if name == hyper::header::CONNECTION || name == hyper::header::TRANSFER_ENCODING {
            continue;
        }
        out = out.header(name, value);
    }
    out.body(Body::from(answer.body))
        .map_err(|e| format!("response: {e}"))
}

/// One call to the backend API of the node whose signaling URL is `ws_url`, marked as
/// passed on ([`FORWARDED`]), with the caller's headers (its credentials among them).
/// Bounded by the caller: wrap it in a timeout.
pub(super) async fn call_node(
    cluster: &crate::cluster::Cluster,
    ws_url: &str,
    method: hyper::Method,
    path_and_query: &str,
    headers: &hyper::HeaderMap,
    body: Bytes,
) -> Result<Answer, String> {
    // A node's signaling URL names its HTTP address too: ws(s) is http(s) upgraded.
    let http_url = if let Some(r) = ws_url.strip_prefix("wss://") {
        format!("https://{r}")
    } else if let Some(r) = ws_url.strip_prefix("ws://") {
        format!("http://{r}")
    } else {
        return Err(format!("not a node URL: {ws_url}"));
    };
    let url =
        crate::webhooks::url::parse(&http_url).map_err(|e| format!("node URL {ws_url}: {e}"))?;
    let mut builder = hyper::Request::builder()
        .method(method)
        .uri(path_and_query)
        .header(hyper::header::HOST, url.authority.as_str())
        .header(FORWARDED, cluster.node().id.as_str());
    for (name, value) in headers {
        if name == hyper::header::HOST
            || name == hyper::header::CONNECTION
            || name == hyper::header::CONTENT_LENGTH
        {
            continue;
        }
        builder = builder.header(name, value);
    }
    let request = builder
        .body(Full::new(body))
        .map_err(|e| format!("request: {e}"))?;
    crate::webhooks::client::exchange(cluster.tls(), &url, request, true).await
}

/// The same page of the room list from every other live node (`uri` is the call as it
/// came here). A node that does not answer, or answers anything but a list, fails the
/// call: a list that silently leaves out a node's rooms would be wrong without saying so.
pub(super) async fn pages_of_other_nodes(
    state: &AppState,
    cluster: &crate::cluster::Cluster,
    headers: &hyper::HeaderMap,
    uri: &hyper::Uri,
) -> Result<Vec<RoomList>, ApiError> {
    let store = state.store.clone();
    let nodes = tokio::task::spawn_blocking(move || store.directory().nodes(clock::unix_now_ms()))
        .await
        .map_err(|_| ApiError::system())?
        .map_err(|e| {
            ApiError(
                axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                super::store_failure(&e),
            )
        })?;
    let path = uri
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| uri.path().to_string());
    let me = &cluster.node().id;
    let calls = nodes.iter().filter(|n| &n.id != me).map(|node| {
        let path = path.clone();
        async move {
            let call = call_node(
                cluster,
                &node.url,
                hyper::Method::GET,
                &path,
                headers,
                Bytes::new(),
            );
            let answer = match tokio::time::timeout(TIMEOUT, call).await {
                Ok(Ok(a)) if a.status.is_success() => serde_json::from_slice::<RoomList>(&a.body)
                    .map_err(|e| format!("an unreadable room list: {e}")),
                Ok(Ok(a)) => Err(format!(
                    "{}: {}",
                    a.status,
                    String::from_utf8_lossy(&a.body[..a.body.len().min(200)])
                )),
                Ok(Err(e)) => Err(e),
                Err(_) => Err("no answer in time".to_string()),
            };
            answer.map_err(|e| {
                warn!(node = %node.id, "room list: {e}");
                ApiError::system_detail(format!("node {} did not list its rooms: {e}", node.id))
            })
        }
    });
    futures_util::future::join_all(calls)
        .await
        .into_iter()
        .collect()
}

/// One page out of the nodes' pages of the same query: each is sorted by groupId and holds
/// the first `limit` rooms after the cursor, so the first `limit` of their union are the
/// page's. A groupId on two nodes (only after a node was cut off from the directory, see
/// docs/cluster.md) is listed once, the copy with more members.
pub(super) fn merge_pages(pages: impl IntoIterator<Item = RoomList>, limit: usize) -> RoomList {
    let mut more = false;
    let mut rooms: Vec<RoomInfo> = Vec::new();
    for page in pages {
        more |= page.next_after.is_some();
        rooms.extend(page.rooms);
    }
    rooms.sort_by(|a, b| {
        a.group_id
            .cmp(&b.group_id)
            .then(b.open_id_list.len().cmp(&a.open_id_list.len()))
    });
    rooms.dedup_by(|later, first| later.group_id == first.group_id);
    if rooms.len() > limit {
        rooms.truncate(limit);
        more = true;
    }
    let next_after = more
        .then(|| rooms.last().map(|r| r.group_id.clone()))
        .flatten();
    RoomList { rooms, next_after }
}

#[cfg(test)]
mod tests {
    use super::{merge_pages, room_of_path};
    use voipchat_proto::backend::{RoomInfo, RoomList};
    use voipchat_proto::{GroupId, OpenId, RoomType};

    fn room(group: &str, members: usize) -> RoomInfo {
        let open_id_list: Vec<OpenId> =
            (0..members).map(|i| OpenId::new(format!("u{i}"))).collect();
        RoomInfo {
            group_id: GroupId::new(group),
            room_type: RoomType::Voice,
            created_at: 0,
            age_secs: 0,
            open_id_list,
            members: Vec::new(),
        }
    }

    fn page(groups: &[&str], more: bool) -> RoomList {
        RoomList {
            rooms: groups.iter().map(|g| room(g, 1)).collect(),
            next_after: more.then(|| GroupId::new(*groups.last().unwrap())),
        }
    }

    fn groups(list: &RoomList) -> Vec<&str> {
        list.rooms.iter().map(|r| r.group_id.as_str()).collect()
    }

    #[test]
    fn pages_of_several_nodes_merge_into_one_in_order() {
        let merged = merge_pages([page(&["a", "d"], false), page(&["b", "c", "e"], false)], 3);
        assert_eq!(groups(&merged), ["a", "b", "c"]);
        assert_eq!(
            merged.next_after,
            Some(GroupId::new("c")),
            "two rooms are left over"
        );
        let all = merge_pages([page(&["a", "d"], false), page(&["b"], false)], 3);
        assert_eq!(groups(&all), ["a", "b", "d"]);
        assert_eq!(all.next_after, None, "every node's last page");
        let full = merge_pages([page(&["a"], false), page(&["b", "c"], true)], 3);
        assert_eq!(groups(&full), ["a", "b", "c"]);
        assert_eq!(full.next_after, Some(GroupId::new("c")), "a node has more");
    }

    #[test]
    fn a_room_on_two_nodes_is_listed_once_with_its_larger_copy() {
        let mut big = page(&["a", "b"], false);
        big.rooms[1] = room("b", 3);
        let merged = merge_pages([page(&["b", "c"], false), big], 10);
        assert_eq!(groups(&merged), ["a", "b", "c"]);
        assert_eq!(merged.rooms[1].open_id_list.len(), 3);
    }

    #[test]
    fn room_routes_name_their_group() {
        let room = |rest: &str| format!("{}{rest}", super::ROOM_PREFIX);
        assert_eq!(room_of_path(&room("g1")).as_deref(), Some("g1"));
        assert_eq!(room_of_path(&room("g%201/kick")).as_deref(), Some("g 1"));
        assert_eq!(room_of_path(&room("")), None);
        assert_eq!(room_of_path(room("").trim_end_matches('/')), None);
        assert_eq!(room_of_path("/healthz"), None);
    }
}
