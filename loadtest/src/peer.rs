//! Construction of a client-side `rtc` peer connection: Opus and VP8 with NACK/PLI/FIR
//! feedback, the simulcast header extensions, mDNS off, and one host candidate for the
//! connection's own UDP socket.
//!
//! Every interceptor costs a few moves of the packet per packet in `rtc`'s chain, so each
//! role gets only the ones it uses: a publisher answers NACKs, sends sender reports and hands
//! inbound RTCP (PLI/FIR/RR) to the application (`glue::feedback`); a subscriber's NACKs
//! and receiver reports come from the application ([`crate::reports`]).

use crate::event::Role;
use rtc::interceptor::{
    NackGeneratorBuilder, NackResponderBuilder, ReceiverReportBuilder, Registry, SenderReportBuilder, Slot,
};
use rtc::peer_connection::RTCPeerConnection;
use rtc::peer_connection::RTCPeerConnectionBuilder;
use rtc::peer_connection::configuration::RTCConfigurationBuilder;
use rtc::peer_connection::configuration::interceptor_registry::configure_simulcast_extension_headers;
use rtc::peer_connection::configuration::media_engine::{MIME_TYPE_OPUS, MIME_TYPE_VP8, MediaEngine};
use rtc::peer_connection::configuration::setting_engine::SettingEngineBuilder;
use rtc::peer_connection::transport::{CandidateConfig, CandidateHostConfig, RTCIceCandidate};
use rtc::rtp_transceiver::rtp_sender::{RTCPFeedback, RTCRtpCodec, RTCRtpCodecParameters, RtpCodecKind};
use std::net::SocketAddr;
use std::time::Instant;

/// Payload type offered for Opus.
pub const OPUS_PT: u8 = 111;
/// Payload type offered for VP8.
pub const VP8_PT: u8 = 96;
/// Header extension URI of the media id.
pub const MID_URI: &str = "urn:ietf:params:rtp-hdrext:sdes:mid";
/// Header extension URI of the RTP stream id.
pub const RID_URI: &str = "urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id";

/// The Opus codec as offered.
pub fn opus() -> RTCRtpCodec {
    RTCRtpCodec {
        mime_type: MIME_TYPE_OPUS.to_owned(),
        clock_rate: 48_000,
        channels: 2,
        sdp_fmtp_line: "minptime=10;useinbandfec=1".to_owned(),
        rtcp_feedback: vec![],
    }
}

/// The VP8 codec as offered, with NACK, PLI and FIR feedback.
pub fn vp8() -> RTCRtpCodec {
    let fb = [("nack", ""), ("nack", "pli"), ("ccm", "fir")]
        .into_iter()
        .map(|(t, p)| RTCPFeedback { typ: t.to_owned(), parameter: p.to_owned() })
        .collect();
    RTCRtpCodec {
        mime_type: MIME_TYPE_VP8.to_owned(),
        clock_rate: 90_000,
        channels: 0,
        sdp_fmtp_line: String::new(),
        rtcp_feedback: fb,
    }
}

/// Times a connection of both roles NACKs one lost packet (as [`crate::reports`] does).
const NACKS_PER_PACKET: u16 = crate::reports::NACKS_PER_PACKET as u16;

fn media_engine() -> Result<MediaEngine, rtc::shared::error::Error> {
    let mut m = MediaEngine::default();
    m.register_codec(RTCRtpCodecParameters { rtp_codec: opus(), payload_type: OPUS_PT }, RtpCodecKind::Audio)?;
    m.register_codec(RTCRtpCodecParameters { rtp_codec: vp8(), payload_type: VP8_PT }, RtpCodecKind::Video)?;
    configure_simulcast_extension_headers(&mut m)?;
    // the server stamps what it sends with transport-wide numbers when the answer accepts them
    // ([`crate::twcc`] answers where the receiving path sees the header)
    for kind in [RtpCodecKind::Audio, RtpCodecKind::Video] {
        let uri = crate::twcc::URI.to_owned();
        m.register_header_extension(
            rtc::rtp_transceiver::rtp_sender::RTCRtpHeaderExtensionCapability { uri },
            kind,
            None,
        )?;
    }
    Ok(m)
}

/// The interceptors of a connection of `role`, or of both roles with `None` (NACK/PLI
/// feedback is in [`vp8`]'s codec).
fn interceptors(role: Option<Role>) -> Registry {
    let mut r = Registry::new();
    if role != Some(Role::Subscriber) {
        r = r
            .with(Slot::NackResponder, NackResponderBuilder::new().build())
            .with(Slot::SenderReport, SenderReportBuilder::new().build())
            .with(Slot::from(glue::feedback::SLOT), glue::feedback::DeliverFeedback::default());
    }
    if role.is_none() {
        r = r
            .with(Slot::NackGenerator, NackGeneratorBuilder::new().with_max_nacks_per_packet(NACKS_PER_PACKET).build())
            .with(Slot::ReceiverReport, ReceiverReportBuilder::new().build());
    }
    if role == Some(Role::Subscriber) {
        // sender reports reach the application, which checks them; NACKs and receiver reports
        // come from the application too ([`crate::reports`]): most media never passes through
        // `rtc`'s read pipeline ([`crate::srtp_in`]), where these interceptors would see it
        r = r.with(Slot::from(glue::feedback::SLOT), glue::feedback::DeliverFeedback::default());
    }
    r
}

/// A peer connection with the interceptors of both roles (it can publish and receive, and
/// hands every inbound RTCP packet to the application), whose only local candidate is
/// `local`.
pub fn new_connection(local: SocketAddr, now: Instant) -> Result<RTCPeerConnection, rtc::shared::error::Error> {
    build(local, interceptors(None), now)
}

/// A peer connection with only the interceptors `role` needs (what the engine uses).
pub fn new_connection_for(
    local: SocketAddr,
    role: Role,
    now: Instant,
) -> Result<RTCPeerConnection, rtc::shared::error::Error> {
    build(local, interceptors(Some(role)), now)
}

fn build(local: SocketAddr, registry: Registry, now: Instant) -> Result<RTCPeerConnection, rtc::shared::error::Error> {
    let settings =
        SettingEngineBuilder::new().with_multicast_dns_mode(rtc::ice::mdns::MulticastDnsMode::Disabled).build();
    let media = media_engine()?;
    let mut pc = RTCPeerConnectionBuilder::new()
        .with_configuration(RTCConfigurationBuilder::new().build())
        .with_setting_engine(settings)
        .with_media_engine(media)
        .with_interceptor_registry(registry)
        .build(now)?;
    let candidate = CandidateHostConfig {
        base_config: CandidateConfig {
            network: "udp".to_owned(),
            address: local.ip().to_string(),
            port: local.port(),
            component: 1,
            ..Default::default()
        },
        ..Default::default()
    }
    .new_candidate_host()?;
    pc.add_local_candidate(RTCIceCandidate::from(&candidate).to_json()?)?;
    Ok(pc)
}
