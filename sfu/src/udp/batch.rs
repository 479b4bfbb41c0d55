//! Batched sending: the datagrams a room worker produces in one wake-up leave in as few
//! `sendmmsg(2)` calls as possible (64 messages per call) instead of one `sendto` each, and
//! consecutive datagrams to one destination leave as one UDP GSO message (`UDP_SEGMENT`): the
//! kernel builds and routes one buffer and cuts it into datagrams at the end (a video frame of
//! several packets to one subscriber costs one trip through the stack).

use super::Path;
use bytes::BytesMut;
use std::net::SocketAddr;
use std::net::UdpSocket;

/// Most messages per `sendmmsg` call.
pub const MAX_CHUNK: usize = 64;
/// Most datagrams in one GSO message.
pub const MAX_SEGMENTS: usize = 64;
/// Most bytes in one GSO message (an IP datagram's payload limit, with room for headers).
const MAX_GSO_BYTES: usize = 65_000;

/// Outcome of one flush, for metrics.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Flushed {
    /// Datagrams handed to the kernel.
    pub sent: u64,
    /// Their bytes.
    pub bytes: u64,
    /// Dropped because the socket buffer was full.
    pub would_block: u64,
    /// Dropped because of another send error.
    pub errors: u64,
    /// System calls made.
    pub syscalls: u64,
    /// Messages that carried several datagrams (GSO).
    pub gso_messages: u64,
    /// Of `sent`, datagrams sent by the send pool's helper threads.
    pub by_helpers: u64,
}

/// One message of a flush: `count` datagrams (at `order[start..start + count]`) to one
/// destination, all `seg` bytes long but the last, which may be shorter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Group {
    pub(super) start: u32,
    pub(super) count: u16,
    pub(super) seg: u16,
}

/// Bytes of the buffer datagrams are built in; a new one is taken when it is used up, and an
/// old one is reused as soon as every datagram cut from it was sent.
const ARENA_BYTES: usize = 256 * 1024;

/// Datagrams waiting to be sent; the buffers are reused from flush to flush.
pub struct SendBatch {
    queue: Vec<(BytesMut, SocketAddr)>,
    /// Datagrams for ICE-TCP connections: the driver hands them to their writers.
    tcp: Vec<(BytesMut, SocketAddr)>,
    /// Where [`SendBatch::builder`] datagrams are written (cut off by `commit`).
    arena: BytesMut,
    chunk: usize,
    gso: bool,
    /// Queue indices in sending order (grouped by destination when GSO is on).
    order: Vec<u32>,
    groups: Vec<Group>,
    /// Scratch of [`plan`]: the queue's destinations as integers, sorted.
    keys: Vec<DestKey>,
}

impl Default for SendBatch {
    fn default() -> Self {
        Self::new(MAX_CHUNK)
    }
}

impl SendBatch {
    /// A batch sending up to `chunk` messages per system call (clamped to 1..=[`MAX_CHUNK`]),
    /// with GSO where the platform has it.
    pub fn new(chunk: usize) -> Self {
        SendBatch {
            queue: Vec::new(),
            tcp: Vec::new(),
            arena: BytesMut::new(),
            chunk: chunk.clamp(1, MAX_CHUNK),
            gso: cfg!(target_os = "linux"),
            order: Vec::new(),
            groups: Vec::new(),
            keys: Vec::new(),
        }
    }

    /// Turns segmentation offload on or off (on by default on Linux; turned off by itself when
    /// the kernel refuses it).
    pub fn set_gso(&mut self, on: bool) {
        self.gso = on && cfg!(target_os = "linux");
    }

    /// Whether GSO is in use.
    pub fn gso(&self) -> bool {
        self.gso
    }

    /// Queues a datagram.
    pub fn push(&mut self, data: BytesMut, to: impl Into<Path>) {
        match to.into() {
            Path::Udp(a) => self.queue.push((data, a)),
            Path::Tcp(a) => self.tcp.push((data, a)),
        }
    }

    /// An empty buffer with room for `len` bytes to build the next datagram in, without an
    /// allocation of its own: finish with [`SendBatch::commit`] or [`SendBatch::discard`].
    pub fn builder(&mut self, len: usize) -> &mut BytesMut {
        self.arena.clear();
        if self.arena.capacity() < len {
            // takes the old buffer back when nothing cut from it is queued any more
            self.arena.reserve(ARENA_BYTES.max(len));
        }
        &mut self.arena
    }

    /// Queues what was built with [`SendBatch::builder`].
    pub fn commit(&mut self, to: impl Into<Path>) {
        let data = self.arena.split();
        self.push(data, to);
    }

    /// Takes the datagrams queued for ICE-TCP connections (by their remote addresses), which
    /// [`SendBatch::flush`] does not send.
    pub fn drain_tcp(&mut self) -> std::vec::Drain<'_, (BytesMut, SocketAddr)> {
        self.tcp.drain(..)
    }

    /// Takes what was built with [`SendBatch::builder`] out of the batch (a paced packet
    /// waits elsewhere, then comes back with [`SendBatch::push`]).
    pub fn detach(&mut self) -> BytesMut {
        self.arena.split()
    }

    /// Drops what was built with [`SendBatch::builder`].
    pub fn discard(&mut self) {
        self.arena.clear();
    }

    /// Datagrams queued (UDP and TCP).
    pub fn len(&self) -> usize {
        self.queue.len() + self.tcp.len()
    }

    /// Takes the queued datagrams without sending them (tests).
    #[cfg(test)]
    pub fn take_for_test(&mut self) -> Vec<(BytesMut, SocketAddr)> {
        std::mem::take(&mut self.queue)
    }

    /// True when nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.queue.is_empty() && self.tcp.is_empty()
    }

    /// Sends everything queued, never blocking: what the socket cannot take now is dropped
    /// and counted (real-time media is not worth queueing behind a full buffer). Datagrams
    /// to one destination keep their order.
    pub fn flush(&mut self, socket: &UdpSocket) -> Flushed {
        self.flush_with(socket, None)
    }

    /// [`SendBatch::flush`], with a large batch cut into parts at destination boundaries
    /// and sent by this thread and the `pool`'s helper threads at once (each destination's
    /// datagrams stay in one part, so in order). Returns when every part was sent.
    pub fn flush_with(&mut self, socket: &UdpSocket, pool: Option<&super::pool::SendPool>) -> Flushed {
        let mut out = Flushed::default();
        if self.queue.is_empty() {
            return out;
        }
        #[cfg(target_os = "linux")]
        {
            use std::os::fd::AsRawFd;
            let fd = socket.as_raw_fd();
            let shared = pool.filter(|p| p.helpers() > 0 && self.queue.len() >= super::pool::PARALLEL_MIN);
            // parts for the pool must not split a destination: group by destination even without GSO
            plan(&self.queue, self.gso, shared.is_some(), &mut self.keys, &mut self.order, &mut self.groups);
            let (f, refused) = match shared {
                Some(pool) => {
                    let planned = Planned {
                        fd,
                        queue: std::mem::take(&mut self.queue),
                        order: std::mem::take(&mut self.order),
                        groups: std::mem::take(&mut self.groups),
                        chunk: self.chunk,
                        gso: self.gso,
                    };
                    let (f, refused, back) = pool.send(planned);
                    if let Some(back) = back {
                        // keep the allocations for the next flush
                        (self.queue, self.order, self.groups) = (back.queue, back.order, back.groups);
                    }
                    (f, refused)
                }
                None => send_groups(fd, &self.queue, &self.order, &self.groups, self.chunk, self.gso),
            };
            if refused {
                tracing::warn!("UDP GSO refused by the kernel: sending datagrams one by one from now on");
                self.gso = false;
            }
            out = f;
        }
        #[cfg(not(target_os = "linux"))]
        {
            let _ = pool;
            for (data, to) in &self.queue {
                out.syscalls += 1;
                match socket.send_to(data, *to) {
                    Ok(n) => {
                        out.sent += 1;
                        out.bytes += n as u64;
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => out.would_block += 1,
                    Err(_) => out.errors += 1,
                }
            }
        }
        self.queue.clear();
        out
    }
}

impl std::ops::AddAssign for Flushed {
    fn add_assign(&mut self, o: Flushed) {
        self.sent += o.sent;
        self.bytes += o.bytes;
        self.would_block += o.would_block;
        self.errors += o.errors;
        self.syscalls += o.syscalls;
        self.gso_messages += o.gso_messages;
        self.by_helpers += o.by_helpers;
    }
}

/// A flush cut into messages, shared with the send pool's helper threads.
#[cfg(target_os = "linux")]
pub(super) struct Planned {
    pub(super) fd: std::os::fd::RawFd,
    pub(super) queue: Vec<(BytesMut, SocketAddr)>,
    pub(super) order: Vec<u32>,
    pub(super) groups: Vec<Group>,
    pub(super) chunk: usize,
    pub(super) gso: bool,
}

#[cfg(target_os = "linux")]
impl Planned {
    /// Sends the messages `groups[range]`; true in the second field if the kernel refused GSO.
    pub(super) fn send(&self, range: std::ops::Range<usize>) -> (Flushed, bool) {
        send_groups(self.fd, &self.queue, &self.order, &self.groups[range], self.chunk, self.gso)
    }

    /// The destination of message `g`.
    pub(super) fn dest(&self, g: usize) -> SocketAddr {
        self.queue[self.order[self.groups[g].start as usize] as usize].1
    }
}

/// Sends `groups` (messages of a plan) in `sendmmsg` calls of up to `chunk` messages, never
/// blocking: what the socket cannot take now is dropped and counted. True in the second field
/// if the kernel refused a GSO message (the caller turns GSO off).
#[cfg(target_os = "linux")]
fn send_groups(
    fd: std::os::fd::RawFd,
    queue: &[(BytesMut, SocketAddr)],
    order: &[u32],
    groups: &[Group],
    chunk: usize,
    gso: bool,
) -> (Flushed, bool) {
    let mut out = Flushed::default();
    let mut refused = false;
    let mut start = 0;
    while start < groups.len() {
        let end = (start + chunk).min(groups.len());
        match send_chunk(fd, queue, order, &groups[start..end], &mut out) {
            ChunkResult::Sent(n) => start += n,
            ChunkResult::WouldBlock => {
                out.would_block += groups[start..].iter().map(|g| u64::from(g.count)).sum::<u64>();
                break;
            }
            ChunkResult::Failed => {
                // the first message of the chunk is undeliverable
                let g = groups[start];
                if g.count > 1 && gso {
                    refused = true;
                }
                out.errors += u64::from(g.count);
                start += 1;
            }
        }
    }
    (out, refused)
}

/// A destination as integers, for sorting the queue: the address bits, then the port with the
/// family and scope id above it (an IPv4 address and the IPv6 address with the same bits
/// differ), then the queue index.
type DestKey = (u128, u64, u32);

fn dest_key(to: &SocketAddr, index: u32) -> DestKey {
    match to {
        SocketAddr::V4(a) => (u128::from(u32::from(*a.ip())), u64::from(a.port()), index),
        SocketAddr::V6(a) => {
            (u128::from(*a.ip()), u64::from(a.port()) | 1 << 16 | u64::from(a.scope_id()) << 32, index)
        }
    }
}

/// Splits `queue` into messages: with `gso`, the datagrams of each destination in queue
/// order, cut into runs of equal length (a shorter one may end a run); without, one message
/// per datagram, in queue order or (`by_destination`) grouped by destination in queue order.
fn plan(
    queue: &[(BytesMut, SocketAddr)],
    gso: bool,
    by_destination: bool,
    keys: &mut Vec<DestKey>,
    order: &mut Vec<u32>,
    groups: &mut Vec<Group>,
) {
    order.clear();
    groups.clear();
    if by_destination || gso {
        // integers sorted in place (no indirection, no scratch allocation); the queue index
        // breaks ties, so each destination's datagrams keep their order
        keys.clear();
        keys.extend(queue.iter().enumerate().map(|(i, (_, to))| dest_key(to, i as u32)));
        keys.sort_unstable();
        order.extend(keys.iter().map(|k| k.2));
    } else {
        order.extend(0..queue.len() as u32);
    }
    if !gso {
        groups.extend((0..queue.len() as u32).map(|i| Group { start: i, count: 1, seg: 0 }));
        return;
    }
    let mut open: Option<Group> = None;
    for (pos, &i) in order.iter().enumerate() {
        let (data, to) = &queue[i as usize];
        let len = data.len();
        if let Some(g) = open.as_mut() {
            let same_dest = queue[order[g.start as usize] as usize].1 == *to;
            let seg = usize::from(g.seg);
            let fits = usize::from(g.count) < MAX_SEGMENTS && (usize::from(g.count) + 1) * seg <= MAX_GSO_BYTES;
            if same_dest && fits && len <= seg {
                g.count += 1;
                if len < seg {
                    // a shorter datagram can only end a message
                    groups.push(*g);
                    open = None;
                }
                continue;
            }
            groups.push(*g);
        }
        // u16 is enough: a UDP payload is at most 65507 bytes
        open = Some(Group { start: pos as u32, count: 1, seg: len.min(usize::from(u16::MAX)) as u16 });
    }
    if let Some(g) = open {
        groups.push(g);
    }
}

#[cfg(target_os = "linux")]
enum ChunkResult {
    /// This many messages (at least one) were sent.
    Sent(usize),
    /// The socket buffer is full.
    WouldBlock,
    /// The first message failed for another reason.
    Failed,
}

/// Space for one `UDP_SEGMENT` control message (a `cmsghdr` and a u16, aligned).
#[cfg(target_os = "linux")]
type CmsgBuf = [u64; 4];

/// One `sendmmsg` for up to [`MAX_CHUNK`] messages.
#[cfg(target_os = "linux")]
fn send_chunk(
    fd: std::os::fd::RawFd,
    queue: &[(BytesMut, SocketAddr)],
    order: &[u32],
    groups: &[Group],
    out: &mut Flushed,
) -> ChunkResult {
    debug_assert!(!groups.is_empty() && groups.len() <= MAX_CHUNK);
    let datagrams: usize = groups.iter().map(|g| usize::from(g.count)).sum();
    // SAFETY: all-zero is a valid value for these plain C structs.
    let mut addrs: [libc::sockaddr_storage; MAX_CHUNK] = unsafe { std::mem::zeroed() };
    let mut msgs: [libc::mmsghdr; MAX_CHUNK] = unsafe { std::mem::zeroed() };
    let mut cmsgs: [CmsgBuf; MAX_CHUNK] = [[0; 4]; MAX_CHUNK];
    let mut iovs: Vec<libc::iovec> = Vec::with_capacity(datagrams);
    for g in groups {
        for &i in &order[g.start as usize..g.start as usize + usize::from(g.count)] {
            let data = &queue[i as usize].0;
            iovs.push(libc::iovec { iov_base: data.as_ptr() as *mut libc::c_void, iov_len: data.len() });
        }
    }
    let mut iov_at = 0;
    for (m, g) in groups.iter().enumerate() {
        let to = &queue[order[g.start as usize] as usize].1;
        let len = write_sockaddr(to, &mut addrs[m]);
        let hdr = &mut msgs[m].msg_hdr;
        hdr.msg_name = (&mut addrs[m]) as *mut libc::sockaddr_storage as *mut libc::c_void;
        hdr.msg_namelen = len;
        hdr.msg_iov = iovs[iov_at..].as_mut_ptr();
        hdr.msg_iovlen = usize::from(g.count);
        iov_at += usize::from(g.count);
        if g.count > 1 {
            // SAFETY: the buffer is large and aligned enough for one cmsghdr plus a u16
            // (CMSG_SPACE(2) = 24 bytes on 64-bit Linux), and `hdr` points at it.
            unsafe {
                let space = libc::CMSG_SPACE(std::mem::size_of::<u16>() as u32) as usize;
                debug_assert!(space <= std::mem::size_of::<CmsgBuf>());
                hdr.msg_control = cmsgs[m].as_mut_ptr() as *mut libc::c_void;
                hdr.msg_controllen = space;
                let c = libc::CMSG_FIRSTHDR(hdr);
                (*c).cmsg_level = libc::SOL_UDP;
                (*c).cmsg_type = libc::UDP_SEGMENT;
                (*c).cmsg_len = libc::CMSG_LEN(std::mem::size_of::<u16>() as u32) as usize;
                std::ptr::write_unaligned(libc::CMSG_DATA(c) as *mut u16, g.seg);
            }
        }
    }
    out.syscalls += 1;
    // SAFETY: `msgs` points into `addrs`, `iovs` and `cmsgs`, which outlive the call; each
    // iovec points at a live buffer of `queue`, which the kernel only reads.
    let n = unsafe { libc::sendmmsg(fd, msgs.as_mut_ptr(), groups.len() as libc::c_uint, libc::MSG_DONTWAIT) };
    if n > 0 {
        let n = n as usize;
        for g in &groups[..n] {
            out.sent += u64::from(g.count);
            out.gso_messages += u64::from(g.count > 1);
            out.bytes += order[g.start as usize..g.start as usize + usize::from(g.count)]
                .iter()
                .map(|&i| queue[i as usize].0.len() as u64)
                .sum::<u64>();
        }
        return ChunkResult::Sent(n);
    }
    let err = std::io::Error::last_os_error();
    match err.kind() {
        std::io::ErrorKind::WouldBlock => ChunkResult::WouldBlock,
        std::io::ErrorKind::Interrupted => ChunkResult::Sent(0),
        _ => {
            tracing::debug!(error = %err, to = %queue[order[groups[0].start as usize] as usize].1, "sendmmsg failed");
            ChunkResult::Failed
        }
    }
}

/// Writes `addr` as a C socket address; returns its length.
#[cfg(target_os = "linux")]
fn write_sockaddr(addr: &SocketAddr, storage: &mut libc::sockaddr_storage) -> libc::socklen_t {
    match addr {
        SocketAddr::V4(a) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: a.port().to_be(),
                sin_addr: libc::in_addr { s_addr: u32::from_ne_bytes(a.ip().octets()) },
                sin_zero: [0; 8],
            };
            // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_in.
            unsafe { std::ptr::write(storage as *mut _ as *mut libc::sockaddr_in, sin) };
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t
        }
        SocketAddr::V6(a) => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: a.port().to_be(),
                sin6_flowinfo: a.flowinfo(),
                sin6_addr: libc::in6_addr { s6_addr: a.ip().octets() },
                sin6_scope_id: a.scope_id(),
            };
            // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_in6.
            unsafe { std::ptr::write(storage as *mut _ as *mut libc::sockaddr_in6, sin6) };
            std::mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t
        }
    }
}

#[cfg(test)]
#[path = "batch_tests.rs"]
mod tests;
