// A network namespace a test makes for one Chromium: a veth pair from the host (HOST_IP, where
// the server listens) to the namespace (NS_IP), a wrapper that runs Chromium inside it, and
// teardown. Needs root and iproute2; `unavailable()` says why not, for a skip.

import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { missingTool } from './harness.mjs';

const run = (...args) => execFileSync(args[0], args.slice(1), { stdio: 'pipe' }).toString();
const tryRun = (...args) => { try { run(...args); } catch (_) { /* already gone */ } };

export class BrowserNamespace {
  /** `prefix`: a few letters naming the test; `subnet`: the /30's first three octets. */
  constructor(prefix, subnet) {
    const tag = String(process.pid % 100000);
    this.ns = `${prefix}${tag}`;
    this.hostIf = `${prefix.slice(0, 2)}h${tag}`;
    this.nsIf = `${prefix.slice(0, 2)}n${tag}`;
    this.hostIp = `${subnet}.1`;
    this.nsIp = `${subnet}.2`;
    this.wrapper = null;
  }

  /** Why a namespace cannot be made here (not root, a tool missing), or null. */
  static unavailable(tools = ['ip']) {
    if (process.getuid && process.getuid() !== 0) return 'needs root (network namespaces)';
    return missingTool(tools);
  }

  /** Makes the namespace and its link; returns null, or why it could not (a container without
   * CAP_NET_ADMIN), having cleaned up. */
  setUp() {
    this.tearDown();
    try {
      run('ip', 'netns', 'add', this.ns);
      run('ip', 'link', 'add', this.hostIf, 'type', 'veth', 'peer', 'name', this.nsIf);
      run('ip', 'link', 'set', this.nsIf, 'netns', this.ns);
      run('ip', 'addr', 'add', `${this.hostIp}/30`, 'dev', this.hostIf);
      run('ip', 'link', 'set', this.hostIf, 'up');
      this.exec('ip', 'addr', 'add', `${this.nsIp}/30`, 'dev', this.nsIf);
      this.exec('ip', 'link', 'set', this.nsIf, 'up');
      this.exec('ip', 'link', 'set', 'lo', 'up');
    } catch (err) {
      this.tearDown();
      return `cannot make the network namespace: ${String(err.stderr || err.message).trim()}`;
    }
    const chromium = process.env.CHROMIUM_PATH || '/usr/bin/chromium';
    this.wrapper = path.join(os.tmpdir(), `chromium-in-${this.ns}.sh`);
    fs.writeFileSync(this.wrapper, `#!/bin/sh\nexec ip netns exec ${this.ns} ${chromium} "$@"\n`, { mode: 0o755 });
    return null;
  }

  /** Drops every UDP packet the namespace sends (an nftables rule), as a firewall that lets
   * only TCP out does. */
  dropUdp() {
    this.exec('nft', 'add', 'table', 'inet', 'noudp');
    this.exec('nft', 'add', 'chain', 'inet', 'noudp', 'out', '{ type filter hook output priority 0; policy accept; }');
    this.exec('nft', 'add', 'rule', 'inet', 'noudp', 'out', 'meta', 'l4proto', 'udp', 'counter', 'drop');
  }

  /** UDP packets `dropUdp()`'s rule dropped so far. */
  udpDropped() {
    return Number((/packets (\d+)/.exec(this.exec('nft', 'list', 'table', 'inet', 'noudp')) || [])[1] || 0);
  }

  /** Runs a command inside the namespace; its stdout. */
  exec(...args) {
    return run('ip', 'netns', 'exec', this.ns, ...args);
  }

  /** Runs a command on the host; its stdout. */
  static host(...args) {
    return run(...args);
  }

  tearDown() {
    tryRun('ip', 'link', 'del', this.hostIf);
    tryRun('ip', 'netns', 'del', this.ns);
    if (this.wrapper) fs.rmSync(this.wrapper, { force: true });
    this.wrapper = null;
  }
}
