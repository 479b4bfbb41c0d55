//! VP8 temporal layers per (subscriber, published track): which frames of the forwarded
//! simulcast layer go out. A temporal layer (TID) is a finer step than a spatial layer: with
//! three of them, TID 0 alone is a quarter of the frame rate, TIDs 0-1 half. Dropping the
//! upper ones is possible at any frame; taking one back on waits for a frame that does not
//! depend on frames dropped before (a keyframe, or a frame with the layer sync bit).

/// A temporal layer index, as the VP8 descriptor's TID carries it (0 = base).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Tid(u8);

impl Tid {
    /// Number of temporal layers told apart (the 2-bit TID field allows 4; browsers send up to 3).
    pub const COUNT: usize = 3;
    /// The base layer.
    pub const BASE: Self = Self(0);
    /// The highest told apart: every frame.
    pub const TOP: Self = Self(Self::COUNT as u8 - 1);

    /// The layer of a descriptor's TID (clamped to `TOP`); a stream without TIDs is all base.
    pub fn of(tid: Option<u8>) -> Self {
        Self(tid.unwrap_or(0).min(Self::TOP.0))
    }

    /// The layer with this index, if told apart.
    pub const fn new(index: u8) -> Option<Self> {
        if (index as usize) < Self::COUNT { Some(Self(index)) } else { None }
    }

    /// Its index, 0 = base.
    pub const fn index(self) -> usize {
        self.0 as usize
    }
}

/// What the filter needs of a packet's VP8 descriptor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameInfo {
    /// Its temporal layer; `None` when the stream has none.
    pub tid: Option<u8>,
    /// Layer sync (Y): this frame depends only on base layer frames.
    pub layer_sync: bool,
    /// First packet of a frame.
    pub frame_start: bool,
    /// First packet of a keyframe.
    pub keyframe: bool,
}

/// Which temporal layers of the forwarded layer go out to one subscriber.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TemporalFilter {
    /// Highest TID forwarded now.
    current: Tid,
    /// Highest TID that should be forwarded.
    target: Tid,
    /// The decision for the frame whose first packet was seen last (its other packets follow it).
    frame_forwarded: bool,
}

impl Default for TemporalFilter {
    fn default() -> Self {
        Self::new()
    }
}

impl TemporalFilter {
    /// A filter forwarding every frame.
    pub const fn new() -> Self {
        Self { current: Tid::TOP, target: Tid::TOP, frame_forwarded: true }
    }

    /// Highest TID forwarded now.
    pub const fn current(&self) -> Tid {
        self.current
    }

    /// Sets the highest TID to forward; a lower one applies from the next frame, a higher one
    /// from the next frame that can start it.
    pub fn set_target(&mut self, target: Tid) {
        self.target = target;
    }

    /// The source changed (a simulcast switch, at a keyframe): every layer may start at once.
    pub fn on_switch(&mut self) {
        self.current = self.target;
    }

    /// True if the packet is forwarded. Decided at each frame's first packet, kept for the
    /// frame's other packets so no frame goes out in part.
    #[must_use = "a packet the filter refuses must be dropped (and the drop told to the mungers)"]
    pub fn on_packet(&mut self, f: FrameInfo) -> bool {
        let Some(tid) = f.tid else { return true };
        if !f.frame_start {
            return self.frame_forwarded;
        }
        let tid = Tid::of(Some(tid));
        if self.target < self.current || f.keyframe {
            self.current = self.target;
        } else if self.target > self.current && tid > self.current && tid <= self.target && f.layer_sync {
            // a sync frame of a layer above the current one: that layer and those between it
            // and the current one can start (they depend on nothing dropped before)
            self.current = tid;
        }
        self.frame_forwarded = tid <= self.current;
        self.frame_forwarded
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const fn start(tid: u8, layer_sync: bool) -> FrameInfo {
        FrameInfo { tid: Some(tid), layer_sync, frame_start: true, keyframe: false }
    }

    const fn cont(tid: u8) -> FrameInfo {
        FrameInfo { tid: Some(tid), layer_sync: false, frame_start: false, keyframe: false }
    }

    const KEY: FrameInfo = FrameInfo { tid: Some(0), layer_sync: false, frame_start: true, keyframe: true };

    #[test]
    fn table() {
        // columns: name, target (set before the packets), packets, forwarded, current after
        let rows: &[(&str, u8, &[FrameInfo], &[bool], u8)] = &[
            ("every layer by default", 2, &[start(0, false), start(2, false), start(1, false)], &[true, true, true], 2),
            (
                "down to the base at the next frame",
                0,
                &[start(0, false), cont(0), start(2, true), cont(2), start(1, false)],
                &[true, true, false, false, false],
                0,
            ),
            ("down to two layers", 1, &[start(2, false), start(1, false), start(0, false)], &[false, true, true], 1),
            ("no TIDs: everything", 0, &[FrameInfo { tid: None, ..start(0, false) }], &[true], 2),
            ("a frame's other packets follow its first", 0, &[start(2, false), cont(2)], &[false, false], 0),
        ];
        for (name, target, packets, want, want_current) in rows {
            let mut f = TemporalFilter::new();
            f.set_target(Tid(*target));
            let got: Vec<bool> = packets.iter().map(|p| f.on_packet(*p)).collect();
            assert_eq!(&got, want, "{name}");
            assert_eq!(f.current(), Tid(*want_current), "{name}");
        }
    }

    #[test]
    fn up_waits_for_a_sync_frame_or_a_keyframe() {
        // columns: name, packets after lowering to the base and raising to TOP, forwarded, current after
        let rows: &[(&str, &[FrameInfo], &[bool], u8)] = &[
            (
                "a frame without sync does not start its layer",
                &[start(2, false), start(1, false), start(0, false)],
                &[false, false, true],
                0,
            ),
            ("a sync frame of TID 1 starts it", &[start(1, true), start(2, false)], &[true, false], 1),
            ("a sync frame of TID 2 starts both", &[start(2, true), start(1, false)], &[true, true], 2),
            ("a keyframe starts every layer", &[KEY, start(2, false)], &[true, true], 2),
        ];
        for (name, packets, want, want_current) in rows {
            let mut f = TemporalFilter::new();
            f.set_target(Tid::BASE);
            assert!(f.on_packet(start(0, false)));
            f.set_target(Tid::TOP);
            let got: Vec<bool> = packets.iter().map(|p| f.on_packet(*p)).collect();
            assert_eq!(&got, want, "{name}");
            assert_eq!(f.current(), Tid(*want_current), "{name}");
        }
    }

    #[test]
    fn a_sync_frame_above_the_target_does_not_start_its_layer() {
        let mut f = TemporalFilter::new();
        f.set_target(Tid::BASE);
        assert!(f.on_packet(start(0, false)));
        f.set_target(Tid(1));
        assert!(!f.on_packet(start(2, true)));
        assert_eq!(f.current(), Tid::BASE);
        assert!(f.on_packet(start(1, true)));
        assert_eq!(f.current(), Tid(1));
    }

    #[test]
    fn a_switch_starts_the_target_at_once() {
        let mut f = TemporalFilter::new();
        f.set_target(Tid::BASE);
        assert!(f.on_packet(start(0, false)));
        f.set_target(Tid(1));
        f.on_switch();
        assert!(f.on_packet(start(1, false)));
        assert!(!f.on_packet(start(2, false)));
    }

    #[test]
    fn tid_of_clamps_and_defaults() {
        // columns: descriptor TID, layer
        for (tid, want) in [(None, 0), (Some(0), 0), (Some(1), 1), (Some(2), 2), (Some(3), 2)] {
            assert_eq!(Tid::of(tid), Tid(want), "{tid:?}");
        }
        assert_eq!(Tid::new(3), None);
        assert_eq!(Tid::new(1).map(Tid::index), Some(1));
    }
}
