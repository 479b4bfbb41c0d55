//! The fleet's directory in Redis: node records with a TTL, and one key per room naming the
//! node that hosts it, held by a lease.
//!
//! Keys (under the prefix, `sfu:` by default):
//! - `node:{id}`: the node's [`NodeRecord`] as JSON, expiring unless its heartbeat renews it;
//! - `nodes`: the set of node ids (members whose record expired are removed by the readers);
//! - `room:{name}`: the id of the node hosting the room, expiring unless that node renews it.
//!
//! Every change of a room key is a Lua script, so a claim, a takeover, a renewal and a release
//! each compare and set in one step; two nodes placing the same room at once agree on one.

use super::{NodeId, NodeRecord};
use redis::aio::ConnectionManager;
use redis::{AsyncCommands, Script};
use std::time::Duration;

/// Longest wait for one directory operation: past it the directory counts as unreachable (a
/// join needing it is refused; the node's own rooms go on).
pub const OP_TIMEOUT: Duration = Duration::from_millis(1000);

/// Why a directory operation failed.
#[derive(Debug, thiserror::Error)]
pub enum DirectoryError {
    /// Redis answered with an error or the connection failed.
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    /// Redis did not answer within [`OP_TIMEOUT`].
    #[error("redis did not answer within {OP_TIMEOUT:?}")]
    Timeout,
    /// A script answered what it never returns.
    #[error("unexpected answer from redis: {0}")]
    Unexpected(String),
    /// A node record that is not ours to read.
    #[error("bad node record {id}: {error}")]
    BadRecord {
        /// Whose.
        id: String,
        /// What is wrong with it.
        error: serde_json::Error,
    },
}

/// What renewing a room's lease found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Renewal {
    /// Still ours; the lease runs again.
    Renewed,
    /// The key had expired (Redis was away, or flushed): claimed again.
    Reclaimed,
    /// Another node holds the room now.
    Lost(NodeId),
}

// KEYS[1] room key; ARGV[1] the claiming node, ARGV[2] lease ms, ARGV[3] the holder it may
// replace ("" for none): sets the room to ARGV[1] unless a node other than ARGV[3] holds it;
// returns the holder afterwards.
const CLAIM: &str = r"
local cur = redis.call('GET', KEYS[1])
if (not cur) or cur == ARGV[3] or cur == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return ARGV[1]
end
return cur";

// KEYS[1] room key; ARGV[1] this node, ARGV[2] lease ms: 1 renewed, 2 re-claimed an expired
// key, else the holder.
const RENEW: &str = r"
local cur = redis.call('GET', KEYS[1])
if cur == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
if not cur then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 2
end
return cur";

// KEYS[1] room key; ARGV[1] this node: deletes the key if it is this node's.
const RELEASE: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0";

/// A connection to the directory (reconnecting by itself after failures).
#[derive(Clone)]
pub struct Directory {
    conn: ConnectionManager,
    prefix: String,
    claim: Script,
    renew: Script,
    release: Script,
}

async fn timed<T>(op: impl Future<Output = redis::RedisResult<T>>) -> Result<T, DirectoryError> {
    match tokio::time::timeout(OP_TIMEOUT, op).await {
        Ok(r) => r.map_err(DirectoryError::Redis),
        Err(_) => Err(DirectoryError::Timeout),
    }
}

impl Directory {
    /// A directory at `url` (`redis://host:port/db`); connects on first use, so a node starts
    /// whether Redis is up or not.
    pub fn new(url: &str, prefix: &str) -> Result<Self, DirectoryError> {
        let client = redis::Client::open(url)?;
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(OP_TIMEOUT))
            .set_response_timeout(Some(OP_TIMEOUT))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(500));
        let conn = ConnectionManager::new_lazy_with_config(client, config)?;
        Ok(Directory {
            conn,
            prefix: prefix.to_string(),
            claim: Script::new(CLAIM),
            renew: Script::new(RENEW),
            release: Script::new(RELEASE),
        })
    }

    fn node_key(&self, id: &NodeId) -> String {
        format!("{}node:{}", self.prefix, id)
    }

    fn nodes_key(&self) -> String {
        format!("{}nodes", self.prefix)
    }

    fn room_key(&self, room: &str) -> String {
        format!("{}room:{}", self.prefix, room)
    }

    /// Publishes this node's record for `ttl`.
    pub async fn heartbeat(&self, record: &NodeRecord, ttl: Duration) -> Result<(), DirectoryError> {
        let json = serde_json::to_string(record).expect("node records serialize");
        let mut conn = self.conn.clone();
        let ttl_ms = ttl.as_millis() as u64;
        timed(async {
            redis::pipe()
                .atomic()
                .set_options(
                    self.node_key(&record.id),
                    json,
                    redis::SetOptions::default().with_expiration(redis::SetExpiry::PX(ttl_ms)),
                )
                .ignore()
                .sadd(self.nodes_key(), record.id.as_str())
                .ignore()
                .query_async::<()>(&mut conn)
                .await
        })
        .await
    }

    /// Removes this node's record (a node leaving the fleet on purpose).
    pub async fn deregister(&self, id: &NodeId) -> Result<(), DirectoryError> {
        let mut conn = self.conn.clone();
        timed(async {
            redis::pipe()
                .del(self.node_key(id))
                .ignore()
                .srem(self.nodes_key(), id.as_str())
                .ignore()
                .query_async::<()>(&mut conn)
                .await
        })
        .await
    }

    /// Every node whose record has not expired; ids whose record expired leave the set.
    pub async fn nodes(&self) -> Result<Vec<NodeRecord>, DirectoryError> {
        let mut conn = self.conn.clone();
        let ids: Vec<String> = timed(conn.smembers(self.nodes_key())).await?;
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let keys: Vec<String> = ids.iter().map(|id| self.node_key(&NodeId::from(id.as_str()))).collect();
        let records: Vec<Option<String>> = timed(redis::cmd("MGET").arg(&keys).query_async(&mut conn)).await?;
        let mut live = Vec::with_capacity(ids.len());
        let mut expired = Vec::new();
        for (id, record) in ids.into_iter().zip(records) {
            match record {
                Some(json) => match serde_json::from_str::<NodeRecord>(&json) {
                    Ok(r) => live.push(r),
                    Err(error) => return Err(DirectoryError::BadRecord { id, error }),
                },
                None => expired.push(id),
            }
        }
        if !expired.is_empty() {
            let _: () = timed(conn.srem(self.nodes_key(), &expired)).await?;
        }
        live.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(live)
    }

    /// The node holding `room`, if any.
    pub async fn owner(&self, room: &str) -> Result<Option<NodeId>, DirectoryError> {
        let mut conn = self.conn.clone();
        let owner: Option<String> = timed(conn.get(self.room_key(room))).await?;
        Ok(owner.map(NodeId::from))
    }

    /// Claims `room` for `node` for `lease` unless a node other than `replacing` holds it;
    /// returns the holder afterwards (`node` when the claim won).
    pub async fn claim(
        &self,
        room: &str,
        node: &NodeId,
        replacing: Option<&NodeId>,
        lease: Duration,
    ) -> Result<NodeId, DirectoryError> {
        let mut conn = self.conn.clone();
        let holder: String = timed(
            self.claim
                .key(self.room_key(room))
                .arg(node.as_str())
                .arg(lease.as_millis() as u64)
                .arg(replacing.map_or("", |n| n.as_str()))
                .invoke_async(&mut conn),
        )
        .await?;
        Ok(NodeId::from(holder))
    }

    /// Renews this node's lease on `room`.
    pub async fn renew(&self, room: &str, me: &NodeId, lease: Duration) -> Result<Renewal, DirectoryError> {
        let mut conn = self.conn.clone();
        let got: redis::Value = timed(
            self.renew.key(self.room_key(room)).arg(me.as_str()).arg(lease.as_millis() as u64).invoke_async(&mut conn),
        )
        .await?;
        Ok(match got {
            redis::Value::Int(1) => Renewal::Renewed,
            redis::Value::Int(2) => Renewal::Reclaimed,
            redis::Value::BulkString(holder) => Renewal::Lost(NodeId::from(String::from_utf8_lossy(&holder).as_ref())),
            other => return Err(DirectoryError::Unexpected(format!("{other:?}"))),
        })
    }

    /// Gives `room` up if this node holds it (its last participant left); whether it did.
    pub async fn release(&self, room: &str, me: &NodeId) -> Result<bool, DirectoryError> {
        let mut conn = self.conn.clone();
        let deleted: i64 =
            timed(self.release.key(self.room_key(room)).arg(me.as_str()).invoke_async(&mut conn)).await?;
        Ok(deleted == 1)
    }
}
