//! Issue 19: one TLS port for TURN and HTTPS. nginx (Debian's) behind
//! turnpike's TLS port with its own certificate; curl over HTTP/1.1 and
//! HTTP/2 gets nginx's page and certificate through the port, while
//! turnutils_uclient and Chromium get TURN on it.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use turnpike::{Running, Transport};

use crate::coturn::{turnutils_peer, uclient_relays_all, Child};
use crate::free_port;
use crate::secure::{cert_dir, tls_connect};
use crate::{start_turn, PASSWORD, USER};

/// The page nginx serves on its plain TLS server.
const PAGE: &str = "the backend's page";

/// nginx with its own self-signed certificate: TLS (HTTP/1.1 and HTTP/2)
/// on one port, and on another the same behind `proxy_protocol`, where
/// the page is the client address the PROXY header named.
pub(crate) struct Nginx {
    _child: Child,
    tls: u16,
    pub(crate) proxied: u16,
    cert_pem: String,
    cert_der: Vec<u8>,
}

pub(crate) fn start_nginx(dir: &Path) -> Nginx {
    std::fs::create_dir_all(dir.join("tmp")).unwrap();
    let c = rcgen::generate_simple_self_signed(vec!["backend.test".into()]).unwrap();
    std::fs::write(dir.join("backend.crt"), c.cert.pem()).unwrap();
    std::fs::write(dir.join("backend.key"), c.signing_key.serialize_pem()).unwrap();
    let (tls, proxied) = (free_port(), free_port());
    let d = dir.display();
    let conf = format!(
        "daemon off; master_process off; worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/error.log info;
events {{ worker_connections 64; }}
http {{
  access_log off;
  client_body_temp_path {d}/tmp; proxy_temp_path {d}/tmp;
  fastcgi_temp_path {d}/tmp; uwsgi_temp_path {d}/tmp; scgi_temp_path {d}/tmp;
  ssl_certificate {d}/backend.crt; ssl_certificate_key {d}/backend.key;
  server {{ listen 127.0.0.1:{tls} ssl http2;
           location / {{ return 200 \"{PAGE}\\n\"; }} }}
  server {{ listen 127.0.0.1:{proxied} ssl proxy_protocol;
           location / {{ return 200 \"$proxy_protocol_addr\\n\"; }} }}
}}
"
    );
    std::fs::write(dir.join("nginx.conf"), conf).unwrap();
    let child = Command::new("nginx")
        .arg("-e")
        .arg(dir.join("error.log"))
        .arg("-p")
        .arg(dir)
        .arg("-c")
        .arg(dir.join("nginx.conf"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("nginx (Debian's package, installed by scripts/test.sh)");
    let child = Child(child);
    let until = Instant::now() + Duration::from_secs(10);
    while [tls, proxied]
        .iter()
        .any(|p| std::net::TcpStream::connect(("127.0.0.1", *p)).is_err())
    {
        assert!(
            Instant::now() < until,
            "nginx did not start: {}",
            std::fs::read_to_string(dir.join("error.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    Nginx {
        _child: child,
        tls,
        proxied,
        cert_pem: c.cert.pem(),
        cert_der: c.cert.der().to_vec(),
    }
}

/// turnpike on a TLS port that passes web connections to `backend`.
async fn turnpike_before(backend: u16, dir: &Path, proxy_protocol: bool) -> Running {
    turnpike_before_with(backend, dir, proxy_protocol, |_| {}).await
}

/// [`turnpike_before`], with `adjust` changing the rest.
pub(crate) async fn turnpike_before_with(
    backend: u16,
    dir: &Path,
    proxy_protocol: bool,
    adjust: impl FnOnce(&mut turnpike::Config) + Send + 'static,
) -> Running {
    crate::secure::write_cert(dir);
    let dir: PathBuf = dir.to_path_buf();
    start_turn(move |c| {
        c.allow_loopback_peers = true;
        c.tls_listen = vec!["127.0.0.1:0".parse().unwrap()];
        c.cert = Some(dir.join("cert.pem"));
        c.key = Some(dir.join("key.pem"));
        c.tls_passthrough_to = Some(format!("127.0.0.1:{backend}"));
        c.tls_passthrough_sni = vec!["www.backend.test".into()];
        c.tls_passthrough_proxy_protocol = proxy_protocol;
        adjust(c);
    })
    .await
}

/// curl through `port` as https://`host`/; (HTTP version, body, the
/// certificates curl saw).
pub(crate) fn curl(port: u16, host: &str, args: &[&str]) -> (String, String, String) {
    let out = Command::new("curl")
        .args(["-sS", "-k", "--max-time", "10"])
        .args(args)
        .args(["--resolve", &format!("backend.test:{port}:127.0.0.1")])
        .args(["--resolve", &format!("www.backend.test:{port}:127.0.0.1")])
        // (A format starting with @ would name a file.)
        .args(["-w", "~~%{http_version}~~%{certs}"])
        .arg(format!("https://{host}:{port}/"))
        .output()
        .expect("curl");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "curl {args:?}: {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut parts = text.splitn(3, "~~");
    let body = parts.next().unwrap_or_default().trim_end().to_string();
    let version = parts.next().unwrap_or_default().to_string();
    let certs = parts.next().unwrap_or_default().to_string();
    (version, body, certs)
}

/// The base64 body of a PEM certificate, whitespace removed: curl prints
/// the PEM with its own line breaks.
fn pem_body(pem: &str) -> String {
    pem.lines()
        .filter(|l| !l.starts_with("-----"))
        .collect::<String>()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn web_clients_get_the_backend_and_turn_clients_get_turn_on_one_tls_port() {
    let dir = cert_dir();
    let nginx = start_nginx(&dir.join("nginx"));
    let server = turnpike_before(nginx.tls, &dir, false).await;
    let port = server.addrs(Transport::Tls)[0].port();

    // HTTP/1.1 and HTTP/2, each with the backend's page and certificate.
    for (flag, version) in [("--http1.1", "1.1"), ("--http2", "2")] {
        let (v, body, certs) =
            tokio::task::spawn_blocking(move || curl(port, "backend.test", &[flag]))
                .await
                .unwrap();
        assert_eq!(body, PAGE, "{flag}");
        assert_eq!(v, version, "{flag}");
        let seen: String = certs.split_whitespace().collect();
        assert!(
            seen.contains(&pem_body(&nginx.cert_pem)),
            "{flag}: curl did not see the backend's certificate:\n{certs}"
        );
    }
    // The same from a TLS client that offers h2: the leaf is nginx's, byte
    // for byte, so turnpike terminated nothing.
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let s = tls_connect(addr, &[b"h2"]).await;
    assert_eq!(
        s.get_ref().1.peer_certificates().unwrap()[0].to_vec(),
        nginx.cert_der
    );
    drop(s);

    // TURN on the same port: coturn's client over TLS (no ALPN) relays
    // everything, and Chromium reaches relay/relay with turns:.
    let (_peer, peer_port) = turnutils_peer();
    let flags = ["-u", USER, "-w", PASSWORD, "-t", "-S"];
    uclient_relays_all(port, "127.0.0.1", peer_port, &flags, 20).await;
    crate::browser::chromium_relays_through(
        &format!("turns:127.0.0.1:{port}?transport=tcp"),
        "tls",
    )
    .await;
    // A stun.turn offer stays TURN even beside h2.
    let s = tls_connect(addr, &[b"h2", b"stun.turn"]).await;
    assert_ne!(
        s.get_ref().1.peer_certificates().unwrap()[0].to_vec(),
        nginx.cert_der
    );
    assert_eq!(s.get_ref().1.alpn_protocol(), Some(&b"stun.turn"[..]));
    server.stop().await;
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_named_sni_passes_through_and_the_backend_learns_the_client_from_a_proxy_header() {
    let dir = cert_dir();
    let nginx = start_nginx(&dir.join("nginx"));
    let server = turnpike_before(nginx.proxied, &dir, true).await;
    let port = server.addrs(Transport::Tls)[0].port();
    // No ALPN at all (--no-alpn), but the SNI is listed: passed through,
    // and nginx's page is the address its PROXY header named.
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
    server.stop().await;
    let _ = std::fs::remove_dir_all(dir);
}

/// A ClientHello asking for HTTP/2, as a browser's would.
fn web_hello() -> Vec<u8> {
    use tokio_rustls::rustls::{self, pki_types::ServerName, ClientConfig, RootCertStore};
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(RootCertStore::empty())
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec()];
    let name = ServerName::try_from("backend.test").unwrap();
    let mut conn = rustls::ClientConnection::new(std::sync::Arc::new(config), name).unwrap();
    let mut out = Vec::new();
    conn.write_tls(&mut out).unwrap();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_passed_through_connection_lives_while_bytes_flow_and_closes_when_idle() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let dir = cert_dir();
    let backend = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = backend.local_addr().unwrap().port();
    let server = turnpike_before_with(port, &dir, false, |c| {
        c.tls_passthrough_idle_timeout = Duration::from_secs(2);
    })
    .await;
    let tls: SocketAddr = server.addrs(Transport::Tls)[0];
    let mut client = tokio::net::TcpStream::connect(tls).await.unwrap();
    let hello = web_hello();
    client.write_all(&hello).await.unwrap();
    let (mut web, _) = tokio::time::timeout(Duration::from_secs(5), backend.accept())
        .await
        .expect("passed to the backend")
        .unwrap();
    let mut got = vec![0u8; hello.len()];
    web.read_exact(&mut got).await.unwrap();
    assert_eq!(got, hello, "the hello reaches the backend as sent");
    // A byte every 200 ms, each way in turn, for 4 s: twice the idle
    // timeout, and the splice carries every one.
    let mut byte = [0u8];
    for i in 0..20 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        if i % 2 == 0 {
            client.write_all(b"u").await.unwrap();
            web.read_exact(&mut byte).await.unwrap();
        } else {
            web.write_all(b"d").await.unwrap();
            client.read_exact(&mut byte).await.unwrap();
        }
    }
    // Then quiet: both sides are closed about 2 s after the last byte.
    let quiet = Instant::now();
    let n = tokio::time::timeout(Duration::from_secs(10), client.read(&mut byte))
        .await
        .expect("closed within 10 s")
        .unwrap_or(0);
    let took = quiet.elapsed();
    assert_eq!(n, 0, "end of stream");
    assert!(
        took >= Duration::from_millis(1800) && took < Duration::from_secs(6),
        "closed after {took:?}"
    );
    let n = tokio::time::timeout(Duration::from_secs(2), web.read(&mut byte))
        .await
        .expect("the backend side too")
        .unwrap_or(0);
    assert_eq!(n, 0);
    server.stop().await;
    let _ = std::fs::remove_dir_all(dir);
}
