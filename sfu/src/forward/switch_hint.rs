//! Where the first packet of a new simulcast layer lands on a subscriber's timeline: layers
//! have unrelated RTP clocks, so a switch aligns them through both layers' sender reports.
//! Without a hint the munger falls back to its own estimate (see `RtpMunger::switch_source`).

/// Sender report of one layer: maps its RTP clock to wall-clock (NTP) time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SenderClock {
    /// NTP timestamp (32.32 fixed point).
    pub ntp: u64,
    /// RTP timestamp at that instant.
    pub rtp: u32,
}

/// The outgoing (extended) timestamp for the first packet of the new layer (`new_ts` on the
/// new layer's clock): the last forwarded packet's outgoing timestamp advanced by the time
/// between the two captures. `None` when a piece is missing (no sender report of either
/// layer, nothing forwarded yet) or the advance is implausible.
pub fn switch_hint(
    old: Option<SenderClock>,
    new: Option<SenderClock>,
    new_ts: u32,
    last_in: Option<u64>,
    last_out: Option<u64>,
    clock_rate: u32,
) -> Option<u64> {
    let advance = align_advance(old?, new?, new_ts, last_in? as u32, clock_rate)?;
    Some(last_out? + u64::from(advance))
}

fn ntp_seconds(ntp: u64) -> f64 {
    (ntp >> 32) as f64 + (ntp & 0xffff_ffff) as f64 / 4_294_967_296.0
}

/// How far (in RTP ticks) the first packet of a new layer lies after the last forwarded packet
/// of the old layer, from both layers' sender reports: the new packet's capture time expressed
/// on the old layer's clock. `None` when implausible (not 0-5 s after the last packet).
pub fn align_advance(
    old: SenderClock,
    new: SenderClock,
    new_ts: u32,
    last_in_old: u32,
    clock_rate: u32,
) -> Option<u32> {
    let rate = clock_rate as f64;
    let capture = ntp_seconds(new.ntp) + (new_ts.wrapping_sub(new.rtp) as i32) as f64 / rate;
    let on_old_clock = old.rtp.wrapping_add(((capture - ntp_seconds(old.ntp)) * rate).round() as i64 as u32);
    let advance = on_old_clock.wrapping_sub(last_in_old) as i32;
    if advance <= 0 || advance as f64 > 5.0 * rate {
        return None;
    }
    Some(advance as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ntp(secs: f64) -> u64 {
        ((secs.trunc() as u64) << 32) | ((secs.fract() * 4_294_967_296.0) as u64)
    }

    #[test]
    fn sender_report_alignment() {
        // old layer: ts 1000 at t=100 s; new layer: ts 4_294_960_000 at t=100 s (wraps soon)
        let old = SenderClock { ntp: ntp(100.0), rtp: 1000 };
        let new = SenderClock { ntp: ntp(100.0), rtp: 4_294_960_000 };
        // columns: new_ts, last_in_old, expected advance
        let rows: &[(u32, u32, Option<u32>)] = &[
            // new packet 50 ms after the SR (4500 ticks), last old packet at the SR instant
            (4_294_964_500, 1000, Some(4500)),
            // across the 32-bit wrap of the new layer: 100 ms after the SR
            (4_294_960_000u32.wrapping_add(9000), 1000, Some(9000)),
            // last old packet 20 ms after the SR: advance shrinks
            (4_294_964_500, 2800, Some(2700)),
            // old layer's clock across its own wrap
            (4_294_964_500, 1000u32.wrapping_sub(1800), Some(6300)),
            // new packet older than the last forwarded one: implausible
            (4_294_960_000, 5000, None),
            // 10 s jump: implausible
            (4_294_960_000u32.wrapping_add(900_000), 1000, None),
        ];
        for &(new_ts, last_in, want) in rows {
            assert_eq!(align_advance(old, new, new_ts, last_in, 90_000), want, "new_ts {new_ts}");
        }
    }

    #[test]
    fn a_hint_needs_both_reports_and_a_forwarded_packet() {
        let old = Some(SenderClock { ntp: ntp(100.0), rtp: 1000 });
        let new = Some(SenderClock { ntp: ntp(100.0), rtp: 50_000 });
        // last_in is extended: only its low 32 bits are on the old layer's RTP clock
        let wrapped_in = (1u64 << 32) + 1000;
        // columns: old clock, new clock, new_ts, last_in, last_out, hint
        let rows: &[(Option<SenderClock>, Option<SenderClock>, u32, Option<u64>, Option<u64>, Option<u64>)] = &[
            (old, new, 54_500, Some(1000), Some(70_000), Some(74_500)),
            (old, new, 54_500, Some(wrapped_in), Some(70_000), Some(74_500)),
            (None, new, 54_500, Some(1000), Some(70_000), None), // no report of the old layer
            (old, None, 54_500, Some(1000), Some(70_000), None), // none of the new one
            (old, new, 54_500, None, Some(70_000), None),        // nothing forwarded before
            (old, new, 54_500, Some(1000), None, None),
            (old, new, 49_000, Some(1000), Some(70_000), None), // captured before the last packet
        ];
        for (i, &(o, n, new_ts, last_in, last_out, want)) in rows.iter().enumerate() {
            assert_eq!(switch_hint(o, n, new_ts, last_in, last_out, 90_000), want, "row {i}");
        }
    }
}
