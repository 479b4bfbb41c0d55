//! The kernel's cost of sending one UDP datagram on this machine, without an SFU: the floor
//! under the server's CPU per forwarded packet.
//!
//! ```sh
//! cargo run --release -p sfu-benches --bin udpcost                                  # loopback, 500 receivers
//! cargo run --release -p sfu-benches --bin udpcost -- --segments 7 --receiver-gro   # GSO trains into GRO sockets
//! sudo scripts/udpcost-veth.sh                                                      # send path only (no delivery)
//! cargo run --release -p sfu-benches --bin udpcost -- --sender-in-epoll             # as a socket that also reads
//! cargo run --release -p sfu-benches --bin udpcost -- --df                          # don't-fragment: no IP id
//! cargo run --release -p sfu-benches --bin udpcost -- --df --connected              # a connected socket per destination
//! ```
//!
//! One thread sends `--datagrams` datagrams of `--size` bytes with `sendmmsg` (64 messages per
//! call, `--segments` datagrams per message with UDP GSO), round-robin to `--destinations`
//! ports; it reports its own CPU time (user + system, `RUSAGE_THREAD`) per datagram. With
//! `--to 127.0.0.1` (default) a receiver thread binds those ports and drains them, and the
//! sender's time includes the loopback delivery into the receiving sockets (it runs in the
//! sender's system call, as it does for the SFU on loopback). With `--to` an address behind
//! a device that drops everything (`scripts/udpcost-veth.sh`: a veth whose peer is down) it
//! is the send path alone, as far as a NIC driver's own work.

use clap::Parser;
use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// Kernel UDP send cost per datagram.
#[derive(Debug, Parser)]
struct Args {
    /// Destination address; 127.0.0.1 starts receivers on it.
    #[arg(long, default_value = "127.0.0.1")]
    to: Ipv4Addr,
    /// Destination ports (one receiving socket each on loopback).
    #[arg(long, default_value_t = 500)]
    destinations: u16,
    /// First destination port.
    #[arg(long, default_value_t = 41000)]
    port: u16,
    /// Bytes per datagram.
    #[arg(long, default_value_t = 200)]
    size: usize,
    /// Datagrams per message (UDP GSO when more than 1).
    #[arg(long, default_value_t = 1)]
    segments: usize,
    /// Datagrams to send.
    #[arg(long, default_value_t = 640_000)]
    datagrams: u64,
    /// Receiving sockets turn UDP GRO on (a GSO train is queued and read as one buffer).
    #[arg(long)]
    receiver_gro: bool,
    /// Register the sending socket with an epoll set for reading, as a socket that also
    /// reads is (its wait queue then has an entry every freed datagram's write-space
    /// callback walks, under the queue's lock).
    #[arg(long)]
    sender_in_epoll: bool,
    /// Set don't-fragment on the sending socket (`IP_PMTUDISC_PROBE`: no IP identifier is
    /// drawn per datagram).
    #[arg(long)]
    df: bool,
    /// One socket connected to each destination, one `send` per datagram (no route lookup
    /// or address import per datagram, but one system call each) instead of `sendmmsg`.
    #[arg(long)]
    connected: bool,
}

fn thread_cpu() -> f64 {
    // SAFETY: getrusage writes into the zeroed struct.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut ru) };
    let t = |tv: libc::timeval| tv.tv_sec as f64 + tv.tv_usec as f64 / 1e6;
    t(ru.ru_utime) + t(ru.ru_stime)
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    anyhow::ensure!(args.size * args.segments <= 65_000, "--size x --segments must fit 65000 bytes");
    let stop = Arc::new(AtomicBool::new(false));
    let received = Arc::new(AtomicU64::new(0));
    let receiver = if args.to.is_loopback() {
        let mut sockets = Vec::new();
        for i in 0..args.destinations {
            let s = UdpSocket::bind(SocketAddrV4::new(args.to, args.port + i))?;
            s.set_nonblocking(true)?;
            set_int(&s, libc::SOL_SOCKET, libc::SO_RCVBUF, 4 << 20);
            if args.receiver_gro {
                anyhow::ensure!(set_int(&s, libc::SOL_UDP, libc::UDP_GRO, 1), "UDP_GRO refused");
            }
            sockets.push(s);
        }
        let (stop, received) = (stop.clone(), received.clone());
        let size = args.size;
        Some(std::thread::spawn(move || drain(&sockets, size, &stop, &received)))
    } else {
        None
    };
    let payload = vec![0x5au8; args.size * args.segments];
    if args.connected {
        return send_connected(&args, &payload, receiver, &stop, &received);
    }
    let tx = sending_socket(args.df)?;
    let fd = tx.as_raw_fd();
    if args.sender_in_epoll {
        watch_for_reading(&[fd])?;
    }
    let dests: Vec<libc::sockaddr_in> = (0..args.destinations)
        .map(|i| libc::sockaddr_in {
            sin_family: libc::AF_INET as libc::sa_family_t,
            sin_port: (args.port + i).to_be(),
            sin_addr: libc::in_addr { s_addr: u32::from_ne_bytes(args.to.octets()) },
            sin_zero: [0; 8],
        })
        .collect();
    let mut cmsgs = [[0u64; 4]; 64];
    let mut sent = 0u64;
    let mut failed = 0u64;
    let mut next = 0usize;
    let start = thread_cpu();
    let wall = std::time::Instant::now();
    while sent + failed < args.datagrams {
        // SAFETY: all-zero is valid for these C structs; every pointer below points at a live buffer.
        let mut iovs: [libc::iovec; 64] = unsafe { std::mem::zeroed() };
        let mut msgs: [libc::mmsghdr; 64] = unsafe { std::mem::zeroed() };
        for j in 0..64 {
            iovs[j] = libc::iovec { iov_base: payload.as_ptr() as *mut libc::c_void, iov_len: payload.len() };
            let h = &mut msgs[j].msg_hdr;
            h.msg_iov = &mut iovs[j];
            h.msg_iovlen = 1;
            h.msg_name = (&dests[next] as *const libc::sockaddr_in as *mut libc::sockaddr_in).cast();
            h.msg_namelen = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
            next = (next + 1) % dests.len();
            if args.segments > 1 {
                // SAFETY: the buffer holds CMSG_SPACE(2) bytes, aligned for cmsghdr.
                unsafe {
                    h.msg_control = cmsgs[j].as_mut_ptr().cast();
                    h.msg_controllen = libc::CMSG_SPACE(2) as usize;
                    let c = libc::CMSG_FIRSTHDR(h);
                    (*c).cmsg_level = libc::SOL_UDP;
                    (*c).cmsg_type = libc::UDP_SEGMENT;
                    (*c).cmsg_len = libc::CMSG_LEN(2) as usize;
                    std::ptr::write_unaligned(libc::CMSG_DATA(c) as *mut u16, args.size as u16);
                }
            }
        }
        // SAFETY: `msgs` points into `iovs`, `dests`, `cmsgs` and `payload`, all alive.
        let n = unsafe { libc::sendmmsg(fd, msgs.as_mut_ptr(), 64, 0) };
        let per = args.segments as u64;
        if n < 0 {
            failed += 64 * per;
        } else {
            sent += n as u64 * per;
            failed += (64 - n as u64) * per;
        }
    }
    let cpu = thread_cpu() - start;
    let wall = wall.elapsed().as_secs_f64();
    std::thread::sleep(std::time::Duration::from_millis(300));
    stop.store(true, Ordering::Relaxed);
    let receiver_cpu = receiver.map(|r| r.join().expect("receiver thread"));
    // (the receiver's own CPU is not reported: it spins while data flows, so it says nothing)
    let got = received.load(Ordering::Relaxed);
    println!(
        "to {} ({} destinations), {} B x {} per message{}{}: {:.2} us CPU per datagram sent ({} sent, {} failed, {:.2} s CPU in {:.2} s){}",
        args.to,
        args.destinations,
        args.size,
        args.segments,
        if args.sender_in_epoll { ", sender in an epoll set" } else { "" },
        if args.df { ", DF" } else { "" },
        cpu * 1e6 / (sent + failed) as f64,
        sent,
        failed,
        cpu,
        wall,
        match receiver_cpu {
            Some(_) => format!("; {} datagrams received{}", got, if args.receiver_gro { " (GRO sockets)" } else { "" }),
            None => String::new(),
        }
    );
    Ok(())
}

/// `--connected`: one connected socket per destination, one `send` each, round-robin.
fn send_connected(
    args: &Args,
    payload: &[u8],
    receiver: Option<std::thread::JoinHandle<f64>>,
    stop: &AtomicBool,
    received: &AtomicU64,
) -> anyhow::Result<()> {
    anyhow::ensure!(args.segments == 1, "--connected sends one datagram per call");
    let mut socks = Vec::new();
    for i in 0..args.destinations {
        let s = sending_socket(args.df)?;
        s.connect(SocketAddrV4::new(args.to, args.port + i))?;
        socks.push(s);
    }
    if args.sender_in_epoll {
        // a connected socket receives its peer's datagrams, so a server would watch each
        watch_for_reading(&socks.iter().map(|s| s.as_raw_fd()).collect::<Vec<_>>())?;
    }
    let (mut sent, mut failed) = (0u64, 0u64);
    let start = thread_cpu();
    let mut next = 0usize;
    while sent + failed < args.datagrams {
        // SAFETY: a live socket and buffer of the length passed.
        let n = unsafe { libc::send(socks[next].as_raw_fd(), payload.as_ptr().cast(), payload.len(), 0) };
        if n < 0 {
            failed += 1;
        } else {
            sent += 1;
        }
        next = (next + 1) % socks.len();
    }
    let cpu = thread_cpu() - start;
    std::thread::sleep(std::time::Duration::from_millis(300));
    stop.store(true, Ordering::Relaxed);
    if let Some(r) = receiver {
        r.join().expect("receiver thread");
    }
    println!(
        "to {} ({} connected sockets{}), {} B, one send each{}: {:.2} us CPU per datagram sent ({} sent, {} failed, {:.2} s CPU); {} datagrams received",
        args.to,
        args.destinations,
        if args.sender_in_epoll { " in an epoll set" } else { "" },
        args.size,
        if args.df { ", DF" } else { "" },
        cpu * 1e6 / (sent + failed) as f64,
        sent,
        failed,
        cpu,
        received.load(Ordering::Relaxed)
    );
    Ok(())
}

/// Registers `fds` with a new epoll set for reading (as a server's reading sockets are), left
/// open until the process exits.
fn watch_for_reading(fds: &[std::os::fd::RawFd]) -> anyhow::Result<()> {
    // SAFETY: creates a new epoll instance; no memory is passed.
    let epoll = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
    anyhow::ensure!(epoll >= 0, "epoll_create1 refused");
    for &fd in fds {
        let mut event = libc::epoll_event { events: libc::EPOLLIN as u32, u64: 0 };
        // SAFETY: `epoll` and `fd` are live descriptors; `event` is read during the call.
        anyhow::ensure!(
            unsafe { libc::epoll_ctl(epoll, libc::EPOLL_CTL_ADD, fd, &mut event) } == 0,
            "epoll_ctl refused"
        );
    }
    Ok(())
}

/// A socket to send from: a large send buffer, and don't-fragment with `df`.
fn sending_socket(df: bool) -> anyhow::Result<UdpSocket> {
    let s = UdpSocket::bind("0.0.0.0:0")?;
    set_int(&s, libc::SOL_SOCKET, libc::SO_SNDBUF, 4 << 20);
    if df {
        anyhow::ensure!(
            set_int(&s, libc::IPPROTO_IP, libc::IP_MTU_DISCOVER, libc::IP_PMTUDISC_PROBE),
            "IP_MTU_DISCOVER refused"
        );
    }
    Ok(s)
}

fn set_int(s: &UdpSocket, level: libc::c_int, name: libc::c_int, value: libc::c_int) -> bool {
    // SAFETY: a valid socket and a c_int option of the size passed.
    unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            level,
            name,
            (&value as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        ) == 0
    }
}

/// Reads every socket until `stop`, sleeping in `poll` when all are empty; counts datagrams
/// (a GRO buffer by its segments). Returns the thread's CPU seconds.
fn drain(sockets: &[UdpSocket], size: usize, stop: &AtomicBool, received: &AtomicU64) -> f64 {
    let start = thread_cpu();
    let mut buf = vec![0u8; 65_536];
    let mut fds: Vec<libc::pollfd> =
        sockets.iter().map(|s| libc::pollfd { fd: s.as_raw_fd(), events: libc::POLLIN, revents: 0 }).collect();
    let mut count = 0u64;
    while !stop.load(Ordering::Relaxed) {
        // SAFETY: `fds` is a live array of pollfd of the length passed.
        let r = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, 50) };
        if r <= 0 {
            continue;
        }
        for (pfd, s) in fds.iter_mut().zip(sockets) {
            if pfd.revents == 0 {
                continue;
            }
            pfd.revents = 0;
            while let Ok(n) = s.recv(&mut buf) {
                // a GRO buffer holds several datagrams of the sender's size
                count += n.div_ceil(size.max(1)) as u64;
            }
        }
    }
    received.store(count, Ordering::Relaxed);
    thread_cpu() - start
}
