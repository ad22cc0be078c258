//! Issue 19, revocation: a REST credential in use by turnutils_uclient on
//! node B is revoked through node A's API (two nodes on one PostgreSQL
//! database); B ends the allocation within 2 s, both nodes refuse the
//! name, and still do after both restart. The CLI's revocation on SQLite
//! does the same for a server on that file.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use turnpike::auth::rest::Secret;
use turnpike::Running;

use crate::turn_client::TurnClient;

const REST_SECRET: &str = "revocation-test-secret";

/// A node with an admin API and the REST secret, on `db`.
async fn node(db: &str, name: &str) -> (Running, SocketAddr, SocketAddr) {
    let (db, name) = (db.to_string(), name.to_string());
    crate::admin::server(move |c| {
        c.db = db;
        c.node_name = name;
        c.static_auth_secrets = vec![Secret(REST_SECRET.into())];
    })
    .await
}

async fn api(admin: SocketAddr, method: &str, path: &str, body: Option<&str>) -> (u16, Value) {
    let t = crate::admin::token("admin");
    let (code, body) = crate::admin::http(admin, method, path, Some(&t), body).await;
    let v = serde_json::from_str(&body).unwrap_or(Value::Null);
    (code, v)
}

/// A REST username and password for `user`, valid for an hour.
fn mint(user: &str) -> (String, String) {
    turnpike::auth::rest::mint(REST_SECRET.as_bytes(), user, 3600, ':', crate::unix_now())
}

/// An Allocate as `user` on `udp`: the relayed address, or the error code.
async fn allocate(udp: SocketAddr, user: &str, password: &str) -> Result<SocketAddr, u16> {
    TurnClient::connect_as(udp, user, password)
        .await
        .allocate(None)
        .await
}

/// uclient relaying to the echo peer through `port` as `user` for about
/// 30 s (600 messages, one every 50 ms), killed when dropped.
struct Uclient(Child);

impl Uclient {
    fn start(port: u16, peer_port: u16, user: &str, password: &str) -> Self {
        let child = Command::new("timeout")
            .args(["60", "turnutils_uclient", "-c", "-u", user, "-w", password])
            .args(["-e", "127.0.0.1", "-r", &peer_port.to_string()])
            .args(["-p", &port.to_string(), "-m", "1", "-n", "600", "-z", "50"])
            .arg("127.0.0.1")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("turnutils_uclient is installed (scripts/test.sh)");
        Uclient(child)
    }
}

impl Drop for Uclient {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Waits until `cond` holds, at most `within`; how long it took.
async fn until(within: Duration, what: &str, cond: impl Fn() -> bool) -> Duration {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < within, "{what}: not within {within:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    start.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rest_credential_revoked_on_one_node_ends_on_another_and_stays_refused() {
    let Some(url) = crate::fresh_pg("s_revoke").await else {
        return;
    };
    let (a, a_udp, a_admin) = node(&url, "node-a").await;
    let (b, b_udp, b_admin) = node(&url, "node-b").await;
    let (user, password) = mint("webuser");
    let (other, other_password) = mint("otheruser");

    let _one = crate::coturn::uclient_turn().await;
    let (_peer, peer_port) = crate::coturn::turnutils_peer();
    let _uclient = Uclient::start(b_udp.port(), peer_port, &user, &password);
    // uclient's allocations (it makes two), as B's session list shows them.
    let start = Instant::now();
    loop {
        let (code, v) = api(b_admin, "GET", "/api/v1/sessions?node=node-b", None).await;
        assert_eq!(code, 200);
        let listed = v["sessions"].as_array().unwrap();
        if !listed.is_empty() && listed.len() as u32 == b.allocations() {
            assert!(listed.iter().all(|s| s["user"] == user.as_str()), "{v}");
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "uclient on B: {v}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Another REST user on A, to show the revocation is of one name.
    let mut bystander = TurnClient::connect_as(a_udp, &other, &other_password).await;
    bystander.allocate(None).await.unwrap();

    // Revoked through A: B's allocation ends within 2 s.
    let body = serde_json::json!({ "username": user }).to_string();
    let (code, v) = api(a_admin, "POST", "/api/v1/credentials/revoke", Some(&body)).await;
    assert_eq!(code, 201, "{v}");
    let expires = turnpike::auth::rest::expiry(&user, ':').unwrap();
    assert_eq!(v["kind"], "rest");
    assert_eq!(v["username"], user.as_str());
    assert_eq!(v["realm"], crate::REALM);
    assert_eq!(v["expires_at"].as_u64(), Some(expires));
    let took = until(Duration::from_secs(2), "B ends the allocation", || {
        b.allocations() == 0
    })
    .await;
    eprintln!("revoked allocation ended on B after {took:?}");
    // Again: the same revocation, 200.
    let (code, again) = api(a_admin, "POST", "/api/v1/credentials/revoke", Some(&body)).await;
    assert_eq!((code, &again), (200, &v));
    let (code, list) = api(b_admin, "GET", "/api/v1/credentials/revocations", None).await;
    assert_eq!(code, 200);
    assert_eq!(list["revocations"], serde_json::json!([v]));
    // Both nodes refuse it; the bystander is untouched.
    assert_eq!(allocate(b_udp, &user, &password).await, Err(401));
    assert_eq!(allocate(a_udp, &user, &password).await, Err(401));
    assert_eq!(bystander.refresh(600).await, Ok(()));
    assert_eq!(a.allocations(), 1);
    // Bad names: a JSON 400.
    for bad in [r#"{"username":""}"#, r#"{"user":"x"}"#, "[]"] {
        let (code, v) = api(a_admin, "POST", "/api/v1/credentials/revoke", Some(bad)).await;
        assert_eq!(
            (code, &v["status"]),
            (400, &serde_json::json!(400)),
            "{bad}"
        );
    }
    drop(bystander);
    a.stop().await;
    b.stop().await;

    // After a restart of both: still refused, and a fresh credential works.
    let (a, a_udp, _) = node(&url, "node-a").await;
    let (b, b_udp, _) = node(&url, "node-b").await;
    for udp in [a_udp, b_udp] {
        assert_eq!(allocate(udp, &user, &password).await, Err(401));
        assert!(allocate(udp, &other, &other_password).await.is_ok());
    }
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_revokes_on_sqlite_for_the_running_server_and_after_a_restart() {
    let db = crate::temp_db();
    let (s, udp, _) = node(&db, "solo").await;
    let (user, password) = mint("cliuser");
    let mut c = TurnClient::connect_as(udp, &user, &password).await;
    c.allocate(None).await.unwrap();
    let out = crate::cli::turnpike()
        .args(["credentials", "revoke", &user, "--db", &db])
        .args(["--realm", crate::REALM])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (v["kind"].as_str(), v["username"].as_str()),
        (Some("rest"), Some(user.as_str()))
    );
    // SQLite has no notification: the poll (1 s) and the tick (1 s).
    until(
        Duration::from_secs(3),
        "the server ends the allocation",
        || s.allocations() == 0,
    )
    .await;
    assert_eq!(allocate(udp, &user, &password).await, Err(401));
    s.stop().await;
    let (s, udp, _) = node(&db, "solo").await;
    assert_eq!(allocate(udp, &user, &password).await, Err(401));
    // Listed, then removed: accepted again.
    let list = crate::cli::turnpike()
        .args(["credentials", "revocations", "--db", &db])
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&list.stdout).contains(&user),
        "{list:?}"
    );
    let out = crate::cli::turnpike()
        .args(["credentials", "unrevoke", &user, "--db", &db])
        .args(["--realm", crate::REALM])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let start = Instant::now();
    while allocate(udp, &user, &password).await.is_err() {
        assert!(start.elapsed() < Duration::from_secs(3), "accepted again");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // A bad name: one line on stderr, a failing exit.
    let out = crate::cli::turnpike()
        .args(["credentials", "revoke", "", "--db", &db])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("username"), "{err}");
    // Revoking the user ends and refuses every REST username naming it,
    // not another user's.
    let (later, later_password) = mint("cliuser");
    let mut c = TurnClient::connect_as(udp, &later, &later_password).await;
    c.allocate(None).await.unwrap();
    assert_eq!(s.allocations(), 2, "the earlier one and this one");
    let out = crate::cli::turnpike()
        .args(["credentials", "revoke", "cliuser", "--db", &db])
        .args(["--realm", crate::REALM])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["kind"], "user", "{v}");
    until(
        Duration::from_secs(3),
        "the server ends both of cliuser's allocations",
        || s.allocations() == 0,
    )
    .await;
    assert_eq!(allocate(udp, &later, &later_password).await, Err(401));
    let (other, other_password) = mint("cliuser2");
    assert!(allocate(udp, &other, &other_password).await.is_ok());
    s.stop().await;
}
