//! Tests of `munger.rs` (kept in their own file so both stay short).

use super::*;

/// Base of the incoming extended sequence numbers in the tables.
const S: u64 = 1 << 16;
/// Base of the incoming extended timestamps (and of outgoing ones passed as `out_ts`).
const T: u64 = 1 << 32;

/// One step of a munger scenario; sequence numbers and timestamps are relative to `S` and `T`.
#[derive(Debug, Clone, Copy)]
enum Op {
    /// `switch_source` at `ms` milliseconds.
    Switch { seq: u64, ts: u64, out_ts: Option<u64>, ms: u64 },
    /// `forward` at `ms`, expecting `want`.
    Fwd { seq: u64, ts: u64, ms: u64, want: Option<(u16, u32)> },
    /// `drop_packet`.
    Drop(u64),
    /// `out_to_in`, expecting the origin relative to `S`.
    Nack(u16, Option<SeqOrigin>),
    /// `reserve_padding`, expecting the slot and timestamp (or a refusal).
    Pad(Option<(u16, u32)>),
}
use Op::{Drop, Nack, Pad};

/// Switch without an SR-derived timestamp.
const fn sw(seq: u64, ts: u64, ms: u64) -> Op {
    Op::Switch { seq: S + seq, ts: T + ts, out_ts: None, ms }
}

/// Switch with an SR-derived outgoing timestamp (relative to `T`, like the munger's extended space).
const fn sw_sr(seq: u64, ts: u64, out_ts: u64, ms: u64) -> Op {
    Op::Switch { seq: S + seq, ts: T + ts, out_ts: Some(T + out_ts), ms }
}

/// Forward expecting an outgoing (seq, ts).
const fn fwd(seq: u64, ts: u64, ms: u64, want: (u16, u32)) -> Op {
    Op::Fwd { seq: S + seq, ts: T + ts, ms, want: Some(want) }
}

/// Forward expecting the packet to be refused.
const fn refused(seq: u64, ts: u64, ms: u64) -> Op {
    Op::Fwd { seq: S + seq, ts: T + ts, ms, want: None }
}

/// Drop of an incoming packet.
const fn drop_(seq: u64) -> Op {
    Drop(S + seq)
}

/// Expected NACK origin in the current source.
const fn cur(seq: u64) -> Option<SeqOrigin> {
    Some(SeqOrigin::Current(S + seq))
}

/// Expected NACK origin in the previous source.
const fn prev(seq: u64) -> Option<SeqOrigin> {
    Some(SeqOrigin::Previous(S + seq))
}

/// A named table of operations on a fresh munger.
struct Scenario<'a> {
    name: &'static str,
    clock: u32,
    init_seq: u16,
    init_ts: u32,
    ops: &'a [Op],
}

/// Runs every scenario, checking each expectation.
fn run(scenarios: &[Scenario]) {
    let base = Instant::now();
    let at = |ms: u64| base + Duration::from_millis(ms);
    for sc in scenarios {
        let mut m = RtpMunger::new(sc.clock, sc.init_seq, sc.init_ts);
        for (i, op) in sc.ops.iter().enumerate() {
            match *op {
                Op::Switch { seq, ts, out_ts, ms } => m.switch_source(seq, ts, out_ts, at(ms)),
                Op::Fwd { seq, ts, ms, want } => {
                    assert_eq!(m.forward(seq, ts, at(ms)), want, "{}: op {i} {op:?}", sc.name);
                }
                Drop(seq) => m.drop_packet(seq),
                Nack(out, want) => assert_eq!(m.out_to_in(out), want, "{}: op {i} {op:?}", sc.name),
                Pad(want) => assert_eq!(m.reserve_padding(), want, "{}: op {i} {op:?}", sc.name),
            }
        }
    }
}

#[test]
fn sequence_tables() {
    run(&[
        Scenario {
            name: "loss keeps the gap, late packet fills its slot",
            clock: 90_000,
            init_seq: 1000,
            init_ts: 5000,
            ops: &[
                sw(100, 0, 0),
                fwd(100, 0, 0, (1000, 5000)),
                fwd(101, 0, 1, (1001, 5000)),
                fwd(104, 3000, 33, (1004, 8000)),
                fwd(102, 0, 34, (1002, 5000)),
                Nack(1003, cur(103)),
                Nack(1002, cur(102)),
                Nack(1000, cur(100)),
                Nack(999, None),
                Nack(1005, None),
            ],
        },
        Scenario {
            name: "outgoing seq wraps at 16 bits",
            clock: 90_000,
            init_seq: 65534,
            init_ts: 5000,
            ops: &[
                sw(10, 0, 0),
                fwd(10, 0, 0, (65534, 5000)),
                fwd(11, 0, 0, (65535, 5000)),
                fwd(12, 3000, 33, (0, 8000)),
                fwd(13, 3000, 33, (1, 8000)),
                Nack(65535, cur(11)),
                Nack(0, cur(12)),
                Nack(2, None),
            ],
        },
        Scenario {
            name: "incoming seq crosses a 16-bit boundary",
            clock: 90_000,
            init_seq: 1000,
            init_ts: 5000,
            ops: &[
                sw(65534, 0, 0),
                fwd(65534, 0, 0, (1000, 5000)),
                fwd(65535, 0, 0, (1001, 5000)),
                fwd(65537, 0, 0, (1003, 5000)),
                fwd(65536, 0, 0, (1002, 5000)),
                Nack(1002, cur(65536)),
            ],
        },
        Scenario {
            name: "drops in the middle close the gap, losses keep it",
            clock: 90_000,
            init_seq: 1000,
            init_ts: 5000,
            ops: &[
                sw(0, 0, 0),
                fwd(0, 0, 0, (1000, 5000)),
                fwd(1, 0, 0, (1001, 5000)),
                drop_(2),
                drop_(3),
                fwd(4, 3000, 33, (1002, 8000)),
                drop_(6),
                fwd(7, 6000, 66, (1004, 11000)),
                fwd(5, 3000, 67, (1003, 8000)),
                refused(3, 0, 67),
                refused(2, 0, 67),
                refused(6, 3000, 67),
                Nack(1001, cur(1)),
                Nack(1002, cur(4)),
                Nack(1003, cur(5)),
                Nack(1004, cur(7)),
                Nack(1005, None),
            ],
        },
        Scenario {
            name: "reordering and duplicates",
            clock: 90_000,
            init_seq: 1000,
            init_ts: 5000,
            ops: &[
                sw(0, 0, 0),
                fwd(0, 0, 0, (1000, 5000)),
                fwd(2, 0, 0, (1002, 5000)),
                fwd(1, 0, 0, (1001, 5000)),
                fwd(3, 0, 0, (1003, 5000)),
                fwd(2, 0, 0, (1002, 5000)),
                // A late drop cannot take back a slot already handed out.
                drop_(1),
                fwd(4, 0, 0, (1004, 5000)),
                Nack(1001, cur(1)),
            ],
        },
        Scenario {
            name: "nothing is forwarded before the first switch",
            clock: 90_000,
            init_seq: 1000,
            init_ts: 5000,
            ops: &[refused(0, 0, 0), drop_(0), Nack(1000, None), sw(5, 0, 0), fwd(5, 0, 0, (1000, 5000))],
        },
        Scenario {
            name: "packets before the source start are refused and not dropped",
            clock: 90_000,
            init_seq: 1000,
            init_ts: 5000,
            ops: &[
                sw(100, 0, 0),
                refused(99, 0, 0),
                drop_(99),
                fwd(100, 0, 0, (1000, 5000)),
                fwd(101, 0, 0, (1001, 5000)),
                refused(98, 0, 0),
            ],
        },
        Scenario {
            name: "packets half the range late are refused",
            clock: 90_000,
            init_seq: 1000,
            init_ts: 5000,
            ops: &[
                sw(0, 0, 0),
                fwd(0, 0, 0, (1000, 5000)),
                fwd(40_000, 0, 1, (41_000, 5000)),
                refused(7231, 0, 1),
                fwd(7233, 0, 1, (8233, 5000)),
            ],
        },
    ]);
}

#[test]
fn timestamp_and_switch_tables() {
    run(&[
        Scenario {
            name: "outgoing timestamp wraps at 32 bits",
            clock: 90_000,
            init_seq: 1000,
            init_ts: u32::MAX - 999,
            ops: &[
                sw(0, 0, 0),
                fwd(0, 0, 0, (1000, u32::MAX - 999)),
                fwd(1, 3000, 33, (1001, 2000)),
                sw(500, 90_000, 66),
                fwd(500, 90_000, 66, (1002, 4970)),
                fwd(501, 93_000, 99, (1003, 7970)),
            ],
        },
        Scenario {
            name: "incoming timestamp crosses a 32-bit boundary",
            clock: 90_000,
            init_seq: 1000,
            init_ts: 5000,
            ops: &[
                sw(0, 0xffff_f000, 0),
                fwd(0, 0xffff_f000, 0, (1000, 5000)),
                fwd(1, 0x1_0000_0bb8, 33, (1001, 5000 + 0x1000 + 3000)),
            ],
        },
        Scenario {
            name: "switch without SR timestamp uses the wall clock",
            clock: 90_000,
            init_seq: 1000,
            init_ts: 5000,
            ops: &[
                sw(500, 0, 0),
                fwd(500, 0, 0, (1000, 5000)),
                fwd(501, 3000, 33, (1001, 8000)),
                // Same frame, later packet: the frame's time stays that of its first packet.
                fwd(502, 3000, 40, (1002, 8000)),
                sw(9000, 777_777, 100),
                fwd(9000, 777_777, 100, (1003, 8000 + 67 * 90)),
                fwd(9001, 780_777, 133, (1004, 8000 + 67 * 90 + 3000)),
                refused(503, 3000, 134),
                Nack(1002, prev(502)),
                Nack(1000, prev(500)),
                Nack(1003, cur(9000)),
            ],
        },
        Scenario {
            name: "switch with SR timestamp, raised when behind",
            clock: 90_000,
            init_seq: 1000,
            init_ts: 5000,
            ops: &[
                sw(0, 0, 0),
                fwd(0, 0, 0, (1000, 5000)),
                fwd(1, 3000, 33, (1001, 8000)),
                sw_sr(7000, 123_456, 12_500, 50),
                fwd(7000, 123_456, 50, (1002, 12_500)),
                fwd(7001, 126_456, 83, (1003, 15_500)),
                sw_sr(20, 1000, 15_000, 90),
                fwd(20, 1000, 90, (1004, 15_501)),
            ],
        },
        Scenario {
            name: "switch in the same instant advances one tick",
            clock: 90_000,
            init_seq: 1000,
            init_ts: 5000,
            ops: &[sw(0, 0, 0), fwd(0, 0, 0, (1000, 5000)), sw(300, 50, 0), fwd(300, 50, 0, (1001, 5001))],
        },
        Scenario {
            name: "first switch ignores the SR timestamp",
            clock: 90_000,
            init_seq: 1000,
            init_ts: 5000,
            ops: &[sw_sr(0, 0, 77_777, 0), fwd(0, 0, 0, (1000, 5000))],
        },
        Scenario {
            name: "switch right after a drop leaves no gap",
            clock: 90_000,
            init_seq: 1000,
            init_ts: 5000,
            ops: &[
                sw(0, 0, 0),
                fwd(0, 0, 0, (1000, 5000)),
                fwd(1, 0, 0, (1001, 5000)),
                drop_(2),
                drop_(3),
                sw(800, 9000, 10),
                fwd(800, 9000, 10, (1002, 5900)),
                Nack(1001, prev(1)),
                Nack(1002, cur(800)),
            ],
        },
        Scenario {
            name: "first packet of a new source dropped",
            clock: 90_000,
            init_seq: 1000,
            init_ts: 5000,
            ops: &[
                sw(0, 0, 0),
                fwd(0, 0, 0, (1000, 5000)),
                sw(50, 0, 20),
                drop_(50),
                fwd(51, 0, 20, (1001, 6800)),
                refused(50, 0, 20),
                Nack(1001, cur(51)),
                Nack(1000, prev(0)),
            ],
        },
        Scenario {
            name: "two switches without forwarding in between",
            clock: 90_000,
            init_seq: 1000,
            init_ts: 5000,
            ops: &[
                sw(0, 0, 0),
                fwd(0, 0, 0, (1000, 5000)),
                sw(100, 0, 10),
                sw(200, 0, 20),
                fwd(200, 0, 20, (1001, 6800)),
                refused(100, 0, 21),
                Nack(1001, cur(200)),
                // Two sources back is not answered.
                Nack(1000, None),
            ],
        },
        Scenario {
            name: "audio clock across a long pause",
            clock: 48_000,
            init_seq: 7,
            init_ts: 0,
            ops: &[
                sw(0, 0, 0),
                fwd(0, 0, 0, (7, 0)),
                fwd(1, 960, 20, (8, 960)),
                sw(9, 4800, 10_020),
                fwd(9, 4800, 10_020, (9, 960 + 480_000)),
            ],
        },
    ]);
}

#[test]
fn padding_tables() {
    run(&[
        Scenario {
            name: "nothing forwarded: no slot for padding",
            clock: 90_000,
            init_seq: 1000,
            init_ts: 5000,
            ops: &[Pad(None), sw(100, 0, 0), Pad(None), fwd(100, 0, 0, (1000, 5000)), Pad(Some((1001, 5000)))],
        },
        Scenario {
            name: "padding takes the next slots, media continues after them, NACKs of padding go unanswered",
            clock: 90_000,
            init_seq: 1000,
            init_ts: 5000,
            ops: &[
                sw(100, 0, 0),
                fwd(100, 0, 0, (1000, 5000)),
                Pad(Some((1001, 5000))),
                Pad(Some((1002, 5000))),
                fwd(101, 3000, 33, (1003, 8000)),
                Nack(1000, cur(100)),
                Nack(1001, None),
                Nack(1002, None),
                Nack(1003, cur(101)),
            ],
        },
        Scenario {
            name: "a late packet from before the padding keeps its slot",
            clock: 90_000,
            init_seq: 1000,
            init_ts: 5000,
            ops: &[
                sw(100, 0, 0),
                fwd(100, 0, 0, (1000, 5000)),
                fwd(102, 0, 1, (1002, 5000)),
                Pad(Some((1003, 5000))),
                fwd(101, 0, 2, (1001, 5000)),
                fwd(103, 3000, 33, (1004, 8000)),
                Nack(1001, cur(101)),
                Nack(1003, None),
                Nack(1004, cur(103)),
            ],
        },
        Scenario {
            name: "padding after a dropped packet, and a drop after padding",
            clock: 90_000,
            init_seq: 1000,
            init_ts: 5000,
            ops: &[
                sw(100, 0, 0),
                fwd(100, 0, 0, (1000, 5000)),
                drop_(101),
                Pad(Some((1001, 5000))),
                drop_(102),
                fwd(103, 3000, 33, (1002, 8000)),
                Nack(1001, None),
                Nack(1002, cur(103)),
            ],
        },
        Scenario {
            name: "a switch after padding starts the new source after it",
            clock: 90_000,
            init_seq: 1000,
            init_ts: 5000,
            ops: &[
                sw(100, 0, 0),
                fwd(100, 0, 0, (1000, 5000)),
                Pad(Some((1001, 5000))),
                sw_sr(500, 9000, 8000, 33),
                fwd(500, 9000, 33, (1002, 8000)),
                Nack(1001, None),
                Nack(1000, prev(100)),
            ],
        },
    ]);
}

#[test]
fn history_eviction_refuses_what_it_forgot() {
    let now = Instant::now();
    let mut m = RtpMunger::new(90_000, 1000, 0);
    m.switch_source(S, T, None, now);
    assert_eq!(m.forward(S, T, now), Some((1000, 0)));
    // Blocks of three: a dropped packet, a lost one (keeps a slot), a forwarded one.
    let blocks = 200u64;
    for i in 0..blocks {
        m.drop_packet(S + 3 * i + 1);
        let want = 1002 + 2 * i;
        assert_eq!(m.forward(S + 3 * i + 3, T, now), Some((low_u16(want), 0)), "block {i}");
    }
    let last = blocks - 1;
    // A recent lost packet arrives late and gets its slot.
    assert_eq!(m.forward(S + 3 * last + 2, T, now), Some((low_u16(1001 + 2 * last), 0)));
    assert_eq!(m.out_to_in(low_u16(1001 + 2 * last)), Some(SeqOrigin::Current(S + 3 * last + 2)));
    // The oldest segments were evicted: neither direction guesses.
    assert_eq!(m.forward(S + 2, T, now), None);
    assert_eq!(m.out_to_in(1001), None);
    assert_eq!(m.last_out_seq(), Some(S + 1001 + 2 * last + 1));
    assert_eq!(m.last_out_ts(), Some(T));
}

#[test]
fn an_ended_source_forwards_nothing_and_the_next_continues_the_numbering() {
    let t0 = Instant::now();
    let mut m = RtpMunger::new(48_000, 100, 5_000);
    m.switch_source(S + 10, T, None, t0);
    assert_eq!(m.forward(S + 10, T, t0), Some((100, 5_000)));
    assert_eq!(m.forward(S + 11, T + 960, t0), Some((101, 5_960)));
    assert!(m.has_source());
    m.end_source();
    assert!(!m.has_source());
    // the old stream's late packets and anything else go nowhere until a switch
    assert_eq!(m.forward(S + 12, T + 1_920, t0), None);
    // a new source far away in both spaces (another publisher): the next number, a later time
    let later = t0 + std::time::Duration::from_millis(20);
    m.switch_source(S + 40_000, T + 7_777_777, None, later);
    assert_eq!(m.forward(S + 40_000, T + 7_777_777, later), Some((102, 5_960 + 960)));
}
