//! The little SDP reading the worker needs beyond what `rtc` does: simulcast rids per media
//! section and a check that an offer has a codec we forward.

/// Simulcast rids of each media section that sends them, by mid, in the offer's order.
pub fn send_rids_by_mid(sdp: &str) -> Vec<(String, Vec<String>)> {
    let mut out = Vec::new();
    for section in sdp.split("\nm=").skip(1) {
        let mut mid = None;
        let mut rids = Vec::new();
        for line in section.lines() {
            let line = line.trim_end();
            if let Some(m) = line.strip_prefix("a=mid:") {
                mid = Some(m.to_string());
            } else if let Some(r) = line.strip_prefix("a=rid:") {
                let mut parts = r.split_whitespace();
                if let (Some(id), Some("send")) = (parts.next(), parts.next()) {
                    rids.push(id.to_string());
                }
            }
        }
        if let Some(mid) = mid
            && !rids.is_empty()
        {
            out.push((mid, rids));
        }
    }
    out
}

/// The mids of an offer's media sections that send: not rejected (port 0) and `sendonly` or
/// `sendrecv` (the default when no direction is given). A section that stopped sending (a
/// stopped transceiver, a track removed) is not among them.
pub fn sending_mids(sdp: &str) -> Vec<String> {
    let mut out = Vec::new();
    for section in sdp.split("\nm=").skip(1) {
        let port = section.split_whitespace().nth(1);
        if port == Some("0") {
            continue;
        }
        let mut mid = None;
        let mut sends = true;
        for line in section.lines().map(str::trim_end) {
            if let Some(m) = line.strip_prefix("a=mid:") {
                mid = Some(m.to_string());
            } else if matches!(line, "a=recvonly" | "a=inactive") {
                sends = false;
            }
        }
        if let (Some(mid), true) = (mid, sends) {
            out.push(mid);
        }
    }
    out
}

/// The header extension id of RFC 6464 audio levels (`ssrc-audio-level`) in an offer, if it
/// offers them (one id for the whole offer: the sections share one transport).
pub fn audio_level_ext(sdp: &str) -> Option<u8> {
    sdp.lines().find_map(|line| {
        let rest = line.trim_end().strip_prefix("a=extmap:")?;
        let (id, uri) = rest.split_once(' ')?;
        let id = id.split('/').next()?.parse::<u8>().ok()?;
        (uri.trim() == AUDIO_LEVEL_URI && (1..=14).contains(&id)).then_some(id)
    })
}

/// RFC 6464's header extension.
pub const AUDIO_LEVEL_URI: &str = "urn:ietf:params:rtp-hdrext:ssrc-audio-level";

/// Why an offer cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OfferError {
    /// Not SDP at all.
    #[error("not an SDP offer: {0}")]
    Malformed(&'static str),
    /// Media sections, but none with Opus, VP8 or H264.
    #[error("the offer has no usable codec (this server forwards Opus, VP8 and H264)")]
    NoCodec,
    /// More media sections than a participant may publish.
    #[error("the offer has {0} media sections; at most {MAX_MEDIA_SECTIONS}")]
    TooManySections(usize),
}

/// Media sections one offer may hold: camera, microphone, a screen and its audio, and room to
/// spare; every track fans out to everyone, so a participant may not publish hundreds.
pub const MAX_MEDIA_SECTIONS: usize = 8;

/// Rejects text that is not SDP and offers whose media sections all lack a codec we forward.
pub fn check_offer(sdp: &str) -> Result<(), OfferError> {
    if !sdp.starts_with("v=0") {
        return Err(OfferError::Malformed("it must start with v=0"));
    }
    let sections = sdp.split("\nm=").skip(1).count();
    if sections > MAX_MEDIA_SECTIONS {
        return Err(OfferError::TooManySections(sections));
    }
    let mut media = 0;
    let mut usable = 0;
    for section in sdp.split("\nm=").skip(1) {
        if section.starts_with("application") {
            continue;
        }
        media += 1;
        let has = section.lines().any(|l| {
            let l = l.to_ascii_lowercase();
            l.starts_with("a=rtpmap:") && (l.contains(" opus/") || l.contains(" vp8/") || l.contains(" h264/"))
        });
        if has {
            usable += 1;
        }
    }
    if media > 0 && usable == 0 {
        return Err(OfferError::NoCodec);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sections_that_still_send() {
        let sdp = "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:0\r\na=sendonly\r\n\
                   m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:1\r\n\
                   m=video 0 UDP/TLS/RTP/SAVPF 96\r\na=mid:2\r\na=sendonly\r\n\
                   m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:3\r\na=inactive\r\n";
        assert_eq!(sending_mids(sdp), vec!["0".to_string(), "1".to_string()]);
    }

    const OFFER: &str = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n\
m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:0\r\na=rtpmap:111 opus/48000/2\r\n\
m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:1\r\na=rtpmap:96 VP8/90000\r\n\
a=rid:q send\r\na=rid:h send\r\na=rid:f send\r\na=simulcast:send q;h;f\r\n";

    #[test]
    fn rids() {
        assert_eq!(
            send_rids_by_mid(OFFER),
            vec![("1".to_string(), vec!["q".to_string(), "h".to_string(), "f".to_string()])]
        );
    }

    #[test]
    fn offer_checks() {
        let g722 = OFFER.replace("opus", "G722").replace("VP8", "VP9");
        let video = "m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=rtpmap:96 VP8/90000\r\n";
        let eight = format!("{OFFER}{}", video.repeat(MAX_MEDIA_SECTIONS - 2));
        let nine = format!("{eight}{video}");
        let rows: &[(&str, Result<(), OfferError>)] = &[
            (&eight, Ok(())),
            (&nine, Err(OfferError::TooManySections(MAX_MEDIA_SECTIONS + 1))),
            (OFFER, Ok(())),
            ("garbage", Err(OfferError::Malformed("it must start with v=0"))),
            (&g722, Err(OfferError::NoCodec)),
            ("v=0\r\ns=-\r\n", Ok(())),
        ];
        for (sdp, want) in rows {
            assert_eq!(&check_offer(sdp), want, "{sdp:.40}");
        }
    }
}
