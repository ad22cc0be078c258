//! Interop with coturn's client tools (Debian package `coturn`; scripts/test.sh
//! installs it). These tests fail, not skip, when the tools are missing.

use std::net::SocketAddr;
use std::process::Command;

use crate::start_server;

/// Runs turnutils_stunclient under strace so the test knows which local
/// port the client used; returns (reported reflexive address, bound port).
fn stunclient(local_ip: &str, server_ip: &str, port: u16) -> (SocketAddr, u16) {
    let trace = std::env::temp_dir().join(format!(
        "turnpike-stunclient-{}-{port}.trace",
        std::process::id()
    ));
    let out = Command::new("strace")
        .args(["-f", "-e", "trace=getsockname", "-o"])
        .arg(&trace)
        .args([
            "timeout",
            "10",
            "turnutils_stunclient",
            "-L",
            local_ip,
            "-p",
            &port.to_string(),
            server_ip,
        ])
        .output()
        .expect("strace and turnutils_stunclient are installed (scripts/test.sh)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "turnutils_stunclient failed: {stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let reported = stdout
        .lines()
        .find_map(|l| l.split("UDP reflexive addr: ").nth(1))
        .unwrap_or_else(|| panic!("no reflexive address in {stdout:?}"))
        .trim()
        // coturn prints IPv6 without brackets: "::1:58851".
        .rsplit_once(':')
        .map(|(ip, port)| SocketAddr::new(ip.parse().unwrap(), port.parse().unwrap()))
        .unwrap();
    let trace_text = std::fs::read_to_string(&trace).unwrap();
    std::fs::remove_file(&trace).ok();
    let bound = trace_text
        .lines()
        .filter(|l| l.contains("getsockname("))
        .find_map(|l| {
            l.split("sin6_port=htons(")
                .nth(1)
                .or_else(|| l.split("sin_port=htons(").nth(1))
        })
        .and_then(|s| s.split(')').next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no getsockname in {trace_text}"));
    (reported, bound)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn turnutils_stunclient_gets_its_mapped_address_over_udp() {
    let (server, udp, _) = start_server().await;
    let (reported, bound) =
        tokio::task::spawn_blocking(move || stunclient("127.0.0.5", "127.0.0.1", udp.port()))
            .await
            .unwrap();
    assert_eq!(
        reported,
        SocketAddr::new("127.0.0.5".parse().unwrap(), bound)
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn turnutils_stunclient_gets_its_mapped_address_over_ipv6() {
    let config = turnpike::Config {
        listen: vec!["[::1]:0".parse().unwrap()],
        ..Default::default()
    };
    let server = turnpike::serve(config, std::future::pending())
        .await
        .unwrap();
    let port = server.addrs(turnpike::Transport::Udp)[0].port();
    let (reported, bound) = tokio::task::spawn_blocking(move || stunclient("::1", "::1", port))
        .await
        .unwrap();
    assert_eq!(reported, SocketAddr::new("::1".parse().unwrap(), bound));
    server.stop().await;
}
