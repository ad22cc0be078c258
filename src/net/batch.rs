//! Batched UDP syscalls (Linux `recvmmsg`/`sendmmsg`) and the worker's own
//! epoll set. This is the one hand-written part of the hot path: profiles
//! show more than 90% of relay CPU in the kernel, so what counts is the
//! number of syscalls and wakeups per packet, which batching divides.

use std::io;
use std::mem::{size_of, zeroed};
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use socket2::SockAddr;

/// Datagrams per `recvmmsg`/`sendmmsg`.
pub const BATCH: usize = 32;

fn check(rc: libc::c_int) -> io::Result<usize> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc as usize)
    }
}

/// A level-triggered epoll set whose events carry a `u64` token.
pub struct Epoll {
    fd: OwnedFd,
}

impl AsRawFd for Epoll {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

impl Epoll {
    pub fn new() -> io::Result<Self> {
        // SAFETY: plain syscall; the fd is owned from here on.
        let fd = check(unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) })? as RawFd;
        // SAFETY: fd is a fresh descriptor we own.
        Ok(Epoll {
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
        })
    }

    /// Watches `fd` for input. Closing `fd` removes it from the set.
    pub fn add(&self, fd: RawFd, token: u64) -> io::Result<()> {
        let mut ev = libc::epoll_event {
            events: libc::EPOLLIN as u32,
            u64: token,
        };
        // SAFETY: ev outlives the call; both fds are valid.
        check(unsafe { libc::epoll_ctl(self.fd.as_raw_fd(), libc::EPOLL_CTL_ADD, fd, &mut ev) })
            .map(|_| ())
    }

    /// Ready tokens, without waiting.
    pub fn poll(&self, out: &mut [libc::epoll_event]) -> usize {
        // SAFETY: out is a valid, writable array of out.len() events.
        let n = unsafe {
            libc::epoll_wait(
                self.fd.as_raw_fd(),
                out.as_mut_ptr(),
                out.len() as libc::c_int,
                0,
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
pub struct RecvBatch {
    slot: usize,
    headroom: usize,
    max: usize,
    bufs: Vec<u8>,
    addrs: Vec<libc::sockaddr_storage>,
    lens: [usize; BATCH],
    sources: [Option<SocketAddr>; BATCH],
}

impl RecvBatch {
    pub fn new(headroom: usize, max: usize, tailroom: usize) -> Self {
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
    pub fn recv(&mut self, fd: RawFd) -> io::Result<usize> {
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
            Err(e) => return Err(e),
        };
        for (i, h) in hdrs.iter().enumerate().take(n) {
            self.lens[i] = h.msg_len as usize;
            self.sources[i] = to_socket_addr(&self.addrs[i], h.msg_hdr.msg_namelen);
        }
        Ok(n)
    }

    /// Datagram `i`: its source, its slot (with head- and tailroom) and
    /// where the data sits in the slot.
    pub fn get_mut(&mut self, i: usize) -> (Option<SocketAddr>, &mut [u8], usize, usize) {
        let slot = &mut self.bufs[i * self.slot..(i + 1) * self.slot];
        (self.sources[i], slot, self.headroom, self.lens[i])
    }
}

/// Datagrams waiting for one `sendmmsg` on one socket.
pub struct SendBatch {
    arena: Vec<u8>,
    items: Vec<(SockAddr, usize, usize)>,
}

impl Default for SendBatch {
    fn default() -> Self {
        SendBatch {
            arena: Vec::with_capacity(BATCH * 256),
            items: Vec::with_capacity(BATCH),
        }
    }
}

impl SendBatch {
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn push(&mut self, to: SocketAddr, data: &[u8]) {
        let start = self.arena.len();
        self.arena.extend_from_slice(data);
        self.items.push((SockAddr::from(to), start, data.len()));
    }

    /// Sends everything queued. Datagrams the kernel will not take now
    /// (full buffer) are dropped, as a congested network would.
    pub fn flush(&mut self, fd: RawFd) {
        let mut done = 0;
        while done < self.items.len() {
            let chunk = &self.items[done..(done + BATCH).min(self.items.len())];
            // SAFETY: headers point into self.arena and self.items, which
            // are not modified during the call.
            let mut iov: [libc::iovec; BATCH] = unsafe { zeroed() };
            let mut hdrs: [libc::mmsghdr; BATCH] = unsafe { zeroed() };
            for (i, (addr, start, len)) in chunk.iter().enumerate() {
                iov[i].iov_base = self.arena[*start..].as_ptr() as *mut _;
                iov[i].iov_len = *len;
                hdrs[i].msg_hdr.msg_name = addr.as_ptr() as *mut _;
                hdrs[i].msg_hdr.msg_namelen = addr.len();
                hdrs[i].msg_hdr.msg_iov = &mut iov[i];
                hdrs[i].msg_hdr.msg_iovlen = 1;
            }
            // SAFETY: as above.
            let rc = unsafe {
                libc::sendmmsg(
                    fd,
                    hdrs.as_mut_ptr(),
                    chunk.len() as libc::c_uint,
                    libc::MSG_DONTWAIT,
                )
            };
            match check(rc) {
                Ok(0) | Err(_) => done += 1, // skip the datagram that failed
                Ok(n) => done += n,
            }
        }
        self.items.clear();
        self.arena.clear();
    }
}

/// Sends one datagram without blocking; a full buffer drops it.
pub fn send_to(fd: RawFd, data: &[u8], to: &SocketAddr) {
    let addr = SockAddr::from(*to);
    // SAFETY: data and addr are valid for the call.
    unsafe {
        libc::sendto(
            fd,
            data.as_ptr() as *const _,
            data.len(),
            libc::MSG_DONTWAIT,
            addr.as_ptr() as *const _,
            addr.len(),
        );
    }
}
