//! Micro-benchmarks of the per-packet work of forwarding: selection + munging, VP8 descriptor
//! rewrite, SRTP protect and unprotect, the UDP demux lookup, and a publisher connection's
//! interceptor chain. Run: `cargo bench -p sfu-benches`.

use bytes::BytesMut;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use rtc::crypto::providers::RingCrypto;
use rtc::srtp::context::Context;
use rtc::srtp::protection_profile::ProtectionProfile;
use sfu::forward::munger::RtpMunger;
use sfu::forward::selector::{Layer, LayerActivity, LayerSelector, Wish};
use sfu::forward::seq::{SeqUnwrapper, TsUnwrapper};
use sfu::forward::vp8::{self, Vp8Munger};
use sfu::udp::{Datagram, Demux, PeerKey, Route};
use std::hint::black_box;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// A 1100-byte VP8 packet: descriptor with 15-bit picture id, tl0picidx, then payload.
fn vp8_packet(picture_id: u16, keyframe: bool) -> Vec<u8> {
    let mut p = vec![0x90, 0xe0, 0x80 | (picture_id >> 8) as u8, picture_id as u8, 7, 0x20];
    p.push(if keyframe { 0x10 } else { 0x11 }); // VP8 frame tag, P bit
    p.resize(1100, 0xab);
    p
}

fn munger_selector(c: &mut Criterion) {
    let mut g = c.benchmark_group("forward");
    g.throughput(Throughput::Elements(1));
    g.bench_function("unwrap+select+munge per packet", |b| {
        let t0 = Instant::now();
        let mut activity = LayerActivity::default();
        for l in Layer::ALL {
            activity.on_packet(l, t0);
        }
        let mut selector = LayerSelector::default();
        let wish = Wish { max_layer: Some(Layer::HIGH), ..Wish::default() };
        let mut munger = RtpMunger::new(90_000, 1000, 5000);
        let (mut su, mut tu) = (SeqUnwrapper::default(), TsUnwrapper::default());
        selector.update_target(&wish, &activity, t0);
        let first = selector.on_packet(Layer::HIGH, true);
        assert!(matches!(first, sfu::forward::selector::Action::Switch { .. }));
        munger.switch_source(su.unwrap(0), tu.unwrap(0), None, t0);
        let mut seq: u16 = 0;
        let mut ts: u32 = 0;
        b.iter(|| {
            seq = seq.wrapping_add(1);
            ts = ts.wrapping_add(3000);
            let now = t0 + Duration::from_micros(u64::from(seq));
            activity.on_packet(Layer::HIGH, now);
            selector.update_target(&wish, &activity, now);
            let action = selector.on_packet(Layer::HIGH, false);
            let out = munger.forward(su.unwrap(seq), tu.unwrap(ts), now);
            black_box((action, out))
        });
    });
    g.finish();
}

fn vp8_rewrite(c: &mut Criterion) {
    let mut g = c.benchmark_group("vp8");
    g.throughput(Throughput::Elements(1));
    let pkt = vp8_packet(1234, false);
    g.bench_function("parse+munge+rewrite 1100 B (with payload copy)", |b| {
        let mut m = Vp8Munger::default();
        b.iter(|| {
            let desc = vp8::parse(black_box(&pkt)).expect("valid descriptor");
            let rw = m.munge(&desc);
            let mut out = BytesMut::from(&pkt[..]);
            vp8::write(&mut out, &desc, &rw).expect("same length");
            black_box(out)
        });
    });
    g.finish();
}

/// The profiles the SRTP benchmarks measure: the one every implementation has, and the one
/// browsers negotiate.
const SRTP_PROFILES: [(&str, ProtectionProfile); 2] = [
    ("AES128_CM_HMAC_SHA1_80", ProtectionProfile::Aes128CmHmacSha1_80),
    ("AEAD_AES_128_GCM", ProtectionProfile::AeadAes128Gcm),
];

/// A context of `profile` with a fixed key (both ends of a benchmark make the same one).
fn srtp_context(profile: ProtectionProfile) -> Context {
    let key = vec![7u8; profile.key_len()];
    let salt = vec![9u8; profile.salt_len()];
    Context::new(&key, &salt, profile, None, None, &RingCrypto).expect("valid key")
}

fn srtp_protect(c: &mut Criterion) {
    let mut g = c.benchmark_group("srtp");
    g.throughput(Throughput::Elements(1));
    for (name, profile) in SRTP_PROFILES {
        let mut ctx = srtp_context(profile);
        let mut header = rtc::rtp::Header { version: 2, payload_type: 96, ssrc: 0x1234, ..Default::default() };
        let mut plain = vec![0u8; 12];
        plain.resize(1200, 0x55);
        g.bench_with_input(BenchmarkId::new("protect 1200 B", name), &profile, |b, _| {
            b.iter(|| {
                header.sequence_number = header.sequence_number.wrapping_add(1);
                plain[2..4].copy_from_slice(&header.sequence_number.to_be_bytes());
                black_box(ctx.encrypt_rtp_with_header(&plain, &header).expect("protect"))
            });
        });
    }
    // the server's own path: header + payload written into a reused buffer, sealed in place
    let key = vec![7u8; 16];
    let salt = vec![9u8; 12];
    let mut sender = sfu::forward::srtp::GcmSender::new(&RingCrypto, &key, &salt).expect("valid key");
    let mut roc = sfu::forward::srtp::Rollover::default();
    let payload = vec![0x55u8; 1188];
    let mut buf = BytesMut::with_capacity(2048);
    let mut seq = 0u16;
    g.bench_function("protect in place 1200 B/AEAD_AES_128_GCM (sfu egress)", |b| {
        b.iter(|| {
            seq = seq.wrapping_add(1);
            buf.clear();
            buf.extend_from_slice(&sfu::room::egress::rtp_header(false, 96, seq, 0, 0x1234));
            buf.extend_from_slice(&payload);
            sender.protect(&mut buf, 12, 0x1234, roc.roc(seq), seq).expect("protect");
            black_box(buf.len())
        });
    });
    g.finish();
}

/// A publisher's RTP as `rtc`'s SRTP handler turns it into a packet: decrypted into a new
/// buffer and parsed (upstream `decrypt_rtp` + `Packet::unmarshal`), or decrypted in the
/// datagram's own buffer with the header parsed once (the vendored `decrypt_rtp_in_place`).
/// 1200 bytes with two header extensions, as browsers send; each iteration gets its own copy
/// of the sealed datagram (untimed), as the reader hands over one.
fn srtp_unprotect(c: &mut Criterion) {
    use bytes::Buf;
    use rtc::shared::marshal::{Marshal, Unmarshal};
    let mut g = c.benchmark_group("srtp");
    g.throughput(Throughput::Elements(1));
    for (name, profile) in SRTP_PROFILES {
        let (mut sender, mut receiver) = (srtp_context(profile), srtp_context(profile));
        let ext = |id, v: &'static [u8]| rtc::rtp::header::Extension { id, payload: bytes::Bytes::from_static(v) };
        let header = rtc::rtp::Header {
            version: 2,
            payload_type: 96,
            sequence_number: 1,
            ssrc: 0x1234,
            extension: true,
            extension_profile: 0xbede,
            extensions: vec![ext(2, &[1, 2, 3]), ext(3, &[0, 9])],
            ..Default::default()
        };
        let payload = bytes::Bytes::from(vec![0x55u8; 1200 - 24]);
        let plain = rtc::rtp::Packet { header, payload }.marshal().expect("marshal");
        let sealed = sender.encrypt_rtp(&plain).expect("protect");
        let batch = criterion::BatchSize::SmallInput;
        g.bench_with_input(BenchmarkId::new("unprotect+parse 1200 B, copying", name), &profile, |b, _| {
            b.iter_batched(
                || BytesMut::from(&sealed[..]),
                |dg| {
                    let mut out = receiver.decrypt_rtp(&dg).expect("unprotect");
                    black_box(rtc::rtp::Packet::unmarshal(&mut out).expect("parse"))
                },
                batch,
            );
        });
        g.bench_with_input(BenchmarkId::new("unprotect+parse 1200 B, in place", name), &profile, |b, _| {
            b.iter_batched(
                || BytesMut::from(&sealed[..]),
                |mut dg| {
                    let (header, len) = receiver.decrypt_rtp_in_place(&mut dg).expect("unprotect");
                    dg.advance(len);
                    black_box(rtc::rtp::Packet { header, payload: dg.freeze() })
                },
                batch,
            );
        });
    }
    g.finish();
}

/// A binding request as an ICE agent sends it: USERNAME and MESSAGE-INTEGRITY.
fn signed_binding_request(username: &str, pwd: &str) -> Vec<u8> {
    use rtc::stun::integrity::MessageIntegrity;
    use rtc::stun::message::{BINDING_REQUEST, Message, Setter, TransactionId};
    use rtc::stun::textattrs::Username;
    let provider = rtc::crypto::default_provider().expect("crypto provider");
    let setters: Vec<Box<dyn Setter>> = vec![
        Box::new(BINDING_REQUEST),
        Box::new(TransactionId::new()),
        Box::new(Username::new(rtc::stun::attributes::ATTR_USERNAME, username.to_owned())),
        Box::new(MessageIntegrity::new_short_term_integrity_with_provider(pwd.to_owned(), provider.crypto())),
    ];
    let mut m = Message::new();
    m.build(&setters).expect("binding request");
    m.raw.clone()
}

fn demux_lookup(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
    let _guard = rt.enter();
    let demux = Demux::default();
    let (tx, _rx) = tokio::sync::mpsc::channel::<Datagram>(1);
    let peers = 1000u16;
    let addr = |i: u16| SocketAddr::from(([127, 0, 0, 1], 20_000 + i));
    for i in 0..peers {
        let ufrag = format!("ufrag{i:05}");
        let pwd = format!("password{i:05}");
        let route = Route { room: tx.clone(), peer: PeerKey(u64::from(i)), ufrag: ufrag.clone(), pwd: pwd.clone() };
        demux.register(route);
        // learn the address from a signed STUN binding request carrying USERNAME "ufragNNNNN:x"
        demux.route(&signed_binding_request(&format!("{ufrag}:x"), &pwd), addr(i)).expect("registered ufrag routes");
    }
    let rtp = vp8_packet(1, false);
    let mut g = c.benchmark_group("udp");
    g.throughput(Throughput::Elements(1));
    g.bench_function("demux lookup, 1000 peers", |b| {
        let mut i = 0u16;
        b.iter(|| {
            i = (i + 1) % peers;
            // as the reader does: the route borrowed, not cloned
            black_box(demux.dispatch(&rtp, addr(i), |r| r.peer))
        });
    });
    g.finish();
}

/// A publisher connection's interceptor chain as the server builds it (NACK generator, receiver
/// reports, TWCC receiver, then the chain's terminus), one inbound RTP packet per iteration:
/// `handle_read`, then `poll_read` and `poll_write` until empty, as `rtc` polls; the packet is
/// fed back with the next sequence number and transport-wide sequence number (no allocation of
/// the bench's own in the loop). Every 1000 packets the chain's timers run and what it
/// generated (reports, feedback) is drained.
fn interceptor_chain(c: &mut Criterion) {
    use rtc::interceptor::{
        AttributedPacket, Interceptor, NackGeneratorBuilder, Packet, RTCPFeedback, RTPHeaderExtension,
        ReceiverReportBuilder, Registry, Slot, StreamInfo, TaggedPacket, TwccReceiverBuilder,
    };
    use rtc::sansio::Protocol;
    use rtc::shared::{TransportContext, TransportProtocol};
    const TWCC: u8 = 3;
    let mut chain = Registry::new()
        .with(Slot::NackGenerator, NackGeneratorBuilder::new().build())
        .with(Slot::ReceiverReport, ReceiverReportBuilder::new().build())
        .with(Slot::TwccReceiver, TwccReceiverBuilder::new().build())
        .build();
    chain.bind_remote_stream(&StreamInfo {
        ssrc: 0x1234,
        payload_type: 96,
        clock_rate: 90_000,
        mime_type: "video/VP8".to_owned(),
        rtp_header_extensions: vec![RTPHeaderExtension {
            uri: "http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01".to_owned(),
            id: u16::from(TWCC),
        }],
        rtcp_feedback: vec![RTCPFeedback { typ: "nack".to_owned(), parameter: String::new() }],
        ..Default::default()
    });
    // every transport-wide sequence number's two bytes, so setting one allocates nothing
    let twcc: &'static [u8] =
        Box::leak((0..=u16::MAX).flat_map(u16::to_be_bytes).collect::<Vec<u8>>().into_boxed_slice());
    let header = rtc::rtp::Header { version: 2, payload_type: 96, ssrc: 0x1234, ..Default::default() };
    let mut packet = rtc::rtp::Packet { header, payload: bytes::Bytes::from(vec![0x55u8; 1100]) };
    packet.header.set_extension(TWCC, bytes::Bytes::from_static(&twcc[..2])).expect("extension");
    let transport = TransportContext {
        local_addr: SocketAddr::from(([127, 0, 0, 1], 7882)),
        peer_addr: SocketAddr::from(([127, 0, 0, 1], 50_000)),
        ecn: None,
        transport_protocol: TransportProtocol::UDP,
    };
    let t0 = Instant::now();
    let mut msg = Some(TaggedPacket { now: t0, transport, message: AttributedPacket::new(Packet::Rtp(packet)) });
    let mut n = 0u32;
    let mut g = c.benchmark_group("interceptors");
    g.throughput(Throughput::Elements(1));
    g.bench_function("publisher chain, read one RTP packet", |b| {
        b.iter(|| {
            let mut m = msg.take().expect("the chain passed the last packet on");
            n = n.wrapping_add(1);
            m.now = t0 + Duration::from_micros(u64::from(n) * 30);
            if let Packet::Rtp(p) = &mut m.message.packet {
                p.header.sequence_number = n as u16;
                p.header.timestamp = n.wrapping_mul(3000);
                let at = usize::from(n as u16) * 2;
                p.header.set_extension(TWCC, bytes::Bytes::from_static(&twcc[at..at + 2])).expect("extension");
            }
            chain.handle_read(m).expect("read");
            msg = chain.poll_read();
            // as `rtc` polls the chain: until it has nothing more either way
            black_box((chain.poll_read().is_none(), chain.poll_write().is_none()));
            if n.is_multiple_of(1000) {
                let now = t0 + Duration::from_micros(u64::from(n) * 30);
                chain.handle_timeout(now).expect("timeout");
                while chain.poll_write().is_some() {}
            }
            black_box(msg.is_some())
        });
    });
    g.finish();
}

criterion_group!(benches, munger_selector, vp8_rewrite, srtp_protect, srtp_unprotect, demux_lookup, interceptor_chain);
criterion_main!(benches);
