//! Wrap-around arithmetic for RTP sequence numbers, timestamps and the short
//! counters of payload descriptors. Every modular comparison in `forward`
//! goes through this file.

/// Bit width of an RTP sequence number.
pub const SEQ_BITS: u32 = 16;
/// Bit width of an RTP timestamp.
pub const TS_BITS: u32 = 32;

/// Mask with the low `bits` bits set; `bits` is clamped to 1..=63.
const fn mask(bits: u32) -> u64 {
    let bits = clamp_bits(bits);
    (1u64 << bits) - 1
}

/// Clamps a counter width to the range the helpers support.
const fn clamp_bits(bits: u32) -> u32 {
    if bits == 0 {
        1
    } else if bits > 63 {
        63
    } else {
        bits
    }
}

/// True if `a` is strictly newer than `b` in a `bits`-wide wrapping counter; exactly half the range apart counts as older.
pub const fn is_newer_bits(a: u64, b: u64, bits: u32) -> bool {
    let diff = a.wrapping_sub(b) & mask(bits);
    diff != 0 && diff < (1u64 << (clamp_bits(bits) - 1))
}

/// True if RTP sequence number `a` is strictly newer than `b`.
pub const fn seq_is_newer(a: u16, b: u16) -> bool {
    is_newer_bits(a as u64, b as u64, SEQ_BITS)
}

/// True if RTP timestamp `a` is strictly newer than `b`.
pub const fn ts_is_newer(a: u32, b: u32) -> bool {
    is_newer_bits(a as u64, b as u64, TS_BITS)
}

/// Adds `delta` to a `bits`-wide counter value, wrapping within that width.
pub const fn wrapping_add_bits(value: u64, delta: u64, bits: u32) -> u64 {
    value.wrapping_add(delta) & mask(bits)
}

/// Subtracts `delta` from a `bits`-wide counter value, wrapping within that width.
pub const fn wrapping_sub_bits(value: u64, delta: u64, bits: u32) -> u64 {
    value.wrapping_sub(delta) & mask(bits)
}

/// The low 16 bits of an extended sequence number: the RTP field value.
pub const fn low_u16(ext: u64) -> u16 {
    let [b0, b1, ..] = ext.to_le_bytes();
    u16::from_le_bytes([b0, b1])
}

/// The low 32 bits of an extended timestamp: the RTP field value.
pub const fn low_u32(ext: u64) -> u32 {
    let [b0, b1, b2, b3, ..] = ext.to_le_bytes();
    u32::from_le_bytes([b0, b1, b2, b3])
}

/// Extends the low `bits` bits in `value` to the extended value nearest to `reference` (forward when less than half the range ahead).
pub const fn extend_near(reference: u64, value: u64, bits: u32) -> u64 {
    let range = mask(bits) + 1;
    let half = range >> 1;
    let diff = value.wrapping_sub(reference) & mask(bits);
    if diff < half {
        reference.saturating_add(diff)
    } else {
        match reference.checked_sub(range - diff) {
            Some(back) => back,
            // No extended value exists behind `reference`: the only candidate is ahead.
            None => reference.saturating_add(diff),
        }
    }
}

/// Shared unwrapping state; the reference is the highest extended value seen.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Unwrap<const BITS: u32> {
    /// Highest extended value returned so far.
    highest: Option<u64>,
}

impl<const BITS: u32> Unwrap<BITS> {
    /// Extends `value`, updating the highest value seen.
    fn unwrap(&mut self, value: u64) -> u64 {
        let ext = match self.highest {
            // Start one full range up so that late packets never underflow.
            None => (value & mask(BITS)) + (1u64 << BITS),
            Some(highest) => extend_near(highest, value, BITS),
        };
        if self.highest.is_none_or(|h| ext > h) {
            self.highest = Some(ext);
        }
        ext
    }
}

/// Turns 16-bit RTP sequence numbers into extended 64-bit ones.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SeqUnwrapper(Unwrap<SEQ_BITS>);

impl SeqUnwrapper {
    /// Creates an unwrapper that has seen no packet yet.
    pub const fn new() -> Self {
        Self(Unwrap { highest: None })
    }

    /// Extends `seq`; a value more than half the range behind the highest seen counts as late.
    pub fn unwrap(&mut self, seq: u16) -> u64 {
        self.0.unwrap(u64::from(seq))
    }

    /// Highest extended sequence number returned so far.
    pub const fn highest(&self) -> Option<u64> {
        self.0.highest
    }
}

/// Turns 32-bit RTP timestamps into extended 64-bit ones.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TsUnwrapper(Unwrap<TS_BITS>);

impl TsUnwrapper {
    /// Creates an unwrapper that has seen no timestamp yet.
    pub const fn new() -> Self {
        Self(Unwrap { highest: None })
    }

    /// Extends `ts`; a value more than half the range behind the highest seen counts as late.
    pub fn unwrap(&mut self, ts: u32) -> u64 {
        self.0.unwrap(u64::from(ts))
    }

    /// Highest extended timestamp returned so far.
    pub const fn highest(&self) -> Option<u64> {
        self.0.highest
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const R16: u64 = 1 << 16;
    const R32: u64 = 1 << 32;

    #[test]
    fn seq_unwrap_tables() {
        // Each row: a name, the incoming sequence numbers, the expected extended values.
        let cases: &[(&str, &[u16], &[u64])] = &[
            ("in order", &[10, 11, 12], &[R16 + 10, R16 + 11, R16 + 12]),
            ("forward wrap", &[65534, 65535, 0, 1], &[R16 + 65534, R16 + 65535, 2 * R16, 2 * R16 + 1]),
            ("late right after start", &[5, 3], &[R16 + 5, R16 + 3]),
            ("late across start at 0", &[0, 65535], &[R16, R16 - 1]),
            ("reorder across wrap", &[65535, 1, 0, 2], &[R16 + 65535, 2 * R16 + 1, 2 * R16, 2 * R16 + 2]),
            (
                "late before wrap after wrap",
                &[65530, 2, 65533, 3],
                &[R16 + 65530, 2 * R16 + 2, R16 + 65533, 2 * R16 + 3],
            ),
            ("duplicates", &[7, 7, 8, 8, 7], &[R16 + 7, R16 + 7, R16 + 8, R16 + 8, R16 + 7]),
            ("gap below half", &[0, 32767], &[R16, R16 + 32767]),
            ("jump of exactly half is late", &[0, 32768], &[R16, R16 - 32768]),
            ("jump above half is late", &[100, 40000], &[R16 + 100, R16 + 40000 - R16]),
            (
                "large forward jumps in steps",
                &[0, 30000, 60000, 24464],
                &[R16, R16 + 30000, R16 + 60000, 2 * R16 + 24464],
            ),
            ("late does not move reference", &[1000, 990, 1001], &[R16 + 1000, R16 + 990, R16 + 1001]),
            (
                "many wraps",
                &[0, 32000, 64000, 30464, 62464, 28928],
                &[R16, R16 + 32000, R16 + 64000, 2 * R16 + 30464, 2 * R16 + 62464, 3 * R16 + 28928],
            ),
        ];
        for (name, input, want) in cases {
            let mut u = SeqUnwrapper::new();
            let got: Vec<u64> = input.iter().map(|&s| u.unwrap(s)).collect();
            assert_eq!(&got[..], *want, "case {name}");
        }
    }

    #[test]
    fn ts_unwrap_tables() {
        let cases: &[(&str, &[u32], &[u64])] = &[
            ("in order", &[0, 3000, 6000], &[R32, R32 + 3000, R32 + 6000]),
            ("forward wrap", &[u32::MAX - 1499, 1500], &[R32 + u64::from(u32::MAX) - 1499, 2 * R32 + 1500]),
            ("reorder across wrap", &[u32::MAX, 10, u32::MAX - 5], &[2 * R32 - 1, 2 * R32 + 10, 2 * R32 - 6]),
            ("same timestamp repeated", &[90_000, 90_000, 90_000], &[R32 + 90_000; 3]),
            ("jump above half is late", &[0, 0x8000_0001], &[R32, R32 - 0x7fff_ffff]),
        ];
        for (name, input, want) in cases {
            let mut u = TsUnwrapper::new();
            let got: Vec<u64> = input.iter().map(|&t| u.unwrap(t)).collect();
            assert_eq!(&got[..], *want, "case {name}");
        }
    }

    #[test]
    fn newer_tables() {
        let seq: &[(u16, u16, bool)] = &[
            (1, 0, true),
            (0, 1, false),
            (0, 65535, true),
            (65535, 0, false),
            (5, 5, false),
            (32767, 0, true),
            (32768, 0, false),
            (0, 32768, false),
        ];
        for &(a, b, want) in seq {
            assert_eq!(seq_is_newer(a, b), want, "seq_is_newer({a}, {b})");
        }
        let ts: &[(u32, u32, bool)] =
            &[(1, 0, true), (0, u32::MAX, true), (u32::MAX, 0, false), (0x8000_0000, 0, false)];
        for &(a, b, want) in ts {
            assert_eq!(ts_is_newer(a, b), want, "ts_is_newer({a}, {b})");
        }
        // (a, b, bits, newer)
        let bits: &[(u64, u64, u32, bool)] = &[
            (0, 127, 7, true),
            (127, 0, 7, false),
            (63, 0, 7, true),
            (64, 0, 7, false),
            (0, 0x7fff, 15, true),
            (0, 31, 5, true),
            (200, 10, 8, false),
            (200, 100, 8, true),
            (10, 200, 8, true),
            (10, 100, 8, false),
        ];
        for &(a, b, n, want) in bits {
            assert_eq!(is_newer_bits(a, b, n), want, "is_newer_bits({a}, {b}, {n})");
        }
    }

    #[test]
    fn wrapping_add_and_extend_tables() {
        // (value, delta, bits, expected)
        let add: &[(u64, u64, u32, u64)] =
            &[(127, 1, 7, 0), (0x7fff, 1, 15, 0), (255, 2, 8, 1), (31, 1, 5, 0), (3, 4, 16, 7)];
        for &(v, d, b, want) in add {
            assert_eq!(wrapping_add_bits(v, d, b), want, "wrapping_add_bits({v}, {d}, {b})");
        }
        let sub: &[(u64, u64, u32, u64)] =
            &[(0, 1, 7, 127), (0, 1, 15, 0x7fff), (1, 2, 8, 255), (5, 3, 5, 2), (3, u64::MAX, 8, 4)];
        for &(v, d, b, want) in sub {
            assert_eq!(wrapping_sub_bits(v, d, b), want, "wrapping_sub_bits({v}, {d}, {b})");
        }
        // (reference, value, bits, expected)
        let ext: &[(u64, u64, u32, u64)] = &[
            (R16 + 10, 12, 16, R16 + 12),
            (R16 + 10, 8, 16, R16 + 8),
            (R16 + 65535, 0, 16, 2 * R16),
            (2 * R16, 65535, 16, 2 * R16 - 1),
            // Nothing exists behind 5, so 65535 extends forward.
            (5, 65535, 16, 65535),
        ];
        for &(r, v, b, want) in ext {
            assert_eq!(extend_near(r, v, b), want, "extend_near({r}, {v}, {b})");
        }
        // (extended, low 16 bits, low 32 bits)
        let low: &[(u64, u16, u32)] =
            &[(0, 0, 0), (R16 + 5, 5, 65541), (R32 + R16 - 1, 65535, 65535), (u64::MAX, u16::MAX, u32::MAX)];
        for &(v, want16, want32) in low {
            assert_eq!((low_u16(v), low_u32(v)), (want16, want32), "low bits of {v}");
        }
    }
}
