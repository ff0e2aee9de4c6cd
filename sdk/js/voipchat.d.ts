// Type declarations of the voipchat browser SDK (sdk/js/voipchat.js). Reference: docs/js-api.md.

/** `{errCode, errMsg}` of every result and failure; errCode 0 is success. */
export interface GeneralResult {
  errCode: number;
  errMsg: string;
}

export interface OpenIdListResult extends GeneralResult {
  openIdList: string[];
}

/** joinVoIPChat's success and onVoIPChatMembersChanged: the members, and who of them is muted. */
export interface MembersResult extends OpenIdListResult {
  /** The members whose microphone is muted now (this user included); [] from servers that do not report mutes. */
  mutedOpenIdList: string[];
}

/** onVoIPChatMuteChanged: a member muted or unmuted their microphone. */
export interface MuteChangedResult extends GeneralResult {
  /** Every member of the room whose microphone is muted now (this user included). */
  mutedOpenIdList: string[];
}

/** onVoIPChatServerMuteChanged: the game backend muted this user's microphone, or allowed it again. */
export interface ServerMuteChangedResult extends GeneralResult {
  /** true: muteConfig.muteMicrophone is now true and unmuting fails with -10014; false: the app may unmute again (the microphone stays muted until it does). */
  serverMuted: boolean;
}

export interface MuteConfig {
  muteMicrophone?: boolean;
  muteEarphone?: boolean;
  /** Extension, video rooms: the camera is closed and the server forwards none of this user's video. */
  muteCamera?: boolean;
}

/** onVoIPVideoMembersChanged: the members of a video room whose camera is on, in order of joining. */
export interface VideoMembersResult extends OpenIdListResult {}

/** The wx callback trio every call accepts, next to the returned Promise. */
export interface Callbacks<T> {
  success?: (result: T) => void;
  fail?: (result: GeneralResult) => void;
  complete?: (result: T | GeneralResult) => void;
}

/** What a `sign` callback returns: a join signature made by the app's backend. */
export interface SignedJoin {
  nonceStr: string;
  /** Unix seconds, the number that was signed. */
  timeStamp: number;
  /** hex(hmac_sha256([appId, groupId, nonceStr, String(timeStamp)].sort().join(''), sessionKey)) */
  signature: string;
}

export interface ReconnectOptions {
  /** Rejoin attempts after the connection drops (default 5). */
  attempts?: number;
  /** Wait before each attempt, in ms; the last value repeats (default [0, 500, 1000, 2000, 4000]). */
  delaysMs?: number[];
}

export interface VoIPClientOptions {
  /**
   * The voipchat server: "https://host" (signaling at wss://host/ws) or the WebSocket URL itself. Default: the page's origin.
   * Several nodes of one cluster may be listed: a join (and a rejoin) that cannot reach one tries the next; a node that
   * does not hold the room redirects the join to the one that does (-10015), which the SDK follows by itself.
   */
  server?: string | string[];
  appId: string;
  openId: string;
  /** Asked for a fresh signature by joinVoIPChat without signature fields, and by every rejoin. */
  sign?: (request: { groupId: string; appId: string; openId: string }) => Promise<SignedJoin> | SignedJoin;
  /** getUserMedia audio constraints (default true). */
  audio?: boolean | MediaTrackConstraints;
  /**
   * getUserMedia video constraints of the camera in video rooms (default true; `facingMode`
   * follows a <voip-room mode="camera" device-position> unless given here). false: join
   * video rooms without a camera (receive only).
   */
  video?: boolean | MediaTrackConstraints;
  /**
   * The camera's simulcast layers in video rooms: true (default) SIMULCAST_LAYERS, false a
   * single layer, or your own 1 to 3 encodings (each with a rid). The browser sends as many
   * as the capture size allows; the server gives each receiver the layer its bandwidth fits.
   */
  simulcast?: boolean | SimulcastLayer[];
  /**
   * The camera's codec in video rooms: 'VP8' or 'H264' (constrained baseline,
   * packetization-mode 1). Default: the browser offers all it has and the server takes VP8.
   */
  videoCodec?: 'VP8' | 'H264';
  /** Where the <audio> elements of received members go (default document.body). */
  audioContainer?: Element;
  /** Rejoin when the connection drops (needs `sign`); false switches it off. */
  reconnect?: ReconnectOptions | false;
  /**
   * ICE servers of the app's own (STUN, or a TURN service with its credentials), put before
   * the TURN servers the voipchat server sends in its hello. Default none.
   */
  iceServers?: RTCIceServer[];
  /**
   * Merged into the RTCPeerConnection configuration (default: `iceServers` and the server's,
   * max-bundle); an `iceServers` here replaces both.
   */
  rtcConfiguration?: RTCConfiguration;
  /**
   * How long a join waits for the server's hello (its ICE servers) before it goes on
   * without them, ms (default 2000; servers older than the hello never send one).
   */
  helloTimeoutMs?: number;
  /** joinResult wait, ms (default 15000). */
  joinTimeoutMs?: number;
  /** exitResult / muteConfigResult wait, ms (default 5000). */
  resultTimeoutMs?: number;
  /** Keep-alive ping interval, ms (default 15000). */
  pingIntervalMs?: number;
}

export interface JoinVoIPChatOptions extends Callbacks<MembersResult> {
  groupId: string;
  /** Give all three, or none and let the client's `sign` callback sign. */
  signature?: string;
  nonceStr?: string;
  timeStamp?: number;
  /** 'video' also sends the camera (one getUserMedia for both); default 'voice'. */
  roomType?: 'voice' | 'video';
  muteConfig?: MuteConfig;
}

export interface SubscribeVoIPVideoMembersOptions extends Callbacks<GeneralResult> {
  /** Whose video to receive from now on, instead of the default (the first two others); at most 9. */
  openIdList: string[];
}

export interface UpdateVoIPChatMuteConfigOptions extends Callbacks<GeneralResult> {
  muteConfig: MuteConfig;
}

/** `code` of onVoIPChatStateChanged. */
export declare const VoIPChatStateCode: {
  readonly CONNECTING: 1;
  readonly CONNECTED: 2;
  readonly RECONNECTING: 3;
  readonly RECONNECTED: 4;
  readonly DISCONNECTED: 5;
  readonly MEDIA_CONNECTED: 6;
  readonly MEDIA_DISCONNECTED: 7;
};

export interface StateChangedResult extends GeneralResult {
  code: 1 | 2 | 3 | 4 | 5 | 6 | 7;
  data: {
    state:
      | 'connecting'
      | 'connected'
      | 'reconnecting'
      | 'reconnected'
      | 'disconnected'
      | 'mediaConnected'
      | 'mediaDisconnected';
    groupId?: string;
    openIdList?: string[];
    attempt?: number;
    reason?: string;
    errCode?: number;
    connectionState?: RTCPeerConnectionState;
  };
}

export interface ReceivedStats {
  mid: string;
  packetsReceived: number;
  bytesReceived: number;
  audioLevel: number;
  totalAudioEnergy: number;
  totalSamplesDuration: number;
  /** RTP packets the slot missed (its inbound-rtp `packetsLost`). */
  packetsLost: number;
  /** Samples played from received audio and made up for lost audio, as getStats counts them. */
  totalSamplesReceived: number;
  concealedSamples: number;
}

export interface Slot {
  mid: string;
  kind: 'audio' | 'video';
  openId: string | null;
  /** The <audio> element of an audio slot (null for video slots). */
  audio: HTMLAudioElement | null;
  receiver: RTCRtpReceiver | null;
  track: MediaStreamTrack | null;
}

/** One video receive slot, from its inbound-rtp stats (getVideoStats). */
export interface VideoSlotStats {
  mid: string;
  /** Whose video the slot carries now; null while it is free. */
  openId: string | null;
  /** The slot shows its occupant (the occupant's first key frame on the slot was decoded). */
  showing: boolean;
  packetsReceived: number;
  bytesReceived: number;
  framesDecoded: number;
  keyFramesDecoded: number;
  frameWidth: number;
  frameHeight: number;
  framesPerSecond: number;
  packetsLost: number;
  /** NACKs this receiver sent, and the retransmissions (RTX) that repaired loss. */
  nackCount: number;
  retransmittedPacketsReceived: number;
  freezeCount: number;
  /** Seconds. */
  totalFreezesDuration: number;
  /** e.g. "video/VP8"; null before the first packet. */
  mimeType: string | null;
}

/** One layer the camera sends, from its outbound-rtp stats (getCameraStats). */
export interface CameraLayerStats {
  /** The simulcast layer's rid ("q", "h", "f" by default); null without simulcast. */
  rid: string | null;
  /** false: the browser pauses this layer (the capture is too small for it). */
  active: boolean;
  bytesSent: number;
  framesEncoded: number;
  frameWidth: number;
  frameHeight: number;
  framesPerSecond: number;
  /** "none", "cpu", "bandwidth" or "other". */
  qualityLimitationReason: string;
}

/** One simulcast layer of the camera: an RTCRtpEncodingParameters with its rid. */
export interface SimulcastLayer extends RTCRtpEncodingParameters {
  rid: string;
}

/** The default layers: rid q (¼ size), h (½) and f (full size); the browser sets their bitrates. */
export declare const SIMULCAST_LAYERS: readonly SimulcastLayer[];

export declare class VoIPChatError extends Error {
  errCode: number;
  errMsg: string;
}

export interface VoIPClient {
  /** The signaling WebSocket URL. */
  readonly url: string;
  readonly appId: string;
  readonly openId: string;
  readonly state: 'idle' | 'joining' | 'joined' | 'reconnecting';
  readonly groupId: string | null;
  /** The roomType of the last join. */
  readonly roomType: 'voice' | 'video';
  readonly muteConfig: Required<MuteConfig>;
  /** The game backend has muted this user's microphone (POST /api/v1/rooms/{groupId}/mute): unmuting fails with -10014 until it allows it again. */
  readonly serverMuted: boolean;
  /** The room's members as last reported. */
  readonly members: string[];
  /** The room's speakers as last reported. */
  readonly speakers: string[];
  /** The members whose microphone is muted, as last reported. */
  readonly mutedMembers: string[];
  /** Video rooms: the members whose camera is on, as last reported. */
  readonly videoMembers: string[];
  /** Video rooms: the openIdList of the last successful subscribeVoIPVideoMembers (kept across rejoins), or null. */
  readonly videoSubscription: string[] | null;
  /** 'front' or 'back', as the last <voip-room mode="camera" device-position> asked. */
  readonly cameraPosition: 'front' | 'back';
  /** True after the browser refused to start playback without a user gesture. */
  readonly autoplayBlocked: boolean;
  /** The current RTCPeerConnection (a new one after each rejoin), e.g. for getStats(). */
  readonly pc: RTCPeerConnection | null;
  /**
   * The ICE servers the current peer connection was created with: the `iceServers` option,
   * then the server's (its hello's TURN servers with their credentials). [] when idle.
   */
  readonly iceServers: RTCIceServer[];
  /** The current signaling WebSocket. */
  readonly ws: WebSocket | null;
  readonly slots: Slot[];
  readonly micTrack: MediaStreamTrack | null;
  /** The camera's track being sent (video rooms); null while muteCamera is set. */
  readonly cameraTrack: MediaStreamTrack | null;

  /** wx.joinVoIPChat */
  joinVoIPChat(options: JoinVoIPChatOptions): Promise<MembersResult>;
  /** wx.exitVoIPChat */
  exitVoIPChat(options?: Callbacks<GeneralResult>): Promise<GeneralResult>;
  /** wx.updateVoIPChatMuteConfig */
  updateVoIPChatMuteConfig(options: UpdateVoIPChatMuteConfigOptions): Promise<GeneralResult>;
  /** wx.subscribeVoIPVideoMembers (video rooms). */
  subscribeVoIPVideoMembers(options: SubscribeVoIPVideoMembersOptions): Promise<GeneralResult>;

  onVoIPChatMembersChanged(listener: (result: MembersResult) => void): void;
  /** Without a listener: removes all. */
  offVoIPChatMembersChanged(listener?: (result: MembersResult) => void): void;
  onVoIPChatSpeakersChanged(listener: (result: OpenIdListResult) => void): void;
  offVoIPChatSpeakersChanged(listener?: (result: OpenIdListResult) => void): void;
  onVoIPChatInterrupted(listener: (result: GeneralResult) => void): void;
  offVoIPChatInterrupted(listener?: (result: GeneralResult) => void): void;
  onVoIPChatStateChanged(listener: (result: StateChangedResult) => void): void;
  offVoIPChatStateChanged(listener?: (result: StateChangedResult) => void): void;
  /** A member muted or unmuted their microphone (not part of wx). */
  onVoIPChatMuteChanged(listener: (result: MuteChangedResult) => void): void;
  offVoIPChatMuteChanged(listener?: (result: MuteChangedResult) => void): void;
  /** The game backend muted this user's microphone, or allowed it again (not part of wx). */
  onVoIPChatServerMuteChanged(listener: (result: ServerMuteChangedResult) => void): void;
  offVoIPChatServerMuteChanged(listener?: (result: ServerMuteChangedResult) => void): void;
  /** wx.onVoIPVideoMembersChanged: whose camera is on (video rooms). */
  onVoIPVideoMembersChanged(listener: (result: VideoMembersResult) => void): void;
  offVoIPVideoMembersChanged(listener?: (result: VideoMembersResult) => void): void;

  /** Inbound audio per member, from the receivers' getStats(). */
  getStatsByOpenId(): Promise<Record<string, ReceivedStats>>;
  /** Every video receive slot, free ones included. */
  getVideoStats(): Promise<VideoSlotStats[]>;
  /** What the camera sends, one entry per simulcast layer, smallest first; [] without a camera. */
  getCameraStats(): Promise<CameraLayerStats[]>;
  /** The received track of `openId`'s video once its slot shows that member, else null. */
  videoTrackOf(openId: string): MediaStreamTrack | null;
  /** Whether a video slot carries `openId` (its first frame may still be on the way). */
  receivesVideoOf(openId: string): boolean;
  /** Calls `listener` when videos, members, the camera or the state change (what <voip-room> uses); returns a function that stops it. */
  watchVideo(listener: () => void): () => void;
  /** The camera to send, reopened at once if another one is open (what device-position sets). */
  setCameraPosition(position: 'front' | 'back'): Promise<void>;
}

/** The `error` event of <voip-room>. */
export type VoIPRoomErrorEvent = CustomEvent<GeneralResult>;

/**
 * `<voip-room>`, defined when the module is imported. Attributes: `mode` ('camera', the
 * default: this user's camera; 'video': the member `openid`), `openid`, `device-position`
 * ('front' | 'back', camera mode), `object-fit` ('fill' default | 'contain' | 'cover').
 * Sets the `active` attribute while a frame shows. Fires `error` (VoIPRoomErrorEvent): -2
 * camera cannot be opened; -10013 the member is not in the room, has no camera on, or its
 * video is not received; -10007 no openid in video mode.
 */
export declare class VoIPRoomElement extends HTMLElement {
  /** The client whose videos it shows; default: the client created last on the page. */
  client: VoIPClient | null;
  openid: string;
  mode: 'camera' | 'video';
  devicePosition: 'front' | 'back';
  objectFit: 'fill' | 'contain' | 'cover';
  /** The inner <video> (e.g. to draw into a canvas). */
  readonly video: HTMLVideoElement;
  /** A video frame shows now. */
  readonly active: boolean;
  addEventListener(type: 'error', listener: (ev: VoIPRoomErrorEvent) => void, options?: boolean | AddEventListenerOptions): void;
  addEventListener(type: string, listener: EventListenerOrEventListenerObject, options?: boolean | AddEventListenerOptions): void;
}

declare global {
  interface HTMLElementTagNameMap {
    'voip-room': VoIPRoomElement;
  }
}

export declare function createVoIPClient(options: VoIPClientOptions): VoIPClient;
/**
 * Why this page cannot open a microphone at all (not a secure context: neither https nor
 * http on localhost / 127.0.0.1), or null. joinVoIPChat then fails with -2 and this reason.
 */
export declare function microphoneUnavailableReason(): string | null;
/** "https://host" → "wss://host/ws"; ws(s) URLs unchanged. */
export declare function signalingUrl(server?: string): string;
export default createVoIPClient;
