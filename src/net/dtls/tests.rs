//! The cookie gate and sessions, driven datagram by datagram against an
//! OpenSSL DTLS client over the same in-memory queue.

use super::*;
use openssl::ssl::SslVerifyMode;
use std::sync::atomic::{AtomicUsize, Ordering};

const A: &str = "127.0.0.1:40000";
const B: &str = "127.0.0.2:40000";
const T: Duration = Duration::from_secs(10);

/// Writes a fresh self-signed pair into `dir`; returns the leaf DER.
fn write_pair(dir: &Path) -> Vec<u8> {
    std::fs::create_dir_all(dir).unwrap();
    let c = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    std::fs::write(dir.join("cert.pem"), c.cert.pem()).unwrap();
    std::fs::write(dir.join("key.pem"), c.signing_key.serialize_pem()).unwrap();
    c.cert.der().to_vec()
}

fn dir() -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    std::env::temp_dir().join(format!(
        "turnpike-dtls-unit-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ))
}

fn dtls(max_half_open: usize) -> Arc<Dtls> {
    let dir = dir();
    write_pair(&dir);
    let d = Dtls::load(&dir.join("cert.pem"), &dir.join("key.pem"), max_half_open).unwrap();
    let _ = std::fs::remove_dir_all(dir);
    Arc::new(d)
}

/// Caps too large to matter for a test.
fn limits() -> Arc<ConnLimits> {
    ConnLimits::new(1000, 1000)
}

fn leaf(c: &SslStream<DgramIo>) -> Vec<u8> {
    c.ssl().peer_certificate().unwrap().to_der().unwrap()
}

fn client() -> SslStream<DgramIo> {
    client_offering(None)
}

/// A client offering only `ciphers` (OpenSSL's list syntax), if given.
fn client_offering(ciphers: Option<&str>) -> SslStream<DgramIo> {
    let mut b = SslContext::builder(SslMethod::dtls_client()).unwrap();
    if let Some(list) = ciphers {
        b.set_cipher_list(list).unwrap();
    }
    b.set_verify(SslVerifyMode::NONE);
    b.set_min_proto_version(Some(SslVersion::DTLS1_2)).unwrap();
    b.set_options(SslOptions::NO_QUERY_MTU);
    let mut ssl = Ssl::new(&b.build()).unwrap();
    ssl.set_mtu(MTU).unwrap();
    ssl.set_connect_state();
    SslStream::new(ssl, DgramIo::default()).unwrap()
}

/// Lets the client act on what it has received; returns what it sends.
fn client_step(c: &mut SslStream<DgramIo>, inbound: Vec<Vec<u8>>) -> Vec<Vec<u8>> {
    c.get_mut().inbox.extend(inbound);
    match c.connect() {
        Ok(()) => {}
        Err(e) => assert_eq!(e.code(), ErrorCode::WANT_READ, "client: {e}"),
    }
    c.get_mut().outbox.drain(..).collect()
}

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// Handshake type of the first record of a datagram.
fn handshake_type(d: &[u8]) -> u8 {
    assert_eq!(d[0], 22, "a handshake record");
    d[13]
}

/// Runs the cookie exchange for `c` from `from`; returns the session and
/// the server's first flight.
fn past_cookie(
    gate: &mut Gate,
    now: Instant,
    c: &mut SslStream<DgramIo>,
    from: SocketAddr,
) -> Option<(Session, Vec<Vec<u8>>)> {
    let hello = client_step(c, vec![]);
    let mut hvr = Vec::new();
    assert!(gate
        .offer(now, from, &hello[0], T, None, &mut hvr)
        .is_none());
    let hello2 = client_step(c, hvr);
    let mut out = Vec::new();
    let mut s = gate.offer(now, from, &hello2[0], T, None, &mut out)?;
    assert!(
        out.is_empty(),
        "a valid cookie gets no second HelloVerifyRequest"
    );
    Some((
        {
            out.extend(s.outgoing());
            s
        },
        out,
    ))
}

fn handshake(gate: &mut Gate, now: Instant, from: SocketAddr) -> (Session, SslStream<DgramIo>) {
    let mut c = client();
    let (mut s, flight) = past_cookie(gate, now, &mut c, from).expect("session");
    let mut to_server = client_step(&mut c, flight);
    let mut plain = Vec::new();
    for _ in 0..4 {
        for d in to_server.drain(..) {
            s.input(now, &d, &mut plain).unwrap();
        }
        let back: Vec<_> = s.outgoing().collect();
        to_server = client_step(&mut c, back);
        if s.is_established() && c.ssl().is_init_finished() {
            break;
        }
    }
    assert!(s.is_established() && c.ssl().is_init_finished());
    assert!(plain.is_empty());
    (s, c)
}

#[test]
fn a_cookie_less_client_hello_gets_exactly_one_hello_verify_request_and_leaves_no_state() {
    let d = dtls(8);
    let mut gate = Gate::new(d.clone(), limits());
    let mut c = client();
    let hello = client_step(&mut c, vec![]);
    assert_eq!(hello.len(), 1);
    assert!(is_client_hello(&hello[0]) && is_dtls(&hello[0]));
    for _ in 0..3 {
        let mut out = Vec::new();
        assert!(gate
            .offer(Instant::now(), addr(A), &hello[0], T, None, &mut out)
            .is_none());
        assert_eq!(out.len(), 1, "exactly one datagram");
        assert_eq!(handshake_type(&out[0]), 3, "HelloVerifyRequest");
        assert_eq!(d.half_open(), 0);
    }
}

#[test]
fn a_cookie_is_bound_to_the_address_it_was_given_to() {
    let d = dtls(8);
    let mut gate = Gate::new(d.clone(), limits());
    let now = Instant::now();
    let mut c = client();
    let hello = client_step(&mut c, vec![]);
    let mut hvr = Vec::new();
    gate.offer(now, addr(A), &hello[0], T, None, &mut hvr);
    let with_cookie = client_step(&mut c, hvr);
    let mut out = Vec::new();
    assert!(gate
        .offer(now, addr(B), &with_cookie[0], T, None, &mut out)
        .is_none());
    assert_eq!(out.len(), 1);
    assert_eq!(handshake_type(&out[0]), 3, "another HelloVerifyRequest");
    assert_eq!(d.half_open(), 0);
    assert!(gate
        .offer(now, addr(A), &with_cookie[0], T, None, &mut out)
        .is_some());
}

#[test]
fn a_handshake_completes_and_application_data_flows_both_ways() {
    let d = dtls(8);
    let mut gate = Gate::new(d.clone(), limits());
    let now = Instant::now();
    let mut c = client();
    let (s, flight) = past_cookie(&mut gate, now, &mut c, addr(A)).unwrap();
    assert_eq!(d.half_open(), 1, "past the cookie, not finished");
    assert!(!s.is_established());
    assert!(
        flight.iter().all(|f| f.len() <= MTU as usize),
        "flights are fragmented to the MTU"
    );
    drop(s);
    assert_eq!(d.half_open(), 0, "a dropped session gives its slot back");

    let (mut s, mut c) = handshake(&mut gate, now, addr(A));
    assert_eq!(d.half_open(), 0, "an established session holds no slot");
    c.ssl_write(b"\x00\x01 binding").unwrap();
    let mut plain = Vec::new();
    for dgram in c.get_mut().outbox.drain(..).collect::<Vec<_>>() {
        s.input(now, &dgram, &mut plain).unwrap();
    }
    assert_eq!(plain, vec![b"\x00\x01 binding".to_vec()]);
    assert!(s.send(b"answer"));
    let records: Vec<_> = s.outgoing().collect();
    assert_eq!(records.len(), 1, "one message, one datagram");
    c.get_mut().inbox.extend(records);
    let mut buf = [0u8; 64];
    let n = c.ssl_read(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"answer");

    c.shutdown().unwrap();
    let close: Vec<_> = c.get_mut().outbox.drain(..).collect();
    assert_eq!(s.input(now, &close[0], &mut plain), Err(Ended::Closed));
}

#[test]
fn clients_offering_only_weak_suites_get_no_session() {
    // F22: OpenSSL's DEFAULT list took CBC-SHA1 (and, with an RSA key,
    // static-RSA key exchange); only forward-secret AEAD suites remain.
    let d = dtls(8);
    let mut gate = Gate::new(d.clone(), limits());
    let now = Instant::now();
    for weak in ["ECDHE-ECDSA-AES128-SHA", "ECDHE-ECDSA-AES256-SHA384"] {
        let mut c = client_offering(Some(weak));
        let refused = match past_cookie(&mut gate, now, &mut c, addr(A)) {
            None => true,
            // An alert record (content type 21) instead of a ServerHello.
            Some((_, flight)) => flight.first().map_or(true, |f| f[0] == 21),
        };
        assert!(refused, "{weak} was accepted");
    }
    let mut c = client_offering(Some("ECDHE-ECDSA-AES128-GCM-SHA256"));
    let (_, flight) = past_cookie(&mut gate, now, &mut c, addr(B)).expect("session");
    assert_eq!(handshake_type(&flight[0]), 2, "a ServerHello");
}

#[test]
fn the_half_open_cap_refuses_valid_cookies_until_a_slot_frees() {
    let d = dtls(1);
    let mut gate = Gate::new(d.clone(), limits());
    let now = Instant::now();
    let mut a = client();
    let (first, _) = past_cookie(&mut gate, now, &mut a, addr(A)).unwrap();
    assert_eq!(d.half_open(), 1);
    let mut b = client();
    assert!(
        past_cookie(&mut gate, now, &mut b, addr(B)).is_none(),
        "at the cap a valid cookie makes no session and sends nothing"
    );
    assert_eq!(d.half_open(), 1);
    drop(first);
    let mut b = client();
    assert!(past_cookie(&mut gate, now, &mut b, addr(B)).is_some());
}

#[test]
fn a_handshake_and_first_message_must_finish_by_the_deadline() {
    let d = dtls(8);
    let mut gate = Gate::new(d, limits());
    let now = Instant::now();
    let idle = Duration::from_secs(600);
    let mut c = client();
    let (mut s, _) = past_cookie(&mut gate, now, &mut c, addr(A)).unwrap();
    assert_eq!(s.tick(now + T - Duration::from_millis(1), idle), Ok(()));
    assert_eq!(s.tick(now + T, idle), Err(Ended::TimedOut));

    // Established but silent: still bound by the deadline.
    let (mut s, mut c) = handshake(&mut gate, now, addr(B));
    assert_eq!(s.tick(now + T, idle), Err(Ended::TimedOut));
    // After a first message only the idle limit applies.
    c.ssl_write(b"\x00\x01").unwrap();
    let mut plain = Vec::new();
    for dgram in c.get_mut().outbox.drain(..).collect::<Vec<_>>() {
        s.input(now, &dgram, &mut plain).unwrap();
    }
    // Without an allocation, silence is allowed for the handshake timeout.
    assert_eq!(s.tick(now + T - Duration::from_millis(1), idle), Ok(()));
    assert_eq!(s.tick(now + T, idle), Err(Ended::TimedOut));
    // With one, the long idle limit applies.
    s.set_allocated(true);
    assert_eq!(s.tick(now + T, idle), Ok(()));
    assert_eq!(s.tick(now + idle, idle), Err(Ended::TimedOut));
    s.set_allocated(false);
    assert_eq!(s.tick(now + T, idle), Err(Ended::TimedOut));
}

#[test]
fn one_source_holds_at_most_a_sixteenth_of_the_half_open_cap() {
    assert_eq!(half_open_share(1), 1);
    assert_eq!(half_open_share(1024), 64);
    let d = dtls(32);
    let mut gate = Gate::new(d.clone(), limits());
    let now = Instant::now();
    let mut held = Vec::new();
    for port in [40001, 40002] {
        let mut c = client();
        let from = SocketAddr::new(addr(A).ip(), port);
        held.push(past_cookie(&mut gate, now, &mut c, from).expect("within the share"));
    }
    let mut c = client();
    assert!(
        past_cookie(&mut gate, now, &mut c, addr("127.0.0.1:40003")).is_none(),
        "a third half-open handshake from one address is refused"
    );
    assert_eq!(d.half_open(), 2);
    let mut c = client();
    assert!(past_cookie(&mut gate, now, &mut c, addr(B)).is_some());
    // An IPv6 /64 is one source.
    let d = dtls(16);
    let mut gate = Gate::new(d.clone(), limits());
    let mut c = client();
    let _first = past_cookie(&mut gate, now, &mut c, addr("[2001:db8::1]:1")).unwrap();
    let mut c = client();
    assert!(past_cookie(&mut gate, now, &mut c, addr("[2001:db8::2]:1")).is_none());
}

#[test]
fn sessions_count_in_the_connection_caps_and_allocating_frees_the_smaller_share() {
    let d = dtls(64);
    // Four per source, one of them without an allocation.
    let caps = ConnLimits::new(4, 100);
    let mut gate = Gate::new(d, caps.clone());
    let now = Instant::now();
    let (mut first, _c) = handshake(&mut gate, now, addr("127.0.0.1:1"));
    assert_eq!(caps.open(), 1);
    let mut c = client();
    assert!(
        past_cookie(&mut gate, now, &mut c, addr("127.0.0.1:2")).is_none(),
        "a second session without an allocation is refused"
    );
    first.set_allocated(true);
    let mut held = Vec::new();
    for port in 2..5 {
        let (mut s, c) = handshake(&mut gate, now, SocketAddr::new(addr(A).ip(), port));
        s.set_allocated(true);
        held.push((s, c));
    }
    let mut c = client();
    assert!(
        past_cookie(&mut gate, now, &mut c, addr("127.0.0.1:9")).is_none(),
        "the per-source cap holds"
    );
    assert_eq!(caps.open(), 4);
    let mut c = client();
    assert!(past_cookie(&mut gate, now, &mut c, addr(B)).is_some());
    drop(held);
    drop(first);
    assert_eq!(caps.open(), 0);
}

#[test]
fn a_reload_serves_the_new_certificate_to_new_handshakes_and_keeps_sessions() {
    let dir = dir();
    let first = write_pair(&dir);
    let d = Arc::new(Dtls::load(&dir.join("cert.pem"), &dir.join("key.pem"), 8).unwrap());
    let mut gate = Gate::new(d.clone(), limits());
    let now = Instant::now();
    let (mut old, mut c) = handshake(&mut gate, now, addr(A));
    assert_eq!(leaf(&c), first);
    let second = write_pair(&dir);
    d.install(d.prepare_reload().unwrap());
    let (_new, c2) = handshake(&mut gate, now, addr(B));
    assert_eq!(leaf(&c2), second);
    std::fs::write(dir.join("key.pem"), "broken").unwrap();
    let e = d.prepare_reload().err().unwrap().to_string();
    assert!(e.contains("key.pem"), "{e}");
    let _ = std::fs::remove_dir_all(&dir);
    c.ssl_write(b"still here").unwrap();
    let mut plain = Vec::new();
    for dgram in c.get_mut().outbox.drain(..).collect::<Vec<_>>() {
        old.input(now, &dgram, &mut plain).unwrap();
    }
    assert_eq!(plain, vec![b"still here".to_vec()]);
}

#[test]
fn only_dtls_records_are_taken_for_dtls() {
    assert!(!is_dtls(&[0x00, 0x01]), "STUN");
    assert!(!is_dtls(&[0x40, 0x00]), "ChannelData");
    assert!(is_dtls(&[22, 0xfe, 0xfd]));
    assert!(!is_dtls(&[]));
    assert!(!is_client_hello(&[22, 0xfe, 0xfd, 0, 1]));
}

#[test]
fn a_restarting_client_hands_its_slot_to_the_new_session() {
    let d = dtls(64);
    // One session without an allocation per source.
    let caps = ConnLimits::new(4, 100);
    let mut gate = Gate::new(d, caps.clone());
    let now = Instant::now();
    let (mut old, _c) = handshake(&mut gate, now, addr(A));
    old.set_allocated(true);
    // The same address starts over: the new session takes the old slot.
    let mut c = client();
    let hello = client_step(&mut c, vec![]);
    let mut hvr = Vec::new();
    assert!(gate
        .offer(now, addr(A), &hello[0], T, Some(&mut old), &mut hvr)
        .is_none());
    let hello2 = client_step(&mut c, hvr);
    let mut out = Vec::new();
    let new = gate
        .offer(now, addr(A), &hello2[0], T, Some(&mut old), &mut out)
        .expect("the restart is admitted");
    assert_eq!(caps.open(), 1);
    drop(old);
    assert_eq!(caps.open(), 1, "the slot moved with the client");
    // The new session owns no allocation: the source's share is full.
    let mut c2 = client();
    assert!(past_cookie(&mut gate, now, &mut c2, addr("127.0.0.1:2")).is_none());
    drop(new);
    assert_eq!(caps.open(), 0);
}
