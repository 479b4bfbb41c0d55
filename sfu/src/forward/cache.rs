//! Fixed-size ring of recent packets keyed by extended sequence number, for
//! answering NACKs with retransmissions.

/// Ring buffer of the most recent packets, indexed by extended sequence number modulo its capacity.
#[derive(Debug, Clone)]
pub struct PacketCache<T> {
    /// One slot per sequence number modulo the capacity; each remembers which sequence number it holds.
    slots: Box<[Option<(u64, T)>]>,
    /// `capacity - 1`; the capacity is a power of two.
    mask: u64,
    /// The oldest sequence number [`PacketCache::expire_oldest`] has not looked at yet.
    oldest: u64,
}

impl<T> PacketCache<T> {
    /// Creates a cache holding `capacity` packets, rounded up to a power of two (at least 1); allocates once, here.
    pub fn new(capacity: usize) -> Self {
        let capacity = capacity.max(1).checked_next_power_of_two().expect("packet cache capacity fits in usize");
        let slots: Box<[Option<(u64, T)>]> = (0..capacity).map(|_| None).collect();
        let mask = u64::try_from(capacity - 1).expect("packet cache capacity fits in u64");
        Self { slots, mask, oldest: 0 }
    }

    /// Number of packets the cache can hold.
    pub fn capacity(&self) -> usize {
        self.slots.len()
    }

    /// Slot index for an extended sequence number.
    fn index(&self, seq: u64) -> usize {
        usize::try_from(seq & self.mask).expect("masked index is below the capacity, which is a usize")
    }

    /// Stores a packet unless its slot already holds a newer one; returns whether it was stored.
    pub fn insert(&mut self, seq: u64, value: T) -> bool {
        let i = self.index(seq);
        let Some(slot) = self.slots.get_mut(i) else {
            return false;
        };
        if slot.as_ref().is_some_and(|(held, _)| *held > seq) {
            // A very late packet must not evict the newer one sharing its slot.
            return false;
        }
        *slot = Some((seq, value));
        true
    }

    /// The packet with this extended sequence number, if it was stored and not overwritten since.
    pub fn get(&self, seq: u64) -> Option<&T> {
        match self.slots.get(self.index(seq))? {
            Some((held, value)) if *held == seq => Some(value),
            _ => None,
        }
    }

    /// Forgets the oldest packets while `expired` says so, looking at up to `max` sequence
    /// numbers from the oldest one not yet looked at (the cache keeps that position), up to
    /// `newest` (excluded). Called with a small `max` (more than one) on every insert, it walks
    /// as fast as packets arrive or faster, so what the cache holds is bounded by age as well
    /// as by count. Returns how many it forgot.
    pub fn expire_oldest(&mut self, newest: u64, max: usize, expired: impl Fn(&T) -> bool) -> usize {
        // a number below the last `capacity` ones is not looked at: its slot holds a newer
        // packet, or still an older one whose overwriting number was lost, which is forgotten
        // when the walk reaches the number that shares its slot (below)
        let floor = newest.saturating_sub(self.mask);
        self.oldest = self.oldest.max(floor);
        let mut forgotten = 0;
        for _ in 0..max {
            if self.oldest >= newest {
                break;
            }
            let i = self.index(self.oldest);
            let Some(slot) = self.slots.get_mut(i) else { break };
            match slot.as_ref() {
                Some((held, value)) if *held == self.oldest => {
                    if !expired(value) {
                        break; // everything after it is newer
                    }
                    *slot = None;
                    forgotten += 1;
                }
                // an earlier lap's packet whose overwriting number was lost: outside the last
                // `capacity` numbers, never asked for again (it would keep its datagram's
                // block, `udp::arena`, until a later lap overwrote it)
                Some((held, _)) if *held < self.oldest => {
                    *slot = None;
                    forgotten += 1;
                }
                _ => {}
            }
            self.oldest += 1;
        }
        forgotten
    }

    /// Forgets every stored packet, keeping the allocation.
    pub fn clear(&mut self) {
        self.slots.iter_mut().for_each(|slot| *slot = None);
        self.oldest = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One step of a cache scenario.
    enum Op {
        /// Insert `seq` with value `seq * 10`, expecting `stored`.
        Insert(u64, bool),
        /// Expect `get(seq)` to return this value.
        Get(u64, Option<u64>),
        /// Clear the cache.
        Clear,
        /// `expire_oldest(newest, max, |v| v < below)`, expecting this many forgotten.
        Expire { newest: u64, max: usize, below: u64, forgotten: usize },
    }

    #[test]
    fn capacity_table() {
        let cases: &[(usize, usize)] = &[(0, 1), (1, 1), (3, 4), (4, 4), (1000, 1024), (1024, 1024)];
        for &(asked, want) in cases {
            assert_eq!(PacketCache::<u8>::new(asked).capacity(), want, "new({asked})");
        }
    }

    #[test]
    fn scenario_tables() {
        use Op::*;
        let scenarios: &[(&str, usize, &[Op])] = &[
            ("never stored", 4, &[Get(0, None), Get(7, None)]),
            ("stored and read", 4, &[Insert(10, true), Get(10, Some(100)), Get(11, None), Get(6, None)]),
            (
                "wrap overwrites the slot",
                4,
                &[Insert(1, true), Insert(2, true), Insert(5, true), Get(1, None), Get(5, Some(50)), Get(2, Some(20))],
            ),
            (
                "late packet does not evict a newer one",
                4,
                &[Insert(9, true), Insert(5, false), Get(9, Some(90)), Get(5, None)],
            ),
            ("duplicate replaces", 4, &[Insert(3, true), Insert(3, true), Get(3, Some(30))]),
            (
                "full ring keeps the last capacity packets",
                4,
                &[
                    Insert(100, true),
                    Insert(101, true),
                    Insert(102, true),
                    Insert(103, true),
                    Insert(104, true),
                    Get(100, None),
                    Get(101, Some(1010)),
                    Get(104, Some(1040)),
                ],
            ),
            (
                "high extended numbers",
                1024,
                &[Insert(u64::MAX, true), Get(u64::MAX, Some(u64::MAX.wrapping_mul(10))), Get(1023, None)],
            ),
            (
                // values are seq * 10, so `below: 1020` expires seq 100 and 101
                "expiry forgets the oldest, stops at a live packet",
                4,
                &[
                    Insert(100, true),
                    Insert(101, true),
                    Insert(102, true),
                    Insert(103, true),
                    Expire { newest: 103, max: 4, below: 1020, forgotten: 2 },
                    Get(100, None),
                    Get(101, None),
                    Get(102, Some(1020)),
                    Expire { newest: 103, max: 4, below: 1020, forgotten: 0 },
                    Get(102, Some(1020)),
                    Get(103, Some(1030)),
                ],
            ),
            (
                // 105 was lost, so its slot still holds 101 from the lap before
                "expiry forgets an earlier lap's packet left by a lost number",
                4,
                &[
                    Insert(100, true),
                    Insert(101, true),
                    Insert(102, true),
                    Insert(103, true),
                    Insert(104, true),
                    Insert(106, true),
                    Insert(107, true),
                    Expire { newest: 108, max: 4, below: 0, forgotten: 1 },
                    Get(101, None),
                    Get(105, None),
                    Get(106, Some(1060)),
                    Get(107, Some(1070)),
                ],
            ),
            (
                "expiry walks on from where it stopped, over gaps, never to the newest",
                16,
                &[
                    Insert(10, true),
                    Insert(11, true),
                    Insert(14, true),
                    Insert(15, true),
                    Insert(20, true),
                    // the ring's range starts at 5: 5-9 free, 10 and 11 (below 120) forgotten, 12 free
                    Expire { newest: 20, max: 8, below: 120, forgotten: 2 },
                    Get(10, None),
                    Get(11, None),
                    // on from 13: stops at 14 (not below 120)
                    Expire { newest: 20, max: 16, below: 120, forgotten: 0 },
                    Get(14, Some(140)),
                    // on from 14: 14, 15 expired, 16-19 empty, 20 is the newest itself
                    Expire { newest: 20, max: 16, below: 1000, forgotten: 2 },
                    Get(14, None),
                    Get(15, None),
                    Get(20, Some(200)),
                ],
            ),
            (
                "expiry bounded by max per call",
                16,
                &[
                    Insert(0, true),
                    Insert(1, true),
                    Insert(2, true),
                    Insert(3, true),
                    Expire { newest: 3, max: 1, below: 1000, forgotten: 1 },
                    Get(0, None),
                    Get(1, Some(10)),
                    Expire { newest: 3, max: 1, below: 1000, forgotten: 1 },
                    Get(1, None),
                    Get(2, Some(20)),
                ],
            ),
            (
                "expiry starts within the ring, not at zero",
                4,
                &[
                    Insert(1_000_000, true),
                    Insert(1_000_001, true),
                    // 999_998 and 999_999 (the ring's range) free, then 1_000_000
                    Expire { newest: 1_000_001, max: 3, below: u64::MAX, forgotten: 1 },
                    Get(1_000_000, None),
                    Get(1_000_001, Some(10_000_010)),
                ],
            ),
            (
                "a late insert below the walk's position, and a newest below it",
                8,
                &[
                    Insert(20, true),
                    Insert(21, true),
                    Expire { newest: 22, max: 8, below: 1000, forgotten: 2 },
                    // stored, but behind the walk: left to be overwritten
                    Insert(18, true),
                    Expire { newest: 22, max: 8, below: 1000, forgotten: 0 },
                    Get(18, Some(180)),
                    Expire { newest: 10, max: 8, below: 1000, forgotten: 0 },
                    Insert(22, true),
                    Expire { newest: 23, max: 8, below: 1000, forgotten: 1 },
                    Get(22, None),
                ],
            ),
            (
                "clear starts the walk over",
                4,
                &[
                    Insert(7, true),
                    Expire { newest: 8, max: 4, below: 1000, forgotten: 1 },
                    Clear,
                    Insert(2, true),
                    Expire { newest: 3, max: 4, below: 1000, forgotten: 1 },
                    Get(2, None),
                ],
            ),
            ("clear", 4, &[Insert(1, true), Clear, Get(1, None), Insert(1, true), Get(1, Some(10))]),
        ];
        for (name, capacity, ops) in scenarios {
            let mut cache = PacketCache::new(*capacity);
            for (i, op) in ops.iter().enumerate() {
                match *op {
                    Insert(seq, stored) => {
                        assert_eq!(cache.insert(seq, seq.wrapping_mul(10)), stored, "{name}: op {i}")
                    }
                    Get(seq, want) => assert_eq!(cache.get(seq).copied(), want, "{name}: op {i}"),
                    Clear => cache.clear(),
                    Expire { newest, max, below, forgotten } => {
                        assert_eq!(cache.expire_oldest(newest, max, |v| *v < below), forgotten, "{name}: op {i}")
                    }
                }
            }
        }
    }
}
