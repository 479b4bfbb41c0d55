// End-to-end conference tests: real Chromium clients (sfu/static/app.js) against the SFU binary.
// The tests run in order and share participants: a, b, c in room R1 (c leaves in test b),
// x, y in room R2 (test d). Each test reopens what it needs if an earlier one failed.
// Note: `node --test --test-timeout=180000` also applies the timeout to the whole file, so all
// tests together must finish in 3 minutes (about 30 s when everything works); waits are sized
// so that a first failure is still reported with its diagnostics.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { Harness, byId, expectReceiving as expectReceivingIn, infoOf, messagesOf, outboundVideo, remoteOf, waitFor } from './harness.mjs';

const JOIN_TIMEOUT = 20000;
const MEDIA_TIMEOUT = 30000; // first frames: ICE + DTLS + keyframe, on a loaded 2-core machine
const MAX_FRAME_GAP_MS = 300;

let h;
const pages = {}; // name -> page
const idOf = (name) => infoOf(pages[name]).participantId;

async function ensure(room, name) {
  if (!pages[name] || pages[name].isClosed()) {
    pages[name] = await h.open(room, name, { timeout: JOIN_TIMEOUT });
  }
  return pages[name];
}

async function drop(name) {
  if (pages[name]) await h.closePage(pages[name]);
  delete pages[name];
}


const expectReceiving = (viewer, from, opts = {}) => expectReceivingIn(viewer, from, { timeout: MEDIA_TIMEOUT, ...opts });

async function remoteIds(page) {
  return (await remoteOf(page)).map((r) => r.participant).sort();
}

describe('conference', () => {
  before(async () => {
    // Layers as asked, not capped by the downlink estimate: these tests are about switching
    // and presenting; the estimate sometimes stays under the top layer's rate for 30 s and
    // more on a loaded loopback (dynacast then stops the layer at the publisher), an open
    // problem of the estimator with its own tests (sfu/tests/bwe_downlink.rs, dynacast).
    h = await Harness.start({ extraArgs: ['--bwe-allocate', 'false'] });
  });

  after(async () => {
    if (h) await h.close();
  });

  test('a) three participants in R1 decode video and receive audio from both others', () => h.diagnose(async () => {
    for (const n of ['a', 'b', 'c']) await ensure('R1', n);
    const ids = { a: idOf('a'), b: idOf('b'), c: idOf('c') };
    assert.equal(new Set(Object.values(ids)).size, 3, `participant ids must be distinct: ${JSON.stringify(ids)}`);
    await Promise.all(['a', 'b', 'c'].map((n) => {
      const others = ['a', 'b', 'c'].filter((o) => o !== n).map((o) => ids[o]);
      return expectReceiving(pages[n], others);
    }));
    for (const n of ['a', 'b', 'c']) {
      const r = await remoteOf(pages[n]);
      assert.equal(r.length, 2, `${n} must have exactly 2 remote tiles, has ${JSON.stringify(r)}`);
      for (const p of r) {
        assert.ok(p.hasVideo && p.hasAudio, `${n} must have live audio and video of ${p.name}: ${JSON.stringify(p)}`);
        assert.ok(['a', 'b', 'c'].includes(p.name), `${n}: unexpected remote name ${p.name}`);
      }
    }
  }));

  test('b) a participant that leaves disappears from the others within 10 s', () => h.diagnose(async () => {
    for (const n of ['a', 'b', 'c']) await ensure('R1', n);
    const [a, b] = [pages.a, pages.b];
    const cId = idOf('c');
    // Make sure a and b see c before it leaves, otherwise the test proves nothing.
    await waitFor(async () => (await remoteIds(a)).includes(cId) && (await remoteIds(b)).includes(cId), {
      timeout: JOIN_TIMEOUT, message: 'a and b to show c before it leaves',
    });
    await pages.c.evaluate(() => window.sfuDemo.leave());
    await drop('c');
    for (const [n, p] of [['a', a], ['b', b]]) {
      await waitFor(async () => {
        const ids = await remoteIds(p);
        const tile = await p.$(`.tile[data-participant="${cId}"]`);
        return !ids.includes(cId) && !tile;
      }, { timeout: 10000, message: `${n} to drop c's tile within 10 s after c left` });
      const left = (await messagesOf(p)).some((m) => m.type === 'participant_left' && m.participant === cId);
      assert.ok(left, `${n} must have received participant_left for c (${cId})`);
    }
    await Promise.all([expectReceiving(a, [idOf('b')]), expectReceiving(b, [idOf('a')])]);
    assert.deepEqual(await remoteIds(a), [idOf('b')], 'a must only show b after c left');
    assert.deepEqual(await remoteIds(b), [idOf('a')], 'b must only show a after c left');
  }));

  test('c) switching layers q <-> f changes the width without a gap in presented frames', () => h.diagnose(async () => {
    const a = await ensure('R1', 'a');
    const b = await ensure('R1', 'b');
    const bId = idOf('b');
    await expectReceiving(a, [bId]);

    const frames = (since = 0) => a.evaluate(([pid, t]) => window.sfuDemo.frameLog(pid).filter((e) => e.t >= t), [bId, since]);
    const now = () => a.evaluate(() => performance.now());
    const big = (w) => w >= 960;
    const small = (w) => w > 0 && w <= 640;

    // Start from f (the tile's own size would pick q), so both switches below are real changes.
    await a.evaluate((pid) => window.sfuDemo.setLayer(pid, 'f'), bId);
    await waitFor(async () => {
      const t = await now();
      // 1 s of large frames, so the measured window below starts on layer f.
      const recent = await frames(t - 1200);
      return recent.length >= 5 && recent[0].t <= t - 1000 && recent.every((e) => big(e.width));
    }, {
      timeout: MEDIA_TIMEOUT,
      interval: 250,
      message: async () => `a to present >= 1 s of frames of b at width >= 960 after asking for layer f`
        + ` (widths of the last second: ${[...new Set((await frames((await now()) - 1000)).map((e) => e.width))].join(',') || 'no frames'};`
        + ` a receives ${JSON.stringify(byId(await remoteOf(a))[bId])}, downlink estimate ${await a.evaluate(() => window.sfuDemo.downlinkBps)};`
        + ` b sends ${JSON.stringify(await outboundVideo(b))})`,
    });

    async function switchTo(layer, isTarget, label) {
      const tReq = await a.evaluate(([pid, l]) => {
        const t = performance.now();
        window.sfuDemo.setLayer(pid, l);
        return t;
      }, [bId, layer]);
      const tChange = await waitFor(async () => {
        const hit = (await frames(tReq)).find((e) => e.t > tReq && isTarget(e.width));
        return hit ? hit.t : null;
      }, {
        timeout: 20000,
        interval: 100,
        message: async () => {
          const log = await frames(tReq);
          return `the presented width of b to become ${label} after setLayer('${layer}')`
            + ` (widths since: ${[...new Set(log.map((e) => e.width))].join(',') || 'no frames'})`;
        },
      });
      const end = tChange + 3000;
      await waitFor(async () => (await now()) >= end + 100, { timeout: 10000, interval: 250, message: 'page clock' });
      const start = tReq - 1000;
      const win = (await frames(start)).filter((e) => e.t <= end);
      assert.ok(win.length > 0, `no frames of b presented between 1 s before setLayer('${layer}') and 3 s after the switch`);
      let gap = win[0].t - start;
      let at = `between the window start and the first frame (width ${win[0].width})`;
      for (let i = 1; i < win.length; i++) {
        const d = win[i].t - win[i - 1].t;
        if (d > gap) {
          gap = d;
          at = `between frames of width ${win[i - 1].width} and ${win[i].width}, ${Math.round(win[i].t - tReq)} ms after the request`;
        }
      }
      const tail = end - win[win.length - 1].t;
      if (tail > gap) {
        gap = tail;
        at = 'between the last frame and the window end';
      }
      assert.ok(gap <= MAX_FRAME_GAP_MS,
        `switch to layer ${layer}: largest gap between presented frames was ${Math.round(gap)} ms (> ${MAX_FRAME_GAP_MS}) ${at};`
        + ` switch took ${Math.round(tChange - tReq)} ms, ${win.length} frames in the ${Math.round(end - start)} ms window`);
      // Reported, not asserted beyond the limit above: the figure for performance notes.
      console.log(`switch to layer ${layer}: first new frame ${Math.round(tChange - tReq)} ms after the request, `
        + `largest frame gap ${Math.round(gap)} ms (${at})`);
      const last = win[win.length - 1].width;
      assert.ok(isTarget(last), `after switching to ${layer} the width must stay ${label}, last frame width ${last}`);
    }

    await switchTo('q', small, '<= 640');
    await switchTo('f', big, '>= 960');

    const track = await a.evaluate((pid) => window.sfuDemo.remote()
      .then((list) => (list.find((r) => r.participant === pid) || {}).videoTrack), bId);
    const layers = (await messagesOf(a)).filter((m) => m.type === 'layer_changed' && m.track === track).map((m) => m.layer);
    assert.ok(layers.includes('q'), `a must have received layer_changed {layer: "q"} for b's video ${track}; got ${JSON.stringify(layers)}`);
    assert.equal(layers[layers.length - 1], 'f', `the last layer_changed for b's video must be "f"; got ${JSON.stringify(layers)}`);
    const r = byId(await remoteOf(a))[bId];
    assert.equal(r.layer, 'f', `remote().layer of b must be "f", got ${JSON.stringify(r)}`);

    // Back to size-driven subscriptions (a small tile: less decoding for the next tests).
    await a.evaluate((pid) => window.sfuDemo.setLayer(pid, null), bId);
  }));

  test('d) room R2 is isolated from room R1', () => h.diagnose(async () => {
    const a = await ensure('R1', 'a');
    const b = await ensure('R1', 'b');
    const x = await ensure('R2', 'x');
    const y = await ensure('R2', 'y');
    const r1 = [idOf('a'), idOf('b')];
    const r2 = [idOf('x'), idOf('y')];
    await Promise.all([expectReceiving(x, [idOf('y')]), expectReceiving(y, [idOf('x')])]);
    assert.deepEqual(await remoteIds(x), [idOf('y')], 'x (R2) must see only y');
    assert.deepEqual(await remoteIds(y), [idOf('x')], 'y (R2) must see only x');
    await Promise.all([expectReceiving(a, [idOf('b')]), expectReceiving(b, [idOf('a')])]);
    assert.deepEqual(await remoteIds(a), [idOf('b')], 'a (R1) must see only b, no R2 participant');
    assert.deepEqual(await remoteIds(b), [idOf('a')], 'b (R1) must see only a, no R2 participant');

    await drop('x');
    await drop('y');
    // a and b keep decoding each other (that takes a moment, during which leaks would show up).
    await Promise.all([expectReceiving(a, [idOf('b')]), expectReceiving(b, [idOf('a')])]);
    for (const [n, p] of [['a', a], ['b', b]]) {
      const text = JSON.stringify(await messagesOf(p));
      for (const id of r2) {
        assert.ok(!text.includes(id), `${n} (R1) must never hear of R2 participant ${id}`);
      }
      assert.ok(!/"name":"[xy]"/.test(text), `${n} (R1) must never hear of the R2 names x/y`);
    }
    assert.ok(r1.every(Boolean) && r2.every(Boolean), 'participant ids must be known');
  }));

  test('e) bad input on the WebSocket is answered with errors and the session goes on', () => h.diagnose(async () => {
    const a = await ensure('R1', 'a');
    const b = await ensure('R1', 'b');
    const bId = idOf('b');
    await expectReceiving(a, [bId]);

    const cases = [
      { what: 'malformed JSON', code: 'bad_json', make: () => '{"type": "subscription", "track": ' },
      { what: 'an unknown type', code: 'unknown_type', make: () => JSON.stringify({ type: 'no_such_message' }) },
      {
        what: 'a 100 KiB text frame',
        code: 'too_large',
        make: () => JSON.stringify({ type: 'subscription', track: 'TR_none', pad: 'x'.repeat(100 * 1024) }),
      },
      { what: 'an offer with garbage SDP', code: 'bad_sdp', make: () => JSON.stringify({ type: 'offer', sdp: 'this is not SDP\r\n' }) },
    ];
    for (const c of cases) {
      const payload = c.make();
      const before = await a.evaluate((p) => {
        const n = window.sfuDemo.messages.length;
        window.sfuDemo.ws.send(p);
        return n;
      }, payload);
      const err = await waitFor(
        () => a.evaluate((n) => window.sfuDemo.messages.slice(n).find((m) => m.type === 'error'), before),
        { timeout: 10000, message: `an error message after sending ${c.what}` },
      );
      assert.equal(err.code, c.code, `sending ${c.what} must give error code ${c.code}, got ${JSON.stringify(err)}`);
      assert.equal(typeof err.message, 'string', `the error for ${c.what} must have a message string`);
      const state = await a.evaluate(() => window.sfuDemo.ws.readyState);
      assert.equal(state, 1, `the WebSocket must stay open after ${c.what} (readyState ${state})`);
      const lastError = await a.evaluate(() => window.sfuDemo.lastError);
      assert.equal(lastError && lastError.code, c.code, 'sfuDemo.lastError must be the last error');
    }
    await expectReceiving(a, [bId]);
    await expectReceiving(pages.b, [idOf('a')]);
    assert.deepEqual(await remoteIds(a), [bId], 'a must still show b after the bad input');
  }));
});
