//! Bitrate allocation per subscriber: after each transport-wide feedback the subscriber
//! connection's estimate is shared among its downtracks (`bwe::allocator`): audio first, then
//! every video track's lowest step in the subscriber's order, then upgrades. A video track's
//! steps are its simulcast layers, each split by its VP8 temporal layers (a layer's base alone,
//! then with the next temporal layer, ...). The grants cap the layer selectors and temporal
//! filters; a track that does not fit at all is paused and the subscriber told.

use super::core::RoomCore;
use super::track::Allocated;
use crate::forward::selector::Layer;
use crate::forward::temporal::Tid;
use bwe::Bitrate;
use bwe::allocator::{Class, Demand, Grant, allocate, hold_upgrades};
use signaling::protocol::{LayerReason, ServerMessage, TrackKind, TrackSource};
use std::time::Instant;

/// Least time between two `bandwidth` messages to a client.
const REPORT_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);

impl RoomCore {
    /// Allocates the estimate of participant `sidx`'s subscriber connection among its
    /// downtracks; tells the estimator what the allocation could use (for probing).
    pub(super) fn allocate_bandwidth(&mut self, sidx: usize, now: Instant) {
        let allocate_caps = self.ctx.bwe_allocate;
        let Some(p) = self.participants.get_mut(sidx) else { return };
        let Some(egress) = self.peers.get_mut(&p.subscriber).and_then(|peer| peer.egress.as_mut()) else { return };
        let estimate = egress.cc.bwe.estimate();
        // the dominant speaker's video first among its class, then the subscriber's order
        let dominant = self.speakers.last_report().and_then(|r| r.dominant.as_deref());
        let mut demands = Vec::with_capacity(p.downtracks.len());
        let mut ladders = Vec::with_capacity(p.downtracks.len());
        for (rank, dt) in p.downtracks.iter().enumerate() {
            let Some(track) = self.tracks.iter().find(|t| t.key == dt.track_key) else {
                demands.push(Demand {
                    class: Class::Camera,
                    rank: rank as u32,
                    steps: vec![],
                    wanted: None,
                    current: None,
                });
                ladders.push(Vec::new());
                continue;
            };
            // a layer the publisher stopped (dynacast) is offered at its last rate: granting it
            // is what turns it back on
            let rate = |l: Layer| track.layers[l.index()].as_ref().and_then(|li| li.rate.last_bps()).map(Bitrate::bps);
            let mut ladder = Vec::new();
            let demand = if dt.kind == TrackKind::Audio {
                let paused = dt.wish.paused || self.admin.is_muted(&track.id);
                Demand {
                    class: Class::Audio,
                    rank: rank as u32,
                    steps: vec![rate(Layer::LOW)],
                    wanted: (!paused).then_some(0),
                    current: Some(0),
                }
            } else {
                // what the subscriber would take with no bandwidth cap, whatever is sent now
                let paused = dt.wish.paused || self.admin.is_muted(&track.id);
                let wanted = crate::forward::Wish { paused, bandwidth: None, ..dt.wish }.needs(&track.activity);
                let (steps, costs) = video_steps(track);
                let top_of = |l: Layer| steps.iter().rposition(|s| s.0 == l);
                let current = match dt.allocated {
                    Allocated::Paused => None,
                    Allocated::Unlimited => dt.selector.current().and_then(top_of),
                    // a lower layer than the grant is forwarded whole; the granted one (or a
                    // higher one, until the switch down) counts as the grant
                    Allocated::UpTo(l, t) => match dt.selector.current() {
                        Some(c) if c < l => top_of(c),
                        _ => steps.iter().position(|&s| s == (l, t)).or_else(|| top_of(l)),
                    },
                };
                ladder = steps;
                let class = match track.source {
                    TrackSource::Screen => Class::Screen,
                    _ => Class::Camera,
                };
                let first = dominant == Some(track.publisher.as_str());
                Demand {
                    class,
                    rank: if first { 0 } else { rank as u32 + 1 },
                    steps: costs,
                    wanted: wanted.and_then(|w| ladder.iter().rposition(|s| s.0 == w)),
                    current,
                }
            };
            demands.push(demand);
            ladders.push(ladder);
        }
        if egress.cc.bwe.upgrades_held(now) {
            hold_upgrades(&mut demands);
        }
        let a = allocate(estimate, &demands);
        egress.cc.bwe.set_desired(a.desired, now);
        egress.set_pacing_rate();
        let probe = egress.cc.bwe.probing().then_some(p.subscriber);
        self.ctx.metrics.bwe_estimate.observe(estimate.as_f64());
        if let Some(key) = probe {
            self.ctx.metrics.bwe_probes.inc();
            self.schedule(key, now);
        }
        let Some(p) = self.participants.get_mut(sidx) else { return };
        let bps = estimate.as_bps();
        let due = p.reported_estimate.is_none_or(|(last, at)| {
            now.saturating_duration_since(at) >= REPORT_INTERVAL && bps.abs_diff(last) * 10 >= last
        });
        if due {
            p.reported_estimate = Some((bps, now));
            p.send(ServerMessage::Bandwidth { estimate_bps: bps });
        }
        if !allocate_caps {
            return;
        }
        let metrics = &self.ctx.metrics;
        for ((dt, grant), ladder) in p.downtracks.iter_mut().zip(&a.grants).zip(&ladders) {
            if dt.kind == TrackKind::Audio {
                continue;
            }
            let next = match grant {
                Grant::Step(s) => ladder.get(*s).map_or(Allocated::Unlimited, |&(l, t)| Allocated::UpTo(l, t)),
                Grant::Paused => Allocated::Paused,
                Grant::Unwanted => continue,
            };
            if next == dt.allocated {
                continue;
            }
            if next == Allocated::Paused {
                metrics.bwe_paused.inc();
                dt.announced = None;
                let msg = ServerMessage::LayerChanged {
                    track: dt.track.clone(),
                    layer: None,
                    reason: Some(LayerReason::Bandwidth),
                };
                super::participant::queue(&p.events, &p.overflowed, &p.room_overflow, &p.id, msg);
            }
            tracing::debug!(subscriber = %p.id, track = %dt.track, from = ?dt.allocated, to = ?next, %estimate, "allocation");
            dt.allocated = next;
        }
    }
}

/// A video track's steps, lowest first, and what each costs the allocation. The lowest layer
/// sent is split by its temporal layers (its base alone, then with the next, ...: a quarter
/// and half the frame rate of three); the layers above it are whole (a larger picture at a
/// fraction of the frame rate looks worse than a smaller one at the full rate; dropping their
/// upper temporal layers is still the quick way down, see `media_path::temporal_target`).
/// A step costs its layer's measured rate (see `layer_costs`) times the share of it its
/// temporal layers carry. A layer with no rate measured is one step with no cost (not sent).
fn video_steps(track: &super::track::PublishedTrack) -> (Vec<(Layer, Tid)>, Vec<Option<Bitrate>>) {
    let meter = |l: Layer| track.layers[l.index()].as_ref().map(|li| li.rate);
    let full = layer_costs(Layer::ALL.map(|l| meter(l).and_then(|m| m.last_bps()).map(Bitrate::bps)));
    let mut steps = Vec::with_capacity(Layer::COUNT * Tid::COUNT);
    let mut costs = Vec::with_capacity(Layer::COUNT * Tid::COUNT);
    let mut below = Bitrate::ZERO;
    for (l, cost) in Layer::ALL.into_iter().zip(full) {
        let (Some(cost), Some(m)) = (cost, meter(l)) else {
            steps.push((l, Tid::TOP));
            costs.push(None);
            continue;
        };
        let top = m.top_tid().unwrap_or(Tid::BASE);
        let whole = m.last_bps().unwrap_or(0).max(1) as f64;
        // the lowest layer with a rate: no step with a cost before it
        let first = if costs.iter().all(Option::is_none) { 0 } else { top.index() as u8 };
        for t in (first..=top.index() as u8).filter_map(Tid::new) {
            let share = m.last_bps_up_to(t).unwrap_or(0) as f64 / whole;
            // never cheaper than the step below it: each step adds to the last
            let c = cost.mul_f64(share).max(below);
            below = c;
            steps.push((l, if t == top { Tid::TOP } else { t }));
            costs.push(Some(c));
        }
    }
    (steps, costs)
}

/// What each layer costs the allocation: its measured rate, but at least twice the layer
/// below's (a layer the publisher's encoder is still ramping up measures low, and granting it
/// on that figure overruns the link a moment later; browsers' layers are 3-4x apart).
fn layer_costs(measured: [Option<Bitrate>; Layer::COUNT]) -> Vec<Option<Bitrate>> {
    let mut out: Vec<Option<Bitrate>> = Vec::with_capacity(Layer::COUNT);
    let mut below: Option<Bitrate> = None;
    for m in measured {
        let cost = m.map(|r| below.map_or(r, |b| r.max(b.mul_f64(2.0))));
        if cost.is_some() {
            below = cost;
        }
        out.push(cost);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layer_costs_grow_at_least_twofold() {
        let k = |x: u64| Some(Bitrate::kbps(x));
        // columns: measured, expected costs
        let rows = [
            ([k(150), k(500), k(1700)], vec![k(150), k(500), k(1700)]),
            ([k(150), k(200), k(250)], vec![k(150), k(300), k(600)]),
            ([k(150), None, k(250)], vec![k(150), None, k(300)]),
            ([None, k(500), k(600)], vec![None, k(500), k(1000)]),
        ];
        for (measured, want) in rows {
            assert_eq!(layer_costs(measured), want, "{measured:?}");
        }
    }
}
