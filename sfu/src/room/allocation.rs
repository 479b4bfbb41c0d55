//! Bitrate allocation per subscriber: after each transport-wide feedback the subscriber
//! connection's estimate is shared among its downtracks (`bwe::allocator`): audio first, then
//! every video track's lowest layer in the subscriber's order, then upgrades. The grants cap
//! the layer selectors; a track that does not fit at all is paused and the subscriber told.

use super::core::RoomCore;
use super::track::Allocated;
use crate::forward::selector::Layer;
use bwe::Bitrate;
use bwe::allocator::{Class, Demand, Grant, allocate, hold_upgrades};
use signaling::protocol::{LayerReason, ServerMessage, TrackKind};
use std::time::Instant;

impl RoomCore {
    /// Allocates the estimate of participant `sidx`'s subscriber connection among its
    /// downtracks; tells the estimator what the allocation could use (for probing).
    pub(super) fn allocate_bandwidth(&mut self, sidx: usize, now: Instant) {
        let allocate_caps = self.ctx.bwe_allocate;
        let Some(p) = self.participants.get_mut(sidx) else { return };
        let Some(egress) = self.peers.get_mut(&p.subscriber).and_then(|peer| peer.egress.as_mut()) else { return };
        let estimate = egress.cc.bwe.estimate();
        let mut demands = Vec::with_capacity(p.downtracks.len());
        for (rank, dt) in p.downtracks.iter().enumerate() {
            let Some(track) = self.tracks.iter().find(|t| t.key == dt.track_key) else {
                demands.push(Demand {
                    class: Class::Camera,
                    rank: rank as u32,
                    steps: vec![],
                    wanted: None,
                    current: None,
                });
                continue;
            };
            let rate = |l: Layer| {
                track.layers[l.index()]
                    .as_ref()
                    .filter(|_| track.activity.is_active(l, now))
                    .and_then(|li| li.rate.bps(now))
                    .map(Bitrate::bps)
            };
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
                // what the selector would target with no bandwidth cap
                let mut uncapped = dt.selector;
                let paused = dt.wish.paused || self.admin.is_muted(&track.id);
                uncapped.update_target(
                    &crate::forward::Wish { paused, bandwidth: None, ..dt.wish },
                    &track.activity,
                    now,
                );
                let current = match dt.allocated {
                    Allocated::UpTo(l) => Some(l.index().min(dt.selector.current().map_or(l.index(), Layer::index))),
                    Allocated::Unlimited => dt.selector.current().map(Layer::index),
                    Allocated::Paused => None,
                };
                Demand {
                    class: Class::Camera,
                    rank: rank as u32,
                    steps: Layer::ALL.iter().map(|&l| rate(l)).collect(),
                    wanted: uncapped.target().map(Layer::index),
                    current,
                }
            };
            demands.push(demand);
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
        if !allocate_caps {
            return;
        }
        let metrics = &self.ctx.metrics;
        let Some(p) = self.participants.get_mut(sidx) else { return };
        for (dt, grant) in p.downtracks.iter_mut().zip(&a.grants) {
            if dt.kind == TrackKind::Audio {
                continue;
            }
            let next = match grant {
                Grant::Step(s) => Layer::new(*s as u8).map_or(Allocated::Unlimited, Allocated::UpTo),
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
