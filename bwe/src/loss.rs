//! The loss-based bound: under heavy loss the rate comes down by half the loss ratio, under
//! little loss the bound rises again, in between it holds (draft-ietf-rmcat-gcc section 6).
//! Random loss of a few percent (Wi-Fi) leaves the delay-based estimate alone.

use crate::Bitrate;
use std::time::{Duration, Instant};

/// Above this share lost the rate comes down.
const HIGH_LOSS: f64 = 0.10;
/// Below this share lost the bound rises.
const LOW_LOSS: f64 = 0.02;
/// Packets a loss ratio is measured over.
const MIN_PACKETS: u32 = 20;
/// Rise per second of the bound under little loss.
const INCREASE_PER_SECOND: f64 = 1.08;
/// An estimate above this multiple of the acknowledged throughput while losing more than
/// [`HEAVY_LOSS`] is an overshoot: the bound falls to the throughput at once.
const OVERSHOOT: f64 = 1.5;
/// See [`OVERSHOOT`]: well above what random loss on a usable link looks like (whose
/// acknowledged rate is below what is sent by the loss alone, and must not cut the layers).
const HEAVY_LOSS: f64 = 0.25;
/// Least time between two decreases, besides the round trip.
const DECREASE_SPACING: Duration = Duration::from_millis(300);

/// The loss-based bound.
#[derive(Debug, Clone, Default)]
pub struct LossBound {
    /// `None`: no bound (loss never called for one, or the bound rose above the delay-based
    /// estimate again).
    bound: Option<Bitrate>,
    lost: u32,
    total: u32,
    last_ratio: f64,
    last_update: Option<Instant>,
    last_decrease: Option<Instant>,
}

impl LossBound {
    /// No bound yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// The bound, if any.
    pub fn bound(&self) -> Option<Bitrate> {
        self.bound
    }

    /// When the bound last came down: losses of packets sent before it belong to the
    /// congestion that decrease answered (a queue still draining), not to the rate after it.
    pub fn last_decrease(&self) -> Option<Instant> {
        self.last_decrease
    }

    /// The last measured loss ratio.
    pub fn ratio(&self) -> f64 {
        self.last_ratio
    }

    /// A probe got `measured` through: a bound below it is lifted to it, unless the path
    /// is losing heavily now.
    pub fn on_probe(&mut self, measured: Bitrate) {
        if self.last_ratio <= HIGH_LOSS
            && let Some(b) = self.bound
            && b < measured
        {
            self.bound = Some(measured);
        }
    }

    /// Counts a feedback's packets (`lost` of `total`) and updates the bound, given the
    /// current overall estimate, the acknowledged throughput and the round trip.
    pub fn on_feedback(
        &mut self,
        lost: u32,
        total: u32,
        estimate: Bitrate,
        acked: Option<Bitrate>,
        rtt: Duration,
        now: Instant,
    ) {
        self.lost += lost;
        self.total += total;
        let dt =
            self.last_update.map_or(Duration::ZERO, |t| now.saturating_duration_since(t)).min(Duration::from_secs(1));
        self.last_update = Some(now);
        if self.total < MIN_PACKETS {
            return;
        }
        let ratio = f64::from(self.lost) / f64::from(self.total);
        (self.lost, self.total) = (0, 0);
        self.last_ratio = ratio;
        if ratio > HIGH_LOSS {
            let spaced = self.last_decrease.is_none_or(|t| now.saturating_duration_since(t) >= DECREASE_SPACING + rtt);
            if spaced {
                let from = self.bound.unwrap_or(estimate).min(estimate);
                let mut bound = from.mul_f64(1.0 - 0.5 * ratio);
                if let Some(a) = acked.filter(|a| ratio > HEAVY_LOSS && from.as_f64() > a.as_f64() * OVERSHOOT) {
                    // far above what gets through while losing: an overshoot (a start above
                    // the path), whose queue stays full and shows the delay detector no trend;
                    // what got through is what the path carries
                    bound = bound.min(a);
                }
                self.bound = Some(bound);
                self.last_decrease = Some(now);
            }
        } else if ratio < LOW_LOSS
            && let Some(b) = self.bound
        {
            let raised = b
                .mul_f64(INCREASE_PER_SECOND.powf(dt.as_secs_f64()))
                .saturating_add(Bitrate::bps((1000.0 * dt.as_secs_f64()) as u64));
            self.bound = (raised < estimate).then_some(raised);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_overshoot_falls_to_the_acknowledged_rate() {
        let t0 = Instant::now();
        let rtt = Duration::from_millis(50);
        let k = Bitrate::kbps;
        // columns: estimate, acknowledged, lost of 100, bound
        let rows = [
            (k(10_000), Some(k(600)), 90, Some(k(600))),
            (k(10_000), None, 90, Some(k(5500))),
            // within 1.5x of what gets through, or losing less: the usual decrease
            (k(800), Some(k(600)), 40, Some(k(640))),
            (k(10_000), Some(k(600)), 20, Some(k(9000))),
            (k(10_000), Some(k(600)), 5, None),
        ];
        for (est, acked, lost, want) in rows {
            let mut l = LossBound::new();
            l.on_feedback(lost, 100, est, acked, rtt, t0);
            assert_eq!(l.bound(), want, "{est} {acked:?} {lost}");
        }
    }

    #[test]
    fn bound_follows_the_loss_ratio() {
        let t0 = Instant::now();
        let rtt = Duration::from_millis(50);
        let est = Bitrate::mbps(2);
        // columns: lost of 100, expected bound after one feedback
        let rows = [(0, None), (5, None), (10, None), (20, Some(Bitrate::kbps(1800))), (50, Some(Bitrate::kbps(1500)))];
        for (lost, want) in rows {
            let mut l = LossBound::new();
            l.on_feedback(lost, 100, est, None, rtt, t0);
            assert_eq!(l.bound(), want, "{lost}% lost");
        }
        // too few packets: no ratio yet
        let mut l = LossBound::new();
        l.on_feedback(10, 10, est, None, rtt, t0);
        assert_eq!(l.bound(), None);
    }

    #[test]
    fn bound_rises_under_little_loss_and_goes_when_above_the_estimate() {
        let t0 = Instant::now();
        let rtt = Duration::from_millis(50);
        let mut l = LossBound::new();
        l.on_feedback(20, 100, Bitrate::mbps(1), None, rtt, t0);
        assert_eq!(l.bound(), Some(Bitrate::kbps(900)));
        // a second heavy loss within the spacing: no second decrease
        l.on_feedback(20, 100, Bitrate::mbps(1), None, rtt, t0 + Duration::from_millis(100));
        assert_eq!(l.bound(), Some(Bitrate::kbps(900)));
        let mut t = t0 + Duration::from_millis(100);
        for _ in 0..3 {
            t += Duration::from_secs(1);
            l.on_feedback(0, 100, Bitrate::mbps(1), None, rtt, t);
        }
        assert_eq!(l.bound(), None, "0.9 * 1.08^2 is above the estimate");
    }

    #[test]
    fn a_probe_lifts_the_bound_unless_losing() {
        let t0 = Instant::now();
        let rtt = Duration::from_millis(50);
        let mut l = LossBound::new();
        l.on_feedback(60, 100, Bitrate::mbps(2), None, rtt, t0);
        assert_eq!(l.bound(), Some(Bitrate::kbps(1400)));
        l.on_probe(Bitrate::mbps(3));
        assert_eq!(l.bound(), Some(Bitrate::kbps(1400)), "60% lost just now: kept");
        l.on_feedback(0, 100, Bitrate::mbps(2), None, rtt, t0);
        l.on_probe(Bitrate::kbps(1000));
        assert_eq!(l.bound(), Some(Bitrate::kbps(1400)), "never lowered by a probe");
        l.on_probe(Bitrate::kbps(1800));
        assert_eq!(l.bound(), Some(Bitrate::kbps(1800)));
    }
}
