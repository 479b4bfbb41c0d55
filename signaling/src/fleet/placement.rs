//! Where a room goes: pure decisions over the directory's view (the room's owner, the live
//! nodes), table-tested; `directory` carries them out atomically in Redis.

use super::{NodeId, NodeRecord};
use crate::node::NodeState;

/// A node this much less loaded than this one (in participants) takes a new room instead of
/// it: below that, the relay hop is not worth the balance.
pub const LOAD_SLACK: usize = 4;

/// What a join for a room this node does not host leads to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// The room is this node's (or this node just took it): join here.
    Local,
    /// The room lives on a live node: relay the session there.
    Relay(NodeId),
    /// Nobody holds the room: claim it for this node (this node, or the least loaded).
    Claim(NodeId),
    /// The room's node is gone from the directory (its heartbeat expired): claim the room for
    /// another node if it is still the dead one's.
    Takeover {
        /// The node that held it.
        dead: NodeId,
        /// Where it goes.
        to: NodeId,
    },
    /// No serving node can take the room.
    NoNode,
}

/// The node a new room goes to: the least loaded serving node, this one when it is within
/// [`LOAD_SLACK`] of that (no relay for nothing); `None` when no node serves.
pub fn choose<'a>(nodes: &'a [NodeRecord], me: &NodeId) -> Option<&'a NodeId> {
    let serving = || nodes.iter().filter(|n| n.state == NodeState::Serving);
    let least = serving().min_by(|a, b| a.participants.cmp(&b.participants).then_with(|| a.id.cmp(&b.id)))?;
    match serving().find(|n| &n.id == me) {
        Some(mine) if mine.participants <= least.participants + LOAD_SLACK => Some(&mine.id),
        _ => Some(&least.id),
    }
}

/// The step for a join of a room with `owner` (from the directory), given the live `nodes`
/// (this one among them when its heartbeat is current).
pub fn resolve(owner: Option<&NodeId>, nodes: &[NodeRecord], me: &NodeId) -> Step {
    let claim = |make: &dyn Fn(NodeId) -> Step| match choose(nodes, me) {
        Some(to) => make(to.clone()),
        None => Step::NoNode,
    };
    match owner {
        Some(o) if o == me => Step::Local,
        // a live owner keeps its room even while draining (its participants are there)
        Some(o) if nodes.iter().any(|n| &n.id == o) => Step::Relay(o.clone()),
        Some(dead) => claim(&|to| Step::Takeover { dead: dead.clone(), to }),
        None => claim(&|to| Step::Claim(to)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(id: &str, state: NodeState, participants: usize) -> NodeRecord {
        NodeRecord {
            id: NodeId::from(id),
            url: format!("http://{id}"),
            state,
            rooms: 0,
            participants,
            version: "test".into(),
        }
    }

    #[test]
    fn steps() {
        use NodeState::{Draining, Serving};
        let id = NodeId::from;
        // columns: what, the room's owner, the live nodes, the step (for node "a")
        let rows: Vec<(&str, Option<&str>, Vec<NodeRecord>, Step)> = vec![
            ("mine", Some("a"), vec![node("a", Serving, 0)], Step::Local),
            ("mine while draining", Some("a"), vec![node("a", Draining, 0)], Step::Local),
            (
                "another live node's",
                Some("b"),
                vec![node("a", Serving, 0), node("b", Serving, 9)],
                Step::Relay(id("b")),
            ),
            ("a draining node's", Some("b"), vec![node("a", Serving, 0), node("b", Draining, 9)], Step::Relay(id("b"))),
            ("free: this node", None, vec![node("a", Serving, 3), node("b", Serving, 1)], Step::Claim(id("a"))),
            (
                "free: a much less loaded node",
                None,
                vec![node("a", Serving, 10), node("b", Serving, 5)],
                Step::Claim(id("b")),
            ),
            (
                "free, this node draining",
                None,
                vec![node("a", Draining, 0), node("b", Serving, 50)],
                Step::Claim(id("b")),
            ),
            ("free, this node not yet registered", None, vec![node("b", Serving, 50)], Step::Claim(id("b"))),
            ("free, every node draining", None, vec![node("a", Draining, 0), node("b", Draining, 0)], Step::NoNode),
            ("free, no node known", None, vec![], Step::NoNode),
            (
                "a dead node's",
                Some("c"),
                vec![node("a", Serving, 0), node("b", Serving, 0)],
                Step::Takeover { dead: id("c"), to: id("a") },
            ),
            (
                "a dead node's, this one loaded",
                Some("c"),
                vec![node("a", Serving, 40), node("b", Serving, 0)],
                Step::Takeover { dead: id("c"), to: id("b") },
            ),
            ("a dead node's, nobody serving", Some("c"), vec![node("a", Draining, 0)], Step::NoNode),
        ];
        for (what, owner, nodes, want) in rows {
            let owner = owner.map(NodeId::from);
            assert_eq!(resolve(owner.as_ref(), &nodes, &id("a")), want, "{what}");
        }
    }

    #[test]
    fn ties_go_to_the_same_node_everywhere() {
        // two nodes placing the same free room at once pick the same one (the claim in Redis
        // decides anyway; agreeing saves a relay)
        let nodes = vec![node("b", NodeState::Serving, 20), node("c", NodeState::Serving, 20)];
        assert_eq!(choose(&nodes, &NodeId::from("a")), Some(&NodeId::from("b")));
        let reversed: Vec<_> = nodes.into_iter().rev().collect();
        assert_eq!(choose(&reversed, &NodeId::from("a")), Some(&NodeId::from("b")));
    }
}
