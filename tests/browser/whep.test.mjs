// WHEP in a real browser: a participant publishes from the demo page as `studio`; the player
// page the node serves (/watch?room=R&source=studio) offers one audio and one video section to
// POST /whep/R and plays what comes back in a plain <video>. The player decodes video and
// receives audio, and the publisher is never told about it (players are not participants the
// room shows).

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { Harness, messagesOf, waitFor } from './harness.mjs';

/** The player's inbound video frames decoded, video width and audio bytes. */
async function playing(page) {
  return page.evaluate(async () => {
    const w = window.sfuWatch;
    if (!w || !w.pc) return { error: w && w.error };
    const out = { frames: 0, width: 0, audioBytes: 0, error: w.error, connection: w.connection };
    for (const r of (await w.pc.getStats()).values()) {
      if (r.type !== 'inbound-rtp') continue;
      if (r.kind === 'video') {
        out.frames = r.framesDecoded || 0;
        out.width = r.frameWidth || 0;
      } else if (r.kind === 'audio') {
        out.audioBytes = r.bytesReceived || 0;
      }
    }
    out.videoWidth = document.getElementById('video').videoWidth;
    return out;
  });
}

describe('whep', () => {
  let h;
  before(async () => {
    h = await Harness.start();
  });
  after(async () => {
    if (h) await h.close();
  });

  test('the /watch page plays a participant of the room through WHEP', () => h.diagnose(async () => {
    const studio = await h.open('WATCH', 'studio');
    const context = await h.browser.newContext();
    try {
      const player = await context.newPage();
      await player.goto(`${h.baseUrl}/watch?room=WATCH&source=studio`);
      const first = await waitFor(async () => {
        const p = await playing(player);
        return p.frames > 10 && p.videoWidth > 0 && p.audioBytes > 0 && p;
      }, { timeout: 30000, message: async () => `the player to decode (${JSON.stringify(await playing(player))})` });
      await waitFor(async () => {
        const p = await playing(player);
        return p.frames > first.frames + 20 && p.audioBytes > first.audioBytes && p;
      }, { timeout: 15000, message: 'the player to keep decoding' });
      const location = await player.evaluate(() => window.sfuWatch.location);
      assert.match(location, /^\/whep\/WATCH\/WE_/);
      const joined = (await messagesOf(studio)).filter((m) => m.type === 'participant_joined');
      assert.deepEqual(joined, [], 'the player is not announced');
    } finally {
      await context.close();
    }
  }));
});
