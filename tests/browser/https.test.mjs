// The demo page over HTTPS and WSS: a node with `--tls-cert`/`--tls-key` (a certificate this test
// makes with openssl for 127.0.0.1) serves the page and the signaling socket with TLS on its HTTP
// port; Chromium, told to accept the test certificate, loads the page, joins over wss:, and two
// participants exchange audio and video. Skipped, saying why, without openssl.

import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { Harness, expectReceiving, missingTool, selfSignedCertificate } from './harness.mjs';

const why = missingTool(['openssl']);

describe('https', { skip: why || false }, () => {
  let dir;
  let h;
  before(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sfu-https-'));
    const { cert, key } = selfSignedCertificate(dir, 'node', '/CN=127.0.0.1', ['-addext', 'subjectAltName=IP:127.0.0.1']);
    h = await Harness.start({ extraArgs: ['--tls-cert', cert, '--tls-key', key], browserArgs: () => ['--ignore-certificate-errors'] });
  });
  after(async () => {
    if (h) await h.close();
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  test('the page loads over https and its participants join over wss and exchange media', () => h.diagnose(async () => {
    assert.match(h.baseUrl, /^https:\/\//);
    const a = await h.open('TLS', 'a');
    const b = await h.open('TLS', 'b');
    for (const page of [a, b]) {
      const where = await page.evaluate(() => ({ page: location.protocol, ws: window.sfuDemo.ws && window.sfuDemo.ws.url }));
      assert.equal(where.page, 'https:', JSON.stringify(where));
      assert.match(where.ws, /^wss:\/\//, JSON.stringify(where));
    }
    const [aId, bId] = await Promise.all([a, b].map((p) => p.evaluate(() => window.sfuDemo.participantId)));
    await expectReceiving(a, [bId]);
    await expectReceiving(b, [aId]);
  }));
});
