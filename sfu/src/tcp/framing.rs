//! RFC 4571 framing of ICE-TCP (RFC 6544): every STUN, DTLS, RTP or RTCP datagram travels
//! as a 16-bit big-endian length and that many bytes.

use bytes::{Buf, BufMut, BytesMut};

/// The largest frame accepted. Media datagrams stay under the path MTU; a peer that sends
/// larger frames is not a WebRTC client.
pub const MAX_FRAME: usize = 4096;

/// Why a stream cannot be read on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// A frame longer than [`MAX_FRAME`].
    #[error("a frame of {0} bytes is larger than any media datagram")]
    TooLarge(usize),
}

/// Cuts frames out of the bytes read from one TCP stream.
#[derive(Debug, Default)]
pub struct Deframer {
    buf: BytesMut,
}

impl Deframer {
    /// Where the next bytes read from the stream go (at least `MAX_FRAME` bytes of room).
    pub fn read_buf(&mut self) -> &mut BytesMut {
        self.buf.reserve(MAX_FRAME + 2);
        &mut self.buf
    }

    /// The next whole frame, if the bytes so far hold one. A zero-length frame is returned as
    /// an empty buffer (the caller drops it).
    pub fn next_frame(&mut self) -> Result<Option<BytesMut>, FrameError> {
        if self.buf.len() < 2 {
            return Ok(None);
        }
        let len = usize::from(u16::from_be_bytes([self.buf[0], self.buf[1]]));
        if len > MAX_FRAME {
            return Err(FrameError::TooLarge(len));
        }
        if self.buf.len() < 2 + len {
            return Ok(None);
        }
        self.buf.advance(2);
        Ok(Some(self.buf.split_to(len)))
    }
}

/// Appends `data` to `out` as one frame. `data` is at most 65535 bytes (a UDP-sized datagram).
pub fn put_frame(out: &mut BytesMut, data: &[u8]) {
    debug_assert!(data.len() <= usize::from(u16::MAX));
    out.reserve(2 + data.len());
    out.put_u16(data.len() as u16);
    out.put_slice(data);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `chunks` one after another and collects the frames (or the error) after each.
    fn run(chunks: &[&[u8]]) -> Vec<Result<Vec<Vec<u8>>, FrameError>> {
        let mut d = Deframer::default();
        let mut out = Vec::new();
        for c in chunks {
            d.read_buf().extend_from_slice(c);
            let mut frames = Vec::new();
            let step = loop {
                match d.next_frame() {
                    Ok(Some(f)) => frames.push(f.to_vec()),
                    Ok(None) => break Ok(frames),
                    Err(e) => break Err(e),
                }
            };
            out.push(step);
        }
        out
    }

    #[test]
    fn frames_are_cut_wherever_the_reads_split_them() {
        let big = [7u8; MAX_FRAME];
        let mut big_frame = BytesMut::new();
        put_frame(&mut big_frame, &big);
        let big_header = [0x10u8, 0x01]; // MAX_FRAME + 1
        type Row<'a> = (&'a str, Vec<&'a [u8]>, Vec<Result<Vec<Vec<u8>>, FrameError>>);
        let rows: Vec<Row> = vec![
            ("one frame in one read", vec![&[0, 3, 1, 2, 3]], vec![Ok(vec![vec![1, 2, 3]])]),
            ("two frames in one read", vec![&[0, 1, 9, 0, 2, 4, 5]], vec![Ok(vec![vec![9], vec![4, 5]])]),
            ("header split", vec![&[0], &[2, 1, 2]], vec![Ok(vec![]), Ok(vec![vec![1, 2]])]),
            ("body split", vec![&[0, 3, 1], &[2], &[3, 0]], vec![Ok(vec![]), Ok(vec![]), Ok(vec![vec![1, 2, 3]])]),
            ("empty frame", vec![&[0, 0, 0, 1, 6]], vec![Ok(vec![vec![], vec![6]])]),
            ("largest frame", vec![&big_frame[..]], vec![Ok(vec![big.to_vec()])]),
            ("too large: refused before its body", vec![&big_header], vec![Err(FrameError::TooLarge(MAX_FRAME + 1))]),
            ("too large after a good one", vec![&[0, 1, 1, 0xff, 0xff]], vec![Err(FrameError::TooLarge(65535))]),
        ];
        for (what, chunks, want) in rows {
            assert_eq!(run(&chunks), want, "{what}");
        }
    }

    #[test]
    fn put_frame_round_trips() {
        let mut out = BytesMut::new();
        for data in [&b"stun"[..], &[], &[0u8; 1200]] {
            put_frame(&mut out, data);
        }
        let mut d = Deframer::default();
        d.read_buf().extend_from_slice(&out);
        let lens: Vec<usize> = std::iter::from_fn(|| d.next_frame().unwrap()).map(|f| f.len()).collect();
        assert_eq!(lens, vec![4, 0, 1200]);
    }
}
