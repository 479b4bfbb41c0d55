//! A publisher leaves: its subscribers are told (participant_left, track_unpublished), their
//! connections are renegotiated without its tracks, and they go on receiving a new publisher.

mod common;

use common::{Harness, STEP, remote_tracks, track_of};
use loadtest::{ClientStats, Event};
use signaling::protocol::{ServerMessage, TrackKind};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribers_see_the_publisher_leave() {
    let h = Harness::start().await;
    let first = h.publisher("leave", "first").await;
    let first_id = first.participant().id.clone();
    let mut subs = [h.join("leave", "s1").await, h.join("leave", "s2").await];
    let mut gone = Vec::new();
    for sub in subs.iter_mut() {
        let tracks = remote_tracks(sub, 2).await;
        let (audio, video) = (track_of(&tracks, TrackKind::Audio), track_of(&tracks, TrackKind::Video));
        let (a, v) = (audio.clone(), video.clone());
        sub.wait_stats(STEP, "media of the first publisher", move |s: &ClientStats| {
            s.track(&a).is_some_and(|t| t.packets > 10) && s.track(&v).is_some_and(|t| t.keyframes > 0)
        })
        .await
        .unwrap();
        gone = vec![audio, video];
    }

    first.leave(STEP).await.unwrap();

    for sub in subs.iter_mut() {
        let who = first_id.clone();
        sub.wait_event(STEP, "participant_left", |e| match e {
            Event::Server(ServerMessage::ParticipantLeft { participant }) if *participant == who => Some(()),
            _ => None,
        })
        .await
        .unwrap();
        for track in &gone {
            let who = first_id.clone();
            sub.wait_event(STEP, &format!("track_unpublished {track}"), |e| match e {
                Event::Server(ServerMessage::TrackUnpublished { participant, track: t })
                    if *participant == who && t == track =>
                {
                    Some(())
                }
                _ => None,
            })
            .await
            .unwrap();
        }
        // the server renegotiates the subscriber connection without the gone tracks
        let gone = gone.clone();
        let tracks = sub
            .wait_event(STEP, "renegotiation without the tracks", |e| match e {
                Event::Negotiated { role: loadtest::Role::Subscriber, tracks }
                    if !tracks.values().any(|t| gone.contains(&t.track)) =>
                {
                    Some(tracks.clone())
                }
                _ => None,
            })
            .await
            .unwrap();
        assert!(tracks.is_empty(), "no other track is published: {tracks:?}");
    }

    // the renegotiated connections still work: a new publisher reaches both subscribers
    let second = h.publisher("leave", "second").await;
    for sub in subs.iter_mut() {
        let who = second.participant().id.clone();
        let video = sub
            .wait_event(STEP, "the second publisher's video", |e| match e {
                Event::Server(ServerMessage::TrackPublished { participant, track })
                    if *participant == who && track.kind == TrackKind::Video =>
                {
                    Some(track.id.clone())
                }
                _ => None,
            })
            .await
            .unwrap();
        let v = video.clone();
        let s = sub
            .wait_stats(STEP, "media of the second publisher", move |s: &ClientStats| {
                s.track(&v).is_some_and(|t| t.keyframes > 0 && t.frames >= 25)
            })
            .await
            .unwrap();
        let t = s.track(&video).unwrap();
        assert_eq!((t.lost, t.duplicates, t.picture_id_jumps, t.ts_backwards), (0, 0, 0, 0), "{t:?}");
    }
}
