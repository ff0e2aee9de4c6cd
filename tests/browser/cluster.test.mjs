// Three nodes on one redis-server (started here, inside the test's loopback-only namespace):
// a Chromium page given every node and the Rust CLI peer (`--rejoin`, every node) meet in
// one room although the peer asked another node (the CLI follows the redirect). The room's
// node is stopped with SIGTERM: both rejoin by themselves, in one room on another node. That
// node is killed with SIGKILL: both rejoin by themselves on the last node and hear each
// other again within 10 s.

import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as h from './lib/harness.mjs';

async function freePort() {
  return new Promise((resolve) => {
    const s = createServer();
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

async function startRedis(dir) {
  const port = await freePort();
  const proc = spawn('redis-server', ['--bind', '127.0.0.1', '--port', String(port), '--save', '', '--dir', dir], {
    stdio: 'ignore',
  });
  await h.waitFor(
    () =>
      new Promise((resolve) => {
        const c = createServer().listen(port, '127.0.0.1', () => c.close(() => resolve(false)));
        c.on('error', () => resolve(true));
      }),
    { what: 'redis-server listens', timeout: 10000 },
  );
  return { port, proc };
}

/** The Rust CLI peer in group `g`, given the nodes `servers` (the first is asked first) and
 * `--rejoin`, sending speech until stopped. */
function rustPeer(servers, app, sessionKey, fixtures, out) {
  const peer = spawn(
    h.CLIENT_BIN,
    ['join', ...servers.flatMap((s) => ['--server', s]), '--rejoin', '--app-id', app.appId, '--open-id', 'rusty',
      '--group-id', 'g', '--session-key', sessionKey, '--send', fixtures.speechOpus, '--loop', '--duration', '40'],
    { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, NO_COLOR: '1' } },
  );
  peer.stdout.on('data', (d) => out.push(String(d)));
  peer.stderr.on('data', (d) => out.push(String(d)));
  peer.exited = new Promise((resolve) => peer.on('exit', resolve));
  return peer;
}

/** The node of `nodes` that holds room `g` with both members (null: none does yet). Asked
 * as another node would ask, so that a node answers for itself and does not pass the call on. */
async function roomNode(nodes, app) {
  const authorization = 'Basic ' + Buffer.from(`${app.appId}:${app.appSecret}`).toString('base64');
  for (const n of nodes) {
    const r = await fetch(`${n.base}/api/v1/rooms/g`, { headers: { authorization, 'x-voipchat-forwarded': 'test' } })
      .catch(() => null);
    if (r && r.ok && (await r.json()).openIdList.length === 2) return n;
  }
  return null;
}

describe('three nodes on one Redis', () => {
  let root, redis, nodes = [], app, fixtures, browser, peers = [];

  before(async () => {
    h.requireLoopbackOnly();
    fixtures = h.makeFixtures();
    root = mkdtempSync(join(tmpdir(), 'voipchat-cluster-'));
    redis = await startRedis(root);
    const keyFile = join(root, 'shared.key');
    writeFileSync(keyFile, randomBytes(32).toString('base64') + '\n', { mode: 0o600 });
    const config = `store = "redis://127.0.0.1:${redis.port}/0"\nsecrets_key_file = "${keyFile}"\n`;
    const cfgFile = join(root, 'cluster.toml');
    writeFileSync(cfgFile, config);
    app = JSON.parse(
      execFileSync(h.BIN, ['--data-dir', root, 'app', '--config', cfgFile, 'create', '--name', 'game'], { encoding: 'utf8' })
        .trim().split('\n').pop(),
    );
    execFileSync(h.BIN, ['--data-dir', root, 'app', '--config', cfgFile, 'enable-voip', app.appId], { stdio: 'pipe' });
    for (let i = 0; i < 3; i++) nodes.push(await h.startServer({ config }));
    browser = await h.launchVoice(fixtures.tone440);
  });

  after(async () => {
    for (const p of peers) if (p.exitCode === null) p.kill('SIGKILL');
    if (browser) await browser.close().catch(() => {});
    for (const n of nodes) await n.stop();
    if (redis) redis.proc.kill('SIGKILL');
    if (root) rmSync(root, { recursive: true, force: true });
  });

  it('meet on one node, move together when it stops (SIGTERM), and after a SIGKILL of the next meet again within 10 s', async () => {
    const [a, b, c] = nodes;
    // Signing through a node that stays up until the end (whichever of b and c that is,
    // any node signs: the session keys are in Redis).
    const web = await h.openClient(browser, a, {
      appId: app.appId,
      openId: 'web',
      sign: c.backend(app),
      options: { server: [a.ws, b.ws, c.ws] },
    });
    assert.equal((await h.join(web, 'g')).errCode, 0);
    const { sessionKey } = await b.api(app, '/api/v1/session-key', { openId: 'rusty' });
    const out = [];
    // Asking b first: redirected to a, where the room is.
    const peer = rustPeer([b.ws, a.ws, c.ws], app, sessionKey, fixtures, out);
    peers.push(peer);
    await h.waitFor(async () => (await h.pageLog(web)).members.at(-1)?.openIdList.includes('rusty'), {
      what: `rusty joins:\n${out.join('')}`,
    });
    assert.deepEqual((await a.api(app, '/api/v1/rooms/g')).openIdList, ['web', 'rusty']);
    await h.waitFor(async () => (await h.measure(web, 500)).rusty?.packets > 0, { what: 'audio from rusty' });

    // A clean stop of the room's node: both are told -11004 and rejoin elsewhere at once.
    const reconnectedBefore = (await h.pageLog(web)).state.filter((s) => s.data?.state === 'reconnected').length;
    const stopped = Date.now();
    a.proc.kill('SIGTERM');
    const rejoinedCount = () => out.join('').split('"event":"rejoined"').length - 1;
    await h.waitFor(async () => rejoinedCount() >= 1, { what: `rusty rejoins after the SIGTERM:\n${out.join('')}`, timeout: 10000 });
    await h.waitFor(
      async () => (await h.pageLog(web)).state.filter((s) => s.data?.state === 'reconnected').length > reconnectedBefore,
      { what: 'the page rejoins after the SIGTERM', timeout: 10000 },
    );
    let home = null;
    await h.waitFor(async () => (home = await roomNode([b, c], app)) !== null, { what: 'both in one room on b or c', timeout: 10000 });
    await h.waitFor(async () => (await h.measure(web, 300)).rusty?.packets > 0, { what: `audio from rusty after the SIGTERM:\n${out.join('')}` });
    const movedAfter = Date.now() - stopped;
    assert.equal(peer.exitCode, null, 'the CLI peer rejoined by itself');

    // SIGKILL of the node the room moved to.
    const live = home === b ? c : b;
    const reconnectedNow = (await h.pageLog(web)).state.filter((s) => s.data?.state === 'reconnected').length;
    const killed = Date.now();
    home.proc.kill('SIGKILL');
    await h.waitFor(async () => rejoinedCount() >= 2, { what: `rusty rejoins after the SIGKILL:\n${out.join('')}`, timeout: 10000 });
    await h.waitFor(
      async () => (await h.pageLog(web)).state.filter((s) => s.data?.state === 'reconnected').length > reconnectedNow,
      { what: 'the page rejoins after the SIGKILL', timeout: 10000 },
    );
    const rejoined = Date.now() - killed;
    await h.waitFor(async () => (await h.measure(web, 300)).rusty?.packets > 0, {
      what: `audio from rusty again:\n${out.join('')}`,
      timeout: Math.max(1000, 10000 - (Date.now() - killed)),
    });
    const heard = Date.now() - killed;
    console.log(`SIGTERM of the room's node: both heard each other on another node after ${movedAfter} ms`);
    console.log(`SIGKILL of the room's node: the page rejoined after ${rejoined} ms, heard rusty again after ${heard} ms`);
    assert.ok(heard < 10000, `heard again after ${heard} ms`);
    assert.equal(peer.exitCode, null, 'the CLI peer rejoined by itself again');
    const members = (await live.api(app, '/api/v1/rooms/g')).openIdList.slice().sort();
    assert.deepEqual(members, ['rusty', 'web'], 'both on the live node, no ghost');
  });
});
