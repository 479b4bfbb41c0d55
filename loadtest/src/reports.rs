//! Receiver feedback a subscriber sends, as a browser does: NACKs for lost video packets
//! (immediately on the gap, then every [`NACK_RETRY`], at most [`NACKS_PER_PACKET`] times) and
//! a receiver report block per stream every [`RR_INTERVAL`]. Pure code with time passed in;
//! the subscriber writes the packets through its connection.

use crate::recv::extend;
use rtc::rtcp::reception_report::ReceptionReport;
use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Sequence numbers behind the newest one that are still asked for.
pub const NACK_WINDOW: u64 = 512;
/// Time between two requests for one packet.
pub const NACK_RETRY: Duration = Duration::from_millis(100);
/// Requests per lost packet (Chrome gives up after about 10 too).
pub const NACKS_PER_PACKET: u8 = 10;
/// Time between two receiver reports (RFC 3550's minimum is 5 s; browsers send ~1/s).
pub const RR_INTERVAL: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Missing {
    ext: u64,
    sent: u8,
    next: Instant,
}

/// The lost packets of one stream still worth asking for, oldest first.
#[derive(Debug, Clone, Default)]
pub struct NackList {
    highest: Option<u64>,
    missing: VecDeque<Missing>,
}

impl NackList {
    /// Records a packet with `seq` that arrived at `now`; true when it revealed a gap (its
    /// requests are due at once).
    pub fn on_packet(&mut self, seq: u16, now: Instant) -> bool {
        let Some(highest) = self.highest else {
            self.highest = Some(u64::from(seq) + (1 << 16));
            return false;
        };
        let ext = extend(highest, seq);
        if ext <= highest {
            // late or retransmitted: no longer missing
            if let Ok(i) = self.missing.binary_search_by_key(&ext, |m| m.ext) {
                self.missing.remove(i);
            }
            return false;
        }
        self.highest = Some(ext);
        let gap = ext - highest - 1;
        if gap > NACK_WINDOW {
            // a jump no retransmission cache covers: start over without asking
            self.missing.clear();
            return false;
        }
        self.missing.extend((highest + 1..ext).map(|ext| Missing { ext, sent: 0, next: now }));
        while self.missing.front().is_some_and(|m| m.ext + NACK_WINDOW < ext) {
            self.missing.pop_front();
        }
        gap > 0
    }

    /// Appends the sequence numbers whose request is due at `now` to `out` and counts them as
    /// sent; a packet asked for [`NACKS_PER_PACKET`] times is given up.
    pub fn due(&mut self, now: Instant, out: &mut Vec<u16>) {
        for m in self.missing.iter_mut().filter(|m| m.next <= now) {
            out.push(m.ext as u16);
            m.sent += 1;
            m.next = now + NACK_RETRY;
        }
        self.missing.retain(|m| m.sent < NACKS_PER_PACKET);
    }

    /// When the next request is due (`None`: nothing missing).
    pub fn next_due(&self) -> Option<Instant> {
        self.missing.iter().map(|m| m.next).min()
    }

    /// Packets currently asked for.
    pub fn len(&self) -> usize {
        self.missing.len()
    }

    /// True when nothing is missing.
    pub fn is_empty(&self) -> bool {
        self.missing.is_empty()
    }
}

/// What a receiver report block is built from: the receiver's view of one stream now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reception {
    /// The stream's SSRC.
    pub ssrc: u32,
    /// Highest extended sequence number received (the first packet's is in 2^16..2^17).
    pub highest: u64,
    /// Packets lost so far (never received and not filled in late).
    pub lost: u64,
    /// Interarrival jitter, RTP timestamp units.
    pub jitter: u32,
    /// Middle 32 bits of the latest sender report's NTP time and its arrival (UNIX µs).
    pub last_sr: Option<(u32, u64)>,
}

/// Counters at the previous report of one stream (for the fraction lost since).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReportPrior {
    highest: u64,
    lost: u64,
}

/// The report block of `r` at `now_us` (UNIX µs) (RFC 3550 6.4.1); updates `prior`.
pub fn report_block(r: &Reception, prior: &mut ReportPrior, now_us: u64) -> ReceptionReport {
    // packets expected since the previous report (none before the first)
    let expected = if prior.highest == 0 { 0 } else { r.highest.saturating_sub(prior.highest) };
    let lost = r.lost.saturating_sub(prior.lost);
    let fraction_lost = (lost.min(expected) * 256).checked_div(expected).map_or(0, |f| f.min(255) as u8);
    *prior = ReportPrior { highest: r.highest, lost: r.lost };
    let (last_sender_report, delay) = match r.last_sr {
        // delay since that report in units of 1/65536 s
        Some((ntp_mid, at_us)) => {
            (ntp_mid, (now_us.saturating_sub(at_us) * 65_536 / 1_000_000).min(u64::from(u32::MAX)) as u32)
        }
        None => (0, 0),
    };
    ReceptionReport {
        ssrc: r.ssrc,
        fraction_lost,
        total_lost: r.lost.min(0x7f_ffff) as u32,
        last_sequence_number: r.highest.saturating_sub(1 << 16) as u32,
        jitter: r.jitter,
        last_sender_report,
        delay,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(t0: Instant, n: u64) -> Instant {
        t0 + Duration::from_millis(n)
    }

    #[test]
    fn nack_requests() {
        // columns: name, (arrival ms, seq) in order, (ask at ms, expected requests) in order
        type Row = (&'static str, &'static [(u64, u16)], &'static [(u64, &'static [u16])]);
        let rows: &[Row] = &[
            ("no loss", &[(0, 10), (1, 11), (2, 12)], &[(2, &[]), (500, &[])]),
            ("one lost, asked at once", &[(0, 10), (1, 12)], &[(1, &[11]), (2, &[]), (101, &[11])]),
            ("filled in late: not asked again", &[(0, 10), (1, 12), (5, 11)], &[(5, &[]), (200, &[])]),
            ("asked before the late arrival only", &[(0, 10), (1, 13)], &[(1, &[11, 12])]),
            ("wrap", &[(0, 65534), (1, 1)], &[(1, &[65535, 0])]),
            ("gap across the wrap filled", &[(0, 65534), (1, 1), (2, 0), (3, 65535)], &[(3, &[])]),
            ("jump beyond the window: given up", &[(0, 10), (1, 2000)], &[(1, &[])]),
            ("duplicate and old packets ignored", &[(0, 10), (1, 10), (2, 5), (3, 11)], &[(3, &[])]),
        ];
        for (name, arrivals, asks) in rows {
            let t0 = Instant::now();
            let mut n = NackList::default();
            let mut arrivals = arrivals.iter().peekable();
            for (at, want) in *asks {
                while let Some((a, seq)) = arrivals.next_if(|(a, _)| a <= at) {
                    n.on_packet(*seq, ms(t0, *a));
                }
                let mut got = Vec::new();
                n.due(ms(t0, *at), &mut got);
                assert_eq!(&got[..], *want, "{name} at {at} ms");
            }
        }
    }

    #[test]
    fn a_gap_is_due_at_once_and_given_up_after_ten_requests() {
        let t0 = Instant::now();
        let mut n = NackList::default();
        assert!(!n.on_packet(100, t0), "first packet");
        assert!(!n.on_packet(101, t0), "in order");
        assert!(n.on_packet(103, t0), "gap");
        assert_eq!(n.next_due(), Some(t0));
        let mut asked = 0;
        let mut at = t0;
        while let Some(due) = n.next_due() {
            assert!(due >= at);
            at = due;
            let mut out = Vec::new();
            n.due(at, &mut out);
            assert_eq!(out, [102]);
            asked += 1;
            assert!(asked <= usize::from(NACKS_PER_PACKET), "gives up");
        }
        assert_eq!(asked, usize::from(NACKS_PER_PACKET));
        assert_eq!(at, t0 + NACK_RETRY * u32::from(NACKS_PER_PACKET - 1));
        assert!(n.is_empty());
    }

    #[test]
    fn the_list_keeps_only_the_window() {
        let t0 = Instant::now();
        let mut n = NackList::default();
        n.on_packet(0, t0);
        for i in 0..400u16 {
            n.on_packet(2 + 2 * i, t0); // every other packet lost
        }
        assert_eq!(n.len(), NACK_WINDOW as usize / 2, "only losses within {NACK_WINDOW} of the newest");
    }

    #[test]
    fn receiver_report_blocks() {
        // columns: name, successive (highest, lost, last SR (ntp mid, µs), now µs), expected
        // (fraction lost, total lost, last seq, LSR, DLSR) of each report
        type Row = (&'static str, &'static [(u64, u64, Option<(u32, u64)>, u64)], &'static [(u8, u32, u32, u32, u32)]);
        let rows: &[Row] = &[
            ("first report: no fraction yet", &[(65_636, 0, None, 0)], &[(0, 0, 100, 0, 0)]),
            (
                "a quarter lost since the previous report",
                &[(65_636, 0, None, 0), (65_736, 25, None, 0)],
                &[(0, 0, 100, 0, 0), (64, 25, 200, 0, 0)],
            ),
            ("sequence wrapped once", &[(2 * 65_536 + 5, 3, None, 0)], &[(0, 3, 65_541, 0, 0)]),
            (
                "half a second after a sender report",
                &[(70_000, 0, Some((0xabcd_0123, 1_000_000)), 1_500_000)],
                &[(0, 0, 4_464, 0xabcd_0123, 32_768)],
            ),
            (
                "late fills make the loss shrink: fraction 0",
                &[(65_636, 10, None, 0), (65_736, 4, None, 0)],
                &[(0, 10, 100, 0, 0), (0, 4, 200, 0, 0)],
            ),
        ];
        for (name, inputs, want) in rows {
            let mut prior = ReportPrior::default();
            for (i, ((highest, lost, last_sr, now), w)) in inputs.iter().zip(want.iter()).enumerate() {
                let r = Reception { ssrc: 7, highest: *highest, lost: *lost, jitter: 42, last_sr: *last_sr };
                let b = report_block(&r, &mut prior, *now);
                let got = (b.fraction_lost, b.total_lost, b.last_sequence_number, b.last_sender_report, b.delay);
                assert_eq!(got, *w, "{name}, report {i}");
                assert_eq!((b.ssrc, b.jitter), (7, 42));
            }
        }
    }
}
