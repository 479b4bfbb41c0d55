//! Drain supervision: once the node is draining (SIGTERM or the API), wait until no participant
//! is left, or until the drain deadline; then tell the remaining participants to reconnect
//! elsewhere and give them a short grace to go.

use crate::fleet::Fleet;
use crate::node::{Node, NodeState};
use crate::room::{RoomCommand, Rooms};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long evacuated participants get to disconnect before the node gives up on them.
pub const EVACUATE_GRACE: Duration = Duration::from_secs(10);
/// How often the evacuation is repeated while participants remain (a full command queue may
/// have missed it).
const EVACUATE_REPEAT: Duration = Duration::from_secs(2);

/// How a drain ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DrainOutcome {
    /// The last participant left before the deadline.
    Empty {
        /// Time from the start of the drain.
        after: Duration,
    },
    /// The deadline passed: `evacuated` participants were told to reconnect, `remaining` were
    /// still connected when the grace ran out.
    Deadline {
        /// Participants told to reconnect.
        evacuated: usize,
        /// Participants still there at the end.
        remaining: usize,
    },
}

/// Waits for the node to start draining, then until the drain is over. The caller exits the
/// process (or, in tests, observes the outcome). In a fleet, the rooms still here at the
/// deadline are handed to serving nodes before their participants are told to reconnect, so
/// they continue there whatever node each participant reconnects through.
pub async fn supervise(node: Arc<Node>, rooms: Arc<Rooms>, grace: Duration, fleet: Option<Arc<Fleet>>) -> DrainOutcome {
    let mut changed = node.subscribe();
    while node.state() == NodeState::Serving {
        if changed.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
    let started = node.drain_started().unwrap_or_else(Instant::now);
    let far = started + Duration::from_secs(100 * 365 * 86400);
    let deadline = tokio::time::Instant::from_std(started.checked_add(node.drain_deadline()).unwrap_or(far).min(far));
    tracing::info!(
        rooms = rooms.len(),
        participants = rooms.participants(),
        deadline = %humantime::format_duration(node.drain_deadline()),
        "drain: waiting for the last participant to leave"
    );
    loop {
        if rooms.participants() == 0 {
            let after = started.elapsed();
            tracing::info!(after_ms = after.as_millis() as u64, "drain complete: no participant left");
            return DrainOutcome::Empty { after };
        }
        tokio::select! {
            _ = changed.changed() => {}
            _ = tokio::time::sleep_until(deadline) => break,
        }
    }

    let evacuated = rooms.participants();
    tracing::warn!(
        rooms = rooms.len(),
        participants = evacuated,
        "drain deadline passed: telling every participant to reconnect elsewhere"
    );
    if let Some(fleet) = &fleet {
        fleet.hand_off().await;
    }
    let give_up = tokio::time::Instant::now() + grace;
    loop {
        rooms.broadcast(|| RoomCommand::Evacuate { reason: "node shutting down: drain deadline passed".into() });
        let repeat = tokio::time::Instant::now() + EVACUATE_REPEAT;
        loop {
            if rooms.participants() == 0 {
                tracing::info!(evacuated, "drain complete: every participant was evacuated");
                return DrainOutcome::Deadline { evacuated, remaining: 0 };
            }
            tokio::select! {
                _ = changed.changed() => {}
                _ = tokio::time::sleep_until(repeat.min(give_up)) => break,
            }
        }
        if tokio::time::Instant::now() >= give_up {
            let remaining = rooms.participants();
            tracing::warn!(evacuated, remaining, "drain: participants still connected after the grace; closing anyway");
            return DrainOutcome::Deadline { evacuated, remaining };
        }
    }
}
