//! Issue 19, realms per tenant: two tenant realms beside the default, with
//! different users and quotas in the store. A client sending ORIGIN
//! `https://a.example` is served realm A; SNI `b.example` on TLS gets
//! realm B; a user of A cannot authenticate in B; a `realm:A` admin token
//! lists A's users and gets 403 for B's; A allows one allocation, B two.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::io::AsyncWriteExt;
use turnpike::auth::realms::Tenant;
use turnpike::stun::attributes::AttributeType;
use turnpike::stun::{Class, Message, MessageBuilder, MessageType, Method, TransactionId};
use turnpike::Transport;

use crate::admin::{http, token};
use crate::secure::{tls_connect_sni, write_cert};
use crate::turn_client::{read_stun, TurnClient};

const A: &str = "tenant-a.test";
const B: &str = "tenant-b.test";
const ORIGIN_A: &str = "https://a.example";

/// An unsigned Allocate (with ORIGIN `origin`).
fn unsigned_allocate(origin: Option<&str>) -> Vec<u8> {
    let mut buf = vec![0u8; 512];
    let mut b = MessageBuilder::new(
        &mut buf,
        MessageType::new(Method::ALLOCATE, Class::Request),
        TransactionId([0x42; 12]),
    );
    b.add(AttributeType::REQUESTED_TRANSPORT, &[17, 0, 0, 0]);
    if let Some(o) = origin {
        b.add(AttributeType::ORIGIN, o.as_bytes());
    }
    let n = b.finish().unwrap();
    buf.truncate(n);
    buf
}

/// The REALM of a 401 answer.
fn realm_of_401(answer: &[u8]) -> String {
    let m = Message::parse(answer).unwrap();
    let code = m
        .get(AttributeType::ERROR_CODE)
        .map(|v| v[2] as u16 * 100 + v[3] as u16);
    assert_eq!(code, Some(401));
    String::from_utf8(m.get(AttributeType::REALM).unwrap().to_vec()).unwrap()
}

/// The realm a UDP client sending `origin` is challenged in.
async fn udp_challenge(udp: SocketAddr, origin: Option<&str>) -> String {
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    sock.connect(udp).await.unwrap();
    sock.send(&unsigned_allocate(origin)).await.unwrap();
    let mut buf = vec![0u8; 1500];
    let n = tokio::time::timeout(Duration::from_secs(2), sock.recv(&mut buf))
        .await
        .unwrap()
        .unwrap();
    realm_of_401(&buf[..n])
}

/// A UDP Allocate by `user` carrying `origin`.
async fn allocate_with_origin(
    udp: SocketAddr,
    user: &str,
    password: &str,
    origin: &'static str,
) -> Result<Vec<u8>, u16> {
    let mut c = TurnClient::connect_as(udp, user, password).await;
    c.request(Method::ALLOCATE, &move |b| {
        b.add(AttributeType::REQUESTED_TRANSPORT, &[17, 0, 0, 0]);
        b.add(AttributeType::ORIGIN, origin.as_bytes());
    })
    .await
}

/// A TLS client naming `sni`, authenticating as `user`.
async fn tls_client(addr: SocketAddr, sni: &str, user: &str, password: &str) -> TurnClient {
    let s = tls_connect_sni(addr, &[], sni).await;
    let local = s.get_ref().0.local_addr().unwrap();
    TurnClient::over_stream_as(s, local, user, password)
}

async fn api(admin: SocketAddr, scope: &str, method: &str, path: &str, body: Option<&str>) -> u16 {
    http(admin, method, path, Some(&token(scope)), body).await.0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenants_are_picked_by_origin_and_sni_and_keep_their_users_quotas_and_tokens() {
    let dir = crate::secure::cert_dir();
    write_cert(&dir);
    let (server, udp, admin) = crate::admin::server(|c| {
        c.realms = vec![
            Tenant {
                name: A.into(),
                sni: vec!["a.example".into()],
                origins: vec![ORIGIN_A.into()],
            },
            Tenant {
                name: B.into(),
                sni: vec!["b.example".into()],
                origins: vec![],
            },
        ];
        c.tls_listen = vec!["127.0.0.1:0".parse().unwrap()];
        c.cert = Some(dir.join("cert.pem"));
        c.key = Some(dir.join("key.pem"));
    })
    .await;
    let tls = server.addrs(Transport::Tls)[0];

    // Each realm's users and quota, through the API with realm tokens.
    let scope_a = format!("realm:{A}");
    let scope_b = format!("realm:{B}");
    let ann = format!(r#"{{"username":"ann","password":"apw","realm":"{A}"}}"#);
    let ben = format!(r#"{{"username":"ben","password":"bpw","realm":"{B}"}}"#);
    assert_eq!(
        api(admin, &scope_a, "POST", "/api/v1/users", Some(&ann)).await,
        201
    );
    assert_eq!(
        api(admin, &scope_b, "POST", "/api/v1/users", Some(&ben)).await,
        201
    );
    let quota = |n: u32| format!(r#"{{"allocations":{n}}}"#);
    let path = |r: &str| format!("/api/v1/quotas/realms/{r}");
    assert_eq!(
        api(admin, &scope_a, "PUT", &path(A), Some(&quota(1))).await,
        200
    );
    assert_eq!(
        api(admin, &scope_b, "PUT", &path(B), Some(&quota(2))).await,
        200
    );

    // A realm:A token stays in A: B's users are 403 (JSON), A's are 200.
    let list = |r: &str| format!("/api/v1/users?realm={r}");
    let (code, body) = http(admin, "GET", &list(B), Some(&token(&scope_a)), None).await;
    assert_eq!(code, 403, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["status"], 403, "{body}");
    let (code, body) = http(admin, "GET", &list(A), Some(&token(&scope_a)), None).await;
    assert_eq!(code, 200, "{body}");
    assert!(
        body.contains("\"ann\"") && !body.contains("\"ben\""),
        "{body}"
    );
    let other = format!(r#"{{"username":"eve","password":"x","realm":"{B}"}}"#);
    assert_eq!(
        api(admin, &scope_a, "POST", "/api/v1/users", Some(&other)).await,
        403
    );
    assert_eq!(
        api(admin, &scope_a, "PUT", &path(B), Some(&quota(9))).await,
        403
    );

    // ORIGIN picks A; no ORIGIN is the default realm.
    assert_eq!(udp_challenge(udp, Some(ORIGIN_A)).await, A);
    assert_eq!(udp_challenge(udp, None).await, crate::REALM);
    assert_eq!(
        udp_challenge(udp, Some("https://b.example")).await,
        crate::REALM
    );

    // ann authenticates in A once the store change is loaded.
    let deadline = Instant::now() + Duration::from_secs(3);
    let first = loop {
        let r = allocate_with_origin(udp, "ann", "apw", ORIGIN_A).await;
        if r.is_ok() || Instant::now() > deadline {
            break r;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(first.is_ok(), "ann in A: {first:?}");
    // A's quota is 1: her second allocation is 486.
    let second = allocate_with_origin(udp, "ann", "apw", ORIGIN_A).await;
    assert_eq!(second.err(), Some(486));
    // ann without A's ORIGIN is in the default realm, where she is nobody.
    let mut plain = TurnClient::connect_as(udp, "ann", "apw").await;
    assert_eq!(plain.allocate(None).await.err(), Some(401));

    // SNI b.example: the 401 names B.
    let mut raw = tls_connect_sni(tls, &[], "b.example").await;
    raw.write_all(&unsigned_allocate(Some(ORIGIN_A)))
        .await
        .unwrap();
    let answer = read_stun(&mut raw).await.unwrap();
    assert_eq!(realm_of_401(&answer), B, "SNI before ORIGIN");
    // A user of A cannot authenticate in B.
    let mut wrong = tls_client(tls, "b.example", "ann", "apw").await;
    assert_eq!(wrong.allocate(None).await.err(), Some(401));
    // ben can, twice (B's quota is 2), and not a third time.
    let mut bens = vec![];
    for want in [None, None, Some(486)] {
        let mut c = tls_client(tls, "b.example", "ben", "bpw").await;
        assert_eq!(c.allocate(None).await.err(), want);
        bens.push(c);
    }
    // SNI a.example on TLS is A, whose one place ann holds.
    let mut a_tls = tls_client(tls, "a.example", "ann", "apw").await;
    assert_eq!(a_tls.allocate(None).await.err(), Some(486));
    // The default realm's user is untouched by either.
    let mut tester = TurnClient::connect(udp).await;
    assert!(tester.allocate(None).await.is_ok());
    // A realm:A token mints REST credentials with A's secret; they are
    // good in A (486: authenticated, A's one place is taken) and unknown
    // in the default realm.
    let secret = format!(r#"{{"secret":"tenant-a-secret","realm":"{A}"}}"#);
    assert_eq!(
        api(admin, &scope_a, "POST", "/api/v1/secrets", Some(&secret)).await,
        201
    );
    let ask = |r: &str| format!(r#"{{"user":"web","realm":"{r}"}}"#);
    let t = token(&scope_a);
    let (code, body) = http(
        admin,
        "POST",
        "/api/v1/credentials",
        Some(&t),
        Some(&ask(A)),
    )
    .await;
    assert_eq!(code, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let (user, password) = (
        v["username"].as_str().unwrap(),
        v["password"].as_str().unwrap(),
    );
    // Once the new secret is loaded (SQLite: the next poll).
    let deadline = Instant::now() + Duration::from_secs(3);
    let r = loop {
        let r = allocate_with_origin(udp, user, password, ORIGIN_A).await;
        if r != Err(401) || Instant::now() > deadline {
            break r;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(r.err(), Some(486));
    let mut plain = TurnClient::connect_as(udp, user, password).await;
    assert_eq!(plain.allocate(None).await.err(), Some(401));
    // A's URLs: TLS by its name (the node's would pick the default realm),
    // plain TURN kept for clients that send A's ORIGIN.
    let uris = |v: &serde_json::Value| -> Vec<String> {
        v["uris"]
            .as_array()
            .unwrap()
            .iter()
            .map(|u| u.as_str().unwrap().to_string())
            .collect()
    };
    let turns = |name: &str| format!("turns:{name}:{}?transport=tcp", tls.port());
    let a_uris = uris(&v);
    assert!(a_uris.contains(&turns("a.example")), "{a_uris:?}");
    assert!(a_uris.iter().any(|u| u.starts_with("turn:")), "{a_uris:?}");
    assert_eq!(v["iceServers"][0]["urls"], v["uris"]);
    // B is picked by SNI only: its credentials come with STUN and TLS to
    // b.example only, and they authenticate there (486: B's two places
    // are ben's).
    let secret = format!(r#"{{"secret":"tenant-b-secret","realm":"{B}"}}"#);
    assert_eq!(
        api(admin, &scope_b, "POST", "/api/v1/secrets", Some(&secret)).await,
        201
    );
    let (code, body) = http(
        admin,
        "POST",
        "/api/v1/credentials",
        Some(&token(&scope_b)),
        Some(&ask(B)),
    )
    .await;
    assert_eq!(code, 200, "{body}");
    let vb: serde_json::Value = serde_json::from_str(&body).unwrap();
    let b_uris = uris(&vb);
    assert!(b_uris.contains(&turns("b.example")), "{b_uris:?}");
    assert!(
        b_uris
            .iter()
            .all(|u| u.starts_with("stun:") || *u == turns("b.example")),
        "{b_uris:?}"
    );
    let (b_user, b_password) = (
        vb["username"].as_str().unwrap(),
        vb["password"].as_str().unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(3);
    let r = loop {
        let mut c = tls_client(tls, "b.example", b_user, b_password).await;
        let r = c.allocate(None).await;
        if r != Err(401) || Instant::now() > deadline {
            break r;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(r.err(), Some(486));
    let (code, body) = http(
        admin,
        "POST",
        "/api/v1/credentials",
        Some(&t),
        Some(&ask(B)),
    )
    .await;
    assert_eq!(code, 403, "{body}");
    let admin_t = token("admin");
    let unknown = ask("nowhere.test");
    let (code, body) = http(
        admin,
        "POST",
        "/api/v1/credentials",
        Some(&admin_t),
        Some(&unknown),
    )
    .await;
    assert_eq!(code, 404, "{body}");

    // Sessions carry their realm (workers report them once a second).
    let want = [("ann", A), ("ben", B), ("ben", B), ("tester", crate::REALM)];
    let want: Vec<(String, String)> = want
        .iter()
        .map(|(u, r)| (u.to_string(), r.to_string()))
        .collect();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (code, body) = http(
            admin,
            "GET",
            "/api/v1/sessions",
            Some(&token("admin")),
            None,
        )
        .await;
        assert_eq!(code, 200, "{body}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        let mut seen: Vec<(String, String)> = v["sessions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| {
                let field = |k: &str| s[k].as_str().unwrap_or_default().to_string();
                (field("user"), field("realm"))
            })
            .collect();
        seen.sort();
        if seen == want {
            break;
        }
        assert!(Instant::now() < deadline, "sessions: {body}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    realm_tokens_list_and_end_their_realms_sessions_only(admin).await;
    drop(server);
}

/// A's token lists ann's session only; B's sessions are unknown to it
/// (404, and still live), its own ends (204).
async fn realm_tokens_list_and_end_their_realms_sessions_only(admin: std::net::SocketAddr) {
    let list = |t: String| async move {
        let (code, body) = http(admin, "GET", "/api/v1/sessions", Some(&t), None).await;
        assert_eq!(code, 200, "{body}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        v["sessions"].as_array().unwrap().clone()
    };
    let a = token(&format!("realm:{A}"));
    let mine = list(a.clone()).await;
    let users: Vec<&str> = mine.iter().map(|s| s["user"].as_str().unwrap()).collect();
    assert_eq!(users, ["ann"], "{mine:?}");
    let all = list(token("admin")).await;
    let bens: Vec<String> = all
        .iter()
        .filter(|s| s["realm"] == B)
        .map(|s| s["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(bens.len(), 2);
    let end = |id: String, t: String| async move {
        http(
            admin,
            "DELETE",
            &format!("/api/v1/sessions/{id}"),
            Some(&t),
            None,
        )
        .await
        .0
    };
    assert_eq!(end(bens[0].clone(), a.clone()).await, 404);
    assert_eq!(
        list(token("admin")).await.len(),
        all.len(),
        "B's session lives"
    );
    let ann = mine[0]["id"].as_str().unwrap().to_string();
    assert_eq!(end(ann.clone(), a.clone()).await, 204);
    assert_eq!(end(ann, a).await, 404, "ended");
}
