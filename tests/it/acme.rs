//! Issue 19, ACME: Debian's pebble (the ACME test CA) and
//! pebble-challtestsrv (its mock DNS, answering 127.0.0.1 for every name)
//! started on loopback. turnpike obtains a certificate for a test domain
//! with tls-alpn-01 on its own TLS port (and, in a second case, http-01 on
//! acme_http_listen), serves it, swaps it on a forced renewal while an
//! existing TLS allocation keeps relaying, and serves the stored one
//! again after a restart without ordering.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use openssl::x509::X509;
use turnpike::config::AcmeConfig;
use turnpike::{Running, Transport};

use crate::coturn::Child;
use crate::secure::{cert_dir, relays, tls_client};

const DOMAIN: &str = "turn.acme.test";

fn free_tcp() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn free_udp() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn wait_for_port(port: u16, what: &str, log: &Path) {
    let until = Instant::now() + Duration::from_secs(15);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < until,
            "{what} did not start: {}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// pebble and its mock DNS; killed when dropped.
struct Pebble {
    _dns: Child,
    _pebble: Child,
    /// The directory URL.
    directory: String,
    /// The root pebble's HTTPS certificate chains to (PEM file).
    ca_file: PathBuf,
    dir: PathBuf,
}

/// Starts pebble validating tls-alpn-01 on `tls_port` and http-01 on
/// `http_port` (both turnpike's), resolving names through its mock DNS.
fn start_pebble(dir: &Path, tls_port: u16, http_port: u16) -> Pebble {
    std::fs::create_dir_all(dir).unwrap();
    // A test CA and, signed by it, pebble's directory certificate.
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "acme test root");
    let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let params =
        rcgen::CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".into()]).unwrap();
    let cert = params.signed_by(&key, &ca).unwrap();
    let ca_file = dir.join("root.pem");
    std::fs::write(&ca_file, ca.pem()).unwrap();
    std::fs::write(dir.join("pebble.crt"), cert.pem()).unwrap();
    std::fs::write(dir.join("pebble.key"), key.serialize_pem()).unwrap();

    let (listen, management, dns, dns_management) =
        (free_tcp(), free_tcp(), free_udp(), free_tcp());
    let config = serde_json::json!({"pebble": {
        "listenAddress": format!("127.0.0.1:{listen}"),
        "managementListenAddress": format!("127.0.0.1:{management}"),
        "certificate": dir.join("pebble.crt"),
        "privateKey": dir.join("pebble.key"),
        "httpPort": http_port,
        "tlsPort": tls_port,
        "ocspResponderURL": "",
        "externalAccountBindingRequired": false
    }});
    std::fs::write(dir.join("pebble.json"), config.to_string()).unwrap();

    let dns_log = dir.join("challtestsrv.log");
    let dns_child = Command::new("pebble-challtestsrv")
        .args(["-dns01", &format!("127.0.0.1:{dns}")])
        .args(["-defaultIPv4", "127.0.0.1", "-defaultIPv6", ""])
        .args(["-http01", "", "-https01", "", "-tlsalpn01", ""])
        .args(["-management", &format!("127.0.0.1:{dns_management}")])
        .stdout(std::fs::File::create(&dns_log).unwrap())
        .stderr(Stdio::null())
        .spawn()
        .expect("pebble-challtestsrv (Debian's pebble, installed by scripts/test.sh)");
    let dns_child = Child(dns_child);
    wait_for_port(dns_management, "pebble-challtestsrv", &dns_log);

    let log = dir.join("pebble.log");
    let pebble = Command::new("pebble")
        .arg("-config")
        .arg(dir.join("pebble.json"))
        .args(["-dnsserver", &format!("127.0.0.1:{dns}")])
        .env("PEBBLE_VA_NOSLEEP", "1")
        .env("PEBBLE_WFE_NONCEREJECT", "0")
        .stdout(std::fs::File::create(&log).unwrap())
        .stderr(Stdio::null())
        .spawn()
        .expect("pebble (Debian's package, installed by scripts/test.sh)");
    let pebble = Child(pebble);
    wait_for_port(listen, "pebble", &log);
    Pebble {
        _dns: dns_child,
        _pebble: pebble,
        directory: format!("https://127.0.0.1:{listen}/dir"),
        ca_file,
        dir: dir.to_path_buf(),
    }
}

fn acme_config(p: &Pebble, state: &Path, http: Option<u16>) -> AcmeConfig {
    AcmeConfig {
        directory: p.directory.clone(),
        domains: vec![DOMAIN.into()],
        email: Some("ops@acme.test".into()),
        account_key: state.join("account.key"),
        http_listen: http.map(|p| SocketAddr::from(([127, 0, 0, 1], p))),
        ca_file: Some(p.ca_file.clone()),
        dir: state.to_path_buf(),
    }
}

fn issuer_cn(der: &[u8]) -> String {
    let x = X509::from_der(der).unwrap();
    let cn = x
        .issuer_name()
        .entries_by_nid(openssl::nid::Nid::COMMONNAME)
        .next()
        .map(|e| String::from_utf8_lossy(e.data().as_slice()).to_string());
    cn.unwrap_or_default()
}

fn serial(der: &[u8]) -> String {
    let x = X509::from_der(der).unwrap();
    let s = x.serial_number().to_bn().unwrap().to_hex_str().unwrap();
    s.to_string()
}

/// Waits until turnpike serves a certificate pebble issued.
async fn issued(server: &Running, p: &Pebble) -> Vec<u8> {
    let until = Instant::now() + Duration::from_secs(60);
    loop {
        let leaf = server.tls().unwrap().leaf();
        if issuer_cn(&leaf).starts_with("Pebble Intermediate CA") {
            return leaf;
        }
        assert!(
            Instant::now() < until,
            "no certificate from pebble; served issuer {:?}; pebble said: {}",
            issuer_cn(&leaf),
            std::fs::read_to_string(p.dir.join("pebble.log")).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// What `openssl s_client` sees on `port` for SNI `DOMAIN`: the leaf's
/// issuer and serial lines.
fn s_client(port: u16) -> String {
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "openssl s_client -connect 127.0.0.1:{port} -servername {DOMAIN} </dev/null 2>/dev/null \
             | openssl x509 -noout -issuer -serial"
        ))
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).to_string()
}

fn mode(path: &Path) -> u32 {
    std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(path).unwrap().permissions()) & 0o777
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_alpn_01_issues_serves_and_a_forced_renewal_swaps_while_allocations_relay() {
    let dir = cert_dir();
    let tls_port = free_tcp();
    let p = start_pebble(&dir.join("pebble"), tls_port, free_tcp());
    let state = dir.join("state");
    let acme = acme_config(&p, &state, None);
    let (server, _, admin) = crate::admin::server(|c| {
        c.tls_listen = vec![SocketAddr::from(([127, 0, 0, 1], tls_port))];
        c.acme = Some(acme.clone());
        c.dtls = true;
    })
    .await;
    let tls_addr = server.addrs(Transport::Tls)[0];
    let dtls_addr = server.addrs(Transport::Dtls)[0];
    let first = issued(&server, &p).await;
    assert_eq!(crate::dtls::dtls_leaf(dtls_addr).await, first, "DTLS too");
    let seen = s_client(tls_port);
    assert!(seen.contains("Pebble Intermediate CA"), "{seen}");
    assert!(seen.contains(&serial(&first)), "{seen}");
    assert_eq!(mode(&state.join("key.pem")), 0o600);
    assert_eq!(mode(&state.join("account.key")), 0o600);

    // An allocation over TLS with the first certificate.
    let (mut old, leaf) = tls_client(tls_addr).await;
    assert_eq!(leaf, first);
    old.allocate(None).await.unwrap();
    let peer = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    relays(&mut old, &peer).await;

    let token = crate::admin::token("admin");
    let (code, _) = crate::admin::http(admin, "POST", "/api/v1/acme/renew", None, None).await;
    assert_eq!(code, 401);
    let (code, body) =
        crate::admin::http(admin, "POST", "/api/v1/acme/renew", Some(&token), None).await;
    assert_eq!(code, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let (_new, second) = tls_client(tls_addr).await;
    assert_ne!(serial(&second), serial(&first), "a new certificate");
    assert_eq!(v["serial"], serial(&second));
    assert!(issuer_cn(&second).starts_with("Pebble Intermediate CA"));
    assert!(s_client(tls_port).contains(&serial(&second)));
    assert_eq!(crate::dtls::dtls_leaf(dtls_addr).await, second, "DTLS too");
    // The old connection keeps its session and its allocation relays.
    old.refresh(600).await.expect("the old session lives on");
    relays(&mut old, &peer).await;

    let (code, metrics) = crate::admin::http(admin, "GET", "/metrics", Some(&token), None).await;
    assert_eq!(code, 200);
    assert!(
        metrics.contains("turnpike_acme_renewals_total{outcome=\"success\"} 2"),
        "{metrics}"
    );
    server.stop().await;

    // A restart serves the stored certificate at once, without an order.
    let (server, _, _) = crate::admin::server(|c| {
        c.tls_listen = vec!["127.0.0.1:0".parse().unwrap()];
        c.acme = Some(acme.clone());
    })
    .await;
    assert_eq!(server.tls().unwrap().leaf(), second);
    server.stop().await;
    drop(p);
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_01_on_acme_http_listen_issues_the_certificate() {
    let dir = cert_dir();
    let (tls_port, http_port) = (free_tcp(), free_tcp());
    let p = start_pebble(&dir.join("pebble"), tls_port, http_port);
    let state = dir.join("state");
    let acme = acme_config(&p, &state, Some(http_port));
    let (server, _, _) = crate::admin::server(|c| {
        c.tls_listen = vec![SocketAddr::from(([127, 0, 0, 1], tls_port))];
        c.acme = Some(acme.clone());
    })
    .await;
    let leaf = issued(&server, &p).await;
    assert!(s_client(tls_port).contains(&serial(&leaf)));
    // Nothing but a pending token is answered.
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", http_port))
        .await
        .unwrap();
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    s.write_all(b"GET /.well-known/acme-challenge/nope HTTP/1.1\r\n\r\n")
        .await
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    assert!(out.starts_with("HTTP/1.1 404"), "{out}");
    server.stop().await;
    drop(p);
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_acme_a_forced_renewal_is_404_and_nothing_is_counted() {
    let (server, _, admin) = crate::admin::server(|_| {}).await;
    let token = crate::admin::token("admin");
    let (code, body) =
        crate::admin::http(admin, "POST", "/api/v1/acme/renew", Some(&token), None).await;
    assert_eq!(code, 404, "{body}");
    assert!(body.contains("acme_directory"), "{body}");
    let (_, metrics) = crate::admin::http(admin, "GET", "/metrics", Some(&token), None).await;
    assert!(metrics.contains("turnpike_acme_renewals_total{outcome=\"failure\"} 0"));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_ca_keeps_the_placeholder_answers_502_and_counts_failures() {
    let dir = cert_dir();
    let state = dir.join("state");
    let acme = AcmeConfig {
        directory: format!("https://127.0.0.1:{}/dir", free_tcp()),
        domains: vec![DOMAIN.into()],
        email: None,
        account_key: state.join("account.key"),
        http_listen: None,
        ca_file: None,
        dir: state.clone(),
    };
    let (server, _, admin) = crate::admin::server(|c| {
        c.tls_listen = vec!["127.0.0.1:0".parse().unwrap()];
        c.acme = Some(acme);
    })
    .await;
    let tls_addr = server.addrs(Transport::Tls)[0];
    let (_c, leaf) = tls_client(tls_addr).await;
    assert_eq!(issuer_cn(&leaf), "turnpike ACME placeholder");
    let token = crate::admin::token("admin");
    let failures = |n: u32| format!("turnpike_acme_renewals_total{{outcome=\"failure\"}} {n}");
    // The order at start fails first.
    let until = Instant::now() + Duration::from_secs(20);
    loop {
        let (_, m) = crate::admin::http(admin, "GET", "/metrics", Some(&token), None).await;
        if m.contains(&failures(1)) {
            break;
        }
        assert!(Instant::now() < until, "{m}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (code, body) =
        crate::admin::http(admin, "POST", "/api/v1/acme/renew", Some(&token), None).await;
    assert_eq!(code, 502, "{body}");
    assert_eq!(server.tls().unwrap().leaf(), leaf, "the placeholder stays");
    let (_, metrics) = crate::admin::http(admin, "GET", "/metrics", Some(&token), None).await;
    // The order at start and the forced one both failed.
    assert!(metrics.contains(&failures(2)), "{metrics}");
    assert!(metrics.contains("turnpike_acme_renewals_total{outcome=\"success\"} 0"));
    server.stop().await;
    let _ = std::fs::remove_dir_all(dir);
}
