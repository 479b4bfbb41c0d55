// WHIP from a real browser: Chromium publishes its fake camera (three simulcast layers) and
// microphone to `POST /whip/{room}` with nothing but fetch and an RTCPeerConnection (no
// trickle: the offer carries its candidates, as OBS sends it); a participant on the demo page
// sees the WHIP publisher join under the name it gave and decodes its video and audio; DELETE on
// the session's Location makes it leave.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { Harness, expectReceiving, messagesOf, waitFor } from './harness.mjs';

/** Publishes from `page` through WHIP into `room` as `name`; returns the session's Location. */
async function whipPublish(page, room, name) {
  return page.evaluate(async ({ room, name }) => {
    const stream = await navigator.mediaDevices.getUserMedia({ audio: true, video: { width: 1280, height: 720 } });
    const pc = new RTCPeerConnection();
    pc.addTransceiver(stream.getAudioTracks()[0], { direction: 'sendonly' });
    pc.addTransceiver(stream.getVideoTracks()[0], {
      direction: 'sendonly',
      sendEncodings: [{ rid: 'q', scaleResolutionDownBy: 4 }, { rid: 'h', scaleResolutionDownBy: 2 }, { rid: 'f' }],
    });
    await pc.setLocalDescription(await pc.createOffer());
    await new Promise((resolve) => {
      if (pc.iceGatheringState === 'complete') resolve();
      pc.addEventListener('icegatheringstatechange', () => pc.iceGatheringState === 'complete' && resolve());
    });
    const res = await fetch(`/whip/${room}?name=${encodeURIComponent(name)}`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/sdp' },
      body: pc.localDescription.sdp,
    });
    if (res.status !== 201) throw new Error(`WHIP POST: ${res.status} ${await res.text()}`);
    await pc.setRemoteDescription({ type: 'answer', sdp: await res.text() });
    window.whip = { pc, location: res.headers.get('Location') };
    return window.whip.location;
  }, { room, name });
}

describe('whip', () => {
  let h;
  before(async () => {
    h = await Harness.start();
  });
  after(async () => {
    if (h) await h.close();
  });

  test('a browser publishes through WHIP and a participant of the room receives it', () => h.diagnose(async () => {
    const context = await h.browser.newContext();
    try {
      const encoder = await context.newPage();
      await encoder.goto(`${h.baseUrl}/healthz`);
      const location = await whipPublish(encoder, 'WHIP', 'studio');
      assert.match(location, /^\/whip\/WHIP\/WH_/);
      await waitFor(() => encoder.evaluate(() => window.whip.pc.connectionState === 'connected'), {
        timeout: 20000, message: 'the WHIP connection to connect',
      });

      const viewer = await h.open('WHIP', 'viewer');
      const studio = await waitFor(async () => {
        const ms = await messagesOf(viewer);
        const joined = ms.find((m) => m.type === 'joined');
        const all = [...(joined ? joined.participants : []), ...ms.filter((m) => m.type === 'participant_joined').map((m) => m.participant)];
        return all.find((p) => p.name === 'studio');
      }, { timeout: 10000, message: 'the viewer to see the WHIP publisher' });
      await expectReceiving(viewer, [studio.id]);

      const status = await encoder.evaluate(async () => (await fetch(window.whip.location, { method: 'DELETE' })).status);
      assert.equal(status, 200);
      await waitFor(async () => (await messagesOf(viewer)).some((m) => m.type === 'participant_left' && m.participant === studio.id), {
        timeout: 10000, message: 'the viewer to see the WHIP publisher leave',
      });
    } finally {
      await context.close();
    }
  }));
});
