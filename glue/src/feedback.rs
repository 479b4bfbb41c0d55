//! An interceptor that lets inbound RTCP reach the application.
//!
//! In `rtc` 0.21 inbound RTCP ends at the interceptor chain's terminus unless some interceptor
//! marks it with [`Attribute::DeliverToApplication`]: without this a publisher never sees a
//! PLI, and the SFU never sees NACKs or sender reports. Marked packets still reach every
//! interceptor after this one (a NACK responder keeps answering NACKs).

use rtc::interceptor::{Attribute, Interceptor, Packet, StreamInfo, TaggedPacket};
use rtc::sansio::Protocol;
use rtc::shared::error::Error;
use std::collections::VecDeque;
use std::time::Instant;

/// Where [`DeliverFeedback`] sits in the chain (application-most of the built-in slots).
pub const SLOT: usize = 14_000;

/// Which inbound RTCP packets the application wants.
pub type Wanted = fn(&dyn rtc::rtcp::Packet) -> bool;

/// Marks the inbound RTCP compound packets the application wants for delivery to it.
pub struct DeliverFeedback {
    wanted: Wanted,
    reads: VecDeque<TaggedPacket>,
    writes: VecDeque<TaggedPacket>,
}

impl Default for DeliverFeedback {
    /// Delivers every inbound RTCP packet.
    fn default() -> Self {
        DeliverFeedback::only(|_| true)
    }
}

impl DeliverFeedback {
    /// Delivers the compound packets holding at least one packet that `wanted` accepts.
    pub fn only(wanted: Wanted) -> Self {
        DeliverFeedback { wanted, reads: VecDeque::new(), writes: VecDeque::new() }
    }

    fn mark(&self, msg: &mut TaggedPacket) {
        if let Packet::Rtcp(pkts) = &msg.message.packet
            && pkts.iter().any(|p| (self.wanted)(p.as_ref()))
        {
            msg.message.add(Attribute::DeliverToApplication);
        }
    }
}

impl Protocol<TaggedPacket, TaggedPacket, ()> for DeliverFeedback {
    type Rout = TaggedPacket;
    type Wout = TaggedPacket;
    type Eout = ();
    type Error = Error;
    type Time = Instant;

    fn handle_read(&mut self, mut msg: TaggedPacket) -> Result<(), Error> {
        self.mark(&mut msg);
        self.reads.push_back(msg);
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
        Ok(())
    }

    fn poll_timeout(&mut self) -> Option<Instant> {
        None
    }
}

impl Interceptor for DeliverFeedback {
    /// It only marks what it reads: read where it lies, not moved through `reads`.
    fn read_in_place(&mut self, msg: &mut TaggedPacket) -> bool {
        self.mark(msg);
        true
    }

    fn bind_local_stream(&mut self, _info: &StreamInfo) {}
    fn unbind_local_stream(&mut self, _info: &StreamInfo) {}
    fn bind_remote_stream(&mut self, _info: &StreamInfo) {}
    fn unbind_remote_stream(&mut self, _info: &StreamInfo) {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use rtc::interceptor::AttributedPacket;
    use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
    use rtc::rtcp::receiver_report::ReceiverReport;
    use rtc::shared::TransportContext;

    fn rtcp(pkts: Vec<Box<dyn rtc::rtcp::Packet>>) -> TaggedPacket {
        let message = AttributedPacket::new(Packet::Rtcp(pkts));
        TaggedPacket { now: Instant::now(), transport: TransportContext::default(), message }
    }

    fn delivered(msg: &TaggedPacket) -> bool {
        msg.message.get(&Attribute::DeliverToApplication).is_some()
    }

    #[test]
    fn marks_the_compound_packets_the_application_wants() {
        let pli = || Box::new(PictureLossIndication::default()) as Box<dyn rtc::rtcp::Packet>;
        let rr = || Box::new(ReceiverReport::default()) as Box<dyn rtc::rtcp::Packet>;
        let only_pli: Wanted = |p| p.as_any().is::<PictureLossIndication>();
        // columns: filter, packets, delivered
        let rows: Vec<(Wanted, Vec<Box<dyn rtc::rtcp::Packet>>, bool)> = vec![
            (|_| true, vec![rr()], true),
            (only_pli, vec![rr()], false),
            (only_pli, vec![rr(), pli()], true),
            (only_pli, vec![], false),
        ];
        for (i, (wanted, pkts, want)) in rows.into_iter().enumerate() {
            let mut d = DeliverFeedback::only(wanted);
            let mut in_place = rtcp(pkts.iter().map(|p| p.cloned()).collect());
            assert!(d.read_in_place(&mut in_place));
            assert_eq!(delivered(&in_place), want, "row {i}, in place");
            d.handle_read(rtcp(pkts)).unwrap();
            assert_eq!(delivered(&d.poll_read().unwrap()), want, "row {i}, queued");
        }
    }
}
