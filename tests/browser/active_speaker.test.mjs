// Active speakers: both participants' fake microphones play a continuous tone (a WAV this test
// writes); the server reads the audio levels in their packets (RFC 6464) and tells everyone who
// speaks and who has the floor (`active_speakers`). With b's microphone disabled (it sends
// silence) a is the only speaker and dominant on both pages, its tile marked; with a's disabled
// instead and b's back on, the floor moves to b; a third participant is told so right after
// its `joined`.

import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { Harness, waitFor } from './harness.mjs';

/** A mono 16-bit WAV of a 440 Hz tone at half scale (about -6 dBov), `seconds` long. */
function toneWav(file, seconds = 2, rate = 48000) {
  const n = seconds * rate;
  const data = Buffer.alloc(n * 2);
  for (let i = 0; i < n; i++) data.writeInt16LE(Math.round(16384 * Math.sin((2 * Math.PI * 440 * i) / rate)), i * 2);
  const header = Buffer.alloc(44);
  header.write('RIFF', 0);
  header.writeUInt32LE(36 + data.length, 4);
  header.write('WAVEfmt ', 8);
  header.writeUInt32LE(16, 16);
  header.writeUInt16LE(1, 20); // PCM
  header.writeUInt16LE(1, 22); // mono
  header.writeUInt32LE(rate, 24);
  header.writeUInt32LE(rate * 2, 28);
  header.writeUInt16LE(2, 32);
  header.writeUInt16LE(16, 34);
  header.write('data', 36);
  header.writeUInt32LE(data.length, 40);
  fs.writeFileSync(file, Buffer.concat([header, data]));
}

/** Turns the page's microphone on or off (off: it sends silence). */
const setMic = (page, on) => page.evaluate((on) => {
  const sender = window.sfuDemo.peerConnections().publisher.getSenders().find((s) => s.track && s.track.kind === 'audio');
  sender.track.enabled = on;
}, on);

/** The page's view: the last `active_speakers` and the tiles marked. */
const view = (page) => page.evaluate(() => ({
  speakers: (window.sfuDemo.activeSpeakers || { speakers: [] }).speakers.map((s) => s.participant),
  dominant: (window.sfuDemo.activeSpeakers || {}).dominant || null,
  marked: [...document.querySelectorAll('.tile.dominant')].map((t) => t.dataset.participant || 'local'),
}));

describe('active speakers', () => {
  let h;
  let dir;
  before(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sfu-speaker-'));
    const wav = path.join(dir, 'tone.wav');
    toneWav(wav);
    h = await Harness.start({ browserArgs: () => [`--use-file-for-fake-audio-capture=${wav}`] });
  });
  after(async () => {
    if (h) await h.close();
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  test('the one talking is the speaker and has the floor, on every page', () => h.diagnose(async () => {
    const a = await h.open('SPEAK', 'a');
    const b = await h.open('SPEAK', 'b');
    const [aId, bId] = await Promise.all([a, b].map((p) => p.evaluate(() => window.sfuDemo.participantId)));
    // both talk: both are speakers
    await waitFor(async () => {
      const v = await view(a);
      return v.speakers.length === 2 && v;
    }, { timeout: 15000, interval: 200, message: async () => `both speaking (a sees ${JSON.stringify(await view(a))})` });

    for (const [talker, quiet, talkerId, label] of [[a, b, aId, 'a'], [b, a, bId, 'b']]) {
      await setMic(talker, true);
      await setMic(quiet, false);
      const since = Date.now();
      for (const [page, who] of [[a, 'a'], [b, 'b']]) {
        await waitFor(async () => {
          const v = await view(page);
          const tileMarked = page === talker ? v.marked.includes('local') : v.marked.includes(talkerId);
          return v.dominant === talkerId && v.speakers.length === 1 && v.speakers[0] === talkerId && tileMarked && v;
        }, {
          timeout: 10000,
          interval: 200,
          message: async () => `${who} to see only ${label} speaking, with the floor (${JSON.stringify(await view(page))})`,
        });
      }
      console.log(`${label} alone speaking and dominant on both pages ${Date.now() - since} ms after the other went quiet`);
    }
    // a newcomer is told the floor at once (the last report, right after joined)
    const c = await h.open('SPEAK', 'c');
    const first = await waitFor(() => c.evaluate(() => {
      const m = window.sfuDemo.messages;
      const joined = m.findIndex((x) => x.type === 'joined');
      const speakers = m.findIndex((x) => x.type === 'active_speakers');
      return speakers >= 0 && { joined, speakers, msg: m[speakers] };
    }), { timeout: 5000, interval: 100, message: 'an active_speakers message on the newcomer' });
    assert.ok(first.speakers > first.joined && first.speakers <= first.joined + 2, JSON.stringify(first));
    assert.equal(first.msg.dominant, bId, JSON.stringify(first));
    const metrics = await (await fetch(new URL('/metrics', h.baseUrl))).text();
    assert.ok(Number((/^sfu_active_speaker_reports_total (\d+)/m.exec(metrics) || [])[1]) >= 3, 'reports counted');
  }));
});
