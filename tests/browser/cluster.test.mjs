// Two nodes on one redis-server (started here, inside the test's loopback-only namespace):
// a Chromium page given both nodes and the Rust CLI peer meet in one room although the
// peer asked the other node (the CLI follows the redirect); the room's node is killed with
// SIGKILL; the page rejoins by itself on the live node, and hears the peer (which the test
// starts again until it is in) again within 10 s.

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

/** The Rust CLI peer in `group` at `ws`, sending speech until stopped. */
function rustPeer(ws, app, sessionKey, fixtures, out) {
  const peer = spawn(
    h.CLIENT_BIN,
    ['join', '--server', ws, '--app-id', app.appId, '--open-id', 'rusty', '--group-id', 'g',
      '--session-key', sessionKey, '--send', fixtures.speechOpus, '--loop', '--duration', '30'],
    { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, NO_COLOR: '1' } },
  );
  peer.stdout.on('data', (d) => out.push(String(d)));
  peer.stderr.on('data', (d) => out.push(String(d)));
  peer.exited = new Promise((resolve) => peer.on('exit', resolve));
  return peer;
}

describe('two nodes on one Redis', () => {
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
    for (let i = 0; i < 2; i++) nodes.push(await h.startServer({ config }));
    browser = await h.launchVoice(fixtures.tone440);
  });

  after(async () => {
    for (const p of peers) if (p.exitCode === null) p.kill('SIGKILL');
    if (browser) await browser.close().catch(() => {});
    for (const n of nodes) await n.stop();
    if (redis) redis.proc.kill('SIGKILL');
    if (root) rmSync(root, { recursive: true, force: true });
  });

  it('meet on one node, and after a SIGKILL of that node meet again on the live one within 10 s', async () => {
    const [a, b] = nodes;
    // Signing through the node that stays up.
    const web = await h.openClient(browser, a, {
      appId: app.appId,
      openId: 'web',
      sign: b.backend(app),
      options: { server: [a.ws, b.ws] },
    });
    assert.equal((await h.join(web, 'g')).errCode, 0);
    const { sessionKey } = await b.api(app, '/api/v1/session-key', { openId: 'rusty' });
    const out = [];
    // At node b: redirected to a, where the room is.
    peers.push(rustPeer(b.ws, app, sessionKey, fixtures, out));
    await h.waitFor(async () => (await h.pageLog(web)).members.at(-1)?.openIdList.includes('rusty'), {
      what: `rusty joins:\n${out.join('')}`,
    });
    assert.deepEqual((await a.api(app, '/api/v1/rooms/g')).openIdList, ['web', 'rusty']);
    await h.waitFor(async () => (await h.measure(web, 500)).rusty?.packets > 0, { what: 'audio from rusty' });

    const killed = Date.now();
    a.proc.kill('SIGKILL');
    // The CLI peer ends with its connection; it is started again at the live node.
    await peers[0].exited;
    // Until the live node takes the room over (a's registration lapses within 3 s), b sends
    // the join to the dead a and the CLI fails: it is started again, as an app would.
    const rejoinPeer = async () => {
      while (Date.now() - killed < 10000) {
        const mark = out.length;
        const peer = rustPeer(b.ws, app, sessionKey, fixtures, out);
        peers.push(peer);
        const outcome = await Promise.race([
          peer.exited.then(() => 'exited'),
          h.waitFor(async () => out.slice(mark).some((l) => l.includes('"event":"joined"')), { timeout: 10000, what: 'joined' })
            .then(() => 'joined', () => 'exited'),
        ]);
        if (outcome === 'joined') return;
        await h.sleep(300);
      }
    };
    await rejoinPeer();
    await h.waitFor(async () => (await h.pageLog(web)).state.some((s) => s.data?.state === 'reconnected'), {
      what: 'the page rejoins',
      timeout: 10000,
    });
    const rejoined = Date.now() - killed;
    await h.waitFor(async () => (await h.measure(web, 300)).rusty?.packets > 0, {
      what: `audio from rusty again:\n${out.join('')}`,
      timeout: Math.max(1000, 10000 - (Date.now() - killed)),
    });
    const heard = Date.now() - killed;
    console.log(`SIGKILL of the room's node: the page rejoined after ${rejoined} ms, heard rusty again after ${heard} ms`);
    assert.ok(heard < 10000, `heard again after ${heard} ms`);
    const members = (await b.api(app, '/api/v1/rooms/g')).openIdList.slice().sort();
    assert.deepEqual(members, ['rusty', 'web'], 'both on the live node, no ghost');
  });
});
