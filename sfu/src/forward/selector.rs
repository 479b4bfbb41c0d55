//! Simulcast layer choice per (subscriber, published video track): which
//! layer the subscriber should get, and when the forwarded layer may change
//! (only at a keyframe of the new layer, so the subscriber never freezes).

use std::time::{Duration, Instant};

/// A layer with no packet for this long is inactive.
const ACTIVE_WINDOW: Duration = Duration::from_secs(1);
/// Default minimum interval between two keyframe requests for one layer.
const PLI_INTERVAL: Duration = Duration::from_millis(500);

/// A simulcast layer; 0 is the lowest quality.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Layer(u8);

impl Layer {
    /// Number of simulcast layers supported.
    pub const COUNT: usize = 3;
    /// The lowest layer (rid "q").
    pub const LOW: Self = Self(0);
    /// The middle layer (rid "h").
    pub const MEDIUM: Self = Self(1);
    /// The highest layer (rid "f").
    pub const HIGH: Self = Self(2);
    /// All layers, lowest first.
    pub const ALL: [Self; Self::COUNT] = [Self::LOW, Self::MEDIUM, Self::HIGH];

    /// The layer with this index (0 = lowest), for rids the caller ordered itself.
    pub const fn new(index: u8) -> Option<Self> {
        if (index as usize) < Self::COUNT { Some(Self(index)) } else { None }
    }

    /// Index of this layer, 0 = lowest.
    pub const fn index(self) -> usize {
        self.0 as usize
    }

    /// The layer of a conventional rid: "q" (quarter), "h" (half), "f" (full).
    pub fn from_rid(rid: &str) -> Option<Self> {
        match rid {
            "q" => Some(Self::LOW),
            "h" => Some(Self::MEDIUM),
            "f" => Some(Self::HIGH),
            _ => None,
        }
    }

    /// The conventional rid of this layer.
    pub const fn rid(self) -> &'static str {
        match self.0 {
            0 => "q",
            1 => "h",
            _ => "f",
        }
    }
}

/// What is known about one layer of a published track.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct LayerState {
    /// When its last packet arrived.
    last_packet: Option<Instant>,
    /// Width and height from its last keyframe.
    size: Option<(u32, u32)>,
}

/// Per published track: when each layer last sent a packet and its keyframe size.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LayerActivity {
    /// State of each layer, indexed by `Layer::index`.
    layers: [LayerState; Layer::COUNT],
}

impl LayerActivity {
    /// Activity with no packet seen on any layer.
    pub const fn new() -> Self {
        Self { layers: [LayerState { last_packet: None, size: None }; Layer::COUNT] }
    }

    /// The state of one layer.
    fn state(&self, layer: Layer) -> &LayerState {
        self.layers.get(layer.index()).expect("a Layer's index is always below Layer::COUNT")
    }

    /// The state of one layer, for updating.
    fn state_mut(&mut self, layer: Layer) -> &mut LayerState {
        self.layers.get_mut(layer.index()).expect("a Layer's index is always below Layer::COUNT")
    }

    /// Records a packet of `layer` arriving at `now`.
    pub fn on_packet(&mut self, layer: Layer, now: Instant) {
        self.state_mut(layer).last_packet = Some(now);
    }

    /// Records the size of `layer` from one of its keyframes.
    pub fn set_size(&mut self, layer: Layer, width: u32, height: u32) {
        self.state_mut(layer).size = Some((width, height));
    }

    /// The size last recorded for `layer`.
    pub fn size(&self, layer: Layer) -> Option<(u32, u32)> {
        self.state(layer).size
    }

    /// True if `layer` sent a packet within the last second before `now`.
    pub fn is_active(&self, layer: Layer, now: Instant) -> bool {
        self.state(layer).last_packet.is_some_and(|at| now.saturating_duration_since(at) <= ACTIVE_WINDOW)
    }

    /// The known size of `layer`, else one scaled by 2 per layer from the highest layer with a known size.
    pub fn estimated_size(&self, layer: Layer) -> Option<(u32, u32)> {
        if let Some(size) = self.size(layer) {
            return Some(size);
        }
        let (known, (w, h)) = Layer::ALL.into_iter().rev().find_map(|l| self.size(l).map(|s| (l, s)))?;
        let factor = 1u32 << known.0.abs_diff(layer.0);
        Some(if layer > known {
            (w.saturating_mul(factor), h.saturating_mul(factor))
        } else {
            (w / factor, h / factor)
        })
    }
}

/// What a subscriber asked for on one video track.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Wish {
    /// Forward nothing.
    pub paused: bool,
    /// Forward the highest active layer up to this one (the lowest active if none is at or
    /// below it); when set, `size` is ignored.
    pub max_layer: Option<Layer>,
    /// Width and height of the subscriber's view; the smallest layer covering it is enough.
    pub size: Option<(u32, u32)>,
    /// The highest layer the subscriber's bandwidth allows (the allocator's grant); it caps
    /// whatever the rest of the wish asks.
    pub bandwidth: Option<Layer>,
}

impl Wish {
    /// The layer this wish would take if every layer were sent: what a publisher must keep
    /// encoding for it (dynacast). `None` when paused. Sizes come from keyframes seen before
    /// (a layer that stopped keeps its last size).
    pub fn needs(&self, activity: &LayerActivity) -> Option<Layer> {
        if self.paused {
            return None;
        }
        let cap = self.max_layer.unwrap_or(Layer::HIGH).min(self.bandwidth.unwrap_or(Layer::HIGH));
        if self.max_layer.is_some() {
            return Some(cap);
        }
        let Some((w, h)) = self.size else { return Some(cap) };
        let fits = |l: &Layer| activity.estimated_size(*l).is_some_and(|(lw, lh)| lw >= w && lh >= h);
        Some(Layer::ALL.into_iter().find(fits).unwrap_or(Layer::HIGH).min(cap))
    }
}

/// What to do with one incoming packet for one subscriber.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Forward it on the current layer.
    Forward,
    /// Do not forward it.
    Drop,
    /// It starts a keyframe of the target layer: switch the munger's source to it, then forward it.
    Switch {
        /// The layer forwarded until now, if any.
        from: Option<Layer>,
        /// The layer forwarded from this packet on.
        to: Layer,
    },
}

/// Chooses the layer one subscriber gets and when the forwarded layer changes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LayerSelector {
    /// The layer being forwarded.
    current: Option<Layer>,
    /// The layer that should be forwarded.
    target: Option<Layer>,
}

impl LayerSelector {
    /// A selector forwarding nothing until a target is set and its keyframe arrives.
    pub const fn new() -> Self {
        Self { current: None, target: None }
    }

    /// The layer being forwarded.
    pub const fn current(&self) -> Option<Layer> {
        self.current
    }

    /// The layer that should be forwarded.
    pub const fn target(&self) -> Option<Layer> {
        self.target
    }

    /// Recomputes the target from the subscriber's wish and the layers active at `now`; with no active layer the target is kept.
    pub fn update_target(&mut self, wish: &Wish, activity: &LayerActivity, now: Instant) {
        if wish.paused {
            self.target = None;
            return;
        }
        let active = |l: &Layer| activity.is_active(*l, now);
        let Some(lowest_active) = Layer::ALL.into_iter().find(active) else {
            // The publisher may only be stalled: keep what we had.
            return;
        };
        let cap = wish.max_layer.unwrap_or(Layer::HIGH).min(wish.bandwidth.unwrap_or(Layer::HIGH));
        let eligible = Layer::ALL.into_iter().filter(|l| *l <= cap).filter(active);
        let Some(highest_eligible) = eligible.clone().next_back() else {
            // Nothing active at or below the cap: the lowest active layer is the closest.
            self.target = Some(lowest_active);
            return;
        };
        // An explicit layer wins over the rendered size (docs/protocol.md).
        let size = if wish.max_layer.is_some() { None } else { wish.size };
        let fits = |l: &Layer| {
            size.is_some_and(|(w, h)| activity.estimated_size(*l).is_some_and(|(lw, lh)| lw >= w && lh >= h))
        };
        self.target = Some(eligible.clone().find(fits).unwrap_or(highest_eligible));
    }

    /// Decides what to do with a packet of `layer`; `keyframe_start` is true for the first packet of a keyframe.
    #[must_use = "the action decides whether the packet is forwarded"]
    pub fn on_packet(&mut self, layer: Layer, keyframe_start: bool) -> Action {
        let Some(target) = self.target else {
            // Paused: once resumed, forwarding restarts at a keyframe.
            self.current = None;
            return Action::Drop;
        };
        if self.current == Some(layer) {
            // The current layer keeps flowing until the target's keyframe arrives, so there is no freeze.
            return Action::Forward;
        }
        if layer == target && keyframe_start {
            let from = self.current.replace(target);
            return Action::Switch { from, to: target };
        }
        Action::Drop
    }

    /// The layer that needs a keyframe before it can be forwarded, while current differs from target.
    pub fn wants_keyframe(&self) -> Option<Layer> {
        self.target.filter(|t| self.current != Some(*t))
    }
}

/// Limits keyframe requests (PLI/FIR) to the publisher to one per layer per interval.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PliThrottle {
    /// Minimum time between two requests for one layer.
    interval: Duration,
    /// When each layer was last asked.
    last: [Option<Instant>; Layer::COUNT],
}

impl Default for PliThrottle {
    fn default() -> Self {
        Self::new(PLI_INTERVAL)
    }
}

impl PliThrottle {
    /// A throttle allowing one request per layer per `interval` (500 ms by default).
    pub const fn new(interval: Duration) -> Self {
        Self { interval, last: [None; Layer::COUNT] }
    }

    /// True (and records the request) if a keyframe may be requested for `layer` at `now`.
    #[must_use = "a refused request must not be sent"]
    pub fn allow(&mut self, layer: Layer, now: Instant) -> bool {
        let last = self.last.get_mut(layer.index()).expect("a Layer's index is always below Layer::COUNT");
        if last.is_some_and(|at| now.saturating_duration_since(at) < self.interval) {
            return false;
        }
        *last = Some(now);
        true
    }
}

#[cfg(test)]
#[path = "selector_tests.rs"]
mod tests;
