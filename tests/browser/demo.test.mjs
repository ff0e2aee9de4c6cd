// The demo page at / of `voipchat serve` (demo mode), driven through its UI, and the SDK
// files the server embeds. Ann's microphone plays a 440 Hz tone, Ben's is silent.

import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import * as h from './lib/harness.mjs';

describe('the demo page', () => {
  let server, fixtures;
  const browsers = {};

  before(async () => {
    h.requireLoopbackOnly();
    fixtures = h.makeFixtures();
    server = await h.startServer({});
    [browsers.ann, browsers.ben] = await Promise.all([h.launchVoice(fixtures.tone440), h.launchVoice(fixtures.silence)]);
  });

  after(async () => {
    await Promise.all(Object.values(browsers).map((b) => b.close().catch(() => {})));
    if (server) await server.stop();
  });

  it('serves the SDK and its type declarations as they are in sdk/js', async () => {
    for (const [path, file, type] of [
      ['/sdk/voipchat.js', 'voipchat.js', /^text\/javascript/],
      ['/sdk/voipchat.d.ts', 'voipchat.d.ts', /^application\/typescript/],
    ]) {
      const res = await fetch(server.base + path);
      assert.equal(res.status, 200, path);
      assert.match(res.headers.get('content-type'), type);
      const served = await res.text();
      assert.ok(served === readFileSync(join(h.ROOT, 'sdk/js', file), 'utf8'), `${path} is not sdk/js/${file} (rebuild the binary?)`);
    }
  });

  async function openDemo(browser, name, room, { base = server.base, context } = {}) {
    const ctx = context || (await browser.newContext({ viewport: { width: 640, height: 560 } }));
    const page = await ctx.newPage();
    await page.goto(`${base}/`);
    await page.fill('#name', name);
    await page.fill('#room', room);
    await page.click('#join');
    await page.waitForSelector('#room-card:not(.hidden)');
    return page;
  }

  const memberNames = (page) => page.$$eval('#members li', (lis) => lis.map((li) => li.dataset.openId));
  const speaking = (page) => page.$$eval('#members li.speaking', (lis) => lis.map((li) => li.dataset.openId));
  // Members shown with the muted marker (the row's class and its visible "muted" tag agree).
  const shownMuted = (page) =>
    page.$$eval('#members li', (lis) =>
      lis.filter((li) => {
        const tag = li.querySelector('.tag.muted');
        const visible = !!tag && !tag.hidden && getComputedStyle(tag).display !== 'none';
        if (visible !== li.classList.contains('muted')) throw new Error(`row ${li.dataset.openId}: class and tag disagree`);
        return visible;
      }).map((li) => li.dataset.openId),
    );
  const micMeter = (page) => page.$eval('#mic-level > div', (d) => parseFloat(d.style.width) || 0);

  it('two people join, see each other and who is speaking; a screenshot shows it', async () => {
    // Ben (silent) is first; Ann (a tone) joins and starts speaking, which both are told.
    const ben = await openDemo(browsers.ben, 'Ben', 'lobby');
    const ann = await openDemo(browsers.ann, 'Ann', 'lobby');
    for (const page of [ann, ben]) {
      await h.waitFor(async () => JSON.stringify(await memberNames(page)) === '["Ben","Ann"]', { what: 'both members listed' });
      await h.waitFor(async () => JSON.stringify(await speaking(page)) === '["Ann"]', { what: 'Ann shown speaking' });
    }
    assert.match(await ann.textContent('#members li[data-open-id="Ann"] .name'), /Ann \(you\)/);
    // The level meter of the remote speaker moves (getStats audioLevel of Ann's slot at Ben).
    await h.waitFor(async () => parseFloat(await ben.$eval('#members li[data-open-id="Ann"] .meter > div', (d) => d.style.width)) > 50, {
      what: "Ann's level meter at Ben",
    });
    const shot = join(h.ensureArtifacts(), 'demo.png');
    await ben.screenshot({ path: shot, fullPage: true });
    console.log(`screenshot: ${shot}`);

    // Ann mutes her microphone: Ben no longer sees her speak; unmute brings it back.
    await ann.click('#mute-mic');
    await h.waitFor(async () => (await speaking(ben)).length === 0, { timeout: 3000, what: 'Ann muted at Ben' });
    // Ann's button changes when her page gets the server's result, which may come a moment
    // after Ben's speakers event.
    await h.waitFor(async () => (await ann.textContent('#mute-mic')) === 'Unmute microphone', {
      timeout: 3000,
      what: "Ann's mute button",
    });
    await ann.click('#mute-mic');
    await h.waitFor(async () => JSON.stringify(await speaking(ben)) === '["Ann"]', { timeout: 3000, what: 'Ann speaking again' });

    // The earphone toggle mutes Ben's playback.
    await ben.click('#mute-ear');
    await h.waitFor(() => ben.evaluate(() => window.voipClient.slots.every((s) => s.audio.muted)), { what: 'Ben earphone muted' });
    await ben.click('#mute-ear');

    // Ben leaves: Ann sees one member.
    await ben.click('#leave');
    await ben.waitForSelector('#join-card:not(.hidden)');
    await h.waitFor(async () => JSON.stringify(await memberNames(ann)) === '["Ann"]', { what: 'Ben left' });
  });

  it('a member who mutes is marked muted for everyone; the own microphone level is shown', async () => {
    const ann = await openDemo(browsers.ann, 'Ann', 'mute-room');
    // Ann's own meter follows her microphone, by a WebAudio analyser on the track she sends
    // (in dB: -60 dBFS empty, 0 dBFS full; the browser's processing turns the 0.5 tone down
    // to about -25 dBFS within seconds).
    await h.waitFor(async () => (await micMeter(ann)) > 30, { what: "Ann's own microphone meter" });
    await ann.click('#mute-mic');
    await h.waitFor(async () => (await ann.textContent('#mute-mic')) === 'Unmute microphone', { what: "Ann's mute button" });
    // Muted: the meter drops to nothing, and Ann's own row says so.
    await h.waitFor(async () => (await micMeter(ann)) === 0, { timeout: 3000, what: "Ann's meter at rest while muted" });
    assert.deepEqual(await shownMuted(ann), ['Ann']);

    // Ben joins while Ann is muted: his joinVoIPChat result names her.
    const ben = await openDemo(browsers.ben, 'Ben', 'mute-room');
    await h.waitFor(async () => JSON.stringify(await memberNames(ben)) === '["Ann","Ben"]', { what: 'Ben sees both' });
    await h
      .waitFor(async () => JSON.stringify(await shownMuted(ben)) === '["Ann"]', { timeout: 3000, what: 'Ann marked muted at Ben' })
      .catch(async (e) => {
        const reported = await ben.evaluate(() => window.voipClient.mutedMembers);
        assert.fail(`${e.message}; the SDK's mutedMembers at Ben: ${JSON.stringify(reported)} (does the server send mutedOpenIdList?)`);
      });
    // Ben's microphone is silent: his own meter stays empty although he is not muted.
    await h.sleep(400); // a few meter updates
    assert.equal(await micMeter(ben), 0, "Ben's meter");

    // Ann unmutes and mutes again: Ben's page follows each change (muteChanged).
    await ann.click('#mute-mic');
    await h.waitFor(async () => (await shownMuted(ben)).length === 0, { timeout: 3000, what: 'Ann unmarked at Ben' });
    await h.waitFor(async () => (await micMeter(ann)) > 30, { what: "Ann's meter back" });
    await ann.click('#mute-mic');
    await h.waitFor(async () => JSON.stringify(await shownMuted(ben)) === '["Ann"]', { timeout: 3000, what: 'Ann marked again at Ben' });
    // Ben mutes too: both pages mark both.
    await ben.click('#mute-mic');
    for (const page of [ann, ben]) {
      await h.waitFor(async () => JSON.stringify(await shownMuted(page)) === '["Ann","Ben"]', { timeout: 3000, what: 'both marked' });
    }
    const shot = join(h.ensureArtifacts(), 'demo-muted.png');
    await ann.screenshot({ path: shot, fullPage: true });
    for (const page of [ann, ben]) {
      await page.click('#leave');
      await page.context().close();
    }
  });

  it('a second tab gets a name of its own; a reload keeps the tab\'s name', async () => {
    const context = await browsers.ben.newContext();
    const first = await context.newPage();
    await first.goto(`${server.base}/`);
    const name = await first.inputValue('#name');
    assert.match(name, /^guest-\d{4}$/);
    await first.click('#join'); // remembers the name for this tab
    await first.waitForSelector('#room-card:not(.hidden)');
    await first.click('#leave');
    await first.reload();
    assert.equal(await first.inputValue('#name'), name, 'the tab keeps its name');
    // Same browser profile, another tab: its own default name, not the first tab's.
    const second = await context.newPage();
    await second.goto(`${server.base}/`);
    const other = await second.inputValue('#name');
    assert.match(other, /^guest-\d{4}$/);
    assert.notEqual(other, name, 'the second tab must not reuse the first tab\'s name');
    assert.equal(await second.evaluate(() => localStorage.length), 0, 'nothing in localStorage');
    await context.close();
  });

  it('interruptions are told in sentences', async () => {
    // The same name in a second tab replaces the first tab's membership (-11002).
    const context = await browsers.ben.newContext();
    const first = await openDemo(browsers.ben, 'Twin', 'twin-room', { context });
    const second = await openDemo(browsers.ben, 'Twin', 'twin-room', { context });
    await first.waitForSelector('#join-card:not(.hidden)');
    assert.equal(await first.textContent('#error'), 'You joined this room from another tab or device, so this one left it.');
    assert.equal(await second.textContent('#error'), '');
    await second.click('#leave');
    await context.close();

    // Every interruption code has its sentence; a refused rejoin says why.
    const page = await (await browsers.ben.newContext()).newPage();
    await page.goto(`${server.base}/`);
    const texts = await page.evaluate(() => {
      const d = window.voipDemo.describeInterruption;
      return {
        kicked: d(-11001, 'onVoIPChatInterrupted:fail removed from the room'),
        replaced: d(-11002, 'onVoIPChatInterrupted:fail replaced by a new connection of the same openId'),
        timeout: d(-11003, 'onVoIPChatInterrupted:fail no media for too long'),
        shutdown: d(-11004, 'onVoIPChatInterrupted:fail server is shutting down'),
        closed: d(-11005, 'onVoIPChatInterrupted:fail room closed by the server'),
        lost: d(-1000, 'onVoIPChatInterrupted:fail connection closed (1006); rejoin failed'),
        full: d(-10008, 'onVoIPChatInterrupted:fail rejoin failed: joinVoIPChat:fail room is full (10 members)'),
      };
    });
    assert.deepEqual(texts, {
      kicked: 'You were removed from the room by the server operator.',
      replaced: 'You joined this room from another tab or device, so this one left it.',
      timeout: 'The connection to the server was lost: no audio got through for too long.',
      shutdown: 'The server is restarting. Join again in a moment.',
      closed: 'The room was closed by the server operator.',
      lost: 'The connection to the server was lost and could not be restored.',
      full: 'The connection dropped and the room could not be rejoined: room is full (10 members).',
    });
    for (const t of Object.values(texts)) assert.doesNotMatch(t, /onVoIPChatInterrupted|:fail/);
    await page.context().close();

    // A server that shuts down (SIGTERM) interrupts with -11004: the page says so.
    const other = await h.startServer({});
    try {
      const p = await openDemo(browsers.ben, 'Stayer', 'bye-room', { base: other.base });
      await other.stop();
      await p.waitForSelector('#join-card:not(.hidden)');
      assert.equal(await p.textContent('#error'), 'The server is restarting. Join again in a moment.');
      await p.context().close();
    } finally {
      await other.stop();
    }
  });

  it('loading the page and joining fetches nothing that fails (no favicon 404)', async () => {
    // Through a recording proxy: it sees every request of the browser, /favicon.ico included.
    const proxy = await h.recordingProxy(server.base);
    try {
      const page = await openDemo(browsers.ben, 'Fav', 'fav-room', { base: proxy.base });
      await h.sleep(1000); // the browser asks for an icon after the load
      await page.click('#leave');
      await page.waitForSelector('#join-card:not(.hidden)');
      const bad = proxy.requests.filter((r) => r.status === null || r.status >= 400);
      assert.deepEqual(bad, [], JSON.stringify(proxy.requests));
      const urls = proxy.requests.map((r) => r.url.split('?')[0]);
      for (const u of ['/', '/sdk/voipchat.js', '/demo/sign', '/ws']) assert.ok(urls.includes(u), `${u} in ${urls}`);
      assert.ok(!urls.includes('/favicon.ico'), 'the page declares its icon inline');
      assert.match(await page.$eval('link[rel=icon]', (l) => l.href), /^data:/);
      await page.context().close();
    } finally {
      await proxy.close();
    }
  });

  it('on an insecure origin the page explains that https or localhost is needed', async () => {
    // http://voip.test:PORT/ resolves to 127.0.0.1 but is not a secure context: the browser
    // gives it no navigator.mediaDevices.
    const insecure = await h.launchVoice(fixtures.tone440, ['--host-resolver-rules=MAP voip.test 127.0.0.1']);
    try {
      const page = await insecure.newPage();
      await page.goto(`http://voip.test:${new URL(server.base).port}/`);
      assert.deepEqual(await page.evaluate(() => [window.isSecureContext, typeof navigator.mediaDevices]), [false, 'undefined']);
      await page.waitForSelector('#notice:not(.hidden)');
      assert.match(await page.textContent('#notice'), /not a secure context.*https.*localhost/);
      await page.fill('#name', 'Insecure');
      await page.click('#join');
      await h.waitFor(async () => (await page.textContent('#error')).length > 0, { what: 'the join error' });
      assert.equal(
        await page.textContent('#error'),
        'Could not join (-2): microphone needs a secure context: open the page over https, or over http on localhost / 127.0.0.1',
      );
      assert.doesNotMatch(await page.textContent('#error'), /busy/);
      assert.equal(await page.evaluate(() => window.voipClient.state), 'idle');
    } finally {
      await insecure.close();
    }
  });

  it('the demo signer signs for the demo app only', async () => {
    const ok = await fetch(`${server.base}/demo/sign`, {
      method: 'POST',
      body: JSON.stringify({ openId: 'someone', groupId: 'g' }),
    });
    assert.equal(ok.status, 200);
    const body = await ok.json();
    assert.equal(body.appId, 'wxdemo0000000000');
    assert.match(body.signature, /^[0-9a-f]{64}$/);
    const other = await fetch(`${server.base}/demo/sign`, {
      method: 'POST',
      body: JSON.stringify({ appId: 'wx0123456789abcdef', openId: 'someone', groupId: 'g' }),
    });
    assert.equal(other.status, 400, 'a request naming an app is refused');
  });
});
