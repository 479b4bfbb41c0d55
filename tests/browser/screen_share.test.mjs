// Screen share on the demo page: a participant shares (a canvas stream stands in for the screen:
// the server and the other page only see what the page says and sends), the other participant
// learns the track is a share (`track_published` with source `screen`), shows it in place of
// the camera in a tile spanning the grid, and decodes it at the share's size; when the share
// stops, the tile goes back to the camera.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { Harness, messagesOf, remoteOf, byId, waitFor } from './harness.mjs';

describe('screen share', () => {
  let h;
  before(async () => {
    h = await Harness.start();
  });
  after(async () => {
    if (h) await h.close();
  });

  test('a share is announced as a screen, shown large and decoded; stopping it brings the camera back', () => h.diagnose(async () => {
    const presenter = await h.open('SHARE', 'presenter');
    const viewer = await h.open('SHARE', 'viewer');
    const presenterId = await presenter.evaluate(() => window.sfuDemo.participantId);
    const shown = async () => {
      const r = byId(await remoteOf(viewer))[presenterId];
      const screen = await viewer.evaluate((id) => {
        const tile = document.querySelector(`.tile[data-participant="${id}"]`);
        return !!tile && tile.classList.contains('screen');
      }, presenterId);
      return { width: r && r.videoWidth, frames: r && r.framesDecoded, screen };
    };
    // the camera's layers are 320, 640 or 1280 wide; the share is 800
    const camera = (w) => [320, 640, 1280].includes(w);
    await waitFor(async () => camera((await shown()).width), { timeout: 30000, message: 'the camera first' });

    const shared = await presenter.evaluate(async () => {
      const canvas = document.createElement('canvas');
      canvas.width = 800;
      canvas.height = 600;
      const g = canvas.getContext('2d');
      let n = 0;
      setInterval(() => {
        n += 1;
        g.fillStyle = `hsl(${n % 360}, 60%, 50%)`;
        g.fillRect(0, 0, 800, 600);
        g.fillStyle = '#fff';
        g.fillText(`slide ${n}`, 20, 40);
      }, 50);
      return window.sfuDemo.shareScreen(canvas.captureStream(20));
    });
    assert.equal(shared, true);
    const published = await waitFor(async () => (await messagesOf(viewer)).find((m) => m.type === 'track_published'
      && m.participant === presenterId && m.track.source === 'screen'), { timeout: 15000, message: 'track_published with source screen' });
    assert.equal(published.track.kind, 'video');
    await waitFor(async () => {
      const s = await shown();
      return s.screen && s.width === 800 && s;
    }, { timeout: 30000, message: async () => `the share shown large at its size (${JSON.stringify(await shown())})` });

    await presenter.evaluate(() => window.sfuDemo.stopShare());
    await waitFor(async () => (await messagesOf(viewer)).some((m) => m.type === 'track_unpublished' && m.track === published.track.id), {
      timeout: 15000, message: 'the share unpublished',
    });
    await waitFor(async () => {
      const s = await shown();
      return !s.screen && camera(s.width) && s;
    }, { timeout: 30000, message: async () => `the camera back (${JSON.stringify(await shown())})` });
  }));
});
