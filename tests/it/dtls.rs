//! Issue 6, DTLS side: coturn's client over DTLS with zero loss, the
//! stateless cookie exchange on the wire, the half-open cap and the
//! handshake deadline, client lists before the gate, and STUN over a DTLS
//! session of our own.

use std::net::SocketAddr;
use std::time::Duration;

use openssl::ssl::{
    ErrorCode, Ssl, SslContext, SslMethod, SslOptions, SslStream, SslVerifyMode, SslVersion,
};
use tokio::net::UdpSocket;
use turnpike::net::dtls::DgramIo;
use turnpike::{Running, Transport};

use crate::coturn::{turnutils_peer, uclient_relays_all};
use crate::secure::tls_turn;
use crate::{PASSWORD, USER};

async fn dtls_turn(adjust: impl FnOnce(&mut turnpike::Config)) -> (Running, SocketAddr) {
    let (server, _dir) = tls_turn(|c| {
        c.dtls = true;
        adjust(c);
    })
    .await;
    let addr = server.addrs(Transport::Dtls)[0];
    (server, addr)
}

async fn uclient_over_dtls(mode: &[&str]) {
    let (server, addr) = dtls_turn(|_| {}).await;
    let (_peer, peer_port) = turnutils_peer();
    let mut flags = vec!["-u", USER, "-w", PASSWORD, "-S"];
    flags.extend_from_slice(mode);
    uclient_relays_all(addr.port(), "127.0.0.1", peer_port, &flags, 50).await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uclient_over_dtls_with_channels_zero_loss() {
    uclient_over_dtls(&[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uclient_over_dtls_with_send_indications_zero_loss() {
    uclient_over_dtls(&["-s"]).await;
}

/// An OpenSSL DTLS 1.2 client whose datagrams the test carries by hand.
struct Client {
    ssl: SslStream<DgramIo>,
    sock: UdpSocket,
    server: SocketAddr,
}

impl Client {
    async fn new(server: SocketAddr) -> Client {
        Client::from_ip(server, "127.0.0.1").await
    }

    /// A client on its own port of loopback address `ip`.
    async fn from_ip(server: SocketAddr, ip: &str) -> Client {
        Client::named(server, ip, None).await
    }

    /// [`Client::from_ip`] naming `sni` in its ClientHello.
    async fn named(server: SocketAddr, ip: &str, sni: Option<&str>) -> Client {
        let mut b = SslContext::builder(SslMethod::dtls_client()).unwrap();
        b.set_verify(SslVerifyMode::NONE);
        b.set_min_proto_version(Some(SslVersion::DTLS1_2)).unwrap();
        b.set_options(SslOptions::NO_QUERY_MTU);
        let mut ssl = Ssl::new(&b.build()).unwrap();
        ssl.set_mtu(1200).unwrap();
        if let Some(name) = sni {
            ssl.set_hostname(name).unwrap();
        }
        ssl.set_connect_state();
        Client {
            ssl: SslStream::new(ssl, DgramIo::default()).unwrap(),
            sock: UdpSocket::bind((ip, 0)).await.unwrap(),
            server,
        }
    }

    /// Advances the handshake and sends what it produced.
    async fn step(&mut self) -> bool {
        let done = match self.ssl.connect() {
            Ok(()) => true,
            Err(e) => {
                assert_eq!(e.code(), ErrorCode::WANT_READ, "client: {e}");
                false
            }
        };
        self.flush().await;
        done
    }

    async fn flush(&mut self) {
        let out: Vec<_> = self.ssl.get_mut().drain_outbox().collect();
        for d in out {
            self.sock.send_to(&d, self.server).await.unwrap();
        }
    }

    /// Datagrams from the server: the first within `wait`, then those
    /// following it with gaps under 100 ms.
    async fn recv_all(&mut self, wait: Duration) -> Vec<Vec<u8>> {
        let mut got = Vec::new();
        let mut buf = vec![0u8; 65_536];
        let mut gap = wait;
        while let Ok(Ok(n)) = tokio::time::timeout(gap, self.sock.recv(&mut buf)).await {
            got.push(buf[..n].to_vec());
            gap = Duration::from_millis(100);
        }
        got
    }

    fn take(&mut self, datagrams: Vec<Vec<u8>>) {
        for d in datagrams {
            self.ssl.get_mut().push_inbox(d);
        }
    }

    /// Sends the ClientHello, answers the HelloVerifyRequest and returns
    /// the server's answer to the cookie-bearing ClientHello.
    async fn past_cookie(&mut self, wait: Duration) -> Vec<Vec<u8>> {
        self.step().await;
        let hvr = self.recv_all(Duration::from_millis(500)).await;
        assert_eq!(hvr.len(), 1);
        assert_eq!(hvr[0][13], 3, "HelloVerifyRequest");
        self.take(hvr);
        self.step().await;
        self.recv_all(wait).await
    }
}

impl Client {
    /// A whole handshake from the start.
    async fn handshake(&mut self) {
        let flight = self.past_cookie(Duration::from_millis(500)).await;
        self.take(flight);
        let mut done = self.step().await;
        for _ in 0..5 {
            if done {
                break;
            }
            let more = self.recv_all(Duration::from_millis(500)).await;
            self.take(more);
            done = self.step().await;
        }
        assert!(done, "handshake completes");
    }
}

/// The leaf certificate a new DTLS handshake with `addr` sees.
pub(crate) async fn dtls_leaf(addr: SocketAddr) -> Vec<u8> {
    let mut c = Client::new(addr).await;
    c.handshake().await;
    c.ssl.ssl().peer_certificate().unwrap().to_der().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cookie_less_client_hello_gets_one_hello_verify_request_and_no_retransmission() {
    let (server, addr) = dtls_turn(|_| {}).await;
    let mut c = Client::new(addr).await;
    c.ssl.connect().unwrap_err();
    let hello: Vec<_> = c.ssl.get_mut().drain_outbox().collect();
    assert_eq!(hello.len(), 1);
    for _ in 0..3 {
        c.sock.send_to(&hello[0], addr).await.unwrap();
    }
    // A server holding state would retransmit after about a second.
    let mut got = Vec::new();
    let mut buf = vec![0u8; 2048];
    let end = tokio::time::Instant::now() + Duration::from_millis(2500);
    while let Ok(Ok(n)) = tokio::time::timeout_at(end, c.sock.recv(&mut buf)).await {
        got.push(buf[..n].to_vec());
    }
    assert_eq!(got.len(), 3, "one answer per ClientHello, nothing more");
    for d in &got {
        assert_eq!((d[0], d[13]), (22, 3), "HelloVerifyRequest");
    }
    assert_eq!(server.dtls_handshakes(), 0);
    server.stop().await;
}

/// Client lists (issue 19) come before the cookie gate: a denied client's
/// ClientHello gets no HelloVerifyRequest; another address gets one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_denied_clients_client_hello_gets_nothing() {
    let (server, addr) = dtls_turn(|c| {
        c.denied_client_ips = vec![turnpike::turn::policy::IpRange::parse("127.0.0.5").unwrap()];
    })
    .await;
    let mut denied = Client::from_ip(addr, "127.0.0.5").await;
    denied.step().await;
    assert!(denied.recv_all(Duration::from_millis(500)).await.is_empty());
    let mut other = Client::from_ip(addr, "127.0.0.6").await;
    other.step().await;
    let hvr = other.recv_all(Duration::from_millis(500)).await;
    assert_eq!(hvr.len(), 1);
    assert_eq!(hvr[0][13], 3, "HelloVerifyRequest");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_open_handshakes_are_capped_and_expire_at_the_handshake_timeout() {
    let (server, addr) = dtls_turn(|c| {
        c.max_dtls_handshakes = 2;
        c.handshake_timeout = Duration::from_secs(2);
    })
    .await;
    let mut stalled = Vec::new();
    // From two addresses: one source may hold a sixteenth of the cap (one).
    for ip in ["127.0.0.1", "127.0.0.2"] {
        let mut c = Client::from_ip(addr, ip).await;
        let flight = c.past_cookie(Duration::from_millis(300)).await;
        assert!(!flight.is_empty() && flight[0][13] == 2, "ServerHello");
        stalled.push(c);
    }
    assert_eq!(server.dtls_handshakes(), 2);
    let mut third = Client::from_ip(addr, "127.0.0.3").await;
    let flight = third.past_cookie(Duration::from_millis(300)).await;
    assert!(
        flight.is_empty(),
        "at the cap a valid cookie gets no answer"
    );
    assert_eq!(server.dtls_handshakes(), 2);

    // The stalled handshakes end at the timeout and free their slots.
    tokio::time::sleep(Duration::from_millis(2300)).await;
    assert_eq!(server.dtls_handshakes(), 0);
    let mut c = Client::new(addr).await;
    c.handshake().await;
    // A Binding request over the session gets our mapped address back.
    let msg = c.binding([7u8; 12]).await.expect("an answer");
    let mut mapped = stun::xoraddr::XorMappedAddress::default();
    use stun::message::Getter;
    mapped.get_from(&msg).unwrap();
    assert_eq!(
        SocketAddr::new(mapped.ip, mapped.port),
        c.sock.local_addr().unwrap()
    );
    server.stop().await;
}

impl Client {
    /// Sends a Binding request over the session; its success answer, or
    /// None if nothing comes back within 500 ms.
    async fn binding(&mut self, txid: [u8; 12]) -> Option<stun::message::Message> {
        let mut req = vec![0x00, 0x01, 0x00, 0x00, 0x21, 0x12, 0xa4, 0x42];
        req.extend_from_slice(&txid);
        self.ssl.ssl_write(&req).unwrap();
        self.flush().await;
        let answer = self.recv_all(Duration::from_millis(500)).await;
        if answer.is_empty() {
            return None;
        }
        self.take(answer);
        let mut buf = [0u8; 1500];
        let n = self.ssl.ssl_read(&mut buf).unwrap();
        let mut msg = stun::message::Message::new();
        msg.raw = buf[..n].to_vec();
        msg.decode().unwrap();
        assert_eq!(msg.typ, stun::message::BINDING_SUCCESS);
        assert_eq!(&msg.transaction_id.0, &txid);
        Some(msg)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_from_one_ip_beyond_its_share_are_refused_and_another_ip_gets_in() {
    // max_tcp_per_ip = 8: two sessions without an allocation per address.
    let (server, addr) = dtls_turn(|c| c.max_tcp_per_ip = 8).await;
    let mut held = Vec::new();
    for k in 0..2u8 {
        let mut c = Client::new(addr).await;
        c.handshake().await;
        assert!(c.binding([k; 12]).await.is_some());
        held.push(c);
    }
    let mut third = Client::new(addr).await;
    let flight = third.past_cookie(Duration::from_millis(300)).await;
    assert!(
        flight.is_empty(),
        "a third session from one address is refused"
    );
    assert_eq!(server.stream_connections(), 2, "sessions count in the caps");
    let mut other = Client::from_ip(addr, "127.0.0.2").await;
    other.handshake().await;
    assert!(other.binding([9; 12]).await.is_some());
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_without_an_allocation_is_dropped_after_the_handshake_timeout_of_silence() {
    let (server, addr) = dtls_turn(|c| c.handshake_timeout = Duration::from_secs(1)).await;
    let mut c = Client::new(addr).await;
    c.handshake().await;
    assert!(c.binding([1; 12]).await.is_some());
    // Talking keeps it: 0.6 s of silence, then another message.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(c.binding([2; 12]).await.is_some(), "still served");
    // 1.5 s of silence ends it (the tick runs every 100 ms).
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(server.stream_connections(), 0, "the session is gone");
    assert!(c.binding([3; 12]).await.is_none(), "no session, no answer");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_ip_cannot_take_every_half_open_slot() {
    // A cap of 4 leaves one slot per source.
    let (server, addr) = dtls_turn(|c| c.max_dtls_handshakes = 4).await;
    let mut hog = Client::new(addr).await;
    let flight = hog.past_cookie(Duration::from_millis(300)).await;
    assert!(!flight.is_empty() && flight[0][13] == 2, "ServerHello");
    let mut more = Client::new(addr).await;
    let flight = more.past_cookie(Duration::from_millis(300)).await;
    assert!(flight.is_empty(), "a second half-open handshake is refused");
    assert_eq!(server.dtls_handshakes(), 1);
    let mut other = Client::from_ip(addr, "127.0.0.2").await;
    other.handshake().await;
    assert!(other.binding([5; 12]).await.is_some());
    server.stop().await;
}

/// Issue 19: the server name of a DTLS handshake picks a tenant realm as
/// TLS's does; the 401 to an unsigned Allocate names it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dtls_server_name_picks_its_tenant_realm() {
    let (server, addr) = dtls_turn(|c| {
        c.realms = vec![turnpike::auth::realms::Tenant {
            name: "tenant-b.test".into(),
            sni: vec!["b.example".into()],
            origins: vec![],
        }];
    })
    .await;
    for (sni, want) in [(Some("b.example"), "tenant-b.test"), (None, crate::REALM)] {
        let mut c = Client::named(addr, "127.0.0.1", sni).await;
        c.handshake().await;
        // An unsigned Allocate (REQUESTED-TRANSPORT UDP).
        let mut req = vec![0x00, 0x03, 0x00, 0x08, 0x21, 0x12, 0xa4, 0x42];
        req.extend_from_slice(&[9; 12]);
        req.extend_from_slice(&[0x00, 0x19, 0x00, 0x04, 17, 0, 0, 0]);
        c.ssl.ssl_write(&req).unwrap();
        c.flush().await;
        let answer = c.recv_all(Duration::from_millis(1000)).await;
        c.take(answer);
        let mut buf = [0u8; 1500];
        let n = c.ssl.ssl_read(&mut buf).unwrap();
        let m = turnpike::stun::Message::parse(&buf[..n]).unwrap();
        let realm = m.get(turnpike::stun::attributes::AttributeType::REALM);
        assert_eq!(realm, Some(want.as_bytes()), "sni {sni:?}");
    }
    server.stop().await;
}
