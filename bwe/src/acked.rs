//! The throughput the receiver acknowledged: bytes received over a window of arrival time.

use crate::Bitrate;
use std::collections::VecDeque;

/// Arrival-time window of the measurement, microseconds.
const WINDOW_US: i64 = 500_000;
/// Least span of arrivals before a rate is given, microseconds.
const MIN_SPAN_US: i64 = 100_000;

/// Acknowledged throughput.
#[derive(Debug, Clone, Default)]
pub struct AckedRate {
    packets: VecDeque<(i64, usize)>,
    bytes: u64,
}

impl AckedRate {
    /// Nothing acknowledged yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// One packet received at `arrival_us` (receiver clock).
    pub fn on_received(&mut self, arrival_us: i64, size: usize) {
        if let Some(&(last, _)) = self.packets.back()
            && arrival_us < last
        {
            // reordered feedback: count the bytes at the newest time
            self.packets.push_back((last, size));
        } else {
            self.packets.push_back((arrival_us, size));
        }
        self.bytes += size as u64;
        let newest = self.packets.back().map_or(arrival_us, |p| p.0);
        while let Some(&(t, s)) = self.packets.front() {
            if newest - t <= WINDOW_US {
                break;
            }
            self.bytes -= s as u64;
            self.packets.pop_front();
        }
    }

    /// The rate over the window; `None` before arrivals span enough time.
    pub fn rate(&self) -> Option<Bitrate> {
        let (&(first, first_size), &(last, _)) = (self.packets.front()?, self.packets.back()?);
        let span = last - first;
        if span < MIN_SPAN_US {
            return None;
        }
        // the first packet's bytes arrived before the span started
        let bytes = self.bytes - first_size as u64;
        Some(Bitrate::of(bytes, std::time::Duration::from_micros(span as u64)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_over_the_window() {
        let mut a = AckedRate::new();
        assert_eq!(a.rate(), None);
        // 1000 bytes every 10 ms: 800 kbit/s
        for i in 0..5 {
            a.on_received(i * 10_000, 1000);
        }
        assert_eq!(a.rate(), None, "40 ms is too short a span");
        for i in 5..200 {
            a.on_received(i * 10_000, 1000);
        }
        assert_eq!(a.rate(), Some(Bitrate::kbps(800)));
        // the rate halves: after a window only the new rate counts
        for i in 0..100 {
            a.on_received(2_000_000 + i * 20_000, 1000);
        }
        assert_eq!(a.rate(), Some(Bitrate::kbps(400)));
    }
}
