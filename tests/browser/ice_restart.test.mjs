// ICE restart mid-call (a network change): `restartIce()` on the demo page restarts both of its
// connections (the publisher offers with new credentials; the server answers `ice_restart` with
// a new subscriber offer carrying new credentials of its own). Both connections end up on the
// new credentials, the other participant sees no leave, and neither side's video stalls: the
// largest gap between presented frames across the restart stays under 2 s.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { Harness, expectReceiving, waitFor } from './harness.mjs';

/** The ICE ufrags of the page's connections: local and remote, per connection. */
const ufrags = (page) => page.evaluate(() => {
  const of = (d) => (d && /a=ice-ufrag:(\S+)/.exec(d.sdp) || [])[1] || null;
  const out = {};
  for (const [role, pc] of Object.entries(window.sfuDemo.peerConnections())) {
    out[role] = { local: of(pc.currentLocalDescription), remote: of(pc.currentRemoteDescription), ice: pc.iceConnectionState };
  }
  return out;
});

/** Frames `page` presented of `pid` since its log was reset, and the largest gap between two. */
const frameGaps = (page, pid) => page.evaluate((pid) => {
  const log = window.sfuDemo.frameLog(pid);
  let gap = 0;
  for (let i = 1; i < log.length; i++) gap = Math.max(gap, log[i].t - log[i - 1].t);
  return { frames: log.length, maxGapMs: Math.round(gap) };
}, pid);

describe('ice restart', () => {
  let h;
  before(async () => { h = await Harness.start(); });
  after(async () => { if (h) await h.close(); });

  test('restarting ICE mid-call moves both connections to new credentials without a stall', () => h.diagnose(async () => {
    const a = await h.open('RESTART', 'a');
    const b = await h.open('RESTART', 'b');
    const [aId, bId] = await Promise.all([a, b].map((p) => p.evaluate(() => window.sfuDemo.participantId)));
    await expectReceiving(a, [bId]);
    await expectReceiving(b, [aId]);
    const before = await ufrags(a);
    await Promise.all([a, b].map((p) => p.evaluate(() => window.sfuDemo.resetFrameLog())));

    const asked = Date.now();
    assert.equal(await a.evaluate(() => window.sfuDemo.restartIce()), true);
    const after = await waitFor(async () => {
      const u = await ufrags(a);
      const moved = u.publisher.local !== before.publisher.local && u.subscriber.remote !== before.subscriber.remote
        && u.subscriber.local !== before.subscriber.local;
      const up = ['connected', 'completed'].includes(u.publisher.ice) && ['connected', 'completed'].includes(u.subscriber.ice);
      return moved && up && u;
    }, {
      timeout: 10000,
      interval: 100,
      message: async () => `new credentials on both connections (before ${JSON.stringify(before)}, now ${JSON.stringify(await ufrags(a))})`,
    });
    console.log(`both connections restarted and connected ${Date.now() - asked} ms after restartIce()`);
    assert.equal(after.publisher.remote, before.publisher.remote, 'the server keeps its publisher credentials (it answered)');

    // 4 s of media across the restart, both ways
    await new Promise((r) => setTimeout(r, 4000));
    for (const [viewer, pid, who] of [[b, aId, 'b sees a'], [a, bId, 'a sees b']]) {
      const g = await frameGaps(viewer, pid);
      console.log(`${who}: ${g.frames} frames, largest gap ${g.maxGapMs} ms across the restart`);
      assert.ok(g.frames >= 30, `${who}: frames presented across the restart: ${JSON.stringify(g)}`);
      assert.ok(g.maxGapMs < 2000, `${who}: largest gap between frames: ${JSON.stringify(g)}`);
    }
    const left = await b.evaluate(() => window.sfuDemo.messages.filter((m) => m.type === 'participant_left').length);
    assert.equal(left, 0, 'nobody left');
    const metrics = await (await fetch(new URL('/metrics', h.baseUrl))).text();
    assert.match(metrics, /^sfu_ice_restarts_total 1$/m);
  }));
});
