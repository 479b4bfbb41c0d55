//! What a receiver reports back: for each transport-wide sequence number, when it arrived (on
//! the receiver's clock) or that it did not.

use std::time::Instant;

/// One packet in a receiver's feedback.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Report {
    /// Its transport-wide sequence number, as on the wire.
    pub seq: u16,
    /// When it arrived, in microseconds on the receiver's clock (any origin: only differences
    /// are used); `None`: reported lost.
    pub arrival_us: Option<i64>,
}

/// One feedback message (a TWCC packet or its equivalent).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Feedback {
    /// The packets it covers, in sequence order.
    pub reports: Vec<Report>,
}

/// A sent packet matched with what the receiver said about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PacketResult {
    /// Extended transport-wide sequence number.
    pub seq: u64,
    /// When it was sent.
    pub sent: Instant,
    /// Its size on the wire, bytes.
    pub size: usize,
    /// The probe cluster it belonged to.
    pub probe: Option<u32>,
    /// Arrival on the receiver's clock (microseconds); `None`: lost.
    pub arrival_us: Option<i64>,
}
