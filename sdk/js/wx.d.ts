// Types of wx.js: the `wx`-shaped face of a voipchat client.
import type { VoIPClient } from './voipchat.js';

/** The wx multi-party VoIP calls a client answers. */
export declare const WX_CALLS: readonly string[];

/** The wx calls, bound to one client. */
export type WxVoIP = Pick<
  VoIPClient,
  | 'joinVoIPChat'
  | 'exitVoIPChat'
  | 'updateVoIPChatMuteConfig'
  | 'subscribeVoIPVideoMembers'
  | 'onVoIPChatMembersChanged'
  | 'offVoIPChatMembersChanged'
  | 'onVoIPChatSpeakersChanged'
  | 'offVoIPChatSpeakersChanged'
  | 'onVoIPChatInterrupted'
  | 'offVoIPChatInterrupted'
  | 'onVoIPChatStateChanged'
  | 'offVoIPChatStateChanged'
  | 'onVoIPVideoMembersChanged'
  | 'offVoIPVideoMembersChanged'
>;

/**
 * Puts the wx calls of `client` on `target` (default `globalThis.wx`, created if missing)
 * and returns it; other keys of an existing object are left alone.
 */
export declare function installWx<T extends object = Record<string, unknown>>(client: VoIPClient, target?: T): T & WxVoIP;

declare global {
  // The object installWx fills when no target is given.
  // eslint-disable-next-line no-var
  var wx: (Record<string, unknown> & Partial<WxVoIP>) | undefined;
}
