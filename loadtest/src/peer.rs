//! Construction of a client-side `rtc` peer connection: Opus and VP8 with NACK/PLI/FIR
//! feedback, the simulcast header extensions, RTCP reports (inbound RTCP delivered to the
//! application, see [`crate::feedback`]), mDNS off, and one host candidate
//! for the connection's own UDP socket.

use rtc::interceptor::{Registry, Slot};
use rtc::peer_connection::RTCPeerConnection;
use rtc::peer_connection::RTCPeerConnectionBuilder;
use rtc::peer_connection::configuration::RTCConfigurationBuilder;
use rtc::peer_connection::configuration::interceptor_registry::{
    configure_nack, configure_rtcp_reports, configure_simulcast_extension_headers,
};
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

fn media_engine() -> Result<MediaEngine, rtc::shared::error::Error> {
    let mut m = MediaEngine::default();
    m.register_codec(RTCRtpCodecParameters { rtp_codec: opus(), payload_type: OPUS_PT }, RtpCodecKind::Audio)?;
    m.register_codec(RTCRtpCodecParameters { rtp_codec: vp8(), payload_type: VP8_PT }, RtpCodecKind::Video)?;
    configure_simulcast_extension_headers(&mut m)?;
    Ok(m)
}

/// A peer connection whose only local candidate is `local` (its own UDP socket).
pub fn new_connection(local: SocketAddr, now: Instant) -> Result<RTCPeerConnection, rtc::shared::error::Error> {
    let settings = SettingEngineBuilder::new()
        .with_multicast_dns_mode(rtc::ice::mdns::MulticastDnsMode::Disabled)
        .build();
    let mut media = media_engine()?;
    let registry = configure_nack(Registry::new(), &mut media);
    let registry = configure_rtcp_reports(registry)
        .with(Slot::from(crate::feedback::SLOT), crate::feedback::DeliverFeedback::default());
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
