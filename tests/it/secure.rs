//! Issue 6, TLS side: coturn's client over TLS, one port for TLS and plain
//! TCP, ALPN, certificate reload (SIGHUP and the admin API), the handshake
//! timeout and the connection caps.

use std::io::BufRead;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::rustls::{self, pki_types};
use turnpike::{Running, Transport};

use crate::coturn::{turnutils_peer, uclient_relays_all};
use crate::turn_client::TurnClient;
use crate::{start_turn, PASSWORD, USER};

/// A fresh self-signed pair written as PEM into `dir`; returns the leaf DER.
pub(crate) fn write_cert(dir: &Path) -> Vec<u8> {
    std::fs::create_dir_all(dir).unwrap();
    let c =
        rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
    std::fs::write(dir.join("cert.pem"), c.cert.pem()).unwrap();
    std::fs::write(dir.join("key.pem"), c.signing_key.serialize_pem()).unwrap();
    c.cert.der().to_vec()
}

pub(crate) fn cert_dir() -> PathBuf {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    std::env::temp_dir().join(format!(
        "turnpike-tls-{}-{}",
        std::process::id(),
        N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    ))
}

/// A TURN test server with a certificate and one TLS listener.
pub(crate) async fn tls_turn(adjust: impl FnOnce(&mut turnpike::Config)) -> (Running, PathBuf) {
    let dir = cert_dir();
    write_cert(&dir);
    let server = start_turn(|c| {
        c.allow_loopback_peers = true;
        c.tls_listen = vec!["127.0.0.1:0".parse().unwrap()];
        c.cert = Some(dir.join("cert.pem"));
        c.key = Some(dir.join("key.pem"));
        adjust(c);
    })
    .await;
    (server, dir)
}

/// Accepts any server certificate: the tests check which one was sent.
#[derive(Debug)]
struct AnyCert(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AnyCert {
    fn verify_server_cert(
        &self,
        _: &pki_types::CertificateDer<'_>,
        _: &[pki_types::CertificateDer<'_>],
        _: &pki_types::ServerName<'_>,
        _: &[u8],
        _: pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

pub(crate) type Tls = tokio_rustls::client::TlsStream<TcpStream>;

/// A TLS connection offering `alpn`, naming `localhost`.
pub(crate) async fn tls_connect(addr: SocketAddr, alpn: &[&[u8]]) -> Tls {
    tls_connect_sni(addr, alpn, "localhost").await
}

/// A TLS connection offering `alpn`, naming `sni` (SNI).
pub(crate) async fn tls_connect_sni(addr: SocketAddr, alpn: &[&[u8]], sni: &str) -> Tls {
    tls_over_sni(TcpStream::connect(addr).await.unwrap(), alpn, sni).await
}

/// A TLS handshake offering `alpn` over a connected stream.
pub(crate) async fn tls_over(tcp: TcpStream, alpn: &[&[u8]]) -> Tls {
    tls_over_sni(tcp, alpn, "localhost").await
}

/// A TLS handshake offering `alpn` and naming `sni` over a connected stream.
pub(crate) async fn tls_over_sni(tcp: TcpStream, alpn: &[&[u8]], sni: &str) -> Tls {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCert(provider)))
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(sni.to_string().try_into().unwrap(), tcp)
        .await
        .expect("TLS handshake")
}

fn leaf(s: &Tls) -> Vec<u8> {
    s.get_ref().1.peer_certificates().unwrap()[0].to_vec()
}

pub(crate) async fn tls_client(addr: SocketAddr) -> (TurnClient, Vec<u8>) {
    let s = tls_connect(addr, &[]).await;
    let local = s.get_ref().0.local_addr().unwrap();
    let der = leaf(&s);
    (TurnClient::over_stream(s, local), der)
}

async fn uclient_over_tls(mode: &[&str]) {
    let (server, _dir) = tls_turn(|_| {}).await;
    let port = server.addrs(Transport::Tls)[0].port();
    let (_peer, peer_port) = turnutils_peer();
    let mut flags = vec!["-u", USER, "-w", PASSWORD, "-t", "-S"];
    flags.extend_from_slice(mode);
    uclient_relays_all(port, "127.0.0.1", peer_port, &flags, 50).await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uclient_over_tls_with_channels_zero_loss() {
    uclient_over_tls(&[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uclient_over_tls_with_send_indications_zero_loss() {
    uclient_over_tls(&["-s"]).await;
}

/// Five pipelined Bindings are answered in one go; each answer still comes
/// in a TLS record of its own. turnutils_uclient (like other clients built
/// on SSL_read) takes one read as one message: with several in a record it
/// kept the first and lost the rest, which CI saw as relay loss under load.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_tls_each_message_goes_in_its_own_record() {
    use turnpike::stun::{Class, MessageBuilder, MessageType, Method, TransactionId};
    let (server, _dir) = tls_turn(|_| {}).await;
    let addr = server.addrs(Transport::Tls)[0];
    let frames = tokio::task::spawn_blocking(move || {
        use std::io::{Read, Write};
        let mut c = openssl::ssl::SslConnector::builder(openssl::ssl::SslMethod::tls()).unwrap();
        c.set_verify(openssl::ssl::SslVerifyMode::NONE);
        let tcp = std::net::TcpStream::connect(addr).unwrap();
        tcp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut tls = c.build().connect("localhost", tcp).unwrap();
        let mut burst = Vec::new();
        for txid in 1..=5u8 {
            let mut buf = [0u8; 64];
            let b = MessageBuilder::new(
                &mut buf,
                MessageType::new(Method::BINDING, Class::Request),
                TransactionId([txid; 12]),
            );
            let n = b.finish().unwrap();
            burst.extend_from_slice(&buf[..n]);
        }
        tls.write_all(&burst).unwrap();
        // SSL_read returns at most one record's bytes per call.
        let mut reads = Vec::new();
        while reads.len() < 5 {
            let mut buf = [0u8; 4096];
            let n = tls.read(&mut buf).unwrap();
            assert!(n > 0, "closed after {} reads", reads.len());
            reads.push(buf[..n].to_vec());
        }
        reads
    })
    .await
    .unwrap();
    for (i, r) in frames.iter().enumerate() {
        let len = 20 + u16::from_be_bytes([r[2], r[3]]) as usize;
        assert_eq!(r.len(), len, "read {i} holds exactly one message");
        assert_eq!(r[8], i as u8 + 1, "answers in order");
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_port_serves_tls_and_plain_tcp_and_alpn_stun_turn() {
    let (server, _dir) = tls_turn(|_| {}).await;
    let plain_port = server.addrs(Transport::Tcp)[0];
    let tls_port = server.addrs(Transport::Tls)[0];
    let mut clients = Vec::new();
    for addr in [plain_port, tls_port] {
        // TLS, offering stun.turn: confirmed.
        let s = tls_connect(addr, &[b"h2", b"stun.turn"]).await;
        assert_eq!(s.get_ref().1.alpn_protocol(), Some(&b"stun.turn"[..]));
        let local = s.get_ref().0.local_addr().unwrap();
        let mut c = TurnClient::over_stream(s, local);
        c.allocate(None).await.expect("allocation over TLS");
        clients.push(c);
        // Other protocols only: served without ALPN rather than refused.
        let s = tls_connect(addr, &[b"h2"]).await;
        assert_eq!(s.get_ref().1.alpn_protocol(), None);
        // Plain TCP on the same port.
        let tcp = TcpStream::connect(addr).await.unwrap();
        let local = tcp.local_addr().unwrap();
        let mut c = TurnClient::over_stream(tcp, local);
        c.allocate(None).await.expect("allocation over plain TCP");
        clients.push(c);
    }
    // Sessions are published once a second.
    let deadline = Instant::now() + Duration::from_secs(3);
    while !server
        .registry()
        .sessions()
        .iter()
        .any(|(_, s)| s.tuple.transport == Transport::Tls)
    {
        assert!(
            Instant::now() < deadline,
            "a TLS session is reported as tls"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    server.stop().await;
}

/// The echo of one relayed datagram: the allocation still works.
pub(crate) async fn relays(c: &mut TurnClient, peer: &tokio::net::UdpSocket) {
    let to = peer.local_addr().unwrap();
    c.create_permission(to).await.unwrap();
    c.send_to_peer(to, b"still here").await;
    let mut buf = [0u8; 64];
    let (n, _) = tokio::time::timeout(Duration::from_secs(5), peer.recv_from(&mut buf))
        .await
        .expect("relayed data reaches the peer")
        .unwrap();
    assert_eq!(&buf[..n], b"still here");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_swaps_the_certificate_for_new_handshakes_and_keeps_allocations() {
    let dir = cert_dir();
    let first = write_cert(&dir);
    let cert = dir.join("cert.pem").display().to_string();
    let key = dir.join("key.pem").display().to_string();
    let user = format!("{USER}:{PASSWORD}");
    let (child, _lines, mut log) = crate::cli::spawn_serve(&[
        "--listen",
        "127.0.0.1:0",
        "--tls-listen",
        "127.0.0.1:0",
        "--cert",
        &cert,
        "--key",
        &key,
        "--realm",
        crate::REALM,
        "--user",
        &user,
        "--allow-loopback-peers",
        "--min-port",
        "38000",
        "--max-port",
        "38999",
    ]);
    let mut line = String::new();
    let tls_addr: SocketAddr = loop {
        line.clear();
        assert!(log.read_line(&mut line).unwrap() > 0, "no tls listener");
        if let Some(a) = line.trim().split("listening tls ").nth(1) {
            break a.parse().unwrap();
        }
    };
    let (mut old, seen) = tls_client(tls_addr).await;
    assert_eq!(seen, first);
    old.allocate(None).await.unwrap();
    let peer = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();

    let second = write_cert(&dir);
    assert_ne!(first, second);
    let pid = child.id().to_string();
    assert!(std::process::Command::new("kill")
        .args(["-HUP", &pid])
        .status()
        .unwrap()
        .success());
    loop {
        line.clear();
        assert!(log.read_line(&mut line).unwrap() > 0, "server ended");
        if line.contains("SIGHUP") {
            assert!(line.contains("reloaded"), "{line}");
            break;
        }
    }
    let (_new, seen) = tls_client(tls_addr).await;
    assert_eq!(seen, second, "a new handshake sees the new certificate");
    old.refresh(600).await.expect("the old session lives on");
    relays(&mut old, &peer).await;

    // A broken file keeps the current pair and the server running.
    std::fs::write(dir.join("cert.pem"), "not a certificate").unwrap();
    std::process::Command::new("kill")
        .args(["-HUP", &pid])
        .status()
        .unwrap();
    loop {
        line.clear();
        assert!(log.read_line(&mut line).unwrap() > 0, "server ended");
        if line.contains("SIGHUP") {
            assert!(line.contains("kept the old certificate"), "{line}");
            assert!(line.contains("cert.pem"), "names the file: {line}");
            break;
        }
    }
    let (_c, seen) = tls_client(tls_addr).await;
    assert_eq!(seen, second);
    crate::cli::sigterm(&child);
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_reload_swaps_the_tls_and_dtls_certificate_and_a_bad_file_gets_422() {
    let dir = cert_dir();
    let first = write_cert(&dir);
    let (server, _, admin) = crate::admin::server(|c| {
        c.tls_listen = vec!["127.0.0.1:0".parse().unwrap()];
        c.cert = Some(dir.join("cert.pem"));
        c.key = Some(dir.join("key.pem"));
        c.dtls = true;
    })
    .await;
    let tls_addr = server.addrs(Transport::Tls)[0];
    let dtls_addr = server.addrs(Transport::Dtls)[0];
    let token = crate::admin::token("admin");
    let (code, _) = crate::admin::http(admin, "POST", "/api/v1/reload", None, None).await;
    assert_eq!(code, 401);
    let (mut old, seen) = tls_client(tls_addr).await;
    assert_eq!(seen, first);
    old.allocate(None).await.unwrap();

    // A key that does not match the certificate: refused, old pair kept.
    let other = cert_dir();
    write_cert(&other);
    std::fs::copy(other.join("key.pem"), dir.join("key.pem")).unwrap();
    let (code, body) =
        crate::admin::http(admin, "POST", "/api/v1/reload", Some(&token), None).await;
    assert_eq!(code, 422, "{body}");
    assert!(body.contains("key.pem"), "{body}");
    assert_eq!(tls_client(tls_addr).await.1, first);
    assert_eq!(crate::dtls::dtls_leaf(dtls_addr).await, first);

    let second = write_cert(&dir);
    let (code, body) =
        crate::admin::http(admin, "POST", "/api/v1/reload", Some(&token), None).await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(tls_client(tls_addr).await.1, second);
    assert_eq!(crate::dtls::dtls_leaf(dtls_addr).await, second, "DTLS too");
    assert_eq!(server.tls().unwrap().leaf(), second);
    old.refresh(600).await.expect("the old session lives on");
    server.stop().await;
    let _ = std::fs::remove_dir_all(dir);
    let _ = std::fs::remove_dir_all(other);
}

/// Reads until the server closes the connection; how long after `start`.
async fn closed_after(mut s: TcpStream, start: Instant, limit: Duration) -> Duration {
    let mut buf = [0u8; 256];
    loop {
        match tokio::time::timeout(limit, s.read(&mut buf)).await {
            Err(_) => panic!("still open after {limit:?}"),
            Ok(Ok(0)) | Ok(Err(_)) => return start.elapsed(),
            Ok(Ok(_)) => {}
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unfinished_tls_handshake_and_silent_tcp_are_closed_at_the_timeout() {
    let (server, _dir) = tls_turn(|c| c.handshake_timeout = Duration::from_secs(1)).await;
    let tls_addr = server.addrs(Transport::Tls)[0];
    let tcp_addr = server.addrs(Transport::Tcp)[0];
    let start = Instant::now();
    // Half a TLS record header, then nothing.
    let mut stalled = TcpStream::connect(tls_addr).await.unwrap();
    stalled.write_all(&[0x16, 0x03, 0x01]).await.unwrap();
    // Half a STUN header on plain TCP, then nothing.
    let mut partial = TcpStream::connect(tcp_addr).await.unwrap();
    partial.write_all(&[0x00, 0x01, 0x00]).await.unwrap();
    // Nothing at all.
    let silent = TcpStream::connect(tls_addr).await.unwrap();
    for s in [stalled, partial, silent] {
        let took = closed_after(s, start, Duration::from_secs(5)).await;
        assert!(took >= Duration::from_millis(700), "closed early: {took:?}");
    }
    assert_eq!(server.stream_connections(), 0);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_idle_connections_from_one_address_hit_the_per_ip_cap() {
    let server = start_turn(|c| c.allow_loopback_peers = true).await;
    let addr = server.addrs(Transport::Tcp)[0];
    // Connections without an allocation get a quarter of the per-IP cap.
    let per_ip = turnpike::Config::default().max_tcp_per_ip as usize / 4;
    let mut conns = Vec::new();
    for _ in 0..1000 {
        conns.push(TcpStream::connect(addr).await.unwrap());
    }
    // Refused connections are closed at once; the rest stay open and idle
    // (well inside the 10 s first-message timeout).
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut open = 0;
    for c in &mut conns {
        let mut b = [0u8; 1];
        if tokio::time::timeout(Duration::from_millis(5), c.read(&mut b))
            .await
            .is_err()
        {
            open += 1;
        }
    }
    assert_eq!(open, per_ip, "exactly the per-IP share stays open");
    assert_eq!(server.stream_connections() as usize, per_ip);
    // Another source address still gets in and allocates.
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.bind("127.0.0.2:0".parse().unwrap()).unwrap();
    let tcp = sock.connect(addr).await.unwrap();
    let local = tcp.local_addr().unwrap();
    let mut c = TurnClient::over_stream(tcp, local);
    c.allocate(None).await.expect("another client allocates");
    drop(conns);
    server.stop().await;
}
