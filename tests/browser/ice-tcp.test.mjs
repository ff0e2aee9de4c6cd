// ICE over TCP in real Chromium: a browser on a network that drops every UDP packet it sends
// joins a voice room and both directions of audio flow over TCP to the server's media port
// number; with the server's media_tcp off the same browser never connects (the control that
// shows UDP really is blocked).
//
// carol runs in a second network namespace behind a veth pair (harness sideNetwork) where
// nftables drops all UDP output except on its own loopback. alice is on this namespace's side,
// with UDP. The server binds and announces the veth address here (10.77.0.1).

import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import * as h from './lib/harness.mjs';

// Per 1.5 s window: a 0.5-amplitude tone gives ≈ 75 packets and ≈ 0.19 energy.
const HEARD = { packets: 40, energy: 0.05 };

/** The page's selected ICE candidate pair, with its two candidates, from getStats. */
function selectedPair(client) {
  return client.page.evaluate(async () => {
    const pc = window.client.pc;
    if (!pc) return null;
    const stats = [...(await pc.getStats()).values()];
    const byId = new Map(stats.map((s) => [s.id, s]));
    const transport = stats.find((s) => s.type === 'transport' && s.selectedCandidatePairId);
    const pair = transport && byId.get(transport.selectedCandidatePairId);
    if (!pair) return null;
    const cand = (id) => {
      const c = byId.get(id);
      return c && { protocol: c.protocol, tcpType: c.tcpType, address: c.address, port: c.port, candidateType: c.candidateType };
    };
    return { state: pair.state, local: cand(pair.localCandidateId), remote: cand(pair.remoteCandidateId) };
  });
}

const connectionState = (client) => client.page.evaluate(() => window.client.pc?.connectionState ?? 'none');

async function scrape(server, name) {
  const text = await (await fetch(`${server.base}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith(name + ' ') || l.startsWith(name + '{'));
  return line ? Number(line.split(' ').pop()) : 0;
}

function assertHears(measured, from, what) {
  const m = measured[from];
  assert.ok(m, `${what}: no stats for ${from}`);
  assert.ok(m.packets >= HEARD.packets, `${what}: ${m.packets} packets from ${from}`);
  assert.ok(m.energy >= HEARD.energy, `${what}: energy ${m.energy} from ${from}`);
}

describe('ICE over TCP for a browser that cannot send UDP', () => {
  let side, fixtures, cameras;
  const servers = [];
  const browsers = {};
  const pageErrors = [];

  before(async () => {
    h.requireLoopbackOnly();
    fixtures = h.makeFixtures();
    cameras = h.makeCameraFixtures();
    side = await h.sideNetwork();
    // Inside carol's namespace: every UDP packet leaving by anything but lo is dropped, and
    // counted (so the test can tell that her browser did try UDP).
    side.inside('nft', 'add', 'table', 'inet', 'noudp');
    side.inside('nft', 'add', 'chain', 'inet', 'noudp', 'out', '{ type filter hook output priority 0; }');
    side.inside('nft', 'add', 'rule', 'inet', 'noudp', 'out', 'oifname', '!=', 'lo', 'meta', 'l4proto', 'udp', 'counter', 'drop');
    // The pages load from the veth address: not a secure context by itself. One flag per
    // server (the second one comes with the control test).
    servers.push(await h.startServer({ apps: ['game'], host: side.hostIp }));
    servers.push(await h.startServer({ apps: ['game'], host: side.hostIp, extraArgs: ['--no-media-tcp'] }));
    const origins = `--unsafely-treat-insecure-origin-as-secure=${servers.map((s) => s.base).join(',')}`;
    browsers.alice = await h.launchVoice(fixtures.tone440, [origins]);
    // Her camera file is unused in a voice room; the side network's launcher wants one.
    browsers.carol = await side.launch(fixtures.tone660, cameras.blue, [origins]);
  });

  after(async () => {
    await Promise.all(Object.values(browsers).map((b) => b.close().catch(() => {})));
    for (const s of servers) {
      if (process.env.VOIPCHAT_SERVER_LOG) console.log(s.logs());
      await s.stop();
    }
    if (side) await side.close();
    if (fixtures) rmSync(fixtures.dir, { recursive: true, force: true });
    if (cameras) rmSync(cameras.dir, { recursive: true, force: true });
    const real = pageErrors.filter((e) => !/favicon|404 \(Not Found\)/.test(e));
    if (real.length) console.log(`page messages:\n${real.join('\n')}`);
  });

  const udpDropped = () => {
    const m = side.inside('nft', 'list', 'table', 'inet', 'noudp').match(/counter packets (\d+)/);
    return m ? Number(m[1]) : 0;
  };

  const pagesOn = async (server, group) => {
    const app = server.apps.game;
    const sign = server.backend(app);
    const open = (name) => h.openClient(browsers[name], server, { appId: app.appId, openId: name, sign, tag: `${name}-${group}`, pageErrors });
    const alice = await open('alice');
    const carol = await open('carol');
    const ja = await h.join(alice, group);
    assert.equal(ja.errCode, 0, JSON.stringify(ja));
    const jc = await h.join(carol, group);
    assert.equal(jc.errCode, 0, JSON.stringify(jc));
    return { alice, carol };
  };

  it('joins, connects over TCP to the media port number, and both hear each other', async () => {
    const server = servers[0];
    const droppedBefore = udpDropped();
    const { alice, carol } = await pagesOn(server, 'tcp-room');
    const t0 = Date.now();
    await h.waitFor(async () => (await connectionState(carol)) === 'connected', { timeout: 20000, what: "carol's media connected" });
    console.log(`# carol connected ${Date.now() - t0} ms after joinResult`);
    const pair = await selectedPair(carol);
    console.log(`# carol's selected pair: ${JSON.stringify(pair)}`);
    assert.equal(pair.local.protocol, 'tcp', JSON.stringify(pair));
    assert.equal(pair.remote.protocol, 'tcp', JSON.stringify(pair));
    assert.equal(pair.remote.address, side.hostIp);
    assert.equal(pair.remote.port, server.mediaPort, 'the TCP candidate has the UDP media port number');
    assert.equal(pair.remote.tcpType, 'passive');
    // alice, with UDP, stays on UDP.
    await h.waitFor(async () => (await connectionState(alice)) === 'connected', { what: "alice's media connected" });
    assert.equal((await selectedPair(alice)).local.protocol, 'udp');
    // carol's browser tried UDP and the firewall took it.
    assert.ok(udpDropped() > droppedBefore, 'no UDP was dropped: was UDP tried at all?');

    await h.waitFor(async () => (await h.measure(carol, 500)).alice?.energy > 0, { timeout: 15000, what: 'audio at carol' });
    await h.waitFor(async () => (await h.measure(alice, 500)).carol?.energy > 0, { timeout: 15000, what: 'audio at alice' });
    const m = await h.measureAll([alice, carol]);
    console.log(`# over 1.5 s: carol got ${m.carol.alice.packets} packets from alice, alice got ${m.alice.carol.packets} from carol`);
    assertHears(m.carol, 'alice', 'carol (TCP) hears alice');
    assertHears(m.alice, 'carol', 'alice hears carol (TCP)');
    // The server counts carol's connection, and frames both ways on it.
    assert.ok((await scrape(server, 'voipchat_media_tcp_connections')) >= 1);
    assert.ok((await scrape(server, 'voipchat_media_tcp_frames_total{direction="in"}')) > 100);
    for (const p of [alice, carol]) await p.page.evaluate(() => window.client.exitVoIPChat());
  });

  it('control: with media_tcp off the same browser never connects', async () => {
    const server = servers[1];
    const { alice, carol } = await pagesOn(server, 'udp-only-room');
    await h.waitFor(async () => (await connectionState(alice)) === 'connected', { what: "alice's media connected" });
    // Give carol as long as she needed above, and more.
    const deadline = Date.now() + 10000;
    const seen = new Set();
    while (Date.now() < deadline) {
      seen.add(await connectionState(carol));
      await h.sleep(250);
    }
    console.log(`# carol's connection states without TCP: ${[...seen].join(', ')}`);
    assert.ok(!seen.has('connected'), 'carol connected although UDP is dropped and TCP is off');
    assert.equal(await selectedPair(carol), null, 'no selected candidate pair');
    const m = await h.measure(alice, 1000);
    assert.ok(!m.carol || m.carol.packets === 0, `alice got ${m.carol?.packets} packets from carol`);
    for (const p of [alice, carol]) await p.page.evaluate(() => window.client.exitVoIPChat().catch(() => {}));
  });
});
