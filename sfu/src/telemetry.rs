//! Logging setup, and counting of packets the WebRTC stack rejects internally.
//!
//! `rtc` handles a datagram's failure (SRTP authentication or replay, malformed DTLS or STUN)
//! inside its pipeline: it logs `<Handler>.handle_read got error: ...` and returns `Ok`. So the
//! only place such a rejection is visible is that log event. [`RejectLayer`] counts those events
//! by stage into `sfu_rtc_rejected_packets_total`, whatever the log filter shows.

use prometheus::{IntCounterVec, Opts};
use std::fmt;
use std::sync::LazyLock;
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::Layer;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;

/// Where `rtc` logs per-datagram handler failures.
const RTC_HANDLER_TARGET: &str = "rtc::peer_connection::handler";

/// Packets rejected inside the WebRTC stack, by stage (process-wide).
pub static RTC_REJECTED: LazyLock<IntCounterVec> = LazyLock::new(|| {
    IntCounterVec::new(
        Opts::new(
            "sfu_rtc_rejected_packets_total",
            "Datagrams from known peers rejected inside the WebRTC stack (stage srtp: failed \
             authentication or replay), dropped",
        ),
        &["stage"],
    )
    .expect("valid metric")
});

/// Counts `rtc`'s handler read failures.
pub struct RejectLayer;

#[derive(Default)]
struct Message(String);

impl Visit for Message {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if field.name() == "message" {
            use fmt::Write;
            let _ = write!(self.0, "{value:?}");
        }
    }
}

/// The stage of a `<Handler>.handle_read got error` message, e.g. `srtp` for `SrtpHandler`.
pub fn rejected_stage(message: &str) -> Option<String> {
    let (handler, _) = message.split_once(".handle_read got error")?;
    let stage = handler.strip_suffix("Handler").unwrap_or(handler);
    (!stage.is_empty()).then(|| stage.to_ascii_lowercase())
}

impl<S: Subscriber> Layer<S> for RejectLayer {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let mut m = Message::default();
        event.record(&mut m);
        if let Some(stage) = rejected_stage(&m.0) {
            RTC_REJECTED.with_label_values(&[&stage]).inc();
        }
    }
}

/// The filter that routes exactly the events [`RejectLayer`] needs to it.
pub fn reject_filter() -> Targets {
    Targets::new().with_target(RTC_HANDLER_TARGET, Level::WARN)
}

/// Installs the global subscriber: formatted logs to stderr filtered by `filter`, plus the
/// reject counter (which sees `rtc`'s handler warnings even when the log hides them).
pub fn init(filter: &str) -> anyhow::Result<()> {
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_filter(tracing_subscriber::EnvFilter::try_new(filter)?);
    tracing_subscriber::registry().with(fmt).with(RejectLayer.with_filter(reject_filter())).try_init()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stages() {
        let rows: &[(&str, Option<&str>)] = &[
            ("SrtpHandler.handle_read got error: srtp: failed to verify auth tag", Some("srtp")),
            ("DtlsHandler.handle_read got error: bad record", Some("dtls")),
            ("IceHandler.handle_read got error: x", Some("ice")),
            ("SrtpHandler.handle_write got error: no context", None),
            ("something else", None),
            (".handle_read got error: x", None),
        ];
        for (msg, want) in rows {
            assert_eq!(rejected_stage(msg).as_deref(), *want, "{msg}");
        }
    }
}
