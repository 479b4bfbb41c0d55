//! Active speakers: the room's detector (`forward::speaker`) fed by publishers' audio levels
//! (`media_path.rs`), reported to every participant on change (`active_speakers`).

use super::core::RoomCore;
use signaling::protocol::{ServerMessage, SpeakerLevel};
use std::time::Instant;

impl RoomCore {
    /// Tells everyone who speaks when that changed (at most a few times a second).
    pub(super) fn report_speakers(&mut self, now: Instant) {
        let Some(report) = self.speakers.poll(now) else { return };
        let msg = ServerMessage::ActiveSpeakers {
            speakers: report
                .speakers
                .into_iter()
                .map(|(participant, level)| SpeakerLevel { participant, level })
                .collect(),
            dominant: report.dominant,
        };
        self.ctx.metrics.speaker_reports.inc();
        for p in &self.participants {
            p.send(msg.clone());
        }
    }
}
