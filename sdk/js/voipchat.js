// voipchat browser SDK: multi-party voice rooms with the calls of wx.joinVoIPChat.
//
//   import { createVoIPClient } from 'https://your-server/sdk/voipchat.js';
//   const voip = createVoIPClient({ server: 'https://your-server', appId, openId, sign });
//   voip.onVoIPChatMembersChanged(({ openIdList }) => render(openIdList));
//   await voip.joinVoIPChat({ groupId: 'room-1' });
//
// An ES module without dependencies or build step. Reference: docs/js-api.md; wire protocol:
// docs/protocol.md. Every call takes success/fail/complete callbacks and also returns a
// Promise; payloads are those of wx ({errCode, errMsg, openIdList}).

/** `code` values of onVoIPChatStateChanged (see docs/js-api.md). */
export const VoIPChatStateCode = Object.freeze({
  /** joinVoIPChat started: opening the microphone, signing, connecting. */
  CONNECTING: 1,
  /** joinVoIPChat succeeded: in the room. data: {openIdList} */
  CONNECTED: 2,
  /** The signaling connection dropped; rejoining. data: {attempt, reason} */
  RECONNECTING: 3,
  /** A rejoin succeeded: in the room again. data: {attempt, openIdList} */
  RECONNECTED: 4,
  /** Out of the room. data: {reason: 'exit' | 'interrupted' | 'rejoinFailed' | 'joinFailed', errCode} */
  DISCONNECTED: 5,
  /** Audio flows with the server (the peer connection is connected). */
  MEDIA_CONNECTED: 6,
  /** The peer connection is disconnected or failed (the server removes a member after its media timeout). */
  MEDIA_DISCONNECTED: 7,
});

const STATE_NAMES = {
  1: 'connecting',
  2: 'connected',
  3: 'reconnecting',
  4: 'reconnected',
  5: 'disconnected',
  6: 'mediaConnected',
  7: 'mediaDisconnected',
};

const EVENTS = [
  'VoIPChatMembersChanged',
  'VoIPChatSpeakersChanged',
  'VoIPChatInterrupted',
  'VoIPChatStateChanged',
];

/** Codes the SDK reports itself (the server's codes are in docs/errors.md). */
const E = Object.freeze({
  ALREADY_IN_ROOM: -1,
  MICROPHONE: -2,
  EXITED_WHILE_JOINING: -3,
  SYSTEM: -1000,
  INVALID_FIELD: -10007,
  NOT_IN_ROOM: -10009,
});

/** The server's interruption for a member whose media stopped arriving. */
const MEDIA_TIMEOUT = -11003;

/** Rejoin errCodes worth another attempt: the server was unreachable, failing or restarting. */
const RETRYABLE = new Set([E.SYSTEM, -11004]);

const DEFAULTS = {
  joinTimeoutMs: 15000,
  resultTimeoutMs: 5000,
  pingIntervalMs: 15000,
  reconnect: { attempts: 5, delaysMs: [0, 500, 1000, 2000, 4000] },
};

/** The error a rejected Promise of this SDK carries: an Error with errCode and errMsg. */
export class VoIPChatError extends Error {
  constructor(errCode, errMsg) {
    super(errMsg);
    this.name = 'VoIPChatError';
    this.errCode = errCode;
    this.errMsg = errMsg;
  }
}

function fail(api, errCode, reason) {
  return { errCode, errMsg: `${api}:fail ${reason}` };
}

function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Where signaling is: "https://host" → "wss://host/ws"; "ws://host/ws?x" is used as it is. */
export function signalingUrl(server) {
  if (!server) {
    if (typeof location === 'undefined') throw new TypeError('createVoIPClient: server is required');
    server = location.origin;
  }
  const url = new URL(server, typeof location !== 'undefined' ? location.href : undefined);
  if (url.protocol === 'ws:' || url.protocol === 'wss:') return url.toString();
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new TypeError(`createVoIPClient: server must be an http(s) or ws(s) URL, not ${server}`);
  }
  url.protocol = url.protocol === 'https:' ? 'wss:' : 'ws:';
  url.pathname = url.pathname.replace(/\/+$/, '') + '/ws';
  return url.toString();
}

/**
 * Runs `work` (which resolves with a success payload or rejects with a fail payload) the wx
 * way: success/fail/complete callbacks, and a Promise of the same payloads.
 */
function wxCall(opts, work) {
  opts = opts || {};
  const promise = (async () => {
    let result;
    try {
      result = await work();
    } catch (e) {
      const payload =
        e && typeof e.errCode === 'number'
          ? { errCode: e.errCode, errMsg: e.errMsg }
          : { errCode: E.SYSTEM, errMsg: `fail ${e && e.message ? e.message : e}` };
      callSafely(opts.fail, payload);
      callSafely(opts.complete, payload);
      throw new VoIPChatError(payload.errCode, payload.errMsg);
    }
    callSafely(opts.success, result);
    callSafely(opts.complete, result);
    return result;
  })();
  // Code that uses callbacks need not also catch the Promise.
  if (opts.fail || opts.complete) promise.catch(() => {});
  return promise;
}

function callSafely(fn, arg) {
  if (typeof fn !== 'function') return;
  try {
    fn(arg);
  } catch (e) {
    console.error('voipchat: a callback threw', e);
  }
}

/**
 * One connection to the server for one join: the WebSocket, the peer connection and the
 * received slots. A rejoin makes a new Session; the microphone stream outlives them.
 */
class Session {
  constructor(client, url) {
    this.client = client;
    this.url = url;
    this.ws = null;
    this.pc = null;
    /** mid → {mid, openId, transceiver, audio} */
    this.slots = new Map();
    this.closed = false;
    this.joined = false;
    this.sdpChain = Promise.resolve();
    this.waiters = { joinResult: [], exitResult: [], muteConfigResult: [] };
    this.lastMessageAt = Date.now();
    this.pingTimer = null;
    this.onDrop = null; // set by the client: called once if the socket drops unexpectedly
    this.pendingEvents = [];
    this.abortOpen = null;
    /** Whether media ever flowed on this session's peer connection. */
    this.mediaConnected = false;
  }

  /** Delivers the room events that arrived before the join completed. */
  flushPendingEvents() {
    const events = this.pendingEvents.splice(0);
    for (const msg of events) {
      if (this.closed || this.client.session !== this) return;
      this.client.roomEvent(msg);
    }
  }

  /** Opens the WebSocket; resolves when it is open. */
  open() {
    return new Promise((resolve, reject) => {
      let ws;
      try {
        ws = new WebSocket(this.url);
      } catch (e) {
        reject(e);
        return;
      }
      this.ws = ws;
      let opened = false;
      this.abortOpen = () => reject(new Error('closed while connecting'));
      ws.onopen = () => {
        opened = true;
        this.abortOpen = null;
        this.lastMessageAt = Date.now();
        this.pingTimer = setInterval(() => this.keepAlive(), this.client.options.pingIntervalMs);
        resolve();
      };
      ws.onerror = () => {
        if (!opened) reject(new Error(`cannot connect to ${this.url}`));
      };
      ws.onclose = (ev) => {
        if (!opened) reject(new Error(`cannot connect to ${this.url} (close ${ev.code})`));
        this.socketClosed(ev);
      };
      ws.onmessage = (ev) => this.receive(ev.data);
    });
  }

  keepAlive() {
    const interval = this.client.options.pingIntervalMs;
    if (Date.now() - this.lastMessageAt > 2 * interval + 5000) {
      // The server has not answered two pings: the connection is dead even if TCP has not noticed.
      this.ws.close();
      this.socketClosed({ code: 4000, reason: 'no answer to ping' });
      return;
    }
    this.send({ type: 'ping' });
  }

  send(msg) {
    if (this.ws && this.ws.readyState === WebSocket.OPEN) {
      this.ws.send(JSON.stringify(msg));
      return true;
    }
    return false;
  }

  /** Resolves with the next message of this type, or rejects after `ms`. */
  waitFor(type, ms) {
    return new Promise((resolve, reject) => {
      const waiter = { resolve, reject, timer: null };
      waiter.timer = setTimeout(() => {
        const list = this.waiters[type];
        const i = list.indexOf(waiter);
        if (i >= 0) list.splice(i, 1);
        reject(new Error(`no ${type} within ${ms} ms`));
      }, ms);
      this.waiters[type].push(waiter);
    });
  }

  createPeerConnection(micTrack, micStream) {
    const config = Object.assign(
      { iceServers: [], bundlePolicy: 'max-bundle', rtcpMuxPolicy: 'require' },
      this.client.options.rtcConfiguration || {},
    );
    const pc = new RTCPeerConnection(config);
    this.pc = pc;
    pc.addTransceiver(micTrack, { direction: 'sendonly', streams: [micStream] });
    pc.ontrack = (ev) => this.addSlot(ev.transceiver, ev.track);
    pc.onconnectionstatechange = () => {
      if (this.closed || this.client.session !== this) return;
      const s = pc.connectionState;
      if (s === 'connected') {
        this.mediaConnected = true;
        this.client.emitState(VoIPChatStateCode.MEDIA_CONNECTED, { connectionState: s });
      }
      if (s === 'disconnected' || s === 'failed') {
        this.client.emitState(VoIPChatStateCode.MEDIA_DISCONNECTED, { connectionState: s });
      }
    };
    return pc;
  }

  async offer() {
    const offer = await this.pc.createOffer();
    await this.pc.setLocalDescription(offer);
    return this.pc.localDescription.sdp;
  }

  /** Runs SDP work one step at a time, in the order the messages arrived. */
  chain(fn) {
    this.sdpChain = this.sdpChain.then(fn).catch((e) => {
      if (!this.closed) console.error('voipchat: negotiation failed', e);
    });
    return this.sdpChain;
  }

  receive(data) {
    this.lastMessageAt = Date.now();
    let msg;
    try {
      msg = JSON.parse(data);
    } catch {
      return;
    }
    const client = this.client;
    const waiters = this.waiters[msg.type];
    if (waiters) {
      const w = waiters.shift();
      if (w) {
        clearTimeout(w.timer);
        w.resolve(msg);
      }
      return;
    }
    switch (msg.type) {
      case 'offer':
        this.chain(async () => {
          if (this.closed) return;
          await this.pc.setRemoteDescription({ type: 'offer', sdp: msg.sdp });
          this.applyTracks(msg.tracks);
          const answer = await this.pc.createAnswer();
          await this.pc.setLocalDescription(answer);
          this.send({ type: 'answer', sdp: this.pc.localDescription.sdp });
        });
        break;
      case 'tracks':
        this.chain(() => this.applyTracks(msg.tracks));
        break;
      case 'membersChanged':
      case 'speakersChanged':
        // Events that arrive while the join completes are delivered right after it.
        if (!this.joined) this.pendingEvents.push(msg);
        else if (client.session === this) client.roomEvent(msg);
        break;
      case 'interrupted':
        if (client.session !== this) break;
        if (msg.errCode === MEDIA_TIMEOUT && this.mediaConnected && client.canRejoin()) {
          // Media stopped arriving although it flowed before: the network dropped under a
          // signaling connection that survived. Rejoin like after a dropped socket.
          client.rejoin(`media lost (${msg.errCode})`);
        } else {
          client.interrupted({ errCode: msg.errCode, errMsg: msg.errMsg }, 'interrupted');
        }
        break;
      case 'error':
        console.warn(`voipchat: server error ${msg.errCode}: ${msg.errMsg}`);
        break;
      default:
        break; // pong, and types of newer servers
    }
  }

  addSlot(transceiver, track) {
    const mid = transceiver.mid;
    let slot = this.slots.get(mid);
    if (!slot) {
      slot = { mid, openId: null, transceiver, audio: null };
      this.slots.set(mid, slot);
    }
    slot.transceiver = transceiver;
    if (!slot.audio) {
      const audio = document.createElement('audio');
      audio.autoplay = true;
      audio.dataset.voipchatMid = mid;
      audio.muted = this.client.muteConfig.muteEarphone;
      const container = this.client.options.audioContainer || document.body || document.documentElement;
      container.appendChild(audio);
      slot.audio = audio;
    }
    slot.audio.srcObject = new MediaStream([track]);
    this.updateSlotElement(slot);
    const played = slot.audio.play();
    if (played && played.catch) {
      played.catch((e) => {
        this.client.autoplayBlocked = true;
        console.warn('voipchat: playback was blocked until the user interacts with the page', e);
      });
    }
  }

  updateSlotElement(slot) {
    if (!slot.audio) return;
    if (slot.openId) slot.audio.dataset.openId = slot.openId;
    else delete slot.audio.dataset.openId;
  }

  applyTracks(tracks) {
    for (const t of tracks || []) {
      if (t.kind !== 'audio') continue;
      let slot = this.slots.get(t.mid);
      if (!slot) {
        slot = { mid: t.mid, openId: null, transceiver: null, audio: null };
        this.slots.set(t.mid, slot);
      }
      slot.openId = t.openId;
      this.updateSlotElement(slot);
    }
  }

  socketClosed(ev) {
    if (this.pingTimer) clearInterval(this.pingTimer);
    this.pingTimer = null;
    for (const list of Object.values(this.waiters)) {
      for (const w of list.splice(0)) {
        clearTimeout(w.timer);
        w.reject(new Error(`connection closed (${ev && ev.code})`));
      }
    }
    if (!this.closed && this.onDrop) {
      const onDrop = this.onDrop;
      this.onDrop = null;
      onDrop(ev);
    }
  }

  /** Ends everything of this session; the microphone stays open. */
  close() {
    if (this.closed) return;
    this.closed = true;
    this.onDrop = null;
    if (this.pingTimer) clearInterval(this.pingTimer);
    if (this.abortOpen) this.abortOpen();
    this.abortOpen = null;
    if (this.ws) {
      this.ws.onopen = null;
      this.ws.onclose = null;
      this.ws.onmessage = null;
      this.ws.onerror = null;
      try {
        this.ws.close();
      } catch {
        /* already closed */
      }
    }
    if (this.pc) {
      try {
        this.pc.close();
      } catch {
        /* already closed */
      }
    }
    for (const slot of this.slots.values()) {
      if (slot.audio) {
        slot.audio.srcObject = null;
        slot.audio.remove();
      }
    }
    this.slots.clear();
    for (const list of Object.values(this.waiters)) {
      for (const w of list.splice(0)) {
        clearTimeout(w.timer);
        w.reject(new Error('closed'));
      }
    }
  }
}

function payload(msg) {
  return { openIdList: msg.openIdList.slice(), errCode: msg.errCode, errMsg: msg.errMsg };
}

class VoIPClient {
  constructor(options) {
    if (!options || !options.appId || !options.openId) {
      throw new TypeError('createVoIPClient: appId and openId are required');
    }
    this.options = Object.assign({}, DEFAULTS, options);
    this.options.reconnect =
      options.reconnect === false ? false : Object.assign({}, DEFAULTS.reconnect, options.reconnect || {});
    this.url = signalingUrl(options.server);
    this.appId = options.appId;
    this.openId = options.openId;
    /** 'idle' | 'joining' | 'joined' | 'reconnecting' */
    this.state = 'idle';
    this.groupId = null;
    this.muteConfig = { muteMicrophone: false, muteEarphone: false };
    this.members = [];
    this.speakers = [];
    this.session = null;
    this.micStream = null;
    this.autoplayBlocked = false;
    this.listeners = {};
    for (const name of EVENTS) {
      this.listeners[name] = [];
      this[`on${name}`] = (fn) => {
        if (typeof fn !== 'function') throw new TypeError(`on${name} needs a function`);
        this.listeners[name].push(fn);
      };
      this[`off${name}`] = (fn) => {
        if (fn === undefined) this.listeners[name] = [];
        else this.listeners[name] = this.listeners[name].filter((f) => f !== fn);
      };
    }
    this.joinAttempt = null; // {aborted} while joinVoIPChat runs
    this.reconnectRun = null; // {cancelled} while rejoining
  }

  /** The current RTCPeerConnection (a new one after each rejoin), for getStats(). */
  get pc() {
    return this.session ? this.session.pc : null;
  }

  /** The current signaling WebSocket. */
  get ws() {
    return this.session ? this.session.ws : null;
  }

  /** The receive slots now: [{mid, openId, audio, receiver}]. */
  get slots() {
    if (!this.session) return [];
    return [...this.session.slots.values()].map((s) => ({
      mid: s.mid,
      openId: s.openId,
      audio: s.audio,
      receiver: s.transceiver ? s.transceiver.receiver : null,
    }));
  }

  /** The microphone's track being sent. */
  get micTrack() {
    return this.micStream ? this.micStream.getAudioTracks()[0] || null : null;
  }

  roomEvent(msg) {
    if (msg.type === 'membersChanged') {
      this.members = msg.openIdList.slice();
      this.emit('VoIPChatMembersChanged', payload(msg));
    } else {
      this.speakers = msg.openIdList.slice();
      this.emit('VoIPChatSpeakersChanged', payload(msg));
    }
  }

  emit(name, data) {
    for (const fn of this.listeners[name].slice()) callSafely(fn, data);
  }

  emitState(code, data) {
    this.emit('VoIPChatStateChanged', {
      code,
      data: Object.assign({ state: STATE_NAMES[code] }, data || {}),
      errCode: 0,
      errMsg: 'onVoIPChatStateChanged:ok',
    });
  }

  /** wx.joinVoIPChat */
  joinVoIPChat(opts) {
    opts = opts || {};
    return wxCall(opts, () => this.join(opts));
  }

  async join(opts) {
    const api = 'joinVoIPChat';
    if (this.state !== 'idle') throw fail(api, E.ALREADY_IN_ROOM, 'already in a room');
    if (typeof opts.groupId !== 'string' || !opts.groupId) {
      throw fail(api, E.INVALID_FIELD, 'groupId must be a non-empty string');
    }
    const haveSignature = opts.signature !== undefined || opts.nonceStr !== undefined || opts.timeStamp !== undefined;
    if (!haveSignature && typeof this.options.sign !== 'function') {
      throw fail(api, E.INVALID_FIELD, 'signature, nonceStr and timeStamp are required (or give createVoIPClient a sign callback)');
    }
    const attempt = { aborted: false };
    this.joinAttempt = attempt;
    this.state = 'joining';
    this.groupId = opts.groupId;
    this.roomType = opts.roomType || 'voice';
    const mc = opts.muteConfig || {};
    this.muteConfig = { muteMicrophone: !!mc.muteMicrophone, muteEarphone: !!mc.muteEarphone };
    this.emitState(VoIPChatStateCode.CONNECTING, { groupId: opts.groupId });
    try {
      try {
        this.micStream = await navigator.mediaDevices.getUserMedia({
          audio: this.options.audio === undefined ? true : this.options.audio,
          video: false,
        });
      } catch (e) {
        throw fail(api, E.MICROPHONE, `microphone is busy or not allowed (${e && e.name ? e.name : e})`);
      }
      this.checkAborted(attempt);
      this.micTrack.enabled = !this.muteConfig.muteMicrophone;
      const signed = haveSignature
        ? { signature: opts.signature, nonceStr: opts.nonceStr, timeStamp: opts.timeStamp }
        : await this.freshSignature(api);
      this.checkAborted(attempt);
      const result = await this.connect(signed, attempt);
      this.state = 'joined';
      this.members = result.openIdList.slice();
      this.emitState(VoIPChatStateCode.CONNECTED, { openIdList: result.openIdList.slice() });
      const session = this.session;
      setTimeout(() => session.flushPendingEvents(), 0);
      return { openIdList: result.openIdList.slice(), errCode: 0, errMsg: result.errMsg };
    } catch (e) {
      if (this.joinAttempt === attempt) {
        const aborted = attempt.aborted;
        this.teardown();
        if (!aborted) {
          this.emitState(VoIPChatStateCode.DISCONNECTED, { reason: 'joinFailed', errCode: e.errCode });
        }
      }
      if (attempt.aborted) throw fail(api, E.EXITED_WHILE_JOINING, 'exited while joining');
      if (e && typeof e.errCode === 'number') throw e;
      throw fail(api, E.SYSTEM, `system error (${e && e.message ? e.message : e})`);
    } finally {
      if (this.joinAttempt === attempt) this.joinAttempt = null;
    }
  }

  checkAborted(attempt) {
    if (attempt.aborted) throw fail('joinVoIPChat', E.EXITED_WHILE_JOINING, 'exited while joining');
  }

  async freshSignature(api) {
    let s;
    try {
      s = await this.options.sign({ groupId: this.groupId, appId: this.appId, openId: this.openId });
    } catch (e) {
      throw fail(api, E.SYSTEM, `system error (sign callback failed: ${e && e.message ? e.message : e})`);
    }
    if (!s || typeof s.signature !== 'string' || typeof s.nonceStr !== 'string' || typeof s.timeStamp !== 'number') {
      throw fail(api, E.SYSTEM, 'system error (sign callback must return {nonceStr, timeStamp, signature})');
    }
    return s;
  }

  /**
   * Opens a session, sends join and waits for joinResult. Resolves with the successful
   * joinResult; rejects with {errCode, errMsg} or an Error (connection trouble).
   */
  async connect(signed, attempt) {
    const session = new Session(this, this.url);
    this.session = session;
    session.onDrop = (ev) => this.dropped(session, ev);
    await session.open();
    if (attempt) this.checkAborted(attempt);
    session.createPeerConnection(this.micTrack, this.micStream);
    const sdp = await session.offer();
    if (attempt) this.checkAborted(attempt);
    const joinResult = session.waitFor('joinResult', this.options.joinTimeoutMs);
    session.send({
      type: 'join',
      appId: this.appId,
      openId: this.openId,
      groupId: this.groupId,
      nonceStr: signed.nonceStr,
      timeStamp: signed.timeStamp,
      signature: signed.signature,
      roomType: this.roomType,
      muteConfig: Object.assign({}, this.muteConfig),
      sdp,
    });
    const result = await joinResult;
    if (result.errCode !== 0) {
      throw { errCode: result.errCode, errMsg: result.errMsg };
    }
    if (attempt) this.checkAborted(attempt);
    await session.chain(() => session.pc.setRemoteDescription({ type: 'answer', sdp: result.sdp }));
    if (session.pc.signalingState !== 'stable') throw new Error('the server answer could not be applied');
    session.joined = true;
    return result;
  }

  /** The socket of `session` closed without exit or interruption: rejoin. */
  dropped(session, ev) {
    if (this.session !== session) return;
    if (this.state === 'joining') return; // connect() fails and joinVoIPChat reports it
    if (this.state !== 'joined') return;
    const reason = `connection closed (${ev && ev.code})`;
    if (!this.canRejoin()) {
      this.interrupted(fail('onVoIPChatInterrupted', E.SYSTEM, `${reason}; no sign callback to rejoin with`), 'rejoinFailed');
      return;
    }
    this.rejoin(reason);
  }

  canRejoin() {
    return !!this.options.reconnect && typeof this.options.sign === 'function';
  }

  async rejoin(reason) {
    const run = { cancelled: false };
    this.reconnectRun = run;
    this.state = 'reconnecting';
    if (this.session) this.session.close();
    this.session = null;
    if (this.speakers.length) {
      this.speakers = [];
      this.emit('VoIPChatSpeakersChanged', { openIdList: [], errCode: 0, errMsg: 'onVoIPChatSpeakersChanged:ok' });
    }
    const { attempts, delaysMs } = this.options.reconnect;
    let last = fail('onVoIPChatInterrupted', E.SYSTEM, `${reason}; rejoin failed`);
    for (let i = 1; i <= attempts; i++) {
      this.emitState(VoIPChatStateCode.RECONNECTING, { attempt: i, reason });
      await sleep(delaysMs[Math.min(i - 1, delaysMs.length - 1)] || 0);
      if (run.cancelled) return;
      try {
        const signed = await this.freshSignature('onVoIPChatInterrupted');
        if (run.cancelled) return;
        const result = await this.connect(signed, null);
        if (run.cancelled) {
          if (this.session) this.session.close();
          return;
        }
        this.reconnectRun = null;
        this.state = 'joined';
        this.members = result.openIdList.slice();
        this.emitState(VoIPChatStateCode.RECONNECTED, { attempt: i, openIdList: result.openIdList.slice() });
        this.emit('VoIPChatMembersChanged', {
          openIdList: result.openIdList.slice(),
          errCode: 0,
          errMsg: 'onVoIPChatMembersChanged:ok',
        });
        this.session.flushPendingEvents();
        return;
      } catch (e) {
        if (this.session) this.session.close();
        this.session = null;
        if (run.cancelled) return;
        if (e && typeof e.errCode === 'number') {
          last = { errCode: e.errCode, errMsg: `onVoIPChatInterrupted:fail rejoin failed: ${e.errMsg}` };
          if (!RETRYABLE.has(e.errCode)) break;
        } else {
          last = fail('onVoIPChatInterrupted', E.SYSTEM, `${reason}; rejoin failed: ${e && e.message ? e.message : e}`);
        }
      }
    }
    if (run.cancelled) return;
    this.reconnectRun = null;
    this.interrupted(last, 'rejoinFailed');
  }

  /** The membership ended without exit: tell the app. */
  interrupted(info, reason) {
    this.teardown();
    this.emitState(VoIPChatStateCode.DISCONNECTED, { reason, errCode: info.errCode });
    this.emit('VoIPChatInterrupted', { errCode: info.errCode, errMsg: info.errMsg });
  }

  /** Back to idle: closes the session, the microphone and any rejoin in progress. */
  teardown() {
    if (this.reconnectRun) this.reconnectRun.cancelled = true;
    this.reconnectRun = null;
    if (this.session) this.session.close();
    this.session = null;
    if (this.micStream) for (const t of this.micStream.getTracks()) t.stop();
    this.micStream = null;
    this.state = 'idle';
    this.members = [];
    this.speakers = [];
  }

  /** wx.exitVoIPChat */
  exitVoIPChat(opts) {
    return wxCall(opts, () => this.exit());
  }

  async exit() {
    const api = 'exitVoIPChat';
    const ok = { errCode: 0, errMsg: `${api}:ok` };
    if (this.state === 'idle') throw fail(api, E.NOT_IN_ROOM, 'not in a room');
    if (this.state === 'reconnecting') {
      this.teardown();
      this.emitState(VoIPChatStateCode.DISCONNECTED, { reason: 'exit', errCode: 0 });
      return ok;
    }
    const session = this.session;
    if (this.state === 'joining') {
      const attempt = this.joinAttempt;
      if (attempt) attempt.aborted = true;
      // A join already sent is abandoned on the server (joinResult -3) and the exit confirmed.
      if (session && session.ws && session.ws.readyState === WebSocket.OPEN) {
        const result = session.waitFor('exitResult', this.options.resultTimeoutMs).catch(() => null);
        session.send({ type: 'exit' });
        await result;
      }
      this.teardown();
      this.emitState(VoIPChatStateCode.DISCONNECTED, { reason: 'exit', errCode: 0 });
      return ok;
    }
    session.onDrop = null;
    const result = session.waitFor('exitResult', this.options.resultTimeoutMs).catch(() => null);
    // Closing the socket leaves the room too, so a socket that is already gone is no failure.
    const reply = session.send({ type: 'exit' }) ? await result : null;
    this.teardown();
    this.emitState(VoIPChatStateCode.DISCONNECTED, { reason: 'exit', errCode: 0 });
    if (reply && reply.errCode !== 0) return { errCode: reply.errCode, errMsg: reply.errMsg };
    return ok;
  }

  /** wx.updateVoIPChatMuteConfig */
  updateVoIPChatMuteConfig(opts) {
    opts = opts || {};
    return wxCall(opts, () => this.updateMute(opts.muteConfig));
  }

  async updateMute(muteConfig) {
    const api = 'updateVoIPChatMuteConfig';
    if (!muteConfig || typeof muteConfig !== 'object') throw fail(api, E.INVALID_FIELD, 'muteConfig is required');
    for (const k of Object.keys(muteConfig)) {
      if (k !== 'muteMicrophone' && k !== 'muteEarphone') throw fail(api, E.INVALID_FIELD, `unknown muteConfig key ${k}`);
    }
    if (this.state === 'idle' || this.state === 'joining') throw fail(api, E.NOT_IN_ROOM, 'not in a room');
    // As on the wire, the whole configuration is replaced: an omitted flag is false.
    this.muteConfig = { muteMicrophone: !!muteConfig.muteMicrophone, muteEarphone: !!muteConfig.muteEarphone };
    this.applyLocalMute();
    if (this.state === 'reconnecting') {
      // Sent with the rejoin's join.
      return { errCode: 0, errMsg: `${api}:ok` };
    }
    const session = this.session;
    const result = session.waitFor('muteConfigResult', this.options.resultTimeoutMs);
    session.send({ type: 'updateMuteConfig', muteConfig: Object.assign({}, this.muteConfig) });
    let reply;
    try {
      reply = await result;
    } catch (e) {
      throw fail(api, E.SYSTEM, `system error (${e.message})`);
    }
    if (reply.errCode !== 0) throw { errCode: reply.errCode, errMsg: reply.errMsg };
    return { errCode: 0, errMsg: reply.errMsg };
  }

  applyLocalMute() {
    const track = this.micTrack;
    if (track) track.enabled = !this.muteConfig.muteMicrophone;
    if (this.session) {
      for (const slot of this.session.slots.values()) {
        if (slot.audio) slot.audio.muted = this.muteConfig.muteEarphone;
      }
    }
  }

  /**
   * What is being received from each member: {openId: {mid, packetsReceived, bytesReceived,
   * audioLevel, totalAudioEnergy, totalSamplesDuration}} from the receivers' inbound-rtp stats.
   */
  async getStatsByOpenId() {
    const out = {};
    if (!this.session) return out;
    for (const slot of this.session.slots.values()) {
      if (!slot.openId || !slot.transceiver) continue;
      const report = await slot.transceiver.receiver.getStats();
      for (const s of report.values()) {
        if (s.type !== 'inbound-rtp') continue;
        out[slot.openId] = {
          mid: slot.mid,
          packetsReceived: s.packetsReceived || 0,
          bytesReceived: s.bytesReceived || 0,
          audioLevel: s.audioLevel || 0,
          totalAudioEnergy: s.totalAudioEnergy || 0,
          totalSamplesDuration: s.totalSamplesDuration || 0,
        };
      }
    }
    return out;
  }
}

/**
 * Creates a client for one user. `sign({groupId})` is asked for a fresh signature whenever
 * one is needed (joinVoIPChat without signature fields, and every rejoin).
 */
export function createVoIPClient(options) {
  return new VoIPClient(options);
}

export default createVoIPClient;
