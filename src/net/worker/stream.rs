//! TCP and TLS clients: the accept loop with its client lists and
//! connection caps, the PROXY header of a trusted proxy's connections, the
//! first-byte sniff that tells TLS from plain TCP, and the per-connection
//! reader and writer with their deadlines and backpressure.

use std::cell::{Cell, RefCell};
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;

use super::{tcp_relay, StreamSetup, Worker};
use crate::net::limits::{ConnSlot, PendingSlot};
use crate::net::passthrough;
use crate::net::proxy_protocol::{self, Header};
use crate::stun::framing::{FrameKind, Framer};
use crate::turn::{FiveTuple, Transport};

/// Unsent bytes for one TCP or TLS client above which its connection is
/// not read until they drain: a client that does not read its answers is
/// not heard either.
const STREAM_PAUSE: usize = 32 << 10;
/// Unsent bytes past which relayed data for a TCP or TLS client is
/// dropped, as a UDP path would drop it (answers never are). Above the
/// pause, so a burst toward a client that reads a little late survives;
/// below the cap, so answers always have room.
const STREAM_RELAYED_MAX: usize = 192 << 10;
/// Unsent bytes for one TCP or TLS client at which it is closed. Reading
/// stops at [`STREAM_PAUSE`], so only one read's answers can go past that.
const STREAM_QUEUE_MAX: usize = 256 << 10;
/// The first byte of a TLS record carrying a handshake (the ClientHello).
/// STUN starts with 0x00/0x01 and ChannelData with 0x40-0x7F.
const TLS_HANDSHAKE_RECORD: u8 = 0x16;
/// A PROXY v1 header's first byte. It would frame as ChannelData with a
/// 20 KB length ("PROXY" = 0x5052, 0x4F58), held until the deadline; but
/// a stream's first message is never ChannelData (it has no channel yet),
/// so a header from a source that is no trusted proxy closes at once. (A
/// v2 header's first bytes are no STUN length: framing closes it.)
const PROXY_V1_FIRST: u8 = b'P';

/// Frames waiting for a TCP client.
#[derive(Default)]
pub(super) struct TcpOut {
    queue: RefCell<Vec<u8>>,
    /// Bytes the writer took from `queue` and has not finished writing.
    in_flight: Cell<usize>,
    ready: Notify,
    /// Set when the connection becomes a data connection: the writer
    /// sends what is queued, then hands its half back.
    handing_over: Cell<bool>,
    /// Set when the connection must end: its allocation is gone, its
    /// output passed the hard cap, or writing failed.
    closing: Cell<bool>,
    /// The reader waits for its output to drain.
    paused: Cell<bool>,
    reader: ReaderWake,
}

impl TcpOut {
    fn unsent(&self) -> usize {
        self.queue.borrow().len() + self.in_flight.get()
    }

    /// Queues a frame for the writer. Relayed data is dropped rather than
    /// pass [`STREAM_RELAYED_MAX`]; an answer that would pass
    /// [`STREAM_QUEUE_MAX`] closes the connection instead.
    pub(super) fn push(&self, data: &[u8], relayed: bool) {
        let mut q = self.queue.borrow_mut();
        let after = q.len() + self.in_flight.get() + data.len();
        let cap = if relayed {
            STREAM_RELAYED_MAX
        } else {
            STREAM_QUEUE_MAX
        };
        if after <= cap {
            q.extend_from_slice(data);
            self.ready.notify_one();
        } else if !relayed {
            drop(q);
            self.close();
        }
    }

    pub(super) fn close(&self) {
        self.closing.set(true);
        self.reader.wake();
    }
}

/// Wakes a connection's reader task from the writer or the worker: a
/// flag and a waker in cells, so waiting for it costs no lock and no
/// allocation per read.
#[derive(Default)]
struct ReaderWake {
    woken: Cell<bool>,
    waker: RefCell<Option<Waker>>,
}

impl ReaderWake {
    fn wake(&self) {
        self.woken.set(true);
        let waker = self.waker.borrow_mut().take();
        if let Some(w) = waker {
            w.wake();
        }
    }

    fn poll(&self, cx: &mut Context<'_>) -> Poll<()> {
        if self.woken.replace(false) {
            return Poll::Ready(());
        }
        let mut waker = self.waker.borrow_mut();
        if !waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
            *waker = Some(cx.waker().clone());
        }
        Poll::Pending
    }
}

/// How often a failing accept may log: descriptor exhaustion retries every
/// 50 ms and must not flood the log.
const ACCEPT_WARN_EVERY: Duration = Duration::from_secs(60);

pub(super) async fn accept_loop(
    w: Rc<Worker>,
    listener: TcpListener,
    local: SocketAddr,
    streams: Arc<StreamSetup>,
) {
    let mut warned: Option<tokio::time::Instant> = None;
    let mut suppressed = 0u64;
    loop {
        match listener.accept().await {
            // A trusted proxy's connection counts for its real client,
            // once the header names it.
            Ok((stream, proxy)) if streams.is_trusted_proxy(proxy.ip()) => {
                match streams.limits.acquire_pending() {
                    Ok(pending) => {
                        tokio::task::spawn_local(proxied(
                            w.clone(),
                            stream,
                            proxy,
                            local,
                            streams.clone(),
                            pending,
                        ));
                    }
                    Err(cap) => {
                        tracing::debug!("tcp proxy {proxy} refused: {cap:?} connection cap")
                    }
                }
            }
            Ok((stream, peer)) => {
                // Closed at once, unanswered.
                if !w.shared.config().clients.admits(peer.ip()) {
                    tracing::debug!("tcp {peer} refused: client list");
                    continue;
                }
                match streams.limits.acquire(peer.ip()) {
                    Ok(slot) => {
                        let deadline = tokio::time::Instant::now() + streams.handshake_timeout;
                        tokio::task::spawn_local(connection(
                            w.clone(),
                            stream,
                            peer,
                            local,
                            streams.clone(),
                            slot,
                            deadline,
                        ));
                    }
                    // Closed at once: a flood from one source must not cost
                    // more than the accept.
                    Err(cap) => tracing::debug!("tcp {peer} refused: {cap:?} connection cap"),
                }
            }
            Err(e) => {
                // Out of descriptors and the like: back off instead of
                // spinning, and say so once per window.
                let now = tokio::time::Instant::now();
                if !matches!(warned, Some(at) if now < at + ACCEPT_WARN_EVERY) {
                    if suppressed > 0 {
                        tracing::warn!(
                            "accept on {local}: {e} ({suppressed} more since the last warning)"
                        );
                    } else {
                        tracing::warn!("accept on {local}: {e}");
                    }
                    warned = Some(now);
                    suppressed = 0;
                } else {
                    suppressed += 1;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// A connection from a trusted proxy: reads its PROXY header within the
/// handshake deadline, then serves it as its real client's (the proxy's
/// own for LOCAL and UNKNOWN). No valid header: closed.
async fn proxied(
    w: Rc<Worker>,
    mut stream: TcpStream,
    proxy: SocketAddr,
    local: SocketAddr,
    streams: Arc<StreamSetup>,
    pending: PendingSlot,
) {
    let deadline = tokio::time::Instant::now() + streams.handshake_timeout;
    let header = tokio::time::timeout_at(deadline, proxy_protocol::read_header(&mut stream)).await;
    let client = match header {
        Ok(Ok(Header::Client(client))) => client,
        Ok(Ok(Header::Local)) => proxy,
        Ok(Err(e)) => {
            tracing::debug!("tcp proxy {proxy}: {e}, closing");
            return;
        }
        Err(_) => {
            tracing::debug!("tcp proxy {proxy}: no PROXY header before the deadline");
            return;
        }
    };
    if !w.shared.config().clients.admits(client.ip()) {
        tracing::debug!("tcp {client} via proxy {proxy} refused: client list");
        return;
    }
    match pending.admit(client.ip()) {
        Ok(slot) => {
            tracing::trace!("tcp {client} via proxy {proxy}");
            connection(w, stream, client, local, streams, slot, deadline).await
        }
        Err(cap) => {
            tracing::debug!("tcp {client} via proxy {proxy} refused: {cap:?} connection cap")
        }
    }
}

/// Tells TLS from plain TCP by the first byte, then serves the stream.
/// `peer` is the client: the connection's source, or the one its PROXY
/// header named.
async fn connection(
    w: Rc<Worker>,
    stream: TcpStream,
    peer: SocketAddr,
    local: SocketAddr,
    streams: Arc<StreamSetup>,
    mut slot: ConnSlot,
    deadline: tokio::time::Instant,
) {
    let _ = stream.set_nodelay(true);
    let mut tuple = FiveTuple {
        transport: Transport::Tcp,
        client: peer,
        server: local,
    };
    let mut first = [0u8; 1];
    match tokio::time::timeout_at(deadline, stream.peek(&mut first)).await {
        Ok(Ok(1)) => {}
        _ => return,
    }
    if first[0] == PROXY_V1_FIRST {
        tracing::debug!("tcp {peer}: a PROXY header where none is expected, closing");
        return;
    }
    let Some(tls) = streams
        .tls
        .as_ref()
        .filter(|_| first[0] == TLS_HANDSHAKE_RECORD)
    else {
        return serve_stream(w, stream, tuple, deadline, &mut slot).await;
    };
    if let Some(pass) = &streams.passthrough {
        let hello = passthrough::peek_hello(&stream, deadline).await;
        if hello.is_some_and(|h| pass.wants(&h)) {
            let header = pass
                .proxy_protocol
                .then(|| passthrough::proxy_v1_header(peer, local).into_bytes());
            // The slot is held until the splice ends: web connections
            // count in the same caps as TURN ones.
            let within = streams.handshake_timeout;
            match passthrough::splice(stream, &pass.to, header, within, pass.idle).await {
                Ok((up, down)) => tracing::debug!(
                    "tls {peer}: passed through to {} ({up} bytes up, {down} down)",
                    pass.to
                ),
                Err(e) => tracing::debug!("tls {peer}: passthrough to {}: {e}", pass.to),
            }
            return;
        }
    }
    match tokio::time::timeout_at(deadline, tls.accept(stream)).await {
        Ok(Ok(tls_stream)) => {
            tuple.transport = Transport::Tls;
            // The server name may pick a tenant realm (issue 19).
            if let Some(sni) = tls_stream.get_ref().1.server_name() {
                w.core.borrow_mut().handle_server_name(tuple, sni);
            }
            serve_stream(w, tls_stream, tuple, deadline, &mut slot).await
        }
        Ok(Err(e)) => tracing::debug!("tls {peer}: handshake failed: {e}"),
        Err(_) => tracing::debug!("tls {peer}: handshake timed out"),
    }
}

/// Writes `buf` one frame per write call, so that a TLS stream puts each
/// in a record of its own; bytes that do not frame go in one last write.
async fn write_frames<W: AsyncWrite + Unpin>(
    wr: &mut W,
    mut buf: &[u8],
    classic: bool,
) -> std::io::Result<()> {
    while !buf.is_empty() {
        let n = match crate::stun::framing::frame_len_as(buf, classic) {
            Ok(Some((_, n))) if n <= buf.len() => n,
            _ => buf.len(),
        };
        wr.write_all(&buf[..n]).await?;
        buf = &buf[n..];
    }
    Ok(())
}

/// What woke a stream's reader.
enum ReadEvent {
    Read(std::io::Result<usize>),
    Woken,
    Deadline,
}

/// Reads frames from a TCP or TLS client into the core and writes what the
/// core queues for it.
///
/// Every read has a deadline. The first complete message must arrive
/// before `deadline`; then, until the connection owns an allocation, the
/// next STUN message must come within `handshake_timeout` of the last one,
/// and afterwards the allocation's expiry plus `handshake_timeout` bounds
/// the wait. The connection closes when its allocation is deleted or
/// expires. Its reads stop while more than [`STREAM_PAUSE`] bytes wait to
/// be written to it. Only STUN messages move the deadline, so ChannelData
/// costs nothing extra.
async fn serve_stream<S>(
    w: Rc<Worker>,
    stream: S,
    tuple: FiveTuple,
    deadline: tokio::time::Instant,
    slot: &mut ConnSlot,
) where
    S: AsyncRead + AsyncWrite + Unpin + 'static,
{
    // Only a proxy's header could name a client that is already connected
    // here; the first connection keeps the 5-tuple.
    if w.tcp_out.borrow().contains_key(&tuple) {
        let (transport, client) = (tuple.transport, tuple.client);
        tracing::debug!("{transport} {client}: already connected, closing");
        return;
    }
    let (mut rd, mut wr) = tokio::io::split(stream);
    let out = Rc::new(TcpOut::default());
    w.tcp_out.borrow_mut().insert(tuple, out.clone());
    let writer_out = out.clone();
    // Over TLS each message goes in a TLS record of its own, as coturn
    // writes them: clients such as turnutils_uclient take one SSL_read as
    // one message and lose the rest of a record that holds several.
    let one_per_record = tuple.transport == Transport::Tls;
    let classic = w
        .core
        .borrow()
        .shared()
        .config()
        .stun_backward_compatibility;
    let writer = tokio::task::spawn_local(async move {
        let mut sending = Vec::new();
        loop {
            writer_out.ready.notified().await;
            std::mem::swap(&mut sending, &mut *writer_out.queue.borrow_mut());
            writer_out.in_flight.set(sending.len());
            let written = if one_per_record {
                write_frames(&mut wr, &sending, classic).await
            } else {
                wr.write_all(&sending).await
            };
            if !sending.is_empty() && written.is_err() {
                writer_out.in_flight.set(0);
                writer_out.close();
                return None;
            }
            sending.clear();
            writer_out.in_flight.set(0);
            // A burst leaves no large buffer behind.
            if sending.capacity() > STREAM_PAUSE {
                sending.shrink_to(STREAM_PAUSE);
            }
            if writer_out.paused.get() && writer_out.unsent() <= STREAM_PAUSE / 2 {
                writer_out.reader.wake();
            }
            if writer_out.queue.borrow().is_empty() {
                if writer_out.handing_over.get() {
                    return Some(wr);
                }
                if writer_out.closing.get() {
                    // Everything owed is written: end the stream (TLS
                    // sends close_notify).
                    let _ = wr.shutdown().await;
                    return None;
                }
            }
        }
    });
    let quiet = w.streams.handshake_timeout;
    let timer = tokio::time::sleep_until(deadline);
    tokio::pin!(timer);
    let mut framer = Framer::new().with_classic(classic);
    let mut allocated = false;
    let mut data_conn = None;
    loop {
        if out.closing.get() {
            break;
        }
        if out.unsent() > STREAM_PAUSE {
            // The client does not read its answers: do not read it either
            // until they drain (the writer wakes us), or the deadline.
            out.paused.set(true);
            let woken = tokio::select! {
                () = std::future::poll_fn(|cx| out.reader.poll(cx)) => true,
                () = &mut timer => false,
            };
            out.paused.set(false);
            if !woken {
                tracing::debug!(
                    "{} {}: does not read its answers, closing",
                    tuple.transport,
                    tuple.client
                );
                break;
            }
            continue;
        }
        let event = tokio::select! {
            r = rd.read(framer.unfilled()) => ReadEvent::Read(r),
            () = std::future::poll_fn(|cx| out.reader.poll(cx)) => ReadEvent::Woken,
            () = &mut timer => ReadEvent::Deadline,
        };
        let n = match event {
            ReadEvent::Read(Ok(n)) if n > 0 => n,
            ReadEvent::Read(_) => {
                framer.filled(0);
                break;
            }
            ReadEvent::Woken => {
                framer.filled(0);
                continue;
            }
            ReadEvent::Deadline => {
                framer.filled(0);
                tracing::debug!(
                    "{} {}: no message before the deadline",
                    tuple.transport,
                    tuple.client
                );
                break;
            }
        };
        framer.filled(n);
        let now = Instant::now();
        let mut stun = false;
        let lost = w.step(now, |core| loop {
            match framer.next_frame() {
                Ok(Some(frame)) => {
                    let is_stun = frame.kind == FrameKind::Stun;
                    stun |= is_stun;
                    if let Some(f) = core.handle_client(now, tuple, frame.bytes) {
                        w.forward(f);
                    }
                    // After a ConnectionBind the rest is the application's
                    // bytes, even when sent before the answer came: left
                    // in the framer for the splice (review F23).
                    if is_stun && core.binding_data(&tuple) {
                        return false;
                    }
                }
                Ok(None) => return false,
                // Bytes that are neither STUN nor ChannelData: framing is lost.
                Err(_) => return true,
            }
        });
        if lost {
            break;
        }
        if let Some(conn) = w.bound.borrow_mut().remove(&tuple) {
            // A data connection belongs to its allocation from now on.
            slot.bind();
            data_conn = Some(conn);
            break;
        }
        if stun {
            let expires = w.core.borrow().allocation(&tuple).map(|a| a.expires);
            let next = match expires {
                Some(at) => {
                    if !allocated {
                        allocated = true;
                        slot.bind();
                    }
                    at + quiet
                }
                // Deleted by a Refresh with LIFETIME 0.
                None if allocated => break,
                None => now + quiet,
            };
            timer.as_mut().reset(tokio::time::Instant::from_std(next));
        }
    }
    if let Some(conn) = data_conn {
        w.core.borrow_mut().forget_stream(&tuple);
        w.tcp_out.borrow_mut().remove(&tuple);
        out.handing_over.set(true);
        out.ready.notify_one();
        let rest = framer.take_rest();
        if let Ok(Some(wr)) = writer.await {
            tcp_relay::relay_tcp(w, conn, rd.unsplit(wr), rest).await;
        }
        return;
    }
    let now = Instant::now();
    w.step(now, |core| core.handle_client_closed(now, tuple));
    w.tcp_out.borrow_mut().remove(&tuple);
    // Let queued answers go out before the connection closes; the writer
    // ends once they are written, or is stopped after 2 s.
    if out.unsent() == 0 {
        writer.abort();
    } else {
        out.closing.set(true);
        out.ready.notify_one();
        let stop = writer.abort_handle();
        tokio::task::spawn_local(async move {
            if tokio::time::timeout(Duration::from_secs(2), writer)
                .await
                .is_err()
            {
                stop.abort();
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_output_drops_relayed_data_past_its_limit_and_closes_past_the_cap() {
        let out = TcpOut::default();
        let chunk = vec![0u8; 16 << 10];
        for _ in 0..12 {
            out.push(&chunk, true);
        }
        assert_eq!(out.unsent(), STREAM_RELAYED_MAX);
        out.push(&[0; 4], true);
        assert_eq!(
            out.unsent(),
            STREAM_RELAYED_MAX,
            "relayed data past 192 KiB is dropped"
        );
        // Answers still queue (in flight counts too), up to the hard cap.
        out.in_flight.set(16 << 10);
        while out.unsent() + chunk.len() <= STREAM_QUEUE_MAX {
            out.push(&chunk, false);
        }
        assert!(!out.closing.get());
        out.push(&chunk, false);
        assert!(out.closing.get(), "an answer past 256 KiB closes");
        assert!(out.unsent() <= STREAM_QUEUE_MAX);
    }
}
