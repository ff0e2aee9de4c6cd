// A `wx`-shaped face for a voipchat client, so mini-game code written for
// `wx.joinVoIPChat` and its friends runs unchanged in a browser build:
//
//   import { createVoIPClient } from './voipchat.js';
//   import { installWx } from './wx.js';
//   installWx(createVoIPClient({ server, appId, openId, sign }));
//   wx.joinVoIPChat({ groupId, signature, nonceStr, timeStamp, success() { … } });
//
// Every call keeps the wx shape (an options object with success / fail / complete, or a
// Promise when none is given); the client does the work, this file only binds it.

/** The wx multi-party VoIP calls a client answers (docs/js-api.md has each one). */
export const WX_CALLS = Object.freeze([
  'joinVoIPChat',
  'exitVoIPChat',
  'updateVoIPChatMuteConfig',
  'subscribeVoIPVideoMembers',
  'onVoIPChatMembersChanged',
  'offVoIPChatMembersChanged',
  'onVoIPChatSpeakersChanged',
  'offVoIPChatSpeakersChanged',
  'onVoIPChatInterrupted',
  'offVoIPChatInterrupted',
  'onVoIPChatStateChanged',
  'offVoIPChatStateChanged',
  'onVoIPVideoMembersChanged',
  'offVoIPVideoMembersChanged',
]);

/**
 * Puts the wx calls of `client` on `target` (default: `globalThis.wx`, created when there is
 * none) and returns `target`. Other keys of an existing `wx` object are left alone, so it can
 * share one with other shims. Calling it again with another client rebinds the calls.
 */
export function installWx(client, target) {
  if (!client || typeof client.joinVoIPChat !== 'function') {
    throw new TypeError('installWx needs a client made by createVoIPClient');
  }
  const wx = target || (globalThis.wx = globalThis.wx || {});
  for (const name of WX_CALLS) {
    const fn = client[name];
    if (typeof fn !== 'function') throw new TypeError(`installWx: the client has no ${name}`);
    wx[name] = fn.bind(client);
  }
  return wx;
}
