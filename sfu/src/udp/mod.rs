//! The single UDP media port: demultiplexing and the socket reader.

pub mod batch;
pub mod pool;
pub mod demux;
pub mod reader;
pub mod stun;

pub use batch::SendBatch;
pub use pool::SendPool;
pub use demux::{Datagram, Demux, PeerKey, Route};
