//! Construction of the server side of a peer connection: codecs, header extensions,
//! interceptors, ICE-lite with our own credentials and the one media-port candidate.

use crate::udp::{Path, PeerKey};
use glue::feedback::DeliverFeedback;
use rand::Rng;
use rtc::ice::tcp_type::TcpType;
use rtc::interceptor::{NackGeneratorBuilder, ReceiverReportBuilder, Registry, Slot};
use rtc::peer_connection::RTCPeerConnection;
use rtc::peer_connection::RTCPeerConnectionBuilder;
use rtc::peer_connection::configuration::RTCConfigurationBuilder;
use rtc::peer_connection::configuration::interceptor_registry::{
    configure_simulcast_extension_headers, configure_twcc_receiver_only,
};
use rtc::peer_connection::configuration::media_engine::{
    MIME_TYPE_H264, MIME_TYPE_OPUS, MIME_TYPE_RTX, MIME_TYPE_VP8, MediaEngine,
};
use rtc::peer_connection::configuration::setting_engine::SettingEngineBuilder;
use rtc::peer_connection::transport::{CandidateConfig, CandidateHostConfig, RTCDtlsRole, RTCIceCandidate};
use rtc::rtp_transceiver::rtp_sender::{
    RTCPFeedback, RTCRtpCodec, RTCRtpCodecParameters, RTCRtpHeaderExtensionCapability, RtpCodecKind,
};
use std::net::SocketAddr;
use std::time::Instant;

/// Times the NACK generator asks a publisher for one lost packet (as Chrome's NACK module
/// does, about 10): a packet that does not come back by then is left to a keyframe.
const NACKS_PER_PACKET: u16 = 10;

/// Which of a participant's two connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Client -> server media; the client offers.
    Publisher,
    /// Server -> client media; the server offers.
    Subscriber,
}

/// One server-side peer connection and the bookkeeping the worker keeps about it.
pub struct Peer {
    /// Key the demux routes by.
    pub key: PeerKey,
    /// Owner participant id.
    pub owner: String,
    /// Publisher or subscriber.
    pub role: Role,
    /// Local ICE ufrag (registered in the demux).
    pub ufrag: String,
    /// Its local ICE password: the demux checks a STUN request's MESSAGE-INTEGRITY with it
    /// before it learns the request's source address.
    pub pwd: String,
    /// The ufrag before an ICE restart the server offered: still routed until the client
    /// answers with the new one.
    pub retired_ufrag: Option<String>,
    /// The sans-IO connection.
    pub pc: RTCPeerConnection,
    /// When it next wants `handle_timeout`.
    pub next_timeout: Option<Instant>,
    /// Earliest live entry of this peer in the room's timer heap.
    pub armed: Option<Instant>,
    /// DTLS-SRTP is up and the path not failed: media can be sent (a `disconnected` path is
    /// transient and keeps sending).
    pub connected: bool,
    /// Subscriber connections: our own SRTP output for forwarded media, once DTLS is up.
    pub egress: Option<super::egress::Egress>,
    /// Liveness: it must connect by this time (set once it was negotiated), or it failed.
    pub liveness: Liveness,
    /// Candidates the client trickled for it.
    pub remote_candidates: u16,
    /// In the room's list of connections to drain (`RoomCore::queued`): a connection is listed once
    /// however many of its datagrams a batch holds, since one drain takes all its output.
    pub queued: bool,
}

/// Whether a connection came up, or by when it must.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Liveness {
    /// Not negotiated yet: nothing to connect.
    Idle,
    /// Negotiated, not connected yet: it must connect by then.
    ConnectBy(Instant),
    /// It connected (later disconnections are ICE's to time out).
    Connected,
    /// ICE or DTLS failed.
    Failed,
}

/// Candidates a client may trickle for one connection (a browser gathers a handful per
/// network interface; the server, ICE-lite, learns addresses from checks anyway).
pub const MAX_CANDIDATES: u16 = 32;

/// How long a negotiated connection may take to connect: browsers connect in well under a
/// second on a working path; past this the path is blocked (no UDP, no TURN yet).
pub const CONNECT_DEADLINE: std::time::Duration = std::time::Duration::from_secs(20);

impl Peer {
    /// It was just negotiated (an offer or answer went out): it must connect by the deadline
    /// unless a deadline runs or it connected already.
    pub fn negotiated(&mut self, now: Instant) {
        if self.liveness == Liveness::Idle {
            self.liveness = Liveness::ConnectBy(now + CONNECT_DEADLINE);
        }
    }

    /// It never connected in time, or failed: its participant is removed.
    pub fn dead(&self, now: Instant) -> bool {
        match self.liveness {
            Liveness::ConnectBy(t) => now >= t,
            Liveness::Failed => true,
            Liveness::Idle | Liveness::Connected => false,
        }
    }

    /// Marks the connection listed for draining; true when it was not listed yet (the caller
    /// lists it).
    pub fn mark_queued(&mut self) -> bool {
        !std::mem::replace(&mut self.queued, true)
    }
}

/// Where this node's media port is and what address it announces.
#[derive(Debug, Clone)]
pub struct MediaAddr {
    /// Address the socket is bound to (the ICE agent's local address).
    pub local: SocketAddr,
    /// Addresses put into ICE candidates (NAT 1:1 / external IPs).
    pub announce: Vec<std::net::IpAddr>,
    /// Where the ICE-TCP listener is bound (RFC 6544 passive candidates at the announced
    /// addresses with its port, after the UDP ones), if it is on.
    pub tcp: Option<SocketAddr>,
}

impl Peer {
    /// Stages an ICE restart with fresh credentials (the next offer carries them); the caller
    /// routes the new ufrag (`self.ufrag`, `self.pwd`). The ufrag the client uses until it
    /// answers is retired (still routed, `retired_ufrag`); returns the one to stop routing at
    /// once: that of a restart staged before and never answered (the client never used it).
    pub fn restart_ice(&mut self) -> Option<String> {
        let (ufrag, pwd) = (random_token(16), random_token(32));
        self.pc.restart_ice_with(ufrag.clone(), pwd.clone());
        let old = std::mem::replace(&mut self.ufrag, ufrag);
        self.pwd = pwd;
        match self.retired_ufrag {
            Some(_) => Some(old),
            None => {
                self.retired_ufrag = Some(old);
                None
            }
        }
    }

    /// After an answer: the retired ufrag, if the answered offer was the restart's (its local
    /// description carries the new ufrag), for the caller to stop routing.
    pub fn take_retired_ufrag(&mut self) -> Option<String> {
        self.retired_ufrag.as_ref()?;
        let answered_restart =
            self.pc.local_description().is_some_and(|d| d.sdp.contains(&format!("a=ice-ufrag:{}", self.ufrag)));
        if answered_restart { self.retired_ufrag.take() } else { None }
    }
}

fn random_token(len: usize) -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    let mut rng = rand::rng();
    (0..len).map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char).collect()
}

/// Video codec feedback every video codec offers.
fn video_feedback() -> Vec<RTCPFeedback> {
    [("nack", ""), ("nack", "pli"), ("ccm", "fir")]
        .into_iter()
        .map(|(t, p)| RTCPFeedback { typ: t.to_owned(), parameter: p.to_owned() })
        .collect()
}

fn codec(
    mime: &str,
    clock_rate: u32,
    channels: u16,
    fmtp: &str,
    fb: Vec<RTCPFeedback>,
    pt: u8,
) -> RTCRtpCodecParameters {
    RTCRtpCodecParameters {
        rtp_codec: RTCRtpCodec {
            mime_type: mime.to_owned(),
            clock_rate,
            channels,
            sdp_fmtp_line: fmtp.to_owned(),
            rtcp_feedback: fb,
        },
        payload_type: pt,
    }
}

/// The codecs this SFU forwards: Opus, VP8 and H264 (with RTX for video).
pub fn media_engine() -> Result<MediaEngine, rtc::shared::error::Error> {
    let mut m = MediaEngine::default();
    m.register_codec(codec(MIME_TYPE_OPUS, 48000, 2, "minptime=10;useinbandfec=1", vec![], 111), RtpCodecKind::Audio)?;
    let video = [
        codec(MIME_TYPE_VP8, 90000, 0, "", video_feedback(), 96),
        codec(MIME_TYPE_RTX, 90000, 0, "apt=96", vec![], 97),
        codec(
            MIME_TYPE_H264,
            90000,
            0,
            "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f",
            video_feedback(),
            102,
        ),
        codec(MIME_TYPE_RTX, 90000, 0, "apt=102", vec![], 103),
        codec(
            MIME_TYPE_H264,
            90000,
            0,
            "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42001f",
            video_feedback(),
            104,
        ),
        codec(MIME_TYPE_RTX, 90000, 0, "apt=104", vec![], 105),
    ];
    for c in video {
        m.register_codec(c, RtpCodecKind::Video)?;
    }
    for (uri, kind) in [
        (super::sdp::AUDIO_LEVEL_URI, RtpCodecKind::Audio),
        ("http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time", RtpCodecKind::Video),
    ] {
        m.register_header_extension(RTCRtpHeaderExtensionCapability { uri: uri.to_owned() }, kind, None)?;
    }
    Ok(m)
}

/// Creates a server-side peer connection with a fresh ufrag, ready for offer/answer.
pub fn new_peer(
    key: PeerKey,
    owner: &str,
    role: Role,
    addr: &MediaAddr,
    now: Instant,
) -> Result<Peer, rtc::shared::error::Error> {
    let ufrag = random_token(16);
    let pwd = random_token(32);
    let settings = SettingEngineBuilder::new()
        .with_lite(true)
        .with_ice_credentials(ufrag.clone(), pwd.clone())
        .with_answering_dtls_role(RTCDtlsRole::Server)
        .with_multicast_dns_mode(rtc::ice::mdns::MulticastDnsMode::Disabled)
        // Browsers send consent checks about every 5 s (RFC 7675): allow for a few missing
        // before calling the path disconnected, and fail it after consent's 30 s.
        .with_ice_timeouts(
            Some(std::time::Duration::from_secs(15)),
            Some(std::time::Duration::from_secs(30)),
            Some(std::time::Duration::from_secs(2)),
        )
        .build();
    let mut media = media_engine()?;
    // Only the interceptors a role uses: each one costs every inbound datagram of the
    // connection a pass through its queue. NACKs upstream come from the generator and the
    // publisher gets receiver reports and TWCC feedback; subscribers' NACKs are answered by the
    // worker from the per-layer packet cache (no responder), and their sender reports come from
    // `Egress`, which also sends their media, so no connection needs `rtc`'s sender-report
    // interceptor (it reports only what went through `rtc`'s write pipeline) and a subscriber
    // connection, which receives no media, needs no receiver reports.
    let registry = Registry::new();
    configure_simulcast_extension_headers(&mut media)?;
    let registry = if role == Role::Publisher {
        let registry = registry
            .with(Slot::NackGenerator, NackGeneratorBuilder::new().with_max_nacks_per_packet(NACKS_PER_PACKET).build())
            .with(Slot::ReceiverReport, ReceiverReportBuilder::new().build());
        configure_twcc_receiver_only(registry, &mut media)?
    } else {
        // the room numbers and estimates subscribers' media itself (`congestion.rs`): only the
        // SDP part, no interceptor
        negotiate_transport_cc(&mut media)?;
        registry
    };
    let registry = registry.with(rtc::interceptor::Slot::from(glue::feedback::SLOT), DeliverFeedback::only(acted_on));
    let mut pc = RTCPeerConnectionBuilder::new()
        .with_configuration(RTCConfigurationBuilder::new().build())
        .with_setting_engine(settings)
        .with_media_engine(media)
        .with_interceptor_registry(registry)
        .build(now)?;
    // UDP first: a client that can reach both prefers it (the TCP candidate's priority is
    // lower too, as RFC 6544 4.2 advises)
    let tcp = addr.tcp.map(|t| ("tcp", t.port(), TcpType::Passive));
    for (network, port, tcp_type) in std::iter::once(("udp", addr.local.port(), TcpType::Unspecified)).chain(tcp) {
        for ip in &addr.announce {
            let candidate = CandidateHostConfig {
                base_config: CandidateConfig {
                    network: network.to_owned(),
                    address: ip.to_string(),
                    port,
                    component: 1,
                    ..Default::default()
                },
                tcp_type,
            }
            .new_candidate_host()?;
            pc.add_local_candidate(RTCIceCandidate::from(&candidate).to_json()?)?;
        }
    }
    Ok(Peer {
        key,
        owner: owner.to_owned(),
        role,
        ufrag,
        pwd,
        retired_ufrag: None,
        pc,
        next_timeout: None,
        armed: None,
        connected: false,
        egress: None,
        liveness: Liveness::Idle,
        remote_candidates: 0,
        queued: false,
    })
}

/// Offers transport-wide congestion control feedback: the header extension and `transport-cc`
/// feedback on every codec.
fn negotiate_transport_cc(media: &mut MediaEngine) -> Result<(), rtc::shared::error::Error> {
    for kind in [RtpCodecKind::Audio, RtpCodecKind::Video] {
        media.register_feedback(RTCPFeedback { typ: "transport-cc".to_owned(), parameter: String::new() }, kind);
        let uri = super::congestion::TRANSPORT_CC_URI.to_owned();
        media.register_header_extension(RTCRtpHeaderExtensionCapability { uri }, kind, None)?;
    }
    Ok(())
}

impl MediaAddr {
    /// The local address the ICE agent is told packets arrive on: the bound address, or the
    /// first announced address when bound to an unspecified address.
    /// For a datagram of `path`: the UDP socket's, or the TCP listener's.
    pub fn ice_local(&self, path: Path) -> SocketAddr {
        let local = match (path, self.tcp) {
            (Path::Tcp(_), Some(tcp)) => tcp,
            _ => self.local,
        };
        if local.ip().is_unspecified()
            && let Some(ip) = self.announce.first()
        {
            return SocketAddr::new(*ip, local.port());
        }
        local
    }
}

/// The inbound RTCP the room acts on (PLI, FIR, NACK, TWCC, sender reports): only these reach
/// `poll_read` (see `glue::feedback`).
fn acted_on(p: &dyn rtc::rtcp::Packet) -> bool {
    use rtc::rtcp::payload_feedbacks::full_intra_request::FullIntraRequest;
    use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
    use rtc::rtcp::sender_report::SenderReport;
    use rtc::rtcp::transport_feedbacks::transport_layer_cc::TransportLayerCc;
    use rtc::rtcp::transport_feedbacks::transport_layer_nack::TransportLayerNack;
    let any = p.as_any();
    any.is::<PictureLossIndication>()
        || any.is::<FullIntraRequest>()
        || any.is::<SenderReport>()
        || any.is::<TransportLayerNack>()
        || any.is::<TransportLayerCc>()
}

#[cfg(test)]
#[path = "peer_tests.rs"]
mod tests;
