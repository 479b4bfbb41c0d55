//! Fuzz targets of the security layers inside `rtc` that read what peers send: SRTP/SRTCP
//! decryption and a DTLS server endpoint.

use bytes::BytesMut;
use rtc::srtp::context::Context;
use rtc::srtp::protection_profile::ProtectionProfile;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

/// The profiles an SRTP input's first byte picks from.
pub const SRTP_PROFILES: [ProtectionProfile; 4] = [
    ProtectionProfile::AeadAes128Gcm,
    ProtectionProfile::AeadAes256Gcm,
    ProtectionProfile::Aes128CmHmacSha1_80,
    ProtectionProfile::Aes128CmHmacSha1_32,
];

/// The keyed context of an SRTP input: key and salt fixed per profile, so seeds made with
/// [`srtp_context`] authenticate.
pub fn srtp_context(profile: ProtectionProfile, replay: bool) -> Option<Context> {
    use rtc::srtp::option::{srtcp_replay_protection, srtp_replay_protection};
    let provider = rtc::crypto::default_provider().ok()?;
    let key: Vec<u8> = (1..=profile.key_len() as u8).collect();
    let salt: Vec<u8> = (100..100 + profile.salt_len() as u8).collect();
    let (rtp, rtcp) = match replay {
        true => (Some(srtp_replay_protection(64)), Some(srtcp_replay_protection(64))),
        false => (None, None),
    };
    Context::new(&key, &salt, profile, rtp, rtcp, provider.crypto()).ok()
}

/// SRTP and SRTCP packets from a publisher (first byte: profile and whether RTP or RTCP; then
/// packets, each after a length byte) decrypted as the node does: an error or the plain packet
/// (shorter than the protected one by at least the tag), and SSRC state only for packets that
/// authenticated.
pub fn srtp_open(data: &[u8]) {
    let Some((&head, mut rest)) = data.split_first() else { return };
    let profile = SRTP_PROFILES[usize::from(head & 3)];
    let Some(mut ctx) = srtp_context(profile, true) else { return };
    let mut opened = 0usize;
    while let Some((&len, tail)) = rest.split_first() {
        let (packet, tail) = tail.split_at(usize::from(len).min(tail.len()));
        rest = tail;
        let rtcp = head & 4 != 0 || packet.get(1).is_some_and(|pt| (200..=207).contains(pt));
        if rtcp {
            if let Ok(plain) = ctx.decrypt_rtcp(packet) {
                assert!(plain.len() < packet.len(), "the SRTCP index and tag are cut off");
                opened += 1;
            }
        } else {
            let mut buf = BytesMut::from(packet);
            if let Ok((_, header_len)) = ctx.decrypt_rtp_in_place(&mut buf) {
                assert!(buf.len() < packet.len() && header_len <= buf.len(), "the tag is cut off");
                opened += 1;
            }
        }
        let (rtp_states, rtcp_states) = ctx.ssrc_state_counts();
        assert!(rtp_states + rtcp_states <= opened, "SSRC state without an authentic packet");
    }
}

/// The DTLS configuration of a node's connections: a certificate, the SRTP profiles, client
/// certificates required, extended master secret required.
fn dtls_config() -> Option<&'static Arc<rtc::dtls::config::HandshakeConfig>> {
    static CONFIG: OnceLock<Option<Arc<rtc::dtls::config::HandshakeConfig>>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            use rtc::dtls::config::{ClientAuthType, ConfigBuilder, ExtendedMasterSecretType};
            use rtc::dtls::extension::extension_use_srtp::SrtpProtectionProfile;
            let provider = rtc::crypto::default_provider().ok()?;
            let cert =
                rtc::dtls::crypto::Certificate::generate_self_signed(vec!["sfu".into()], provider.crypto()).ok()?;
            let config = ConfigBuilder::default()
                .with_crypto_provider(provider)
                .with_certificates(vec![cert])
                .with_srtp_protection_profiles(vec![
                    SrtpProtectionProfile::Srtp_Aead_Aes_128_Gcm,
                    SrtpProtectionProfile::Srtp_Aes128_Cm_Hmac_Sha1_80,
                ])
                .with_client_auth(ClientAuthType::RequireAnyClientCert)
                .with_insecure_skip_verify(true)
                .with_extended_master_secret(ExtendedMasterSecretType::Require)
                .build(false, None)
                .ok()?;
            Some(Arc::new(config))
        })
        .as_ref()
}

const NODE: SocketAddr = SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 7882);
const PEER: SocketAddr = SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 50000);

/// Datagrams from one peer (each after a length byte, 0 for the rest of the input) at a DTLS
/// server endpoint configured as the node's, with its retransmission timers run between them:
/// record parsing, fragment reassembly, the handshake state machine and alerts never panic, one
/// peer holds at most one association, and what the server sends back stays bounded.
pub fn dtls_server(data: &[u8]) {
    use rtc::dtls::endpoint::Endpoint;
    let Some(config) = dtls_config() else { return };
    let mut endpoint = Endpoint::new(NODE, rtc::shared::TransportProtocol::UDP, Some(config.clone()));
    let mut now = Instant::now();
    let mut rest = data;
    let mut sent = 0usize;
    while let Some((&len, tail)) = rest.split_first() {
        let n = if len == 0 { tail.len() } else { usize::from(len).min(tail.len()) };
        let (datagram, tail) = tail.split_at(n);
        rest = tail;
        let _ = endpoint.read(now, PEER, None, BytesMut::from(datagram));
        now += Duration::from_millis(200);
        let _ = endpoint.handle_timeout(PEER, now);
        while let Some(t) = endpoint.poll_transmit() {
            sent += t.message.len();
        }
        assert!(endpoint.get_connections_keys().count() <= 1, "one association per peer");
    }
    // a flight (certificate included) per datagram and timer at most
    assert!(sent <= 8192 * (1 + data.len()), "{sent} bytes sent for {} bytes in", data.len());
}

/// A DTLS client's first flight (its ClientHello), framed for [`dtls_server`].
pub fn dtls_client_hello() -> Option<Vec<u8>> {
    use rtc::dtls::config::{ConfigBuilder, ExtendedMasterSecretType};
    use rtc::dtls::endpoint::Endpoint;
    let provider = rtc::crypto::default_provider().ok()?;
    let cert = rtc::dtls::crypto::Certificate::generate_self_signed(vec!["peer".into()], provider.crypto()).ok()?;
    let config = ConfigBuilder::default()
        .with_crypto_provider(provider)
        .with_certificates(vec![cert])
        .with_srtp_protection_profiles(vec![
            rtc::dtls::extension::extension_use_srtp::SrtpProtectionProfile::Srtp_Aead_Aes_128_Gcm,
        ])
        .with_insecure_skip_verify(true)
        .with_extended_master_secret(ExtendedMasterSecretType::Require)
        .build(true, Some(NODE))
        .ok()?;
    let mut client = Endpoint::new(PEER, rtc::shared::TransportProtocol::UDP, None);
    client.connect(Instant::now(), NODE, Arc::new(config), None).ok()?;
    let hello = client.poll_transmit()?.message;
    let mut framed = vec![0u8];
    framed.extend_from_slice(&hello);
    Some(framed)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The seeds reach past the checks a random input stops at: every SRTP seed decrypts, and
    /// the ClientHello gets the server's HelloVerifyRequest.
    #[test]
    fn seeds_reach_the_crypto() {
        let seeds = crate::fuzz_targets::seeds::of("srtp");
        assert_eq!(seeds.len(), 2 * SRTP_PROFILES.len());
        for seed in seeds {
            let mut ctx = srtp_context(SRTP_PROFILES[usize::from(seed[0] & 3)], true).unwrap();
            let packet = &seed[2..];
            let opened = match seed[0] & 4 {
                0 => ctx.decrypt_rtp_in_place(&mut BytesMut::from(packet)).is_ok(),
                _ => ctx.decrypt_rtcp(packet).is_ok(),
            };
            assert!(opened, "seed {seed:02x?} authenticates");
        }

        let hello = dtls_client_hello().expect("a ClientHello");
        let mut endpoint = rtc::dtls::endpoint::Endpoint::new(
            NODE,
            rtc::shared::TransportProtocol::UDP,
            Some(dtls_config().unwrap().clone()),
        );
        let _ = endpoint.read(Instant::now(), PEER, None, BytesMut::from(&hello[1..]));
        let reply = endpoint.poll_transmit().expect("the server answers a ClientHello");
        // a handshake record (22) carrying a HelloVerifyRequest (3)
        assert_eq!((reply.message[0], reply.message[13]), (22, 3), "{:02x?}", &reply.message[..]);
    }
}
