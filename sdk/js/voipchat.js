// voipchat browser SDK: multi-party voice and video rooms with the calls of wx.joinVoIPChat,
// and the <voip-room> element that shows a member's video (or this user's camera).
//
//   import { createVoIPClient } from 'https://your-server/sdk/voipchat.js';
//   const voip = createVoIPClient({ server: 'https://your-server', appId, openId, sign });
//   voip.onVoIPChatMembersChanged(({ openIdList }) => render(openIdList));
//   await voip.joinVoIPChat({ groupId: 'room-1' });
//
// An ES module without dependencies or build step. Reference: docs/js-api.md; wire protocol:
// docs/protocol.md. Every call takes success/fail/complete callbacks and also returns a
// Promise; payloads are those of wx ({errCode, errMsg, openIdList}), plus mutedOpenIdList
// (who has muted their microphone) where this server reports it.
//
// Video rooms: joinVoIPChat({groupId, roomType: 'video'}) also sends the camera; place
// <voip-room mode="video" openid="…"> elements where the members' videos should show and
// <voip-room mode="camera"> for this user's own preview (importing this module defines them).

/** `code` values of onVoIPChatStateChanged (see docs/js-api.md). */
import { installVoipRoom } from './voip-room.js';

export { VoIPRoomElement } from './voip-room.js';

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
  'VoIPChatMuteChanged',
  'VoIPChatServerMuteChanged',
  'VoIPVideoMembersChanged',
];

/** Codes the SDK reports itself (the server's codes are in docs/errors.md). */
const E = Object.freeze({
  ALREADY_IN_ROOM: -1,
  MICROPHONE: -2,
  EXITED_WHILE_JOINING: -3,
  SYSTEM: -1000,
  INVALID_FIELD: -10007,
  NOT_IN_ROOM: -10009,
  VIDEO_NOT_SHOWN: -10013,
  SERVER_MUTED: -10014,
  ROOM_ELSEWHERE: -10015,
  UNEXPECTED: -12003,
});

/** How long a <voip-room> waits for the room to settle before it reports a video it cannot show. */
const VIDEO_SETTLE_MS = 1000;
/** A video slot that changes occupant shows nothing until the new occupant's key frame is
 * decoded (else it would show the last frame of the one before); at most this long. */
const KEYFRAME_WAIT_MS = 3000;
/** How often the video receivers' stats are read while the session has video slots. */
const VIDEO_POLL_MS = 200;
/** Most members one subscribeVoIPVideoMembers may name (everyone else in a full room). */
const MAX_SUBSCRIBED = 9;

/** errMsg of -2 when the page may not use the microphone at all (not a secure context). */
const INSECURE_CONTEXT_REASON =
  'microphone needs a secure context: open the page over https, or over http on localhost / 127.0.0.1';

/**
 * The camera's simulcast layers: the same picture at full, half and quarter size, so the
 * server can give each receiver the one its bandwidth carries. The browser picks each layer's
 * bitrate for its size, and sends as many layers as the capture size allows (Chromium: two
 * at 640x360, three from 960x540), pausing the rest.
 */
export const SIMULCAST_LAYERS = Object.freeze([
  Object.freeze({ rid: 'q', scaleResolutionDownBy: 4 }),
  Object.freeze({ rid: 'h', scaleResolutionDownBy: 2 }),
  Object.freeze({ rid: 'f', scaleResolutionDownBy: 1 }),
]);

/**
 * The `sendEncodings` of the camera for the `simulcast` option: `true`/undefined the
 * default layers, `false` one layer (null: the browser's own single encoding), or the
 * caller's own list (each with a `rid`; at most 3, the server refuses more).
 */
function simulcastLayers(option) {
  if (option === false) return null;
  if (option === undefined || option === true) return SIMULCAST_LAYERS.map((l) => Object.assign({}, l));
  if (!Array.isArray(option) || option.length === 0 || option.length > 3 || option.some((l) => !l || typeof l.rid !== 'string')) {
    throw new TypeError('createVoIPClient: simulcast must be true, false or 1 to 3 encodings, each with a rid');
  }
  return option.map((l) => Object.assign({}, l));
}

/**
 * The camera offers only `codec` ('VP8' or 'H264': constrained baseline, packetization-mode
 * 1, the H.264 the server takes), with its retransmission codec; undefined leaves the
 * browser's list, of which the server picks VP8.
 */
function preferCodec(transceiver, codec) {
  if (codec === undefined) return;
  const caps = typeof RTCRtpSender.getCapabilities === 'function' ? RTCRtpSender.getCapabilities('video') : null;
  if (!caps || typeof transceiver.setCodecPreferences !== 'function') {
    throw fail('joinVoIPChat', E.INVALID_FIELD, `this browser cannot choose its video codec (videoCodec ${codec})`);
  }
  const wanted = caps.codecs.filter((c) => {
    const fmtp = c.sdpFmtpLine || '';
    if (codec === 'VP8') return c.mimeType === 'video/VP8';
    return c.mimeType === 'video/H264' && /packetization-mode=1/.test(fmtp) && /profile-level-id=42e01f/i.test(fmtp);
  });
  if (wanted.length === 0) {
    throw fail('joinVoIPChat', E.INVALID_FIELD, `this browser cannot send ${codec} video`);
  }
  transceiver.setCodecPreferences([...wanted, ...caps.codecs.filter((c) => c.mimeType === 'video/rtx')]);
}

/**
 * How many simulcast layers Chromium sends for a capture of `width`x`height`: three from
 * 960x540, two from 480x270, else one. It sends the first that many encodings and pauses
 * the rest, so `fitLayers` puts the full size among them.
 */
function layersFor(width, height) {
  const pixels = width * height;
  if (pixels >= 960 * 540) return 3;
  if (pixels >= 480 * 270) return 2;
  return 1;
}

/**
 * Fits the default layers to the camera's capture size: as many as the browser sends at that
 * size, the last of them full size and each one below it half the size of the next; the
 * others paused. Without it a 640x360 camera would send a quarter and a half size only.
 */
async function fitLayers(sender, track) {
  const settings = track && track.getSettings ? track.getSettings() : {};
  if (!settings.width || !settings.height) return;
  try {
    const params = sender.getParameters();
    const encodings = params.encodings || [];
    if (encodings.length < 2) return;
    const n = Math.min(layersFor(settings.width, settings.height), encodings.length);
    encodings.forEach((e, i) => {
      e.active = i < n;
      if (i < n) e.scaleResolutionDownBy = 2 ** (n - 1 - i);
    });
    await sender.setParameters(params);
  } catch (e) {
    console.warn('voipchat: could not fit the simulcast layers to the camera', e);
  }
}

/**
 * Why this page cannot open a microphone at all, or null: browsers give getUserMedia only to
 * secure contexts (https, or http on localhost / 127.0.0.1), and navigator.mediaDevices is
 * undefined elsewhere.
 */
export function microphoneUnavailableReason() {
  if (typeof window !== 'undefined' && window.isSecureContext === false) return INSECURE_CONTEXT_REASON;
  if (typeof navigator === 'undefined' || !navigator.mediaDevices || typeof navigator.mediaDevices.getUserMedia !== 'function') {
    return INSECURE_CONTEXT_REASON;
  }
  return null;
}

/** The client created last: the one a <voip-room> without a `client` property shows. */
let lastClient = null;
/** The <voip-room> elements in a document now. */
const roomElements = new Set();

/** The server's interruption for a member whose media stopped arriving. */
/** Most redirects (-10015: the room is on another node) one join follows. */
const MAX_REDIRECTS = 3;

const MEDIA_TIMEOUT = -11003;
/** The server disconnected a member whose WebSocket stopped reading (-11006) or stopped
 * answering pings (-11007): like a lost medium, worth a rejoin once media had flowed. */
const NETWORK_LOST = new Set([MEDIA_TIMEOUT, -11006, -11007]);

/** The server is stopping: with other nodes listed in `server`, the SDK rejoins there. */
const SERVER_SHUTDOWN = -11004;
/** Another node holds the room now: a rejoin is redirected there. */
const ROOM_MOVED = -11008;

/** Rejoin errCodes worth another attempt: the server was unreachable, failing or restarting. */
const RETRYABLE = new Set([E.SYSTEM, SERVER_SHUTDOWN]);

const DEFAULTS = {
  joinTimeoutMs: 15000,
  helloTimeoutMs: 2000,
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
 * received slots. A rejoin makes a new Session; the microphone and camera streams outlive
 * them.
 */
class Session {
  constructor(client, url) {
    this.client = client;
    this.url = url;
    this.ws = null;
    this.pc = null;
    /**
     * mid → {mid, kind, openId, transceiver, track, audio}; video slots also keep
     * {ready, keyFrames, framesDecoded, keyBase, waitSince} (see occupy).
     */
    this.slots = new Map();
    this.closed = false;
    this.joined = false;
    this.sdpChain = Promise.resolve();
    this.waiters = { joinResult: [], exitResult: [], muteConfigResult: [], subscribeVideoMembersResult: [] };
    /** The camera's sendonly transceiver (video rooms). */
    this.cameraTransceiver = null;
    this.videoPollTimer = null;
    this.lastMessageAt = Date.now();
    this.pingTimer = null;
    this.onDrop = null; // set by the client: called once if the socket drops unexpectedly
    this.pendingEvents = [];
    this.abortOpen = null;
    /** Whether media ever flowed on this session's peer connection. */
    this.mediaConnected = false;
    /** The ICE servers of the server's hello (null until it came, and if it never does). */
    this.serverIceServers = null;
    /** The configuration the peer connection was created with. */
    this.iceServers = [];
    this.helloArrived = new Promise((resolve) => (this.resolveHello = resolve));
  }

  /**
   * The server's ICE servers: its hello, the first message of every connection. Servers
   * older than the hello never send it, so after `ms` the session goes on without (as
   * those servers' clients always did) rather than fail the join.
   */
  async helloIceServers(ms) {
    let timer;
    const late = new Promise((resolve) => (timer = setTimeout(() => resolve(null), ms)));
    const servers = await Promise.race([this.helloArrived, late]);
    clearTimeout(timer);
    if (servers === null) {
      console.warn(`voipchat: no hello from the server within ${ms} ms; joining without its ICE (TURN) servers`);
      return [];
    }
    return servers;
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

  /**
   * The peer connection with its send m-lines: the microphone, and in a video room one video
   * m-line for the camera (`cameraTrack`, or none yet while the camera is muted).
   */
  createPeerConnection(micTrack, micStream, video, cameraTrack, cameraStream, serverIceServers) {
    // The app's own ICE servers first, then the server's TURN servers with their credentials;
    // an rtcConfiguration.iceServers of the app replaces both.
    const iceServers = [...(this.client.options.iceServers || []), ...(serverIceServers || [])];
    const config = Object.assign(
      { iceServers, bundlePolicy: 'max-bundle', rtcpMuxPolicy: 'require' },
      this.client.options.rtcConfiguration || {},
    );
    this.iceServers = config.iceServers;
    const pc = new RTCPeerConnection(config);
    this.pc = pc;
    pc.addTransceiver(micTrack, { direction: 'sendonly', streams: [micStream] });
    if (video) {
      const init = { direction: 'sendonly', streams: cameraStream ? [cameraStream] : [] };
      const option = this.client.options.simulcast;
      const layers = simulcastLayers(option);
      if (layers) init.sendEncodings = layers;
      this.cameraTransceiver = pc.addTransceiver(cameraTrack || 'video', init);
      preferCodec(this.cameraTransceiver, this.client.options.videoCodec);
      // The default layers follow the camera's size; the caller's own are sent as given.
      this.fitsLayers = option === undefined || option === true;
      if (this.fitsLayers && cameraTrack) this.layersFitted = fitLayers(this.cameraTransceiver.sender, cameraTrack);
    }
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
    if (this.layersFitted) await this.layersFitted;
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
      } else if (msg.errCode) {
        // A result nobody waits for (the subscription the SDK renews after a rejoin).
        console.warn(`voipchat: ${msg.type} ${msg.errCode}: ${msg.errMsg}`);
      }
      return;
    }
    switch (msg.type) {
      case 'hello':
        if (this.serverIceServers === null) {
          this.serverIceServers = Array.isArray(msg.iceServers) ? msg.iceServers : [];
          this.resolveHello(this.serverIceServers);
        }
        break;
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
      case 'muteChanged':
      case 'serverMuteChanged':
      case 'videoMembersChanged':
        // Events that arrive while the join completes are delivered right after it.
        if (!this.joined) this.pendingEvents.push(msg);
        else if (client.session === this) client.roomEvent(msg);
        break;
      case 'interrupted':
        if (client.session !== this) break;
        if (NETWORK_LOST.has(msg.errCode) && this.mediaConnected && client.canRejoin()) {
          // Media stopped arriving although it flowed before: the network dropped under a
          // signaling connection that survived. Rejoin like after a dropped socket.
          client.rejoin(`media lost (${msg.errCode})`);
        } else if (msg.errCode === SERVER_SHUTDOWN && client.urls.length > 1 && client.canRejoin()) {
          // One node of several is stopping (a rolling restart): the room goes on elsewhere.
          client.rejoin(`node stopping (${msg.errCode})`);
        } else if (msg.errCode === ROOM_MOVED && client.canRejoin()) {
          client.rejoin(`room moved (${msg.errCode})`);
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

  newSlot(mid, kind) {
    const slot = { mid, kind, openId: null, transceiver: null, track: null, audio: null };
    if (kind === 'video') {
      Object.assign(slot, { ready: false, keyFrames: 0, framesDecoded: 0, keyBase: 0, waitSince: 0 });
    }
    this.slots.set(mid, slot);
    return slot;
  }

  addSlot(transceiver, track) {
    const mid = transceiver.mid;
    let slot = this.slots.get(mid);
    if (!slot) slot = this.newSlot(mid, track.kind);
    slot.transceiver = transceiver;
    slot.track = track;
    if (slot.kind === 'video') {
      // Shown by <voip-room> elements; no element of the SDK's own.
      this.startVideoPoll();
      this.client.videoChanged();
      return;
    }
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
    let video = false;
    for (const t of tracks || []) {
      if (t.kind !== 'audio' && t.kind !== 'video') continue;
      const slot = this.slots.get(t.mid) || this.newSlot(t.mid, t.kind);
      if (slot.kind === 'video') {
        if (slot.openId !== t.openId) {
          video = true;
          this.occupy(slot, t.openId);
        }
        continue;
      }
      slot.openId = t.openId;
      this.updateSlotElement(slot);
    }
    if (video) this.client.videoChanged();
  }

  /**
   * A video slot's occupant changes. The slot's track keeps showing the last frame it
   * decoded until the new occupant's first key frame is decoded (the server starts each
   * occupant on a key frame), so a slot that has decoded frames before waits for one more
   * key frame than it had decoded (at most KEYFRAME_WAIT_MS) before it counts as showing
   * the new occupant.
   */
  occupy(slot, openId) {
    slot.openId = openId;
    if (openId === null) {
      slot.ready = false;
    } else if (slot.framesDecoded > 0) {
      slot.ready = false;
      slot.keyBase = slot.keyFrames;
      slot.waitSince = Date.now();
    } else {
      slot.ready = true;
    }
  }

  /** The received video slots' stats, read every VIDEO_POLL_MS: key frames for `occupy`. */
  startVideoPoll() {
    if (this.videoPollTimer || this.closed) return;
    let busy = false;
    this.videoPollTimer = setInterval(async () => {
      if (busy || this.closed) return;
      busy = true;
      try {
        let changed = false;
        for (const slot of this.slots.values()) {
          if (slot.kind !== 'video' || !slot.transceiver) continue;
          const s = await inboundRtp(slot.transceiver.receiver);
          if (this.closed) return;
          if (s) {
            slot.keyFrames = s.keyFramesDecoded || 0;
            slot.framesDecoded = s.framesDecoded || 0;
          }
          if (slot.openId !== null && !slot.ready) {
            if (slot.keyFrames > slot.keyBase || Date.now() - slot.waitSince > KEYFRAME_WAIT_MS) {
              slot.ready = true;
              changed = true;
            }
          }
        }
        if (changed) this.client.videoChanged();
      } catch {
        /* the peer connection closed meanwhile */
      } finally {
        busy = false;
      }
    }, VIDEO_POLL_MS);
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

  /** Ends everything of this session; the microphone and the camera stay open. */
  close() {
    if (this.closed) return;
    this.closed = true;
    this.onDrop = null;
    if (this.pingTimer) clearInterval(this.pingTimer);
    if (this.videoPollTimer) clearInterval(this.videoPollTimer);
    this.videoPollTimer = null;
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
    const hadVideo = [...this.slots.values()].some((s) => s.kind === 'video');
    this.slots.clear();
    for (const list of Object.values(this.waiters)) {
      for (const w of list.splice(0)) {
        clearTimeout(w.timer);
        w.reject(new Error('closed'));
      }
    }
    if (hadVideo) this.client.videoChanged();
  }
}

/** The inbound-rtp entry of a receiver's stats, or null. */
async function inboundRtp(receiver) {
  const report = await receiver.getStats();
  for (const s of report.values()) if (s.type === 'inbound-rtp') return s;
  return null;
}

function payload(msg) {
  return { openIdList: msg.openIdList.slice(), errCode: msg.errCode, errMsg: msg.errMsg };
}

/** The muted members a joinResult / membersChanged / muteChanged names ([] if none given). */
function mutedList(msg) {
  return Array.isArray(msg.mutedOpenIdList) ? msg.mutedOpenIdList.slice() : [];
}

class VoIPClient {
  constructor(options) {
    if (!options || !options.appId || !options.openId) {
      throw new TypeError('createVoIPClient: appId and openId are required');
    }
    simulcastLayers(options.simulcast); // a bad value throws here, not at the first video join
    if (options.iceServers !== undefined && !Array.isArray(options.iceServers)) {
      throw new TypeError('createVoIPClient: iceServers must be an array of RTCIceServer');
    }
    if (options.videoCodec !== undefined && options.videoCodec !== 'VP8' && options.videoCodec !== 'H264') {
      throw new TypeError(`createVoIPClient: videoCodec must be 'VP8' or 'H264', not ${options.videoCodec}`);
    }
    this.options = Object.assign({}, DEFAULTS, options);
    this.options.reconnect =
      options.reconnect === false ? false : Object.assign({}, DEFAULTS.reconnect, options.reconnect || {});
    // Several nodes of one cluster may be given: a join that cannot reach one tries the
    // next (a node that died), and a redirect names the room's node (-10015).
    const servers = Array.isArray(options.server) ? options.server : [options.server];
    if (servers.length === 0) throw new TypeError('createVoIPClient: server must not be an empty array');
    this.urls = servers.map((s) => signalingUrl(s));
    this.url = this.urls[0];
    this.appId = options.appId;
    this.openId = options.openId;
    /** 'idle' | 'joining' | 'joined' | 'reconnecting' */
    this.state = 'idle';
    this.groupId = null;
    /** 'voice' | 'video', of the room joined last. */
    this.roomType = 'voice';
    this.muteConfig = { muteMicrophone: false, muteEarphone: false, muteCamera: false };
    /** The game backend muted this user's microphone: it cannot unmute itself (-10014). */
    this.serverMuted = false;
    this.members = [];
    this.speakers = [];
    this.mutedMembers = [];
    /** Video rooms: the members whose camera is on, as last reported. */
    this.videoMembers = [];
    /** Video rooms: the openIdList of the last successful subscribeVoIPVideoMembers, or null. */
    this.videoSubscription = null;
    this.session = null;
    this.micStream = null;
    /** Video rooms: the camera being sent (null while muteCamera is set, and outside video rooms). */
    this.cameraStream = null;
    /** 'front' | 'back': the camera a <voip-room mode="camera" device-position> asked for. */
    this.cameraPosition = 'front';
    /** Whether cameraStream was opened for cameraPosition (a switch reopens it). */
    this.cameraOpenedFor = null;
    /** <voip-room> elements (and others) told when videos, members or the camera change. */
    this.videoWatchers = new Set();
    this.videoNotifyQueued = false;
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
    lastClient = this;
    for (const el of roomElements) el.clientChanged();
  }

  /** The current RTCPeerConnection (a new one after each rejoin), for getStats(). */
  get pc() {
    return this.session ? this.session.pc : null;
  }

  /**
   * The ICE servers the current peer connection was created with: the app's `iceServers`,
   * then those of the server's hello (its TURN servers with their credentials).
   */
  get iceServers() {
    return this.session ? this.session.iceServers.slice() : [];
  }

  /** The current signaling WebSocket. */
  get ws() {
    return this.session ? this.session.ws : null;
  }

  /** The receive slots now: [{mid, kind, openId, audio, receiver, track}]. */
  get slots() {
    if (!this.session) return [];
    return [...this.session.slots.values()].map((s) => ({
      mid: s.mid,
      kind: s.kind,
      openId: s.openId,
      audio: s.audio,
      receiver: s.transceiver ? s.transceiver.receiver : null,
      track: s.track,
    }));
  }

  /** The microphone's track being sent. */
  get micTrack() {
    return this.micStream ? this.micStream.getAudioTracks()[0] || null : null;
  }

  /** The camera's track being sent (video rooms; null while the camera is muted). */
  get cameraTrack() {
    return this.cameraStream ? this.cameraStream.getVideoTracks()[0] || null : null;
  }

  /**
   * The track of `openId`'s video as this client receives it now, or null: only once the
   * slot shows that member (after its first key frame on the slot).
   */
  videoTrackOf(openId) {
    if (!this.session) return null;
    for (const s of this.session.slots.values()) {
      if (s.kind === 'video' && s.openId === openId && s.ready && s.track) return s.track;
    }
    return null;
  }

  /** Whether a video slot carries `openId` (whether or not its first frame is there yet). */
  receivesVideoOf(openId) {
    if (!this.session) return false;
    for (const s of this.session.slots.values()) if (s.kind === 'video' && s.openId === openId) return true;
    return false;
  }

  /** Calls `fn()` whenever videos, members, the camera or the state change; returns an unsubscribe. */
  watchVideo(fn) {
    this.videoWatchers.add(fn);
    return () => this.videoWatchers.delete(fn);
  }

  /** Tells the watchers, once per turn of the event loop however many changes came. */
  videoChanged() {
    if (this.videoNotifyQueued) return;
    this.videoNotifyQueued = true;
    queueMicrotask(() => {
      this.videoNotifyQueued = false;
      for (const fn of [...this.videoWatchers]) callSafely(fn);
    });
  }

  roomEvent(msg) {
    if (msg.type === 'membersChanged') {
      this.members = msg.openIdList.slice();
      this.videoChanged();
      this.mutedMembers = mutedList(msg);
      this.emit('VoIPChatMembersChanged', Object.assign(payload(msg), { mutedOpenIdList: mutedList(msg) }));
    } else if (msg.type === 'muteChanged') {
      this.mutedMembers = mutedList(msg);
      this.emit('VoIPChatMuteChanged', { mutedOpenIdList: mutedList(msg), errCode: msg.errCode, errMsg: msg.errMsg });
    } else if (msg.type === 'serverMuteChanged') {
      this.setServerMuted(msg.serverMuted === true);
      this.emit('VoIPChatServerMuteChanged', { serverMuted: this.serverMuted, errCode: msg.errCode, errMsg: msg.errMsg });
    } else if (msg.type === 'videoMembersChanged') {
      this.videoMembers = msg.openIdList.slice();
      this.videoChanged();
      this.emit('VoIPVideoMembersChanged', payload(msg));
    } else {
      this.speakers = msg.openIdList.slice();
      this.emit('VoIPChatSpeakersChanged', payload(msg));
    }
  }

  emit(name, data) {
    for (const fn of this.listeners[name].slice()) callSafely(fn, data);
  }

  emitState(code, data) {
    this.videoChanged();
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
    if (opts.roomType !== undefined && opts.roomType !== 'voice' && opts.roomType !== 'video') {
      throw fail(api, E.INVALID_FIELD, `roomType must be 'voice' or 'video', not ${JSON.stringify(opts.roomType)}`);
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
    this.muteConfig = { muteMicrophone: !!mc.muteMicrophone, muteEarphone: !!mc.muteEarphone, muteCamera: !!mc.muteCamera };
    this.videoSubscription = null;
    this.emitState(VoIPChatStateCode.CONNECTING, { groupId: opts.groupId });
    try {
      const unavailable = microphoneUnavailableReason();
      if (unavailable) throw fail(api, E.MICROPHONE, unavailable);
      await this.openDevices(api, this.publishesVideo() && !this.muteConfig.muteCamera);
      this.checkAborted(attempt);
      this.micTrack.enabled = !this.muteConfig.muteMicrophone;
      const signed = haveSignature
        ? { signature: opts.signature, nonceStr: opts.nonceStr, timeStamp: opts.timeStamp }
        : await this.freshSignature(api);
      this.checkAborted(attempt);
      const result = await this.connect(signed, attempt);
      this.state = 'joined';
      this.members = result.openIdList.slice();
      this.mutedMembers = mutedList(result);
      this.emitState(VoIPChatStateCode.CONNECTED, { openIdList: result.openIdList.slice() });
      const session = this.session;
      setTimeout(() => session.flushPendingEvents(), 0);
      return {
        openIdList: result.openIdList.slice(),
        mutedOpenIdList: mutedList(result),
        errCode: 0,
        errMsg: result.errMsg,
      };
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

  /** Whether this client sends a camera m-line: in video rooms, unless `video: false`. */
  publishesVideo() {
    return this.roomType === 'video' && this.options.video !== false;
  }

  /** getUserMedia video constraints: the `video` option, facing the chosen camera position. */
  cameraConstraints() {
    const v = this.options.video;
    const c = v && typeof v === 'object' ? Object.assign({}, v) : {};
    if (c.facingMode === undefined) c.facingMode = this.cameraPosition === 'back' ? 'environment' : 'user';
    return c;
  }

  /**
   * Opens the microphone, and the camera too when `withCamera` (one getUserMedia, so the
   * browser asks once). When that fails, the microphone alone is tried to say which
   * device is missing or refused: -2 either way.
   */
  async openDevices(api, withCamera) {
    const audio = this.options.audio === undefined ? true : this.options.audio;
    const reason = (e) => (e && e.name ? e.name : e);
    if (!withCamera) {
      try {
        this.micStream = await navigator.mediaDevices.getUserMedia({ audio, video: false });
      } catch (e) {
        throw fail(api, E.MICROPHONE, `microphone is busy or not allowed (${reason(e)})`);
      }
      return;
    }
    let stream;
    try {
      stream = await navigator.mediaDevices.getUserMedia({ audio, video: this.cameraConstraints() });
    } catch (e) {
      let microphoneWorks = false;
      try {
        const probe = await navigator.mediaDevices.getUserMedia({ audio, video: false });
        for (const t of probe.getTracks()) t.stop();
        microphoneWorks = true;
      } catch {
        /* the microphone fails too */
      }
      if (microphoneWorks) throw fail(api, E.MICROPHONE, `camera is busy or not allowed (${reason(e)})`);
      throw fail(api, E.MICROPHONE, `microphone is busy or not allowed (${reason(e)})`);
    }
    this.micStream = new MediaStream(stream.getAudioTracks());
    this.cameraStream = new MediaStream(stream.getVideoTracks());
    this.cameraOpenedFor = this.cameraPosition;
    this.videoChanged();
  }

  /** Opens the camera alone (unmuting it, or switching to the other position). */
  async openCamera() {
    const stream = await navigator.mediaDevices.getUserMedia({ audio: false, video: this.cameraConstraints() });
    this.stopCamera();
    this.cameraStream = stream;
    this.cameraOpenedFor = this.cameraPosition;
    await this.attachCamera();
  }

  stopCamera() {
    if (this.cameraStream) for (const t of this.cameraStream.getTracks()) t.stop();
    this.cameraStream = null;
    this.cameraOpenedFor = null;
    this.videoChanged();
  }

  /** Puts the current camera track (or none) on the session's video sender. */
  async attachCamera() {
    this.videoChanged();
    const tr = this.session && this.session.cameraTransceiver;
    if (!tr || tr.sender.track === this.cameraTrack) return;
    try {
      await tr.sender.replaceTrack(this.cameraTrack);
    } catch (e) {
      console.warn('voipchat: could not switch the camera track', e);
    }
    if (this.session.fitsLayers && this.cameraTrack) await fitLayers(tr.sender, this.cameraTrack);
  }

  /**
   * 'front' or 'back' (a <voip-room mode="camera" device-position>): the camera sent from
   * now on, reopened at once if another one is open.
   */
  async setCameraPosition(position) {
    if (position !== 'front' && position !== 'back') return;
    if (this.cameraPosition === position) return;
    this.cameraPosition = position;
    if (!this.cameraStream || this.cameraOpenedFor === position) return;
    // Phones open one camera at a time: the old one closes first.
    this.stopCamera();
    try {
      const stream = await navigator.mediaDevices.getUserMedia({ audio: false, video: this.cameraConstraints() });
      if (this.state === 'idle' || this.muteConfig.muteCamera || this.cameraStream || this.cameraPosition !== position) {
        for (const t of stream.getTracks()) t.stop();
        return;
      }
      this.cameraStream = stream;
      this.cameraOpenedFor = position;
      await this.attachCamera();
    } catch (e) {
      console.warn(`voipchat: could not open the ${position} camera`, e);
      await this.attachCamera();
    }
  }

  /** muteConfig as the wire has it: muteCamera only in video rooms (or when set). */
  wireMuteConfig() {
    const m = { muteMicrophone: this.muteConfig.muteMicrophone, muteEarphone: this.muteConfig.muteEarphone };
    if (this.roomType === 'video' || this.muteConfig.muteCamera) m.muteCamera = this.muteConfig.muteCamera;
    return m;
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
    // The server that worked last first, then the others given; a refusal is an answer
    // and is not retried elsewhere, only a node that cannot be reached.
    const start = Math.max(0, this.urls.indexOf(this.url));
    let last;
    for (let i = 0; i < this.urls.length; i++) {
      const entry = this.urls[(start + i) % this.urls.length];
      try {
        const result = await this.connectFollowing(entry, signed, attempt);
        this.url = entry;
        return result;
      } catch (e) {
        if (e && typeof e.errCode === 'number') throw e;
        if (this.session) this.session.close();
        this.session = null;
        if (attempt) this.checkAborted(attempt);
        last = e;
      }
    }
    throw last;
  }

  /**
   * A join at `url`: another node may hold the room (-10015 with its URL), and the same
   * signed join goes there, a few times at most, never from wss: to ws:.
   */
  async connectFollowing(url, signed, attempt) {
    for (let hops = 0; ; hops++) {
      try {
        return await this.connectAt(url, signed, attempt);
      } catch (e) {
        const to = e && e.errCode === E.ROOM_ELSEWHERE && typeof e.redirect === 'string' ? e.redirect : null;
        if (!to) throw e;
        if (this.session) this.session.close();
        this.session = null;
        const downgrade = url.startsWith('wss:') && !to.startsWith('wss:');
        if (hops >= MAX_REDIRECTS || downgrade || !/^wss?:\/\//.test(to)) {
          throw fail('joinVoIPChat', E.ROOM_ELSEWHERE, `${downgrade ? 'a redirect from wss to ws' : 'too many redirects'} (last: ${to})`);
        }
        url = to;
      }
    }
  }

  /** One join attempt at `url` (see connect). */
  async connectAt(url, signed, attempt) {
    const session = new Session(this, url);
    this.session = session;
    session.onDrop = (ev) => this.dropped(session, ev);
    await session.open();
    if (attempt) this.checkAborted(attempt);
    const serverIceServers = await session.helloIceServers(this.options.helloTimeoutMs);
    if (attempt) this.checkAborted(attempt);
    session.createPeerConnection(this.micTrack, this.micStream, this.publishesVideo(), this.cameraTrack, this.cameraStream, serverIceServers);
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
      muteConfig: this.wireMuteConfig(),
      sdp,
    });
    const result = await joinResult;
    if (result.errCode !== 0) {
      throw { errCode: result.errCode, errMsg: result.errMsg, redirect: result.redirect };
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
        const mutedBefore = this.mutedMembers;
        this.mutedMembers = mutedList(result);
        this.emitState(VoIPChatStateCode.RECONNECTED, { attempt: i, openIdList: result.openIdList.slice() });
        this.emit('VoIPChatMembersChanged', {
          openIdList: result.openIdList.slice(),
          mutedOpenIdList: mutedList(result),
          errCode: 0,
          errMsg: 'onVoIPChatMembersChanged:ok',
        });
        if (JSON.stringify(mutedBefore) !== JSON.stringify(this.mutedMembers)) {
          // Mutes that changed while this client was away.
          this.emit('VoIPChatMuteChanged', {
            mutedOpenIdList: this.mutedMembers.slice(),
            errCode: 0,
            errMsg: 'onVoIPChatMuteChanged:ok',
          });
        }
        if (this.videoSubscription) {
          // The new membership starts with the default videos: ask for the chosen ones again.
          this.session.send({ type: 'subscribeVideoMembers', openIdList: this.videoSubscription.slice() });
        }
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
    this.stopCamera();
    this.state = 'idle';
    this.serverMuted = false;
    this.members = [];
    this.speakers = [];
    this.mutedMembers = [];
    this.videoMembers = [];
    this.videoSubscription = null;
    this.videoChanged();
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
      if (k !== 'muteMicrophone' && k !== 'muteEarphone' && k !== 'muteCamera') {
        throw fail(api, E.INVALID_FIELD, `unknown muteConfig key ${k}`);
      }
    }
    if (this.state === 'idle' || this.state === 'joining') throw fail(api, E.NOT_IN_ROOM, 'not in a room');
    // As on the wire, the whole configuration is replaced: an omitted flag is false.
    const next = {
      muteMicrophone: !!muteConfig.muteMicrophone,
      muteEarphone: !!muteConfig.muteEarphone,
      muteCamera: !!muteConfig.muteCamera,
    };
    if (this.serverMuted && !next.muteMicrophone) {
      // The server would refuse it the same way; nothing changes here either.
      throw fail(api, E.SERVER_MUTED, 'the microphone was muted by the server');
    }
    if (this.publishesVideo() && !next.muteCamera && !this.cameraStream) {
      // The camera was closed while muted: open it again before the others can see it.
      try {
        await this.openCamera();
      } catch (e) {
        throw fail(api, E.MICROPHONE, `camera is busy or not allowed (${e && e.name ? e.name : e})`);
      }
      if (this.state === 'idle') {
        this.stopCamera();
        throw fail(api, E.NOT_IN_ROOM, 'not in a room');
      }
    }
    this.muteConfig = next;
    this.applyLocalMute();
    if (this.state === 'reconnecting') {
      // Sent with the rejoin's join.
      return { errCode: 0, errMsg: `${api}:ok` };
    }
    let reply;
    try {
      reply = await this.request(api, { type: 'updateMuteConfig', muteConfig: this.wireMuteConfig() }, 'muteConfigResult');
    } catch (e) {
      // Muted by the server before its event arrived: the microphone stays off here too.
      if (e && e.errCode === E.SERVER_MUTED) this.setServerMuted(true);
      throw e;
    }
    return { errCode: 0, errMsg: reply.errMsg };
  }

  /**
   * The server muted this user's microphone (true: muteMicrophone is set, and the track
   * disabled, at once) or allowed it again (false: it stays muted until the app unmutes it).
   */
  setServerMuted(muted) {
    this.serverMuted = muted;
    if (muted && !this.muteConfig.muteMicrophone) {
      this.muteConfig = Object.assign({}, this.muteConfig, { muteMicrophone: true });
      this.applyLocalMute();
    }
  }

  applyLocalMute() {
    const track = this.micTrack;
    if (track) track.enabled = !this.muteConfig.muteMicrophone;
    if (this.session) {
      for (const slot of this.session.slots.values()) {
        if (slot.audio) slot.audio.muted = this.muteConfig.muteEarphone;
      }
    }
    // A muted camera is closed (its light goes off), not only disabled; unmuting reopens it.
    if (this.muteConfig.muteCamera && this.cameraStream) this.stopCamera();
    this.attachCamera();
  }

  /** wx.subscribeVoIPVideoMembers */
  subscribeVoIPVideoMembers(opts) {
    opts = opts || {};
    return wxCall(opts, () => this.subscribeVideo(opts.openIdList));
  }

  async subscribeVideo(list) {
    const api = 'subscribeVoIPVideoMembers';
    if (!Array.isArray(list) || list.some((o) => typeof o !== 'string' || !o)) {
      throw fail(api, E.INVALID_FIELD, 'openIdList must be an array of openIds');
    }
    if (list.length > MAX_SUBSCRIBED) throw fail(api, E.INVALID_FIELD, `openIdList names at most ${MAX_SUBSCRIBED} members`);
    if (this.state === 'idle' || this.state === 'joining') throw fail(api, E.NOT_IN_ROOM, 'not in a room');
    if (this.roomType !== 'video') throw fail(api, E.UNEXPECTED, 'subscribeVoIPVideoMembers needs a video room');
    if (this.state === 'reconnecting') {
      // Sent after the rejoin.
      this.videoSubscription = list.slice();
      return { errCode: 0, errMsg: `${api}:ok` };
    }
    const reply = await this.request(api, { type: 'subscribeVideoMembers', openIdList: list.slice() }, 'subscribeVideoMembersResult');
    this.videoSubscription = list.slice();
    return { errCode: 0, errMsg: reply.errMsg };
  }

  /**
   * Sends `msg` on the session and waits for its `resultType` answer: resolves with it, or
   * throws the fail payload (the server's code, or -1000 when no answer comes in time).
   */
  async request(api, msg, resultType) {
    const result = this.session.waitFor(resultType, this.options.resultTimeoutMs);
    this.session.send(msg);
    let reply;
    try {
      reply = await result;
    } catch (e) {
      throw fail(api, E.SYSTEM, `system error (${e.message})`);
    }
    if (reply.errCode !== 0) throw { errCode: reply.errCode, errMsg: reply.errMsg };
    return reply;
  }

  /**
   * What is being received from each member: {openId: {mid, packetsReceived, bytesReceived,
   * audioLevel, totalAudioEnergy, totalSamplesDuration}} from the receivers' inbound-rtp stats.
   */
  async getStatsByOpenId() {
    const out = {};
    if (!this.session) return out;
    for (const slot of this.session.slots.values()) {
      if (slot.kind !== 'audio' || !slot.openId || !slot.transceiver) continue;
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
          // How much the receiver had to make up for lost packets (RED and FEC lower it).
          packetsLost: s.packetsLost || 0,
          totalSamplesReceived: s.totalSamplesReceived || 0,
          concealedSamples: s.concealedSamples || 0,
        };
      }
    }
    return out;
  }

  /**
   * Every video receive slot now, free ones included: [{mid, openId, showing,
   * packetsReceived, bytesReceived, framesDecoded, keyFramesDecoded, frameWidth,
   * frameHeight, framesPerSecond, packetsLost, nackCount, retransmittedPacketsReceived,
   * freezeCount, totalFreezesDuration, mimeType}] from its inbound-rtp stats. `showing`: the slot
   * shows its occupant (the occupant's first key frame on it was decoded).
   */
  async getVideoStats() {
    const out = [];
    if (!this.session) return out;
    for (const slot of [...this.session.slots.values()]) {
      if (slot.kind !== 'video' || !slot.transceiver) continue;
      let report;
      try {
        report = await slot.transceiver.receiver.getStats();
      } catch {
        continue; // closed meanwhile
      }
      let s = {};
      for (const r of report.values()) if (r.type === 'inbound-rtp') s = r;
      const codec = s.codecId ? report.get(s.codecId) : null;
      out.push({
        mid: slot.mid,
        openId: slot.openId,
        showing: slot.openId !== null && slot.ready,
        packetsReceived: s.packetsReceived || 0,
        bytesReceived: s.bytesReceived || 0,
        framesDecoded: s.framesDecoded || 0,
        keyFramesDecoded: s.keyFramesDecoded || 0,
        frameWidth: s.frameWidth || 0,
        frameHeight: s.frameHeight || 0,
        framesPerSecond: s.framesPerSecond || 0,
        packetsLost: s.packetsLost || 0,
        nackCount: s.nackCount || 0,
        retransmittedPacketsReceived: s.retransmittedPacketsReceived || 0,
        freezeCount: s.freezeCount || 0,
        totalFreezesDuration: s.totalFreezesDuration || 0,
        mimeType: codec ? codec.mimeType : null,
      });
    }
    return out;
  }

  /**
   * What this user's camera sends: one entry per simulcast layer (by rid; one entry without
   * a rid when simulcast is off), from its outbound-rtp stats. [] outside a video room or
   * while the camera is muted.
   */
  async getCameraStats() {
    const t = this.session && this.session.cameraTransceiver;
    if (!t || !t.sender.track) return [];
    let report;
    try {
      report = await t.sender.getStats();
    } catch {
      return []; // closed meanwhile
    }
    const out = [];
    for (const r of report.values()) {
      if (r.type !== 'outbound-rtp') continue;
      out.push({
        rid: r.rid || null,
        active: r.active !== false,
        bytesSent: r.bytesSent || 0,
        framesEncoded: r.framesEncoded || 0,
        frameWidth: r.frameWidth || 0,
        frameHeight: r.frameHeight || 0,
        framesPerSecond: r.framesPerSecond || 0,
        qualityLimitationReason: r.qualityLimitationReason || 'none',
      });
    }
    return out.sort((a, b) => a.frameHeight - b.frameHeight);
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

installVoipRoom({
  E,
  VIDEO_SETTLE_MS,
  microphoneUnavailableReason,
  roomElements,
  lastClient: () => lastClient,
});
