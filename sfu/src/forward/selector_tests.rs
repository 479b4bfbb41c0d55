//! Tests of `selector.rs` (kept in their own file so both stay short).

use super::*;

const Q: Layer = Layer::LOW;
const H: Layer = Layer::MEDIUM;
const F: Layer = Layer::HIGH;

#[test]
fn layer_table() {
    let rids: &[(&str, Option<Layer>)] =
        &[("q", Some(Q)), ("h", Some(H)), ("f", Some(F)), ("", None), ("x", None), ("Q", None), ("full", None)];
    for &(rid, want) in rids {
        assert_eq!(Layer::from_rid(rid), want, "from_rid({rid:?})");
        if let Some(layer) = want {
            assert_eq!(layer.rid(), rid, "rid round trip");
        }
    }
    let indexes: &[(u8, Option<Layer>)] = &[(0, Some(Q)), (1, Some(H)), (2, Some(F)), (3, None), (255, None)];
    for &(i, want) in indexes {
        assert_eq!(Layer::new(i), want, "Layer::new({i})");
        if let Some(layer) = want {
            assert_eq!(layer.index(), usize::from(i));
        }
    }
    assert!(Q < H && H < F);
}

/// Shorthand for a wish.
const fn wish(max_layer: Option<Layer>, size: Option<(u32, u32)>) -> Wish {
    Wish { paused: false, max_layer, size, bandwidth: None }
}

/// Sizes of a typical 1280x720 three-layer publisher.
const SIZES: &[(Layer, u32, u32)] = &[(Q, 320, 180), (H, 640, 360), (F, 1280, 720)];

#[test]
fn target_table() {
    struct Row {
        name: &'static str,
        wish: Wish,
        active: &'static [Layer],
        sizes: &'static [(Layer, u32, u32)],
        before: Option<Layer>,
        want: Option<Layer>,
    }
    let all: &[Layer] = &[Q, H, F];
    let paused = Wish { paused: true, ..Wish::default() };
    let rows = [
        Row {
            name: "no wish: highest active",
            wish: Wish::default(),
            active: all,
            sizes: &[],
            before: None,
            want: Some(F),
        },
        Row {
            name: "no wish, top inactive",
            wish: Wish::default(),
            active: &[Q, H],
            sizes: &[],
            before: Some(F),
            want: Some(H),
        },
        Row { name: "paused", wish: paused, active: all, sizes: SIZES, before: Some(F), want: None },
        Row { name: "paused with nothing active", wish: paused, active: &[], sizes: &[], before: Some(F), want: None },
        Row {
            name: "nothing active keeps target",
            wish: Wish::default(),
            active: &[],
            sizes: &[],
            before: Some(H),
            want: Some(H),
        },
        Row { name: "max layer", wish: wish(Some(H), None), active: all, sizes: &[], before: None, want: Some(H) },
        Row {
            name: "max layer inactive: next lower",
            wish: wish(Some(H), None),
            active: &[Q, F],
            sizes: &[],
            before: None,
            want: Some(Q),
        },
        Row {
            name: "max layer, only higher active",
            wish: wish(Some(H), None),
            active: &[F],
            sizes: &[],
            before: None,
            want: Some(F),
        },
        Row {
            name: "size fits middle",
            wish: wish(None, Some((600, 300))),
            active: all,
            sizes: SIZES,
            before: None,
            want: Some(H),
        },
        Row {
            name: "size exactly lowest",
            wish: wish(None, Some((320, 180))),
            active: all,
            sizes: SIZES,
            before: None,
            want: Some(Q),
        },
        Row {
            name: "size needs both dimensions",
            wish: wish(None, Some((200, 200))),
            active: all,
            sizes: SIZES,
            before: None,
            want: Some(H),
        },
        Row {
            name: "size above all: highest",
            wish: wish(None, Some((1920, 1080))),
            active: all,
            sizes: SIZES,
            before: None,
            want: Some(F),
        },
        Row {
            name: "size skips inactive layer",
            wish: wish(None, Some((600, 300))),
            active: &[Q, F],
            sizes: SIZES,
            before: None,
            want: Some(F),
        },
        Row {
            name: "size capped by max layer",
            wish: wish(Some(H), Some((1000, 600))),
            active: all,
            sizes: SIZES,
            before: None,
            want: Some(H),
        },
        Row {
            name: "explicit layer wins over a small size",
            wish: wish(Some(F), Some((300, 100))),
            active: all,
            sizes: SIZES,
            before: None,
            want: Some(F),
        },
        Row {
            name: "sizes unknown: highest",
            wish: wish(None, Some((100, 100))),
            active: all,
            sizes: &[],
            before: None,
            want: Some(F),
        },
        Row {
            name: "estimated down from highest known",
            wish: wish(None, Some((300, 170))),
            active: all,
            sizes: &[(F, 1280, 720)],
            before: None,
            want: Some(Q),
        },
        Row {
            name: "estimated up from lowest known",
            wish: wish(None, Some((1000, 500))),
            active: all,
            sizes: &[(Q, 320, 180)],
            before: None,
            want: Some(F),
        },
        Row {
            name: "known size wins over estimate",
            wish: wish(None, Some((500, 300))),
            active: all,
            sizes: &[(H, 480, 270), (F, 1280, 720)],
            before: None,
            want: Some(F),
        },
    ];
    let now = Instant::now();
    for row in rows {
        let mut activity = LayerActivity::new();
        for &l in row.active {
            activity.on_packet(l, now);
        }
        for &(l, w, h) in row.sizes {
            activity.set_size(l, w, h);
        }
        let mut sel = LayerSelector { current: None, target: row.before };
        sel.update_target(&row.wish, &activity, now);
        assert_eq!(sel.target(), row.want, "{}", row.name);
    }
}

/// One step of a selector scenario; times are milliseconds from the start.
#[derive(Debug, Clone, Copy)]
enum Step {
    /// Replace the subscriber's wish.
    Want(Wish),
    /// Record the keyframe sizes of a typical 1280x720 publisher.
    Sizes,
    /// A packet of `layer` at `ms`: record activity, update the target, expect this action.
    Pkt(Layer, bool, u64, Action),
    /// Only time passes: update the target at `ms`.
    Tick(u64),
    /// Expect (target, current, `wants_keyframe`).
    Expect(Option<Layer>, Option<Layer>, Option<Layer>),
}
use Action::{Drop, Forward};
use Step::{Expect, Pkt, Sizes, Tick, Want};

/// Expected switch.
const fn switch(from: Option<Layer>, to: Layer) -> Action {
    Action::Switch { from, to }
}

#[test]
fn scenario_tables() {
    let paused = Wish { paused: true, ..Wish::default() };
    let scenarios: &[(&str, &[Step])] = &[
        (
            "start switches only at a keyframe of the target",
            &[
                Pkt(Q, false, 0, Drop),
                Expect(Some(Q), None, Some(Q)),
                Pkt(H, false, 1, Drop),
                Pkt(F, false, 2, Drop),
                Expect(Some(F), None, Some(F)),
                Pkt(Q, true, 3, Drop),
                Pkt(F, true, 4, switch(None, F)),
                Pkt(F, false, 5, Forward),
                Pkt(H, true, 6, Drop),
                Pkt(Q, false, 7, Drop),
                Expect(Some(F), Some(F), None),
            ],
        ),
        (
            "downgrade by size keeps the old layer until the keyframe",
            &[
                Sizes,
                Pkt(Q, false, 0, Drop),
                Pkt(H, false, 0, Drop),
                Pkt(F, true, 0, switch(None, F)),
                Want(wish(None, Some((600, 300)))),
                Pkt(F, false, 10, Forward),
                Expect(Some(H), Some(F), Some(H)),
                Pkt(H, false, 11, Drop),
                Pkt(F, true, 12, Forward),
                Pkt(H, true, 13, switch(Some(F), H)),
                Pkt(F, false, 14, Drop),
                Pkt(H, false, 15, Forward),
                Expect(Some(H), Some(H), None),
            ],
        ),
        (
            "upgrade when the cap is raised",
            &[
                Want(wish(Some(Q), None)),
                Pkt(Q, true, 0, switch(None, Q)),
                Pkt(F, true, 0, Drop),
                Want(wish(Some(F), None)),
                Pkt(Q, false, 10, Forward),
                Pkt(F, false, 11, Drop),
                Expect(Some(F), Some(Q), Some(F)),
                Pkt(H, true, 12, Drop),
                Pkt(F, true, 13, switch(Some(Q), F)),
                Pkt(Q, false, 14, Drop),
            ],
        ),
        (
            "fall back when the current layer stops",
            &[
                Pkt(Q, false, 0, Drop),
                Pkt(H, false, 0, Drop),
                Pkt(F, true, 0, switch(None, F)),
                Pkt(F, false, 100, Forward),
                Pkt(H, true, 500, Drop),
                Pkt(Q, false, 1000, Drop),
                Tick(1100),
                Expect(Some(F), Some(F), None),
                Tick(1101),
                Expect(Some(H), Some(F), Some(H)),
                Pkt(H, false, 1150, Drop),
                Pkt(H, true, 1200, switch(Some(F), H)),
                Pkt(Q, false, 1201, Drop),
                Pkt(H, false, 1202, Forward),
            ],
        ),
        (
            "stopped layer comes back: upgrade at its keyframe",
            &[
                Pkt(H, true, 0, switch(None, H)),
                Pkt(F, false, 5000, Drop),
                Expect(Some(F), Some(H), Some(F)),
                Pkt(F, true, 5001, switch(Some(H), F)),
            ],
        ),
        (
            "publisher stalled: target is kept",
            &[
                Pkt(F, true, 0, switch(None, F)),
                Tick(5000),
                Expect(Some(F), Some(F), None),
                Pkt(F, false, 5001, Forward),
            ],
        ),
        (
            "pause drops everything, resume needs a keyframe",
            &[
                Pkt(F, true, 0, switch(None, F)),
                Want(paused),
                Pkt(F, false, 10, Drop),
                Expect(None, None, None),
                Pkt(F, true, 20, Drop),
                Want(Wish::default()),
                Pkt(F, false, 30, Drop),
                Expect(Some(F), None, Some(F)),
                Pkt(F, true, 40, switch(None, F)),
                Pkt(F, false, 50, Forward),
            ],
        ),
        (
            "keyframe on the current layer is just forwarded",
            &[Pkt(F, true, 0, switch(None, F)), Pkt(F, true, 10, Forward)],
        ),
    ];
    let base = Instant::now();
    for (name, steps) in scenarios {
        let mut activity = LayerActivity::new();
        let mut sel = LayerSelector::new();
        let mut w = Wish::default();
        for (i, step) in steps.iter().enumerate() {
            match *step {
                Want(new) => w = new,
                Sizes => SIZES.iter().for_each(|&(l, width, height)| activity.set_size(l, width, height)),
                Pkt(layer, key, ms, want) => {
                    let now = base + Duration::from_millis(ms);
                    activity.on_packet(layer, now);
                    sel.update_target(&w, &activity, now);
                    assert_eq!(sel.on_packet(layer, key), want, "{name}: step {i} {step:?}");
                }
                Tick(ms) => sel.update_target(&w, &activity, base + Duration::from_millis(ms)),
                Expect(target, current, wants) => {
                    assert_eq!(
                        (sel.target(), sel.current(), sel.wants_keyframe()),
                        (target, current, wants),
                        "{name}: step {i}"
                    );
                }
            }
        }
    }
}

#[test]
fn pli_throttle_table() {
    // (layer, ms, allowed)
    let rows: &[(Layer, u64, bool)] = &[
        (Q, 0, true),
        (Q, 100, false),
        (H, 100, true),
        (Q, 499, false),
        (Q, 500, true),
        (H, 599, false),
        (H, 600, true),
        (F, 600, true),
        (F, 600, false),
        (Q, 10_000, true),
    ];
    let base = Instant::now();
    let mut throttle = PliThrottle::default();
    for (i, &(layer, ms, want)) in rows.iter().enumerate() {
        assert_eq!(throttle.allow(layer, base + Duration::from_millis(ms)), want, "row {i}: {layer:?} at {ms} ms");
    }
}

#[test]
fn bandwidth_caps_every_wish() {
    let t0 = Instant::now();
    let mut a = LayerActivity::new();
    for &(l, w, h) in SIZES {
        a.on_packet(l, t0);
        a.set_size(l, w, h);
    }
    // columns: wish, bandwidth cap, expected target
    let rows = [
        (wish(None, None), Some(H), Some(H)),
        (wish(Some(F), None), Some(Q), Some(Q)),
        (wish(None, Some((1280, 720))), Some(H), Some(H)),
        (wish(None, Some((320, 180))), Some(F), Some(Q)),
        (wish(Some(Q), None), Some(F), Some(Q)),
        (wish(None, None), None, Some(F)),
    ];
    for (w, cap, want) in rows {
        let mut s = LayerSelector::new();
        s.update_target(&Wish { bandwidth: cap, ..w }, &a, t0);
        assert_eq!(s.target(), want, "{w:?} capped at {cap:?}");
    }
}

#[test]
fn needs_ignores_which_layers_are_sent() {
    let t0 = Instant::now();
    let mut a = LayerActivity::new();
    for &(l, w, h) in SIZES {
        a.set_size(l, w, h);
    }
    // only q is sent now: what each wish would still need of the publisher
    a.on_packet(Q, t0);
    // columns: wish, expected
    let paused = Wish { paused: true, ..wish(None, None) };
    let rows = [
        (wish(None, None), Some(F)),
        (wish(Some(H), None), Some(H)),
        (wish(None, Some((640, 360))), Some(H)),
        (wish(None, Some((1920, 1080))), Some(F)),
        (Wish { bandwidth: Some(H), ..wish(None, Some((1280, 720))) }, Some(H)),
        (Wish { bandwidth: Some(Q), ..wish(Some(F), None) }, Some(Q)),
        (paused, None),
    ];
    for (w, want) in rows {
        assert_eq!(w.needs(&a), want, "{w:?}");
    }
}
