// A fleet of three sfu binaries sharing a redis-server (started here, on a loopback port):
// three Chromium participants open the same room through three different nodes. They meet in
// one room (on one node; the others relay their signaling, media goes straight to the room's
// node), each decodes the other two's video and receives their audio, and a layer switch
// asked through a relay takes effect.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import net from 'node:net';
import { after, before, test } from 'node:test';
import { byId, expectReceiving, infoOf, launchBrowser, openParticipant, remoteOf, startServer, waitFor } from './harness.mjs';

const JOIN_TIMEOUT = 20000;
const MEDIA_TIMEOUT = 30000;
const ROOM = 'fleet';

let redis;
const nodes = [];
let browser;
const pages = [];

/** A free loopback TCP port. */
function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

/** redis-server on `port`, no persistence; resolves once it accepts connections. */
async function startRedis(port) {
  const proc = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], {
    stdio: 'ignore',
  });
  process.once('exit', () => proc.kill('SIGKILL'));
  await waitFor(() => new Promise((resolve) => {
    const c = net.connect(port, '127.0.0.1', () => { c.destroy(); resolve(true); });
    c.once('error', () => resolve(false));
  }), { timeout: 10000, message: `redis-server listening on ${port} (apt-get install redis-server)` });
  return proc;
}

async function metric(node, name) {
  const text = await (await fetch(new URL('/metrics', node.baseUrl), { signal: AbortSignal.timeout(5000) })).text();
  const line = text.split('\n').find((l) => l.startsWith(`${name} `));
  return line ? Number(line.split(' ')[1]) : 0;
}

before(async () => {
  const port = await freePort();
  redis = await startRedis(port);
  const args = ['--redis', `redis://127.0.0.1:${port}/0`, '--fleet-heartbeat', '200ms', '--fleet-prefix', 'browser-fleet:'];
  for (let i = 0; i < 3; i++) nodes.push(await startServer({ extraArgs: args }));
  await waitFor(async () => (await metric(nodes[0], 'sfu_fleet_nodes')) === 3, { timeout: 10000, message: 'three nodes in the directory' });
  browser = await launchBrowser();
});

after(async () => {
  if (browser) await browser.close().catch(() => {});
  for (const n of nodes) await n.stop().catch(() => {});
  if (redis) redis.kill('SIGKILL');
});

async function diagnose(fn) {
  try {
    await fn();
  } catch (err) {
    for (const p of pages) {
      const info = infoOf(p);
      err.message += `\n--- console of ${info.name} ---\n${info.logs.slice(-40).join('\n')}`;
    }
    nodes.forEach((n, i) => { err.message += `\n--- node ${i} stderr ---\n${n.stderrTail(40)}`; });
    throw err;
  }
}

test('participants joining one room through three nodes see and hear each other, and switch layers', () => diagnose(async () => {
  for (const [i, name] of ['a', 'b', 'c'].entries()) {
    const context = await browser.newContext({ viewport: { width: 1280, height: 720 } });
    pages.push(await openParticipant(context, nodes[i].baseUrl, ROOM, name, { timeout: JOIN_TIMEOUT }));
  }
  const ids = pages.map((p) => infoOf(p).participantId);
  for (const [i, page] of pages.entries()) {
    await expectReceiving(page, ids.filter((_, j) => j !== i), { timeout: MEDIA_TIMEOUT });
  }
  // one room on one node; two sessions relayed to it
  const participants = await Promise.all(nodes.map((n) => metric(n, 'sfu_participants')));
  const relayed = await Promise.all(nodes.map((n) => metric(n, 'sfu_fleet_relayed_sessions')));
  assert.deepEqual([...participants].sort(), [0, 0, 3], `participants per node: ${participants}`);
  assert.equal(relayed.reduce((a, b) => a + b, 0), 2, `relayed sessions per node: ${relayed}`);

  // c (relayed) asks for a's smallest layer, then for the largest
  const c = pages[2];
  for (const [layer, wide] of [['q', (w) => w > 0 && w <= 320], ['f', (w) => w >= 960]]) {
    await c.evaluate(([pid, l]) => window.sfuDemo.setLayer(pid, l), [ids[0], layer]);
    await waitFor(async () => {
      const r = byId(await remoteOf(c))[ids[0]];
      return r && wide(r.videoWidth);
    }, {
      timeout: MEDIA_TIMEOUT,
      interval: 250,
      message: async () => `c to decode a at layer ${layer} (remote(): ${JSON.stringify(byId(await remoteOf(c))[ids[0]])})`,
    });
  }
}));
