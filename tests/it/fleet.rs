//! Issue 15 (fleet), what is built so far: nodes sharing one store share
//! the nonce key, so a nonce from one node is good at another; changes
//! reach every node on PostgreSQL's notification; every node lists and
//! ends the fleet's sessions.

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use turnpike::stun::attributes::{AttributeType, ErrorCode};
use turnpike::stun::integrity::long_term_key_md5;
use turnpike::stun::{Class, Message, MessageBuilder, MessageType, Method, TransactionId};
use turnpike::{Running, Transport};

use crate::turn_client::TurnClient;
use crate::{start_turn, temp_db, PASSWORD, REALM, USER};

/// An Allocate for a UDP relay, signed when `nonce` is given.
pub(crate) fn allocate(txid: u8, nonce: Option<&[u8]>) -> Vec<u8> {
    let mut buf = [0u8; 512];
    let mut b = MessageBuilder::new(
        &mut buf,
        MessageType::new(Method::ALLOCATE, Class::Request),
        TransactionId([txid; 12]),
    );
    b.add(AttributeType::REQUESTED_TRANSPORT, &[17, 0, 0, 0]);
    if let Some(nonce) = nonce {
        b.add_username(USER);
        b.add_realm(REALM);
        b.add_nonce(nonce);
        b.add_message_integrity(&long_term_key_md5(USER, REALM, PASSWORD));
    }
    let n = b.finish().unwrap();
    buf[..n].to_vec()
}

/// Sends `req` to `to` and returns the answer's class and error code.
pub(crate) fn exchange(
    sock: &UdpSocket,
    to: SocketAddr,
    req: &[u8],
) -> (Class, Option<u16>, Vec<u8>) {
    sock.send_to(req, to).unwrap();
    let mut buf = [0u8; 1500];
    let (n, _) = sock.recv_from(&mut buf).expect("an answer");
    let m = Message::parse(&buf[..n]).unwrap();
    let code = m
        .get(AttributeType::ERROR_CODE)
        .map(|v| ErrorCode::decode(v).unwrap().code);
    (m.class(), code, buf[..n].to_vec())
}

pub(crate) fn nonce_of(answer: &[u8]) -> Vec<u8> {
    let m = Message::parse(answer).unwrap();
    m.get(AttributeType::NONCE).expect("a NONCE").to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nonce_from_one_node_is_accepted_by_another_of_the_same_store() {
    let db = temp_db();
    let shared_db = db.clone();
    let a = start_turn(|c| c.db = shared_db).await;
    let shared_db = db.clone();
    let b = start_turn(|c| c.db = shared_db).await;
    let elsewhere = start_turn(|_| {}).await;
    let (a_udp, b_udp, c_udp) = (
        a.addrs(Transport::Udp)[0],
        b.addrs(Transport::Udp)[0],
        elsewhere.addrs(Transport::Udp)[0],
    );
    tokio::task::spawn_blocking(move || {
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        let (class, code, answer) = exchange(&sock, a_udp, &allocate(1, None));
        assert_eq!((class, code), (Class::ErrorResponse, Some(401)));
        let nonce = nonce_of(&answer);
        // Node B takes node A's nonce: the allocation is made there.
        let (class, code, _) = exchange(&sock, b_udp, &allocate(2, Some(&nonce)));
        assert_eq!(
            (class, code),
            (Class::SuccessResponse, None),
            "B accepts A's nonce"
        );
        // A server on another store has another key: 438 with its own nonce.
        let (class, code, _) = exchange(&sock, c_udp, &allocate(3, Some(&nonce)));
        assert_eq!((class, code), (Class::ErrorResponse, Some(438)));
    })
    .await
    .unwrap();
    a.stop().await;
    b.stop().await;
    elsewhere.stop().await;
}

/// GET `path` on `admin` as the admin; the JSON body.
async fn api_get(admin: SocketAddr, path: &str) -> serde_json::Value {
    let (code, body) = crate::admin::http(admin, "GET", path, Some(&admin_token()), None).await;
    assert_eq!(code, 200, "{path}: {body}");
    serde_json::from_str(&body).unwrap()
}

fn admin_token() -> String {
    crate::admin::token("admin")
}

/// The session entries of `v` whose client is `client`.
fn entries_of(v: &serde_json::Value, client: &str) -> Vec<serde_json::Value> {
    v["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["client"] == client)
        .cloned()
        .collect()
}

/// Two nodes with admin APIs on one fresh PostgreSQL database.
async fn two_pg_nodes(
    db: &str,
) -> Option<(
    (Running, SocketAddr, SocketAddr),
    (Running, SocketAddr, SocketAddr),
)> {
    let url = crate::fresh_pg(db).await?;
    let u = url.clone();
    let a = crate::admin::server(move |c| {
        c.db = u;
        c.node_name = "node-a".into();
    })
    .await;
    let b = crate::admin::server(move |c| {
        c.db = url;
        c.node_name = "node-b".into();
    })
    .await;
    Some((a, b))
}

/// Issue 15: a change through one node reaches the others on PostgreSQL's
/// notification. Polling alone (every second) would let about half of
/// these rounds take longer than 500 ms; six in a row would rarely pass.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_created_through_one_node_authenticates_on_another_at_once() {
    let Some(((a, _, a_admin), (b, b_udp, _))) = two_pg_nodes("s_notify").await else {
        return;
    };
    let t = admin_token();
    let create = |user: String| {
        let t = t.clone();
        async move {
            let body = format!(r#"{{"username":"{user}","password":"pw-{user}"}}"#);
            let (code, answer) =
                crate::admin::http(a_admin, "POST", "/api/v1/users", Some(&t), Some(&body)).await;
            assert_eq!(code, 201, "{answer}");
        }
    };
    // Until B listens, the poll finds it: wait for one user that way.
    create("warm".into()).await;
    crate::admin::allocate_within(b_udp, "warm", "pw-warm", true)
        .await
        .expect("B learns of users through the store");
    tokio::time::sleep(Duration::from_millis(300)).await;
    for round in 0..6 {
        let user = format!("user{round}");
        let start = Instant::now();
        create(user.clone()).await;
        loop {
            let r = TurnClient::connect_as(b_udp, &user, &format!("pw-{user}"))
                .await
                .allocate(None)
                .await;
            if r.is_ok() {
                break;
            }
            assert!(
                start.elapsed() < Duration::from_millis(500),
                "round {round}: {user} created on A not known on B after 500 ms: {r:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    a.stop().await;
    b.stop().await;
}

/// Issue 15: one admin view of the fleet's sessions. B lists A's session
/// as A's, filters by node, and ends it on A.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_node_lists_the_fleets_sessions_and_ends_one_on_its_owner() {
    let Some(((a, a_udp, a_admin), (b, _, b_admin))) = two_pg_nodes("s_sessions").await else {
        return;
    };
    let mut c = TurnClient::connect(a_udp).await;
    c.allocate(None).await.unwrap();
    let client = c.local_addr().to_string();
    // A's workers report within 1 s, its heartbeat publishes within 2 s.
    let start = Instant::now();
    let listed = loop {
        let found = entries_of(&api_get(b_admin, "/api/v1/sessions").await, &client);
        if !found.is_empty() {
            break found;
        }
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "B lists A's session"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(listed.len(), 1, "{listed:?}");
    let entry = &listed[0];
    assert_eq!(entry["node"], "node-a");
    assert_eq!(entry["user"], crate::USER);
    let id = entry["id"].as_str().unwrap().to_string();
    assert!(id.starts_with("node-a~"), "{id}");
    // A lists it too, under the same id.
    let on_a = entries_of(&api_get(a_admin, "/api/v1/sessions").await, &client);
    assert_eq!(on_a.len(), 1);
    assert_eq!(
        (on_a[0]["id"].as_str(), &on_a[0]["node"]),
        (Some(id.as_str()), &entry["node"])
    );
    // ?node= filters, on either node.
    for admin in [a_admin, b_admin] {
        let only_a = api_get(admin, "/api/v1/sessions?node=node-a").await;
        assert_eq!(entries_of(&only_a, &client).len(), 1);
        let only_b = api_get(admin, "/api/v1/sessions?node=node-b").await;
        assert!(entries_of(&only_b, &client).is_empty(), "{only_b}");
        assert!(only_b["sessions"].as_array().unwrap().is_empty());
    }
    // An id that is not live anywhere: 404 JSON, nothing queued.
    let t = admin_token();
    let (code, body) = crate::admin::http(
        b_admin,
        "DELETE",
        "/api/v1/sessions/node-a~9-9-9",
        Some(&t),
        None,
    )
    .await;
    assert_eq!(code, 404, "{body}");
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&body).unwrap()["status"],
        404
    );
    let (code, _) = crate::admin::http(
        b_admin,
        "DELETE",
        "/api/v1/sessions/nowhere~0-1-1",
        Some(&t),
        None,
    )
    .await;
    assert_eq!(code, 404);
    assert_eq!(a.allocations(), 1);
    // B ends A's session: on A within 2 s, and the client's Refresh gets 437.
    let path = format!("/api/v1/sessions/{id}");
    let asked = Instant::now();
    let (code, body) = crate::admin::http(b_admin, "DELETE", &path, Some(&t), None).await;
    assert_eq!(code, 204, "{body}");
    while a.allocations() != 0 {
        assert!(
            asked.elapsed() < Duration::from_secs(2),
            "ended on A within 2 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(c.refresh(600).await, Err(437));
    a.stop().await;
    b.stop().await;
}

/// One node on SQLite: today's session list, plus the node's name, and
/// its ids end sessions as before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_single_node_names_itself_in_its_session_list() {
    let (s, udp, admin) = crate::admin::server(|c| c.node_name = "solo".into()).await;
    let mut c = TurnClient::connect(udp).await;
    c.allocate(None).await.unwrap();
    let client = c.local_addr().to_string();
    let start = Instant::now();
    let entry = loop {
        let found = entries_of(&api_get(admin, "/api/v1/sessions").await, &client);
        if let Some(e) = found.first() {
            break e.clone();
        }
        assert!(start.elapsed() < Duration::from_secs(2), "listed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(entry["node"], "solo");
    let id = entry["id"].as_str().unwrap();
    assert!(id.starts_with("solo~"), "{id}");
    let others = api_get(admin, "/api/v1/sessions?node=other").await;
    assert!(others["sessions"].as_array().unwrap().is_empty());
    let t = admin_token();
    let path = format!("/api/v1/sessions/{id}");
    let (code, _) = crate::admin::http(admin, "DELETE", &path, Some(&t), None).await;
    assert_eq!(code, 204);
    assert_eq!(s.allocations(), 0, "ended at once on its own node");
    let (code, _) = crate::admin::http(admin, "DELETE", &path, Some(&t), None).await;
    assert_eq!(code, 404);
    assert_eq!(c.refresh(600).await, Err(437));
    s.stop().await;
}

/// Without notifications (SQLite: two nodes on one file) the owner finds
/// a command by polling, still within 2 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_notifications_the_owner_polls_for_its_commands() {
    let db = temp_db();
    let shared_db = db.clone();
    let (a, a_udp, _) = crate::admin::server(move |c| {
        c.db = shared_db;
        c.node_name = "poll-a".into();
    })
    .await;
    let (b, _, b_admin) = crate::admin::server(move |c| {
        c.db = db;
        c.node_name = "poll-b".into();
    })
    .await;
    let mut c = TurnClient::connect(a_udp).await;
    c.allocate(None).await.unwrap();
    let client = c.local_addr().to_string();
    let start = Instant::now();
    let id = loop {
        let found = entries_of(&api_get(b_admin, "/api/v1/sessions").await, &client);
        if let Some(e) = found.first() {
            assert_eq!(e["node"], "poll-a");
            break e["id"].as_str().unwrap().to_string();
        }
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "B lists A's session"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let t = admin_token();
    let (code, _) = crate::admin::http(
        b_admin,
        "DELETE",
        &format!("/api/v1/sessions/{id}"),
        Some(&t),
        None,
    )
    .await;
    assert_eq!(code, 204);
    let asked = Instant::now();
    while a.allocations() != 0 {
        assert!(
            asked.elapsed() < Duration::from_secs(2),
            "ended on A within 2 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(c.refresh(600).await, Err(437));
    a.stop().await;
    b.stop().await;
}

/// A signed request of `method` with `attrs`, as USER.
fn signed(
    method: Method,
    txid: u8,
    nonce: &[u8],
    attrs: &dyn Fn(&mut MessageBuilder<'_>),
) -> Vec<u8> {
    let mut buf = [0u8; 512];
    let mut b = MessageBuilder::new(
        &mut buf,
        MessageType::new(method, Class::Request),
        TransactionId([txid; 12]),
    );
    attrs(&mut b);
    b.add_username(USER);
    b.add_realm(REALM);
    b.add_nonce(nonce);
    b.add_message_integrity(&long_term_key_md5(USER, REALM, PASSWORD));
    let n = b.finish().unwrap();
    buf[..n].to_vec()
}

/// A fresh client socket with a read timeout.
fn client() -> UdpSocket {
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    sock
}

/// Fleet quotas (issue 15): with `user_quota = 2`, two allocations on two
/// nodes of one PostgreSQL store fill the user's quota on both, and a
/// deleted one frees a place on either.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_quota_counts_the_allocations_of_every_node() {
    let Some(db) = crate::fresh_pg("q_fleet_quota").await else {
        return;
    };
    let node = |name: &'static str| {
        let db = db.clone();
        move |c: &mut turnpike::Config| {
            c.db = db;
            c.node_name = name.into();
            c.user_quota = 2;
        }
    };
    let a = start_turn(node("qa")).await;
    let b = start_turn(node("qb")).await;
    let (a_udp, b_udp) = (a.addrs(Transport::Udp)[0], b.addrs(Transport::Udp)[0]);
    tokio::task::spawn_blocking(move || {
        let (one, two, three) = (client(), client(), client());
        let (_, code, answer) = exchange(&one, a_udp, &allocate(1, None));
        assert_eq!(code, Some(401));
        let nonce = nonce_of(&answer);
        let udp =
            |b: &mut MessageBuilder<'_>| b.add(AttributeType::REQUESTED_TRANSPORT, &[17, 0, 0, 0]);
        let (class, code, _) = exchange(&one, a_udp, &signed(Method::ALLOCATE, 2, &nonce, &udp));
        assert_eq!((class, code), (Class::SuccessResponse, None), "first on A");
        let (class, code, _) = exchange(&two, b_udp, &signed(Method::ALLOCATE, 3, &nonce, &udp));
        assert_eq!((class, code), (Class::SuccessResponse, None), "second on B");
        // The third, on either node, is over the user's fleet-wide quota.
        let (_, code, _) = exchange(&three, a_udp, &signed(Method::ALLOCATE, 4, &nonce, &udp));
        assert_eq!(code, Some(486), "third on A");
        let (_, code, _) = exchange(&three, b_udp, &signed(Method::ALLOCATE, 5, &nonce, &udp));
        assert_eq!(code, Some(486), "third on B");
        // A's allocation is deleted: a new one succeeds on B.
        let zero = |b: &mut MessageBuilder<'_>| b.add_u32(AttributeType::LIFETIME, 0);
        let (class, _, _) = exchange(&one, a_udp, &signed(Method::REFRESH, 6, &nonce, &zero));
        assert_eq!(class, Class::SuccessResponse, "deleted");
        // The release reaches the store a moment after the answer.
        let deadline = std::time::Instant::now() + Duration::from_secs(2);
        let mut txid = 7;
        loop {
            let (_, code, _) =
                exchange(&three, b_udp, &signed(Method::ALLOCATE, txid, &nonce, &udp));
            if code.is_none() {
                break;
            }
            assert_eq!(code, Some(486));
            assert!(
                std::time::Instant::now() < deadline,
                "a place is freed within 2 s"
            );
            std::thread::sleep(Duration::from_millis(50));
            txid += 1;
        }
    })
    .await
    .unwrap();
    a.stop().await;
    b.stop().await;
}

/// Runs `sql` on the test cluster's own database.
async fn on_cluster(sql: &str) {
    use sqlx::Connection;
    let base = std::env::var("TURNPIKE_TEST_PG").unwrap();
    let mut conn = sqlx::PgConnection::connect(&base).await.unwrap();
    sqlx::raw_sql(sql).execute(&mut conn).await.unwrap();
}

/// The value of an unlabelled metric.
fn metric(body: &str, name: &str) -> Option<u64> {
    body.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

/// Fleet quotas through a database outage: the node counts its quotas
/// locally and says so in /metrics; on recovery it says so again and its
/// allocation's row comes back, so the other node counts it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_store_quotas_are_counted_locally_and_rows_return_after() {
    let Some(db) = crate::fresh_pg("q_fleet_quota_down").await else {
        return;
    };
    const SECRET: &[u8] = b"fleet-quota-test-secret-01234567";
    let node = |name: &'static str| {
        let db = db.clone();
        move |c: &mut turnpike::Config| {
            c.db = db;
            c.node_name = name.into();
            c.user_quota = 1;
            c.admin_jwt_secret = Some(turnpike::auth::rest::Secret(SECRET.to_vec()));
        }
    };
    let a = start_turn(node("qdown_a")).await;
    let b = start_turn(node("qdown_b")).await;
    let admin = a.admin_addr().unwrap();
    let token =
        turnpike::admin::token::mint(SECRET, "tests", "admin", crate::unix_now(), 600).unwrap();
    let metrics = || async {
        let (code, body) = crate::admin::http(admin, "GET", "/metrics", Some(&token), None).await;
        assert_eq!(code, 200);
        (
            metric(&body, "turnpike_fleet_quota_local_fallback"),
            metric(&body, "turnpike_fleet_quota_local_fallback_total"),
        )
    };
    assert_eq!(metrics().await, (Some(0), Some(0)));
    // The database refuses every connection: an outage, for both nodes.
    on_cluster(
        "ALTER DATABASE q_fleet_quota_down ALLOW_CONNECTIONS false; \
         SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE datname = 'q_fleet_quota_down'",
    )
    .await;
    let (a_udp, b_udp) = (a.addrs(Transport::Udp)[0], b.addrs(Transport::Udp)[0]);
    let nonce = tokio::task::spawn_blocking(move || {
        let (one, two) = (client(), client());
        let (_, _, answer) = exchange(&one, a_udp, &allocate(1, None));
        let nonce = nonce_of(&answer);
        let udp =
            |b: &mut MessageBuilder<'_>| b.add(AttributeType::REQUESTED_TRANSPORT, &[17, 0, 0, 0]);
        let (class, code, _) = exchange(&one, a_udp, &signed(Method::ALLOCATE, 2, &nonce, &udp));
        assert_eq!(
            (class, code),
            (Class::SuccessResponse, None),
            "counted locally"
        );
        let (_, code, _) = exchange(&two, a_udp, &signed(Method::ALLOCATE, 3, &nonce, &udp));
        assert_eq!(code, Some(486), "the local count still holds the quota");
        nonce
    })
    .await
    .unwrap();
    assert_eq!(metrics().await, (Some(1), Some(1)), "said once");
    on_cluster("ALTER DATABASE q_fleet_quota_down ALLOW_CONNECTIONS true").await;
    // Within a few reconciliations (2 s each) A says it has recovered and
    // its allocation counts again: B refuses the user's second one.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while metrics().await != (Some(0), Some(1)) {
        assert!(std::time::Instant::now() < deadline, "recovery is said");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let three = client();
    let mut txid = 10;
    loop {
        let (_, code, _) = tokio::task::block_in_place(|| {
            let udp = |b: &mut MessageBuilder<'_>| {
                b.add(AttributeType::REQUESTED_TRANSPORT, &[17, 0, 0, 0])
            };
            exchange(&three, b_udp, &signed(Method::ALLOCATE, txid, &nonce, &udp))
        });
        if code == Some(486) {
            break;
        }
        // B itself may still be counting locally: free its place again.
        assert!(
            std::time::Instant::now() < deadline,
            "A's row is back: {code:?}"
        );
        let zero = |b: &mut MessageBuilder<'_>| b.add_u32(AttributeType::LIFETIME, 0);
        tokio::task::block_in_place(|| {
            exchange(
                &three,
                b_udp,
                &signed(Method::REFRESH, txid + 1, &nonce, &zero),
            )
        });
        tokio::time::sleep(Duration::from_millis(200)).await;
        txid += 2;
    }
    a.stop().await;
    b.stop().await;
}

/// Acceptance (issue 15): a killed node (SIGKILL) releases its quota
/// within 15 s. A `turnpike serve` process holds the user's one place;
/// once it is killed, the other node of the store grants it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_node_releases_its_quota_within_15_s() {
    use std::io::{BufRead, BufReader};
    let Some(db) = crate::fresh_pg("q_fleet_quota_kill").await else {
        return;
    };
    // The database URL and the password go in a file, never on argv.
    let dir = std::path::PathBuf::from(crate::temp_db().trim_start_matches("sqlite:"))
        .parent()
        .unwrap()
        .to_path_buf();
    std::fs::create_dir_all(&dir).unwrap();
    let toml = dir.join("turnserver.toml");
    std::fs::write(
        &toml,
        format!(
            "listen = [\"127.0.0.1:0\"]\nrelay_ip = [\"127.0.0.1\"]\nmin_port = 39000\n\
             max_port = 39099\nrealm = \"{REALM}\"\nuser = [\"{USER}:{PASSWORD}\"]\n\
             user_quota = 1\nnode_name = \"qkilled\"\ndb = \"{db}\"\n"
        ),
    )
    .unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_turnpike"))
        .arg("serve")
        .arg("--config")
        .arg(&toml)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = BufReader::new(child.stderr.take().unwrap());
    let killed_udp: SocketAddr = loop {
        let mut line = String::new();
        assert!(err.read_line(&mut line).unwrap() > 0, "the node starts");
        if let Some((_, addr)) = line.trim_end().split_once("listening udp ") {
            break addr.parse().unwrap();
        }
    };
    // Keep its log flowing so it never blocks on a full pipe.
    std::thread::spawn(move || std::io::copy(&mut err, &mut std::io::sink()));
    let survivor = start_turn(move |c| {
        c.db = db;
        c.node_name = "qsurvivor".into();
        c.user_quota = 1;
    })
    .await;
    let b_udp = survivor.addrs(Transport::Udp)[0];
    let pid = child.id();
    let waited = tokio::task::spawn_blocking(move || {
        let (one, two) = (client(), client());
        let (_, _, answer) = exchange(&one, killed_udp, &allocate(1, None));
        let nonce = nonce_of(&answer);
        let udp =
            |b: &mut MessageBuilder<'_>| b.add(AttributeType::REQUESTED_TRANSPORT, &[17, 0, 0, 0]);
        let (class, code, _) =
            exchange(&one, killed_udp, &signed(Method::ALLOCATE, 2, &nonce, &udp));
        assert_eq!((class, code), (Class::SuccessResponse, None));
        let (_, code, _) = exchange(&two, b_udp, &signed(Method::ALLOCATE, 3, &nonce, &udp));
        assert_eq!(code, Some(486), "the other node's allocation counts");
        let killed = std::process::Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .status()
            .unwrap();
        assert!(killed.success());
        let t0 = std::time::Instant::now();
        for txid in 4.. {
            let (_, code, _) = exchange(&two, b_udp, &signed(Method::ALLOCATE, txid, &nonce, &udp));
            if code.is_none() {
                break;
            }
            assert_eq!(code, Some(486));
            assert!(
                t0.elapsed() < Duration::from_secs(15),
                "released within 15 s"
            );
            std::thread::sleep(Duration::from_millis(250));
        }
        t0.elapsed()
    })
    .await
    .unwrap();
    let _ = child.wait();
    eprintln!("a killed node's quota was released after {waited:?}");
    survivor.stop().await;
}
