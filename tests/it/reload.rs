//! Full reload (issue 16): SIGHUP and `POST /api/v1/reload` read the config
//! file again; peer policy, quotas, users and the log level change for new
//! work while allocations keep relaying; keys that need a restart are named
//! and kept; an invalid file changes nothing.

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

use tokio::net::UdpSocket;
use turnpike::Transport;

use crate::secure::relays;
use crate::turn_client::TurnClient;
use crate::{PASSWORD, USER};

fn config_file(name: &str, text: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("turnpike-reload-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join("turnserver.toml");
    std::fs::write(&p, text).unwrap();
    p
}

fn rewrite(p: &Path, text: &str) {
    std::fs::write(p, text).unwrap();
}

/// The server's log lines, read on a thread so that waits can time out.
pub(crate) struct Log(mpsc::Receiver<String>);

impl Log {
    pub(crate) fn follow(reader: impl BufRead + Send + 'static) -> Self {
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in reader.lines() {
                let Ok(line) = line else { return };
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        Log(rx)
    }

    /// Every line until the server closes its log (within 10 s).
    pub(crate) fn rest(&self) -> Vec<String> {
        let mut seen = Vec::new();
        while let Ok(line) = self.0.recv_timeout(Duration::from_secs(10)) {
            seen.push(line);
        }
        seen
    }

    /// The lines up to and including the first that `matches`, within 15 s.
    pub(crate) fn until(&self, matches: impl Fn(&str) -> bool) -> Vec<String> {
        let mut seen = Vec::new();
        loop {
            match self.0.recv_timeout(Duration::from_secs(15)) {
                Ok(line) => {
                    let hit = matches(&line);
                    seen.push(line);
                    if hit {
                        return seen;
                    }
                }
                Err(_) => panic!("no such line within 15 s; saw:\n{}", seen.join("\n")),
            }
        }
    }
}

/// Kills the server when the test ends, passed or not: a leaked server
/// holds the test's stdout open.
struct Server(std::process::Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn hangup(child: &std::process::Child) {
    let ok = std::process::Command::new("kill")
        .args(["-HUP", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(ok.success());
}

const BEFORE: &str = r#"
user = ["tester:s3cret", "other:pw2"]
allow_loopback_peers = true
user_quota = 2
log_level = "info"
min_port = 39000
max_port = 39499
"#;

const AFTER: &str = r#"
user = ["tester:s3cret", "other:pw2"]
allow_loopback_peers = true
user_quota = 1
log_level = "debug"
denied_peer_ip = ["127.0.0.2/32"]
min_port = 39000
max_port = 39499
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_applies_denied_peers_quota_and_log_level_and_refuses_a_bad_file() {
    let file = config_file("sighup", BEFORE);
    let path = file.display().to_string();
    let (child, lines, log) =
        crate::cli::spawn_serve(&["--config", &path, "--listen", "127.0.0.1:0"]);
    let server = Server(child);
    let child = &server.0;
    let addr: std::net::SocketAddr = lines
        .iter()
        .find_map(|l| l.split("listening udp ").nth(1))
        .expect("a udp listener")
        .trim()
        .parse()
        .unwrap();
    let log = Log::follow(log);
    let peer = UdpSocket::bind("127.0.0.1:0").await.unwrap();

    let mut a = TurnClient::connect(addr).await;
    a.allocate(None).await.expect("the first allocation");
    relays(&mut a, &peer).await;
    assert_eq!(
        a.create_permission("127.0.0.2:9".parse().unwrap()).await,
        Ok(()),
        "not denied yet"
    );

    rewrite(&file, AFTER);
    hangup(child);
    let before = log.until(|l| l.contains("SIGHUP"));
    let reloaded = before.last().unwrap();
    assert!(reloaded.contains("configuration reloaded"), "{reloaded}");
    for key in ["denied_peer_ip", "log_level", "user_quota"] {
        assert!(reloaded.contains(key), "{key} applied: {reloaded}");
    }
    assert!(
        !before.iter().any(|l| l.contains("DEBUG")),
        "no debug line at info level: {before:?}"
    );

    assert_eq!(
        a.create_permission("127.0.0.2:9".parse().unwrap()).await,
        Err(403),
        "a new permission to the newly denied range"
    );
    relays(&mut a, &peer).await;
    let mut b = TurnClient::connect(addr).await;
    assert_eq!(b.allocate(None).await, Err(486), "over the new quota of 1");
    let mut c = TurnClient::connect_as(addr, "other", "pw2").await;
    c.allocate(None)
        .await
        .expect("another user still allocates");
    log.until(|l| l.contains("DEBUG") && l.contains("user other"));

    // An unknown key refuses the whole file: the quota of 1 holds.
    rewrite(
        &file,
        &format!(
            "{}\nuser_quota = 5\nno_such_key = 1\n",
            BEFORE.replace("user_quota = 2\n", "")
        ),
    );
    hangup(child);
    let refused = log.until(|l| l.contains("SIGHUP"));
    let refused = refused.last().unwrap();
    assert!(
        refused.contains("reload refused, nothing changed"),
        "{refused}"
    );
    assert!(refused.contains("no_such_key"), "names the key: {refused}");
    let mut d = TurnClient::connect(addr).await;
    assert_eq!(d.allocate(None).await, Err(486), "the old quota holds");
    relays(&mut a, &peer).await;
    crate::cli::sigterm(child);
    drop(server);
    let _ = std::fs::remove_dir_all(file.parent().unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_reload_names_applied_and_restart_keys_and_answers_422_to_a_bad_file() {
    let (server, udp, admin) = crate::admin::server(|c| c.user_quota = 2).await;
    let v1 =
        format!("user = [\"{USER}:{PASSWORD}\"]\nuser_quota = 2\nlisten = [\"127.0.0.1:3478\"]\n");
    let file = config_file("api", &v1);
    let layered = turnpike::config::Options::from_file(&file).unwrap();
    server.reloader().set_source(
        Some(file.clone()),
        turnpike::config::Options::default(),
        layered,
    );
    rewrite(
        &file,
        &format!("user = [\"{USER}:{PASSWORD}\"]\nuser_quota = 1\nlisten = [\"127.0.0.1:4000\"]\nworkers = 3\n"),
    );
    let token = crate::admin::token("admin");
    let (code, body) =
        crate::admin::http(admin, "POST", "/api/v1/reload", Some(&token), None).await;
    assert_eq!(code, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["applied"], serde_json::json!(["user_quota"]), "{body}");
    assert_eq!(
        v["needs_restart"],
        serde_json::json!(["listen", "workers"]),
        "{body}"
    );
    assert_eq!(server.addrs(Transport::Udp)[0], udp, "listeners stay");
    let mut a = TurnClient::connect(udp).await;
    a.allocate(None).await.unwrap();
    let mut b = TurnClient::connect(udp).await;
    assert_eq!(b.allocate(None).await, Err(486), "the new quota holds");

    rewrite(&file, "user_quota = \"many\"\n");
    let (code, body) =
        crate::admin::http(admin, "POST", "/api/v1/reload", Some(&token), None).await;
    assert_eq!(code, 422, "{body}");
    assert!(body.contains("user_quota"), "names the key: {body}");
    drop(b);
    let mut c = TurnClient::connect(udp).await;
    assert_eq!(c.allocate(None).await, Err(486), "nothing changed");
    server.stop().await;
    let _ = std::fs::remove_dir_all(file.parent().unwrap());
}
