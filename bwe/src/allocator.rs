//! Sharing one receiver's estimate among its tracks: audio first and never paused, then every
//! video track its lowest step (screen shares before cameras, then in the receiver's order),
//! then upgrades one step at a time round the tracks in the same order. Going above the step
//! a track has now needs headroom, so a stable link does not flip a track between two steps;
//! going back to (or staying at) the current step needs none.

use crate::Bitrate;

/// Share of the estimate an upgrade above a track's current step may fill.
pub const UP_HEADROOM: f64 = 0.9;

/// Priority class of a track, most important first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Class {
    /// Always forwarded.
    Audio,
    /// A screen share.
    Screen,
    /// A camera.
    Camera,
}

/// What one track of the receiver could get.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Demand {
    /// Its class.
    pub class: Class,
    /// Order within the class (lower first: the receiver's order, the active speaker first).
    pub rank: u32,
    /// Rate of each step, lowest first (spatial layers, finer temporal steps between them);
    /// `None`: the step is not sent now.
    pub steps: Vec<Option<Bitrate>>,
    /// The highest step the receiver wants; `None`: it wants nothing (paused by it).
    pub wanted: Option<usize>,
    /// The step it gets now, if any.
    pub current: Option<usize>,
}

/// What one track gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grant {
    /// This step (or no cap at all when no step has a known rate).
    Step(usize),
    /// Not even its lowest step fits: paused for bandwidth.
    Paused,
    /// The receiver wants nothing of it.
    Unwanted,
}

/// The result of one allocation.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Allocation {
    /// One grant per demand, in the demands' order.
    pub grants: Vec<Grant>,
    /// The rate the grants use.
    pub used: Bitrate,
    /// The estimate every track at its wanted step needs, upgrade headroom included (what
    /// probing may aim for).
    pub desired: Bitrate,
}

impl Demand {
    fn rate(&self, step: usize) -> Bitrate {
        self.steps.get(step).copied().flatten().unwrap_or(Bitrate::ZERO)
    }

    /// The lowest step sent now (even above the wanted one: the closest there is); the wanted
    /// one when no step's rate is known yet.
    fn lowest(&self) -> Option<usize> {
        let wanted = self.wanted?;
        Some(self.steps.iter().position(Option::is_some).unwrap_or(wanted))
    }

    /// The next step sent now above `step`, at or below the wanted one.
    fn next_above(&self, step: usize) -> Option<usize> {
        let wanted = self.wanted?;
        (step + 1..=wanted.min(self.steps.len().saturating_sub(1))).find(|&s| self.steps[s].is_some())
    }

    /// The highest step sent now at or below the wanted one.
    fn top(&self) -> Option<usize> {
        let lowest = self.lowest()?;
        let mut s = lowest;
        while let Some(n) = self.next_above(s) {
            s = n;
        }
        Some(s)
    }
}

/// Holds every track at or below the step it has now (none for tracks that have none): what
/// a caller does right after congestion, so a link that just proved too small is not tried
/// again at once (see `SendSideBwe::upgrades_held`).
pub fn hold_upgrades(demands: &mut [Demand]) {
    for d in demands {
        d.wanted = match d.current {
            Some(c) => d.wanted.map(|w| w.min(c)),
            None => None,
        };
    }
}

/// Allocates `estimate` among `demands`.
pub fn allocate(estimate: Bitrate, demands: &[Demand]) -> Allocation {
    let mut order: Vec<usize> = (0..demands.len()).collect();
    order.sort_by_key(|&i| (demands[i].class, demands[i].rank));
    let mut grants = vec![Grant::Unwanted; demands.len()];
    let mut used = Bitrate::ZERO;
    let desired = demands.iter().filter_map(|d| d.top().map(|s| d.rate(s))).sum::<Bitrate>().mul_f64(1.0 / UP_HEADROOM);
    let fits = |used: Bitrate, extra: Bitrate, above_current: bool| {
        let limit = if above_current { estimate.mul_f64(UP_HEADROOM) } else { estimate };
        used.saturating_add(extra) <= limit
    };
    for &i in &order {
        let d = &demands[i];
        let Some(lowest) = d.lowest() else { continue };
        let cost = d.rate(lowest);
        if d.class == Class::Audio || cost == Bitrate::ZERO || fits(used, cost, d.current.is_none_or(|c| lowest > c)) {
            grants[i] = Grant::Step(lowest);
            used = used.saturating_add(cost);
        } else {
            grants[i] = Grant::Paused;
        }
    }
    loop {
        let mut upgraded = false;
        for &i in &order {
            let d = &demands[i];
            let Grant::Step(s) = grants[i] else { continue };
            let Some(next) = d.next_above(s) else { continue };
            let extra = d.rate(next).saturating_sub(d.rate(s));
            if fits(used, extra, d.current.is_none_or(|c| next > c)) {
                grants[i] = Grant::Step(next);
                used = used.saturating_add(extra);
                upgraded = true;
            }
        }
        if !upgraded {
            break;
        }
    }
    Allocation { grants, used, desired }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cam(rank: u32, wanted: Option<usize>, current: Option<usize>) -> Demand {
        let steps = vec![Some(Bitrate::kbps(150)), Some(Bitrate::kbps(500)), Some(Bitrate::kbps(1500))];
        Demand { class: Class::Camera, rank, steps, wanted, current }
    }

    fn audio() -> Demand {
        Demand { class: Class::Audio, rank: 0, steps: vec![Some(Bitrate::kbps(40))], wanted: Some(0), current: Some(0) }
    }

    use Grant::*;

    #[test]
    fn table() {
        let screen = Demand { class: Class::Screen, rank: 9, ..cam(9, Some(2), Some(2)) };
        // columns: estimate (kbit/s), demands, expected grants
        let rows: Vec<(u64, Vec<Demand>, Vec<Grant>)> = vec![
            // plenty: everyone at the wanted step
            (10_000, vec![audio(), cam(0, Some(2), None), cam(1, Some(1), None)], vec![Step(0), Step(2), Step(1)]),
            // audio is never paused, even with no room at all
            (50, vec![audio(), cam(0, Some(2), None)], vec![Step(0), Paused]),
            // everyone's lowest step before anyone's higher one
            (
                600,
                vec![cam(0, Some(2), None), cam(1, Some(2), None), cam(2, Some(2), None)],
                vec![Step(0), Step(0), Step(0)],
            ),
            // the first in order is upgraded first
            (1000, vec![cam(1, Some(2), None), cam(0, Some(2), None)], vec![Step(0), Step(1)]),
            // what does not fit at its lowest step is paused
            (
                340,
                vec![cam(0, Some(2), None), cam(1, Some(2), None), cam(2, Some(2), None)],
                vec![Step(0), Step(0), Paused],
            ),
            // a screen share comes before cameras whatever their rank
            (2200, vec![cam(0, Some(2), None), screen.clone()], vec![Step(1), Step(2)]),
            // unwanted tracks use nothing
            (200, vec![cam(0, None, None), cam(1, Some(0), None)], vec![Unwanted, Step(0)]),
            // a step not sent now is skipped
            (
                5000,
                vec![Demand { steps: vec![Some(Bitrate::kbps(150)), None, None], ..cam(0, Some(2), None) }],
                vec![Step(0)],
            ),
            // no rate known: the wanted step, without cost
            (10, vec![Demand { steps: vec![None, None, None], ..cam(0, Some(2), None) }], vec![Step(2)]),
        ];
        for (kbps, demands, want) in rows {
            let a = allocate(Bitrate::kbps(kbps), &demands);
            assert_eq!(a.grants, want, "{kbps} kbit/s: {demands:?}");
            assert!(a.used <= Bitrate::kbps(kbps) || demands.iter().any(|d| d.class == Class::Audio), "{kbps}");
        }
    }

    #[test]
    fn hysteresis_keeps_a_step_and_delays_an_upgrade() {
        // 1.6 Mbit/s: the top step (1.5) fits the estimate but not the headroom
        let est = Bitrate::kbps(1600);
        assert_eq!(allocate(est, &[cam(0, Some(2), Some(1))]).grants, [Step(1)], "no upgrade without headroom");
        assert_eq!(allocate(est, &[cam(0, Some(2), Some(2))]).grants, [Step(2)], "kept where it is");
        assert_eq!(allocate(Bitrate::kbps(1700), &[cam(0, Some(2), Some(1))]).grants, [Step(2)]);
        // resuming a paused track needs headroom too
        assert_eq!(allocate(Bitrate::kbps(160), &[cam(0, Some(2), None)]).grants, [Paused]);
        assert_eq!(allocate(Bitrate::kbps(160), &[cam(0, Some(2), Some(0))]).grants, [Step(0)]);
    }

    #[test]
    fn held_upgrades_keep_what_tracks_have() {
        let mut d = vec![audio(), cam(0, Some(2), Some(0)), cam(1, Some(2), None), cam(2, Some(0), Some(1))];
        hold_upgrades(&mut d);
        let wanted: Vec<_> = d.iter().map(|d| d.wanted).collect();
        assert_eq!(wanted, [Some(0), Some(0), None, Some(0)]);
        assert_eq!(allocate(Bitrate::mbps(10), &d).grants, [Step(0), Step(0), Unwanted, Step(0)]);
    }

    #[test]
    fn desired_is_every_track_at_its_wanted_step() {
        let a =
            allocate(Bitrate::kbps(100), &[audio(), cam(0, Some(2), None), cam(1, Some(1), None), cam(2, None, None)]);
        assert_eq!(a.desired, Bitrate::kbps(40 + 1500 + 500).mul_f64(1.0 / UP_HEADROOM));
    }
}
