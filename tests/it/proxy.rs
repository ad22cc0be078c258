//! PROXY protocol (issue 19) behind Debian's HAProxy, started here on
//! loopback in `mode tcp` with `send-proxy-v2` or `send-proxy` (v1), in
//! front of the server's TCP listener and its TLS listener (the server
//! terminates TLS; HAProxy only forwards bytes): the client's own address
//! is its XOR-MAPPED-ADDRESS, turnutils_uclient relays through it, and the
//! per-source caps count the real client. Headers from untrusted sources,
//! and trusted connections without one, are closed unanswered.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use turnpike::turn::policy::IpRange;
use turnpike::{Running, Transport};

use crate::client_lists::{binding, mapped};
use crate::coturn::{turnutils_peer, uclient_relays_all, Child};
use crate::free_port;
use crate::secure::{tls_over, tls_turn};
use crate::turn_client::{read_stun, TurnClient};
use crate::{PASSWORD, USER};

/// One HAProxy process with a TCP and a TLS frontend, killed on drop.
struct Haproxy {
    _child: Child,
    dir: PathBuf,
    /// Forwards to the server's TCP listener.
    tcp: SocketAddr,
    /// Forwards to the server's TLS listener.
    tls: SocketAddr,
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Haproxy {
    /// HAProxy on two free loopback ports, `send` ("send-proxy-v2" or
    /// "send-proxy") toward the server's TCP and TLS listeners.
    fn start(send: &str, server: &Running) -> Haproxy {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "turnpike-haproxy-{}-{}",
            std::process::id(),
            N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let tcp: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let tls: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let cfg = format!(
            "global\n    maxconn 1000\n\
             defaults\n    mode tcp\n    timeout connect 5s\n    timeout client 120s\n    timeout server 120s\n\
             frontend turn_tcp\n    bind {tcp}\n    default_backend turnpike_tcp\n\
             backend turnpike_tcp\n    server s1 {} {send}\n\
             frontend turn_tls\n    bind {tls}\n    default_backend turnpike_tls\n\
             backend turnpike_tls\n    server s1 {} {send}\n",
            server.addrs(Transport::Tcp)[0],
            server.addrs(Transport::Tls)[0],
        );
        let path = dir.join("haproxy.cfg");
        std::fs::write(&path, cfg).unwrap();
        let log = std::fs::File::create(dir.join("haproxy.log")).unwrap();
        // -db: stay in the foreground, so killing the child ends it.
        let child = Command::new("haproxy")
            .arg("-db")
            .arg("-f")
            .arg(&path)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("haproxy is installed (scripts/test.sh)");
        let mut child = Child(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        for addr in [tcp, tls] {
            // A probe that connects and closes: the server reads its
            // header, then the end of the stream.
            while std::net::TcpStream::connect(addr).is_err() {
                if let Ok(Some(status)) = child.0.try_wait() {
                    let log = std::fs::read_to_string(dir.join("haproxy.log")).unwrap_or_default();
                    panic!("haproxy exited ({status}): {log}");
                }
                assert!(
                    Instant::now() < deadline,
                    "haproxy did not listen on {addr}"
                );
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        Haproxy {
            _child: child,
            dir,
            tcp,
            tls,
        }
    }
}

/// A TURN server with TCP and TLS listeners that trusts PROXY headers
/// from 127.0.0.1 (where HAProxy connects from).
async fn proxied_server(adjust: impl FnOnce(&mut turnpike::Config)) -> (Running, PathBuf) {
    tls_turn(|c| {
        c.proxy_protocol_from = vec![IpRange::parse("127.0.0.1/32").unwrap()];
        adjust(c);
    })
    .await
}

/// A TCP connection from `local` (an address of 127/8) to `to`.
async fn connect_from(local: &str, to: SocketAddr) -> TcpStream {
    let sock = TcpSocket::new_v4().unwrap();
    sock.bind(format!("{local}:0").parse().unwrap()).unwrap();
    sock.connect(to).await.unwrap()
}

/// Sends a Binding (after `prefix`) and returns its XOR-MAPPED-ADDRESS,
/// or None when the server closed the stream without a byte.
async fn binding_over(
    s: &mut (impl AsyncRead + AsyncWrite + Unpin),
    prefix: &[u8],
) -> Option<SocketAddr> {
    let mut out = prefix.to_vec();
    out.extend_from_slice(&binding());
    // The server may have closed already: the write may fail.
    let _ = s.write_all(&out).await;
    let _ = s.flush().await;
    match tokio::time::timeout(Duration::from_secs(5), read_stun(s)).await {
        Ok(Some(answer)) => Some(mapped(&answer)),
        Ok(None) => None,
        Err(_) => panic!("neither answered nor closed within 5 s"),
    }
}

async fn mapped_address_is_the_real_client(send: &str) {
    let (server, _dir) = proxied_server(|_| {}).await;
    let proxy = Haproxy::start(send, &server);
    let mut tcp = connect_from("127.0.0.5", proxy.tcp).await;
    let own = tcp.local_addr().unwrap();
    assert_eq!(
        binding_over(&mut tcp, &[]).await,
        Some(own),
        "{send} over TCP"
    );
    let tcp = connect_from("127.0.0.5", proxy.tls).await;
    let own = tcp.local_addr().unwrap();
    let mut tls = tls_over(tcp, &[]).await;
    assert_eq!(
        binding_over(&mut tls, &[]).await,
        Some(own),
        "{send} over TLS"
    );
    drop(proxy);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_haproxy_send_proxy_v2_the_client_is_mapped_to_its_own_address() {
    mapped_address_is_the_real_client("send-proxy-v2").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_haproxy_send_proxy_v1_the_client_is_mapped_to_its_own_address() {
    mapped_address_is_the_real_client("send-proxy").await;
}

async fn uclient_through_haproxy(send: &str) {
    let (server, _dir) = proxied_server(|_| {}).await;
    let proxy = Haproxy::start(send, &server);
    let (_peer, peer_port) = turnutils_peer();
    let creds = ["-u", USER, "-w", PASSWORD];
    let tcp = [&creds[..], &["-t"]].concat();
    uclient_relays_all(proxy.tcp.port(), "127.0.0.1", peer_port, &tcp, 20).await;
    let tls = [&creds[..], &["-t", "-S"]].concat();
    uclient_relays_all(proxy.tls.port(), "127.0.0.1", peer_port, &tls, 20).await;
    drop(proxy);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uclient_relays_through_haproxy_send_proxy_v2_over_tcp_and_tls_zero_loss() {
    uclient_through_haproxy("send-proxy-v2").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uclient_relays_through_haproxy_send_proxy_v1_over_tcp_and_tls_zero_loss() {
    uclient_through_haproxy("send-proxy").await;
}

/// With two connections per source, two allocating clients at 127.0.0.5
/// behind HAProxy fill 127.0.0.5's share; a third from there is closed,
/// while one at 127.0.0.6 behind the same HAProxy is served. (Counted by
/// the proxy's address, 127.0.0.6 would be refused too.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_source_caps_count_the_real_client_behind_haproxy() {
    let (server, _dir) = proxied_server(|c| c.max_tcp_per_ip = 2).await;
    let proxy = Haproxy::start("send-proxy-v2", &server);
    let mut held = Vec::new();
    for _ in 0..2 {
        let s = connect_from("127.0.0.5", proxy.tcp).await;
        let local = s.local_addr().unwrap();
        let mut c = TurnClient::over_stream(s, local);
        c.allocate(None).await.expect("an allocation at 127.0.0.5");
        held.push(c);
    }
    let mut third = connect_from("127.0.0.5", proxy.tcp).await;
    assert_eq!(
        binding_over(&mut third, &[]).await,
        None,
        "127.0.0.5 is at its cap"
    );
    let mut other = connect_from("127.0.0.6", proxy.tcp).await;
    let own = other.local_addr().unwrap();
    assert_eq!(
        binding_over(&mut other, &[]).await,
        Some(own),
        "127.0.0.6 has its own share"
    );
    // Freeing one of 127.0.0.5's slots lets it in again.
    drop(held.pop());
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let mut again = connect_from("127.0.0.5", proxy.tcp).await;
        if binding_over(&mut again, &[]).await.is_some() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "127.0.0.5 still refused after a close"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(proxy);
    server.stop().await;
}

fn v2_header(client: SocketAddr, server: SocketAddr, local: bool) -> Vec<u8> {
    let mut h = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    let (SocketAddr::V4(c), SocketAddr::V4(s)) = (client, server) else {
        unreachable!("IPv4 here")
    };
    h.push(if local { 0x20 } else { 0x21 });
    h.push(0x11);
    h.extend_from_slice(&12u16.to_be_bytes());
    h.extend_from_slice(&c.ip().octets());
    h.extend_from_slice(&s.ip().octets());
    h.extend_from_slice(&c.port().to_be_bytes());
    h.extend_from_slice(&s.port().to_be_bytes());
    h
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_header_from_an_untrusted_source_is_refused_and_a_trusted_one_must_send_one() {
    let (server, _dir) = proxied_server(|_| {}).await;
    let claimed: SocketAddr = "192.0.2.9:4242".parse().unwrap();
    let v1 = format!(
        "PROXY TCP4 {} 127.0.0.1 {} 3478\r\n",
        claimed.ip(),
        claimed.port()
    );
    for transport in [Transport::Tcp, Transport::Tls] {
        let to = server.addrs(transport)[0];
        let v2 = v2_header(claimed, to, false);
        // 127.0.0.5 is no trusted proxy: its header is not STUN, and the
        // connection closes unanswered (not at the handshake deadline).
        for header in [v1.as_bytes(), &v2[..]] {
            let mut s = connect_from("127.0.0.5", to).await;
            let start = Instant::now();
            assert_eq!(
                binding_over(&mut s, header).await,
                None,
                "{transport} untrusted"
            );
            assert!(start.elapsed() < Duration::from_secs(3), "closed at once");
        }
        // A trusted source without a header: closed at once, unanswered.
        let mut s = connect_from("127.0.0.1", to).await;
        let start = Instant::now();
        assert_eq!(
            binding_over(&mut s, &[]).await,
            None,
            "{transport} trusted, no header"
        );
        assert!(start.elapsed() < Duration::from_secs(3), "closed at once");
        // A trusted source's header names the client, v1 or v2.
        for header in [v1.as_bytes(), &v2[..]] {
            let mut s = connect_from("127.0.0.1", to).await;
            if transport == Transport::Tcp {
                assert_eq!(binding_over(&mut s, header).await, Some(claimed));
            } else {
                s.write_all(header).await.unwrap();
                let mut tls = tls_over(s, &[]).await;
                assert_eq!(binding_over(&mut tls, &[]).await, Some(claimed));
            }
        }
        // LOCAL (a health check) is the proxy's own connection.
        let mut s = connect_from("127.0.0.1", to).await;
        let own = s.local_addr().unwrap();
        let local = v2_header(claimed, to, true);
        if transport == Transport::Tcp {
            assert_eq!(binding_over(&mut s, &local).await, Some(own), "LOCAL");
        } else {
            s.write_all(&local).await.unwrap();
            let mut tls = tls_over(s, &[]).await;
            assert_eq!(binding_over(&mut tls, &[]).await, Some(own), "LOCAL");
        }
    }
    server.stop().await;
}

/// A denied client behind the proxy is closed unanswered; the list judges
/// the address in the header, not the proxy's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_lists_judge_the_client_a_header_names() {
    let (server, _dir) = proxied_server(|c| {
        c.denied_client_ips = vec![IpRange::parse("127.0.0.5").unwrap()];
    })
    .await;
    let proxy = Haproxy::start("send-proxy-v2", &server);
    let mut denied = connect_from("127.0.0.5", proxy.tcp).await;
    assert_eq!(binding_over(&mut denied, &[]).await, None);
    let mut other = connect_from("127.0.0.6", proxy.tcp).await;
    let own = other.local_addr().unwrap();
    assert_eq!(binding_over(&mut other, &[]).await, Some(own));
    drop(proxy);
    server.stop().await;
}

/// One port for TURN and HTTPS behind HAProxy: the ClientHello is peeked
/// after the PROXY header, and the header re-sent to the web backend names
/// the real client, not HAProxy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_haproxy_a_passed_through_web_client_is_named_to_the_backend() {
    use crate::passthrough::{curl, start_nginx, turnpike_before_with};
    let dir = crate::secure::cert_dir();
    let nginx = start_nginx(&dir.join("nginx"));
    let server = turnpike_before_with(nginx.proxied, &dir, true, |c| {
        c.proxy_protocol_from = vec![IpRange::parse("127.0.0.1/32").unwrap()];
    })
    .await;
    let proxy = Haproxy::start("send-proxy-v2", &server);
    let port = proxy.tls.port();
    let (_, body, _) = tokio::task::spawn_blocking(move || {
        curl(
            port,
            "www.backend.test",
            &["--no-alpn", "--http1.1", "--interface", "127.0.0.5"],
        )
    })
    .await
    .unwrap();
    assert_eq!(body, "127.0.0.5");
    drop(proxy);
    server.stop().await;
    let _ = std::fs::remove_dir_all(dir);
}
