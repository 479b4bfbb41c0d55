// TURN: the node hands out coturn REST credentials (`--turn-secret`, `--turn-urls`) in `joined`;
// a Chromium participant that may only relay (`?relay=1`: iceTransportPolicy 'relay') reaches
// the SFU through Debian's coturn, over TCP and over TLS to coturn, and exchanges audio and
// video with a participant on plain UDP. Then the real case: a Chromium in a network namespace
// whose UDP an nftables rule drops, and a node without ICE-TCP (`--tcp off`): it finds the TURN
// server over TCP or TLS by itself. The route is read from getStats (a relay candidate, and the
// protocol to the TURN server). The same with the node's embedded TURN server (`--turn`,
// `--turn-tls`): relay-only over UDP, TCP and TLS, and behind the firewall with the URLs the node
// derives itself. Skipped, saying why, without `turnserver` or openssl (and the namespace parts
// without root, ip and nft).

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import {
  Harness, expectReceiving, launchBrowser, missingTool, openParticipant, routesWithMedia, selectedRoutes,
  selfSignedCertificate,
} from './harness.mjs';
import { BrowserNamespace } from './netns.mjs';

const SECRET = 'browser-test-secret';
const JOIN_TIMEOUT = 30000;

/** A TCP port free right now on `ip`. */
async function freePort(ip) {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, ip, () => { const { port } = s.address(); s.close(() => resolve(port)); });
  });
}

/** Waits until something accepts TCP connections on ip:port. */
async function listening(ip, port, timeout = 10000) {
  const deadline = Date.now() + timeout;
  for (;;) {
    const ok = await new Promise((resolve) => {
      const c = net.connect(port, ip, () => { c.destroy(); resolve(true); });
      c.once('error', () => resolve(false));
    });
    if (ok) return;
    if (Date.now() > deadline) throw new Error(`nothing listens on ${port}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** coturn with `use-auth-secret` on `ip`: plain TURN (UDP and TCP) on `port`, TURN over TLS
 * on `tlsPort` with a self-signed certificate made here, relaying from `ip`. */
async function startCoturn(dir, ip = '127.0.0.1') {
  const [port, tlsPort] = [await freePort(ip), await freePort(ip)];
  const { cert, key } = selfSignedCertificate(dir, 'turn', '/CN=turn.test');
  const args = ['-n', `--listening-ip=${ip}`, `--relay-ip=${ip}`, `--listening-port=${port}`,
    `--tls-listening-port=${tlsPort}`, `--cert=${cert}`, `--pkey=${key}`, '--no-dtls', '--no-cli',
    '--use-auth-secret', `--static-auth-secret=${SECRET}`, '--realm=sfu.test', '--allow-loopback-peers',
    '--no-multicast-peers', '--min-port=49600', '--max-port=49700', '--log-file=stdout', '--simple-log',
    '--pidfile=/dev/null'];
  const proc = spawn('turnserver', args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let log = '';
  proc.stdout.on('data', (d) => { log = (log + d).slice(-20000); });
  proc.stderr.on('data', (d) => { log = (log + d).slice(-20000); });
  await listening(ip, port);
  await listening(ip, tlsPort);
  return { ip, port, tlsPort, proc, log: () => log };
}

/** Asserts that both connections in routes `r` go through a relay reached over `protocol`. */
function assertRelayed(r, protocol) {
  for (const role of ['publisher', 'subscriber']) {
    assert.equal(r[role] && r[role].local.type, 'relay', `${role}: ${JSON.stringify(r)}`);
    assert.equal(r[role].local.relayProtocol, protocol, `${role}: ${JSON.stringify(r)}`);
  }
}

/** A relay-only participant (`?relay=1`) and a direct one in `room` exchange media; the
 * relayed one's route is a relay over `protocol`. Returns both pages, the relayed one's
 * `joined` and its routes. */
async function relayOnlyCall(h, room, protocol) {
  const relayed = await h.open(room, 'relayed', { params: { relay: '1' }, timeout: JOIN_TIMEOUT });
  const direct = await h.open(room, 'direct');
  const joined = await relayed.evaluate(() => window.sfuDemo.messages.find((m) => m.type === 'joined'));
  const [relayedId, directId] = await Promise.all([relayed, direct].map((p) => p.evaluate(() => window.sfuDemo.participantId)));
  await expectReceiving(relayed, [directId]);
  await expectReceiving(direct, [relayedId]);
  const r = await routesWithMedia(relayed);
  assertRelayed(r, protocol);
  assert.ok(r.publisher.bytesSent > 10000 && r.subscriber.bytesReceived > 10000, JSON.stringify(r));
  return { relayed, direct, joined };
}

/** A participant in `walled` (the namespace's browser) and one outside exchange media in
 * `room`; the inside one relays over `protocol` after its UDP was dropped. Returns the inside
 * page's `joined`. */
async function walledCall(h, walled, ns, room, protocol) {
  const context = await walled.newContext({ viewport: { width: 1280, height: 720 }, ignoreHTTPSErrors: true });
  const inside = await openParticipant(context, h.baseUrl, room, 'inside', { timeout: JOIN_TIMEOUT });
  h.pages.add(inside);
  const outside = await h.open(room, 'outside');
  const joined = await inside.evaluate(() => window.sfuDemo.messages.find((m) => m.type === 'joined'));
  const [insideId, outsideId] = await Promise.all([inside, outside].map((p) => p.evaluate(() => window.sfuDemo.participantId)));
  await expectReceiving(inside, [outsideId]);
  await expectReceiving(outside, [insideId]);
  assertRelayed(await selectedRoutes(inside), protocol);
  assert.ok(ns.udpDropped() > 0, 'the browser did try UDP: the firewall made it relay');
  return joined;
}

const why = missingTool(['turnserver', 'openssl']);

describe('turn', { skip: why || false }, () => {
  let dir;
  let coturn;
  before(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sfu-turn-'));
    coturn = await startCoturn(dir);
  });
  after(() => {
    if (coturn) coturn.proc.kill('SIGKILL');
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  for (const [label, url, protocol] of [
    ['TCP', (c) => `turn:127.0.0.1:${c.port}?transport=tcp`, 'tcp'],
    ['TLS', (c) => `turns:127.0.0.1:${c.tlsPort}?transport=tcp`, 'tls'],
  ]) {
    test(`a relay-only participant reaches the SFU through coturn over ${label}`, async () => {
      const turnUrl = url(coturn);
      const h = await Harness.start({
        extraArgs: ['--turn-secret', SECRET, '--turn-urls', turnUrl],
        // the test's self-signed TURN certificate
        browserArgs: () => ['--ignore-certificate-errors'],
      });
      try {
        await h.diagnose(async () => {
          const { direct, joined } = await relayOnlyCall(h, 'TURN', protocol);
          assert.equal(joined.ice_servers.length, 1, JSON.stringify(joined));
          assert.deepEqual(joined.ice_servers[0].urls, [turnUrl]);
          assert.match(joined.ice_servers[0].username, /^\d+:relayed$/);
          const d = await selectedRoutes(direct);
          assert.equal(d.publisher && d.publisher.local.type, 'host', `the other participant is direct: ${JSON.stringify(d)}`);
        }).catch((err) => {
          err.message += `\n--- coturn log (tail) ---\n${coturn.log().slice(-4000)}`;
          throw err;
        });
      } finally {
        await h.close();
      }
    });
  }
});

const nsWhy = why || BrowserNamespace.unavailable(['ip', 'nft']);

describe('turn behind a firewall that drops UDP', { skip: nsWhy || false }, () => {
  const ns = new BrowserNamespace('sfuturn', '10.213.11');
  let dir;
  let coturn;
  let setupError = null;
  before(async () => {
    setupError = ns.setUp();
    if (setupError) return;
    ns.dropUdp();
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sfu-turn-ns-'));
    coturn = await startCoturn(dir, ns.hostIp);
  });
  after(() => {
    if (coturn) coturn.proc.kill('SIGKILL');
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
    ns.tearDown();
  });

  for (const [label, url, protocol] of [
    ['TCP', (c) => `turn:${c.ip}:${c.port}?transport=tcp`, 'tcp'],
    ['TLS', (c) => `turns:${c.ip}:${c.tlsPort}?transport=tcp`, 'tls'],
  ]) {
    test(`without UDP and without ICE-TCP, a participant relays through coturn over ${label} by itself`, async (t) => {
      if (setupError) {
        t.skip(setupError);
        return;
      }
      // a camera needs a secure context (the server's address is not localhost); the test's
      // self-signed TURN certificate
      const flags = (server) => [`--unsafely-treat-insecure-origin-as-secure=${server.baseUrl}`, '--ignore-certificate-errors'];
      const h = await Harness.start({
        host: ns.hostIp,
        extraArgs: ['--tcp', 'off', '--turn-secret', SECRET, '--turn-urls', url(coturn)],
        browserArgs: flags,
      });
      let walled;
      try {
        walled = await launchBrowser(ns.wrapper, flags(h.server));
        await h.diagnose(async () => {
          await walledCall(h, walled, ns, 'WALL', protocol);
        }).catch((err) => {
          err.message += `\n--- coturn log (tail) ---\n${coturn.log().slice(-4000)}`;
          throw err;
        });
      } finally {
        if (walled) await walled.close().catch(() => {});
        await h.close();
      }
    });
  }
});

describe('embedded turn', { skip: missingTool(['openssl']) || false }, () => {
  let dir;
  let tls;
  before(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sfu-eturn-'));
    tls = selfSignedCertificate(dir, 'node', '/CN=127.0.0.1', ['-addext', 'subjectAltName=IP:127.0.0.1']);
  });
  after(() => {
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  for (const [label, url, protocol] of [
    ['UDP', (p) => `turn:127.0.0.1:${p.plain}?transport=udp`, 'udp'],
    ['TCP', (p) => `turn:127.0.0.1:${p.plain}?transport=tcp`, 'tcp'],
    ['TLS', (p) => `turns:127.0.0.1:${p.tls}?transport=tcp`, 'tls'],
  ]) {
    test(`a relay-only participant reaches the SFU through its own TURN server over ${label}`, async () => {
      const ports = { plain: await freePort('127.0.0.1'), tls: await freePort('127.0.0.1') };
      const turnUrl = url(ports);
      const h = await Harness.start({
        extraArgs: ['--tls-cert', tls.cert, '--tls-key', tls.key, '--turn', `127.0.0.1:${ports.plain}`,
          '--turn-tls', `127.0.0.1:${ports.tls}`, '--turn-urls', turnUrl],
        browserArgs: () => ['--ignore-certificate-errors'],
      });
      try {
        await h.diagnose(async () => {
          const { relayed, joined } = await relayOnlyCall(h, 'ETURN', protocol);
          assert.deepEqual(joined.ice_servers[0].urls, [turnUrl]);
          // the page's origin, whose test certificate the browser accepts
          const m = await relayed.evaluate(() => fetch('/metrics').then((res) => res.text()));
          for (const direction of ['to_peer', 'to_client']) {
            const n = Number((new RegExp(`^sfu_turn_relayed_packets_total\\{direction="${direction}"\\} (\\d+)`, 'm').exec(m) || [])[1]);
            assert.ok(n > 100, `relayed ${direction}: ${n}`);
          }
        });
      } finally {
        await h.close();
      }
    });
  }
});

describe('embedded turn behind a firewall that drops UDP', { skip: BrowserNamespace.unavailable(['ip', 'nft']) || false }, () => {
  const ns = new BrowserNamespace('sfueturn', '10.213.12');
  let setupError = null;
  before(() => {
    setupError = ns.setUp();
    if (!setupError) ns.dropUdp();
  });
  after(() => ns.tearDown());

  test('without UDP and without ICE-TCP, a participant relays through the node\'s TURN server by itself', async (t) => {
    if (setupError) {
      t.skip(setupError);
      return;
    }
    const flags = (server) => [`--unsafely-treat-insecure-origin-as-secure=${server.baseUrl}`];
    const h = await Harness.start({
      host: ns.hostIp,
      extraArgs: ['--tcp', 'off', '--turn', `${ns.hostIp}:0`],
      browserArgs: flags,
    });
    let walled;
    try {
      walled = await launchBrowser(ns.wrapper, flags(h.server));
      await h.diagnose(async () => {
        const joined = await walledCall(h, walled, ns, 'EWALL', 'tcp');
        const urls = joined.ice_servers[0].urls;
        assert.equal(urls.length, 2, `UDP and TCP, as the node derives them: ${JSON.stringify(urls)}`);
        assert.ok(urls.every((u) => u.startsWith(`turn:${ns.hostIp}:`)), JSON.stringify(urls));
      });
    } finally {
      if (walled) await walled.close().catch(() => {});
      await h.close();
    }
  });
});
