// Shared machinery of the browser tests: sound fixtures, the real `voipchat` binary on
// ephemeral ports with a temp data dir, a game backend (session keys + signing through the
// backend API), and headless Chromium pages driving the SDK.
//
// Everything must run inside a loopback-only network namespace (see ../README.md):
// Chromium gathers ICE candidates on every interface.

import { spawn, execFileSync } from 'node:child_process';
import crypto from 'node:crypto';
import dgram from 'node:dgram';
import http from 'node:http';
import https from 'node:https';
import net from 'node:net';
import { mkdtempSync, readFileSync, readdirSync, rmSync, existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join as pathJoin, resolve, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../../..');
export const BIN = pathJoin(ROOT, 'target/debug/voipchat');
export const CLIENT_BIN = pathJoin(ROOT, 'target/debug/voipchat-client');
export const ARTIFACTS = pathJoin(ROOT, 'target/browser');
export const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Refuses to run outside a namespace that has nothing but `lo`. */
export function requireLoopbackOnly() {
  // /proc/net/dev belongs to the network namespace (/sys/class/net may show the host's).
  const ifaces = readFileSync('/proc/net/dev', 'utf8')
    .split('\n')
    .slice(2)
    .map((l) => l.split(':')[0].trim())
    .filter((n) => n && n !== 'lo');
  if (ifaces.length && !process.env.VOIPCHAT_ALLOW_HOST_NETWORK) {
    throw new Error(
      `these tests must run in a loopback-only network namespace (found ${ifaces.join(', ')}); ` +
        'use tests/browser/run.sh, or: unshare -n -- bash -c "ip link set lo up && exec node --test"',
    );
  }
}

/** Polls `fn` until it returns a truthy value; returns it, or throws after `ms`. */
export async function waitFor(fn, { timeout = 10000, interval = 100, what = 'condition' } = {}) {
  const start = Date.now();
  let last;
  for (;;) {
    try {
      last = await fn();
      if (last) return last;
    } catch (e) {
      last = e;
    }
    if (Date.now() - start > timeout) {
      throw new Error(`timed out after ${timeout} ms waiting for ${what} (last: ${JSON.stringify(last && last.message ? last.message : last)})`);
    }
    await sleep(interval);
  }
}

/** WAV fixtures (48 kHz mono 16-bit) made with sox / espeak-ng, and an Ogg Opus speech file. */
export function makeFixtures() {
  const dir = mkdtempSync(pathJoin(tmpdir(), 'voipchat-fixtures-'));
  const sox = (...args) => execFileSync('sox', args, { stdio: 'pipe' });
  const f = {
    dir,
    tone440: pathJoin(dir, 'tone440.wav'),
    tone660: pathJoin(dir, 'tone660.wav'),
    tone880: pathJoin(dir, 'tone880.wav'),
    silence: pathJoin(dir, 'silence.wav'),
    speechWav: pathJoin(dir, 'speech.wav'),
    speechOpus: pathJoin(dir, 'speech.opus'),
  };
  for (const hz of [440, 660, 880]) {
    sox('-n', '-r', '48000', '-c', '1', '-b', '16', f[`tone${hz}`], 'synth', '5', 'sine', String(hz), 'vol', '0.5');
  }
  sox('-n', '-r', '48000', '-c', '1', '-b', '16', f.silence, 'trim', '0', '5');
  const raw = pathJoin(dir, 'speech-raw.wav');
  execFileSync('espeak-ng', ['-w', raw, 'Hello from the Rust client. One two three four five. This is a voice chat test.']);
  sox(raw, '-r', '48000', '-c', '1', '-b', '16', f.speechWav);
  execFileSync('opusenc', ['--quiet', f.speechWav, f.speechOpus]);
  return f;
}

/**
 * Solid colours for fake cameras: the sRGB a page should see, and the same colour in
 * BT.601 limited-range YCbCr (what the y4m file holds).
 */
export const CAMERA_COLOURS = {
  red: { rgb: [255, 0, 0], yuv: [81, 90, 240] },
  green: { rgb: [0, 255, 0], yuv: [145, 54, 34] },
  blue: { rgb: [0, 0, 255], yuv: [41, 240, 110] },
  yellow: { rgb: [255, 255, 0], yuv: [210, 16, 146] },
};

/**
 * Writes a solid-colour Y4M video (I420, `width`x`height`, `fps`, `seconds` long) for
 * Chromium's `--use-file-for-fake-video-capture`, which loops it. Y4M is a text header and
 * raw planes, so no encoder is needed.
 */
export function writeY4m(path, [y, u, v], { width = 160, height = 120, fps = 15, seconds = 2 } = {}) {
  const header = Buffer.from(`YUV4MPEG2 W${width} H${height} F${fps}:1 Ip A1:1 C420jpeg\n`);
  const luma = width * height;
  const chroma = (width / 2) * (height / 2);
  const frame = Buffer.alloc(6 + luma + 2 * chroma);
  frame.write('FRAME\n');
  frame.fill(y, 6, 6 + luma);
  frame.fill(u, 6 + luma, 6 + luma + chroma);
  frame.fill(v, 6 + luma + chroma);
  const frames = Array.from({ length: fps * seconds }, () => frame);
  writeFileSync(path, Buffer.concat([header, ...frames]));
  return path;
}

/** One solid-colour camera file per colour of CAMERA_COLOURS: {dir, red, green, …}. */
export function makeCameraFixtures() {
  const dir = mkdtempSync(pathJoin(tmpdir(), 'voipchat-cameras-'));
  const out = { dir };
  for (const [name, { yuv }] of Object.entries(CAMERA_COLOURS)) out[name] = writeY4m(pathJoin(dir, `${name}.y4m`), yuv);
  return out;
}

/**
 * A self-signed certificate for `names` (DNS names; IPs go in as IP SANs) made with openssl:
 * {dir, cert, key} file paths, the PEM, and `spki`, the base64 SHA-256 of its public key that
 * Chromium's --ignore-certificate-errors-spki-list takes.
 */
export function makeCertificate(names = ['localhost', '127.0.0.1']) {
  const dir = mkdtempSync(pathJoin(tmpdir(), 'voipchat-tls-'));
  const cert = pathJoin(dir, 'cert.pem');
  const key = pathJoin(dir, 'key.pem');
  const san = names.map((n) => (net.isIP(n) ? `IP:${n}` : `DNS:${n}`)).join(',');
  execFileSync('openssl', [
    'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes',
    '-keyout', key, '-out', cert, '-days', '2', '-subj', `/CN=${names[0]}`, '-addext', `subjectAltName=${san}`,
  ], { stdio: 'pipe' });
  const pem = readFileSync(cert, 'utf8');
  const spkiDer = new crypto.X509Certificate(pem).publicKey.export({ type: 'spki', format: 'der' });
  const spki = crypto.createHash('sha256').update(spkiDer).digest('base64');
  return { dir, cert, key, pem, spki };
}

/** fetch-like request for a server with a private certificate (`ca`: its PEM). */
function requestTrusting(ca, url, { method = 'GET', headers = {}, body } = {}) {
  return new Promise((resolveReq, rejectReq) => {
    const req = https.request(url, { method, headers, ca }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        resolveReq({ ok: res.statusCode < 300, status: res.statusCode, json: async () => JSON.parse(text), text: async () => text });
      });
    });
    req.on('error', rejectReq);
    req.setTimeout(10000, () => req.destroy(new Error(`${url}: no answer in 10 s`)));
    req.end(body);
  });
}

/**
 * Starts target/debug/voipchat on `host` (default 127.0.0.1), ports chosen by the kernel, with a
 * temp data dir. A `host` off loopback gets --allow-insecure-http unless `tls` is given.
 * `apps`: names of apps to create (VoIP enabled) before it starts.
 * `tls`: a makeCertificate() result: the server serves HTTPS/WSS with it (`base` and `ws` are
 * then https:// and wss://, and the server's helpers trust that certificate).
 * `config`: TOML text of a config file to start it with (`--config`; the flags here override it).
 */
export async function startServer({ testHooks = true, demo = true, apps = [], extraArgs = [], host = '127.0.0.1', mediaHost = host, tls = null, config = null } = {}) {
  if (!existsSync(BIN)) throw new Error(`${BIN} is missing: run cargo build first`);
  const dataDir = mkdtempSync(pathJoin(tmpdir(), 'voipchat-data-'));
  const created = {};
  for (const name of apps) {
    const out = execFileSync(BIN, ['--data-dir', dataDir, 'app', 'create', '--name', name], { encoding: 'utf8' });
    const app = JSON.parse(out.trim().split('\n').pop());
    execFileSync(BIN, ['--data-dir', dataDir, 'app', 'enable-voip', app.appId], { stdio: 'pipe' });
    created[name] = app;
  }
  const args = ['--data-dir', dataDir, 'serve', '--http-addr', `${host}:0`, '--media-addr', `${mediaHost}:0`];
  if (config !== null) {
    const file = pathJoin(dataDir, 'voipchat.toml');
    writeFileSync(file, config);
    args.push('--config', file);
  }
  if (testHooks) args.push('--test-hooks');
  if (!demo) args.push('--no-demo');
  if (tls) args.push('--tls-cert', tls.cert, '--tls-key', tls.key);
  else if (!host.startsWith('127.')) args.push('--allow-insecure-http');
  const request = tls ? (url, init) => requestTrusting(tls.pem, url, init) : fetch;
  args.push(...extraArgs);
  const proc = spawn(BIN, args, {
    env: { ...process.env, NO_COLOR: '1', RUST_LOG: process.env.RUST_LOG || 'info,str0m=warn,dimpl=warn' },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  const logs = [];
  let http, mediaPort;
  await new Promise((resolveStart, rejectStart) => {
    const timer = setTimeout(() => rejectStart(new Error(`server did not start:\n${logs.join('')}`)), 15000);
    proc.stderr.setEncoding('utf8');
    proc.stderr.on('data', (chunk) => {
      logs.push(chunk);
      // eslint-disable-next-line no-control-regex
      const text = logs.join('').replace(/\x1b\[[0-9;]*m/g, '');
      // Both on the "voipchat serving" line, which may arrive in two chunks.
      const m = text.match(/http=(\d+\.\d+\.\d+\.\d+:\d+).*media=[\d.]+:(\d+)/);
      if (m && !http) {
        http = m[1];
        mediaPort = Number(m[2]);
        clearTimeout(timer);
        resolveStart();
      }
    });
    proc.on('exit', (code) => {
      clearTimeout(timer);
      if (!http) rejectStart(new Error(`server exited with ${code}:\n${logs.join('')}`));
    });
  });
  const base = `${tls ? 'https' : 'http'}://${http}`;
  const server = {
    base,
    ws: `${tls ? 'wss' : 'ws'}://${http}/ws`,
    /** The UDP port of the server's media. */
    mediaPort,
    proc,
    dataDir,
    apps: created,
    logs: () => logs.join(''),
    async stop() {
      // A process killed by a signal (a test's SIGKILL) has exitCode null and a signalCode.
      if (proc.exitCode === null && proc.signalCode === null) {
        const exited = new Promise((r) => proc.once('exit', r));
        proc.kill('SIGTERM');
        let timer;
        await Promise.race([exited, new Promise((r) => (timer = setTimeout(r, 8000)))]);
        clearTimeout(timer);
        if (proc.exitCode === null) {
          proc.kill('SIGKILL');
          await exited;
        }
      }
      rmSync(dataDir, { recursive: true, force: true });
    },
    /** A backend API call with the app's Basic credentials. */
    async api(app, path, body) {
      const res = await request(base + path, {
        method: body === undefined ? 'GET' : 'POST',
        headers: {
          authorization: 'Basic ' + Buffer.from(`${app.appId}:${app.appSecret}`).toString('base64'),
          'content-type': 'application/json',
        },
        body: body === undefined ? undefined : JSON.stringify(body),
      });
      const json = await res.json();
      if (!res.ok) throw new Error(`${path}: HTTP ${res.status} ${JSON.stringify(json)}`);
      return json;
    },
    /** The game backend's signing: a session key once per user, then voip-sign per join. */
    backend(app) {
      const keys = new Set();
      return async ({ openId, groupId }) => {
        if (!keys.has(openId)) {
          await server.api(app, '/api/v1/session-key', { openId });
          keys.add(openId);
        }
        const nonceStr = Math.random().toString(36).slice(2, 14);
        const timeStamp = Math.floor(Date.now() / 1000);
        const { signature } = await server.api(app, '/api/v1/voip-sign', { openId, groupId, nonce: nonceStr, timestamp: timeStamp });
        return { nonceStr, timeStamp, signature };
      };
    },
    /** The members of an open room in join order; [] when no such room is open (404, -12007). */
    async members(app, groupId) {
      try {
        return (await server.api(app, `/api/v1/rooms/${encodeURIComponent(groupId)}`)).openIdList;
      } catch (e) {
        if (/HTTP 404 .*-12007/.test(e.message)) return [];
        throw e;
      }
    },
    /** Test hook: the server drops the WebSockets opened with `query` in their URL. */
    async dropWs(query) {
      const res = await request(base + '/api/v1/test/drop-ws', { method: 'POST', body: JSON.stringify({ query }) });
      if (!res.ok) throw new Error(`drop-ws: HTTP ${res.status}`);
      return (await res.json()).dropped;
    },
  };
  return server;
}

export const CHROMIUM_ARGS = [
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--use-fake-ui-for-media-stream',
  '--use-fake-device-for-media-stream',
  '--allow-loopback-in-peer-connection',
];

/** One Chromium process whose microphone plays `wav` (one voice per process). */
export async function launchVoice(wav, extraArgs = []) {
  return chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: [...CHROMIUM_ARGS, `--use-file-for-fake-audio-capture=${wav}`, ...extraArgs],
  });
}

/**
 * One Chromium process whose microphone plays `wav` and whose camera plays `y4m` (one
 * camera per process), or has no camera at all when `y4m` is null.
 */
export async function launchMember(wav, y4m, extraArgs = []) {
  const camera = y4m
    ? [`--use-file-for-fake-video-capture=${y4m}`]
    : // The fake device factory with no cameras: the microphone works, getUserMedia video fails.
      ['--use-fake-device-for-media-stream=device-count=0'];
  const args = [...CHROMIUM_ARGS.filter((a) => y4m || a !== '--use-fake-device-for-media-stream'), ...camera];
  return chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: [...args, `--use-file-for-fake-audio-capture=${wav}`, ...extraArgs],
  });
}

/** The pids of a process and all its descendants (from /proc). */
function processTree(root) {
  const children = new Map();
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = readFileSync(`/proc/${name}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      if (!children.has(ppid)) children.set(ppid, []);
      children.get(ppid).push(Number(name));
    } catch {
      /* gone meanwhile */
    }
  }
  const out = [];
  const stack = [root];
  while (stack.length) {
    const pid = stack.pop();
    out.push(pid);
    stack.push(...(children.get(pid) || []));
  }
  return out;
}

/**
 * SIGKILLs the Chromium started by launchVoice(wav) and all its processes: its sockets and
 * peer connections end without a goodbye, as when a machine drops off the network.
 */
export function killVoice(wav) {
  const flag = `--use-file-for-fake-audio-capture=${wav}`;
  const mains = readdirSync('/proc').filter((name) => {
    if (!/^\d+$/.test(name)) return false;
    try {
      const args = readFileSync(`/proc/${name}/cmdline`, 'utf8').split('\0');
      return args.includes(flag) && !args.some((a) => a.startsWith('--type='));
    } catch {
      return false;
    }
  });
  if (mains.length !== 1) throw new Error(`expected one browser with ${flag}, found ${mains.length}`);
  const pids = processTree(Number(mains[0]));
  for (const pid of pids) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      /* already gone */
    }
  }
  return pids.length;
}

/**
 * A page at the server's origin with a client of the SDK in `window.client` and every event
 * recorded in `window.log`. `sign` runs in node (the game backend). `origin` loads the page
 * from another name of the server (e.g. https://voip.test:PORT through
 * --host-resolver-rules) and gives the SDK that origin as its server, so it derives the
 * signaling URL itself. `prepare(page)` runs before the page loads (for routes, which apply
 * from the next load on).
 */
export async function openClient(browser, server, { appId, openId, sign, tag = openId, pageErrors = [], options = {}, origin = null, prepare = null }) {
  const context = await browser.newContext();
  const page = await context.newPage();
  if (prepare) await prepare(page);
  page.on('pageerror', (e) => pageErrors.push(`${openId}: ${e.message}`));
  page.on('console', (m) => {
    if (m.type() === 'error' || process.env.VOIPCHAT_PAGE_LOG) pageErrors.push(`${openId} console.${m.type()}: ${m.text()}`);
  });
  await page.exposeFunction('backendSign', (req) => sign(req));
  await page.goto(`${origin || server.base}/healthz`);
  await page.evaluate(
    async ({ url, appId, openId, options }) => {
      const sdk = await import('/sdk/voipchat.js');
      const client = sdk.createVoIPClient({
        ...options,
        // A list of nodes, when the test gives one (a cluster).
        server: options.server || url,
        appId,
        openId,
        // Exact levels: no processing of the fake microphone's tone.
        audio: { echoCancellation: false, noiseSuppression: false, autoGainControl: false },
        sign: (req) => window.backendSign(req),
      });
      const log = { members: [], speakers: [], interrupted: [], state: [] };
      client.onVoIPChatMembersChanged((p) => log.members.push({ t: Date.now(), ...p }));
      client.onVoIPChatSpeakersChanged((p) => log.speakers.push({ t: Date.now(), ...p }));
      client.onVoIPChatInterrupted((p) => log.interrupted.push({ t: Date.now(), ...p }));
      client.onVoIPChatStateChanged((p) => log.state.push({ t: Date.now(), ...p }));
      window.client = client;
      window.log = log;
      window.sdk = sdk;
    },
    { url: origin ? `${origin}/?tag=${encodeURIComponent(tag)}` : `${server.ws}?tag=${encodeURIComponent(tag)}`, appId, openId, options },
  );
  return { page, context, browser, openId };
}

/** Joins `groupId` on the page; resolves with the success payload (rejects with errCode). */
export async function join(client, groupId, muteConfig) {
  return client.page.evaluate(
    async ({ groupId, muteConfig }) => {
      try {
        return await window.client.joinVoIPChat({ groupId, muteConfig });
      } catch (e) {
        return { errCode: e.errCode, errMsg: e.errMsg };
      }
    },
    { groupId, muteConfig },
  );
}

/**
 * What a page receives from each member now (getStatsByOpenId of the SDK client in
 * `window[client.global]`, default `window.client`).
 */
export function stats(client) {
  return client.page.evaluate((g) => window[g].getStatsByOpenId(), client.global || 'client');
}

/**
 * Received audio per member over `ms`: packets and energy gained, and the audio level at the
 * end. {openId: {packets, energy, level}}
 */
export async function measure(client, ms = 1500) {
  const a = await stats(client);
  await sleep(ms);
  const b = await stats(client);
  const out = {};
  for (const [id, s] of Object.entries(b)) {
    const p = a[id] || { packetsReceived: 0, totalAudioEnergy: 0 };
    out[id] = {
      packets: s.packetsReceived - p.packetsReceived,
      energy: s.totalAudioEnergy - p.totalAudioEnergy,
      level: s.audioLevel,
    };
  }
  return out;
}

/** Measures several pages at once (the same wall-clock window). */
export async function measureAll(clients, ms = 1500) {
  const results = await Promise.all(clients.map((c) => measure(c, ms)));
  return Object.fromEntries(clients.map((c, i) => [c.openId, results[i]]));
}

export function pageLog(client) {
  return client.page.evaluate(() => window.log);
}

export function ensureArtifacts() {
  mkdirSync(ARTIFACTS, { recursive: true });
  return ARTIFACTS;
}

/**
 * An HTTP (and WebSocket) pass-through proxy on 127.0.0.1 in front of `target` that records
 * every request the browser makes, favicon requests included (which playwright's response
 * events do not show): {base, requests: [{method, url, status}], close()}.
 */
export async function recordingProxy(target) {
  const to = new URL(target);
  const requests = [];
  const proxy = http.createServer((req, res) => {
    const entry = { method: req.method, url: req.url, status: null };
    requests.push(entry);
    const up = http.request(
      { host: to.hostname, port: to.port, method: req.method, path: req.url, headers: { ...req.headers, host: to.host } },
      (r) => {
        entry.status = r.statusCode;
        res.writeHead(r.statusCode, r.headers);
        r.pipe(res);
      },
    );
    up.on('error', () => {
      entry.status = 502;
      res.writeHead(502).end();
    });
    req.pipe(up);
  });
  proxy.on('upgrade', (req, socket, head) => {
    requests.push({ method: req.method, url: req.url, status: 101 });
    const up = net.connect(Number(to.port), to.hostname, () => {
      const lines = [`${req.method} ${req.url} HTTP/1.1`];
      for (let i = 0; i < req.rawHeaders.length; i += 2) lines.push(`${req.rawHeaders[i]}: ${req.rawHeaders[i + 1]}`);
      up.write(lines.join('\r\n') + '\r\n\r\n');
      if (head && head.length) up.write(head);
      up.pipe(socket);
      socket.pipe(up);
    });
    up.on('error', () => socket.destroy());
    socket.on('error', () => up.destroy());
  });
  await new Promise((r) => proxy.listen(0, '127.0.0.1', r));
  return {
    base: `http://127.0.0.1:${proxy.address().port}`,
    requests,
    close: () =>
      new Promise((r) => {
        proxy.closeAllConnections();
        proxy.close(() => r());
      }),
  };
}

/** The example game backends of examples/: how to start each. */
export const EXAMPLES = {
  node: { cmd: 'node', args: [pathJoin(ROOT, 'examples/node-backend/server.mjs')] },
  python: { cmd: process.env.PYTHON || 'python3', args: [pathJoin(ROOT, 'examples/python-backend/server.py')] },
};

/**
 * Starts an example game backend (`node` or `python`) for `app` of `server` on a free port;
 * resolves when it prints its address: {base, proc, logs(), stop()}.
 */
export async function startExample(kind, server, app) {
  const { cmd, args } = EXAMPLES[kind];
  const proc = spawn(cmd, args, {
    env: { ...process.env, VOIPCHAT_URL: server.base, APP_ID: app.appId, APP_SECRET: app.appSecret, PORT: '0', HOST: '127.0.0.1' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const out = [];
  let base;
  await new Promise((resolveStart, rejectStart) => {
    const timer = setTimeout(() => rejectStart(new Error(`${kind} example did not start:\n${out.join('')}`)), 15000);
    const onData = (chunk) => {
      out.push(chunk);
      const m = out.join('').match(/listening on (http:\/\/127\.0\.0\.1:\d+)\//);
      if (m && !base) {
        base = m[1];
        clearTimeout(timer);
        resolveStart();
      }
    };
    proc.stdout.setEncoding('utf8');
    proc.stderr.setEncoding('utf8');
    proc.stdout.on('data', onData);
    proc.stderr.on('data', onData);
    proc.on('exit', (code) => {
      clearTimeout(timer);
      if (!base) rejectStart(new Error(`${kind} example exited with ${code}:\n${out.join('')}`));
    });
  });
  return {
    base,
    proc,
    logs: () => out.join(''),
    async stop() {
      if (proc.exitCode !== null || proc.signalCode !== null) return;
      const exited = new Promise((r) => proc.once('exit', r));
      proc.kill('SIGTERM');
      let timer;
      await Promise.race([exited, new Promise((r) => (timer = setTimeout(r, 5000)))]);
      clearTimeout(timer);
      if (proc.exitCode === null && proc.signalCode === null) {
        proc.kill('SIGKILL');
        await exited;
      }
    },
  };
}

/**
 * A second network namespace joined to this one by a veth pair, for a member whose link is
 * made bad: loss with nftables inside it, a bandwidth limit with tc tbf on the veth end here
 * (what the server sends it). This namespace gets `hostIp`, the other `peerIp`; the server
 * must bind and announce `hostIp` (which members here reach as a local address).
 * `launch(wav, y4m, extraArgs)` starts a member's Chromium inside it.
 */
export async function sideNetwork({ hostIp = '10.77.0.1', peerIp = '10.77.0.2', name = 'vc' } = {}) {
  // The namespace lives as long as this sleeping process (its own PID namespace would not
  // outlive the test either: run.sh's namespace dies with the test run).
  const holder = spawn('unshare', ['-n', '--', 'sleep', '100000'], { stdio: 'ignore' });
  await new Promise((r, j) => {
    holder.once('spawn', r);
    holder.once('error', j);
  });
  await sleep(100); // unshare has switched namespaces and exec'd sleep
  const pid = String(holder.pid);
  const sh = (...args) => execFileSync(args[0], args.slice(1), { stdio: 'pipe', encoding: 'utf8' });
  const inside = (...args) => sh('nsenter', '-t', pid, '-n', ...args);
  const here = `${name}h`;
  const there = `${name}p`;
  sh('ip', 'link', 'add', here, 'type', 'veth', 'peer', 'name', there);
  sh('ip', 'link', 'set', there, 'netns', pid);
  sh('ip', 'addr', 'add', `${hostIp}/24`, 'dev', here);
  sh('ip', 'link', 'set', here, 'up');
  inside('ip', 'link', 'set', 'lo', 'up');
  inside('ip', 'addr', 'add', `${peerIp}/24`, 'dev', there);
  inside('ip', 'link', 'set', there, 'up');
  // Chromium started through nsenter: playwright talks to it over a pipe, which crosses
  // namespaces.
  const dir = mkdtempSync(pathJoin(tmpdir(), 'voipchat-sidenet-'));
  const wrapper = pathJoin(dir, 'chromium');
  writeFileSync(wrapper, `#!/bin/sh\nexec nsenter -t ${pid} -n ${CHROMIUM} "$@"\n`, { mode: 0o755 });
  return {
    hostIp,
    peerIp,
    /** The pid whose network namespace this is (for nsenter -t). */
    pid,
    /** Runs a command inside the namespace; returns its stdout. */
    inside,
    /** Starts a command inside the namespace (child_process.spawn's options). */
    spawn(cmd, args, options) {
      return spawn('nsenter', ['-t', pid, '-n', cmd, ...args], options);
    },
    /**
     * A firewall on what the namespace sends: only TCP to `tcpPorts` and UDP to `udpPorts`
     * of the host side (and loopback) pass; every other TCP and UDP packet is counted and
     * dropped.
     */
    firewall({ tcpPorts = [], udpPorts = [] }) {
      const set = (ports) => `{ ${ports.join(', ')} }`;
      inside('nft', 'add', 'table', 'inet', 'fw');
      inside('nft', 'add', 'chain', 'inet', 'fw', 'out', '{ type filter hook output priority 0; policy accept; }');
      inside('nft', 'add', 'rule', 'inet', 'fw', 'out', 'oif', 'lo', 'accept');
      if (tcpPorts.length) inside('nft', 'add', 'rule', 'inet', 'fw', 'out', 'ip', 'daddr', hostIp, 'tcp', 'dport', set(tcpPorts), 'accept');
      if (udpPorts.length) inside('nft', 'add', 'rule', 'inet', 'fw', 'out', 'ip', 'daddr', hostIp, 'udp', 'dport', set(udpPorts), 'accept');
      inside('nft', 'add', 'rule', 'inet', 'fw', 'out', 'meta', 'l4proto', '{ tcp, udp }', 'counter', 'drop');
    },
    /** How many packets the firewall dropped so far. */
    firewallDrops() {
      const m = inside('nft', 'list', 'table', 'inet', 'fw').match(/counter packets (\d+)/);
      return m ? Number(m[1]) : 0;
    },
    /** Drops `percent` % of the UDP packets from `port` arriving inside (nftables numgen). */
    lossFrom(port, percent) {
      inside('nft', 'add', 'table', 'inet', 'lossy');
      inside('nft', 'add', 'chain', 'inet', 'lossy', 'in', '{ type filter hook input priority 0; }');
      inside('nft', 'add', 'rule', 'inet', 'lossy', 'in', 'udp', 'sport', String(port), 'numgen', 'random', 'mod', '100', '<', String(percent), 'counter', 'drop');
    },
    /** How many packets the loss rule dropped so far. */
    dropped() {
      const out = inside('nft', 'list', 'table', 'inet', 'lossy');
      const m = out.match(/counter packets (\d+)/);
      return m ? Number(m[1]) : 0;
    },
    clearLoss() {
      inside('nft', 'delete', 'table', 'inet', 'lossy');
    },
    /** Limits what this namespace sends into the other one (tc tbf on the veth end here). */
    limit(rate) {
      sh('tc', 'qdisc', 'replace', 'dev', here, 'root', 'tbf', 'rate', rate, 'burst', '16kbit', 'latency', '50ms');
    },
    unlimit() {
      sh('tc', 'qdisc', 'del', 'dev', here, 'root');
    },
    /** A Chromium inside the namespace; `y4m` null: the fake device's own camera. */
    async launch(wav, y4m, extraArgs = []) {
      const camera = y4m ? [`--use-file-for-fake-video-capture=${y4m}`] : [];
      const args = [...CHROMIUM_ARGS, ...camera, `--use-file-for-fake-audio-capture=${wav}`, ...extraArgs];
      return chromium.launch({ executablePath: wrapper, headless: true, args });
    },
    async close() {
      try {
        sh('ip', 'link', 'del', here);
      } catch {
        /* gone with the namespace */
      }
      holder.kill('SIGKILL');
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** A UDP port free on `ip` now (the kernel's choice). */
export async function freeUdpPort(ip) {
  const sock = dgram.createSocket('udp4');
  await new Promise((r, j) => {
    sock.once('error', j);
    sock.bind(0, ip, r);
  });
  const { port } = sock.address();
  await new Promise((r) => sock.close(r));
  return port;
}

/**
 * Debian's coturn (`/usr/bin/turnserver`) on `ip`, with the TURN REST scheme voipchat signs
 * for (`use-auth-secret` with `secret`), relaying from `ip` to `peers` only, no TLS, no CLI,
 * its log on stdout. Resolves once it listens: {port, proc, logs(), stop()}.
 */
export async function startCoturn({ ip, secret, peers, realm = 'voipchat.test', relayPorts = [49152, 49251] }) {
  const dir = mkdtempSync(pathJoin(tmpdir(), 'voipchat-coturn-'));
  const port = await freeUdpPort(ip);
  const conf = [
    'use-auth-secret',
    `static-auth-secret=${secret}`,
    `realm=${realm}`,
    `listening-ip=${ip}`,
    `listening-port=${port}`,
    `relay-ip=${ip}`,
    `min-port=${relayPorts[0]}`,
    `max-port=${relayPorts[1]}`,
    // Relay to voipchat's media address only (docs/turn.md): not an open relay.
    'denied-peer-ip=0.0.0.0-255.255.255.255',
    ...peers.map((p) => `allowed-peer-ip=${p}`),
    'no-multicast-peers',
    'no-tls',
    'no-dtls',
    'no-cli',
    'fingerprint',
    'log-file=stdout',
    'simple-log',
    // Log each session with its username (the test checks carol's).
    'verbose',
    `pidfile=${pathJoin(dir, 'turnserver.pid')}`,
    `userdb=${pathJoin(dir, 'turndb')}`,
  ];
  const file = pathJoin(dir, 'turnserver.conf');
  writeFileSync(file, conf.join('\n') + '\n');
  const proc = spawn('turnserver', ['-c', file], { stdio: ['ignore', 'pipe', 'pipe'] });
  const out = [];
  proc.stdout.setEncoding('utf8');
  proc.stderr.setEncoding('utf8');
  proc.stdout.on('data', (d) => out.push(d));
  proc.stderr.on('data', (d) => out.push(d));
  await waitFor(() => proc.exitCode !== null || /Total General servers/.test(out.join('')), {
    timeout: 15000,
    what: 'coturn to start',
  });
  if (proc.exitCode !== null) throw new Error(`turnserver exited with ${proc.exitCode}:\n${out.join('')}`);
  return {
    port,
    proc,
    config: conf.join('\n'),
    logs: () => out.join(''),
    async stop() {
      if (proc.exitCode === null && proc.signalCode === null) {
        const exited = new Promise((r) => proc.once('exit', r));
        proc.kill('SIGTERM');
        let timer;
        await Promise.race([exited, new Promise((r) => (timer = setTimeout(r, 5000)))]);
        clearTimeout(timer);
        if (proc.exitCode === null && proc.signalCode === null) {
          proc.kill('SIGKILL');
          await exited;
        }
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
