//! The engine: ONE task that owns every peer connection of many clients, their UDP sockets
//! and their timers, like the server's room worker. This is its handle and command set; the
//! task itself is in the private `driver` module.

use crate::error::ClientError;
use crate::event::Role;
use crate::publisher::PublishOptions;
use crate::signal::Outbound;
use crate::stats::ClientStats;
use signaling::protocol::TrackRef;
use std::collections::{BTreeMap, HashMap};
use std::hash::{BuildHasherDefault, Hasher};
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, watch};

/// Identifies a client inside an engine.
pub type ClientId = u64;

/// Identifies a peer connection inside an engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PcId(pub u64);

/// Hasher of the engine's maps, keyed by small sequential ids: one multiplication instead of
/// SipHash (the connection map is looked up several times per datagram).
#[derive(Default)]
pub(crate) struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 << 8 | u64::from(*b)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
    }

    fn write_u64(&mut self, v: u64) {
        // Fibonacci hashing: spreads sequential ids over the high bits hashbrown uses too
        self.0 = (self.0 ^ v).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

pub(crate) type IdMap<K, V> = HashMap<K, V, BuildHasherDefault<IdHasher>>;

/// Engine settings.
#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// How often clients' published stats snapshots are refreshed.
    pub stats_interval: Duration,
    /// Simulated network loss: subscriber connections drop every Nth inbound RTP datagram of
    /// each SSRC before their WebRTC stack sees it (so NACK and retransmission are exercised).
    pub drop_inbound_rtp_every: Option<u32>,
    /// Subscriber connections count inbound RTP by its clear header (SSRC, sequence number)
    /// and drop it without decrypting: a receiver costing a fraction of a real one, to load
    /// a server beyond what full clients on the same machine can take (no payload checks,
    /// no latency; see [`crate::ClientStats::sink`]).
    pub sink_media: bool,
    /// Subscriber connections decrypt inbound RTP of streams they already opened themselves
    /// (see [`crate::srtp_in`]) instead of through `rtc`'s read pipeline: same analysis and
    /// feedback, several times cheaper. `false` keeps every packet on `rtc`'s path (for
    /// comparison).
    pub decrypt_in_engine: bool,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            stats_interval: Duration::from_millis(50),
            drop_inbound_rtp_every: None,
            sink_media: false,
            decrypt_in_engine: true,
        }
    }
}

/// Requests to the engine task.
pub(crate) enum Command {
    AddClient {
        id: ClientId,
        local_ip: IpAddr,
        path: crate::MediaPath,
        outbound: mpsc::UnboundedSender<Outbound>,
        events: mpsc::UnboundedSender<crate::event::Event>,
        stats: watch::Sender<ClientStats>,
    },
    Publish {
        id: ClientId,
        opts: PublishOptions,
        reply: oneshot::Sender<Result<(), ClientError>>,
    },
    PublisherAnswer {
        id: ClientId,
        sdp: String,
    },
    SubscriberOffer {
        id: ClientId,
        sdp: String,
        tracks: BTreeMap<String, TrackRef>,
    },
    Stats {
        id: ClientId,
        reply: oneshot::Sender<ClientStats>,
    },
    Inject {
        id: ClientId,
        role: Role,
        datagrams: Vec<Vec<u8>>,
        reply: oneshot::Sender<Result<(), ClientError>>,
    },
    RemoveClient {
        id: ClientId,
    },
    PublishLayers {
        id: ClientId,
        active: Vec<String>,
    },
    Downlink {
        id: ClientId,
        link: Option<bwe::netem::LinkConfig>,
    },
    /// A receive-only client offers (WHEP): its receiving connection is made with one
    /// section of each kind; the offer comes back on `reply`.
    ViewerOffer {
        id: ClientId,
        kinds: Vec<signaling::protocol::TrackKind>,
        reply: oneshot::Sender<Result<String, ClientError>>,
    },
    /// The answer to [`Command::ViewerOffer`]; `tracks` names what each mid carries.
    ViewerAnswer {
        id: ClientId,
        sdp: String,
        tracks: BTreeMap<String, TrackRef>,
    },
}

/// Handle of an engine task; clone it to put many clients on one task. The task ends when
/// every handle (and every client using it) is dropped.
#[derive(Clone)]
pub struct Engine {
    tx: mpsc::UnboundedSender<Command>,
    next_client: Arc<AtomicU64>,
}

impl Engine {
    /// Spawns an engine task on the current tokio runtime.
    pub fn spawn() -> Engine {
        Engine::spawn_with(EngineOptions::default())
    }

    /// Spawns an engine task with `opts`.
    pub fn spawn_with(opts: EngineOptions) -> Engine {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(crate::driver::Driver::new(opts).run(rx));
        Engine { tx, next_client: Arc::new(AtomicU64::new(1)) }
    }

    pub(crate) fn new_client_id(&self) -> ClientId {
        self.next_client.fetch_add(1, Ordering::Relaxed)
    }

    pub(crate) fn send(&self, cmd: Command) -> Result<(), ClientError> {
        self.tx.send(cmd).map_err(|_| ClientError::EngineGone)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::hash::BuildHasher;

    #[test]
    fn id_hashes_spread_sequential_ids() {
        let b = BuildHasherDefault::<IdHasher>::default();
        let hashes: std::collections::HashSet<u64> = (1..=1000u64).map(|i| b.hash_one(PcId(i))).collect();
        assert_eq!(hashes.len(), 1000);
        // hashbrown takes its control byte from the top 7 bits: they must vary too
        let tops: std::collections::HashSet<u64> = hashes.iter().map(|h| h >> 57).collect();
        assert!(tops.len() > 64, "{}", tops.len());
    }
}
