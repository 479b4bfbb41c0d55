//! Operator commands of the room worker (from the REST API): describe the participants,
//! remove one, mute a published track, close the room.

use super::core::RoomCore;
use super::track::Allocated;
use crate::forward::selector::Layer;
use crate::forward::temporal::Tid;
use signaling::protocol::{ServerMessage, TrackKind};
use signaling::room::{DownlinkDetail, EventSender, ParticipantDetail, RoomCommand, SubscriptionDetail, TrackDetail};
use std::collections::HashSet;
use std::time::Instant;

impl RoomCore {
    /// Handles [`RoomCommand::Participants`], [`RoomCommand::Remove`],
    /// [`RoomCommand::MuteTrack`] and [`RoomCommand::Close`].
    pub(super) fn on_admin_command(&mut self, cmd: RoomCommand, now: Instant) {
        match cmd {
            RoomCommand::Participants { reply } => {
                let _ = reply.send(self.participant_details());
            }
            RoomCommand::Remove { participant, reason, reply } => {
                let _ = reply.send(self.remove_participant(&participant, reason, now));
            }
            RoomCommand::MuteTrack { participant, track, muted, reply } => {
                let _ = reply.send(self.set_track_muted(&participant, &track, muted, now));
            }
            RoomCommand::Close { reason } => self.close_room(reason, now),
            other => tracing::error!(room = %self.name, command = ?other, "not an operator command"),
        }
    }

    /// A join, unless the room was deleted; the newcomer learns which tracks are muted.
    pub(super) fn admit(
        &mut self,
        participant: String,
        name: String,
        events: EventSender,
        subscribe: bool,
        now: Instant,
    ) {
        if let Some(reason) = &self.admin.closed {
            let _ = events.try_send(ServerMessage::Removed { reason: reason.clone() });
            return;
        }
        let id = participant.clone();
        self.join(participant, name, events, subscribe, now);
        let Some(idx) = self.participant_index(&id) else { return };
        for t in self.tracks.iter().filter(|t| self.admin.is_muted(&t.id)) {
            self.participants[idx].send(ServerMessage::TrackMuted {
                participant: t.publisher.clone(),
                track: t.id.clone(),
                muted: true,
            });
        }
    }

    fn track_detail(&self, idx: usize) -> TrackDetail {
        let t = &self.tracks[idx];
        TrackDetail { id: t.id.clone(), kind: t.kind, layers: t.rids.clone(), muted: self.admin.is_muted(&t.id) }
    }

    fn participant_details(&self) -> Vec<ParticipantDetail> {
        self.participants
            .iter()
            .map(|p| ParticipantDetail {
                id: p.id.clone(),
                identity: None,
                name: p.name.clone(),
                tracks: (0..self.tracks.len())
                    .filter(|&i| self.tracks[i].publisher == p.id)
                    .map(|i| self.track_detail(i))
                    .collect(),
                downlink: self.downlink_detail(p),
                subscriptions: p.downtracks.iter().map(|d| self.subscription_detail(d)).collect(),
            })
            .collect()
    }

    fn downlink_detail(&self, p: &super::participant::Participant) -> Option<DownlinkDetail> {
        let egress = self.peers.get(&p.subscriber)?.egress.as_ref()?;
        let bwe = &egress.cc.bwe;
        (bwe.feedbacks > 0).then(|| DownlinkDetail {
            estimate_bps: bwe.estimate().as_bps(),
            acked_bps: bwe.acked().map(|a| a.as_bps()),
            rtt_ms: bwe.rtt().map(|r| r.as_millis() as u64),
            loss_permille: (bwe.loss_ratio() * 1000.0).round() as u32,
            probing: bwe.probing(),
            pacer_queue_bytes: egress.pacer.queued_bytes() as u64,
        })
    }

    fn subscription_detail(&self, d: &super::track::DownTrack) -> SubscriptionDetail {
        let track = self.tracks.iter().find(|t| t.key == d.track_key);
        let rid = |l: Layer| track.map_or_else(|| l.rid().to_string(), |t| t.rid_name(l));
        let (bandwidth_cap, paused_for_bandwidth) = match d.allocated {
            Allocated::Unlimited => (None, false),
            Allocated::UpTo(l, _) => (Some(rid(l)), false),
            Allocated::Paused => (None, true),
        };
        let temporal = d.temporal.current();
        SubscriptionDetail {
            track: d.track.clone(),
            layer: d.selector.current().map(rid),
            bandwidth_cap,
            paused_for_bandwidth,
            temporal_layer: (temporal < Tid::TOP).then_some(temporal.index() as u8),
        }
    }

    fn remove_participant(&mut self, id: &str, reason: String, now: Instant) -> bool {
        let Some(idx) = self.participant_index(id) else { return false };
        self.participants[idx].send(ServerMessage::Removed { reason: reason.clone() });
        self.leave(id, now);
        tracing::info!(room = %self.name, participant = %id, %reason, "participant removed by an operator");
        true
    }

    fn set_track_muted(&mut self, publisher: &str, track: &str, muted: bool, now: Instant) -> Option<TrackDetail> {
        let idx = self.tracks.iter().position(|t| t.id == track && t.publisher == publisher)?;
        let live: HashSet<&str> = self.tracks.iter().map(|t| t.id.as_str()).collect();
        self.admin.muted.retain(|id| live.contains(id.as_str()));
        let changed = if muted { self.admin.muted.insert(track.to_string()) } else { self.admin.muted.remove(track) };
        if changed {
            tracing::info!(room = %self.name, participant = %publisher, %track, muted, "track mute changed by an operator");
            let msg = ServerMessage::TrackMuted { participant: publisher.to_string(), track: track.to_string(), muted };
            for p in &self.participants {
                p.send(msg.clone());
            }
            if !muted && self.tracks[idx].kind == TrackKind::Video {
                // subscribers' decoders restart at a keyframe
                for layer in Layer::ALL {
                    self.request_keyframe(track, layer, now);
                }
            }
        }
        Some(self.track_detail(idx))
    }

    fn close_room(&mut self, reason: String, now: Instant) {
        let ids: Vec<String> = self.participants.iter().map(|p| p.id.clone()).collect();
        for p in &self.participants {
            p.send(ServerMessage::Removed { reason: reason.clone() });
        }
        for id in &ids {
            self.leave(id, now);
        }
        tracing::info!(room = %self.name, participants = ids.len(), %reason, "room closed by an operator");
        self.admin.closed = Some(reason);
    }
}
