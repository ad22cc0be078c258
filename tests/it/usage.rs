//! Usage records and webhooks (issue 18), end to end: coturn's uclient and
//! our own client relay through a real server, a webhook receiver in
//! Python checks what arrives, and the server is killed, restarted and cut
//! off from its store on the way.

use std::io::BufRead;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;
use tokio::net::UdpSocket;

use crate::admin::{http, token};
use crate::turn_client::TurnClient;
use crate::{PASSWORD, USER};

/// The signing key every test server and receiver share.
const SECRET: &str = "webhook-test-secret-0123456789";

/// A webhook receiver: Python's http.server writing one JSON line per
/// request (`Turnpike-Signature`, the body) and answering 200.
const RECEIVER: &str = r#"
import http.server, json, sys
port, out = int(sys.argv[1]), sys.argv[2]
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"])).decode()
        with open(out, "a") as f:
            f.write(json.dumps({"sig": self.headers.get("Turnpike-Signature"), "body": body}) + "\n")
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()
    def log_message(self, *a):
        pass
http.server.ThreadingHTTPServer(("127.0.0.1", port), H).serve_forever()
"#;

pub(crate) struct Receiver {
    child: Option<Child>,
    pub port: u16,
    file: PathBuf,
}

impl Receiver {
    pub(crate) fn start(dir: &Path) -> Receiver {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut r = Receiver {
            child: None,
            port,
            file: dir.join("received.jsonl"),
        };
        r.up();
        r
    }

    pub(crate) fn url(&self) -> String {
        format!("http://127.0.0.1:{}/hook", self.port)
    }

    /// Starts (again) on the same port; returns once it accepts.
    pub(crate) fn up(&mut self) {
        let child = Command::new("python3")
            .args(["-c", RECEIVER, &self.port.to_string()])
            .arg(&self.file)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3 (scripts/test.sh installs it)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "the receiver did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub(crate) fn down(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Every delivery so far: (signature header, body).
    pub(crate) fn deliveries(&self) -> Vec<(String, Value)> {
        let Ok(f) = std::fs::File::open(&self.file) else {
            return vec![];
        };
        std::io::BufReader::new(f)
            .lines()
            .map_while(Result::ok)
            .map(|l| {
                let v: Value = serde_json::from_str(&l).unwrap();
                let body = v["body"].as_str().unwrap().to_string();
                let sig = v["sig"].as_str().unwrap_or_default().to_string();
                assert!(
                    valid_signature(&sig, &body),
                    "bad signature {sig} on {body}"
                );
                (sig, serde_json::from_str(&body).unwrap())
            })
            .collect()
    }

    /// The deliveries once `done` holds for them, within `within`.
    pub(crate) async fn wait_for(
        &self,
        within: Duration,
        done: impl Fn(&[(String, Value)]) -> bool,
    ) -> Vec<(String, Value)> {
        let deadline = Instant::now() + within;
        loop {
            let got = self.deliveries();
            if done(&got) {
                return got;
            }
            assert!(
                Instant::now() < deadline,
                "not delivered within {within:?}; got {} events:\n{:#?}",
                got.len(),
                got.iter()
                    .map(|(_, b)| b["type"].clone())
                    .collect::<Vec<_>>()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.down();
    }
}

/// `t=UNIX,v1=HEX` where HEX is HMAC-SHA256 over "t.body", and t is recent.
fn valid_signature(header: &str, body: &str) -> bool {
    let mut t = None;
    let mut v1 = None;
    for part in header.split(',') {
        match part.split_once('=') {
            Some(("t", x)) => t = x.parse::<u64>().ok(),
            Some(("v1", x)) => v1 = hex::decode(x).ok(),
            _ => {}
        }
    }
    let (Some(t), Some(v1)) = (t, v1) else {
        return false;
    };
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(format!("{t}.{body}").as_bytes());
    mac.verify_slice(&v1).is_ok() && crate::unix_now().abs_diff(t) < 600
}

fn of_type<'a>(got: &'a [(String, Value)], kind: &str) -> Vec<&'a Value> {
    got.iter()
        .map(|(_, b)| b)
        .filter(|b| b["type"] == kind)
        .collect()
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("turnpike-usage-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn secret_file(dir: &Path) -> String {
    use std::os::unix::fs::PermissionsExt;
    let p = dir.join("webhook.secret");
    std::fs::write(&p, SECRET).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
    p.display().to_string()
}

/// Usage records of `user` through the admin API (group_by=none).
async fn records(admin: SocketAddr, user: &str) -> Vec<Value> {
    let path = format!("/api/v1/usage?group_by=none&user={user}&limit=1000");
    let (status, body) = http(admin, "GET", &path, Some(&token("admin")), None).await;
    assert_eq!(status, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    v["records"].as_array().cloned().unwrap_or_default()
}

/// Waits until `user` has `n` final records (within 10 s).
async fn final_records(admin: SocketAddr, user: &str, n: usize) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let all = records(admin, user).await;
        let done: Vec<Value> = all
            .iter()
            .filter(|r| !r["end_reason"].is_null())
            .cloned()
            .collect();
        if done.len() >= n {
            return done;
        }
        assert!(
            Instant::now() < deadline,
            "{n} final records of {user} not written within 10 s: {all:#?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uclient_bytes_refresh_zero_and_api_kill_are_recorded_and_sent_as_signed_webhooks() {
    let dir = temp_dir("records");
    let receiver = Receiver::start(&dir);
    let url = receiver.url();
    let (server, udp, admin) = crate::admin::server(|c| {
        c.webhook_urls = vec![url];
        c.webhook_secret = Some(turnpike::auth::rest::Secret(SECRET.as_bytes().to_vec()));
    })
    .await;

    // uclient: one client without its RTCP allocation (-c), 20 messages
    // of 100 bytes over a channel to coturn's echo peer. Each way the
    // record counts the application bytes: 2,000, in 20 packets.
    let (_peer, peer_port) = crate::coturn::turnutils_peer();
    let out = {
        let _one = crate::coturn::uclient_turn().await;
        let args: Vec<String> = ["-c", "-u", USER, "-w", PASSWORD, "-e", "127.0.0.1", "-r"]
            .iter()
            .map(|s| s.to_string())
            .chain([peer_port.to_string()])
            .chain(
                [
                    "-p",
                    &udp.port().to_string(),
                    "-m",
                    "1",
                    "-n",
                    "20",
                    "-l",
                    "100",
                    "127.0.0.1",
                ]
                .iter()
                .map(|s| s.to_string()),
            )
            .collect();
        tokio::task::spawn_blocking(move || {
            Command::new("timeout")
                .arg("60")
                .arg("turnutils_uclient")
                .args(&args)
                .output()
                .unwrap()
        })
        .await
        .unwrap()
    };
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "uclient: {text}");
    assert!(
        text.contains("tot_send_msgs=20, tot_recv_msgs=20"),
        "uclient relayed all: {text}"
    );
    let uclient = final_records(admin, USER, 1).await;
    // Exactly one allocation: the writer flushes within a second.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(records(admin, USER).await.len(), 1, "{uclient:?}");
    let r = uclient[0].clone();
    assert_eq!(r["bytes_to_peer"], 2000, "{r}");
    assert_eq!(r["packets_to_peer"], 20, "{r}");
    assert_eq!(r["bytes_to_client"], 2000, "{r}");
    assert_eq!(r["packets_to_client"], 20, "{r}");
    assert_eq!(r["credential"], "static");
    assert_eq!(r["transport"], "udp");
    assert_eq!(r["peers"], 1);
    assert_eq!(
        r["end_reason"], "deleted",
        "uclient ends with Refresh 0: {r}"
    );

    // Our client: Refresh 0 is `deleted`, DELETE through the API `killed`.
    let peer = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let mut a = TurnClient::connect(udp).await;
    a.allocate(None).await.unwrap();
    crate::secure::relays(&mut a, &peer).await;
    a.refresh(0).await.unwrap();
    let mut b = TurnClient::connect(udp).await;
    b.allocate(None).await.unwrap();
    let (a_addr, b_addr) = (a.local_addr().to_string(), b.local_addr().to_string());
    // b's session, once the workers have reported it (once a second).
    let deadline = Instant::now() + Duration::from_secs(5);
    let id = loop {
        let (status, body) = http(
            admin,
            "GET",
            "/api/v1/sessions",
            Some(&token("admin")),
            None,
        )
        .await;
        assert_eq!(status, 200);
        let v: Value = serde_json::from_str(&body).unwrap();
        let found = v["sessions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["client"] == b_addr.as_str())
            .map(|s| s["id"].as_str().unwrap().to_string());
        if let Some(id) = found {
            break id;
        }
        assert!(Instant::now() < deadline, "b's session is not listed: {v}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let path = format!("/api/v1/sessions/{id}");
    let (status, _) = http(admin, "DELETE", &path, Some(&token("admin")), None).await;
    assert_eq!(status, 204);
    let mine = final_records(admin, USER, 3).await;
    let reason_of = |addr: &str| {
        let rec = mine.iter().find(|m| m["client"] == addr);
        rec.map(|m| m["end_reason"].clone())
    };
    assert_eq!(
        reason_of(&a_addr),
        Some(Value::from("deleted")),
        "{mine:#?}"
    );
    assert_eq!(reason_of(&b_addr), Some(Value::from("killed")), "{mine:#?}");
    let ids: Vec<Value> = mine
        .iter()
        .filter(|m| {
            m["id"] == r["id"] || m["client"] == a_addr.as_str() || m["client"] == b_addr.as_str()
        })
        .map(|m| m["id"].clone())
        .collect();
    assert_eq!(ids.len(), 3);

    // Each of the three was announced, and its end sent with its record,
    // signed, from this node.
    let got = receiver
        .wait_for(Duration::from_secs(15), |got| {
            ids.iter().all(|id| {
                of_type(got, "allocation.deleted")
                    .iter()
                    .any(|d| d["data"]["id"] == *id)
            })
        })
        .await;
    for id in &ids {
        let one = |kind: &str| -> Vec<&Value> {
            of_type(&got, kind)
                .into_iter()
                .filter(|e| e["data"]["id"] == *id)
                .collect()
        };
        assert_eq!(
            (
                one("allocation.created").len(),
                one("allocation.deleted").len()
            ),
            (1, 1),
            "{id}"
        );
        assert_eq!(
            one("allocation.deleted")[0]["node"].as_str(),
            Some(server_node(&server).as_str())
        );
    }
    let sent = of_type(&got, "allocation.deleted")
        .into_iter()
        .find(|d| d["data"]["id"] == r["id"])
        .unwrap();
    assert_eq!(
        sent["data"],
        r.as_object()
            .map(|o| {
                // The API adds start, end and seconds to the stored record.
                let mut o = o.clone();
                for k in ["start", "end", "seconds"] {
                    o.remove(k);
                }
                Value::Object(o)
            })
            .unwrap()
    );
    server.stop().await;
}

fn server_node(_s: &turnpike::Running) -> String {
    turnpike::Config::default().node_name
}

/// A server process, killed when the test ends, passed or not (a leaked
/// one holds the test's output open).
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A `turnpike serve` process with `args`; its log lines.
fn serve(args: &[String]) -> (Proc, crate::reload::Log, SocketAddr, SocketAddr) {
    let mut child = crate::cli::turnpike()
        .arg("serve")
        .args(args)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let log = crate::reload::Log::follow(std::io::BufReader::new(child.stderr.take().unwrap()));
    let lines = log.until(|l| l.contains("admin api http://"));
    let find = |what: &str| -> SocketAddr {
        lines
            .iter()
            .find_map(|l| l.split(what).nth(1))
            .unwrap_or_else(|| panic!("no {what}: {lines:?}"))
            .trim()
            .parse()
            .unwrap()
    };
    (
        Proc(child),
        log,
        find("listening udp "),
        find("admin api http://"),
    )
}

fn kill(child: &mut Proc, signal: &str) {
    let ok = Command::new("kill")
        .args([signal, &child.0.id().to_string()])
        .status()
        .unwrap();
    assert!(ok.success());
    let _ = child.0.wait();
}

/// `turnpike usage` on the store at `db` as JSON.
fn usage_cli(db: &str, args: &[&str]) -> Value {
    let out = crate::cli::turnpike()
        .args(["usage", "--db", db, "--format", "json"])
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn base_args(dir: &Path, db: &str, extra: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = [
        "--listen",
        "127.0.0.1:0",
        "--relay-ip",
        "127.0.0.1",
        "--allow-loopback-peers",
        "--admin-listen",
        "127.0.0.1:0",
        "--realm",
        crate::REALM,
        "--min-port",
        "38000",
        "--max-port",
        "38499",
        "--workers",
        "2",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    v.extend(["--db".into(), db.into()]);
    v.extend([
        "--usage-spill-file".into(),
        dir.join("usage.spill").display().to_string(),
    ]);
    v.extend(extra.iter().map(|s| s.to_string()));
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interim_records_survive_sigkill() {
    let dir = temp_dir("interim");
    let db = format!("sqlite:{}/store.db", dir.display());
    let users = dir.join("users.toml");
    std::fs::write(&users, format!("user = [\"{USER}:{PASSWORD}\"]\n")).unwrap();
    let users = users.display().to_string();
    let args = base_args(&dir, &db, &["--usage-interim-s", "2", "--config", &users]);
    let (mut child, _log, udp, _admin) = serve(&args);
    let peer = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let mut c = TurnClient::connect(udp).await;
    c.allocate(None).await.unwrap();
    c.create_permission(peer.local_addr().unwrap())
        .await
        .unwrap();
    for _ in 0..10 {
        c.send_to_peer(peer.local_addr().unwrap(), &[7u8; 100])
            .await;
    }
    let mut buf = [0u8; 200];
    for _ in 0..10 {
        tokio::time::timeout(Duration::from_secs(2), peer.recv_from(&mut buf))
            .await
            .expect("relayed")
            .unwrap();
    }
    // Past two interim rounds (every 2 s, the worker reports once a second).
    tokio::time::sleep(Duration::from_millis(5500)).await;
    kill(&mut child, "-KILL");
    let v = usage_cli(&db, &["--group-by", "none", "--user", USER]);
    let recs = v["records"].as_array().unwrap();
    assert_eq!(recs.len(), 1, "{v}");
    let r = &recs[0];
    assert!(r["end_reason"].is_null(), "an interim record: {r}");
    assert_eq!(
        (r["bytes_to_peer"].as_u64(), r["packets_to_peer"].as_u64()),
        (Some(1000), Some(10))
    );
    let secs = (r["end_ms"].as_i64().unwrap() - r["start_ms"].as_i64().unwrap()) / 1000;
    assert!((2..=6).contains(&secs), "the last interim is recent: {r}");
    drop(c);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_survive_a_receiver_outage_and_a_restart_without_duplicates() {
    let dir = temp_dir("outage");
    let db = format!("sqlite:{}/store.db", dir.display());
    let mut receiver = Receiver::start(&dir);
    let url = receiver.url();
    let secret = secret_file(&dir);
    let users = dir.join("users.toml");
    std::fs::write(&users, format!("user = [\"{USER}:{PASSWORD}\"]\n")).unwrap();
    let users = users.display().to_string();
    let args = base_args(
        &dir,
        &db,
        &[
            "--webhook-url",
            &url,
            "--webhook-secret-file",
            &secret,
            "--config",
            &users,
            "--usage-interim-s",
            "0",
        ],
    );
    let (mut child, _log, udp, _) = serve(&args);
    receiver
        .wait_for(Duration::from_secs(10), |g| {
            !of_type(g, "node.ready").is_empty()
        })
        .await;

    // The receiver is down for 10 s while 5 allocations come and go.
    receiver.down();
    for _ in 0..5 {
        let mut c = TurnClient::connect(udp).await;
        c.allocate(None).await.unwrap();
        c.refresh(0).await.unwrap();
    }
    tokio::time::sleep(Duration::from_secs(10)).await;
    receiver.up();
    let got = receiver
        .wait_for(Duration::from_secs(40), |g| {
            of_type(g, "allocation.deleted").len() >= 5
        })
        .await;
    assert_eq!(of_type(&got, "allocation.created").len(), 5);

    // Down again; 5 more allocations, then the server restarts (SIGTERM)
    // before the receiver is back: the outbox is in the store.
    receiver.down();
    for _ in 0..5 {
        let mut c = TurnClient::connect(udp).await;
        c.allocate(None).await.unwrap();
        c.refresh(0).await.unwrap();
    }
    // One allocation still live at the restart ends as `shutdown`.
    let mut live = TurnClient::connect(udp).await;
    live.allocate(None).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    kill(&mut child, "-TERM");
    let (mut child, _log, _udp, _) = serve(&args);
    receiver.up();
    let got = receiver
        .wait_for(Duration::from_secs(40), |g| {
            of_type(g, "allocation.deleted").len() >= 11
        })
        .await;
    let deleted = of_type(&got, "allocation.deleted");
    assert_eq!(deleted.len(), 11);
    assert_eq!(of_type(&got, "allocation.created").len(), 11);
    assert_eq!(
        deleted
            .iter()
            .filter(|d| d["data"]["end_reason"] == "shutdown")
            .count(),
        1
    );
    // Every event once: none was acknowledged and sent again.
    let mut ids: Vec<&str> = got.iter().map(|(_, b)| b["id"].as_str().unwrap()).collect();
    let n = ids.len();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), n, "an event id delivered twice");
    // Per receiver, in event time order.
    let times: Vec<i64> = deleted
        .iter()
        .map(|d| d["data"]["end_ms"].as_i64().unwrap())
        .collect();
    let mut sorted = times.clone();
    sorted.sort();
    assert_eq!(times, sorted);
    kill(&mut child, "-TERM");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Runs a scripts/lib.sh function (the test PostgreSQL clusters).
fn lib_sh(call: &str) {
    let root = env!("CARGO_MANIFEST_DIR");
    let out = Command::new("bash")
        .arg("-c")
        .arg(format!(". {root}/scripts/lib.sh; {call}"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{call}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_outage_during_fifty_allocations_loses_no_record() {
    // A cluster of its own, so stopping it leaves the other tests' alone.
    if crate::test_pg().is_none() {
        return;
    }
    let dir = format!("/tmp/turnpike-usage-pg-{}", std::process::id());
    let port = 55_000 + (std::process::id() % 400) as u16;
    lib_sh(&format!("start_test_postgres {dir} {port}"));
    let _cluster = Cluster(dir.clone());
    let url = format!("postgres://turnpike:turnpike@127.0.0.1:{port}/turnpike");
    let spill = temp_dir("pg-outage");
    let (server, udp, admin) = crate::admin::server(|c| {
        c.db = url.clone();
        c.usage_spill_file = spill.join("usage.spill");
    })
    .await;
    let churn = |n: usize| async move {
        for _ in 0..n {
            let mut c = TurnClient::connect(udp).await;
            c.allocate(None).await.expect("allocates without the store");
            c.refresh(0).await.unwrap();
        }
    };
    churn(5).await;
    final_records(admin, USER, 5).await;
    lib_sh(&format!("stop_test_postgres {dir}"));
    let began = Instant::now();
    churn(50).await;
    let left = Duration::from_secs(10).saturating_sub(began.elapsed());
    tokio::time::sleep(left).await;
    lib_sh(&format!("resume_test_postgres {dir} {port}"));
    let all = final_records(admin, USER, 55).await;
    assert_eq!(all.len(), 55, "every record, none twice");
    server.stop().await;
}

/// Stops and removes a test cluster when the test ends, passed or not.
struct Cluster(String);

impl Drop for Cluster {
    fn drop(&mut self) {
        let dir = &self.0;
        lib_sh(&format!("stop_test_postgres {dir}; rm -rf {dir}"));
    }
}
