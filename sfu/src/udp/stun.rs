//! Just enough STUN (RFC 8489) to route a binding request by its USERNAME and check its
//! MESSAGE-INTEGRITY before its source address is learned.

use hmac::{Hmac, Mac};
use sha1::Sha1;

const MAGIC_COOKIE: [u8; 4] = [0x21, 0x12, 0xA4, 0x42];
const HEADER_LEN: usize = 20;
const ATTR_USERNAME: u16 = 0x0006;
const ATTR_MESSAGE_INTEGRITY: u16 = 0x0008;
const INTEGRITY_LEN: usize = 20;

/// True if the datagram looks like STUN (RFC 7983 demultiplexing plus the magic cookie).
pub fn is_stun(data: &[u8]) -> bool {
    data.len() >= HEADER_LEN && data[0] < 4 && data[4..8] == MAGIC_COOKIE
}

/// The first attribute of type `ty`: its offset in `data` and its value. `None` if absent, or
/// if an attribute before it runs past the message.
fn attribute(data: &[u8], ty: u16) -> Option<(usize, &[u8])> {
    if !is_stun(data) {
        return None;
    }
    let body_len = u16::from_be_bytes([data[2], data[3]]) as usize;
    let end = HEADER_LEN.checked_add(body_len)?;
    data.get(..end)?;
    let mut at = HEADER_LEN;
    while at + 4 <= end {
        let t = u16::from_be_bytes([data[at], data[at + 1]]);
        let len = u16::from_be_bytes([data[at + 2], data[at + 3]]) as usize;
        let value = data.get(at + 4..at + 4 + len).filter(|_| at + 4 + len <= end)?;
        if t == ty {
            return Some((at, value));
        }
        at += 4 + ((len + 3) & !3);
    }
    None
}

/// The local ufrag of a STUN request: the part of USERNAME before the first `:`.
pub fn local_ufrag(data: &[u8]) -> Option<&str> {
    let (_, value) = attribute(data, ATTR_USERNAME)?;
    let username = std::str::from_utf8(value).ok()?;
    username.split(':').next().filter(|u| !u.is_empty())
}

/// True if the message carries a MESSAGE-INTEGRITY made with the short-term password `pwd`
/// (RFC 8489 14.5): HMAC-SHA1 over the message up to that attribute, with the header's length
/// counting up to the attribute's end. Compared in constant time.
pub fn integrity_ok(data: &[u8], pwd: &str) -> bool {
    integrity_ok_with_key(data, pwd.as_bytes())
}

/// True if the message carries a MESSAGE-INTEGRITY made with `key` (the short-term password,
/// or a long-term credential's MD5 key as TURN uses). Compared in constant time.
pub fn integrity_ok_with_key(data: &[u8], key: &[u8]) -> bool {
    let Some((at, tag)) = attribute(data, ATTR_MESSAGE_INTEGRITY) else { return false };
    if tag.len() != INTEGRITY_LEN {
        return false;
    }
    let Ok(mut mac) = Hmac::<Sha1>::new_from_slice(key) else { return false };
    let mut header = [0u8; HEADER_LEN];
    header.copy_from_slice(&data[..HEADER_LEN]);
    let length = (at + 4 + INTEGRITY_LEN - HEADER_LEN) as u16;
    header[2..4].copy_from_slice(&length.to_be_bytes());
    mac.update(&header);
    mac.update(&data[HEADER_LEN..at]);
    mac.verify_slice(tag).is_ok()
}

/// STUN requests as an ICE agent builds them (`rtc`'s STUN code), for tests.
#[cfg(test)]
pub(crate) mod testing {
    /// A binding request with USERNAME `username` (or none), signed with `pwd` (or not).
    pub fn request(username: Option<&str>, pwd: Option<&str>) -> Vec<u8> {
        use rtc::stun::integrity::MessageIntegrity;
        use rtc::stun::message::{BINDING_REQUEST, Message, Setter, TransactionId};
        use rtc::stun::textattrs::Username;
        let provider = rtc::crypto::default_provider().unwrap();
        let mut setters: Vec<Box<dyn Setter>> = vec![Box::new(BINDING_REQUEST), Box::new(TransactionId::new())];
        if let Some(u) = username {
            setters.push(Box::new(Username::new(rtc::stun::attributes::ATTR_USERNAME, u.to_owned())));
        }
        if let Some(p) = pwd {
            setters.push(Box::new(MessageIntegrity::new_short_term_integrity_with_provider(
                p.to_owned(),
                provider.crypto(),
            )));
        }
        let mut m = Message::new();
        m.build(&setters).unwrap();
        m.raw.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn binding_request(username: &str) -> Vec<u8> {
        let mut attr = Vec::new();
        attr.extend_from_slice(&ATTR_USERNAME.to_be_bytes());
        attr.extend_from_slice(&(username.len() as u16).to_be_bytes());
        attr.extend_from_slice(username.as_bytes());
        while attr.len() % 4 != 0 {
            attr.push(0);
        }
        // a PRIORITY attribute first, so the parser has to skip one
        let mut body = vec![0x00, 0x24, 0x00, 0x04, 1, 2, 3, 4];
        body.extend_from_slice(&attr);
        let mut pkt = vec![0x00, 0x01];
        pkt.extend_from_slice(&(body.len() as u16).to_be_bytes());
        pkt.extend_from_slice(&MAGIC_COOKIE);
        pkt.extend_from_slice(&[7; 12]);
        pkt.extend_from_slice(&body);
        pkt
    }

    #[test]
    fn ufrag_extraction() {
        let ok = binding_request("srvufrag:cli");
        let mut truncated = ok.clone();
        truncated.truncate(ok.len() - 6);
        let mut not_stun = ok.clone();
        not_stun[4] = 0;
        let rows: Vec<(&str, Vec<u8>, Option<&str>)> = vec![
            ("normal", ok.clone(), Some("srvufrag")),
            ("odd length username", binding_request("abc:de"), Some("abc")),
            ("no colon", binding_request("lonely"), Some("lonely")),
            ("empty local part", binding_request(":x"), None),
            ("truncated", truncated, None),
            ("no cookie", not_stun, None),
            ("rtp", vec![0x80, 0x60, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0], None),
            ("empty", vec![], None),
        ];
        for (name, data, want) in rows {
            assert_eq!(local_ufrag(&data), want, "{name}");
        }
    }

    /// A binding request as an ICE agent sends it, built by `rtc`'s STUN code (not ours).
    fn signed(username: &str, pwd: &str) -> Vec<u8> {
        use rtc::stun::fingerprint::FINGERPRINT;
        use rtc::stun::integrity::MessageIntegrity;
        use rtc::stun::message::{BINDING_REQUEST, Message, Setter, TransactionId};
        use rtc::stun::textattrs::Username;
        let provider = rtc::crypto::default_provider().unwrap();
        let mut m = Message::new();
        let setters: Vec<Box<dyn Setter>> = vec![
            Box::new(BINDING_REQUEST),
            Box::new(TransactionId::new()),
            Box::new(Username::new(rtc::stun::attributes::ATTR_USERNAME, username.to_owned())),
            Box::new(MessageIntegrity::new_short_term_integrity_with_provider(pwd.to_owned(), provider.crypto())),
            Box::new(FINGERPRINT),
        ];
        m.build(&setters).unwrap();
        m.raw.clone()
    }

    #[test]
    fn message_integrity_with_the_short_term_password() {
        let ok = signed("srvufrag:cli", "the-password-of-this-peer");
        let mut flipped = ok.clone();
        flipped[30] ^= 1; // inside USERNAME: covered by the HMAC
        let mut short = ok.clone();
        short.truncate(ok.len() - 12); // into the FINGERPRINT and MESSAGE-INTEGRITY
        // columns: case, datagram, password, verified
        let rows: Vec<(&str, Vec<u8>, &str, bool)> = vec![
            ("right password", ok.clone(), "the-password-of-this-peer", true),
            ("wrong password", ok.clone(), "another-password", false),
            ("changed in transit", flipped, "the-password-of-this-peer", false),
            ("truncated", short, "the-password-of-this-peer", false),
            ("no integrity at all", binding_request("srvufrag:cli"), "the-password-of-this-peer", false),
            ("not stun", vec![0x80; 40], "the-password-of-this-peer", false),
        ];
        for (case, data, pwd, want) in rows {
            assert_eq!(integrity_ok(&data, pwd), want, "{case}");
        }
        assert_eq!(local_ufrag(&ok), Some("srvufrag"), "the signed request still routes");
    }
}
