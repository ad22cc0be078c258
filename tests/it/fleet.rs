//! Issue 15 (fleet), what is built so far: nodes sharing one store share
//! the nonce key, so a nonce from one node is good at another.

use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

use turnpike::stun::attributes::{AttributeType, ErrorCode};
use turnpike::stun::integrity::long_term_key_md5;
use turnpike::stun::{Class, Message, MessageBuilder, MessageType, Method, TransactionId};
use turnpike::Transport;

use crate::{start_turn, temp_db, PASSWORD, REALM, USER};

/// An Allocate for a UDP relay, signed when `nonce` is given.
fn allocate(txid: u8, nonce: Option<&[u8]>) -> Vec<u8> {
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
fn exchange(sock: &UdpSocket, to: SocketAddr, req: &[u8]) -> (Class, Option<u16>, Vec<u8>) {
    sock.send_to(req, to).unwrap();
    let mut buf = [0u8; 1500];
    let (n, _) = sock.recv_from(&mut buf).expect("an answer");
    let m = Message::parse(&buf[..n]).unwrap();
    let code = m
        .get(AttributeType::ERROR_CODE)
        .map(|v| ErrorCode::decode(v).unwrap().code);
    (m.class(), code, buf[..n].to_vec())
}

fn nonce_of(answer: &[u8]) -> Vec<u8> {
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
