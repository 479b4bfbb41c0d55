// Firefox against the SFU, and Firefox <-> Chromium interop: one Firefox participant (headless
// firefox-esr, puppeteer-core over WebDriver BiDi) and one Chromium participant (playwright-core,
// as in conference.test.mjs) in room FX. The tests run in order and share the participants; each
// reopens what it needs if an earlier one failed.
// Skipped, with the reason, when Firefox (FIREFOX_PATH, default /usr/bin/firefox-esr) or
// puppeteer-core is not installed. The whole file is bounded to 90 s (25-35 s when it works).

import assert from 'node:assert/strict';
import fs from 'node:fs';
import { after, before, describe, test } from 'node:test';
import {
  Harness, byId, expectReceiving as expectReceivingIn, firefoxPath, infoOf, launchFirefox, messagesOf, openParticipant, remoteOf, waitFor, withTimeout,
} from './harness.mjs';

const ROOM = 'FX';
const JOIN_TIMEOUT = 20000;
const MEDIA_TIMEOUT = 25000; // first frames: ICE + DTLS + keyframe, on a loaded 2-core machine
const SWITCH_TIMEOUT = 15000;
const SWITCH_UP_TIMEOUT = 25000; // asking for f: Firefox may not send h yet (once ~10 s after joining, loaded)
const LEAVE_TIMEOUT = 10000;

async function skipReason() {
  const ff = firefoxPath();
  if (!fs.existsSync(ff)) {
    return `Firefox not found at ${ff} (Debian: apt-get install firefox-esr; or set FIREFOX_PATH)`;
  }
  try {
    await import('puppeteer-core');
  } catch (err) {
    return `puppeteer-core is not installed (npm ci in tests/browser): ${err && err.message}`;
  }
  return false;
}
const skip = await skipReason();

let h; // server + Chromium
let firefox; // puppeteer Browser
const pages = {}; // name -> page (Firefox pages: puppeteer, Chromium pages: Playwright)
const ffContexts = new Map(); // Firefox page -> its browser context
const idOf = (name) => infoOf(pages[name]).participantId;

async function openFirefox(name) {
  const context = await firefox.createBrowserContext();
  try {
    const page = await openParticipant(context, h.baseUrl, ROOM, name, { timeout: JOIN_TIMEOUT });
    ffContexts.set(page, context);
    h.pages.add(page); // its console log goes into h.diagnostics()
    return page;
  } catch (err) {
    const page = (await context.pages().catch(() => []))[0];
    const info = page && infoOf(page);
    if (info) err.message += `\n--- ${name} (Firefox) console ---\n${info.logs.join('\n')}`;
    await context.close().catch(() => {});
    throw err;
  }
}

/** Opens `name` if it is not open: names starting with "ff" in Firefox, others in Chromium. */
async function ensure(name) {
  if (!pages[name] || pages[name].isClosed()) {
    pages[name] = name.startsWith('ff') ? await openFirefox(name) : await h.open(ROOM, name, { timeout: JOIN_TIMEOUT });
  }
  return pages[name];
}

/** Leaves the room through the demo page's API, then closes the page's browser context. */
async function leave(name) {
  const page = pages[name];
  delete pages[name];
  if (!page) return;
  await withTimeout(page.evaluate(() => window.sfuDemo.leave()), 5000, `${name} leaving`).catch(() => {});
  const context = ffContexts.get(page);
  if (context) {
    ffContexts.delete(page);
    h.pages.delete(page);
    await withTimeout(context.close(), 10000, `closing ${name}'s Firefox context`).catch(() => {});
  } else {
    await h.closePage(page);
  }
}

/** Server stderr, console logs and, for Firefox pages, the peer connection states. */
async function diagnose(fn) {
  try {
    return await fn();
  } catch (err) {
    let extra = '';
    for (const [name, page] of Object.entries(pages)) {
      if (!ffContexts.has(page)) continue;
      const st = await withTimeout(page.evaluate(() => {
        const pcs = window.sfuDemo.peerConnections();
        const one = (pc) => pc && { connection: pc.connectionState, ice: pc.iceConnectionState, signaling: pc.signalingState };
        return { publisher: one(pcs.publisher), subscriber: one(pcs.subscriber) };
      }), 3000, 'peer connection states').catch((e) => `unavailable: ${e.message}`);
      extra += `\n--- ${name} (Firefox) peer connections: ${JSON.stringify(st)}`;
    }
    if (err && typeof err === 'object') err.message += extra;
    return h.diagnose(() => { throw err; });
  }
}


/**
 * Waits until `viewer` decodes video (width > 0) and receives audio from every participant id in
 * `from`, then until framesDecoded and audioBytes grew again for all of them.
 */
const expectReceiving = (viewer, from, opts = {}) => expectReceivingIn(viewer, from, { timeout: MEDIA_TIMEOUT, ...opts });

async function remoteIds(page) {
  return (await remoteOf(page)).map((r) => r.participant).sort();
}

/** The TrackInfos of `pid` that `viewer` was told about (joined, participant_joined, track_published). */
async function trackInfosOf(viewer, pid) {
  const out = [];
  for (const m of await messagesOf(viewer)) {
    if (m.type === 'joined') {
      for (const p of m.participants || []) if (p.id === pid) out.push(...(p.tracks || []));
    } else if (m.type === 'participant_joined' && m.participant && m.participant.id === pid) {
      out.push(...(m.participant.tracks || []));
    } else if (m.type === 'track_published' && m.participant === pid && m.track) {
      out.push(m.track);
    }
  }
  return out;
}

/**
 * Asks `viewer` for layer `layer` of `pid`'s video and waits until the server confirmed one of
 * `okLayers` (remote().layer, from layer_changed) and the frames presented during the last second,
 * all after the request, have one width for which `accept(width)` holds. Returns that layer and
 * width and how long it took.
 */
async function switchLayer(viewer, pid, layer, {
  okLayers = [layer], accept = (w) => w > 0, label = '> 0', timeout = SWITCH_TIMEOUT,
} = {}) {
  const who = infoOf(viewer).name;
  const tReq = await viewer.evaluate(([p, l]) => {
    const t = performance.now();
    window.sfuDemo.setLayer(p, l);
    return t;
  }, [pid, layer]);
  const probe = () => viewer.evaluate(async ([p, t0]) => {
    const r = (await window.sfuDemo.remote()).find((x) => x.participant === p) || {};
    const now = performance.now();
    const recent = window.sfuDemo.frameLog(p).filter((e) => e.t > t0 && e.t >= now - 1000);
    return {
      now, layer: r.layer, count: recent.length, first: recent.length ? recent[0].t : null, widths: [...new Set(recent.map((e) => e.width))],
    };
  }, [pid, tReq]);
  let last;
  return waitFor(async () => {
    last = await probe();
    const ok = okLayers.includes(last.layer) && last.count >= 5 && last.first <= last.now - 700
      && last.widths.length === 1 && last.widths[0] > 0 && accept(last.widths[0]);
    return ok && { layer: last.layer, width: last.widths[0], ms: Math.round(last.now - tReq) };
  }, {
    timeout,
    interval: 200,
    message: () => `${who}: after setLayer('${layer}') for ${pid}, layer_changed to ${okLayers.join(' or ')}`
      + ` and 1 s of frames at one width ${label} (last: ${JSON.stringify(last)})`,
  });
}

/**
 * The publisher's outbound video per rid: width, frames encoded, kbit/s over ~1 s (bytesSent,
 * which includes retransmissions and padding), qualityLimitationReason; and Chromium's bandwidth
 * estimate.
 */
async function sendLayers(publisher) {
  const snap = () => publisher.evaluate(async () => {
    const pc = window.sfuDemo.peerConnections().publisher;
    const out = {};
    if (pc) {
      (await pc.getStats()).forEach((s) => {
        if (s.type === 'outbound-rtp' && s.kind === 'video') {
          out[s.rid || '-'] = {
            w: s.frameWidth || 0, frames: s.framesEncoded || 0, bytes: s.bytesSent || 0, t: s.timestamp, limit: s.qualityLimitationReason,
          };
        } else if (s.type === 'candidate-pair' && s.nominated && s.availableOutgoingBitrate) {
          out.bwe = { bwe: Math.round(s.availableOutgoingBitrate / 1000) }; // kbit/s (Chromium only)
        }
      });
    }
    return out;
  });
  const a = await snap();
  await new Promise((r) => setTimeout(r, 1000));
  const b = await snap();
  return Object.fromEntries(Object.entries(b).map(([rid, x]) => {
    if (rid === 'bwe') return ['bweKbps', x.bwe];
    const y = a[rid];
    const kbps = y && x.t > y.t ? Math.round(((x.bytes - y.bytes) * 8) / (x.t - y.t)) : null;
    return [rid, { width: x.w, framesEncoded: x.frames, kbps, limit: x.limit }];
  }));
}

/**
 * q -> high -> q on `viewer` for `publisher`'s video, where "high" asks for f. The server forwards
 * the highest layer at most f that the publisher sends: Firefox may send only q and h for a while
 * after joining (its bandwidth estimate ramps up; f came up to ~30 s late in some runs), so h
 * counts as the answer to f. Senders also adapt resolutions to the CPU load (Firefox's h was as
 * small as its q for a while in one run), so only relative widths are asserted: larger after
 * asking for f than on q, smaller again after asking for q. Also checks the layer_changed messages.
 */
async function checkLayerSwitches(viewer, publisher) {
  const who = infoOf(viewer).name;
  const pid = infoOf(publisher).participantId;
  const pub = infoOf(publisher).name;
  let q1;
  let hi;
  let q2;
  try {
    q1 = await switchLayer(viewer, pid, 'q');
    hi = await switchLayer(viewer, pid, 'f', {
      okLayers: ['f', 'h'], accept: (w) => w > q1.width, label: `> ${q1.width} (layer q)`, timeout: SWITCH_UP_TIMEOUT,
    });
    q2 = await switchLayer(viewer, pid, 'q', { accept: (w) => w < hi.width, label: `< ${hi.width} (layer ${hi.layer})` });
  } catch (err) {
    err.message += `\n${pub}'s outbound video per rid: ${JSON.stringify(await sendLayers(publisher).catch((e) => e.message))}`;
    throw err;
  }
  console.log(`${who} <- ${pub}: layer q ${q1.width} px; asked for f: layer ${hi.layer} ${hi.width} px after ${hi.ms} ms;`
    + ` q again ${q2.width} px after ${q2.ms} ms. ${pub} sends ${JSON.stringify(await sendLayers(publisher))}`);

  const track = (byId(await remoteOf(viewer))[pid] || {}).videoTrack;
  const layers = (await messagesOf(viewer)).filter((m) => m.type === 'layer_changed' && m.track === track).map((m) => m.layer);
  assert.ok(layers.includes(hi.layer), `${who} must have received layer_changed {layer: "${hi.layer}"} for ${pub}'s video ${track}; got ${JSON.stringify(layers)}`);
  assert.equal(layers[layers.length - 1], 'q', `${who}: the last layer_changed for ${pub}'s video must be "q"; got ${JSON.stringify(layers)}`);
  // Back to size-driven subscriptions.
  await viewer.evaluate((p) => window.sfuDemo.setLayer(p, null), pid);
}

/** `viewer` shows `gone` no more (no remote entry, no tile) and was told participant_left. */
async function expectGone(viewer, gone, what) {
  await waitFor(async () => {
    const ids = await remoteIds(viewer);
    const tile = await viewer.evaluate((id) => !!document.querySelector(`.tile[data-participant="${id}"]`), gone);
    return !ids.includes(gone) && !tile;
  }, {
    timeout: LEAVE_TIMEOUT,
    message: async () => {
      const msgs = (await messagesOf(viewer)).filter((m) => JSON.stringify(m).includes(gone)).map((m) => m.type);
      return `${what}: the tile to disappear within ${LEAVE_TIMEOUT / 1000} s (remote(): ${JSON.stringify(await remoteOf(viewer))};`
        + ` messages naming ${gone}: ${msgs.join(', ')})`;
    },
  });
  const left = (await messagesOf(viewer)).some((m) => m.type === 'participant_left' && m.participant === gone);
  assert.ok(left, `${what}: participant_left for ${gone} must have been received`);
}

// A skipped test rather than a skipped suite, so that the runner counts it ("# skipped 1").
if (skip) test('firefox interop', { skip }, () => {});
else describe('firefox', { timeout: 90000 }, () => {
  before(async () => {
    h = await Harness.start();
    try {
      firefox = await launchFirefox();
    } catch (err) {
      await h.close();
      h = null;
      throw err;
    }
  });

  after(async () => {
    if (firefox) await withTimeout(firefox.close(), 15000, 'closing Firefox').catch(() => {});
    if (h) await h.close();
  });

  test('a) Firefox and Chromium decode each other\'s video and receive each other\'s audio', () => diagnose(async () => {
    await Promise.all([ensure('ff'), ensure('cr')]);
    const ids = { ff: idOf('ff'), cr: idOf('cr') };
    assert.notEqual(ids.ff, ids.cr, 'participant ids must be distinct');
    await Promise.all([expectReceiving(pages.ff, [ids.cr]), expectReceiving(pages.cr, [ids.ff])]);
    for (const [n, other] of [['ff', 'cr'], ['cr', 'ff']]) {
      const r = await remoteOf(pages[n]);
      assert.equal(r.length, 1, `${n} must have exactly 1 remote tile, has ${JSON.stringify(r)}`);
      assert.equal(r[0].name, other, `${n} must show ${other}`);
      assert.ok(r[0].hasVideo && r[0].hasAudio, `${n} must have live audio and video of ${other}: ${JSON.stringify(r[0])}`);
    }
  }));

  test('b) Firefox publishes simulcast q/h/f and Chromium switches between its layers', () => diagnose(async () => {
    const [ff, cr] = [await ensure('ff'), await ensure('cr')];
    const ffId = idOf('ff');
    // Firefox's own view: three RTP encodings with rids q, h, f on the camera sender.
    const enc = await ff.evaluate(() => {
      const pc = window.sfuDemo.peerConnections().publisher;
      const s = pc && pc.getSenders().find((x) => x.track && x.track.kind === 'video');
      return s ? s.getParameters().encodings.map((e) => e.rid) : null;
    });
    assert.deepEqual(enc, ['q', 'h', 'f'], 'Firefox must send the camera as encodings q, h, f');
    // The server's view: the TrackInfo it announces for Firefox's video lists the three layers.
    const info = await waitFor(async () => (await trackInfosOf(cr, ffId)).find((t) => t.kind === 'video'), {
      timeout: 10000, message: `cr to be told about ${ffId}'s video track`,
    });
    assert.deepEqual([...info.layers].sort(), ['f', 'h', 'q'], `the server must announce Firefox's video with layers q, h, f: ${JSON.stringify(info)}`);
    await expectReceiving(cr, [ffId]);
    await checkLayerSwitches(cr, ff);
    await expectReceiving(cr, [ffId], { minFrames: 5 });
  }));

  test('c) Firefox follows layer switches of Chromium\'s simulcast video', () => diagnose(async () => {
    const [ff, cr] = [await ensure('ff'), await ensure('cr')];
    const crId = idOf('cr');
    await expectReceiving(ff, [crId]);
    await checkLayerSwitches(ff, cr);
    await expectReceiving(ff, [crId], { minFrames: 5 });
  }));

  test('d) a participant that leaves disappears from the other, Firefox <-> Chromium', () => diagnose(async () => {
    await ensure('ff');
    await ensure('cr');
    const ffId = idOf('ff');
    const crId = idOf('cr');
    // Both sides are fully set up (media flowing) before anyone leaves: a subscriber offer still
    // being answered when participant_left arrives made older demo pages bring the tile back.
    await Promise.all([expectReceiving(pages.cr, [ffId], { minFrames: 1 }), expectReceiving(pages.ff, [crId], { minFrames: 1 })]);
    await leave('ff');
    await expectGone(pages.cr, ffId, 'Chromium after Firefox left');
    assert.deepEqual(await remoteIds(pages.cr), [], 'cr must show nobody after ff left');

    // The other direction, with a new Firefox participant.
    const ff2 = await ensure('ff2');
    await Promise.all([expectReceiving(ff2, [crId], { minFrames: 1 }), expectReceiving(pages.cr, [idOf('ff2')], { minFrames: 1 })]);
    await leave('cr');
    await expectGone(ff2, crId, 'Firefox after Chromium left');
    assert.deepEqual(await remoteIds(ff2), [], 'ff2 must show nobody after cr left');
  }));
});
