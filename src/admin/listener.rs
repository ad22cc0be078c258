//! The admin and health listeners' accept side: connections are counted
//! per source address and in total, and one that sends nothing for
//! [`Bounds::idle`] is closed. Without it one host could hold every file
//! descriptor with idle connections (axum's own listener takes all).

use std::collections::HashMap;
use std::future::Future as _;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::{Instant, Sleep};

/// Binds `addr`, bounded by [`BOUNDS`], and serves `app` on it (over TLS
/// with `tls`): the admin, health and self-test listeners alike. Returns
/// the bound address and the serving task, which ends when `shutdown`
/// completes; `what` names the listener in the log.
pub(crate) async fn serve(
    addr: SocketAddr,
    app: axum::Router,
    tls: Option<Arc<tokio_rustls::rustls::ServerConfig>>,
    what: &'static str,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> io::Result<(SocketAddr, Serving)> {
    let listener = TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    let listener = Bounded::new(listener, BOUNDS);
    let app = app.into_make_service_with_connect_info::<ClientAddr>();
    let task: Serving = match tls {
        None => Box::pin(async move {
            let served = axum::serve(listener, app).with_graceful_shutdown(shutdown);
            if let Err(e) = served.await {
                tracing::warn!("{what} stopped: {e}");
            }
        }),
        Some(config) => {
            let listener = super::https::Https::new(listener, config)?;
            Box::pin(async move {
                let served = axum::serve(listener, app).with_graceful_shutdown(shutdown);
                if let Err(e) = served.await {
                    tracing::warn!("{what} stopped: {e}");
                }
            })
        }
    };
    Ok((bound, task))
}

/// A listener's serving task.
pub(crate) type Serving = Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

/// How many connections the listener holds open.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Bounds {
    /// Per source address (an IPv6 /64 counts as one).
    pub per_source: u32,
    pub total: u32,
    /// A connection that sends nothing this long is closed.
    pub idle: Duration,
}

/// Enough for a console, a few scripts and a balancer's probes per host,
/// while a single host cannot exhaust descriptors; an HTTP client reconnects
/// after an idle close.
pub(crate) const BOUNDS: Bounds = Bounds {
    per_source: 64,
    total: 1024,
    idle: Duration::from_secs(30),
};

/// A [`TcpListener`] that refuses connections over its [`Bounds`] by
/// closing them at once.
pub(crate) struct Bounded {
    inner: TcpListener,
    bounds: Bounds,
    counts: Arc<Mutex<Counts>>,
}

#[derive(Debug, Default)]
struct Counts {
    total: u32,
    per_source: HashMap<IpAddr, u32>,
}

impl Bounded {
    pub(crate) fn new(inner: TcpListener, bounds: Bounds) -> Self {
        Bounded {
            inner,
            bounds,
            counts: Arc::default(),
        }
    }

    /// Counts a connection from `from`, or says it is over a bound.
    fn admit(&self, from: IpAddr) -> Option<Slot> {
        let mut c = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        let key = crate::turn::policy::source_key(from);
        let mine = c.per_source.get(&key).copied().unwrap_or(0);
        if c.total >= self.bounds.total || mine >= self.bounds.per_source {
            return None;
        }
        c.total += 1;
        c.per_source.insert(key, mine + 1);
        Some(Slot {
            counts: self.counts.clone(),
            key,
        })
    }
}

/// One admitted connection; dropping it gives the place back.
struct Slot {
    counts: Arc<Mutex<Counts>>,
    key: IpAddr,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut c = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        c.total = c.total.saturating_sub(1);
        if let Some(n) = c.per_source.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                c.per_source.remove(&self.key);
            }
        }
    }
}

impl axum::serve::Listener for Bounded {
    type Io = Limited;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Limited, SocketAddr) {
        let mut refused = 0u64;
        loop {
            let (stream, from) = match self.inner.accept().await {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of descriptors and the like: wait rather than spin
                    // (axum's own listener does the same).
                    tracing::debug!("admin accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            match self.admit(from.ip()) {
                Some(slot) => {
                    let idle = self.bounds.idle;
                    return (
                        Limited {
                            stream,
                            _slot: slot,
                            idle,
                            deadline: Box::pin(tokio::time::sleep(idle)),
                        },
                        from,
                    );
                }
                None => {
                    // Dropping the stream closes it; say so once per burst.
                    refused += 1;
                    if refused == 1 {
                        tracing::debug!("admin listener full for {}: closed", from.ip());
                    }
                }
            }
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }
}

/// An admitted connection: reads end with EOF once nothing came for the
/// idle time, which makes hyper close it.
pub(crate) struct Limited {
    stream: TcpStream,
    _slot: Slot,
    idle: Duration,
    deadline: Pin<Box<Sleep>>,
}

/// The caller's address as routes see it (`ConnectInfo<ClientAddr>`), for
/// the admin API's lockout.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ClientAddr(pub SocketAddr);

impl axum::extract::connect_info::Connected<axum::serve::IncomingStream<'_, Bounded>>
    for ClientAddr
{
    fn connect_info(s: axum::serve::IncomingStream<'_, Bounded>) -> Self {
        ClientAddr(*s.remote_addr())
    }
}

impl AsyncRead for Limited {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        match Pin::new(&mut self.stream).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if buf.filled().len() > before {
                    let next = Instant::now() + self.idle;
                    self.deadline.as_mut().reset(next);
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => match self.deadline.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "idle admin connection",
                ))),
                Poll::Pending => Poll::Pending,
            },
        }
    }
}

impl AsyncWrite for Limited {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::serve::Listener as _;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn listener(bounds: Bounds) -> (Bounded, SocketAddr) {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        (Bounded::new(l, bounds), addr)
    }

    /// Accepts in the background, holding every admitted connection open
    /// and echoing nothing; returns how many were admitted so far.
    fn hold(mut l: Bounded) -> Arc<Mutex<Vec<Limited>>> {
        let held = Arc::new(Mutex::new(Vec::new()));
        let h = held.clone();
        tokio::spawn(async move {
            loop {
                let (io, _) = l.accept().await;
                h.lock().unwrap().push(io);
            }
        });
        held
    }

    /// True when the server closed `s` (EOF) within 500 ms.
    async fn closed(s: &mut TcpStream) -> bool {
        let mut b = [0u8; 1];
        matches!(
            tokio::time::timeout(Duration::from_millis(500), s.read(&mut b)).await,
            Ok(Ok(0)) | Ok(Err(_))
        )
    }

    #[tokio::test]
    async fn one_source_gets_its_share_and_another_source_still_gets_in() {
        let bounds = Bounds {
            per_source: 4,
            total: 6,
            idle: Duration::from_secs(60),
        };
        let (l, addr) = listener(bounds).await;
        let held = hold(l);
        let mut from_one = Vec::new();
        for _ in 0..5 {
            from_one.push(TcpStream::connect(addr).await.unwrap());
        }
        assert!(
            closed(&mut from_one[4]).await,
            "the fifth from one source is closed"
        );
        for s in &mut from_one[..4] {
            assert!(!closed(s).await, "the first four stay open");
        }
        // 127.0.0.2 is another source on loopback.
        let other = || async {
            let s = tokio::net::TcpSocket::new_v4().unwrap();
            s.bind("127.0.0.2:0".parse().unwrap()).unwrap();
            s.connect(addr).await.unwrap()
        };
        let mut a = other().await;
        let mut b = other().await;
        let mut c = other().await;
        assert!(!closed(&mut a).await && !closed(&mut b).await);
        assert!(
            closed(&mut c).await,
            "the total of six holds across sources"
        );
        assert_eq!(held.lock().unwrap().len(), 6);
        // A place comes back when its connection ends.
        held.lock().unwrap().remove(0);
        let mut d = other().await;
        assert!(!closed(&mut d).await, "a freed place is reused");
    }

    #[tokio::test]
    async fn a_silent_connection_is_closed_after_the_idle_time_and_a_talking_one_is_not() {
        let bounds = Bounds {
            per_source: 4,
            total: 4,
            idle: Duration::from_millis(300),
        };
        let (mut l, addr) = listener(bounds).await;
        let mut silent = TcpStream::connect(addr).await.unwrap();
        let (mut io, _) = l.accept().await;
        let mut talking = TcpStream::connect(addr).await.unwrap();
        let (mut io2, _) = l.accept().await;
        let reader = tokio::spawn(async move {
            let mut b = [0u8; 16];
            let started = Instant::now();
            let r = io.read(&mut b).await;
            (r.is_err(), started.elapsed())
        });
        let talker = tokio::spawn(async move {
            let mut b = [0u8; 16];
            let mut got = 0;
            while got < 5 {
                match io2.read(&mut b).await {
                    Ok(n) if n > 0 => got += n,
                    other => return Err(format!("{other:?}")),
                }
            }
            Ok(got)
        });
        for _ in 0..5 {
            tokio::time::sleep(Duration::from_millis(150)).await;
            talking.write_all(b"x").await.unwrap();
        }
        let (timed_out, after) = reader.await.unwrap();
        assert!(timed_out, "the silent connection's read ends in an error");
        assert!(
            after >= Duration::from_millis(250) && after < Duration::from_secs(2),
            "closed after {after:?}"
        );
        assert_eq!(
            talker.await.unwrap(),
            Ok(5),
            "750 ms of talk in 150 ms steps stays open"
        );
        silent.shutdown().await.ok();
    }
}
