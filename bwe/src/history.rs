//! What was sent, by transport-wide sequence number, until the receiver reported on it.

use crate::feedback::{Feedback, PacketResult};
use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// How long a sent packet waits for its feedback: later reports of it are ignored (a receiver
/// reports every 50-100 ms; this covers round trips of seconds).
pub const KEEP: Duration = Duration::from_secs(2);

/// What the receiver said of a packet so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Unreported,
    Lost,
    Received,
}

#[derive(Debug, Clone, Copy)]
struct Sent {
    at: Instant,
    size: u32,
    probe: Option<u32>,
    state: State,
}

/// Sent packets by extended sequence number, oldest first: consecutive numbers, so a report
/// finds its packet by subtraction.
#[derive(Debug, Default)]
pub struct SendHistory {
    /// Extended number of `packets[0]`.
    first: u64,
    packets: VecDeque<Sent>,
    /// Bytes sent that were not reported yet (in flight or lost without word).
    in_flight: u64,
}

impl SendHistory {
    /// An empty history.
    pub fn new() -> Self {
        Self::default()
    }

    /// The next extended sequence number to stamp.
    pub fn next_seq(&self) -> u64 {
        self.first + self.packets.len() as u64
    }

    /// Records the packet numbered `next_seq()`, sent at `now`; returns its number.
    pub fn on_sent(&mut self, now: Instant, size: usize, probe: Option<u32>) -> u64 {
        let seq = self.next_seq();
        self.packets.push_back(Sent { at: now, size: size as u32, probe, state: State::Unreported });
        self.in_flight += size as u64;
        while let Some(old) = self.packets.front() {
            if now.saturating_duration_since(old.at) <= KEEP {
                break;
            }
            if old.state == State::Unreported {
                self.in_flight -= u64::from(old.size);
            }
            self.packets.pop_front();
            self.first += 1;
        }
        seq
    }

    /// Bytes sent and not reported on yet.
    pub fn in_flight(&self) -> u64 {
        self.in_flight
    }

    /// The extended number of a 16-bit one on the wire: the one nearest the newest sent.
    pub fn extend(&self, seq: u16) -> Option<u64> {
        let newest = self.next_seq().checked_sub(1)?;
        let mut ext = (newest & !0xffff) | u64::from(seq);
        if ext > newest {
            ext = ext.checked_sub(0x1_0000)?;
        }
        Some(ext)
    }

    /// Matches a feedback with the packets it reports on, sorted by sequence number. Left out:
    /// packets unknown or forgotten, reported received before, or reported lost again.
    pub fn on_feedback(&mut self, feedback: &Feedback, out: &mut Vec<PacketResult>) {
        out.clear();
        for r in &feedback.reports {
            let Some(seq) = self.extend(r.seq) else { continue };
            let Some(i) = seq.checked_sub(self.first) else { continue };
            let Some(p) = self.packets.get_mut(i as usize) else { continue };
            let received = r.arrival_us.is_some();
            match (p.state, received) {
                (State::Unreported, _) => self.in_flight -= u64::from(p.size),
                // reported lost, then arrived late: its arrival still tells the delay
                (State::Lost, true) => {}
                (State::Lost, false) | (State::Received, _) => continue,
            }
            p.state = if received { State::Received } else { State::Lost };
            out.push(PacketResult { seq, sent: p.at, size: p.size as usize, probe: p.probe, arrival_us: r.arrival_us });
        }
        out.sort_by_key(|p| p.seq);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::feedback::Report;

    fn fb(rows: &[(u16, Option<i64>)]) -> Feedback {
        Feedback { reports: rows.iter().map(|&(seq, arrival_us)| Report { seq, arrival_us }).collect() }
    }

    #[test]
    fn reports_match_sent_packets_once() {
        let t0 = Instant::now();
        let mut h = SendHistory::new();
        for i in 0..4u64 {
            assert_eq!(h.on_sent(t0 + Duration::from_millis(i), 100, None), i);
        }
        assert_eq!(h.in_flight(), 400);
        let mut out = Vec::new();
        h.on_feedback(&fb(&[(1, Some(10)), (0, Some(5)), (2, None), (9, Some(1))]), &mut out);
        let got: Vec<_> = out.iter().map(|p| (p.seq, p.arrival_us)).collect();
        assert_eq!(got, [(0, Some(5)), (1, Some(10)), (2, None)], "sorted, unknown 9 left out");
        assert_eq!(h.in_flight(), 100);
        // columns: report, expected results: a repeated arrival and a repeated loss are left
        // out, a late arrival after a loss is kept
        h.on_feedback(&fb(&[(1, Some(10)), (2, None)]), &mut out);
        assert!(out.is_empty());
        h.on_feedback(&fb(&[(2, Some(30)), (3, Some(31))]), &mut out);
        assert_eq!(out.iter().map(|p| p.seq).collect::<Vec<_>>(), [2, 3]);
        assert_eq!(h.in_flight(), 0);
    }

    #[test]
    fn wire_numbers_extend_near_the_newest() {
        let t0 = Instant::now();
        let mut h = SendHistory::new();
        assert_eq!(h.extend(0), None, "nothing sent");
        for _ in 0..0x1_0005u64 {
            h.on_sent(t0, 1, None);
        }
        // newest sent is 0x1_0004; columns: wire number, extended
        let rows: &[(u16, u64)] = &[(4, 0x1_0004), (0, 0x1_0000), (0xffff, 0xffff), (5, 5)];
        for &(wire, want) in rows {
            assert_eq!(h.extend(wire), Some(want), "{wire}");
        }
    }

    #[test]
    fn old_packets_are_forgotten() {
        let t0 = Instant::now();
        let mut h = SendHistory::new();
        h.on_sent(t0, 100, None);
        h.on_sent(t0 + KEEP + Duration::from_millis(1), 50, Some(3));
        assert_eq!(h.in_flight(), 50, "the unreported forgotten packet leaves the count");
        let mut out = Vec::new();
        h.on_feedback(&fb(&[(0, Some(1)), (1, Some(2))]), &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!((out[0].seq, out[0].probe, out[0].size), (1, Some(3), 50));
    }
}
