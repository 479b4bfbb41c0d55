//! Dynacast: which simulcast layers a publisher keeps encoding. A layer no subscriber needs
//! for a while is turned off (saves the publisher's uplink and CPU); a layer someone needs is
//! turned on at once. The lowest layer always stays on, so a new subscriber starts without
//! waiting for the publisher.

use super::selector::Layer;
use std::time::{Duration, Instant};

/// A layer unneeded this long is turned off (a subscriber resizing its tiles or a short dip
/// in bandwidth does not flip the publisher's encoder).
pub const OFF_AFTER: Duration = Duration::from_secs(5);

/// The layers one published track keeps encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dynacast {
    active: [bool; Layer::COUNT],
    unneeded_since: [Option<Instant>; Layer::COUNT],
}

impl Default for Dynacast {
    fn default() -> Self {
        Self { active: [true; Layer::COUNT], unneeded_since: [None; Layer::COUNT] }
    }
}

impl Dynacast {
    /// Whether `layer` is being encoded (as far as the publisher was told).
    pub fn is_active(&self, layer: Layer) -> bool {
        self.active[layer.index()]
    }

    /// Updates with the layers the track has (`present`) and the ones subscribers need now;
    /// returns the new set when it changed (tell the publisher).
    pub fn update(
        &mut self,
        present: [bool; Layer::COUNT],
        needed: [bool; Layer::COUNT],
        now: Instant,
    ) -> Option<[bool; Layer::COUNT]> {
        let lowest = present.iter().position(|p| *p);
        let mut next = self.active;
        for l in 0..Layer::COUNT {
            if !present[l] {
                continue;
            }
            if needed[l] || Some(l) == lowest {
                next[l] = true;
                self.unneeded_since[l] = None;
            } else {
                let since = *self.unneeded_since[l].get_or_insert(now);
                if now.saturating_duration_since(since) >= OFF_AFTER {
                    next[l] = false;
                }
            }
        }
        (next != self.active).then(|| {
            self.active = next;
            next
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layers_go_off_after_a_while_and_on_at_once() {
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        let all = [true; 3];
        let mut d = Dynacast::default();
        // columns: time (s), needed, expected change
        let rows: &[(u64, [bool; 3], Option<[bool; 3]>)] = &[
            (0, [true, true, true], None),
            (1, [true, false, false], None),
            (5, [true, false, false], None),
            (6, [false, false, false], Some([true, false, false])), // q stays: the lowest
            (7, [false, false, true], Some([true, false, true])),   // f on at once
            (8, [false, true, false], Some([true, true, true])),    // h on; f unneeded since 8
            (12, [false, true, false], None),
            (13, [false, true, false], Some([true, true, false])),
        ];
        for &(s, needed, want) in rows {
            assert_eq!(d.update(all, needed, at(s)), want, "at {s} s, needed {needed:?}");
        }
        assert!(d.is_active(Layer::MEDIUM) && !d.is_active(Layer::HIGH));
    }

    #[test]
    fn only_present_layers_count() {
        let t0 = Instant::now();
        let mut d = Dynacast::default();
        // two layers published (h and f): h is the lowest and stays on
        let present = [false, true, true];
        assert_eq!(d.update(present, [false; 3], t0), None);
        assert_eq!(d.update(present, [false; 3], t0 + OFF_AFTER), Some([true, true, false]));
    }
}
