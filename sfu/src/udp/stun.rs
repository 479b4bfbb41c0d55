//! Just enough STUN (RFC 8489) to route a binding request by its USERNAME.

const MAGIC_COOKIE: [u8; 4] = [0x21, 0x12, 0xA4, 0x42];
const HEADER_LEN: usize = 20;
const ATTR_USERNAME: u16 = 0x0006;

/// True if the datagram looks like STUN (RFC 7983 demultiplexing plus the magic cookie).
pub fn is_stun(data: &[u8]) -> bool {
    data.len() >= HEADER_LEN && data[0] < 4 && data[4..8] == MAGIC_COOKIE
}

/// The local ufrag of a STUN request: the part of USERNAME before the first `:`.
pub fn local_ufrag(data: &[u8]) -> Option<&str> {
    if !is_stun(data) {
        return None;
    }
    let body_len = u16::from_be_bytes([data[2], data[3]]) as usize;
    let body = data.get(HEADER_LEN..HEADER_LEN + body_len)?;
    let mut rest = body;
    while rest.len() >= 4 {
        let ty = u16::from_be_bytes([rest[0], rest[1]]);
        let len = u16::from_be_bytes([rest[2], rest[3]]) as usize;
        let value = rest.get(4..4 + len)?;
        if ty == ATTR_USERNAME {
            let username = std::str::from_utf8(value).ok()?;
            return username.split(':').next().filter(|u| !u.is_empty());
        }
        let padded = (len + 3) & !3;
        rest = rest.get(4 + padded..)?;
    }
    None
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
}
