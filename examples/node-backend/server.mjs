// An example game backend for voipchat: Node 20, standard library only (node:http, fetch).
//
//   GET  /                       the game's page (../page/index.html, shared by the examples)
//   GET  /my-backend/config      {voipchatUrl, appId}: what the page needs to load the SDK
//   POST /my-backend/voip-sign   {groupId, openId} → {nonceStr, timeStamp, signature}
//
// The signing route makes sure the player has a session key at voipchat (POST
// /api/v1/session-key, once per player) and has voipchat sign the join (POST
// /api/v1/voip-sign), both with HTTP Basic appId:appSecret; the key never leaves voipchat.
//
// Who the player is: a real backend knows it from its own login session (a cookie) and must
// not believe the page. This example takes `openId` from the JSON body, or from an
// `X-Open-Id` header when the body has none.
//
// Configuration (env): VOIPCHAT_URL (default http://127.0.0.1:7880; the browsers load the SDK
// from it too), APP_ID, APP_SECRET (from `voipchat app create`), PORT (default 8080; 0 picks a
// free one), HOST (default 127.0.0.1).

import http from 'node:http';
import { readFile } from 'node:fs/promises';

const VOIPCHAT_URL = (process.env.VOIPCHAT_URL || 'http://127.0.0.1:7880').replace(/\/+$/, '');
const { APP_ID, APP_SECRET } = process.env;
const PORT = Number(process.env.PORT ?? 8080);
const HOST = process.env.HOST || '127.0.0.1';
if (!APP_ID || !APP_SECRET) {
  console.error('set APP_ID and APP_SECRET (printed by `voipchat app create`)');
  process.exit(2);
}
const AUTH = 'Basic ' + Buffer.from(`${APP_ID}:${APP_SECRET}`).toString('base64');
const PAGE = await readFile(new URL('../page/index.html', import.meta.url));

/** POSTs to voipchat's backend API; resolves with {status, body}. */
async function voipchat(path, payload) {
  const res = await fetch(VOIPCHAT_URL + path, {
    method: 'POST',
    headers: { authorization: AUTH, 'content-type': 'application/json' },
    body: JSON.stringify(payload),
    signal: AbortSignal.timeout(10000),
  });
  const body = await res.json().catch(() => ({ errCode: -1000, errMsg: `api:fail HTTP ${res.status}` }));
  return { status: res.status, body };
}

/** openId → Promise of its session key request: one per player, even for concurrent joins. */
const sessionKeys = new Map();

function ensureSessionKey(openId) {
  if (!sessionKeys.has(openId)) {
    const issued = voipchat('/api/v1/session-key', { openId }).then(({ status, body }) => {
      if (status !== 200) throw Object.assign(new Error('session-key failed'), { status, body });
      // voipchat keeps the key and signs with it; a backend that signs itself would keep
      // body.sessionKey (and never send it to the page).
      console.log(`session key issued for ${openId}`);
    });
    sessionKeys.set(openId, issued);
    issued.catch(() => sessionKeys.delete(openId));
  }
  return sessionKeys.get(openId);
}

async function voipSign(openId, groupId) {
  await ensureSessionKey(openId);
  // No nonce or timestamp: voipchat picks a fresh nonce and its current time.
  let r = await voipchat('/api/v1/voip-sign', { openId, groupId });
  if (r.status === 404) {
    // voipchat has no key for the player (its data was reset): issue one again, once.
    sessionKeys.delete(openId);
    await ensureSessionKey(openId);
    r = await voipchat('/api/v1/voip-sign', { openId, groupId });
  }
  if (r.status !== 200) return r;
  const { nonceStr, timeStamp, signature } = r.body;
  return { status: 200, body: { nonceStr, timeStamp, signature } };
}

function send(res, status, body, type = 'application/json') {
  const data = type === 'application/json' ? JSON.stringify(body) : body;
  res.writeHead(status, { 'content-type': type, 'cache-control': 'no-store' });
  res.end(data);
}

function readBody(req, limit = 16 * 1024) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    let size = 0;
    req.on('data', (c) => {
      size += c.length;
      if (size > limit) {
        reject(new Error('body too large'));
        req.destroy();
      } else chunks.push(c);
    });
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

const server = http.createServer(async (req, res) => {
  const { pathname } = new URL(req.url, 'http://localhost');
  try {
    if (req.method === 'GET' && (pathname === '/' || pathname === '/index.html')) {
      return send(res, 200, PAGE, 'text/html; charset=utf-8');
    }
    if (req.method === 'GET' && pathname === '/favicon.ico') {
      res.writeHead(204).end();
      return;
    }
    if (req.method === 'GET' && pathname === '/my-backend/config') {
      return send(res, 200, { voipchatUrl: VOIPCHAT_URL, appId: APP_ID });
    }
    if (req.method === 'POST' && pathname === '/my-backend/voip-sign') {
      let body;
      try {
        body = JSON.parse((await readBody(req)) || '{}');
      } catch {
        return send(res, 400, { error: 'expected a JSON body {groupId, openId}' });
      }
      const openId = typeof body.openId === 'string' && body.openId ? body.openId : req.headers['x-open-id'];
      const { groupId } = body;
      if (typeof openId !== 'string' || !openId || typeof groupId !== 'string' || !groupId) {
        return send(res, 400, { error: 'groupId and the player (openId in the body, or X-Open-Id) are required' });
      }
      const r = await voipSign(openId, groupId);
      return send(res, r.status, r.body);
    }
    send(res, 404, { error: 'not found' });
  } catch (e) {
    console.error('request failed:', e.message, e.body ? JSON.stringify(e.body) : '');
    if (!res.headersSent) send(res, e.status || 502, e.body || { error: `voipchat unreachable: ${e.message}` });
  }
});

server.listen(PORT, HOST, () => {
  const { address, port } = server.address();
  console.log(`listening on http://${address}:${port}/ (voipchat at ${VOIPCHAT_URL}, app ${APP_ID})`);
});
for (const signal of ['SIGINT', 'SIGTERM']) {
  process.on(signal, () => {
    server.close(() => process.exit(0));
    server.closeAllConnections();
  });
}
