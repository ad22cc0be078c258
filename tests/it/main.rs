//! Integration tests, one binary so the suite links once.

mod acme;
mod admin;
mod browser;
mod classic;
mod cli;
mod client_lists;
mod console;
mod console_api;
mod coturn;
mod deploy;
mod differential;
mod docs;
mod drain;
mod dtls;
mod fleet;
mod fleet_hosts;
mod fleet_lab;
mod import_config;
mod import_db;
mod memory;
mod nat;
mod passthrough;
mod policy;
mod probe_turn;
mod props;
mod proxy;
mod realms;
mod reflection;
mod reload;
mod revoke;
mod secrets;
mod secure;
mod select;
mod selftest;
mod streams;
mod tcp_relay;
mod turn_client;
mod usage;
mod usage_api;
mod webrtc;
mod wire;

use std::net::SocketAddr;

use turnpike::{Config, Running, Transport};

/// A server on 127.0.0.1 with an OS-chosen port (UDP and TCP share it).
pub async fn start_server() -> (Running, SocketAddr, SocketAddr) {
    let running = start_server_on("127.0.0.1:0").await;
    let udp = running.addrs(Transport::Udp)[0];
    let tcp = running.addrs(Transport::Tcp)[0];
    (running, udp, tcp)
}

/// A port free for both UDP and TCP on 127.0.0.1 right now.
pub fn free_port() -> u16 {
    loop {
        let tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = tcp.local_addr().unwrap().port();
        if std::net::UdpSocket::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// A fresh SQLite store URL in the temporary directory.
pub fn temp_db() -> String {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let dir = std::env::temp_dir().join(format!(
        "turnpike-it-{}-{}",
        std::process::id(),
        N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    format!("sqlite:{}/store.db", dir.display())
}

/// The test cluster's database URL (`TURNPIKE_TEST_PG`, set by
/// scripts/test.sh); None (skip) outside it, a failure in CI.
pub fn test_pg() -> Option<String> {
    let url = std::env::var("TURNPIKE_TEST_PG")
        .ok()
        .filter(|u| !u.is_empty());
    if url.is_none() {
        assert!(
            std::env::var("CI").is_err(),
            "CI must set TURNPIKE_TEST_PG (scripts/test.sh)"
        );
        eprintln!("TURNPIKE_TEST_PG unset: skipped (scripts/test.sh sets it)");
    }
    url
}

/// A fresh, empty PostgreSQL database named `name` on the test cluster
/// (`TURNPIKE_TEST_PG`, started by scripts/test.sh), dropped first if an
/// earlier run left it; None (skip) outside the test script, a failure in
/// CI. Fleet tests each take their own so their nodes see only each other.
pub async fn fresh_pg(name: &str) -> Option<String> {
    use sqlx::Connection;
    let base = test_pg()?;
    assert!(name.chars().all(|c| c.is_ascii_lowercase() || c == '_'));
    let mut conn = sqlx::PgConnection::connect(&base).await.unwrap();
    sqlx::raw_sql(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .execute(&mut conn)
        .await
        .unwrap();
    sqlx::raw_sql(&format!("CREATE DATABASE {name}"))
        .execute(&mut conn)
        .await
        .unwrap();
    let (prefix, _) = base.rsplit_once('/').unwrap();
    Some(format!("{prefix}/{name}"))
}

/// Where test servers put their admin API: any free loopback port.
pub fn any_admin() -> Option<SocketAddr> {
    Some("127.0.0.1:0".parse().unwrap())
}

/// A server with default settings listening on `listen` only.
pub async fn start_server_on(listen: &str) -> Running {
    let config = Config {
        listen: vec![listen.parse().unwrap()],
        db: temp_db(),
        admin_listen: any_admin(),
        ..Config::default()
    };
    turnpike::serve(config, std::future::pending())
        .await
        .expect("server starts")
}

/// The user every TURN test authenticates as.
pub const USER: &str = "tester";
pub const PASSWORD: &str = "s3cret";
pub const REALM: &str = "turnpike.test";

/// A TURN server on 127.0.0.1 (port 0) relaying on 127.0.0.1 and ::1, with
/// one static user; `adjust` changes the rest.
pub async fn start_turn(adjust: impl FnOnce(&mut Config)) -> Running {
    let mut options = turnpike::config::Options {
        listen: vec!["127.0.0.1:0".into()],
        relay_ip: vec!["127.0.0.1".into(), "::1".into()],
        user: vec![format!("{USER}:{PASSWORD}")],
        realm: Some(REALM.into()),
        workers: Some(2),
        ..Default::default()
    };
    // Each test server gets its own slice of ports, so parallel tests do
    // not fight over relay ports.
    static NEXT: std::sync::atomic::AtomicU16 = std::sync::atomic::AtomicU16::new(0);
    let k = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % 20;
    options.min_port = Some(40000 + 1000 * i64::from(k));
    options.max_port = Some(40999 + 1000 * i64::from(k));
    let mut config = options.resolve().expect("test config");
    config.db = temp_db();
    config.admin_listen = any_admin();
    adjust(&mut config);
    turnpike::serve(config, std::future::pending())
        .await
        .expect("server starts")
}

/// Unix seconds now.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}
