//! Bodies of the fuzz targets: each takes arbitrary bytes to a parser (or a state machine) that
//! reads what the network sends, and checks what must hold whatever the input. libFuzzer drives
//! them coverage-guided (`fuzz/`, `scripts/fuzz.sh`); `sfu/tests/fuzz_smoke.rs` feeds them
//! random and mutated inputs in the test command. A panic is a finding.

pub mod crypto;
pub mod seeds;

use crate::forward::munger::RtpMunger;
use crate::forward::seq::low_u16;
use crate::forward::temporal::{FrameInfo, TemporalFilter, Tid};
use crate::forward::{h264, vp8};
use crate::udp::stun;
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Every target by name, for drivers that pick one.
pub const TARGETS: &[(&str, fn(&[u8]))] = &[
    ("stun", stun_message),
    ("vp8", vp8_payload),
    ("h264", h264_payload),
    ("munger", munger_ops),
    ("temporal", temporal_ops),
    ("rtcp", rtcp_feedback),
    ("sdp", sdp_offer),
    ("signal", signal_message),
    ("token", token),
    ("srtp", crypto::srtp_open),
    ("dtls", crypto::dtls_server),
    ("turn", turn_messages),
];

/// A STUN message at the media port: classification, the ufrag lookup and the integrity check
/// never panic, and a message that is not STUN has no ufrag.
pub fn stun_message(data: &[u8]) {
    let is = stun::is_stun(data);
    let ufrag = stun::local_ufrag(data);
    assert!(is || ufrag.is_none(), "a ufrag from a datagram that is not STUN");
    let _ = stun::integrity_ok(data, "fuzzpassword0123456789ab");
}

/// Bytes at the embedded TURN server, past an allocation with a channel: as a UDP datagram
/// from the allocated client, as a TCP stream (cut into messages), and from the relay's peer.
/// Nothing panics, the allocation survives anything unsigned, and nothing is relayed anywhere
/// but to the one permitted peer.
pub fn turn_messages(data: &[u8]) {
    use crate::turn::server::{RelayId, Transmit};
    let (mut server, udp, tcp, now) = crate::turn::testing::allocated();
    server.handle_client(now, udp, data);
    let mut deframer = crate::turn::framing::Deframer::default();
    deframer.read_buf().extend_from_slice(data);
    while let Ok(Some(frame)) = deframer.next_frame() {
        server.handle_client(now, tcp, &frame);
    }
    let peer: std::net::SocketAddr = crate::turn::testing::PEER.parse().expect("an address");
    server.handle_relay(now, RelayId(1), peer, data);
    server.handle_relay(now, RelayId(2), peer, data);
    server.handle_timeout(now + Duration::from_secs(2));
    while let Some(t) = server.poll_transmit() {
        if let Transmit::Peer { to, .. } = t {
            assert_eq!(to, peer, "relayed only to the permitted media port");
        }
    }
    assert_eq!(server.allocations(), 1, "an unsigned message ends no allocation");
}

/// A VP8 payload: the descriptor parses or is an error; a parsed one is rewritten in place
/// through the picture id munger without growing or shrinking the payload, and parses back to
/// the same layout.
pub fn vp8_payload(data: &[u8]) {
    let Ok(desc) = vp8::parse(data) else { return };
    let _ = vp8::keyframe_size(data, &desc);
    let mut munger = vp8::Vp8Munger::new();
    if data.first().is_some_and(|b| b & 1 == 1) {
        munger.switch_source();
    }
    let rewrite = munger.munge(&desc);
    let mut copy = data.to_vec();
    if vp8::write(&mut copy, &desc, &rewrite).is_ok() {
        assert_eq!(copy.len(), data.len());
        let again = vp8::parse(&copy).expect("a rewritten descriptor parses");
        assert_eq!(again.header_len, desc.header_len, "layout kept");
        assert_eq!((again.tid, again.layer_sync), (desc.tid, desc.layer_sync), "TID and Y kept");
    }
    munger.drop_packet(&desc);
}

/// An H.264 payload: keyframe detection never panics.
pub fn h264_payload(data: &[u8]) {
    let _ = h264::is_keyframe(data);
}

/// A sequence of munger operations decoded from the bytes (switch, forward, drop, padding,
/// NACK lookup): no outgoing sequence number is ever given to two different packets (a
/// receiver would decode one packet's bytes as another's, and SRTP would reuse a nonce).
pub fn munger_ops(data: &[u8]) {
    let t0 = Instant::now();
    let mut m = RtpMunger::new(90_000, u16::from_le_bytes([data.first().copied().unwrap_or(0), 7]), 12345);
    // outgoing extended number -> (source index, incoming number); padding is source u32::MAX
    let mut given: HashMap<u64, (u32, u64)> = HashMap::new();
    let mut source = 0u32;
    let mut base = 1u64 << 20;
    let mut highest: Option<u64> = None;
    let mut record = |out: u16, what: (u32, u64)| {
        let ext = match highest {
            Some(h) => crate::forward::seq::extend_near(h, u64::from(out), 16),
            None => u64::from(out) + (1 << 16),
        };
        highest = Some(highest.map_or(ext, |h| h.max(ext)));
        if let Some(prev) = given.insert(ext, what) {
            assert_eq!(prev, what, "outgoing number {out} given to two packets");
        }
    };
    for (i, op) in data.chunks_exact(3).enumerate() {
        let now = t0 + Duration::from_millis(i as u64);
        let delta = u64::from(u16::from_le_bytes([op[1], op[2]]) % 64);
        match op[0] % 6 {
            0 => {
                source += 1;
                base += 1000 + delta;
                m.switch_source(base, base * 3000, None, now);
            }
            1 | 2 => {
                let seq = base + delta;
                if let Some((out, _)) = m.forward(seq, seq * 3000, now) {
                    record(out, (source, seq));
                }
            }
            3 => m.drop_packet(base + delta),
            4 => {
                if let Some((out, _)) = m.reserve_padding() {
                    record(out, (u32::MAX, u64::from(i as u32)));
                }
            }
            _ => {
                let _ = m.out_to_in(low_u16(delta.wrapping_add(u64::from(op[1]))));
            }
        }
        // base moves forward so later forwards are new packets
        if op[0] % 6 == 1 {
            base += delta / 8;
        }
    }
}

/// Frames of arbitrary temporal layers, sync bits and targets through the temporal filter: a
/// frame's packets are all forwarded or all dropped, and nothing above the target starts.
pub fn temporal_ops(data: &[u8]) {
    let mut f = TemporalFilter::new();
    let mut frame: Option<bool> = None;
    for b in data {
        if b & 0x80 != 0 {
            f.set_target(Tid::new(b & 0x03).unwrap_or(Tid::TOP));
            continue;
        }
        let info = FrameInfo {
            tid: (b & 0x40 == 0).then_some((b >> 2) & 0x03),
            layer_sync: b & 0x10 != 0,
            frame_start: b & 0x20 != 0 || frame.is_none(),
            keyframe: b & 0x30 == 0x30,
        };
        let forwarded = f.on_packet(info);
        if info.tid.is_none() {
            assert!(forwarded, "a stream without TIDs is forwarded");
            continue;
        }
        if info.frame_start {
            frame = Some(forwarded);
        } else if let Some(first) = frame {
            assert_eq!(forwarded, first, "one frame, one decision");
        }
    }
}

/// An RTCP compound packet from a subscriber: parsed with rtc's parser; transport-wide
/// feedback goes through `twcc_to_feedback` into an estimator that sent packets before.
pub fn rtcp_feedback(data: &[u8]) {
    use rtc::rtcp::transport_feedbacks::transport_layer_cc::TransportLayerCc;
    let Ok(packets) = rtc::rtcp::packet::unmarshal(&mut &data[..]) else { return };
    let t0 = Instant::now();
    let mut bwe = bwe::SendSideBwe::new(bwe::BweConfig::default());
    for i in 0..200u64 {
        let _ = bwe.on_sent(1200, t0 + Duration::from_millis(i));
    }
    let mut fb = bwe::feedback::Feedback::default();
    for (i, p) in packets.iter().enumerate() {
        if let Some(tcc) = p.as_any().downcast_ref::<TransportLayerCc>() {
            let _ = crate::room::congestion::twcc_to_feedback(tcc, &mut fb);
            bwe.on_feedback(&fb, t0 + Duration::from_millis(250 + i as u64));
            assert!(bwe.estimate() > bwe::Bitrate::ZERO);
        }
    }
}

/// An SDP offer: the checks and the rid scan never panic on any text.
pub fn sdp_offer(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let _ = crate::room::sdp::check_offer(&text);
    let _ = crate::room::sdp::send_rids_by_mid(&text);
}

/// A WebSocket text message: it parses into a message or an error.
pub fn signal_message(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let _ = signaling::protocol::ClientMessage::parse(&text);
}

/// A join token: verification never panics (a valid token's variants may still verify:
/// base64 ignores the unused bits of its last character).
pub fn token(data: &[u8]) {
    static AUTH: std::sync::OnceLock<signaling::auth::Auth> = std::sync::OnceLock::new();
    let auth = AUTH.get_or_init(|| {
        signaling::jwt_hs256::install();
        signaling::auth::Auth::dev()
    });
    let _ = auth.verify(&String::from_utf8_lossy(data));
}
