//! The bitrate a publisher's layer arrives at, measured over half-second windows per temporal
//! layer: what the allocator charges a subscriber for forwarding that layer, or part of it.

use super::temporal::Tid;
use std::time::{Duration, Instant};

/// Length of a measurement window.
const WINDOW: Duration = Duration::from_millis(500);
/// A rate older than this is not trusted (the layer stopped).
const STALE: Duration = Duration::from_secs(2);
/// Bytes added per packet for what the forwarded copy carries besides the payload: RTP header,
/// transport-wide extension, SRTP tag.
pub const PACKET_OVERHEAD: usize = 12 + 8 + 16;

/// Per temporal layer.
type PerTid = [u64; Tid::COUNT];

/// A layer's measured rate, per temporal layer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RateMeter {
    start: Option<Instant>,
    bytes: PerTid,
    /// Bits per second of each temporal layer over the last windows (smoothed), and when it
    /// was measured.
    rate: Option<(PerTid, Instant)>,
}

impl RateMeter {
    /// Nothing measured yet.
    pub const fn new() -> Self {
        Self { start: None, bytes: [0; Tid::COUNT], rate: None }
    }

    /// Counts a packet of `payload` bytes of temporal layer `tid` arriving at `now`.
    pub fn on_packet(&mut self, payload: usize, tid: Tid, now: Instant) {
        let start = *self.start.get_or_insert(now);
        self.bytes[tid.index()] += (payload + PACKET_OVERHEAD) as u64;
        let elapsed = now.saturating_duration_since(start);
        if elapsed >= WINDOW {
            let secs = elapsed.as_secs_f64();
            let measured = self.bytes.map(|b| (b as f64 * 8.0 / secs) as u64);
            let smoothed = match self.rate {
                // a window after a pause starts afresh
                Some((r, at)) if now.saturating_duration_since(at) < STALE => {
                    std::array::from_fn(|i| (r[i] + measured[i]) / 2)
                }
                _ => measured,
            };
            self.rate = Some((smoothed, now));
            self.start = Some(now);
            self.bytes = [0; Tid::COUNT];
        }
    }

    /// The last rate measured of every temporal layer, however old (a layer the publisher
    /// stopped still costs this when it resumes).
    pub fn last_bps(&self) -> Option<u64> {
        self.rate.map(|(r, _)| r.iter().sum())
    }

    /// The last rate measured of the temporal layers up to `tid`, however old.
    pub fn last_bps_up_to(&self, tid: Tid) -> Option<u64> {
        self.rate.map(|(r, _)| r.iter().take(tid.index() + 1).sum())
    }

    /// The temporal layers the last measurement saw, the highest (`BASE` when the stream has none).
    pub fn top_tid(&self) -> Option<Tid> {
        let (r, _) = self.rate?;
        Some(r.iter().rposition(|&b| b > 0).and_then(|i| Tid::new(i as u8)).unwrap_or(Tid::BASE))
    }

    /// Bits per second, unless none was measured lately.
    pub fn bps(&self, now: Instant) -> Option<u64> {
        self.rate.filter(|(_, at)| now.saturating_duration_since(*at) < STALE).map(|(r, _)| r.iter().sum())
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
            m.on_packet(1000, Tid::BASE, t0 + Duration::from_millis(i * 10));
        }
        let at = t0 + Duration::from_secs(1);
        let got = m.bps(at).expect("measured");
        assert!(got.abs_diff(want) <= want / 50, "{got} vs {want}");
        assert_eq!(m.top_tid(), Some(Tid::BASE));
        assert_eq!(m.bps(at + STALE), None, "stale");
    }

    #[test]
    fn measures_each_temporal_layer() {
        let t0 = Instant::now();
        let mut m = RateMeter::new();
        // frames of TIDs 0, 2, 1, 2 with sizes 4:1:2:1 (as encoders weigh them)
        let pattern = [(0u8, 4000usize), (2, 1000), (1, 2000), (2, 1000)];
        for i in 0..=120u64 {
            let (tid, size) = pattern[i as usize % pattern.len()];
            m.on_packet(size - PACKET_OVERHEAD, Tid::new(tid).expect("tid"), t0 + Duration::from_millis(i * 10));
        }
        let all = m.last_bps().expect("measured") as f64;
        let share = |t: u8| m.last_bps_up_to(Tid::new(t).expect("tid")).expect("measured") as f64 / all;
        // columns: up to TID, share of the whole rate
        for (tid, want) in [(0, 0.5), (1, 0.75), (2, 1.0)] {
            assert!((share(tid) - want).abs() < 0.03, "TID {tid}: {} vs {want}", share(tid));
        }
        assert_eq!(m.top_tid(), Tid::new(2));
    }
}
