//! The estimate toward one receiver: sent packets are recorded, feedback matched with them,
//! and the delay-based rate (detector + AIMD), the loss bound, the acknowledged throughput and
//! probe results combined.

use crate::Bitrate;
use crate::acked::AckedRate;
use crate::aimd::Aimd;
use crate::delay::{DelayDetector, Timing};
use crate::feedback::{Feedback, PacketResult};
use crate::history::SendHistory;
use crate::loss::LossBound;
use crate::probe::Prober;
use std::time::{Duration, Instant};

/// The first upgrade hold after congestion, the longest, and how long a hold is remembered.
pub const HOLD_FIRST: Duration = Duration::from_secs(5);
/// The longest upgrade hold.
pub const HOLD_MAX: Duration = Duration::from_secs(20);
/// Congestion this soon after a hold ended doubles the next.
pub const HOLD_MEMORY: Duration = Duration::from_secs(30);
/// Congestion within this of the first sets no hold: a start above the path's rate finds it
/// there (the layers settle while probes climb back).
pub const START_GRACE: Duration = Duration::from_secs(3);

/// A probe that measures this multiple of the estimate ends an upgrade hold, after this long
/// without congestion.
const HOLD_CLEARING_PROBE: f64 = 1.5;
/// See [`HOLD_CLEARING_PROBE`].
const HOLD_CLEARING_CALM: Duration = Duration::from_secs(5);

/// A probe above the estimate that measures less than this share of it lowers the estimate to
/// what it measured.
const PROBE_CEILING: f64 = 0.9;

/// What the delay detector concludes about the path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Usage {
    /// Delay stable.
    #[default]
    Normal,
    /// Delay growing: a queue builds.
    Overusing,
    /// Delay shrinking: a queue drains.
    Underusing,
}

/// Bounds and start of an estimate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BweConfig {
    /// The estimate before any feedback.
    pub start: Bitrate,
    /// Never below.
    pub min: Bitrate,
    /// Never above.
    pub max: Bitrate,
    /// Size on the wire of the padding packets probes are filled with.
    pub padding: usize,
}

impl Default for BweConfig {
    fn default() -> Self {
        Self {
            start: Bitrate::kbps(1000),
            min: Bitrate::kbps(50),
            max: Bitrate::mbps(30),
            padding: crate::probe::PADDING_SIZE,
        }
    }
}

/// The send-side estimator of one connection.
#[derive(Debug)]
pub struct SendSideBwe {
    cfg: BweConfig,
    history: SendHistory,
    delay: DelayDetector,
    aimd: Aimd,
    loss: LossBound,
    acked: AckedRate,
    prober: Prober,
    /// Smoothed round trip (send of the newest acknowledged packet to its feedback).
    rtt: Option<Duration>,
    /// Where send times are counted from (the detector works in milliseconds).
    base: Option<Instant>,
    /// What the allocation could use.
    desired: Bitrate,
    results: Vec<PacketResult>,
    /// Until when allocations may not upgrade, and the length of the last hold (doubling
    /// while congestion keeps coming back).
    upgrade_hold: Option<(Instant, Duration)>,
    /// The first congestion (the start's overshoot, when the start was above the path): it
    /// and what follows within [`START_GRACE`] set no hold.
    first_congestion: Option<Instant>,
    /// The latest congestion.
    last_congestion: Option<Instant>,
    /// Feedback messages and packets reported lost, for metrics.
    pub feedbacks: u64,
    /// Packets reported lost.
    pub lost: u64,
}

impl SendSideBwe {
    /// An estimator at `cfg.start`.
    pub fn new(cfg: BweConfig) -> Self {
        Self {
            cfg,
            history: SendHistory::new(),
            delay: DelayDetector::new(),
            aimd: Aimd::new(cfg.start, cfg.min, cfg.max),
            loss: LossBound::new(),
            acked: AckedRate::new(),
            prober: Prober::new(cfg.padding),
            rtt: None,
            base: None,
            desired: Bitrate::ZERO,
            results: Vec::new(),
            upgrade_hold: None,
            first_congestion: None,
            last_congestion: None,
            feedbacks: 0,
            lost: 0,
        }
    }

    /// The estimate: the delay-based rate under the loss bound.
    pub fn estimate(&self) -> Bitrate {
        let e = self.aimd.rate();
        self.loss.bound().map_or(e, |b| e.min(b)).max(self.cfg.min)
    }

    /// The throughput the receiver acknowledged lately.
    pub fn acked(&self) -> Option<Bitrate> {
        self.acked.rate()
    }

    /// The smoothed round trip, once measured.
    pub fn rtt(&self) -> Option<Duration> {
        self.rtt
    }

    /// The delay detector's view.
    pub fn usage(&self) -> Usage {
        self.delay.usage()
    }

    /// The last measured loss ratio.
    pub fn loss_ratio(&self) -> f64 {
        self.loss.ratio()
    }

    /// Bytes sent and not reported on yet.
    pub fn in_flight(&self) -> u64 {
        self.history.in_flight()
    }

    /// Probe clusters started so far.
    pub fn probes(&self) -> u64 {
        self.prober.started
    }

    /// The next transport-wide sequence number (16 bits on the wire).
    pub fn next_seq(&self) -> u16 {
        self.history.next_seq() as u16
    }

    /// Records a packet of `size` bytes sent at `now` with sequence number `next_seq()`;
    /// returns that number.
    pub fn on_sent(&mut self, size: usize, now: Instant) -> u16 {
        self.base.get_or_insert(now);
        let probe = self.prober.on_sent(size, now);
        self.history.on_sent(now, size, probe) as u16
    }

    /// Tells what the allocation could use: probes go no higher, and only when it is more than
    /// the estimate. Starts a probe when one is due.
    pub fn set_desired(&mut self, desired: Bitrate, now: Instant) {
        self.desired = desired;
        self.prober.expire(now);
        self.prober.maybe_start(self.estimate(), desired, self.cfg.max, now);
    }

    /// Padding a running probe needs sent now: the size of one padding packet (send it, then
    /// `on_sent`), or `None`.
    pub fn poll_padding(&mut self, now: Instant) -> Option<usize> {
        self.prober.expire(now);
        self.prober.maybe_start(self.estimate(), self.desired, self.cfg.max, now);
        self.prober.padding(now)
    }

    /// When padding is next due.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.prober.poll_timeout()
    }

    /// A probe is being sent.
    pub fn probing(&self) -> bool {
        self.prober.sending().is_some()
    }

    /// Allocations should not upgrade now: the estimate came down on congestion lately (not
    /// counting the start's, see [`START_GRACE`]). The hold lasts [`HOLD_FIRST`] and doubles (up to [`HOLD_MAX`]) when congestion returns
    /// within [`HOLD_MEMORY`] of the last, so a step that does not fit is retried ever more
    /// rarely instead of flipping on and off.
    pub fn upgrades_held(&self, now: Instant) -> bool {
        self.upgrade_hold.is_some_and(|(until, _)| now < until)
    }

    fn on_congestion(&mut self, now: Instant) {
        self.prober.hold(now);
        self.last_congestion = Some(now);
        let first = *self.first_congestion.get_or_insert(now);
        if now < first + START_GRACE {
            return;
        }
        let hold = match self.upgrade_hold {
            Some((until, last)) if now < until + HOLD_MEMORY => (last * 2).min(HOLD_MAX),
            _ => HOLD_FIRST,
        };
        self.upgrade_hold = Some((now + hold, hold));
    }

    /// Takes one feedback that arrived at `now`.
    pub fn on_feedback(&mut self, feedback: &Feedback, now: Instant) {
        self.feedbacks += 1;
        let mut results = std::mem::take(&mut self.results);
        self.history.on_feedback(feedback, &mut results);
        let base = *self.base.get_or_insert(now);
        let (mut lost, mut total) = (0u32, 0u32);
        // the loss bound counts packets sent after its last decrease only
        let since = self.loss.last_decrease();
        let (mut loss_lost, mut loss_total) = (0u32, 0u32);
        let mut newest_sent: Option<Instant> = None;
        let mut by_arrival: Vec<&PacketResult> = results.iter().filter(|r| r.arrival_us.is_some()).collect();
        by_arrival.sort_by_key(|r| (r.arrival_us, r.seq));
        for r in &results {
            total += 1;
            if since.is_none_or(|t| r.sent >= t) {
                loss_total += 1;
                loss_lost += u32::from(r.arrival_us.is_none());
            }
            match r.arrival_us {
                None => lost += 1,
                Some(_) => newest_sent = Some(newest_sent.map_or(r.sent, |t| t.max(r.sent))),
            }
        }
        for r in by_arrival {
            let arrival = r.arrival_us.unwrap_or_default();
            let send_ms = r.sent.saturating_duration_since(base).as_secs_f64() * 1000.0;
            self.delay.on_packet(Timing { send_ms, arrival_ms: arrival as f64 / 1000.0 });
            self.acked.on_received(arrival, r.size);
        }
        self.lost += u64::from(lost);
        if let Some(sent) = newest_sent {
            let sample = now.saturating_duration_since(sent);
            self.rtt = Some(match self.rtt {
                None => sample,
                Some(r) => r.mul_f64(0.875) + sample.mul_f64(0.125),
            });
            self.aimd.set_rtt(self.rtt.unwrap_or_default());
        }
        if let Some((measured, target)) = self.prober.on_results(&results, now) {
            let estimate = self.estimate();
            if target > estimate && measured.as_f64() < estimate.as_f64() * PROBE_CEILING {
                // the cluster went above the estimate and the path did not carry even that
                self.aimd.on_probe_ceiling(measured, now);
            } else {
                let measured = measured.min(self.desired.max(estimate));
                let calm = self.last_congestion.is_none_or(|t| now.saturating_duration_since(t) >= HOLD_CLEARING_CALM);
                if calm && measured.as_f64() >= estimate.as_f64() * HOLD_CLEARING_PROBE {
                    // no congestion for a while and the path carries well more than when the
                    // hold was set: it changed (a cap lifted, a busy link freed). A probe
                    // through a shaper's burst may measure that much too: hence the calm.
                    self.upgrade_hold = None;
                }
                self.aimd.on_probe(measured, now);
                self.loss.on_probe(measured);
            }
        }
        if total > 0 {
            let before = self.estimate();
            self.aimd.update(self.delay.usage(), self.acked.rate(), now);
            let estimate = self.aimd.rate();
            let rtt = self.rtt.unwrap_or(Duration::from_millis(100));
            self.loss.on_feedback(loss_lost, loss_total, estimate, self.acked.rate(), rtt, now);
            if self.estimate() < before {
                // the path is full: no probe into it, no upgrade, for a while
                self.on_congestion(now);
            }
        }
        self.results = results;
    }
}
