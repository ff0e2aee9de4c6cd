// Type declarations of the voipchat browser SDK (sdk/js/voipchat.js). Reference: docs/js-api.md.

/** `{errCode, errMsg}` of every result and failure; errCode 0 is success. */
export interface GeneralResult {
  errCode: number;
  errMsg: string;
}

export interface OpenIdListResult extends GeneralResult {
  openIdList: string[];
}

export interface MuteConfig {
  muteMicrophone?: boolean;
  muteEarphone?: boolean;
}

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
  /** The voipchat server: "https://host" (signaling at wss://host/ws) or the WebSocket URL itself. Default: the page's origin. */
  server?: string;
  appId: string;
  openId: string;
  /** Asked for a fresh signature by joinVoIPChat without signature fields, and by every rejoin. */
  sign?: (request: { groupId: string; appId: string; openId: string }) => Promise<SignedJoin> | SignedJoin;
  /** getUserMedia audio constraints (default true). */
  audio?: boolean | MediaTrackConstraints;
  /** Where the <audio> elements of received members go (default document.body). */
  audioContainer?: Element;
  /** Rejoin when the connection drops (needs `sign`); false switches it off. */
  reconnect?: ReconnectOptions | false;
  /** Merged into the RTCPeerConnection configuration (default: no ICE servers, max-bundle). */
  rtcConfiguration?: RTCConfiguration;
  /** joinResult wait, ms (default 15000). */
  joinTimeoutMs?: number;
  /** exitResult / muteConfigResult wait, ms (default 5000). */
  resultTimeoutMs?: number;
  /** Keep-alive ping interval, ms (default 15000). */
  pingIntervalMs?: number;
}

export interface JoinVoIPChatOptions extends Callbacks<OpenIdListResult> {
  groupId: string;
  /** Give all three, or none and let the client's `sign` callback sign. */
  signature?: string;
  nonceStr?: string;
  timeStamp?: number;
  roomType?: 'voice' | 'video';
  muteConfig?: MuteConfig;
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
}

export interface Slot {
  mid: string;
  openId: string | null;
  audio: HTMLAudioElement | null;
  receiver: RTCRtpReceiver | null;
}

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
  readonly muteConfig: Required<MuteConfig>;
  /** The room's members as last reported. */
  readonly members: string[];
  /** The room's speakers as last reported. */
  readonly speakers: string[];
  /** True after the browser refused to start playback without a user gesture. */
  readonly autoplayBlocked: boolean;
  /** The current RTCPeerConnection (a new one after each rejoin), e.g. for getStats(). */
  readonly pc: RTCPeerConnection | null;
  /** The current signaling WebSocket. */
  readonly ws: WebSocket | null;
  readonly slots: Slot[];
  readonly micTrack: MediaStreamTrack | null;

  /** wx.joinVoIPChat */
  joinVoIPChat(options: JoinVoIPChatOptions): Promise<OpenIdListResult>;
  /** wx.exitVoIPChat */
  exitVoIPChat(options?: Callbacks<GeneralResult>): Promise<GeneralResult>;
  /** wx.updateVoIPChatMuteConfig */
  updateVoIPChatMuteConfig(options: UpdateVoIPChatMuteConfigOptions): Promise<GeneralResult>;

  onVoIPChatMembersChanged(listener: (result: OpenIdListResult) => void): void;
  /** Without a listener: removes all. */
  offVoIPChatMembersChanged(listener?: (result: OpenIdListResult) => void): void;
  onVoIPChatSpeakersChanged(listener: (result: OpenIdListResult) => void): void;
  offVoIPChatSpeakersChanged(listener?: (result: OpenIdListResult) => void): void;
  onVoIPChatInterrupted(listener: (result: GeneralResult) => void): void;
  offVoIPChatInterrupted(listener?: (result: GeneralResult) => void): void;
  onVoIPChatStateChanged(listener: (result: StateChangedResult) => void): void;
  offVoIPChatStateChanged(listener?: (result: StateChangedResult) => void): void;

  /** Inbound audio per member, from the receivers' getStats(). */
  getStatsByOpenId(): Promise<Record<string, ReceivedStats>>;
}

export declare function createVoIPClient(options: VoIPClientOptions): VoIPClient;
/** "https://host" → "wss://host/ws"; ws(s) URLs unchanged. */
export declare function signalingUrl(server?: string): string;
export default createVoIPClient;
