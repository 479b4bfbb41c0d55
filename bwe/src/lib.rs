//! Congestion control toward one receiver, sans-IO: every input carries its time.
//!
//! The sender stamps each packet with a transport-wide sequence number and tells the
//! [`SendSideBwe`] (`on_sent`); the receiver's transport-wide feedback comes back as a
//! [`Feedback`] (`on_feedback`). The estimate is the lower of a delay-based one (groups of
//! packets by send time, the trend of their one-way delay variation, an overuse detector with
//! an adaptive threshold, AIMD rate control, as GCC does: draft-ietf-rmcat-gcc) and a
//! loss-based one. [`probe`] finds headroom when the allocation wants more than the estimate,
//! [`Pacer`] spreads bursts, [`allocator`] shares the estimate among a receiver's tracks.
//! [`netem`] is a link model (rate, delay, jitter, loss, queue) to test all of it in virtual
//! time, and [`scenario`] runs the sender against it.

pub mod acked;
pub mod aimd;
pub mod allocator;
mod bitrate;
pub mod cases;
pub mod delay;
mod estimator;
pub mod feedback;
pub mod history;
pub mod loss;
pub mod netem;
mod pacer;
pub mod probe;
pub mod scenario;

pub use bitrate::Bitrate;
pub use estimator::{BweConfig, SendSideBwe, Usage};
pub use feedback::{Feedback, PacketResult};
pub use pacer::Pacer;
