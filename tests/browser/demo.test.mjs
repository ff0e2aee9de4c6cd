// The demo page at / of `voipchat serve` (demo mode), driven through its UI, and the SDK
// files the server embeds.

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

  async function openDemo(browser, name, room) {
    const page = await (await browser.newContext({ viewport: { width: 640, height: 560 } })).newPage();
    await page.goto(`${server.base}/`);
    await page.fill('#name', name);
    await page.fill('#room', room);
    await page.click('#join');
    await page.waitForSelector('#room-card:not(.hidden)');
    return page;
  }

  const memberNames = (page) => page.$$eval('#members li', (lis) => lis.map((li) => li.dataset.openId));
  const speaking = (page) => page.$$eval('#members li.speaking', (lis) => lis.map((li) => li.dataset.openId));

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
