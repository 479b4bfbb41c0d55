//! Prometheus metrics of the media plane.

use crate::drop_reason::DropReason;
use prometheus::{Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry};

/// Media-plane counters, shared by the UDP reader and every room worker.
pub struct MediaMetrics {
    /// Datagrams read from the media port.
    pub udp_in_packets: IntCounter,
    /// Bytes read from the media port.
    pub udp_in_bytes: IntCounter,
    /// Datagrams written to the media port.
    pub udp_out_packets: IntCounter,
    /// Bytes written to the media port.
    pub udp_out_bytes: IntCounter,
    /// Send system calls on the media port (sendmmsg batches several datagrams).
    pub udp_send_calls: IntCounter,
    /// Receive system calls on the media port that returned datagrams (recvmmsg batches).
    pub udp_recv_calls: IntCounter,
    /// Receive system calls on the media port that failed.
    pub udp_recv_errors: IntCounter,
    /// Send messages that carried several datagrams (UDP GSO).
    pub udp_gso_messages: IntCounter,
    /// Datagrams sent by the send pool's helper threads (part of `udp_out_packets`).
    pub udp_out_by_helpers: IntCounter,
    /// ICE-TCP connections open on the TCP media port (authenticated or not yet).
    pub tcp_connections: IntGauge,
    /// ICE-TCP frames read.
    pub tcp_in_packets: IntCounter,
    /// ICE-TCP frames written.
    pub tcp_out_packets: IntCounter,
    /// ICE restarts of subscriber connections the clients asked for.
    pub ice_restarts: IntCounter,
    /// `active_speakers` reports sent (one per room and change, to every participant).
    pub speaker_reports: IntCounter,
    /// RTP packets received from publishers.
    pub rtp_in_packets: IntCounter,
    /// RTP packets forwarded to subscribers.
    pub rtp_forwarded: IntCounter,
    /// Packets resent to subscribers from the NACK cache.
    pub rtp_retransmitted: IntCounter,
    /// Sender reports sent to subscribers.
    pub sender_reports: IntCounter,
    drops: IntCounterVec,
    /// `drops` resolved per reason once, so counting a drop is an index, not a label lookup.
    drops_by_reason: [IntCounter; DropReason::ALL.len()],
    /// NACKs received from subscribers.
    pub nacks_received: IntCounter,
    /// PLIs sent to publishers.
    pub plis_sent: IntCounter,
    /// Simulcast layer switches.
    pub layer_switches: IntCounter,
    /// Participants removed because their signaling queue overflowed.
    pub signaling_overflows: IntCounter,
    /// Room workers that panicked (each room closed alone, the node kept serving).
    pub room_panics: IntCounter,
    /// Participants removed because a media connection never connected or failed.
    pub connection_failures: IntCounter,
    limits_exceeded: IntCounterVec,
    /// Tracks being published.
    pub published_tracks: IntGauge,
    /// Tracks being forwarded to subscribers.
    pub subscribed_tracks: IntGauge,
    /// Time from a forwarded packet's arrival (the kernel's receive stamp) until every copy
    /// was handed to the kernel, seconds.
    pub forward_delay: Histogram,
    /// Time datagrams waited in the media socket's kernel receive buffer, seconds.
    pub udp_receive_queue: Histogram,
    /// Live rooms by media thread (`--media-threads`; one series, thread "0", without).
    pub media_thread_rooms: IntGaugeVec,
    /// Transport-wide feedback messages from subscribers.
    pub bwe_feedback: IntCounter,
    /// Transport-wide feedback messages that did not parse into reports.
    pub bwe_feedback_malformed: IntCounter,
    /// Subscriber connections' estimates at each allocation, bits per second.
    pub bwe_estimate: Histogram,
    /// Downtracks paused for bandwidth.
    pub bwe_paused: IntCounter,
    /// Probe clusters sent to subscribers.
    pub bwe_probes: IntCounter,
    /// Video packets of VP8 temporal layers kept off a subscriber by its allocation.
    pub bwe_temporal_drops: IntCounter,
    /// Padding bytes sent to subscribers for probing.
    pub bwe_padding_bytes: IntCounter,
    /// Time paced packets waited before leaving, seconds.
    pub bwe_pacer_delay: Histogram,
    /// Dynacast messages telling a publisher which layers to encode.
    pub dynacast_updates: IntCounter,
}

impl MediaMetrics {
    /// Creates the media metrics and registers them on `registry`.
    pub fn new(registry: &Registry) -> Self {
        let c = |name: &str, help: &str| IntCounter::new(name, help).expect("valid metric");
        let g = |name: &str, help: &str| IntGauge::new(name, help).expect("valid metric");
        let drops =
            IntCounterVec::new(Opts::new("sfu_dropped_packets_total", "Packets dropped, by reason"), &["reason"])
                .expect("valid metric");
        let m = MediaMetrics {
            udp_in_packets: c("sfu_udp_in_packets_total", "Datagrams read from the media port"),
            udp_in_bytes: c("sfu_udp_in_bytes_total", "Bytes read from the media port"),
            udp_out_packets: c("sfu_udp_out_packets_total", "Datagrams sent on the media port"),
            udp_out_bytes: c("sfu_udp_out_bytes_total", "Bytes sent on the media port"),
            udp_send_calls: c("sfu_udp_send_calls_total", "Send system calls on the media port"),
            tcp_connections: g("sfu_tcp_connections", "ICE-TCP connections open on the TCP media port"),
            tcp_in_packets: c("sfu_tcp_in_packets_total", "ICE-TCP frames (datagrams) read"),
            tcp_out_packets: c("sfu_tcp_out_packets_total", "ICE-TCP frames (datagrams) written"),
            speaker_reports: c(
                "sfu_active_speaker_reports_total",
                "active_speakers reports (a room's speakers or dominant speaker changed), each sent to every participant",
            ),
            ice_restarts: c(
                "sfu_ice_restarts_total",
                "ICE restarts of subscriber connections the clients asked for (ice_restart: a network change)",
            ),
            udp_recv_calls: c(
                "sfu_udp_recv_calls_total",
                "Receive system calls on the media port that returned datagrams (several per call when queued)",
            ),
            udp_recv_errors: c(
                "sfu_udp_recv_errors_total",
                "Receive system calls on the media port that failed (a socket that keeps failing is retried at most every 100 ms)",
            ),
            udp_gso_messages: c(
                "sfu_udp_gso_messages_total",
                "Send messages carrying several datagrams to one destination (UDP GSO)",
            ),
            udp_out_by_helpers: c(
                "sfu_udp_out_helper_packets_total",
                "Datagrams of large flushes sent by the send pool's helper threads (part of sfu_udp_out_packets_total)",
            ),
            rtp_in_packets: c("sfu_rtp_in_packets_total", "RTP packets received from publishers"),
            rtp_forwarded: c("sfu_rtp_forwarded_packets_total", "RTP packets forwarded to subscribers"),
            rtp_retransmitted: c("sfu_rtp_retransmitted_packets_total", "Packets resent to subscribers after a NACK"),
            sender_reports: c("sfu_rtcp_sender_reports_total", "Sender reports sent to subscribers"),
            drops_by_reason: DropReason::ALL.map(|r| drops.with_label_values(&[r.label()])),
            drops,
            nacks_received: c("sfu_nacks_received_total", "NACK feedback messages from subscribers"),
            plis_sent: c("sfu_plis_sent_total", "Keyframe requests sent to publishers"),
            layer_switches: c("sfu_layer_switches_total", "Simulcast layer switches"),
            signaling_overflows: c(
                "sfu_signaling_overflows_total",
                "Participants removed because their signaling queue overflowed (their session closed)",
            ),
            room_panics: c(
                "sfu_room_panics_total",
                "Room workers that panicked: the room's participants were told (error internal) and closed, other rooms went on",
            ),
            connection_failures: c(
                "sfu_connection_failures_total",
                "Participants removed because a media connection did not connect within the deadline or failed",
            ),
            limits_exceeded: IntCounterVec::new(
                Opts::new(
                    "sfu_limits_exceeded_total",
                    "Requests over a per-participant limit, refused (error limit_exceeded), by limit",
                ),
                &["limit"],
            )
            .expect("valid metric"),
            published_tracks: g("sfu_published_tracks", "Tracks being published"),
            subscribed_tracks: g("sfu_subscribed_tracks", "Tracks forwarded to subscribers"),
            forward_delay: forward_delay(),
            udp_receive_queue: receive_queue(),
            media_thread_rooms: IntGaugeVec::new(
                Opts::new(
                    "sfu_media_thread_rooms",
                    "Live rooms by media thread (each thread reads its own media port and runs its rooms)",
                ),
                &["thread"],
            )
            .expect("valid metric"),
            bwe_feedback: c(
                "sfu_bwe_feedback_total",
                "Transport-wide congestion control feedback messages from subscribers",
            ),
            bwe_feedback_malformed: c(
                "sfu_bwe_feedback_malformed_total",
                "Transport-wide feedback messages whose statuses and deltas disagree (ignored)",
            ),
            bwe_estimate: Histogram::with_opts(
                HistogramOpts::new(
                    "sfu_bwe_estimate_bps",
                    "Subscriber connections' bandwidth estimates, observed at each allocation, bits per second",
                )
                .buckets(vec![100e3, 250e3, 500e3, 1e6, 1.5e6, 2e6, 3e6, 5e6, 8e6, 12e6, 20e6]),
            )
            .expect("valid metric"),
            bwe_paused: c(
                "sfu_bwe_paused_tracks_total",
                "Video downtracks paused because not even their lowest layer fit the subscriber's estimate",
            ),
            bwe_probes: c("sfu_bwe_probes_total", "Probe clusters sent to subscribers to find headroom"),
            bwe_temporal_drops: c(
                "sfu_bwe_temporal_drops_total",
                "Video packets of VP8 temporal layers kept off subscribers by their bandwidth allocation",
            ),
            bwe_padding_bytes: c("sfu_bwe_padding_bytes_total", "Padding bytes sent to subscribers while probing"),
            bwe_pacer_delay: Histogram::with_opts(
                HistogramOpts::new(
                    "sfu_bwe_pacer_delay_seconds",
                    "Time packets to a subscriber waited in its connection's pacer (only packets that had to wait)",
                )
                .buckets(vec![0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5]),
            )
            .expect("valid metric"),
            dynacast_updates: c(
                "sfu_dynacast_updates_total",
                "publish_layers messages: a publisher told which simulcast layers subscribers need (the others stop)",
            ),
        };
        let all: Vec<Box<dyn prometheus::core::Collector>> = vec![
            Box::new(m.udp_in_packets.clone()),
            Box::new(m.udp_in_bytes.clone()),
            Box::new(m.udp_out_packets.clone()),
            Box::new(m.udp_out_bytes.clone()),
            Box::new(m.udp_send_calls.clone()),
            Box::new(m.udp_recv_calls.clone()),
            Box::new(m.udp_recv_errors.clone()),
            Box::new(m.udp_gso_messages.clone()),
            Box::new(m.udp_out_by_helpers.clone()),
            Box::new(m.tcp_connections.clone()),
            Box::new(m.tcp_in_packets.clone()),
            Box::new(m.tcp_out_packets.clone()),
            Box::new(m.ice_restarts.clone()),
            Box::new(m.speaker_reports.clone()),
            Box::new(m.rtp_in_packets.clone()),
            Box::new(m.rtp_forwarded.clone()),
            Box::new(m.rtp_retransmitted.clone()),
            Box::new(m.sender_reports.clone()),
            Box::new(m.drops.clone()),
            Box::new(m.nacks_received.clone()),
            Box::new(m.plis_sent.clone()),
            Box::new(m.layer_switches.clone()),
            Box::new(m.signaling_overflows.clone()),
            Box::new(m.room_panics.clone()),
            Box::new(m.connection_failures.clone()),
            Box::new(m.limits_exceeded.clone()),
            Box::new(m.published_tracks.clone()),
            Box::new(m.subscribed_tracks.clone()),
            Box::new(m.forward_delay.clone()),
            Box::new(m.udp_receive_queue.clone()),
            Box::new(m.media_thread_rooms.clone()),
            Box::new(m.bwe_feedback.clone()),
            Box::new(m.bwe_feedback_malformed.clone()),
            Box::new(m.bwe_estimate.clone()),
            Box::new(m.bwe_paused.clone()),
            Box::new(m.bwe_probes.clone()),
            Box::new(m.bwe_temporal_drops.clone()),
            Box::new(m.bwe_padding_bytes.clone()),
            Box::new(m.bwe_pacer_delay.clone()),
            Box::new(m.dynacast_updates.clone()),
        ];
        // process-wide: fed by the tracing layer in `telemetry`
        registry
            .register(Box::new(crate::telemetry::RTC_REJECTED.clone()))
            .expect("metric registered once per registry");
        for collector in all {
            registry.register(collector).expect("metric registered once");
        }
        m
    }

    /// Counts a dropped packet.
    pub fn count_drop(&self, reason: DropReason) {
        self.drops_by_reason[reason.index()].inc();
    }

    /// Counts `n` dropped packets.
    pub fn count_drop_n(&self, reason: DropReason, n: u64) {
        self.drops_by_reason[reason.index()].inc_by(n);
    }

    /// Counts a request over a per-participant limit.
    pub fn limit_exceeded(&self, limit: Limit) {
        self.limits_exceeded.with_label_values(&[limit.label()]).inc();
    }

    /// Requests refused so far over `limit`.
    pub fn limits_exceeded(&self, limit: Limit) -> u64 {
        self.limits_exceeded.with_label_values(&[limit.label()]).get()
    }

    /// Dropped packets so far for `reason`.
    pub fn dropped(&self, reason: DropReason) -> u64 {
        self.drops_by_reason[reason.index()].get()
    }
}

/// `sfu_forward_delay_seconds`.
fn forward_delay() -> Histogram {
    Histogram::with_opts(
        HistogramOpts::new(
            "sfu_forward_delay_seconds",
            "Time from a forwarded packet's arrival at the media socket (the kernel's receive timestamp) until every copy of it was handed to the kernel",
        )
        .buckets(vec![0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0015, 0.002, 0.003, 0.005, 0.01, 0.02, 0.05, 0.1]),
    )
    .expect("valid metric")
}

/// `sfu_udp_receive_queue_seconds`.
fn receive_queue() -> Histogram {
    Histogram::with_opts(
        HistogramOpts::new(
            "sfu_udp_receive_queue_seconds",
            "Time datagrams waited in the media socket's kernel receive buffer before the server read them (kernel receive timestamps): growth means the reader falls behind",
        )
        .buckets(vec![0.00001, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25]),
    )
    .expect("valid metric")
}

/// A per-participant limit of the media plane.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// Media sections in one offer.
    MediaSections,
    /// Published tracks.
    Tracks,
    /// Trickled candidates on one connection.
    Candidates,
}

impl Limit {
    /// The `limit` label.
    pub fn label(self) -> &'static str {
        match self {
            Limit::MediaSections => "media_sections",
            Limit::Tracks => "tracks",
            Limit::Candidates => "candidates",
        }
    }
}
