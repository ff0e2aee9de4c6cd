//! Three `voipchat serve` processes on 127.0.0.1 sharing one private redis-server (started
//! here on a free port): a room lives on one node, joins that reach another node are
//! redirected there (-10015 with the owner's URL) and followed, the room cap and the daily
//! quota hold cluster-wide (the quota also across a restart of every node), a nonce is
//! accepted once across nodes, and a node killed with SIGKILL loses its rooms to live
//! nodes within seconds. The backend API of a room answers at every node.

mod common;
#[path = "common/receiver.rs"]
mod receiver;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::binary::{cli, offer, serve};
use common::redis::Redis;
use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use voipchat_proto::{AppId, Secret, ServerMsg};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A cluster: Redis, one config file every node reads, each node's data directory.
struct Cluster {
    redis: Redis,
    root: tempfile::TempDir,
    config: PathBuf,
    nodes: Vec<Node>,
}

struct Node {
    dir: PathBuf,
    child: tokio::process::Child,
    http: SocketAddr,
}

impl Node {
    fn ws_url(&self) -> String {
        format!("ws://{}/ws", self.http)
    }
}

impl Cluster {
    async fn start(n: usize, extra_config: &str) -> Cluster {
        let root = common::data_dir();
        let redis_dir = root.path().join("redis");
        std::fs::create_dir_all(&redis_dir).unwrap();
        let redis = Redis::start_free(&redis_dir);
        let port = redis.port;
        // One secrets key for all: a node must open the session keys another one sealed.
        let key = root.path().join("shared.key");
        voipchat_store::Keyring::read_or_create(&key).expect("secrets key");
        let config = root.path().join("voipchat.toml");
        std::fs::write(
            &config,
            format!(
                "store = \"redis://127.0.0.1:{port}/0\"\ndemo = false\nsecrets_key_file = \"{}\"\n{extra_config}",
                key.display()
            ),
        )
        .unwrap();
        let mut cluster = Cluster {
            redis,
            root,
            config,
            nodes: Vec::new(),
        };
        for i in 0..n {
            let dir = cluster.root.path().join(format!("node{i}"));
            std::fs::create_dir_all(&dir).unwrap();
            let node = cluster.spawn(&dir).await;
            cluster.nodes.push(node);
        }
        cluster
    }

    async fn spawn(&self, dir: &Path) -> Node {
        let (child, http, _) = serve(dir, &["--config", self.config.to_str().unwrap()]).await;
        Node {
            dir: dir.to_path_buf(),
            child,
            http,
        }
    }

    /// A new app with VoIP on, made with the CLI against the shared Redis.
    fn app(&self) -> (AppId, Secret) {
        let cfg = self.config.to_str().unwrap();
        let created: serde_json::Value = serde_json::from_str(&cli(
            self.root.path(),
            &["app", "--config", cfg, "create", "--name", "cluster"],
        ))
        .unwrap();
        let app = AppId::new(created["appId"].as_str().unwrap());
        let secret = Secret::new(created["appSecret"].as_str().unwrap());
        cli(
            self.root.path(),
            &["app", "--config", cfg, "enable-voip", app.as_str()],
        );
        (app, secret)
    }

    /// A Rust client member `user` of `group`, joined at node `at` (following a redirect)
    /// and connected.
    async fn member(
        &self,
        at: usize,
        app: &AppId,
        key: &Secret,
        user: &str,
        group: &str,
    ) -> common::peers::TestPeer {
        let opts = voipchat_client::JoinOptions::signed(
            self.nodes[at].ws_url(),
            app.clone(),
            user,
            group,
            key,
            common::unix_now(),
        );
        let peer = common::peers::TestPeer::from_join(opts, user)
            .await
            .unwrap_or_else(|e| panic!("{user} joins at node {at}: {e}"));
        peer.wait_connected().await;
        peer
    }

    /// Stops every node with SIGTERM and starts it again on new ports.
    async fn restart_all(&mut self) {
        for node in &mut self.nodes {
            let pid = node.child.id().expect("running") as i32;
            // SAFETY: a signal to a child this test started.
            unsafe { libc_kill(pid, 15) };
            tokio::time::timeout(Duration::from_secs(15), node.child.wait())
                .await
                .expect("node stops")
                .unwrap();
        }
        let dirs: Vec<PathBuf> = self.nodes.iter().map(|n| n.dir.clone()).collect();
        self.nodes.clear();
        for dir in dirs {
            let node = self.spawn(&dir).await;
            self.nodes.push(node);
        }
    }
}

extern "C" {
    #[link_name = "kill"]
    fn libc_kill(pid: i32, sig: i32) -> i32;
}

/// A signed join frame for `user` in `group`.
fn join_frame(app: &AppId, key: &Secret, user: &str, group: &str) -> String {
    let nonce = voipchat_client::random_nonce();
    let ts = common::unix_now();
    let signature = voipchat_auth::sign(app.as_str(), group, &nonce, ts, key);
    serde_json::json!({
        "type": "join", "appId": app, "openId": user, "groupId": group,
        "nonceStr": nonce, "timeStamp": ts, "signature": signature, "sdp": offer(),
    })
    .to_string()
}

/// What a join came to after following redirects the way the clients do.
struct Joined {
    code: i32,
    /// The URL of the node that answered last.
    at: String,
    redirects: usize,
    /// Kept open: an admitted member whose connection closes leaves its room.
    _ws: Option<Ws>,
}

/// Sends `frame` to `url` and follows -10015 redirects (at most 3).
async fn join_following(mut url: String, frame: &str) -> Joined {
    for redirects in 0..=3 {
        let (mut ws, _) = tokio_tungstenite::connect_async(&url)
            .await
            .expect("connect");
        ws.send(Message::Text(frame.into())).await.unwrap();
        let (code, redirect) = loop {
            let msg = tokio::time::timeout(Duration::from_secs(20), ws.next())
                .await
                .expect("joinResult within 20 s")
                .expect("open")
                .expect("frame");
            if let Message::Text(t) = msg {
                if let Ok(ServerMsg::JoinResult {
                    status, redirect, ..
                }) = ServerMsg::parse(t.as_str())
                {
                    break (status.err_code, redirect);
                }
            }
        };
        match redirect {
            Some(to) if code == -10015 => url = to,
            _ => {
                return Joined {
                    code,
                    at: url,
                    redirects,
                    _ws: Some(ws),
                }
            }
        }
    }
    panic!("more than 3 redirects for one join");
}

/// The members of `group` as each node's backend API shows them (empty: no such room).
async fn members_by_node(
    nodes: &[Node],
    app: &AppId,
    secret: &Secret,
    group: &str,
) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    for node in nodes {
        let (status, body) =
            api_get(node.http, app, secret, &format!("/api/v1/rooms/{group}")).await;
        if status == 404 {
            out.push(Vec::new());
            continue;
        }
        assert_eq!(status, 200, "{body}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        out.push(
            v["members"]
                .as_array()
                .unwrap()
                .iter()
                .map(|m| m["openId"].as_str().unwrap().to_string())
                .collect(),
        );
    }
    out
}

/// Alice (marks 1) and bob (marks 2) send 25 packets each; each hears at least `least` of
/// the other's within 5 s.
async fn hear_each_other(
    alice: &common::peers::TestPeer,
    bob: &common::peers::TestPeer,
    least: usize,
) {
    for seq in 0..25 {
        alice.send(1, seq);
        bob.send(2, seq);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for (who, from) in [(bob, "alice"), (alice, "bob")] {
        assert!(
            who.wait_until(Duration::from_secs(5), || who.audio_from(from).len()
                >= least)
                .await,
            "{} hears {from}: {} packets",
            who.open_id,
            who.audio_from(from).len()
        );
    }
}

/// A backend API GET with the app's credentials: status and body.
async fn api_get(http: SocketAddr, app: &AppId, secret: &Secret, path: &str) -> (u16, String) {
    common::http_request(
        http,
        "GET",
        path,
        Some((app.to_string(), secret.expose().to_string())),
        None,
    )
    .await
}

/// Session keys for `users`, each asked of a node in turn (any node serves the API).
async fn keys(nodes: &[Node], app: &AppId, secret: &Secret, users: &[String]) -> Vec<Secret> {
    let mut out = Vec::new();
    for (i, u) in users.iter().enumerate() {
        out.push(common::binary::session_key(nodes[i % nodes.len()].http, app, secret, u).await);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_room_on_one_node_for_a_hundred_joins_over_three_nodes_and_nonces_once() {
    let cluster = Cluster::start(3, "").await;
    let (app, secret) = cluster.app();
    let users: Vec<String> = (0..100).map(|i| format!("u{i:03}")).collect();
    let keys = keys(&cluster.nodes, &app, &secret, &users).await;
    let frames: Vec<String> = users
        .iter()
        .zip(&keys)
        .map(|(u, k)| join_frame(&app, k, u, "big"))
        .collect();
    // All at once, spread over the nodes.
    let joins = futures_util::future::join_all(
        frames
            .iter()
            .enumerate()
            .map(|(i, f)| join_following(cluster.nodes[i % 3].ws_url(), f)),
    )
    .await;
    let admitted: Vec<&Joined> = joins.iter().filter(|j| j.code == 0).collect();
    let full = joins.iter().filter(|j| j.code == -10008).count();
    let redirected = joins.iter().filter(|j| j.redirects > 0).count();
    eprintln!(
        "100 joins over 3 nodes: {} admitted, {full} room full, {redirected} redirected",
        admitted.len()
    );
    assert_eq!(
        admitted.len(),
        10,
        "codes: {:?}",
        joins.iter().map(|j| j.code).collect::<Vec<_>>()
    );
    assert_eq!(full, 90);
    assert!(
        redirected >= 60,
        "about two thirds reached another node first: {redirected}"
    );
    let owner_url = &admitted[0].at;
    assert!(
        admitted.iter().all(|j| &j.at == owner_url),
        "all admitted on one node"
    );
    // Every node's backend API shows the one room (the others pass the call to its node).
    let members = members_by_node(&cluster.nodes, &app, &secret, "big").await;
    assert_eq!(members[0].len(), 10, "{members:?}");
    assert!(members.iter().all(|m| m == &members[0]), "{members:?}");
    let owner = cluster
        .nodes
        .iter()
        .position(|n| &n.ws_url() == owner_url)
        .unwrap();
    // A kick made at another node reaches the member on the room's node.
    let other = (owner + 1) % 3;
    let (status, body) = common::http_request(
        cluster.nodes[other].http,
        "POST",
        "/api/v1/rooms/big/kick",
        Some((app.to_string(), secret.expose().to_string())),
        Some(&serde_json::json!({ "openId": members[0][3] }).to_string()),
    )
    .await;
    assert_eq!(
        status, 200,
        "kick at a node that does not hold the room: {body}"
    );
    let after = members_by_node(&cluster.nodes[owner..=owner], &app, &secret, "big").await;
    assert_eq!(after[0].len(), 9, "kicked on the room's node: {after:?}");
    assert!(!after[0].contains(&members[0][3]));
    assert_eq!(
        common::binary::rooms_created(cluster.nodes[0].http, &app, &secret).await,
        1,
        "one room counted"
    );

    // A nonce is accepted once: an admitted join's frame again, at every node (another
    // node would redirect it, but it is refused there already).
    let i = joins.iter().position(|j| j.code == 0).unwrap();
    for node in &cluster.nodes {
        let again = join_following(node.ws_url(), &frames[i]).await;
        assert_eq!(again.code, -10003, "replay at {}", node.http);
        assert_eq!(again.redirects, 0, "refused where it arrived");
    }

    // Server mute and close, each made at a node that does not hold the room.
    let auth = Some((app.to_string(), secret.expose().to_string()));
    let muted_one = &after[0][0];
    let (status, body) = common::http_request(
        cluster.nodes[other].http,
        "POST",
        "/api/v1/rooms/big/mute",
        auth.clone(),
        Some(&serde_json::json!({ "openId": muted_one, "muted": true }).to_string()),
    )
    .await;
    assert_eq!(status, 200, "mute at another node: {body}");
    let (_, room) = common::http_request(
        cluster.nodes[owner].http,
        "GET",
        "/api/v1/rooms/big",
        auth.clone(),
        None,
    )
    .await;
    let room: serde_json::Value = serde_json::from_str(&room).unwrap();
    assert_eq!(room["members"][0]["openId"], muted_one.as_str());
    assert_eq!(room["members"][0]["serverMuted"], true, "{room}");
    let third = (owner + 2) % 3;
    let (status, body) = common::http_request(
        cluster.nodes[third].http,
        "POST",
        "/api/v1/rooms/big/close",
        auth.clone(),
        None,
    )
    .await;
    assert_eq!(status, 200, "close at another node: {body}");
    let closed: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(closed["closed"], true, "{body}");
    assert_eq!(closed["openIdList"].as_array().unwrap().len(), 9, "{body}");
    let gone = members_by_node(&cluster.nodes, &app, &secret, "big").await;
    assert!(
        gone.iter().all(|m| m.is_empty()),
        "closed everywhere: {gone:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daily_quota_holds_across_nodes_and_their_restart() {
    let mut cluster = Cluster::start(3, "daily_room_quota = 5\n").await;
    let (app, secret) = cluster.app();
    let users: Vec<String> = (0..20).map(|i| format!("q{i:02}")).collect();
    let keys = keys(&cluster.nodes, &app, &secret, &users).await;
    let frames: Vec<String> = users
        .iter()
        .zip(&keys)
        .map(|(u, k)| join_frame(&app, k, u, &format!("room-{u}")))
        .collect();
    let joins = futures_util::future::join_all(
        frames
            .iter()
            .enumerate()
            .map(|(i, f)| join_following(cluster.nodes[i % 3].ws_url(), f)),
    )
    .await;
    let codes: Vec<i32> = joins.iter().map(|j| j.code).collect();
    let created = codes.iter().filter(|&&c| c == 0).count();
    let refused = codes.iter().filter(|&&c| c == -13000).count();
    eprintln!("20 new rooms over 3 nodes, quota 5: {created} created, {refused} refused");
    assert_eq!((created, refused), (5, 15), "{codes:?}");
    let nodes_used: std::collections::BTreeSet<&String> = joins
        .iter()
        .filter(|j| j.code == 0)
        .map(|j| &j.at)
        .collect();
    eprintln!("rooms created on {} nodes", nodes_used.len());
    // Every node lists the cluster's rooms, in order, page by page (2 rooms a page).
    let created_groups: Vec<String> = users
        .iter()
        .zip(&joins)
        .filter(|(_, j)| j.code == 0)
        .map(|(u, _)| format!("room-{u}"))
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    for (i, node) in cluster.nodes.iter().enumerate() {
        let mut listed = Vec::new();
        let mut after: Option<String> = None;
        for _page in 0..5 {
            let path = match &after {
                None => "/api/v1/rooms?limit=2".to_string(),
                Some(a) => format!("/api/v1/rooms?limit=2&after={a}"),
            };
            let (status, body) = api_get(node.http, &app, &secret, &path).await;
            assert_eq!(status, 200, "{body}");
            let v: serde_json::Value = serde_json::from_str(&body).unwrap();
            listed.extend(
                v["rooms"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|r| r["groupId"].as_str().unwrap().to_string()),
            );
            match v["nextAfter"].as_str() {
                Some(a) => after = Some(a.to_string()),
                None => break,
            }
        }
        assert_eq!(listed, created_groups, "node {i} lists every node's rooms");
    }
    drop(joins);
    assert_eq!(
        common::binary::rooms_created(cluster.nodes[1].http, &app, &secret).await,
        5
    );

    cluster.restart_all().await;
    assert_eq!(
        common::binary::rooms_created(cluster.nodes[2].http, &app, &secret).await,
        5,
        "the count survives a restart of every node"
    );
    let key = common::binary::session_key(cluster.nodes[0].http, &app, &secret, "late").await;
    let late = join_following(
        cluster.nodes[0].ws_url(),
        &join_frame(&app, &key, "late", "room-late"),
    )
    .await;
    assert_eq!(late.code, -13000, "still used up after the restart");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_clients_follow_the_redirect_and_rejoin_a_live_node_after_sigkill() {
    use common::peers::TestPeer;
    let mut cluster = Cluster::start(2, "").await;
    let (app, secret) = cluster.app();
    let key_a = common::binary::session_key(cluster.nodes[0].http, &app, &secret, "alice").await;
    let key_b = common::binary::session_key(cluster.nodes[1].http, &app, &secret, "bob").await;
    let join = |url: String, user: &'static str, key: Secret| {
        let app = app.clone();
        async move {
            let opts = voipchat_client::JoinOptions::signed(
                url,
                app,
                user,
                "talk",
                &key,
                common::unix_now(),
            );
            TestPeer::from_join(opts, user).await
        }
    };
    // alice creates the room on node 0; bob, at node 1, is sent there by the client itself.
    let alice = join(cluster.nodes[0].ws_url(), "alice", key_a.clone())
        .await
        .expect("alice joins");
    let bob = join(cluster.nodes[1].ws_url(), "bob", key_b.clone())
        .await
        .expect("bob joins via a redirect");
    let members = members_by_node(&cluster.nodes, &app, &secret, "talk").await;
    assert_eq!(members[0], vec!["alice", "bob"], "{members:?}");
    assert_eq!(members[1], members[0], "node 1 passes the call to node 0");
    alice.wait_connected().await;
    bob.wait_connected().await;
    for seq in 0..10 {
        alice.send(1, seq);
        bob.send(2, seq);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        bob.wait_until(Duration::from_secs(5), || !bob
            .audio_from("alice")
            .is_empty())
            .await
    );

    // SIGKILL the owner. Each client sees its connection end, and rejoins at the nodes it
    // knows, in order, with a fresh signature, until one takes it.
    let killed = Instant::now();
    cluster.nodes[0].child.start_kill().unwrap();
    cluster.nodes[0].child.wait().await.unwrap();
    // Until its registration lapses the dead node is still listed: the room list, which
    // asks every node, says which one failed rather than leave its rooms out.
    let (status, body) = api_get(cluster.nodes[1].http, &app, &secret, "/api/v1/rooms").await;
    assert_eq!(status, 500, "{body}");
    assert!(body.contains("did not list its rooms"), "{body}");
    drop(alice);
    drop(bob);
    let urls = vec![cluster.nodes[0].ws_url(), cluster.nodes[1].ws_url()];
    let rejoin = |user: &'static str, key: Secret| {
        let urls = urls.clone();
        let join = &join;
        async move {
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                for url in &urls {
                    if let Ok(peer) = join(url.clone(), user, key.clone()).await {
                        return peer;
                    }
                }
                assert!(Instant::now() < deadline, "{user} rejoins within 10 s");
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        }
    };
    let (alice, bob) = tokio::join!(rejoin("alice", key_a), rejoin("bob", key_b));
    alice.wait_connected().await;
    bob.wait_connected().await;
    let mut seq = 100;
    let heard = loop {
        alice.send(1, seq);
        bob.send(2, seq);
        seq += 1;
        tokio::time::sleep(Duration::from_millis(20)).await;
        if !bob.audio_from("alice").is_empty() && !alice.audio_from("bob").is_empty() {
            break killed.elapsed();
        }
        assert!(
            killed.elapsed() < Duration::from_secs(10),
            "they hear each other again within 10 s of the kill"
        );
    };
    eprintln!(
        "SIGKILL of the owner → both in a room on the live node and heard again after {heard:?}"
    );
    let live = members_by_node(&cluster.nodes[1..], &app, &secret, "talk").await;
    let mut sorted = live[0].clone();
    sorted.sort();
    assert_eq!(sorted, vec!["alice", "bob"], "on the live node, no ghost");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_restart_keeps_live_rooms_and_their_node_and_refuses_joins_clearly_meanwhile() {
    use common::peers::TestPeer;
    let mut cluster = Cluster::start(2, "").await;
    let (app, secret) = cluster.app();
    let mut keys = Vec::new();
    for u in ["alice", "bob", "carol", "dave"] {
        keys.push(common::binary::session_key(cluster.nodes[0].http, &app, &secret, u).await);
    }
    let opts = |url: String, user: &str, key: &Secret, group: &str| {
        voipchat_client::JoinOptions::signed(url, app.clone(), user, group, key, common::unix_now())
    };
    let alice = TestPeer::from_join(
        opts(cluster.nodes[0].ws_url(), "alice", &keys[0], "talk"),
        "alice",
    )
    .await
    .expect("alice");
    let bob = TestPeer::from_join(
        opts(cluster.nodes[1].ws_url(), "bob", &keys[1], "talk"),
        "bob",
    )
    .await
    .expect("bob, redirected to node 0");
    alice.wait_connected().await;
    bob.wait_connected().await;

    cluster.redis.stop();
    let started = Instant::now();
    let down = join_following(
        cluster.nodes[1].ws_url(),
        &join_frame(&app, &keys[2], "carol", "other"),
    )
    .await;
    let took = started.elapsed();
    eprintln!(
        "join at a node while Redis is down: {} after {took:?}",
        down.code
    );
    assert_eq!(down.code, -1000);
    assert!(took < Duration::from_secs(5), "no hang: {took:?}");
    // The live room keeps its media both ways, Redis or not.
    hear_each_other(&alice, &bob, 20).await;

    cluster.redis.restart();
    let back = Instant::now();
    let carol = loop {
        let j = join_following(
            cluster.nodes[1].ws_url(),
            &join_frame(&app, &keys[2], "carol", "talk"),
        )
        .await;
        if j.code == 0 {
            break j;
        }
        assert!(
            back.elapsed() < Duration::from_secs(10),
            "joins work again: {}",
            j.code
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    eprintln!(
        "joins work again {:?} after Redis restarted",
        back.elapsed()
    );
    assert_eq!(
        carol.at,
        cluster.nodes[0].ws_url(),
        "the room is still node 0's"
    );
    let members = members_by_node(&cluster.nodes, &app, &secret, "talk").await;
    assert_eq!(members[0], vec!["alice", "bob", "carol"], "{members:?}");
    assert_eq!(members[1], members[0]);
    drop(keys);
}

/// A node cut off from Redis for longer than a claim lasts can find, once back, that
/// another node took one of its open rooms and a join created a second copy there. It ends
/// its copy with -11008; its members join again, are redirected, and meet the others.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_room_taken_over_while_its_node_was_cut_off_is_ended_there_and_its_members_move() {
    use voipchat_store::{RoomDirectory, RoomOwner};
    let cluster = Cluster::start(2, "").await;
    let (app, secret) = cluster.app();
    let key_a = common::binary::session_key(cluster.nodes[0].http, &app, &secret, "alice").await;
    let key_b = common::binary::session_key(cluster.nodes[0].http, &app, &secret, "bob").await;
    let alice = cluster.member(0, &app, &key_a, "alice", "split").await;

    // What a cut-off leaves in Redis: node 0's claim lapsed (seen from ten minutes ahead)
    // and node 1 took it.
    let store =
        voipchat_store::RedisStore::open(&format!("redis://127.0.0.1:{}/0", cluster.redis.port))
            .unwrap();
    let now_ms = common::unix_now() * 1000;
    let node1 = store
        .nodes(now_ms)
        .unwrap()
        .into_iter()
        .find(|n| n.url == cluster.nodes[1].ws_url())
        .expect("node 1 is registered");
    let room = voipchat_proto::RoomKey::new(app.clone(), voipchat_proto::GroupId::new("split"));
    let ahead = now_ms + 600_000;
    assert_eq!(
        store.claim_room(&room, &node1.id, ahead, 5_000).unwrap(),
        RoomOwner::This
    );
    // A join at node 1 creates the second copy there.
    let bob = cluster.member(1, &app, &key_b, "bob", "split").await;

    // Node 0's next heartbeat finds the claim taken and ends its copy.
    assert!(
        alice
            .wait_until(Duration::from_secs(5), || alice.interrupted().is_some())
            .await,
        "alice's copy of the room is ended"
    );
    assert_eq!(alice.interrupted(), Some(-11008));
    drop(alice);
    // Her rejoin at node 0 is redirected to node 1, into bob's room.
    let alice = cluster.member(0, &app, &key_a, "alice", "split").await;
    hear_each_other(&alice, &bob, 1).await;
    let (status, body) = api_get(cluster.nodes[0].http, &app, &secret, "/api/v1/rooms").await;
    assert_eq!(status, 200, "{body}");
    let list: serde_json::Value = serde_json::from_str(&body).unwrap();
    let rooms = list["rooms"].as_array().unwrap();
    assert_eq!(rooms.len(), 1, "one copy of the room is left: {body}");
    assert_eq!(
        rooms[0]["openIdList"],
        serde_json::json!(["bob", "alice"]),
        "{body}"
    );
}

/// Webhooks with several nodes: each room's events come from its own node, once each, in
/// order, whichever node a member asked and whichever node set the URL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_come_once_from_the_rooms_node() {
    let cluster = Cluster::start(2, "webhook_retry_base_ms = 50\n").await;
    let (app, secret) = cluster.app();
    let hook = receiver::Receiver::start(
        voipchat_store::secret_digest(&secret).expose(),
        receiver::Mode::Accept,
    )
    .await;
    let body = serde_json::json!({ "url": hook.url("/h") }).to_string();
    let (status, answer) = common::http_request(
        cluster.nodes[1].http,
        "PUT",
        "/api/v1/webhook",
        Some((app.to_string(), secret.expose().to_string())),
        Some(&body),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    let key_a = common::binary::session_key(cluster.nodes[0].http, &app, &secret, "alice").await;
    let key_b = common::binary::session_key(cluster.nodes[1].http, &app, &secret, "bob").await;
    let alice = cluster.member(0, &app, &key_a, "alice", "hooked").await;
    // Redirected to node 0.
    let bob = cluster.member(1, &app, &key_b, "bob", "hooked").await;
    bob.exit().await;
    alice.exit().await;
    let got = hook.wait_accepted(6, Duration::from_secs(10)).await;
    // A second node delivering the same events would show here, later.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let got_later = hook.accepted();
    assert_eq!(got_later.len(), got.len(), "nothing more arrives");
    assert_eq!(
        receiver::room_story(&got_later, "hooked"),
        [
            "room_started",
            "member_joined alice 1",
            "member_joined bob 2",
            "member_left bob 1 exit",
            "member_left alice 0 exit",
            "room_finished"
        ]
    );
    let deliveries: std::collections::HashSet<String> =
        hook.requests().iter().map(|r| r.delivery.clone()).collect();
    assert_eq!(
        deliveries.len(),
        6,
        "each event is one delivery, sent by one node"
    );
    assert!(hook.requests().iter().all(|r| r.signature_ok));
}
