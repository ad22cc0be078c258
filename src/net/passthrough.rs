//! One port for TURN and HTTPS (issue 19): a TLS connection whose
//! ClientHello asks for the web (ALPN `h2` or `http/1.1` and not
//! `stun.turn`, or an SNI named in `tls_passthrough_sni`) is spliced, still
//! encrypted, to `tls_passthrough_to`. The web server keeps its own
//! certificate; turnpike never decrypts that traffic.
//!
//! The ClientHello is read with `peek`, so the bytes stay in the socket for
//! whichever side takes the connection, and parsed by rustls's own
//! [`Acceptor`] on a copy.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_rustls::rustls::server::Acceptor;

use super::tls::ALPN_STUN_TURN;

/// The largest ClientHello read: one TLS record (RFC 8446 §5.1) and its
/// header. A hello that needs more is served as TURN, and rustls decides.
const MAX_HELLO: usize = 16 * 1024 + 5;

/// How long to wait before peeking again when no new byte has come.
const PEEK_AGAIN: Duration = Duration::from_millis(5);

/// Where web connections go, and which ones they are.
#[derive(Debug, Clone)]
pub(crate) struct Passthrough {
    /// `tls_passthrough_to`, as configured (resolved per connection, so a
    /// backend's DNS change needs no restart).
    pub(crate) to: String,
    /// `tls_passthrough_sni`, lower-case.
    pub(crate) sni: Vec<String>,
    /// `tls_passthrough_proxy_protocol`: the backend first gets a PROXY
    /// header naming the real client.
    pub(crate) proxy_protocol: bool,
    /// `tls_passthrough_idle_timeout`: a splice with no byte either way
    /// for this long ends (a client cannot hold its slot by going quiet).
    pub(crate) idle: Duration,
}

/// What a ClientHello says about where it wants to go.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Hello {
    pub(crate) sni: Option<String>,
    pub(crate) alpn: Vec<Vec<u8>>,
}

impl Passthrough {
    /// Whether a connection that said `hello` goes to the web server.
    pub(crate) fn wants(&self, hello: &Hello) -> bool {
        if let Some(sni) = &hello.sni {
            let sni = sni.to_ascii_lowercase();
            if self.sni.contains(&sni) {
                return true;
            }
        }
        let web = hello
            .alpn
            .iter()
            .any(|p| p.as_slice() == b"h2" || p.as_slice() == b"http/1.1");
        let turn = hello.alpn.iter().any(|p| p.as_slice() == ALPN_STUN_TURN);
        web && !turn
    }
}

/// Parses a ClientHello from the start of `bytes`: `Ok(None)` while more
/// bytes are needed, `Err(())` when they are not a ClientHello.
pub(crate) fn parse_hello(bytes: &[u8]) -> Result<Option<Hello>, ()> {
    let mut acceptor = Acceptor::default();
    let mut rd = bytes;
    // The acceptor reads at most what it buffers; a hello of one record
    // fits in a single call.
    while !rd.is_empty() {
        match acceptor.read_tls(&mut rd) {
            Ok(0) => break,
            Ok(_) => {}
            Err(_) => return Err(()),
        }
    }
    match acceptor.accept() {
        Ok(Some(accepted)) => {
            let ch = accepted.client_hello();
            Ok(Some(Hello {
                sni: ch.server_name().map(str::to_owned),
                alpn: ch
                    .alpn()
                    .map(|list| list.map(<[u8]>::to_vec).collect())
                    .unwrap_or_default(),
            }))
        }
        Ok(None) => Ok(None),
        Err(_) => Err(()),
    }
}

/// Peeks at `stream` until its ClientHello is whole, `deadline` passes, or
/// the bytes cannot be one. `None`: not decided (serve as TURN and let the
/// TLS handshake judge).
pub(crate) async fn peek_hello(
    stream: &TcpStream,
    deadline: tokio::time::Instant,
) -> Option<Hello> {
    let mut buf = vec![0u8; MAX_HELLO];
    let mut seen = 0;
    loop {
        let n = match tokio::time::timeout_at(deadline, stream.peek(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => return None,
            Ok(Ok(n)) => n,
        };
        if n > seen {
            seen = n;
            match parse_hello(&buf[..n]) {
                Ok(Some(hello)) => return Some(hello),
                Ok(None) if n < buf.len() => {}
                _ => return None,
            }
        }
        // peek returns at once while any byte waits, new or not: pause
        // instead of spinning until the rest of the hello comes.
        if tokio::time::timeout_at(deadline, tokio::time::sleep(PEEK_AGAIN))
            .await
            .is_err()
        {
            return None;
        }
    }
}

/// A PROXY protocol v1 header (the text form every proxy-aware web server
/// reads) naming `client` and `local`.
pub(crate) fn proxy_v1_header(client: SocketAddr, local: SocketAddr) -> String {
    let (client, local) = (canonical(client), canonical(local));
    let family = if client.is_ipv4() && local.is_ipv4() {
        "TCP4"
    } else {
        "TCP6"
    };
    let ip = |a: SocketAddr| match (family, a) {
        ("TCP6", SocketAddr::V4(v4)) => v4.ip().to_ipv6_mapped().to_string(),
        _ => a.ip().to_string(),
    };
    format!(
        "PROXY {family} {} {} {} {}\r\n",
        ip(client),
        ip(local),
        client.port(),
        local.port()
    )
}

fn canonical(a: SocketAddr) -> SocketAddr {
    SocketAddr::new(a.ip().to_canonical(), a.port())
}

/// Splices `client` to the backend until either side closes or neither
/// sends a byte for `idle`. `header`: what to send the backend first (a
/// PROXY header), if anything.
pub(crate) async fn splice(
    client: TcpStream,
    to: &str,
    header: Option<Vec<u8>>,
    connect_within: Duration,
    idle: Duration,
) -> std::io::Result<(u64, u64)> {
    let mut backend = tokio::time::timeout(connect_within, TcpStream::connect(to))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out"))??;
    let _ = backend.set_nodelay(true);
    if let Some(h) = header {
        backend.write_all(&h).await?;
    }
    copy_until_idle(client, backend, idle).await
}

/// `copy_bidirectional` that gives up when no byte came from either side
/// for `idle` (what nginx's `proxy_timeout` does for its stream proxy).
pub(crate) async fn copy_until_idle<A, B>(a: A, b: B, idle: Duration) -> std::io::Result<(u64, u64)>
where
    A: AsyncRead + AsyncWrite + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
{
    let start = Instant::now();
    let last = AtomicU64::new(0);
    let mut a = Noted {
        inner: a,
        start,
        last: &last,
    };
    let mut b = Noted {
        inner: b,
        start,
        last: &last,
    };
    let copy = tokio::io::copy_bidirectional(&mut a, &mut b);
    tokio::pin!(copy);
    loop {
        let quiet = start
            .elapsed()
            .saturating_sub(Duration::from_millis(last.load(Relaxed)));
        if quiet >= idle {
            return Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "idle"));
        }
        tokio::select! {
            done = &mut copy => return done,
            _ = tokio::time::sleep(idle - quiet) => {}
        }
    }
}

/// A stream that notes when it last read a byte (milliseconds since
/// `start`, shared by both sides of a splice).
struct Noted<'a, S> {
    inner: S,
    start: Instant,
    last: &'a AtomicU64,
}

impl<S: AsyncRead + Unpin> AsyncRead for Noted<'_, S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            let ms = self.start.elapsed().as_millis() as u64;
            self.last.store(ms, Relaxed);
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Noted<'_, S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, data)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use tokio_rustls::rustls::{self, pki_types::ServerName, ClientConfig, RootCertStore};

    /// A real ClientHello from rustls's client with this SNI and ALPN.
    fn hello_bytes(sni: &str, alpn: &[&[u8]]) -> Vec<u8> {
        let mut config =
            ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_root_certificates(RootCertStore::empty())
                .with_no_client_auth();
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        let name = ServerName::try_from(sni.to_string()).unwrap();
        let mut conn = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
        let mut out = Vec::new();
        conn.write_tls(&mut out).unwrap();
        out
    }

    fn rules(sni: &[&str]) -> Passthrough {
        Passthrough {
            to: "127.0.0.1:8443".into(),
            sni: sni.iter().map(|s| s.to_string()).collect(),
            proxy_protocol: false,
            idle: Duration::from_secs(600),
        }
    }

    #[test]
    fn web_alpn_or_a_named_sni_passes_through_and_turn_stays() {
        let p = rules(&["www.example.org"]);
        let judge = |sni: &str, alpn: &[&[u8]]| {
            let hello = parse_hello(&hello_bytes(sni, alpn)).unwrap().unwrap();
            assert_eq!(
                hello.sni.as_ref().map(|n| n.to_ascii_lowercase()),
                Some(sni.to_ascii_lowercase())
            );
            p.wants(&hello)
        };
        assert!(judge("turn.example.org", &[b"h2", b"http/1.1"]));
        assert!(judge("turn.example.org", &[b"http/1.1"]));
        assert!(!judge("turn.example.org", &[b"h2", b"stun.turn"]));
        assert!(!judge("turn.example.org", &[b"stun.turn"]));
        assert!(!judge("turn.example.org", &[]), "no ALPN: TURN, as uclient");
        assert!(!judge("turn.example.org", &[b"acme-tls/1"]));
        assert!(judge("WWW.example.org", &[]), "SNI named, any case");
        assert!(judge("www.example.org", &[b"stun.turn"]), "SNI wins");
    }

    #[test]
    fn a_partial_hello_asks_for_more_and_other_bytes_are_refused() {
        let bytes = hello_bytes("a.example", &[b"h2"]);
        for cut in [1, 5, 6, bytes.len() / 2, bytes.len() - 1] {
            assert_eq!(parse_hello(&bytes[..cut]), Ok(None), "cut at {cut}");
        }
        assert!(parse_hello(&bytes).unwrap().is_some());
        assert_eq!(parse_hello(b"GET / HTTP/1.1\r\n\r\n"), Err(()));
        // A STUN Binding header is not a hello either.
        let stun = [
            0u8, 1, 0, 0, 0x21, 0x12, 0xa4, 0x42, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12,
        ];
        assert_eq!(parse_hello(&stun), Err(()));
    }

    #[test]
    fn proxy_v1_headers_name_the_client_first() {
        let c: SocketAddr = "192.0.2.7:51000".parse().unwrap();
        let l: SocketAddr = "198.51.100.1:443".parse().unwrap();
        assert_eq!(
            proxy_v1_header(c, l),
            "PROXY TCP4 192.0.2.7 198.51.100.1 51000 443\r\n"
        );
        let c6: SocketAddr = "[2001:db8::7]:51000".parse().unwrap();
        let l6: SocketAddr = "[2001:db8::1]:443".parse().unwrap();
        assert_eq!(
            proxy_v1_header(c6, l6),
            "PROXY TCP6 2001:db8::7 2001:db8::1 51000 443\r\n"
        );
        let mapped: SocketAddr = "[::ffff:192.0.2.7]:51000".parse().unwrap();
        assert!(proxy_v1_header(mapped, l).starts_with("PROXY TCP4 192.0.2.7 "));
        assert_eq!(
            proxy_v1_header(c, l6),
            "PROXY TCP6 ::ffff:192.0.2.7 2001:db8::1 51000 443\r\n"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_splice_lives_while_bytes_flow_and_ends_after_idle_quiet() {
        use tokio::io::{duplex, AsyncReadExt};
        let (mut client, a) = duplex(1024);
        let (b, mut backend) = duplex(1024);
        let start = Instant::now();
        let splice = tokio::spawn(copy_until_idle(a, b, Duration::from_secs(600)));
        // A byte every 500 s, one way then the other, for 4,000 s: each
        // resets the clock.
        let mut byte = [0u8];
        for i in 0..8 {
            tokio::time::sleep(Duration::from_secs(500)).await;
            if i % 2 == 0 {
                client.write_all(b"x").await.unwrap();
                backend.read_exact(&mut byte).await.unwrap();
            } else {
                backend.write_all(b"y").await.unwrap();
                client.read_exact(&mut byte).await.unwrap();
            }
        }
        tokio::task::yield_now().await;
        assert!(!splice.is_finished(), "bytes flowed within every 600 s");
        // Then nothing: it ends 600 s after the last byte, closing both.
        let ended = splice.await.unwrap();
        assert_eq!(ended.unwrap_err().kind(), std::io::ErrorKind::TimedOut);
        let took = start.elapsed().as_secs();
        assert_eq!(took, 4_600, "600 s after the last byte");
        assert_eq!(client.read(&mut byte).await.unwrap(), 0);
        assert_eq!(backend.read(&mut byte).await.unwrap(), 0);
    }
}
