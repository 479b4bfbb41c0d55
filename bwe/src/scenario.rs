//! A sender toward one receiver over an emulated link, in virtual time: tracks whose steps the
//! allocator grants from the estimate, a pacer, probes, and a receiver that answers with
//! transport-wide feedback over a return path. What the tests assert on and the plots draw.

use crate::allocator::{self, Class, Demand, Grant};
use crate::feedback::{Feedback, Report};
use crate::netem::{Link, LinkConfig};
use crate::{Bitrate, BweConfig, Pacer, SendSideBwe};
use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Frames per second of the video model.
const FPS: u32 = 30;
/// Largest packet.
const MTU: usize = 1200;
/// A keyframe is this many times a frame's share of the rate.
const KEYFRAME_FACTOR: usize = 4;
/// A keyframe comes this often besides at every step change.
const KEYFRAME_INTERVAL: Duration = Duration::from_secs(4);
/// The pacer sends at this multiple of the estimate.
pub const PACING_FACTOR: f64 = 1.0;
/// The pacer's queue drains within this.
pub const PACER_MAX_DELAY: Duration = Duration::from_millis(250);

/// One track of the sender.
#[derive(Debug, Clone)]
pub struct Track {
    /// Its class (audio is 50 packets/s of its one step's size).
    pub class: Class,
    /// The rates of its steps, lowest first.
    pub steps: Vec<Bitrate>,
}

impl Track {
    /// Audio at 40 kbit/s.
    pub fn audio() -> Self {
        Self { class: Class::Audio, steps: vec![Bitrate::kbps(40)] }
    }

    /// An encoder that follows the estimate (what the allocation leaves of it), as a
    /// browser's sender does with its own estimate: what GCC is usually evaluated with.
    pub fn adaptive() -> Self {
        Self { class: Class::Camera, steps: Vec::new() }
    }

    /// A simulcast camera with temporal steps: three spatial layers, each at 1/4, 1/2 and all
    /// of its frame rate's bitrate (as VP8 temporal layers divide it).
    pub fn camera() -> Self {
        let spatial = [Bitrate::kbps(150), Bitrate::kbps(500), Bitrate::kbps(1700)];
        let steps = spatial.iter().flat_map(|s| [s.mul_f64(0.5), s.mul_f64(0.75), *s]).collect();
        Self { class: Class::Camera, steps }
    }
}

/// A test case.
#[derive(Debug, Clone)]
pub struct Scenario {
    /// The sender's tracks, in the receiver's order.
    pub tracks: Vec<Track>,
    /// The link at the start.
    pub link: LinkConfig,
    /// Later changes of the link: from that time on.
    pub changes: Vec<(Duration, LinkConfig)>,
    /// How long it runs.
    pub duration: Duration,
    /// How often the receiver sends feedback.
    pub feedback_interval: Duration,
    /// The estimator's bounds.
    pub bwe: BweConfig,
    /// Pace media (else it leaves in bursts).
    pub pacing: bool,
    /// Seed of the link's randomness.
    pub seed: u64,
}

impl Scenario {
    /// Audio and three simulcast cameras over `link` for `duration`.
    pub fn simulcast(link: LinkConfig, duration: Duration) -> Self {
        Self {
            tracks: vec![Track::audio(), Track::camera(), Track::camera(), Track::camera()],
            ..Self::adaptive(link, duration)
        }
    }

    /// Audio and one encoder following the estimate over `link` for `duration`.
    pub fn adaptive(link: LinkConfig, duration: Duration) -> Self {
        Self {
            tracks: vec![Track::audio(), Track::adaptive()],
            link,
            changes: Vec::new(),
            duration,
            feedback_interval: Duration::from_millis(50),
            bwe: BweConfig::default(),
            pacing: true,
            seed: 1,
        }
    }

    /// The link's rate changes to `rate` at `at`.
    pub fn rate_at(mut self, at: Duration, rate: Bitrate) -> Self {
        let base = self.changes.last().map_or(self.link, |c| c.1);
        self.changes.push((at, LinkConfig { rate, ..base }));
        self
    }
}

/// What happened in one interval of the run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    /// End of the interval, since the start.
    pub t: Duration,
    /// The link's rate.
    pub capacity: Bitrate,
    /// The estimate at the end.
    pub estimate: Bitrate,
    /// Sent: media and padding.
    pub sent: Bitrate,
    /// Of which media.
    pub media: Bitrate,
    /// Delivered by the link.
    pub delivered: Bitrate,
    /// Packets lost on the link (queue or random).
    pub lost: u32,
    /// Packets sent.
    pub packets: u32,
    /// What the allocation used.
    pub allocated: Bitrate,
}

/// One packet's trip.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Trip {
    /// When it entered the pacer, since the start.
    pub queued: Duration,
    /// Time in the pacer.
    pub pacer: Duration,
    /// Time in the link beyond its propagation delay and its own transmission (the queue).
    pub link_queue: Duration,
}

/// The run's record.
#[derive(Debug, Clone, Default)]
pub struct Trace {
    /// One per interval.
    pub samples: Vec<Sample>,
    /// One per media packet delivered.
    pub trips: Vec<Trip>,
    /// Probe clusters started.
    pub probes: u64,
}

/// Length of a sample interval.
pub const SAMPLE: Duration = Duration::from_millis(100);

impl Trace {
    fn window(&self, from: Duration, to: Duration) -> impl Iterator<Item = &Sample> {
        self.samples.iter().filter(move |s| s.t > from && s.t <= to)
    }

    /// Mean of `f` over the samples ending in `(from, to]`.
    pub fn mean(&self, from: Duration, to: Duration, f: impl Fn(&Sample) -> f64) -> f64 {
        let (sum, n) = self.window(from, to).fold((0.0, 0), |(s, n), x| (s + f(x), n + 1));
        if n == 0 { 0.0 } else { sum / f64::from(n) }
    }

    /// Share of packets lost in `(from, to]`.
    pub fn loss(&self, from: Duration, to: Duration) -> f64 {
        let (lost, sent) = self.window(from, to).fold((0, 0), |(l, s), x| (l + x.lost, s + x.packets));
        if sent == 0 { 0.0 } else { f64::from(lost) / f64::from(sent) }
    }

    /// The `q` quantile (0..1) of what `f` picks of the media packets queued in `(from, to]`
    /// (`|t| t.link_queue`: the network's queuing delay; `|t| t.pacer`: the sender's).
    pub fn delay_quantile(&self, from: Duration, to: Duration, q: f64, f: impl Fn(&Trip) -> Duration) -> Duration {
        let mut d: Vec<Duration> = self.trips.iter().filter(|t| t.queued > from && t.queued <= to).map(f).collect();
        if d.is_empty() {
            return Duration::ZERO;
        }
        d.sort();
        d[((d.len() - 1) as f64 * q).round() as usize]
    }
}

/// A packet on the link.
#[derive(Debug, Clone, Copy)]
struct OnLink {
    seq: u16,
    sent: Instant,
    size: usize,
    media: Option<Duration>,
    pacer: Duration,
}

/// A media packet waiting in the pacer.
#[derive(Debug, Clone, Copy)]
struct Queued {
    size: usize,
    queued: Instant,
}

struct Source {
    track: Track,
    /// The rate of an adaptive track.
    adaptive: Bitrate,
    current: Option<usize>,
    next_frame: Instant,
    next_keyframe: Instant,
}

/// Runs a scenario.
pub fn run(sc: &Scenario) -> Trace {
    let t0 = Instant::now();
    let mut bwe = SendSideBwe::new(sc.bwe);
    let mut link: Link<OnLink> = Link::new(sc.link, sc.seed);
    let mut pacer: Pacer<Queued> = Pacer::new(sc.bwe.start.mul_f64(PACING_FACTOR), PACER_MAX_DELAY);
    let mut sources: Vec<Source> = sc
        .tracks
        .iter()
        .enumerate()
        .map(|(i, t)| Source {
            track: t.clone(),
            adaptive: Bitrate::ZERO,
            current: None,
            next_frame: t0,
            // publishers' keyframes do not come together
            next_keyframe: t0 + KEYFRAME_INTERVAL.mul_f64(i as f64 / sc.tracks.len() as f64),
        })
        .collect();
    let mut changes = sc.changes.iter().peekable();
    // the receiver: arrivals not reported yet, the next number to report
    let mut pending: Vec<(u16, i64)> = Vec::new();
    let mut next_report: Option<u16> = None;
    let mut next_feedback = t0 + sc.feedback_interval;
    let mut returning: VecDeque<(Instant, Feedback)> = VecDeque::new();
    let mut trace = Trace::default();
    let mut acc = Sample {
        t: Duration::ZERO,
        capacity: sc.link.rate,
        estimate: bwe.estimate(),
        sent: Bitrate::ZERO,
        media: Bitrate::ZERO,
        delivered: Bitrate::ZERO,
        lost: 0,
        packets: 0,
        allocated: Bitrate::ZERO,
    };
    let (mut sent_bytes, mut media_bytes, mut delivered_bytes) = (0u64, 0u64, 0u64);
    let reallocate = |bwe: &mut SendSideBwe, sources: &mut [Source], now: Instant| {
        let mut demands: Vec<Demand> = sources
            .iter()
            .enumerate()
            .filter(|(_, s)| !s.track.steps.is_empty())
            .map(|(i, s)| Demand {
                class: s.track.class,
                rank: i as u32,
                steps: s.track.steps.iter().map(|r| Some(*r)).collect(),
                wanted: Some(s.track.steps.len() - 1),
                current: s.current,
            })
            .collect();
        if bwe.upgrades_held(now) {
            allocator::hold_upgrades(&mut demands);
        }
        let a = allocator::allocate(bwe.estimate(), &demands);
        let left = bwe.estimate().saturating_sub(a.used).max(Bitrate::kbps(50));
        let mut adaptive = Bitrate::ZERO;
        for s in sources.iter_mut().filter(|s| s.track.steps.is_empty()) {
            s.adaptive = left;
            s.current = Some(0);
            adaptive = adaptive.saturating_add(left);
        }
        for (s, g) in sources.iter_mut().filter(|s| !s.track.steps.is_empty()).zip(&a.grants) {
            let step = match g {
                Grant::Step(x) => Some(*x),
                Grant::Paused | Grant::Unwanted => None,
            };
            if step != s.current && step.is_some() {
                // a new layer starts at a keyframe (a temporal step within one does not)
                let spatial = |x: Option<usize>| x.map(|x| x / 3);
                if s.track.class != Class::Audio && spatial(step) != spatial(s.current) {
                    s.next_keyframe = now;
                }
            }
            s.current = step;
        }
        // an adaptive encoder could use anything: probe for the link
        let desired = if adaptive > Bitrate::ZERO { Bitrate::MAX } else { a.desired };
        bwe.set_desired(desired, now);
        a.used.saturating_add(adaptive)
    };
    let mut allocated = reallocate(&mut bwe, &mut sources, t0);
    let step = Duration::from_millis(1);
    let mut now = t0;
    let mut next_sample = t0 + SAMPLE;
    let send = |link: &mut Link<OnLink>,
                bwe: &mut SendSideBwe,
                acc: &mut Sample,
                size: usize,
                media: Option<(Duration, Duration)>,
                now: Instant| {
        let seq = bwe.on_sent(size, now);
        acc.packets += 1;
        let p =
            OnLink { seq, sent: now, size, media: media.map(|m| m.0), pacer: media.map_or(Duration::ZERO, |m| m.1) };
        if link.send(p, size, now).is_err() {
            acc.lost += 1;
        }
        size as u64
    };
    while now.duration_since(t0) < sc.duration {
        while let Some((at, cfg)) = changes.peek() {
            if now.duration_since(t0) < *at {
                break;
            }
            link.set_config(*cfg);
            changes.next();
        }
        // media
        for s in &mut sources {
            let Some(step_i) = s.current else { continue };
            if now < s.next_frame {
                continue;
            }
            let rate = s.track.steps.get(step_i).copied().unwrap_or(s.adaptive);
            let (interval, mut size) = if s.track.class == Class::Audio {
                (Duration::from_millis(20), rate.bytes_in(Duration::from_millis(20)) as usize)
            } else {
                (Duration::from_secs(1) / FPS, rate.bytes_in(Duration::from_secs(1) / FPS) as usize)
            };
            s.next_frame += interval;
            if s.track.class != Class::Audio && now >= s.next_keyframe {
                size *= KEYFRAME_FACTOR;
                s.next_keyframe += KEYFRAME_INTERVAL;
            }
            while size > 0 {
                let p = size.min(MTU);
                size -= p;
                pacer.push(Queued { size: p, queued: now }, p, now);
            }
        }
        // paced media, or all of it at once
        loop {
            let item = if sc.pacing {
                pacer.pop(now)
            } else {
                pacer.pop(now + Duration::from_secs(3600)).map(|(q, _)| (q, now.duration_since(q.queued)))
            };
            let Some((q, waited)) = item else { break };
            let n = send(&mut link, &mut bwe, &mut acc, q.size, Some((q.queued.duration_since(t0), waited)), now);
            sent_bytes += n;
            media_bytes += n;
        }
        // probe padding
        while let Some(size) = bwe.poll_padding(now) {
            sent_bytes += send(&mut link, &mut bwe, &mut acc, size, None, now);
        }
        // the receiver
        while let Some((at, p)) = link.recv(now) {
            delivered_bytes += p.size as u64;
            pending.push((p.seq, at.duration_since(t0).as_micros() as i64));
            if let Some(queued) = p.media {
                let cfg = link.config();
                let base = cfg.delay + cfg.rate.time_for(p.size);
                let in_link = at.duration_since(p.sent).saturating_sub(base);
                trace.trips.push(Trip { queued, pacer: p.pacer, link_queue: in_link });
            }
        }
        if now >= next_feedback {
            next_feedback += sc.feedback_interval;
            if !pending.is_empty() {
                let fb = report(&mut pending, &mut next_report);
                returning.push_back((now + sc.link.delay, fb));
            }
        }
        while returning.front().is_some_and(|(at, _)| *at <= now) {
            let (_, fb) = returning.pop_front().expect("just checked");
            bwe.on_feedback(&fb, now);
            allocated = reallocate(&mut bwe, &mut sources, now);
            pacer.set_rate(bwe.estimate().mul_f64(PACING_FACTOR));
        }
        now += step;
        if now >= next_sample {
            next_sample += SAMPLE;
            acc.t = now.duration_since(t0);
            acc.capacity = link.config().rate;
            acc.estimate = bwe.estimate();
            acc.sent = Bitrate::of(std::mem::take(&mut sent_bytes), SAMPLE);
            acc.media = Bitrate::of(std::mem::take(&mut media_bytes), SAMPLE);
            acc.delivered = Bitrate::of(std::mem::take(&mut delivered_bytes), SAMPLE);
            acc.allocated = allocated;
            trace.samples.push(acc);
            acc.lost = 0;
            acc.packets = 0;
        }
    }
    trace.probes = bwe.probes();
    trace
}

/// The receiver's feedback: every number from the last reported on to the highest arrived,
/// with its arrival or as lost.
fn report(pending: &mut Vec<(u16, i64)>, next: &mut Option<u16>) -> Feedback {
    let first = next.unwrap_or(pending[0].0);
    pending.sort_by_key(|&(seq, _)| seq.wrapping_sub(first));
    let highest = pending.iter().map(|&(s, _)| s.wrapping_sub(first)).max().unwrap_or(0);
    let mut reports = Vec::with_capacity(usize::from(highest) + 1);
    let mut it = pending.iter().peekable();
    for off in 0..=highest {
        let seq = first.wrapping_add(off);
        let arrival_us = match it.peek() {
            Some(&&(s, at)) if s == seq => {
                it.next();
                Some(at)
            }
            _ => None,
        };
        reports.push(Report { seq, arrival_us });
    }
    *next = Some(first.wrapping_add(highest).wrapping_add(1));
    pending.clear();
    Feedback { reports }
}
