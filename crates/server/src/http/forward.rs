//! Several nodes: a backend call about one room (`/api/v1/rooms/{groupId}…`) made at a node
//! that does not hold the room is passed to the node that does, and its answer returned as
//! it is (docs/cluster.md). The call is authenticated here first, so only an app's own
//! calls travel; the owner authenticates it again. A passed-on call carries
//! [`FORWARDED`], and a node answers such a call itself, so a call is passed on once.

use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tracing::{debug, warn};
use voipchat_proto::{GroupId, RoomKey};

use super::ApiError;
use crate::media::Command;
use crate::{clock, AppState};

/// The header of a call passed on by another node.
pub const FORWARDED: &str = "x-voipchat-forwarded";
/// The routes about one room start with this.
const ROOM_PREFIX: &str = "/api/v1/rooms/";
/// A passed-on call, connecting included, ends by this.
const TIMEOUT: Duration = Duration::from_secs(5);

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
    if state.media.send(Command::Room(key.clone(), tx)).is_err() {
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
    let (tls, rest) = if let Some(r) = ws_url.strip_prefix("wss://") {
        (true, r)
    } else if let Some(r) = ws_url.strip_prefix("ws://") {
        (false, r)
    } else {
        return Err(format!("not a node URL: {ws_url}"));
    };
    let authority = rest.split('/').next().unwrap_or(rest).to_string();
    let parsed: hyper::http::uri::Authority = authority
        .parse()
        .map_err(|e| format!("node URL {ws_url}: {e}"))?;
    let host = parsed
        .host()
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let port = parsed.port_u16().unwrap_or(if tls { 443 } else { 80 });
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
    let mut builder = hyper::Request::builder()
        .method(parts.method.clone())
        .uri(path)
        .header(hyper::header::HOST, authority.as_str())
        .header(FORWARDED, cluster.node().id.as_str());
    for (name, value) in &parts.headers {
        if name == hyper::header::HOST || name == hyper::header::CONNECTION {
            continue;
        }
        builder = builder.header(name, value);
    }
    let request = builder
        .body(Full::new(body))
        .map_err(|e| format!("request: {e}"))?;
    let tcp = TcpStream::connect((host.as_str(), port))
        .await
        .map_err(|e| format!("connect to {authority}: {e}"))?;
    let _ = tcp.set_nodelay(true);
    if tls {
        let name = rustls::pki_types::ServerName::try_from(host.clone())
            .map_err(|e| format!("{host}: not a TLS server name: {e}"))?;
        let stream = cluster
            .tls()
            .connector()
            .connect(name, tcp)
            .await
            .map_err(|e| format!("TLS with {host}: {e}"))?;
        send(TokioIo::new(stream), request).await
    } else {
        send(TokioIo::new(tcp), request).await
    }
}

async fn send<T>(io: T, request: hyper::Request<Full<Bytes>>) -> Result<Response, String>
where
    T: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, connection) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|e| format!("HTTP: {e}"))?;
    tokio::pin!(connection);
    let response = tokio::select! {
        r = sender.send_request(request) => r.map_err(|e| format!("HTTP: {e}"))?,
        ended = &mut connection => return Err(match ended {
            Ok(()) => "HTTP: the connection closed before an answer".to_string(),
            Err(e) => format!("HTTP: {e}"),
        }),
    };
    let (parts, body) = response.into_parts();
    // The connection keeps running while the body is read.
    let body = tokio::select! {
        b = body.collect() => b.map_err(|e| format!("HTTP body: {e}"))?.to_bytes(),
        _ = &mut connection => return Err("HTTP: the connection closed in the body".into()),
    };
    let mut out = Response::builder().status(parts.status);
    for (name, value) in &parts.headers {
        if name == hyper::header::CONNECTION || name == hyper::header::TRANSFER_ENCODING {
            continue;
        }
        out = out.header(name, value);
    }
    out.body(Body::from(body))
        .map_err(|e| format!("response: {e}"))
}

#[cfg(test)]
mod tests {
    use super::room_of_path;

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
