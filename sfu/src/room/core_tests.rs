//! The room core's glue, driven in memory with a virtual clock (`sim.rs`): what reaches each
//! subscriber is judged by the load tester's receiving side, an independent VP8 parser.

use super::sim::{Dir, Sim, is_rtp};
use crate::drop_reason::DropReason;
use crate::forward::budget::{RETRANSMIT_BURST, RETRANSMIT_SHARE};
use loadtest::publisher::PublishOptions;
use loadtest::{Role, TrackStats};
use signaling::protocol::{ErrorCode, ServerMessage, SubscriptionRequest, TrackKind};
use signaling::room::RoomCommand;
use std::time::Duration;

/// Publisher options with no periodic keyframe: every keyframe after the first is asked for.
fn no_periodic_keyframes() -> PublishOptions {
    PublishOptions { keyframe_interval: Duration::from_secs(600), ..Default::default() }
}

/// A room with one publisher (index 0) and `n` subscribers (1..=n), media flowing to all.
fn room_with(n: usize, opts: PublishOptions) -> Sim {
    let mut sim = Sim::new();
    let p = sim.join("pub", true);
    sim.publish(p, opts);
    for i in 0..n {
        sim.join(&format!("sub{i}"), true);
    }
    let flowing = sim.run_until(Duration::from_secs(5), |s| {
        s.clients[1..].iter().all(|c| {
            c.known_tracks().len() == 2 && c.subscriber.tracks.iter().filter(|t| t.stats.packets > 0).count() == 2
        })
    });
    assert!(flowing, "media reaches every subscriber");
    sim
}

/// The received video track of client `i`.
fn video(sim: &Sim, i: usize) -> &TrackStats {
    let id = sim.track_of(i, TrackKind::Video);
    sim.clients[i].track(&id).expect("video received")
}

/// The received audio track of client `i`.
fn audio(sim: &Sim, i: usize) -> &TrackStats {
    let id = sim.track_of(i, TrackKind::Audio);
    sim.clients[i].track(&id).expect("audio received")
}

/// The counters of a received track that the assertions read.
fn brief(t: &TrackStats) -> String {
    format!(
        "packets {} frames {} keyframes {} lost {} dup {} malformed {} bad keyframes {} before keyframe {} ts back {} layer {:?}",
        t.packets,
        t.frames,
        t.keyframes,
        t.lost,
        t.duplicates,
        t.malformed,
        t.bad_keyframes,
        t.before_keyframe,
        t.ts_backwards,
        t.layer
    )
}

/// A received track is whole: nothing lost or damaged, and (video) it started at a keyframe.
fn assert_clean(t: &TrackStats, what: &str) {
    let clean =
        (t.lost, t.duplicates, t.malformed, t.bad_keyframes, t.before_keyframe, t.ts_backwards) == (0, 0, 0, 0, 0, 0);
    assert!(clean, "{what}: {}", brief(t));
}

#[test]
fn every_subscriber_gets_every_packet_of_its_layer() {
    // columns: subscribers, layer cap each asks for (None: the default), layer received (0 = q)
    let rows: &[(usize, Option<&str>, u8)] = &[(1, None, 2), (3, None, 2), (3, Some("q"), 0), (2, Some("h"), 1)];
    for &(n, cap, want) in rows {
        let mut sim = room_with(n, PublishOptions::default());
        let track = sim.track_of(1, TrackKind::Video);
        for i in 1..=n {
            sim.subscription(
                i,
                &track,
                SubscriptionRequest { layer: Some(cap.map(str::to_owned)), ..Default::default() },
            );
        }
        sim.run(Duration::from_secs(3));
        let fwd0 = sim.metrics.rtp_forwarded.get();
        sim.run(Duration::from_secs(1));
        let forwarded = sim.metrics.rtp_forwarded.get() - fwd0;
        for i in 1..=n {
            let (v, a) = (video(&sim, i), audio(&sim, i));
            assert_clean(v, &format!("row {n}/{cap:?}, subscriber {i} video"));
            assert_clean(a, &format!("row {n}/{cap:?}, subscriber {i} audio"));
            assert_eq!(v.layer, Some(want), "row {n}/{cap:?}, subscriber {i}: {v:?}");
            assert!(v.frames >= 80, "25 fps for 4 s: {v:?}");
            assert!(a.packets >= 180, "50 packets/s for 4 s: {a:?}");
        }
        // one second: 50 audio and at least 25 video packets per subscriber, nothing else
        assert!(forwarded >= 75 * n as u64, "{forwarded} forwarded to {n}");
        assert_eq!(sim.metrics.dropped(DropReason::MungerRejected), 0);
    }
}

#[test]
fn a_layer_switch_lands_on_a_keyframe_with_and_without_sender_reports() {
    // columns: publisher sends sender reports (its connection's RTCP reaches the server), from,
    // to: each switch is clean (no loss, no damaged frame, timestamps never go back), and with
    // sender reports both layers' clocks are aligned
    let rows: &[(bool, &str, &str)] =
        &[(true, "f", "q"), (true, "q", "f"), (false, "f", "q"), (false, "q", "h"), (true, "h", "f")];
    for &(reports, from, to) in rows {
        let mut sim = room_with(1, no_periodic_keyframes());
        if !reports {
            // the publisher's sender reports never arrive (SR packet type 200)
            sim.loss = Some(Box::new(|dir, d: &[u8]| dir == Dir::Up(0, Role::Publisher) && d.len() > 1 && d[1] == 200));
        }
        let track = sim.track_of(1, TrackKind::Video);
        let layer = |l: &str| SubscriptionRequest { layer: Some(Some(l.to_owned())), ..Default::default() };
        sim.subscription(1, &track, layer(from));
        sim.run(Duration::from_secs(2));
        let before = video(&sim, 1).clone();
        let (switches0, log0) = (sim.metrics.layer_switches.get(), sim.clients[1].log.len());
        sim.subscription(1, &track, layer(to));
        let to_idx = ["q", "h", "f"].iter().position(|l| *l == to).unwrap() as u8;
        let switched = sim.run_until(Duration::from_secs(2), |s| video(s, 1).layer == Some(to_idx));
        assert!(switched, "{from}->{to} (reports {reports}): {:?}", video(&sim, 1));
        sim.run(Duration::from_secs(1));
        let v = video(&sim, 1);
        assert_clean(v, &format!("{from}->{to} reports {reports}"));
        assert!(v.keyframes > before.keyframes, "the switch started at a keyframe of {to}");
        assert_eq!(sim.metrics.layer_switches.get() - switches0, 1, "{from}->{to}: one switch");
        assert!(sim.metrics.plis_sent.get() >= 2, "the first keyframe and the switch were asked for");
        let layer_changed = sim.clients[1].log[log0..]
            .iter()
            .filter(|m| matches!(m, ServerMessage::LayerChanged { layer: Some(l), .. } if l == to))
            .count();
        assert_eq!(layer_changed, 1, "{from}->{to}: the client is told once");
    }
}

#[test]
fn a_lost_packet_is_retransmitted_through_the_munger_within_the_budget() {
    // columns: video packets to the subscriber lost on the way (every k-th, resent ones too),
    // everything recovered in the end, the budget refused some requests
    let rows: &[(u64, bool, bool)] = &[(50, true, false), (10, true, false), (2, false, true)];
    for &(every, recovered, limited) in rows {
        let mut sim = room_with(1, PublishOptions::default());
        // the retransmission path alone: heavy loss rightly lowers the allocation (a layer
        // switch, whose older packets are no longer resent)
        sim.core.ctx.bwe_allocate = false;
        let mut n = 0u64;
        sim.loss = Some(Box::new(move |dir, d: &[u8]| {
            if dir != Dir::Down(1, Role::Subscriber) || !is_rtp(d) || d[1] & 0x7f != 96 {
                return false;
            }
            n += 1;
            n.is_multiple_of(every)
        }));
        let fwd0 = sim.metrics.rtp_forwarded.get();
        sim.run(Duration::from_secs(2));
        sim.loss = None;
        sim.run(Duration::from_secs(1));
        let v = video(&sim, 1);
        let resent = sim.metrics.rtp_retransmitted.get();
        let forwarded = sim.metrics.rtp_forwarded.get() - fwd0;
        assert_eq!(v.lost == 0, recovered, "every {every}th lost: {}", brief(v));
        assert!(resent > 0 && sim.metrics.nacks_received.get() > 0, "every {every}th lost: {resent} resent");
        // the budget: a burst, then a quarter of what was forwarded
        assert!(resent as f32 <= RETRANSMIT_BURST + RETRANSMIT_SHARE * forwarded as f32, "{resent} of {forwarded}");
        assert_eq!(sim.metrics.dropped(DropReason::NackRateLimited) > 0, limited, "every {every}th lost");
        assert_eq!(sim.metrics.dropped(DropReason::NackUnmapped), 0);
    }
}

#[test]
fn video_lost_before_the_server_costs_a_keyframe_not_a_freeze() {
    // columns: uplink video packets (media and repairs) of the publisher lost in a burst,
    // keyframe requests the publisher gets for the forwarded layer after it (the subscriber's
    // NACKs name packets the server never got: only a keyframe completes its video)
    let rows: &[(std::ops::Range<u64>, u64)] = &[(0..0, 0), (200..230, 1)];
    for (burst, keyframes) in rows {
        let mut sim = room_with(1, no_periodic_keyframes());
        sim.core.ctx.bwe_allocate = false;
        let track = sim.track_of(1, TrackKind::Video);
        sim.subscription(1, &track, SubscriptionRequest { layer: Some(Some("q".to_owned())), ..Default::default() });
        sim.run(Duration::from_secs(1));
        let asked0 = sim.clients[0].publisher.as_ref().unwrap().stats.keyframe_requests;
        let mut n = 0u64;
        let lose = burst.clone();
        sim.loss = Some(Box::new(move |dir, d: &[u8]| {
            if dir != Dir::Up(0, Role::Publisher) || !is_rtp(d) || !matches!(d[1] & 0x7f, 96 | 97) {
                return false;
            }
            n += 1;
            lose.contains(&n)
        }));
        sim.run(Duration::from_secs(2));
        sim.loss = None;
        let frames0 = video(&sim, 1).frames;
        sim.run(Duration::from_secs(1));
        let asked = sim.clients[0].publisher.as_ref().unwrap().stats.keyframe_requests;
        let v = video(&sim, 1);
        assert_eq!(asked[0] - asked0[0], *keyframes, "burst {burst:?}: {asked0:?} -> {asked:?}");
        assert!(v.frames > frames0 + 10, "burst {burst:?}: video goes on after it: {}", brief(v));
    }
}

#[test]
fn subscribers_switching_together_cost_the_publisher_one_keyframe() {
    // columns: subscribers, all ask for f at once after settling on q; keyframe requests the
    // publisher sees for f: one (the throttle spans subscribers)
    for n in [1usize, 4] {
        let mut sim = room_with(n, no_periodic_keyframes());
        let track = sim.track_of(1, TrackKind::Video);
        let layer = |l: &str| SubscriptionRequest { layer: Some(Some(l.to_owned())), ..Default::default() };
        for i in 1..=n {
            sim.subscription(i, &track, layer("q"));
        }
        sim.run(Duration::from_secs(2));
        let asked0 = sim.clients[0].publisher.as_ref().unwrap().stats.keyframe_requests;
        for i in 1..=n {
            sim.subscription(i, &track, layer("f"));
        }
        sim.run(Duration::from_millis(400));
        let asked = sim.clients[0].publisher.as_ref().unwrap().stats.keyframe_requests;
        assert_eq!(asked[2] - asked0[2], 1, "{n} subscribers: {asked0:?} -> {asked:?}");
        for i in 1..=n {
            let v = video(&sim, i);
            assert_eq!(v.layer, Some(2), "subscriber {i}: {}", brief(v));
            assert_clean(v, &format!("subscriber {i}"));
        }
    }
}

#[test]
fn a_publisher_leaving_mid_keyframe_leaves_the_room_consistent() {
    // a paced publisher spreads its keyframe over time: it leaves after its first packets
    let opts = PublishOptions { pacing: Some(2.5), ..no_periodic_keyframes() };
    let mut sim = room_with(2, opts);
    let track = sim.track_of(1, TrackKind::Video);
    sim.subscription(1, &track, SubscriptionRequest { layer: Some(Some("q".into())), ..Default::default() });
    let in0 = sim.metrics.rtp_in_packets.get();
    // a PLI for f (subscriber 2 switches down and up) starts a keyframe; leave as it flows
    sim.subscription(2, &track, SubscriptionRequest { layer: Some(Some("h".into())), ..Default::default() });
    assert!(sim.run_until(Duration::from_secs(2), |s| video(s, 2).layer == Some(1)), "{}", brief(video(&sim, 2)));
    sim.subscription(2, &track, SubscriptionRequest { layer: Some(Some("f".into())), ..Default::default() });
    let keyframes0 = sim.clients[0].publisher.as_ref().unwrap().stats.keyframes[2];
    let started = sim.run_until(Duration::from_secs(1), |s| {
        s.clients[0].publisher.as_ref().unwrap().stats.keyframes[2] > keyframes0
    });
    let stats = &sim.clients[0].publisher.as_ref().unwrap().stats;
    assert!(started, "a keyframe of f was asked for and started: {stats:?} {}", brief(video(&sim, 2)));
    sim.run(super::sim::TICK);
    sim.leave(0);
    assert!(sim.metrics.rtp_in_packets.get() > in0);
    sim.run(Duration::from_millis(500));
    for i in 1..=2 {
        let told = sim.clients[i]
            .log
            .iter()
            .any(|m| matches!(m, ServerMessage::TrackUnpublished { track: t, .. } if *t == track));
        assert!(told, "subscriber {i} was told the track is gone");
    }
    assert_eq!(sim.metrics.published_tracks.get(), 0);
    assert_eq!(sim.metrics.subscribed_tracks.get(), 0);
    // a new publisher reaches both, starting clean at a keyframe
    let second = sim.join("second", true);
    sim.publish(second, PublishOptions::default());
    let video2 = sim.run_until(Duration::from_secs(5), |s| {
        (1..=2).all(|i| {
            s.clients[i].known_tracks().iter().filter(|t| t.kind == TrackKind::Video).count() == 2
                && s.clients[i].subscriber.tracks.iter().filter(|t| t.stats.frames > 10).count() >= 1
        })
    });
    assert!(video2, "the second publisher's media flows");
    for i in 1..=2 {
        let id = sim.clients[i].known_tracks().iter().rev().find(|t| t.kind == TrackKind::Video).unwrap().id.clone();
        assert_clean(sim.clients[i].track(&id).expect("second video"), &format!("subscriber {i}, second publisher"));
    }
}

#[test]
fn padding_is_never_forwarded_and_leaves_no_gap() {
    // padding-only packets after every frame on every layer, as Chrome probes: they take
    // sequence numbers of the layer, so a munger that was not told would show a gap
    let mut sim = room_with(2, PublishOptions { padding: true, ..Default::default() });
    let track = sim.track_of(2, TrackKind::Video);
    sim.subscription(2, &track, SubscriptionRequest { layer: Some(Some("q".into())), ..Default::default() });
    sim.run(Duration::from_secs(3));
    let frames = sim.clients[0].publisher.as_ref().unwrap().stats.frames;
    let padding = sim.metrics.dropped(DropReason::PaddingOnly);
    assert!(padding >= frames.iter().sum::<u64>() - 3, "one padding packet per frame and layer: {padding} {frames:?}");
    for (i, layer) in [(1, 2), (2, 0)] {
        let v = video(&sim, i);
        assert_clean(v, &format!("subscriber {i} with padding"));
        assert_eq!(v.layer, Some(layer));
        assert!(v.frames >= 70, "{v:?}");
    }
}

#[test]
fn joins_leaves_and_mutes_during_traffic_keep_everyone_else_whole() {
    let mut sim = room_with(2, PublishOptions::default());
    let track = sim.track_of(1, TrackKind::Video);
    let audio_track = sim.track_of(1, TrackKind::Audio);
    // a third subscriber joins mid-stream and starts at a keyframe
    let late = sim.join("late", true);
    sim.run(Duration::from_secs(2));
    assert_clean(video(&sim, late), "late joiner");
    assert!(video(&sim, late).frames > 20);
    // one leaves: the others are unaffected
    sim.leave(1);
    let before = video(&sim, 2).packets;
    sim.run(Duration::from_secs(1));
    assert!(video(&sim, 2).packets > before + 20);
    // an operator mutes the video: nothing is forwarded; unmuted, it restarts at a keyframe
    let (tx, _rx) = tokio::sync::oneshot::channel();
    sim.command(RoomCommand::MuteTrack { participant: "PA_pub".into(), track: track.clone(), muted: true, reply: tx });
    sim.run(Duration::from_millis(200));
    let muted_at = video(&sim, 2).packets;
    sim.run(Duration::from_secs(1));
    assert_eq!(video(&sim, 2).packets, muted_at, "nothing forwarded while muted");
    let audio_now = sim.clients[2].track(&audio_track).unwrap().packets;
    let (tx, _rx) = tokio::sync::oneshot::channel();
    sim.command(RoomCommand::MuteTrack { participant: "PA_pub".into(), track: track.clone(), muted: false, reply: tx });
    sim.run(Duration::from_secs(1));
    for i in [2, late] {
        let v = video(&sim, i);
        assert_clean(v, &format!("subscriber {i} after unmute"));
        assert!(v.packets > muted_at, "forwarding resumed: {v:?}");
    }
    assert!(sim.clients[2].track(&audio_track).unwrap().packets > audio_now + 40, "audio went on throughout");
}

#[test]
fn a_sequence_number_is_forwarded_once_whatever_its_content() {
    let mut sim = room_with(1, PublishOptions::default());
    sim.run(Duration::from_secs(1));
    let id = sim.track_of(1, TrackKind::Video);
    let (key, rtc_track_id, ssrc, newest) = {
        let t = sim.core.tracks.iter().find(|t| t.id == id).expect("the video track");
        let f = t.layers[2].as_ref().expect("layer f, the subscriber's");
        (t.peer, t.rtc_track_id.clone(), f.ssrc, f.seen.highest().expect("packets of f"))
    };
    // a publisher (or an RTX repair) sending a number it sent before, with other content:
    // forwarded again it would be sealed under the first copy's AES-GCM nonce
    // columns: how far behind the newest, why it is dropped
    let rows = [(0u64, DropReason::Duplicate), (5, DropReason::Duplicate), (2000, DropReason::TooLate)];
    for (behind, why) in rows {
        let header = rtc::rtp::Header {
            version: 2,
            payload_type: 96,
            sequence_number: (newest - behind) as u16,
            ssrc,
            ..Default::default()
        };
        let payload = bytes::Bytes::from_static(&[0x90, 0x80, 0x01, 0x02, 0x00, 0xde, 0xad, 0xbe, 0xef]);
        let dropped = sim.metrics.dropped(why);
        let (now, pkt) = (sim.now, rtc::rtp::Packet { header, payload });
        sim.core.forward_rtp(key, &rtc_track_id, pkt, now, now);
        assert_eq!(sim.metrics.dropped(why), dropped + 1, "{behind} behind: {why}");
    }
    sim.run(Duration::from_millis(500));
    assert_clean(video(&sim, 1), "after the repeated numbers");
}

#[test]
fn a_participant_whose_connection_never_connects_is_removed_at_the_deadline() {
    use super::peer::CONNECT_DEADLINE;
    // columns: the connection whose datagrams never reach the server (UDP blocked)
    for role in [Role::Subscriber, Role::Publisher] {
        let mut sim = room_with(1, PublishOptions::default());
        let blocked = sim.clients.len();
        sim.loss = Some(Box::new(move |dir, _| dir == Dir::Up(blocked, role)));
        assert_eq!(sim.join("blocked", true), blocked);
        if role == Role::Publisher {
            sim.publish(blocked, PublishOptions::default());
        }
        let failed = |s: &Sim| {
            s.clients[blocked]
                .log
                .iter()
                .any(|m| matches!(m, ServerMessage::Error { code: ErrorCode::ConnectionFailed, .. }))
        };
        sim.run(CONNECT_DEADLINE - Duration::from_secs(2));
        assert!(!failed(&sim), "{role:?}: still within the deadline");
        assert!(sim.run_until(Duration::from_secs(4), failed), "{role:?}: told at the deadline");
        assert_eq!(sim.metrics.connection_failures.get(), 1, "{role:?}");
        assert!(sim.core.participants.iter().all(|p| p.id != sim.clients[blocked].id), "{role:?}: removed");
        // the others never noticed
        let before = video(&sim, 1).packets;
        sim.run(Duration::from_secs(1));
        assert!(video(&sim, 1).packets > before + 20, "{role:?}");
        assert_clean(video(&sim, 1), &format!("{role:?}: the connected subscriber"));
    }
}

#[test]
fn trickled_candidates_past_the_limit_are_refused_once() {
    use super::peer::MAX_CANDIDATES;
    use crate::metrics::Limit;
    use signaling::protocol::{IceCandidate, PcTarget};
    let mut sim = room_with(1, PublishOptions::default());
    let participant = sim.clients[1].id.clone();
    let candidate = |i: u16| IceCandidate {
        candidate: format!("candidate:{i} 1 udp 2122260223 127.0.0.1 {} typ host", 50_000 + i),
        sdp_mid: Some("0".into()),
        sdp_mline_index: Some(0),
        username_fragment: None,
    };
    for i in 0..MAX_CANDIDATES + 10 {
        let cmd = RoomCommand::Candidate {
            participant: participant.clone(),
            target: PcTarget::Subscriber,
            candidate: candidate(i),
        };
        sim.command(cmd);
    }
    let refused = sim.clients[1]
        .log
        .iter()
        .filter(|m| matches!(m, ServerMessage::Error { code: ErrorCode::LimitExceeded, .. }))
        .count();
    assert_eq!(refused, 1, "told once");
    assert_eq!(sim.metrics.limits_exceeded(Limit::Candidates), 1);
    // media goes on
    let before = video(&sim, 1).packets;
    sim.run(Duration::from_millis(500));
    assert!(video(&sim, 1).packets > before + 10);
}

/// The layer each video track of client `i` arrives on now.
fn video_layers(sim: &Sim, i: usize) -> Vec<Option<u8>> {
    sim.clients[i]
        .subscriber
        .tracks
        .iter()
        .filter(|t| t.stats.kind == TrackKind::Video)
        .map(|t| t.stats.layer)
        .collect()
}

/// Lost and received video packets of client `i` so far, summed over its video tracks.
fn video_counts(sim: &Sim, i: usize) -> (u64, u64) {
    sim.clients[i]
        .subscriber
        .tracks
        .iter()
        .filter(|t| t.stats.kind == TrackKind::Video)
        .fold((0, 0), |(l, p), t| (l + t.stats.lost, p + t.stats.packets))
}

/// A viewer behind a slow downlink: its estimate falls to the link, its videos are capped to
/// layers that fit (the lowest layers of two of the three publishers with their audio:
/// 600 kbit/s does not carry three), probes bring it back up after the first flood, and
/// after convergence it loses under 2 %; a viewer on a fast link keeps every top layer.
#[test]
fn a_subscriber_on_a_slow_downlink_gets_layers_that_fit() {
    use bwe::Bitrate;
    use bwe::netem::LinkConfig;
    // three publishers of q/h/f simulcast (150 k / 500 k / 1.5 Mbit/s); a viewer behind a
    // 600 kbit/s downlink with 20 ms of delay and a 300 ms queue
    let mut sim = Sim::new();
    for p in 0..3 {
        let i = sim.join(&format!("pub{p}"), true);
        sim.publish(i, PublishOptions::default());
    }
    let slow = sim.join("slow", true);
    sim.cap_downlink(slow, LinkConfig::new(Bitrate::kbps(600), Duration::from_millis(20)));
    let flowing = sim.run_until(Duration::from_secs(5), |s| {
        s.clients[slow].subscriber.tracks.iter().filter(|t| t.stats.packets > 0).count() >= 4
    });
    assert!(flowing, "media reaches the slow viewer");
    sim.run(Duration::from_secs(10));
    let (lost0, packets0) = video_counts(&sim, slow);
    sim.run(Duration::from_secs(5));
    let (lost1, packets1) = video_counts(&sim, slow);
    let received = packets1 - packets0;
    let loss = (lost1 - lost0) as f64 / (received + lost1 - lost0).max(1) as f64;
    let layers = video_layers(&sim, slow);
    let rate = received as f64 * 1200.0 * 8.0 / 5.0;
    let p = &sim.core.participants[slow];
    let estimate = sim.core.peers.get(&p.subscriber).and_then(|x| x.egress.as_ref()).map(|e| e.cc.bwe.estimate());
    let m = &sim.metrics;
    println!(
        "slow viewer: estimate {estimate:?}, layers {layers:?}, {received} video packets in 5 s (~{rate:.0} bit/s), loss {loss:.4}; probes {}, pauses {}, paced packets {} (mean wait {:.1} ms)",
        m.bwe_probes.get(),
        m.bwe_paused.get(),
        m.bwe_pacer_delay.get_sample_count(),
        m.bwe_pacer_delay.get_sample_sum() * 1e3 / m.bwe_pacer_delay.get_sample_count().max(1) as f64
    );
    assert!(estimate.is_some_and(|e| e <= Bitrate::kbps(800)), "estimate {estimate:?} toward a 600 kbit/s link");
    assert!(loss < 0.02, "loss after convergence {loss} ({} lost of {})", lost1 - lost0, received);
    assert!(received > 100, "video keeps flowing: {received} packets in 5 s");
    assert!(layers.iter().filter(|l| l.is_some()).count() >= 2, "at least two videos arrive: {layers:?}");
    assert!(sim.metrics.bwe_probes.get() > 0, "probes sent");
    assert!(layers.iter().all(|l| *l != Some(2)), "no top layer fits 600 kbit/s: {layers:?}");
    let feedback = sim.metrics.bwe_feedback.get();
    assert!(feedback > 100, "transport-wide feedback used: {feedback}");
    // a publisher on an uncapped link keeps receiving the others' top layers
    let fast = video_layers(&sim, 0);
    assert!(fast.iter().all(|l| *l == Some(2)), "uncapped viewer: {fast:?}");
}

/// Per video track of client `i`: (frames, picture id jumps) so far.
fn video_frames(sim: &Sim, i: usize) -> Vec<(u64, u64)> {
    sim.clients[i]
        .subscriber
        .tracks
        .iter()
        .filter(|t| t.stats.kind == TrackKind::Video)
        .map(|t| (t.stats.frames, t.stats.picture_id_jumps))
        .collect()
}

/// The same link as above with publishers that send three VP8 temporal layers (as browsers
/// do): the allocator's finer steps fit every video, each at half its frame rate or more, where
/// whole layers fit two; the dropped pictures leave no gap in the picture ids and no loss.
#[test]
fn temporal_layers_fit_every_video_on_a_slow_downlink() {
    use bwe::Bitrate;
    use bwe::netem::LinkConfig;
    let fps = 24;
    let mut sim = Sim::new();
    for p in 0..3 {
        let i = sim.join(&format!("pub{p}"), true);
        sim.publish(i, PublishOptions { temporal_layers: 3, fps, ..PublishOptions::default() });
    }
    let slow = sim.join("slow", true);
    sim.cap_downlink(slow, LinkConfig::new(Bitrate::kbps(600), Duration::from_millis(20)));
    // every video flows within 5 s of the join (from a start estimate far above the link)
    let all_flow = sim.run_until(Duration::from_secs(5), |s| {
        let t = &s.clients[slow].subscriber.tracks;
        t.iter().filter(|t| t.stats.kind == TrackKind::Video && t.stats.frames > 10).count() == 3
    });
    assert!(all_flow, "every video flows within 5 s: {:?}", video_frames(&sim, slow));
    sim.run(Duration::from_secs(10));
    let (lost0, packets0) = video_counts(&sim, slow);
    let before = video_frames(&sim, slow);
    let window = Duration::from_secs(5);
    sim.run(window);
    let (lost1, packets1) = video_counts(&sim, slow);
    let after = video_frames(&sim, slow);
    let received = packets1 - packets0;
    let loss = (lost1 - lost0) as f64 / (received + lost1 - lost0).max(1) as f64;
    let fps_of: Vec<f64> = before.iter().zip(&after).map(|(b, a)| (a.0 - b.0) as f64 / window.as_secs_f64()).collect();
    let jumps: u64 = before.iter().zip(&after).map(|(b, a)| a.1 - b.1).sum();
    let temporal_drops = sim.metrics.bwe_temporal_drops.get();
    println!(
        "slow viewer: layers {:?}, frames/s {fps_of:?}, temporal drops {temporal_drops}, loss {loss:.4}, picture id jumps {jumps}",
        video_layers(&sim, slow)
    );
    assert_eq!(fps_of.len(), 3, "three videos");
    assert!(
        fps_of.iter().all(|&f| f >= f64::from(fps) / 2.0 - 1.0),
        "every video at half its frame rate or more: {fps_of:?}"
    );
    assert!(temporal_drops > 0, "temporal layers kept off");
    assert_eq!(jumps, 0, "no gap in the picture ids of the forwarded pictures");
    assert!(loss < 0.02, "loss after convergence {loss}");
    // an uncapped viewer gets every frame of the top layers
    let fast = video_frames(&sim, 0);
    assert!(video_layers(&sim, 0).iter().all(|l| *l == Some(2)), "uncapped viewer on the top layers");
    assert!(fast.iter().all(|(_, j)| *j == 0), "uncapped viewer: no picture id jumps {fast:?}");
}

/// The `publish_layers` messages client `i` received, oldest first.
fn publish_layers(sim: &Sim, i: usize) -> Vec<Vec<String>> {
    sim.clients[i]
        .log
        .iter()
        .filter_map(|m| match m {
            ServerMessage::PublishLayers { active, .. } => Some(active.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn dynacast_stops_layers_nobody_needs_and_resumes_them_at_once() {
    let mut sim = room_with(2, PublishOptions::default());
    let track = sim.track_of(1, TrackKind::Video);
    let cap = |l: &str| SubscriptionRequest { layer: Some(Some(l.to_owned())), ..Default::default() };
    // both viewers take f: h, which nobody takes, goes off after the debounce
    sim.run(Duration::from_secs(6));
    let f_only = vec!["q".to_string(), "f".to_string()];
    assert_eq!(publish_layers(&sim, 0), std::slice::from_ref(&f_only), "h off, q (the lowest) kept");
    // both viewers ask for the lowest layer: f goes off once unneeded for a while
    sim.subscription(1, &track, cap("q"));
    sim.subscription(2, &track, cap("q"));
    sim.run(Duration::from_secs(4));
    assert_eq!(publish_layers(&sim, 0).len(), 1, "not before the debounce: {:?}", publish_layers(&sim, 0));
    sim.run(Duration::from_secs(3));
    assert_eq!(publish_layers(&sim, 0).last(), Some(&vec!["q".to_string()]));
    let publisher = sim.clients[0].publisher.as_ref().expect("publishes");
    assert!(publisher.layer_active(0) && !publisher.layer_active(1) && !publisher.layer_active(2));
    let frames_f = publisher.stats.frames[2];
    sim.run(Duration::from_secs(1));
    assert_eq!(sim.clients[0].publisher.as_ref().unwrap().stats.frames[2], frames_f, "f is not encoded");
    // one viewer wants f: the publisher is told at once and the viewer gets f within a second
    sim.subscription(2, &track, cap("f"));
    let back = sim.run_until(Duration::from_secs(1), |s| video(s, 2).layer == Some(2));
    assert!(back, "f back at the viewer within a second: {}", brief(video(&sim, 2)));
    assert_eq!(publish_layers(&sim, 0).last(), Some(&f_only));
    assert_eq!(video(&sim, 1).layer, Some(0), "the other viewer stays on q");
    assert!(sim.metrics.dynacast_updates.get() >= 2);
}

/// What viewer `i` received of `name` (`audio` or `video`, the sections it offered).
fn viewed<'a>(sim: &'a Sim, i: usize, name: &str) -> Option<&'a TrackStats> {
    sim.clients[i].track(name)
}

#[test]
fn a_viewer_gets_what_it_watches_in_its_own_sections_across_a_return_without_renegotiation() {
    let mut sim = Sim::new();
    let bystander = sim.join("bystander", true);
    sim.publish(bystander, PublishOptions::default());
    let studio = sim.join("studio", true);
    sim.publish(studio, PublishOptions::default());
    sim.run(Duration::from_millis(500));
    let v = sim.join_viewer("player", Some("studio"));
    let flowing = sim.run_until(Duration::from_secs(5), |s| {
        viewed(s, v, "video").is_some_and(|t| t.frames >= 25) && viewed(s, v, "audio").is_some_and(|t| t.packets >= 50)
    });
    assert!(
        flowing,
        "the viewer receives the studio: {:?}",
        sim.clients[v].subscriber.tracks.iter().map(|t| brief(&t.stats)).collect::<Vec<_>>()
    );
    for name in ["audio", "video"] {
        assert_clean(viewed(&sim, v, name).unwrap(), name);
    }
    // one stream per section: the bystander's media does not reach it
    assert_eq!(sim.clients[v].subscriber.tracks.len(), 2, "two sections");

    // the studio leaves; another participant named studio publishes: the same SSRCs go on,
    // numbering continued, no offer
    sim.leave(studio);
    sim.run(Duration::from_millis(300));
    let before = (viewed(&sim, v, "video").unwrap().frames, viewed(&sim, v, "audio").unwrap().packets);
    let back = sim.join("studio", true);
    sim.publish(back, PublishOptions::default());
    let again = sim.run_until(Duration::from_secs(5), |s| {
        viewed(s, v, "video").is_some_and(|t| t.frames >= before.0 + 25)
            && viewed(s, v, "audio").is_some_and(|t| t.packets >= before.1 + 50)
    });
    assert!(again, "the returning studio reaches the viewer: {}", brief(viewed(&sim, v, "video").unwrap()));
    for name in ["audio", "video"] {
        let t = viewed(&sim, v, name).unwrap();
        // a source change inside one stream, as at a layer switch: no gap, no step back
        assert_eq!(
            (t.lost, t.duplicates, t.ts_backwards, t.malformed, t.bad_keyframes),
            (0, 0, 0, 0, 0),
            "{name}: {}",
            brief(t)
        );
    }
    assert_eq!(sim.clients[v].subscriber.tracks.len(), 2, "still two sections");
    let offers = sim.clients[v].log.iter().filter(|m| matches!(m, ServerMessage::Offer { .. })).count();
    assert_eq!(offers, 0, "a viewer is never offered");
    // nobody was told about it
    let told = sim.clients[bystander]
        .log
        .iter()
        .any(|m| matches!(m, ServerMessage::ParticipantJoined { participant } if participant.name == "player"));
    assert!(!told, "a viewer is not announced");
}

#[test]
fn a_viewer_offer_without_media_sections_or_parseable_sdp_is_refused() {
    // columns: offer, error code
    let rows = [
        (
            "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\n",
            ErrorCode::BadSdp,
        ),
        ("hello", ErrorCode::BadSdp),
    ];
    for (offer, code) in rows {
        let mut sim = Sim::new();
        let (tx, mut rx) = tokio::sync::mpsc::channel(16);
        let cmd = RoomCommand::JoinViewer {
            participant: "PA_v".into(),
            name: "v".into(),
            events: tx,
            offer: offer.into(),
            source: None,
        };
        sim.command(cmd);
        match rx.try_recv() {
            Ok(ServerMessage::Error { code: got, .. }) => assert_eq!(got, code, "{offer:?}"),
            other => panic!("{offer:?}: {other:?}"),
        }
        assert!(sim.core.participants.is_empty(), "nothing joined");
    }
}

/// A screen share among cameras on a downlink too slow for every video: the allocator serves
/// the share first, so it is never the one paused and never below a camera; the others learn
/// it is a share (`track_published` names the source).
#[test]
fn a_screen_share_is_served_before_cameras_on_a_slow_downlink() {
    use bwe::Bitrate;
    use bwe::netem::LinkConfig;
    let mut sim = Sim::new();
    for p in 0..3 {
        let i = sim.join(&format!("pub{p}"), true);
        // the last one to publish shares its screen: the subscriber's order alone would rank it last
        sim.publish(i, PublishOptions { screen: p == 2, ..PublishOptions::default() });
    }
    let slow = sim.join("slow", true);
    // room for the audio and about one lowest layer
    sim.cap_downlink(slow, LinkConfig::new(Bitrate::kbps(KBPS), Duration::from_millis(20)));
    sim.run(Duration::from_secs(15));
    let infos = sim.clients[slow].known_tracks();
    let screen = infos.iter().find(|t| t.source == signaling::protocol::TrackSource::Screen).expect("a screen track");
    assert_eq!(screen.kind, TrackKind::Video);
    assert_eq!(infos.iter().filter(|t| t.source == signaling::protocol::TrackSource::Camera).count(), 2, "{infos:?}");
    let layer_of = |sim: &Sim, participant: &str| {
        sim.clients[slow]
            .subscriber
            .tracks
            .iter()
            .find(|t| t.stats.kind == TrackKind::Video && t.stats.participant == participant)
            .map(|t| (t.stats.layer, t.stats.frames))
    };
    let before = layer_of(&sim, "PA_pub2").expect("the share arrives");
    sim.run(Duration::from_secs(5));
    let (layer, frames) = layer_of(&sim, "PA_pub2").unwrap();
    assert!(frames > before.1 + 50, "the share keeps flowing: {before:?} -> {frames}");
    let cameras: Vec<_> = ["PA_pub0", "PA_pub1"].iter().map(|p| layer_of(&sim, p).and_then(|(l, _)| l)).collect();
    println!("slow viewer: share at {layer:?}, cameras at {cameras:?}");
    assert!(layer.is_some(), "the share is not paused");
    assert!(cameras.iter().all(|c| *c <= layer), "no camera above the share: share {layer:?}, cameras {cameras:?}");
    assert!(cameras.iter().any(Option::is_none), "a camera is paused for the share: {cameras:?}");
}

/// The slow viewer's link in the screen share test.
const KBPS: u64 = 450;
