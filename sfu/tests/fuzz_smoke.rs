//! The fuzz targets (`sfu::fuzz_targets`) in the test command: each gets valid seeds, random
//! bytes and mutations of the seeds (bit flips, truncations, insertions, splices), a fixed
//! number of inputs from a fixed seed so a failure reproduces. Coverage-guided runs of the same
//! bodies: `scripts/fuzz.sh`. `FUZZ_SMOKE_RUNS` sets the inputs per target.

use rtc::shared::marshal::Marshal;
use sfu::fuzz_targets::TARGETS;

/// A small deterministic generator (xorshift64*).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next() as u8).collect()
    }
}

/// A variant of `seed`: a few random edits.
fn mutate(rng: &mut Rng, seed: &[u8], seeds: &[Vec<u8>]) -> Vec<u8> {
    let mut v = seed.to_vec();
    for _ in 0..1 + rng.below(4) {
        match rng.below(6) {
            0 if !v.is_empty() => {
                let i = rng.below(v.len());
                v[i] ^= 1 << rng.below(8);
            }
            1 if !v.is_empty() => {
                let i = rng.below(v.len());
                v[i] = rng.next() as u8;
            }
            2 => v.truncate(rng.below(v.len() + 1)),
            3 => {
                let i = rng.below(v.len() + 1);
                let n = 1 + rng.below(8);
                let extra = rng.bytes(n);
                v.splice(i..i, extra);
            }
            4 => {
                let other = &seeds[rng.below(seeds.len())];
                let (i, j) = (rng.below(v.len() + 1), rng.below(other.len() + 1));
                v.truncate(i);
                v.extend_from_slice(&other[j..]);
            }
            _ => {
                // interesting values at a random place
                if !v.is_empty() {
                    let i = rng.below(v.len());
                    v[i] = [0x00, 0x01, 0x7f, 0x80, 0xff][rng.below(5)];
                }
            }
        }
    }
    v
}

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
fn seeds(target: &str) -> Vec<Vec<u8>> {
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
        _ => vec![vec![0u8; 64], (0..=255).collect()],
    }
}

#[test]
fn every_fuzz_target_survives_random_and_mutated_inputs() {
    let runs: usize = std::env::var("FUZZ_SMOKE_RUNS").ok().and_then(|v| v.parse().ok()).unwrap_or(100_000);
    for &(name, target) in TARGETS {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ name.len() as u64);
        let seeds = seeds(name);
        for s in &seeds {
            target(s);
        }
        for i in 0..runs {
            let input = if i % 4 == 0 {
                let len = rng.below(256);
                rng.bytes(len)
            } else {
                let seed = &seeds[rng.below(seeds.len())];
                mutate(&mut rng, seed, &seeds)
            };
            let outcome = std::panic::catch_unwind(|| target(&input));
            assert!(outcome.is_ok(), "target {name} panicked on input {input:02x?}");
        }
        println!("fuzz smoke: {name}: {} seeds, {runs} inputs, no panic", seeds.len());
    }
}
