//! The publisher connection: offers an Opus track and a VP8 track with simulcast encodings
//! (rids q, h, f), then sends synthetic media on a schedule and answers keyframe requests.

use crate::peer::{self, MID_URI, RID_URI};
use crate::probe::WallClock;
use crate::stats::PublisherStats;
use crate::synth::{AUDIO_PTIME, AudioStream, LayerSpec, SIMULCAST_LAYERS, SynthPacket, VideoLayer};
use bytes::{Bytes, BytesMut};
use rtc::media_stream::MediaStreamTrack;
use rtc::peer_connection::RTCPeerConnection;
use rtc::rtcp::payload_feedbacks::full_intra_request::FullIntraRequest;
use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use rtc::rtcp::receiver_report::ReceiverReport;
use rtc::rtcp::transport_feedbacks::transport_layer_nack::TransportLayerNack;
use rtc::rtp_transceiver::RTCRtpSenderId;
use rtc::rtp_transceiver::rtp_sender::{RTCRtpCodingParameters, RTCRtpEncodingParameters, RtpCodecKind};
use std::time::{Duration, Instant};

/// What a client publishes.
#[derive(Debug, Clone)]
pub struct PublishOptions {
    /// Publish an Opus-sized audio track.
    pub audio: bool,
    /// Video layers, lowest first (empty: no video). One layer is sent without simulcast.
    pub layers: Vec<LayerSpec>,
    /// Video frames per second.
    pub fps: u32,
    /// Time between periodic keyframes (a PLI or FIR also triggers one).
    pub keyframe_interval: Duration,
    /// Audio payload size in bytes.
    pub audio_payload: usize,
    /// Video leaves through a pacer at this multiple of the layers' total bitrate, as
    /// browsers send it (Chrome paces at 2.5x); `None` sends each frame as one burst (the
    /// worst case for a server).
    pub pacing: Option<f64>,
    /// After each frame, one padding-only packet per layer (browsers' bandwidth probes).
    pub padding: bool,
    /// VP8 temporal layers per simulcast layer (1: none; browsers send 3 by default).
    pub temporal_layers: u8,
    /// The video is a screen share (the offer's `sources` says so).
    pub screen: bool,
}

impl Default for PublishOptions {
    /// Audio plus q/h/f simulcast at 25 fps, a keyframe every 10 s.
    fn default() -> Self {
        PublishOptions {
            audio: true,
            layers: SIMULCAST_LAYERS.to_vec(),
            fps: 25,
            keyframe_interval: Duration::from_secs(10),
            audio_payload: 80,
            pacing: None,
            padding: false,
            temporal_layers: 1,
            screen: false,
        }
    }
}

/// The `sources` of an offer whose video sections are screen shares when `screen` (else
/// nothing said: cameras and microphones).
pub fn offer_sources(sdp: &str, screen: bool) -> std::collections::BTreeMap<String, signaling::protocol::TrackSource> {
    if !screen {
        return Default::default();
    }
    sdp.split("\nm=")
        .skip(1)
        .filter(|section| section.starts_with("video"))
        .filter_map(|section| section.lines().find_map(|l| l.trim_end().strip_prefix("a=mid:")))
        .map(|mid| (mid.to_owned(), signaling::protocol::TrackSource::Screen))
        .collect()
}

/// Payload type, header extension ids and mid of a sender, known once negotiated.
#[derive(Debug, Clone, Default)]
struct Negotiated {
    pt: u8,
    mid_ext: Option<u8>,
    rid_ext: Option<u8>,
    mid: Bytes,
}

struct Out<S> {
    sender: RTCRtpSenderId,
    negotiated: Option<Negotiated>,
    streams: Vec<S>,
    /// SSRC per stream.
    ssrcs: Vec<u32>,
    /// Per stream: keep sending mid/rid extensions until a receiver report acknowledges it.
    announce: Vec<bool>,
    rids: Vec<Bytes>,
}

/// Synthetic media on one publisher connection.
pub struct Publisher {
    opts: PublishOptions,
    audio: Option<Out<AudioStream>>,
    video: Option<Out<VideoLayer>>,
    started: Option<Instant>,
    audio_next: u64,
    video_next: u64,
    arena: BytesMut,
    packets: Vec<SynthPacket>,
    /// Video packets waiting for the pacer.
    paced: std::collections::VecDeque<SynthPacket>,
    /// When the pacer may send the next one.
    pace_next: Option<Instant>,
    /// What was sent.
    pub stats: PublisherStats,
    /// Per video layer: encoded (dynacast turns layers off and on).
    active: Vec<bool>,
}

fn fresh_ssrc() -> u32 {
    rand::random::<u32>() | 1
}

impl Publisher {
    /// Adds the tracks of `opts` to `pc` (before its offer is created).
    pub fn new(pc: &mut RTCPeerConnection, opts: PublishOptions) -> Result<Self, rtc::shared::error::Error> {
        let mut stats = PublisherStats::default();
        let stream_id = format!("loadtest-{:08x}", rand::random::<u32>());
        let audio = if opts.audio {
            let ssrc = fresh_ssrc();
            stats.audio_ssrc = ssrc;
            let enc = RTCRtpEncodingParameters {
                rtp_coding_parameters: RTCRtpCodingParameters { ssrc: Some(ssrc), ..Default::default() },
                active: true,
                codec: peer::opus(),
                ..Default::default()
            };
            let track = MediaStreamTrack::new(
                stream_id.clone(),
                "audio".into(),
                "audio".into(),
                RtpCodecKind::Audio,
                vec![enc],
            );
            let sender = pc.add_track(track)?;
            Some(Out {
                sender,
                negotiated: None,
                streams: vec![AudioStream::new(ssrc, opts.audio_payload)],
                ssrcs: vec![ssrc],
                announce: vec![true],
                rids: vec![Bytes::new()],
            })
        } else {
            None
        };
        let video = if opts.layers.is_empty() {
            None
        } else {
            let simulcast = opts.layers.len() > 1;
            let mut encodings = Vec::new();
            let mut layers = Vec::new();
            let mut rids = Vec::new();
            for (i, spec) in opts.layers.iter().take(3).enumerate() {
                let ssrc = fresh_ssrc();
                stats.video_ssrcs[i] = ssrc;
                let rid = if simulcast { spec.rid.to_owned() } else { String::new() };
                rids.push(Bytes::from(rid.clone()));
                encodings.push(RTCRtpEncodingParameters {
                    rtp_coding_parameters: RTCRtpCodingParameters { rid, ssrc: Some(ssrc), ..Default::default() },
                    active: true,
                    codec: peer::vp8(),
                    max_bitrate: spec.bitrate,
                    ..Default::default()
                });
                layers.push(VideoLayer::new(i as u8, *spec, ssrc).with_temporal_layers(opts.temporal_layers));
            }
            let track =
                MediaStreamTrack::new(stream_id, "video".into(), "video".into(), RtpCodecKind::Video, encodings);
            let sender = pc.add_track(track)?;
            let n = layers.len();
            let ssrcs = layers.iter().map(|l| l.ssrc).collect();
            Some(Out { sender, negotiated: None, streams: layers, ssrcs, announce: vec![true; n], rids })
        };
        let opts_layers = opts.layers.len();
        Ok(Publisher {
            opts,
            audio,
            video,
            started: None,
            audio_next: 0,
            video_next: 0,
            arena: BytesMut::new(),
            packets: Vec::new(),
            paced: std::collections::VecDeque::new(),
            pace_next: None,
            stats,
            active: vec![true; opts_layers],
        })
    }

    /// Encodes only the video layers whose rids are listed (the server's `publish_layers`);
    /// a layer turned back on starts with a keyframe, as a browser's encoder does.
    pub fn set_active_layers(&mut self, rids: &[String]) {
        let Some(video) = self.video.as_mut() else { return };
        for (i, spec) in self.opts.layers.iter().enumerate() {
            let on = rids.iter().any(|r| r == spec.rid);
            if on && !self.active[i] {
                video.streams[i].request_keyframe();
            }
            self.active[i] = on;
        }
    }

    /// Whether video layer `i` is encoded.
    pub fn layer_active(&self, i: usize) -> bool {
        self.active.get(i).copied().unwrap_or(false)
    }

    /// Starts the media clock (the connection is up).
    pub fn start(&mut self, now: Instant) {
        self.started.get_or_insert(now);
    }

    fn frame_interval(&self) -> Duration {
        Duration::from_secs(1) / self.opts.fps.max(1)
    }

    /// When media is next due, once started.
    pub fn next_due(&self) -> Option<Instant> {
        let start = self.started?;
        let audio = self.audio.as_ref().map(|_| start + AUDIO_PTIME * self.audio_next as u32);
        let video = self.video.as_ref().map(|_| start + self.frame_interval() * self.video_next as u32);
        let media = match (audio, video) {
            (Some(a), Some(v)) => Some(a.min(v)),
            (a, v) => a.or(v),
        };
        let paced = if self.paced.is_empty() { None } else { self.pace_next };
        match (media, paced) {
            (Some(m), Some(p)) => Some(m.min(p)),
            (m, p) => m.or(p),
        }
    }

    /// Sends every audio packet and video frame due at `now`; a driver more than two packet
    /// times late skips ahead instead of bursting.
    pub fn on_timer(&mut self, pc: &mut RTCPeerConnection, now: Instant, clock: &WallClock) {
        let Some(start) = self.started else { return };
        let sent_us = clock.micros(now);
        if let Some(mut audio) = self.audio.take() {
            while start + AUDIO_PTIME * self.audio_next as u32 <= now {
                let due = start + AUDIO_PTIME * self.audio_next as u32;
                self.audio_next += 1;
                if now.saturating_duration_since(due) > AUDIO_PTIME * 2 {
                    self.stats.skipped += 1;
                    continue;
                }
                audio.streams[0].packet(sent_us, &mut self.arena, &mut self.packets);
                self.stats.audio_packets += self.send(pc, &mut audio, now);
            }
            self.audio = Some(audio);
        }
        if let Some(mut video) = self.video.take() {
            let interval = self.frame_interval();
            while start + interval * self.video_next as u32 <= now {
                let capture = interval * self.video_next as u32;
                self.video_next += 1;
                if now.saturating_duration_since(start + capture) > interval * 2 {
                    self.stats.skipped += 1;
                    continue;
                }
                for i in 0..video.streams.len() {
                    if !self.active[i] {
                        continue;
                    }
                    let layer = &mut video.streams[i];
                    let key = layer.frame(
                        capture,
                        self.opts.fps,
                        sent_us,
                        now,
                        self.opts.keyframe_interval,
                        &mut self.arena,
                        &mut self.packets,
                    );
                    if self.opts.padding {
                        layer.padding(&mut self.packets);
                    }
                    self.stats.frames[i] += 1;
                    self.stats.keyframes[i] += u64::from(key);
                }
                if self.opts.pacing.is_some() {
                    self.paced.extend(self.packets.drain(..));
                } else {
                    self.stats.video_packets += self.send(pc, &mut video, now);
                }
            }
            if let Some(factor) = self.opts.pacing {
                self.pace(pc, &mut video, now, factor);
            }
            self.video = Some(video);
        }
    }

    /// Sends the paced video packets that are due: one packet per its size at `factor` times
    /// the layers' total bitrate; an idle pacer does not save up a burst.
    fn pace(&mut self, pc: &mut RTCPeerConnection, video: &mut Out<VideoLayer>, now: Instant, factor: f64) {
        let total_bps: u32 = self.opts.layers.iter().map(|l| l.bitrate).sum();
        let rate = (f64::from(total_bps) * factor).max(1.0);
        let mut next = self.pace_next.filter(|t| *t > now).unwrap_or(now);
        while next <= now {
            let Some(p) = self.paced.pop_front() else { break };
            next += Duration::from_secs_f64((p.payload.len() as f64 + 40.0) * 8.0 / rate);
            self.packets.push(p);
            self.stats.video_packets += self.send(pc, video, now);
        }
        self.pace_next = Some(next);
    }

    /// Writes the queued packets on `out`'s sender; returns how many were accepted.
    fn send<S>(&mut self, pc: &mut RTCPeerConnection, out: &mut Out<S>, now: Instant) -> u64 {
        if out.negotiated.is_none() {
            out.negotiated = negotiated(pc, out.sender);
        }
        let Some(n) = out.negotiated.clone() else {
            self.stats.write_errors += self.packets.len() as u64;
            self.packets.clear();
            return 0;
        };
        let Some(mut sender) = pc.rtp_sender(out.sender) else { return 0 };
        let mut sent = 0;
        for p in self.packets.drain(..) {
            let mut header = rtc::rtp::header::Header {
                version: 2,
                marker: p.marker,
                payload_type: n.pt,
                sequence_number: p.seq,
                timestamp: p.ts,
                ssrc: p.ssrc,
                ..Default::default()
            };
            let idx = out.ssrcs.iter().position(|s| *s == p.ssrc).unwrap_or(0);
            if out.announce.get(idx).copied().unwrap_or(false) {
                if let Some(id) = n.mid_ext {
                    let _ = header.set_extension(id, n.mid.clone());
                }
                if let (Some(id), Some(rid)) = (n.rid_ext, out.rids.get(idx).filter(|r| !r.is_empty())) {
                    let _ = header.set_extension(id, rid.clone());
                }
            }
            match sender.write_rtp(now, rtc::rtp::Packet { header, payload: p.payload }) {
                Ok(()) => sent += 1,
                Err(e) => {
                    self.stats.write_errors += 1;
                    tracing::trace!(error = %e, "write_rtp");
                }
            }
        }
        sent
    }

    /// Handles RTCP from the server: keyframe requests, NACKs, receiver reports.
    pub fn on_rtcp(&mut self, pkts: &[Box<dyn rtc::rtcp::Packet>]) {
        for p in pkts {
            tracing::trace!(?p, "publisher rtcp");
            let any = p.as_any();
            if let Some(pli) = any.downcast_ref::<PictureLossIndication>() {
                self.keyframe_request(pli.media_ssrc);
            } else if let Some(fir) = any.downcast_ref::<FullIntraRequest>() {
                for e in &fir.fir {
                    self.keyframe_request(e.ssrc);
                }
            } else if any.is::<TransportLayerNack>() {
                self.stats.nacks += 1;
            } else if let Some(rr) = any.downcast_ref::<ReceiverReport>() {
                for r in &rr.reports {
                    if let Some(a) = self.audio.as_mut() {
                        a.acknowledge(r.ssrc);
                    }
                    if let Some(v) = self.video.as_mut() {
                        v.acknowledge(r.ssrc);
                    }
                }
            }
        }
    }

    fn keyframe_request(&mut self, ssrc: u32) {
        let Some(video) = self.video.as_mut() else { return };
        if let Some(layer) = video.streams.iter_mut().find(|l| l.ssrc == ssrc) {
            layer.request_keyframe();
            self.stats.keyframe_requests[layer.index as usize] += 1;
        }
    }
}

impl<S> Out<S> {
    /// A receiver report for `ssrc` arrived: the receiver knows the stream, stop announcing it.
    fn acknowledge(&mut self, ssrc: u32) {
        if let Some(i) = self.ssrcs.iter().position(|s| *s == ssrc) {
            self.announce[i] = false;
        }
    }
}

fn negotiated(pc: &mut RTCPeerConnection, id: RTCRtpSenderId) -> Option<Negotiated> {
    let mid = pc.rtp_transceiver(id.into()).and_then(|t| t.mid().clone())?;
    let mut sender = pc.rtp_sender(id)?;
    let params = sender.get_parameters();
    let pt = params.rtp_parameters.codecs.first()?.payload_type;
    let ext = |uri: &str| params.rtp_parameters.header_extensions.iter().find(|e| e.uri == uri).map(|e| e.id as u8);
    Some(Negotiated { pt, mid_ext: ext(MID_URI), rid_ext: ext(RID_URI), mid: Bytes::from(mid) })
}
