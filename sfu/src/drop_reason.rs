//! Why the media plane dropped a packet: one variant per `reason` label of
//! `sfu_dropped_packets_total`. A dropped packet is not an error; it is counted here.

/// Why a packet was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DropReason {
    // input from the network
    /// STUN for a ufrag nobody registered.
    UnknownUfrag,
    /// Not STUN, from an address no STUN request came from.
    UnknownSource,
    /// A STUN request the demux cannot route (no readable USERNAME).
    BadStun,
    /// A STUN request from a new address without a MESSAGE-INTEGRITY made with the password
    /// of the connection it names: its address is not learned.
    StunUnauthenticated,
    /// A STUN request naming one connection from an address another connection was learned at.
    AddressTaken,
    /// A STUN request from yet another address of a connection that has as many as it may.
    TooManyAddresses,
    /// Larger than any media datagram.
    Oversized,
    /// A datagram of zero bytes.
    Empty,
    /// Refused by the peer's WebRTC stack (garbage, failed SRTP authentication, replay).
    RejectedByPeer,
    /// For a connection that is gone.
    PeerGone,
    /// RTP of a track the room does not know.
    UnknownTrack,
    /// A VP8 payload that cannot be parsed or rewritten.
    BadVp8,
    /// Padding only (bandwidth probes): never forwarded.
    PaddingOnly,
    /// A sequence number that arrived before on its layer (forwarding it again would reuse
    /// the AES-GCM nonce of the first copy with other content).
    Duplicate,
    /// Further behind its layer's newest packet than the layer remembers.
    TooLate,
    // overload
    /// The kernel's receive buffer of the media port was full.
    UdpReceiveBufferFull,
    /// The room's datagram queue was full.
    RoomQueueFull,
    /// Media that waited too long in the server to be worth forwarding.
    Stale,
    /// The kernel's send buffer was full.
    SendWouldBlock,
    /// The send system call failed.
    SendError,
    /// An ICE-TCP connection's send queue was full (the client reads slower than it is sent).
    TcpQueueFull,
    /// For an ICE-TCP connection that closed.
    TcpClosed,
    /// An ICE-TCP frame larger than any media datagram (the connection is closed).
    TcpFrameTooLarge,
    // retransmission
    /// The subscriber's retransmission allowance was spent.
    NackRateLimited,
    /// The asked-for packet is no longer cached.
    NackNotCached,
    /// Asked for longer after it was forwarded than a retransmission helps.
    NackTooOld,
    /// The asked-for sequence number maps to no packet of the current layer.
    NackUnmapped,
    // forwarding
    /// The munger refused the packet (out of order beyond its window, or before a switch).
    MungerRejected,
    /// The subscriber's connection negotiated no payload type for the codec.
    NotNegotiated,
    /// Protecting the copy failed.
    SrtpProtectFailed,
    /// For a room that closed.
    RoomClosed,
}

impl DropReason {
    /// Every reason, in label order of the metrics page.
    pub const ALL: [DropReason; 31] = [
        DropReason::UnknownUfrag,
        DropReason::UnknownSource,
        DropReason::BadStun,
        DropReason::StunUnauthenticated,
        DropReason::AddressTaken,
        DropReason::TooManyAddresses,
        DropReason::Oversized,
        DropReason::Empty,
        DropReason::RejectedByPeer,
        DropReason::PeerGone,
        DropReason::UnknownTrack,
        DropReason::BadVp8,
        DropReason::PaddingOnly,
        DropReason::Duplicate,
        DropReason::TooLate,
        DropReason::UdpReceiveBufferFull,
        DropReason::RoomQueueFull,
        DropReason::Stale,
        DropReason::SendWouldBlock,
        DropReason::SendError,
        DropReason::TcpQueueFull,
        DropReason::TcpClosed,
        DropReason::TcpFrameTooLarge,
        DropReason::NackRateLimited,
        DropReason::NackNotCached,
        DropReason::NackTooOld,
        DropReason::NackUnmapped,
        DropReason::MungerRejected,
        DropReason::NotNegotiated,
        DropReason::SrtpProtectFailed,
        DropReason::RoomClosed,
    ];

    /// The `reason` label.
    pub fn label(self) -> &'static str {
        match self {
            DropReason::UnknownUfrag => "unknown_ufrag",
            DropReason::UnknownSource => "unknown_source",
            DropReason::BadStun => "bad_stun",
            DropReason::StunUnauthenticated => "stun_unauthenticated",
            DropReason::AddressTaken => "address_taken",
            DropReason::TooManyAddresses => "too_many_addresses",
            DropReason::Oversized => "oversized",
            DropReason::Empty => "empty",
            DropReason::RejectedByPeer => "rejected_by_peer",
            DropReason::PeerGone => "peer_gone",
            DropReason::UnknownTrack => "unknown_track",
            DropReason::BadVp8 => "bad_vp8",
            DropReason::PaddingOnly => "padding_only",
            DropReason::Duplicate => "duplicate",
            DropReason::TooLate => "too_late",
            DropReason::UdpReceiveBufferFull => "udp_receive_buffer_full",
            DropReason::RoomQueueFull => "room_queue_full",
            DropReason::Stale => "stale",
            DropReason::SendWouldBlock => "send_would_block",
            DropReason::SendError => "send_error",
            DropReason::TcpQueueFull => "tcp_queue_full",
            DropReason::TcpClosed => "tcp_closed",
            DropReason::TcpFrameTooLarge => "tcp_frame_too_large",
            DropReason::NackRateLimited => "nack_rate_limited",
            DropReason::NackNotCached => "nack_not_cached",
            DropReason::NackTooOld => "nack_too_old",
            DropReason::NackUnmapped => "nack_unmapped",
            DropReason::MungerRejected => "munger_rejected",
            DropReason::NotNegotiated => "not_negotiated",
            DropReason::SrtpProtectFailed => "srtp_protect_failed",
            DropReason::RoomClosed => "room_closed",
        }
    }

    /// Position in [`DropReason::ALL`] (the metrics' counter of this reason).
    pub fn index(self) -> usize {
        self as usize
    }
}

impl std::fmt::Display for DropReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.label())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reason_is_listed_once_at_its_index_with_a_distinct_label() {
        let mut labels = std::collections::HashSet::new();
        for (i, r) in DropReason::ALL.iter().enumerate() {
            assert_eq!(r.index(), i, "{r:?}");
            assert!(labels.insert(r.label()), "label {} twice", r.label());
            assert!(
                r.label().chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'),
                "{}",
                r.label()
            );
        }
    }
}
