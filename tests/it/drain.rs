//! Issue 15, drain and readiness: a draining node sends new Allocates to a
//! ready node of the fleet (300 with ALTERNATE-SERVER) or refuses them
//! (403 "draining"), keeps its allocations working, answers /readyz with
//! 503, and its process exits 0 when its last allocation goes, at the
//! deadline, or after SIGUSR1 the same way.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;
use turnpike::stun::Class;
use turnpike::turn_client::ClientError;

use crate::admin::{http, server, token};
use crate::turn_client::TurnClient;
use crate::{fresh_pg, temp_db, PASSWORD, REALM, USER};

/// What an authenticated Allocate got, as the shared client reports it.
#[derive(Debug)]
struct Answer {
    class: Class,
    code: Option<u16>,
    reason: String,
    alternate: Option<SocketAddr>,
    /// ALTERNATE-DOMAIN of a 300.
    domain: Option<String>,
}

/// One Allocate from a fresh client (the 401 for a nonce, then the signed
/// request) to the UDP listener `to`.
async fn allocate_once(to: SocketAddr) -> Answer {
    answer_of(TurnClient::connect(to).await.try_allocate().await)
}

/// The same over a TLS stream to `to`.
async fn tls_allocate(to: SocketAddr) -> Answer {
    let s = crate::secure::tls_connect(to, &[]).await;
    let local = s.get_ref().0.local_addr().unwrap();
    answer_of(TurnClient::over_stream(s, local).try_allocate().await)
}

fn answer_of(got: Result<SocketAddr, ClientError>) -> Answer {
    match got {
        Ok(_) => Answer {
            class: Class::SuccessResponse,
            code: None,
            reason: String::new(),
            alternate: None,
            domain: None,
        },
        Err(ClientError::Refused {
            code,
            reason,
            alternate,
        }) => Answer {
            class: Class::ErrorResponse,
            code: Some(code),
            reason,
            alternate: alternate.as_ref().map(|a| a.addr),
            domain: alternate.and_then(|a| a.domain),
        },
        Err(e) => panic!("no usable answer to an Allocate: {e}"),
    }
}

fn json(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))
}

/// Waits until `node` is listed `ready` in the registry `admin` reads.
async fn until_ready_in_registry(admin: SocketAddr, node: &str) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (code, body) = http(admin, "GET", "/api/v1/nodes", Some(&token("admin")), None).await;
        assert_eq!(code, 200, "{body}");
        let v = json(&body);
        let listed = v["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n["name"] == node && n["state"] == "ready");
        if listed {
            return;
        }
        assert!(Instant::now() < deadline, "{node} never ready: {body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A client with a relay on `udp`, a permission for `peer`, and one
/// datagram relayed to it.
async fn client_relaying(udp: SocketAddr, peer: &tokio::net::UdpSocket) -> TurnClient {
    let mut c = TurnClient::connect(udp).await;
    c.allocate(None).await.expect("allocated");
    c.create_permission(peer.local_addr().unwrap())
        .await
        .expect("permitted");
    assert_relays(&mut c, peer, b"first").await;
    c
}

async fn assert_relays(c: &mut TurnClient, peer: &tokio::net::UdpSocket, data: &[u8]) {
    c.send_to_peer(peer.local_addr().unwrap(), data).await;
    let mut buf = [0u8; 1500];
    let (n, _) = tokio::time::timeout(Duration::from_secs(3), peer.recv_from(&mut buf))
        .await
        .expect("the peer gets the data")
        .unwrap();
    assert_eq!(&buf[..n], data);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_draining_node_redirects_to_a_ready_node_keeps_its_allocation_and_undrains() {
    let Some(db) = fresh_pg("d_redirect").await else {
        return;
    };
    let shared_db = db.clone();
    let (a, a_udp, a_admin) = server(|c| {
        c.db = shared_db;
        c.node_name = "a".into();
    })
    .await;
    let (b, b_udp, b_admin) = server(|c| {
        c.db = db;
        c.node_name = "b".into();
    })
    .await;
    until_ready_in_registry(b_admin, "a").await;
    let peer = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let mut kept = client_relaying(b_udp, &peer).await;
    let t = token("admin");

    // Drain B through its API.
    let (code, body) = http(b_admin, "POST", "/api/v1/drain", Some(&t), None).await;
    assert_eq!(code, 200, "{body}");
    let v = json(&body);
    assert_eq!(v["state"], "draining");
    assert_eq!(v["allocations"], 1);
    assert!(
        v["deadline"].as_u64().is_some(),
        "drain_timeout applies: {v}"
    );
    assert!(
        v["alternates"]
            .as_array()
            .unwrap()
            .contains(&Value::from(format!("udp {a_udp}"))),
        "{v}"
    );

    // A new Allocate to B: 300 with A's address.
    let got = allocate_once(b_udp).await;
    assert_eq!(
        (got.class, got.code, got.reason.as_str()),
        (Class::ErrorResponse, Some(300), "Try Alternate")
    );
    assert_eq!(got.alternate, Some(a_udp));
    // A itself still allocates.
    assert_eq!(allocate_once(a_udp).await.class, Class::SuccessResponse);

    // Readiness: B 503 with the reason, A 200; the registry says draining.
    let (code, body) = http(b_admin, "GET", "/readyz", None, None).await;
    assert_eq!(code, 503, "{body}");
    assert_eq!(json(&body)["reason"], "draining");
    assert_eq!(http(a_admin, "GET", "/readyz", None, None).await.0, 200);
    assert_eq!(http(b_admin, "GET", "/livez", None, None).await.0, 200);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (_, body) = http(a_admin, "GET", "/api/v1/nodes", Some(&t), None).await;
        let v = json(&body);
        // Under load B's row (or the answer) may lag a beat: ask again.
        let b_state = v["nodes"]
            .as_array()
            .and_then(|nodes| nodes.iter().find(|n| n["name"] == "b"))
            .map(|b| b["state"].clone());
        if b_state.is_some_and(|s| s == "draining") {
            break;
        }
        assert!(Instant::now() < deadline, "B never shown draining: {v}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // B's own allocation refreshes, permits and relays.
    kept.refresh(600).await.expect("refreshes while draining");
    kept.create_permission(peer.local_addr().unwrap())
        .await
        .expect("permits while draining");
    assert_relays(&mut kept, &peer, b"while draining").await;
    let (code, body) = http(b_admin, "GET", "/api/v1/drain", Some(&t), None).await;
    assert_eq!(
        (code, json(&body)["state"].clone()),
        (200, "draining".into())
    );

    // Undrained: ready again, and B allocates.
    let (code, body) = http(b_admin, "DELETE", "/api/v1/drain", Some(&t), None).await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(json(&body)["state"], "ready");
    let (code, body) = http(b_admin, "GET", "/readyz", None, None).await;
    assert_eq!((code, json(&body)["status"].clone()), (200, "ready".into()));
    assert_eq!(allocate_once(b_udp).await.class, Class::SuccessResponse);
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_draining_node_alone_answers_403_draining_and_the_api_checks_its_input() {
    let (s, udp, admin) = server(|c| c.db = temp_db()).await;
    let peer = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    // An allocation keeps the process from exiting at once.
    let mut kept = client_relaying(udp, &peer).await;
    let t = token("admin");
    assert_eq!(
        http(admin, "POST", "/api/v1/drain", None, None).await.0,
        401
    );
    assert_eq!(
        http(
            admin,
            "POST",
            "/api/v1/drain",
            Some(&token(&format!("realm:{REALM}"))),
            None
        )
        .await
        .0,
        403
    );
    for bad in [
        r#"{"deadline_s": -1}"#,
        r#"{"deadline_s": 604801}"#,
        r#"{"deadline": 5}"#,
        "[]",
        "not json",
    ] {
        let (code, body) = http(admin, "POST", "/api/v1/drain", Some(&t), Some(bad)).await;
        assert_eq!(code, 400, "{bad}: {body}");
        assert!(json(&body)["error"].is_string(), "{body}");
    }
    assert_eq!(
        http(admin, "GET", "/readyz", None, None).await.0,
        200,
        "bad bodies drain nothing"
    );
    let (code, body) = http(
        admin,
        "POST",
        "/api/v1/drain",
        Some(&t),
        Some(r#"{"deadline_s": 0}"#),
    )
    .await;
    assert_eq!(code, 200, "{body}");
    let v = json(&body);
    assert_eq!(
        (v["state"].clone(), v["deadline"].clone()),
        ("draining".into(), Value::Null)
    );
    let got = allocate_once(udp).await;
    assert_eq!(
        (got.code, got.reason.as_str(), got.alternate),
        (Some(403), "draining", None)
    );
    kept.refresh(600).await.expect("refreshes while draining");
    assert_relays(&mut kept, &peer, b"alone").await;
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_clients_of_a_draining_node_get_the_alternate_domain_of_a_named_node() {
    let Some(db) = fresh_pg("d_tls").await else {
        return;
    };
    let dir = crate::secure::cert_dir();
    crate::secure::write_cert(&dir);
    let tls = |c: &mut turnpike::Config| {
        c.tls_listen = vec!["127.0.0.1:0".parse().unwrap()];
        c.cert = Some(dir.join("cert.pem"));
        c.key = Some(dir.join("key.pem"));
    };
    let shared_db = db.clone();
    let (a, a_udp, _) = server(|c| {
        tls(c);
        c.db = shared_db;
        c.node_name = "named".into();
        c.external_name = Some("localhost".into());
    })
    .await;
    let (b, b_udp, b_admin) = server(|c| {
        tls(c);
        c.db = db;
        c.node_name = "leaving".into();
    })
    .await;
    until_ready_in_registry(b_admin, "named").await;
    let peer = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let _kept = client_relaying(b_udp, &peer).await;
    let (code, body) = http(
        b_admin,
        "POST",
        "/api/v1/drain",
        Some(&token("admin")),
        None,
    )
    .await;
    assert_eq!(code, 200, "{body}");

    // TLS: A's TLS listener, found through its name, and the name.
    let a_tls = a.addrs(turnpike::Transport::Tls)[0];
    let got = tls_allocate(b.addrs(turnpike::Transport::Tls)[0]).await;
    assert_eq!(got.code, Some(300));
    assert_eq!(
        got.alternate,
        Some(SocketAddr::new([127, 0, 0, 1].into(), a_tls.port()))
    );
    assert_eq!(got.domain.as_deref(), Some("localhost"));
    // UDP: A's address, no domain.
    let got = allocate_once(b_udp).await;
    assert_eq!(
        (got.code, got.alternate, got.domain),
        (Some(300), Some(a_udp), None)
    );
    a.stop().await;
    b.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
}

// ----- the real binary -------------------------------------------------------

const BIN_JWT: &str = "drain-test-admin-secret-0123456789";

/// A `turnpike serve` process and the addresses its log names.
struct Proc {
    child: Child,
    udp: SocketAddr,
    admin: SocketAddr,
    health: SocketAddr,
    config: std::path::PathBuf,
}

fn bin_token() -> String {
    turnpike::admin::token::mint(BIN_JWT.as_bytes(), "tests", "admin", crate::unix_now(), 600)
        .unwrap()
}

/// The address after `marker` in a log line.
fn addr_after(line: &str, marker: &str) -> Option<SocketAddr> {
    line.split(marker)
        .nth(1)?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

impl Proc {
    /// Starts the binary with a config file (`extra` appended) and waits
    /// for its admin API.
    fn start(extra: &str) -> Proc {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let path = std::env::temp_dir().join(format!(
            "turnpike-drain-{}-{}.toml",
            std::process::id(),
            N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        let config = format!(
            "listen = [\"127.0.0.1:0\"]\nrelay_ip = [\"127.0.0.1\"]\n\
             user = [\"{USER}:{PASSWORD}\"]\nrealm = \"{REALM}\"\n\
             min_port = 61000\nmax_port = 61999\nallow_loopback_peers = true\n\
             admin_listen = \"127.0.0.1:0\"\nadmin_jwt_secret = \"{BIN_JWT}\"\n\
             health_listen = \"127.0.0.1:0\"\ndb = \"{}\"\nworkers = 1\n{extra}\n",
            temp_db()
        );
        std::fs::write(&path, config).unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_turnpike"))
            .args(["serve", "--config"])
            .arg(&path)
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let err = child.stderr.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines() {
                let Ok(line) = line else { break };
                // Shown with a failing test's output.
                eprintln!("turnpike: {line}");
                let _ = tx.send(line);
            }
        });
        let (mut udp, mut admin, mut health) = (None, None, None);
        let deadline = Instant::now() + Duration::from_secs(15);
        while admin.is_none() {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = rx.recv_timeout(left).expect("the server starts");
            udp = udp.or(addr_after(&line, "listening udp "));
            admin = admin.or(addr_after(&line, "admin api http://"));
            health = health.or(addr_after(&line, "health endpoints http://"));
        }
        Proc {
            child,
            udp: udp.expect("a udp listener"),
            admin: admin.unwrap(),
            health: health.expect("a health listener"),
            config: path,
        }
    }

    /// The exit status if the process ends within `within`.
    fn exits_within(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.config);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_process_exits_0_when_its_last_allocation_goes() {
    let mut p = Proc::start("");
    let mut c = TurnClient::connect(p.udp).await;
    c.allocate(None).await.expect("allocated");
    let (code, body) = http(
        p.admin,
        "POST",
        "/api/v1/drain",
        Some(&bin_token()),
        Some(""),
    )
    .await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(json(&body)["allocations"], 1);
    // Past the 4 s a drain lingers, the allocation still holds the process.
    assert_eq!(
        p.exits_within(Duration::from_secs(5)),
        None,
        "one allocation left: still serving"
    );
    c.refresh(600).await.expect("refreshes while draining");
    c.refresh(0).await.expect("deleted");
    let status = p
        .exits_within(Duration::from_secs(2))
        .expect("exits once drained");
    assert!(status.success(), "{status:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_process_exits_0_at_the_drain_deadline_with_allocations_left() {
    let mut p = Proc::start("");
    let mut c = TurnClient::connect(p.udp).await;
    c.allocate(None).await.expect("allocated");
    let started = Instant::now();
    let (code, body) = http(
        p.admin,
        "POST",
        "/api/v1/drain",
        Some(&bin_token()),
        Some(r#"{"deadline_s": 2}"#),
    )
    .await;
    assert_eq!(code, 200, "{body}");
    assert!(json(&body)["deadline"].as_u64().is_some(), "{body}");
    assert_eq!(
        p.exits_within(Duration::from_secs(1)),
        None,
        "before the deadline"
    );
    let status = p
        .exits_within(Duration::from_secs(5))
        .expect("exits at the deadline");
    assert!(status.success(), "{status:?}");
    assert!(started.elapsed() >= Duration::from_secs(2), "not before it");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigusr1_drains_and_the_health_listener_serves_only_health() {
    let mut p = Proc::start("drain_min_allocations = 1\ndrain_timeout = 0");
    // The health listener: the three endpoints without a token, no API.
    assert_eq!(http(p.health, "GET", "/livez", None, None).await.0, 200);
    assert_eq!(http(p.health, "GET", "/healthz", None, None).await.0, 200);
    let (code, body) = http(p.health, "GET", "/readyz", None, None).await;
    assert_eq!((code, json(&body)["status"].clone()), (200, "ready".into()));
    for path in ["/api/v1/nodes", "/api/v1/drain", "/metrics"] {
        let (code, _) = http(p.health, "GET", path, Some(&bin_token()), None).await;
        assert_eq!(code, 404, "{path} on the health listener");
    }
    assert_eq!(
        http(p.health, "POST", "/api/v1/drain", Some(&bin_token()), None)
            .await
            .0,
        404
    );

    let mut c1 = TurnClient::connect(p.udp).await;
    c1.allocate(None).await.expect("allocated");
    let mut c2 = TurnClient::connect(p.udp).await;
    c2.allocate(None).await.expect("allocated");
    let ok = Command::new("kill")
        .args(["-USR1", &p.child.id().to_string()])
        .status()
        .unwrap();
    assert!(ok.success());
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let (code, body) = http(p.health, "GET", "/readyz", None, None).await;
        if code == 503 {
            let v = json(&body);
            assert_eq!(
                (v["status"].clone(), v["reason"].clone()),
                ("unready".into(), "draining".into())
            );
            break;
        }
        assert!(Instant::now() < deadline, "SIGUSR1 never drained: {body}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (code, body) = http(p.admin, "GET", "/api/v1/drain", Some(&bin_token()), None).await;
    assert_eq!(code, 200);
    let v = json(&body);
    assert_eq!(
        (v["state"].clone(), v["deadline"].clone()),
        ("draining".into(), Value::Null)
    );
    let got = allocate_once(p.udp).await;
    assert_eq!((got.code, got.reason.as_str()), (Some(403), "draining"));
    // drain_min_allocations = 1: the first deletion ends the process.
    assert_eq!(p.exits_within(Duration::from_millis(500)), None);
    c1.refresh(0).await.expect("deleted");
    let status = p
        .exits_within(Duration::from_secs(5))
        .expect("exits at one allocation");
    assert!(status.success(), "{status:?}");
    drop(c2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_health_listener_says_starting_until_the_store_is_read_and_goes_with_a_failed_start() {
    // A "database" that accepts and never answers: the store stays unread.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let db = format!("postgres://u:p@{}/never", silent.local_addr().unwrap());
    let (held_tx, held_rx) = tokio::sync::oneshot::channel::<()>();
    let holder = tokio::spawn(async move {
        let mut held = Vec::new();
        tokio::select! {
            _ = async { loop { held.push(silent.accept().await.unwrap().0) } } => {}
            _ = held_rx => {}
        }
    });
    let health = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let health_addr = health.local_addr().unwrap();
    drop(health);
    let config = turnpike::Config {
        listen: vec!["127.0.0.1:0".parse().unwrap()],
        db,
        admin_listen: None,
        health_listen: Some(health_addr),
        ..turnpike::Config::default()
    };
    let serving = tokio::spawn(turnpike::serve(config, std::future::pending()));
    let deadline = Instant::now() + Duration::from_secs(5);
    let body = loop {
        if tokio::net::TcpStream::connect(health_addr).await.is_ok() {
            let (code, body) = http(health_addr, "GET", "/readyz", None, None).await;
            assert_eq!(code, 503, "{body}");
            break body;
        }
        assert!(
            Instant::now() < deadline,
            "the health listener never came up"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(json(&body)["reason"], "starting");
    assert_eq!(http(health_addr, "GET", "/livez", None, None).await.0, 200);
    // The store goes away: serve fails, and the health listener with it.
    let _ = held_tx.send(());
    holder.await.unwrap();
    let started = tokio::time::timeout(Duration::from_secs(15), serving)
        .await
        .expect("serve gives up")
        .unwrap();
    assert!(started.is_err(), "no store, no server");
    let deadline = Instant::now() + Duration::from_secs(3);
    while tokio::net::TcpStream::connect(health_addr).await.is_ok() {
        assert!(
            Instant::now() < deadline,
            "the health listener outlived the failed start"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
