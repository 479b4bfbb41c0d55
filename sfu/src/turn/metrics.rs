//! What the embedded TURN server counts, for operators.

use prometheus::{IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry};

/// Prometheus handles of the TURN server.
#[derive(Clone)]
pub struct TurnMetrics {
    /// Allocations held now.
    pub allocations: IntGauge,
    /// Requests by method and result.
    pub requests: IntCounterVec,
    /// Packets relayed, by direction (to_peer, to_client).
    pub relayed_packets: IntCounterVec,
    /// Bytes relayed (payload), by direction.
    pub relayed_bytes: IntCounterVec,
    /// Datagrams and messages dropped, by reason.
    pub dropped: IntCounterVec,
    /// Open TCP and TLS connections, by transport.
    pub connections: IntGaugeVec,
    /// The per-packet counters, looked up once: packets and bytes to peers, then to clients.
    pub relayed: [(IntCounter, IntCounter); 2],
}

impl TurnMetrics {
    /// Handles registered in `registry` (once per registry).
    pub fn new(registry: &Registry) -> Self {
        let m = Self::unregistered();
        for c in [
            Box::new(m.allocations.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(m.requests.clone()),
            Box::new(m.relayed_packets.clone()),
            Box::new(m.relayed_bytes.clone()),
            Box::new(m.dropped.clone()),
            Box::new(m.connections.clone()),
        ] {
            registry.register(c).expect("TURN metrics registered once");
        }
        m
    }

    /// Handles that no registry exports (tests).
    pub fn unregistered() -> Self {
        let counters = |name: &str, help: &str, label: &str| {
            IntCounterVec::new(Opts::new(name, help), &[label]).expect("valid metric")
        };
        let relayed_packets = counters(
            "sfu_turn_relayed_packets_total",
            "Packets relayed by TURN, by direction (to_peer, to_client)",
            "direction",
        );
        let relayed_bytes =
            counters("sfu_turn_relayed_bytes_total", "Payload bytes relayed by TURN, by direction", "direction");
        let pair = |d: &str| (relayed_packets.with_label_values(&[d]), relayed_bytes.with_label_values(&[d]));
        let relayed = [pair("to_peer"), pair("to_client")];
        TurnMetrics {
            allocations: IntGauge::new("sfu_turn_allocations", "TURN allocations held by the embedded TURN server")
                .expect("valid metric"),
            requests: IntCounterVec::new(
                Opts::new("sfu_turn_requests_total", "TURN requests by method and result (ok or the error)"),
                &["method", "result"],
            )
            .expect("valid metric"),
            relayed_packets,
            relayed_bytes,
            dropped: counters("sfu_turn_dropped_total", "TURN datagrams and messages dropped, by reason", "reason"),
            connections: IntGaugeVec::new(
                Opts::new("sfu_turn_connections", "Open TURN connections over TCP and TLS"),
                &["transport"],
            )
            .expect("valid metric"),
            relayed,
        }
    }
}
