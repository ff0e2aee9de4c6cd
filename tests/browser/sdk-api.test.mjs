// The wx-style surface of the SDK: callbacks and Promises, error codes, listener removal.

import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { chromium } from 'playwright-core';
import * as h from './lib/harness.mjs';

describe('the SDK API', () => {
  let server, app, sign, fixtures, browser;
  const pageErrors = [];

  before(async () => {
    h.requireLoopbackOnly();
    fixtures = h.makeFixtures();
    // A short media timeout for the media-loss test.
    server = await h.startServer({ apps: ['game'], extraArgs: ['--media-timeout-secs', '2'] });
    app = server.apps.game;
    sign = server.backend(app);
    browser = await h.launchVoice(fixtures.silence);
  });

  after(async () => {
    if (browser) await browser.close().catch(() => {});
    if (server) await server.stop();
  });

  it('joinVoIPChat fails with -2 when the microphone cannot be opened', async () => {
    // Without --use-fake-ui-for-media-stream the permission request is denied.
    const denying = await chromium.launch({
      executablePath: h.CHROMIUM,
      headless: true,
      args: h.CHROMIUM_ARGS.filter((a) => a !== '--use-fake-ui-for-media-stream'),
    });
    try {
      const c = await h.openClient(denying, server, { appId: app.appId, openId: 'nomic', sign, pageErrors });
      const r = await c.page.evaluate(async () => {
        const calls = [];
        let rejected = null;
        await window.client
          .joinVoIPChat({
            groupId: 'mic-room',
            success: (p) => calls.push(['success', p]),
            fail: (p) => calls.push(['fail', p]),
            complete: (p) => calls.push(['complete', p]),
          })
          .catch((e) => (rejected = { name: e.name, errCode: e.errCode, errMsg: e.errMsg, isError: e instanceof Error }));
        return { calls, rejected, state: window.client.state };
      });
      assert.equal(r.calls.length, 2);
      assert.equal(r.calls[0][0], 'fail');
      assert.equal(r.calls[1][0], 'complete');
      assert.equal(r.calls[0][1].errCode, -2);
      assert.match(r.calls[0][1].errMsg, /^joinVoIPChat:fail microphone is busy or not allowed/);
      assert.deepEqual(r.calls[1][1], r.calls[0][1]);
      assert.deepEqual(r.rejected, { name: 'VoIPChatError', errCode: -2, errMsg: r.calls[0][1].errMsg, isError: true });
      assert.equal(r.state, 'idle');
      assert.deepEqual(await server.members(app, 'mic-room'), []);
    } finally {
      await denying.close();
    }
  });

  it('on an insecure origin joinVoIPChat fails with -2 saying a secure context is needed', async () => {
    // http://voip.test:PORT/ resolves to 127.0.0.1 but is no secure context (neither https nor
    // localhost / 127.0.0.1): the browser has no navigator.mediaDevices there.
    const insecure = await h.launchVoice(fixtures.silence, ['--host-resolver-rules=MAP voip.test 127.0.0.1']);
    try {
      const page = await insecure.newPage();
      await page.goto(`http://voip.test:${new URL(server.base).port}/healthz`);
      const r = await page.evaluate(async ({ appId, url }) => {
        const sdk = await import('/sdk/voipchat.js');
        const client = sdk.createVoIPClient({
          server: url,
          appId,
          openId: 'insecure',
          sign: () => {
            throw new Error('sign must not be asked: the microphone check comes first');
          },
        });
        const states = [];
        client.onVoIPChatStateChanged((p) => states.push([p.data.state, p.data.errCode]));
        const failed = await client.joinVoIPChat({ groupId: 'insecure-room' }).catch((e) => ({ errCode: e.errCode, errMsg: e.errMsg }));
        return {
          secure: window.isSecureContext,
          reason: sdk.microphoneUnavailableReason(),
          failed,
          state: client.state,
          states,
        };
      }, { appId: app.appId, url: `ws://voip.test:${new URL(server.base).port}/ws` });
      assert.equal(r.secure, false);
      const reason = 'microphone needs a secure context: open the page over https, or over http on localhost / 127.0.0.1';
      assert.equal(r.reason, reason);
      assert.deepEqual(r.failed, { errCode: -2, errMsg: `joinVoIPChat:fail ${reason}` });
      assert.equal(r.state, 'idle');
      assert.deepEqual(r.states, [['connecting', undefined], ['disconnected', -2]]);
      // On 127.0.0.1 (a secure context) nothing is unavailable.
      const c = await h.openClient(browser, server, { appId: app.appId, openId: 'secure', sign, pageErrors });
      assert.equal(await c.page.evaluate(() => window.sdk.microphoneUnavailableReason()), null);
      await c.context.close();
    } finally {
      await insecure.close();
    }
  });

  it('mutes are reported: mutedOpenIdList in the join result and members events, onVoIPChatMuteChanged on changes', async () => {
    const a = await h.openClient(browser, server, { appId: app.appId, openId: 'mute-a', sign, pageErrors });
    const b = await h.openClient(browser, server, { appId: app.appId, openId: 'mute-b', sign, pageErrors });
    for (const c of [a, b]) {
      await c.page.evaluate(() => {
        window.muteEvents = [];
        window.onMute = (p) => window.muteEvents.push(p);
        window.client.onVoIPChatMuteChanged(window.onMute);
      });
    }
    const events = (c) => c.page.evaluate(() => window.muteEvents);
    const muteEvent = (list) => ({ mutedOpenIdList: list, errCode: 0, errMsg: 'onVoIPChatMuteChanged:ok' });

    // a joins muted; b then learns it from its join result, a from the members event.
    const ja = await h.join(a, 'mute-sdk', { muteMicrophone: true });
    assert.deepEqual(ja, { openIdList: ['mute-a'], mutedOpenIdList: ['mute-a'], errCode: 0, errMsg: 'joinVoIPChat:ok' });
    const jb = await h.join(b, 'mute-sdk');
    assert.deepEqual(jb, { openIdList: ['mute-a', 'mute-b'], mutedOpenIdList: ['mute-a'], errCode: 0, errMsg: 'joinVoIPChat:ok' });
    await h.waitFor(async () => (await h.pageLog(a)).members.length === 1, { what: "a's members event" });
    const { t, ...joinedEvent } = (await h.pageLog(a)).members[0];
    assert.ok(t);
    assert.deepEqual(joinedEvent, {
      openIdList: ['mute-a', 'mute-b'],
      mutedOpenIdList: ['mute-a'],
      errCode: 0,
      errMsg: 'onVoIPChatMembersChanged:ok',
    });
    assert.deepEqual(await b.page.evaluate(() => window.client.mutedMembers), ['mute-a']);

    // b mutes: both pages are told, b included.
    await b.page.evaluate(() => window.client.updateVoIPChatMuteConfig({ muteConfig: { muteMicrophone: true } }));
    for (const c of [a, b]) {
      await h.waitFor(async () => (await events(c)).length === 1, { timeout: 3000, what: `${c.openId} told of b's mute` });
      assert.deepEqual(await events(c), [muteEvent(['mute-a', 'mute-b'])]);
    }
    // An earphone mute is private: no event.
    await a.page.evaluate(() => window.client.updateVoIPChatMuteConfig({ muteConfig: { muteMicrophone: true, muteEarphone: true } }));
    // a unmutes: both are told.
    await a.page.evaluate(() => window.client.updateVoIPChatMuteConfig({ muteConfig: {} }));
    for (const c of [a, b]) {
      await h.waitFor(async () => (await events(c)).length === 2, { timeout: 3000, what: `${c.openId} told of a's unmute` });
      assert.deepEqual((await events(c))[1], muteEvent(['mute-b']));
      assert.deepEqual(await c.page.evaluate(() => window.client.mutedMembers), ['mute-b']);
    }

    // off…(fn) removes the listener; the SDK still keeps the list.
    await a.page.evaluate(() => window.client.offVoIPChatMuteChanged(window.onMute));
    await b.page.evaluate(() => window.client.updateVoIPChatMuteConfig({ muteConfig: {} }));
    await h.waitFor(async () => (await events(b)).length === 3, { timeout: 3000, what: "b's unmute at b" });
    assert.deepEqual((await events(b))[2], muteEvent([]));
    await h.waitFor(() => a.page.evaluate(() => window.client.mutedMembers.length === 0), { what: "a's list follows" });
    assert.equal((await events(a)).length, 2);

    // b leaves muted: a's members event carries the list without b.
    await b.page.evaluate(() => window.client.updateVoIPChatMuteConfig({ muteConfig: { muteMicrophone: true } }));
    await h.waitFor(() => a.page.evaluate(() => JSON.stringify(window.client.mutedMembers) === '["mute-b"]'), { what: 'b muted at a' });
    await b.page.evaluate(() => window.client.exitVoIPChat());
    await h.waitFor(async () => (await h.pageLog(a)).members.length === 2, { what: 'b left' });
    const left = (await h.pageLog(a)).members[1];
    assert.deepEqual([left.openIdList, left.mutedOpenIdList], [['mute-a'], []]);
    assert.deepEqual(await b.page.evaluate(() => window.client.mutedMembers), [], 'idle clients know of no mutes');
    await a.page.evaluate(() => window.client.exitVoIPChat());
    await a.context.close();
    await b.context.close();
  });

  it('the backend mutes a member: onVoIPChatServerMuteChanged, the track off, unmute refused (-10014) until allowed; closing the room interrupts with -11005', async () => {
    const a = await h.openClient(browser, server, { appId: app.appId, openId: 'smute-a', sign, pageErrors });
    const b = await h.openClient(browser, server, { appId: app.appId, openId: 'smute-b', sign, pageErrors });
    await b.page.evaluate(() => {
      window.serverMutes = [];
      window.client.onVoIPChatServerMuteChanged((p) => window.serverMutes.push(p));
    });
    await h.join(a, 'smute-room');
    await h.join(b, 'smute-room');
    const state = () =>
      b.page.evaluate(() => ({
        serverMutes: window.serverMutes,
        serverMuted: window.client.serverMuted,
        mic: window.client.muteConfig.muteMicrophone,
        trackEnabled: window.client.micTrack.enabled,
      }));
    const event = (serverMuted) => ({ serverMuted, errCode: 0, errMsg: 'onVoIPChatServerMuteChanged:ok' });

    assert.deepEqual(await server.api(app, '/api/v1/rooms/smute-room/mute', { openId: 'smute-b', muted: true }), {
      openId: 'smute-b',
      serverMuted: true,
    });
    await h.waitFor(async () => (await state()).serverMutes.length === 1, { timeout: 3000, what: 'b told of the server mute' });
    assert.deepEqual(await state(), { serverMutes: [event(true)], serverMuted: true, mic: true, trackEnabled: false });
    await h.waitFor(() => a.page.evaluate(() => JSON.stringify(window.client.mutedMembers) === '["smute-b"]'), {
      what: 'a sees b muted',
    });
    const refused = await b.page.evaluate(() =>
      window.client.updateVoIPChatMuteConfig({ muteConfig: {} }).then(
        () => 'accepted',
        (e) => ({ errCode: e.errCode, errMsg: e.errMsg }),
      ),
    );
    assert.deepEqual(refused, { errCode: -10014, errMsg: 'updateVoIPChatMuteConfig:fail the microphone was muted by the server' });
    assert.equal((await state()).trackEnabled, false, 'the refused unmute changed nothing');

    await server.api(app, '/api/v1/rooms/smute-room/mute', { openId: 'smute-b', muted: false });
    await h.waitFor(async () => (await state()).serverMutes.length === 2, { timeout: 3000, what: 'b told it may talk again' });
    assert.deepEqual(await state(), { serverMutes: [event(true), event(false)], serverMuted: false, mic: true, trackEnabled: false });
    await b.page.evaluate(() => window.client.updateVoIPChatMuteConfig({ muteConfig: {} }));
    assert.equal((await state()).trackEnabled, true, 'unmuted by the app');

    const closed = await server.api(app, '/api/v1/rooms/smute-room/close', {});
    assert.deepEqual(closed, { closed: true, openIdList: ['smute-a', 'smute-b'] });
    for (const c of [a, b]) {
      await h.waitFor(async () => (await h.pageLog(c)).interrupted.length === 1, { timeout: 3000, what: `${c.openId} interrupted` });
      const { t, ...interrupted } = (await h.pageLog(c)).interrupted[0];
      assert.deepEqual(interrupted, { errCode: -11005, errMsg: 'onVoIPChatInterrupted:fail room closed by the server' });
      assert.equal(await c.page.evaluate(() => window.client.state), 'idle');
    }
    assert.deepEqual(await server.members(app, 'smute-room'), []);
    await a.context.close();
    await b.context.close();
  });

  it('every call takes success/fail/complete and returns a Promise with the same payload', async () => {
    const c = await h.openClient(browser, server, { appId: app.appId, openId: 'cb', sign, pageErrors });
    const r = await c.page.evaluate(async () => {
      const client = window.client;
      const out = {};
      const calls = [];
      out.joined = await client.joinVoIPChat({
        groupId: 'cb-room',
        success: (p) => calls.push(['success', p]),
        fail: (p) => calls.push(['fail', p]),
        complete: (p) => calls.push(['complete', p]),
      });
      out.joinCalls = calls.splice(0);
      out.again = await new Promise((resolve) =>
        client.joinVoIPChat({ groupId: 'cb-room', fail: (p) => resolve(p) }),
      );
      out.mute = await client.updateVoIPChatMuteConfig({ muteConfig: { muteMicrophone: true }, success: (p) => calls.push(['success', p]) });
      out.muteCalls = calls.splice(0);
      out.badMute = await client.updateVoIPChatMuteConfig({ muteConfig: { muteMicrofone: true } }).catch((e) => ({ errCode: e.errCode, errMsg: e.errMsg }));
      out.exit = await client.exitVoIPChat({ complete: (p) => calls.push(['complete', p]) });
      out.exitCalls = calls.splice(0);
      out.exitIdle = await client.exitVoIPChat().catch((e) => ({ errCode: e.errCode, errMsg: e.errMsg }));
      out.muteIdle = await client.updateVoIPChatMuteConfig({ muteConfig: {} }).catch((e) => ({ errCode: e.errCode, errMsg: e.errMsg }));
      return out;
    });
    assert.deepEqual(r.joined, { openIdList: ['cb'], mutedOpenIdList: [], errCode: 0, errMsg: 'joinVoIPChat:ok' });
    assert.deepEqual(r.joinCalls, [['success', r.joined], ['complete', r.joined]]);
    assert.deepEqual(r.again, { errCode: -1, errMsg: 'joinVoIPChat:fail already in a room' });
    assert.deepEqual(r.mute, { errCode: 0, errMsg: 'updateVoIPChatMuteConfig:ok' });
    assert.deepEqual(r.muteCalls, [['success', r.mute]]);
    assert.equal(r.badMute.errCode, -10007);
    assert.deepEqual(r.exit, { errCode: 0, errMsg: 'exitVoIPChat:ok' });
    assert.deepEqual(r.exitCalls, [['complete', r.exit]]);
    assert.deepEqual(r.exitIdle, { errCode: -10009, errMsg: 'exitVoIPChat:fail not in a room' });
    assert.equal(r.muteIdle.errCode, -10009);
    await c.context.close();
  });

  it("the server's refusals arrive as fail payloads with its codes", async () => {
    const c = await h.openClient(browser, server, { appId: app.appId, openId: 'refused', sign, pageErrors });
    await sign({ openId: 'refused', groupId: 'x' }); // the user has a session key
    const r = await c.page.evaluate(async () => {
      const client = window.client;
      const fails = {};
      const t = Math.floor(Date.now() / 1000);
      fails.badSignature = await client
        .joinVoIPChat({ groupId: 'r', nonceStr: 'n1', timeStamp: t, signature: '0'.repeat(64) })
        .catch((e) => ({ errCode: e.errCode, errMsg: e.errMsg }));
      fails.stale = await client
        .joinVoIPChat({ groupId: 'r', nonceStr: 'n2', timeStamp: t - 3600, signature: '0'.repeat(64) })
        .catch((e) => ({ errCode: e.errCode, errMsg: e.errMsg }));
      const other = window.sdk.createVoIPClient({ server: client.url, appId: 'wxnosuchapp00000', openId: 'refused', sign: (q) => window.backendSign(q) });
      fails.unknownApp = await other.joinVoIPChat({ groupId: 'r' }).catch((e) => ({ errCode: e.errCode, errMsg: e.errMsg }));
      fails.noGroup = await client.joinVoIPChat({}).catch((e) => ({ errCode: e.errCode, errMsg: e.errMsg }));
      return { fails, state: client.state };
    });
    assert.equal(r.fails.badSignature.errCode, -10001);
    assert.match(r.fails.badSignature.errMsg, /^joinVoIPChat:fail invalid signature/);
    assert.equal(r.fails.stale.errCode, -10002);
    assert.equal(r.fails.unknownApp.errCode, -10004);
    assert.equal(r.fails.noGroup.errCode, -10007);
    assert.equal(r.state, 'idle');
    await c.context.close();
  });

  it('exit while joining makes the join fail with -3', async () => {
    const c = await h.openClient(browser, server, { appId: app.appId, openId: 'quitter', sign, pageErrors });
    const r = await c.page.evaluate(async () => {
      const client = window.client;
      const joining = client.joinVoIPChat({ groupId: 'q-room' }).catch((e) => ({ errCode: e.errCode, errMsg: e.errMsg }));
      const exit = await client.exitVoIPChat();
      return { join: await joining, exit, state: client.state };
    });
    assert.deepEqual(r.join, { errCode: -3, errMsg: 'joinVoIPChat:fail exited while joining' });
    assert.deepEqual(r.exit, { errCode: 0, errMsg: 'exitVoIPChat:ok' });
    assert.equal(r.state, 'idle');
    await h.sleep(200);
    assert.deepEqual(await server.members(app, 'q-room'), []);
    await c.context.close();
  });

  it('off…(fn) removes one listener and off…() all of them', async () => {
    const a = await h.openClient(browser, server, { appId: app.appId, openId: 'lis-a', sign, pageErrors });
    const b = await h.openClient(browser, server, { appId: app.appId, openId: 'lis-b', sign, pageErrors });
    await a.page.evaluate(() => {
      window.calls = { f1: 0, f2: 0, f3: 0 };
      window.f1 = () => window.calls.f1++;
      window.f2 = () => window.calls.f2++;
      window.f3 = () => window.calls.f3++;
      window.client.onVoIPChatMembersChanged(window.f1);
      window.client.onVoIPChatMembersChanged(window.f2);
      window.client.onVoIPChatMembersChanged(window.f3);
      window.client.offVoIPChatMembersChanged(window.f1);
    });
    assert.equal((await h.join(a, 'lis-room')).errCode, 0);
    assert.equal((await h.join(b, 'lis-room')).errCode, 0);
    await h.waitFor(() => a.page.evaluate(() => window.calls.f2 === 1), { what: 'f2 called' });
    assert.deepEqual(await a.page.evaluate(() => window.calls), { f1: 0, f2: 1, f3: 1 });
    await a.page.evaluate(() => window.client.offVoIPChatMembersChanged());
    await b.page.evaluate(() => window.client.exitVoIPChat());
    await h.waitFor(async () => JSON.stringify(await server.members(app, 'lis-room')) === '["lis-a"]', { what: 'b left' });
    await h.sleep(300);
    assert.deepEqual(await a.page.evaluate(() => window.calls), { f1: 0, f2: 1, f3: 1 });
    // The SDK's own bookkeeping still follows the room.
    assert.deepEqual(await a.page.evaluate(() => window.client.members), ['lis-a']);
    await a.page.evaluate(() => window.client.exitVoIPChat());
    await a.context.close();
    await b.context.close();
  });

  it('after a failed rejoin the app gets an interrupted event', async () => {
    const c = await h.openClient(browser, server, { appId: app.appId, openId: 'fragile', sign, pageErrors });
    const joined = await c.page.evaluate(async (url) => {
      let signs = 0;
      // The backend signs the join, then is down when the SDK asks it again for the rejoin.
      const client = window.sdk.createVoIPClient({
        server: url,
        appId: window.client.appId,
        openId: 'fragile',
        reconnect: { attempts: 2, delaysMs: [0, 200] },
        sign: async (q) => {
          if (++signs > 1) throw new Error('backend down');
          return window.backendSign(q);
        },
      });
      window.fragile = { client, state: [], interrupted: [] };
      client.onVoIPChatStateChanged((p) => window.fragile.state.push(p));
      client.onVoIPChatInterrupted((p) => window.fragile.interrupted.push(p));
      return client.joinVoIPChat({ groupId: 'fragile-room' });
    }, `${server.ws}?tag=fragile`);
    assert.equal(joined.errCode, 0);
    assert.equal(await server.dropWs('tag=fragile'), 1);
    await h.waitFor(() => c.page.evaluate(() => window.fragile.interrupted.length === 1), { what: 'interrupted' });
    const r = await c.page.evaluate(() => ({
      interrupted: window.fragile.interrupted,
      states: window.fragile.state.map((s) => [s.code, s.data.state, s.data.attempt ?? s.data.reason]),
      state: window.fragile.client.state,
    }));
    assert.equal(r.interrupted[0].errCode, -1000);
    assert.match(r.interrupted[0].errMsg, /^onVoIPChatInterrupted:fail .*backend down/);
    const after = r.states.filter(([code]) => code === 3 || code === 5);
    assert.deepEqual(after, [
      [3, 'reconnecting', 1],
      [3, 'reconnecting', 2],
      [5, 'disconnected', 'rejoinFailed'],
    ]);
    assert.equal(r.state, 'idle');
    assert.deepEqual(await server.members(app, 'fragile-room'), []);
    await c.context.close();
  });

  it('when media stops under a live socket (interrupted -11003) the SDK rejoins', async () => {
    const c = await h.openClient(browser, server, { appId: app.appId, openId: 'lossy', sign, pageErrors });
    assert.equal((await h.join(c, 'lossy-room')).errCode, 0);
    await h.waitFor(() => c.page.evaluate(() => window.log.state.some((s) => s.code === 6)), { what: 'media connected' });
    const t0 = Date.now();
    // The peer connection dies; the WebSocket stays: the server times the member out.
    await c.page.evaluate(() => window.client.pc.close());
    await h.waitFor(() => c.page.evaluate((t0) => window.log.state.some((s) => s.t >= t0 && s.code === 4), t0), {
      timeout: 8000,
      what: 'rejoined',
    });
    const r = await c.page.evaluate((t0) => ({
      states: window.log.state.filter((s) => s.t >= t0).map((s) => s.data.state),
      reason: window.log.state.find((s) => s.t >= t0 && s.code === 3).data.reason,
      interrupted: window.log.interrupted,
      state: window.client.state,
      pcState: window.client.pc.signalingState,
    }), t0);
    assert.deepEqual(r.states.slice(0, 2), ['reconnecting', 'reconnected'], JSON.stringify(r.states));
    assert.match(r.reason, /media lost \(-11003\)/);
    assert.deepEqual(r.interrupted, []);
    assert.equal(r.state, 'joined');
    assert.equal(r.pcState, 'stable', 'a new peer connection');
    await h.waitFor(() => c.page.evaluate(() => window.client.pc.connectionState === 'connected'), { what: 'media again' });
    assert.deepEqual(await server.members(app, 'lossy-room'), ['lossy']);
    await c.page.evaluate(() => window.client.exitVoIPChat());
    await c.context.close();
  });
});
