//! What the web console reads besides the resources it edits (issue 20):
//! `/api/v1/stats`, `/api/v1/whoami`, `turnpike console-link`, and the
//! admin listener over TLS (`admin_tls`). The pages themselves are driven
//! by Chromium in `console.rs`.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use turnpike::Transport;

use crate::admin::{http, server, token};
use crate::turn_client::TurnClient;

fn json(body: &str) -> serde_json::Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_show_allocations_relayed_rates_and_refusals_every_2_s() {
    let (s, udp, admin) = server(|c| c.user_quota = 1).await;
    let t = token("admin");
    let peer = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let peer_addr = peer.local_addr().unwrap();
    let mut c = TurnClient::connect(udp).await;
    c.allocate(None).await.unwrap();
    c.create_permission(peer_addr).await.unwrap();
    // A second allocation of the same user: 486.
    let refused = TurnClient::connect(udp).await.allocate(None).await;
    assert_eq!(refused, Err(486));
    // A wrong password: a 401 to a request with integrity.
    let wrong = TurnClient::connect_as(udp, crate::USER, "not-the-password")
        .await
        .allocate(None)
        .await;
    assert_eq!(wrong, Err(401));
    let payload = [7u8; 1000];
    // Relay for a while so that at least two samples (2 s apart) see it.
    let deadline = Instant::now() + Duration::from_secs(12);
    let v = loop {
        for _ in 0..20 {
            c.send_to_peer(peer_addr, &payload).await;
        }
        let (code, body) = http(admin, "GET", "/api/v1/stats", Some(&t), None).await;
        assert_eq!(code, 200, "{body}");
        let v = json(&body);
        let h = v["history"].as_array().unwrap();
        let relayed = h
            .iter()
            .filter(|x| x["to_peer_bps"].as_u64() > Some(0))
            .count();
        if relayed >= 2 || Instant::now() > deadline {
            break v;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    assert!(v["node"].as_str().is_some_and(|n| !n.is_empty()), "{v}");
    assert_eq!(v["interval_s"], 2);
    assert_eq!(v["current"]["allocations"], 1, "{v}");
    let h = v["history"].as_array().unwrap();
    assert!(h.len() >= 2, "{v}");
    let t0 = h[0]["t"].as_u64().unwrap();
    let t1 = h[1]["t"].as_u64().unwrap();
    assert!((1..=3).contains(&(t1 - t0)), "samples 2 s apart: {v}");
    let bps: Vec<u64> = h
        .iter()
        .map(|x| x["to_peer_bps"].as_u64().unwrap())
        .collect();
    assert!(bps.iter().filter(|b| **b > 0).count() >= 2, "{bps:?}");
    // 20 x 1000 B every ~250 ms is about 640 kbit/s; allow a wide band.
    let peak = *bps.iter().max().unwrap();
    assert!((100_000..5_000_000).contains(&peak), "{bps:?}");
    let sum = |k: &str| h.iter().map(|x| x[k].as_u64().unwrap()).sum::<u64>();
    assert_eq!(v["totals"]["quota_refusals"], 1, "{v}");
    assert_eq!(
        v["totals"]["auth_failures"], 1,
        "the challenge 401s are not failures: {v}"
    );
    // Samples count what happened in their 2 s; the refusals came before
    // the first sample or inside one.
    assert!(
        sum("quota_refusals") <= 1 && sum("auth_failures") <= 1,
        "{v}"
    );
    let bytes = v["totals"]["to_peer_bytes"].as_u64().unwrap();
    assert_eq!(bytes % 1000, 0);
    assert!(bytes >= 40_000, "{v}");
    // Admin only; a token is needed.
    let realm = token(&format!("realm:{}", crate::REALM));
    assert_eq!(
        http(admin, "GET", "/api/v1/stats", Some(&realm), None)
            .await
            .0,
        403
    );
    assert_eq!(http(admin, "GET", "/api/v1/stats", None, None).await.0, 401);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whoami_names_the_tokens_scope_and_expiry() {
    let (s, _, admin) = server(|_| {}).await;
    let (code, body) = http(admin, "GET", "/api/v1/whoami", Some(&token("admin")), None).await;
    assert_eq!(code, 200, "{body}");
    let v = json(&body);
    assert_eq!(
        (v["subject"].as_str(), v["scope"].as_str()),
        (Some("tests"), Some("admin"))
    );
    assert!(v["realm"].is_null());
    let exp = v["expires"].as_u64().unwrap();
    assert!(exp.abs_diff(unix_now() + 600) <= 5, "{v}");
    let scope = format!("realm:{}", crate::REALM);
    let (code, body) = http(admin, "GET", "/api/v1/whoami", Some(&token(&scope)), None).await;
    assert_eq!(code, 200);
    assert_eq!(json(&body)["realm"], crate::REALM);
    assert_eq!(
        http(admin, "GET", "/api/v1/whoami", None, None).await.0,
        401
    );
    assert_eq!(
        http(admin, "GET", "/api/v1/whoami", Some("not.a.token"), None)
            .await
            .0,
        401
    );
    s.stop().await;
}

/// Runs `turnpike console-link` with `args`; (success, stdout, stderr).
fn console_link(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_turnpike"))
        .arg("console-link")
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).trim().to_string(),
        String::from_utf8_lossy(&out.stderr).trim().to_string(),
    )
}

fn write_config(dir: &Path, body: &str) -> String {
    std::fs::create_dir_all(dir).unwrap();
    let path = dir.join("turnserver.toml");
    std::fs::write(&path, body).unwrap();
    path.display().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_link_signs_in_with_the_stored_secret_for_15_minutes() {
    let dir = std::env::temp_dir().join(format!("turnpike-console-link-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let db = format!("sqlite:{}", dir.join("turnpike.db").display());
    // The secret is the one the server generated into its store.
    let s = crate::start_turn(|c| c.db = db.clone()).await;
    let admin = s.admin_addr().unwrap();
    let config = write_config(
        &dir,
        &format!("db = \"{db}\"\nadmin_listen = \"{admin}\"\n"),
    );
    let (ok, url, err) = console_link(&["--config", &config]);
    assert!(ok, "{err}");
    let prefix = format!("http://{admin}/console/#token=");
    let token = url
        .strip_prefix(&prefix)
        .unwrap_or_else(|| panic!("{url} starts with {prefix}"));
    assert!(!url.contains('?'), "the token is in the fragment only");
    let (code, body) = http(admin, "GET", "/api/v1/whoami", Some(token), None).await;
    assert_eq!(code, 200, "{body}");
    let v = json(&body);
    assert_eq!(
        (v["scope"].as_str(), v["subject"].as_str()),
        (Some("admin"), Some("console"))
    );
    let exp = v["expires"].as_u64().unwrap();
    assert!(
        exp.abs_diff(unix_now() + 900) <= 5,
        "15 minutes by default: {v}"
    );
    // A realm link, a shorter one, and one for the address the browser uses.
    let scope = format!("realm:{}", crate::REALM);
    let (ok, url, _) = console_link(&[
        "--config",
        &config,
        "--scope",
        &scope,
        "--ttl",
        "60",
        "--url",
        "https://turn.example.com:9641/",
    ]);
    assert!(ok);
    let token = url
        .strip_prefix("https://turn.example.com:9641/console/#token=")
        .unwrap();
    let (code, body) = http(admin, "GET", "/api/v1/whoami", Some(token), None).await;
    assert_eq!(code, 200);
    assert_eq!(json(&body)["realm"], crate::REALM);
    assert!(json(&body)["expires"].as_u64().unwrap() <= unix_now() + 61);
    // Bad input: one line, non-zero exit, no URL.
    for (args, says) in [
        (vec!["--ttl", "0"], "--ttl"),
        (vec!["--ttl", "2d"], "--ttl"),
        (vec!["--scope", "root"], "--scope"),
    ] {
        let mut all = vec!["--config", config.as_str()];
        all.extend(args);
        let (ok, out, err) = console_link(&all);
        assert!(!ok && out.is_empty(), "{all:?}: {out}");
        assert!(err.starts_with("error: ") && err.contains(says), "{err}");
        assert_eq!(err.lines().count(), 1, "{err}");
    }
    let off = write_config(
        &dir.join("off"),
        &format!("db = \"{db}\"\nadmin_listen = \"off\"\n"),
    );
    let (ok, _, err) = console_link(&["--config", &off]);
    assert!(!ok && err.contains("admin_listen is off"), "{err}");
    s.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// One HTTPS/1.1 GET; the status, the body and the server's leaf.
async fn https_get(addr: std::net::SocketAddr, path: &str, bearer: &str) -> (u16, String, Vec<u8>) {
    let mut s = crate::secure::tls_connect(addr, &[b"http/1.1"]).await;
    let leaf = s.get_ref().1.peer_certificates().unwrap()[0].to_vec();
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {bearer}\r\nConnection: close\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out).await;
    let text = String::from_utf8_lossy(&out).to_string();
    let status = text[9..12].parse().unwrap();
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body, leaf)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_tls_serves_the_api_over_https_with_the_turn_certificate() {
    let dir = crate::secure::cert_dir();
    let der = crate::secure::write_cert(&dir);
    let (s, _, admin) = server(|c| {
        c.tls_listen = vec!["127.0.0.1:0".parse().unwrap()];
        c.cert = Some(dir.join("cert.pem"));
        c.key = Some(dir.join("key.pem"));
        c.admin_tls = true;
    })
    .await;
    let (code, body, leaf) = https_get(admin, "/api/v1/whoami", &token("admin")).await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(json(&body)["scope"], "admin");
    assert_eq!(leaf, der, "the TURN certificate");
    // Plain HTTP gets no answer from a TLS listener.
    let mut plain = tokio::net::TcpStream::connect(admin).await.unwrap();
    plain
        .write_all(b"GET /livez HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), plain.read_to_end(&mut out)).await;
    assert!(
        !String::from_utf8_lossy(&out).contains("HTTP/1.1 200"),
        "{out:?}"
    );
    // A reload's new certificate reaches the admin listener too.
    let der2 = crate::secure::write_cert(&dir);
    assert_ne!(der, der2);
    s.tls().unwrap().reload().unwrap();
    let (code, _, leaf) = https_get(admin, "/livez", "").await;
    assert_eq!((code, leaf), (200, der2));
    assert!(s.addrs(Transport::Tls).len() == 1);
    s.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn admin_tls_without_a_certificate_is_a_config_error() {
    let e = turnpike::Config::load(
        None,
        turnpike::config::Options {
            admin_tls: Some(true),
            ..Default::default()
        },
    )
    .expect_err("refused")
    .to_string();
    assert!(e.contains("admin_tls") && e.contains("certificate"), "{e}");
}
