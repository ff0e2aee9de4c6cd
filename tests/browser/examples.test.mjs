// The example game backends of examples/ (Node and Python, standard library only) with the
// real server: for each, two Chromium pages load the example's own page, whose SDK `sign`
// calls the example's POST /my-backend/voip-sign, join one room by clicking Talk, and hear
// each other. alice's microphone plays a 440 Hz tone, bob's 660 Hz (amplitude 0.5).

import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import * as h from './lib/harness.mjs';

// Per 1.5 s window a 0.5-amplitude tone is ≈ 75 packets; the example page uses the browser's
// default audio processing, so energy and level are lower than with it switched off.
const HEARD = { packets: 40, energy: 0.005, level: 0.02 };

describe('the example game backends', () => {
  let server, app, fixtures;
  const browsers = {};
  const pageErrors = [];

  before(async () => {
    h.requireLoopbackOnly();
    fixtures = h.makeFixtures();
    server = await h.startServer({ apps: ['My Game'], demo: false });
    app = server.apps['My Game'];
    [browsers.alice, browsers.bob] = await Promise.all([h.launchVoice(fixtures.tone440), h.launchVoice(fixtures.tone660)]);
  });

  after(async () => {
    await Promise.all(Object.values(browsers).map((b) => b.close().catch(() => {})));
    if (server) await server.stop();
    if (pageErrors.length) console.log(`page messages:\n${pageErrors.join('\n')}`);
  });

  /** A player's page of the example, joined to `room` through its Talk button. */
  async function talk(backend, player, room) {
    const context = await browsers[player].newContext();
    const page = await context.newPage();
    page.on('pageerror', (e) => pageErrors.push(`${player}: ${e.message}`));
    page.on('console', (m) => {
      if (m.type() === 'error') pageErrors.push(`${player} console.error: ${m.text()}`);
    });
    // bob's SDK arrives 1.5 s late, as on a slow link or a busy server: Talk must wait for it
    // (a click before the page's handler is set once did nothing, and the join never began).
    if (player === 'bob') {
      await context.route('**/sdk/voipchat.js', async (route) => {
        await new Promise((r) => setTimeout(r, 1500));
        await route.continue();
      });
    }
    await page.goto(`${backend.base}/?player=${player}&room=${room}`);
    await page.click('#talk');
    await h.waitFor(async () => /^In room /.test(await page.textContent('#status')), { what: `${player} in the room` }).catch(
      async (e) => assert.fail(`${e.message}; status: ${await page.textContent('#status')}`),
    );
    await page.evaluate(() => {
      window.states = [];
      window.voip.onVoIPChatStateChanged((p) => window.states.push(p.data.state));
    });
    return { page, context, openId: player, global: 'voip' };
  }

  const listed = (c) => c.page.$$eval('#members li', (lis) => lis.map((li) => li.dataset.openId));

  for (const kind of ['node', 'python']) {
    it(`${kind}: two pages signed by the example backend join one room and hear each other`, async () => {
      const backend = await h.startExample(kind, server, app);
      const room = `${kind}-room`;
      try {
        // The config route tells the page where voipchat is; no secret in it.
        const config = await (await fetch(`${backend.base}/my-backend/config`)).json();
        assert.deepEqual(config, { voipchatUrl: server.base, appId: app.appId });

        // The signing route on its own: a session key is made on first use, and the answer
        // is exactly what joinVoIPChat needs.
        const signRes = await fetch(`${backend.base}/my-backend/voip-sign`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ groupId: room, openId: 'probe' }),
        });
        assert.equal(signRes.status, 200);
        const signed = await signRes.json();
        assert.deepEqual(Object.keys(signed).sort(), ['nonceStr', 'signature', 'timeStamp']);
        assert.match(signed.signature, /^[0-9a-f]{64}$/);
        assert.ok(Math.abs(signed.timeStamp - Date.now() / 1000) < 60, `timeStamp ${signed.timeStamp}`);
        // The player may come in a header instead of the body.
        const byHeader = await fetch(`${backend.base}/my-backend/voip-sign`, {
          method: 'POST',
          headers: { 'content-type': 'application/json', 'x-open-id': 'probe' },
          body: JSON.stringify({ groupId: room }),
        });
        assert.equal(byHeader.status, 200);
        assert.notEqual((await byHeader.json()).nonceStr, signed.nonceStr, 'a fresh nonce per call');
        const noGroup = await fetch(`${backend.base}/my-backend/voip-sign`, { method: 'POST', body: '{"openId":"probe"}' });
        assert.equal(noGroup.status, 400);

        const alice = await talk(backend, 'alice', room);
        const bob = await talk(backend, 'bob', room);
        for (const c of [alice, bob]) {
          await h.waitFor(async () => JSON.stringify(await listed(c)) === '["alice","bob"]', { what: `${c.openId} lists both` });
        }
        assert.deepEqual(await server.members(app, room), ['alice', 'bob']);

        // Audio flows both ways.
        await h.waitFor(async () => (await h.measure(bob, 500)).alice?.energy > 0, { what: 'audio from alice at bob' });
        await h.waitFor(async () => (await h.measure(alice, 500)).bob?.energy > 0, { what: 'audio from bob at alice' });
        const m = await h.measureAll([alice, bob]);
        console.log(`${kind}: received over 1.5 s ${JSON.stringify(m)}`);
        for (const [me, from] of [['alice', 'bob'], ['bob', 'alice']]) {
          assert.ok(m[me][from].packets >= HEARD.packets, `${me} got ${m[me][from].packets} packets from ${from}`);
          assert.ok(m[me][from].energy >= HEARD.energy, `${me} got energy ${m[me][from].energy} from ${from}`);
          assert.ok(m[me][from].level >= HEARD.level, `${me} got audioLevel ${m[me][from].level} from ${from}`);
        }

        // A dropped connection: the SDK asks the example backend for a fresh signature and
        // rejoins. The backend asked for each player's session key only once.
        assert.equal(await server.dropWs(''), 2);
        for (const c of [alice, bob]) {
          await h.waitFor(() => c.page.evaluate(() => window.states.includes('reconnected')), { what: `${c.openId} rejoined` });
        }
        // (in the order they happened to rejoin)
        await h.waitFor(async () => JSON.stringify((await server.members(app, room)).sort()) === '["alice","bob"]', { what: 'both back' });
        for (const player of ['alice', 'bob', 'probe']) {
          const issued = backend.logs().split('\n').filter((l) => l === `session key issued for ${player}`);
          assert.equal(issued.length, 1, `session keys for ${player}:\n${backend.logs()}`);
        }

        for (const c of [alice, bob]) {
          await c.page.click('#leave');
          await c.context.close();
        }
        await h.waitFor(async () => (await server.members(app, room)).length === 0, { what: 'room empty' });
      } finally {
        await backend.stop();
      }
      assert.deepEqual(pageErrors, []);
    });
  }
});
