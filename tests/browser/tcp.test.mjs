// ICE-TCP (RFC 6544): a Chromium in a network namespace whose UDP is dropped (an nftables rule
// on the namespace's output, as a corporate firewall does) joins through the server's passive
// TCP candidate on the media port's number and exchanges audio and video with a participant on
// UDP. The route is read from getStats: both of the TCP participant's connections run over a
// TCP pair to the server's host candidate; the UDP participant's over UDP. Needs root, iproute2
// and nft (the test command installs nftables); skipped, saying why, without them.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { Harness, expectReceiving, launchBrowser, openParticipant, routesWithMedia, selectedRoutes } from './harness.mjs';
import { BrowserNamespace } from './netns.mjs';

const JOIN_TIMEOUT = 30000;

const why = BrowserNamespace.unavailable(['ip', 'nft']);

describe('ice-tcp', { skip: why || false }, () => {
  const ns = new BrowserNamespace('sfutcp', '10.213.9');
  let h;
  let noUdp;
  let setupError = null;
  before(async () => {
    setupError = ns.setUp();
    if (setupError) return;
    ns.dropUdp();
    // a camera needs a secure context: the server's address is not localhost here
    const secure = (server) => [`--unsafely-treat-insecure-origin-as-secure=${server.baseUrl}`];
    h = await Harness.start({ host: ns.hostIp, browserArgs: secure });
    noUdp = await launchBrowser(ns.wrapper, secure(h.server));
  });
  after(async () => {
    if (noUdp) await noUdp.close().catch(() => {});
    if (h) await h.close();
    ns.tearDown();
  });

  test('a participant without UDP joins over ICE-TCP and exchanges media with one on UDP', (t) => {
    if (setupError) {
      t.skip(setupError);
      return undefined;
    }
    return h.diagnose(async () => {
      const context = await noUdp.newContext({ viewport: { width: 1280, height: 720 } });
      const tcp = await openParticipant(context, h.baseUrl, 'TCP', 'tcp', { timeout: JOIN_TIMEOUT });
      h.pages.add(tcp);
      const udp = await h.open('TCP', 'udp');
      const [tcpId, udpId] = await Promise.all([tcp, udp].map((p) => p.evaluate(() => window.sfuDemo.participantId)));
      await expectReceiving(tcp, [udpId]);
      await expectReceiving(udp, [tcpId]);

      const viaTcp = await routesWithMedia(tcp);
      const udpPort = Number(h.server.udpAddr.split(':').pop());
      assert.equal(h.server.tcpAddr, h.server.udpAddr, "ICE-TCP listens on the media port's address by default");
      for (const role of ['publisher', 'subscriber']) {
        const r = viaTcp[role];
        assert.ok(r, `the TCP participant's ${role} connection has a selected pair: ${JSON.stringify(viaTcp)}`);
        assert.equal(r.local.protocol, 'tcp', `${role}: ${JSON.stringify(r)}`);
        assert.equal(r.remote.protocol, 'tcp', `${role}: ${JSON.stringify(r)}`);
        assert.equal(r.remote.type, 'host', `${role}: the server's passive candidate: ${JSON.stringify(r)}`);
        assert.equal(r.remote.port, udpPort, `${role}: TCP on the media port's number: ${JSON.stringify(r)}`);
        const media = role === 'publisher' ? r.bytesSent : r.bytesReceived;
        assert.ok(media > 10000, `${role}: media over it: ${JSON.stringify(r)}`);
      }
      const viaUdp = await selectedRoutes(udp);
      for (const role of ['publisher', 'subscriber']) {
        assert.equal(viaUdp[role] && viaUdp[role].local.protocol, 'udp', `UDP participant's ${role}: ${JSON.stringify(viaUdp)}`);
      }
      const metrics = await (await fetch(new URL('/metrics', h.baseUrl))).text();
      const open = Number((metrics.match(/^sfu_tcp_connections (\d+)/m) || [])[1]);
      assert.ok(open >= 2, `sfu_tcp_connections ${open}: one per connection of the TCP participant at least`);
      const out = Number((metrics.match(/^sfu_tcp_out_packets_total (\d+)/m) || [])[1]);
      assert.ok(out > 100, `sfu_tcp_out_packets_total ${out}`);
      // the browser did try UDP: the firewall, not a missing candidate, made it take TCP
      const dropped = ns.udpDropped();
      assert.ok(dropped > 0, `UDP packets the namespace's firewall dropped: ${dropped}`);
    });
  });
});
