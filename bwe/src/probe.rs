//! Probing: a cluster of packets sent at a target rate, above what media alone uses, tells
//! whether the path carries that rate (the rate the cluster arrived at). Clusters are asked
//! for when the allocation wants more than the estimate, doubling while they succeed, and
//! never above what the allocation could use.

use crate::Bitrate;
use crate::feedback::PacketResult;
use std::time::{Duration, Instant};

/// How long a cluster is sent for.
pub const CLUSTER_DURATION: Duration = Duration::from_millis(20);
/// Least packets in a cluster.
pub const MIN_PACKETS: u32 = 5;
/// Size of the padding packets a cluster is filled with, unless told otherwise.
pub const PADDING_SIZE: usize = 1000;
/// A cluster that could not send its bytes by this multiple of its duration (nothing to pad
/// on) ends with what it sent.
const SEND_TIMEOUT_FACTOR: u32 = 4;
/// A cluster whose feedback has not come by then is given up.
const RESULT_TIMEOUT: Duration = Duration::from_secs(1);
/// After a probe that found less than it asked, wait this long before the next.
const FAILED_BACKOFF: Duration = Duration::from_secs(3);
/// Between two successful probes (the estimate settles).
const SUCCESS_SPACING: Duration = Duration::from_millis(200);
/// A probe succeeded when it measured at least this share of its target.
const SUCCESS_SHARE: f64 = 0.7;
/// Probe at most this multiple of the estimate.
const STEP: f64 = 2.0;
/// Worth probing only when the allocation wants this much more than the estimate.
const WORTH: f64 = 1.1;

/// A cluster being sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cluster {
    /// Its id, stamped on every packet sent while it runs.
    pub id: u32,
    /// The rate it is sent at.
    pub target: Bitrate,
    /// When it started.
    pub start: Instant,
}

/// What the receiver said about one cluster so far.
#[derive(Debug, Clone, Copy)]
struct Measure {
    id: u32,
    sent: u32,
    first_send: Instant,
    last_send: Instant,
    first_arrival: i64,
    last_arrival: i64,
    bytes: u64,
    first_size: usize,
    last_size: usize,
    received: u32,
}

/// Decides when to probe, paces a cluster's padding and turns its feedback into a rate.
#[derive(Debug, Clone)]
pub struct Prober {
    /// Size of one padding packet on the wire.
    padding_size: usize,
    next_id: u32,
    /// The cluster being sent, with the bytes sent in it so far.
    sending: Option<(Cluster, u64, u32)>,
    /// The cluster waiting for its result.
    waiting: Option<(Cluster, Measure)>,
    next_allowed: Option<Instant>,
    /// Clusters started, for metrics.
    pub started: u64,
}

impl Default for Prober {
    fn default() -> Self {
        Self::new(PADDING_SIZE)
    }
}

impl Prober {
    /// No probe yet; clusters are filled with padding packets of `padding_size` bytes.
    pub fn new(padding_size: usize) -> Self {
        Self {
            padding_size: padding_size.max(1),
            next_id: 0,
            sending: None,
            waiting: None,
            next_allowed: None,
            started: 0,
        }
    }

    /// Ends a cluster that could not send its bytes in time (the sender had nothing to pad
    /// on): it is measured with what it sent, or given up with a backoff if nothing.
    pub fn expire(&mut self, now: Instant) {
        let Some((c, _, packets)) = self.sending else { return };
        if now.saturating_duration_since(c.start) < CLUSTER_DURATION * SEND_TIMEOUT_FACTOR {
            return;
        }
        self.sending = None;
        if packets >= 2 {
            self.waiting = Some((c, Measure::new(c.id, packets, now)));
        } else {
            self.next_allowed = Some(now + FAILED_BACKOFF);
        }
    }

    /// The cluster being sent, if any.
    pub fn sending(&self) -> Option<Cluster> {
        self.sending.map(|(c, _, _)| c)
    }

    /// Starts a cluster when the allocation wants more (`desired`) than `estimate`, none is
    /// in flight, and the last result allows it.
    pub fn maybe_start(&mut self, estimate: Bitrate, desired: Bitrate, max: Bitrate, now: Instant) {
        if self.sending.is_some() {
            return;
        }
        if let Some((c, _)) = self.waiting {
            if now.saturating_duration_since(c.start) < RESULT_TIMEOUT {
                return;
            }
            self.waiting = None;
            self.next_allowed = Some(now + FAILED_BACKOFF);
        }
        if self.next_allowed.is_some_and(|t| now < t) || desired.as_f64() < estimate.as_f64() * WORTH {
            return;
        }
        let target = desired.min(estimate.mul_f64(STEP)).min(max);
        if target.as_f64() < estimate.as_f64() * WORTH {
            return;
        }
        self.next_id = self.next_id.wrapping_add(1);
        let c = Cluster { id: self.next_id, target, start: now };
        self.sending = Some((c, 0, 0));
        self.started += 1;
    }

    /// The estimate just came down on congestion: no probe before the backoff (the path's
    /// capacity was just found).
    pub fn hold(&mut self, now: Instant) {
        self.next_allowed = Some(self.next_allowed.map_or(now, |t| t.max(now)).max(now + FAILED_BACKOFF));
    }

    /// Counts a packet sent at `now` (media or padding); returns the cluster it belongs to.
    pub fn on_sent(&mut self, size: usize, now: Instant) -> Option<u32> {
        let (c, bytes, packets) = self.sending.as_mut()?;
        *bytes += size as u64;
        *packets += 1;
        let id = c.id;
        if *bytes as f64 >= c.target.bytes_in(CLUSTER_DURATION) && *packets >= MIN_PACKETS {
            let c = *c;
            let sent = *packets;
            self.sending = None;
            self.waiting = Some((c, Measure::new(c.id, sent, now)));
        }
        Some(id)
    }

    /// Padding the running cluster needs now to keep its rate: the size of one padding
    /// packet, or `None` when it is on schedule (or none runs). A cluster ends once it sent
    /// its rate's worth of [`CLUSTER_DURATION`] in at least [`MIN_PACKETS`].
    pub fn padding(&self, now: Instant) -> Option<usize> {
        let (c, bytes, _) = self.sending?;
        let due = c.target.bytes_in(now.saturating_duration_since(c.start) + Duration::from_millis(1));
        (bytes as f64 + self.padding_size as f64 <= due).then_some(self.padding_size)
    }

    /// When the running cluster next needs padding.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let (c, bytes, _) = self.sending?;
        Some(c.start + c.target.time_for(bytes as usize + self.padding_size))
    }

    /// Takes a feedback's results; returns the rate a finished cluster measured, and its target.
    pub fn on_results(&mut self, results: &[PacketResult], now: Instant) -> Option<(Bitrate, Bitrate)> {
        let (c, m) = self.waiting.as_mut()?;
        for r in results.iter().filter(|r| r.probe == Some(c.id)) {
            m.add(r);
        }
        if m.received * 10 < m.sent * 8 {
            return None;
        }
        let measured = m.rate();
        let target = c.target;
        self.waiting = None;
        let ok = measured.is_some_and(|r| r.as_f64() >= target.as_f64() * SUCCESS_SHARE);
        self.next_allowed = Some(now + if ok { SUCCESS_SPACING } else { FAILED_BACKOFF });
        measured.map(|r| (r, target))
    }
}

impl Measure {
    fn new(id: u32, sent: u32, now: Instant) -> Self {
        Measure {
            id,
            sent,
            first_send: now,
            last_send: now,
            first_arrival: i64::MAX,
            last_arrival: i64::MIN,
            bytes: 0,
            first_size: 0,
            last_size: 0,
            received: 0,
        }
    }

    fn add(&mut self, r: &PacketResult) {
        debug_assert_eq!(r.probe, Some(self.id));
        let Some(arrival) = r.arrival_us else { return };
        if self.received == 0 || r.sent < self.first_send {
            self.first_send = r.sent;
        }
        if self.received == 0 || r.sent >= self.last_send {
            self.last_send = r.sent;
            self.last_size = r.size;
        }
        if arrival < self.first_arrival {
            self.first_arrival = arrival;
            self.first_size = r.size;
        }
        self.last_arrival = self.last_arrival.max(arrival);
        self.bytes += r.size as u64;
        self.received += 1;
    }

    /// The lower of the send and the receive rate: the bytes after the first packet over the
    /// arrival span, the bytes before the last over the send span.
    fn rate(&self) -> Option<Bitrate> {
        let send_span = self.last_send.saturating_duration_since(self.first_send);
        let recv_span = self.last_arrival - self.first_arrival;
        if send_span.is_zero() || recv_span <= 0 || send_span > Duration::from_secs(1) {
            return None;
        }
        let send = Bitrate::of(self.bytes - self.last_size as u64, send_span);
        let recv = Bitrate::of(self.bytes - self.first_size as u64, Duration::from_micros(recv_span as u64));
        Some(send.min(recv))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Sends one cluster at its rate over a path carrying `path`; returns what it measured.
    fn probe_over(path: Bitrate) -> (Bitrate, Bitrate) {
        let t0 = Instant::now();
        let mut p = Prober::default();
        p.maybe_start(Bitrate::mbps(1), Bitrate::mbps(5), Bitrate::mbps(10), t0);
        let c = p.sending().expect("started");
        assert_eq!(c.target, Bitrate::mbps(2), "twice the estimate, below what is wanted");
        let mut results = Vec::new();
        let mut now = t0;
        let mut link_free = 0i64;
        let mut seq = 0;
        while p.sending().is_some() {
            if let Some(size) = p.padding(now) {
                let id = p.on_sent(size, now);
                let sent_us = now.duration_since(t0).as_micros() as i64;
                link_free = link_free.max(sent_us) + path.time_for(size).as_micros() as i64;
                results.push(PacketResult { seq, sent: now, size, probe: id, arrival_us: Some(link_free + 20_000) });
                seq += 1;
            } else {
                now += Duration::from_micros(500);
            }
        }
        p.on_results(&results, now + Duration::from_millis(50)).expect("a result")
    }

    #[test]
    fn a_cluster_measures_the_path() {
        // columns: path rate, expected measure (the cluster's 2 Mbit/s at most), within 5%
        let rows = [(Bitrate::mbps(10), Bitrate::mbps(2)), (Bitrate::kbps(1500), Bitrate::kbps(1500))];
        for (path, want) in rows {
            let (measured, target) = probe_over(path);
            assert_eq!(target, Bitrate::mbps(2));
            let err = (measured.as_f64() - want.as_f64()).abs() / want.as_f64();
            assert!(err < 0.05, "path {path}: measured {measured}, want {want}");
        }
    }

    #[test]
    fn probes_only_when_the_allocation_wants_more() {
        let t0 = Instant::now();
        // columns: estimate, desired, max, expected target
        let rows = [
            (Bitrate::mbps(1), Bitrate::kbps(1050), Bitrate::mbps(10), None),
            (Bitrate::mbps(1), Bitrate::kbps(1500), Bitrate::mbps(10), Some(Bitrate::kbps(1500))),
            (Bitrate::mbps(1), Bitrate::mbps(8), Bitrate::mbps(10), Some(Bitrate::mbps(2))),
            (Bitrate::mbps(1), Bitrate::mbps(8), Bitrate::kbps(1050), None),
        ];
        for (est, desired, max, want) in rows {
            let mut p = Prober::default();
            p.maybe_start(est, desired, max, t0);
            assert_eq!(p.sending().map(|c| c.target), want, "estimate {est}, desired {desired}, max {max}");
        }
    }

    #[test]
    fn a_lost_cluster_backs_off() {
        let t0 = Instant::now();
        let mut p = Prober::default();
        p.maybe_start(Bitrate::mbps(1), Bitrate::mbps(4), Bitrate::mbps(10), t0);
        let mut now = t0;
        while p.sending().is_some() {
            now += Duration::from_millis(5);
            p.on_sent(1000, now);
        }
        // no feedback at all
        p.maybe_start(Bitrate::mbps(1), Bitrate::mbps(4), Bitrate::mbps(10), now + Duration::from_millis(500));
        assert!(p.sending().is_none(), "waiting for the result");
        let timeout = t0 + RESULT_TIMEOUT;
        p.maybe_start(Bitrate::mbps(1), Bitrate::mbps(4), Bitrate::mbps(10), timeout);
        assert!(p.sending().is_none(), "given up, backing off");
        p.maybe_start(Bitrate::mbps(1), Bitrate::mbps(4), Bitrate::mbps(10), timeout + FAILED_BACKOFF);
        assert!(p.sending().is_some());
        assert_eq!(p.started, 2);
    }

    #[test]
    fn a_cluster_with_nothing_to_pad_on_ends() {
        let t0 = Instant::now();
        // columns: packets sent before the send timeout, expected: measured (waiting) or backoff
        for (packets, measured) in [(0u32, false), (1, false), (3, true)] {
            let mut p = Prober::new(300);
            p.maybe_start(Bitrate::mbps(1), Bitrate::mbps(4), Bitrate::mbps(10), t0);
            for _ in 0..packets {
                p.on_sent(300, t0);
            }
            p.expire(t0 + CLUSTER_DURATION);
            assert!(p.sending().is_some(), "still within its time");
            let late = t0 + CLUSTER_DURATION * SEND_TIMEOUT_FACTOR;
            p.expire(late);
            assert!(p.sending().is_none());
            assert_eq!(p.waiting.is_some(), measured, "{packets} packets");
            p.maybe_start(Bitrate::mbps(1), Bitrate::mbps(4), Bitrate::mbps(10), late);
            assert!(p.sending().is_none(), "{packets} packets: waiting or backing off");
        }
    }
}
