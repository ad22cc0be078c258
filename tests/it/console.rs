//! The web console (issue 20) in headless Chromium: tests/browser/
//! console_test.mjs drives the page one step at a time while this side
//! runs the server, `turnpike console-link`, turnutils_uclient and our own
//! TURN client between the steps, and asserts what the page showed.

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

use serde_json::{json, Value};
use tokio::net::UdpSocket;
use turnpike::auth::realms::Tenant;
use turnpike::{Running, Transport};

use crate::admin::{allocate_within, http};
use crate::turn_client::TurnClient;
use crate::{PASSWORD, USER};

const OTHER: &str = "other.test";

/// The page, driven over the script's stdin and stdout.
struct Console {
    child: Child,
    input: ChildStdin,
    output: BufReader<ChildStdout>,
}

impl Console {
    fn launch(width: u32, height: u32) -> Console {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/browser");
        let mut child = Command::new("node")
            .current_dir(dir)
            .arg("console_test.mjs")
            .arg(json!({"width": width, "height": height}).to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("node is installed and tests/browser has npm deps (scripts/test.sh)");
        let input = child.stdin.take().unwrap();
        let output = BufReader::new(child.stdout.take().unwrap());
        Console {
            child,
            input,
            output,
        }
    }

    /// One step; its answer, which must be `ok`.
    fn step(&mut self, cmd: Value) -> Value {
        let v = tokio::task::block_in_place(|| {
            writeln!(self.input, "{cmd}").unwrap();
            let mut line = String::new();
            self.output.read_line(&mut line).unwrap();
            serde_json::from_str::<Value>(&line)
                .unwrap_or_else(|e| panic!("{cmd}: not a JSON answer ({e}): {line:?}"))
        });
        assert_eq!(
            v["ok"],
            true,
            "{cmd}: {}",
            v["error"].as_str().unwrap_or("")
        );
        v
    }

    /// Ends the page; asserts it asked nothing of another host and broke
    /// no rule of its Content-Security-Policy.
    fn finish(mut self, origin: &str) {
        let v = self.step(json!({"cmd": "finish", "origin": origin}));
        assert_eq!(v["foreign"], json!([]), "requests to other hosts: {v}");
        assert!(v["requests"].as_u64().unwrap() > 5, "{v}");
        assert_eq!(v["csp"], json!([]), "CSP violations: {v}");
        assert_eq!(v["pageErrors"], json!([]), "script errors: {v}");
        let blocked: Vec<&Value> = v["consoleErrors"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e.as_str().unwrap_or("").contains("Content Security Policy"))
            .collect();
        assert!(blocked.is_empty(), "{blocked:?}");
        let _ = self.child.wait();
    }
}

impl Drop for Console {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("turnpike-console-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// `turnpike console-link --config FILE ARGS`: the URL it printed.
fn console_link(config: &Path, args: &[&str]) -> String {
    let out = crate::cli::turnpike()
        .arg("console-link")
        .arg("--config")
        .arg(config)
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

fn token_of(url: &str) -> String {
    url.split_once("#token=").unwrap().1.to_string()
}

/// A server whose admin JWT secret is generated into its store (so that
/// console-link finds it), with a second realm; and the config file
/// console-link reads.
async fn server(dir: &Path, tls: bool) -> (Running, SocketAddr, SocketAddr, PathBuf) {
    let db = format!("sqlite:{}", dir.join("store.db").display());
    if tls {
        crate::secure::write_cert(dir);
    }
    let s = crate::start_turn(|c| {
        c.db = db.clone();
        c.allow_loopback_peers = true;
        c.realms = vec![Tenant {
            name: OTHER.into(),
            sni: vec![],
            origins: vec![],
        }];
        if tls {
            c.tls_listen = vec!["127.0.0.1:0".parse().unwrap()];
            c.cert = Some(dir.join("cert.pem"));
            c.key = Some(dir.join("key.pem"));
            c.admin_tls = true;
        }
    })
    .await;
    let admin = s.admin_addr().unwrap();
    let udp = s.addrs(Transport::Udp)[0];
    let mut toml = format!("db = \"{db}\"\nadmin_listen = \"{admin}\"\n");
    if tls {
        toml += &format!(
            "admin_tls = true\ncert = \"{}\"\nkey = \"{}\"\n",
            dir.join("cert.pem").display(),
            dir.join("key.pem").display()
        );
    }
    let config = dir.join("turnserver.toml");
    std::fs::write(&config, toml).unwrap();
    (s, udp, admin, config)
}

fn node_name() -> String {
    turnpike::Config::default().node_name
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// The ids of `user`'s live sessions, from the API.
async fn session_ids(admin: SocketAddr, token: &str, user: &str) -> Vec<String> {
    let (code, body) = http(admin, "GET", "/api/v1/sessions", Some(token), None).await;
    assert_eq!(code, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    v["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["user"] == user)
        .map(|s| s["id"].as_str().unwrap().to_string())
        .collect()
}

/// turnutils_uclient as the static user: one client (no RTCP
/// allocation), 1,500 messages 20 ms apart to coturn's echo peer, so that
/// its allocation lives for about 30 s.
fn uclient(udp: SocketAddr, peer_port: u16) -> crate::coturn::Child {
    let child = Command::new("turnutils_uclient")
        .args(["-c", "-u", USER, "-w", PASSWORD, "-e", "127.0.0.1"])
        .args(["-r", &peer_port.to_string(), "-p", &udp.port().to_string()])
        .args([
            "-m",
            "1",
            "-n",
            "1500",
            "-z",
            "20",
            "-l",
            "100",
            "127.0.0.1",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("turnutils_uclient is installed (scripts/test.sh)");
    crate::coturn::Child(child)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_signs_in_by_link_watches_kills_creates_and_sums_as_admin_and_realm() {
    let dir = temp_dir("main");
    let (server, udp, admin, config) = server(&dir, false).await;
    let origin = format!("http://{admin}");

    // 1. Sign in with the link: the token moves to sessionStorage and out
    // of the address bar; the page comes with its security headers.
    let link = console_link(&config, &[]);
    let admin_token = token_of(&link);
    let mut page = Console::launch(1280, 800);
    let v = page.step(json!({"cmd": "open", "url": link}));
    assert_eq!(v["status"], 200, "{v}");
    assert_eq!(v["signedIn"], true, "{v}");
    assert_eq!(v["location"], format!("{origin}/console/"), "{v}");
    assert_eq!(v["stored"], admin_token.as_str());
    let csp = v["csp"].as_str().expect("a Content-Security-Policy header");
    assert!(csp.contains("script-src 'self'") && csp.contains("connect-src 'self'"));
    assert!(!csp.contains("unsafe-inline"), "{csp}");
    assert_eq!(v["nosniff"], "nosniff");
    assert_eq!(v["referrer"], "no-referrer");
    assert_eq!(v["contentType"], "text/html; charset=utf-8");

    // 3a. uclient's session shows in Sessions within 3 s of its start.
    let (_peer, peer_port) = crate::coturn::turnutils_peer();
    let _one = crate::coturn::uclient_turn().await;
    page.step(json!({"cmd": "tab", "name": "sessions"}));
    let since = now_ms();
    let _uclient = uclient(udp, peer_port);
    let v = page.step(json!({"cmd": "session", "user": USER, "since": since, "within_ms": 3000}));
    let appeared = v["appeared_ms"].as_u64().unwrap();
    eprintln!("uclient's session listed {appeared} ms after its start");
    assert!(appeared <= 3000, "{v}");
    assert_eq!(v["sorted"], "ascending", "{v}");
    page.step(json!({"cmd": "screenshot", "name": "console-sessions"}));

    // 2. The overview: this node, live, with uclient's allocation.
    let v = page.step(json!({"cmd": "overview", "node": node_name(), "within_ms": 10000}));
    assert_eq!(v["state"], "ready", "{v}");
    assert!(v["allocations"].as_u64().unwrap() >= 1, "{v}");
    assert!(v["total"].as_u64().unwrap() >= 1, "{v}");
    assert!(v["lastSeen"].as_str().unwrap().ends_with(" s ago"), "{v}");
    assert!(
        v["inked"].as_u64().unwrap() > 1000,
        "the chart is drawn: {v}"
    );
    // The totals say whose they are; the nodes table sums the fleet.
    assert_eq!(
        v["scope"],
        format!(
            "Live totals of this node ({}); the fleet's sums are under Nodes.",
            node_name()
        ),
        "{v}"
    );
    let rows: Vec<u64> = v["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_u64().unwrap())
        .collect();
    assert_eq!(
        v["fleet"]["count"],
        format!("All nodes ({})", rows.len()),
        "{v}"
    );
    assert_eq!(
        v["fleet"]["allocations"].as_u64(),
        Some(rows.iter().sum()),
        "{v}"
    );
    page.step(json!({"cmd": "screenshot", "name": "console-overview"}));

    // 3b. Kill: a client we hold relays 10 bytes, its session is killed
    // from the page, and its next Refresh gets 437.
    let (code, body) = http(
        admin,
        "POST",
        "/api/v1/users",
        Some(&admin_token),
        Some(r#"{"username":"killme","password":"killpw"}"#),
    )
    .await;
    assert_eq!(code, 201, "{body}");
    let peer = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    // A new user reaches the running server within a second or two.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(3);
    let mut held = loop {
        let mut c = TurnClient::connect_as(udp, "killme", "killpw").await;
        match c.allocate(None).await {
            Ok(_) => break c,
            Err(code) if std::time::Instant::now() < deadline => assert_eq!(code, 401),
            Err(code) => panic!("killme cannot allocate: {code}"),
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    crate::secure::relays(&mut held, &peer).await;
    // The filter shows killme's row alone; sorting by user orders rows.
    let v = page.step(json!({"cmd": "filter_sort", "filter": "killme"}));
    assert_eq!(v["filtered"], json!(["killme"]), "{v}");
    let users = |k: &str| -> Vec<String> {
        v[k].as_array()
            .unwrap()
            .iter()
            .map(|u| u.as_str().unwrap().to_string())
            .collect()
    };
    let (up, down) = (users("up"), users("down"));
    assert!(
        up.contains(&"killme".to_string()) && up.contains(&USER.to_string()),
        "{v}"
    );
    let mut want = up.clone();
    want.sort();
    assert_eq!(up, want, "ascending: {v}");
    want.reverse();
    assert_eq!(down, want, "descending: {v}");
    let v = page.step(json!({"cmd": "kill", "user": "killme"}));
    assert!(v["question"].as_str().unwrap().contains("killme"), "{v}");
    assert_eq!(
        held.refresh(600).await,
        Err(437),
        "the killed allocation is gone"
    );
    // The overview again once uclient's echoes flow: the live totals show
    // its bit rate each way (the README's picture is this screenshot,
    // copied to tests/browser/screenshots/console.png).
    let v = page.step(json!({"cmd": "overview", "node": node_name(), "busy": true}));
    assert!(v["toPeer"].as_str().unwrap().ends_with("kbit/s"), "{v}");
    page.step(json!({"cmd": "screenshot", "name": "console"}));

    // 3c. Kill ends uclient's session too: the fleet lists none of it
    // after, and its relayed bytes are in its usage record.
    let uclient_ids = session_ids(admin, &admin_token, USER).await;
    assert!(!uclient_ids.is_empty(), "uclient's session is listed");
    for id in &uclient_ids {
        let v = page.step(json!({"cmd": "kill", "id": id}));
        assert_eq!(v["id"], id.as_str(), "{v}");
    }
    assert!(
        session_ids(admin, &admin_token, USER).await.is_empty(),
        "uclient's session ended"
    );
    drop(_uclient);
    drop(_one);

    // 4. A user made in the form can allocate.
    let v = page.step(json!({"cmd": "create_user", "name": "formuser", "password": "formpw"}));
    assert!(v["created"].as_str().unwrap().contains("formuser"), "{v}");
    assert_eq!(v["nameError"], "", "{v}");
    allocate_within(udp, "formuser", "formpw", true)
        .await
        .expect("the new user allocates");

    // 5. The same name again: the API's 409 text, beside the name field.
    let (code, conflict) = http(
        admin,
        "POST",
        "/api/v1/users",
        Some(&admin_token),
        Some(r#"{"username":"formuser","password":"x"}"#),
    )
    .await;
    assert_eq!(code, 409);
    let api_error: Value = serde_json::from_str(&conflict).unwrap();
    let v = page.step(json!({"cmd": "create_user", "name": "formuser", "password": "other"}));
    assert_eq!(v["nameError"], api_error["error"], "{v}");
    assert_eq!(v["created"], "", "{v}");
    assert!(
        v["describedBy"]
            .as_str()
            .unwrap()
            .contains("user-name-error"),
        "{v}"
    );
    assert_eq!(v["invalid"], "true", "{v}");
    assert_eq!(v["focused"], "user-name", "{v}");
    page.step(json!({"cmd": "screenshot", "name": "console-users"}));

    // Its password changed in the row's dialog: the new one allocates.
    let v = page.step(json!({"cmd": "set_password", "name": "formuser", "password": "newpw"}));
    assert!(v["status"].as_str().unwrap().contains("formuser"), "{v}");
    allocate_within(udp, "formuser", "newpw", true)
        .await
        .expect("the new password allocates");

    // Secrets, quotas and OAuth keys through their forms.
    let v = page.step(json!({"cmd": "secret_create"}));
    assert!(v["shown"].as_str().unwrap().contains("(shown once)"), "{v}");
    assert_eq!(v["rows"].as_array().unwrap().len(), 1, "{v}");
    assert_eq!(v["after"], "", "the secret is shown once: {v}");
    page.step(json!({"cmd": "screenshot", "name": "console-secrets"}));
    let id = v["rows"][0].as_str().unwrap().to_string();
    let v = page.step(json!({"cmd": "secret_delete", "id": id}));
    assert_eq!(v["rows"], json!([]), "{v}");
    let (_, body) = http(admin, "GET", "/api/v1/secrets", Some(&admin_token), None).await;
    assert!(!body.contains(&id), "deleted: {body}");
    // A value the API refuses: its 400 text beside the allocations field.
    let v = page.step(json!({"cmd": "quota_set", "user": "formuser", "allocations": -1}));
    assert!(
        v["allocationsError"]
            .as_str()
            .unwrap()
            .starts_with("invalid allocations:"),
        "{v}"
    );
    assert_eq!(v["saved"], "", "{v}");
    let v = page.step(json!({"cmd": "quota_set", "user": "formuser", "allocations": 3}));
    assert_eq!(
        (v["saved"].as_str(), v["loaded"].as_str()),
        (Some("Saved."), Some("3")),
        "{v}"
    );
    page.step(json!({"cmd": "screenshot", "name": "console-quotas"}));
    let (code, body) = http(
        admin,
        "GET",
        "/api/v1/quotas/users/formuser",
        Some(&admin_token),
        None,
    )
    .await;
    assert_eq!(code, 200);
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["allocations"],
        3
    );
    let v = page.step(json!({"cmd": "oauth_roundtrip", "kid": "console-key"}));
    assert!(v["shown"].as_str().unwrap().contains("console-key"), "{v}");
    page.step(json!({"cmd": "screenshot", "name": "console-oauth-keys"}));
    let (_, body) = http(admin, "GET", "/api/v1/oauth-keys", Some(&admin_token), None).await;
    assert!(!body.contains("console-key"), "deleted: {body}");
    // Deleting the form's user: gone from the store, and it no longer
    // allocates.
    let v = page.step(json!({"cmd": "user_delete", "name": "formuser"}));
    assert!(v["question"].as_str().unwrap().contains("formuser"), "{v}");
    let (code, _) = http(
        admin,
        "GET",
        "/api/v1/users/formuser",
        Some(&admin_token),
        None,
    )
    .await;
    assert_eq!(code, 404);
    // (A deletion reaches the running server within a second or two; until
    // then the user's quota of 3 may answer 486.)
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(3);
    loop {
        let mut c = TurnClient::connect_as(udp, "formuser", "newpw").await;
        match c.allocate(None).await {
            Err(401) => break,
            other => assert!(std::time::Instant::now() < deadline, "{other:?}"),
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }

    // 7. Usage: the killed session's 10 relayed bytes, and the CSV.
    let v = page.step(json!({"cmd": "usage", "group": "user", "key": "killme", "to_peer": 10}));
    assert_eq!(v["toPeer"], 10, "{v}");
    assert_eq!(v["allocations"], 1, "{v}");
    assert!(v["bars"].as_array().unwrap().contains(&json!("killme")));
    let csv = v["csv"].as_str().unwrap();
    assert!(csv.starts_with("user,allocations,"), "{csv}");
    assert!(
        csv.lines()
            .any(|l| l.starts_with("killme,1,") && l.contains(",10,")),
        "{csv}"
    );
    // A name a spreadsheet would run as a formula: the page's CSV defuses
    // it with a leading apostrophe.
    let (code, body) = http(
        admin,
        "POST",
        "/api/v1/users",
        Some(&admin_token),
        Some(r#"{"username":"=1+1","password":"formula"}"#),
    )
    .await;
    assert_eq!(code, 201, "{body}");
    allocate_within(udp, "=1+1", "formula", true)
        .await
        .expect("the new user allocates");
    let mut c = TurnClient::connect_as(udp, "=1+1", "formula").await;
    c.allocate(None).await.unwrap();
    c.refresh(0).await.unwrap();
    let v = page.step(json!({"cmd": "usage", "group": "user", "key": "=1+1"}));
    let csv = v["csv"].as_str().unwrap();
    assert!(csv.lines().any(|l| l.starts_with("'=1+1,")), "{csv}");
    assert!(!csv.lines().any(|l| l.starts_with("=1+1")), "{csv}");

    // uclient's killed session: the page shows the bytes its usage
    // record holds.
    let v = page.step(json!({"cmd": "usage", "group": "user", "key": USER, "to_peer": 1}));
    let (code, body) = http(
        admin,
        "GET",
        "/api/v1/usage?group_by=user",
        Some(&admin_token),
        None,
    )
    .await;
    assert_eq!(code, 200, "{body}");
    let groups: Value = serde_json::from_str(&body).unwrap();
    let mine = groups["groups"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["key"] == USER)
        .unwrap_or_else(|| panic!("uclient's usage: {body}"))
        .clone();
    assert!(mine["bytes_to_peer"].as_u64().unwrap() > 0, "{mine}");
    assert_eq!(v["toPeer"], mine["bytes_to_peer"], "{v} {mine}");
    assert_eq!(v["toClient"], mine["bytes_to_client"], "{v} {mine}");
    // By realm and by day: each row the page shows is the API's.
    for group in ["realm", "day"] {
        let (code, body) = http(
            admin,
            "GET",
            &format!("/api/v1/usage?group_by={group}"),
            Some(&admin_token),
            None,
        )
        .await;
        assert_eq!(code, 200, "{body}");
        let answer: Value = serde_json::from_str(&body).unwrap();
        let groups = answer["groups"].as_array().unwrap();
        assert!(!groups.is_empty(), "{body}");
        for g in groups {
            let key = g["key"].as_str().unwrap();
            let v = page.step(json!({"cmd": "usage", "group": group, "key": key}));
            assert_eq!(v["toPeer"], g["bytes_to_peer"], "{group} {key}: {v}");
            assert_eq!(v["allocations"], g["allocations"], "{group} {key}: {v}");
        }
    }
    // The date range reaches the API: today holds the records, a day in
    // 2000 none, and an end before the start is refused beside the field.
    let (_, body) = http(
        admin,
        "GET",
        "/api/v1/usage?group_by=day",
        Some(&admin_token),
        None,
    )
    .await;
    let today = serde_json::from_str::<Value>(&body).unwrap()["groups"][0]["key"]
        .as_str()
        .unwrap()
        .to_string();
    let v = page.step(json!({"cmd": "usage_range", "from": today, "to": today}));
    assert!(
        v["keys"].as_array().unwrap().contains(&json!("killme")),
        "{v}"
    );
    let v = page.step(json!({"cmd": "usage_range", "from": "2000-01-01", "to": "2000-01-02"}));
    assert_eq!(
        (v["keys"].clone(), v["total"].clone()),
        (json!([]), json!("0")),
        "{v}"
    );
    let v = page.step(json!({"cmd": "usage_range", "from": today, "to": "2000-01-02"}));
    assert_eq!(v["toError"], "The end is before the start.", "{v}");
    page.step(json!({"cmd": "usage_range", "from": today, "to": today}));
    page.step(json!({"cmd": "usage", "group": "user", "key": USER}));
    page.step(json!({"cmd": "screenshot", "name": "console-usage"}));

    // 10. At 390 px wide only the tables scroll sideways.
    let v = page.step(json!({"cmd": "viewport", "width": 390, "height": 844}));
    assert_eq!(v["wide"], json!([]), "pages wider than 390 px: {v}");
    assert_eq!(v["tabs"].as_array().unwrap().len(), 7, "{v}");
    page.step(json!({"cmd": "tab", "name": "sessions"}));
    page.step(json!({"cmd": "screenshot", "name": "console-390"}));
    page.step(json!({"cmd": "viewport", "width": 1280, "height": 800}));

    // 6. A realm token (pasted) sees its realm's users only, and only the
    // pages a realm may use.
    let (code, body) = http(
        admin,
        "POST",
        "/api/v1/users",
        Some(&admin_token),
        Some(&format!(
            r#"{{"username":"otheruser","password":"pw","realm":"{OTHER}"}}"#
        )),
    )
    .await;
    assert_eq!(code, 201, "{body}");
    let realm_token = token_of(&console_link(
        &config,
        &["--scope", &format!("realm:{OTHER}")],
    ));
    let v = page.step(json!({"cmd": "signin", "token": realm_token}));
    assert_eq!(v["signedIn"], true, "{v}");
    assert_eq!(
        v["tabs"],
        json!(["sessions", "users", "secrets", "quotas", "usage"])
    );
    let v = page.step(json!({"cmd": "users"}));
    assert_eq!(
        v["users"],
        json!([{"name": "otheruser", "realm": OTHER}]),
        "{v}"
    );
    assert_eq!(v["realmReadOnly"], true);
    page.step(json!({"cmd": "screenshot", "name": "console-realm-users"}));

    // 9. Nothing went to another host; no CSP violation.
    page.finish(&origin);
    server.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_signs_in_and_shows_the_overview_over_https_with_admin_tls() {
    let dir = temp_dir("tls");
    let (server, udp, admin, config) = server(&dir, true).await;
    let link = console_link(&config, &[]);
    let origin = format!("https://{admin}");
    assert!(
        link.starts_with(&format!("{origin}/console/#token=")),
        "{link}"
    );
    let mut held = TurnClient::connect(udp).await;
    held.allocate(None).await.unwrap();
    let mut page = Console::launch(1280, 800);
    let v = page.step(json!({"cmd": "open", "url": link}));
    assert_eq!(
        (v["status"].as_u64(), &v["signedIn"]),
        (Some(200), &json!(true)),
        "{v}"
    );
    assert_eq!(v["location"], format!("{origin}/console/"));
    let v = page.step(json!({"cmd": "overview", "node": node_name(), "within_ms": 10000}));
    assert!(v["allocations"].as_u64().unwrap() >= 1, "{v}");
    page.step(json!({"cmd": "screenshot", "name": "console-tls-overview"}));
    page.finish(&origin);
    held.refresh(0).await.unwrap();
    server.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// One GET; the status line's code and the head (lower-cased).
async fn head_of(admin: SocketAddr, path: &str) -> (u16, String, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(admin).await.unwrap();
    let req = format!("GET {path} HTTP/1.1\r\nHost: {admin}\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).await.unwrap();
    let text = String::from_utf8_lossy(&out).to_string();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    (
        head[9..12].parse().unwrap(),
        head.to_ascii_lowercase(),
        body.to_string(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_files_come_without_a_token_with_their_types_and_the_policy() {
    let (server, _, admin) = crate::admin::server(|_| {}).await;
    let (code, head, _) = head_of(admin, "/console").await;
    assert_eq!(code, 308, "{head}");
    assert!(head.contains("\r\nlocation: /console/"), "{head}");
    for (path, kind) in [
        ("/console/", "text/html; charset=utf-8"),
        ("/console/index.html", "text/html; charset=utf-8"),
        ("/console/app.js", "text/javascript; charset=utf-8"),
        ("/console/sessions.js", "text/javascript; charset=utf-8"),
        ("/console/style.css", "text/css; charset=utf-8"),
    ] {
        let (code, head, body) = head_of(admin, path).await;
        assert_eq!(code, 200, "{path}: {head}");
        assert!(
            head.contains(&format!("\r\ncontent-type: {kind}")),
            "{head}"
        );
        assert!(
            head.contains("\r\ncontent-security-policy: default-src 'none'; script-src 'self';"),
            "{head}"
        );
        assert!(!head.contains("unsafe-inline"), "{head}");
        assert!(head.contains("\r\nx-content-type-options: nosniff"));
        assert!(head.contains("\r\nreferrer-policy: no-referrer"));
        assert!(!body.is_empty());
    }
    // Nothing else: an unknown file or a path below one is the API's 404.
    for path in [
        "/console/nope.js",
        "/console/app.js/x",
        "/console/..%2fopenapi.json",
    ] {
        let (code, head, body) = head_of(admin, path).await;
        assert_eq!(code, 404, "{path}: {head}");
        assert!(body.contains(r#""status":404"#), "{path}: {body}");
    }
    server.stop().await;
}
