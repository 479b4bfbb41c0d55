//! TURN over TCP and TLS (RFC 8656 12.5): STUN messages and ChannelData messages back to back
//! on the stream, each found by its own length field; ChannelData is padded to four bytes.

use bytes::{Buf, BytesMut};

/// Why a stream cannot be read on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// The first byte is neither STUN nor ChannelData.
    #[error("a message starting with {0:#04x} is neither STUN nor ChannelData")]
    Unknown(u8),
    /// A STUN header without the magic cookie.
    #[error("a STUN header without the magic cookie")]
    NoCookie,
}

/// Cuts messages out of the bytes read from one stream.
#[derive(Debug, Default)]
pub struct Deframer {
    buf: BytesMut,
}

/// Room kept for one read.
const READ: usize = 16 * 1024;

impl Deframer {
    /// Where the next bytes read from the stream go.
    pub fn read_buf(&mut self) -> &mut BytesMut {
        self.buf.reserve(READ);
        &mut self.buf
    }

    /// The next whole message (a ChannelData message without its padding), if the bytes so
    /// far hold one.
    pub fn next_frame(&mut self) -> Result<Option<BytesMut>, FrameError> {
        if self.buf.len() < 4 {
            return Ok(None);
        }
        let len = usize::from(u16::from_be_bytes([self.buf[2], self.buf[3]]));
        let (whole, padded) = match self.buf[0] {
            0x00..=0x3F if self.buf.len() < 8 => return Ok(None),
            0x00..=0x3F if self.buf[4..8] != super::wire::MAGIC_COOKIE.to_be_bytes() => {
                return Err(FrameError::NoCookie);
            }
            0x00..=0x3F => (20 + len, 20 + len),
            0x40..=0x7F => (4 + len, (4 + len).next_multiple_of(4)),
            b => return Err(FrameError::Unknown(b)),
        };
        if self.buf.len() < padded {
            return Ok(None);
        }
        let frame = self.buf.split_to(whole);
        self.buf.advance(padded - whole);
        Ok(Some(frame))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::turn::wire::{Builder, Class, encode_channel_data, method};

    #[test]
    fn messages_are_cut_at_their_lengths_however_the_stream_splits_them() {
        let stun = Builder::new(method::BINDING, Class::Request, [1; 12]).attr(0x8022, b"abc").finish(None);
        let data = encode_channel_data(0x4000, b"hello", true);
        let stream: Vec<u8> = [stun.clone(), data.clone(), stun.clone()].concat();
        for chunk in 1..=stream.len() {
            let mut d = Deframer::default();
            let mut got = Vec::new();
            for piece in stream.chunks(chunk) {
                d.read_buf().extend_from_slice(piece);
                while let Some(f) = d.next_frame().unwrap() {
                    got.push(f.to_vec());
                }
            }
            assert_eq!(got, vec![stun.clone(), data[..9].to_vec(), stun.clone()], "chunks of {chunk}");
        }
    }

    #[test]
    fn other_bytes_end_the_stream() {
        // columns: first bytes, error
        let rows = [
            (&b"\xff\x00\x00\x00"[..], FrameError::Unknown(0xff)),
            (b"\x16\x03\x01\x02\x00\x01\x00\x01", FrameError::NoCookie),
        ];
        for (bytes, want) in rows {
            let mut d = Deframer::default();
            d.read_buf().extend_from_slice(bytes);
            assert_eq!(d.next_frame(), Err(want), "{bytes:?}");
        }
    }
}
