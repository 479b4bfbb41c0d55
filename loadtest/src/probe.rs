//! The probe every synthetic packet carries in its payload, so that a subscriber can tell
//! which simulcast layer a packet came from and how old it is.
//!
//! ```text
//!  0      2       3       4                  12          16
//!  | "LT" | layer | 0     | send time (us, BE) | frame (BE) |
//! ```
//! In video packets it follows the VP8 descriptor (and, in a frame's first packet, the VP8 frame
//! header); in audio packets it starts the payload.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Bytes a probe takes.
pub const PROBE_LEN: usize = 16;
const MAGIC: [u8; 2] = *b"LT";

/// What a probe says about its packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Probe {
    /// Simulcast layer index (0 = q), or 0 for audio.
    pub layer: u8,
    /// When the packet was built, in microseconds since the UNIX epoch.
    pub sent_us: u64,
    /// Frame number within its layer.
    pub frame: u32,
}

impl Probe {
    /// Writes the probe into the first [`PROBE_LEN`] bytes of `out`.
    pub fn write(&self, out: &mut [u8]) {
        out[..2].copy_from_slice(&MAGIC);
        out[2] = self.layer;
        out[3] = 0;
        out[4..12].copy_from_slice(&self.sent_us.to_be_bytes());
        out[12..16].copy_from_slice(&self.frame.to_be_bytes());
    }

    /// Reads a probe from the start of `data`, if there is one.
    pub fn read(data: &[u8]) -> Option<Probe> {
        let p = data.get(..PROBE_LEN)?;
        if p[..2] != MAGIC {
            return None;
        }
        Some(Probe {
            layer: p[2],
            sent_us: u64::from_be_bytes(p[4..12].try_into().ok()?),
            frame: u32::from_be_bytes(p[12..16].try_into().ok()?),
        })
    }
}

/// Converts monotonic instants into microseconds since the UNIX epoch, so that sender and
/// receiver stamps compare across processes (and across hosts with synchronized clocks).
#[derive(Debug, Clone, Copy)]
pub struct WallClock {
    base: Instant,
    base_us: u64,
}

impl WallClock {
    /// Anchors the conversion at the current time.
    pub fn new() -> Self {
        let base = Instant::now();
        let since = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO);
        WallClock { base, base_us: since.as_micros() as u64 }
    }

    /// Microseconds since the UNIX epoch at `at`.
    pub fn micros(&self, at: Instant) -> u64 {
        match at.checked_duration_since(self.base) {
            Some(d) => self.base_us + d.as_micros() as u64,
            None => self.base_us.saturating_sub(self.base.duration_since(at).as_micros() as u64),
        }
    }
}

impl Default for WallClock {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let p = Probe { layer: 2, sent_us: 1_700_000_000_123_456, frame: 99 };
        let mut buf = [0u8; PROBE_LEN + 3];
        p.write(&mut buf);
        assert_eq!(Probe::read(&buf), Some(p));
        assert_eq!(Probe::read(&buf[..PROBE_LEN - 1]), None);
        buf[0] = b'X';
        assert_eq!(Probe::read(&buf), None);
    }

    #[test]
    fn wall_clock_is_monotonic_with_instants() {
        let c = WallClock::new();
        let now = Instant::now();
        let a = c.micros(now);
        let b = c.micros(now + Duration::from_millis(5));
        assert_eq!(b - a, 5000);
        assert!(c.micros(now - Duration::from_millis(1)) < a);
    }
}
