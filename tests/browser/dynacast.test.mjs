// Dynacast and the downlink estimate in Chromium: when the only viewer of a's video asks for
// its lowest layer, the server tells a (`publish_layers`) and a's page stops encoding the
// other simulcast layers (encodings[i].active = false, no more bytes sent on them); when the
// viewer asks for the top layer again, a resumes it and the viewer receives it. Both pages
// learn the server's estimate of their downlink (`bandwidth`).

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { Harness, waitFor } from './harness.mjs';

const MEDIA_TIMEOUT = 30000;

/** a's video encodings: rid -> { active, bytesSent } (sender parameters and outbound stats). */
async function encodings(page) {
  return page.evaluate(async () => {
    const pc = window.sfuDemo.peerConnections().publisher;
    if (!pc) return null;
    const sender = pc.getSenders().find((s) => s.track && s.track.kind === 'video');
    if (!sender) return null;
    const out = {};
    for (const e of sender.getParameters().encodings || []) out[e.rid] = { active: e.active !== false, bytesSent: 0 };
    (await pc.getStats()).forEach((r) => {
      if (r.type === 'outbound-rtp' && r.kind === 'video' && r.rid && out[r.rid]) out[r.rid].bytesSent = r.bytesSent;
    });
    return out;
  });
}

const publishLayers = (page) => page.evaluate(() => window.sfuDemo.messages
  .filter((m) => m.type === 'publish_layers').map((m) => m.active));

describe('dynacast', () => {
  let h;
  before(async () => { h = await Harness.start(); });
  after(async () => { if (h) await h.close(); });

  test('a layer nobody receives stops at the publisher and comes back when asked for', () => h.diagnose(async () => {
    const a = await h.open('DYN', 'a');
    const b = await h.open('DYN', 'b');
    const aId = await a.evaluate(() => window.sfuDemo.participantId);
    const layerOf = () => b.evaluate(async (pid) => {
      const r = (await window.sfuDemo.remote()).find((x) => x.participant === pid);
      return r && r.framesDecoded > 0 ? r.layer : null;
    }, aId);
    await waitFor(layerOf, { timeout: MEDIA_TIMEOUT, message: 'b to decode a\'s video' });
    await b.evaluate((pid) => window.sfuDemo.setLayer(pid, 'q'), aId);
    await waitFor(async () => (await publishLayers(a)).some((l) => l.length === 1 && l[0] === 'q'), {
      timeout: 15000, message: 'a told to encode only q',
    });
    const e1 = await waitFor(async () => {
      const e = await encodings(a);
      return e && e.q && e.q.active && !e.h.active && !e.f.active && e;
    }, { timeout: 5000, message: 'a\'s h and f encodings inactive' });
    await new Promise((r) => setTimeout(r, 1500));
    const e2 = await encodings(a);
    assert.equal(e2.f.bytesSent, e1.f.bytesSent, `no bytes on f while it is off: ${JSON.stringify([e1, e2])}`);
    assert.ok(e2.q.bytesSent > e1.q.bytesSent, `q keeps going: ${JSON.stringify([e1, e2])}`);
    // the viewer asks for f: a resumes it and the viewer gets it
    const asked = Date.now();
    await b.evaluate((pid) => window.sfuDemo.setLayer(pid, 'f'), aId);
    await waitFor(async () => (await layerOf()) === 'f', { timeout: 15000, interval: 100, message: 'b back on f' });
    console.log(`f back at the viewer ${Date.now() - asked} ms after asking; publish_layers: ${JSON.stringify(await publishLayers(a))}`);
    const e3 = await encodings(a);
    assert.ok(e3.f.active, `a encodes f again: ${JSON.stringify(e3)}`);
    for (const [page, who] of [[a, 'a'], [b, 'b']]) {
      const bps = await waitFor(() => page.evaluate(() => window.sfuDemo.downlinkBps), {
        timeout: 10000, message: `${who} to learn its downlink estimate`,
      });
      assert.ok(bps > 100000, `${who}'s downlink estimate ${bps}`);
    }
  }));
});
