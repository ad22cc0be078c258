//! PROXY protocol v1 (text) and v2 (binary), HAProxy's
//! `proxy-protocol.txt`, on TCP and TLS listeners: a connection from a
//! proxy in `proxy_protocol_from` starts with a header naming the real
//! client, which is then the client everywhere.
//!
//! The header is read exactly: bytes are peeked, and only the header's own
//! are consumed, so the TLS/STUN sniff after it sees the client's first
//! byte. Its size is bounded (v1: 107 bytes by the spec; v2: 16 plus its
//! length field, refused above [`V2_MAX`]). `ppp` parses the bytes.
//!
//! A v2 LOCAL header (the proxy's own health check), a v1 `UNKNOWN` one,
//! and a v2 PROXY header with an unspecified or UNIX address family carry
//! no client address: the spec says to use the connection's own, so the
//! connection is served as the proxy's. A v2 header for a datagram
//! client is refused: a stream cannot carry one.

use std::net::{IpAddr, SocketAddr};

use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

/// The longest v1 header, CRLF included (the spec's bound).
pub(crate) const V1_MAX: usize = 107;
/// The longest v2 header accepted: the 16-byte fixed part, the largest
/// address block (two UNIX paths, 216 bytes) and room for TLVs.
pub(crate) const V2_MAX: usize = 536;
const V1_PREFIX: &[u8] = b"PROXY ";
const V2_SIGNATURE: &[u8] = b"\r\n\r\n\0\r\nQUIT\n";
const V2_FIXED: usize = 16;

/// What a header says about the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Header {
    /// The real client's transport address.
    Client(SocketAddr),
    /// No client address (LOCAL, UNKNOWN): the proxy's own connection.
    Local,
}

/// Why a connection from a trusted proxy was closed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum HeaderError {
    #[error("no PROXY header")]
    Missing,
    #[error("PROXY header longer than {0} bytes")]
    TooLong(usize),
    #[error("bad PROXY header: {0}")]
    Invalid(String),
    #[error("PROXY header names a datagram client")]
    Datagram,
    #[error("closed before the PROXY header ended")]
    Closed,
    #[error("reading the PROXY header: {0}")]
    Io(String),
}

/// The length of the header at the front of `buf`: `Ok(None)` while more
/// bytes are needed to tell, an error as soon as they cannot be one.
pub(crate) fn header_len(buf: &[u8]) -> Result<Option<usize>, HeaderError> {
    let seen =
        |prefix: &[u8]| buf[..buf.len().min(prefix.len())] == prefix[..buf.len().min(prefix.len())];
    if buf.is_empty() {
        return Ok(None);
    }
    if seen(V2_SIGNATURE) {
        if buf.len() < V2_FIXED {
            return Ok(None);
        }
        let total = V2_FIXED + usize::from(u16::from_be_bytes([buf[14], buf[15]]));
        if total > V2_MAX {
            return Err(HeaderError::TooLong(V2_MAX));
        }
        return Ok(Some(total));
    }
    if !seen(V1_PREFIX) {
        return Err(HeaderError::Missing);
    }
    let window = &buf[..buf.len().min(V1_MAX)];
    if let Some(cr) = window.iter().position(|&b| b == b'\r') {
        return match window.get(cr + 1) {
            Some(b'\n') => Ok(Some(cr + 2)),
            Some(_) => Err(HeaderError::Invalid("CR without LF".into())),
            None if cr + 1 >= V1_MAX => Err(HeaderError::TooLong(V1_MAX)),
            None => Ok(None),
        };
    }
    if buf.len() >= V1_MAX {
        return Err(HeaderError::TooLong(V1_MAX));
    }
    Ok(None)
}

/// Reads a whole header, `bytes` being exactly its [`header_len`].
pub(crate) fn parse(bytes: &[u8]) -> Result<Header, HeaderError> {
    let invalid = |e: &dyn std::fmt::Display| HeaderError::Invalid(e.to_string());
    if bytes.starts_with(V2_SIGNATURE) {
        use ppp::v2;
        let h = v2::Header::try_from(bytes).map_err(|e| invalid(&e))?;
        if h.command == v2::Command::Local {
            return Ok(Header::Local);
        }
        if h.protocol == v2::Protocol::Datagram {
            return Err(HeaderError::Datagram);
        }
        return Ok(match h.addresses {
            v2::Addresses::IPv4(a) => client(a.source_address.into(), a.source_port),
            v2::Addresses::IPv6(a) => client(a.source_address.into(), a.source_port),
            v2::Addresses::Unspecified | v2::Addresses::Unix(_) => Header::Local,
        });
    }
    use ppp::v1;
    let h = v1::Header::try_from(bytes).map_err(|e| invalid(&e))?;
    if h.header.len() != bytes.len() {
        return Err(HeaderError::Invalid("bytes after the CRLF".into()));
    }
    Ok(match h.addresses {
        v1::Addresses::Tcp4(a) => client(a.source_address.into(), a.source_port),
        v1::Addresses::Tcp6(a) => client(a.source_address.into(), a.source_port),
        v1::Addresses::Unknown => Header::Local,
    })
}

/// An IPv4 client written as IPv4-mapped IPv6 is the IPv4 client.
fn client(ip: IpAddr, port: u16) -> Header {
    Header::Client(SocketAddr::new(ip.to_canonical(), port))
}

/// Reads the header from a fresh connection, consuming its bytes and no
/// others. The caller bounds the time.
pub(crate) async fn read_header(stream: &mut TcpStream) -> Result<Header, HeaderError> {
    let io = |e: std::io::Error| HeaderError::Io(e.to_string());
    let mut buf = [0u8; V2_MAX];
    let mut have = 0;
    loop {
        let n = stream.peek(&mut buf[have..]).await.map_err(io)?;
        if n == 0 {
            return Err(HeaderError::Closed);
        }
        match header_len(&buf[..have + n])? {
            Some(total) => {
                stream.read_exact(&mut buf[have..total]).await.map_err(io)?;
                return parse(&buf[..total]);
            }
            // Every byte seen belongs to the unfinished header: take them,
            // so the next peek waits for new ones.
            None => {
                stream
                    .read_exact(&mut buf[have..have + n])
                    .await
                    .map_err(io)?;
                have += n;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ppp::v2::{Builder, Command, Protocol, Version};

    fn v2(command: Command, protocol: Protocol, addrs: Option<(&str, &str)>) -> Vec<u8> {
        let b = Builder::with_addresses(
            Version::Two | command,
            protocol,
            match addrs {
                Some((s, d)) => ppp::v2::Addresses::from((
                    s.parse::<SocketAddr>().unwrap(),
                    d.parse::<SocketAddr>().unwrap(),
                )),
                None => ppp::v2::Addresses::Unspecified,
            },
        );
        b.build().unwrap()
    }

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    /// header_len on every prefix of `h` (more needed, or already the
    /// whole length: v2 says it after 16 bytes), then on `h` with data
    /// after it.
    fn frames_exactly(h: &[u8]) {
        for cut in 0..h.len() {
            let r = header_len(&h[..cut]);
            assert!(
                r == Ok(None) || r == Ok(Some(h.len())),
                "cut at {cut}: {r:?}"
            );
        }
        let mut more = h.to_vec();
        more.extend_from_slice(&[0x16, 0x03, 0x01, 0x00, 0x01, 0x00]);
        assert_eq!(header_len(&more), Ok(Some(h.len())));
    }

    #[test]
    fn v1_tcp4_and_tcp6_name_the_client() {
        let h = b"PROXY TCP4 127.0.0.5 127.0.0.1 40000 3478\r\n";
        frames_exactly(h);
        assert_eq!(parse(h), Ok(Header::Client(sa("127.0.0.5:40000"))));
        let h6 = b"PROXY TCP6 2001:db8::7 2001:db8::1 5000 443\r\n";
        frames_exactly(h6);
        assert_eq!(parse(h6), Ok(Header::Client(sa("[2001:db8::7]:5000"))));
        // An IPv4 client through an IPv6 proxy socket is the IPv4 client.
        let mapped = b"PROXY TCP6 ::ffff:192.0.2.1 ::1 5000 443\r\n";
        assert_eq!(parse(mapped), Ok(Header::Client(sa("192.0.2.1:5000"))));
    }

    #[test]
    fn v1_unknown_is_the_proxys_own_connection() {
        let h = b"PROXY UNKNOWN\r\n";
        frames_exactly(h);
        assert_eq!(parse(h), Ok(Header::Local));
        let longer = b"PROXY UNKNOWN ffff:f...f:ffff ffff:f...f:ffff 65535 65535\r\n";
        assert_eq!(parse(longer), Ok(Header::Local));
    }

    #[test]
    fn v1_longer_than_107_bytes_or_malformed_is_refused() {
        // The longest legal header is 107 bytes, CRLF included.
        let mut long = b"PROXY TCP6 ".to_vec();
        long.resize(V1_MAX, b'1');
        assert_eq!(header_len(&long), Err(HeaderError::TooLong(V1_MAX)));
        let mut cr_last = long[..V1_MAX - 1].to_vec();
        cr_last.push(b'\r');
        assert_eq!(header_len(&cr_last), Err(HeaderError::TooLong(V1_MAX)));
        assert!(matches!(
            header_len(b"PROXY TCP4 1.2.3.4\rX"),
            Err(HeaderError::Invalid(_))
        ));
        for bad in [
            &b"PROXY TCP4 1.2.3.4 5.6.7.8 1 \r\n"[..],
            b"PROXY TCP4 1.2.3.4 5.6.7.8 99999 1\r\n",
            b"PROXY TCP4 ::1 ::1 1 1\r\n",
            b"PROXY UDP4 1.2.3.4 5.6.7.8 1 2\r\n",
            b"PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n",
        ] {
            let n = header_len(bad).unwrap().unwrap();
            assert!(
                matches!(parse(&bad[..n]), Err(HeaderError::Invalid(_))),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn anything_else_is_not_a_header() {
        // STUN, TLS, ChannelData, or "GET": refused at the first byte that
        // cannot start a header.
        for first in [&[0x00, 0x01][..], &[0x16, 0x03], &[0x40, 0x00], b"GET /"] {
            assert_eq!(header_len(first), Err(HeaderError::Missing), "{first:?}");
        }
        assert_eq!(header_len(b"PROX"), Ok(None));
        assert_eq!(header_len(b"PROXX"), Err(HeaderError::Missing));
        assert_eq!(header_len(b"\r\n\r\n\0\r\nQUIX"), Err(HeaderError::Missing));
    }

    #[test]
    fn v2_ipv4_and_ipv6_name_the_client() {
        let h = v2(
            Command::Proxy,
            Protocol::Stream,
            Some(("127.0.0.5:40000", "127.0.0.1:3478")),
        );
        assert_eq!(h.len(), 28);
        frames_exactly(&h);
        assert_eq!(parse(&h), Ok(Header::Client(sa("127.0.0.5:40000"))));
        let h6 = v2(
            Command::Proxy,
            Protocol::Stream,
            Some(("[2001:db8::7]:5000", "[2001:db8::1]:443")),
        );
        assert_eq!(h6.len(), 52);
        frames_exactly(&h6);
        assert_eq!(parse(&h6), Ok(Header::Client(sa("[2001:db8::7]:5000"))));
    }

    #[test]
    fn v2_local_and_unspecified_are_the_proxys_own_connection() {
        // HAProxy's health checks send LOCAL with no addresses.
        let local = v2(Command::Local, Protocol::Unspecified, None);
        assert_eq!(local.len(), 16);
        frames_exactly(&local);
        assert_eq!(parse(&local), Ok(Header::Local));
        // LOCAL with addresses: still ignored, as the spec says.
        let local_addrs = v2(
            Command::Local,
            Protocol::Stream,
            Some(("10.0.0.1:1", "10.0.0.2:2")),
        );
        assert_eq!(parse(&local_addrs), Ok(Header::Local));
        let unspec = v2(Command::Proxy, Protocol::Unspecified, None);
        assert_eq!(parse(&unspec), Ok(Header::Local));
    }

    #[test]
    fn v2_with_tlvs_is_read_whole_and_a_datagram_client_is_refused() {
        let h = Builder::with_addresses(
            Version::Two | Command::Proxy,
            Protocol::Stream,
            (sa("192.0.2.1:1000"), sa("192.0.2.2:443")),
        )
        .write_tlv(ppp::v2::Type::NoOp, &[0u8; 40])
        .unwrap()
        .build()
        .unwrap();
        assert_eq!(h.len(), 16 + 12 + 3 + 40);
        frames_exactly(&h);
        assert_eq!(parse(&h), Ok(Header::Client(sa("192.0.2.1:1000"))));
        let udp = v2(
            Command::Proxy,
            Protocol::Datagram,
            Some(("192.0.2.1:1000", "192.0.2.2:443")),
        );
        assert_eq!(parse(&udp), Err(HeaderError::Datagram));
    }

    #[test]
    fn v2_is_bounded_by_its_length_field_and_checked() {
        let mut h = V2_SIGNATURE.to_vec();
        h.extend_from_slice(&[0x21, 0x11]);
        // 16 + 520 is the most accepted.
        h.extend_from_slice(&520u16.to_be_bytes());
        assert_eq!(header_len(&h), Ok(Some(V2_MAX)));
        h[14..16].copy_from_slice(&521u16.to_be_bytes());
        assert_eq!(header_len(&h), Err(HeaderError::TooLong(V2_MAX)));
        h[14..16].copy_from_slice(&u16::MAX.to_be_bytes());
        assert_eq!(header_len(&h), Err(HeaderError::TooLong(V2_MAX)));
        // Too short for its address family, a bad version or command.
        let mut short = V2_SIGNATURE.to_vec();
        short.extend_from_slice(&[0x21, 0x11, 0, 4, 1, 2, 3, 4]);
        assert_eq!(header_len(&short), Ok(Some(20)));
        assert!(matches!(parse(&short), Err(HeaderError::Invalid(_))));
        let mut version = v2(
            Command::Proxy,
            Protocol::Stream,
            Some(("192.0.2.1:1", "192.0.2.2:2")),
        );
        version[12] = 0x11;
        assert!(matches!(parse(&version), Err(HeaderError::Invalid(_))));
        version[12] = 0x2f;
        assert!(matches!(parse(&version), Err(HeaderError::Invalid(_))));
    }

    /// Over a real socket: the header and nothing else is consumed, even
    /// when it arrives in pieces; what follows is still there to peek.
    #[tokio::test]
    async fn read_header_takes_exactly_the_header_bytes() {
        use tokio::io::AsyncWriteExt;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let cases: Vec<(Vec<u8>, Header)> = vec![
            (
                b"PROXY TCP4 127.0.0.5 127.0.0.1 40000 3478\r\n".to_vec(),
                Header::Client(sa("127.0.0.5:40000")),
            ),
            (
                v2(
                    Command::Proxy,
                    Protocol::Stream,
                    Some(("[::5]:7", "[::1]:8")),
                ),
                Header::Client(sa("[::5]:7")),
            ),
        ];
        for (header, want) in cases {
            for split in [1, 5, header.len() - 1] {
                let mut client = TcpStream::connect(addr).await.unwrap();
                let (mut server, _) = listener.accept().await.unwrap();
                client.set_nodelay(true).unwrap();
                let (a, b) = header.split_at(split);
                client.write_all(a).await.unwrap();
                let reader = tokio::spawn(async move {
                    let h = read_header(&mut server).await;
                    (h, server)
                });
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                let mut rest = b.to_vec();
                rest.push(0x16);
                client.write_all(&rest).await.unwrap();
                let (h, server) = reader.await.unwrap();
                assert_eq!(h, Ok(want), "split at {split}");
                let mut first = [0u8; 1];
                server.peek(&mut first).await.unwrap();
                assert_eq!(first[0], 0x16, "the byte after the header is unread");
            }
        }
        // Closed halfway: an error, not a hang.
        let mut client = TcpStream::connect(addr).await.unwrap();
        let (mut server, _) = listener.accept().await.unwrap();
        client.write_all(b"PROXY TCP4 1.2").await.unwrap();
        drop(client);
        assert_eq!(read_header(&mut server).await, Err(HeaderError::Closed));
    }
}
