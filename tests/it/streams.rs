//! TCP and TLS connections after their first message: read deadlines,
//! closing with the allocation, the per-IP share of connections without an
//! allocation, and output backpressure for clients that do not read.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use turnpike::Transport;

use crate::secure::{tls_connect, tls_turn};
use crate::turn_client::{read_stun, TurnClient};
use crate::{start_turn, USER};

/// A Binding request with transaction id `n`.
fn binding(n: u32) -> [u8; 20] {
    let mut m = [0u8; 20];
    m[..8].copy_from_slice(&[0x00, 0x01, 0x00, 0x00, 0x21, 0x12, 0xa4, 0x42]);
    m[8..12].copy_from_slice(&n.to_be_bytes());
    m
}

/// Reads until the server closes the stream; how long that took from
/// `start`. Panics if it is still open after `limit`.
async fn closed_after(
    s: &mut (impl AsyncRead + Unpin + ?Sized),
    start: Instant,
    limit: Duration,
) -> Duration {
    let mut buf = [0u8; 512];
    loop {
        match tokio::time::timeout_at((start + limit).into(), s.read(&mut buf)).await {
            Err(_) => panic!("still open after {limit:?}"),
            Ok(Ok(0)) | Ok(Err(_)) => return start.elapsed(),
            Ok(Ok(_)) => {}
        }
    }
}

/// Sends one Binding, reads its answer, then stalls (silent, or after half
/// a STUN header); returns how long after the answer the server closed.
async fn stall_after_binding(mut s: impl AsyncRead + AsyncWrite + Unpin, half: bool) -> Duration {
    s.write_all(&binding(1)).await.unwrap();
    let answer = tokio::time::timeout(Duration::from_secs(2), read_stun(&mut s))
        .await
        .expect("a Binding answer")
        .expect("open");
    assert_eq!(&answer[..2], &[0x01, 0x01], "Binding success");
    let start = Instant::now();
    if half {
        s.write_all(&binding(2)[..10]).await.unwrap();
        s.flush().await.unwrap();
    }
    closed_after(&mut s, start, Duration::from_secs(5)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_and_tls_connections_that_stall_after_one_binding_close_at_the_handshake_timeout() {
    let (server, _dir) = tls_turn(|c| c.handshake_timeout = Duration::from_secs(1)).await;
    let tcp = server.addrs(Transport::Tcp)[0];
    let tls = server.addrs(Transport::Tls)[0];
    let mut waits = Vec::new();
    for half in [false, true] {
        let plain = TcpStream::connect(tcp).await.unwrap();
        waits.push(tokio::spawn(stall_after_binding(plain, half)));
        let secure = tls_connect(tls, &[]).await;
        waits.push(tokio::spawn(stall_after_binding(secure, half)));
    }
    for w in waits {
        let took = w.await.unwrap();
        assert!(
            took >= Duration::from_millis(800) && took <= Duration::from_secs(2),
            "closed {took:?} after the last message, want the 1 s timeout"
        );
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(server.stream_connections(), 0);
    server.stop().await;
}

async fn tcp_client(addr: SocketAddr) -> TurnClient {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let local = tcp.local_addr().unwrap();
    TurnClient::over_stream(tcp, local)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_allocated_tcp_connection_outlives_the_handshake_timeout_and_closes_with_refresh_zero() {
    let server = start_turn(|c| c.handshake_timeout = Duration::from_secs(1)).await;
    let addr = server.addrs(Transport::Tcp)[0];
    let mut c = tcp_client(addr).await;
    c.allocate(None).await.unwrap();
    // Silent for longer than handshake_timeout, twice: the allocation's
    // lifetime bounds the wait now.
    for _ in 0..2 {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        c.refresh(600).await.expect("still open and allocated");
    }
    c.refresh(0).await.expect("the deletion is answered");
    let start = Instant::now();
    let mut s = c.into_stream();
    closed_after(&mut *s, start, Duration::from_secs(1)).await;
    assert_eq!(server.allocations(), 0);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tcp_connection_closes_when_its_allocation_expires_or_is_killed() {
    let (server, _, admin) = crate::admin::server(|c| {
        c.handshake_timeout = Duration::from_secs(1);
        // Below what validation allows: the allocation lasts 3 s.
        c.max_allocate_lifetime = Duration::from_secs(3);
    })
    .await;
    let addr = server.addrs(Transport::Tcp)[0];

    let mut expiring = tcp_client(addr).await;
    expiring.allocate(None).await.unwrap();
    let start = Instant::now();
    let mut killed = tcp_client(addr).await;
    killed.allocate(None).await.unwrap();
    let client = killed.local_addr().to_string();

    // The admin API lists the session within a second, then ends it.
    let token = crate::admin::token("admin");
    let id = loop {
        let (code, body) =
            crate::admin::http(admin, "GET", "/api/v1/sessions", Some(&token), None).await;
        assert_eq!(code, 200, "{body}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        let found = v["sessions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["client"] == client.as_str())
            .map(|s| s["id"].as_str().unwrap().to_string());
        if let Some(id) = found {
            break id;
        }
        assert!(start.elapsed() < Duration::from_secs(2), "session listed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let path = format!("/api/v1/sessions/{id}");
    let (code, _) = crate::admin::http(admin, "DELETE", &path, Some(&token), None).await;
    assert_eq!(code, 204);
    let killed_at = Instant::now();
    let mut s = killed.into_stream();
    closed_after(&mut *s, killed_at, Duration::from_secs(1)).await;

    let mut s = expiring.into_stream();
    let took = closed_after(&mut *s, start, Duration::from_secs(5)).await;
    assert!(
        took >= Duration::from_millis(2700),
        "closed at {took:?}, before the allocation expired"
    );
    assert_eq!(server.allocations(), 0);
    server.stop().await;
}

/// A TCP connection from `ip`.
async fn connect_from(ip: &str, addr: SocketAddr) -> TcpStream {
    let sock = TcpSocket::new_v4().unwrap();
    sock.bind(SocketAddr::new(ip.parse().unwrap(), 0)).unwrap();
    sock.connect(addr).await.unwrap()
}

/// Whether the server closed `s` (refused at accept) within 300 ms.
async fn refused(s: &mut TcpStream) -> bool {
    let mut b = [0u8; 1];
    matches!(
        tokio::time::timeout(Duration::from_millis(300), s.read(&mut b)).await,
        Ok(Ok(0)) | Ok(Err(_))
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_without_an_allocation_get_a_quarter_of_max_tcp_per_ip() {
    let server = start_turn(|c| c.max_tcp_per_ip = 8).await;
    let addr = server.addrs(Transport::Tcp)[0];
    let mut idle = Vec::new();
    for _ in 0..2 {
        let mut s = connect_from("127.0.0.1", addr).await;
        assert!(!refused(&mut s).await);
        idle.push(s);
    }
    let mut third = connect_from("127.0.0.1", addr).await;
    assert!(
        refused(&mut third).await,
        "a third idle connection is refused"
    );

    // Another address has its own share and is served.
    let other = connect_from("127.0.0.2", addr).await;
    let local = other.local_addr().unwrap();
    let mut other = TurnClient::over_stream(other, local);
    other
        .allocate(None)
        .await
        .expect("another address allocates");

    // Allocating moves a connection out of the share: six more fit, each
    // allocating, up to the per-IP cap of 8.
    let first = idle.remove(0);
    let local = first.local_addr().unwrap();
    let mut allocated = vec![TurnClient::over_stream(first, local)];
    allocated[0].allocate(None).await.unwrap();
    for _ in 0..6 {
        let s = connect_from("127.0.0.1", addr).await;
        let local = s.local_addr().unwrap();
        let mut c = TurnClient::over_stream(s, local);
        c.allocate(None).await.expect("room once others allocated");
        allocated.push(c);
    }
    let mut ninth = connect_from("127.0.0.1", addr).await;
    assert!(refused(&mut ninth).await, "the per-IP cap still holds");
    assert_eq!(server.stream_connections(), 1 + 7 + 1);
    drop(idle);
    server.stop().await;
}

/// RssAnon of a process, in KiB.
fn rss_anon_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("RssAnon:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("RssAnon in /proc/PID/status")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_reads_grows_the_server_by_less_than_256_kib() {
    // One malloc arena: a background thread's first allocation (store,
    // heartbeat) inside the window would otherwise add an arena of its own
    // to RSS, which has nothing to do with the client.
    let (mut child, lines, _log) = crate::cli::spawn_serve_env(
        &[
            "--listen",
            "127.0.0.1:0",
            "--realm",
            crate::REALM,
            "--user",
            &format!("{USER}:{}", crate::PASSWORD),
            "--workers",
            "1",
        ],
        &[("MALLOC_ARENA_MAX", "1")],
    );
    let addr: SocketAddr = lines
        .iter()
        .find_map(|l| l.split("listening tcp ").nth(1))
        .expect("a tcp listener")
        .trim()
        .parse()
        .unwrap();
    let pid = child.id();
    // Warm up with clients that read: bursts of pipelined requests reach
    // the server's high-water mark for one read's work.
    for _ in 0..4 {
        let mut s = TcpStream::connect(addr).await.unwrap();
        for round in 0..3u32 {
            let burst: Vec<u8> = (0..1000).flat_map(|n| binding(round * 1000 + n)).collect();
            s.write_all(&burst).await.unwrap();
            for _ in 0..1000 {
                read_stun(&mut s).await.unwrap();
            }
        }
    }
    // Past one heartbeat and session publish (every 2 s), so their
    // buffers are in `before` too.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let before = rss_anon_kib(pid);

    // A client with a tiny receive window that sends Binding requests as
    // fast as it can for three seconds and reads nothing.
    let sock = TcpSocket::new_v4().unwrap();
    sock.set_recv_buffer_size(4096).unwrap();
    let mut s = sock.connect(addr).await.unwrap();
    let mut burst = Vec::with_capacity(20 * 1000);
    let mut n = 0u32;
    let mut sent = 0usize;
    let end = Instant::now() + Duration::from_secs(3);
    while Instant::now() < end {
        burst.clear();
        for _ in 0..1000 {
            n += 1;
            burst.extend_from_slice(&binding(n));
        }
        match tokio::time::timeout_at(end.into(), s.write_all(&burst)).await {
            Ok(r) => {
                r.unwrap();
                sent += burst.len();
            }
            Err(_) => break,
        }
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let after = rss_anon_kib(pid);
    crate::cli::sigterm(&child);
    let _ = child.wait();
    eprintln!("RssAnon {before} KiB -> {after} KiB, {sent} bytes sent");
    assert!(
        after < before + 256,
        "RssAnon grew from {before} KiB to {after} KiB ({sent} bytes sent)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_accept_is_logged_once_per_window_not_every_retry() {
    use std::io::BufRead;
    use std::os::unix::process::CommandExt;
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_turnpike"));
    cmd.args([
        "serve",
        "--db",
        &crate::temp_db(),
        "--listen",
        "127.0.0.1:0",
    ])
    .args(["--admin-listen", "127.0.0.1:0", "--workers", "1"])
    .args(["--max-tcp-per-ip", "1000"])
    .stderr(std::process::Stdio::piped());
    // SAFETY: only setrlimit runs between fork and exec. A hard limit of
    // 64 descriptors makes accept fail with EMFILE once clients fill it.
    unsafe {
        cmd.pre_exec(|| {
            let lim = libc::rlimit {
                rlim_cur: 64,
                rlim_max: 64,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn().unwrap();
    let (lines, rx) = std::sync::mpsc::channel();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if lines.send(line).is_err() {
                break;
            }
        }
    });
    // Started once the admin API (the last thing) listens.
    let mut addr = None;
    loop {
        let line = rx.recv_timeout(Duration::from_secs(10)).expect("starts");
        if let Some(a) = line.split("listening tcp ").nth(1) {
            addr = Some(a.trim().parse::<SocketAddr>().unwrap());
        }
        if line.contains("admin api") {
            break;
        }
    }
    let addr = addr.expect("a tcp listener");
    // More connections than the server has descriptors; they stay open.
    let mut conns = Vec::new();
    for _ in 0..100 {
        conns.push(TcpStream::connect(addr).await.unwrap());
    }
    // Accept retries every 50 ms: 2 s would be 40 warnings.
    let end = Instant::now() + Duration::from_secs(2);
    let mut warnings = 0;
    while let Some(left) = end.checked_duration_since(Instant::now()) {
        match rx.recv_timeout(left) {
            Ok(line) if line.contains("accept on") => warnings += 1,
            Ok(_) => {}
            Err(_) => break,
        }
    }
    assert!(
        child.try_wait().unwrap().is_none(),
        "the server keeps running"
    );
    crate::cli::sigterm(&child);
    let _ = child.wait();
    assert_eq!(warnings, 1, "one warning per window");
}
