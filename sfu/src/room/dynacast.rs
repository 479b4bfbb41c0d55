//! Dynacast in the room: ten times a second each simulcast video track's needed layers are
//! gathered from its subscribers (what each would take if every layer were sent, within its
//! bandwidth grant), and the publisher is told (`publish_layers`) when the set it should
//! encode changes (`forward::dynacast`).

use super::core::RoomCore;
use super::track::Allocated;
use crate::forward::selector::{Layer, Wish};
use signaling::protocol::{ServerMessage, TrackKind};
use std::time::Instant;

impl RoomCore {
    /// Updates every simulcast track's encoded layers and tells publishers of changes.
    pub(super) fn update_dynacast(&mut self, now: Instant) {
        for ti in 0..self.tracks.len() {
            let t = &self.tracks[ti];
            if t.kind != TrackKind::Video || t.rids.len() < 2 {
                continue;
            }
            let mut present = [false; Layer::COUNT];
            for rid in &t.rids {
                present[t.layer_for_rid(Some(rid)).index()] = true;
            }
            let mut needed = [false; Layer::COUNT];
            let muted = self.admin.is_muted(&t.id);
            for s in &t.fanout {
                let Some(dt) = self
                    .participants
                    .get(s.participant as usize)
                    .and_then(|p| p.downtracks.get(s.downtrack as usize))
                    .filter(|d| d.track_key == t.key && d.negotiated)
                else {
                    continue;
                };
                let (paused, bandwidth) = match dt.allocated {
                    Allocated::Unlimited => (false, None),
                    Allocated::UpTo(l, _) => (false, Some(l)),
                    Allocated::Paused => (true, None),
                };
                let wish = Wish { paused: dt.wish.paused || paused || muted, bandwidth, ..dt.wish };
                if let Some(l) = wish.needs(&t.activity) {
                    needed[l.index()] = true;
                }
                // the layer forwarded now stays until the switch away from it
                if let Some(l) = dt.selector.current() {
                    needed[l.index()] = true;
                }
            }
            let Some(active) = self.tracks[ti].dynacast.update(present, needed, now) else { continue };
            let t = &self.tracks[ti];
            let rids: Vec<String> =
                t.rids.iter().filter(|r| active[t.layer_for_rid(Some(r)).index()]).cloned().collect();
            tracing::debug!(room = %self.name, track = %t.id, active = ?rids, "dynacast");
            self.ctx.metrics.dynacast_updates.inc();
            let msg = ServerMessage::PublishLayers { track: t.id.clone(), active: rids };
            if let Some(p) = self.participants.iter().find(|p| p.id == t.publisher) {
                p.send(msg);
            }
        }
    }
}
