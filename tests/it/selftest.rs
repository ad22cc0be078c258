//! The self-test page (issue 20): its credential endpoint over HTTP (60 s
//! REST usernames, one allocation each, rate limits per source and in
//! total, 404 when off, its own listener serving nothing else), and the
//! page itself in Chromium (tests/browser/selftest_test.mjs): "works" for
//! TURN over UDP, TCP and TLS, "not offered" without TLS, the rate limit's
//! message, and no request to any other host.

use std::net::SocketAddr;
use std::process::Command;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use turnpike::{Running, Transport};

use crate::turn_client::TurnClient;
use crate::{start_turn, unix_now};

/// One HTTP/1.1 exchange from `source`: status, headers (lower-case
/// names), body.
async fn http_from(
    addr: SocketAddr,
    source: &str,
    method: &str,
    path: &str,
) -> (u16, Vec<(String, String)>, String) {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket
        .bind(SocketAddr::new(source.parse().unwrap(), 0))
        .unwrap();
    let mut s = socket.connect(addr).await.unwrap();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).await.unwrap();
    let text = String::from_utf8_lossy(&out).to_string();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let mut lines = head.lines();
    let status = lines.next().unwrap()[9..12].parse().unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(": "))
        .map(|(k, v)| (k.to_ascii_lowercase(), v.to_string()))
        .collect();
    (status, headers, body.to_string())
}

async fn http(addr: SocketAddr, method: &str, path: &str) -> (u16, Vec<(String, String)>, String) {
    http_from(addr, "127.0.0.1", method, path).await
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

fn json(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))
}

/// A server with the page on its admin listener; `adjust` changes the rest.
async fn with_page(adjust: impl FnOnce(&mut turnpike::Config)) -> (Running, SocketAddr) {
    let s = start_turn(|c| {
        c.allow_loopback_peers = true;
        c.selftest.on_admin = true;
        adjust(c);
    })
    .await;
    let admin = s.admin_addr().unwrap();
    (s, admin)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn selftest_credential_is_a_60_s_selftest_username_good_for_one_allocation() {
    let (s, admin) = with_page(|_| {}).await;
    let udp = s.addrs(Transport::Udp)[0];
    // TCP takes UDP's port when it is free, and another one when not.
    let tcp = s.addrs(Transport::Tcp)[0];
    let before = unix_now();
    let (code, headers, body) = http(admin, "POST", "/selftest/credentials").await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(header(&headers, "cache-control"), Some("no-store"));
    assert_eq!(header(&headers, "x-content-type-options"), Some("nosniff"));
    assert_eq!(header(&headers, "referrer-policy"), Some("no-referrer"));
    let v = json(&body);
    assert_eq!(v["ttl"], 60);
    let username = v["username"].as_str().unwrap();
    let (expiry, user) = username.split_once(':').unwrap();
    let expiry: u64 = expiry.parse().unwrap();
    assert!(
        expiry >= before + 58 && expiry <= unix_now() + 62,
        "expiry {expiry} is not now+60 (now {before})"
    );
    let id = user.strip_prefix("selftest-").expect("a selftest- user");
    assert_eq!(id.len(), 10);
    assert!(id
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()));
    // The server's own URLs, and what they offer (no TLS here).
    let urls: Vec<&str> = v["urls"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u.as_str().unwrap())
        .collect();
    assert!(
        urls.contains(&format!("turn:{udp}?transport=udp").as_str()),
        "{urls:?}"
    );
    assert!(
        urls.contains(&format!("turn:{tcp}?transport=tcp").as_str()),
        "{urls:?}"
    );
    assert_eq!(
        v["offered"],
        serde_json::json!({"stun": true, "turn_udp": true, "turn_tcp": true, "turn_tls": false})
    );
    // It allocates, once at a time.
    let password = v["credential"].as_str().unwrap();
    let mut first = TurnClient::connect_as(udp, username, password).await;
    assert!(first.allocate(None).await.is_ok());
    let second = TurnClient::connect_as(udp, username, password)
        .await
        .allocate(None)
        .await;
    assert_eq!(second, Err(486), "one allocation per self-test credential");
    // A second credential is another user: it allocates.
    let (_, _, body) = http(admin, "POST", "/selftest/credentials").await;
    let v2 = json(&body);
    assert_ne!(v2["username"], v["username"]);
    let other = TurnClient::connect_as(
        udp,
        v2["username"].as_str().unwrap(),
        v2["credential"].as_str().unwrap(),
    )
    .await
    .allocate(None)
    .await;
    assert!(other.is_ok(), "{other:?}");
    // The self-test secret signs nothing but selftest- names.
    let forged = format!("{expiry}:tester");
    let r = TurnClient::connect_as(udp, &forged, password)
        .await
        .allocate(None)
        .await;
    assert_eq!(r, Err(401));
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn selftest_credentials_are_limited_per_source_then_in_total_with_429_and_retry_after() {
    let (s, admin) = with_page(|c| {
        c.selftest.rate_per_ip = 3;
        c.selftest.rate_total = 5;
    })
    .await;
    for _ in 0..3 {
        let (code, _, body) = http(admin, "POST", "/selftest/credentials").await;
        assert_eq!(code, 200, "{body}");
    }
    let (code, headers, body) = http(admin, "POST", "/selftest/credentials").await;
    assert_eq!(code, 429, "{body}");
    let v = json(&body);
    assert_eq!(v["status"], 429);
    assert_eq!(
        v["error"],
        "Too many self-tests from your address: 3 credentials per minute. Try again in 20 s."
    );
    assert_eq!(header(&headers, "retry-after"), Some("20"));
    assert_eq!(header(&headers, "cache-control"), Some("no-store"));
    // Another address still gets its own share, up to the total of 5.
    for _ in 0..2 {
        let (code, _, body) = http_from(admin, "127.0.0.2", "POST", "/selftest/credentials").await;
        assert_eq!(code, 200, "{body}");
    }
    let (code, headers, body) =
        http_from(admin, "127.0.0.3", "POST", "/selftest/credentials").await;
    assert_eq!(code, 429, "{body}");
    let msg = json(&body)["error"].as_str().unwrap().to_string();
    assert!(
        msg.starts_with(
            "Too many self-tests on this server right now: 5 credentials per minute in all."
        ),
        "{msg}"
    );
    assert_eq!(header(&headers, "retry-after"), Some("12"));
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn selftest_is_off_by_default_and_its_routes_are_404() {
    let s = start_turn(|_| {}).await;
    let admin = s.admin_addr().unwrap();
    for (method, path) in [
        ("GET", "/selftest"),
        ("GET", "/selftest/selftest.js"),
        ("POST", "/selftest/credentials"),
    ] {
        let (code, _, body) = http(admin, method, path).await;
        assert_eq!(code, 404, "{method} {path}: {body}");
        assert_eq!(json(&body)["status"], 404);
    }
    // Other methods get 405, as on every documented route.
    assert_eq!(http(admin, "PUT", "/selftest").await.0, 405);
    assert_eq!(http(admin, "GET", "/selftest/credentials").await.0, 405);
    // The admin document lists the routes, 404 included.
    let (_, _, doc) = http(admin, "GET", "/api/v1/openapi.json").await;
    let doc = json(&doc);
    let post = &doc["paths"]["/selftest/credentials"]["post"];
    for code in ["200", "404", "429"] {
        assert!(post["responses"][code].is_object(), "{code}");
    }
    assert_eq!(post["security"], serde_json::json!([]));
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn selftest_listen_serves_the_page_alone_and_no_admin_route() {
    let s = start_turn(|c| {
        c.selftest.listen = Some("127.0.0.1:0".parse().unwrap());
    })
    .await;
    let page = s.selftest_addr().expect("selftest_listen is bound");
    let (code, headers, body) = http(page, "GET", "/selftest").await;
    assert_eq!(code, 200);
    assert!(body.contains("Does TURN work from here?"));
    assert_eq!(
        header(&headers, "content-type"),
        Some("text/html; charset=utf-8")
    );
    let csp = header(&headers, "content-security-policy").unwrap();
    assert!(
        csp.contains("default-src 'none'") && csp.contains("script-src 'self'"),
        "{csp}"
    );
    assert!(!csp.contains("unsafe-inline"), "{csp}");
    for (asset, ctype) in [
        ("selftest.js", "text/javascript; charset=utf-8"),
        ("selftest.css", "text/css; charset=utf-8"),
    ] {
        let (code, headers, _) = http(page, "GET", &format!("/selftest/{asset}")).await;
        assert_eq!((code, header(&headers, "content-type")), (200, Some(ctype)));
    }
    assert_eq!(http(page, "GET", "/selftest/nothing.js").await.0, 404);
    let (code, _, body) = http(page, "POST", "/selftest/credentials").await;
    assert_eq!(code, 200, "{body}");
    // Nothing of the admin API there, not even with its routes' paths.
    for path in [
        "/api/v1/users",
        "/metrics",
        "/livez",
        "/api/v1/openapi.json",
    ] {
        let (code, _, body) = http(page, "GET", path).await;
        assert_eq!(code, 404, "{path}: {body}");
    }
    // And the admin listener does not serve the page (selftest is false).
    let admin = s.admin_addr().unwrap();
    assert_eq!(http(admin, "GET", "/selftest").await.0, 404);
    s.stop().await;
}

/// Runs tests/browser/selftest_test.mjs on `page`; its JSON line.
async fn run_page(page: String, shot: Option<&str>) -> Value {
    run_page_with(page, shot, &[]).await
}

/// The same, with the script's environment switches (`SELFTEST_*`).
async fn run_page_with(page: String, shot: Option<&str>, env: &[(&str, &str)]) -> Value {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/browser");
    let shot = shot.map(String::from);
    let env: Vec<(String, String)> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let out = tokio::task::spawn_blocking(move || {
        let mut cmd = Command::new("node");
        cmd.current_dir(dir).arg("selftest_test.mjs").arg(page);
        cmd.envs(env);
        if let Some(s) = shot {
            cmd.arg(s);
        }
        cmd.output()
            .expect("node is installed and tests/browser has npm deps (scripts/test.sh)")
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(
        out.status.success(),
        "selftest page run failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    json(&stdout)
}

fn page_url(admin: SocketAddr) -> String {
    format!("http://{admin}/selftest")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn selftest_page_says_works_for_turn_over_udp_tcp_and_tls_and_asks_no_other_host() {
    let (s, _dir) = crate::secure::tls_turn(|c| c.selftest.on_admin = true).await;
    let admin = s.admin_addr().unwrap();
    let out = run_page(page_url(admin), Some("selftest")).await;
    let v = &out["verdicts"];
    for (key, label, protocol) in [
        ("udp", "TURN over UDP", "udp"),
        ("tcp", "TURN over TCP", "tcp"),
        ("tls", "TURN over TLS", "tls"),
    ] {
        assert_eq!(v[key]["verdict"], "works", "{key}: {out}");
        let text = v[key]["text"].as_str().unwrap();
        assert!(text.starts_with(&format!("{label}: works, RTT ")), "{text}");
        assert!(text.contains(" Mbit/s"), "{text}");
        let rtt: f64 = v[key]["rttMs"].as_str().unwrap().parse().unwrap();
        assert!(rtt > 0.0 && rtt < 1000.0, "{key}: RTT {rtt}");
        // Relay candidates listed for it, with its relay protocol.
        let relays: Vec<&Value> = out["candidates"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| c["transport"] == key && c["type"] == "relay")
            .collect();
        assert!(!relays.is_empty(), "{key}: no relay candidate in {out}");
        assert!(
            relays.iter().any(|c| c["cells"][4] == protocol),
            "{key}: {relays:?}"
        );
    }
    assert_ne!(v["stun"]["verdict"], "blocked", "{out}");
    // The copied report carries every transport's verdict.
    let report = &out["report"];
    assert_eq!(report["transports"].as_array().unwrap().len(), 4);
    assert!(report["userAgent"].as_str().unwrap().contains("Chrome"));
    assert!(report["candidates"].as_array().unwrap().len() >= 3);
    // Nothing but this server was asked for anything.
    assert_eq!(out["foreign"], serde_json::json!([]), "{out}");
    assert!(out["requests"].as_array().unwrap().len() >= 4);
    // Keyboard: Tab reaches the first control, and Enter on the next
    // copies the report; 390 px wide: no sideways scroll.
    assert_eq!(out["firstFocus"], "Run the self-test again");
    assert_eq!(out["copied"], "Report copied to the clipboard.", "{out}");
    assert_eq!(out["narrowOverflow"], false);
    assert_eq!(out["screenshots"].as_array().unwrap().len(), 3);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn selftest_page_without_tls_says_turn_over_tls_is_not_offered() {
    let (s, admin) = with_page(|_| {}).await;
    let out = run_page(page_url(admin), None).await;
    let v = &out["verdicts"];
    assert_eq!(v["tls"]["verdict"], "not-offered", "{out}");
    assert!(
        v["tls"]["text"]
            .as_str()
            .unwrap()
            .starts_with("TURN over TLS: not offered"),
        "{out}"
    );
    assert_eq!(v["udp"]["verdict"], "works", "{out}");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn selftest_page_over_the_rate_limit_shows_the_servers_message() {
    let (s, admin) = with_page(|c| c.selftest.rate_per_ip = 2).await;
    for _ in 0..2 {
        assert_eq!(http(admin, "POST", "/selftest/credentials").await.0, 200);
    }
    let out = run_page(page_url(admin), None).await;
    let want = "Too many self-tests from your address: 2 credentials per minute. Try again in";
    let status = out["status"].as_str().unwrap();
    assert!(status.starts_with(want), "{status}");
    for key in ["udp", "tcp"] {
        assert_eq!(out["verdicts"][key]["verdict"], "rate-limited", "{out}");
        assert!(out["verdicts"][key]["text"]
            .as_str()
            .unwrap()
            .contains(want));
    }
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn selftest_page_explains_a_server_that_never_answers_as_blocked() {
    // The client list drops every TURN packet and connection from
    // loopback, as a firewall would; the page itself is still served.
    let (s, admin) = with_page(|c| {
        c.denied_client_ips = vec![turnpike::turn::policy::IpRange::parse("127.0.0.0/8").unwrap()];
    })
    .await;
    let out = run_page(page_url(admin), None).await;
    let v = &out["verdicts"];
    assert_eq!(v["udp"]["verdict"], "blocked", "{out}");
    let udp = v["udp"]["text"].as_str().unwrap();
    assert!(
        udp.starts_with("TURN over UDP: blocked") && udp.contains("blocks UDP"),
        "{udp}"
    );
    assert_eq!(v["tcp"]["verdict"], "blocked", "{out}");
    assert!(
        v["tcp"]["text"]
            .as_str()
            .unwrap()
            .contains("No TCP connection"),
        "{out}"
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn selftest_page_works_on_an_https_admin_listener() {
    // admin_tls: the page, its assets and credentials over HTTPS with the
    // TURN certificate (Chromium is told to accept the test certificate).
    let (s, _dir) = crate::secure::tls_turn(|c| {
        c.selftest.on_admin = true;
        c.admin_tls = true;
    })
    .await;
    let admin = s.admin_addr().unwrap();
    let out = run_page(format!("https://{admin}/selftest"), None).await;
    assert_eq!(out["verdicts"]["udp"]["verdict"], "works", "{out}");
    assert_eq!(out["verdicts"]["tls"]["verdict"], "works", "{out}");
    assert_eq!(out["foreign"], serde_json::json!([]), "{out}");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn selftest_page_explains_a_refused_credential_for_each_turn_transport() {
    // The credentials reach the page altered, as a broken proxy or a
    // stale cache would hand them over: the server answers 401.
    let (s, _dir) = crate::secure::tls_turn(|c| c.selftest.on_admin = true).await;
    let admin = s.admin_addr().unwrap();
    let out = run_page_with(page_url(admin), None, &[("SELFTEST_WRONG_CREDENTIAL", "1")]).await;
    let v = &out["verdicts"];
    for (key, label) in [
        ("udp", "TURN over UDP"),
        ("tcp", "TURN over TCP"),
        ("tls", "TURN over TLS"),
    ] {
        assert_eq!(v[key]["verdict"], "refused", "{key}: {out}");
        let text = v[key]["text"].as_str().unwrap();
        assert!(
            text.starts_with(&format!("{label}: credential refused (401)"))
                && text.contains("did not accept the self-test credential"),
            "{text}"
        );
    }
    // STUN needs no credential: it still works.
    assert_eq!(v["stun"]["verdict"], "works", "{out}");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn selftest_page_explains_a_certificate_it_cannot_trust_as_tls_blocked_or_intercepted() {
    // A browser that checks certificates, as users' do, gets the test
    // certificate, which no CA it knows signed: the same failure as behind
    // a proxy that intercepts TLS. UDP and TCP still work.
    let (s, _dir) = crate::secure::tls_turn(|c| c.selftest.on_admin = true).await;
    let admin = s.admin_addr().unwrap();
    let out = run_page_with(page_url(admin), None, &[("SELFTEST_STRICT_TLS", "1")]).await;
    let v = &out["verdicts"];
    assert_eq!(v["udp"]["verdict"], "works", "{out}");
    assert_eq!(v["tcp"]["verdict"], "works", "{out}");
    assert_eq!(v["tls"]["verdict"], "blocked", "{out}");
    let tls = v["tls"]["text"].as_str().unwrap();
    assert!(
        tls.starts_with("TURN over TLS: blocked") && tls.contains("a proxy intercepts TLS"),
        "{tls}"
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn selftest_page_hit_by_the_rate_limit_mid_run_keeps_what_it_measured() {
    // Three credentials a minute: UDP takes two, TCP gets one and then 429.
    let (s, admin) = with_page(|c| c.selftest.rate_per_ip = 3).await;
    let out = run_page(page_url(admin), None).await;
    let v = &out["verdicts"];
    assert_eq!(v["udp"]["verdict"], "works", "{out}");
    assert_eq!(v["tcp"]["verdict"], "rate-limited", "{out}");
    let want = "Too many self-tests from your address: 3 credentials per minute. Try again in";
    let tcp = v["tcp"]["text"].as_str().unwrap();
    assert!(
        tcp.starts_with("TURN over TCP: not run, rate limit") && tcp.contains(want),
        "{tcp}"
    );
    let status = out["status"].as_str().unwrap();
    assert!(status.starts_with(want), "{status}");
    // The report keeps UDP's figures.
    let udp = &out["report"]["transports"][1];
    assert_eq!(udp["transport"], "udp");
    assert_eq!(udp["verdict"], "works", "{out}");
    s.stop().await;
}
