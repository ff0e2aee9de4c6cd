// The server with a TLS certificate (tls_cert / tls_key): Chromium loads the SDK over https
// from a name that is not localhost (voip.test, mapped to 127.0.0.1), so the page is a secure
// context only thanks to TLS; the SDK derives wss:// from the page's https origin, and two
// browsers join a voice room and hear each other. Chromium trusts the test certificate by
// its public key (--ignore-certificate-errors-spki-list), not by ignoring every error: a
// browser without the pin refuses the page.

import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import * as h from './lib/harness.mjs';

describe('TLS: https pages and wss signaling', () => {
  let server, app, fixtures, cert, origin;
  const browsers = [];

  before(async () => {
    h.requireLoopbackOnly();
    fixtures = h.makeFixtures();
    cert = h.makeCertificate(['voip.test', '127.0.0.1']);
    server = await h.startServer({ apps: ['game'], tls: cert });
    app = server.apps.game;
    assert.match(server.base, /^https:\/\/127\.0\.0\.1:\d+$/);
    origin = `https://voip.test:${new URL(server.base).port}`;
  });

  after(async () => {
    for (const b of browsers) await b.close().catch(() => {});
    if (server) await server.stop();
    if (cert) rmSync(cert.dir, { recursive: true, force: true });
    if (fixtures) rmSync(fixtures.dir, { recursive: true, force: true });
  });

  const launch = async (wav, pin = true) => {
    const args = ['--host-resolver-rules=MAP voip.test 127.0.0.1'];
    if (pin) args.push(`--ignore-certificate-errors-spki-list=${cert.spki}`);
    const b = await h.launchVoice(wav, args);
    browsers.push(b);
    return b;
  };

  it('a browser without the certificate pinned refuses the page', async () => {
    const b = await launch(fixtures.silence, false);
    const page = await (await b.newContext()).newPage();
    await assert.rejects(page.goto(`${origin}/healthz`), /ERR_CERT_AUTHORITY_INVALID/);
  });

  it('two browsers load the SDK over https, signal over wss and hear each other', async () => {
    const pageErrors = [];
    const sign = server.backend(app);
    const alice = await h.openClient(await launch(fixtures.tone440), server, { appId: app.appId, openId: 'alice', sign, origin, pageErrors });
    const bob = await h.openClient(await launch(fixtures.tone660), server, { appId: app.appId, openId: 'bob', sign, origin, pageErrors });
    for (const c of [alice, bob]) {
      const where = await c.page.evaluate(() => ({
        secure: window.isSecureContext,
        origin: location.origin,
        url: window.client.url,
      }));
      assert.deepEqual(
        { secure: where.secure, origin: where.origin },
        { secure: true, origin },
        `${c.openId}: an https page off localhost is a secure context`,
      );
      assert.ok(where.url.startsWith(`wss://voip.test:${new URL(origin).port}/ws`), `${c.openId} signals over ${where.url}`);
    }
    assert.equal((await h.join(alice, 'tls-room')).errCode, 0);
    assert.equal((await h.join(bob, 'tls-room')).errCode, 0);
    await h.waitFor(async () => (await h.pageLog(alice)).members.at(-1)?.openIdList.length === 2, { what: 'alice sees bob' });

    await h.waitFor(async () => {
      const m = await h.measureAll([alice, bob], 500);
      return m.alice.bob?.energy > 0 && m.bob.alice?.energy > 0;
    }, { what: 'audio both ways', timeout: 15000 });
    const m = await h.measureAll([alice, bob], 2000);
    for (const [to, from] of [['alice', 'bob'], ['bob', 'alice']]) {
      assert.ok(m[to][from].packets >= 60, `${to} got ${m[to][from].packets} packets from ${from} in 2 s`);
      assert.ok(m[to][from].energy > 0.01, `${to} got energy ${m[to][from].energy} from ${from}`);
    }
    assert.deepEqual(await server.members(app, 'tls-room'), ['alice', 'bob'], 'the backend API over https agrees');
    // Chromium's request for /favicon.ico (404) is the one console error a page may have.
    assert.deepEqual(pageErrors.filter((e) => !e.includes('status of 404 (Not Found)')), []);
  });
});
