//! The vendored interceptor chain's in-place read walk (vendor/patches/rtc-interceptor):
//! interceptors that read in place, between ones that queue, hold until a timeout and generate
//! on it, keep upstream's order and lose nothing; releases reach `poll_read` and `poll_write`
//! after walks that only read in place.

use rtc::interceptor::{Attribute, AttributedPacket, Interceptor, Packet, Registry, Slot, StreamInfo, TaggedPacket};
use rtc::sansio::Protocol;
use rtc::shared::TransportContext;
use rtc::shared::error::Error;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Instant;

type Log = Arc<Mutex<Vec<(&'static str, u16)>>>;

/// What a probe does with what it reads.
#[derive(Clone, Copy, PartialEq)]
enum Kind {
    /// Looks at RTP in place; RTCP through its queue.
    InPlace,
    /// Every packet through its queue.
    Queue,
    /// Holds RTP until a timeout; on a timeout also emits one write-side packet.
    Hold,
}

struct Probe {
    name: &'static str,
    kind: Kind,
    log: Log,
    reads: VecDeque<TaggedPacket>,
    held: Vec<TaggedPacket>,
    writes: VecDeque<TaggedPacket>,
}

/// A packet's identity in the log: an RTP sequence number, 0 for RTCP.
fn id(msg: &TaggedPacket) -> u16 {
    match &msg.message.packet {
        Packet::Rtp(p) => p.header.sequence_number,
        _ => 0, // RTCP
    }
}

fn rtp(seq: u16) -> TaggedPacket {
    let mut p = rtc::rtp::Packet::default();
    p.header.sequence_number = seq;
    TaggedPacket {
        now: Instant::now(),
        transport: TransportContext::default(),
        message: AttributedPacket::new(Packet::Rtp(p)),
    }
}

fn rtcp() -> TaggedPacket {
    let mut msg = rtp(0);
    msg.message.packet = Packet::Rtcp(vec![]);
    // carried past the terminus: an annotated empty RTCP packet goes on
    msg.message.add(Attribute::DeliverToApplication);
    msg
}

impl Protocol<TaggedPacket, TaggedPacket, ()> for Probe {
    type Rout = TaggedPacket;
    type Wout = TaggedPacket;
    type Eout = ();
    type Error = Error;
    type Time = Instant;
    fn handle_read(&mut self, msg: TaggedPacket) -> Result<(), Error> {
        self.log.lock().unwrap().push((self.name, id(&msg)));
        if self.kind == Kind::Hold && id(&msg) != 0 {
            self.held.push(msg);
        } else {
            self.reads.push_back(msg);
        }
        Ok(())
    }
    fn poll_read(&mut self) -> Option<TaggedPacket> {
        self.reads.pop_front()
    }
    fn handle_write(&mut self, msg: TaggedPacket) -> Result<(), Error> {
        self.writes.push_back(msg);
        Ok(())
    }
    fn poll_write(&mut self) -> Option<TaggedPacket> {
        self.writes.pop_front()
    }
    fn handle_timeout(&mut self, _now: Instant) -> Result<(), Error> {
        if self.kind == Kind::Hold {
            self.reads.extend(self.held.drain(..));
            self.writes.push_back(rtcp());
        }
        Ok(())
    }
    fn poll_timeout(&mut self) -> Option<Instant> {
        None
    }
}

impl Interceptor for Probe {
    fn bind_local_stream(&mut self, _info: &StreamInfo) {}
    fn unbind_local_stream(&mut self, _info: &StreamInfo) {}
    fn bind_remote_stream(&mut self, _info: &StreamInfo) {}
    fn unbind_remote_stream(&mut self, _info: &StreamInfo) {}
    fn read_in_place(&mut self, msg: &mut TaggedPacket) -> bool {
        if self.kind != Kind::InPlace || id(msg) == 0 {
            return false;
        }
        self.log.lock().unwrap().push((self.name, id(msg)));
        true
    }
}

/// A step: reads handed in (0 = RTCP), whether a timeout runs after them, then what
/// `poll_read` and `poll_write` give until empty.
struct Step {
    reads: &'static [u16],
    timeout: bool,
    out: &'static [u16],
    written: usize,
}

fn run(kinds: &[(&'static str, Kind)], steps: &[Step]) -> Vec<(&'static str, u16)> {
    let log = Log::default();
    let mut registry = Registry::new();
    for (i, &(name, kind)) in kinds.iter().enumerate() {
        let probe =
            Probe { name, kind, log: log.clone(), reads: VecDeque::new(), held: Vec::new(), writes: VecDeque::new() };
        registry = registry.with(Slot::Custom(1_000 * (i + 1)), probe);
    }
    let mut chain = registry.build();
    for (n, step) in steps.iter().enumerate() {
        for &seq in step.reads {
            chain.handle_read(if seq == 0 { rtcp() } else { rtp(seq) }).unwrap();
        }
        if step.timeout {
            chain.handle_timeout(Instant::now()).unwrap();
        }
        let out: Vec<u16> = std::iter::from_fn(|| chain.poll_read()).map(|m| id(&m)).collect();
        assert_eq!(out, step.out, "step {n}: read output");
        let written = std::iter::from_fn(|| chain.poll_write()).count();
        assert_eq!(written, step.written, "step {n}: write output");
    }
    log.lock().unwrap().clone()
}

#[test]
fn order_and_output_are_upstreams() {
    use Kind::*;
    let step = |reads, timeout, out, written| Step { reads, timeout, out, written };
    // (interceptors wire-most first, steps, what each interceptor saw in order)
    type Row = (Vec<(&'static str, Kind)>, Vec<Step>, Vec<(&'static str, u16)>);
    let rows: Vec<Row> = vec![
        // in place around a queue: two reads before one poll keep their order
        (
            vec![("a", InPlace), ("q", Queue), ("c", InPlace)],
            vec![step(&[1, 2], false, &[1, 2], 0)],
            vec![("a", 1), ("q", 1), ("c", 1), ("a", 2), ("q", 2), ("c", 2)],
        ),
        // RTCP between RTP: declined in place, still in order
        (
            vec![("a", InPlace), ("c", InPlace)],
            vec![step(&[1, 0, 2], false, &[1, 0, 2], 0)],
            vec![("a", 1), ("c", 1), ("a", 0), ("c", 0), ("a", 2), ("c", 2)],
        ),
        // a holder: nothing until its timeout, although every walk since read only in
        // place; what it releases (with RTCP passed meanwhile) reaches those behind it
        (
            vec![("a", InPlace), ("h", Hold), ("c", InPlace)],
            vec![
                step(&[1], false, &[], 0),
                step(&[2, 0], false, &[0], 0),
                step(&[], false, &[], 0),
                step(&[], true, &[1, 2], 1),
                step(&[3], false, &[], 0),
            ],
            vec![
                ("a", 1),
                ("h", 1),
                ("a", 2),
                ("h", 2),
                ("a", 0),
                ("h", 0),
                ("c", 0),
                ("c", 1),
                ("c", 2),
                ("a", 3),
                ("h", 3),
            ],
        ),
    ];
    for (kinds, steps, seen) in rows {
        assert_eq!(run(&kinds, &steps), seen);
    }
}
