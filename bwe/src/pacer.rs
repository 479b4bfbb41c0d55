//! A leaky bucket toward one receiver: packets leave at the pacing rate, so a keyframe's burst
//! is spread instead of overflowing the bottleneck's queue. The queue is bounded in time: when
//! it holds more than `max_delay` at the pacing rate, it drains faster (late media is worse
//! than a burst).

use crate::Bitrate;
use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Bytes the bucket may hold in credit: a short idle period does not turn into a burst.
const MAX_CREDIT_TIME: Duration = Duration::from_millis(5);

/// The pacer, holding items of type `T` (datagrams, or anything with a size).
#[derive(Debug)]
pub struct Pacer<T> {
    queue: VecDeque<(T, usize, Instant)>,
    queued_bytes: usize,
    rate: Bitrate,
    max_delay: Duration,
    /// Bytes that may leave now (negative: a debt the rate pays off).
    budget: f64,
    last: Option<Instant>,
    /// The drain rate at the last refill.
    drain: Bitrate,
}

impl<T> Pacer<T> {
    /// A pacer at `rate` whose queue drains within `max_delay`.
    pub fn new(rate: Bitrate, max_delay: Duration) -> Self {
        Self { queue: VecDeque::new(), queued_bytes: 0, rate, max_delay, budget: 0.0, last: None, drain: rate }
    }

    /// Sets the pacing rate.
    pub fn set_rate(&mut self, rate: Bitrate) {
        self.rate = rate;
    }

    /// The rate the queue drains at: the pacing rate, or faster so the oldest packet leaves
    /// within the delay bound with everything queued behind it.
    pub fn drain_rate(&self, now: Instant) -> Bitrate {
        let left = self.max_delay.saturating_sub(self.delay(now)).max(Duration::from_millis(10));
        let needed = Bitrate::of(self.queued_bytes as u64, left);
        self.rate.max(needed).max(Bitrate::kbps(10))
    }

    /// Packets waiting.
    pub fn len(&self) -> usize {
        self.queue.len()
    }

    /// Nothing waiting.
    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// Bytes waiting.
    pub fn queued_bytes(&self) -> usize {
        self.queued_bytes
    }

    /// How long the oldest packet has waited.
    pub fn delay(&self, now: Instant) -> Duration {
        self.queue.front().map_or(Duration::ZERO, |(_, _, at)| now.saturating_duration_since(*at))
    }

    fn refill(&mut self, now: Instant) {
        let rate = self.drain_rate(now);
        self.drain = rate;
        let cap = rate.bytes_in(MAX_CREDIT_TIME).max(1500.0);
        self.budget = match self.last {
            Some(last) => (self.budget + rate.bytes_in(now.saturating_duration_since(last))).min(cap),
            None => cap,
        };
        self.last = Some(now);
    }

    /// Lets an item of `size` bytes leave at once when nothing waits and the budget allows,
    /// charging it; false: queue it with [`Pacer::push`].
    pub fn try_pass(&mut self, size: usize, now: Instant) -> bool {
        if !self.queue.is_empty() {
            return false;
        }
        self.refill(now);
        if self.budget <= 0.0 {
            return false;
        }
        self.budget -= size as f64;
        true
    }

    /// Queues an item of `size` bytes.
    pub fn push(&mut self, item: T, size: usize, now: Instant) {
        if self.queue.is_empty() {
            // credit from before the queue filled may be spent, but not more
            self.refill(now);
        }
        self.queue.push_back((item, size, now));
        self.queued_bytes += size;
    }

    /// The next item that may leave at `now`, with how long it waited.
    pub fn pop(&mut self, now: Instant) -> Option<(T, Duration)> {
        self.refill(now);
        if self.budget <= 0.0 {
            return None;
        }
        let (item, size, at) = self.queue.pop_front()?;
        self.queued_bytes -= size;
        self.budget -= size as f64;
        Some((item, now.saturating_duration_since(at)))
    }

    /// When the next item may leave (`None`: nothing waits).
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.queue.is_empty() {
            return None;
        }
        let last = self.last?;
        if self.budget > 0.0 {
            return Some(last);
        }
        let wait = Duration::from_secs_f64((-self.budget + 1.0) * 8.0 / self.drain.as_f64());
        Some(last + wait)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_leaves_at_the_rate() {
        let t0 = Instant::now();
        let mut p = Pacer::new(Bitrate::mbps(1), Duration::from_secs(1));
        // a 25-packet keyframe of 1000 bytes: 200 ms at 1 Mbit/s
        for i in 0..25 {
            p.push(i, 1000, t0);
        }
        let mut out = Vec::new();
        let mut now = t0;
        while out.len() < 25 {
            match p.pop(now) {
                Some((i, waited)) => out.push((i, now, waited)),
                None => now = p.poll_timeout().expect("items wait").max(now + Duration::from_micros(100)),
            }
        }
        assert_eq!(out.iter().map(|o| o.0).collect::<Vec<_>>(), (0..25).collect::<Vec<_>>(), "in order");
        let span = out[24].1.duration_since(t0);
        assert!(span >= Duration::from_millis(175) && span <= Duration::from_millis(200), "{span:?}");
        assert_eq!(out[24].2, span, "the last waited the whole span");
        assert!(p.is_empty() && p.queued_bytes() == 0 && p.poll_timeout().is_none());
    }

    #[test]
    fn the_queue_drains_within_its_delay_bound() {
        let t0 = Instant::now();
        let mut p = Pacer::new(Bitrate::kbps(100), Duration::from_millis(200));
        for i in 0..100 {
            p.push(i, 1000, t0);
        }
        // 100 kB at 100 kbit/s would take 8 s: the bound makes it drain faster
        assert!(p.drain_rate(t0) >= Bitrate::mbps(4));
        let mut now = t0;
        let mut n = 0;
        while n < 100 {
            if p.pop(now).is_some() {
                n += 1;
            } else {
                now = p.poll_timeout().unwrap().max(now + Duration::from_micros(100));
            }
        }
        assert!(now.duration_since(t0) <= Duration::from_millis(220), "{:?}", now.duration_since(t0));
    }

    #[test]
    fn items_pass_while_the_budget_lasts_then_queue_in_order() {
        let t0 = Instant::now();
        let mut p = Pacer::new(Bitrate::mbps(1), Duration::from_secs(1));
        // 1500 bytes of credit at first: two 1000-byte items pass, the third queues
        assert!(p.try_pass(1000, t0));
        assert!(p.try_pass(1000, t0));
        assert!(!p.try_pass(1000, t0));
        p.push(3, 1000, t0);
        // once the debt is paid, a new item still waits behind the queued one
        let later = t0 + Duration::from_millis(20);
        assert!(!p.try_pass(1000, later), "never overtakes a queued item");
        assert_eq!(p.pop(later).map(|(i, _)| i), Some(3));
        assert!(p.is_empty());
    }

    #[test]
    fn idle_time_is_no_burst_credit() {
        let t0 = Instant::now();
        let mut p = Pacer::new(Bitrate::mbps(1), Duration::from_secs(1));
        p.push(0, 1000, t0);
        assert!(p.pop(t0).is_some(), "the first packet leaves at once");
        let later = t0 + Duration::from_secs(10);
        for i in 0..10 {
            p.push(i, 1000, later);
        }
        let mut burst = 0;
        while p.pop(later).is_some() {
            burst += 1;
        }
        assert!(burst <= 3, "{burst} packets at once after idling");
    }
}
