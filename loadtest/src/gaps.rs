//! Inter-arrival gaps of one received track, so that a test can ask "what was the longest time
//! without a packet between these two instants" (e.g. while a node drains) after the fact.
//!
//! Fixed size: gaps of [`LONG_GAP_US`] or more are logged exactly (the newest [`MAX_LONG`]);
//! shorter ones are kept as one maximum per wall-clock second (the last [`SECONDS`] seconds).
//! Times are UNIX microseconds, like the arrival stamps of [`crate::recv::RecvTrack::on_packet`].

/// A gap at least this long (100 ms) is logged individually.
pub const LONG_GAP_US: u64 = 100_000;
/// Long gaps kept, newest.
pub const MAX_LONG: usize = 32;
/// Seconds of short-gap maxima kept.
pub const SECONDS: usize = 64;

/// A time without packets: from `end_us - gap_us` to `end_us` (the arrival that ended it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Gap {
    /// Arrival of the packet that ended the gap, UNIX microseconds.
    pub end_us: u64,
    /// Length, microseconds.
    pub gap_us: u64,
}

impl Gap {
    /// The part of the gap inside `[from_us, to_us]`, microseconds (0 when outside).
    pub fn within(&self, from_us: u64, to_us: u64) -> u64 {
        let start = self.end_us.saturating_sub(self.gap_us).max(from_us);
        self.end_us.min(to_us).saturating_sub(start)
    }
}

/// Arrival gaps of one track.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArrivalGaps {
    /// First arrival (0 before any packet).
    pub first_us: u64,
    /// Newest arrival (0 before any packet).
    pub last_us: u64,
    /// Largest gap since the first packet.
    pub max_us: u64,
    /// Gaps of [`LONG_GAP_US`] or more, oldest first (the newest [`MAX_LONG`]).
    pub long: Vec<Gap>,
    /// Long gaps dropped from `long` because it was full.
    pub long_dropped: u64,
    /// (UNIX second, largest short gap ending in it), indexed by second mod [`SECONDS`].
    per_second: [(u64, u32); SECONDS],
}

impl Default for ArrivalGaps {
    fn default() -> Self {
        ArrivalGaps {
            first_us: 0,
            last_us: 0,
            max_us: 0,
            long: Vec::new(),
            long_dropped: 0,
            per_second: [(u64::MAX, 0); SECONDS],
        }
    }
}

impl ArrivalGaps {
    /// Records a packet that arrived at `arrival_us`.
    pub fn record(&mut self, arrival_us: u64) {
        if self.last_us == 0 {
            self.first_us = arrival_us;
            self.last_us = arrival_us;
            return;
        }
        let gap = arrival_us.saturating_sub(self.last_us);
        self.last_us = self.last_us.max(arrival_us);
        self.max_us = self.max_us.max(gap);
        if gap >= LONG_GAP_US {
            if self.long.len() == MAX_LONG {
                self.long.remove(0);
                self.long_dropped += 1;
            }
            self.long.push(Gap { end_us: arrival_us, gap_us: gap });
            return;
        }
        let sec = arrival_us / 1_000_000;
        let slot = &mut self.per_second[(sec % SECONDS as u64) as usize];
        if slot.0 != sec {
            *slot = (sec, 0);
        }
        slot.1 = slot.1.max(gap as u32);
    }

    /// The longest time without a packet inside `[from_us, to_us]`, microseconds; `to_us` should
    /// not be later than when these stats were taken. Exact for gaps of [`LONG_GAP_US`] or more;
    /// a shorter one counts whole if it ended in a second overlapping the window. `None` if the
    /// window is older than what is kept.
    pub fn max_gap_between(&self, from_us: u64, to_us: u64) -> Option<u64> {
        if to_us < from_us || !self.covers(from_us, to_us) {
            return None;
        }
        if self.last_us == 0 || self.first_us > to_us {
            return Some(to_us - from_us); // nothing arrived in the window
        }
        let head = self.first_us.saturating_sub(from_us);
        let tail = to_us.saturating_sub(self.last_us.max(from_us));
        let long = self.long.iter().map(|g| g.within(from_us, to_us)).max().unwrap_or(0);
        let short = (from_us / 1_000_000..=to_us / 1_000_000)
            .filter_map(|sec| {
                let (s, gap) = self.per_second[(sec % SECONDS as u64) as usize];
                (s == sec).then_some(u64::from(gap))
            })
            .max()
            .unwrap_or(0);
        Some(head.max(tail).max(long).max(short))
    }

    /// Gaps inside `[from_us, to_us]` at least `min_us` long (`min_us` >= [`LONG_GAP_US`]; the
    /// window's tail and head count as gaps too). `None` if the window is older than what is kept.
    pub fn gaps_over(&self, from_us: u64, to_us: u64, min_us: u64) -> Option<Vec<Gap>> {
        if to_us < from_us || !self.covers(from_us, to_us) {
            return None;
        }
        let min_us = min_us.max(LONG_GAP_US);
        if self.last_us == 0 || self.first_us > to_us {
            return Some(if to_us - from_us >= min_us {
                vec![Gap { end_us: to_us, gap_us: to_us - from_us }]
            } else {
                vec![]
            });
        }
        let mut out: Vec<Gap> = Vec::new();
        if self.first_us > from_us {
            out.push(Gap { end_us: self.first_us, gap_us: self.first_us - from_us });
        }
        out.extend(self.long.iter().map(|g| Gap { end_us: g.end_us.min(to_us), gap_us: g.within(from_us, to_us) }));
        if self.last_us < to_us {
            out.push(Gap { end_us: to_us, gap_us: to_us - self.last_us.max(from_us) });
        }
        out.retain(|g| g.gap_us >= min_us);
        Some(out)
    }

    fn covers(&self, from_us: u64, to_us: u64) -> bool {
        let seconds = to_us / 1_000_000 - from_us / 1_000_000 + 1;
        let long_complete =
            self.long_dropped == 0 || self.long.first().is_some_and(|g| g.end_us.saturating_sub(g.gap_us) <= from_us);
        let newest_sec = self.last_us / 1_000_000;
        let short_complete = newest_sec < SECONDS as u64 || from_us / 1_000_000 + SECONDS as u64 > newest_sec;
        seconds <= SECONDS as u64 && long_complete && short_complete
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000;

    fn steady(g: &mut ArrivalGaps, from: u64, to: u64, every: u64) {
        let mut t = from;
        while t <= to {
            g.record(t);
            t += every;
        }
    }

    #[test]
    fn steady_stream_has_only_short_gaps() {
        let mut g = ArrivalGaps::default();
        steady(&mut g, 100 * S, 110 * S, 20_000);
        assert_eq!(g.max_us, 20_000);
        assert!(g.long.is_empty());
        assert_eq!(g.max_gap_between(102 * S, 108 * S), Some(20_000));
        assert_eq!(g.gaps_over(102 * S, 108 * S, 250_000), Some(vec![]));
    }

    #[test]
    fn long_gap_is_exact_and_clipped() {
        let mut g = ArrivalGaps::default();
        steady(&mut g, 100 * S, 105 * S, 20_000);
        steady(&mut g, 105 * S + 300_000, 110 * S, 20_000);
        assert_eq!(g.long, vec![Gap { end_us: 105 * S + 300_000, gap_us: 300_000 }]);
        assert_eq!(g.max_gap_between(101 * S, 109 * S), Some(300_000));
        assert_eq!(g.max_gap_between(105 * S + 200_000, 109 * S), Some(100_000), "clipped to the window");
        assert_eq!(g.max_gap_between(106 * S, 109 * S), Some(20_000));
        assert_eq!(g.gaps_over(101 * S, 109 * S, 250_000).unwrap().len(), 1);
        assert_eq!(g.gaps_over(101 * S, 109 * S, 400_000).unwrap().len(), 0);
    }

    #[test]
    fn tail_and_empty_windows_count() {
        let mut g = ArrivalGaps::default();
        assert_eq!(g.max_gap_between(S, 2 * S), Some(S));
        steady(&mut g, 100 * S, 101 * S, 20_000);
        assert_eq!(g.max_gap_between(100 * S, 101 * S + 500_000), Some(500_000));
        assert_eq!(g.gaps_over(100 * S, 101 * S + 500_000, 250_000).unwrap().len(), 1);
        assert_eq!(g.max_gap_between(99 * S, 101 * S), Some(S), "nothing before the first packet");
    }

    #[test]
    fn old_windows_are_unknown() {
        let mut g = ArrivalGaps::default();
        steady(&mut g, 100 * S, 200 * S, 20_000);
        assert_eq!(g.max_gap_between(110 * S, 120 * S), None);
        assert!(g.max_gap_between(150 * S, 200 * S).is_some());
        assert_eq!(g.max_gap_between(100 * S, 199 * S), None, "longer than kept");
    }
}
