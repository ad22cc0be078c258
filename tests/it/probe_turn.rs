//! `turnpike probe turn` end to end: against turnpike over UDP, TCP and
//! IPv6 and with REST credentials, against coturn's turnserver, and the one
//! line it prints for each way of failing.

use std::net::{SocketAddr, UdpSocket};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use turnpike::Transport;

use crate::free_port;
use crate::{start_turn, PASSWORD, USER};

fn turnpike() -> Command {
    Command::new(env!("CARGO_BIN_EXE_turnpike"))
}

/// `turnpike probe turn ARGS`, run off the runtime that serves the test
/// server: (exit code, stdout, stderr).
async fn probe(args: &[&str]) -> (i32, String, String) {
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        let out = turnpike()
            .args(["probe", "turn"])
            .args(&args)
            .output()
            .expect("the turnpike binary runs");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    })
    .await
    .unwrap()
}

/// `probe turn ARGS --json`: exit code, the JSON object, stderr.
async fn probe_json(args: &[&str]) -> (i32, Value, String) {
    let mut args = args.to_vec();
    args.push("--json");
    let (code, out, err) = probe(&args).await;
    let v = serde_json::from_str(out.trim())
        .unwrap_or_else(|e| panic!("stdout is not one JSON object ({e}): {out:?}\n{err}"));
    (code, v, err)
}

fn addr(v: &Value, key: &str) -> SocketAddr {
    v[key]
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("{key} is not an address: {v}"))
}

/// The checks every successful JSON report passes.
fn assert_relayed(v: &Value, transport: &str, server: SocketAddr) {
    assert_eq!(v["ok"], true, "{v}");
    assert_eq!(v["transport"], transport, "{v}");
    assert_eq!(addr(v, "server"), server, "{v}");
    assert_eq!(v["sent"], 5, "{v}");
    let received = v["received"].as_u64().unwrap();
    assert!((1..=5).contains(&received), "{v}");
    // The echo peer is on this host; the server saw it on loopback.
    let peer = addr(v, "peer");
    assert_eq!(peer.ip(), server.ip(), "{v}");
    assert_ne!(peer.port(), 0, "{v}");
    let (min, avg, max) = (
        v["rtt_ms"]["min"].as_f64().unwrap(),
        v["rtt_ms"]["avg"].as_f64().unwrap(),
        v["rtt_ms"]["max"].as_f64().unwrap(),
    );
    assert!(
        0.0 <= min && min <= avg && avg <= max && max < 5000.0,
        "{v}"
    );
}

/// The single stderr line of a failed run.
fn one_error_line(err: &str) -> &str {
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 1, "want one line on stderr: {err:?}");
    assert!(lines[0].starts_with("error: "), "{err:?}");
    lines[0]
}

/// Waits until `server` has no allocation left: the probe frees its own.
async fn assert_freed(server: &turnpike::Running) {
    let start = Instant::now();
    while server.allocations() != 0 && start.elapsed() < Duration::from_secs(3) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(server.allocations(), 0, "the probe left its allocation");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probe_turn_relays_through_turnpike_over_udp() {
    let mut range = (0, 0);
    let server = start_turn(|c| {
        c.allow_loopback_peers = true;
        range = (c.min_port, c.max_port);
    })
    .await;
    let udp = server.addrs(Transport::Udp)[0];
    let url = format!("turn:127.0.0.1:{}", udp.port());

    let (code, out, err) = probe(&[&url, "--user", USER, "--password", PASSWORD]).await;
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains(&format!("server:    {udp}\n")), "{out}");
    assert!(out.contains("transport: udp\n"), "{out}");
    assert!(out.contains("realm:     turnpike.test\n"), "{out}");
    assert!(out.contains("relayed:   127.0.0.1:"), "{out}");
    assert!(out.contains("mapped:    127.0.0.1:"), "{out}");
    assert!(out.contains("(as the server saw it in a Binding)"), "{out}");
    assert!(out.contains("/5\nrtt:       min "), "{out}");
    assert_eq!(err, "");
    assert_freed(&server).await;

    let (code, v, err) = probe_json(&[&url, "--user", USER, "--password", PASSWORD]).await;
    assert_eq!(code, 0, "{v}\n{err}");
    assert_relayed(&v, "udp", udp);
    let relayed = addr(&v, "relayed");
    assert_eq!(relayed.ip().to_string(), "127.0.0.1", "{v}");
    assert!(
        (range.0..=range.1).contains(&relayed.port()),
        "relayed port {} outside {range:?}",
        relayed.port()
    );
    assert_ne!(relayed.port(), udp.port());
    // XOR-MAPPED-ADDRESS of the Allocate: the probe's client socket.
    let mapped = addr(&v, "mapped");
    assert_eq!(mapped.ip().to_string(), "127.0.0.1", "{v}");
    assert_ne!(mapped.port(), addr(&v, "peer").port(), "{v}");
    assert_freed(&server).await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probe_turn_relays_through_turnpike_over_tcp() {
    let server = start_turn(|c| c.allow_loopback_peers = true).await;
    let tcp = server.addrs(Transport::Tcp)[0];
    let url = format!("turn:127.0.0.1:{}?transport=tcp", tcp.port());
    let (code, v, err) = probe_json(&[&url, "--user", USER, "--password", PASSWORD]).await;
    assert_eq!(code, 0, "{v}\n{err}");
    assert_relayed(&v, "tcp", tcp);
    assert_eq!(addr(&v, "relayed").ip().to_string(), "127.0.0.1", "{v}");
    assert_freed(&server).await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probe_turn_relays_over_ipv6_with_a_bracketed_literal() {
    let server = start_turn(|c| {
        c.allow_loopback_peers = true;
        c.listen = vec!["[::1]:0".parse().unwrap()];
    })
    .await;
    let udp = server.addrs(Transport::Udp)[0];
    let url = format!("turn:[::1]:{}", udp.port());
    let (code, v, err) = probe_json(&[&url, "--user", USER, "--password", PASSWORD]).await;
    assert_eq!(code, 0, "{v}\n{err}");
    assert_relayed(&v, "udp", udp);
    assert_eq!(addr(&v, "relayed").ip().to_string(), "::1", "{v}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probe_turn_with_rest_credentials_from_a_shared_secret() {
    let server = start_turn(|c| {
        c.allow_loopback_peers = true;
        c.static_auth_secrets = vec![turnpike::auth::rest::Secret(b"rest-secret".to_vec())];
    })
    .await;
    let udp = server.addrs(Transport::Udp)[0];
    let url = format!("turn:127.0.0.1:{}", udp.port());
    let (code, v, err) = probe_json(&[&url, "--user", "alice", "--secret", "rest-secret"]).await;
    assert_eq!(code, 0, "{v}\n{err}");
    assert_relayed(&v, "udp", udp);

    let (code, v, err) = probe_json(&[&url, "--user", "alice", "--secret", "not-it"]).await;
    assert_eq!(code, 1, "{v}\n{err}");
    assert_eq!(v["ok"], false, "{v}");
    let line = one_error_line(&err);
    assert!(line.starts_with("error: Allocate refused: 401 "), "{line}");
    assert!(line.contains("wrong user or secret"), "{line}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probe_turn_with_a_wrong_password_fails_with_401() {
    let server = start_turn(|c| c.allow_loopback_peers = true).await;
    let udp = server.addrs(Transport::Udp)[0];
    let url = format!("turn:127.0.0.1:{}", udp.port());
    let (code, out, err) = probe(&[&url, "--user", USER, "--password", "wrong"]).await;
    assert_eq!(code, 1, "{out}\n{err}");
    assert_eq!(out, "");
    let line = one_error_line(&err);
    assert!(line.starts_with("error: Allocate refused: 401 "), "{line}");
    assert!(line.ends_with("(wrong user or password)"), "{line}");

    let (code, v, err) = probe_json(&[&url, "--user", USER, "--password", "wrong"]).await;
    assert_eq!(code, 1);
    assert_eq!(v["ok"], false, "{v}");
    assert_eq!(
        v["error"].as_str().unwrap(),
        one_error_line(&err).trim_start_matches("error: ")
    );
    assert_eq!(server.allocations(), 0);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probe_turn_names_a_denied_peer_and_a_silent_server() {
    // Loopback peers are denied by default: CreatePermission gets a 403.
    let server = start_turn(|_| {}).await;
    let udp = server.addrs(Transport::Udp)[0];
    let url = format!("turn:127.0.0.1:{}", udp.port());
    let (code, out, err) = probe(&[&url, "--user", USER, "--password", PASSWORD]).await;
    assert_eq!(code, 1, "{out}\n{err}");
    let line = one_error_line(&err);
    assert!(
        line.starts_with("error: CreatePermission refused: 403 "),
        "{line}"
    );
    assert!(
        line.contains("the server denies the peer address 127.0.0.1:"),
        "{line}"
    );
    // The allocation made before the refusal is freed all the same.
    assert_freed(&server).await;
    server.stop().await;

    // A bound socket that never answers.
    let silent = UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    let url = format!("turn:127.0.0.1:{port}");
    let started = Instant::now();
    let (code, out, err) = probe(&[
        &url,
        "--user",
        USER,
        "--password",
        PASSWORD,
        "--timeout",
        "1",
    ])
    .await;
    assert_eq!(code, 1, "{out}\n{err}");
    assert_eq!(
        one_error_line(&err),
        format!("error: no answer from 127.0.0.1:{port} over udp within 1 s")
    );
    assert!(started.elapsed() < Duration::from_secs(5));
    drop(silent);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probe_turn_refuses_a_malformed_url_with_exit_code_2() {
    for url in [
        "xyz",
        "turn:",
        "turn:127.0.0.1:99999",
        "turn:h?transport=sctp",
    ] {
        let (code, out, err) = probe(&[url, "--user", USER, "--password", PASSWORD]).await;
        assert_eq!(code, 2, "{url}: {out}\n{err}");
        assert_eq!(
            one_error_line(&err),
            format!("error: `{url}` is not a turn: URL (turn:HOST[:PORT][?transport=udp|tcp])")
        );
    }
    let (code, _, err) = probe(&["turn:127.0.0.1", "--user", USER]).await;
    assert_eq!(code, 2);
    assert!(one_error_line(&err).contains("--password"), "{err}");
}

/// coturn's turnserver on 127.0.0.1, killed (and its files removed) when
/// the test ends.
struct Coturn {
    child: std::process::Child,
    port: u16,
    dir: std::path::PathBuf,
}

impl Drop for Coturn {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Coturn {
    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("turn.log")).unwrap_or_default()
    }
}

/// Answers a STUN Binding request over UDP: the server is up.
fn answers_binding(port: u16) -> bool {
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let mut req = [0u8; 20];
    req[1] = 0x01;
    req[4..8].copy_from_slice(&0x2112_A442u32.to_be_bytes());
    req[8..20].copy_from_slice(b"probe-ready!");
    let _ = sock.send_to(&req, ("127.0.0.1", port));
    let mut buf = [0u8; 512];
    matches!(sock.recv(&mut buf), Ok(n) if n >= 20 && buf[8..20] == req[8..20])
}

fn start_coturn() -> Coturn {
    let port = free_port();
    let dir = std::env::temp_dir().join(format!(
        "turnpike-probe-coturn-{}-{port}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let log = std::fs::File::create(dir.join("turn.log")).unwrap();
    let child = Command::new("turnserver")
        .args([
            "-n",
            "--listening-ip",
            "127.0.0.1",
            "--relay-ip",
            "127.0.0.1",
        ])
        .args(["--listening-port", &port.to_string()])
        .args(["--min-port", "60000", "--max-port", "60999"])
        .args(["--no-tls", "--no-dtls", "--no-cli", "--lt-cred-mech"])
        .args([
            "--user",
            &format!("{USER}:{PASSWORD}"),
            "--realm",
            "turnpike.test",
        ])
        .args([
            "--allow-loopback-peers",
            "--log-file",
            "stdout",
            "--simple-log",
        ])
        .arg("--db")
        .arg(dir.join("turndb"))
        .arg("--pidfile")
        .arg(dir.join("turn.pid"))
        .stdout(Stdio::from(log))
        .stderr(Stdio::null())
        .spawn()
        .expect("turnserver is installed (scripts/test.sh)");
    let coturn = Coturn { child, port, dir };
    let start = Instant::now();
    while !answers_binding(port) {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "turnserver did not come up:\n{}",
            coturn.log()
        );
    }
    coturn
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probe_turn_relays_through_coturn_and_names_its_401() {
    let coturn = tokio::task::spawn_blocking(start_coturn).await.unwrap();
    let server: SocketAddr = ([127, 0, 0, 1], coturn.port).into();
    for transport in ["udp", "tcp"] {
        let url = format!("turn:127.0.0.1:{}?transport={transport}", coturn.port);
        let (code, v, err) = probe_json(&[&url, "--user", USER, "--password", PASSWORD]).await;
        assert_eq!(code, 0, "{v}\n{err}\n{}", coturn.log());
        assert_relayed(&v, transport, server);
        let relayed = addr(&v, "relayed");
        assert_eq!(relayed.ip().to_string(), "127.0.0.1", "{v}");
        assert!((60000..=60999).contains(&relayed.port()), "{v}");
        assert_eq!(addr(&v, "mapped").ip().to_string(), "127.0.0.1", "{v}");
    }

    let url = format!("turn:127.0.0.1:{}", coturn.port);
    let (code, out, err) = probe(&[&url, "--user", USER, "--password", "wrong"]).await;
    assert_eq!(code, 1, "{out}\n{err}");
    let line = one_error_line(&err);
    assert!(line.starts_with("error: Allocate refused: 401 "), "{line}");
    assert!(line.ends_with("(wrong user or password)"), "{line}");
    drop(coturn);
}
