//! Rate control of the delay-based estimate: additive or multiplicative increase while the
//! detector sees normal usage, a multiplicative decrease below the throughput that was
//! acknowledged when it sees overuse, hold while it sees the queue draining
//! (draft-ietf-rmcat-gcc section 5.5).

use crate::Bitrate;
use crate::estimator::Usage;
use std::time::{Duration, Instant};

/// Multiplicative increase per second, far from the link's known capacity.
const INCREASE_PER_SECOND: f64 = 1.08;
/// Decrease to this share of the acknowledged throughput.
const BETA: f64 = 0.85;
/// Packet size assumed for the additive increase (one packet per response time).
const PACKET_BITS: f64 = 1200.0 * 8.0;
/// Added to the round trip for the time a decrease takes to show.
const RESPONSE_EXTRA: Duration = Duration::from_millis(100);
/// The rate grows to at most this multiple of the acknowledged throughput (plus 10 kbit/s);
/// beyond it only probes raise it.
const ACKED_HEADROOM: f64 = 1.5;
/// Smoothing of the link capacity estimate.
const CAPACITY_ALPHA: f64 = 0.05;

/// Phase of the controller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Keep the rate (the queue is draining, or right after a decrease).
    Hold,
    /// Raise it.
    Increase,
    /// Lower it.
    Decrease,
}

/// The throughput seen at the last overuses: where the bottleneck likely is. Near it the
/// rate grows additively, far from it multiplicatively.
#[derive(Debug, Clone, Copy, Default)]
struct Capacity {
    mean_kbps: Option<f64>,
    /// Variance, normalised by the mean.
    var: f64,
}

impl Capacity {
    fn on_overuse(&mut self, sample_kbps: f64) {
        let mean = match self.mean_kbps {
            None => sample_kbps,
            Some(m) => (1.0 - CAPACITY_ALPHA) * m + CAPACITY_ALPHA * sample_kbps,
        };
        let norm = mean.max(1.0);
        self.var =
            ((1.0 - CAPACITY_ALPHA) * self.var + CAPACITY_ALPHA * (mean - sample_kbps).powi(2) / norm).clamp(0.4, 2.5);
        self.mean_kbps = Some(mean);
    }

    fn std_kbps(&self) -> f64 {
        self.mean_kbps.map_or(0.0, |m| (self.var * m).sqrt())
    }

    fn upper_kbps(&self) -> Option<f64> {
        self.mean_kbps.map(|m| m + 3.0 * self.std_kbps())
    }
}

/// The AIMD controller.
#[derive(Debug, Clone)]
pub struct Aimd {
    rate: Bitrate,
    min: Bitrate,
    max: Bitrate,
    phase: Phase,
    last_change: Option<Instant>,
    last_decrease: Option<Instant>,
    capacity: Capacity,
    rtt: Duration,
}

impl Aimd {
    /// A controller starting at `start`, kept within `[min, max]`.
    pub fn new(start: Bitrate, min: Bitrate, max: Bitrate) -> Self {
        Self {
            rate: start.clamp(min, max),
            min,
            max,
            phase: Phase::Hold,
            last_change: None,
            last_decrease: None,
            capacity: Capacity::default(),
            rtt: Duration::from_millis(200),
        }
    }

    /// The current rate.
    pub fn rate(&self) -> Bitrate {
        self.rate
    }

    /// The phase.
    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// The round-trip time used for the additive increase and the decrease spacing.
    pub fn set_rtt(&mut self, rtt: Duration) {
        self.rtt = rtt;
    }

    /// Raises the rate to what a probe measured (never lowers it: a probe that found little
    /// says only that the path was busy then).
    pub fn on_probe(&mut self, measured: Bitrate, now: Instant) {
        if measured > self.rate {
            self.rate = measured.clamp(self.min, self.max);
            self.last_change = Some(now);
        }
    }

    /// Lowers the rate to what a probe above it measured: the probe filled the bottleneck, so
    /// what got through is the path's rate (an application-limited sender's estimate may have
    /// grown past it unnoticed).
    pub fn on_probe_ceiling(&mut self, measured: Bitrate, now: Instant) {
        if measured < self.rate {
            self.rate = measured.clamp(self.min, self.max);
            self.phase = Phase::Hold;
            self.last_change = Some(now);
        }
    }

    /// One update with the detector's `usage` and the throughput the receiver acknowledged.
    pub fn update(&mut self, usage: Usage, acked: Option<Bitrate>, now: Instant) -> Bitrate {
        self.phase = match (usage, self.phase) {
            (Usage::Overusing, _) => Phase::Decrease,
            (Usage::Normal, Phase::Hold) => Phase::Increase,
            (Usage::Normal, p) => p,
            (Usage::Underusing, _) => Phase::Hold,
        };
        match self.phase {
            Phase::Hold => self.last_change = Some(now),
            Phase::Increase => self.increase(acked, now),
            Phase::Decrease => self.decrease(acked, now),
        }
        self.rate = self.rate.clamp(self.min, self.max);
        self.rate
    }

    fn increase(&mut self, acked: Option<Bitrate>, now: Instant) {
        let dt =
            self.last_change.map_or(Duration::ZERO, |t| now.saturating_duration_since(t)).min(Duration::from_secs(1));
        self.last_change = Some(now);
        if let (Some(upper), Some(acked)) = (self.capacity.upper_kbps(), acked)
            && acked.as_f64() / 1000.0 > upper
        {
            // the throughput left the old capacity far behind: the path changed
            self.capacity = Capacity::default();
        }
        let near_capacity = self.capacity.mean_kbps.is_some();
        let inc = if near_capacity {
            let response = (self.rtt + RESPONSE_EXTRA).as_secs_f64();
            (PACKET_BITS / response).max(4000.0) * dt.as_secs_f64()
        } else {
            (self.rate.as_f64() * (INCREASE_PER_SECOND.powf(dt.as_secs_f64()) - 1.0)).max(1000.0 * dt.as_secs_f64())
        };
        let mut next = self.rate.as_f64() + inc;
        if let Some(acked) = acked {
            // never far above what actually gets through: an application-limited sender
            // would otherwise claim capacity it never tried (probes find more)
            let limit = ACKED_HEADROOM * acked.as_f64() + 10_000.0;
            next = next.min(limit.max(self.rate.as_f64()));
        }
        self.rate = Bitrate::from_f64(next);
    }

    fn decrease(&mut self, acked: Option<Bitrate>, now: Instant) {
        // one decrease per response time, unless the throughput collapsed
        let spacing = self.rtt.clamp(Duration::from_millis(10), Duration::from_millis(200));
        let recent = self.last_decrease.is_some_and(|t| now.saturating_duration_since(t) < spacing);
        let collapsed = acked.is_some_and(|a| a.as_f64() * 2.0 < self.rate.as_f64());
        if !recent || collapsed {
            let base = acked.unwrap_or(self.rate);
            let mut next = BETA * base.as_f64();
            if next > self.rate.as_f64()
                && let Some(mean) = self.capacity.mean_kbps
            {
                next = BETA * mean * 1000.0;
            }
            self.rate = Bitrate::from_f64(next.min(self.rate.as_f64()));
            if let Some(a) = acked {
                self.capacity.on_overuse(a.as_f64() / 1000.0);
            }
            self.last_decrease = Some(now);
        }
        self.phase = Phase::Hold;
        self.last_change = Some(now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phases_move_the_rate() {
        let t0 = Instant::now();
        let s = |ms: u64| t0 + Duration::from_millis(ms);
        let mut a = Aimd::new(Bitrate::mbps(1), Bitrate::kbps(50), Bitrate::mbps(20));
        a.update(Usage::Normal, None, s(0));
        // a second of normal usage far from any known capacity: about 8% up
        let r = a.update(Usage::Normal, None, s(1000));
        assert!((1_070_000..=1_090_000).contains(&r.as_bps()), "{r}");
        // overuse: 0.85 of the acknowledged throughput
        let r = a.update(Usage::Overusing, Some(Bitrate::kbps(800)), s(1100));
        assert_eq!(r, Bitrate::kbps(680));
        assert_eq!(a.phase(), Phase::Hold);
        // underuse holds, normal increases again, now additively (near the capacity just seen)
        assert_eq!(a.update(Usage::Underusing, Some(Bitrate::kbps(700)), s(1200)), Bitrate::kbps(680));
        a.update(Usage::Normal, Some(Bitrate::kbps(700)), s(1300));
        let r = a.update(Usage::Normal, Some(Bitrate::kbps(700)), s(2300));
        assert!(r > Bitrate::kbps(680) && r < Bitrate::kbps(740), "additive near capacity: {r}");
    }

    #[test]
    fn increase_is_capped_by_what_was_acknowledged() {
        let t0 = Instant::now();
        let mut a = Aimd::new(Bitrate::kbps(500), Bitrate::kbps(50), Bitrate::mbps(20));
        let mut r = Bitrate::ZERO;
        for s in 0..30 {
            r = a.update(Usage::Normal, Some(Bitrate::kbps(200)), t0 + Duration::from_secs(s));
        }
        assert_eq!(r, Bitrate::kbps(500), "above 1.5 x acked + 10 kbit/s already: kept, not raised");
        let mut a = Aimd::new(Bitrate::kbps(100), Bitrate::kbps(50), Bitrate::mbps(20));
        for s in 0..60 {
            r = a.update(Usage::Normal, Some(Bitrate::kbps(200)), t0 + Duration::from_secs(s));
        }
        assert_eq!(r, Bitrate::kbps(310));
    }

    #[test]
    fn decreases_are_spaced_by_the_round_trip() {
        let t0 = Instant::now();
        let mut a = Aimd::new(Bitrate::mbps(2), Bitrate::kbps(50), Bitrate::mbps(20));
        a.set_rtt(Duration::from_millis(100));
        let acked = Some(Bitrate::mbps(2));
        assert_eq!(a.update(Usage::Overusing, acked, t0), Bitrate::kbps(1700));
        // 1.5 Mbit/s acknowledged is not a collapse: within the round trip, no second decrease
        assert_eq!(
            a.update(Usage::Overusing, Some(Bitrate::kbps(1500)), t0 + Duration::from_millis(50)),
            Bitrate::kbps(1700)
        );
        assert_eq!(
            a.update(Usage::Overusing, Some(Bitrate::kbps(1500)), t0 + Duration::from_millis(150)),
            Bitrate::kbps(1275)
        );
        // a collapse decreases at once
        assert_eq!(
            a.update(Usage::Overusing, Some(Bitrate::kbps(400)), t0 + Duration::from_millis(160)),
            Bitrate::kbps(340)
        );
    }

    #[test]
    fn probes_only_raise() {
        let t0 = Instant::now();
        let mut a = Aimd::new(Bitrate::mbps(1), Bitrate::kbps(50), Bitrate::mbps(4));
        a.on_probe(Bitrate::kbps(500), t0);
        assert_eq!(a.rate(), Bitrate::mbps(1));
        a.on_probe(Bitrate::mbps(3), t0);
        assert_eq!(a.rate(), Bitrate::mbps(3));
        a.on_probe(Bitrate::mbps(9), t0);
        assert_eq!(a.rate(), Bitrate::mbps(4), "within max");
    }
}
