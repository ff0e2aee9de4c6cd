//! `/metrics`: real members talk in a room, a join is refused, and the scrape, parsed by a
//! Prometheus text-format parser, says so: rooms and members now, rooms created, joins by
//! code with their latency, datagrams and forwarded packets, drops, store call latency,
//! quota used, the media task's busy ratio. With `metrics_addr` the metrics move there.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::peers::{peer, setup, warm_up, TestPeer};
use prometheus_parse::{Sample, Scrape, Value};
use voipchat_proto::Secret;

async fn scrape(addr: std::net::SocketAddr) -> Scrape {
    let (status, body) = common::http_request(addr, "GET", "/metrics", None, None).await;
    assert_eq!(status, 200, "{body}");
    assert!(
        body.ends_with("# EOF\n"),
        "OpenMetrics ends with # EOF: {body}"
    );
    let lines = body.lines().map(|l| Ok(l.to_string()));
    Scrape::parse(lines).unwrap_or_else(|e| panic!("not Prometheus text ({e}): {body}"))
}

/// The value of the sample `name` whose labels include `labels` (a histogram: its count).
fn value(scrape: &Scrape, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let matches =
        |s: &&Sample| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v));
    scrape.samples.iter().find(matches).map(|s| match &s.value {
        Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => *v,
        Value::Histogram(h) => h.last().map_or(0.0, |b| b.count),
        Value::Summary(_) => f64::NAN,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scrape_shows_what_the_room_did() {
    let (_dir, server, app, secret) = setup(|_| {}).await;
    let a = peer(&server, &app, &secret, "alice", "room").await;
    let b = peer(&server, &app, &secret, "bob", "room").await;
    warm_up(&[&a, &b]).await;
    for seq in 0..50 {
        a.send(0, seq);
        b.send(1, seq);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // A join of a user with no session key, signed with a made-up one: refused.
    let refused =
        TestPeer::join_with_key(&server, &app, &Secret::new("wrong"), "carol", "room").await;
    assert!(refused.is_err());
    // The media task copies the engine's counters once a second.
    tokio::time::sleep(Duration::from_millis(1300)).await;

    let m = scrape(server.http).await;
    let get = |name: &str, labels: &[(&str, &str)]| {
        value(&m, name, labels).unwrap_or_else(|| {
            let names: HashMap<&str, usize> =
                m.samples.iter().map(|s| (s.metric.as_str(), 0)).collect();
            panic!("no {name} {labels:?} in {:?}", names.keys())
        })
    };
    assert_eq!(get("voipchat_rooms", &[]), 1.0);
    assert_eq!(get("voipchat_members", &[]), 2.0);
    assert_eq!(get("voipchat_rooms_created_total", &[]), 1.0);
    assert_eq!(get("voipchat_joins_total", &[("code", "0")]), 2.0);
    let bad = m
        .samples
        .iter()
        .filter(|s| s.metric == "voipchat_joins_total" && s.labels.get("code") != Some("0"))
        .map(|s| s.labels.get("code").unwrap().to_string())
        .collect::<Vec<_>>();
    assert_eq!(bad.len(), 1, "one refused join: {bad:?}");
    assert_eq!(get("voipchat_join_duration_seconds_count", &[]), 3.0);
    assert!(get("voipchat_udp_datagrams_total", &[("direction", "in")]) >= 100.0);
    assert!(get("voipchat_udp_datagrams_total", &[("direction", "out")]) >= 100.0);
    assert!(get("voipchat_udp_bytes_total", &[("direction", "out")]) > 0.0);
    // Each of the 100 numbered packets (and the warm-up) reached the other member.
    let audio = get("voipchat_forwarded_packets_total", &[("kind", "audio")]);
    assert!(audio >= 100.0, "{audio}");
    assert_eq!(
        get("voipchat_forwarded_packets_total", &[("kind", "video")]),
        0.0
    );
    assert!(get("voipchat_forwarded_payload_bytes_total", &[]) > 0.0);
    assert_eq!(
        get("voipchat_dropped_packets_total", &[("cause", "muted")]),
        0.0
    );
    assert!(
        get(
            "voipchat_store_call_duration_seconds_count",
            &[("call", "consume_nonce")]
        ) >= 2.0
    );
    assert!(
        get(
            "voipchat_store_call_duration_seconds_count",
            &[("call", "reserve_room_quota")]
        ) >= 1.0
    );
    assert_eq!(
        get("voipchat_quota_rooms_used", &[("app_id", app.as_str())]),
        1.0
    );
    let busy = get("voipchat_media_busy_ratio", &[]);
    assert!((0.0..=1.0).contains(&busy) && busy > 0.0, "{busy}");
    assert!(get("voipchat_media_busy_seconds_total", &[]) > 0.0);

    // docs/config.md's table names every metric family the server has, and no other.
    let doc = include_str!("../../../docs/config.md");
    let mut documented: Vec<String> = doc
        .lines()
        .skip_while(|l| !l.starts_with("| Metric |"))
        .take_while(|l| !l.is_empty())
        .filter_map(|l| l.split('|').nth(1))
        .flat_map(|cell| {
            cell.split(',')
                .map(|n| n.trim().trim_matches('`').to_string())
        })
        .filter(|n| n.starts_with("voipchat_"))
        .collect();
    documented.sort();
    let (status, body) = common::http_request(server.http, "GET", "/metrics", None, None).await;
    assert_eq!(status, 200);
    let mut families: Vec<String> = body
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .map(|l| {
            let (name, kind) = l.split_once(' ').unwrap();
            // A counter's family is named without its `_total`; the doc names the samples.
            if kind == "counter" {
                format!("{name}_total")
            } else {
                name.to_string()
            }
        })
        .collect();
    families.sort();
    assert_eq!(documented, families, "docs/config.md metrics vs /metrics");

    // Both leave: the room is gone, the counters stay.
    a.exit().await;
    b.exit().await;
    tokio::time::sleep(Duration::from_millis(1300)).await;
    let m = scrape(server.http).await;
    assert_eq!(value(&m, "voipchat_rooms", &[]), Some(0.0));
    assert_eq!(value(&m, "voipchat_members", &[]), Some(0.0));
    assert_eq!(value(&m, "voipchat_rooms_created_total", &[]), Some(1.0));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_addr_serves_the_metrics_alone() {
    let (_dir, server, _app, _secret) =
        setup(|c| c.metrics_addr = Some("127.0.0.1:0".parse().unwrap())).await;
    let addr = server.metrics.expect("a metrics listener");
    let m = scrape(addr).await;
    assert_eq!(value(&m, "voipchat_rooms", &[]), Some(0.0));
    let (status, _) = common::http_request(server.http, "GET", "/metrics", None, None).await;
    assert_eq!(status, 404, "not on the main address");
    let (status, _) = common::http_request(addr, "GET", "/healthz", None, None).await;
    assert_eq!(status, 404, "nothing else on the metrics address");
    server.stop().await;
}
