//! Headless WebRTC clients for the SFU, for integration tests and load tests.
//!
//! A [`Client`] joins a room through the public WebSocket protocol (docs/protocol.md),
//! publishes synthetic media (Opus-sized audio, VP8 simulcast q/h/f with real payload
//! descriptors and keyframe headers) and analyzes what it receives (loss, order, keyframes,
//! picture ids, layer switches, latency, jitter). The peer connections of many clients run on
//! one [`Engine`] task driving the sans-IO `rtc` stack, each connection on its own UDP socket.
//!
//! ```no_run
//! # async fn demo() -> Result<(), loadtest::ClientError> {
//! use loadtest::{Client, Engine, JoinOptions};
//! use std::time::Duration;
//! let engine = Engine::spawn();
//! let mut alice = Client::join("ws://127.0.0.1:7880/ws", "demo", "alice", JoinOptions::on(&engine)).await?;
//! alice.publish().await?;
//! let mut bob = Client::join("ws://127.0.0.1:7880/ws", "demo", "bob", JoinOptions::on(&engine)).await?;
//! let stats = bob.wait_stats(Duration::from_secs(5), "video", |s| s.tracks.len() == 2).await?;
//! println!("{stats:?}");
//! # Ok(()) }
//! ```

pub mod client;
mod driver;
pub mod engine;
pub mod error;
pub mod event;
pub mod gaps;
pub mod janus;
pub mod peer;
pub mod probe;
pub mod procstat;
pub mod publisher;
pub mod recv;
pub mod reports;
pub mod signal;
pub mod socket;
pub mod srtp_in;
pub mod stats;
pub mod subscriber;
pub mod synth;
pub mod tunnel;
pub mod twcc;
pub mod vp8;
pub mod wish;

pub use client::{Client, JoinOptions};
pub use engine::{Engine, EngineOptions};
pub use error::ClientError;
pub use event::{Event, Role};
pub use gaps::{ArrivalGaps, Gap};
pub use publisher::PublishOptions;
pub use signal::Outbound;
pub use stats::{ClientStats, Histogram, LayerSwitch, PublisherStats, TrackStats};
pub use tunnel::{MediaPath, MediaTransport, TurnCredential};
