//! A link model in virtual time: a bottleneck of some rate with a queue of some size (tail
//! drop), then a propagation delay with jitter (order kept), and random loss. Deterministic:
//! its randomness comes from a seeded generator.

use crate::Bitrate;
use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// A link's properties; the rate may change while it runs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LinkConfig {
    /// Bottleneck rate.
    pub rate: Bitrate,
    /// One-way propagation delay.
    pub delay: Duration,
    /// Extra delay, uniform between zero and this (packets keep their order).
    pub jitter: Duration,
    /// Share of packets lost at random.
    pub loss: f64,
    /// Bytes the bottleneck queue holds; more is dropped.
    pub queue_bytes: usize,
}

impl LinkConfig {
    /// A link of `rate` with `delay`, no jitter, no random loss, and a queue of 300 ms at its rate.
    pub fn new(rate: Bitrate, delay: Duration) -> Self {
        Self {
            rate,
            delay,
            jitter: Duration::ZERO,
            loss: 0.0,
            queue_bytes: rate.bytes_in(Duration::from_millis(300)) as usize,
        }
    }
}

/// A small deterministic generator (xorshift64*).
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// Seeded (zero is replaced by a constant).
    pub fn new(seed: u64) -> Self {
        Self(if seed == 0 { 0x9e37_79b9_7f4a_7c15 } else { seed })
    }

    /// Uniform in [0, 1).
    pub fn next_f64(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Why the link did not deliver a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dropped {
    /// The bottleneck queue was full.
    QueueFull,
    /// Lost at random.
    Random,
}

/// The link.
#[derive(Debug)]
pub struct Link<T> {
    cfg: LinkConfig,
    rng: Rng,
    /// When the bottleneck finishes what it has.
    busy_until: Option<Instant>,
    /// Packets in the bottleneck: when each leaves it, and its size.
    in_queue: VecDeque<(Instant, usize)>,
    queued_bytes: usize,
    /// Packets on their way: when each arrives.
    in_flight: VecDeque<(Instant, T)>,
}

impl<T> Link<T> {
    /// An empty link.
    pub fn new(cfg: LinkConfig, seed: u64) -> Self {
        Self {
            cfg,
            rng: Rng::new(seed),
            busy_until: None,
            in_queue: VecDeque::new(),
            queued_bytes: 0,
            in_flight: VecDeque::new(),
        }
    }

    /// Its configuration.
    pub fn config(&self) -> LinkConfig {
        self.cfg
    }

    /// Changes its rate (packets already queued keep their times).
    pub fn set_rate(&mut self, rate: Bitrate) {
        self.cfg.rate = rate;
    }

    /// Changes its configuration.
    pub fn set_config(&mut self, cfg: LinkConfig) {
        self.cfg = cfg;
    }

    /// Bytes in the bottleneck queue at `now`.
    pub fn queued_bytes(&mut self, now: Instant) -> usize {
        self.leave_queue(now);
        self.queued_bytes
    }

    fn leave_queue(&mut self, now: Instant) {
        while let Some(&(at, size)) = self.in_queue.front() {
            if at > now {
                break;
            }
            self.queued_bytes -= size;
            self.in_queue.pop_front();
        }
    }

    /// Offers a packet of `size` bytes at `now`.
    pub fn send(&mut self, packet: T, size: usize, now: Instant) -> Result<(), Dropped> {
        self.leave_queue(now);
        if self.cfg.loss > 0.0 && self.rng.next_f64() < self.cfg.loss {
            return Err(Dropped::Random);
        }
        if self.queued_bytes + size > self.cfg.queue_bytes {
            return Err(Dropped::QueueFull);
        }
        let start = self.busy_until.map_or(now, |b| b.max(now));
        let done = start + self.cfg.rate.time_for(size);
        self.busy_until = Some(done);
        self.in_queue.push_back((done, size));
        self.queued_bytes += size;
        let jitter = self.cfg.jitter.mul_f64(self.rng.next_f64());
        let mut arrive = done + self.cfg.delay + jitter;
        if let Some(&(last, _)) = self.in_flight.back() {
            arrive = arrive.max(last);
        }
        self.in_flight.push_back((arrive, packet));
        Ok(())
    }

    /// The next packet that has arrived by `now`, with its arrival time.
    pub fn recv(&mut self, now: Instant) -> Option<(Instant, T)> {
        if self.in_flight.front().is_some_and(|(at, _)| *at <= now) { self.in_flight.pop_front() } else { None }
    }

    /// When the next packet arrives.
    pub fn next_arrival(&self) -> Option<Instant> {
        self.in_flight.front().map(|(at, _)| *at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_delay_and_queue() {
        let t0 = Instant::now();
        let cfg = LinkConfig { queue_bytes: 5000, ..LinkConfig::new(Bitrate::mbps(1), Duration::from_millis(20)) };
        let mut link = Link::new(cfg, 1);
        // 6 packets of 1000 bytes at once: 5 fit the queue, each takes 8 ms of the bottleneck
        let sent: Vec<_> = (0..6).map(|i| link.send(i, 1000, t0)).collect();
        assert_eq!(sent[5], Err(Dropped::QueueFull));
        assert!(sent[..5].iter().all(Result::is_ok));
        let mut arrivals = Vec::new();
        let mut now = t0;
        while arrivals.len() < 5 {
            now = link.next_arrival().unwrap();
            while let Some((at, i)) = link.recv(now) {
                arrivals.push((i, at.duration_since(t0)));
            }
        }
        let want: Vec<_> = (0..5).map(|i| (i, Duration::from_millis(8 * (i as u64 + 1) + 20))).collect();
        assert_eq!(arrivals, want);
        assert_eq!(link.queued_bytes(now), 0);
    }

    #[test]
    fn random_loss_is_about_its_share() {
        let t0 = Instant::now();
        let cfg = LinkConfig { loss: 0.03, ..LinkConfig::new(Bitrate::mbps(100), Duration::ZERO) };
        let mut link = Link::new(cfg, 7);
        let lost =
            (0..10_000).filter(|i| link.send((), 100, t0 + Duration::from_millis(*i)) == Err(Dropped::Random)).count();
        assert!((250..350).contains(&lost), "{lost}");
    }
}
