// Drain with real Chromium participants (sfu/static/app.js) against the sfu binary:
//   a) SIGTERM: a running 2-person call keeps decoding (no presented-frame gap over 300 ms in the
//      5 s after the drain started), /readyz 503 while /healthz 200, a new room is refused with
//      `draining`, and the process exits 0 once both participants left;
//   b) the same, started by `POST /api/node/drain` with an admin token;
//   c) `--drain-deadline 3s`: at the deadline both participants get `reconnect`, the page rejoins
//      (refused by the dying node, as expected) and the process exits 0;
//   d) the same deadline behind a tiny TCP load balancer with a second node: the page's rejoin
//      lands on the other node and the call resumes there.
// Every test starts its own server and browser (a drained server is gone afterwards).

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import net from 'node:net';
import { afterEach, test } from 'node:test';
import { promisify } from 'node:util';
import { Harness, infoOf, launchBrowser, messagesOf, remoteOf, startServer, waitFor, withTimeout } from './harness.mjs';

const JOIN_TIMEOUT = 20000;
const MEDIA_TIMEOUT = 30000; // first frames: ICE + DTLS + keyframe, on a loaded 2-core machine
const WINDOW_MS = 5000; // observed after the drain started
const MAX_FRAME_GAP_MS = 300;
const EXIT_WITHIN_MS = 5000; // after the last participant left
const DEADLINE_S = 3;

const cleanups = [];
afterEach(async () => {
  while (cleanups.length) await cleanups.pop()().catch(() => {});
});

async function startHarness(options) {
  const h = await Harness.start(options);
  cleanups.push(() => h.close());
  return h;
}

/** HTTP status of GET `path` on the node. */
async function status(baseUrl, path, init = {}) {
  const res = await fetch(new URL(path, baseUrl), { signal: AbortSignal.timeout(5000), ...init });
  await res.arrayBuffer();
  return res.status;
}

async function adminToken(bin) {
  const { stdout } = await promisify(execFile)(bin, ['token', '--dev', '--identity', 'ops', '--admin'], { timeout: 10000 });
  return stdout.trim();
}

async function nodeStatus(baseUrl, token) {
  const res = await fetch(new URL('/api/node', baseUrl), {
    headers: { authorization: `Bearer ${token}` },
    signal: AbortSignal.timeout(5000),
  });
  assert.equal(res.status, 200, 'GET /api/node');
  return res.json();
}

const idOf = (page) => infoOf(page).participantId;
const byId = (list) => Object.fromEntries(list.map((r) => [r.participant, r]));
const now = (page) => page.evaluate(() => performance.now());

/** Waits until `viewer` decodes video and receives audio from `fromId`, then for 10 more frames. */
async function expectReceiving(viewer, fromId, { timeout = MEDIA_TIMEOUT } = {}) {
  const who = infoOf(viewer).name;
  const first = await waitFor(async () => {
    const r = byId(await remoteOf(viewer))[fromId];
    return r && r.framesDecoded > 0 && r.videoWidth > 0 && r.audioBytes > 0 && r;
  }, { timeout, interval: 250, message: `${who} to decode video and receive audio from ${fromId}` });
  return waitFor(async () => {
    const r = byId(await remoteOf(viewer))[fromId];
    return r && r.framesDecoded >= first.framesDecoded + 10 && r.audioBytes > first.audioBytes && r;
  }, {
    timeout: 15000,
    interval: 250,
    message: (last) => `${who}: frames and audio of ${fromId} to keep increasing (first ${JSON.stringify(first)}, last ${JSON.stringify(last)})`,
  });
}

/**
 * Waits until `viewer` presented frames of `pid` for the last 1.5 s at one width without a gap
 * over 200 ms: the call has settled (bandwidth ramp-up and layer switches of its first seconds
 * are over), so that what the drain window measures is the drain.
 */
async function waitSettled(viewer, pid) {
  await waitFor(async () => {
    const log = await viewer.evaluate((p) => {
      const t = performance.now();
      return { t, frames: window.sfuDemo.frameLog(p).filter((e) => e.t >= t - 1600) };
    }, pid);
    const f = log.frames;
    if (f.length < 10 || f[0].t > log.t - 1400 || log.t - f[f.length - 1].t > 200) return false;
    return f.every((e, i) => e.width === f[0].width && (i === 0 || e.t - f[i - 1].t <= 200));
  }, { timeout: MEDIA_TIMEOUT, interval: 250, message: `${infoOf(viewer).name} to present 1.5 s of frames of ${pid} at one width without a gap` });
}

/** Two participants in `room`, each decoding the other. */
async function conference(h, room, { settle = false } = {}) {
  const a = await h.open(room, 'a', { timeout: JOIN_TIMEOUT });
  const b = await h.open(room, 'b', { timeout: JOIN_TIMEOUT });
  await Promise.all([expectReceiving(a, idOf(b)), expectReceiving(b, idOf(a))]);
  if (settle) await Promise.all([waitSettled(a, idOf(b)), waitSettled(b, idOf(a))]);
  return [a, b];
}

/** Waits until the page's clock passed `t`. */
function waitPageClock(page, t) {
  return waitFor(async () => (await now(page)) >= t, { timeout: 20000, interval: 100, message: 'page clock' });
}

/** Largest gap between presented frames of `pid` on `page` within [start, end] (page clock), window edges included. */
async function frameGap(page, pid, start, end) {
  const win = (await page.evaluate((p) => window.sfuDemo.frameLog(p), pid)).filter((e) => e.t >= start && e.t <= end);
  if (win.length === 0) return { gap: end - start, frames: 0, at: 'no frame at all' };
  let gap = win[0].t - start;
  let at = 'before the first frame';
  for (let i = 1; i < win.length; i++) {
    const d = win[i].t - win[i - 1].t;
    if (d > gap) {
      gap = d;
      at = `${Math.round(win[i - 1].t - start)} ms after the drain started (widths ${win[i - 1].width} -> ${win[i].width})`;
    }
  }
  if (end - win[win.length - 1].t > gap) {
    gap = end - win[win.length - 1].t;
    at = 'after the last frame';
  }
  return { gap, frames: win.length, at };
}

/** Messages that would mean the call was disturbed. */
const DISTURBING = new Set(['reconnect', 'removed', 'participant_left', 'error']);

/**
 * Drain `h`'s node with `trigger` while a 2-person call runs; checks the call, readiness, refusal
 * of a new room, and the exit once both left. Returns figures for the log.
 */
async function drainScenario(h, room, trigger) {
  const [a, b] = await conference(h, room, { settle: true });
  const admin = await adminToken(h.server.bin);
  const pairs = [[a, idOf(b), 'a'], [b, idOf(a), 'b']];
  const msgCount = await Promise.all([a, b].map(async (p) => (await messagesOf(p)).length));
  const decoded0 = await Promise.all(pairs.map(async ([p, pid]) => byId(await remoteOf(p))[pid].framesDecoded));
  const t0 = await Promise.all([a, b].map(now));

  await trigger(h, admin);
  const drainedAt = Date.now();

  await waitFor(async () => (await status(h.baseUrl, '/readyz')) === 503, {
    timeout: 5000, interval: 50, message: '/readyz to answer 503 once the drain started',
  });
  assert.equal(await status(h.baseUrl, '/healthz'), 200, '/healthz must stay 200 while draining');
  const node = await nodeStatus(h.baseUrl, admin);
  assert.equal(node.state, 'draining', `GET /api/node: ${JSON.stringify(node)}`);
  assert.equal(node.participants, 2, `GET /api/node: ${JSON.stringify(node)}`);

  // The running call: 5 s of continuous decoding on both sides.
  await Promise.all([a, b].map((p, i) => waitPageClock(p, t0[i] + WINDOW_MS + 100)));
  const figures = [];
  for (const [i, [page, pid, name]] of pairs.entries()) {
    const g = await frameGap(page, pid, t0[i], t0[i] + WINDOW_MS);
    const decoded = byId(await remoteOf(page))[pid];
    assert.ok(decoded, `${name} must still show its peer`);
    assert.ok(decoded.framesDecoded >= decoded0[i] + 20,
      `${name}: framesDecoded must keep increasing during the drain (${decoded0[i]} -> ${decoded.framesDecoded})`);
    assert.ok(g.frames >= 20, `${name}: only ${g.frames} frames presented in the ${WINDOW_MS} ms after the drain started`);
    assert.ok(g.gap <= MAX_FRAME_GAP_MS,
      `${name}: largest gap between presented frames ${Math.round(g.gap)} ms (> ${MAX_FRAME_GAP_MS}) ${g.at}; ${g.frames} frames in ${WINDOW_MS} ms;`
      + ` messages since the drain: ${JSON.stringify((await messagesOf(page)).slice(msgCount[i]))}`);
    const since = (await messagesOf(page)).slice(msgCount[i]).filter((m) => DISTURBING.has(m.type));
    assert.deepEqual(since, [], `${name} must get no reconnect/removed/participant_left/error during the drain`);
    figures.push(`${name}: ${g.frames} frames, max gap ${Math.round(g.gap)} ms`);
  }
  // While the call still runs on the draining node, a page asking for another room is refused
  // with `draining` (checked after the timed window: a third page starting its camera loads a
  // 2-core machine enough to delay frames).
  const c = await h.open(`${room}-new`, 'c', { timeout: JOIN_TIMEOUT, waitJoined: false });
  const refusal = await waitFor(
    () => c.evaluate(() => (window.sfuDemo.lastError && window.sfuDemo.lastError.code === 'draining' ? window.sfuDemo.lastError : null)),
    { timeout: 15000, message: 'the page joining a new room to get error `draining`' },
  );
  assert.equal(typeof refusal.message, 'string');
  const cMessages = await messagesOf(c);
  assert.ok(cMessages.some((m) => m.type === 'error' && m.code === 'draining'), `c's messages: ${JSON.stringify(cMessages)}`);
  assert.ok(!cMessages.some((m) => m.type === 'joined'), `c must not join a new room on a draining node: ${JSON.stringify(cMessages)}`);
  assert.equal(await c.evaluate(() => window.sfuDemo.participantId), null);
  await h.closePage(c); // stops its retries

  assert.equal(h.server.exited(), null, 'the node must keep running while its call lasts');
  assert.equal((await nodeStatus(h.baseUrl, admin)).participants, 2);

  // Both leave: the node exits 0 within a few seconds.
  await a.evaluate(() => window.sfuDemo.leave());
  const leftAt = Date.now(); // the node may be gone before the second evaluate() returns
  await b.evaluate(() => window.sfuDemo.leave());
  const ex = await withTimeout(h.server.exitPromise, EXIT_WITHIN_MS, `the node to exit within ${EXIT_WITHIN_MS} ms after the last participant left`);
  const exitMs = Date.now() - leftAt;
  assert.deepEqual({ code: ex.code, signal: ex.signal }, { code: 0, signal: null }, 'the drained node must exit with code 0');
  const line = `drain (${room}): ${figures.join('; ')} in the ${WINDOW_MS} ms after the drain; `
    + `exit 0 ${exitMs} ms after the last leave (${Date.now() - drainedAt} ms after the drain started)`;
  console.log(line);
  return line;
}

function sigterm(h) {
  process.kill(h.server.proc.pid, 'SIGTERM');
}

async function apiDrain(h, admin) {
  const res = await fetch(new URL('/api/node/drain', h.baseUrl), {
    method: 'POST',
    headers: { authorization: `Bearer ${admin}` },
    signal: AbortSignal.timeout(5000),
  });
  const body = await res.json();
  assert.equal(res.status, 202, `POST /api/node/drain: ${JSON.stringify(body)}`);
  assert.equal(body.state, 'draining');
}

test('a) SIGTERM: the running call keeps decoding, new rooms are refused, exit 0 when empty', async () => {
  const h = await startHarness();
  await h.diagnose(() => drainScenario(h, 'drain-sigterm', sigterm));
});

test('b) POST /api/node/drain: the running call keeps decoding, new rooms are refused, exit 0 when empty', async () => {
  const h = await startHarness();
  await h.diagnose(async () => {
    // without a token the drain is refused and nothing changes
    assert.equal(await status(h.baseUrl, '/api/node/drain', { method: 'POST' }), 401);
    assert.equal(await status(h.baseUrl, '/readyz'), 200);
    await drainScenario(h, 'drain-api', apiDrain);
  });
});

/** The page's last `reconnect` message, if any. */
const reconnectOf = (page) => page.evaluate(() => window.sfuDemo.messages.filter((m) => m.type === 'reconnect').pop() || null);

test('c) drain deadline: participants are told to reconnect, the page rejoins, exit 0', async () => {
  const h = await startHarness({ extraArgs: ['--drain-deadline', `${DEADLINE_S}s`] });
  await h.diagnose(async () => {
    const [a, b] = await conference(h, 'drain-deadline');
    for (const p of [a, b]) await p.evaluate(() => { window.__wsBeforeDrain = window.sfuDemo.ws; });
    sigterm(h);
    const drainedAt = Date.now();
    await waitFor(async () => (await status(h.baseUrl, '/readyz')) === 503, { timeout: 5000, interval: 50, message: '/readyz 503' });

    const outcomes = await Promise.all([['a', a], ['b', b]].map(async ([name, page]) => {
      const msg = await waitFor(() => reconnectOf(page), {
        timeout: DEADLINE_S * 1000 + 15000, interval: 100, message: `${name} to receive reconnect after the ${DEADLINE_S} s deadline`,
      });
      const after = Date.now() - drainedAt;
      assert.ok(after >= DEADLINE_S * 1000 - 200, `${name} got reconnect ${after} ms after the drain, before the ${DEADLINE_S} s deadline`);
      assert.equal(typeof msg.reason, 'string');
      assert.ok(Number.isInteger(msg.delay_ms) && msg.delay_ms >= 0 && msg.delay_ms < 60000, `delay_ms: ${JSON.stringify(msg)}`);
      // The page acts on it: after delay_ms it opens a new socket to the same URL and joins again.
      await waitFor(() => page.evaluate(() => window.sfuDemo.reconnects >= 1), {
        timeout: msg.delay_ms + 10000, message: `${name}: sfuDemo.reconnects to increment after reconnect ${JSON.stringify(msg)}`,
      });
      // The rejoin goes to this same, dying node: refused with `draining`, or the node is gone already.
      const outcome = await waitFor(() => page.evaluate(() => {
        const d = window.sfuDemo;
        if (d.ws === window.__wsBeforeDrain) return null;
        if (d.ws.url !== window.__wsBeforeDrain.url) return { badUrl: d.ws.url };
        if (d.lastError && d.lastError.code === 'draining') return { refused: 'draining' };
        if (d.ws.readyState === WebSocket.CLOSED) return { refused: 'connection failed (node gone)' };
        return null;
      }), { timeout: 15000, message: `${name}: the rejoin attempt to be refused` });
      assert.equal(outcome.badUrl, undefined, `${name} must rejoin through the same URL`);
      return `${name}: reconnect after ${after} ms (delay_ms ${msg.delay_ms}), rejoin ${outcome.refused}`;
    }));
    const ex = await withTimeout(h.server.exitPromise, 15000, 'the node to exit after evacuating');
    assert.deepEqual({ code: ex.code, signal: ex.signal }, { code: 0, signal: null }, 'exit code after the drain deadline');
    console.log(`drain deadline ${DEADLINE_S}s: ${outcomes.join('; ')}; exit 0 ${Date.now() - drainedAt} ms after the drain started`);
  });
});

/**
 * A TCP load balancer on 127.0.0.1: every new connection goes to the first backend whose
 * /readyz answers 200 (signaling and pages only; media goes to each node's own UDP port).
 */
async function startBalancer(backends) {
  const sockets = new Set();
  const server = net.createServer(async (client) => {
    sockets.add(client);
    client.on('close', () => sockets.delete(client));
    client.on('error', () => {});
    client.pause();
    let target = null;
    for (const b of backends()) {
      try {
        if ((await status(b.baseUrl, '/readyz')) === 200) { target = b; break; }
      } catch (_) { /* down */ }
    }
    if (!target || client.destroyed) { client.destroy(); return; }
    const [host, port] = target.httpAddr.split(':');
    const upstream = net.connect(Number(port), host);
    sockets.add(upstream);
    upstream.on('close', () => { sockets.delete(upstream); client.destroy(); });
    upstream.on('error', () => client.destroy());
    client.on('close', () => upstream.destroy());
    client.pipe(upstream);
    upstream.pipe(client);
    client.resume();
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    baseUrl: `http://127.0.0.1:${server.address().port}`,
    close: () => new Promise((resolve) => { for (const s of sockets) s.destroy(); server.close(() => resolve()); }),
  };
}

test('d) drain deadline behind a load balancer: the rejoin lands on the other node and the call resumes', async () => {
  const nodeA = await startServer({ extraArgs: ['--drain-deadline', `${DEADLINE_S}s`] });
  cleanups.push(() => nodeA.stop());
  const nodeB = await startServer({ extraArgs: [] });
  cleanups.push(() => nodeB.stop());
  let pool = [nodeA];
  const lb = await startBalancer(() => pool);
  cleanups.push(() => lb.close());
  const browser = await launchBrowser();
  cleanups.push(() => withTimeout(browser.close(), 20000, 'closing the browser'));
  // The Harness API (open, diagnose) with the balancer's URL and both nodes' logs.
  const h = new Harness();
  h.browser = browser;
  h.server = { baseUrl: lb.baseUrl, stderrTail: () => `--- node A ---\n${nodeA.stderrTail(120)}\n--- node B ---\n${nodeB.stderrTail(120)}`, exited: () => nodeA.exited() };
  await h.diagnose(async () => {
    const admin = await adminToken(nodeA.bin);
    const [a, b] = await conference(h, 'moving');
    const before = { a: idOf(a), b: idOf(b) };
    assert.equal((await nodeStatus(nodeA.baseUrl, admin)).participants, 2, 'the call starts on node A');
    pool = [nodeA, nodeB]; // B, the new version, joins the pool; A drains
    process.kill(nodeA.proc.pid, 'SIGTERM');
    const drainedAt = Date.now();
    for (const [name, page] of [['a', a], ['b', b]]) {
      await waitFor(() => page.evaluate(() => window.sfuDemo.reconnects >= 1), {
        timeout: DEADLINE_S * 1000 + 15000, message: `${name} to be told to reconnect and rejoin`,
      });
    }
    // Both rejoin through the balancer, land on B and decode each other again.
    for (const page of [a, b]) {
      await withTimeout(page.evaluate(() => window.sfuDemo.joined.then(() => true)), 20000, `${infoOf(page).name} to rejoin`);
    }
    const ids = {};
    for (const [name, page] of [['a', a], ['b', b]]) {
      ids[name] = await page.evaluate(() => window.sfuDemo.participantId);
      assert.ok(ids[name] && ids[name] !== before[name], `${name} must have a new participant id on node B (${ids[name]})`);
      infoOf(page).participantId = ids[name];
    }
    await Promise.all([expectReceiving(a, ids.b), expectReceiving(b, ids.a)]);
    const resumedMs = Date.now() - drainedAt;
    const onB = await nodeStatus(nodeB.baseUrl, admin);
    assert.deepEqual([onB.rooms, onB.participants], [1, 2], `node B must hold the moved call: ${JSON.stringify(onB)}`);
    const ex = await withTimeout(nodeA.exitPromise, 15000, 'node A to exit after evacuating');
    assert.deepEqual({ code: ex.code, signal: ex.signal }, { code: 0, signal: null }, 'node A exit code');
    assert.equal(nodeB.exited(), null, 'node B keeps serving');
    console.log(`drain deadline behind a balancer: the call decodes again on node B ${resumedMs} ms after node A's drain started`
      + ` (deadline ${DEADLINE_S} s); node A exited 0`);
    for (const page of [a, b]) await page.evaluate(() => window.sfuDemo.leave());
  });
});
