// A real downlink cap: one Chromium participant runs in a network namespace this test creates,
// behind a veth pair whose server-to-browser direction is shaped with `tc tbf` (600 kbit/s).
// Three Chromium participants publish 720p simulcast (q/h/f); the capped one and an uncapped
// one ask for every remote video's top layer. The capped one must end up decoding every
// remote video on lower layers at a usable frame rate with few freezes; once the cap is
// lifted it must be back on the top layers; the uncapped one keeps the top layers throughout.
// Needs root, `ip` and `tc` (iproute2): without them the test is skipped, saying why.
// Without the privileges to make the namespace it is skipped, saying why.
//
// Not in the suite (`npm test` runs *.test.mjs): under the whole suite's load on two cores the
// figures swing too much for a bar (docs/BWE.md), so it is a measurement run:
// `cd tests/browser && node --test capped.run.mjs` (CAPPED_TRACE=1 also prints the capped
// viewer's REST downlink every 500 ms). It asserts what held in every run alone: behind the
// cap no top layer at the end and at least one video always at >= 10 fps after 15 s; once the
// cap is lifted the upper layers back within 45 s. It prints the rest: when one, two and all
// three videos reach 10 fps, the windows with all three there, the freezes after convergence.

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { after, before, describe, test } from 'node:test';
import { Harness, launchBrowser, openParticipant, waitFor } from './harness.mjs';
import { BrowserNamespace } from './netns.mjs';

const ns = new BrowserNamespace('sfucap', '10.213.7');
const CAP_KBIT = 600;
const MEDIA_TIMEOUT = 30000;

/** The server-to-browser direction of the namespace's link: shaped, or not. */
const cap = (kbit) => BrowserNamespace.host('tc', 'qdisc', 'replace', 'dev', ns.hostIf, 'root', 'tbf', 'rate', `${kbit}kbit`, 'burst', '4kb', 'latency', '200ms');
const uncap = () => BrowserNamespace.host('tc', 'qdisc', 'del', 'dev', ns.hostIf, 'root');

/** Per remote participant of `page`: {participant, layer, frames}. */
const remotes = (page) => page.evaluate(async () => (await window.sfuDemo.remote())
  .map((r) => ({ participant: r.participant, layer: r.layer, frames: r.framesDecoded })));

/** Frames per second of each remote over `ms`. */
async function rates(page, ms) {
  const a = await remotes(page);
  await new Promise((r) => setTimeout(r, ms));
  const b = await remotes(page);
  return b.map((x) => {
    const before = a.find((y) => y.participant === x.participant);
    return { participant: x.participant, layer: x.layer, fps: ((x.frames - (before ? before.frames : 0)) * 1000) / ms };
  });
}

/** Seconds of freeze per remote in the frame log: the part of every gap between presented
 * frames beyond 300 ms. */
const freezes = (page, pids) => page.evaluate((pids) => pids.map((pid) => {
  const log = window.sfuDemo.frameLog(pid);
  let frozen = 0;
  for (let i = 1; i < log.length; i++) frozen += Math.max(0, log[i].t - log[i - 1].t - 300);
  return { pid, frames: log.length, frozen_s: frozen / 1000 };
}), pids);

/** Samples the REST view of participant `name` every 500 ms until `stop()`: its downlink
 * (estimate, acknowledged rate, loss) and each subscription's layer and temporal layer. */
function sampleDownlink(h, admin, room, name) {
  const rows = [];
  const t0 = Date.now();
  let running = true;
  const loop = (async () => {
    while (running) {
      try {
        const res = await fetch(`${h.server.baseUrl}/api/rooms/${room}/participants`, { headers: { authorization: `Bearer ${admin}` } });
        const list = await res.json();
        const p = (list.participants || list).find((x) => x.name === name || x.identity === name);
        if (p && p.downlink) {
          const d = p.downlink;
          const subs = (p.subscriptions || []).filter((s) => s.layer !== undefined).map((s) => `${s.layer || '-'}${s.temporal_layer ?? ''}`);
          rows.push(`${Date.now() - t0} ms: estimate ${d.estimate_bps} acked ${d.acked_bps} loss ${d.loss_permille}/1000 rtt ${d.rtt_ms} probing ${d.probing} queue ${d.pacer_queue_bytes} subs ${subs.join(' ')}`);
        }
      } catch (_) { /* the next sample */ }
      await new Promise((r) => setTimeout(r, 500));
    }
  })();
  return { rows, stop: async () => { running = false; await loop; } };
}

/** The server's counters whose names start with `prefix`, summed over labels. */
async function counters(baseUrl, prefix) {
  const text = await (await fetch(`${baseUrl}/metrics`)).text();
  const out = {};
  for (const line of text.split('\n')) {
    const m = line.match(/^([a-z_]+)(\{[^}]*\})? ([0-9.e+]+)$/);
    if (m && m[1].startsWith(prefix)) out[m[1]] = (out[m[1]] || 0) + Number(m[3]);
  }
  return out;
}

const setAllTop = (page, pids) => page.evaluate((pids) => { for (const pid of pids) window.sfuDemo.setLayer(pid, 'f'); }, pids);

const why = BrowserNamespace.unavailable(['ip', 'tc']);

describe('capped downlink', { skip: why || false }, () => {
  let h;
  let cappedBrowser;
  let setupError = null;
  before(async () => {
    // no CAP_NET_ADMIN here (a container): nothing to test with
    setupError = ns.setUp();
    if (setupError) return;
    // a camera needs a secure context: the server's address is not localhost here
    const secure = (server) => [`--unsafely-treat-insecure-origin-as-secure=${server.baseUrl}`];
    // the publishers' cameras at 30 fps, as real ones (the fake one's default is 20): the
    // temporal layers the allocator steps through are fractions of it
    const camera30 = ['--use-fake-device-for-media-stream=fps=30'];
    h = await Harness.start({ host: ns.hostIp, browserArgs: (server) => [...secure(server), ...camera30] });
    cappedBrowser = await launchBrowser(ns.wrapper, secure(h.server));
  });
  after(async () => {
    if (cappedBrowser) await cappedBrowser.close().catch(() => {});
    if (h) await h.close();
    ns.tearDown();
  });

  test('a viewer behind 600 kbit/s gets videos on lower layers, then the upper layers once the cap is lifted', (t) => {
    if (setupError) {
      t.skip(setupError);
      return undefined;
    }
    return h.diagnose(async () => {
      const pubs = [];
      for (const n of ['p1', 'p2', 'p3']) pubs.push(await h.open('CAP', n));
      const ids = await Promise.all(pubs.map((p) => p.evaluate(() => window.sfuDemo.participantId)));
      const fast = pubs[0];
      const othersOfFast = ids.slice(1);
      await setAllTop(fast, othersOfFast);
      cap(CAP_KBIT);
      const context = await cappedBrowser.newContext({ viewport: { width: 1280, height: 720 } });
      const admin = execFileSync(h.server.bin, ['token', '--dev', '--identity', 'ops', '--admin']).toString().trim();
      const sampler = sampleDownlink(h, admin, 'CAP', 'slow');
      const slow = await openParticipant(context, h.baseUrl, 'CAP', 'slow', { timeout: 30000 });
      h.pages.add(slow);
      await setAllTop(slow, ids);
      const joined = Date.now();
      // 40 s behind the cap, in 2 s windows: frame rates and layers of the three remote videos
      const windows = [];
      let frameLogFrom = null;
      while (Date.now() - joined < 40000) {
        if (frameLogFrom === null && Date.now() - joined >= 15000) {
          // freezes are counted after convergence
          await slow.evaluate(() => window.sfuDemo.resetFrameLog());
          frameLogFrom = Date.now() - joined;
        }
        const r = await rates(slow, 2000);
        windows.push({ t: Date.now() - joined, fps: r.map((x) => x.fps), layers: r.map((x) => x.layer), downlink: await slow.evaluate(() => window.sfuDemo.downlinkBps) });
      }
      for (const w of windows) console.log(`capped viewer ${w.t} ms: fps ${JSON.stringify(w.fps)} layers ${JSON.stringify(w.layers)} downlink ${w.downlink}`);
      const frozen = await freezes(slow, ids);
      console.log(`capped viewer freezes (gaps over 300 ms) from ${frameLogFrom} ms to ${Date.now() - joined} ms: ${JSON.stringify(frozen)}`);
      console.log(`server counters: ${JSON.stringify(await counters(h.server.baseUrl, 'sfu_bwe_'))}`);
      const flowing = (w, n) => w.fps.filter((f) => f >= 10).length >= n;
      const first = (n) => (windows.find((w) => flowing(w, n)) || { t: null }).t;
      const late = windows.filter((w) => w.t > 15000);
      console.log(`capped viewer: >= 1 video at 10 fps after ${first(1)} ms, >= 2 after ${first(2)} ms, all 3 after ${first(3)} ms; from 15 s on, windows with all 3 at >= 10 fps: ${late.filter((w) => flowing(w, 3)).length}/${late.length}, with >= 2: ${late.filter((w) => flowing(w, 2)).length}/${late.length}`);
      const layers = await remotes(slow);
      assert.ok(layers.every((x) => x.layer !== 'f'), `no top layer through 600 kbit/s: ${JSON.stringify(layers)}`);
      assert.ok(late.every((w) => flowing(w, 1)), 'at least one video flows at >= 10 fps throughout');
      // (on a 2-core machine the publishers' Chromium may drop its top layer for CPU: reported)
      console.log(`uncapped viewer while the other is capped: layers ${JSON.stringify((await remotes(fast)).map((x) => x.layer))}`);
      // the cap lifted: back on the top layers
      uncap();
      const lifted = Date.now();
      try {
        await waitFor(async () => {
        const r = await remotes(slow);
        return r.length === 3 && r.every((x) => x.layer === 'f' || x.layer === 'h') && r.some((x) => x.layer === 'f');
        }, { timeout: 45000, interval: 250, message: 'the viewer back on the upper layers after the cap is lifted' });
      } finally {
        await sampler.stop();
        if (process.env.CAPPED_TRACE === '1') for (const r of sampler.rows) console.log(`slow downlink ${r}`);
      }
      console.log(`capped viewer back on the upper layers ${Date.now() - lifted} ms after the cap was lifted: ${JSON.stringify((await remotes(slow)).map((x) => x.layer))}`);
      console.log(`uncapped viewer at the end: layers ${JSON.stringify((await remotes(fast)).map((x) => x.layer))}`);
    });
  });
});

if (why) console.log(`# capped downlink test skipped: ${why}`);
