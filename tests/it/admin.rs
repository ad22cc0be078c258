//! Issue 5 end to end: the store, REST and OAuth credentials with coturn's
//! client, the turnadmin-style CLI and the admin API on a running server.

use std::net::SocketAddr;
use std::process::Command;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use turnpike::auth::rest::Secret;
use turnpike::{Running, Transport};

use crate::turn_client::TurnClient;
use crate::{start_turn, REALM};

const JWT_SECRET: &[u8] = b"admin-api-test-secret-0123456789";
const REST_SECRET: &str = "rest-shared-secret";

/// The longest a store change may take to reach a running server.
const SYNC_DEADLINE: Duration = Duration::from_secs(2);

pub(crate) fn token(scope: &str) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    turnpike::admin::token::mint(JWT_SECRET, "tests", scope, now, 600).unwrap()
}

/// One HTTP/1.1 exchange; returns the status and the body.
pub(crate) async fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    bearer: Option<&str>,
    body: Option<&str>,
) -> (u16, String) {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    if let Some(t) = bearer {
        req += &format!("Authorization: Bearer {t}\r\n");
    }
    let body = body.unwrap_or("");
    req += &format!(
        "Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).await.unwrap();
    let text = String::from_utf8_lossy(&out).to_string();
    let status = text[9..12].parse().unwrap();
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

fn json(body: &str) -> serde_json::Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))
}

/// Percent-encodes a path segment.
fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

pub(crate) async fn server(
    adjust: impl FnOnce(&mut turnpike::Config),
) -> (Running, SocketAddr, SocketAddr) {
    let s = start_turn(|c| {
        c.allow_loopback_peers = true;
        c.admin_jwt_secret = Some(Secret(JWT_SECRET.to_vec()));
        adjust(c);
    })
    .await;
    let udp = s.addrs(Transport::Udp)[0];
    let admin = s.admin_addr().unwrap();
    (s, udp, admin)
}

/// Allocates as `user` until it works or the deadline passes; the last code.
pub(crate) async fn allocate_within(
    udp: SocketAddr,
    user: &str,
    password: &str,
    want_ok: bool,
) -> Result<SocketAddr, u16> {
    let deadline = Instant::now() + SYNC_DEADLINE;
    loop {
        let r = TurnClient::connect_as(udp, user, password)
            .await
            .allocate(None)
            .await;
        if r.is_ok() == want_ok || Instant::now() >= deadline {
            return r;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_needs_a_token_and_realm_tokens_stay_in_their_realm() {
    let (s, _, admin) = server(|_| {}).await;
    let (code, body) = http(admin, "GET", "/api/v1/users", None, None).await;
    assert_eq!(code, 401, "{body}");
    assert_eq!(json(&body)["status"], 401);
    let (code, _) = http(admin, "GET", "/api/v1/users", Some("not-a-jwt"), None).await;
    assert_eq!(code, 401);
    let outside = token("realm:elsewhere.test");
    let (code, body) = http(admin, "GET", "/api/v1/users", Some(&outside), None).await;
    assert_eq!(code, 403, "{body}");
    let body_json = r#"{"username":"x","password":"y"}"#;
    let (code, _) = http(
        admin,
        "POST",
        "/api/v1/users",
        Some(&outside),
        Some(body_json),
    )
    .await;
    assert_eq!(code, 403);
    // Admin-only routes refuse realm tokens too.
    let inside = token(&format!("realm:{REALM}"));
    assert_eq!(
        http(admin, "GET", "/api/v1/users", Some(&inside), None)
            .await
            .0,
        200
    );
    for admin_only in ["/api/v1/stats", "/api/v1/nodes", "/metrics"] {
        let (code, body) = http(admin, "GET", admin_only, Some(&inside), None).await;
        assert_eq!(code, 403, "{admin_only}: {body}");
    }
    // Sessions are listed to a realm token, its realm's only (realms.rs).
    assert_eq!(
        http(admin, "GET", "/api/v1/sessions", Some(&inside), None)
            .await
            .0,
        200
    );
    // Open routes.
    assert_eq!(http(admin, "GET", "/healthz", None, None).await.0, 200);
    let (code, doc) = http(admin, "GET", "/api/v1/openapi.json", None, None).await;
    assert_eq!(code, 200);
    assert!(json(&doc)["paths"]["/api/v1/credentials"].is_object());
    // Bad bodies get JSON 4xx and change nothing.
    let admin_token = token("admin");
    let (code, body) = http(
        admin,
        "POST",
        "/api/v1/users",
        Some(&admin_token),
        Some("{not json"),
    )
    .await;
    assert_eq!(code, 400);
    assert!(json(&body)["error"].as_str().unwrap().contains("JSON"));
    let (code, _) = http(
        admin,
        "POST",
        "/api/v1/oauth-keys",
        Some(&admin_token),
        Some(r#"{"kid":"k","key":"!!","alg":"A256GCM"}"#),
    )
    .await;
    assert_eq!(code, 400);
    let (_, list) = http(admin, "GET", "/api/v1/oauth-keys", Some(&admin_token), None).await;
    assert_eq!(json(&list)["oauth_keys"].as_array().unwrap().len(), 0);
    // Found by schemathesis: serde fills a struct from an array.
    let (code, body) = http(
        admin,
        "PUT",
        "/api/v1/quotas/realms/r",
        Some(&admin_token),
        Some("[null, null]"),
    )
    .await;
    assert_eq!(code, 400, "{body}");
    // A bad query string is a JSON 400 too, not axum's plain text.
    let (code, body) = http(
        admin,
        "GET",
        "/api/v1/users?realm=a&realm=b",
        Some(&admin_token),
        None,
    )
    .await;
    assert_eq!((code, json(&body)["status"].as_u64()), (400, Some(400)));
    // A key whose last character has unused bits set is still the key.
    let (code, body) = http(
        admin,
        "POST",
        "/api/v1/oauth-keys",
        Some(&admin_token),
        Some(r#"{"kid":"k","key":"MTIzNDU2Nzg5MDEyMzQ1Ngp=","alg":"A128GCM"}"#),
    )
    .await;
    assert_eq!(code, 201, "{body}");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_tokens_lock_the_source_out() {
    let (s, _, admin) = server(|_| {}).await;
    for i in 0..5 {
        assert_eq!(
            http(
                admin,
                "GET",
                "/api/v1/users",
                Some(&format!("bad-{i}")),
                None
            )
            .await
            .0,
            401
        );
    }
    // The source's bad tokens now get 429 ...
    let (code, body) = http(admin, "GET", "/api/v1/users", Some("bad-5"), None).await;
    assert_eq!(code, 429, "{body}");
    assert_eq!(json(&body)["status"], 429);
    // ... and a request without a token is still a plain 401.
    assert_eq!(http(admin, "GET", "/api/v1/users", None, None).await.0, 401);
    s.stop().await;
}

/// F17: a stranger on the admin's host must not lock the admin out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_valid_token_is_served_from_a_locked_out_address() {
    let (s, _, admin) = server(|_| {}).await;
    // Token-less requests do not count at all.
    for _ in 0..20 {
        assert_eq!(http(admin, "GET", "/metrics", None, None).await.0, 401);
    }
    assert_eq!(
        http(admin, "GET", "/api/v1/users", Some("bad-0"), None)
            .await
            .0,
        401,
        "missing tokens counted toward the lockout"
    );
    // One stale token repeated is not guessing: still 401, never 429.
    for _ in 0..10 {
        assert_eq!(
            http(admin, "GET", "/api/v1/users", Some("stale"), None)
                .await
                .0,
            401
        );
    }
    for i in 1..10 {
        http(
            admin,
            "GET",
            "/api/v1/users",
            Some(&format!("bad-{i}")),
            None,
        )
        .await;
    }
    assert_eq!(
        http(admin, "GET", "/api/v1/users", Some("bad-x"), None)
            .await
            .0,
        429,
        "locked out"
    );
    let good = token("admin");
    for path in ["/api/v1/users", "/metrics"] {
        let (code, body) = http(admin, "GET", path, Some(&good), None).await;
        assert_eq!(code, 200, "{path}: {body}");
    }
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_added_through_the_api_authenticates_and_removed_gets_401() {
    let (s, udp, admin) = server(|_| {}).await;
    let t = token("admin");
    let (code, body) = http(
        admin,
        "POST",
        "/api/v1/users",
        Some(&t),
        Some(r#"{"username":"carol","password":"c4rol"}"#),
    )
    .await;
    assert_eq!(code, 201, "{body}");
    assert!(
        !body.contains("c4rol"),
        "the password never comes back: {body}"
    );
    assert_eq!(
        http(
            admin,
            "POST",
            "/api/v1/users",
            Some(&t),
            Some(r#"{"username":"carol","password":"x"}"#)
        )
        .await
        .0,
        409
    );
    allocate_within(udp, "carol", "c4rol", true)
        .await
        .expect("carol allocates within 2 s");
    assert_eq!(
        http(admin, "DELETE", "/api/v1/users/carol", Some(&t), None)
            .await
            .0,
        204
    );
    assert_eq!(
        http(admin, "DELETE", "/api/v1/users/carol", Some(&t), None)
            .await
            .0,
        404
    );
    assert_eq!(
        allocate_within(udp, "carol", "c4rol", false).await,
        Err(401)
    );

    // Injection strings and a 10 KB name round-trip verbatim.
    let long = "n".repeat(10 * 1024);
    for name in [
        "o'brien\"; DROP TABLE users; --",
        "%s%n%x",
        "nul\u{0}byte",
        long.as_str(),
    ] {
        let body = serde_json::json!({"username": name, "password": "pw"}).to_string();
        let (code, resp) = http(admin, "POST", "/api/v1/users", Some(&t), Some(&body)).await;
        assert_eq!(code, 201, "{name:?}: {resp}");
        let (code, got) = http(
            admin,
            "GET",
            &format!("/api/v1/users/{}", enc(name)),
            Some(&t),
            None,
        )
        .await;
        assert_eq!(code, 200);
        assert_eq!(json(&got)["name"], name);
    }
    let (_, list) = http(admin, "GET", "/api/v1/users", Some(&t), None).await;
    assert_eq!(json(&list)["users"].as_array().unwrap().len(), 4);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_session_shows_growing_counters_and_delete_ends_it() {
    let (s, udp, admin) = server(|_| {}).await;
    let t = token("admin");
    let peer = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let peer_addr = peer.local_addr().unwrap();
    let mut c = TurnClient::connect(udp).await;
    c.allocate(None).await.unwrap();
    c.create_permission(peer_addr).await.unwrap();
    let client = c.local_addr().to_string();
    let mut last = 0;
    for round in 1..=2u64 {
        for _ in 0..10 {
            c.send_to_peer(peer_addr, b"hello peer").await;
        }
        let deadline = Instant::now() + SYNC_DEADLINE;
        let (id, packets) = loop {
            let (code, body) = http(admin, "GET", "/api/v1/sessions", Some(&t), None).await;
            assert_eq!(code, 200);
            let v = json(&body);
            let mine = v["sessions"]
                .as_array()
                .unwrap()
                .iter()
                .find(|x| x["client"] == client.as_str())
                .cloned();
            // Workers report once a second: wait for the first report.
            let Some(mine) = mine else {
                assert!(
                    Instant::now() < deadline,
                    "the session is listed within 2 s"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            };
            assert_eq!(mine["user"], crate::USER);
            assert_eq!(mine["transport"], "udp");
            let packets = mine["to_peer"]["packets"].as_u64().unwrap();
            if packets >= 10 * round || Instant::now() >= deadline {
                break (mine["id"].as_str().unwrap().to_string(), packets);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        assert_eq!(packets, 10 * round, "counters grow while the session lives");
        assert!(packets > last);
        last = packets;
        if round == 2 {
            let (code, metrics) = http(admin, "GET", "/metrics", Some(&t), None).await;
            assert_eq!(code, 200);
            assert!(
                metrics.contains("turnpike_allocations_active 1"),
                "{metrics}"
            );
            assert!(
                metrics.contains("turnpike_relayed_packets_total{direction=\"to_peer\"} 20"),
                "{metrics}"
            );
            assert!(!metrics.contains(crate::USER), "no user names by default");
            assert_eq!(
                http(
                    admin,
                    "DELETE",
                    &format!("/api/v1/sessions/{id}"),
                    Some(&t),
                    None
                )
                .await
                .0,
                204
            );
            assert_eq!(
                http(
                    admin,
                    "DELETE",
                    &format!("/api/v1/sessions/{id}"),
                    Some(&t),
                    None
                )
                .await
                .0,
                404
            );
        }
    }
    assert_eq!(s.allocations(), 0, "quota released at once");
    assert_eq!(c.refresh(600).await, Err(437));
    s.stop().await;
}

/// Runs the CLI; returns (success, stdout, stderr).
fn cli(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_turnpike"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

async fn cli_user_reaches_running_server(db: String) {
    let name = format!("dave-{}", std::process::id());
    let (s, udp, _) = server({
        let db = db.clone();
        move |c| c.db = db
    })
    .await;
    let (ok, _, err) = cli(&[
        "user",
        "add",
        &name,
        "--password",
        "d4ve",
        "--realm",
        REALM,
        "--db",
        &db,
    ]);
    assert!(ok, "{err}");
    allocate_within(udp, &name, "d4ve", true)
        .await
        .expect("CLI user allocates within 2 s");
    // Bad input: one line, non-zero, nothing changed.
    let (ok, _, err) = cli(&[
        "user",
        "add",
        &name,
        "--password",
        "other",
        "--realm",
        REALM,
        "--db",
        &db,
    ]);
    assert!(!ok);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("already exists"), "{err}");
    allocate_within(udp, &name, "d4ve", true)
        .await
        .expect("password unchanged");
    let (ok, _, err) = cli(&["user", "remove", &name, "--realm", REALM, "--db", &db]);
    assert!(ok, "{err}");
    assert_eq!(allocate_within(udp, &name, "d4ve", false).await, Err(401));
    let (ok, _, err) = cli(&["user", "remove", &name, "--realm", REALM, "--db", &db]);
    assert!(!ok && err.contains("does not exist"), "{err}");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_user_reaches_running_server_with_sqlite() {
    cli_user_reaches_running_server(crate::temp_db()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_user_reaches_running_server_with_postgres() {
    let Some(url) = crate::test_pg() else {
        return;
    };
    cli_user_reaches_running_server(url).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coturn_clients_with_static_and_rest_credentials_at_once() {
    let (s, udp, _) = server(|c| c.static_auth_secrets = vec![Secret(REST_SECRET.into())]).await;
    let (_peer, peer_port) = crate::coturn::turnutils_peer();
    let port = udp.port();
    let static_user = ["-u", crate::USER, "-w", crate::PASSWORD];
    let rest_user = ["-W", REST_SECRET, "-u", "webuser"];
    tokio::join!(
        crate::coturn::uclient_relays_all(port, "127.0.0.1", peer_port, &static_user, 50),
        crate::coturn::uclient_relays_all(port, "127.0.0.1", peer_port, &rest_user, 50),
    );
    // An expired REST username gets 401.
    let expired = "1000000000:webuser";
    let password = turnpike::auth::rest::password(REST_SECRET.as_bytes(), expired);
    assert_eq!(
        TurnClient::connect_as(udp, expired, &password)
            .await
            .allocate(None)
            .await,
        Err(401)
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coturn_oauth_client_with_three_keys() {
    let db = crate::temp_db();
    let store = turnpike::store::Store::open(&db).await.unwrap();
    for (kid, key, alg) in [
        (
            "north",
            "MDEyMzQ1Njc4OTAxMjM0NTY3ODkwMTIzNDU2Nzg5MDEK",
            "A256GCM",
        ),
        ("union", "MTIzNDU2Nzg5MDEyMzQ1Ngo=", "A128GCM"),
        (
            "oldempire",
            "MTIzNDU2Nzg5MDEyMzQ1Njc4OTAxMjM0NTY3ODkwMTIK",
            "A256GCM",
        ),
    ] {
        store.add_oauth_key("test", kid, key, alg, 0).await.unwrap();
    }
    store.close().await;
    let (s, udp, _) = server(move |c| {
        c.db = db;
        c.oauth = true;
        c.server_name = "blackdow.carleon.gov".into();
    })
    .await;
    let (_peer, peer_port) = crate::coturn::turnutils_peer();
    crate::coturn::uclient_relays_all(udp.port(), "127.0.0.1", peer_port, &["-J"], 50).await;
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_from_the_api_drive_chromium_relay_to_relay() {
    let (s, _, admin) = server(|c| c.static_auth_secrets = vec![Secret(REST_SECRET.into())]).await;
    let (code, body) = http(
        admin,
        "POST",
        "/api/v1/credentials",
        Some(&token("admin")),
        Some(r#"{"user":"browser","ttl":600}"#),
    )
    .await;
    assert_eq!(code, 200, "{body}");
    let v = json(&body);
    assert_eq!(v["ttl"], 600);
    assert!(v["username"].as_str().unwrap().ends_with(":browser"));
    let servers = v["iceServers"].to_string();
    assert!(
        servers.contains("?transport=udp") && servers.contains("?transport=tcp"),
        "{servers}"
    );
    let line = crate::browser::run_page(servers).await;
    assert!(line.contains(r#""ok":true"#), "{line}");
    assert!(
        line.contains(r#""sentA":100,"recvA":100,"sentB":100,"recvB":100"#),
        "{line}"
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_password_secret_or_key_reaches_the_logs() {
    use std::io::{BufRead, BufReader, Read};
    const STATIC_PW: &str = "PW-static-7f3a";
    const REST: &str = "SECRET-rest-91c2";
    const JWT: &str = "JWT-secret-5be1-0123456789";
    const API_PW: &str = "PW-api-c0d4";
    const API_SECRET: &str = "SECRET-api-77aa";
    const CLI_PW: &str = "PW-cli-e5f6";
    let key_b64 = "MTIzNDU2Nzg5MDEyMzQ1Ngo=";
    let db = crate::temp_db();
    // Secrets come in through a config file, a secret file and the
    // environment, never argv (review F15).
    let dir = std::path::PathBuf::from(db.trim_start_matches("sqlite:"))
        .parent()
        .unwrap()
        .to_path_buf();
    std::fs::create_dir_all(&dir).unwrap();
    let (toml, jwt_file) = (dir.join("turnserver.toml"), dir.join("jwt"));
    std::fs::write(&toml, format!("user = [\"logu:{STATIC_PW}\"]\n")).unwrap();
    std::fs::write(&jwt_file, JWT).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_turnpike"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
            "--log-level",
            "trace",
        ])
        .args([
            "--db",
            &db,
            "--realm",
            REALM,
            "--allow-loopback-peers",
            "--oauth",
        ])
        .arg("--config")
        .arg(&toml)
        .arg("--admin-jwt-secret-file")
        .arg(&jwt_file)
        .env("TURNPIKE_STATIC_AUTH_SECRET", REST)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = BufReader::new(child.stderr.take().unwrap());
    let (mut udp, mut admin) = (None, None);
    let mut log = String::new();
    while udp.is_none() || admin.is_none() {
        let mut line = String::new();
        assert!(err.read_line(&mut line).unwrap() > 0, "server ended: {log}");
        if let Some(a) = line.trim_end().strip_prefix_after("listening udp ") {
            udp = Some(a.parse::<SocketAddr>().unwrap());
        }
        if let Some(a) = line.trim_end().strip_prefix_after("admin api http://") {
            admin = Some(a.parse::<SocketAddr>().unwrap());
        }
        log += &line;
    }
    let (udp, admin) = (udp.unwrap(), admin.unwrap());
    // Every way a secret comes in: static user, REST, API, CLI, OAuth key,
    // failed logins with each.
    TurnClient::connect_as(udp, "logu", STATIC_PW)
        .await
        .allocate(None)
        .await
        .unwrap();
    assert_eq!(
        TurnClient::connect_as(udp, "logu", REST)
            .await
            .allocate(None)
            .await,
        Err(401)
    );
    let rest_user = format!("{}:r", crate::unix_now() + 600);
    let rest_pw = turnpike::auth::rest::password(REST.as_bytes(), &rest_user);
    TurnClient::connect_as(udp, &rest_user, &rest_pw)
        .await
        .allocate(None)
        .await
        .unwrap();
    let now = crate::unix_now();
    let t = turnpike::admin::token::mint(JWT.as_bytes(), "logs", "admin", now, 60).unwrap();
    let body = serde_json::json!({"username": "apiu", "password": API_PW}).to_string();
    assert_eq!(
        http(admin, "POST", "/api/v1/users", Some(&t), Some(&body))
            .await
            .0,
        201
    );
    let body = serde_json::json!({"secret": API_SECRET}).to_string();
    assert_eq!(
        http(admin, "POST", "/api/v1/secrets", Some(&t), Some(&body))
            .await
            .0,
        201
    );
    let body = serde_json::json!({"kid": "k1", "key": key_b64, "alg": "A128GCM"}).to_string();
    let (code, resp) = http(admin, "POST", "/api/v1/oauth-keys", Some(&t), Some(&body)).await;
    assert_eq!(code, 201);
    assert!(!resp.contains(key_b64));
    let (_, listed) = http(admin, "GET", "/api/v1/secrets", Some(&t), None).await;
    assert!(!listed.contains(API_SECRET), "{listed}");
    let cli_add = || {
        let out = Command::new(env!("CARGO_BIN_EXE_turnpike"))
            .args(["user", "add", "cliu", "--realm", REALM, "--db", &db])
            .env("TURNPIKE_PASSWORD", CLI_PW)
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).to_string(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    let (ok, out, e) = cli_add();
    assert!(ok, "{e}");
    let (ok, out2, e2) = cli_add();
    assert!(!ok);
    allocate_within(udp, "cliu", CLI_PW, true).await.unwrap();
    allocate_within(udp, "apiu", API_PW, true).await.unwrap();
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let _ = child.wait();
    err.read_to_string(&mut log).unwrap();
    assert!(log.contains("allocation"), "trace logging was on: {log}");
    let all = format!("{log}{out}{e}{out2}{e2}");
    for secret in [
        STATIC_PW, REST, JWT, API_PW, API_SECRET, CLI_PW, key_b64, &rest_pw,
    ] {
        assert!(!all.contains(secret), "{secret} leaked into the logs");
    }
}

trait After {
    fn strip_prefix_after(&self, marker: &str) -> Option<&str>;
}

impl After for str {
    /// The rest of the line after `marker`, wherever it appears.
    fn strip_prefix_after(&self, marker: &str) -> Option<&str> {
        self.find(marker).map(|i| &self[i + marker.len()..])
    }
}

/// Issue 15's registry on one node (SQLite): the node's own row, kept
/// fresh by its heartbeat; health endpoints need no token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_list_this_node_from_its_heartbeat_and_health_needs_no_token() {
    let (s, udp, admin) = server(|c| {
        c.node_name = "turn-test-1".into();
        c.region = "eu west".into();
    })
    .await;
    let (code, _) = http(admin, "GET", "/api/v1/nodes", None, None).await;
    assert_eq!(code, 401, "the registry needs a token");
    for path in ["/livez", "/healthz", "/readyz"] {
        let (code, body) = http(admin, "GET", path, None, None).await;
        assert_eq!(code, 200, "{path}: {body}");
    }
    let _relayed = TurnClient::connect_as(udp, crate::USER, crate::PASSWORD)
        .await
        .allocate(None)
        .await
        .expect("an allocation");
    // Within two heartbeats the row shows it.
    let deadline = Instant::now() + Duration::from_secs(5);
    let node = loop {
        let (code, body) = http(admin, "GET", "/api/v1/nodes", Some(&token("admin")), None).await;
        assert_eq!(code, 200, "{body}");
        let v = json(&body);
        let nodes = v["nodes"].as_array().unwrap().clone();
        assert_eq!(nodes.len(), 1, "{v}");
        if nodes[0]["allocations"] == 1 || Instant::now() > deadline {
            break nodes[0].clone();
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(node["name"], "turn-test-1", "{node}");
    assert_eq!(node["region"], "eu west");
    assert_eq!(node["state"], "ready");
    assert_eq!(node["allocations"], 1, "{node}");
    let urls: Vec<&str> = node["urls"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u.as_str().unwrap())
        .collect();
    assert!(
        urls.contains(&format!("turn:{udp}?transport=udp").as_str()),
        "{urls:?}"
    );
    let now = crate::unix_now() as i64;
    let seen = node["last_seen"].as_i64().unwrap();
    assert!(
        (now - 3..=now).contains(&seen),
        "last_seen {seen}, now {now}"
    );
    s.stop().await;
}
