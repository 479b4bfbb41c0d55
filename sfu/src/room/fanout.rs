//! Each published track's subscriber list, in the order the fan-out visits it.
//!
//! The packet path walks this list instead of every participant's downtracks: an entry says
//! where the downtrack is (no search by track per subscriber per packet) and which layer it
//! settled on at its last visit, so a packet of another layer skips it without touching the
//! downtrack at all (at layer q, three of four packets are h or f: before this, each of them
//! cost one cache miss per subscriber). The list is rebuilt whenever participants or
//! downtracks move (the roster methods below mark the lists stale; debug builds check them
//! before every packet). A selector changes in the packet path, which refreshes the entry's
//! `settled` as it does, and on a subscription request, which clears it (the next packet looks
//! at the subscriber again).
//!
//! While one subscriber is visited, the next ones' state is prefetched ([`warm`], from where
//! their last visit found it), so each visit finds its downtrack, connection and cipher in the
//! cache: their misses, several per subscriber and each waited for in turn, cost more than
//! the visit's own work.

use super::core::RoomCore;
use super::egress::Egress;
pub use super::fanout_entry::{Hint, Subscriber};
use super::participant::Participant;
use super::peer::Peer;
use super::track::{DownTrack, PublishedTrack};
use crate::forward::prefetch;
use crate::forward::selector::{Layer, LayerActivity, LayerSelector};
use std::time::Instant;

/// The addresses of a visit's state (a [`Hint`]).
#[allow(clippy::borrowed_box)] // the `Box` itself, where the map holds it
pub fn hint_of(downtrack: &DownTrack, slot: &Box<Peer>, egress: &Egress) -> Hint {
    let ([gcm, remote, key], cipher) = egress.hot_spans();
    Hint {
        downtrack: prefetch::addr(downtrack),
        slot: prefetch::addr(slot),
        fields: [prefetch::addr(&slot.connected), gcm, remote, key],
        cipher,
    }
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
fn downtrack_keys(
    participants: &[super::participant::Participant],
) -> impl Iterator<Item = impl Iterator<Item = u32> + '_> {
    participants.iter().map(|p| p.downtracks.iter().map(|d| d.track_key))
}

/// Changes of the roster (participants, tracks, downtracks) go through these, which mark the
/// lists stale: the next packet rebuilds them before it is forwarded.
impl RoomCore {
    /// Adds a participant.
    pub(super) fn push_participant(&mut self, p: Participant) {
        self.participants.push(p);
        self.fanout_stale = true;
    }

    /// Removes the participant at `idx` (those after it move down one place).
    pub(super) fn remove_participant_at(&mut self, idx: usize) -> Participant {
        self.fanout_stale = true;
        let p = self.participants.remove(idx);
        self.speakers.remove(&p.id);
        p
    }

    /// Adds a published track.
    pub(super) fn push_track(&mut self, t: PublishedTrack) {
        self.tracks.push(t);
        self.fanout_stale = true;
    }

    /// Keeps only the published tracks for which `keep` holds.
    pub(super) fn retain_tracks(&mut self, keep: impl FnMut(&PublishedTrack) -> bool) {
        self.tracks.retain(keep);
        self.fanout_stale = true;
    }

    /// Adds a downtrack to participant `idx`.
    pub(super) fn push_downtrack(&mut self, idx: usize, dt: DownTrack) {
        self.participants[idx].downtracks.push(dt);
        self.fanout_stale = true;
    }

    /// Keeps only participant `idx`'s downtracks for which `keep` holds; returns the others.
    pub(super) fn take_downtracks(&mut self, idx: usize, mut gone: impl FnMut(&DownTrack) -> bool) -> Vec<DownTrack> {
        let p = &mut self.participants[idx];
        let (removed, kept): (Vec<DownTrack>, Vec<DownTrack>) = p.downtracks.drain(..).partition(|d| gone(d));
        p.downtracks = kept;
        self.fanout_stale = !removed.is_empty() || self.fanout_stale;
        removed
    }

    /// True once after the roster changed: the lists must be rebuilt (and the stream index,
    /// whose track indices may have moved, is forgotten).
    pub(super) fn roster_changed(&mut self) -> bool {
        let changed = std::mem::take(&mut self.fanout_stale);
        if changed {
            self.streams.clear();
        }
        changed
    }

    /// Rebuilds every track's subscriber list from the participants' downtracks (and starts
    /// their hints over: the next visits record them).
    pub(super) fn rebuild_fanout(&mut self) {
        let lists = self.tracks.iter_mut().map(|t| (t.key, &mut t.fanout));
        rebuild(lists, downtrack_keys(&self.participants));
        for t in &mut self.tracks {
            t.hints.clear();
            t.hints.resize(t.fanout.len(), Hint::default());
        }
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
            debug_assert_eq!(t.hints.len(), t.fanout.len(), "hints of track {} do not match its list", t.id);
        }
    }
}

/// How many visits ahead of the fan-out a subscriber's state is warmed: a visit (selector,
/// munger, VP8 rewrite, AES-GCM) takes longer than a miss, so its prefetches land in time.
pub const WARM_AHEAD: usize = 2;

/// Prefetches what visiting `s` reads: its participant entry, and, from its last visit's
/// hint `h`, its downtrack, connection and cipher. Nothing is read through the hints, so the
/// misses of the next subscribers are in flight together while one is visited, instead of
/// each visit waiting for its own one after the other.
#[inline]
pub fn warm(participants: &[Participant], s: &Subscriber, h: &Hint) {
    if let Some(p) = participants.get(s.participant as usize) {
        prefetch::value(&p.downtracks);
        prefetch::value(&p.subscriber);
    }
    if h.downtrack == 0 {
        return; // not visited since the last rebuild
    }
    prefetch::at(h.downtrack, std::mem::size_of::<DownTrack>());
    prefetch::at(h.slot, std::mem::size_of::<Box<Peer>>());
    for f in h.fields {
        prefetch::at(f, 1);
    }
    prefetch::at(h.cipher.0, h.cipher.1);
}

/// Warms visit `j` of a track's list (nothing past its end, nothing `skip` says the fan-out
/// will pass over).
#[inline]
pub fn warm_at(
    participants: &[Participant],
    list: &[Subscriber],
    hints: &[Hint],
    j: usize,
    skip: impl Fn(&Subscriber) -> bool,
) {
    if let (Some(s), Some(h)) = (list.get(j), hints.get(j))
        && !skip(s)
    {
        warm(participants, s, h);
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
            (Some(q), Some(q), q, &live, false), // its own layer
            (Some(q), Some(f), f, &live, false), // switching: waits for f's keyframe
            (Some(q), Some(f), h, &live, false),
            (None, Some(f), h, &live, false),         // not started
            (Some(q), Some(q), h, &q_stopped, false), // its layer stopped: h must move the target
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

    #[test]
    fn warming_with_stale_or_unknown_hints_does_not_fault() {
        // a rebuilt entry (no hints yet), one pointing at freed or foreign memory, one whose
        // participant is gone: each only prefetches, so this returning is the whole check
        let freed = Box::new([0u8; 512]);
        let gone = (&*freed as *const [u8; 512]) as usize;
        drop(freed);
        let hint = Hint { downtrack: gone, slot: 8, fields: [gone, usize::MAX, 1, 0], cipher: (gone, 4096) };
        let entries = [
            (Subscriber { participant: 0, downtrack: 0, settled: None }, Hint::default()),
            (Subscriber { participant: 0, downtrack: 3, settled: Some(Layer::LOW) }, hint),
            (Subscriber { participant: u32::MAX, downtrack: 0, settled: None }, hint),
        ];
        for (s, h) in &entries {
            warm(&[], s, h);
        }
    }
}
