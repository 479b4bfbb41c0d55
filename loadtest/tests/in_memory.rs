//! The publisher against a plain `rtc` receiver, wired in memory with a virtual clock: media
//! flows, RTCP reports reach both sides, and a PLI turns the next frame into a keyframe.

use loadtest::probe::WallClock;
use loadtest::publisher::{PublishOptions, Publisher};
use loadtest::subscriber::Subscriber;
use rtc::peer_connection::RTCPeerConnection;
use rtc::peer_connection::event::RTCPeerConnectionEvent;
use rtc::peer_connection::event::RTCTrackEvent;
use rtc::peer_connection::message::RTCMessage;
use rtc::peer_connection::sdp::RTCSessionDescription;
use rtc::peer_connection::state::RTCPeerConnectionState;
use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use rtc::sansio::Protocol;
use rtc::shared::{TaggedBytesMut, TransportContext, TransportProtocol};
use signaling::protocol::{TrackKind, TrackRef};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

fn deliver(to: &mut RTCPeerConnection, from: SocketAddr, local: SocketAddr, now: Instant, data: bytes::BytesMut) {
    let transport =
        TransportContext { local_addr: local, peer_addr: from, ecn: None, transport_protocol: TransportProtocol::UDP };
    to.handle_read(TaggedBytesMut { now, transport, message: data }).expect("handle_read");
}

/// `a` offers (with the publisher's tracks), `b` answers; returns the offer.
fn negotiate(a: &mut RTCPeerConnection, b: &mut RTCPeerConnection, now: Instant) -> String {
    let offer = a.create_offer(None).unwrap();
    a.set_local_description(now, offer).unwrap();
    let offer = a.local_description().unwrap().sdp;
    b.set_remote_description(now, RTCSessionDescription::offer(offer.clone()).unwrap()).unwrap();
    let answer = b.create_answer(None).unwrap();
    b.set_local_description(now, answer).unwrap();
    let sdp = b.local_description().unwrap().sdp;
    a.set_remote_description(now, RTCSessionDescription::answer(sdp).unwrap()).unwrap();
    offer
}

/// What one [`pump`] read on each side.
#[derive(Default)]
struct Read {
    rtcp_at_a: u32,
    rtcp_at_b: u32,
    rtp_at_b: u32,
}

/// Moves datagrams both ways at `now` until both connections are idle: `a` carries the
/// publisher (started once connected, fed its RTCP); `b` feeds `subscriber`, when given, as the
/// engine does (track events, media, feedback); `lose` drops a datagram from `a` on the way.
fn pump(
    (a, a_addr): (&mut RTCPeerConnection, SocketAddr),
    (b, b_addr): (&mut RTCPeerConnection, SocketAddr),
    publisher: &mut Publisher,
    mut subscriber: Option<&mut Subscriber>,
    now: Instant,
    mut lose: impl FnMut(&[u8], &Publisher) -> bool,
) -> Read {
    let mut read = Read::default();
    let mut moved = true;
    while moved {
        moved = false;
        while let Some(out) = a.poll_write() {
            moved = true;
            if !lose(&out.message, publisher) {
                deliver(b, a_addr, b_addr, now, out.message);
            }
        }
        while let Some(out) = b.poll_write() {
            moved = true;
            deliver(a, b_addr, a_addr, now, out.message);
        }
        while let Some(e) = a.poll_event() {
            if let RTCPeerConnectionEvent::OnConnectionStateChangeEvent(RTCPeerConnectionState::Connected) = e {
                publisher.start(now);
            }
        }
        while let Some(e) = b.poll_event() {
            if let (Some(s), RTCPeerConnectionEvent::OnTrack(RTCTrackEvent::OnOpen(init))) =
                (subscriber.as_deref_mut(), e)
            {
                s.on_track_open(b, &init);
            }
        }
        while let Some(m) = a.poll_read() {
            if let RTCMessage::RtcpPacket(_, p) = m.message {
                read.rtcp_at_a += 1;
                publisher.on_rtcp(&p);
            }
        }
        while let Some(m) = b.poll_read() {
            match m.message {
                RTCMessage::RtcpPacket(..) => read.rtcp_at_b += 1,
                RTCMessage::RtpPacket(track, pkt) => {
                    read.rtp_at_b += 1;
                    if let Some(s) = subscriber.as_deref_mut() {
                        s.on_rtp(&track, &pkt, now, 0);
                    }
                }
                _ => {}
            }
        }
        if let Some(s) = subscriber.as_deref_mut() {
            s.send_feedback(b, now, 0);
        }
    }
    read
}

#[test]
fn publisher_media_reports_and_keyframe_on_pli() {
    let a_addr: SocketAddr = "127.0.0.1:40000".parse().unwrap();
    let b_addr: SocketAddr = "127.0.0.1:40001".parse().unwrap();
    let t0 = Instant::now();
    let mut a = loadtest::peer::new_connection(a_addr, t0).unwrap();
    let mut b = loadtest::peer::new_connection(b_addr, t0).unwrap();
    let opts = PublishOptions { keyframe_interval: Duration::from_secs(100), ..Default::default() };
    let mut publisher = Publisher::new(&mut a, opts).unwrap();
    let sdp = negotiate(&mut a, &mut b, t0);
    assert!(sdp.contains("a=simulcast:send q;h;f"), "{sdp}");

    let clock = WallClock::new();
    let (mut rtcp_at_a, mut rtcp_at_b, mut rtp_at_b) = (0, 0, 0);
    let mut pli_sent = false;
    let mut now = t0;
    while now < t0 + Duration::from_secs(4) {
        let read = pump((&mut a, a_addr), (&mut b, b_addr), &mut publisher, None, now, |_, _| false);
        rtcp_at_a += read.rtcp_at_a;
        rtcp_at_b += read.rtcp_at_b;
        rtp_at_b += read.rtp_at_b;
        now += Duration::from_millis(10);
        if !pli_sent && now > t0 + Duration::from_secs(2) {
            pli_sent = true;
            let receiver = b.get_receivers().last().expect("a receiver");
            let pli = PictureLossIndication { sender_ssrc: 0, media_ssrc: publisher.stats.video_ssrcs[1] };
            b.rtp_receiver(receiver).unwrap().write_rtcp(now, vec![Box::new(pli)]).unwrap();
        }
        a.handle_timeout(now).unwrap();
        b.handle_timeout(now).unwrap();
        publisher.on_timer(&mut a, now, &clock);
    }
    let s = &publisher.stats;
    assert!(s.frames.iter().all(|f| *f >= 95), "25 fps for ~4 s: {s:?}");
    assert!(s.audio_packets >= 190, "50 packets/s: {s:?}");
    assert_eq!(s.write_errors, 0);
    assert!(rtp_at_b as u64 >= s.audio_packets + s.video_packets - 5, "{rtp_at_b} {s:?}");
    assert!(rtcp_at_b > 0, "sender reports reach the receiver");
    assert!(rtcp_at_a > 0, "receiver reports and the PLI reach the publisher");
    assert_eq!(s.keyframe_requests, [0, 1, 0], "the PLI names layer h");
    assert_eq!(s.keyframes, [1, 2, 1], "layer h answered the PLI with a keyframe");
}

/// A receiver built as the engine builds subscriber connections, with the engine's
/// [`Subscriber`] logic on top, asks for a lost packet again (the publisher sees a NACK) and
/// sends receiver reports.
#[test]
fn lean_subscriber_connection_nacks_a_lost_packet() {
    let a_addr: SocketAddr = "127.0.0.1:40002".parse().unwrap();
    let b_addr: SocketAddr = "127.0.0.1:40003".parse().unwrap();
    let t0 = Instant::now();
    let mut a = loadtest::peer::new_connection_for(a_addr, loadtest::Role::Publisher, t0).unwrap();
    let mut b = loadtest::peer::new_connection_for(b_addr, loadtest::Role::Subscriber, t0).unwrap();
    let opts = PublishOptions { audio: false, keyframe_interval: Duration::from_secs(100), ..Default::default() };
    let mut publisher = Publisher::new(&mut a, opts).unwrap();
    let offer = a.create_offer(None).unwrap();
    a.set_local_description(t0, offer).unwrap();
    let offer = a.local_description().unwrap().sdp;
    let video = TrackRef { participant: "PA_a".into(), track: "TR_v".into(), kind: TrackKind::Video };
    let mut subscriber = Subscriber::default();
    let answer = subscriber.on_offer(&mut b, offer, [("0".to_owned(), video)].into(), t0).unwrap();
    a.set_remote_description(t0, RTCSessionDescription::answer(answer).unwrap()).unwrap();

    let clock = WallClock::new();
    let (mut rtp_seen, mut dropped, mut receiver_reports) = (0u32, false, 0u32);
    let mut now = t0;
    while now < t0 + Duration::from_secs(3) {
        let lose = |d: &[u8], publisher: &Publisher| {
            let rtp = d.len() > 12 && d[0] >> 6 == 2 && !(192..=223).contains(&d[1]);
            if rtp && publisher.stats.video_packets > 0 {
                rtp_seen += 1;
                if rtp_seen == 60 && !dropped {
                    dropped = true;
                    return true; // lost on the way
                }
            }
            false
        };
        let before = publisher.stats.clone();
        let read = pump((&mut a, a_addr), (&mut b, b_addr), &mut publisher, Some(&mut subscriber), now, lose);
        // RTCP at the publisher that is neither a NACK nor a keyframe request: receiver reports
        receiver_reports += read.rtcp_at_a.saturating_sub((publisher.stats.nacks - before.nacks) as u32);
        now += Duration::from_millis(10);
        a.handle_timeout(now).unwrap();
        b.handle_timeout(now).unwrap();
        publisher.on_timer(&mut a, now, &clock);
    }
    assert!(dropped, "a video packet was dropped ({rtp_seen} seen)");
    assert!(publisher.stats.nacks > 0, "the subscriber connection NACKed the lost packet: {:?}", publisher.stats);
    // (the three simulcast streams all land on the one mid here: no per-stream loss to check)
    let t = &subscriber.tracks[0].stats;
    assert_eq!(t.nacks_sent, 1, "asked once: the retransmission arrived before the retry");
    assert!((2..=4).contains(&receiver_reports), "about one receiver report a second for 3 s: {receiver_reports}");
}
