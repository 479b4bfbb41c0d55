//! The delay-based detector of GCC: packets grouped by send time, the variation of the
//! one-way delay between groups, its trend over a window (least-squares slope of the smoothed
//! accumulated variation), and an overuse detector with an adaptive threshold
//! (draft-ietf-rmcat-gcc section 5; constants as libwebrtc's trendline estimator).

use crate::estimator::Usage;
use std::collections::VecDeque;

/// Packets sent within this span form one group (a frame, a burst).
const GROUP_SPAN_MS: f64 = 5.0;
/// Packets arriving this close after a group's last are part of it when their delay shrank
/// (a burst released by a queue).
const BURST_DELTA_MS: f64 = 5.0;
/// A burst lasts at most this long.
const MAX_BURST_MS: f64 = 100.0;
/// Delay variations the trend is fitted over.
const WINDOW: usize = 20;
/// Smoothing of the accumulated delay variation.
const SMOOTHING: f64 = 0.9;
/// Gain applied to the trend before it is compared with the threshold.
const THRESHOLD_GAIN: f64 = 4.0;
/// Most deltas the trend's weight grows with.
const MAX_DELTAS: u32 = 60;
/// How long the trend must stay above the threshold before overuse is declared.
const OVERUSE_TIME_MS: f64 = 10.0;
/// The adaptive threshold: where it starts, its bounds, how fast it follows the trend up
/// and down (per millisecond).
const THRESHOLD_INIT: f64 = 12.5;
const THRESHOLD_MIN: f64 = 6.0;
const THRESHOLD_MAX: f64 = 600.0;
const K_UP: f64 = 0.0087;
const K_DOWN: f64 = 0.039;

/// A group of packets sent together.
#[derive(Debug, Clone, Copy)]
struct Group {
    first_send_ms: f64,
    last_send_ms: f64,
    first_arrival_ms: f64,
    last_arrival_ms: f64,
}

/// The detector's input for one packet: send time (ms on the sender's clock), arrival (ms on
/// the receiver's clock).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Timing {
    /// Send time, milliseconds.
    pub send_ms: f64,
    /// Arrival time, milliseconds.
    pub arrival_ms: f64,
}

/// Delay-based overuse detection.
#[derive(Debug, Clone)]
pub struct DelayDetector {
    current: Option<Group>,
    previous: Option<Group>,
    // trendline
    deltas: u32,
    first_arrival_ms: Option<f64>,
    accumulated_ms: f64,
    smoothed_ms: f64,
    window: VecDeque<(f64, f64)>,
    trend: f64,
    // overuse detector
    threshold: f64,
    last_update_ms: Option<f64>,
    over_since_ms: Option<f64>,
    over_count: u32,
    prev_trend: f64,
    usage: Usage,
}

impl Default for DelayDetector {
    fn default() -> Self {
        Self::new()
    }
}

impl DelayDetector {
    /// A detector that has seen nothing: normal usage.
    pub fn new() -> Self {
        Self {
            current: None,
            previous: None,
            deltas: 0,
            first_arrival_ms: None,
            accumulated_ms: 0.0,
            smoothed_ms: 0.0,
            window: VecDeque::with_capacity(WINDOW + 1),
            trend: 0.0,
            threshold: THRESHOLD_INIT,
            last_update_ms: None,
            over_since_ms: None,
            over_count: 0,
            prev_trend: 0.0,
            usage: Usage::Normal,
        }
    }

    /// The current state.
    pub fn usage(&self) -> Usage {
        self.usage
    }

    /// The last fitted trend (ms of delay growth per ms), for plots and logs.
    pub fn trend(&self) -> f64 {
        self.trend
    }

    /// The adaptive threshold, ms.
    pub fn threshold(&self) -> f64 {
        self.threshold
    }

    /// Feeds one received packet, in arrival order; returns the usage after it.
    pub fn on_packet(&mut self, t: Timing) -> Usage {
        let Some(cur) = self.current.as_mut() else {
            self.current = Some(Group::starting(t));
            return self.usage;
        };
        if t.send_ms < cur.first_send_ms {
            // sent before the group started: reordered, says nothing about the trend
            return self.usage;
        }
        if t.send_ms - cur.first_send_ms <= GROUP_SPAN_MS || cur.burst_with(t) {
            cur.last_send_ms = cur.last_send_ms.max(t.send_ms);
            cur.last_arrival_ms = cur.last_arrival_ms.max(t.arrival_ms);
            return self.usage;
        }
        let done = *cur;
        self.current = Some(Group::starting(t));
        if let Some(prev) = self.previous.replace(done) {
            let send_delta = done.last_send_ms - prev.last_send_ms;
            let arrival_delta = done.last_arrival_ms - prev.last_arrival_ms;
            self.on_delta(send_delta, arrival_delta, done.last_arrival_ms);
        }
        self.usage
    }

    fn on_delta(&mut self, send_delta: f64, arrival_delta: f64, arrival_ms: f64) {
        let variation = arrival_delta - send_delta;
        self.deltas = (self.deltas + 1).min(1000);
        let first = *self.first_arrival_ms.get_or_insert(arrival_ms);
        self.accumulated_ms += variation;
        self.smoothed_ms = SMOOTHING * self.smoothed_ms + (1.0 - SMOOTHING) * self.accumulated_ms;
        self.window.push_back((arrival_ms - first, self.smoothed_ms));
        if self.window.len() > WINDOW {
            self.window.pop_front();
        }
        if self.window.len() == WINDOW
            && let Some(slope) = slope(&self.window)
        {
            self.trend = slope;
        }
        self.detect(send_delta, arrival_ms);
    }

    fn detect(&mut self, send_delta: f64, now_ms: f64) {
        if self.deltas < 2 {
            self.usage = Usage::Normal;
            return;
        }
        let modified = f64::from(self.deltas.min(MAX_DELTAS)) * self.trend * THRESHOLD_GAIN;
        if modified > self.threshold {
            let over = match self.over_since_ms {
                None => send_delta / 2.0,
                Some(t) => t + send_delta,
            };
            self.over_since_ms = Some(over);
            self.over_count += 1;
            if over > OVERUSE_TIME_MS && self.over_count > 1 && self.trend >= self.prev_trend {
                self.over_since_ms = Some(0.0);
                self.over_count = 0;
                self.usage = Usage::Overusing;
            }
        } else if modified < -self.threshold {
            self.over_since_ms = None;
            self.over_count = 0;
            self.usage = Usage::Underusing;
        } else {
            self.over_since_ms = None;
            self.over_count = 0;
            self.usage = Usage::Normal;
        }
        self.prev_trend = self.trend;
        self.adapt_threshold(modified, now_ms);
    }

    /// The threshold follows the trend's magnitude, faster down than up, so a detector sharing
    /// a link with loss-based flows (TCP) is not starved, and ignores spikes far above it.
    fn adapt_threshold(&mut self, modified: f64, now_ms: f64) {
        let last = *self.last_update_ms.get_or_insert(now_ms);
        if modified.abs() > self.threshold + 15.0 {
            self.last_update_ms = Some(now_ms);
            return;
        }
        let k = if modified.abs() < self.threshold { K_DOWN } else { K_UP };
        let dt = (now_ms - last).clamp(0.0, 100.0);
        self.threshold =
            (self.threshold + k * (modified.abs() - self.threshold) * dt).clamp(THRESHOLD_MIN, THRESHOLD_MAX);
        self.last_update_ms = Some(now_ms);
    }
}

impl Group {
    fn starting(t: Timing) -> Self {
        Group {
            first_send_ms: t.send_ms,
            last_send_ms: t.send_ms,
            first_arrival_ms: t.arrival_ms,
            last_arrival_ms: t.arrival_ms,
        }
    }

    /// A packet that arrived right behind the group with less delay than its predecessor:
    /// released from a queue in one burst together with the group.
    fn burst_with(&self, t: Timing) -> bool {
        let arrival_delta = t.arrival_ms - self.last_arrival_ms;
        let send_delta = t.send_ms - self.last_send_ms;
        arrival_delta - send_delta < 0.0
            && arrival_delta <= BURST_DELTA_MS
            && t.arrival_ms - self.first_arrival_ms < MAX_BURST_MS
    }
}

/// Least-squares slope of `y` over `x`.
fn slope(points: &VecDeque<(f64, f64)>) -> Option<f64> {
    let n = points.len() as f64;
    let (sx, sy) = points.iter().fold((0.0, 0.0), |(a, b), (x, y)| (a + x, b + y));
    let (mx, my) = (sx / n, sy / n);
    let (num, den) =
        points.iter().fold((0.0, 0.0), |(num, den), (x, y)| (num + (x - mx) * (y - my), den + (x - mx) * (x - mx)));
    if den == 0.0 { None } else { Some(num / den) }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Packets every `gap_ms` whose one-way delay grows by `growth_ms` per packet.
    fn run(packets: usize, gap_ms: f64, growth_ms: f64) -> (Usage, f64) {
        let mut d = DelayDetector::new();
        let mut usage = Usage::Normal;
        for i in 0..packets {
            let send_ms = i as f64 * gap_ms;
            let arrival_ms = 1000.0 + send_ms + i as f64 * growth_ms;
            usage = d.on_packet(Timing { send_ms, arrival_ms });
        }
        (usage, d.trend())
    }

    #[test]
    fn usage_follows_the_delay_trend() {
        // columns: gap between packets (ms), delay growth per packet (ms), expected usage
        let rows = [
            (10.0, 0.0, Usage::Normal),
            (10.0, 1.0, Usage::Overusing),
            (10.0, 5.0, Usage::Overusing),
            (10.0, -1.0, Usage::Underusing),
            (20.0, 0.05, Usage::Normal),
        ];
        for (gap, growth, want) in rows {
            let (usage, trend) = run(200, gap, growth);
            assert_eq!(usage, want, "gap {gap} ms, growth {growth} ms/packet (trend {trend})");
        }
    }

    #[test]
    fn a_burst_joins_its_group() {
        let mut d = DelayDetector::new();
        // a group at 0 ms, then packets sent 10 and 20 ms later arriving in one burst behind it
        d.on_packet(Timing { send_ms: 0.0, arrival_ms: 100.0 });
        d.on_packet(Timing { send_ms: 10.0, arrival_ms: 101.0 });
        d.on_packet(Timing { send_ms: 20.0, arrival_ms: 102.0 });
        assert_eq!(d.deltas, 0, "no group closed yet");
        d.on_packet(Timing { send_ms: 200.0, arrival_ms: 300.0 });
        assert!(d.previous.is_some());
        assert_eq!(d.deltas, 0, "one closed group: no delta yet");
    }

    #[test]
    fn reordered_packets_are_ignored() {
        let mut d = DelayDetector::new();
        d.on_packet(Timing { send_ms: 50.0, arrival_ms: 100.0 });
        d.on_packet(Timing { send_ms: 10.0, arrival_ms: 101.0 });
        assert_eq!(d.current.unwrap().first_send_ms, 50.0);
        assert_eq!(d.current.unwrap().last_arrival_ms, 100.0);
    }
}
