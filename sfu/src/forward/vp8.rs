//! VP8 RTP payload descriptor (RFC 7741 section 4.2): parsing, keyframe
//! detection, and in-place rewriting so that one subscriber sees continuous
//! picture ids across simulcast layer switches.
//!
//! ```text
//!       0 1 2 3 4 5 6 7
//!      +-+-+-+-+-+-+-+-+
//!      |X|R|N|S|R| PID | (REQUIRED)
//!      +-+-+-+-+-+-+-+-+
//! X:   |I|L|T|K| RSV   | (OPTIONAL)
//!      +-+-+-+-+-+-+-+-+
//! I:   |M| PictureID   | (OPTIONAL, second byte if M)
//!      +-+-+-+-+-+-+-+-+
//! L:   |   TL0PICIDX   | (OPTIONAL)
//!      +-+-+-+-+-+-+-+-+
//! T/K: |TID|Y| KEYIDX  | (OPTIONAL)
//!      +-+-+-+-+-+-+-+-+
//! ```

use super::seq::{extend_near, is_newer_bits, low_u16, wrapping_sub_bits};

/// Width of the TL0PICIDX field.
const TL0PICIDX_BITS: u32 = 8;
/// Width of the KEYIDX field.
const KEYIDX_BITS: u32 = 5;

/// Why a VP8 payload could not be parsed or rewritten.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Vp8Error {
    /// The descriptor ends before a field its flags announce.
    #[error("VP8 payload descriptor truncated: needs {needed} bytes, has {have}")]
    Truncated {
        /// Bytes the descriptor needs up to the missing field.
        needed: usize,
        /// Bytes the payload has.
        have: usize,
    },
    /// The descriptor is complete but no VP8 payload follows it.
    #[error("VP8 payload descriptor is not followed by any payload")]
    NoPayload,
}

/// A VP8 picture id in the 7-bit or the 15-bit form it was sent in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PictureId {
    /// The picture id, below 2^7 or 2^15 depending on `long`.
    pub value: u16,
    /// True for the 15-bit form (M bit set), false for the 7-bit form.
    pub long: bool,
}

impl PictureId {
    /// Width of this picture id in bits (7 or 15).
    pub const fn bits(self) -> u32 {
        if self.long { 15 } else { 7 }
    }

    /// Number of descriptor bytes this picture id occupies (1 or 2).
    pub const fn encoded_len(self) -> usize {
        if self.long { 2 } else { 1 }
    }
}

/// The parsed VP8 payload descriptor of one RTP packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Vp8Descriptor {
    /// Picture id, if the I bit is set.
    pub picture_id: Option<PictureId>,
    /// Temporal layer zero picture index, if the L bit is set.
    pub tl0picidx: Option<u8>,
    /// Temporal layer index, if the T bit is set.
    pub tid: Option<u8>,
    /// Layer sync bit (Y); false when the T bit is not set.
    pub layer_sync: bool,
    /// Temporal key frame index, if the K bit is set.
    pub keyidx: Option<u8>,
    /// Non-reference frame bit (N): no other frame depends on this one.
    pub non_reference: bool,
    /// Start of a VP8 partition (S bit).
    pub start_of_partition: bool,
    /// Partition index (PID).
    pub partition_index: u8,
    /// Length of the descriptor in bytes; the VP8 payload starts here.
    pub header_len: usize,
    /// First packet of a key frame: S set, partition 0, and the payload's P bit clear.
    pub is_keyframe: bool,
}

/// Reads descriptor bytes one at a time without panicking.
struct Reader<'a> {
    /// The whole payload.
    buf: &'a [u8],
    /// Offset of the next byte to read.
    pos: usize,
}

impl Reader<'_> {
    /// Returns the next byte or a truncation error.
    fn byte(&mut self) -> Result<u8, Vp8Error> {
        let b = self
            .buf
            .get(self.pos)
            .copied()
            .ok_or(Vp8Error::Truncated { needed: self.pos + 1, have: self.buf.len() })?;
        self.pos += 1;
        Ok(b)
    }
}

/// Parses the payload descriptor at the start of a VP8 RTP payload.
pub fn parse(payload: &[u8]) -> Result<Vp8Descriptor, Vp8Error> {
    let mut r = Reader { buf: payload, pos: 0 };
    let b0 = r.byte()?;
    let mut desc = Vp8Descriptor {
        picture_id: None,
        tl0picidx: None,
        tid: None,
        layer_sync: false,
        keyidx: None,
        non_reference: b0 & 0x20 != 0,
        start_of_partition: b0 & 0x10 != 0,
        partition_index: b0 & 0x07,
        header_len: 0,
        is_keyframe: false,
    };
    if b0 & 0x80 != 0 {
        let x = r.byte()?;
        if x & 0x80 != 0 {
            let p = r.byte()?;
            desc.picture_id = Some(if p & 0x80 != 0 {
                let low = r.byte()?;
                PictureId { value: (u16::from(p & 0x7f) << 8) | u16::from(low), long: true }
            } else {
                PictureId { value: u16::from(p), long: false }
            });
        }
        if x & 0x40 != 0 {
            desc.tl0picidx = Some(r.byte()?);
        }
        let (t, k) = (x & 0x20 != 0, x & 0x10 != 0);
        if t || k {
            let tk = r.byte()?;
            if t {
                desc.tid = Some(tk >> 6);
                desc.layer_sync = tk & 0x20 != 0;
            }
            if k {
                desc.keyidx = Some(tk & 0x1f);
            }
        }
    }
    desc.header_len = r.pos;
    let first = payload.get(desc.header_len).ok_or(Vp8Error::NoPayload)?;
    desc.is_keyframe = desc.start_of_partition && desc.partition_index == 0 && first & 0x01 == 0;
    Ok(desc)
}

/// Width and height (14 bits each) from the first packet of a key frame, if it carries a valid frame header.
pub fn keyframe_size(payload: &[u8], desc: &Vp8Descriptor) -> Option<(u16, u16)> {
    if !desc.is_keyframe {
        return None;
    }
    // 3-byte frame tag, start code 9d 01 2a, then 16-bit little-endian width and height.
    let &[_, _, _, 0x9d, 0x01, 0x2a, w0, w1, h0, h1, ..] = payload.get(desc.header_len..)? else {
        return None;
    };
    let width = u16::from_le_bytes([w0, w1]) & 0x3fff;
    let height = u16::from_le_bytes([h0, h1]) & 0x3fff;
    (width != 0 && height != 0).then_some((width, height))
}

/// Outgoing descriptor values for one packet, as computed by [`Vp8Munger::munge`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Vp8Rewrite {
    /// Outgoing picture id, already masked to the packet's 7- or 15-bit form.
    pub picture_id: Option<u16>,
    /// Outgoing TL0PICIDX.
    pub tl0picidx: Option<u8>,
    /// Outgoing KEYIDX (5 bits).
    pub keyidx: Option<u8>,
}

/// The low 8 bits of a mapped field value (TL0PICIDX and KEYIDX are at most 8 bits wide).
const fn low_u8(value: u64) -> u8 {
    let [b0, ..] = value.to_le_bytes();
    b0
}

/// Maps one wrapping descriptor field of the current source onto the outgoing stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FieldMap {
    /// Subtracted from incoming values, modulo the field width.
    offset: u64,
    /// Newest outgoing value so far.
    newest_out: Option<u64>,
    /// The next value seen is the first of a new source.
    resync: bool,
}

impl FieldMap {
    /// A map that passes the first source through unchanged.
    const fn new() -> Self {
        Self { offset: 0, newest_out: None, resync: true }
    }

    /// Maps an incoming value of a `bits`-wide field.
    fn map(&mut self, input: u64, bits: u32) -> u64 {
        self.map_less(input, bits, 0)
    }

    /// Maps an incoming value of a `bits`-wide field, `less` below what the offset gives.
    fn map_less(&mut self, input: u64, bits: u32, less: u64) -> u64 {
        if self.resync {
            self.resync = false;
            // The first value of a new source continues right after the newest one sent.
            self.offset = match self.newest_out {
                Some(newest) => input.wrapping_sub(newest.wrapping_add(1)),
                None => 0,
            };
        }
        let out = wrapping_sub_bits(input, self.offset.wrapping_add(less), bits);
        if self.newest_out.is_none_or(|newest| is_newer_bits(out, newest, bits)) {
            self.newest_out = Some(out);
        }
        out
    }
}

/// Dropped pictures remembered, for the ids of late packets of the pictures before them.
const DROPPED_HISTORY: usize = 16;

/// Maps picture ids like [`FieldMap`] and takes dropped pictures out of the numbering: the
/// pictures after one move down by one, so the receiver sees no gap it would wait for (a
/// decoder holds back frames after a missing picture). Dropped pictures are remembered so a
/// late packet (a retransmission) of a picture before them keeps the id it had.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct PictureIdMap {
    map: FieldMap,
    /// Newest incoming picture id of the source (forwarded or dropped), extended.
    newest_in: Option<u64>,
    /// Extended ids of the latest dropped pictures, a ring indexed by `drops`.
    dropped: [u64; DROPPED_HISTORY],
    /// Pictures dropped since the source started.
    drops: u64,
}

impl PictureIdMap {
    const fn new() -> Self {
        Self { map: FieldMap::new(), newest_in: None, dropped: [0; DROPPED_HISTORY], drops: 0 }
    }

    /// The extended form of an incoming id (the first of a source starts one range up, so an
    /// older one never underflows).
    fn extend(&self, value: u64, bits: u32) -> u64 {
        match self.newest_in {
            Some(newest) => extend_near(newest, value, bits),
            None => value + (1 << 16),
        }
    }

    /// Dropped pictures after `ext` among those remembered.
    fn dropped_after(&self, ext: u64) -> u64 {
        let remembered = self.drops.min(DROPPED_HISTORY as u64) as usize;
        let newest = self.drops.checked_sub(1).map(|i| self.dropped[i as usize % DROPPED_HISTORY]);
        if newest.is_none_or(|d| d < ext) {
            return 0;
        }
        self.dropped.iter().take(remembered).filter(|&&d| d > ext).count() as u64
    }

    fn map(&mut self, value: u64, bits: u32) -> u64 {
        if self.map.resync {
            self.newest_in = None;
            self.drops = 0;
        }
        let ext = self.extend(value, bits);
        let before = self.drops - self.dropped_after(ext);
        let out = self.map.map_less(value, bits, before);
        if self.newest_in.is_none_or(|n| ext > n) {
            self.newest_in = Some(ext);
        }
        out
    }

    /// A dropped packet: its picture leaves the numbering if it is newer than every picture
    /// seen (a dropped picture's later packets, or a late one, change nothing).
    fn drop(&mut self, value: u64, bits: u32) {
        if self.map.resync {
            return;
        }
        let ext = self.extend(value, bits);
        if self.newest_in.is_some_and(|n| ext <= n) {
            return;
        }
        self.newest_in = Some(ext);
        self.dropped[self.drops as usize % DROPPED_HISTORY] = ext;
        self.drops += 1;
    }
}

/// Keeps one subscriber's picture id, TL0PICIDX and KEYIDX continuous across source switches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Vp8Munger {
    /// Picture id mapping (7 or 15 bits, as each packet has it).
    picture_id: PictureIdMap,
    /// TL0PICIDX mapping (8 bits).
    tl0picidx: FieldMap,
    /// KEYIDX mapping (5 bits).
    keyidx: FieldMap,
}

impl Default for Vp8Munger {
    fn default() -> Self {
        Self::new()
    }
}

impl Vp8Munger {
    /// Creates a munger whose first source passes through unchanged.
    pub const fn new() -> Self {
        Self { picture_id: PictureIdMap::new(), tl0picidx: FieldMap::new(), keyidx: FieldMap::new() }
    }

    /// Marks that the next packet comes from a new source (its first picture continues at newest + 1).
    pub fn switch_source(&mut self) {
        self.picture_id.map.resync = true;
        self.tl0picidx.resync = true;
        self.keyidx.resync = true;
    }

    /// Computes the outgoing values for a packet of the current source; call only for packets that are forwarded.
    #[must_use = "the rewrite must be written into the packet"]
    pub fn munge(&mut self, desc: &Vp8Descriptor) -> Vp8Rewrite {
        let picture_id = desc.picture_id.map(|pid| {
            // Masked to 7 or 15 bits, so the low 16 bits are the whole value.
            low_u16(self.picture_id.map(u64::from(pid.value), pid.bits()))
        });
        let tl0picidx = desc.tl0picidx.map(|v| low_u8(self.tl0picidx.map(u64::from(v), TL0PICIDX_BITS)));
        let keyidx = desc.keyidx.map(|v| low_u8(self.keyidx.map(u64::from(v), KEYIDX_BITS)));
        Vp8Rewrite { picture_id, tl0picidx, keyidx }
    }

    /// Records a packet of the current source the caller drops (a temporal layer it does not
    /// forward): its picture takes no picture id. TL0PICIDX and KEYIDX need nothing: base
    /// layer frames are never dropped this way.
    pub fn drop_packet(&mut self, desc: &Vp8Descriptor) {
        if let Some(pid) = desc.picture_id {
            self.picture_id.drop(u64::from(pid.value), pid.bits());
        }
    }
}

/// Returns the byte at `pos` for writing, or a truncation error.
fn byte_mut(payload: &mut [u8], pos: usize) -> Result<&mut u8, Vp8Error> {
    let have = payload.len();
    payload.get_mut(pos).ok_or(Vp8Error::Truncated { needed: pos + 1, have })
}

/// Rewrites the descriptor of `payload` (which `desc` was parsed from) in place; fields absent from `desc` are left alone.
pub fn write(payload: &mut [u8], desc: &Vp8Descriptor, rw: &Vp8Rewrite) -> Result<(), Vp8Error> {
    if payload.len() < desc.header_len {
        return Err(Vp8Error::Truncated { needed: desc.header_len, have: payload.len() });
    }
    // Optional fields start after the required byte and the X byte.
    let mut pos = 2;
    if let Some(pid) = desc.picture_id {
        if let Some(v) = rw.picture_id {
            if pid.long {
                let [hi, lo] = (v & 0x7fff).to_be_bytes();
                *byte_mut(payload, pos)? = 0x80 | hi;
                *byte_mut(payload, pos + 1)? = lo;
            } else {
                let [_, lo] = (v & 0x7f).to_be_bytes();
                *byte_mut(payload, pos)? = lo;
            }
        }
        pos += pid.encoded_len();
    }
    if desc.tl0picidx.is_some() {
        if let Some(v) = rw.tl0picidx {
            *byte_mut(payload, pos)? = v;
        }
        pos += 1;
    }
    // A KEYIDX means the T/K byte is at `pos`; its TID and Y bits are kept.
    if let (Some(_), Some(k)) = (desc.keyidx, rw.keyidx) {
        let b = byte_mut(payload, pos)?;
        *b = (*b & 0xe0) | (k & 0x1f);
    }
    Ok(())
}

#[cfg(test)]
#[path = "vp8_tests.rs"]
mod tests;
