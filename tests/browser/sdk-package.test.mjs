// The browser SDK as an npm package and the wx shim: `npm pack` of sdk/js installs into a
// fresh project, its entry points import under Node, and TypeScript (strict) compiles code
// that uses its types, refusing code that misuses them; in Chromium, mini-game code written
// against `wx.joinVoIPChat` and friends runs unchanged on `installWx(client)`.

import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as h from './lib/harness.mjs';

const SDK_DIR = join(h.ROOT, 'sdk/js');
const TSC = join(h.ROOT, 'tests/browser/node_modules/typescript/bin/tsc');

describe('the SDK as a package', () => {
  let dir;

  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'voipchat-sdk-pkg-'));
    const out = execFileSync('npm', ['pack', '--silent', '--pack-destination', dir], { cwd: SDK_DIR, encoding: 'utf8' });
    const tarball = join(dir, out.trim().split('\n').pop());
    const app = join(dir, 'game');
    execFileSync('mkdir', ['-p', app]);
    writeFileSync(join(app, 'package.json'), JSON.stringify({ name: 'game', private: true, type: 'module', dependencies: { 'voipchat-sdk': `file:${tarball}` } }));
    execFileSync('npm', ['install', '--offline', '--no-audit', '--no-fund', '--silent'], { cwd: app });
  });

  after(() => {
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('npm pack holds the SDK files and nothing else', () => {
    const files = readdirSync(join(dir, 'game/node_modules/voipchat-sdk')).sort();
    assert.deepEqual(files, ['package.json', 'voip-room.js', 'voipchat.d.ts', 'voipchat.js', 'wx.d.ts', 'wx.js']);
  });

  it('its entry points import under Node', () => {
    const script = `
      const sdk = await import('voipchat-sdk');
      const { installWx, WX_CALLS } = await import('voipchat-sdk/wx');
      const room = await import('voipchat-sdk/voip-room');
      const client = sdk.createVoIPClient({ server: 'http://127.0.0.1:1', appId: 'a', openId: 'b' });
      const wx = installWx(client, {});
      console.log(JSON.stringify({
        sdk: ['createVoIPClient', 'VoIPChatError', 'SIMULCAST_LAYERS'].filter((k) => k in sdk),
        wx: WX_CALLS.filter((k) => typeof wx[k] === 'function').length,
        calls: WX_CALLS.length,
        room: typeof room.installVoipRoom,
      }));`;
    const out = execFileSync('node', ['--input-type=module', '-e', script], { cwd: join(dir, 'game'), encoding: 'utf8' });
    assert.deepEqual(JSON.parse(out), { sdk: ['createVoIPClient', 'VoIPChatError', 'SIMULCAST_LAYERS'], wx: 14, calls: 14, room: 'function' });
  });

  it('TypeScript compiles code that uses its types and refuses code that misuses them', () => {
    const tsconfig = {
      compilerOptions: { strict: true, noEmit: true, module: 'nodenext', moduleResolution: 'nodenext', target: 'es2022', lib: ['es2022', 'dom'], skipLibCheck: false },
      files: ['game.ts'],
    };
    writeFileSync(join(dir, 'game/tsconfig.json'), JSON.stringify(tsconfig));
    const good = `
      import { createVoIPClient, SIMULCAST_LAYERS } from 'voipchat-sdk';
      import { installWx } from 'voipchat-sdk/wx';
      const client = createVoIPClient({ appId: 'a', openId: 'b', simulcast: [...SIMULCAST_LAYERS], videoCodec: 'H264' });
      const wx = installWx(client, { other: 1 });
      const n: number = wx.other;
      wx.onVoIPChatMembersChanged(({ openIdList }) => console.log(openIdList.join(','), n));
      void wx.joinVoIPChat({ groupId: 'g', roomType: 'video', signature: 's', nonceStr: 'n', timeStamp: 1 }).then((r) => r.openIdList);
      void client.getCameraStats().then((layers) => layers.map((l) => l.frameHeight));
    `;
    writeFileSync(join(dir, 'game/game.ts'), good);
    const ok = spawnSync('node', [TSC, '-p', '.'], { cwd: join(dir, 'game'), encoding: 'utf8' });
    assert.equal(ok.status, 0, `tsc: ${ok.stdout}${ok.stderr}`);
    // A room type that does not exist and a codec the server does not take.
    writeFileSync(join(dir, 'game/game.ts'), `${good}\nvoid wx.joinVoIPChat({ groupId: 'g', roomType: 'party' });\ncreateVoIPClient({ appId: 'a', openId: 'b', videoCodec: 'VP9' });\n`);
    const bad = spawnSync('node', [TSC, '-p', '.'], { cwd: join(dir, 'game'), encoding: 'utf8' });
    assert.notEqual(bad.status, 0);
    assert.match(bad.stdout, /"party"/);
    assert.match(bad.stdout, /"VP9"/);
  });
});

describe('wx-shaped mini-game code in Chromium', () => {
  let server, app, sign, fixtures;
  const browsers = [];
  const pageErrors = [];

  before(async () => {
    h.requireLoopbackOnly();
    fixtures = h.makeFixtures();
    server = await h.startServer({ apps: ['game'] });
    app = server.apps.game;
    sign = server.backend(app);
    browsers.push(...(await Promise.all([h.launchVoice(fixtures.tone440), h.launchVoice(fixtures.tone660)])));
  });

  after(async () => {
    await Promise.all(browsers.map((b) => b.close().catch(() => {})));
    if (server) await server.stop();
    if (fixtures) rmSync(fixtures.dir, { recursive: true, force: true });
    const real = pageErrors.filter((e) => !/favicon|404 \(Not Found\)/.test(e));
    if (real.length) console.log(`page messages:\n${real.join('\n')}`);
  });

  it('wx.joinVoIPChat with its callbacks, members and speakers events, mute and exit, on installWx', async () => {
    const pages = await Promise.all(
      ['alice', 'bob'].map((openId, i) => h.openClient(browsers[i], server, { appId: app.appId, openId, sign, pageErrors })),
    );
    // The game's own backend signs; the page then calls wx exactly as in a mini game.
    const play = async (p, openId) =>
      p.page.evaluate(
        async ({ groupId, signed }) => {
          const { installWx } = await import('/sdk/wx.js');
          installWx(window.client);
          const seen = { members: [], speakers: [], calls: [] };
          window.seen = seen;
          wx.onVoIPChatMembersChanged((r) => seen.members.push(r.openIdList));
          wx.onVoIPChatSpeakersChanged((r) => seen.speakers.push(r.openIdList));
          await new Promise((resolve) =>
            wx.joinVoIPChat({
              groupId,
              ...signed,
              muteConfig: { muteMicrophone: false, muteEarphone: false },
              success: (r) => seen.calls.push(['success', r.errCode, r.openIdList]),
              fail: (r) => seen.calls.push(['fail', r.errCode, r.errMsg]),
              complete: () => resolve(),
            }),
          );
          return seen.calls;
        },
        { groupId: 'wx-room', signed: await sign({ openId, groupId: 'wx-room' }) },
      );
    const a = await play(pages[0], 'alice');
    const b = await play(pages[1], 'bob');
    assert.deepEqual(a, [['success', 0, ['alice']]]);
    assert.deepEqual(b, [['success', 0, ['alice', 'bob']]]);
    await h.waitFor(async () => (await pages[0].page.evaluate(() => window.seen.members)).some((l) => l.length === 2), {
      what: 'alice told bob joined',
    });
    // Both tones are heard as speakers.
    await h.waitFor(
      async () => {
        const s = await pages[0].page.evaluate(() => window.seen.speakers);
        return s.some((l) => l.includes('bob'));
      },
      { timeout: 10000, what: 'bob speaking, seen by alice' },
    );
    const muted = await pages[1].page.evaluate(
      () =>
        new Promise((resolve) =>
          wx.updateVoIPChatMuteConfig({ muteConfig: { muteMicrophone: true }, success: (r) => resolve(r.errMsg), fail: (r) => resolve(r.errMsg) }),
        ),
    );
    assert.equal(muted, 'updateVoIPChatMuteConfig:ok');
    // off…() removes the game's listeners; exit through wx.
    const exit = await pages[1].page.evaluate(async () => {
      wx.offVoIPChatMembersChanged();
      return (await wx.exitVoIPChat()).errMsg;
    });
    assert.equal(exit, 'exitVoIPChat:ok');
    await h.waitFor(async () => (await server.members(app, 'wx-room')).length === 1, { what: 'bob gone' });
    const bad = await pages[0].page.evaluate(async () => {
      const { installWx } = await import('/sdk/wx.js');
      try {
        installWx({});
        return 'accepted';
      } catch (e) {
        return e instanceof TypeError ? e.message : `${e}`;
      }
    });
    assert.equal(bad, 'installWx needs a client made by createVoIPClient');
    await pages[0].page.evaluate(() => wx.exitVoIPChat());
  });
});
