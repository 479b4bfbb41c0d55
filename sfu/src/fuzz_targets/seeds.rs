//! Valid inputs per fuzz target: what `sfu/tests/fuzz_smoke.rs` mutates and what
//! `scripts/fuzz.sh` starts libFuzzer's corpora from.

use rtc::shared::marshal::Marshal;

/// A STUN binding request with USERNAME, MESSAGE-INTEGRITY and FINGERPRINT attributes.
fn stun_request() -> Vec<u8> {
    let mut m = vec![0x00, 0x01, 0x00, 0x00, 0x21, 0x12, 0xa4, 0x42];
    m.extend_from_slice(&[7; 12]);
    let user = b"abcd:efgh";
    m.extend_from_slice(&[0x00, 0x06, 0x00, user.len() as u8]);
    m.extend_from_slice(user);
    m.extend_from_slice(&[0, 0, 0]);
    m.extend_from_slice(&[0x00, 0x08, 0x00, 20]);
    m.extend_from_slice(&[0x55; 20]);
    m.extend_from_slice(&[0x80, 0x28, 0x00, 4, 1, 2, 3, 4]);
    let len = (m.len() - 20) as u16;
    m[2..4].copy_from_slice(&len.to_be_bytes());
    m
}

/// A transport-wide feedback packet and a receiver report, marshalled.
fn rtcp_packets() -> Vec<Vec<u8>> {
    use rtc::rtcp::receiver_report::ReceiverReport;
    use rtc::rtcp::transport_feedbacks::transport_layer_cc::{
        PacketStatusChunk, RecvDelta, RunLengthChunk, StatusChunkTypeTcc, SymbolTypeTcc, TransportLayerCc,
    };
    let tcc = TransportLayerCc {
        sender_ssrc: 1,
        media_ssrc: 2,
        base_sequence_number: 0,
        packet_status_count: 3,
        reference_time: 5,
        fb_pkt_count: 0,
        packet_chunks: vec![PacketStatusChunk::RunLengthChunk(RunLengthChunk {
            type_tcc: StatusChunkTypeTcc::RunLengthChunk,
            packet_status_symbol: SymbolTypeTcc::PacketReceivedSmallDelta,
            run_length: 3,
        })],
        recv_deltas: (0..3)
            .map(|_| RecvDelta { type_tcc_packet: SymbolTypeTcc::PacketReceivedSmallDelta, delta: 1000 })
            .collect(),
    };
    let rr = ReceiverReport { ssrc: 9, ..Default::default() };
    vec![tcc.marshal().expect("marshal").to_vec(), rr.marshal().expect("marshal").to_vec()]
}

/// Valid inputs per target.
pub fn of(target: &str) -> Vec<Vec<u8>> {
    let vp8_key =
        [0x90, 0xe0, 0x92, 0x34, 0x05, 0x60, 0x10, 0x02, 0x00, 0x9d, 0x01, 0x2a, 0x40, 0x01, 0xb4, 0x00, 0, 0];
    let offer = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:0\r\na=rtpmap:96 VP8/90000\r\na=rid:q send\r\na=rid:h send\r\na=simulcast:send q;h\r\n";
    let token = {
        let req = signaling::auth::TokenRequest {
            identity: "fuzz".into(),
            name: None,
            room: Some("r".into()),
            grants: signaling::auth::Grants::participant(),
            ttl: std::time::Duration::from_secs(3600),
        };
        signaling::auth::issue(&signaling::auth::dev_key(), &req).expect("token").0
    };
    match target {
        "stun" => vec![stun_request()],
        "turn" => {
            use crate::turn::wire::{Builder, Class, attr, encode_channel_data, method};
            let peer = crate::turn::testing::PEER.parse().expect("an address");
            vec![
                Builder::new(method::BINDING, Class::Request, [3; 12]).finish(None),
                Builder::new(method::ALLOCATE, Class::Request, [4; 12])
                    .attr(attr::REQUESTED_TRANSPORT, &[17, 0, 0, 0])
                    .finish(None),
                Builder::new(method::SEND, Class::Indication, [5; 12])
                    .xor_addr(attr::XOR_PEER_ADDRESS, peer)
                    .attr(attr::DATA, b"hi")
                    .finish(None),
                encode_channel_data(0x4000, b"payload", true),
            ]
        }
        "vp8" => vec![vp8_key.to_vec(), vec![0x10, 0x01], vec![0x80, 0x20, 0x80, 0x01]],
        "h264" => vec![vec![0x65, 0x88], vec![0x7c, 0x85, 0x88], vec![0x78, 0x00, 0x02, 0x67, 0x42, 0x00, 0x01, 0x65]],
        "rtcp" => rtcp_packets(),
        "sdp" => vec![offer.as_bytes().to_vec()],
        "signal" => [
            r#"{"type":"join","room":"r","name":"n"}"#,
            r#"{"type":"subscription","track":"TR_x","layer":"q"}"#,
            r#"{"type":"offer","sdp":"v=0"}"#,
        ]
        .iter()
        .map(|s| s.as_bytes().to_vec())
        .collect(),
        "token" => vec![token.into_bytes()],
        "srtp" => srtp_packets(),
        "dtls" => super::crypto::dtls_client_hello().into_iter().collect(),
        _ => vec![vec![0u8; 64], (0..=255).collect()],
    }
}

/// For each profile an authentic SRTP packet and an authentic SRTCP one, framed for
/// [`super::crypto::srtp_open`].
fn srtp_packets() -> Vec<Vec<u8>> {
    use super::crypto::{SRTP_PROFILES, srtp_context};
    let mut seeds = Vec::new();
    for (i, profile) in SRTP_PROFILES.into_iter().enumerate() {
        let Some(mut ctx) = srtp_context(profile, false) else { continue };
        let mut plain = crate::room::egress::rtp_header(true, 96, 7, 3000, 0xfeed).to_vec();
        plain.extend_from_slice(&[0x10, 0x02, 0x00, 0x9d, 0x01, 0x2a]);
        let rr = [0x80, 201, 0, 1, 0, 0, 0xfe, 0xed];
        for (flag, sealed) in [(0u8, ctx.encrypt_rtp(&plain)), (4, ctx.encrypt_rtcp(&rr))] {
            let Ok(sealed) = sealed else { continue };
            let mut seed = vec![i as u8 | flag, sealed.len() as u8];
            seed.extend_from_slice(&sealed);
            seeds.push(seed);
        }
    }
    seeds
}
