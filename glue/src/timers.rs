//! One heap of timers for many connections, each armed at its earliest due time only.
//!
//! A connection's `poll_timeout` moves often (every drain asks again); pushing each answer
//! would grow the heap without bound. Each key keeps the time it is armed at (`armed`, owned by
//! the caller beside the connection): a new time is pushed only when earlier than the armed
//! one, and a popped entry is live only while it equals its key's `armed` (a superseded one is
//! skipped when it comes due).

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Instant;

/// Due times of keys `K`, earliest first.
#[derive(Debug)]
pub struct TimerHeap<K: Ord> {
    heap: BinaryHeap<Reverse<(Instant, K)>>,
}

impl<K: Ord> Default for TimerHeap<K> {
    fn default() -> Self {
        TimerHeap { heap: BinaryHeap::new() }
    }
}

impl<K: Ord + Copy> TimerHeap<K> {
    /// Arms `key` at `at` unless it is armed at or before `at` already.
    pub fn arm(&mut self, key: K, at: Instant, armed: &mut Option<Instant>) {
        if armed.is_none_or(|a| at < a) {
            *armed = Some(at);
            self.heap.push(Reverse((at, key)));
        }
    }

    /// The earliest due time, live or superseded.
    pub fn next(&self) -> Option<Instant> {
        self.heap.peek().map(|Reverse((t, _))| *t)
    }

    /// Takes the earliest entry due at `now`; the caller passes it to [`fire`] with its key's
    /// `armed` to know whether it is live.
    pub fn pop_due(&mut self, now: Instant) -> Option<(Instant, K)> {
        let &Reverse((at, _)) = self.heap.peek()?;
        if at > now {
            return None;
        }
        self.heap.pop().map(|Reverse(e)| e)
    }

    /// Entries in the heap, live or superseded.
    pub fn len(&self) -> usize {
        self.heap.len()
    }

    /// True when nothing is armed.
    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }
}

/// True if an entry due `at` is its key's live timer (`armed`), which is then disarmed.
pub fn fire(armed: &mut Option<Instant>, at: Instant) -> bool {
    if *armed == Some(at) {
        *armed = None;
        true
    } else {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn only_the_earliest_arming_is_live_and_fires_once() {
        let t0 = Instant::now();
        let ms = |n: u64| t0 + Duration::from_millis(n);
        let mut heap = TimerHeap::default();
        let (mut a, mut b) = (None, None);
        // columns: key, time asked, pushed (earlier than what is armed)
        let rows = [(1u32, 50, true), (1, 80, false), (1, 20, true), (2, 30, true), (2, 30, false)];
        for (key, at, pushed) in rows {
            let armed = if key == 1 { &mut a } else { &mut b };
            let before = heap.len();
            heap.arm(key, ms(at), armed);
            assert_eq!(heap.len() > before, pushed, "key {key} at {at}");
        }
        assert_eq!((a, b, heap.next()), (Some(ms(20)), Some(ms(30)), Some(ms(20))));
        assert_eq!(heap.pop_due(ms(10)), None, "nothing due yet");
        // due at 60: key 1's 20 (live), key 2's 30 (live), key 1's 50 (superseded)
        let mut fired = Vec::new();
        while let Some((at, key)) = heap.pop_due(ms(60)) {
            let armed = if key == 1 { &mut a } else { &mut b };
            fired.push((key, at, fire(armed, at)));
        }
        assert_eq!(fired, [(1, ms(20), true), (2, ms(30), true), (1, ms(50), false)]);
        assert_eq!((a, b), (None, None));
        assert!(heap.is_empty());
    }
}
