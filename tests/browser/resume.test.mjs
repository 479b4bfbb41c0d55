// Session resume with real Chromium participants (sfu/static/app.js): two participants reach
// the server through a TCP proxy (signaling only; media goes straight to the server's UDP
// port). The proxy then cuts every connection without a WebSocket close, as a network change
// does: the page opens a new socket and sends `resume` with its session's token, the server
// gives the session back (same participant id, no participant_left for anyone), and the media,
// which never depended on the socket, is still decoded on both sides.

import assert from 'node:assert/strict';
import net from 'node:net';
import { after, before, test } from 'node:test';
import { Harness, byId, expectReceiving, infoOf, messagesOf, openParticipant, remoteOf, waitFor } from './harness.mjs';

const JOIN_TIMEOUT = 20000;
const MEDIA_TIMEOUT = 30000;

let h;
let proxy;

/** A TCP proxy to `addr` (`host:port`) whose `cut()` drops every connection at once. */
async function startProxy(addr) {
  const sockets = new Set();
  const [host, port] = addr.split(':');
  const server = net.createServer((client) => {
    const upstream = net.connect(Number(port), host);
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on('close', () => sockets.delete(s));
      s.on('error', () => {});
    }
    upstream.on('close', () => client.destroy());
    client.on('close', () => upstream.destroy());
    client.pipe(upstream);
    upstream.pipe(client);
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    baseUrl: `http://127.0.0.1:${server.address().port}`,
    cut: () => { for (const s of sockets) s.destroy(); },
    close: () => new Promise((resolve) => { for (const s of sockets) s.destroy(); server.close(() => resolve()); }),
  };
}

before(async () => {
  h = await Harness.start();
  proxy = await startProxy(h.server.httpAddr);
});

after(async () => {
  if (proxy) await proxy.close();
  if (h) await h.close();
});

test('a dropped signaling socket is resumed and the call goes on', () => h.diagnose(async () => {
  const open = async (name) => {
    const context = await h.browser.newContext({ viewport: { width: 1280, height: 720 } });
    const page = await openParticipant(context, proxy.baseUrl, 'resume', name, { timeout: JOIN_TIMEOUT });
    h.pages.add(page);
    return page;
  };
  const a = await open('a');
  const b = await open('b');
  const [ida, idb] = [infoOf(a).participantId, infoOf(b).participantId];
  await expectReceiving(a, [idb], { timeout: MEDIA_TIMEOUT });
  await expectReceiving(b, [ida], { timeout: MEDIA_TIMEOUT });
  for (const p of [a, b]) {
    await waitFor(async () => (await messagesOf(p)).some((m) => m.type === 'session'), { message: 'a session message' });
  }

  proxy.cut();
  for (const p of [a, b]) {
    await waitFor(() => p.evaluate(() => window.sfuDemo.resumes), { timeout: 10000, message: `${infoOf(p).name} resumed` });
  }
  // the same participants, nobody left, the media still decoded
  assert.equal(await a.evaluate(() => window.sfuDemo.participantId), ida);
  for (const p of [a, b]) {
    const left = (await messagesOf(p)).filter((m) => m.type === 'participant_left');
    assert.deepEqual(left, [], `${infoOf(p).name} saw nobody leave`);
  }
  await expectReceiving(a, [idb], { timeout: MEDIA_TIMEOUT });
  await expectReceiving(b, [ida], { timeout: MEDIA_TIMEOUT });
  const r = byId(await remoteOf(a))[idb];
  assert.ok(r && r.framesDecoded > 0, 'a decodes b after the resume');
  const metrics = await (await fetch(new URL('/metrics', h.baseUrl))).text();
  assert.match(metrics, /sfu_signaling_resumes_total 2/);
}));
