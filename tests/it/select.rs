//! Issue 15, node selection and the admin API without its store: nodes
//! sharing one PostgreSQL database hand out credentials for the
//! least-loaded ready node (in the asked region first) and a fallback, or
//! the pinned one; with the database cut off (a proxy in front of it stops
//! forwarding, as a firewall dropping packets would), admin writes answer
//! 503 JSON within seconds while known users still authenticate.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use turnpike::auth::rest::Secret;
use turnpike::{Running, Transport};

use crate::admin::{allocate_within, http, server, token};
use crate::turn_client::TurnClient;
use crate::{fresh_pg, PASSWORD, USER};

const REST_SECRET: &str = "select-rest-secret";

/// A node named `name` in `region` on the store `db`.
async fn node(db: &str, name: &str, region: &str) -> (Running, SocketAddr, SocketAddr) {
    let (db, name, region) = (db.to_string(), name.to_string(), region.to_string());
    server(move |c| {
        c.db = db;
        c.node_name = name;
        c.region = region;
        c.static_auth_secrets = vec![Secret(REST_SECRET.into())];
    })
    .await
}

fn json(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))
}

/// `POST /api/v1/credentials` with `body`: the status and the answer.
async fn credentials(admin: SocketAddr, body: &str) -> (u16, Value) {
    let t = token("admin");
    let (code, text) = http(admin, "POST", "/api/v1/credentials", Some(&t), Some(body)).await;
    (code, json(&text))
}

fn names(v: &Value) -> Vec<&str> {
    v["nodes"]
        .as_array()
        .unwrap_or_else(|| panic!("no nodes: {v}"))
        .iter()
        .map(|n| n.as_str().unwrap())
        .collect()
}

/// Polls `admin`'s node list until every `(name, allocations)` is there
/// as `ready` with that count (heartbeats come every 2 s).
async fn wait_for_rows(admin: SocketAddr, want: &[(&str, i64)]) {
    let t = token("admin");
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (code, body) = http(admin, "GET", "/api/v1/nodes", Some(&t), None).await;
        assert_eq!(code, 200, "{body}");
        let v = json(&body);
        let rows = v["nodes"].as_array().unwrap();
        let seen = want.iter().all(|(name, allocations)| {
            rows.iter().any(|r| {
                r["name"] == *name && r["state"] == "ready" && r["allocations"] == *allocations
            })
        });
        if seen {
            return;
        }
        assert!(Instant::now() < deadline, "rows {want:?} never seen: {v}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Allocations as the static user on `udp`, kept until the test ends.
async fn load(udp: SocketAddr, n: usize) -> Vec<TurnClient> {
    let mut clients = Vec::new();
    for _ in 0..n {
        let mut c = TurnClient::connect_as(udp, USER, PASSWORD).await;
        c.allocate(None).await.expect("allocation");
        clients.push(c);
    }
    clients
}

fn udp_url(udp: SocketAddr) -> String {
    format!("turn:{udp}?transport=udp")
}

/// Each iceServers entry names the node in `nodes` at the same place, all
/// with the one credential, and `uris` is the first node's.
fn assert_servers(v: &Value, udp_of: &[(&str, SocketAddr)]) {
    let servers = v["iceServers"].as_array().unwrap();
    let chosen = names(v);
    assert_eq!(servers.len(), chosen.len(), "{v}");
    for (server, name) in servers.iter().zip(&chosen) {
        let udp = udp_of.iter().find(|(n, _)| n == name).unwrap().1;
        let urls: Vec<&str> = server["urls"]
            .as_array()
            .unwrap()
            .iter()
            .map(|u| u.as_str().unwrap())
            .collect();
        assert!(urls.contains(&udp_url(udp).as_str()), "{name}: {v}");
        assert_eq!(server["username"], v["username"]);
        assert_eq!(server["credential"], v["password"]);
    }
    assert_eq!(v["uris"], servers[0]["urls"], "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_name_the_least_loaded_ready_node_first_with_region_and_pins() {
    let Some(db) = fresh_pg("x_select_load").await else {
        return;
    };
    let (a, a_udp, a_admin) = node(&db, "a", "eu").await;
    let (b, b_udp, b_admin) = node(&db, "b", "us").await;
    let (c, c_udp, c_admin) = node(&db, "c", "eu").await;
    let udp_of = [("a", a_udp), ("b", b_udp), ("c", c_udp)];
    let _a_load = load(a_udp, 2).await;
    let _c_load = load(c_udp, 1).await;
    // A draining node and a silent one, idle but never to be chosen.
    {
        use sqlx::Connection;
        let mut conn = sqlx::PgConnection::connect(&db).await.unwrap();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64;
        for (name, state, last_seen) in [("d", "draining", now), ("z", "ready", now - 60_000)] {
            sqlx::query(
                "INSERT INTO nodes (name, region, state, urls, allocations, relayed_bps, last_seen) \
                 VALUES ($1, 'us', $2, '[\"turn:192.0.2.1:3478?transport=udp\"]', 0, 0, $3)",
            )
            .bind(name)
            .bind(state)
            .bind(last_seen)
            .execute(&mut conn)
            .await
            .unwrap();
        }
    }
    let rows = [("a", 2), ("b", 0), ("c", 1)];
    for admin in [a_admin, b_admin] {
        wait_for_rows(admin, &rows).await;
    }

    for admin in [a_admin, b_admin, c_admin] {
        // B is idle: first; C (one allocation) is the fallback.
        let (code, v) = credentials(admin, r#"{"user":"web","ttl":600}"#).await;
        assert_eq!(code, 200, "{v}");
        assert_eq!(names(&v), ["b", "c"], "{v}");
        assert_servers(&v, &udp_of);
        assert_eq!(v["ttl"], 600);
        assert!(v["username"].as_str().unwrap().ends_with(":web"), "{v}");
        // A region: its least-loaded node first, then the next there.
        let (_, v) = credentials(admin, r#"{"user":"web","region":"eu"}"#).await;
        assert_eq!(names(&v), ["c", "a"], "{v}");
        assert_servers(&v, &udp_of);
        // One ready node in the region; the fallback comes from elsewhere.
        let (_, v) = credentials(admin, r#"{"user":"web","region":"us"}"#).await;
        assert_eq!(names(&v), ["b", "c"], "{v}");
        // No ready node in the region: any region.
        let (_, v) = credentials(admin, r#"{"user":"web","region":"mars"}"#).await;
        assert_eq!(names(&v), ["b", "c"], "{v}");
    }

    // "self" pins the answering node, alone, however loaded.
    let (code, v) = credentials(a_admin, r#"{"user":"web","node":"self"}"#).await;
    assert_eq!(code, 200, "{v}");
    assert_eq!(names(&v), ["a"], "{v}");
    assert_servers(&v, &udp_of);
    let (_, v) = credentials(b_admin, r#"{"user":"web","node":"c"}"#).await;
    assert_eq!(names(&v), ["c"], "{v}");
    assert_servers(&v, &udp_of);
    // A pin the fleet cannot honour is a JSON error, not another node.
    let (code, v) = credentials(a_admin, r#"{"user":"web","node":"nope"}"#).await;
    assert_eq!((code, v["status"].as_u64()), (404, Some(404)), "{v}");
    assert!(v["error"].as_str().unwrap().contains("nope"), "{v}");
    let (code, v) = credentials(a_admin, r#"{"user":"web","node":"d"}"#).await;
    assert_eq!(code, 409, "{v}");
    assert!(v["error"].as_str().unwrap().contains("draining"), "{v}");
    let (code, v) = credentials(a_admin, r#"{"user":"web","node":"z"}"#).await;
    assert_eq!(code, 409, "{v}");
    assert!(v["error"].as_str().unwrap().contains("down"), "{v}");
    let (code, v) = credentials(a_admin, r#"{"user":"web","node":7}"#).await;
    assert_eq!(code, 400, "{v}");

    // The credential works on the node it names.
    let (_, v) = credentials(a_admin, r#"{"user":"web"}"#).await;
    let (user, pass) = (
        v["username"].as_str().unwrap(),
        v["password"].as_str().unwrap(),
    );
    TurnClient::connect_as(b_udp, user, pass)
        .await
        .allocate(None)
        .await
        .expect("the credential allocates on the node it names");

    a.stop().await;
    b.stop().await;
    c.stop().await;
}

/// A TCP proxy in front of the database that can stop forwarding (and
/// take new connections without answering), as a firewall dropping the
/// database's packets would, and start again.
struct Blackhole {
    addr: SocketAddr,
    cut: watch::Sender<bool>,
}

/// Waits until the proxy forwards.
async fn open(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|cut| !*cut).await;
}

/// Copies `from` to `to`, holding each chunk while the proxy is cut.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut rx: watch::Receiver<bool>,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        open(&mut rx).await;
        if to.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
}

impl Blackhole {
    async fn start(upstream: SocketAddr) -> Blackhole {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (cut, rx) = watch::channel(false);
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let mut rx = rx.clone();
                tokio::spawn(async move {
                    open(&mut rx).await;
                    let Ok(server) = TcpStream::connect(upstream).await else {
                        return;
                    };
                    let (cr, cw) = client.into_split();
                    let (sr, sw) = server.into_split();
                    tokio::join!(pump(cr, sw, rx.clone()), pump(sr, cw, rx));
                });
            }
        });
        Blackhole { addr, cut }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_its_store_a_node_answers_503_to_writes_and_still_serves_known_users() {
    let Some(db) = fresh_pg("x_select_outage").await else {
        return;
    };
    // postgres://user:pass@HOST:PORT/NAME, through the proxy.
    let (head, rest) = db.split_once('@').unwrap();
    let (upstream, name) = rest.split_once('/').unwrap();
    let proxy = Blackhole::start(upstream.parse().unwrap()).await;
    let via = format!("{head}@{}/{name}", proxy.addr);
    let (s, udp, admin) = server(move |c| {
        c.db = via;
        c.node_name = "solo".into();
    })
    .await;
    let t = token("admin");
    let post = |path: &'static str, body: &'static str| {
        let t = t.clone();
        async move { http(admin, "POST", path, Some(&t), Some(body)).await }
    };
    let (code, body) = post("/api/v1/secrets", r#"{"secret":"stored-secret"}"#).await;
    assert_eq!(code, 201, "{body}");
    let (code, body) = post("/api/v1/users", r#"{"username":"dana","password":"d4na"}"#).await;
    assert_eq!(code, 201, "{body}");
    allocate_within(udp, "dana", "d4na", true)
        .await
        .expect("dana allocates within 2 s");

    proxy.cut.send_replace(true);

    // Writes: 503 JSON, within a few seconds, whichever resource.
    for (method, path, body) in [
        (
            "POST",
            "/api/v1/users",
            r#"{"username":"erin","password":"x"}"#,
        ),
        ("POST", "/api/v1/secrets", r#"{"secret":"another"}"#),
        ("PUT", "/api/v1/quotas/users/dana", r#"{"allocations":3}"#),
        ("DELETE", "/api/v1/users/dana", ""),
        ("GET", "/api/v1/users", ""),
    ] {
        let started = Instant::now();
        let body = (!body.is_empty()).then_some(body);
        let (code, text) = http(admin, method, path, Some(&t), body).await;
        let took = started.elapsed();
        assert_eq!(code, 503, "{method} {path}: {text}");
        let v = json(&text);
        assert_eq!(v["error"], "store unavailable", "{text}");
        assert_eq!(v["status"], 503, "{text}");
        assert!(
            took < Duration::from_secs(5),
            "{method} {path} took {took:?}"
        );
    }

    // Credentials from the snapshot's secret, for this node only.
    let started = Instant::now();
    let (code, v) = credentials(admin, r#"{"user":"web"}"#).await;
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(code, 200, "{v}");
    assert_eq!(names(&v), ["solo"], "{v}");
    assert_servers(&v, &[("solo", udp)]);
    let (user, pass) = (
        v["username"].as_str().unwrap(),
        v["password"].as_str().unwrap(),
    );
    TurnClient::connect_as(udp, user, pass)
        .await
        .allocate(None)
        .await
        .expect("a credential minted without the store allocates");
    let (code, v) = credentials(admin, r#"{"user":"web","node":"self"}"#).await;
    assert_eq!((code, names(&v)), (200, vec!["solo"]), "{v}");
    // Another node cannot be vouched for.
    let (code, v) = credentials(admin, r#"{"user":"web","node":"other"}"#).await;
    assert_eq!(
        (code, v["error"].as_str()),
        (503, Some("store unavailable"))
    );

    // Known users still authenticate.
    TurnClient::connect_as(udp, "dana", "d4na")
        .await
        .allocate(None)
        .await
        .expect("dana still allocates");

    // Healed: the refused write left nothing behind, and writes work again.
    proxy.cut.send_replace(false);
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (code, text) = http(admin, "GET", "/api/v1/users/erin", Some(&t), None).await;
        if code == 404 {
            break;
        }
        assert_eq!(code, 503, "{text}");
        assert!(Instant::now() < deadline, "the store never came back");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (code, body) = post("/api/v1/users", r#"{"username":"erin","password":"x"}"#).await;
    assert_eq!(code, 201, "{body}");
    s.stop().await;
}

/// With SQLite (one node) the answer is this node, as before the fleet.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_single_sqlite_node_answers_with_itself() {
    let (s, udp, admin) = server(|c| {
        c.static_auth_secrets = vec![Secret(REST_SECRET.into())];
        c.node_name = "one".into();
    })
    .await;
    let (code, v) = credentials(admin, r#"{"user":"web","region":"elsewhere"}"#).await;
    assert_eq!(code, 200, "{v}");
    assert_eq!(names(&v), ["one"], "{v}");
    assert_servers(&v, &[("one", udp)]);
    assert_eq!(s.addrs(Transport::Udp)[0], udp);
    s.stop().await;
}
