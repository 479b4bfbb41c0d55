//! One publisher, two subscribers over real UDP/DTLS/SRTP on loopback: both receive audio and
//! video intact, each at the simulcast layer it asked for.

mod common;

use common::{Harness, STEP, remote_tracks, track_of, wait_layer_changed};
use loadtest::{ClientStats, TrackStats};
use signaling::protocol::{ServerMessage, TrackKind};

/// Checks a received track's stream health.
fn assert_clean(who: &str, t: &TrackStats) {
    assert_eq!(t.lost, 0, "{who} {}: lost packets: {t:?}", t.track);
    assert_eq!(t.duplicates, 0, "{who} {}: duplicates", t.track);
    assert_eq!(t.out_of_order, 0, "{who} {}: out of order", t.track);
    assert_eq!(t.ts_backwards, 0, "{who} {}: timestamps went backwards", t.track);
    assert_eq!(t.malformed, 0, "{who} {}: malformed payloads", t.track);
    assert!(t.latency.count > 0 && t.latency.max < 500_000, "{who} {}: latency {:?}", t.track, t.latency);
    if t.kind == TrackKind::Video {
        assert_eq!(t.picture_id_jumps, 0, "{who} {}: picture ids not continuous", t.track);
        assert_eq!(t.bad_keyframes, 0, "{who} {}: invalid keyframe headers", t.track);
        assert!(t.keyframes >= 1);
        for s in &t.switches {
            assert!(s.at_keyframe, "{who}: switch not at a keyframe: {s:?}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_publisher_two_subscribers() {
    let h = Harness::start().await;
    let publisher = h.publisher("conf", "pub").await;
    let mut low = h.join("conf", "low").await;
    let mut full = h.join("conf", "full").await;

    let tracks = remote_tracks(&mut low, 2).await;
    let video = track_of(&tracks, TrackKind::Video);
    let audio = track_of(&tracks, TrackKind::Audio);
    assert_eq!(tracks.iter().find(|t| t.id == video).unwrap().layers, ["q", "h", "f"]);
    remote_tracks(&mut full, 2).await;
    low.set_layer(&video, Some("q")).unwrap();
    full.set_layer(&video, Some("f")).unwrap();
    wait_layer_changed(&mut low, &video, "q").await.unwrap();
    wait_layer_changed(&mut full, &video, "f").await.unwrap();

    // two seconds of media at the requested layers
    let enough = |width: u16| {
        let (video, audio) = (video.clone(), audio.clone());
        move |s: &ClientStats| {
            let v = s.track(&video);
            let a = s.track(&audio);
            v.is_some_and(|v| v.width() == Some(width) && v.layer.is_some() && v.frames >= 50)
                && a.is_some_and(|a| a.packets >= 100)
        }
    };
    let low_stats = low.wait_stats(STEP, "q video and audio", enough(320)).await.unwrap();
    let full_stats = full.wait_stats(STEP, "f video and audio", enough(1280)).await.unwrap();

    for (who, s, layer) in [("low", &low_stats, 0u8), ("full", &full_stats, 2u8)] {
        let v = s.track(&video).unwrap();
        let a = s.track(&audio).unwrap();
        assert_eq!(v.layer, Some(layer), "{who} receives the layer it asked for");
        assert_clean(who, v);
        assert_clean(who, a);
        assert_eq!(a.kind, TrackKind::Audio);
    }
    let p = publisher.stats().await.unwrap().publisher.unwrap();
    assert!(p.frames.iter().all(|f| *f >= 50) && p.audio_packets >= 100, "{p:?}");
    assert_eq!(p.write_errors, 0);
}

/// Subscribers that stay are not disturbed when one before them in the room leaves (every
/// track's fan-out list is rebuilt, the participants' indices shift): their streams go on
/// without a gap or a layer switch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_others_keep_their_streams_when_a_subscriber_leaves() {
    let h = Harness::start().await;
    let _publisher = h.publisher("stay", "pub").await;
    let mut first = h.join("stay", "first").await;
    let mut low = h.join("stay", "low").await;
    let mut full = h.join("stay", "full").await;
    let tracks = remote_tracks(&mut low, 2).await;
    let video = track_of(&tracks, TrackKind::Video);
    let audio = track_of(&tracks, TrackKind::Audio);
    for (c, layer) in [(&mut first, "h"), (&mut full, "f")] {
        remote_tracks(c, 2).await;
        c.set_layer(&video, Some(layer)).unwrap();
    }
    low.set_layer(&video, Some("q")).unwrap();
    for (c, layer) in [(&mut first, "h"), (&mut low, "q"), (&mut full, "f")] {
        wait_layer_changed(c, &video, layer).await.unwrap();
    }
    let media = |frames: u64, packets: u64| {
        let (video, audio) = (video.clone(), audio.clone());
        move |s: &ClientStats| {
            s.track(&video).is_some_and(|v| v.layer.is_some() && v.frames >= frames)
                && s.track(&audio).is_some_and(|a| a.packets >= packets)
        }
    };
    let mut before = Vec::new();
    for c in [&mut low, &mut full] {
        before.push(c.wait_stats(STEP, "media before the leave", media(25, 50)).await.unwrap());
    }
    first.leave(STEP).await.expect("leave");
    for ((who, c, layer), b) in [("low", &mut low, 0u8), ("full", &mut full, 2u8)].into_iter().zip(before) {
        let (bv, ba) = (b.track(&video).unwrap(), b.track(&audio).unwrap());
        let after = c.wait_stats(STEP, "media after the leave", media(bv.frames + 25, ba.packets + 50)).await.unwrap();
        let (v, a) = (after.track(&video).unwrap(), after.track(&audio).unwrap());
        assert_clean(who, v);
        assert_clean(who, a);
        assert_eq!(v.layer, Some(layer), "{who} stays on its layer");
        assert_eq!(v.switches.len(), bv.switches.len(), "{who}: no layer switch after the leave: {:?}", v.switches);
    }
}

/// Who `client` was told about (`participant_joined` / `participant_left`) so far, by name.
fn roster_events(client: &mut loadtest::Client) -> Vec<String> {
    client
        .pending_events()
        .iter()
        .filter_map(|e| match e {
            loadtest::Event::Server(ServerMessage::ParticipantJoined { participant }) => {
                Some(format!("+{}", participant.name))
            }
            loadtest::Event::Server(ServerMessage::ParticipantLeft { participant }) => Some(format!("-{participant}")),
            _ => None,
        })
        .collect()
}

/// In a room past `--quiet-viewers-above`, a newcomer that only watches is not announced; it
/// still receives everything, and is announced once it publishes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn viewers_of_large_rooms_are_announced_when_they_publish() {
    let h = Harness::start_with(&["--quiet-viewers-above", "2"]).await;
    let mut host = h.publisher("big", "host").await;
    let mut early = h.join("big", "early").await;
    let late = h.join("big", "late").await; // third: quiet
    let mut later = h.join("big", "later").await; // fourth: quiet

    // the quiet ones know who was announced before them, and get the media
    let known = |c: &loadtest::Client| c.participants_at_join().iter().map(|p| p.name.clone()).collect::<Vec<_>>();
    assert_eq!(known(&late), ["host", "early"]);
    assert_eq!(known(&later), ["host", "early"], "the quiet viewer before it is not listed");
    remote_tracks(&mut later, 2).await;
    later.wait_connected(loadtest::Role::Subscriber, STEP).await.expect("quiet viewer connects");
    later
        .wait_stats(STEP, "video from the host", |s| s.first_of(TrackKind::Video).is_some_and(|t| t.keyframes >= 1))
        .await
        .expect("quiet viewer receives video");

    assert_eq!(roster_events(&mut host), ["+early"], "the quiet viewers were not announced");
    assert!(roster_events(&mut early).is_empty());

    // the quiet viewer publishes: now everyone is told, before its tracks
    let late_id = late.participant().id.clone();
    late.publish().await.expect("publish");
    for c in [&mut host, &mut early, &mut later] {
        c.wait_event(STEP, "late announced", |e| match e {
            loadtest::Event::Server(ServerMessage::ParticipantJoined { participant }) if participant.id == late_id => {
                Some(())
            }
            _ => None,
        })
        .await
        .expect("participant_joined when it publishes");
        c.wait_event(STEP, "late's track", |e| match e {
            loadtest::Event::Server(ServerMessage::TrackPublished { participant, .. }) if *participant == late_id => {
                Some(())
            }
            _ => None,
        })
        .await
        .expect("then its tracks");
    }

    // a quiet viewer leaving is not announced either; an announced one is
    let later_id = later.participant().id.clone();
    later.leave(STEP).await.expect("leave");
    late.leave(STEP).await.expect("leave");
    for (who, c) in [("host", &mut host), ("early", &mut early)] {
        // later left first: once late's leave arrived, a leave for later would have too
        c.wait_event(STEP, "late left", |e| match e {
            loadtest::Event::Server(ServerMessage::ParticipantLeft { participant }) if *participant == late_id => {
                Some(())
            }
            _ => None,
        })
        .await
        .expect("participant_left for the announced one");
        let seen = roster_events(c);
        assert!(
            !seen.iter().any(|e| e.contains("later") || e.contains(&later_id)),
            "{who} never heard of the quiet viewer: {seen:?}"
        );
    }
}
