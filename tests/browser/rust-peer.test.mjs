// The Rust CLI peer (target/debug/voipchat-client) and a browser in one room hear each other.

import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync, execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as h from './lib/harness.mjs';

/** `sox stat` of an Ogg Opus file, decoded with opusdec. */
function statOfOpus(file) {
  const wav = file.replace(/\.opus$/, '.wav');
  execFileSync('opusdec', ['--quiet', '--rate', '48000', file, wav]);
  // `sox … stat` reports on stderr.
  const r = spawnSync('sox', [wav, '-n', 'stat'], { encoding: 'utf8' });
  return r.stderr;
}

function soxStat(text, name) {
  const m = text.match(new RegExp(`${name}:\\s+([-0-9.e]+)`));
  return m ? Number(m[1]) : NaN;
}

describe('a Rust peer and a browser', () => {
  let server, app, fixtures, browser, recordDir;

  before(async () => {
    h.requireLoopbackOnly();
    if (!existsSync(h.CLIENT_BIN)) throw new Error(`${h.CLIENT_BIN} is missing: run cargo build first`);
    fixtures = h.makeFixtures();
    server = await h.startServer({ apps: ['game'] });
    app = server.apps.game;
    browser = await h.launchVoice(fixtures.tone440);
    recordDir = mkdtempSync(join(tmpdir(), 'voipchat-record-'));
  });

  after(async () => {
    if (browser) await browser.close().catch(() => {});
    if (server) await server.stop();
    if (recordDir) rmSync(recordDir, { recursive: true, force: true });
  });

  it('hear each other: the browser gets the Rust peer’s speech, the Rust peer records the browser’s tone', async () => {
    const web = await h.openClient(browser, server, { appId: app.appId, openId: 'web', sign: server.backend(app) });
    assert.equal((await h.join(web, 'mixed')).errCode, 0);

    const { sessionKey } = await server.api(app, '/api/v1/session-key', { openId: 'rusty' });
    const out = [];
    const peer = spawn(
      h.CLIENT_BIN,
      [
        'join',
        '--server', server.ws,
        '--app-id', app.appId,
        '--open-id', 'rusty',
        '--group-id', 'mixed',
        '--session-key', sessionKey,
        '--send', fixtures.speechOpus,
        '--loop',
        '--record-dir', recordDir,
        '--duration', '6',
      ],
      { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, NO_COLOR: '1' } },
    );
    peer.stdout.on('data', (d) => out.push(String(d)));
    peer.stderr.on('data', (d) => out.push(String(d)));
    const exited = new Promise((resolve) => peer.on('exit', resolve));
    try {
      await h.waitFor(async () => (await h.pageLog(web)).members.at(-1)?.openIdList.includes('rusty'), {
        what: 'rusty joins',
      });
      // The browser hears the Rust peer's speech (espeak-ng: quieter than the tone, with pauses).
      await h.waitFor(async () => (await h.measure(web, 500)).rusty?.energy > 0, { what: 'audio from rusty' });
      const m = await h.measure(web, 2000);
      assert.ok(m.rusty.packets >= 60, `web got ${m.rusty.packets} packets from rusty`);
      assert.ok(m.rusty.energy > 0.002, `web got energy ${m.rusty.energy} from rusty`);
      const speakers = new Set((await h.pageLog(web)).speakers.flatMap((e) => e.openIdList));
      assert.ok(speakers.has('rusty'), 'rusty was reported speaking');
    } finally {
      let timer;
      const code = await Promise.race([exited, new Promise((r) => (timer = setTimeout(() => r('timeout'), 15000)))]);
      clearTimeout(timer);
      if (code === 'timeout') peer.kill('SIGKILL');
      assert.equal(code, 0, `voipchat-client exited with ${code}:\n${out.join('')}`);
    }
    // The browser saw it leave (it exits after --duration).
    await h.waitFor(async () => JSON.stringify((await h.pageLog(web)).members.at(-1)?.openIdList) === '["web"]', {
      what: 'rusty left',
    });
    // The Rust peer recorded the browser: a 440 Hz tone of amplitude 0.5, not silence.
    const file = join(recordDir, 'web.opus');
    assert.ok(existsSync(file), `no recording ${file}:\n${out.join('')}`);
    const stat = statOfOpus(file);
    const rms = soxStat(stat, 'RMS\\s+amplitude');
    const seconds = soxStat(stat, 'Length \\(seconds\\)');
    console.log(`recording of web at rusty: ${seconds} s, RMS amplitude ${rms}`);
    assert.ok(seconds > 3, `recording is ${seconds} s long`);
    assert.ok(rms > 0.1, `recording RMS amplitude ${rms} (silence is 0; the tone's is 0.35)`);
  });
});
