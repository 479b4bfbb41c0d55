//! Buffers for the datagrams the reader hands to rooms, cut from shared blocks.

use bytes::BytesMut;

/// Bytes per block: ~50 media datagrams.
pub const BLOCK: usize = 64 * 1024;

/// Datagrams a room may have queued for the next one to be cut from a block
/// ([`DatagramArena::copy_for`]): a room that falls behind gets buffers of their own, so its
/// queue keeps at most this many blocks alive (16 MiB), not one per queued datagram.
pub const QUEUED_FROM_BLOCKS: usize = 256;

/// Copies datagrams into buffers cut from [`BLOCK`]-byte blocks (`BytesMut::split_to`): one
/// allocation per block instead of one per datagram. A cut buffer is already shared, so when
/// `rtc` decrypts it in place and freezes it into the packet's payload nothing is allocated
/// either (a `BytesMut` with a buffer of its own gets a new shared header on `freeze` whenever
/// its length is below its capacity, as a decrypted packet's is: the tag is cut off). A block
/// is freed with the last of its datagrams: they live while their room has them queued (see
/// [`QUEUED_FROM_BLOCKS`]) and, for RTP, while the retransmission caches keep them
/// (`CACHE_MAX_AGE` plus up to one sweep interval, ~2.1 s), so a block of STUN or RTCP
/// datagrams lives as long as the media datagrams cut beside them.
#[derive(Default)]
pub struct DatagramArena {
    block: BytesMut,
}

impl DatagramArena {
    /// `data` in a buffer of exactly its length, from the current block or a new one.
    pub fn copy(&mut self, data: &[u8]) -> BytesMut {
        if self.block.capacity() < data.len() {
            self.block = BytesMut::with_capacity(BLOCK.max(data.len()));
        }
        self.block.extend_from_slice(data);
        self.block.split_to(data.len())
    }

    /// `data` for a room with `queued` datagrams waiting: cut from a block ([`copy`](Self::copy))
    /// unless the room has fallen behind by more than [`QUEUED_FROM_BLOCKS`].
    pub fn copy_for(&mut self, data: &[u8], queued: usize) -> BytesMut {
        if queued > QUEUED_FROM_BLOCKS {
            return BytesMut::from(data);
        }
        self.copy(data)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn datagrams_share_a_block_until_it_is_full() {
        // columns: datagram length, which block it lands in (counted from 0)
        let big = BLOCK - 3000;
        let rows = [(1200, 0), (800, 0), (big, 0), (2000, 1), (1, 1), (BLOCK + 5, 2), (10, 3)];
        let mut arena = DatagramArena::default();
        let (mut block, mut end) = (None::<usize>, 0usize);
        let mut kept = Vec::new();
        for (i, &(len, want)) in rows.iter().enumerate() {
            let data: Vec<u8> = (0..len).map(|k| (i * 7 + k) as u8).collect();
            let buf = arena.copy(&data);
            assert_eq!((buf.len(), &buf[..]), (len, &data[..]), "row {i}: an exact copy");
            let at = buf.as_ptr() as usize;
            // within a block each buffer starts where the previous one ended
            if at != end {
                block = Some(block.map_or(0, |b| b + 1));
            }
            assert_eq!(block, Some(want), "row {i}: block");
            end = at + len;
            kept.push((buf, data));
        }
        // writing into one (in-place decryption) leaves its neighbours alone, and truncating
        // and freezing it keeps its bytes where they are
        let (first, _) = &mut kept[0];
        first.fill(0xee);
        first.truncate(1000);
        let at = first.as_ptr();
        let frozen = std::mem::take(first).freeze();
        assert_eq!((frozen.as_ptr(), frozen.len()), (at, 1000));
        for (buf, data) in &kept[1..] {
            assert_eq!(&buf[..], &data[..]);
        }
    }

    #[test]
    fn a_room_that_fell_behind_gets_buffers_of_its_own() {
        // columns: the room's queued datagrams, whether the copy is cut from the block
        let rows = [(0, true), (QUEUED_FROM_BLOCKS, true), (QUEUED_FROM_BLOCKS + 1, false), (8192, false), (3, true)];
        let mut arena = DatagramArena::default();
        let mut end = arena.copy(&[0; 100]).as_ptr() as usize + 100;
        for (queued, from_block) in rows {
            let buf = arena.copy_for(&[7; 100], queued);
            assert_eq!(&buf[..], &[7; 100][..]);
            let at = buf.as_ptr() as usize;
            assert_eq!(at == end, from_block, "{queued} queued");
            if from_block {
                end = at + 100;
            }
        }
    }
}
