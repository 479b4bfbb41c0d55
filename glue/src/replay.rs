//! Which extended sequence numbers of a stream were seen, over a window behind the highest
//! (as SRTP's replay list, RFC 3711 3.3.2): a packet is new, a duplicate, or too old to tell.

/// A packet's place against the window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    /// Not seen before, within the window or ahead of it.
    New,
    /// Seen before.
    Duplicate,
    /// Further behind the highest than the window remembers.
    TooOld,
}

/// The last `64 * WORDS` sequence numbers up to the highest seen.
#[derive(Debug, Clone)]
pub struct ReplayWindow<const WORDS: usize> {
    highest: Option<u64>,
    bits: [u64; WORDS],
}

impl<const WORDS: usize> Default for ReplayWindow<WORDS> {
    fn default() -> Self {
        ReplayWindow { highest: None, bits: [0; WORDS] }
    }
}

impl<const WORDS: usize> ReplayWindow<WORDS> {
    /// Sequence numbers remembered behind the highest.
    pub const SIZE: u64 = 64 * WORDS as u64;

    /// The highest sequence number accepted.
    pub fn highest(&self) -> Option<u64> {
        self.highest
    }

    /// Where `seq` stands, without recording it.
    pub fn check(&self, seq: u64) -> Seen {
        match self.highest {
            None => Seen::New,
            Some(h) if seq > h => Seen::New,
            Some(h) if h - seq >= Self::SIZE => Seen::TooOld,
            Some(_) if self.bit(seq) => Seen::Duplicate,
            Some(_) => Seen::New,
        }
    }

    /// Records `seq` (checked [`Seen::New`]).
    pub fn accept(&mut self, seq: u64) {
        match self.highest {
            Some(h) if seq <= h => {}
            Some(h) if seq - h < Self::SIZE => {
                for s in h + 1..seq {
                    self.set(s, false);
                }
                self.highest = Some(seq);
            }
            _ => {
                self.bits = [0; WORDS];
                self.highest = Some(seq);
            }
        }
        self.set(seq, true);
    }

    fn bit(&self, seq: u64) -> bool {
        let i = (seq % Self::SIZE) as usize;
        self.bits[i / 64] & (1 << (i % 64)) != 0
    }

    fn set(&mut self, seq: u64, on: bool) {
        let i = (seq % Self::SIZE) as usize;
        if on {
            self.bits[i / 64] |= 1 << (i % 64);
        } else {
            self.bits[i / 64] &= !(1 << (i % 64));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_duplicate_and_too_old() {
        // a window of 128: columns: sequence number, what it is (each New one is accepted)
        let rows = [
            (1000u64, Seen::New),
            (1000, Seen::Duplicate),
            (1002, Seen::New),
            (1001, Seen::New), // late, within the window
            (1001, Seen::Duplicate),
            (1100, Seen::New),
            (1002, Seen::Duplicate),
            (1100 - 128, Seen::TooOld),
            (1100 - 127, Seen::New), // never seen, the window's oldest
            (1500, Seen::New),       // a jump past the window forgets it
            (1100, Seen::TooOld),
            (1499, Seen::New),
            (1500 + 200, Seen::New),
            (1600, Seen::New), // skipped over by the last jump: not seen
            (1600, Seen::Duplicate),
        ];
        let mut w = ReplayWindow::<2>::default();
        for (i, (seq, want)) in rows.into_iter().enumerate() {
            assert_eq!(w.check(seq), want, "row {i}: {seq}");
            if want == Seen::New {
                w.accept(seq);
            }
        }
        assert_eq!(w.highest(), Some(1700));
    }
}
