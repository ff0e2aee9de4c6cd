// <voip-room>: the wx voip-room component as a custom element, showing a member's video
// (mode "video") or this user's own camera (mode "camera"). The SDK module (voipchat.js)
// installs it with what it needs from the client, so this file imports nothing and there
// is no import cycle; docs/js-api.md describes the element.

/** What the SDK hands over: error codes, the settle time, the clients' registry. */
let deps = null;

/** Called once by voipchat.js, which then registers the element. */
export function installVoipRoom(d) {
  deps = d;
  if (typeof customElements !== 'undefined' && !customElements.get('voip-room')) {
    customElements.define('voip-room', VoIPRoomElement);
  }
}

const OBJECT_FITS = new Set(['fill', 'contain', 'cover']);
const HTMLElementBase = typeof HTMLElement === 'undefined' ? class {} : HTMLElement;

/**
 * `<voip-room>`: one video of a video room, as wx's voip-room component.
 *
 *   <voip-room mode="video" openid="bob" object-fit="cover"></voip-room>   bob's video
 *   <voip-room mode="camera" device-position="front"></voip-room>         this user's camera
 *
 * It shows what its client (the `client` property, else the client created last on the
 * page) sends or receives; a video that is not there yet shows when it arrives. In camera
 * mode, while the client sends no camera (not in a video room yet), it opens a preview of
 * its own. `error` (a CustomEvent, detail {errCode, errMsg}): -2 when the camera cannot be
 * opened; -10013 when the member is not in the room, has no camera on, or its video is not
 * among those this client receives (reported once the room has settled, about a second).
 * Removing the element closes its preview and lets go of the video.
 */
export class VoIPRoomElement extends HTMLElementBase {
  static get observedAttributes() {
    return ['openid', 'mode', 'device-position', 'object-fit'];
  }

  constructor() {
    super();
    const root = this.attachShadow({ mode: 'open' });
    root.innerHTML =
      '<style>' +
      ':host { display: block; position: relative; overflow: hidden; background: #000; aspect-ratio: 4 / 3; }' +
      ':host([hidden]) { display: none; }' +
      'video { display: block; width: 100%; height: 100%; object-fit: fill; }' +
      'video.mirror { transform: scaleX(-1); }' +
      'video:not([data-live]) { visibility: hidden; }' +
      '</style><video autoplay muted playsinline part="video"></video>';
    this._video = root.querySelector('video');
    this._live = false; // a frame of `_shown` is on the <video>
    const loaded = () => {
      if (this._shown && this._video.readyState >= 2 && !this._live) {
        this._live = true;
        this.toggleAttribute('active', true);
      }
    };
    this._video.addEventListener('loadeddata', loaded);
    this._video.addEventListener('resize', loaded);
    this._client = null; // the `client` property
    this._bound = null; // the client watched now
    this._unwatch = null;
    this._preview = null; // {stream, position}: a camera of its own (camera mode, no camera sent)
    this._previewOpening = null; // {position} while getUserMedia runs
    this._previewFailed = null; // the position whose camera could not be opened
    this._shown = null; // the track on the <video>
    this._reported = null; // key of the failure last reported: each is reported once
    this._pending = null; // {key, errCode, errMsg, timer}: reported if it lasts deps.VIDEO_SETTLE_MS
  }

  /** The client whose videos this element shows (default: the client created last). */
  get client() {
    return this._client || deps.lastClient();
  }

  set client(c) {
    this._client = c || null;
    this.update();
  }

  get openid() {
    return this.getAttribute('openid') || '';
  }

  set openid(v) {
    this.setAttribute('openid', v);
  }

  /** 'camera' (this user's camera; the default, as in wx) or 'video' (the member `openid`). */
  get mode() {
    return this.getAttribute('mode') === 'video' ? 'video' : 'camera';
  }

  set mode(v) {
    this.setAttribute('mode', v);
  }

  /** 'front' (default) or 'back': the camera to use, in camera mode. */
  get devicePosition() {
    return this.getAttribute('device-position') === 'back' ? 'back' : 'front';
  }

  set devicePosition(v) {
    this.setAttribute('device-position', v);
  }

  /** 'fill' (default, as in wx), 'contain' or 'cover'. */
  get objectFit() {
    const v = this.getAttribute('object-fit');
    return OBJECT_FITS.has(v) ? v : 'fill';
  }

  set objectFit(v) {
    this.setAttribute('object-fit', v);
  }

  /** The inner <video> element (e.g. to draw it into a canvas). */
  get video() {
    return this._video;
  }

  /** Whether a video frame shows now (also the `active` attribute, for styling). */
  get active() {
    return this._live;
  }

  connectedCallback() {
    deps.roomElements.add(this);
    this._previewFailed = null;
    this.update();
  }

  disconnectedCallback() {
    deps.roomElements.delete(this);
    if (this._unwatch) this._unwatch();
    this._unwatch = null;
    this._bound = null;
    this.releasePreview();
    this.show(null, false);
    this.settled();
  }

  attributeChangedCallback(name, before, after) {
    if (before === after) return;
    if (name === 'device-position' || name === 'mode') this._previewFailed = null;
    if (name === 'openid' || name === 'mode') this.settled();
    this.update();
  }

  /** A new client was created: an element without a `client` property follows it. */
  clientChanged() {
    if (!this._client) this.update();
  }

  /** Shows what the element should show now; called on every change of its client. */
  update() {
    if (!this.isConnected) return;
    const c = this.client;
    if (c !== this._bound) {
      if (this._unwatch) this._unwatch();
      this._unwatch = null;
      this._bound = c;
      this.settled();
      if (c) this._unwatch = c.watchVideo(() => this.update());
    }
    this._video.style.objectFit = this.objectFit;
    const own = this.mode === 'camera' || (c && this.openid === c.openId);
    if (own) this.updateCamera(c);
    else this.updateVideo(c);
  }

  updateCamera(c) {
    const position = this.devicePosition;
    if (c && this.hasAttribute('device-position')) c.setCameraPosition(position);
    // A front camera's picture is mirrored, as people expect to see themselves.
    const mirror = position === 'front';
    const track = c && c.cameraTrack && c.cameraTrack.readyState === 'live' ? c.cameraTrack : null;
    if (track) {
      this.releasePreview();
      this.settled();
      this.show(track, c.cameraPosition === 'front');
      return;
    }
    if (c && c.state !== 'idle' && c.publishesVideo()) {
      // In a video room with the camera muted (or being opened): nothing to show.
      this.releasePreview();
      this.settled();
      this.show(null, false);
      return;
    }
    // No camera sent: a preview of its own.
    const p = this._preview;
    if (p && p.position === position && p.stream.getVideoTracks()[0].readyState === 'live') {
      this.show(p.stream.getVideoTracks()[0], mirror);
      return;
    }
    if ((this._previewOpening && this._previewOpening.position === position) || this._previewFailed === position) return;
    this.releasePreview();
    this.show(null, false);
    const unavailable = deps.microphoneUnavailableReason();
    if (unavailable) {
      this._previewFailed = position;
      this.fail('camera', deps.E.MICROPHONE, `voip-room:fail ${unavailable.replace(/^microphone/, 'camera')}`, true);
      return;
    }
    const opening = { position };
    this._previewOpening = opening;
    const constraints = c ? c.cameraConstraints() : {};
    constraints.facingMode = position === 'back' ? 'environment' : 'user';
    navigator.mediaDevices.getUserMedia({ audio: false, video: constraints }).then(
      (stream) => {
        if (this._previewOpening !== opening || !this.isConnected) {
          for (const t of stream.getTracks()) t.stop();
          return;
        }
        this._previewOpening = null;
        this._preview = { stream, position };
        this.update();
      },
      (e) => {
        if (this._previewOpening !== opening) return;
        this._previewOpening = null;
        this._previewFailed = position;
        this.fail('camera', deps.E.MICROPHONE, `voip-room:fail camera is busy or not allowed (${e && e.name ? e.name : e})`, true);
      },
    );
  }

  updateVideo(c) {
    this.releasePreview();
    const id = this.openid;
    if (!c) {
      this.show(null, false);
      return;
    }
    if (!id) {
      this.show(null, false);
      this.fail('openid', deps.E.INVALID_FIELD, 'voip-room:fail openid is required in mode "video"', true);
      return;
    }
    const cameraOn = c.videoMembers.includes(id);
    const track = cameraOn ? c.videoTrackOf(id) : null;
    if (track) {
      this.settled();
      this.show(track, false);
      return;
    }
    this.show(null, false);
    if (c.state !== 'joined') {
      // Not in a room (yet), or rejoining: wait for the room.
      this.settled();
      return;
    }
    if (c.roomType !== 'video') {
      this.fail('voice', deps.E.VIDEO_NOT_SHOWN, `voip-room:fail ${id}: this is a voice room, it has no video`);
    } else if (!c.members.includes(id)) {
      this.fail('absent', deps.E.VIDEO_NOT_SHOWN, `voip-room:fail ${id} is not in the room`);
    } else if (!cameraOn) {
      this.fail('off', deps.E.VIDEO_NOT_SHOWN, `voip-room:fail ${id} has no camera on`);
    } else if (!c.receivesVideoOf(id)) {
      this.fail(
        'unreceived',
        deps.E.VIDEO_NOT_SHOWN,
        `voip-room:fail this client does not receive the video of ${id} (see subscribeVoIPVideoMembers)`,
      );
    } else {
      this.settled(); // the slot is there; its first key frame is on the way
    }
  }

  /** Reports a failure once; unless `now`, only if it still holds after deps.VIDEO_SETTLE_MS. */
  fail(key, errCode, errMsg, now = false) {
    if (this._reported === key) return;
    if (this._pending && this._pending.key === key) return;
    this.settled();
    if (now) {
      this.report(key, errCode, errMsg);
      return;
    }
    const pending = { key, errCode, errMsg, timer: null };
    pending.timer = setTimeout(() => {
      if (this._pending !== pending) return;
      this._pending = null;
      this.report(key, errCode, errMsg);
    }, deps.VIDEO_SETTLE_MS);
    this._pending = pending;
  }

  report(key, errCode, errMsg) {
    this._reported = key;
    this.dispatchEvent(new CustomEvent('error', { detail: { errCode, errMsg } }));
  }

  /** No failure now: forget the one pending or reported (a recurrence is reported again). */
  settled() {
    if (this._pending) clearTimeout(this._pending.timer);
    this._pending = null;
    this._reported = null;
  }

  /** Puts `track` (or nothing) on the <video>; `active` once its first frame is there. */
  show(track, mirror) {
    if (this._shown !== track) {
      this._shown = track;
      this._live = false;
      this.toggleAttribute('active', false);
      this._video.srcObject = track ? new MediaStream([track]) : null;
      if (track) {
        const played = this._video.play();
        if (played && played.catch) played.catch(() => {});
      }
    }
    this._video.classList.toggle('mirror', !!track && mirror);
    this._video.toggleAttribute('data-live', !!track);
  }

  releasePreview() {
    this._previewOpening = null;
    if (this._preview) for (const t of this._preview.stream.getTracks()) t.stop();
    this._preview = null;
  }
}

