//! Properties of the sequence arithmetic, over generated streams (proptest): extension is exact
//! within half the range, and the munger's outgoing numbers keep the incoming spacing less the
//! packets it was told were dropped, continuing by one across source switches.

use super::munger::{RtpMunger, SeqOrigin};
use super::seq::SeqUnwrapper;
use proptest::prelude::*;
use std::time::Instant;

/// What happens to one incoming packet.
#[derive(Debug, Clone, Copy)]
enum Fate {
    Forward,
    Drop,
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn extension_is_exact_within_half_the_range(start in (1u64 << 16)..(1u64 << 40), steps in prop::collection::vec(-3000i64..3000, 1..400)) {
        // the first number sets the origin: every later one keeps its distance to it
        let mut u = SeqUnwrapper::new();
        let mut seq = start;
        let origin = u.unwrap(seq as u16);
        let mut highest = seq;
        for step in steps {
            seq = seq.checked_add_signed(step).unwrap();
            // only numbers within half the range of the highest seen are defined
            prop_assume!(highest.abs_diff(seq) < 1 << 15);
            prop_assert_eq!(u.unwrap(seq as u16) as i128 - origin as i128, seq as i128 - start as i128);
            highest = highest.max(seq);
        }
    }

    #[test]
    fn outgoing_numbers_keep_the_spacing_less_the_drops(
        init in any::<u16>(),
        start in (1u64 << 16)..(1u64 << 40),
        events in prop::collection::vec((1u64..4, prop_oneof![3 => Just(Fate::Forward), 1 => Just(Fate::Drop)], prop::bool::weighted(0.05)), 1..300),
    ) {
        let now = Instant::now();
        let mut m = RtpMunger::new(90_000, init, 0);
        let mut seq = start;
        // the previous forwarded packet of the current source (in, out), or at a switch a
        // virtual one just before its first packet, mapped to the last number sent; and the
        // packets dropped since (those lost upstream keep their numbers: a receiver NACKs them)
        let mut prev = (0u64, 0u16);
        let mut dropped_since = 0u64;
        let mut last_out: Option<u16> = None;
        let mut forwarded = Vec::new();
        let mut source_from = 0;
        for (i, (gap, fate, switch)) in events.into_iter().enumerate() {
            seq += gap;
            if i == 0 || switch {
                // a new source (a layer switch) starting at this packet
                seq += 10_000;
                m.switch_source(seq, seq * 3000, None, now);
                source_from = forwarded.len();
                prev = (seq - 1, last_out.unwrap_or(init.wrapping_sub(1)));
                dropped_since = 0;
            }
            match fate {
                Fate::Drop => {
                    m.drop_packet(seq);
                    dropped_since += 1;
                }
                Fate::Forward => {
                    let (out, _) = m.forward(seq, seq * 3000, now).expect("a packet of the current source is forwarded");
                    // the incoming spacing, less what was dropped between
                    let (pin, pout) = prev;
                    let want = pout.wrapping_add((seq - pin - dropped_since) as u16);
                    prop_assert_eq!(out, want, "packet {} (in {})", i, seq);
                    prev = (seq, out);
                    last_out = Some(out);
                    dropped_since = 0;
                    forwarded.push((seq, out));
                }
            }
        }
        // NACK mapping: the current source's recent outgoing numbers map back to their packets
        for &(s, out) in forwarded[source_from..].iter().rev().take(64) {
            prop_assert_eq!(m.out_to_in(out), Some(SeqOrigin::Current(s)), "out {}", out);
        }
    }
}
