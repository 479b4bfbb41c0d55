//! Bad input while a conference is running: garbage datagrams on the media port, SRTP-looking
//! junk from a publisher's own address, and malformed signaling. Each is rejected (and counted
//! where the server can tell), and the conference goes on without loss.

mod common;

use common::{Harness, STEP, dropped_metric, remote_tracks, track_of};
use loadtest::{Client, ClientStats, Outbound, Role};
use sfu::drop_reason::DropReason::{self, BadStun, UnknownSource, UnknownUfrag};
use signaling::protocol::{ClientMessage, ErrorCode, TrackKind};
use std::time::{SystemTime, UNIX_EPOCH};

/// A publisher and a subscriber with media flowing; returns (publisher, subscriber, video, audio).
async fn conference(h: &Harness, room: &str) -> (Client, Client, String, String) {
    let publisher = h.publisher(room, "pub").await;
    let mut sub = h.join(room, "sub").await;
    let tracks = remote_tracks(&mut sub, 2).await;
    let (video, audio) = (track_of(&tracks, TrackKind::Video), track_of(&tracks, TrackKind::Audio));
    let (v, a) = (video.clone(), audio.clone());
    sub.wait_stats(STEP, "media flowing", move |s: &ClientStats| {
        s.track(&v).is_some_and(|t| t.keyframes > 0) && s.track(&a).is_some_and(|t| t.packets > 0)
    })
    .await
    .unwrap();
    (publisher, sub, video, audio)
}

/// `sfu_rtc_rejected_packets_total{stage}` from a metrics text (0 when absent).
fn rtc_rejected_metric(metrics: &str, stage: &str) -> u64 {
    let key = format!("sfu_rtc_rejected_packets_total{{stage=\"{stage}\"}} ");
    metrics.lines().find_map(|l| l.strip_prefix(&key)).and_then(|v| v.trim().parse().ok()).unwrap_or(0)
}

fn unix_us() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_micros() as u64
}

/// Waits until `sub` received video and audio sent after `after_us` plus `extra_us`, then
/// checks both streams are intact. Datagrams sent before `after_us` were queued on the server's
/// socket ahead of that media (loopback delivery is synchronous and the reader is FIFO), so
/// they have been handled by then.
async fn assert_flowing_after(sub: &mut Client, video: &str, audio: &str, after_us: u64, extra_us: u64) -> ClientStats {
    let (v, a) = (video.to_string(), audio.to_string());
    let s = sub
        .wait_stats(STEP, "media sent after the bad input", move |s: &ClientStats| {
            [&v, &a].iter().all(|t| s.track(t).is_some_and(|t| t.newest_sent_us > after_us + extra_us))
        })
        .await
        .unwrap();
    for t in [video, audio] {
        let t = s.track(t).unwrap();
        assert_eq!((t.lost, t.duplicates, t.out_of_order, t.malformed), (0, 0, 0, 0), "{t:?}");
        assert_eq!((t.ts_backwards, t.picture_id_jumps, t.bad_keyframes), (0, 0, 0), "{t:?}");
    }
    s
}

fn stun_binding_request(username: &str, declared_extra: u16) -> Vec<u8> {
    let mut attr = vec![0x00, 0x06];
    attr.extend_from_slice(&(username.len() as u16).to_be_bytes());
    attr.extend_from_slice(username.as_bytes());
    while attr.len() % 4 != 0 {
        attr.push(0);
    }
    let mut pkt = vec![0x00, 0x01];
    pkt.extend_from_slice(&(attr.len() as u16 + declared_extra).to_be_bytes());
    pkt.extend_from_slice(&[0x21, 0x12, 0xa4, 0x42]);
    pkt.extend_from_slice(&[7; 12]);
    pkt.extend_from_slice(&attr);
    pkt
}

/// Deterministic pseudo-random bytes that never look like STUN.
fn junk(seed: u32, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(2_654_435_761).max(1);
    let mut v: Vec<u8> = (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect();
    if let Some(b) = v.first_mut() {
        *b |= 0x80; // not STUN (first byte 0-3), not DTLS (20-63)
    }
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_datagrams_are_dropped_and_counted() {
    let h = Harness::start().await;
    let (_publisher, mut sub, video, audio) = conference(&h, "garbage").await;
    let m = &h.server.media_metrics;
    let before = |r: DropReason| m.dropped(r);
    let (src0, stun0, ufrag0) = (before(UnknownSource), before(BadStun), before(UnknownUfrag));
    let in0 = m.udp_in_packets.get();

    let mut rtp_junk = vec![0x80, 0x60, 0x12, 0x34, 0, 0, 0, 1, 0xde, 0xad, 0xbe, 0xef];
    rtp_junk.extend(junk(9, 200));
    let mut stun_truncated = stun_binding_request("someufrag:x", 0);
    stun_truncated[3] = 0xff; // declares a longer body than it has: USERNAME unreadable
    let datagrams: Vec<(Vec<u8>, DropReason)> = vec![
        (junk(1, 200), UnknownSource),
        (junk(2, 1200), UnknownSource),
        (junk(3, 37), UnknownSource),
        (vec![0x42], UnknownSource),
        (stun_binding_request("nobody:x", 0)[..12].to_vec(), UnknownSource),
        (rtp_junk, UnknownSource),
        (stun_truncated, BadStun),
        (stun_binding_request("nobody:x", 0), UnknownUfrag),
    ];
    let attacker = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    for (d, _) in &datagrams {
        attacker.send_to(d, h.server.udp).await.unwrap();
    }
    let sent_at = unix_us();
    assert_flowing_after(&mut sub, &video, &audio, sent_at, 0).await;

    let count = |r: DropReason| datagrams.iter().filter(|(_, why)| *why == r).count() as u64;
    assert_eq!(before(UnknownSource) - src0, count(UnknownSource));
    assert_eq!(before(BadStun) - stun0, count(BadStun));
    assert_eq!(before(UnknownUfrag) - ufrag0, count(UnknownUfrag));
    assert!(m.udp_in_packets.get() - in0 >= datagrams.len() as u64);
    let text = h.metrics().await;
    assert!(text.starts_with("HTTP/1.") && text.contains(" 200 "), "{text:.200}");
    assert!(dropped_metric(&text, "unknown_source") >= src0 + count(UnknownSource), "{text}");
    assert!(dropped_metric(&text, "bad_stun") >= stun0 + count(BadStun));
    assert!(dropped_metric(&text, "unknown_ufrag") >= ufrag0 + count(UnknownUfrag));

    // a second of media after the garbage: still no loss
    assert_flowing_after(&mut sub, &video, &audio, sent_at, 1_000_000).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn srtp_junk_from_a_publishers_address_is_dropped() {
    let h = Harness::start().await;
    let (publisher, mut sub, video, audio) = conference(&h, "spoof").await;
    let p = publisher.stats().await.unwrap().publisher.unwrap();
    let in0 = h.server.media_metrics.udp_in_packets.get();
    let srtp0 = rtc_rejected_metric(&h.metrics().await, "srtp");
    let mut junk_packets = Vec::new();
    for (i, ssrc) in p.video_ssrcs.iter().chain([&p.audio_ssrc]).enumerate() {
        for k in 0..5u16 {
            // RTP header with the real SSRC and plausible sequence numbers, then garbage + tag
            let mut d = vec![0x80, if i < 3 { 96 } else { 111 }];
            d.extend_from_slice(&(k.wrapping_mul(997)).to_be_bytes());
            d.extend_from_slice(&(u32::from(k) * 3000).to_be_bytes());
            d.extend_from_slice(&ssrc.to_be_bytes());
            d.extend(junk(100 + i as u32 * 10 + u32::from(k), 300));
            junk_packets.push(d);
        }
        // SRTCP-looking: a sender report header for the SSRC, garbage, E-bit index, tag
        let mut r = vec![0x80, 200, 0x00, 0x06];
        r.extend_from_slice(&ssrc.to_be_bytes());
        r.extend(junk(500 + i as u32, 40));
        r.extend_from_slice(&[0x80, 0, 0, 9]);
        r.extend(junk(600 + i as u32, 10));
        junk_packets.push(r);
    }
    let n = junk_packets.len() as u64;
    publisher.inject_datagrams(Role::Publisher, junk_packets).await.unwrap();
    // zero-length datagrams from its address: dropped before `rtc` (which logs each as an error)
    let empty0 = h.server.media_metrics.dropped(DropReason::Empty);
    publisher.inject_datagrams(Role::Publisher, vec![Vec::new(); 5]).await.unwrap();
    let sent_at = unix_us();
    assert_flowing_after(&mut sub, &video, &audio, sent_at, 0).await;
    // They reached the server from the publisher's address; none was forwarded or broke SRTP,
    // and each was counted as rejected by SRTP (authentication or replay).
    assert!(h.server.media_metrics.udp_in_packets.get() - in0 >= n);
    let rejected = rtc_rejected_metric(&h.metrics().await, "srtp");
    assert!(
        rejected >= srtp0 + n,
        "sfu_rtc_rejected_packets_total{{stage=\"srtp\"}}: {srtp0} -> {rejected}, {n} junk packets sent"
    );
    assert_flowing_after(&mut sub, &video, &audio, sent_at, 1_000_000).await;
    assert_eq!(h.server.media_metrics.dropped(DropReason::Empty) - empty0, 5, "zero-length datagrams counted");
    let p2 = publisher.stats().await.unwrap().publisher.unwrap();
    assert!(p2.frames[0] > p.frames[0] && p2.write_errors == 0, "the publisher connection survived: {p2:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_signaling_gets_errors_and_media_continues() {
    let h = Harness::start().await;
    let (_publisher, mut sub, video, audio) = conference(&h, "badws").await;
    let vp9_only = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n\
m=video 9 UDP/TLS/RTP/SAVPF 98\r\nc=IN IP4 0.0.0.0\r\na=mid:0\r\na=sendonly\r\na=rtpmap:98 VP9/90000\r\n";
    let g722_only = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n\
m=audio 9 UDP/TLS/RTP/SAVPF 9\r\nc=IN IP4 0.0.0.0\r\na=mid:0\r\na=sendonly\r\na=rtpmap:9 G722/8000\r\n";
    let offer =
        |sdp: &str| Outbound::Message(ClientMessage::Offer { sdp: sdp.to_string(), sources: Default::default() });
    let cases: Vec<(&str, Outbound, ErrorCode)> = vec![
        ("malformed JSON", Outbound::Text("{\"type\": \"offer\", ".into()), ErrorCode::BadJson),
        ("no type", Outbound::Text("{\"sdp\": \"x\"}".into()), ErrorCode::BadJson),
        ("unknown type", Outbound::Text("{\"type\": \"dance\"}".into()), ErrorCode::UnknownType),
        ("wrong field type", Outbound::Text("{\"type\": \"offer\", \"sdp\": 5}".into()), ErrorCode::BadMessage),
        (
            "100 KiB frame",
            Outbound::Text(format!("{{\"type\":\"leave\",\"pad\":\"{}\"}}", "x".repeat(100 * 1024))),
            ErrorCode::TooLarge,
        ),
        ("binary frame", Outbound::Binary(vec![0x7b, 0x7d, 0, 1, 2]), ErrorCode::BinaryUnsupported),
        (
            "second join",
            Outbound::Text("{\"type\":\"join\",\"room\":\"badws\",\"name\":\"again\"}".into()),
            ErrorCode::AlreadyJoined,
        ),
        ("garbage SDP", offer("this is not SDP"), ErrorCode::BadSdp),
        ("VP9-only offer", offer(vp9_only), ErrorCode::NoCodec),
        ("G722-only offer", offer(g722_only), ErrorCode::NoCodec),
        (
            "unknown track",
            Outbound::Text("{\"type\":\"subscription\",\"track\":\"TR_nope\",\"layer\":\"q\"}".into()),
            ErrorCode::UnknownTrack,
        ),
    ];
    for (what, frame, code) in cases {
        sub.send_raw(frame).unwrap();
        let (got, message) = sub.wait_error(STEP).await.unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_eq!(got, code, "{what}: {message}");
    }
    // the session is still usable: a valid request is still honoured
    sub.set_layer(&video, Some("q")).unwrap();
    common::wait_layer_changed(&mut sub, &video, "q").await.unwrap();
    let after = unix_us();
    let s = assert_flowing_after(&mut sub, &video, &audio, after, 500_000).await;
    assert_eq!(s.track(&video).unwrap().layer, Some(0));
    assert!(sub.pending_events().iter().all(|e| e.error_code().is_none()), "no further errors");
}
