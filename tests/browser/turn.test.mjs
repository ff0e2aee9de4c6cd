// TURN for real: a browser whose network lets out nothing but TCP to voipchat's HTTP port and
// UDP to coturn's port joins a room and hears a member on the other side through the relay.
//
// carol's Chromium runs in a second network namespace (harness sideNetwork) behind a veth
// pair; nftables inside it drops every TCP and UDP packet except those two, so the direct
// path to the server's media port is closed. Debian's coturn runs here with the TURN REST
// scheme (use-auth-secret) and the secret voipchat signs with; voipchat (host side of the
// veth) hands out its credentials in each connection's hello. alice is on this side and
// reaches the media port directly. The Rust client, in carol's namespace too, joins through
// its own TURN client. And the same browser, against a voipchat without TURN settings, does
// not connect at all: the firewall leaves no way but the relay.

import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync, execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as h from './lib/harness.mjs';

/** The selected candidate pair of a page's peer connection, with both candidates. */
function selectedPair(client) {
  return client.page.evaluate(async () => {
    const report = await window.client.pc.getStats();
    let pair = null;
    for (const s of report.values()) {
      if (s.type === 'transport' && s.selectedCandidatePairId) pair = report.get(s.selectedCandidatePairId);
    }
    if (!pair) {
      for (const s of report.values()) if (s.type === 'candidate-pair' && s.nominated && s.state === 'succeeded') pair = s;
    }
    if (!pair) return null;
    const pick = (c) => c && { candidateType: c.candidateType, address: c.address, port: c.port, protocol: c.protocol, relayProtocol: c.relayProtocol };
    return {
      state: pair.state,
      nominated: pair.nominated,
      bytesSent: pair.bytesSent,
      bytesReceived: pair.bytesReceived,
      local: pick(report.get(pair.localCandidateId)),
      remote: pick(report.get(pair.remoteCandidateId)),
    };
  });
}

const connectionState = (client) => client.page.evaluate(() => (window.client.pc ? window.client.pc.connectionState : 'none'));

/** `sox stat` of an Ogg Opus file, decoded with opusdec. */
function rmsOfOpus(file) {
  const wav = file.replace(/\.opus$/, '.wav');
  execFileSync('opusdec', ['--quiet', '--rate', '48000', file, wav]);
  const stat = spawnSync('sox', [wav, '-n', 'stat'], { encoding: 'utf8' }).stderr;
  const num = (name) => Number((stat.match(new RegExp(`${name}:\\s+([-0-9.e]+)`)) || [])[1]);
  return { rms: num('RMS\\s+amplitude'), seconds: num('Length \\(seconds\\)') };
}

describe('TURN: a browser that can reach only coturn', () => {
  let side, coturn, server, plain, fixtures, recordDir;
  const browsers = [];
  const pageErrors = [];
  const secret = randomBytes(24).toString('base64');
  let alice, carol;

  before(async () => {
    h.requireLoopbackOnly();
    fixtures = h.makeFixtures();
    recordDir = mkdtempSync(join(tmpdir(), 'voipchat-turn-record-'));
    side = await h.sideNetwork({ name: 'vt' });
    // voipchat's media is on the veth address here: the only peer coturn may relay to.
    coturn = await h.startCoturn({ ip: side.hostIp, secret, peers: [side.hostIp] });
    const turnUrl = `turn:${side.hostIp}:${coturn.port}?transport=udp`;
    server = await h.startServer({
      apps: ['game'],
      host: side.hostIp,
      config: `turn_secret = "${secret}"\nturn_urls = ["${turnUrl}"]\n`,
    });
    plain = await h.startServer({ apps: ['game'], host: side.hostIp });
    side.firewall({ tcpPorts: [new URL(server.base).port, new URL(plain.base).port], udpPorts: [coturn.port] });
    // The pages load from the veth address: not a secure context by itself.
    const origins = [`--unsafely-treat-insecure-origin-as-secure=${server.base},${plain.base}`];
    const [a, c] = await Promise.all([h.launchVoice(fixtures.tone440, origins), side.launch(fixtures.tone660, null, origins)]);
    browsers.push(a, c);
    const app = server.apps.game;
    alice = await h.openClient(a, server, { appId: app.appId, openId: 'alice', sign: server.backend(app), pageErrors });
    carol = await h.openClient(c, server, { appId: app.appId, openId: 'carol', sign: server.backend(app), pageErrors });
  });

  after(async () => {
    await Promise.all(browsers.map((b) => b.close().catch(() => {})));
    for (const s of [server, plain]) {
      if (!s) continue;
      if (process.env.VOIPCHAT_SERVER_LOG) console.log(s.logs());
      await s.stop();
    }
    if (coturn) {
      if (process.env.VOIPCHAT_TURN_LOG) console.log(coturn.logs());
      await coturn.stop();
    }
    if (side) await side.close();
    if (fixtures) rmSync(fixtures.dir, { recursive: true, force: true });
    if (recordDir) rmSync(recordDir, { recursive: true, force: true });
  });

  it('joins through the relay: its selected candidate is coturn\'s, and each side hears the other', async () => {
    assert.equal((await h.join(alice, 'turn-room')).errCode, 0);
    const t0 = Date.now();
    const r = await h.join(carol, 'turn-room');
    assert.equal(r.errCode, 0, JSON.stringify(r));
    // The hello reached the SDK: the peer connection got coturn with a credential.
    const ice = await carol.page.evaluate(() => window.client.iceServers);
    assert.equal(ice.length, 1, JSON.stringify(ice));
    assert.deepEqual(ice[0].urls, [`turn:${side.hostIp}:${coturn.port}?transport=udp`]);
    assert.match(ice[0].username, /^\d+:conn-[0-9a-f]{16}$/);
    assert.ok(ice[0].credential.length > 20);

    await h.waitFor(async () => (await connectionState(carol)) === 'connected', { timeout: 20000, what: 'carol connected' });
    const connectedMs = Date.now() - t0;
    const pair = await h.waitFor(() => selectedPair(carol), { timeout: 5000, what: 'a selected pair' });
    console.log(`# carol connected ${connectedMs} ms after her join started; selected pair ${JSON.stringify(pair)}`);
    assert.equal(pair.local.candidateType, 'relay', JSON.stringify(pair));
    assert.equal(pair.local.address, side.hostIp, 'the relay address is coturn\'s');
    assert.equal(pair.remote.port, server.mediaPort, 'the far end is voipchat\'s media port');

    await h.waitFor(async () => (await h.measure(carol, 500)).alice?.energy > 0, { timeout: 10000, what: 'audio from alice at carol' });
    const [atCarol, atAlice] = await Promise.all([h.measure(carol, 2000), h.measure(alice, 2000)]);
    console.log(`# over 2 s: carol got ${atCarol.alice.packets} packets of alice (level ${atCarol.alice.level}), alice got ${atAlice.carol?.packets} of carol (level ${atAlice.carol?.level})`);
    assert.ok(atCarol.alice.packets >= 80, `carol got ${atCarol.alice.packets} packets from alice`);
    assert.ok(atCarol.alice.level > 0.3, `carol hears alice's tone: level ${atCarol.alice.level}`);
    assert.ok(atAlice.carol.packets >= 80, `alice got ${atAlice.carol.packets} packets from carol`);
    assert.ok(atAlice.carol.level > 0.3, `alice hears carol's tone: level ${atAlice.carol.level}`);

    // The firewall was in the way of the direct path (carol's host candidate tried it).
    assert.ok(side.firewallDrops() > 0, 'the firewall dropped carol\'s direct attempts');
    // coturn allocated for carol's credential, and voipchat logged whose it was.
    const username = ice[0].username;
    assert.ok(coturn.logs().includes(`user <${username}>`), `coturn's log names ${username}:\n${coturn.logs().slice(-3000)}`);
    assert.ok(
      server.logs().split('\n').some((l) => l.includes('join authenticated') && l.includes('open_id=carol') && l.includes(username)),
      'voipchat logged carol\'s TURN username with her openId',
    );
  });

  it('the Rust client in the same namespace joins through its own TURN client and hears alice', async () => {
    if (!existsSync(h.CLIENT_BIN)) throw new Error(`${h.CLIENT_BIN} is missing: run cargo build first`);
    const app = server.apps.game;
    const { sessionKey } = await server.api(app, '/api/v1/session-key', { openId: 'rusty' });
    const out = [];
    const peer = side.spawn(
      h.CLIENT_BIN,
      [
        'join',
        '--server', server.ws,
        '--app-id', app.appId,
        '--open-id', 'rusty',
        '--group-id', 'turn-room',
        '--session-key', sessionKey,
        '--bind-ip', side.peerIp,
        '--send', fixtures.speechOpus,
        '--loop',
        '--record-dir', recordDir,
        '--duration', '6',
      ],
      { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, NO_COLOR: '1', RUST_LOG: 'info' } },
    );
    peer.stdout.on('data', (d) => out.push(String(d)));
    peer.stderr.on('data', (d) => out.push(String(d)));
    const exited = new Promise((resolve) => peer.on('exit', resolve));
    try {
      await h.waitFor(async () => (await h.measure(alice, 500)).rusty?.energy > 0, { timeout: 15000, what: 'audio from rusty at alice' });
      const m = await h.measure(alice, 2000);
      console.log(`# alice got ${m.rusty.packets} packets of rusty in 2 s`);
      assert.ok(m.rusty.packets >= 60, `alice got ${m.rusty.packets} packets from rusty`);
    } finally {
      let timer;
      const code = await Promise.race([exited, new Promise((r) => (timer = setTimeout(() => r('timeout'), 20000)))]);
      clearTimeout(timer);
      if (code === 'timeout') peer.kill('SIGKILL');
      assert.equal(code, 0, `voipchat-client exited with ${code}:\n${out.join('')}`);
    }
    const log = out.join('');
    assert.match(log, /relay candidate/, `the client says it relays:\n${log}`);
    const rec = rmsOfOpus(join(recordDir, 'alice.opus'));
    console.log(`# rusty's recording of alice: ${rec.seconds} s, RMS ${rec.rms}`);
    assert.ok(rec.seconds > 3 && rec.rms > 0.1, `rusty recorded alice's tone: ${JSON.stringify(rec)}`);
  });

  it('the app\'s own iceServers come first; a server that never says hello is joined after helloTimeoutMs, without TURN', async () => {
    const app = server.apps.game;
    const own = { urls: 'stun:192.0.2.1:3478' };
    const [a] = browsers;
    const first = await h.openClient(a, server, { appId: app.appId, openId: 'own-servers', sign: server.backend(app), pageErrors, options: { iceServers: [own] } });
    assert.equal((await h.join(first, 'side-room')).errCode, 0);
    const list = await first.page.evaluate(() => window.client.iceServers);
    assert.equal(list.length, 2, JSON.stringify(list));
    assert.deepEqual(list[0], own);
    assert.deepEqual(list[1].urls, [`turn:${side.hostIp}:${coturn.port}?transport=udp`]);
    const bad = await first.page.evaluate(() => {
      try {
        window.sdk.createVoIPClient({ appId: 'a', openId: 'b', iceServers: 'turn:x' });
        return 'accepted';
      } catch (e) {
        return e instanceof TypeError ? 'TypeError' : String(e);
      }
    });
    assert.equal(bad, 'TypeError');
    await first.page.evaluate(() => window.client.exitVoIPChat());

    // An older server, played by dropping the hello on its way to the page.
    let dropped = 0;
    const dropHello = (page) =>
      page.routeWebSocket(/\/ws/, (ws) => {
        const up = ws.connectToServer();
        up.onMessage((m) => {
          if (typeof m === 'string' && JSON.parse(m).type === 'hello') dropped++;
          else ws.send(m);
        });
      });
    const old = await h.openClient(a, server, {
      appId: app.appId,
      openId: 'old-server',
      sign: server.backend(app),
      pageErrors,
      options: { iceServers: [own], helloTimeoutMs: 1000 },
      prepare: dropHello,
    });
    const warnings = [];
    old.page.on('console', (m) => m.type() === 'warning' && warnings.push(m.text()));
    const t0 = Date.now();
    const r = await h.join(old, 'side-room');
    const took = Date.now() - t0;
    assert.equal(r.errCode, 0, JSON.stringify(r));
    assert.equal(dropped, 1);
    assert.ok(took >= 1000, `the join waited for the hello: ${took} ms`);
    assert.deepEqual(await old.page.evaluate(() => window.client.iceServers), [own], 'only the app\'s own servers');
    assert.ok(warnings.some((w) => /no hello from the server within 1000 ms/.test(w)), JSON.stringify(warnings));
    await h.waitFor(async () => (await connectionState(old)) === 'connected', { timeout: 20000, what: 'the old-server page connected (directly)' });
    console.log(`# a join without hello took ${took} ms (helloTimeoutMs 1000)`);
    await old.page.evaluate(() => window.client.exitVoIPChat());
  });

  it('without voipchat\'s TURN settings the same browser does not connect at all', async () => {
    const app = plain.apps.game;
    const [a, c] = browsers;
    const alice2 = await h.openClient(a, plain, { appId: app.appId, openId: 'alice2', sign: plain.backend(app), pageErrors });
    const carol2 = await h.openClient(c, plain, { appId: app.appId, openId: 'carol2', sign: plain.backend(app), pageErrors });
    assert.equal((await h.join(alice2, 'plain-room')).errCode, 0);
    assert.equal((await h.join(carol2, 'plain-room')).errCode, 0, 'signaling works: only media is blocked');
    assert.deepEqual(await carol2.page.evaluate(() => window.client.iceServers), [], 'the hello had no servers');
    // alice, on the open side, connects to this server; carol2 never does. No media from her
    // ever arrives, so after media_timeout_secs (8 s) the server removes her (-11003), and
    // the SDK, whose media never flowed, reports the interruption instead of rejoining.
    await h.waitFor(async () => (await connectionState(alice2)) === 'connected', { timeout: 20000, what: 'alice2 connected' });
    const states = new Set();
    let pair = null;
    let packets = 0;
    const until = Date.now() + 15000;
    while (Date.now() < until && !(await h.pageLog(carol2)).interrupted.length) {
      states.add(await connectionState(carol2));
      const now = await carol2.page.evaluate(async () => {
        if (!window.client.pc) return { pair: null, packets: 0 };
        const report = await window.client.pc.getStats();
        let ok = null;
        let got = 0;
        for (const s of report.values()) {
          if (s.type === 'candidate-pair' && s.state === 'succeeded') ok = s.id;
          if (s.type === 'inbound-rtp') got += s.packetsReceived || 0;
        }
        return { pair: ok, packets: got };
      });
      pair = pair || now.pair;
      packets = Math.max(packets, now.packets);
      await h.sleep(250);
    }
    const interrupted = (await h.pageLog(carol2)).interrupted;
    console.log(`# carol2 without TURN: connection states ${[...states].join(', ')}; interrupted ${JSON.stringify(interrupted.map((i) => i.errCode))}`);
    assert.ok(!states.has('connected'), `carol2 connected without TURN: ${[...states]}`);
    assert.equal(pair, null, 'no candidate pair of carol2 ever succeeded');
    assert.equal(packets, 0, 'carol2 received no RTP');
    assert.deepEqual(
      interrupted.map((i) => i.errCode),
      [-11003],
      'the server removed carol2 for lack of media',
    );
    await Promise.all([alice2, carol2].map((p) => p.page.evaluate(() => window.client.exitVoIPChat()).catch(() => {})));
  });

  it('no page error', () => {
    assert.deepEqual(pageErrors.filter((e) => !/favicon|404 \(Not Found\)/.test(e)), []);
  });
});
