// H264: Chromium publishes H264 simulcast (`?codec=h264` on the demo page); the SFU forwards it
// without payload rewriting, including a keyframe-gated layer switch.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { Harness, outboundVideo, waitFor } from './harness.mjs';

const MEDIA_TIMEOUT = 30000;

/** The codec and frame width of the video `viewer` receives from `pid` (subscriber stats). */
async function inboundVideo(viewer, pid) {
  return viewer.evaluate(async (pid) => {
    const remote = (await window.sfuDemo.remote()).find((r) => r.participant === pid);
    const pc = window.sfuDemo.peerConnections().subscriber;
    if (!remote || !pc) return null;
    const stats = await pc.getStats();
    let codec = null;
    stats.forEach((r) => {
      if (r.type === 'inbound-rtp' && r.kind === 'video' && r.codecId) {
        const c = stats.get(r.codecId);
        if (c && (r.framesDecoded || 0) > 0) codec = c.mimeType;
      }
    });
    return {
      codec, width: remote.videoWidth, frames: remote.framesDecoded, layer: remote.layer,
      downlinkBps: window.sfuDemo.downlinkBps,
    };
  }, pid);
}

describe('h264', () => {
  let h;
  before(async () => { h = await Harness.start(); });
  after(async () => { if (h) await h.close(); });

  test('two Chromium participants exchange H264 simulcast and switch layers', () => h.diagnose(async () => {
    const a = await h.open('H264', 'a', { params: { codec: 'h264' } });
    const b = await h.open('H264', 'b', { params: { codec: 'h264' } });
    const bId = await b.evaluate(() => window.sfuDemo.participantId);
    const aId = await a.evaluate(() => window.sfuDemo.participantId);
    for (const [viewer, pid, who] of [[a, bId, 'a'], [b, aId, 'b']]) {
      const v = await waitFor(async () => {
        const s = await inboundVideo(viewer, pid);
        return s && s.codec && s.frames > 10 && s.width > 0 && s;
      }, { timeout: MEDIA_TIMEOUT, interval: 250, message: `${who} to decode video of the other` });
      assert.equal(v.codec.toLowerCase(), 'video/h264', `${who} must receive H264, got ${v.codec}`);
    }
    // keyframe-gated switch: ask for the smallest, then the largest layer
    for (const [layer, ok, label] of [['q', (w) => w > 0 && w <= 640, '<= 640'], ['f', (w) => w >= 960, '>= 960']]) {
      await a.evaluate(([pid, l]) => window.sfuDemo.setLayer(pid, l), [bId, layer]);
      const asked = Date.now();
      let seen = null;
      const v = await waitFor(async () => {
        const s = await inboundVideo(a, bId);
        seen = s;
        return s && ok(s.width) && s.layer === layer && s;
      }, {
        // generous: on a loaded 2-core machine the server's estimate of a's downlink can see
        // congestion (two browsers encoding and decoding 720p H264 delay their own packet
        // timestamps) and hold upgrades for a while; the diagnostics tell which side waited
        timeout: 60000,
        interval: 250,
        message: async () => `a to receive b's H264 video at width ${label} after asking for ${layer}; `
          + `a receives ${JSON.stringify(seen)}; b sends ${JSON.stringify(await outboundVideo(b).catch(() => null))}`,
      });
      assert.equal(v.codec.toLowerCase(), 'video/h264');
      // how long the switch took: the top layer waits for b's bandwidth estimate to allow it
      console.log(`layer ${layer} (width ${v.width}) ${Date.now() - asked} ms after asking`);
    }
  }));
});
