//! DTLS 1.2 for TURN over UDP (RFC 6347; RFC 7350 for STUN over DTLS).
//!
//! Crate: `openssl` (rust-openssl, over Debian's libssl 3). The issue asks
//! for a stateless cookie exchange before any per-peer state. OpenSSL's
//! `DTLSv1_listen` does exactly that: one shared "listener" SSL answers a
//! cookie-less ClientHello with a HelloVerifyRequest and forgets it, and
//! only a ClientHello carrying a valid cookie turns that SSL into a session.
//! The maintained Rust DTLS stacks (webrtc-rs `dtls`, `dimpl`) keep state
//! for every peer from its first ClientHello and cannot take the
//! cookie-bearing one as a first message; rustls has no DTLS. openssl-sys
//! does not bind `DTLSv1_listen` or `BIO_ADDR_new`, so they are declared
//! here.
//!
//! Shape: sans-IO per session. An SSL object talks to an in-memory queue
//! ([`DgramIo`]: one read is one datagram, one write is one record), and
//! the worker moves datagrams between that queue and its UDP sockets, so
//! DTLS rides the same batched listener sockets as plain UDP. OpenSSL's
//! retransmission timer is read and fired by the worker's DTLS tick.
//!
//! Cookies are HMAC-SHA256(secret, minute, peer IP, peer port): bound to
//! the address, valid for one to two minutes, checked in constant time.
//!
//! Limits: a valid cookie makes a session only if the source has room in
//! the connection caps shared with TCP and TLS ([`ConnLimits`]) and in
//! the half-open cap, of which one source (an IPv4 address or IPv6 /64)
//! may hold a sixteenth, at least one: a source re-sending cookie-bearing
//! ClientHellos cannot keep everyone else out.

use std::collections::{HashMap, VecDeque};
use std::io::{self, Read, Write};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use foreign_types::ForeignTypeRef;
use hmac::{Hmac, Mac};
use openssl::ex_data::Index;
use openssl::ssl::{
    AlpnError, ErrorCode, Ssl, SslContext, SslFiletype, SslMethod, SslOptions, SslRef, SslStream,
    SslVersion,
};
use sha2::Sha256;

use super::certs::{file_err, mismatch_err, setup_err, CertError, CertFiles, Install, Serves};
use super::limits::{source_key, ConnLimits, ConnSlot};

// Not bound by openssl-sys; both are in libssl/libcrypto 1.1 and 3.
unsafe extern "C" {
    fn DTLSv1_listen(s: *mut openssl_sys::SSL, client: *mut BioAddr) -> libc::c_int;
    fn BIO_ADDR_new() -> *mut BioAddr;
    fn BIO_ADDR_free(a: *mut BioAddr);
}

/// OpenSSL's opaque `BIO_ADDR`.
#[repr(C)]
struct BioAddr {
    _opaque: [u8; 0],
}

// <openssl/ssl.h>: DTLSv1_get_timeout and DTLSv1_handle_timeout are macros.
const DTLS_CTRL_GET_TIMEOUT: libc::c_int = 73;
const DTLS_CTRL_HANDLE_TIMEOUT: libc::c_int = 74;

/// Payload bytes per datagram for handshake flights: below any path MTU
/// a TURN client will see, so certificates are fragmented, not dropped.
const MTU: u32 = 1200;

/// One cookie covers this many seconds; the previous window stays valid.
const COOKIE_WINDOW: u64 = 60;

/// In-memory datagram transport of one SSL object.
#[derive(Default)]
pub struct DgramIo {
    inbox: VecDeque<Vec<u8>>,
    outbox: Vec<Vec<u8>>,
}

impl DgramIo {
    /// Queues a datagram received from the peer.
    pub fn push_inbox(&mut self, datagram: Vec<u8>) {
        self.inbox.push_back(datagram);
    }

    /// Datagrams written for the peer, oldest first.
    pub fn drain_outbox(&mut self) -> std::vec::Drain<'_, Vec<u8>> {
        self.outbox.drain(..)
    }
}

impl Read for DgramIo {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self.inbox.pop_front() {
            Some(d) => {
                let n = d.len().min(buf.len());
                buf[..n].copy_from_slice(&d[..n]);
                Ok(n)
            }
            None => Err(io::ErrorKind::WouldBlock.into()),
        }
    }
}

impl Write for DgramIo {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        // OpenSSL's DTLS writes each datagram with one BIO_write.
        self.outbox.push(buf.to_vec());
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// DTLS state shared by every worker: the context and the half-open count.
pub struct Dtls {
    cert: PathBuf,
    key: PathBuf,
    secret: [u8; 32],
    peer: Index<Ssl, SocketAddr>,
    /// (generation, context): gates rebuild their listener when it moves.
    ctx: RwLock<(u64, SslContext)>,
    half_open: Arc<Mutex<HalfOpenCounts>>,
    max_half_open: usize,
    /// Half-open handshakes one source may hold.
    per_source_half_open: u32,
}

/// Handshakes past the cookie exchange, in total and per source. Touched
/// once when a handshake starts and once when it ends.
#[derive(Default)]
struct HalfOpenCounts {
    total: usize,
    per_source: HashMap<IpAddr, u32>,
}

/// A source's share of the half-open cap: a sixteenth, at least one.
pub fn half_open_share(max_half_open: usize) -> u32 {
    u32::try_from(max_half_open / 16).unwrap_or(u32::MAX).max(1)
}

fn cookie(secret: &[u8; 32], window: u64, peer: SocketAddr) -> Hmac<Sha256> {
    let mut m = <Hmac<Sha256>>::new_from_slice(secret).expect("HMAC takes any key length");
    m.update(&window.to_be_bytes());
    match peer {
        SocketAddr::V4(a) => m.update(&a.ip().octets()),
        SocketAddr::V6(a) => m.update(&a.ip().octets()),
    }
    m.update(&peer.port().to_be_bytes());
    m
}

fn window_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() / COOKIE_WINDOW)
        .unwrap_or(0)
}

/// DTLS 1.2 cipher suites, strongest first.
const DTLS_CIPHERS: &str = "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-ECDSA-AES128-GCM-SHA256:\
ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-AES256-GCM-SHA384:ECDHE-RSA-AES128-GCM-SHA256:\
ECDHE-RSA-CHACHA20-POLY1305";

fn build_context(
    cert: &Path,
    key: &Path,
    secret: [u8; 32],
    peer: Index<Ssl, SocketAddr>,
) -> Result<SslContext, CertError> {
    let mut b = SslContext::builder(SslMethod::dtls_server()).map_err(setup_err)?;
    b.set_min_proto_version(Some(SslVersion::DTLS1_2))
        .map_err(setup_err)?;
    // Forward-secret AEAD suites only, the set rustls offers over TLS 1.2:
    // OpenSSL's DEFAULT adds static-RSA key exchange and CBC-SHA1 (F22).
    b.set_cipher_list(DTLS_CIPHERS).map_err(setup_err)?;
    b.set_certificate_chain_file(cert)
        .map_err(|e| file_err(cert, e))?;
    b.set_private_key_file(key, SslFiletype::PEM)
        .map_err(|e| file_err(key, e))?;
    b.check_private_key()
        .map_err(|e| mismatch_err(cert, key, e))?;
    // NO_QUERY_MTU: the MTU is ours (the BIO is a queue, not a socket).
    b.set_options(SslOptions::NO_QUERY_MTU | SslOptions::NO_TICKET);
    b.set_alpn_select_callback(|_, offered| {
        // RFC 7443: confirm "stun.turn" (length-prefixed) when offered;
        // otherwise go on without ALPN, as over TLS.
        openssl::ssl::select_next_proto(b"\x09stun.turn", offered).ok_or(AlpnError::NOACK)
    });
    b.set_cookie_generate_cb(move |ssl, out| {
        let Some(&p) = ssl.ex_data(peer) else {
            return Err(openssl::error::ErrorStack::get());
        };
        let mac = cookie(&secret, window_now(), p).finalize().into_bytes();
        out[..mac.len()].copy_from_slice(&mac);
        Ok(mac.len())
    });
    b.set_cookie_verify_cb(move |ssl, presented| {
        // Called by DTLSv1_listen and again when the session reads the
        // buffered ClientHello: the address travels in the SSL's ex_data.
        let Some(&p) = ssl.ex_data(peer) else {
            return false;
        };
        let now = window_now();
        [now, now.wrapping_sub(1)]
            .into_iter()
            .any(|w| cookie(&secret, w, p).verify_slice(presented).is_ok())
    });
    Ok(b.build())
}

impl Dtls {
    /// Builds the DTLS context from the same PEM files as TLS.
    pub fn load(cert: &Path, key: &Path, max_half_open: usize) -> Result<Dtls, CertError> {
        let mut secret = [0u8; 32];
        getrandom::fill(&mut secret).map_err(setup_err)?;
        let peer = Ssl::new_ex_index::<SocketAddr>().map_err(setup_err)?;
        let ctx = build_context(cert, key, secret, peer)?;
        Ok(Dtls {
            cert: cert.to_path_buf(),
            key: key.to_path_buf(),
            secret,
            peer,
            ctx: RwLock::new((0, ctx)),
            half_open: Default::default(),
            max_half_open,
            per_source_half_open: half_open_share(max_half_open),
        })
    }

    /// Reads the files again into a context not yet served; see
    /// [`Dtls::install`]. The cookie secret stays, so cookies handed out
    /// before a reload still verify.
    pub fn prepare_reload(&self) -> Result<SslContext, CertError> {
        build_context(&self.cert, &self.key, self.secret, self.peer)
    }

    /// Serves `ctx` to new handshakes; sessions keep theirs.
    pub fn install(&self, ctx: SslContext) {
        let mut cur = self.ctx.write().unwrap_or_else(|e| e.into_inner());
        *cur = (cur.0 + 1, ctx);
    }

    fn current(&self) -> (u64, SslContext) {
        self.ctx.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Handshakes past the cookie exchange and not finished, all workers.
    pub fn half_open(&self) -> usize {
        lock(&self.half_open).total
    }

    fn take_half_open(&self, ip: IpAddr) -> Option<HalfOpen> {
        let key = source_key(ip);
        let mut c = lock(&self.half_open);
        if c.total >= self.max_half_open {
            return None;
        }
        let n = c.per_source.entry(key).or_insert(0);
        if *n >= self.per_source_half_open {
            return None;
        }
        *n += 1;
        c.total += 1;
        Some(HalfOpen {
            counts: self.half_open.clone(),
            key,
        })
    }
}

impl Serves for Dtls {
    fn prepare(&self, files: &CertFiles) -> Result<Install<'_>, CertError> {
        let ctx = build_context(&files.cert, &files.key, self.secret, self.peer)?;
        Ok(Box::new(move || self.install(ctx)))
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// One slot of the half-open cap, given back on drop.
struct HalfOpen {
    counts: Arc<Mutex<HalfOpenCounts>>,
    key: IpAddr,
}

impl Drop for HalfOpen {
    fn drop(&mut self) {
        let mut c = lock(&self.counts);
        c.total -= 1;
        if let Some(n) = c.per_source.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                c.per_source.remove(&self.key);
            }
        }
    }
}

/// Whether a datagram is a DTLS record (RFC 7983 demultiplexing: first
/// byte 20-63); STUN starts 0-3 and ChannelData 64-79.
pub fn is_dtls(d: &[u8]) -> bool {
    matches!(d.first(), Some(20..=63))
}

/// A plaintext handshake record of epoch 0 carrying a ClientHello.
pub fn is_client_hello(d: &[u8]) -> bool {
    d.len() >= 13 + 12 && d[0] == 22 && d[1] == 0xfe && d[3] == 0 && d[4] == 0 && d[13] == 1
}

/// The stateless cookie exchange of one worker. One listener SSL serves
/// every unknown peer; it holds nothing between datagrams that is not
/// cleared by the next `DTLSv1_listen`.
pub struct Gate {
    dtls: Arc<Dtls>,
    /// The connection caps DTLS sessions share with TCP and TLS.
    limits: Arc<ConnLimits>,
    generation: u64,
    listener: Option<SslStream<DgramIo>>,
    addr: *mut BioAddr,
}

impl Drop for Gate {
    fn drop(&mut self) {
        if !self.addr.is_null() {
            // SAFETY: allocated by BIO_ADDR_new and freed once, here.
            unsafe { BIO_ADDR_free(self.addr) };
        }
    }
}

fn new_listener(ctx: &SslContext) -> Option<SslStream<DgramIo>> {
    let mut ssl = Ssl::new(ctx).ok()?;
    // With NO_QUERY_MTU the MTU survives the SSL_clear DTLSv1_listen does.
    ssl.set_mtu(MTU).ok()?;
    ssl.set_accept_state();
    SslStream::new(ssl, DgramIo::default()).ok()
}

impl Gate {
    pub fn new(dtls: Arc<Dtls>, limits: Arc<ConnLimits>) -> Gate {
        // SAFETY: plain allocation; null is handled by offer() and drop.
        let addr = unsafe { BIO_ADDR_new() };
        Gate {
            dtls,
            limits,
            generation: u64::MAX,
            listener: None,
            addr,
        }
    }

    /// Runs the cookie exchange on a ClientHello from `from`. Answers
    /// (HelloVerifyRequests) are appended to `out`. Returns a session when
    /// the cookie is valid and the connection caps and the half-open cap
    /// (with `from`'s share of it) have room; otherwise nothing about
    /// `from` is kept. A client restarting on the same address hands over
    /// its old session (`replacing`) and its connection slot with it.
    pub fn offer(
        &mut self,
        now: Instant,
        from: SocketAddr,
        datagram: &[u8],
        handshake_timeout: Duration,
        mut replacing: Option<&mut Session>,
        out: &mut Vec<Vec<u8>>,
    ) -> Option<Session> {
        if !is_client_hello(datagram) || self.addr.is_null() {
            return None;
        }
        let (generation, ctx) = self.dtls.current();
        if generation != self.generation || self.listener.is_none() {
            self.listener = new_listener(&ctx);
            self.generation = generation;
        }
        let listener = self.listener.as_mut()?;
        listener.get_mut().inbox.push_back(datagram.to_vec());
        // SAFETY: the stream is borrowed mutably, so no other reference to
        // its SSL exists; SslStream only lacks an ssl_mut().
        unsafe { SslRef::from_ptr_mut(listener.ssl().as_ptr()) }.set_ex_data(self.dtls.peer, from);
        // SAFETY: a valid SSL in accept state whose BIO is our queue, and a
        // valid BIO_ADDR it may write the peer into.
        let r = unsafe { DTLSv1_listen(listener.ssl().as_ptr(), self.addr) };
        listener.get_mut().inbox.clear();
        out.append(&mut listener.get_mut().outbox);
        if r <= 0 {
            if r < 0 {
                // Drop OpenSSL's error queue and start from a clean SSL.
                let _ = openssl::error::ErrorStack::get();
                self.listener = None;
            }
            return None;
        }
        // The cookie is valid: this SSL, with the ClientHello buffered,
        // becomes the peer's session, if the caps allow. Checked before
        // any key exchange work is done for it.
        let stream = self.listener.take()?;
        let Some(half_open) = self.dtls.take_half_open(from.ip()) else {
            tracing::debug!("dtls {from} refused: half-open cap");
            return None;
        };
        let conn = match replacing.as_mut().and_then(|old| old.conn.take()) {
            Some(slot) => slot,
            None => match self.limits.acquire(from.ip()) {
                Ok(slot) => slot,
                Err(cap) => {
                    tracing::debug!("dtls {from} refused: {cap:?} connection cap");
                    return None;
                }
            },
        };
        let mut session = Session {
            stream,
            half_open: Some(half_open),
            deadline: now + handshake_timeout,
            quiet: handshake_timeout,
            greeted: false,
            last_seen: now,
            conn: Some(conn),
            allocated: false,
        };
        match session.advance(&mut Vec::new()) {
            Ok(()) => {
                // A new session owns no allocation yet.
                session.set_allocated(false);
                Some(session)
            }
            Err(_) => {
                // Send the alert (a DTLS 1.0 ClientHello gets
                // protocol_version), so the client fails now, not at its
                // timeout.
                out.extend(session.outgoing());
                // A failed restart leaves the old session its slot: it
                // must never run uncounted.
                if let Some(old) = replacing {
                    old.conn = session.conn.take();
                }
                None
            }
        }
    }
}

/// Why a session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// The peer sent close_notify.
    Closed,
    /// A fatal alert, a failed handshake or too many retransmissions.
    Failed,
    /// No handshake and first message before the deadline, or idle.
    TimedOut,
}

/// One peer's DTLS session, handshaking or established.
pub struct Session {
    stream: SslStream<DgramIo>,
    half_open: Option<HalfOpen>,
    /// Handshake and first application message must be done by then.
    deadline: Instant,
    /// Without an allocation, a session silent this long is dropped.
    quiet: Duration,
    greeted: bool,
    last_seen: Instant,
    /// Its place in the connection caps (handed to a session that
    /// replaces it).
    conn: Option<ConnSlot>,
    allocated: bool,
}

impl Session {
    /// Whether the handshake has finished.
    pub fn is_established(&self) -> bool {
        self.half_open.is_none()
    }

    /// The server name (SNI) the client's ClientHello named, if any.
    pub fn server_name(&self) -> Option<&str> {
        self.stream
            .ssl()
            .servername(openssl::ssl::NameType::HOST_NAME)
    }

    /// The client gained (true) or lost its allocation: it moves out of
    /// (or back into) the smaller share of sessions without one, and its
    /// idle limit is the long one (or `handshake_timeout`).
    pub fn set_allocated(&mut self, allocated: bool) {
        self.allocated = allocated;
        if let Some(c) = &mut self.conn {
            if allocated {
                c.bind();
            } else {
                c.unbind();
            }
        }
    }

    /// Feeds one datagram; decrypted messages are appended to `plain`.
    pub fn input(
        &mut self,
        now: Instant,
        datagram: &[u8],
        plain: &mut Vec<Vec<u8>>,
    ) -> Result<(), Ended> {
        self.last_seen = now;
        self.stream.get_mut().inbox.push_back(datagram.to_vec());
        self.advance(plain)
    }

    fn advance(&mut self, plain: &mut Vec<Vec<u8>>) -> Result<(), Ended> {
        if self.half_open.is_some() {
            match self.stream.accept() {
                Ok(()) => self.half_open = None,
                Err(e) if e.code() == ErrorCode::WANT_READ => return Ok(()),
                Err(e) => {
                    tracing::debug!("dtls handshake failed: {e}");
                    return Err(Ended::Failed);
                }
            }
        }
        let mut buf = [0u8; 65_536];
        loop {
            match self.stream.ssl_read(&mut buf) {
                Ok(n) => {
                    self.greeted = true;
                    plain.push(buf[..n].to_vec());
                }
                Err(e) if e.code() == ErrorCode::WANT_READ => return Ok(()),
                Err(e) if e.code() == ErrorCode::ZERO_RETURN => {
                    let _ = self.stream.shutdown();
                    return Err(Ended::Closed);
                }
                Err(e) => {
                    tracing::debug!("dtls read failed: {e}");
                    return Err(Ended::Failed);
                }
            }
        }
    }

    /// Encrypts one message as one record. False when the session cannot
    /// send (not established or failed).
    pub fn send(&mut self, data: &[u8]) -> bool {
        self.is_established() && self.stream.ssl_write(data).is_ok()
    }

    /// Datagrams to send to the peer, oldest first.
    pub fn outgoing(&mut self) -> std::vec::Drain<'_, Vec<u8>> {
        self.stream.get_mut().outbox.drain(..)
    }

    /// Fires OpenSSL's retransmission timer when due and enforces the
    /// handshake deadline and the idle limit: `idle` with an allocation,
    /// the handshake timeout without one.
    pub fn tick(&mut self, now: Instant, idle: Duration) -> Result<(), Ended> {
        if !self.greeted && now >= self.deadline {
            return Err(Ended::TimedOut);
        }
        let idle = if self.allocated { idle } else { self.quiet };
        if now.saturating_duration_since(self.last_seen) >= idle {
            return Err(Ended::TimedOut);
        }
        if self.half_open.is_some() && self.retransmit_due() {
            // SAFETY: a valid SSL; the ctrl takes no argument.
            let r = unsafe {
                openssl_sys::SSL_ctrl(
                    self.stream.ssl().as_ptr(),
                    DTLS_CTRL_HANDLE_TIMEOUT,
                    0,
                    std::ptr::null_mut(),
                )
            };
            if r < 0 {
                return Err(Ended::Failed);
            }
        }
        Ok(())
    }

    fn retransmit_due(&self) -> bool {
        let mut tv = libc::timeval {
            tv_sec: 0,
            tv_usec: 0,
        };
        // SAFETY: a valid SSL and a timeval it writes into.
        let r = unsafe {
            openssl_sys::SSL_ctrl(
                self.stream.ssl().as_ptr(),
                DTLS_CTRL_GET_TIMEOUT,
                0,
                &mut tv as *mut libc::timeval as *mut libc::c_void,
            )
        };
        r > 0 && tv.tv_sec == 0 && tv.tv_usec == 0
    }
}

#[cfg(test)]
mod tests;

// Debug says what a value is, never its keys or datagrams.
impl std::fmt::Debug for DgramIo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DgramIo")
            .field("inbox", &self.inbox.len())
            .field("outbox", &self.outbox.len())
            .finish()
    }
}

impl std::fmt::Debug for Dtls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dtls")
            .field("cert", &self.cert)
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for Gate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gate")
            .field("generation", &self.generation)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("handshaking", &self.half_open.is_some())
            .field("deadline", &self.deadline)
            .finish_non_exhaustive()
    }
}
