//! The bitrate a publisher's layer arrives at, measured over half-second windows: what the
//! allocator charges a subscriber for forwarding that layer.

use std::time::{Duration, Instant};

/// Length of a measurement window.
const WINDOW: Duration = Duration::from_millis(500);
/// A rate older than this is not trusted (the layer stopped).
const STALE: Duration = Duration::from_secs(2);
/// Bytes added per packet for what the forwarded copy carries besides the payload: RTP header,
/// transport-wide extension, SRTP tag.
pub const PACKET_OVERHEAD: usize = 12 + 8 + 16;

/// A layer's measured rate.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RateMeter {
    start: Option<Instant>,
    bytes: u64,
    /// Bits per second of the last windows (smoothed), and when it was measured.
    rate: Option<(u64, Instant)>,
}

impl RateMeter {
    /// Nothing measured yet.
    pub const fn new() -> Self {
        Self { start: None, bytes: 0, rate: None }
    }

    /// Counts a packet of `payload` bytes arriving at `now`.
    pub fn on_packet(&mut self, payload: usize, now: Instant) {
        let start = *self.start.get_or_insert(now);
        self.bytes += (payload + PACKET_OVERHEAD) as u64;
        let elapsed = now.saturating_duration_since(start);
        if elapsed >= WINDOW {
            let measured = (self.bytes as f64 * 8.0 / elapsed.as_secs_f64()) as u64;
            let smoothed = match self.rate {
                // a window after a pause starts afresh
                Some((r, at)) if now.saturating_duration_since(at) < STALE => (r + measured) / 2,
                _ => measured,
            };
            self.rate = Some((smoothed, now));
            self.start = Some(now);
            self.bytes = 0;
        }
    }

    /// The last rate measured, however old (a layer the publisher stopped still costs this
    /// when it resumes).
    pub fn last_bps(&self) -> Option<u64> {
        self.rate.map(|(r, _)| r)
    }

    /// Bits per second, unless none was measured lately.
    pub fn bps(&self, now: Instant) -> Option<u64> {
        self.rate.filter(|(_, at)| now.saturating_duration_since(*at) < STALE).map(|(r, _)| r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn measures_windows_and_forgets_a_stopped_layer() {
        let t0 = Instant::now();
        let mut m = RateMeter::new();
        assert_eq!(m.bps(t0), None);
        // 1000-byte payloads every 10 ms: (1000 + overhead) * 8 * 100 bit/s
        let want = ((1000 + PACKET_OVERHEAD) * 8 * 100) as u64;
        for i in 0..=100u64 {
            m.on_packet(1000, t0 + Duration::from_millis(i * 10));
        }
        let at = t0 + Duration::from_secs(1);
        let got = m.bps(at).expect("measured");
        assert!(got.abs_diff(want) <= want / 50, "{got} vs {want}");
        assert_eq!(m.bps(at + STALE), None, "stale");
    }
}
