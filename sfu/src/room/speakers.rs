//! Active speakers: the room's detector (`forward::speaker`) fed by publishers' audio levels
//! (`media_path.rs`), reported to every participant on change (`active_speakers`), and the
//! last report to each newcomer.

use super::core::RoomCore;
use crate::forward::speaker::Report;
use signaling::protocol::{ServerMessage, SpeakerLevel};
use std::time::Instant;

impl RoomCore {
    /// Tells everyone who speaks when that changed (at most a few times a second).
    pub(super) fn report_speakers(&mut self, now: Instant) {
        let Some(report) = self.speakers.poll(now) else { return };
        let msg = message(&report);
        self.ctx.metrics.speaker_reports.inc();
        for p in &self.participants {
            p.send(msg.clone());
        }
    }

    /// What a participant that just joined is told about the speakers (the last report), so
    /// its page marks the floor before the next change.
    pub(super) fn speakers_for_newcomer(&self) -> Option<ServerMessage> {
        self.speakers.last_report().map(message)
    }
}

fn message(report: &Report<String>) -> ServerMessage {
    ServerMessage::ActiveSpeakers {
        speakers: report
            .speakers
            .iter()
            .map(|(participant, level)| SpeakerLevel { participant: participant.clone(), level: *level })
            .collect(),
        dominant: report.dominant.clone(),
    }
}
