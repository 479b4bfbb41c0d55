use super::*;
use crate::synth::{AudioStream, SIMULCAST_LAYERS, SynthPacket, VideoLayer};
use bytes::BytesMut;
use std::time::{Duration, Instant};

fn audio_track() -> RecvTrack {
    RecvTrack::new(TrackStats::new("TR_a", "PA_x", TrackKind::Audio, "0"))
}

fn video_track() -> RecvTrack {
    RecvTrack::new(TrackStats::new("TR_v", "PA_x", TrackKind::Video, "1"))
}

fn feed(t: &mut RecvTrack, p: &SynthPacket, seq: u16, arrival_us: u64) {
    t.on_packet(RtpView { seq, ts: p.ts, marker: p.marker, payload: &p.payload }, arrival_us);
}

fn audio_packets(n: usize) -> Vec<SynthPacket> {
    let mut a = AudioStream::new(1, 80);
    let mut arena = BytesMut::new();
    let mut out = Vec::new();
    for i in 0..n {
        a.packet(1_000_000 + 20_000 * i as u64, &mut arena, &mut out);
    }
    out
}

#[test]
fn sequence_analysis_with_wrap() {
    // columns: name, sequence numbers as they arrive, lost, duplicates, out of order
    let rows: &[(&str, &[u16], u64, u64, u64)] = &[
        ("in order", &[10, 11, 12, 13], 0, 0, 0),
        ("across the wrap", &[65534, 65535, 0, 1], 0, 0, 0),
        ("gap across the wrap", &[65534, 1, 2], 2, 0, 0),
        ("duplicate", &[5, 6, 6, 7], 0, 1, 0),
        ("reordered fills the gap", &[5, 7, 6, 8], 0, 0, 1),
        ("reordered across the wrap", &[65535, 1, 0, 2], 0, 0, 1),
        ("late duplicate of a reordered one", &[5, 7, 6, 6, 8], 0, 1, 1),
        ("lost for good", &[100, 103, 104], 2, 0, 0),
        ("duplicate after a wrap", &[65535, 0, 65535], 0, 1, 0),
    ];
    let pkts = audio_packets(8);
    for (name, seqs, lost, dups, ooo) in rows {
        let mut t = audio_track();
        for (i, &seq) in seqs.iter().enumerate() {
            // timestamps follow arrival order so only the sequence analysis is tested
            feed(&mut t, &pkts[i], seq, 2_000_000 + 20_000 * i as u64);
        }
        let s = &t.stats;
        assert_eq!((s.lost, s.duplicates, s.out_of_order), (*lost, *dups, *ooo), "{name}");
        assert_eq!(s.packets, seqs.len() as u64, "{name}");
    }
}

#[test]
fn audio_latency_and_timestamps() {
    let pkts = audio_packets(5);
    let mut t = audio_track();
    for (i, p) in pkts.iter().enumerate() {
        feed(&mut t, p, p.seq, 1_000_000 + 20_000 * i as u64 + 3_000);
    }
    let s = &t.stats;
    assert_eq!((s.lost, s.ts_backwards, s.latency.count), (0, 0, 5));
    assert_eq!((s.latency.min, s.latency.max), (3_000, 3_000));
    assert_eq!(s.newest_sent_us, 1_000_000 + 80_000);
    assert!(s.jitter_ms < 0.1, "{}", s.jitter_ms);
    // a packet whose timestamp goes back
    let mut t = audio_track();
    feed(&mut t, &pkts[1], 1, 0);
    feed(&mut t, &pkts[0], 2, 0);
    assert_eq!(t.stats.ts_backwards, 1);
}

/// Frames of `layer` as packet lists, frame `i` at 40 ms * i.
fn video_frames(layer: &mut VideoLayer, n: usize, keyframes: &[usize]) -> Vec<Vec<SynthPacket>> {
    let mut arena = BytesMut::new();
    let t0 = Instant::now();
    (0..n)
        .map(|i| {
            if keyframes.contains(&i) {
                layer.request_keyframe();
            }
            let mut out = Vec::new();
            let at = Duration::from_millis(40 * i as u64);
            layer.frame(
                at,
                25,
                5_000_000 + at.as_micros() as u64,
                t0 + at,
                Duration::from_secs(100),
                &mut arena,
                &mut out,
            );
            out
        })
        .collect()
}

#[test]
fn video_keyframes_pictures_and_frames() {
    let mut layer = VideoLayer::new(2, SIMULCAST_LAYERS[2], 9);
    let frames = video_frames(&mut layer, 10, &[5]);
    let mut t = video_track();
    // an interframe before the first keyframe is not analyzed
    let mut early = VideoLayer::new(2, SIMULCAST_LAYERS[2], 9);
    let early = video_frames(&mut early, 2, &[]);
    for p in &early[1] {
        feed(&mut t, p, p.seq, 0);
    }
    assert_eq!(t.stats.before_keyframe, early[1].len() as u64);
    let mut seq = 1000u16;
    for (i, f) in frames.iter().enumerate() {
        for (k, p) in f.iter().enumerate() {
            if i == 7 && k == f.len() - 1 {
                continue; // frame 7 loses its last packet
            }
            feed(&mut t, p, seq, 5_010_000 + 40_000 * i as u64);
            seq = seq.wrapping_add(1);
        }
    }
    let s = &t.stats;
    assert_eq!((s.keyframes, s.bad_keyframes, s.frames), (2, 0, 10));
    assert_eq!(s.size, Some((1280, 720)));
    assert_eq!(s.widths, vec![1280]);
    assert_eq!((s.incomplete_frames, s.picture_id_jumps, s.ts_backwards), (1, 0, 0));
    assert_eq!(s.lost, 0, "sequence numbers were renumbered without a gap");
    assert_eq!(s.switches.len(), 1);
    assert_eq!((s.switches[0].from, s.switches[0].to, s.switches[0].at_keyframe), (None, 2, true));
    assert_eq!(s.latency.count, s.packets - s.before_keyframe);
    assert_eq!(s.latency.max, 10_000);
}

/// Builds what an SFU forwards when switching from `a` to `b` at `b`'s keyframe: packets
/// renumbered continuously, picture ids continued; `bad` breaks one of those on purpose.
fn forwarded_switch(bad: &str) -> RecvTrack {
    let mut q = VideoLayer::new(0, SIMULCAST_LAYERS[0], 1);
    let mut f = VideoLayer::new(2, SIMULCAST_LAYERS[2], 3);
    let qf = video_frames(&mut q, 6, &[]);
    let ff = video_frames(&mut f, 6, &[3]);
    let mut t = video_track();
    let mut seq = 65530u16;
    let mut pid = 32760u16;
    let feed_frame = |t: &mut RecvTrack, pkts: &[SynthPacket], seq: &mut u16, pid: &mut u16| {
        for p in pkts {
            let mut payload = p.payload.to_vec();
            payload[2] = 0x80 | (*pid >> 8) as u8;
            payload[3] = *pid as u8;
            t.on_packet(RtpView { seq: *seq, ts: p.ts, marker: p.marker, payload: &payload }, 0);
            *seq = seq.wrapping_add(1);
        }
        *pid = (*pid + 1) % vp8::PICTURE_ID_MODULO;
    };
    for frame in &qf[..3] {
        feed_frame(&mut t, frame, &mut seq, &mut pid);
    }
    match bad {
        "seq" => seq = seq.wrapping_add(1),
        "pid" => pid = (pid + 2) % vp8::PICTURE_ID_MODULO,
        _ => {}
    }
    let from = if bad == "not at keyframe" { 2 } else { 3 };
    for frame in &ff[from..] {
        feed_frame(&mut t, frame, &mut seq, &mut pid);
    }
    t
}

#[test]
fn layer_switch_records() {
    // columns: what is broken, at keyframe, seq delta, picture delta, lost, picture jumps
    let rows: &[(&str, bool, i64, u16, u64, u64)] = &[
        ("nothing", true, 1, 1, 0, 0),
        ("seq", true, 2, 1, 1, 0),
        ("pid", true, 1, 3, 0, 1),
        ("not at keyframe", false, 1, 1, 0, 0),
    ];
    for &(bad, at_key, seq_delta, pic_delta, lost, jumps) in rows {
        let t = forwarded_switch(bad);
        let s = &t.stats;
        assert_eq!(s.switches.len(), 2, "{bad}");
        let sw = s.switches[1];
        assert_eq!((sw.from, sw.to), (Some(0), 2), "{bad}");
        assert_eq!(sw.at_keyframe, at_key, "{bad}");
        assert_eq!(sw.seq_delta, seq_delta, "{bad}");
        assert_eq!(sw.picture_delta, Some(pic_delta), "{bad}");
        assert_eq!((s.lost, s.picture_id_jumps), (lost, jumps), "{bad}");
        assert_eq!(s.widths, vec![320, 1280], "{bad}");
    }
}

#[test]
fn malformed_payloads_are_counted() {
    let mut t = video_track();
    t.on_packet(RtpView { seq: 1, ts: 0, marker: true, payload: &[0x90] }, 0);
    // a keyframe start without the start code
    t.on_packet(RtpView { seq: 2, ts: 0, marker: true, payload: &[0x10, 0x10, 0, 0, 1, 2, 3, 4, 5, 6, 7] }, 0);
    assert_eq!((t.stats.malformed, t.stats.bad_keyframes, t.stats.packets), (2, 1, 2));
}

#[test]
fn extend_near() {
    for (reference, seq, want) in [(70_000u64, 4465u16, 70_001u64), (65_536, 65_535, 65_535), (65_536 + 5, 2, 65_538)] {
        assert_eq!(extend(reference, seq), want, "{reference} {seq}");
    }
}

#[test]
fn sender_report_rtp_time_checked_against_received_timestamps() {
    // audio packets every 20 ms (960 ticks at 48 kHz), arriving 3 ms after their send time
    let pkts = audio_packets(3);
    let arrival = |i: usize| 1_000_000 + 20_000 * i as u64 + 3_000;
    // columns: report arrival after the last packet (µs), RTP time offset from the last packet's
    // timestamp (ticks), expected largest error (ms)
    let rows: &[(u64, i64, f64)] = &[
        (0, 0, 0.0),              // at the last packet, same timestamp
        (500_000, 24_000, 0.0),   // half a second later, advanced by half a second
        (500_000, 24_480, 10.0),  // 10 ms ahead
        (500_000, 23_520, 10.0),  // 10 ms behind
        (100_000, -4_800, 200.0), // stale: 100 ms before the last packet
    ];
    for &(after_us, offset, want_ms) in rows {
        let mut t = audio_track();
        for (i, p) in pkts.iter().enumerate() {
            feed(&mut t, p, p.seq, arrival(i));
        }
        let last_ts = pkts[2].ts;
        t.on_sender_report(last_ts.wrapping_add(offset as i32 as u32), 3, arrival(2) + after_us);
        assert_eq!(t.stats.sender_reports, 1);
        assert_eq!(t.stats.sr_packet_count, 3);
        assert!((t.stats.sr_max_error_ms - want_ms).abs() < 0.05, "{after_us} {offset}: {}", t.stats.sr_max_error_ms);
    }
    // before any packet: counted, not checked
    let mut t = audio_track();
    t.on_sender_report(12345, 0, 1);
    assert_eq!((t.stats.sender_reports, t.stats.sr_max_error_ms), (1, 0.0));
}

#[test]
fn sink_stream_counts_from_sequence_numbers() {
    use crate::stats::SinkStream;
    // columns: name, sequence numbers as they arrive, packets, lost
    let rows: &[(&str, &[u16], u64, u64)] = &[
        ("in order", &[1, 2, 3], 3, 0),
        ("gap", &[1, 2, 5], 3, 2),
        ("across the wrap", &[65534, 65535, 0, 1], 4, 0),
        ("gap across the wrap", &[65535, 2], 2, 2),
        ("late packet fills its gap", &[1, 3, 2], 3, 0),
    ];
    for (name, seqs, packets, lost) in rows {
        let mut s = SinkStream::new(7, seqs[0]);
        for &q in &seqs[1..] {
            s.on_packet(q);
        }
        assert_eq!((s.packets, s.lost()), (*packets, *lost), "{name}");
    }
}
