//! Helper threads that share the sending of one large flush, so a room's fan-out is not bound
//! to the one core its worker runs on: the kernel's per-datagram send is most of the cost of a
//! forwarded packet, and a 7-packet frame to 500 subscribers is 3,500 datagrams.
//!
//! The room worker keeps every decision (selection, munging, SRTP); only the finished datagrams
//! are shared. A flush of [`PARALLEL_MIN`] datagrams or more is cut at destination boundaries
//! into parts of about [`PART_DATAGRAMS`]; the worker offers the flush to the helpers, and
//! then it and every helper that picked it up claim parts one at a time until none is left,
//! so the worker never sits idle while a part is unclaimed (a busy or descheduled helper costs
//! at most the part it holds). Each destination's datagrams are in one part, so they leave in
//! order. `send` returns when every part was sent, so the forwarding-delay metric still ends
//! when the last copy was handed to the kernel.

use super::batch::{Flushed, Planned};
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::ops::Range;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};

/// Flushes with fewer datagrams are sent by the worker alone (a hand-over costs a wake-up).
pub const PARALLEL_MIN: usize = 256;
/// Datagrams per part of a shared flush (about 0.3-0.5 ms of sending on the test machine).
pub const PART_DATAGRAMS: usize = 128;

/// The helper threads of a node, shared by its room workers.
pub struct SendPool {
    inner: Arc<Inner>,
    helpers: usize,
}

struct Inner {
    /// Flushes offered to the helpers (one entry per helper invited).
    jobs: Mutex<VecDeque<Arc<Job>>>,
    ready: Condvar,
    stop: AtomicBool,
}

/// One shared flush.
struct Job {
    plan: Arc<Planned>,
    parts: Vec<Range<usize>>,
    /// Next part to claim.
    next: AtomicUsize,
    /// Outcome so far and parts finished.
    state: Mutex<JobState>,
    finished: Condvar,
}

#[derive(Default)]
struct JobState {
    out: Flushed,
    refused: bool,
    done: usize,
}

impl Job {
    /// Claims and sends parts until none is left.
    fn work(&self, helper: bool) {
        loop {
            let i = self.next.fetch_add(1, Ordering::AcqRel);
            let Some(range) = self.parts.get(i) else { return };
            // a panic must not leave the worker waiting for this part forever
            let sent = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.plan.send(range.clone())));
            let (mut f, refused) = sent.unwrap_or_else(|_| {
                tracing::error!("sending a part of a flush panicked: its datagrams are dropped");
                let lost = self.plan.groups[range.clone()].iter().map(|g| u64::from(g.count)).sum();
                (Flushed { errors: lost, ..Flushed::default() }, false)
            });
            if helper {
                f.by_helpers = f.sent;
            }
            let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
            st.out += f;
            st.refused |= refused;
            st.done += 1;
            if st.done == self.parts.len() {
                self.finished.notify_all();
            }
        }
    }
}

impl SendPool {
    /// A pool of `helpers` threads (0: every flush is sent by its worker alone).
    pub fn new(helpers: usize) -> std::io::Result<SendPool> {
        let inner =
            Arc::new(Inner { jobs: Mutex::new(VecDeque::new()), ready: Condvar::new(), stop: AtomicBool::new(false) });
        for i in 0..helpers {
            let inner = inner.clone();
            std::thread::Builder::new().name(format!("sfu-send-{i}")).spawn(move || helper(&inner))?;
        }
        Ok(SendPool { inner, helpers })
    }

    /// Number of helper threads.
    pub fn helpers(&self) -> usize {
        self.helpers
    }

    /// Sends every message of `plan`, on this thread and the helpers; returns the outcome,
    /// whether the kernel refused GSO, and the plan's buffers when no helper holds them any
    /// more (to be reused).
    pub(super) fn send(&self, plan: Planned) -> (Flushed, bool, Option<Planned>) {
        let datagrams = plan.queue.len();
        let parts = split(
            plan.groups.len(),
            |g| plan.dest(g),
            |g| usize::from(plan.groups[g].count),
            datagrams.div_ceil(PART_DATAGRAMS),
        );
        let plan = Arc::new(plan);
        let invited = self.helpers.min(parts.len().saturating_sub(1));
        let job = Arc::new(Job {
            plan: plan.clone(),
            parts,
            next: AtomicUsize::new(0),
            state: Mutex::default(),
            finished: Condvar::new(),
        });
        if invited > 0 {
            let mut jobs = self.inner.jobs.lock().unwrap_or_else(|e| e.into_inner());
            jobs.extend(std::iter::repeat_n(job.clone(), invited));
            drop(jobs);
            for _ in 0..invited {
                self.inner.ready.notify_one();
            }
        }
        job.work(false);
        let (out, refused) = {
            let mut st = job.state.lock().unwrap_or_else(|e| e.into_inner());
            while st.done < job.parts.len() {
                st = job.finished.wait(st).unwrap_or_else(|e| e.into_inner());
            }
            (st.out, st.refused)
        };
        if invited > 0 {
            // invitations no helper picked up in time
            let mut jobs = self.inner.jobs.lock().unwrap_or_else(|e| e.into_inner());
            jobs.retain(|j| !Arc::ptr_eq(j, &job));
        }
        drop(job);
        (out, refused, Arc::try_unwrap(plan).ok())
    }
}

impl Drop for SendPool {
    fn drop(&mut self) {
        self.inner.stop.store(true, Ordering::Release);
        self.inner.ready.notify_all();
    }
}

fn helper(inner: &Inner) {
    loop {
        let job = {
            let mut jobs = inner.jobs.lock().unwrap_or_else(|e| e.into_inner());
            loop {
                if inner.stop.load(Ordering::Acquire) {
                    return;
                }
                if let Some(j) = jobs.pop_front() {
                    break j;
                }
                jobs = inner.ready.wait(jobs).unwrap_or_else(|e| e.into_inner());
            }
        };
        job.work(true);
    }
}

/// Cuts `n` messages into at most `parts` ranges of about equal datagram counts
/// (`count(g)` datagrams in message `g`), never between two messages to one destination
/// (`dest(g)`; messages are grouped by destination). Always at least one range.
fn split(
    n: usize,
    dest: impl Fn(usize) -> SocketAddr,
    count: impl Fn(usize) -> usize,
    parts: usize,
) -> Vec<Range<usize>> {
    let total: usize = (0..n).map(&count).sum();
    let mut ranges = Vec::with_capacity(parts);
    let mut start = 0;
    let mut acc = 0;
    for g in 0..n {
        acc += count(g);
        let want = total * (ranges.len() + 1) / parts.max(1);
        let boundary = g + 1 < n && dest(g + 1) != dest(g);
        if ranges.len() + 1 < parts && acc >= want && boundary {
            ranges.push(start..g + 1);
            start = g + 1;
        }
    }
    ranges.push(start..n);
    ranges
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_cuts_at_destination_boundaries_into_even_parts() {
        // columns: name, messages as (destination, datagrams), parts, expected ranges
        let rows: &[(&str, &[(u16, usize)], usize, &[Range<usize>])] = &[
            ("one part", &[(1, 1), (2, 1)], 1, &[0..2]),
            ("even", &[(1, 1), (2, 1), (3, 1), (4, 1)], 2, &[0..2, 2..4]),
            ("by datagrams, not messages", &[(1, 6), (2, 1), (3, 1), (4, 1), (5, 1)], 2, &[0..1, 1..5]),
            ("a destination is never split", &[(1, 1), (2, 1), (2, 1), (2, 1), (3, 1)], 2, &[0..4, 4..5]),
            ("one destination only", &[(1, 64), (1, 64), (1, 2)], 3, &[0..3]),
            ("three parts", &[(1, 1), (2, 1), (3, 1), (4, 1), (5, 1), (6, 1)], 3, &[0..2, 2..4, 4..6]),
            ("more parts than destinations", &[(1, 1), (2, 1)], 4, &[0..1, 1..2]),
            ("empty", &[], 2, &[0..0]),
        ];
        for (name, msgs, parts, want) in rows {
            let dest = |g: usize| SocketAddr::from(([127, 0, 0, 1], msgs[g].0));
            let got = split(msgs.len(), dest, |g| msgs[g].1, *parts);
            assert_eq!(&got[..], *want, "{name}");
        }
    }

    #[tokio::test]
    async fn a_large_flush_is_shared_and_every_datagram_arrives_in_order() {
        use super::super::SendBatch;
        use bytes::BytesMut;
        use tokio::net::UdpSocket;
        let pool = SendPool::new(2).unwrap();
        let tx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        tx.set_nonblocking(true).unwrap();
        let mut rxs = Vec::new();
        for _ in 0..40 {
            rxs.push(UdpSocket::bind("127.0.0.1:0").await.unwrap());
        }
        for gso in [false, true] {
            let mut batch = SendBatch::default();
            batch.set_gso(gso);
            // 10 "packets" to 40 receivers, packet-major as the fan-out queues them: 400 datagrams
            for k in 0..10u8 {
                for rx in &rxs {
                    batch.push(BytesMut::from(&[k; 200][..]), rx.local_addr().unwrap());
                }
            }
            let f = batch.flush_with(&tx, Some(&pool));
            assert_eq!((f.sent, f.would_block, f.errors), (400, 0, 0), "{f:?}");
            assert!(f.by_helpers <= f.sent);
            let mut buf = [0u8; 256];
            for rx in &rxs {
                for k in 0..10u8 {
                    let n = tokio::time::timeout(std::time::Duration::from_secs(2), rx.recv(&mut buf))
                        .await
                        .unwrap()
                        .unwrap();
                    assert_eq!((n, buf[0]), (200, k), "gso {gso}: packet {k} in order");
                }
            }
        }
    }
}
