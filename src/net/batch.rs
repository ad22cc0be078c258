//! Batched UDP syscalls (Linux `recvmmsg`/`sendmmsg`) and the worker's own
//! epoll set. This is the one hand-written part of the hot path: profiles
//! show more than 90% of relay CPU in the kernel, so what counts is the
//! number of syscalls and wakeups per packet, which batching divides.

use std::io;
use std::mem::{size_of, zeroed};
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use socket2::SockAddr;

/// Datagrams per `recvmmsg`/`sendmmsg`.
pub(crate) const BATCH: usize = 32;

/// Datagrams the kernel refused to send (unreachable networks, a full
/// buffer, a destination it forbids), in every worker: the loop goes on
/// past them, and `/metrics` shows them (review I3).
pub(crate) static SEND_ERRORS: AtomicU64 = AtomicU64::new(0);
/// Failed UDP reads other than "nothing to read", in every worker.
pub(crate) static RECV_ERRORS: AtomicU64 = AtomicU64::new(0);

fn check(rc: libc::c_int) -> io::Result<usize> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc as usize)
    }
}

/// A level-triggered epoll set whose events carry a `u64` token.
pub(crate) struct Epoll {
    fd: OwnedFd,
}

impl AsRawFd for Epoll {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

impl Epoll {
    pub(crate) fn new() -> io::Result<Self> {
        // SAFETY: plain syscall; the fd is owned from here on.
        let fd = check(unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) })? as RawFd;
        // SAFETY: fd is a fresh descriptor we own.
        Ok(Epoll {
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
        })
    }

    /// Watches `fd` for input. Closing `fd` removes it from the set.
    pub(crate) fn add(&self, fd: RawFd, token: u64) -> io::Result<()> {
        let mut ev = libc::epoll_event {
            events: libc::EPOLLIN as u32,
            u64: token,
        };
        // SAFETY: ev outlives the call; both fds are valid.
        check(unsafe { libc::epoll_ctl(self.fd.as_raw_fd(), libc::EPOLL_CTL_ADD, fd, &mut ev) })
            .map(|_| ())
    }

    /// Ready tokens, without waiting.
    pub(crate) fn poll(&self, out: &mut [libc::epoll_event]) -> usize {
        self.wait(out, 0)
    }

    /// Ready tokens, waiting up to `timeout_ms` for the first.
    pub(crate) fn wait(&self, out: &mut [libc::epoll_event], timeout_ms: i32) -> usize {
        // SAFETY: out is a valid, writable array of out.len() events.
        let n = unsafe {
            libc::epoll_wait(
                self.fd.as_raw_fd(),
                out.as_mut_ptr(),
                out.len() as libc::c_int,
                timeout_ms,
            )
        };
        n.max(0) as usize
    }
}

fn to_socket_addr(storage: &libc::sockaddr_storage, len: libc::socklen_t) -> Option<SocketAddr> {
    // SAFETY: storage holds `len` bytes of a socket address the kernel wrote.
    let addr = unsafe { SockAddr::new(*storage, len) };
    addr.as_socket()
}

/// Buffers for one `recvmmsg`: `BATCH` slots of `headroom + MAX + tailroom`.
pub(crate) struct RecvBatch {
    slot: usize,
    headroom: usize,
    max: usize,
    bufs: Vec<u8>,
    addrs: Vec<libc::sockaddr_storage>,
    lens: [usize; BATCH],
    sources: [Option<SocketAddr>; BATCH],
}

impl RecvBatch {
    pub(crate) fn new(headroom: usize, max: usize, tailroom: usize) -> Self {
        let slot = headroom + max + tailroom;
        RecvBatch {
            slot,
            headroom,
            max,
            bufs: vec![0; slot * BATCH],
            // SAFETY: sockaddr_storage is plain data; zero is a valid value.
            addrs: vec![unsafe { zeroed() }; BATCH],
            lens: [0; BATCH],
            sources: [None; BATCH],
        }
    }

    /// Receives up to `BATCH` datagrams; 0 when none is waiting.
    pub(crate) fn recv(&mut self, fd: RawFd) -> io::Result<usize> {
        // SAFETY: iovecs and headers point into self's buffers, which live
        // across the call and are not otherwise borrowed.
        let mut iov: [libc::iovec; BATCH] = unsafe { zeroed() };
        let mut hdrs: [libc::mmsghdr; BATCH] = unsafe { zeroed() };
        for i in 0..BATCH {
            iov[i].iov_base = self.bufs[i * self.slot + self.headroom..].as_mut_ptr() as *mut _;
            iov[i].iov_len = self.max;
            hdrs[i].msg_hdr.msg_name = &mut self.addrs[i] as *mut _ as *mut _;
            hdrs[i].msg_hdr.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            hdrs[i].msg_hdr.msg_iov = &mut iov[i];
            hdrs[i].msg_hdr.msg_iovlen = 1;
        }
        // SAFETY: as above; MSG_DONTWAIT never blocks.
        let rc = unsafe {
            libc::recvmmsg(
                fd,
                hdrs.as_mut_ptr(),
                BATCH as libc::c_uint,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        let n = match check(rc) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(0),
            Err(e) => {
                RECV_ERRORS.fetch_add(1, Relaxed);
                return Err(e);
            }
        };
        for (i, h) in hdrs.iter().enumerate().take(n) {
            self.lens[i] = h.msg_len as usize;
            self.sources[i] = to_socket_addr(&self.addrs[i], h.msg_hdr.msg_namelen);
        }
        Ok(n)
    }

    /// Datagram `i`: its source, its slot (with head- and tailroom) and
    /// where the data sits in the slot.
    pub(crate) fn get_mut(&mut self, i: usize) -> (Option<SocketAddr>, &mut [u8], usize, usize) {
        let slot = &mut self.bufs[i * self.slot..(i + 1) * self.slot];
        (self.sources[i], slot, self.headroom, self.lens[i])
    }
}

/// Whether UDP GSO still works here; cleared for good on the first refusal.
static GSO: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(true);
/// Linux caps a GSO send at 64 segments.
const GSO_MAX_SEGMENTS: usize = 64;
/// Bytes in one GSO send, below the 64 KiB UDP limit.
const GSO_MAX_BYTES: usize = 60_000;
/// cmsg space for one UDP_SEGMENT value (a u16), as u64 words for alignment.
const CMSG_WORDS: usize = 3;
/// From linux/udp.h (not exported by libc for glibc targets).
const UDP_SEGMENT: libc::c_int = 103;
const SOL_UDP: libc::c_int = 17;

/// Datagrams waiting for one `sendmmsg` on one socket. Datagrams of equal
/// size for the same destination leave as one UDP GSO send (`UDP_SEGMENT`):
/// one trip through the stack instead of one per datagram.
pub(crate) struct SendBatch {
    arena: Vec<u8>,
    items: Vec<(SocketAddr, usize, usize)>,
    // Scratch for flush, kept so sending allocates nothing once warm.
    order: Vec<usize>,
    runs: Vec<Run>,
    iov: Vec<libc::iovec>,
    cmsgs: Vec<[u64; CMSG_WORDS]>,
    hdrs: Vec<libc::mmsghdr>,
}

impl Default for SendBatch {
    fn default() -> Self {
        SendBatch {
            arena: Vec::with_capacity(BATCH * 256),
            items: Vec::with_capacity(BATCH),
            order: Vec::with_capacity(BATCH),
            runs: Vec::with_capacity(BATCH),
            iov: Vec::with_capacity(BATCH),
            cmsgs: Vec::with_capacity(BATCH),
            hdrs: Vec::with_capacity(BATCH),
        }
    }
}

/// One message of a sendmmsg call: a destination and a run of items that
/// share it (and, for GSO, a segment size).
struct Run {
    to: SockAddr,
    first: usize,
    count: usize,
    segment: usize,
}

impl SendBatch {
    pub(crate) fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    pub(crate) fn len(&self) -> usize {
        self.items.len()
    }

    /// Drops anything queued (for a socket that has gone).
    pub(crate) fn clear(&mut self) {
        self.items.clear();
        self.arena.clear();
    }

    pub(crate) fn push(&mut self, to: SocketAddr, data: &[u8]) {
        let start = self.arena.len();
        self.arena.extend_from_slice(data);
        self.items.push((to, start, data.len()));
    }

    /// Groups items into runs: same destination, equal sizes (the last of a
    /// run may be shorter), order kept per destination.
    fn group(&mut self, gso: bool) {
        self.order.clear();
        self.order.extend(0..self.items.len());
        if gso {
            let items = &self.items;
            self.order.sort_by_key(|&i| (items[i].0, i));
        }
        let runs = &mut self.runs;
        runs.clear();
        for (pos, &i) in self.order.iter().enumerate() {
            let (to, _, len) = self.items[i];
            if let Some(r) = runs.last_mut() {
                let prev = self.items[self.order[pos - 1]];
                let joinable = gso
                    && prev.0 == to
                    && prev.2 == r.segment
                    && len <= r.segment
                    && r.count < GSO_MAX_SEGMENTS
                    && (r.count + 1) * r.segment <= GSO_MAX_BYTES;
                if joinable {
                    r.count += 1;
                    continue;
                }
            }
            runs.push(Run {
                to: SockAddr::from(to),
                first: pos,
                count: 1,
                segment: len,
            });
        }
    }

    /// Sends everything queued. Datagrams the kernel will not take now
    /// (full buffer) are dropped, as a congested network would.
    pub(crate) fn flush(&mut self, fd: RawFd) {
        if self.items.is_empty() {
            return;
        }
        let gso = GSO.load(std::sync::atomic::Ordering::Relaxed);
        self.group(gso);
        let (runs, iov, cmsgs, hdrs) = (&self.runs, &mut self.iov, &mut self.cmsgs, &mut self.hdrs);
        iov.clear();
        for &i in &self.order {
            let (_, start, len) = self.items[i];
            iov.push(libc::iovec {
                iov_base: self.arena[start..].as_ptr() as *mut _,
                iov_len: len,
            });
        }
        cmsgs.clear();
        cmsgs.resize(runs.len(), [0u64; CMSG_WORDS]);
        hdrs.clear();
        // SAFETY: mmsghdr is plain data; zero is a valid value.
        hdrs.resize_with(runs.len(), || unsafe { zeroed() });
        for (k, r) in runs.iter().enumerate() {
            let h = &mut hdrs[k].msg_hdr;
            h.msg_name = r.to.as_ptr() as *mut _;
            h.msg_namelen = r.to.len();
            h.msg_iov = &mut iov[r.first];
            h.msg_iovlen = r.count as _;
            if r.count > 1 {
                set_segment(h, &mut cmsgs[k], r.segment as u16);
            }
        }
        let mut done = 0;
        while done < hdrs.len() {
            let chunk = (hdrs.len() - done).min(BATCH);
            // SAFETY: every header points into iov, cmsgs, runs and the
            // arena, all alive and unmodified during the call.
            let rc = unsafe {
                libc::sendmmsg(
                    fd,
                    hdrs[done..].as_mut_ptr(),
                    chunk as libc::c_uint,
                    libc::MSG_DONTWAIT,
                )
            };
            match check(rc) {
                Ok(0) => done += 1,
                Ok(n) => done += n,
                Err(e) => {
                    let failed = &runs[done];
                    if failed.count > 1
                        && matches!(
                            e.raw_os_error(),
                            Some(libc::EIO) | Some(libc::EINVAL) | Some(libc::ENOPROTOOPT)
                        )
                    {
                        // No GSO on this path: never again, and resend this
                        // run datagram by datagram.
                        GSO.store(false, std::sync::atomic::Ordering::Relaxed);
                        for pos in failed.first..failed.first + failed.count {
                            let (to, start, len) = self.items[self.order[pos]];
                            send_to(fd, &self.arena[start..start + len], &to);
                        }
                    } else {
                        SEND_ERRORS.fetch_add(failed.count as u64, Relaxed);
                    }
                    done += 1;
                }
            }
        }
        self.items.clear();
        self.arena.clear();
    }
}

/// Attaches a UDP_SEGMENT control message to `h`.
fn set_segment(h: &mut libc::msghdr, buf: &mut [u64; CMSG_WORDS], segment: u16) {
    // SAFETY: buf is large and aligned enough for one cmsghdr with a u16.
    unsafe {
        h.msg_control = buf.as_mut_ptr() as *mut _;
        h.msg_controllen = libc::CMSG_SPACE(size_of::<u16>() as u32) as _;
        let c = libc::CMSG_FIRSTHDR(h);
        (*c).cmsg_level = SOL_UDP;
        (*c).cmsg_type = UDP_SEGMENT;
        (*c).cmsg_len = libc::CMSG_LEN(size_of::<u16>() as u32) as _;
        std::ptr::write_unaligned(libc::CMSG_DATA(c) as *mut u16, segment);
    }
}

/// Sends one datagram without blocking; a full buffer drops it.
pub(crate) fn send_to(fd: RawFd, data: &[u8], to: &SocketAddr) {
    let addr = SockAddr::from(*to);
    // SAFETY: data and addr are valid for the call.
    let rc = unsafe {
        libc::sendto(
            fd,
            data.as_ptr() as *const _,
            data.len(),
            libc::MSG_DONTWAIT,
            addr.as_ptr() as *const _,
            addr.len(),
        )
    };
    if rc < 0 {
        SEND_ERRORS.fetch_add(1, Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::UdpSocket;
    use std::time::Duration;

    fn receiver() -> UdpSocket {
        let r = UdpSocket::bind("127.0.0.1:0").unwrap();
        r.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        r
    }

    fn recv_all(r: &UdpSocket, n: usize) -> Vec<Vec<u8>> {
        let mut buf = [0u8; 70_000];
        (0..n)
            .map(|_| {
                let k = r.recv(&mut buf).expect("datagram");
                buf[..k].to_vec()
            })
            .collect()
    }

    #[test]
    fn a_batch_arrives_as_the_same_datagrams_in_order_per_destination() {
        let (a, b) = (receiver(), receiver());
        let sender = UdpSocket::bind("127.0.0.1:0").unwrap();
        let mut batch = SendBatch::default();
        // Equal sizes to one destination (one GSO run), a shorter last one,
        // other destinations interleaved, and a size change.
        let for_a: Vec<Vec<u8>> = vec![
            vec![1; 100],
            vec![2; 100],
            vec![3; 100],
            vec![4; 60],
            vec![5; 300],
        ];
        let for_b: Vec<Vec<u8>> = vec![vec![9; 100], vec![8; 100]];
        batch.push(a.local_addr().unwrap(), &for_a[0]);
        batch.push(b.local_addr().unwrap(), &for_b[0]);
        for d in &for_a[1..] {
            batch.push(a.local_addr().unwrap(), d);
        }
        batch.push(b.local_addr().unwrap(), &for_b[1]);
        batch.flush(sender.as_raw_fd());
        assert!(batch.is_empty());
        assert_eq!(recv_all(&a, for_a.len()), for_a);
        assert_eq!(recv_all(&b, for_b.len()), for_b);
    }

    #[test]
    fn more_than_a_batch_and_more_than_gso_allows_all_arrive() {
        let a = receiver();
        let sender = UdpSocket::bind("127.0.0.1:0").unwrap();
        let mut batch = SendBatch::default();
        let sent: Vec<Vec<u8>> = (0..100u8).map(|i| vec![i; 1200]).collect();
        for d in &sent {
            batch.push(a.local_addr().unwrap(), d);
        }
        batch.flush(sender.as_raw_fd());
        assert_eq!(recv_all(&a, sent.len()), sent);
    }

    #[test]
    fn a_refused_datagram_is_counted_and_the_rest_of_the_batch_goes() {
        let a = receiver();
        let sender = UdpSocket::bind("0.0.0.0:0").unwrap();
        let mut batch = SendBatch::default();
        let before = SEND_ERRORS.load(Relaxed);
        // Broadcast without SO_BROADCAST: the kernel refuses it (EACCES).
        batch.push("255.255.255.255:9".parse().unwrap(), &[1; 50]);
        batch.push(a.local_addr().unwrap(), &[2; 50]);
        batch.flush(sender.as_raw_fd());
        send_to(
            sender.as_raw_fd(),
            &[3; 50],
            &"255.255.255.255:9".parse().unwrap(),
        );
        assert_eq!(recv_all(&a, 1), [vec![2; 50]]);
        // Other tests may count too: at least these two.
        assert!(SEND_ERRORS.load(Relaxed) - before >= 2);
    }

    #[test]
    fn recv_batch_reads_several_datagrams_with_their_sources() {
        let r = UdpSocket::bind("127.0.0.1:0").unwrap();
        let s = UdpSocket::bind("127.0.0.1:0").unwrap();
        for i in 0..5u8 {
            s.send_to(&[i; 10], r.local_addr().unwrap()).unwrap();
        }
        std::thread::sleep(Duration::from_millis(50));
        let mut rb = RecvBatch::new(8, 2048, 4);
        assert_eq!(rb.recv(r.as_raw_fd()).unwrap(), 5);
        for i in 0..5 {
            let (from, slot, at, len) = rb.get_mut(i);
            assert_eq!(from, Some(s.local_addr().unwrap()));
            assert_eq!(&slot[at..at + len], &[i as u8; 10]);
        }
        assert_eq!(rb.recv(r.as_raw_fd()).unwrap(), 0, "empty queue reads as 0");
    }
}
