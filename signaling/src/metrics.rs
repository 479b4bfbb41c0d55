//! Prometheus metrics of the control plane; the media plane registers its own on the same
//! registry.

use prometheus::{IntCounterVec, IntGauge, Opts, Registry};

/// Control-plane metrics.
pub struct Metrics {
    /// Registry served at `/metrics`.
    pub registry: Registry,
    bad_messages: IntCounterVec,
    /// Rooms on this node.
    pub rooms: IntGauge,
    /// Participants on this node.
    pub participants: IntGauge,
    /// 1 while draining.
    pub draining: IntGauge,
    /// Seconds until the drain deadline (0 while serving or once passed).
    pub drain_remaining: IntGauge,
    /// Open WHIP and WHEP sessions, by kind.
    pub wish_sessions: prometheus::IntGaugeVec,
    auth_failures: IntCounterVec,
    session_timeouts: IntCounterVec,
    resumes: prometheus::IntCounter,
}

impl Metrics {
    /// Creates and registers the control-plane metrics.
    pub fn new() -> Self {
        let registry = Registry::new();
        let bad_messages = IntCounterVec::new(
            Opts::new("sfu_signaling_bad_messages_total", "Rejected WebSocket messages by reason"),
            &["reason"],
        )
        .expect("valid metric");
        let rooms = IntGauge::new("sfu_rooms", "Rooms on this node").expect("valid metric");
        let participants = IntGauge::new("sfu_participants", "Participants on this node").expect("valid metric");
        let draining = IntGauge::new("sfu_node_draining", "1 while the node is draining").expect("valid metric");
        let drain_remaining = IntGauge::new(
            "sfu_node_drain_remaining_seconds",
            "Seconds until the drain deadline evacuates the remaining participants (0 when not draining)",
        )
        .expect("valid metric");
        let wish_sessions = prometheus::IntGaugeVec::new(
            Opts::new("sfu_wish_sessions", "Open WHIP publisher and WHEP player sessions, by kind (whip, whep)"),
            &["kind"],
        )
        .expect("valid metric");
        let auth_failures = IntCounterVec::new(
            Opts::new("sfu_auth_failures_total", "Refused tokens by surface (ws, api) and reason"),
            &["surface", "reason"],
        )
        .expect("valid metric");
        let session_timeouts = IntCounterVec::new(
            Opts::new(
                "sfu_signaling_timeouts_total",
                "WebSocket sessions closed by a deadline: join (no join in time), idle (no frame, not even a pong, in time), send (the client did not take a message in time)",
            ),
            &["deadline"],
        )
        .expect("valid metric");
        let resumes = prometheus::IntCounter::new(
            "sfu_signaling_resumes_total",
            "Sessions taken back with `resume` after their socket dropped (failed ones: sfu_signaling_bad_messages_total{reason=\"resume_failed\"})",
        )
        .expect("valid metric");
        for c in [
            Box::new(bad_messages.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(wish_sessions.clone()),
            Box::new(resumes.clone()),
            Box::new(session_timeouts.clone()),
            Box::new(rooms.clone()),
            Box::new(participants.clone()),
            Box::new(draining.clone()),
            Box::new(drain_remaining.clone()),
            Box::new(auth_failures.clone()),
        ] {
            registry.register(c).expect("metric registered once");
        }
        Metrics {
            registry,
            bad_messages,
            rooms,
            participants,
            draining,
            drain_remaining,
            wish_sessions,
            auth_failures,
            session_timeouts,
            resumes,
        }
    }

    /// Counts a session taken back by `resume`.
    pub fn session_resumed(&self) {
        self.resumes.inc();
    }

    /// Counts a session closed by one of its deadlines (`join`, `idle`, `send`).
    pub fn session_timeout(&self, deadline: &str) {
        self.session_timeouts.with_label_values(&[deadline]).inc();
    }

    /// Counts a refused token.
    pub fn auth_failure(&self, surface: &str, reason: &str) {
        self.auth_failures.with_label_values(&[surface, reason]).inc();
    }

    /// Counts a rejected message.
    pub fn bad_message(&self, reason: &str) {
        self.bad_messages.with_label_values(&[reason]).inc();
    }

    /// Text exposition of every registered metric.
    pub fn render(&self) -> String {
        let mut buf = String::new();
        prometheus::TextEncoder::new()
            .encode_utf8(&self.registry.gather(), &mut buf)
            .expect("text encoding cannot fail");
        buf
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
