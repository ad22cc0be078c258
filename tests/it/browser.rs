//! Headless Chromium: two RTCPeerConnections with iceTransportPolicy
//! "relay" talk through turnpike; the page (tests/browser/relay_test.mjs,
//! driven by playwright-core) checks 100 messages each way and that the
//! selected pair is relay/relay.

use std::process::Command;

use crate::{start_turn, PASSWORD, USER};

/// Runs the page against `urls`; returns its one JSON line.
async fn relay_test(urls: String) -> String {
    run_page(format!(
        r#"[{{"urls":["{urls}"],"username":"{USER}","credential":"{PASSWORD}"}}]"#
    ))
    .await
}

/// Runs the page with `servers` (a JSON array of RTCIceServer).
pub(crate) async fn run_page(servers: String) -> String {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/browser");
    let out = tokio::task::spawn_blocking(move || {
        Command::new("node")
            .current_dir(dir)
            .arg("relay_test.mjs")
            .arg(servers)
            .output()
            .expect("node is installed and tests/browser has npm deps (scripts/test.sh)")
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(
        out.status.success(),
        "relay test failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

async fn chromium_relays_over(transport: &str) {
    let server = start_turn(|c| c.allow_loopback_peers = true).await;
    // TCP shares UDP's port only when that port was free for both.
    let listener = match transport {
        "tcp" => turnpike::Transport::Tcp,
        _ => turnpike::Transport::Udp,
    };
    let port = server.addrs(listener)[0].port();
    let url = format!("turn:127.0.0.1:{port}?transport={transport}");
    chromium_relays_through(&url, transport).await;
    server.stop().await;
}

/// Two peer connections limited to relay candidates through `url` carry
/// 100 messages each way, and the relay candidates use `protocol`.
pub(crate) async fn chromium_relays_through(url: &str, protocol: &str) {
    let line = relay_test(url.to_string()).await;
    let transport = protocol;
    assert!(line.contains(r#""ok":true"#), "{line}");
    assert!(
        line.contains(r#""sentA":100,"recvA":100,"sentB":100,"recvB":100"#),
        "{line}"
    );
    assert!(
        line.contains(r#""localType":"relay","remoteType":"relay""#),
        "{line}"
    );
    assert!(
        line.contains(&format!(r#""relayProtocol":"{transport}""#)),
        "{line}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_relay_pair_over_tls() {
    // --ignore-certificate-errors (relay_test.mjs) covers the test certificate.
    let (server, _dir) = crate::secure::tls_turn(|_| {}).await;
    let port = server.addrs(turnpike::Transport::Tls)[0].port();
    chromium_relays_through(&format!("turns:127.0.0.1:{port}?transport=tcp"), "tls").await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_relay_pair_over_udp() {
    chromium_relays_over("udp").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_relay_pair_over_tcp() {
    chromium_relays_over("tcp").await;
}
