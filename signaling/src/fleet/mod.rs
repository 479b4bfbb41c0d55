//! Several nodes as one SFU: a Redis directory of nodes and rooms, and joins relayed to the
//! node that hosts their room.
//!
//! Without `--redis` there is no [`Fleet`] and a node runs alone. With it, each node publishes
//! a record of itself that expires unless its heartbeat renews it; a room belongs to the node
//! its directory key names, claimed atomically and held by a lease its node renews while the
//! room lives there; a join that reaches another node is relayed to the room's node over a
//! WebSocket between nodes ([`relay`]), so one load balancer in front of every node works and
//! clients need no change. Media goes straight to the hosting node's UDP port: the SDP it
//! answers names it. When Redis is unreachable a node goes on with the rooms it has and
//! refuses only joins that need the directory (`error unavailable`).

pub mod directory;
pub mod placement;
pub mod relay;
pub mod testing;

use crate::node::{Node, NodeState};
use crate::room::Rooms;
use directory::{Directory, DirectoryError, Renewal};
use placement::Step;
use prometheus::{IntCounterVec, IntGauge, Opts, Registry};
use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::sync::watch;

/// A node's id in the fleet.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct NodeId(String);

impl NodeId {
    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl From<&str> for NodeId {
    fn from(s: &str) -> Self {
        NodeId(s.to_string())
    }
}

impl From<String> for NodeId {
    fn from(s: String) -> Self {
        NodeId(s)
    }
}

impl std::fmt::Display for NodeId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// What a node publishes about itself in the directory.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct NodeRecord {
    /// Its id.
    pub id: NodeId,
    /// Its HTTP base URL as other nodes reach it (`http://10.0.0.5:7880`): relayed sessions
    /// go to its `/ws`.
    pub url: String,
    /// Serving or draining.
    pub state: NodeState,
    /// Rooms it hosts.
    pub rooms: usize,
    /// Participants in them.
    pub participants: usize,
    /// Its software version.
    pub version: String,
}

/// How a node takes part in the fleet.
#[derive(Debug, Clone)]
pub struct FleetConfig {
    /// Redis URL (`redis://host:6379/0`).
    pub redis: String,
    /// This node's id.
    pub node_id: NodeId,
    /// This node's HTTP base URL for the other nodes.
    pub url: String,
    /// Between heartbeats; a node record lives 3 of them, a room lease 5.
    pub heartbeat: Duration,
    /// Prefix of every directory key (several fleets can share one Redis).
    pub prefix: String,
}

impl FleetConfig {
    /// How long a node record outlives its last heartbeat.
    pub fn node_ttl(&self) -> Duration {
        self.heartbeat * 3
    }

    /// How long a room stays claimed without its node renewing it.
    pub fn lease(&self) -> Duration {
        self.heartbeat * 5
    }
}

/// The IP address in an HTTP base URL (`http://10.0.0.5:7880`, `https://[::1]:7880`); `None`
/// for a host name.
pub fn url_ip(url: &str) -> Option<std::net::IpAddr> {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split('/').next()?;
    if let Ok(addr) = authority.parse::<std::net::SocketAddr>() {
        return Some(addr.ip());
    }
    authority.trim_start_matches('[').trim_end_matches(']').parse().ok()
}

/// Where a join goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Place {
    /// Into a room on this node.
    Local,
    /// To the node hosting the room.
    Relay(NodeRecord),
}

/// Why a join could not be placed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlaceError {
    /// Redis did not answer; only rooms already on this node take joins.
    #[error("the fleet directory is unreachable: only rooms already on this node take joins now; retry shortly")]
    Unavailable,
    /// Every node is draining.
    #[error("no node of the fleet takes new rooms")]
    NoNode,
    /// A relayed join for a room another node holds (no second hop).
    #[error("room is on node {0}")]
    Moved(NodeId),
}

/// The fleet's metrics.
struct FleetMetrics {
    up: IntGauge,
    errors: IntCounterVec,
    nodes: IntGauge,
    joins: IntCounterVec,
    relayed: IntGauge,
    leases: IntCounterVec,
}

impl FleetMetrics {
    fn new(registry: &Registry) -> Self {
        let up = IntGauge::new("sfu_fleet_directory_up", "1 while the fleet directory (Redis) answers")
            .expect("valid metric");
        let errors = IntCounterVec::new(
            Opts::new("sfu_fleet_directory_errors_total", "Failed fleet directory operations by operation"),
            &["op"],
        )
        .expect("valid metric");
        let nodes = IntGauge::new("sfu_fleet_nodes", "Live nodes in the fleet directory, this one included")
            .expect("valid metric");
        let joins = IntCounterVec::new(
            Opts::new(
                "sfu_fleet_joins_total",
                "Joins by placement: local (a room on this node), relayed (to the room's node), refused (no directory or no serving node)",
            ),
            &["placement"],
        )
        .expect("valid metric");
        let relayed = IntGauge::new("sfu_fleet_relayed_sessions", "Sessions this node relays to another node")
            .expect("valid metric");
        let leases = IntCounterVec::new(
            Opts::new(
                "sfu_fleet_room_leases_total",
                "Room lease events: claimed, taken_over (from a node gone from the directory), reclaimed (the key had expired), lost (another node holds a room this node hosts), released, handed_off (to a serving node at a drain's deadline)",
            ),
            &["event"],
        )
        .expect("valid metric");
        for c in [
            Box::new(up.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(errors.clone()),
            Box::new(nodes.clone()),
            Box::new(joins.clone()),
            Box::new(relayed.clone()),
            Box::new(leases.clone()),
        ] {
            registry.register(c).expect("fleet metrics registered once");
        }
        FleetMetrics { up, errors, nodes, joins, relayed, leases }
    }
}

/// This node's part in the fleet.
pub struct Fleet {
    config: FleetConfig,
    directory: Directory,
    node: Arc<Node>,
    rooms: Arc<Rooms>,
    /// The live nodes as last read (at most a heartbeat old).
    nodes: RwLock<Vec<NodeRecord>>,
    /// Rooms still on this node that were handed to other nodes (an evacuation): joins for
    /// them go where the directory says, and their leases are not renewed.
    handed_off: RwLock<HashSet<String>>,
    up: AtomicBool,
    metrics: FleetMetrics,
}

impl Fleet {
    /// Joins the fleet described by `config` (Redis is reached on first use).
    pub fn new(
        config: FleetConfig,
        node: Arc<Node>,
        rooms: Arc<Rooms>,
        registry: &Registry,
    ) -> Result<Arc<Self>, DirectoryError> {
        let directory = Directory::new(&config.redis, &config.prefix)?;
        let metrics = FleetMetrics::new(registry);
        Ok(Arc::new(Fleet {
            config,
            directory,
            node,
            rooms,
            nodes: RwLock::new(Vec::new()),
            handed_off: RwLock::new(HashSet::new()),
            up: AtomicBool::new(false),
            metrics,
        }))
    }

    /// This node's id.
    pub fn id(&self) -> &NodeId {
        &self.config.node_id
    }

    /// The directory (for tests and the admin API).
    pub fn directory(&self) -> &Directory {
        &self.directory
    }

    /// Whether the directory answered last time.
    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }

    /// Whether `ip` is a live node's (as last read): its connections carry relayed sessions
    /// of many clients, so the per-address connection limit does not apply to it.
    pub fn is_node_ip(&self, ip: std::net::IpAddr) -> bool {
        self.nodes.read().expect("not poisoned").iter().any(|n| url_ip(&n.url) == Some(ip))
    }

    /// The live nodes as last read.
    pub fn nodes(&self) -> Vec<NodeRecord> {
        self.nodes.read().expect("not poisoned").clone()
    }

    /// This node's record as it is now.
    pub fn record(&self) -> NodeRecord {
        NodeRecord {
            id: self.config.node_id.clone(),
            url: self.config.url.clone(),
            state: self.node.state(),
            rooms: self.rooms.len(),
            participants: self.rooms.participants(),
            version: self.node.version().to_string(),
        }
    }

    /// Counts a join by where it went.
    pub fn count_join(&self, placement: &'static str) {
        self.metrics.joins.with_label_values(&[placement]).inc();
    }

    /// A relayed session started (+1) or ended (-1).
    pub(crate) fn relayed_sessions(&self, delta: i64) {
        self.metrics.relayed.add(delta);
    }

    fn failed(&self, op: &str, e: DirectoryError) -> PlaceError {
        self.metrics.errors.with_label_values(&[op]).inc();
        if self.up.swap(false, Ordering::Relaxed) {
            tracing::warn!(error = %e, op, "fleet directory unreachable: only rooms on this node take joins");
        }
        self.metrics.up.set(0);
        PlaceError::Unavailable
    }

    fn answered(&self) {
        if !self.up.swap(true, Ordering::Relaxed) {
            tracing::info!(node = %self.config.node_id, "fleet directory reachable");
        }
        self.metrics.up.set(1);
    }

    /// The live nodes with this one's current record in place of its published one.
    fn view(&self, mut nodes: Vec<NodeRecord>) -> Vec<NodeRecord> {
        nodes.retain(|n| n.id != self.config.node_id);
        nodes.push(self.record());
        nodes
    }

    async fn read_nodes(&self) -> Result<Vec<NodeRecord>, PlaceError> {
        let nodes = self.directory.nodes().await.map_err(|e| self.failed("nodes", e))?;
        self.answered();
        self.metrics.nodes.set(nodes.len() as i64);
        *self.nodes.write().expect("not poisoned") = nodes.clone();
        Ok(nodes)
    }

    /// Where a join for `room` goes. A room on this node is joined here without asking the
    /// directory (so it keeps taking joins while Redis is away); otherwise the directory names
    /// the room's node, or the room is claimed for this node or the least loaded one, or taken
    /// over from a node whose record expired. `relayed`: the join came through another node's
    /// relay, which is never relayed again.
    pub async fn place(&self, room: &str, relayed: bool) -> Result<Place, PlaceError> {
        if self.rooms.contains(room) && !self.is_handed_off(room) {
            return Ok(Place::Local);
        }
        let me = self.config.node_id.clone();
        let owner = self.directory.owner(room).await.map_err(|e| self.failed("owner", e))?;
        self.answered();
        let mut nodes = self.nodes();
        // a holder missing from a list up to a heartbeat old may just have started: read again
        // before taking its room for a dead node's
        if owner.as_ref().is_some_and(|o| *o != me && !nodes.iter().any(|n| n.id == *o)) {
            nodes = self.read_nodes().await?;
        }
        let nodes = self.view(nodes);
        let holder = match placement::resolve(owner.as_ref(), &nodes, &me) {
            Step::Local => return Ok(Place::Local),
            Step::Relay(id) => id,
            Step::NoNode => return Err(PlaceError::NoNode),
            Step::Claim(to) => {
                let holder = self
                    .directory
                    .claim(room, &to, None, self.config.lease())
                    .await
                    .map_err(|e| self.failed("claim", e))?;
                if holder == to {
                    self.metrics.leases.with_label_values(&["claimed"]).inc();
                    tracing::info!(room, node = %to, "room placed");
                }
                holder
            }
            Step::Takeover { dead, to } => {
                let holder = self
                    .directory
                    .claim(room, &to, Some(&dead), self.config.lease())
                    .await
                    .map_err(|e| self.failed("claim", e))?;
                if holder == to {
                    self.metrics.leases.with_label_values(&["taken_over"]).inc();
                    tracing::warn!(room, from = %dead, to = %to, "room taken over from a node gone from the directory");
                }
                holder
            }
        };
        if holder == me {
            return Ok(Place::Local);
        }
        if relayed {
            return Err(PlaceError::Moved(holder));
        }
        match nodes.into_iter().find(|n| n.id == holder) {
            Some(record) => Ok(Place::Relay(record)),
            // it won a race with a record this node has not read yet
            None => self
                .read_nodes()
                .await?
                .into_iter()
                .find(|n| n.id == holder)
                .map(Place::Relay)
                .ok_or(PlaceError::Unavailable),
        }
    }

    fn is_handed_off(&self, room: &str) -> bool {
        self.handed_off.read().expect("not poisoned").contains(room)
    }

    /// Hands every room on this node to a serving node (the least loaded), before its
    /// participants are told to reconnect (a drain's deadline): wherever they reconnect, their
    /// joins are placed on that node, and the room goes on there. Rooms that cannot be handed
    /// off (no serving node, no directory) are released for the next join to claim.
    pub async fn hand_off(&self) {
        let others = match self.read_nodes().await {
            Ok(nodes) => nodes.into_iter().filter(|n| n.id != self.config.node_id).collect::<Vec<_>>(),
            Err(_) => Vec::new(),
        };
        for room in self.rooms.names() {
            self.handed_off.write().expect("not poisoned").insert(room.clone());
            let to = placement::choose(&others, &self.config.node_id).cloned();
            let handed = match &to {
                Some(to) => {
                    self.directory.claim(&room, to, Some(self.id()), self.config.lease()).await.ok().as_ref()
                        == Some(to)
                }
                None => false,
            };
            if handed {
                self.metrics.leases.with_label_values(&["handed_off"]).inc();
                tracing::info!(room, to = ?to, "room handed off");
            } else {
                tracing::warn!(room, ?to, "room not handed off: released for the next join");
                let _ = self.directory.release(&room, self.id()).await;
            }
        }
    }

    /// Heartbeats, the node list and this node's room leases, until `stop`; then the node's
    /// rooms are released and its record removed.
    pub async fn run(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        let mut held: HashSet<String> = HashSet::new();
        let mut changed = self.node.subscribe();
        loop {
            let published = self.node.state();
            self.tick(&mut held).await;
            tokio::select! {
                _ = tokio::time::sleep(self.config.heartbeat) => {}
                // a drain is published at once (occupancy waits for the next heartbeat)
                _ = async {
                    while changed.changed().await.is_ok() {
                        if self.node.state() != published {
                            return;
                        }
                    }
                    std::future::pending::<()>().await
                } => {}
                _ = stop.wait_for(|s| *s) => break,
            }
        }
        for room in held {
            let _ = self.directory.release(&room, self.id()).await;
        }
        if self.directory.deregister(self.id()).await.is_ok() {
            tracing::info!(node = %self.config.node_id, "left the fleet");
        }
    }

    /// One heartbeat: this node's record, the node list, the leases of the rooms it hosts
    /// (renewed, re-claimed if they expired) and of those it no longer hosts (released).
    async fn tick(&self, held: &mut HashSet<String>) {
        if let Err(e) = self.directory.heartbeat(&self.record(), self.config.node_ttl()).await {
            self.failed("heartbeat", e);
            return;
        }
        self.answered();
        if self.read_nodes().await.is_err() {
            return;
        }
        let handed_off = self.handed_off.read().expect("not poisoned").clone();
        let local: HashSet<String> = self.rooms.names().into_iter().filter(|r| !handed_off.contains(r)).collect();
        for room in &local {
            match self.directory.renew(room, self.id(), self.config.lease()).await {
                Ok(Renewal::Renewed) => {}
                Ok(Renewal::Reclaimed) => {
                    self.metrics.leases.with_label_values(&["reclaimed"]).inc();
                    tracing::info!(room, "room lease had expired: claimed again");
                }
                Ok(Renewal::Lost(holder)) => {
                    self.metrics.leases.with_label_values(&["lost"]).inc();
                    tracing::warn!(room, %holder, "another node holds a room this node hosts (claimed while the directory was away)");
                }
                Err(e) => {
                    self.failed("renew", e);
                    return;
                }
            }
        }
        let mut released = Vec::new();
        for room in held.difference(&local) {
            match self.directory.release(room, self.id()).await {
                Ok(deleted) => {
                    if deleted {
                        self.metrics.leases.with_label_values(&["released"]).inc();
                    }
                    released.push(room.clone());
                }
                Err(e) => {
                    self.failed("release", e);
                    break;
                }
            }
        }
        for room in released {
            held.remove(&room);
        }
        held.extend(local);
    }
}

#[cfg(test)]
mod tests {
    use super::url_ip;

    #[test]
    fn ips_of_node_urls() {
        let rows = [
            ("http://10.0.0.5:7880", Some("10.0.0.5")),
            ("https://[fd00::2]:7880/", Some("fd00::2")),
            ("http://10.0.0.5", Some("10.0.0.5")),
            ("http://sfu-1.internal:7880", None),
            ("127.0.0.1:7880", Some("127.0.0.1")),
        ];
        for (url, want) in rows {
            assert_eq!(url_ip(url), want.map(|w| w.parse().unwrap()), "{url}");
        }
    }
}
