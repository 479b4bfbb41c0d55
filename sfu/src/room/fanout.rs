//! Each published track's subscriber list, in the order the fan-out visits it.
//!
//! The packet path walks this list instead of every participant's downtracks: an entry says
//! where the downtrack is (no search by track per subscriber per packet) and which layer it
//! settled on at its last visit, so a packet of another layer skips it without touching the
//! downtrack at all (at layer q, three of four packets are h or f: before this, each of them
//! cost one cache miss per subscriber). The list is rebuilt whenever participants or
//! downtracks move (`Room::fanout_stale`; debug builds check it before every packet). A
//! selector changes in the packet path, which refreshes the entry's `settled` as it does, and
//! on a subscription request, which clears it (the next packet looks at the subscriber again).
//!
//! While one subscriber is visited, the next ones' state is prefetched in steps ([`Warm`]),
//! so each visit finds its downtrack, connection and cipher in the cache: their misses,
//! several per subscriber and each waited for in turn, cost more than the visit's own work.

use super::participant::Participant;
use super::peer::Peer;
use crate::forward::prefetch;
use crate::forward::selector::{Layer, LayerActivity, LayerSelector};
use crate::udp::PeerKey;
use rustc_hash::FxHashMap;
use std::time::Instant;

/// One subscriber of a track.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Subscriber {
    /// Index into the room's participants.
    pub participant: u32,
    /// Index into that participant's downtracks.
    pub downtrack: u32,
    /// The layer its selector forwards and targets, when both are the same (see
    /// [`settled_on`]); `None` until it was visited since the last rebuild.
    pub settled: Option<Layer>,
}

/// Fills each track's list (given as its key and list) with the subscribers whose downtracks
/// carry that key, in participant order. `downtracks` holds, per participant in order, the
/// track keys of its downtracks in order.
pub fn rebuild<'a, D, K>(lists: impl IntoIterator<Item = (u32, &'a mut Vec<Subscriber>)>, downtracks: D)
where
    D: IntoIterator<Item = K>,
    K: IntoIterator<Item = u32>,
{
    let mut by_key: rustc_hash::FxHashMap<u32, &mut Vec<Subscriber>> = Default::default();
    for (key, list) in lists {
        list.clear();
        by_key.insert(key, list);
    }
    for (p, keys) in downtracks.into_iter().enumerate() {
        for (d, key) in keys.into_iter().enumerate() {
            if let Some(list) = by_key.get_mut(&key) {
                list.push(Subscriber { participant: p as u32, downtrack: d as u32, settled: None });
            }
        }
    }
}

/// Per participant, the track keys of its downtracks (what [`rebuild`] reads).
fn downtrack_keys(participants: &[super::participant::Participant]) -> impl Iterator<Item = impl Iterator<Item = u32> + '_> {
    participants.iter().map(|p| p.downtracks.iter().map(|d| d.track_key))
}

impl super::worker::Room {
    /// Rebuilds every track's subscriber list from the participants' downtracks.
    pub(super) fn rebuild_fanout(&mut self) {
        let lists = self.tracks.iter_mut().map(|t| (t.key, &mut t.fanout));
        rebuild(lists, downtrack_keys(&self.participants));
    }

    /// Debug builds: every list is what a rebuild would make (but for the `settled` layers),
    /// so a change of participants or downtracks that forgot `fanout_stale` fails the tests
    /// instead of skipping packets until the next rebuild.
    #[cfg(debug_assertions)]
    pub(super) fn check_fanout(&self) {
        let mut fresh: Vec<Vec<Subscriber>> = vec![Vec::new(); self.tracks.len()];
        let lists = self.tracks.iter().map(|t| t.key).zip(fresh.iter_mut());
        rebuild(lists, downtrack_keys(&self.participants));
        for (t, want) in self.tracks.iter().zip(&fresh) {
            let got: Vec<(u32, u32)> = t.fanout.iter().map(|s| (s.participant, s.downtrack)).collect();
            let want: Vec<(u32, u32)> = want.iter().map(|s| (s.participant, s.downtrack)).collect();
            debug_assert_eq!(got, want, "fan-out list of track {} is stale", t.id);
        }
    }
}

/// One step of warming a subscriber's state before the fan-out visits it. Each step reads
/// only what the step before warmed (one visit earlier), so the misses of several subscribers
/// are in flight together instead of one after the other inside each visit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Warm {
    /// Its participant entry (where its downtracks and connection key are).
    Participant,
    /// Its downtrack, its connection's hash slot, its connection's `connected` and output.
    Connection,
    /// Its connection's AES-GCM key schedule.
    Cipher,
}

impl Warm {
    /// How many visits ahead each step runs: the furthest first.
    pub const AHEAD: [(usize, Warm); 3] = [(3, Warm::Participant), (2, Warm::Connection), (1, Warm::Cipher)];
}

/// Runs one warming step for subscriber `s` (prefetches only: nothing changes, and a stale
/// entry warms nothing).
#[inline]
pub fn warm(participants: &[Participant], peers: &FxHashMap<PeerKey, Box<Peer>>, s: &Subscriber, step: Warm) {
    let Some(p) = participants.get(s.participant as usize) else { return };
    match step {
        Warm::Participant => {
            prefetch::value(&p.downtracks);
            prefetch::value(&p.subscriber);
        }
        Warm::Connection => {
            if let Some(dt) = p.downtracks.get(s.downtrack as usize) {
                prefetch::value(dt);
            }
            if let Some(peer) = peers.get(&p.subscriber) {
                prefetch::value(&peer.connected);
                prefetch::value(&peer.egress);
            }
        }
        Warm::Cipher => {
            if let Some(egress) = peers.get(&p.subscriber).and_then(|peer| peer.egress.as_ref()) {
                egress.warm_cipher();
            }
        }
    }
}

/// The layer a selector forwards and targets, if both are the same: until a wish or the set of
/// active layers changes, it forwards that layer only.
pub fn settled_on(selector: &LayerSelector) -> Option<Layer> {
    match (selector.current(), selector.target()) {
        (Some(c), Some(t)) if c == t => Some(c),
        _ => None,
    }
}

/// True when a packet of `layer` cannot change what a video downtrack settled on `settled`
/// does: it forwards another layer, which is still active. The selector would drop the packet
/// and keep its state; only its target could move (a wish or the set of active layers
/// changed), which the next packet of its own layer, one frame later, decides as well. With
/// the settled layer inactive (the publisher stopped it) every packet is looked at again, so
/// the target moves to a live layer.
pub fn settled_elsewhere(settled: Option<Layer>, layer: Layer, activity: &LayerActivity, now: Instant) -> bool {
    settled.is_some_and(|c| c != layer && activity.is_active(c, now))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::forward::selector::Wish;

    #[test]
    fn lists_follow_participants_and_their_downtracks() {
        let entry = |participant, downtrack| Subscriber { participant, downtrack, settled: None };
        // columns: per participant the keys of its downtracks; expected lists of tracks 7, 9, 11
        type Row = (&'static [&'static [u32]], [&'static [(u32, u32)]; 3]);
        let rows: &[Row] = &[
            (&[], [&[], &[], &[]]),
            (&[&[7, 9], &[], &[9, 7]], [&[(0, 0), (2, 1)], &[(0, 1), (2, 0)], &[]]),
            // a downtrack of a track that is gone (being unpublished) is in no list
            (&[&[5, 11]], [&[], &[], &[(0, 1)]]),
            (&[&[11], &[11], &[11]], [&[], &[], &[(0, 0), (1, 0), (2, 0)]]),
        ];
        for (i, (downtracks, want)) in rows.iter().enumerate() {
            // stale content is replaced, not appended to
            let mut lists = [vec![entry(9, 9)], vec![], vec![entry(1, 1)]];
            let keys = [7u32, 9, 11];
            rebuild(keys.iter().copied().zip(lists.iter_mut()), downtracks.iter().map(|k| k.iter().copied()));
            for (list, want) in lists.iter().zip(want) {
                let want: Vec<Subscriber> = want.iter().map(|&(p, d)| entry(p, d)).collect();
                assert_eq!(list, &want, "row {i}");
            }
        }
    }

    #[test]
    fn packets_of_other_layers_are_skipped_only_when_settled() {
        let t0 = Instant::now();
        let now = t0 + std::time::Duration::from_millis(500);
        let mut live = LayerActivity::new();
        for l in Layer::ALL {
            live.on_packet(l, t0);
        }
        let mut q_stopped = LayerActivity::new();
        q_stopped.on_packet(Layer::MEDIUM, now);
        q_stopped.on_packet(Layer::HIGH, now);
        let (q, h, f) = (Layer::LOW, Layer::MEDIUM, Layer::HIGH);
        // a selector on `current` heading for `target`: built through its public calls
        let selector = |current: Option<Layer>, target: Option<Layer>| {
            let mut s = LayerSelector::new();
            let wish = |l: Layer| Wish { max_layer: Some(l), ..Default::default() };
            if let Some(c) = current {
                s.update_target(&wish(c), &live, now);
                let _ = s.on_packet(c, true);
            }
            match target {
                Some(t) => s.update_target(&wish(t), &live, now),
                None => s.update_target(&Wish { paused: true, ..Default::default() }, &live, now),
            }
            s
        };
        // columns: current, target, packet layer, activity, skipped
        let rows: &[(Option<Layer>, Option<Layer>, Layer, &LayerActivity, bool)] = &[
            (Some(q), Some(q), f, &live, true),
            (Some(q), Some(q), h, &live, true),
            (Some(q), Some(q), q, &live, false),             // its own layer
            (Some(q), Some(f), f, &live, false),             // switching: waits for f's keyframe
            (Some(q), Some(f), h, &live, false),
            (None, Some(f), h, &live, false),                // not started
            (Some(q), Some(q), h, &q_stopped, false),        // its layer stopped: h must move the target
        ];
        for &(current, target, layer, activity, want) in rows {
            let s = selector(current, target);
            assert_eq!((s.current(), s.target()), (current, target), "row setup");
            assert_eq!(
                settled_elsewhere(settled_on(&s), layer, activity, now),
                want,
                "{current:?} -> {target:?}, packet {layer:?}"
            );
        }
        // paused (target None after a pause): never skipped
        let paused = selector(Some(q), None);
        assert_eq!(settled_on(&paused), None);
        assert!(!settled_elsewhere(settled_on(&paused), f, &live, now));
        // not visited since the last rebuild: never skipped
        assert!(!settled_elsewhere(None, f, &live, now));
    }
}
