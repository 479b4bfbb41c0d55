//! H.264 RTP payloads (RFC 6184): keyframe detection for the packetization
//! modes WebRTC uses (single NAL unit, STAP-A, FU-A).

/// NAL unit type of an IDR slice.
const NAL_IDR: u8 = 5;
/// NAL unit type of a sequence parameter set.
const NAL_SPS: u8 = 7;
/// Payload type of a single-time aggregation packet.
const NAL_STAP_A: u8 = 24;
/// Payload type of a fragmentation unit.
const NAL_FU_A: u8 = 28;

/// NAL unit type from a NAL header byte.
const fn nal_type(header: u8) -> u8 {
    header & 0x1f
}

/// True for NAL types that start a decodable picture sequence (IDR slice or SPS).
const fn starts_keyframe(nal: u8) -> bool {
    matches!(nal, NAL_IDR | NAL_SPS)
}

/// True if an H.264 RTP payload starts a keyframe: an IDR or SPS alone, inside a STAP-A, or at the start of an FU-A.
pub fn is_keyframe(payload: &[u8]) -> bool {
    let Some((&header, rest)) = payload.split_first() else {
        return false;
    };
    match nal_type(header) {
        NAL_STAP_A => stap_a_has_keyframe(rest),
        NAL_FU_A => match rest.first() {
            // FU header: S bit, then the type of the fragmented NAL unit.
            Some(&fu) => fu & 0x80 != 0 && starts_keyframe(nal_type(fu)),
            None => false,
        },
        nal => starts_keyframe(nal),
    }
}

/// True if any complete-enough NAL unit in a STAP-A body (16-bit size, then the unit) is an IDR or SPS.
fn stap_a_has_keyframe(mut body: &[u8]) -> bool {
    while let [hi, lo, rest @ ..] = body {
        let size = usize::from(u16::from_be_bytes([*hi, *lo]));
        let Some((unit, tail)) = rest.split_at_checked(size) else {
            // The size runs past the packet: what is left is malformed.
            return false;
        };
        if unit.first().is_some_and(|&h| starts_keyframe(nal_type(h))) {
            return true;
        }
        body = tail;
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn is_keyframe_table() {
        let cases: &[(&str, &[u8], bool)] = &[
            ("empty", &[], false),
            ("single IDR", &[0x65, 0x88, 0x84], true),
            ("single SPS", &[0x67, 0x42, 0x00, 0x1f], true),
            ("single PPS", &[0x68, 0xce, 0x3c, 0x80], false),
            ("single non-IDR slice", &[0x41, 0x9a, 0x00], false),
            ("single SEI", &[0x06, 0x05], false),
            ("header byte only, IDR", &[0x65], true),
            (
                "STAP-A SPS PPS IDR",
                &[0x78, 0x00, 0x02, 0x67, 0x42, 0x00, 0x02, 0x68, 0xce, 0x00, 0x02, 0x65, 0x88],
                true,
            ),
            ("STAP-A IDR after PPS", &[0x78, 0x00, 0x02, 0x68, 0xce, 0x00, 0x01, 0x65], true),
            ("STAP-A without keyframe", &[0x78, 0x00, 0x02, 0x06, 0x05, 0x00, 0x02, 0x41, 0x9a], false),
            ("STAP-A empty body", &[0x78], false),
            ("STAP-A size past end", &[0x78, 0x00, 0x09, 0x67, 0x42], false),
            ("STAP-A SPS before truncated unit", &[0x78, 0x00, 0x01, 0x67, 0x00, 0x09, 0x41], true),
            ("STAP-A zero-size unit then SPS", &[0x78, 0x00, 0x00, 0x00, 0x01, 0x67], true),
            ("STAP-A dangling size byte", &[0x78, 0x00, 0x01, 0x41, 0x00], false),
            ("FU-A start of IDR", &[0x7c, 0x85, 0x88], true),
            ("FU-A middle of IDR", &[0x7c, 0x05, 0x88], false),
            ("FU-A end of IDR", &[0x7c, 0x45, 0x88], false),
            ("FU-A start of non-IDR", &[0x5c, 0x81, 0x9a], false),
            ("FU-A start of SPS", &[0x7c, 0x87], true),
            ("FU-A without FU header", &[0x7c], false),
            ("STAP-B is not handled", &[0x79, 0x00, 0x00, 0x00, 0x02, 0x65, 0x88], false),
        ];
        for (name, input, want) in cases {
            assert_eq!(is_keyframe(input), *want, "case {name}");
        }
    }
}
