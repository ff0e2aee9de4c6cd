// Video rooms in real Chromium through the SDK and <voip-room>: who sees whom (by the colour
// of each fake camera), subscriptions, camera mute, the element's own camera and its errors,
// and the demo page's video mode. One Chromium process per member, each with its own camera:
// a solid-colour Y4M file (160x120, 15 fps) that Chromium loops. alice red (her microphone
// a 440 Hz tone, for the demo's speaking highlight), bob green, carol blue, dave yellow.

import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import * as h from './lib/harness.mjs';

const GROUP = 'video-1';
const NAMES = ['alice', 'bob', 'carol', 'dave'];
const CAMERA = { alice: 'red', bob: 'green', carol: 'blue', dave: 'yellow' };
/** Largest difference per channel between a sampled pixel and its camera's colour. */
const TOLERANCE = 60;

/** In-page helpers: <voip-room> tiles with their errors and first frame, and colour sampling. */
function installTiles() {
  window.tiles = {};
  window.placeTile = (key, attrs) => {
    const el = document.createElement('voip-room');
    for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, v);
    el.style.width = '160px';
    el.style.height = '120px';
    const rec = { el, errors: [], firstFrameAt: null, placedAt: Date.now() };
    el.addEventListener('error', (e) => rec.errors.push({ t: Date.now(), ...e.detail }));
    // The first frame the tile presents while it shows a video.
    const arm = () =>
      el.video.requestVideoFrameCallback(() => {
        if (!rec.firstFrameAt && el.video.srcObject) rec.firstFrameAt = Date.now();
        arm();
      });
    arm();
    document.body.append(el);
    window.tiles[key] = rec;
  };
  // The mean colour of the middle of the tile's current frame, or null without one.
  window.tileColour = (key) => {
    const v = window.tiles[key].el.video;
    if (!window.tiles[key].el.active || !v.videoWidth) return null;
    const c = document.createElement('canvas');
    c.width = 32;
    c.height = 24;
    const ctx = c.getContext('2d', { willReadFrequently: true });
    ctx.drawImage(v, 0, 0, 32, 24);
    const d = ctx.getImageData(8, 6, 16, 12).data;
    const sum = [0, 0, 0];
    for (let i = 0; i < d.length; i += 4) for (let k = 0; k < 3; k++) sum[k] += d[i + k];
    return sum.map((s) => Math.round(s / (d.length / 4)));
  };
  window.tileState = (key) => {
    const t = window.tiles[key];
    return { active: t.el.active, errors: t.errors, firstFrameAt: t.firstFrameAt, colour: window.tileColour(key) };
  };
}

function near(rgb, colour) {
  const want = h.CAMERA_COLOURS[colour].rgb;
  return !!rgb && rgb.every((v, i) => Math.abs(v - want[i]) <= TOLERANCE);
}

describe('video rooms in the browser', () => {
  let server, app, sign, fixtures, cameras;
  const browsers = {};
  const pages = {};
  const pageErrors = [];
  const joinedAt = {}; // when each page called joinVoIPChat
  const inRoomAt = {}; // when its join succeeded
  let nocam; // a browser with a microphone and no camera

  before(async () => {
    h.requireLoopbackOnly();
    fixtures = h.makeFixtures();
    cameras = h.makeCameraFixtures();
    server = await h.startServer({ apps: ['game'] });
    app = server.apps.game;
    sign = server.backend(app);
    const launchingNocam = h.launchMember(fixtures.silence, null).then((b) => (nocam = b));
    await Promise.all(
      NAMES.map(async (name) => {
        browsers[name] = await h.launchMember(name === 'alice' ? fixtures.tone440 : fixtures.silence, cameras[CAMERA[name]]);
        pages[name] = await h.openClient(browsers[name], server, { appId: app.appId, openId: name, sign, pageErrors });
        await pages[name].page.evaluate(installTiles);
        await pages[name].page.evaluate(() => {
          window.log.video = [];
          window.client.onVoIPVideoMembersChanged((p) => window.log.video.push({ t: Date.now(), ...p }));
        });
      }),
    );
    await launchingNocam;
  });

  after(async () => {
    await Promise.all([nocam, ...Object.values(browsers)].map((b) => b && b.close().catch(() => {})));
    if (server) {
      if (process.env.VOIPCHAT_SERVER_LOG) console.log(server.logs());
      await server.stop();
    }
    if (cameras) rmSync(cameras.dir, { recursive: true, force: true });
    if (fixtures) rmSync(fixtures.dir, { recursive: true, force: true });
    const real = pageErrors.filter((e) => !/favicon|404 \(Not Found\)/.test(e));
    if (real.length) console.log(`page messages:\n${real.join('\n')}`);
  });

  /** Joins the video room; resolves with the payload and the page's time of the call. */
  const joinVideo = (name, muteConfig) =>
    pages[name].page.evaluate(
      async ({ group, muteConfig }) => {
        const t = Date.now();
        try {
          const r = await window.client.joinVoIPChat({ groupId: group, roomType: 'video', muteConfig });
          return { t, done: Date.now(), ...r };
        } catch (e) {
          return { t, errCode: e.errCode, errMsg: e.errMsg };
        }
      },
      { group: GROUP, muteConfig },
    );
  const place = (name, key, attrs) => pages[name].page.evaluate(([k, a]) => window.placeTile(k, a), [key, attrs]);
  const tile = (name, key) => pages[name].page.evaluate((k) => window.tileState(k), key);
  const videoStats = (name) => pages[name].page.evaluate(() => window.client.getVideoStats());
  /** Waits until `name`'s tile `key` shows `colour`; returns its state. */
  const waitColour = (name, key, colour, timeout = 10000) =>
    h.waitFor(
      async () => {
        const s = await tile(name, key);
        return near(s.colour, colour) && s;
      },
      { timeout, what: `${name}'s tile ${key} showing ${colour}` },
    ).catch(async (e) => {
      const s = await tile(name, key);
      const v = await videoStats(name);
      throw new Error(`${e.message}: ${JSON.stringify({ ...s, slots: v })}`);
    });
  /** Bytes and frames received per video slot over `ms`: {mid: {openId, bytes, frames}}. */
  async function videoFlow(name, ms = 1000) {
    const a = await videoStats(name);
    await h.sleep(ms);
    const b = await videoStats(name);
    const out = {};
    for (const s of b) {
      const p = a.find((x) => x.mid === s.mid) || { bytesReceived: 0, framesDecoded: 0 };
      out[s.mid] = { openId: s.openId, bytes: s.bytesReceived - p.bytesReceived, frames: s.framesDecoded - p.framesDecoded, mimeType: s.mimeType };
    }
    return out;
  }
  const flowOf = (flow, openId) => Object.values(flow).find((f) => f.openId === openId);
  /** Waits for an error event of `name`'s tile `key` whose errMsg matches `re`, at `since` or later. */
  const waitError = (name, key, re, since = 0, timeout = 5000) =>
    h.waitFor(async () => (await tile(name, key)).errors.find((e) => e.t >= since && re.test(e.errMsg)), {
      timeout,
      what: `${name}'s tile ${key}: an error ${re}`,
    }).catch(async (e) => {
      throw new Error(`${e.message}: ${JSON.stringify(await tile(name, key))}`);
    });

  it('three pages in a video room: each <voip-room mode="video"> shows the right member, frames keep coming', async () => {
    const three = ['alice', 'bob', 'carol'];
    // Tiles are placed before anyone joins: they show their member when the video arrives.
    for (const me of three) {
      for (const other of three.filter((n) => n !== me)) await place(me, other, { mode: 'video', openid: other, 'object-fit': 'cover' });
      await place(me, 'self', { mode: 'camera' });
    }
    for (const me of three) {
      const { t, done, ...r } = await joinVideo(me);
      joinedAt[me] = t;
      inRoomAt[me] = done;
      assert.equal(r.errCode, 0, JSON.stringify(r));
      assert.deepEqual(r.openIdList, three.slice(0, three.indexOf(me) + 1));
    }
    // Every tile shows its member's camera colour; the own camera tile the page's own.
    for (const me of three) {
      for (const other of three.filter((n) => n !== me)) await waitColour(me, other, CAMERA[other]);
      await waitColour(me, 'self', CAMERA[me]);
    }
    // Frames keep being decoded on every slot, VP8 as negotiated.
    const flows = await Promise.all(three.map((n) => videoFlow(n)));
    for (const [i, me] of three.entries()) {
      for (const other of three.filter((n) => n !== me)) {
        const f = flowOf(flows[i], other);
        assert.ok(f, `${me} has a video slot for ${other}: ${JSON.stringify(flows[i])}`);
        assert.ok(f.frames >= 5, `${me} decoded ${f.frames} frames of ${other} in 1 s`);
        assert.equal(f.mimeType, 'video/VP8');
      }
    }
    // Everyone was told who has a camera on. The only errors of the tiles: a member who was
    // not in the room yet, reported at least a second after the page joined.
    for (const me of three) {
      const log = await h.pageLog(pages[me]);
      const { t, ...last } = log.video.at(-1);
      assert.ok(t);
      assert.deepEqual(last, { openIdList: three, errCode: 0, errMsg: 'onVoIPVideoMembersChanged:ok' });
      assert.deepEqual((await tile(me, 'self')).errors, [], `${me}'s camera tile`);
      for (const other of three.filter((n) => n !== me)) {
        for (const e of (await tile(me, other)).errors) {
          assert.deepEqual([e.errCode, e.errMsg], [-10013, `voip-room:fail ${other} is not in the room`], `${me}'s tile ${other}`);
          // (alice learns of carol's arrival a moment after carol's own join result.)
          assert.ok(e.t < inRoomAt[other] + 500 && e.t - inRoomAt[me] >= 900, `${me}'s tile ${other}: error at ${e.t - inRoomAt[me]} ms`);
        }
      }
      assert.deepEqual(await pages[me].page.evaluate(() => window.client.videoMembers), three);
    }
    // Measured, not asserted: from the later of the two joins to the tile's first frame.
    const times = [];
    for (const me of three) {
      for (const other of three.filter((n) => n !== me)) {
        const s = await tile(me, other);
        times.push(`${me}<-${other} ${s.firstFrameAt - Math.max(joinedAt[me], joinedAt[other])}`);
      }
    }
    console.log(`join -> first remote video frame (ms, from the later join of the pair): ${times.join(', ')}`);
  });

  it('a fourth member shows only after subscribeVoIPVideoMembers; videos not subscribed stop arriving', async () => {
    // alice receives the first two others (bob, carol) by default, so dave's tile stays
    // empty, and tells why once the room has settled.
    await place('alice', 'dave', { mode: 'video', openid: 'dave' });
    for (const other of ['alice', 'bob', 'carol']) await place('dave', other, { mode: 'video', openid: other });
    const r = await joinVideo('dave');
    joinedAt.dave = r.t;
    inRoomAt.dave = r.done;
    assert.equal(r.errCode, 0);
    await waitColour('dave', 'alice', 'red');
    await waitColour('dave', 'bob', 'green');
    // dave gets alice and bob by default, not carol: her tile says so, no bytes of hers come.
    const carolAtDave = await waitError('dave', 'carol', /does not receive/);
    assert.deepEqual(carolAtDave, {
      t: carolAtDave.t,
      errCode: -10013,
      errMsg: 'voip-room:fail this client does not receive the video of carol (see subscribeVoIPVideoMembers)',
    });
    assert.deepEqual((await tile('dave', 'carol')).errors, [carolAtDave], 'reported once');
    assert.equal((await tile('dave', 'carol')).active, false);
    // alice's tile of dave: "not received" (and before it "not in the room" if dave took more
    // than a second to join).
    const aliceDave = await waitError('alice', 'dave', /does not receive the video of dave/, joinedAt.dave);
    assert.equal(aliceDave.errCode, -10013);
    assert.equal((await tile('alice', 'dave')).active, false);
    const before = await videoFlow('dave', 1500);
    assert.deepEqual(Object.values(before).map((f) => f.openId).sort(), ['alice', 'bob'], 'dave has video slots for alice and bob only');
    const timesDave = [];
    for (const other of ['alice', 'bob']) timesDave.push(`dave<-${other} ${(await tile('dave', other)).firstFrameAt - joinedAt.dave}`);

    // alice subscribes to bob and dave: carol's slot goes to dave, whose tile shows yellow
    // from its first frame on (never carol's last frame).
    const sub = await pages.alice.page.evaluate(async () => {
      const calls = [];
      const t = Date.now();
      const result = await window.client.subscribeVoIPVideoMembers({
        openIdList: ['bob', 'dave'],
        success: (p) => calls.push(['success', p]),
        complete: (p) => calls.push(['complete', p]),
      });
      return { result, calls, t };
    });
    assert.deepEqual(sub.result, { errCode: 0, errMsg: 'subscribeVoIPVideoMembers:ok' });
    assert.deepEqual(sub.calls, [['success', sub.result], ['complete', sub.result]]);
    const daveAtAlice = await h.waitFor(async () => (await tile('alice', 'dave')).colour && (await tile('alice', 'dave')), {
      interval: 20,
      what: "dave's tile at alice showing a frame",
    });
    assert.ok(near(daveAtAlice.colour, 'yellow'), `dave's tile at alice shows ${daveAtAlice.colour} on its first frame`);
    await h.waitFor(async () => !(await tile('alice', 'carol')).active, { what: "carol's tile at alice empty" });
    await waitError('alice', 'carol', /does not receive the video of carol/, sub.t);
    assert.ok(near((await tile('alice', 'bob')).colour, 'green'), 'bob stays');
    assert.equal((await pages.alice.page.evaluate(() => window.client.slots.filter((s) => s.kind === 'video').length)), 2, 'the slot was reused');

    // dave subscribes to carol alone: her video arrives, alice's and bob's slots go quiet.
    assert.equal((await pages.dave.page.evaluate(() => window.client.subscribeVoIPVideoMembers({ openIdList: ['carol'] }))).errCode, 0);
    await waitColour('dave', 'carol', 'blue');
    await h.waitFor(async () => !(await tile('dave', 'alice')).active && !(await tile('dave', 'bob')).active, { what: 'alice and bob gone at dave' });
    await h.sleep(300); // packets in flight
    const after = await videoFlow('dave', 1500);
    for (const f of Object.values(after)) {
      if (f.openId === 'carol') assert.ok(f.bytes > 300 && f.frames >= 8, `carol's video at dave: ${JSON.stringify(f)}`);
      else assert.deepEqual([f.openId, f.bytes], [null, 0], `a slot dave does not subscribe: ${JSON.stringify(f)}`);
    }
    timesDave.push(`alice<-dave ${(await tile('alice', 'dave')).firstFrameAt - sub.t} (from subscribeVoIPVideoMembers)`);
    console.log(`first video frame (ms): ${timesDave.join(', ')}`);
  });

  it('a rejoin keeps the subscription', async () => {
    const t0 = Date.now();
    assert.equal(await server.dropWs('tag=alice'), 1);
    await h.waitFor(async () => (await h.pageLog(pages.alice)).state.some((e) => e.t >= t0 && e.code === 4), { timeout: 8000, what: 'alice rejoined' });
    // Back with bob and dave (not the default bob and carol) on the new peer connection.
    await waitColour('alice', 'dave', 'yellow');
    await waitColour('alice', 'bob', 'green');
    const slots = await pages.alice.page.evaluate(() => window.client.slots.filter((s) => s.kind === 'video').map((s) => s.openId).sort());
    assert.deepEqual(slots, ['bob', 'dave']);
  });

  it('muteCamera stops the camera: the others see the tile empty and the member leave the video members', async () => {
    // bob turns his camera off: his track is closed, alice's tile of him empties.
    const r = await pages.bob.page.evaluate(() => window.client.updateVoIPChatMuteConfig({ muteConfig: { muteCamera: true } }));
    assert.deepEqual(r, { errCode: 0, errMsg: 'updateVoIPChatMuteConfig:ok' });
    const local = await pages.bob.page.evaluate(() => ({
      track: window.client.cameraTrack,
      sent: window.client.pc.getSenders().find((s) => s.track && s.track.kind === 'video') || null,
      config: window.client.muteConfig,
    }));
    assert.deepEqual(local, { track: null, sent: null, config: { muteMicrophone: false, muteEarphone: false, muteCamera: true } });
    for (const me of ['alice', 'carol', 'dave']) {
      // (alice's rejoin put her last in join order.)
      await h.waitFor(async () => JSON.stringify((await h.pageLog(pages[me])).video.at(-1)?.openIdList) === '["carol","dave","alice"]', {
        timeout: 3000,
        what: `${me} told bob's camera is off`,
      });
    }
    await h.waitFor(async () => !(await tile('alice', 'bob')).active, { timeout: 3000, what: "bob's tile at alice empty" });
    await h.waitFor(async () => !(await tile('bob', 'self')).active, { timeout: 3000, what: "bob's own camera tile empty" });
    const errAtAlice = await waitError('alice', 'bob', /camera/);
    assert.deepEqual([errAtAlice.errCode, errAtAlice.errMsg], [-10013, 'voip-room:fail bob has no camera on']);
    await h.sleep(300);
    const quiet = await videoFlow('alice', 1000);
    assert.ok(flowOf(quiet, 'bob').bytes === 0, `alice still gets ${flowOf(quiet, 'bob').bytes} bytes of bob's video`);

    // Back on: the camera reopens, the others see it again.
    const u = await pages.bob.page.evaluate(() => window.client.updateVoIPChatMuteConfig({ muteConfig: {} }));
    assert.equal(u.errCode, 0);
    await waitColour('alice', 'bob', 'green');
    await waitColour('bob', 'self', 'green');
    const back = await videoFlow('alice', 1000);
    assert.ok(flowOf(back, 'bob').frames >= 5, `bob's frames at alice: ${JSON.stringify(flowOf(back, 'bob'))}`);
    assert.equal(await pages.bob.page.evaluate(() => window.client.cameraTrack.readyState), 'live');
  });

  it('<voip-room mode="camera">: a preview of its own before joining, device-position switches the camera sent, removing releases the preview', async () => {
    // A second page of carol's browser, not in a room: its camera tile opens a preview.
    const other = await h.openClient(browsers.carol, server, { appId: app.appId, openId: 'carol-2', sign, pageErrors });
    await other.page.evaluate(installTiles);
    await other.page.evaluate(() => window.placeTile('cam', { mode: 'camera', 'device-position': 'back', 'object-fit': 'contain' }));
    const s = await h.waitFor(async () => {
      const st = await other.page.evaluate(() => window.tileState('cam'));
      return near(st.colour, 'blue') && st;
    }, { what: 'the preview' });
    assert.deepEqual(s.errors, []);
    const look = await other.page.evaluate(() => {
      const el = window.tiles.cam.el;
      return { fit: el.video.style.objectFit, position: el.devicePosition, mirrored: el.video.classList.contains('mirror') };
    });
    assert.deepEqual(look, { fit: 'contain', position: 'back', mirrored: false });
    const released = await other.page.evaluate(async () => {
      const el = window.tiles.cam.el;
      const track = el.video.srcObject.getVideoTracks()[0];
      el.remove();
      return { state: track.readyState, src: el.video.srcObject, active: el.active };
    });
    assert.deepEqual(released, { state: 'ended', src: null, active: false });
    await other.context.close();

    // In the room, device-position="back" switches the camera that is sent: a new track on the
    // sender (the fake camera has no sides, so the colour stays), still seen by the others.
    const switched = await pages.bob.page.evaluate(async () => {
      const before = window.client.cameraTrack.id;
      window.placeTile('back', { mode: 'camera', 'device-position': 'back' });
      for (let i = 0; i < 100 && (!window.client.cameraTrack || window.client.cameraTrack.id === before); i++) {
        await new Promise((r) => setTimeout(r, 50));
      }
      const track = window.client.cameraTrack;
      await new Promise((r) => setTimeout(r, 200));
      const sender = window.client.pc.getSenders().find((s) => s.track && s.track.kind === 'video');
      return {
        position: window.client.cameraPosition,
        changed: !!track && track.id !== before,
        sent: !!sender && sender.track === track,
        mirrored: window.tiles.self.el.video.classList.contains('mirror'),
      };
    });
    assert.deepEqual(switched, { position: 'back', changed: true, sent: true, mirrored: false });
    await waitColour('bob', 'back', 'green');
    await waitColour('alice', 'bob', 'green');
    const f = flowOf(await videoFlow('alice', 1000), 'bob');
    assert.ok(f.frames >= 5, `bob's frames at alice after the switch: ${JSON.stringify(f)}`);

    // In the room, removing a camera tile leaves the camera that is sent alone.
    const inRoom = await pages.carol.page.evaluate(() => {
      window.tiles.self.el.remove();
      return { sent: window.client.cameraTrack.readyState, src: window.tiles.self.el.video.srcObject };
    });
    assert.deepEqual(inRoom, { sent: 'live', src: null });
  });

  it('errors: no camera fails the join and the camera tile with -2; a member not in the room is -10013', async () => {
    await place('alice', 'nobody', { mode: 'video', openid: 'nobody' });
    const nobody = await waitError('alice', 'nobody', /./);
    assert.deepEqual([nobody.errCode, nobody.errMsg], [-10013, 'voip-room:fail nobody is not in the room']);
    assert.ok(nobody.t - (await pages.alice.page.evaluate(() => window.tiles.nobody.placedAt)) >= 900, 'reported once the room has settled');

    // A browser with a microphone but no camera.
    {
      const c = await h.openClient(nocam, server, { appId: app.appId, openId: 'nocam', sign, pageErrors });
      await c.page.evaluate(installTiles);
      const r = await c.page.evaluate(async (group) => {
        const calls = [];
        const failed = await window.client
          .joinVoIPChat({ groupId: group, roomType: 'video', fail: (p) => calls.push(p) })
          .catch((e) => ({ errCode: e.errCode, errMsg: e.errMsg }));
        return { failed, calls, state: window.client.state, camera: window.client.cameraTrack, mic: window.client.micTrack };
      }, GROUP);
      assert.deepEqual(r.failed, { errCode: -2, errMsg: 'joinVoIPChat:fail camera is busy or not allowed (NotFoundError)' });
      assert.deepEqual(r.calls, [r.failed]);
      assert.deepEqual([r.state, r.camera, r.mic], ['idle', null, null]);
      assert.deepEqual(await server.members(app, GROUP), ['bob', 'carol', 'dave', 'alice']);
      // Its camera tile says the same.
      await c.page.evaluate(() => window.placeTile('cam', { mode: 'camera' }));
      const cam = await h.waitFor(async () => (await c.page.evaluate(() => window.tileState('cam'))).errors[0], { what: 'the camera tile error' });
      assert.deepEqual({ errCode: cam.errCode, errMsg: cam.errMsg }, { errCode: -2, errMsg: 'voip-room:fail camera is busy or not allowed (NotFoundError)' });
      // Joined with the camera muted, it needs no camera until it turns it on: then -2, and
      // the camera stays muted.
      const muted = await c.page.evaluate(async (group) => {
        const joined = await window.client.joinVoIPChat({ groupId: group, roomType: 'video', muteConfig: { muteCamera: true } });
        const unmute = await window.client.updateVoIPChatMuteConfig({ muteConfig: {} }).catch((e) => ({ errCode: e.errCode, errMsg: e.errMsg }));
        const out = { joined: joined.errCode, unmute, config: window.client.muteConfig, sent: window.client.pc.getTransceivers().filter((t) => t.direction === 'sendonly').map((t) => t.receiver.track.kind) };
        await window.client.exitVoIPChat();
        return out;
      }, GROUP);
      assert.deepEqual(muted, {
        joined: 0,
        unmute: { errCode: -2, errMsg: 'updateVoIPChatMuteConfig:fail camera is busy or not allowed (NotFoundError)' },
        config: { muteMicrophone: false, muteEarphone: false, muteCamera: true },
        sent: ['audio', 'video'], // the video m-line is there, for the camera later
      });
      // A voice room needs no camera: the same page joins one, with no video m-line.
      const voice = await h.join(c, 'voice-only');
      assert.equal(voice.errCode, 0);
      const kinds = await c.page.evaluate(() => window.client.pc.getTransceivers().map((t) => t.receiver.track.kind));
      assert.deepEqual(kinds, ['audio']);
      await c.page.evaluate(() => window.client.exitVoIPChat());
      await nocam.close();
    }
  });

  it('H.264: a camera that offers only H.264 shows by its colour at a receiver that offers both', async () => {
    // Second pages in carol's browser (blue camera) and bob's, in a room of their own.
    const sender = await h.openClient(browsers.carol, server, { appId: app.appId, openId: 'carol-h264', sign, pageErrors, options: { videoCodec: 'H264' } });
    const receiver = await h.openClient(browsers.bob, server, { appId: app.appId, openId: 'bob-h264', sign, pageErrors });
    try {
      for (const p of [sender, receiver]) await p.page.evaluate(installTiles);
      const bad = await sender.page.evaluate(() => {
        try {
          window.sdk.createVoIPClient({ appId: 'a', openId: 'b', videoCodec: 'VP9' });
          return 'accepted';
        } catch (e) {
          return e instanceof TypeError ? e.message : `${e}`;
        }
      });
      assert.match(bad, /videoCodec must be 'VP8' or 'H264'/);
      const joinH264 = (p, muteConfig) =>
        p.page.evaluate(
          ({ muteConfig }) =>
            window.client
              .joinVoIPChat({ groupId: 'video-h264', roomType: 'video', muteConfig })
              .catch((e) => ({ errCode: e.errCode, errMsg: e.errMsg })),
          { muteConfig },
        );
      assert.equal((await joinH264(sender)).errCode, 0);
      assert.equal((await joinH264(receiver, { muteCamera: true })).errCode, 0);
      const sent = await sender.page.evaluate(() => window.client.session.cameraTransceiver.sender.getParameters().codecs.map((c) => c.mimeType));
      assert.equal(sent[0], 'video/H264', `the camera sends H.264: ${sent}`);
      await receiver.page.evaluate(() => window.placeTile('c', { mode: 'video', openid: 'carol-h264' }));
      await h.waitFor(async () => near((await receiver.page.evaluate(() => window.tileState('c'))).colour, 'blue'), {
        timeout: 10000,
        what: "bob-h264's tile showing carol-h264's blue",
      });
      const slot = async () => (await receiver.page.evaluate(() => window.client.getVideoStats())).find((x) => x.openId === 'carol-h264');
      const a = await slot();
      await h.sleep(1000);
      const b = await slot();
      assert.equal(b.mimeType, 'video/H264');
      assert.ok(b.framesDecoded > a.framesDecoded, `frames keep being decoded: ${a.framesDecoded} -> ${b.framesDecoded}`);
    } finally {
      for (const p of [sender, receiver]) {
        await p.page.evaluate(() => window.client.exitVoIPChat().catch(() => {})).catch(() => {});
        await p.context.close().catch(() => {});
      }
    }
  });

  it('the demo page in a video room: tiles by name, own camera, speaking, camera toggle, subscribe picker', async () => {
    // The SDK pages go; three of the browsers (and their cameras) open the demo page.
    await Promise.all(NAMES.map((n) => pages[n].context.close()));
    const three = ['alice', 'bob', 'carol'];
    const demo = {};
    for (const n of three) {
      const page = await (await browsers[n].newContext({ viewport: { width: 900, height: 760 } })).newPage();
      page.on('pageerror', (e) => pageErrors.push(`demo ${n}: ${e.message}`));
      await page.goto(`${server.base}/?type=video`);
      await page.fill('#name', n);
      await page.fill('#room', 'demo-video');
      assert.equal(await page.inputValue('#room-type'), 'video');
      await page.click('#join');
      await page.waitForSelector('#room-card:not(.hidden)');
      demo[n] = page;
    }
    const carol = demo.carol;
    const tileNames = (page) => page.$$eval('#tiles .tile', (ts) => ts.map((t) => [t.dataset.openId, t.querySelector('.tile-name').textContent]));
    assert.deepEqual(await tileNames(carol), [['alice', 'alice'], ['bob', 'bob'], ['carol', 'carol (you)']]);
    await h.waitFor(async () => (await tileNames(demo.alice)).length === 3, { what: "alice's three tiles" });
    const colourOf = (page, id) =>
      page.$eval(`#tiles .tile[data-open-id="${id}"] voip-room`, (el) => {
        if (!el.active || !el.video.videoWidth) return null;
        const c = document.createElement('canvas');
        c.width = 16;
        c.height = 12;
        const ctx = c.getContext('2d');
        ctx.drawImage(el.video, 0, 0, 16, 12);
        return [...ctx.getImageData(8, 6, 1, 1).data.slice(0, 3)];
      });
    const note = (page, id) => page.textContent(`#tiles .tile[data-open-id="${id}"] .tile-note`);
    const shows = (page, id, colour) => h.waitFor(async () => near(await colourOf(page, id), colour), { what: `demo tile ${id} ${colour}` });
    // carol sees alice and bob (the first two others) and herself; alice's tone makes her
    // tile speak.
    await shows(carol, 'alice', 'red');
    await shows(carol, 'bob', 'green');
    await shows(carol, 'carol', 'blue');
    await h.waitFor(() => carol.$eval('#tiles .tile[data-open-id="alice"]', (t) => t.classList.contains('speaking')), { what: 'alice speaking' });
    assert.equal(await carol.$eval('#tiles .tile[data-open-id="bob"]', (t) => t.classList.contains('speaking')), false);
    const shot = join(h.ensureArtifacts(), 'demo-video.png');
    await carol.screenshot({ path: shot, fullPage: true });
    console.log(`screenshot: ${shot}`);

    // The picker lists the others, checked as received; carol keeps alice only.
    assert.deepEqual(await carol.$$eval('#video-picker input', (bs) => bs.map((b) => [b.value, b.checked])), [['alice', true], ['bob', true]]);
    await carol.uncheck('#video-picker input[value="bob"]');
    await carol.click('#subscribe-apply');
    await h.waitFor(async () => (await colourOf(carol, 'bob')) === null, { what: "bob's tile empty at carol" });
    await h.waitFor(async () => /not received/i.test(await note(carol, 'bob')), { what: "bob's note at carol" });
    assert.ok(near(await colourOf(carol, 'alice'), 'red'), 'alice stays');

    // alice turns her camera off: her tile at carol (and her own) empties and says so; back on, it returns.
    await demo.alice.click('#mute-cam');
    await h.waitFor(async () => (await demo.alice.textContent('#mute-cam')) === 'Turn camera on', { what: "alice's camera button" });
    await h.waitFor(async () => (await colourOf(carol, 'alice')) === null, { what: "alice's tile empty at carol" });
    await h.waitFor(async () => /camera off/i.test(await note(carol, 'alice')), { what: "alice's note at carol" });
    assert.equal(await colourOf(demo.alice, 'alice'), null);
    assert.match(await note(demo.alice, 'alice'), /camera is off/i);
    await demo.alice.click('#mute-cam');
    await shows(carol, 'alice', 'red');
    await shows(demo.alice, 'alice', 'red');
    for (const n of three) {
      await demo[n].click('#leave');
      await demo[n].context().close();
    }
  });
});
