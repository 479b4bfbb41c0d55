//! Per (subscriber, published track) mapping of the current source's extended
//! sequence numbers and timestamps onto one continuous outgoing RTP stream,
//! across simulcast layer switches and deliberately dropped packets.
//!
//! The mapping is kept as a ring of segments. A segment maps a run of
//! incoming sequence numbers linearly onto outgoing ones; a new segment starts
//! at every source switch and after every dropped packet (the dropped packet
//! gets no outgoing slot, so the receiver sees no gap for it). Lost packets
//! keep their slot, so the receiver can NACK them.

use std::time::{Duration, Instant};

use super::seq::{SEQ_BITS, extend_near, low_u16, low_u32};

/// Number of segments remembered for late packets and NACKs (the newest and a ring of older ones).
const HISTORY: usize = 128;
/// A packet this far behind the newest incoming one is never forwarded.
const MAX_LATE: u64 = 1 << 15;
/// Outgoing extended sequence numbers start one full range up so that NACK lookups never underflow.
const SEQ_RANGE: u64 = 1 << 16;
/// Outgoing extended timestamps start one full range up, like sequence numbers.
const TS_RANGE: u64 = 1 << 32;
/// Nanoseconds per second, for clock-rate conversions.
const NANOS_PER_SEC: u128 = 1_000_000_000;

/// The incoming packet an outgoing sequence number was mapped from, for answering NACKs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeqOrigin {
    /// Extended sequence number in the current source.
    Current(u64),
    /// Extended sequence number in the source that was current before the latest switch.
    Previous(u64),
}

/// A run of incoming sequence numbers mapped linearly onto outgoing ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Segment {
    /// First incoming extended sequence number of the run.
    start_in: u64,
    /// Number of dropped incoming sequence numbers right before `start_in`; they have no outgoing slot.
    dropped: u64,
    /// Outgoing extended sequence number of `start_in`.
    start_out: u64,
    /// True if this run is the first of a source.
    source_start: bool,
    /// Outgoing numbers right before `start_out` given to padding (no incoming packet).
    padded: u8,
}

impl Segment {
    /// Placeholder for unused ring slots.
    const EMPTY: Self = Self { start_in: 0, dropped: 0, start_out: 0, source_start: true, padded: 0 };
}

/// The most recent segments: the newest inline (every forwarded packet reads it, so it lives
/// in the munger's own cache lines), the older ones in a ring allocated once.
#[derive(Debug, Clone)]
struct History {
    /// The newest segment, if any.
    head: Option<Segment>,
    /// Ring storage of the older segments.
    older: Box<[Segment; HISTORY - 1]>,
    /// Index of the newest older segment.
    newest_older: usize,
    /// Number of valid older segments.
    len_older: usize,
}

impl History {
    /// An empty ring.
    fn new() -> Self {
        Self { head: None, older: Box::new([Segment::EMPTY; HISTORY - 1]), newest_older: 0, len_older: 0 }
    }

    /// Appends a segment, evicting the oldest when full.
    fn push(&mut self, seg: Segment) {
        let Some(prev) = self.head.replace(seg) else { return };
        self.newest_older = (self.newest_older + 1) % (HISTORY - 1);
        if let Some(slot) = self.older.get_mut(self.newest_older) {
            *slot = prev;
        }
        self.len_older = (self.len_older + 1).min(HISTORY - 1);
    }

    /// The newest segment, if any.
    fn newest_mut(&mut self) -> Option<&mut Segment> {
        self.head.as_mut()
    }

    /// Segments from newest to oldest.
    fn newest_first(&self) -> impl Iterator<Item = &Segment> {
        let older = (0..self.len_older)
            .filter_map(move |age| self.older.get((self.newest_older + HISTORY - 1 - age) % (HISTORY - 1)));
        self.head.iter().chain(older)
    }

    /// Outgoing extended sequence number of an incoming one of the current source; None if before the source or dropped.
    fn lookup_in(&self, seq: u64) -> Option<u64> {
        // the newest segment comes first: the common case never touches the ring
        for seg in self.newest_first() {
            if seq >= seg.start_in {
                return Some(seg.start_out.saturating_add(seq - seg.start_in));
            }
            if seq >= seg.start_in.saturating_sub(seg.dropped) || seg.source_start {
                return None;
            }
        }
        None
    }
}

/// State of the source currently being forwarded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Source {
    /// Highest incoming extended sequence number seen (forwarded or dropped).
    highest_in: Option<u64>,
    /// Incoming extended timestamp of the source's first packet.
    ts_in: u64,
    /// Outgoing extended timestamp it maps to.
    ts_out: u64,
}

impl Source {
    /// Outgoing extended timestamp of an incoming one.
    const fn map_ts(&self, ts: u64) -> u64 {
        if ts >= self.ts_in {
            self.ts_out.saturating_add(ts - self.ts_in)
        } else {
            self.ts_out.saturating_sub(self.ts_in - ts)
        }
    }
}

/// RTP clock ticks in `elapsed`, rounded down.
fn ticks(elapsed: Duration, clock_rate: u32) -> u64 {
    let t = elapsed.as_nanos().saturating_mul(u128::from(clock_rate)) / NANOS_PER_SEC;
    u64::try_from(t).unwrap_or(u64::MAX)
}

/// Maps one subscriber's view of a published track onto a continuous outgoing sequence and timestamp space.
#[derive(Debug, Clone)]
pub struct RtpMunger {
    /// RTP clock rate of the track in Hz.
    clock_rate: u32,
    /// Outgoing extended sequence number of the very first packet.
    init_seq: u64,
    /// Outgoing extended timestamp of the very first packet.
    init_ts: u64,
    /// Recent segments, for late packets and NACKs.
    history: History,
    /// The source being forwarded; None before the first switch.
    source: Option<Source>,
    /// Highest outgoing extended sequence number forwarded.
    highest_out: Option<u64>,
    /// Newest outgoing extended timestamp forwarded, and when it was first forwarded.
    newest_ts: Option<(u64, Instant)>,
}

impl RtpMunger {
    /// Creates a munger whose first forwarded packet gets `init_seq` and `init_ts`; allocates its history once, here.
    pub fn new(clock_rate: u32, init_seq: u16, init_ts: u32) -> Self {
        Self {
            clock_rate,
            init_seq: u64::from(init_seq) + SEQ_RANGE,
            init_ts: u64::from(init_ts) + TS_RANGE,
            history: History::new(),
            source: None,
            highest_out: None,
            newest_ts: None,
        }
    }

    /// Highest outgoing extended sequence number forwarded so far (its low 16 bits are the RTP value).
    pub const fn last_out_seq(&self) -> Option<u64> {
        self.highest_out
    }

    /// Newest outgoing extended timestamp forwarded so far (its low 32 bits are the RTP value), for SR-based switch timestamps.
    pub fn last_out_ts(&self) -> Option<u64> {
        self.newest_ts.map(|(ts, _)| ts)
    }

    /// Starts forwarding a new source whose next packet has `first_seq`/`first_ts`; `out_ts` (extended, see `last_out_ts`) overrides the wall-clock estimate and is raised to at least last + 1.
    pub fn switch_source(&mut self, first_seq: u64, first_ts: u64, out_ts: Option<u64>, now: Instant) {
        let (start_out, ts_out) = match (self.highest_out, self.newest_ts) {
            (Some(last_seq), Some((last_ts, at))) => {
                let at_least = last_ts.saturating_add(1);
                let ts_out = match out_ts {
                    Some(ts) => ts.max(at_least),
                    None => {
                        let elapsed = ticks(now.saturating_duration_since(at), self.clock_rate);
                        last_ts.saturating_add(elapsed.max(1))
                    }
                };
                (last_seq.saturating_add(1), ts_out)
            }
            // Nothing forwarded yet: the first packet gets the initial values.
            _ => (self.init_seq, self.init_ts),
        };
        self.history.push(Segment { start_in: first_seq, dropped: 0, start_out, source_start: true, padded: 0 });
        self.source = Some(Source { highest_in: None, ts_in: first_ts, ts_out });
    }

    /// Whether a source is being forwarded (a switch started one and it did not end).
    pub fn has_source(&self) -> bool {
        self.source.is_some()
    }

    /// Ends the current source (its stream went away) but keeps the outgoing numbering: the
    /// next [`RtpMunger::switch_source`] continues after what was sent.
    pub fn end_source(&mut self) {
        self.source = None;
    }

    /// Maps a packet of the current source to the outgoing (seq, ts); None if it precedes the source, was dropped, is too late, or no source is set.
    #[must_use = "a packet whose mapping is None must not be forwarded"]
    pub fn forward(&mut self, seq: u64, ts: u64, now: Instant) -> Option<(u16, u32)> {
        let source = self.source.as_mut()?;
        if source.highest_in.is_some_and(|h| h.saturating_sub(seq) >= MAX_LATE) {
            return None;
        }
        let out_seq = self.history.lookup_in(seq)?;
        if source.highest_in.is_none_or(|h| seq > h) {
            source.highest_in = Some(seq);
        }
        let out_ts = source.map_ts(ts);
        self.highest_out = Some(self.highest_out.map_or(out_seq, |h| h.max(out_seq)));
        if self.newest_ts.is_none_or(|(newest, _)| out_ts > newest) {
            // Keep the time the newest timestamp was first seen: its frame's best capture-time estimate.
            self.newest_ts = Some((out_ts, now));
        }
        // Keeping the low bits of the RTP field widths is the wrap-around.
        Some((low_u16(out_seq), low_u32(out_ts)))
    }

    /// Records that the caller will not forward this packet of the current source, so that it takes no outgoing slot; a late packet's slot cannot be reclaimed.
    pub fn drop_packet(&mut self, seq: u64) {
        let Some(source) = self.source.as_mut() else {
            return;
        };
        if source.highest_in.is_some_and(|h| seq <= h) {
            // Its slot was already handed out to the packets after it.
            return;
        }
        let Some(seg) = self.history.newest_mut() else {
            return;
        };
        if seq < seg.start_in {
            // Older than the source's first packet: not part of this source.
            return;
        }
        source.highest_in = Some(seq);
        if seq == seg.start_in {
            // Nothing of this segment was forwarded yet: just move its start.
            seg.start_in = seg.start_in.saturating_add(1);
            seg.dropped += 1;
        } else {
            let start_out = seg.start_out.saturating_add(seq - seg.start_in);
            self.history.push(Segment {
                start_in: seq.saturating_add(1),
                dropped: 1,
                start_out,
                source_start: false,
                padded: 0,
            });
        }
    }

    /// Takes the next outgoing sequence number for a padding-only packet (a bandwidth probe)
    /// and returns it with the newest outgoing timestamp; the source's next packet continues
    /// after it. `None` before anything was forwarded, or when the newest incoming number was
    /// not forwarded (its slot is still open).
    pub fn reserve_padding(&mut self) -> Option<(u16, u32)> {
        let next_in = self.source.as_ref()?.highest_in?.saturating_add(1);
        let slot = self.history.lookup_in(next_in)?;
        if self.highest_out != Some(slot.saturating_sub(1)) {
            return None;
        }
        let (ts, _) = self.newest_ts?;
        let (dropped, padded) = match self.history.newest_mut() {
            // a run that has no packet yet: it moves behind the padding
            Some(seg) if seg.start_in == next_in => (seg.dropped, seg.padded),
            _ => (0, 0),
        };
        let seg = Segment {
            start_in: next_in,
            dropped,
            start_out: slot.saturating_add(1),
            source_start: false,
            padded: padded.saturating_add(1),
        };
        match self.history.newest_mut() {
            Some(head) if head.start_in == next_in && !head.source_start => *head = seg,
            _ => self.history.push(seg),
        }
        self.highest_out = Some(slot);
        Some((low_u16(slot), low_u32(ts)))
    }

    /// Maps an outgoing sequence number (from a NACK) back to the incoming one of the current or previous source; None if unknown.
    pub fn out_to_in(&self, out_seq: u16) -> Option<SeqOrigin> {
        let highest = self.highest_out?;
        let out = extend_near(highest, u64::from(out_seq), SEQ_BITS);
        if out > highest {
            return None;
        }
        let mut sources_back = 0u32;
        for seg in self.history.newest_first() {
            if out >= seg.start_out {
                let seq = seg.start_in.saturating_add(out - seg.start_out);
                return Some(if sources_back == 0 { SeqOrigin::Current(seq) } else { SeqOrigin::Previous(seq) });
            }
            if out >= seg.start_out.saturating_sub(u64::from(seg.padded)) {
                // padding: nothing to resend
                return None;
            }
            if seg.source_start {
                sources_back += 1;
                if sources_back > 1 {
                    return None;
                }
            }
        }
        None
    }
}

#[cfg(test)]
#[path = "munger_tests.rs"]
mod tests;
