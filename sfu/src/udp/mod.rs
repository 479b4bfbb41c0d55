//! The media port: demultiplexing, the UDP socket reader and batched sends (ICE-TCP
//! connections on the same port number: `crate::tcp`).

pub mod arena;
pub mod batch;
pub mod demux;
pub mod path;
pub mod pool;
pub mod reader;
pub mod recv_batch;
pub mod socket;
pub mod stun;

pub use batch::SendBatch;
pub use demux::{Datagram, Demux, PeerKey, Route};
pub use path::Path;
pub use pool::SendPool;
pub use socket::MediaSocket;

/// Sets an integer socket option; false if the kernel refused it.
#[cfg(unix)]
pub(crate) fn set_int_option(
    fd: std::os::fd::RawFd,
    level: libc::c_int,
    name: libc::c_int,
    value: libc::c_int,
) -> bool {
    // SAFETY: `fd` is a socket the caller owns; the value is a c_int of the size passed.
    unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (&value as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        ) == 0
    }
}
