//! Just enough VP8 to fake a camera and to check what comes back: the RTP payload descriptor
//! (RFC 7741 section 4.2) and the frame header at the start of every frame (RFC 6386 section 9.1).
//!
//! Written descriptors always carry X=1, I=1 with a 15-bit picture id and L=1 with a
//! TL0PICIDX, partition index 0; the S bit marks the first packet of a frame.

/// Length of the payload descriptor [`write_descriptor`] writes.
pub const DESCRIPTOR_LEN: usize = 5;
/// Length of a keyframe's frame header: 3-byte frame tag, start code, width, height.
pub const KEYFRAME_HEADER_LEN: usize = 10;
/// Length of an interframe's frame header: the 3-byte frame tag.
pub const INTERFRAME_HEADER_LEN: usize = 3;
/// Picture ids are 15 bits wide.
pub const PICTURE_ID_MODULO: u16 = 1 << 15;
/// The keyframe start code.
const START_CODE: [u8; 3] = [0x9d, 0x01, 0x2a];
/// Largest first-partition size the 19-bit field holds.
const MAX_FIRST_PARTITION: u32 = (1 << 19) - 1;

/// The fields of a payload descriptor that matter here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Descriptor {
    /// Picture id (7 or 15 bits), if present.
    pub picture_id: Option<u16>,
    /// True if the picture id is the 15-bit form.
    pub long_picture_id: bool,
    /// TL0PICIDX, if present.
    pub tl0picidx: Option<u8>,
    /// Temporal layer (TID), if the T bit is set.
    pub tid: Option<u8>,
    /// S bit: first packet of a partition.
    pub start: bool,
    /// Partition index.
    pub partition: u8,
    /// Descriptor length; the VP8 data starts here.
    pub len: usize,
}

impl Descriptor {
    /// First packet of a frame: S set on partition 0.
    pub fn frame_start(&self) -> bool {
        self.start && self.partition == 0
    }
}

/// A VP8 frame header as read from the first packet of a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    /// P bit clear.
    pub keyframe: bool,
    /// Version (0-3 are defined).
    pub version: u8,
    /// show_frame bit.
    pub show: bool,
    /// Size of the first partition in bytes (19 bits).
    pub first_partition: u32,
    /// Width and height (14 bits each) of a keyframe.
    pub size: Option<(u16, u16)>,
    /// Header length (10 for a keyframe, 3 otherwise).
    pub len: usize,
}

/// Why VP8 bytes could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Vp8Error {
    /// Fewer bytes than the fields announce.
    #[error("VP8 data truncated")]
    Truncated,
    /// A keyframe without the 9d 01 2a start code.
    #[error("VP8 keyframe without start code")]
    NoStartCode,
}

/// Writes a descriptor (X=1, I=1 15-bit picture id, L=1, partition 0) into `out`.
pub fn write_descriptor(out: &mut [u8; DESCRIPTOR_LEN], start: bool, picture_id: u16, tl0picidx: u8) {
    let pid = picture_id % PICTURE_ID_MODULO;
    out[0] = 0x80 | if start { 0x10 } else { 0 };
    out[1] = 0x80 | 0x40;
    out[2] = 0x80 | (pid >> 8) as u8;
    out[3] = pid as u8;
    out[4] = tl0picidx;
}

/// Writes the frame header of a shown frame whose VP8 data (header included) is `frame_len`
/// bytes: a keyframe header with `size`, else an interframe tag. The first partition is given
/// half of what follows the header. Returns the header length.
pub fn write_frame_header(out: &mut [u8], frame_len: usize, size: Option<(u16, u16)>) -> usize {
    let len = if size.is_some() { KEYFRAME_HEADER_LEN } else { INTERFRAME_HEADER_LEN };
    assert!(out.len() >= len && frame_len >= len, "frame too short for its header");
    let first_partition = (((frame_len - len) / 2).max(1) as u32).min(MAX_FIRST_PARTITION);
    let p_bit = u32::from(size.is_none());
    let show = 1u32 << 4;
    let tag = (first_partition << 5) | show | p_bit; // version 0
    out[..3].copy_from_slice(&tag.to_le_bytes()[..3]);
    if let Some((w, h)) = size {
        out[3..6].copy_from_slice(&START_CODE);
        out[6..8].copy_from_slice(&(w & 0x3fff).to_le_bytes());
        out[8..10].copy_from_slice(&(h & 0x3fff).to_le_bytes());
    }
    len
}

/// Length of a descriptor with the TID byte ([`write_temporal_descriptor`]).
pub const TEMPORAL_DESCRIPTOR_LEN: usize = DESCRIPTOR_LEN + 1;

/// Writes a descriptor like [`write_descriptor`] plus the T byte: temporal layer `tid` (2 bits)
/// and the layer sync bit.
pub fn write_temporal_descriptor(
    out: &mut [u8; TEMPORAL_DESCRIPTOR_LEN],
    start: bool,
    picture_id: u16,
    tl0picidx: u8,
    (tid, sync): (u8, bool),
) {
    let (base, t) = out.split_at_mut(DESCRIPTOR_LEN);
    let base: &mut [u8; DESCRIPTOR_LEN] = base.try_into().expect("split at DESCRIPTOR_LEN");
    write_descriptor(base, start, picture_id, tl0picidx);
    base[1] |= 0x20;
    t[0] = ((tid & 0x03) << 6) | if sync { 0x20 } else { 0 };
}

/// Parses the payload descriptor at the start of `payload`.
pub fn parse_descriptor(payload: &[u8]) -> Result<Descriptor, Vp8Error> {
    let byte = |i: usize| payload.get(i).copied().ok_or(Vp8Error::Truncated);
    let b0 = byte(0)?;
    let mut d = Descriptor {
        picture_id: None,
        long_picture_id: false,
        tl0picidx: None,
        tid: None,
        start: b0 & 0x10 != 0,
        partition: b0 & 0x07,
        len: 1,
    };
    if b0 & 0x80 != 0 {
        let x = byte(1)?;
        let mut pos = 2;
        if x & 0x80 != 0 {
            let p = byte(pos)?;
            if p & 0x80 != 0 {
                d.picture_id = Some((u16::from(p & 0x7f) << 8) | u16::from(byte(pos + 1)?));
                d.long_picture_id = true;
                pos += 2;
            } else {
                d.picture_id = Some(u16::from(p));
                pos += 1;
            }
        }
        if x & 0x40 != 0 {
            d.tl0picidx = Some(byte(pos)?);
            pos += 1;
        }
        if x & 0x30 != 0 {
            if x & 0x20 != 0 {
                d.tid = Some(byte(pos)? >> 6);
            }
            pos += 1; // TID/Y/KEYIDX
        }
        d.len = pos;
    }
    if payload.len() <= d.len {
        return Err(Vp8Error::Truncated);
    }
    Ok(d)
}

/// Parses the frame header at the start of a frame's VP8 data.
pub fn parse_frame_header(data: &[u8]) -> Result<FrameHeader, Vp8Error> {
    let tag = data.get(..3).ok_or(Vp8Error::Truncated)?;
    let tag = u32::from(tag[0]) | (u32::from(tag[1]) << 8) | (u32::from(tag[2]) << 16);
    let keyframe = tag & 1 == 0;
    let mut h = FrameHeader {
        keyframe,
        version: ((tag >> 1) & 0x7) as u8,
        show: tag & 0x10 != 0,
        first_partition: tag >> 5,
        size: None,
        len: INTERFRAME_HEADER_LEN,
    };
    if keyframe {
        let k = data.get(..KEYFRAME_HEADER_LEN).ok_or(Vp8Error::Truncated)?;
        if k[3..6] != START_CODE {
            return Err(Vp8Error::NoStartCode);
        }
        let w = u16::from_le_bytes([k[6], k[7]]) & 0x3fff;
        let hh = u16::from_le_bytes([k[8], k[9]]) & 0x3fff;
        h.size = Some((w, hh));
        h.len = KEYFRAME_HEADER_LEN;
    }
    Ok(h)
}

impl FrameHeader {
    /// A plausible header for a frame of `frame_len` VP8 bytes: defined version, shown, a
    /// first partition that fits, and for keyframes a non-zero size.
    pub fn is_valid(&self, frame_len: usize) -> bool {
        self.version <= 3
            && self.show
            && self.first_partition >= 1
            && (self.first_partition as usize) <= frame_len.saturating_sub(self.len)
            && self.size.is_none_or(|(w, h)| w > 0 && h > 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptor_round_trip() {
        // columns: start, picture id, tl0picidx
        for (start, pid, tl0) in [(true, 0u16, 0u8), (false, 32767, 255), (true, 40000, 7), (false, 128, 1)] {
            let mut buf = [0u8; DESCRIPTOR_LEN + 1];
            let (d, rest) = buf.split_at_mut(DESCRIPTOR_LEN);
            write_descriptor(d.try_into().unwrap(), start, pid, tl0);
            rest[0] = 0xaa;
            let got = parse_descriptor(&buf).unwrap();
            assert_eq!(got.picture_id, Some(pid % PICTURE_ID_MODULO));
            assert!(got.long_picture_id);
            assert_eq!(got.tl0picidx, Some(tl0));
            assert_eq!(got.frame_start(), start);
            assert_eq!(got.len, DESCRIPTOR_LEN);
            assert_eq!(got.tid, None);
        }
    }

    #[test]
    fn temporal_descriptor_round_trip() {
        // columns: TID, layer sync
        for (tid, sync) in [(0u8, false), (1, true), (2, false), (2, true)] {
            let mut buf = [0u8; TEMPORAL_DESCRIPTOR_LEN + 1];
            let (d, rest) = buf.split_at_mut(TEMPORAL_DESCRIPTOR_LEN);
            write_temporal_descriptor(d.try_into().unwrap(), true, 1234, 9, (tid, sync));
            rest[0] = 0xaa;
            let got = parse_descriptor(&buf).unwrap();
            assert_eq!(
                (got.picture_id, got.tl0picidx, got.tid, got.len),
                (Some(1234), Some(9), Some(tid), TEMPORAL_DESCRIPTOR_LEN)
            );
            assert_eq!(buf[TEMPORAL_DESCRIPTOR_LEN - 1] & 0x20 != 0, sync);
        }
    }

    #[test]
    fn descriptor_errors() {
        assert_eq!(parse_descriptor(&[]), Err(Vp8Error::Truncated));
        assert_eq!(parse_descriptor(&[0x90, 0x80]), Err(Vp8Error::Truncated));
        // a descriptor with nothing after it
        assert_eq!(parse_descriptor(&[0x90, 0xc0, 0x81, 0x02, 0x03]), Err(Vp8Error::Truncated));
        // short form: no X byte
        let d = parse_descriptor(&[0x10, 0x00]).unwrap();
        assert_eq!((d.len, d.picture_id, d.frame_start()), (1, None, true));
    }

    #[test]
    fn frame_headers() {
        // columns: frame length, size, expected header length
        type Row = (usize, Option<(u16, u16)>, usize);
        let rows: &[Row] = &[(3000, Some((1280, 720)), 10), (700, Some((320, 180)), 10), (2500, None, 3), (5, None, 3)];
        for &(frame_len, size, len) in rows {
            let mut buf = vec![0u8; frame_len];
            assert_eq!(write_frame_header(&mut buf, frame_len, size), len);
            let h = parse_frame_header(&buf).unwrap();
            assert_eq!(h.keyframe, size.is_some());
            assert_eq!(h.size, size);
            assert_eq!(h.len, len);
            assert!(h.show);
            assert_eq!(h.version, 0);
            assert!(h.is_valid(frame_len), "{frame_len} {size:?}");
            assert!(!h.is_valid(len), "a frame with no room for its first partition");
        }
        // the first bytes of a real 320x180 keyframe tag: P=0, show=1
        let mut buf = [0u8; 10];
        write_frame_header(&mut buf, 700, Some((320, 180)));
        assert_eq!(buf[0] & 0x11, 0x10);
        assert_eq!(&buf[3..10], &[0x9d, 0x01, 0x2a, 0x40, 0x01, 0xb4, 0x00]);
        assert_eq!(parse_frame_header(&[0x10, 0, 0, 1, 2, 3, 4, 5, 6, 7]), Err(Vp8Error::NoStartCode));
        assert_eq!(parse_frame_header(&[0x11, 0]), Err(Vp8Error::Truncated));
    }
}
