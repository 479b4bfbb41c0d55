//! The single UDP media port: demultiplexing and the socket reader.

pub mod demux;
pub mod reader;
pub mod stun;

pub use demux::{Datagram, Demux, PeerKey, Route};
