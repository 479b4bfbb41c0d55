//! Media plane of the SFU: the UDP media port, room workers and packet forwarding.
//!
//! Layout follows the data path: [`udp`] reads the one media port and routes datagrams,
//! [`room`] holds one worker task per room that owns its peers' `rtc` connections, and
//! [`forward`] holds the pure per-packet logic (layer selection, rewriting) the workers call.

pub mod assets;
pub mod config;
pub mod drop_reason;
pub mod forward;
pub mod metrics;
pub mod room;
pub mod server;
pub mod telemetry;
pub mod udp;
