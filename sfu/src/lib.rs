//! Media plane of the SFU: the UDP media ports, rooms and packet forwarding.
//!
//! Layout follows the data path: [`udp`] reads the media ports and routes datagrams,
//! [`room`] holds each room's sans-IO core (its peers' `rtc` connections, the media path) and
//! the task that drives it, and [`forward`] holds the pure per-packet logic (layer selection,
//! rewriting, retransmission cache) the cores call.

pub mod assets;
pub mod config;
pub mod discover;
pub mod drop_reason;
pub mod forward;
pub mod fuzz_targets;
pub mod http;
pub mod metrics;
pub mod room;
pub mod server;
pub mod tcp;
pub mod telemetry;
pub mod tls;
pub mod turn;
pub mod udp;
