//! The end of a run: client outcomes summed over the measured window, the human summary
//! table, the final JSON line and the threshold checks.

use super::args::Common;
use super::scenario::Outcome;
use loadtest::{Histogram, TrackStats};
use serde_json::json;
use signaling::protocol::TrackKind;
use std::collections::BTreeMap;
use std::fmt::Write;

/// CPU time of the loadtest process itself.
#[derive(Debug, Clone, Copy, Default)]
pub struct CpuUse {
    /// CPU seconds over the whole run.
    pub total_s: f64,
    /// CPU seconds within the measured window.
    pub window_s: f64,
}

/// Totals of a run.
#[derive(Debug, Clone, Default)]
pub struct Summary {
    /// `conference` or `broadcast`.
    pub scenario: String,
    /// Clients in the plan.
    pub clients_planned: usize,
    /// Clients whose expected connections all came up.
    pub clients_connected: usize,
    /// Clients refused, failed, or not connected by the end.
    pub clients_failed: usize,
    /// Connected clients that lost a connection or their WebSocket later.
    pub clients_dropped: usize,
    /// Connected clients whose connection ICE reported disconnected at least once (it may
    /// have recovered: nothing was received on it for 5 s).
    pub clients_interrupted: usize,
    /// Clients in the plan that receive media.
    pub subscribers: usize,
    /// Subscribers that received every expected track during the window.
    pub subscribers_receiving: usize,
    /// Tracks received.
    pub tracks: usize,
    /// Video tracks received, and how many of them ended on the requested layer.
    pub video_tracks: usize,
    /// Video tracks whose newest packet came from the requested layer.
    pub video_tracks_on_layer: usize,
    /// Packets received in the window.
    pub packets_received: u64,
    /// Packets lost in the window.
    pub packets_lost: u64,
    /// End-to-end latency in the window, microseconds.
    pub latency: Histogram,
    /// Mean interarrival jitter of the video tracks, milliseconds.
    pub jitter_ms: f64,
    /// Layer switches in the window (the first layer of a track is not a switch).
    pub layer_switches: u64,
    /// Keyframes received (whole run), and the broken ones.
    pub keyframes: u64,
    /// Keyframes with an invalid header or size.
    pub bad_keyframes: u64,
    /// Unparseable payloads (whole run).
    pub malformed: u64,
    /// Packets the publishers sent (whole run).
    pub published_packets: u64,
    /// Length of the measured window, seconds.
    pub duration_s: f64,
    /// CPU of the loadtest process.
    pub cpu: CpuUse,
    /// Time to connect, milliseconds, over the connected clients.
    pub connect_ms: Histogram,
    /// Failure reasons and server error codes, with counts.
    pub errors: BTreeMap<String, usize>,
}

fn pct(part: f64, whole: f64) -> f64 {
    if whole > 0.0 { 100.0 * part / whole } else { 0.0 }
}

fn ms(us: Option<u64>) -> Option<f64> {
    us.map(|v| v as f64 / 1000.0)
}

/// What one track contributed to the window.
struct TrackWindow {
    packets: u64,
    lost: u64,
    latency: Histogram,
    switches: u64,
}

fn switches(t: &TrackStats) -> u64 {
    t.switches.iter().filter(|s| s.from.is_some()).count() as u64
}

fn window(end: &TrackStats, start: Option<&TrackStats>) -> TrackWindow {
    match start {
        Some(s) => TrackWindow {
            packets: end.packets.saturating_sub(s.packets),
            lost: end.lost.saturating_sub(s.lost),
            latency: end.latency.since(&s.latency),
            switches: switches(end).saturating_sub(switches(s)),
        },
        None => {
            TrackWindow { packets: end.packets, lost: end.lost, latency: end.latency.clone(), switches: switches(end) }
        }
    }
}

impl Summary {
    /// Sums `outcomes`; `layer` is the layer index subscribers asked for.
    pub fn new(scenario: &str, outcomes: &[Outcome], layer: u8, duration_s: f64, cpu: CpuUse) -> Summary {
        let mut s = Summary {
            scenario: scenario.to_owned(),
            clients_planned: outcomes.len(),
            duration_s,
            cpu,
            ..Default::default()
        };
        let mut jitter_sum = 0.0;
        for o in outcomes {
            let subscribes = o.spec.as_ref().is_some_and(|p| p.subscribes());
            s.subscribers += usize::from(subscribes);
            match o.connect_time {
                Some(t) => {
                    s.clients_connected += 1;
                    s.connect_ms.record(t.as_millis() as u64);
                    s.clients_dropped += usize::from(o.dropped);
                    s.clients_interrupted += usize::from(o.interruptions > 0);
                }
                None => s.clients_failed += 1,
            }
            if let Some(e) = &o.error {
                *s.errors.entry(e.clone()).or_default() += 1;
            }
            for code in &o.server_errors {
                *s.errors.entry(format!("server error: {code}")).or_default() += 1;
            }
            let Some(end) = &o.end else { continue };
            if let Some(p) = &end.publisher {
                s.published_packets += p.audio_packets + p.video_packets;
            }
            let expected = o.spec.as_ref().map_or(0, |p| p.expected_tracks);
            let mut receiving = 0;
            for t in &end.tracks {
                let start = o.window_start.as_ref().and_then(|w| w.track(&t.track));
                let w = window(t, start);
                s.tracks += 1;
                s.packets_received += w.packets;
                s.packets_lost += w.lost;
                s.latency.merge(&w.latency);
                s.layer_switches += w.switches;
                s.keyframes += t.keyframes;
                s.bad_keyframes += t.bad_keyframes;
                s.malformed += t.malformed;
                receiving += usize::from(w.packets > 0);
                if t.kind == TrackKind::Video {
                    s.video_tracks += 1;
                    s.video_tracks_on_layer += usize::from(t.layer == Some(layer));
                    jitter_sum += t.jitter_ms;
                }
            }
            s.subscribers_receiving += usize::from(subscribes && receiving >= expected);
        }
        if s.video_tracks > 0 {
            s.jitter_ms = jitter_sum / s.video_tracks as f64;
        }
        s
    }

    /// Loss over the window, percent of the packets sent to the clients.
    pub fn loss_pct(&self) -> f64 {
        pct(self.packets_lost as f64, (self.packets_received + self.packets_lost) as f64)
    }

    /// Connected clients, percent of the plan.
    pub fn connected_pct(&self) -> f64 {
        pct(self.clients_connected as f64, self.clients_planned as f64)
    }

    /// Packets received per second in the window.
    pub fn packets_per_s(&self) -> f64 {
        if self.duration_s > 0.0 { self.packets_received as f64 / self.duration_s } else { 0.0 }
    }

    /// Loadtest CPU microseconds per received packet in the window.
    pub fn cpu_us_per_packet(&self) -> Option<f64> {
        (self.packets_received > 0).then(|| self.cpu.window_s * 1e6 / self.packets_received as f64)
    }

    /// Receiving subscribers one fully busy core would carry at this rate (a linear
    /// extrapolation from the window's CPU use; trust it only near saturation).
    pub fn subscribers_per_core(&self) -> Option<f64> {
        let cores = self.cpu.window_s / self.duration_s.max(1e-9);
        (cores > 0.0 && self.subscribers_receiving > 0).then(|| self.subscribers_receiving as f64 / cores)
    }

    /// Threshold violations, one sentence each (empty: the run passed).
    pub fn check(&self, common: &Common) -> Vec<String> {
        let mut failed = Vec::new();
        if let Some(max) = common.max_loss_pct {
            if self.packets_received + self.packets_lost == 0 {
                // every client failed, or nothing was forwarded: no loss figure is not a pass
                failed.push("no media packets in the window for --max-loss-pct".into());
            } else if self.loss_pct() > max {
                failed.push(format!("loss {:.3}% > --max-loss-pct {max}", self.loss_pct()));
            }
        }
        if let Some(max) = common.max_p99_latency_ms {
            match ms(self.latency.quantile(0.99)) {
                Some(p99) if p99 > max => failed.push(format!("p99 latency {p99:.1} ms > --max-p99-latency-ms {max}")),
                Some(_) => {}
                None => failed.push("no latency samples for --max-p99-latency-ms".into()),
            }
        }
        if let Some(min) = common.min_connected_pct
            && self.connected_pct() < min
        {
            failed.push(format!("{:.1}% connected < --min-connected-pct {min}", self.connected_pct()));
        }
        failed
    }

    /// The final JSON line.
    pub fn json(&self) -> serde_json::Value {
        let round = |v: f64, digits: i32| (v * 10f64.powi(digits)).round() / 10f64.powi(digits);
        let opt = |v: Option<f64>, d: i32| v.map(|v| round(v, d));
        json!({
            "scenario": self.scenario,
            "clients_planned": self.clients_planned,
            "clients_connected": self.clients_connected,
            "clients_failed": self.clients_failed,
            "clients_dropped": self.clients_dropped,
            "clients_interrupted": self.clients_interrupted,
            "subscribers": self.subscribers,
            "subscribers_receiving": self.subscribers_receiving,
            "tracks": self.tracks,
            "video_tracks_on_layer": self.video_tracks_on_layer,
            "video_tracks": self.video_tracks,
            "packets_received": self.packets_received,
            "packets_lost": self.packets_lost,
            "loss_pct": round(self.loss_pct(), 4),
            "packets_per_s": round(self.packets_per_s(), 1),
            "latency_p50_ms": opt(ms(self.latency.quantile(0.5)), 3),
            "latency_p99_ms": opt(ms(self.latency.quantile(0.99)), 3),
            "latency_max_ms": opt(ms((self.latency.count > 0).then_some(self.latency.max)), 3),
            "jitter_ms": round(self.jitter_ms, 3),
            "layer_switches": self.layer_switches,
            "keyframes": self.keyframes,
            "bad_keyframes": self.bad_keyframes,
            "malformed": self.malformed,
            "published_packets": self.published_packets,
            "connect_p50_ms": self.connect_ms.quantile(0.5),
            "connect_max_ms": (self.connect_ms.count > 0).then_some(self.connect_ms.max),
            "duration_s": round(self.duration_s, 3),
            "cpu_s": round(self.cpu.total_s, 3),
            "cpu_window_s": round(self.cpu.window_s, 3),
            "cpu_window_pct": round(pct(self.cpu.window_s, self.duration_s), 1),
            "cpu_us_per_packet": opt(self.cpu_us_per_packet(), 2),
            "subscribers_per_core": opt(self.subscribers_per_core(), 0),
            "errors": self.errors,
        })
    }

    /// The human summary table.
    pub fn table(&self) -> String {
        let na = || "-".to_owned();
        let f_ms = |v: Option<u64>| ms(v).map_or_else(na, |v| format!("{v:.1} ms"));
        let rows: Vec<(&str, String)> = vec![
            ("scenario", self.scenario.clone()),
            (
                "clients",
                format!(
                    "{} planned, {} connected ({:.1}%), {} failed, {} dropped, {} interrupted",
                    self.clients_planned,
                    self.clients_connected,
                    self.connected_pct(),
                    self.clients_failed,
                    self.clients_dropped,
                    self.clients_interrupted
                ),
            ),
            ("subscribers", format!("{} receiving every track / {}", self.subscribers_receiving, self.subscribers)),
            ("video tracks", format!("{} on the requested layer / {}", self.video_tracks_on_layer, self.video_tracks)),
            ("window", format!("{:.1} s", self.duration_s)),
            (
                "packets",
                format!(
                    "{} received ({:.0}/s), {} lost ({:.3}%)",
                    self.packets_received,
                    self.packets_per_s(),
                    self.packets_lost,
                    self.loss_pct()
                ),
            ),
            (
                "latency",
                format!(
                    "p50 {}, p99 {}, max {}",
                    f_ms(self.latency.quantile(0.5)),
                    f_ms(self.latency.quantile(0.99)),
                    f_ms((self.latency.count > 0).then_some(self.latency.max))
                ),
            ),
            ("jitter", format!("{:.2} ms (mean over video tracks)", self.jitter_ms)),
            ("layer switches", self.layer_switches.to_string()),
            (
                "keyframes",
                format!("{} ({} bad), {} malformed packets", self.keyframes, self.bad_keyframes, self.malformed),
            ),
            ("published", format!("{} packets", self.published_packets)),
            (
                "connect time",
                format!(
                    "p50 {}, max {}",
                    self.connect_ms.quantile(0.5).map_or_else(na, |v| format!("{v} ms")),
                    if self.connect_ms.count > 0 { format!("{} ms", self.connect_ms.max) } else { na() }
                ),
            ),
            (
                "loadtest cpu",
                format!(
                    "{:.2} s in window ({:.0}% of a core), {:.2} s total, {} us/packet, ~{} subscribers/core",
                    self.cpu.window_s,
                    pct(self.cpu.window_s, self.duration_s),
                    self.cpu.total_s,
                    self.cpu_us_per_packet().map_or_else(na, |v| format!("{v:.1}")),
                    self.subscribers_per_core().map_or_else(na, |v| format!("{v:.0}"))
                ),
            ),
        ];
        let mut out = String::new();
        for (k, v) in rows {
            let _ = writeln!(out, "  {k:<15} {v}");
        }
        for (e, n) in &self.errors {
            let _ = writeln!(out, "  {:<15} {n} x {e}", "error");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::args::Cli;
    use crate::cli::scenario::JoinSpec;
    use clap::Parser;
    use loadtest::ClientStats;
    use std::time::Duration;

    fn track(kind: TrackKind, packets: u64, lost: u64, latency_us: &[u64]) -> TrackStats {
        let mut t = TrackStats::new(if kind == TrackKind::Video { "TR_v" } else { "TR_a" }, "PA_p", kind, "0");
        t.packets = packets;
        t.lost = lost;
        t.layer = Some(0);
        for v in latency_us {
            t.latency.record(*v);
        }
        t
    }

    fn viewer(start: Option<ClientStats>, end: ClientStats) -> Outcome {
        Outcome {
            spec: Some(JoinSpec { room: "r".into(), name: "v".into(), publish: false, expected_tracks: 2 }),
            connect_time: Some(Duration::from_millis(40)),
            window_start: start,
            end: Some(end),
            ..Default::default()
        }
    }

    #[test]
    fn sums_the_window_and_checks_thresholds() {
        let start = ClientStats {
            publisher: None,
            tracks: vec![track(TrackKind::Video, 100, 5, &[50_000; 10])],
            ..Default::default()
        };
        let mut v = track(TrackKind::Video, 1100, 6, &[50_000; 10]);
        for _ in 0..1000 {
            v.latency.record(2000);
        }
        let end = ClientStats {
            publisher: None,
            tracks: vec![v, track(TrackKind::Audio, 500, 0, &[1000; 500])],
            ..Default::default()
        };
        let failed = Outcome { error: Some("rejected: room_full".into()), ..Default::default() };
        let s = Summary::new(
            "broadcast",
            &[viewer(Some(start), end), failed],
            0,
            10.0,
            CpuUse { total_s: 3.0, window_s: 1.0 },
        );
        assert_eq!((s.clients_connected, s.clients_failed, s.subscribers_receiving), (1, 1, 1));
        // window: 1000 video + 500 audio (audio joined after the window start: all of it)
        assert_eq!((s.packets_received, s.packets_lost), (1500, 1));
        assert!((s.loss_pct() - 100.0 / 1501.0).abs() < 1e-9);
        assert_eq!(s.latency.count, 1500);
        assert!(s.latency.quantile(0.99).unwrap() <= 2304);
        assert_eq!(s.errors.get("rejected: room_full"), Some(&1));
        assert_eq!(s.video_tracks_on_layer, 1);
        assert!((s.cpu_us_per_packet().unwrap() - 1e6 / 1500.0).abs() < 1e-6);
        assert!((s.subscribers_per_core().unwrap() - 10.0).abs() < 1e-9);
        let j = s.json();
        for key in [
            "clients_connected",
            "clients_failed",
            "packets_received",
            "packets_lost",
            "loss_pct",
            "latency_p50_ms",
            "latency_p99_ms",
            "jitter_ms",
            "layer_switches",
            "duration_s",
            "cpu_s",
        ] {
            assert!(j.get(key).is_some(), "{key}");
        }
        assert!(s.table().contains("room_full"));

        let cli = Cli::parse_from([
            "loadtest",
            "broadcast",
            "--max-loss-pct",
            "0.01",
            "--min-connected-pct",
            "90",
            "--max-p99-latency-ms",
            "10",
        ]);
        assert_eq!(s.check(cli.scenario.common()).len(), 2, "loss and connected fail, latency passes");
        let cli = Cli::parse_from(["loadtest", "broadcast", "--max-loss-pct", "1", "--max-p99-latency-ms", "1"]);
        assert_eq!(s.check(cli.scenario.common()).len(), 1);

        // a run in which every client failed has no loss figure: it fails a loss threshold
        let none = Summary::new(
            "broadcast",
            &[Outcome { error: Some("connection failed".into()), ..Default::default() }],
            0,
            10.0,
            CpuUse::default(),
        );
        let cli = Cli::parse_from(["loadtest", "broadcast", "--max-loss-pct", "0.5"]);
        let failed = none.check(cli.scenario.common());
        assert_eq!(failed.len(), 1, "{failed:?}");
        assert!(failed[0].contains("no media packets"), "{failed:?}");
    }
}
