// Test harness for the SFU browser tests: starts the server binary, launches Chromium through
// playwright-core (and Firefox through puppeteer-core, WebDriver BiDi), opens participants and
// polls for conditions.
//
// Environment:
//   SFU_BIN        server binary (default <repo>/target/debug/sfu)
//   CHROMIUM_PATH  Chromium/Chrome executable (default /usr/bin/chromium)
//   FIREFOX_PATH   Firefox executable (default /usr/bin/firefox-esr)
//   SFU_ARGS       extra server arguments, space separated (optional)
//   RUST_LOG       passed to the server (default "info")
//   SFU_TEST_LOG   "1": echo the server's stderr live (otherwise printed only on failure)

import { execFileSync, spawn } from 'node:child_process';
import path from 'node:path';
import readline from 'node:readline';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

export const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
export const DEFAULT_SFU_BIN = path.join(REPO_ROOT, 'target', 'debug', 'sfu');

/** Chromium flags; each was verified necessary for WebRTC over loopback with a fake camera. */
export const CHROMIUM_ARGS = [
  '--allow-loopback-in-peer-connection',
  '--disable-features=WebRtcHideLocalIpsWithMdns',
  '--use-fake-device-for-media-stream', // 1280x720 @ 20 fps camera, beeping microphone
  '--use-fake-ui-for-media-stream',
  '--autoplay-policy=no-user-gesture-required',
  '--headless=new',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

export const DEFAULT_FIREFOX_PATH = '/usr/bin/firefox-esr';

/**
 * Firefox prefs (on top of puppeteer's own test profile, which already turns off most background
 * traffic). Only loopback addresses may be contacted.
 */
export const FIREFOX_PREFS = {
  // Fake camera (the size asked for, 1280x720 here) and microphone, no permission prompt.
  'media.navigator.streams.fake': true,
  'media.navigator.permission.disabled': true,
  // Without a granted camera/microphone permission Firefox gathers ICE candidates on the
  // default-route interface only (never loopback): "use only default local addresses: yes" in the
  // nicer log. An actively capturing fake stream does not count, a default permission does.
  'permissions.default.camera': 1,
  'permissions.default.microphone': 1,
  // Loopback host candidates, real addresses in the candidates (no mDNS names), UDP only.
  // Firefox also gathers on the other interfaces (media.peerconnection.ice.force_interface has no
  // effect in 153 ESR), but the server offers 127.0.0.1 only and Firefox pairs loopback with
  // loopback only: every candidate pair is 127.0.0.1 -> 127.0.0.1.
  'media.peerconnection.ice.loopback': true,
  'media.peerconnection.ice.obfuscate_host_addresses': false,
  'media.peerconnection.ice.tcp': false,
  'media.peerconnection.use_document_iceservers': false,
  'media.peerconnection.default_iceservers': '[]',
  // Autoplay with sound.
  'media.autoplay.default': 0,
  'media.autoplay.blocking_policy': 0,
  // Nothing but loopback: no proxy, no updates, telemetry, captive-portal or connectivity probes,
  // push, DNS over HTTPS, prefetching, region lookups or remote settings.
  'network.proxy.type': 0,
  'network.trr.mode': 5,
  'network.dns.disablePrefetch': true,
  'network.prefetch-next': false,
  'network.predictor.enabled': false,
  'network.captive-portal-service.enabled': false,
  'network.connectivity-service.enabled': false,
  'app.update.enabled': false,
  'app.update.auto': false,
  'datareporting.policy.dataSubmissionEnabled': false,
  'toolkit.telemetry.enabled': false,
  'toolkit.telemetry.unified': false,
  'toolkit.telemetry.server': '',
  'browser.shell.checkDefaultBrowser': false,
  'browser.region.update.enabled': false,
  'browser.region.network.url': '',
  'browser.safebrowsing.update.enabled': false,
  // Remote Settings (firefox.settings.services.mozilla.com was still looked up in DNS): release
  // builds honour this only with MOZ_REMOTE_SETTINGS_DEVTOOLS=1 in the environment, which
  // launchFirefox() sets.
  'services.settings.server': 'data:,#remote-settings-dummy/v1',
  'dom.push.connection.enabled': false,
  'extensions.blocklist.enabled': false,
  'geo.provider.network.url': '',
  'identity.fxaccounts.enabled': false,
  'media.gmp-gmpopenh264.autoupdate': false,
};

/** The Firefox executable the tests use (FIREFOX_PATH, default /usr/bin/firefox-esr). */
export function firefoxPath() {
  return process.env.FIREFOX_PATH || DEFAULT_FIREFOX_PATH;
}

const STDERR_KEEP = 4 * 1024 * 1024; // bytes of server stderr kept in memory
const LOG_TAIL_LINES = 300;

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

function brief(value, max = 2000) {
  let s;
  try {
    s = typeof value === 'string' ? value : JSON.stringify(value);
  } catch (_) {
    s = String(value);
  }
  if (s === undefined) s = String(value);
  return s.length > max ? `${s.slice(0, max)}...` : s;
}

function tailLines(text, n) {
  const lines = text.split('\n');
  return lines.slice(Math.max(0, lines.length - n)).join('\n');
}

/**
 * Polls `fn` until it returns a truthy value and returns that value. Exceptions thrown by `fn`
 * count as "not yet". On timeout throws an Error naming `message` (a string, or a possibly async
 * function given the last value and error) with the last value or error.
 */
export async function waitFor(fn, { timeout = 10000, interval = 200, message = 'condition' } = {}) {
  const deadline = Date.now() + timeout;
  let last;
  let lastErr;
  for (;;) {
    try {
      last = await fn();
      lastErr = undefined;
      if (last) return last;
    } catch (err) {
      lastErr = err;
    }
    const left = deadline - Date.now();
    if (left <= 0) {
      let what = message;
      if (typeof message === 'function') {
        try {
          what = await message(last, lastErr);
        } catch (err) {
          what = `(message failed: ${err && err.message})`;
        }
      }
      const detail = lastErr ? `last error: ${lastErr && lastErr.message}` : `last value: ${brief(last)}`;
      throw new Error(`timed out after ${timeout} ms waiting for: ${what}\n${detail}`);
    }
    await sleep(Math.min(interval, left));
  }
}

/** Rejects with `message` if `promise` does not settle within `ms`. */
export async function withTimeout(promise, ms, message) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${message}`)), ms);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Starts `sfu --dev --http HOST:0 --udp HOST:0` (HOST 127.0.0.1 unless given: a test's own
 * network namespace link) and waits for its `SFU_READY http=HOST:PORT udp=HOST:PORT` line on
 * stdout.
 */
export async function startServer({
  bin = process.env.SFU_BIN || DEFAULT_SFU_BIN,
  extraArgs = (process.env.SFU_ARGS || '').split(/\s+/).filter(Boolean),
  readyTimeout = 20000,
  host = '127.0.0.1',
} = {}) {
  const args = ['--dev', '--http', `${host}:0`, '--udp', `${host}:0`, ...extraArgs];
  const env = { ...process.env, RUST_LOG: process.env.RUST_LOG || 'info' };
  const echo = process.env.SFU_TEST_LOG === '1';
  // Own process group, so that a wrapper script (cargo run, a shell script) dies with its children.
  const proc = spawn(bin, args, { stdio: ['ignore', 'pipe', 'pipe'], env, detached: true });

  let stderr = '';
  let stdout = '';
  let exited = null; // {code, signal} once the process is gone
  let spawnError = null;
  const exitPromise = new Promise((resolve) => {
    proc.once('exit', (code, signal) => {
      exited = exited || { code, signal };
      resolve(exited);
    });
    proc.once('error', (err) => {
      // Failed to spawn: there is no process to wait for.
      spawnError = err;
      if (proc.pid === undefined) {
        exited = { code: null, signal: null, error: err.message };
        resolve(exited);
      }
    });
  });
  const kill = (signal) => {
    if (exited || proc.pid === undefined) return;
    try {
      process.kill(-proc.pid, signal);
    } catch (_) {
      try { proc.kill(signal); } catch (__) { /* gone */ }
    }
  };
  proc.stderr.setEncoding('utf8');
  proc.stderr.on('data', (chunk) => {
    if (echo) process.stderr.write(chunk);
    stderr += chunk;
    if (stderr.length > STDERR_KEEP) stderr = stderr.slice(stderr.length - STDERR_KEEP / 2);
  });
  // Killed even if the test process dies without running its after() hooks: on exit, and on the
  // SIGTERM the test runner sends when a file times out (a signal skips 'exit' handlers otherwise).
  const killOnExit = () => kill('SIGKILL');
  process.once('exit', killOnExit);
  installSignalExit();

  const server = {
    proc,
    bin,
    args,
    httpAddr: null,
    udpAddr: null,
    baseUrl: null,
    stderr: () => stderr,
    stdout: () => stdout,
    stderrTail: (n = LOG_TAIL_LINES) => tailLines(stderr, n),
    exited: () => exited,
    /** Resolves with {code, signal} once the process exited. */
    exitPromise,
    async stop() {
      process.removeListener('exit', killOnExit);
      if (exited) return exited;
      kill('SIGTERM');
      const res = await Promise.race([exitPromise, sleep(5000).then(() => null)]);
      if (res) return res;
      kill('SIGKILL');
      return Promise.race([exitPromise, sleep(5000).then(() => ({ code: null, signal: 'SIGKILL (no exit seen)' }))]);
    },
  };

  const describe = () => `${bin} ${args.join(' ')}`;
  const ready = new Promise((resolve, reject) => {
    proc.once('error', (err) => {
      const hint = err.code === 'ENOENT' ? ' (build it with `cargo build -p sfu` or set SFU_BIN)' : '';
      reject(new Error(`cannot start ${describe()}: ${err.message}${hint}`));
    });
    if (spawnError) reject(spawnError);
    const rl = readline.createInterface({ input: proc.stdout });
    rl.on('line', (line) => {
      stdout += `${line}\n`;
      if (echo) process.stderr.write(`[sfu stdout] ${line}\n`);
      const m = /^SFU_READY\s+http=(\S+)\s+udp=(\S+)/.exec(line.trim());
      if (m && !server.baseUrl) {
        server.httpAddr = m[1];
        server.udpAddr = m[2];
        server.tcpAddr = (/\btcp=(\S+)/.exec(line) || [])[1] || null;
        // with a certificate the HTTP port speaks HTTPS and WSS only
        server.baseUrl = `${args.includes('--tls-cert') ? 'https' : 'http'}://${m[1]}`;
        resolve(server);
      }
    });
    exitPromise.then((ex) => reject(new Error(
      `${describe()} exited (code ${ex.code}, signal ${ex.signal}) before printing SFU_READY`,
    )));
  });

  try {
    return await withTimeout(ready, readyTimeout, `waiting for SFU_READY from ${describe()}`);
  } catch (err) {
    await server.stop();
    err.message += `\n--- server stdout ---\n${tailLines(stdout, 50)}\n--- server stderr ---\n${tailLines(stderr, LOG_TAIL_LINES)}`;
    throw err;
  }
}

let signalExitInstalled = false;
function installSignalExit() {
  if (signalExitInstalled) return;
  signalExitInstalled = true;
  for (const [sig, n] of [['SIGTERM', 15], ['SIGINT', 2], ['SIGHUP', 1]]) {
    // Runs the 'exit' handlers (ours, playwright's, puppeteer's).
    process.once(sig, () => process.exit(128 + n));
  }
}

/**
 * One headless Chromium; every participant gets its own browser context. playwright-core refuses
 * --user-data-dir in launch() args; launch() itself always starts on a fresh temporary profile.
 */
export async function launchBrowser(executablePath = process.env.CHROMIUM_PATH || '/usr/bin/chromium', extraArgs = []) {
  return chromium.launch({
    executablePath,
    headless: true,
    args: [...CHROMIUM_ARGS, ...extraArgs],
    timeout: 30000,
  });
}

/**
 * One headless Firefox driven by puppeteer-core over WebDriver BiDi (Playwright's firefox needs
 * its own patched build). puppeteer starts it on a fresh temporary profile holding FIREFOX_PREFS;
 * give every participant its own `await browser.createBrowserContext()`. openParticipant() works
 * with such a context: the puppeteer Page API used there (on, goto, evaluate) matches
 * Playwright's. `extra`: more puppeteer launch options (e.g. `env` with MOZ_LOG for nICEr logs).
 */
export async function launchFirefox(extra = {}) {
  const { default: puppeteer } = await import('puppeteer-core');
  return puppeteer.launch({
    browser: 'firefox',
    protocol: 'webDriverBiDi',
    executablePath: firefoxPath(),
    headless: true,
    extraPrefsFirefox: FIREFOX_PREFS,
    defaultViewport: { width: 1280, height: 720 },
    timeout: 30000,
    protocolTimeout: 30000,
    // The browser is killed on process exit in any case; installSignalExit() turns the signals
    // into an exit.
    handleSIGINT: false,
    handleSIGTERM: false,
    handleSIGHUP: false,
    env: { ...process.env, MOZ_REMOTE_SETTINGS_DEVTOOLS: '1' },
    ...extra,
  });
}

const pageInfo = new WeakMap(); // page -> {name, room, participantId, logs}

/** The participant id, name and console log of a page opened by openParticipant(). */
export function infoOf(page) {
  return pageInfo.get(page);
}

/**
 * Opens `baseUrl/?room=ROOM&name=NAME` in a new page of `browserContext` and returns the page once
 * `window.sfuDemo.joined` resolved. `infoOf(page).participantId` is the participant id.
 * With `waitJoined: false` it returns as soon as the page loaded (for joins expected to fail).
 */
export async function openParticipant(browserContext, baseUrl, room, name, { token, timeout = 20000, waitJoined = true, params = {} } = {}) {
  const url = new URL('/', baseUrl);
  url.searchParams.set('room', room);
  url.searchParams.set('name', name);
  for (const [k, v] of Object.entries(params)) url.searchParams.set(k, v); // e.g. {codec: 'h264'}
  if (token) url.searchParams.set('token', token);
  if (typeof browserContext.grantPermissions === 'function') { // Playwright only
    try {
      await browserContext.grantPermissions(['camera', 'microphone'], { origin: url.origin });
    } catch (_) { /* the fake-ui flag grants them anyway */ }
  }
  const page = await browserContext.newPage();
  const info = { name, room, participantId: null, logs: [] };
  pageInfo.set(page, info);
  const log = (line) => {
    info.logs.push(`${new Date().toISOString().slice(11, 23)} ${line}`);
    if (info.logs.length > 500) info.logs.splice(0, info.logs.length - 500);
  };
  page.on('console', (m) => log(`console.${m.type()}: ${m.text()}`));
  page.on('pageerror', (e) => log(`pageerror: ${e.message}`));
  page.on('crash', () => log('page crashed'));
  await page.goto(url.href, { timeout });
  if (!waitJoined) return page;
  const joined = await withTimeout(
    page.evaluate(async () => {
      await window.sfuDemo.joined;
      return { participantId: window.sfuDemo.participantId, room: window.sfuDemo.room };
    }),
    timeout,
    `${name} joining room ${room}`,
  );
  info.participantId = joined.participantId;
  return page;
}

/** window.sfuDemo.remote() of a page. */
export function remoteOf(page) {
  return page.evaluate(() => window.sfuDemo.remote());
}

/** window.sfuDemo.messages of a page. */
export function messagesOf(page) {
  return page.evaluate(() => window.sfuDemo.messages);
}

/** remote() entries by participant id. */
export const byId = (list) => Object.fromEntries(list.map((r) => [r.participant, r]));

/**
 * Waits until `viewer` decodes video (width > 0) and receives audio from every participant id in
 * `from`, then until framesDecoded and audioBytes grew again for all of them; returns the last
 * remote() entries by id.
 */
export async function expectReceiving(viewer, from, { timeout = 30000, minFrames = 10 } = {}) {
  const who = infoOf(viewer).name;
  const first = await waitFor(async () => {
    const r = byId(await remoteOf(viewer));
    return from.every((id) => r[id] && r[id].framesDecoded > 0 && r[id].videoWidth > 0 && r[id].audioBytes > 0) && r;
  }, {
    timeout,
    interval: 250,
    message: async () => `${who} to decode video (width > 0) and receive audio from ${from.join(', ')}`
      + ` (remote(): ${JSON.stringify(await remoteOf(viewer).catch((e) => e.message))})`,
  });
  const last = await waitFor(async () => {
    const r = byId(await remoteOf(viewer));
    return from.every((id) => r[id]
      && r[id].framesDecoded >= first[id].framesDecoded + minFrames
      && r[id].audioBytes > first[id].audioBytes
      && r[id].videoWidth > 0) && r;
  }, {
    timeout: 15000,
    interval: 250,
    message: (l) => `${who}: framesDecoded (+${minFrames}) and audioBytes to keep increasing for ${from.join(', ')}`
      + ` (first: ${JSON.stringify(first)}; last: ${JSON.stringify(l)})`,
  });
  return last;
}

/**
 * A server plus one browser for a test file. `open(room, name)` opens a participant in its own
 * browser context; `diagnose(fn)` runs fn and, if it throws, appends the server's stderr and the
 * participants' console logs to the error.
 */
export class Harness {
  /** `options`: startServer's, plus `browserArgs(server)`: more Chromium flags. */
  static async start(options = {}) {
    const h = new Harness();
    h.server = await startServer(options);
    try {
      h.browser = await launchBrowser(undefined, options.browserArgs ? options.browserArgs(h.server) : []);
    } catch (err) {
      await h.server.stop();
      throw err;
    }
    return h;
  }

  constructor() {
    this.server = null;
    this.browser = null;
    this.pages = new Set();
  }

  get baseUrl() {
    return this.server.baseUrl;
  }

  async open(room, name, options) {
    // ignoreHTTPSErrors: a server with a test certificate (https.test.mjs)
    const context = await this.browser.newContext({ viewport: { width: 1280, height: 720 }, ignoreHTTPSErrors: true });
    try {
      const page = await openParticipant(context, this.baseUrl, room, name, options);
      this.pages.add(page);
      return page;
    } catch (err) {
      const page = context.pages()[0];
      const info = page && infoOf(page);
      if (info) err.message += `\n--- ${name} console ---\n${info.logs.join('\n')}`;
      await context.close().catch(() => {});
      throw err;
    }
  }

  /** Closes the participant's page and browser context (the socket closes with it). */
  async closePage(page) {
    this.pages.delete(page);
    await page.context().close().catch(() => {});
  }

  diagnostics() {
    let out = '';
    for (const page of this.pages) {
      const info = infoOf(page);
      if (!info) continue;
      out += `\n--- console of ${info.name} (${info.participantId}, room ${info.room}) ---\n`;
      out += info.logs.slice(-60).join('\n');
    }
    out += `\n--- server stderr (last ${LOG_TAIL_LINES} lines) ---\n${this.server ? this.server.stderrTail() : ''}`;
    const ex = this.server && this.server.exited();
    if (ex) out += `\n--- server exited: code ${ex.code}, signal ${ex.signal} ---`;
    return out;
  }

  async diagnose(fn) {
    try {
      return await fn();
    } catch (err) {
      const text = this.diagnostics();
      if (err && typeof err === 'object') {
        try {
          err.message = `${err.message}\n${text}`;
        } catch (_) {
          console.error(text);
        }
      } else {
        console.error(text);
      }
      throw err;
    }
  }

  async close() {
    if (this.browser) await withTimeout(this.browser.close(), 20000, 'closing the browser').catch(() => {});
    if (this.server) await this.server.stop();
  }
}

/** `needs TOOL` for the first of `tools` not on PATH (a test skips, saying why), or null. */
export function missingTool(tools) {
  for (const tool of tools) {
    try { execFileSync('sh', ['-c', `command -v ${tool}`], { stdio: 'pipe' }); } catch (_) { return `needs ${tool}`; }
  }
  return null;
}

/** A self-signed P-256 certificate and key for one day, made with openssl in `dir`:
 * `{cert, key}` paths. `extra`: more `openssl req` arguments (e.g. a subjectAltName). */
export function selfSignedCertificate(dir, name, subject, extra = []) {
  const cert = path.join(dir, `${name}.pem`);
  const key = path.join(dir, `${name}.key`);
  execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes',
    '-keyout', key, '-out', cert, '-days', '1', '-subj', subject, ...extra], { stdio: 'pipe' });
  return { cert, key };
}

/** The selected candidate pair of each of the page's connections (`{publisher, subscriber}`,
 * null before one is selected): both candidates' protocol and type (the local one's TCP type
 * and protocol to a TURN server, the remote one's port) and the bytes over the pair. */
export async function selectedRoutes(page) {
  return page.evaluate(async () => {
    const out = {};
    for (const [role, pc] of Object.entries(window.sfuDemo.peerConnections())) {
      if (!pc) continue;
      const stats = await pc.getStats();
      let pair = null;
      stats.forEach((r) => {
        if (r.type === 'transport' && r.selectedCandidatePairId) pair = stats.get(r.selectedCandidatePairId);
      });
      if (!pair) { out[role] = null; continue; }
      const local = stats.get(pair.localCandidateId);
      const remote = stats.get(pair.remoteCandidateId);
      out[role] = {
        local: { protocol: local.protocol, type: local.candidateType, tcpType: local.tcpType, relayProtocol: local.relayProtocol },
        remote: { protocol: remote.protocol, type: remote.candidateType, port: remote.port },
        bytesSent: pair.bytesSent,
        bytesReceived: pair.bytesReceived,
      };
    }
    return out;
  });
}

/** [`selectedRoutes`] once the publisher connection's selected pair has sent and the
 * subscriber's has received more than `bytes` (a pair ICE just switched to starts at zero, so one
 * read right after media began can catch it empty). */
export async function routesWithMedia(page, bytes = 10000) {
  return waitFor(async () => {
    const r = await selectedRoutes(page);
    return r.publisher && r.subscriber && r.publisher.bytesSent > bytes && r.subscriber.bytesReceived > bytes && r;
  }, {
    timeout: 10000,
    interval: 250,
    message: async () => `media over both selected pairs: ${JSON.stringify(await selectedRoutes(page))}`,
  });
}

/** What `pub` sends per simulcast rid, to tell a publisher that never sent a layer from a switch
 * the server did not make. */
export async function outboundVideo(pub) {
  return pub.evaluate(async () => {
    const pc = window.sfuDemo.peerConnections().publisher;
    if (!pc) return null;
    const stats = await pc.getStats();
    const out = { active: window.sfuDemo.activeLayers || null, rids: {} };
    stats.forEach((r) => {
      if (r.type === 'outbound-rtp' && r.kind === 'video') {
        out.rids[r.rid || '-'] = {
          width: r.frameWidth, fps: r.framesPerSecond, active: r.active, frames: r.framesEncoded,
          limit: r.qualityLimitationReason, target: r.targetBitrate,
        };
      }
      if (r.type === 'candidate-pair' && r.nominated) out.availableOutgoingBitrate = r.availableOutgoingBitrate;
    });
    return out;
  });
}
