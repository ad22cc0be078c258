//! The fleet lab (issue 15): three turnpike processes, each in its own
//! network namespace with its own address (tests/netns/fleet_setup.sh),
//! sharing the test PostgreSQL cluster, which they reach over a bridge at
//! 10.88.0.1. Clients run in the root namespace. The lab tears itself
//! down when dropped, even after a failed assertion.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use turnpike::turn_client::ClientError;

use crate::admin::http;
use crate::turn_client::TurnClient;

/// The secret every node's admin API token is checked with (a file, 0600).
const JWT_SECRET: &str = "fleet-lab-admin-secret-0123456789abcdef";
pub(crate) const ROOT_IP: &str = "10.88.0.1";

/// A node's address: A is 10.88.0.11, B .12, C .13.
pub(crate) fn ip_of(node: char) -> String {
    format!("10.88.0.{}", 11 + (node as u8 - b'a'))
}

/// Its TURN listener (UDP and TCP).
pub(crate) fn turn_addr(node: char) -> SocketAddr {
    format!("{}:3478", ip_of(node)).parse().unwrap()
}

/// Its admin API.
pub(crate) fn admin_addr(node: char) -> SocketAddr {
    format!("{}:8080", ip_of(node)).parse().unwrap()
}

/// Its node name in the registry.
pub(crate) fn name_of(node: char) -> String {
    format!("node-{node}")
}

pub(crate) struct Lab {
    /// One lab at a time: they use the same namespace names.
    _one: tokio::sync::MutexGuard<'static, ()>,
    pub(crate) db: String,
    dir: PathBuf,
    children: Vec<(char, std::process::Child)>,
}

fn script(args: &[&str]) -> bool {
    Command::new("sh")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/netns/fleet_setup.sh"
        ))
        .args(args)
        .status()
        .is_ok_and(|s| s.success())
}

impl Lab {
    /// Makes the namespaces and a fresh database `db_name`; None when the
    /// test cluster is absent (outside scripts/test.sh; CI fails instead).
    pub(crate) async fn up(db_name: &str) -> Option<Lab> {
        static ONE: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
        let url = crate::fresh_pg(db_name).await?;
        let one = ONE.lock().await;
        // The nodes reach the cluster over the bridge, not loopback.
        let db = url.replace("@127.0.0.1:", &format!("@{ROOT_IP}:"));
        assert!(
            script(&["up"]),
            "fleet_setup.sh up failed (root, iproute2 and nftables needed)"
        );
        let dir = std::env::temp_dir().join(format!("turnpike-lab-{db_name}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let secret = dir.join("admin.secret");
        std::fs::write(&secret, JWT_SECRET).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
        Some(Lab {
            _one: one,
            db,
            dir,
            children: Vec::new(),
        })
    }

    /// Writes `content` to a 0600 file in the lab's directory; its path.
    pub(crate) fn secret_file(&self, name: &str, content: &str) -> String {
        use std::os::unix::fs::PermissionsExt;
        let path = self.dir.join(name);
        std::fs::write(&path, content).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        path.display().to_string()
    }

    /// Starts `node` in `region` with `extra` config lines (TOML) and
    /// waits for its admin API.
    pub(crate) async fn start(&mut self, node: char, region: &str, extra: &str) {
        let ip = ip_of(node);
        let config = self.dir.join(format!("{node}.toml"));
        std::fs::write(
            &config,
            format!(
                "listen = [\"{ip}:3478\"]\n\
                 workers = 1\n\
                 db = \"{db}\"\n\
                 node_name = \"{name}\"\n\
                 region = \"{region}\"\n\
                 admin_listen = \"{ip}:8080\"\n\
                 admin_jwt_secret_file = \"{secret}\"\n\
                 realm = \"{realm}\"\n\
                 allowed_peer_ip = [\"10.88.0.0/24\"]\n\
                 min_port = 40000\n\
                 max_port = 40999\n\
                 {extra}\n",
                db = self.db,
                name = name_of(node),
                secret = self.dir.join("admin.secret").display(),
                realm = crate::REALM,
            ),
        )
        .unwrap();
        let child = Command::new("ip")
            .args(["netns", "exec", &format!("tpf{node}")])
            .arg(env!("CARGO_BIN_EXE_turnpike"))
            .args(["serve", "--config"])
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(self.dir.join(format!("{node}.log"))).unwrap())
            .spawn()
            .unwrap();
        self.children.push((node, child));
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(Ok(_)) = tokio::time::timeout(
                Duration::from_secs(1),
                tokio::net::TcpStream::connect(admin_addr(node)),
            )
            .await
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "node {node} did not start:\n{}",
                self.log(node)
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// What `node` has logged so far.
    pub(crate) fn log(&self, node: char) -> String {
        std::fs::read_to_string(self.dir.join(format!("{node}.log"))).unwrap_or_default()
    }

    /// One admin API call to `node` with an admin token.
    pub(crate) async fn api(
        &self,
        node: char,
        method: &str,
        path: &str,
        body: Option<&str>,
    ) -> (u16, serde_json::Value) {
        let token = admin_token();
        let (status, text) = tokio::time::timeout(
            Duration::from_secs(15),
            http(admin_addr(node), method, path, Some(&token), body),
        )
        .await
        .unwrap_or_else(|_| panic!("{method} {path} on {node}: no answer in 15 s"));
        let v = serde_json::from_str(&text).unwrap_or(serde_json::Value::Null);
        (status, v)
    }

    /// The registry as `node` sees it: name -> state.
    pub(crate) async fn states(&self, node: char) -> Vec<(String, String)> {
        let (status, v) = self.api(node, "GET", "/api/v1/nodes", None).await;
        assert_eq!(status, 200, "{v}");
        let mut out: Vec<(String, String)> = v["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| {
                (
                    n["name"].as_str().unwrap().to_string(),
                    n["state"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        out.sort();
        out
    }

    /// Cuts `node` off from PostgreSQL (nftables drop in its namespace).
    pub(crate) fn cut(&self, node: char) {
        assert!(script(&["cut", &node.to_string()]));
    }

    pub(crate) fn heal(&self, node: char) {
        assert!(script(&["heal", &node.to_string()]));
    }

    /// Sends `signal` to `node`'s turnpike (the child is `ip netns exec`,
    /// which execs turnpike, so the pid is turnpike's).
    pub(crate) fn signal(&self, node: char, signal: &str) {
        let (_, child) = self
            .children
            .iter()
            .rev()
            .find(|(n, _)| *n == node)
            .unwrap();
        let ok = Command::new("kill")
            .args([&format!("-{signal}"), &child.id().to_string()])
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "kill -{signal} {node}");
    }

    /// Waits up to `within` for `node`'s process to exit; its status code.
    pub(crate) async fn exited(&mut self, node: char, within: Duration) -> Option<i32> {
        let deadline = Instant::now() + within;
        loop {
            let (_, child) = self
                .children
                .iter_mut()
                .rev()
                .find(|(n, _)| *n == node)
                .unwrap();
            if let Some(status) = child.try_wait().unwrap() {
                return Some(status.code().unwrap_or(-1));
            }
            if Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for (_, c) in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        script(&["down"]);
    }
}

/// One HTTP/1.1 exchange that may fail (a node restarting): the status and
/// body, or None.
pub(crate) async fn try_http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: &str,
) -> Option<(u16, String)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let exchange = async {
        let mut s = tokio::net::TcpStream::connect(addr).await.ok()?;
        let req = format!(
            "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\
             Authorization: Bearer {}\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\n\r\n{body}",
            admin_token(),
            body.len()
        );
        s.write_all(req.as_bytes()).await.ok()?;
        let mut out = Vec::new();
        s.read_to_end(&mut out).await.ok()?;
        let text = String::from_utf8_lossy(&out).to_string();
        let status = text.get(9..12)?.parse().ok()?;
        let body = text.split_once("\r\n\r\n")?.1.to_string();
        Some((status, body))
    };
    tokio::time::timeout(Duration::from_secs(5), exchange)
        .await
        .ok()
        .flatten()
}

/// An admin token every lab node accepts.
pub(crate) fn admin_token() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    turnpike::admin::token::mint(JWT_SECRET.as_bytes(), "lab", "admin", now, 600).unwrap()
}

/// Polls `check` every 100 ms until it holds or `within` passes; the time
/// it took.
pub(crate) async fn within<F, Fut>(within: Duration, mut check: F) -> Option<Duration>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    loop {
        if check().await {
            return Some(start.elapsed());
        }
        if start.elapsed() >= within {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// What one Allocate came to (fields shown through Debug in failures).
#[derive(Debug)]
#[allow(dead_code)]
pub(crate) enum Outcome {
    /// The relayed address.
    Allocated(SocketAddr),
    /// 300 Try Alternate with this ALTERNATE-SERVER.
    Alternate(SocketAddr),
    /// Any other error: code and reason.
    Refused(u16, String),
    /// No answer in time.
    Silent,
}

/// A client in the root namespace that reports an Allocate as a browser
/// sees it (a 300 and its ALTERNATE-SERVER), for the drain tests: the
/// shared client (`crate::turn_client`), its verdicts as [`Outcome`]s.
pub(crate) struct LabClient {
    server: SocketAddr,
    turn: TurnClient,
}

impl LabClient {
    pub(crate) async fn new(server: SocketAddr, user: &str, password: &str) -> LabClient {
        let local = format!("{ROOT_IP}:0");
        LabClient {
            server,
            turn: TurnClient::connect_with(server, &local, user, password).await,
        }
    }

    /// Allocates a UDP relay.
    pub(crate) async fn allocate(&mut self) -> Outcome {
        match self.turn.try_allocate().await {
            Ok(relayed) => Outcome::Allocated(relayed),
            Err(ClientError::Refused {
                code: 300,
                alternate,
                ..
            }) => match alternate {
                Some(a) => Outcome::Alternate(a.addr),
                None => Outcome::Refused(300, "300 without ALTERNATE-SERVER".into()),
            },
            Err(ClientError::Refused { code, reason, .. }) => Outcome::Refused(code, reason),
            Err(ClientError::NoAnswer) => Outcome::Silent,
            Err(e) => panic!("no usable answer from {}: {e}", self.server),
        }
    }

    /// Refresh with `lifetime` (0 deletes); the error code if refused, 0
    /// if nothing usable came back.
    pub(crate) async fn refresh(&mut self, lifetime: u32) -> Result<(), u16> {
        self.turn
            .try_refresh(lifetime)
            .await
            .map_err(|e| e.code().unwrap_or(0))
    }
}
