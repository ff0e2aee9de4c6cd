// Browsers in one room through the SDK: hearing, speakers, mute, reconnect, exit, loss.
// Four Chromium processes, one voice each: alice 440 Hz, bob 660 Hz, carol 880 Hz (tones at
// amplitude 0.5 standing in for speech) and dave (silence). The game backend is this test:
// it gets session keys and signatures from the server's backend API for a registered app.

import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import * as h from './lib/harness.mjs';

const GROUP = 'room-1';
// Per 1.5 s window: a 0.5-amplitude tone gives ≈ 0.19 energy and 75 packets; silence 0.
const HEARD = { packets: 40, energy: 0.05, level: 0.3 };
const QUIET_ENERGY = 0.002;

function assertHears(measured, from, what) {
  const m = measured[from];
  assert.ok(m, `${what}: no stats for ${from}`);
  assert.ok(m.packets >= HEARD.packets, `${what}: ${m.packets} packets from ${from}`);
  assert.ok(m.energy >= HEARD.energy, `${what}: energy ${m.energy} from ${from}`);
  assert.ok(m.level >= HEARD.level, `${what}: audioLevel ${m.level} from ${from}`);
}

describe('a room of browsers', () => {
  let server, app, sign, fixtures;
  const browsers = {};
  const pages = {};
  const pageErrors = [];

  before(async () => {
    h.requireLoopbackOnly();
    fixtures = h.makeFixtures();
    server = await h.startServer({ apps: ['game'] });
    app = server.apps.game;
    sign = server.backend(app);
    const voices = { alice: fixtures.tone440, bob: fixtures.tone660, carol: fixtures.tone880, dave: fixtures.silence };
    await Promise.all(
      Object.entries(voices).map(async ([name, wav]) => {
        browsers[name] = await h.launchVoice(wav);
        pages[name] = await h.openClient(browsers[name], server, { appId: app.appId, openId: name, sign, pageErrors });
      }),
    );
  });

  after(async () => {
    await Promise.all(Object.values(browsers).map((b) => b.close().catch(() => {})));
    if (server) {
      if (process.env.VOIPCHAT_SERVER_LOG) console.log(server.logs());
      await server.stop();
    }
    const real = pageErrors.filter((e) => !/favicon|404 \(Not Found\)/.test(e));
    if (real.length) console.log(`page messages:\n${real.join('\n')}`);
  });

  const slotsOf = (p) => p.page.evaluate(() => window.client.slots.map((s) => s.openId).filter(Boolean).sort());

  it('three pages join one room and hear each other', async () => {
    const { alice, bob, carol } = pages;
    const ja = await h.join(alice, GROUP);
    assert.deepEqual(ja, { openIdList: ['alice'], mutedOpenIdList: [], errCode: 0, errMsg: 'joinVoIPChat:ok' });
    const jb = await h.join(bob, GROUP);
    assert.deepEqual(jb.openIdList, ['alice', 'bob']);
    const jc = await h.join(carol, GROUP);
    assert.deepEqual(jc, { openIdList: ['alice', 'bob', 'carol'], mutedOpenIdList: [], errCode: 0, errMsg: 'joinVoIPChat:ok' });

    // Every page has a receive slot for each of the two others.
    for (const [me, p] of Object.entries({ alice, bob, carol })) {
      const others = ['alice', 'bob', 'carol'].filter((n) => n !== me);
      await h.waitFor(async () => JSON.stringify(await slotsOf(p)) === JSON.stringify(others), { what: `${me}'s slots` });
    }
    // Audio arrives: packets, and energy rising while the <audio> elements play.
    await h.waitFor(async () => (await h.measure(carol, 500)).alice?.energy > 0, { what: 'audio at carol' });
    const m = await h.measureAll([alice, bob, carol]);
    for (const me of ['alice', 'bob', 'carol']) {
      for (const from of ['alice', 'bob', 'carol'].filter((n) => n !== me)) assertHears(m[me], from, `${me} hears ${from}`);
    }

    // members-changed payloads agree on every page.
    const la = await h.pageLog(alice);
    const lb = await h.pageLog(bob);
    const lc = await h.pageLog(carol);
    assert.deepEqual(
      la.members.map((e) => e.openIdList),
      [['alice', 'bob'], ['alice', 'bob', 'carol']],
    );
    assert.deepEqual(lb.members.map((e) => e.openIdList), [['alice', 'bob', 'carol']]);
    assert.deepEqual(lc.members, [], 'the joiner learns the members from its joinResult');
    for (const e of [...la.members, ...lb.members]) {
      assert.equal(e.errCode, 0);
      assert.equal(e.errMsg, 'onVoIPChatMembersChanged:ok');
    }
    assert.deepEqual(await server.members(app, GROUP), ['alice', 'bob', 'carol']);
  });

  it('speakers-changed reports the pages that speak and never the silent one', async () => {
    const { alice, bob, carol, dave } = pages;
    const jd = await h.join(dave, GROUP);
    assert.deepEqual(jd.openIdList, ['alice', 'bob', 'carol', 'dave']);
    await h.waitFor(async () => (await slotsOf(dave)).length === 3, { what: "dave's slots" });
    // dave's silence arrives as packets without energy.
    await h.waitFor(async () => (await h.measure(alice, 500)).dave?.packets > 10, { what: "dave's packets at alice" });
    const m = await h.measure(alice);
    assert.ok(m.dave.packets >= HEARD.packets, `alice gets ${m.dave.packets} packets from dave`);
    assert.ok(m.dave.energy < QUIET_ENERGY, `dave's silence has energy ${m.dave.energy}`);

    for (const [me, p] of Object.entries({ alice, bob, carol })) {
      const log = await h.pageLog(p);
      const ever = new Set(log.speakers.flatMap((e) => e.openIdList));
      for (const speaker of ['alice', 'bob', 'carol']) {
        assert.ok(ever.has(speaker), `${me} was told that ${speaker} speaks: ${JSON.stringify(log.speakers)}`);
      }
      assert.ok(!ever.has('dave'), `${me} was told that silent dave speaks`);
      assert.deepEqual(log.speakers.at(-1).openIdList, ['alice', 'bob', 'carol'], `${me}'s current speakers`);
      for (const e of log.speakers) assert.equal(e.errMsg, 'onVoIPChatSpeakersChanged:ok');
    }
  });

  it("muting a microphone stops the others' energy and unmuting restores it", async () => {
    const { alice, bob, carol, dave } = pages;
    const r = await alice.page.evaluate(() => window.client.updateVoIPChatMuteConfig({ muteConfig: { muteMicrophone: true } }));
    assert.deepEqual(r, { errCode: 0, errMsg: 'updateVoIPChatMuteConfig:ok' });
    assert.equal(await alice.page.evaluate(() => window.client.micTrack.enabled), false, 'the sending track is disabled');
    // Speakers drop alice at once, on every page.
    for (const p of [alice, bob, carol, dave]) {
      await h.waitFor(
        async () => {
          const s = (await h.pageLog(p)).speakers.at(-1);
          return s && JSON.stringify(s.openIdList) === JSON.stringify(['bob', 'carol']);
        },
        { timeout: 3000, what: `${p.openId} sees alice stop speaking` },
      );
    }
    await h.sleep(500); // the receivers' jitter buffers drain
    const muted = await h.measureAll([bob, carol, dave]);
    for (const me of ['bob', 'carol', 'dave']) {
      assert.ok(muted[me].alice.energy < QUIET_ENERGY, `${me} still gets energy ${muted[me].alice.energy} from muted alice`);
      assertHears(muted[me], 'bob' === me ? 'carol' : 'bob', `${me} still hears the unmuted`);
    }

    const u = await alice.page.evaluate(() => window.client.updateVoIPChatMuteConfig({ muteConfig: { muteMicrophone: false } }));
    assert.equal(u.errCode, 0);
    for (const p of [bob, carol, dave]) {
      await h.waitFor(async () => (await h.pageLog(p)).speakers.at(-1)?.openIdList.includes('alice'), {
        timeout: 3000,
        what: `${p.openId} sees alice speak again`,
      });
    }
    await h.sleep(300);
    const back = await h.measureAll([bob, carol, dave]);
    for (const me of ['bob', 'carol', 'dave']) assertHears(back[me], 'alice', `${me} hears alice again`);
  });

  it('muting the earphone stops what a page receives', async () => {
    const { alice, bob } = pages;
    const r = await bob.page.evaluate(() => window.client.updateVoIPChatMuteConfig({ muteConfig: { muteEarphone: true } }));
    assert.deepEqual(r, { errCode: 0, errMsg: 'updateVoIPChatMuteConfig:ok' });
    assert.ok(await bob.page.evaluate(() => window.client.slots.every((s) => s.audio.muted)), 'local playback is muted');
    await h.sleep(500);
    const [atBob, atAlice] = await Promise.all([h.measure(bob), h.measure(alice)]);
    for (const from of ['alice', 'carol', 'dave']) {
      assert.ok(atBob[from].packets <= 2, `the server still forwards ${atBob[from].packets} packets from ${from} to bob`);
      assert.ok(atBob[from].energy < QUIET_ENERGY, `bob still plays energy ${atBob[from].energy} from ${from}`);
    }
    assertHears(atAlice, 'bob', 'bob is still heard with his earphone muted');

    await bob.page.evaluate(() => window.client.updateVoIPChatMuteConfig({ muteConfig: { muteEarphone: false } }));
    await h.sleep(300);
    const again = await h.measure(bob);
    assertHears(again, 'alice', 'bob hears alice after unmuting his earphone');
    assertHears(again, 'carol', 'bob hears carol after unmuting his earphone');
  });

  it('a server-side drop of the WebSocket is survived by rejoining', async () => {
    const { alice, bob, carol, dave } = pages;
    const before = Date.now();
    assert.equal(await server.dropWs('tag=bob'), 1, 'the hook dropped exactly bob\'s socket');
    await h.waitFor(async () => (await h.pageLog(bob)).state.some((e) => e.t >= before && e.code === 4), {
      timeout: 8000,
      what: 'bob reconnected',
    });
    const log = await h.pageLog(bob);
    const states = log.state.filter((e) => e.t >= before).map((e) => e.data.state);
    assert.deepEqual(states.slice(0, 2), ['reconnecting', 'reconnected'], `bob's states: ${states}`);
    assert.deepEqual(log.interrupted, [], 'no interruption: the rejoin worked');
    assert.equal(await bob.page.evaluate(() => window.client.state), 'joined');
    const rejoined = log.state.find((e) => e.t >= before && e.code === 4);
    assert.ok(rejoined.t - before < 3000, `rejoined after ${rejoined.t - before} ms`);

    // One bob, no ghost: the room and every page agree.
    const expected = ['alice', 'carol', 'dave', 'bob'];
    await h.waitFor(async () => JSON.stringify(await server.members(app, GROUP)) === JSON.stringify(expected), {
      what: 'the room without a ghost',
    });
    for (const p of [alice, carol, dave]) {
      await h.waitFor(async () => JSON.stringify((await h.pageLog(p)).members.at(-1)?.openIdList) === JSON.stringify(expected), {
        what: `${p.openId}'s members`,
      });
      // At most a brief leave and join of bob.
      const seen = (await h.pageLog(p)).members.filter((e) => e.t >= before).map((e) => e.openIdList.join(','));
      assert.ok(seen.length <= 2, `${p.openId} saw ${JSON.stringify(seen)}`);
    }
    assert.deepEqual(log.members.at(-1).openIdList, expected, 'bob was told the members after rejoining');

    // Audio flows both ways again, on bob's new peer connection.
    await h.waitFor(async () => (await h.measure(bob, 500)).alice?.energy > 0, { what: 'audio at bob' });
    const [atBob, atAlice] = await Promise.all([h.measure(bob), h.measure(alice)]);
    assertHears(atBob, 'alice', 'bob hears alice after rejoining');
    assertHears(atBob, 'carol', 'bob hears carol after rejoining');
    assertHears(atAlice, 'bob', 'alice hears bob after his rejoin');
  });

  it('exit on one page: the others see it leave within a second', async () => {
    const { alice, bob, carol, dave } = pages;
    const { result, t0 } = await dave.page.evaluate(async () => {
      const t0 = Date.now();
      const result = await window.client.exitVoIPChat();
      return { result, t0 };
    });
    assert.deepEqual(result, { errCode: 0, errMsg: 'exitVoIPChat:ok' });
    for (const p of [alice, bob, carol]) {
      const e = await h.waitFor(
        async () => (await h.pageLog(p)).members.find((m) => m.t >= t0 && !m.openIdList.includes('dave')),
        { timeout: 2000, interval: 50, what: `${p.openId} sees dave leave` },
      );
      assert.ok(e.t - t0 < 1000, `${p.openId} saw dave leave after ${e.t - t0} ms`);
      assert.deepEqual(e.openIdList, ['alice', 'carol', 'bob']);
    }
    assert.equal(await dave.page.evaluate(() => window.client.state), 'idle');
    assert.equal(await dave.page.evaluate(() => window.client.pc), null);
  });

  it("killing a page's network makes it disappear from the others within 5 s", async () => {
    const { alice, bob, carol } = pages;
    // carol's browser dies: its socket and peer connection end without exit.
    const t0 = Date.now();
    assert.ok(h.killVoice(fixtures.tone880) >= 1);
    for (const p of [alice, bob]) {
      const e = await h.waitFor(
        async () => (await h.pageLog(p)).members.find((m) => m.t >= t0 && !m.openIdList.includes('carol')),
        { timeout: 6000, interval: 50, what: `${p.openId} sees carol gone` },
      );
      assert.ok(e.t - t0 < 5000, `${p.openId} saw carol gone after ${e.t - t0} ms`);
      assert.deepEqual(e.openIdList, ['alice', 'bob']);
    }
    assert.deepEqual(await server.members(app, GROUP), ['alice', 'bob']);
    // The two left still hear each other.
    const [atAlice, atBob] = await Promise.all([h.measure(alice), h.measure(bob)]);
    assertHears(atAlice, 'bob', 'alice still hears bob');
    assertHears(atBob, 'alice', 'bob still hears alice');
  });
});
