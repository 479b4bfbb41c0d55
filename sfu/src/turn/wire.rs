//! The bytes of TURN (RFC 8656): STUN messages read without copying and written with their
//! attributes and MESSAGE-INTEGRITY, XOR-encoded addresses, ChannelData framing. Integrity
//! of what clients send is checked by `crate::udp::stun`.

use hmac::{Hmac, Mac};
use sha1::Sha1;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// STUN magic cookie (RFC 8489 5).
pub const MAGIC_COOKIE: u32 = 0x2112_A442;
const HEADER_LEN: usize = 20;
const INTEGRITY_LEN: usize = 20;

/// STUN methods used here.
pub mod method {
    /// Binding.
    pub const BINDING: u16 = 0x001;
    /// Allocate.
    pub const ALLOCATE: u16 = 0x003;
    /// Refresh.
    pub const REFRESH: u16 = 0x004;
    /// Send (indication).
    pub const SEND: u16 = 0x006;
    /// Data (indication).
    pub const DATA: u16 = 0x007;
    /// CreatePermission.
    pub const CREATE_PERMISSION: u16 = 0x008;
    /// ChannelBind.
    pub const CHANNEL_BIND: u16 = 0x009;
}

/// STUN attribute types used here.
pub mod attr {
    /// USERNAME.
    pub const USERNAME: u16 = 0x0006;
    /// MESSAGE-INTEGRITY.
    pub const MESSAGE_INTEGRITY: u16 = 0x0008;
    /// ERROR-CODE.
    pub const ERROR_CODE: u16 = 0x0009;
    /// CHANNEL-NUMBER.
    pub const CHANNEL_NUMBER: u16 = 0x000C;
    /// LIFETIME.
    pub const LIFETIME: u16 = 0x000D;
    /// XOR-PEER-ADDRESS.
    pub const XOR_PEER_ADDRESS: u16 = 0x0012;
    /// DATA.
    pub const DATA: u16 = 0x0013;
    /// REALM.
    pub const REALM: u16 = 0x0014;
    /// NONCE.
    pub const NONCE: u16 = 0x0015;
    /// XOR-RELAYED-ADDRESS.
    pub const XOR_RELAYED_ADDRESS: u16 = 0x0016;
    /// REQUESTED-TRANSPORT.
    pub const REQUESTED_TRANSPORT: u16 = 0x0019;
    /// XOR-MAPPED-ADDRESS.
    pub const XOR_MAPPED_ADDRESS: u16 = 0x0020;
    /// SOFTWARE.
    pub const SOFTWARE: u16 = 0x8022;
}

/// STUN message class.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// A request.
    Request,
    /// An indication.
    Indication,
    /// A success response.
    Success,
    /// An error response.
    Error,
}

impl Class {
    fn bits(self) -> u16 {
        match self {
            Class::Request => 0,
            Class::Indication => 1,
            Class::Success => 2,
            Class::Error => 3,
        }
    }
}

/// The 14-bit message type of `method` and `class` (RFC 8489 5: class bits interleaved).
pub fn message_type(method: u16, class: Class) -> u16 {
    let c = class.bits();
    (method & 0x000F) | ((method & 0x0070) << 1) | ((method & 0x0F80) << 2) | ((c & 1) << 4) | ((c & 2) << 7)
}

/// A STUN message read in place: its type, transaction id and attributes.
#[derive(Debug)]
pub struct Parsed<'a> {
    /// Message type (method and class).
    pub ty: u16,
    /// Transaction id.
    pub txid: [u8; 12],
    attrs: Vec<(u16, &'a [u8])>,
}

impl<'a> Parsed<'a> {
    /// Reads a STUN message; `None` if it is not one or an attribute runs past its end. Bytes
    /// after the message's stated length are ignored.
    pub fn read(data: &'a [u8]) -> Option<Self> {
        if data.len() < HEADER_LEN || data[0] >= 0x40 || data[4..8] != MAGIC_COOKIE.to_be_bytes() {
            return None;
        }
        let ty = u16::from_be_bytes([data[0], data[1]]);
        let len = usize::from(u16::from_be_bytes([data[2], data[3]]));
        let body = data.get(HEADER_LEN..HEADER_LEN + len)?;
        let mut txid = [0u8; 12];
        txid.copy_from_slice(&data[8..HEADER_LEN]);
        let mut attrs = Vec::new();
        let mut at = 0;
        while at < body.len() {
            let header = body.get(at..at + 4)?;
            let t = u16::from_be_bytes([header[0], header[1]]);
            let l = usize::from(u16::from_be_bytes([header[2], header[3]]));
            attrs.push((t, body.get(at + 4..at + 4 + l)?));
            at += 4 + l.next_multiple_of(4);
        }
        Some(Parsed { ty, txid, attrs })
    }

    /// The first attribute of type `ty`.
    pub fn get(&self, ty: u16) -> Option<&'a [u8]> {
        self.attrs.iter().find(|(t, _)| *t == ty).map(|(_, v)| *v)
    }

    /// Every attribute of type `ty`, in order.
    pub fn all(&self, ty: u16) -> impl Iterator<Item = &'a [u8]> + '_ {
        self.attrs.iter().filter(move |(t, _)| *t == ty).map(|(_, v)| *v)
    }

    /// The first attribute of type `ty` as UTF-8 text.
    pub fn text(&self, ty: u16) -> Option<&'a str> {
        std::str::from_utf8(self.get(ty)?).ok()
    }

    /// The first attribute of type `ty` as a big-endian `u32`.
    pub fn u32(&self, ty: u16) -> Option<u32> {
        let v = self.get(ty)?;
        Some(u32::from_be_bytes(v.get(..4)?.try_into().ok()?))
    }
}

/// The method of a message type.
pub fn method_of(ty: u16) -> u16 {
    (ty & 0x000F) | ((ty & 0x00E0) >> 1) | ((ty & 0x3E00) >> 2)
}

/// The class of a message type.
pub fn class_of(ty: u16) -> Class {
    match ((ty >> 4) & 1) | ((ty >> 7) & 2) {
        0 => Class::Request,
        1 => Class::Indication,
        2 => Class::Success,
        _ => Class::Error,
    }
}

/// Writes one STUN message.
pub struct Builder {
    buf: Vec<u8>,
    txid: [u8; 12],
}

impl Builder {
    /// A message of `method` and `class` with transaction id `txid`.
    pub fn new(method: u16, class: Class, txid: [u8; 12]) -> Self {
        let mut buf = Vec::with_capacity(128);
        buf.extend_from_slice(&message_type(method, class).to_be_bytes());
        buf.extend_from_slice(&[0, 0]);
        buf.extend_from_slice(&MAGIC_COOKIE.to_be_bytes());
        buf.extend_from_slice(&txid);
        Builder { buf, txid }
    }

    /// Adds an attribute (padded to four bytes).
    pub fn attr(mut self, ty: u16, value: &[u8]) -> Self {
        self.push(ty, value);
        self
    }

    fn push(&mut self, ty: u16, value: &[u8]) {
        self.buf.extend_from_slice(&ty.to_be_bytes());
        self.buf.extend_from_slice(&(value.len() as u16).to_be_bytes());
        self.buf.extend_from_slice(value);
        self.buf.resize(self.buf.len().next_multiple_of(4), 0);
    }

    /// Adds an XOR-encoded address attribute.
    pub fn xor_addr(self, ty: u16, addr: SocketAddr) -> Self {
        let value = xor_encode(addr, &self.txid);
        self.attr(ty, &value)
    }

    /// Adds ERROR-CODE.
    pub fn error(self, code: u16, reason: &str) -> Self {
        let mut value = vec![0, 0, (code / 100) as u8, (code % 100) as u8];
        value.extend_from_slice(reason.as_bytes());
        self.attr(attr::ERROR_CODE, &value)
    }

    /// The message, signed with `key` when given (MESSAGE-INTEGRITY, RFC 8489 14.5).
    pub fn finish(mut self, key: Option<&[u8]>) -> Vec<u8> {
        if let Some(key) = key {
            // the length covers the integrity attribute while its HMAC is computed
            let length = (self.buf.len() - HEADER_LEN + 4 + INTEGRITY_LEN) as u16;
            self.buf[2..4].copy_from_slice(&length.to_be_bytes());
            let mut mac = Hmac::<Sha1>::new_from_slice(key).expect("HMAC takes any key length");
            mac.update(&self.buf);
            let tag = mac.finalize().into_bytes();
            self.push(attr::MESSAGE_INTEGRITY, &tag);
        }
        let length = (self.buf.len() - HEADER_LEN) as u16;
        self.buf[2..4].copy_from_slice(&length.to_be_bytes());
        self.buf
    }
}

/// The value of an XOR-MAPPED-ADDRESS-style attribute for `addr`.
pub fn xor_encode(addr: SocketAddr, txid: &[u8; 12]) -> Vec<u8> {
    let cookie = MAGIC_COOKIE.to_be_bytes();
    let port = addr.port() ^ (MAGIC_COOKIE >> 16) as u16;
    match addr.ip() {
        IpAddr::V4(ip) => {
            let mut v = vec![0, 0x01];
            v.extend_from_slice(&port.to_be_bytes());
            v.extend(ip.octets().iter().zip(cookie).map(|(a, b)| a ^ b));
            v
        }
        IpAddr::V6(ip) => {
            let mut v = vec![0, 0x02];
            v.extend_from_slice(&port.to_be_bytes());
            let pad = cookie.iter().chain(txid.iter());
            v.extend(ip.octets().iter().zip(pad).map(|(a, b)| a ^ b));
            v
        }
    }
}

/// The address an XOR-encoded attribute value names; `None` if malformed.
pub fn xor_decode(value: &[u8], txid: &[u8; 12]) -> Option<SocketAddr> {
    let cookie = MAGIC_COOKIE.to_be_bytes();
    let port = u16::from_be_bytes([*value.get(2)?, *value.get(3)?]) ^ (MAGIC_COOKIE >> 16) as u16;
    match (value.get(1)?, value.len()) {
        (0x01, 8) => {
            let mut ip = [0u8; 4];
            for (i, b) in ip.iter_mut().enumerate() {
                *b = value[4 + i] ^ cookie[i];
            }
            Some(SocketAddr::new(IpAddr::V4(Ipv4Addr::from(ip)), port))
        }
        (0x02, 20) => {
            let mut ip = [0u8; 16];
            let pad: Vec<u8> = cookie.iter().chain(txid.iter()).copied().collect();
            for (i, b) in ip.iter_mut().enumerate() {
                *b = value[4 + i] ^ pad[i];
            }
            Some(SocketAddr::new(IpAddr::V6(Ipv6Addr::from(ip)), port))
        }
        _ => None,
    }
}

/// True if `data` starts like a ChannelData message (channel numbers 0x4000..=0x7FFF).
pub fn is_channel_data(data: &[u8]) -> bool {
    data.len() >= 4 && (0x40..=0x7F).contains(&data[0])
}

/// The channel and payload of a ChannelData message; `None` if it is shorter than it says.
pub fn channel_data(data: &[u8]) -> Option<(u16, &[u8])> {
    if !is_channel_data(data) {
        return None;
    }
    let channel = u16::from_be_bytes([data[0], data[1]]);
    let len = usize::from(u16::from_be_bytes([data[2], data[3]]));
    Some((channel, data.get(4..4 + len)?))
}

/// A ChannelData message; padded to four bytes when it travels over a stream (RFC 8656 12.5).
pub fn encode_channel_data(channel: u16, payload: &[u8], pad: bool) -> Vec<u8> {
    let len = 4 + payload.len();
    let mut out = Vec::with_capacity(len.next_multiple_of(4));
    out.extend_from_slice(&channel.to_be_bytes());
    out.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    out.extend_from_slice(payload);
    if pad {
        out.resize(len.next_multiple_of(4), 0);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_types_interleave_the_class_bits() {
        // columns: method, class, type on the wire (RFC 8489 / RFC 8656 tables)
        let rows = [
            (method::BINDING, Class::Request, 0x0001),
            (method::BINDING, Class::Success, 0x0101),
            (method::ALLOCATE, Class::Request, 0x0003),
            (method::ALLOCATE, Class::Success, 0x0103),
            (method::ALLOCATE, Class::Error, 0x0113),
            (method::SEND, Class::Indication, 0x0016),
            (method::DATA, Class::Indication, 0x0017),
            (method::CHANNEL_BIND, Class::Success, 0x0109),
        ];
        for (m, c, want) in rows {
            assert_eq!(message_type(m, c), want, "{m:#x} {c:?}");
            assert_eq!((method_of(want), class_of(want)), (m, c), "{want:#x}");
        }
        assert_eq!(method_of(message_type(0xABC, Class::Error)), 0xABC);
    }

    #[test]
    fn xor_addresses_round_trip_and_match_rtc() {
        let txid = [7u8; 12];
        for addr in ["192.0.2.1:32853", "[2001:db8::1]:3478"] {
            let addr: SocketAddr = addr.parse().unwrap();
            assert_eq!(xor_decode(&xor_encode(addr, &txid), &txid), Some(addr));
            // rtc's parser reads what this writes
            let raw = Builder::new(method::ALLOCATE, Class::Success, txid)
                .xor_addr(attr::XOR_RELAYED_ADDRESS, addr)
                .finish(None);
            let mut m = rtc::stun::message::Message::new();
            m.unmarshal_binary(&raw).unwrap();
            let mut got = rtc::turn::proto::relayaddr::RelayedAddress::default();
            rtc::stun::message::Getter::get_from(&mut got, &m).unwrap();
            assert_eq!(SocketAddr::new(got.ip, got.port), addr);
        }
        for bad in [&[][..], &[0, 1, 0, 0][..], &[0, 3, 0, 0, 1, 2, 3, 4][..]] {
            assert_eq!(xor_decode(bad, &txid), None);
        }
    }

    #[test]
    fn reading_takes_what_rtc_writes_and_refuses_truncation() {
        use rtc::stun::message::{Message, Setter};
        use rtc::stun::textattrs::TextAttribute;
        let mut m = Message::new();
        let setters: Vec<Box<dyn Setter>> = vec![
            Box::new(rtc::stun::message::MessageType::new(
                rtc::stun::message::METHOD_ALLOCATE,
                rtc::stun::message::CLASS_REQUEST,
            )),
            Box::new(rtc::stun::message::TransactionId([3; 12])),
            Box::new(TextAttribute::new(rtc::stun::attributes::ATTR_USERNAME, "1:al".into())),
            Box::new(rtc::turn::proto::lifetime::Lifetime(std::time::Duration::from_secs(600))),
        ];
        m.build(&setters).unwrap();
        let p = Parsed::read(&m.raw).unwrap();
        assert_eq!(p.ty, message_type(method::ALLOCATE, Class::Request));
        assert_eq!(p.txid, [3; 12]);
        assert_eq!(p.text(attr::USERNAME), Some("1:al"));
        assert_eq!(p.u32(attr::LIFETIME), Some(600));
        assert_eq!(p.get(attr::NONCE), None);
        for cut in 1..m.raw.len() {
            let short = &m.raw[..cut];
            assert!(Parsed::read(short).is_none(), "{cut}");
        }
        let mut lying = m.raw.clone();
        lying[3] = lying[3].wrapping_add(40);
        assert!(Parsed::read(&lying).is_none(), "a length past the end");
    }

    #[test]
    fn signed_messages_pass_the_integrity_check() {
        let key = b"0123456789abcdef";
        let raw = Builder::new(method::REFRESH, Class::Success, [1; 12])
            .attr(attr::LIFETIME, &600u32.to_be_bytes())
            .finish(Some(key));
        assert!(crate::udp::stun::integrity_ok_with_key(&raw, key));
        assert!(!crate::udp::stun::integrity_ok_with_key(&raw, b"another key"));
    }

    #[test]
    fn channel_data_framing() {
        assert_eq!(encode_channel_data(0x4001, b"abc", false), vec![0x40, 0x01, 0, 3, b'a', b'b', b'c']);
        assert_eq!(encode_channel_data(0x4001, b"abc", true), vec![0x40, 0x01, 0, 3, b'a', b'b', b'c', 0]);
        assert_eq!(channel_data(&[0x40, 0x01, 0, 3, b'a', b'b', b'c', 0]), Some((0x4001, &b"abc"[..])));
        assert_eq!(channel_data(&[0x40, 0x01, 0, 9, b'a']), None, "shorter than it says");
        assert_eq!(channel_data(&[0x00, 0x01, 0, 0]), None, "STUN, not ChannelData");
    }
}
