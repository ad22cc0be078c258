//! Memory of the real binary under floods a credential holder can send:
//! what the server keeps must not grow with the number of requests.

use std::net::SocketAddr;

use crate::cli::{sigterm, spawn_serve};
use crate::turn_client::TurnClient;
use crate::{PASSWORD, REALM, USER};

/// Resident memory of a process, in KiB.
pub fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("VmRSS")
}

/// F2: every Refresh used to push a timer entry that lived up to an hour
/// (600k Refreshes grew the heap 36 MiB).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_thousand_refreshes_leave_rss_within_4_mib() {
    let user = format!("{USER}:{PASSWORD}");
    let (mut child, lines, _err) = spawn_serve(&[
        "--listen",
        "127.0.0.1:0",
        "--relay-ip",
        "127.0.0.1",
        "--realm",
        REALM,
        "--user",
        &user,
        "--workers",
        "1",
        "--auth-reply-rate",
        "0",
    ]);
    let addr: SocketAddr = lines
        .iter()
        .find(|l| l.contains("listening udp 127.0.0.1:"))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|a| a.parse().ok())
        .expect("udp listener");
    let mut c = TurnClient::connect(addr).await;
    c.allocate(None).await.unwrap();
    // Warm up first: the 16,384-answer retransmission cache fills and
    // stays full, so what grows afterwards is per-Refresh state.
    assert_eq!(c.refresh_flood(20_000, 3600, 32).await, 20_000);
    let before = rss_kib(child.id());
    let ok = c.refresh_flood(200_000, 3600, 32).await;
    let after = rss_kib(child.id());
    eprintln!("RSS {before} KiB before, {after} KiB after 200,000 Refreshes");
    assert!(ok >= 199_000, "{ok} of 200,000 Refreshes answered");
    sigterm(&child);
    let _ = child.wait();
    assert!(
        after <= before + 4096,
        "RSS grew from {before} KiB to {after} KiB"
    );
}
