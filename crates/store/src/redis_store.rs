//! The backend several nodes share: one Redis server (docs/cluster.md).
//!
//! Every write is one Lua script, which Redis runs atomically (no other command runs
//! between its steps), so the atomicity contract of [`Store`] holds across nodes the way
//! `BEGIN IMMEDIATE` makes it hold across processes on SQLite. Times come from the caller,
//! as everywhere in the store: nonce expiry and webhook leases compare against the `now`
//! given, never Redis's clock, so a nonce is a member of its app's sorted set scored by its
//! expiry (set-if-absent among the unexpired, in one script) rather than a key with a TTL.
//!
//! Keys, all under one prefix (`vc:` unless given): `apps` (sorted set, score created_at),
//! `app:{id}` (hash), `sk:{id}` (hash openId → "issued_at key"), `sk-apps` (set), `n:{id}`
//! (sorted set of nonces by expiry), `q:{id}` (hash day → rooms), `r:{node}` (hash token →
//! "app\nday": pending reservations), `ra:{id}` (set "node\ntoken"), `wh` (hash app → URL),
//! and the outbox: `d:{id}` (hash per delivery), `os:{app}\n{stream}` (pending ids by seq),
//! `osets` (streams with pending deliveries), `op:{app}` / `od:{app}` (pending / dead ids),
//! `ob-apps`, `ob:seq`, `ob:deadseq`. A script builds keys from the prefix, so this runs on
//! one Redis (or a Sentinel-managed primary), not on Redis Cluster.
//!
//! Connections come from a small pool; each has connect, read and write timeouts, so a Redis
//! that is down or stuck gives [`StoreError::Unavailable`] within [`OP_TIMEOUT`], never a hang.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use redis::{FromRedisValue, Value};
use voipchat_proto::{AppId, OpenId, Secret};

use crate::outbox::{AttemptOutcome, EnqueueOutcome, NewDelivery, OutboxCounts, DEAD_KEPT_PER_APP};
use crate::secrets::secret_digest;
use crate::{
    AppRecord, AppSettings, Delivery, QuotaDecision, Reservation, SettingsChange, Store, StoreError,
};

/// Connecting, and each command's reply: past it the store is unavailable.
pub const OP_TIMEOUT: Duration = Duration::from_secs(2);
/// Idle connections kept.
const POOL_IDLE: usize = 16;

/// [`Store`] on a Redis server.
pub struct RedisStore {
    client: redis::Client,
    prefix: String,
    idle: Mutex<Vec<redis::Connection>>,
    /// Whatever must live as long as the store (a test's own redis-server).
    _guard: Option<Box<dyn Send + Sync>>,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

fn unavailable_or(e: redis::RedisError) -> StoreError {
    if e.is_io_error() || e.is_timeout() || e.is_connection_refusal() || e.is_connection_dropped() {
        StoreError::Unavailable(format!("redis: {e}"))
    } else {
        StoreError::Redis(e.to_string())
    }
}

impl RedisStore {
    /// Connects to `url` (`redis://host:port/db`), checking that Redis answers.
    pub fn open(url: &str) -> Result<RedisStore, StoreError> {
        Self::open_with_prefix(url, "vc:")
    }

    /// As [`open`](Self::open), with every key under `prefix` (tests give each store its own).
    pub fn open_with_prefix(url: &str, prefix: &str) -> Result<RedisStore, StoreError> {
        let client = redis::Client::open(url)
            .map_err(|e| StoreError::Redis(format!("invalid store URL {url:?}: {e}")))?;
        let store = RedisStore {
            client,
            prefix: prefix.to_string(),
            idle: Mutex::new(Vec::new()),
            _guard: None,
        };
        store.ready()?;
        Ok(store)
    }

    /// Keeps `guard` alive as long as the store (a test's redis-server process).
    pub fn keep_alive(mut self, guard: impl Send + Sync + 'static) -> RedisStore {
        self._guard = Some(Box::new(guard));
        self
    }

    /// Runs `f` on a pooled connection; a connection that failed is dropped, not pooled.
    /// When a pooled connection turns out dead (Redis restarted since it was last used),
    /// the pool is emptied and `f` runs once more on a new connection: a dead connection
    /// cannot have delivered the command, so the retry does not apply it twice, except
    /// when Redis died between running it and answering (then it is gone anyway).
    pub(crate) fn with<T>(
        &self,
        mut f: impl FnMut(&mut redis::Connection) -> redis::RedisResult<T>,
    ) -> Result<T, StoreError> {
        let pooled = self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
        if let Some(mut conn) = pooled {
            match f(&mut conn) {
                Ok(v) => {
                    self.put_back(conn);
                    return Ok(v);
                }
                Err(e) if e.is_connection_dropped() || e.is_io_error() => {
                    self.idle.lock().unwrap_or_else(|p| p.into_inner()).clear();
                }
                Err(e) => return Err(unavailable_or(e)),
            }
        }
        let mut conn = self
            .client
            .get_connection_with_timeout(OP_TIMEOUT)
            .map_err(unavailable_or)?;
        conn.set_read_timeout(Some(OP_TIMEOUT))
            .map_err(unavailable_or)?;
        conn.set_write_timeout(Some(OP_TIMEOUT))
            .map_err(unavailable_or)?;
        let v = f(&mut conn).map_err(unavailable_or)?;
        self.put_back(conn);
        Ok(v)
    }

    fn put_back(&self, conn: redis::Connection) {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() < POOL_IDLE {
            idle.push(conn);
        }
    }

    /// Runs a script with the prefix as ARGV[1], then `args`.
    pub(crate) fn script<T: FromRedisValue>(
        &self,
        body: &str,
        args: &[String],
    ) -> Result<T, StoreError> {
        let script = redis::Script::new(&format!("{LUA_LIB}\n{body}"));
        self.with(|c| {
            let mut inv = script.prepare_invoke();
            inv.arg(&self.prefix);
            for a in args {
                inv.arg(a);
            }
            inv.invoke(c)
        })
    }

    pub(crate) fn key(&self, parts: &[&str]) -> String {
        let mut k = self.prefix.clone();
        for p in parts {
            k.push_str(p);
        }
        k
    }
}

/// Helpers every script may call. ARGV[1] is the key prefix.
const LUA_LIB: &str = r#"
local P = ARGV[1]
local function split2(s)
  local i = string.find(s, "\n", 1, true)
  return string.sub(s, 1, i - 1), string.sub(s, i + 1)
end
-- Removes a pending delivery from every index and deletes it.
local function drop_pending(id)
  local d = P .. 'd:' .. id
  local f = redis.call('HMGET', d, 'app', 'stream')
  if not f[1] then return end
  local s = f[1] .. "\n" .. f[2]
  redis.call('ZREM', P .. 'os:' .. s, id)
  if redis.call('ZCARD', P .. 'os:' .. s) == 0 then redis.call('SREM', P .. 'osets', s) end
  redis.call('ZREM', P .. 'op:' .. f[1], id)
  redis.call('DEL', d)
end
-- Removes every delivery of an app, pending and dead.
local function clear_outbox(app)
  for _, id in ipairs(redis.call('ZRANGE', P .. 'op:' .. app, 0, -1)) do drop_pending(id) end
  for _, m in ipairs(redis.call('ZRANGE', P .. 'od:' .. app, 0, -1)) do
    redis.call('DEL', P .. 'd:' .. string.sub(m, 22))
  end
  redis.call('DEL', P .. 'op:' .. app, P .. 'od:' .. app)
  redis.call('SREM', P .. 'ob-apps', app)
end
-- Gives back one pending reservation: its unit comes off its day's count.
local function release(node, token)
  local v = redis.call('HGET', P .. 'r:' .. node, token)
  if not v then return 0 end
  redis.call('HDEL', P .. 'r:' .. node, token)
  local app, day = split2(v)
  redis.call('SREM', P .. 'ra:' .. app, node .. "\n" .. token)
  local used = tonumber(redis.call('HGET', P .. 'q:' .. app, day) or '0')
  if used > 0 then redis.call('HINCRBY', P .. 'q:' .. app, day, -1) end
  return 1
end
"#;

const CREATE_APP: &str = r#"
local id = ARGV[2]
local k = P .. 'app:' .. id
if redis.call('EXISTS', k) == 1 then return 0 end
redis.call('HSET', k, 'name', ARGV[3], 'secret', ARGV[4], 'voip', ARGV[5], 'created_at', ARGV[6])
if ARGV[7] ~= '' then redis.call('HSET', k, 'room_cap', ARGV[7]) end
if ARGV[8] ~= '' then redis.call('HSET', k, 'daily_room_quota', ARGV[8]) end
redis.call('ZADD', P .. 'apps', ARGV[6], id)
return 1
"#;

const LIST_APPS: &str = r#"
local out = {}
for _, id in ipairs(redis.call('ZRANGE', P .. 'apps', 0, -1)) do
  local h = redis.call('HGETALL', P .. 'app:' .. id)
  if #h > 0 then table.insert(out, id); table.insert(out, h) end
end
return out
"#;

const SET_FIELD: &str = r#"
local k = P .. 'app:' .. ARGV[2]
if redis.call('EXISTS', k) == 0 then return 0 end
redis.call('HSET', k, ARGV[3], ARGV[4])
return 1
"#;

const DELETE_APP: &str = r#"
local id = ARGV[2]
if redis.call('EXISTS', P .. 'app:' .. id) == 0 then return 0 end
redis.call('DEL', P .. 'app:' .. id, P .. 'sk:' .. id, P .. 'n:' .. id, P .. 'q:' .. id)
redis.call('ZREM', P .. 'apps', id)
redis.call('SREM', P .. 'sk-apps', id)
for _, m in ipairs(redis.call('SMEMBERS', P .. 'ra:' .. id)) do
  local node, token = split2(m)
  redis.call('HDEL', P .. 'r:' .. node, token)
end
redis.call('DEL', P .. 'ra:' .. id)
redis.call('HDEL', P .. 'wh', id)
clear_outbox(id)
return 1
"#;

const PUT_SESSION_KEY: &str = r#"
redis.call('HSET', P .. 'sk:' .. ARGV[2], ARGV[3], ARGV[4])
redis.call('SADD', P .. 'sk-apps', ARGV[2])
return 1
"#;

/// Compare-and-set of one session key: only if it is still what was read.
const RESEAL_ONE: &str = r#"
local k = P .. 'sk:' .. ARGV[2]
if redis.call('HGET', k, ARGV[3]) ~= ARGV[4] then return 0 end
redis.call('HSET', k, ARGV[3], ARGV[5])
return 1
"#;

const CONSUME_NONCE: &str = r#"
local k = P .. 'n:' .. ARGV[2]
redis.call('ZREMRANGEBYSCORE', k, '-inf', ARGV[5])
if redis.call('ZSCORE', k, ARGV[3]) then return 0 end
redis.call('ZADD', k, ARGV[4], ARGV[3])
return 1
"#;

/// ARGV: app, day, limit, then (node, token) for a reservation or nothing.
const TAKE_QUOTA: &str = r#"
local app, day, limit = ARGV[2], ARGV[3], tonumber(ARGV[4])
local q = P .. 'q:' .. app
local used = tonumber(redis.call('HGET', q, day) or '0')
if used >= limit then return {0, used} end
if ARGV[5] then
  local node, token = ARGV[5], ARGV[6]
  if redis.call('HSETNX', P .. 'r:' .. node, token, app .. "\n" .. day) == 0 then
    return {0, used}
  end
  redis.call('SADD', P .. 'ra:' .. app, node .. "\n" .. token)
end
return {1, redis.call('HINCRBY', q, day, 1)}
"#;

const CONFIRM: &str = r#"
local node, token = ARGV[2], ARGV[3]
local v = redis.call('HGET', P .. 'r:' .. node, token)
if not v then return 0 end
redis.call('HDEL', P .. 'r:' .. node, token)
local app = split2(v)
redis.call('SREM', P .. 'ra:' .. app, node .. "\n" .. token)
return 1
"#;

const RELEASE: &str = "return release(ARGV[2], ARGV[3])";

const RELEASE_NODE: &str = r#"
local n = 0
for _, token in ipairs(redis.call('HKEYS', P .. 'r:' .. ARGV[2])) do
  n = n + release(ARGV[2], token)
end
return n
"#;

const SET_WEBHOOK: &str = r#"
local app = ARGV[2]
if redis.call('EXISTS', P .. 'app:' .. app) == 0 then return 0 end
if ARGV[3] == '1' then
  redis.call('HSET', P .. 'wh', app, ARGV[4])
else
  redis.call('HDEL', P .. 'wh', app)
  clear_outbox(app)
end
return 1
"#;

/// ARGV: now, cap, then six fields per delivery.
const ENQUEUE: &str = r#"
local now, cap = ARGV[2], tonumber(ARGV[3])
local hooked, apps = {}, {}
local enqueued, skipped = 0, 0
local i = 4
while ARGV[i] do
  local id, app, stream = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  if hooked[app] == nil then
    hooked[app] = redis.call('HEXISTS', P .. 'wh', app) == 1
    if hooked[app] then table.insert(apps, app) end
  end
  if hooked[app] then
    if redis.call('EXISTS', P .. 'd:' .. id) == 1 then
      return redis.error_reply('delivery id ' .. id .. ' is already recorded')
    end
    local seq = redis.call('INCR', P .. 'ob:seq')
    redis.call('HSET', P .. 'd:' .. id, 'seq', seq, 'app', app, 'stream', stream,
      'event', ARGV[i + 3], 'body', ARGV[i + 4], 'created_at', ARGV[i + 5],
      'attempts', 0, 'next_at', now, 'leased', 0, 'dead', 0)
    local s = app .. "\n" .. stream
    redis.call('ZADD', P .. 'os:' .. s, seq, id)
    redis.call('SADD', P .. 'osets', s)
    redis.call('ZADD', P .. 'op:' .. app, seq, id)
    redis.call('SADD', P .. 'ob-apps', app)
    enqueued = enqueued + 1
  else
    skipped = skipped + 1
  end
  i = i + 6
end
table.sort(apps)
local dropped = {}
for _, app in ipairs(apps) do
  local pending = redis.call('ZCARD', P .. 'op:' .. app)
  if pending > cap then
    local ids = redis.call('ZRANGE', P .. 'op:' .. app, 0, pending - cap - 1)
    for _, id in ipairs(ids) do drop_pending(id) end
    table.insert(dropped, app)
    table.insert(dropped, #ids)
  end
end
return {enqueued, skipped, dropped}
"#;

/// ARGV: now, lease, per_app, limit.
const CLAIM: &str = r#"
local now, lease = tonumber(ARGV[2]), tonumber(ARGV[3])
local per_app, limit = tonumber(ARGV[4]), tonumber(ARGV[5])
local cands, busy = {}, {}
for _, s in ipairs(redis.call('SMEMBERS', P .. 'osets')) do
  local head = redis.call('ZRANGE', P .. 'os:' .. s, 0, 0)[1]
  if head then
    local f = redis.call('HMGET', P .. 'd:' .. head, 'app', 'next_at', 'leased', 'seq')
    local leased = tonumber(f[3])
    if leased > 0 and leased > now then
      busy[f[1]] = (busy[f[1]] or 0) + 1
    elseif tonumber(f[2]) <= now then
      table.insert(cands, {head, f[1], tonumber(f[2]), tonumber(f[4])})
    end
  end
end
table.sort(cands, function(a, b)
  if a[3] ~= b[3] then return a[3] < b[3] end
  return a[4] < b[4]
end)
local out = {}
for _, c in ipairs(cands) do
  if #out >= limit then break end
  local n = busy[c[2]] or 0
  if n < per_app then
    busy[c[2]] = n + 1
    local d = P .. 'd:' .. c[1]
    redis.call('HSET', d, 'leased', string.format('%.0f', now + lease))
    local f = redis.call('HMGET', d, 'app', 'stream', 'event', 'body', 'created_at', 'attempts')
    table.insert(out, {c[1], f[1], f[2], f[3], f[4], f[5], f[6]})
  end
end
return out
"#;

/// ARGV: id, kind (delivered, retry, dead, released), at, error, dead kept per app.
const FINISH: &str = r#"
local id, kind = ARGV[2], ARGV[3]
local d = P .. 'd:' .. id
local f = redis.call('HMGET', d, 'dead', 'app', 'seq')
if not f[1] or f[1] ~= '0' then return 0 end
if kind == 'delivered' then
  drop_pending(id)
elseif kind == 'retry' then
  redis.call('HINCRBY', d, 'attempts', 1)
  redis.call('HSET', d, 'next_at', ARGV[4], 'leased', 0, 'error', ARGV[5])
elseif kind == 'dead' then
  local app = f[2]
  local s = app .. "\n" .. redis.call('HGET', d, 'stream')
  redis.call('ZREM', P .. 'os:' .. s, id)
  if redis.call('ZCARD', P .. 'os:' .. s) == 0 then redis.call('SREM', P .. 'osets', s) end
  redis.call('ZREM', P .. 'op:' .. app, id)
  redis.call('HINCRBY', d, 'attempts', 1)
  redis.call('HSET', d, 'dead', 1, 'leased', 0, 'error', ARGV[5])
  -- Newest dead last: by dead time, then enqueue order (zero-padded seq, then the id).
  redis.call('ZADD', P .. 'od:' .. app, ARGV[4], string.format('%020d', tonumber(f[3])) .. ':' .. id)
  local kept = tonumber(ARGV[6])
  local n = redis.call('ZCARD', P .. 'od:' .. app)
  if n > kept then
    for _, m in ipairs(redis.call('ZRANGE', P .. 'od:' .. app, 0, n - kept - 1)) do
      redis.call('DEL', P .. 'd:' .. string.sub(m, 22))
    end
    redis.call('ZREMRANGEBYRANK', P .. 'od:' .. app, 0, n - kept - 1)
  end
else
  redis.call('HSET', d, 'leased', 0)
end
return 1
"#;

const COUNTS: &str = r#"
local pending, dead = 0, 0
for _, app in ipairs(redis.call('SMEMBERS', P .. 'ob-apps')) do
  pending = pending + redis.call('ZCARD', P .. 'op:' .. app)
  dead = dead + redis.call('ZCARD', P .. 'od:' .. app)
end
return {pending, dead}
"#;

/// ARGV: app, has_cap, cap, has_quota, quota ('' = the default).
const UPDATE_SETTINGS: &str = r#"
local k = P .. 'app:' .. ARGV[2]
if redis.call('EXISTS', k) == 0 then return {0} end
local function apply(has, field, v)
  if has == '1' then
    if v == '' then redis.call('HDEL', k, field) else redis.call('HSET', k, field, v) end
  end
end
apply(ARGV[3], 'room_cap', ARGV[4])
apply(ARGV[5], 'daily_room_quota', ARGV[6])
local f = redis.call('HMGET', k, 'room_cap', 'daily_room_quota')
return {1, f[1] or '', f[2] or ''}
"#;

/// A number that must round-trip exactly, within SQLite's range too (the backends agree).
fn exact(field: &'static str, value: u64) -> Result<String, StoreError> {
    if value > i64::MAX as u64 {
        return Err(StoreError::OutOfRange { field, value });
    }
    Ok(value.to_string())
}

fn opt(field: &'static str, v: Option<u64>) -> Result<String, StoreError> {
    v.map_or(Ok(String::new()), |v| exact(field, v))
}

fn bad(what: &str) -> StoreError {
    StoreError::Redis(format!("unexpected data in Redis: {what}"))
}

fn parse_app(id: &str, h: &HashMap<String, String>) -> Result<AppRecord, StoreError> {
    let num = |f: &str| -> Result<Option<u64>, StoreError> {
        h.get(f)
            .map(|v| v.parse::<u64>().map_err(|_| bad(f)))
            .transpose()
    };
    Ok(AppRecord {
        app_id: AppId::new(id),
        name: h.get("name").cloned().ok_or_else(|| bad("app name"))?,
        secret: Secret::new(h.get("secret").cloned().ok_or_else(|| bad("app secret"))?),
        voip_enabled: h.get("voip").map(String::as_str) == Some("1"),
        created_at: num("created_at")?.ok_or_else(|| bad("created_at"))?,
        settings: AppSettings {
            room_cap: num("room_cap")?
                .map(|v| u32::try_from(v).map_err(|_| bad("room_cap")))
                .transpose()?,
            daily_room_quota: num("daily_room_quota")?,
        },
    })
}

fn flat_map(v: &Value) -> Result<HashMap<String, String>, StoreError> {
    HashMap::<String, String>::from_redis_value(v).map_err(|e| bad(&e.to_string()))
}

impl Store for RedisStore {
    fn ready(&self) -> Result<(), StoreError> {
        let pong: String = self.with(|c| redis::cmd("PING").query(c))?;
        if pong != "PONG" {
            return Err(bad("PING"));
        }
        Ok(())
    }

    fn create_app(&self, app: &AppRecord) -> Result<(), StoreError> {
        // The sorted set's score is a double: exact up to 2^53.
        if app.created_at > (1u64 << 53) {
            return Err(StoreError::OutOfRange {
                field: "created_at",
                value: app.created_at,
            });
        }
        let created: i64 = self.script(
            CREATE_APP,
            &[
                app.app_id.as_str().to_string(),
                app.name.clone(),
                secret_digest(&app.secret).expose().to_string(),
                if app.voip_enabled { "1" } else { "0" }.to_string(),
                app.created_at.to_string(),
                app.settings
                    .room_cap
                    .map_or(String::new(), |c| c.to_string()),
                opt("daily_room_quota", app.settings.daily_room_quota)?,
            ],
        )?;
        if created == 0 {
            return Err(StoreError::AppExists(app.app_id.clone()));
        }
        Ok(())
    }

    fn list_apps(&self) -> Result<Vec<AppRecord>, StoreError> {
        let flat: Vec<Value> = self.script(LIST_APPS, &[])?;
        let mut apps = Vec::new();
        for pair in flat.chunks(2) {
            let [id, h] = pair else {
                return Err(bad("app list"));
            };
            let id = String::from_redis_value(id).map_err(|_| bad("app id"))?;
            apps.push(parse_app(&id, &flat_map(h)?)?);
        }
        Ok(apps)
    }

    fn app(&self, app_id: &AppId) -> Result<Option<AppRecord>, StoreError> {
        let key = self.key(&["app:", app_id.as_str()]);
        let h: HashMap<String, String> = self.with(|c| redis::cmd("HGETALL").arg(&key).query(c))?;
        if h.is_empty() {
            return Ok(None);
        }
        parse_app(app_id.as_str(), &h).map(Some)
    }

    fn set_voip_enabled(&self, app_id: &AppId, enabled: bool) -> Result<bool, StoreError> {
        let v = if enabled { "1" } else { "0" };
        let changed: i64 = self.script(
            SET_FIELD,
            &[app_id.as_str().into(), "voip".into(), v.into()],
        )?;
        Ok(changed == 1)
    }

    fn set_app_secret(&self, app_id: &AppId, secret: &Secret) -> Result<bool, StoreError> {
        let changed: i64 = self.script(
            SET_FIELD,
            &[
                app_id.as_str().into(),
                "secret".into(),
                secret_digest(secret).expose().to_string(),
            ],
        )?;
        Ok(changed == 1)
    }

    fn delete_app(&self, app_id: &AppId) -> Result<bool, StoreError> {
        let deleted: i64 = self.script(DELETE_APP, &[app_id.as_str().into()])?;
        Ok(deleted == 1)
    }

    fn put_session_key(
        &self,
        app_id: &AppId,
        open_id: &OpenId,
        key: &Secret,
        now_unix: u64,
    ) -> Result<(), StoreError> {
        let _: i64 = self.script(
            PUT_SESSION_KEY,
            &[
                app_id.as_str().into(),
                open_id.as_str().into(),
                format!("{now_unix} {}", key.expose()),
            ],
        )?;
        Ok(())
    }

    fn session_key(&self, app_id: &AppId, open_id: &OpenId) -> Result<Option<Secret>, StoreError> {
        let key = self.key(&["sk:", app_id.as_str()]);
        let v: Option<String> =
            self.with(|c| redis::cmd("HGET").arg(&key).arg(open_id.as_str()).query(c))?;
        match v {
            None => Ok(None),
            Some(v) => {
                let (_, k) = v.split_once(' ').ok_or_else(|| bad("session key"))?;
                Ok(Some(Secret::new(k)))
            }
        }
    }

    fn consume_nonce(
        &self,
        app_id: &AppId,
        open_id: &OpenId,
        nonce: &str,
        expires_at_unix: u64,
        now_unix: u64,
    ) -> Result<bool, StoreError> {
        // Length-prefixed, so no openId/nonce pair can be read as another.
        let member = format!("{}:{}{nonce}", open_id.as_str().len(), open_id.as_str());
        let fresh: i64 = self.script(
            CONSUME_NONCE,
            &[
                app_id.as_str().into(),
                member,
                expires_at_unix.to_string(),
                now_unix.to_string(),
            ],
        )?;
        Ok(fresh == 1)
    }

    fn nonce_used(
        &self,
        app_id: &AppId,
        open_id: &OpenId,
        nonce: &str,
        now_unix: u64,
    ) -> Result<bool, StoreError> {
        let member = format!("{}:{}{nonce}", open_id.as_str().len(), open_id.as_str());
        let key = self.key(&["n:", app_id.as_str()]);
        let expires: Option<f64> =
            self.with(|c| redis::cmd("ZSCORE").arg(&key).arg(&member).query(c))?;
        Ok(expires.is_some_and(|e| e > now_unix as f64))
    }

    fn directory(&self) -> &dyn crate::RoomDirectory {
        self
    }

    fn release_nonce(
        &self,
        app_id: &AppId,
        open_id: &OpenId,
        nonce: &str,
    ) -> Result<(), StoreError> {
        let member = format!("{}:{}{nonce}", open_id.as_str().len(), open_id.as_str());
        let key = self.key(&["n:", app_id.as_str()]);
        let _: i64 = self.with(|c| redis::cmd("ZREM").arg(&key).arg(&member).query(c))?;
        Ok(())
    }

    fn take_room_quota(
        &self,
        app_id: &AppId,
        day: &str,
        limit: u64,
    ) -> Result<QuotaDecision, StoreError> {
        self.quota(app_id, day, limit, None)
    }

    fn reserve_room_quota(
        &self,
        app_id: &AppId,
        day: &str,
        limit: u64,
        r: &Reservation,
    ) -> Result<QuotaDecision, StoreError> {
        self.quota(app_id, day, limit, Some(r))
    }

    fn confirm_room_quota(&self, r: &Reservation) -> Result<bool, StoreError> {
        let n: i64 = self.script(CONFIRM, &[r.node.clone(), r.token.clone()])?;
        Ok(n == 1)
    }

    fn release_room_quota(&self, r: &Reservation) -> Result<bool, StoreError> {
        let n: i64 = self.script(RELEASE, &[r.node.clone(), r.token.clone()])?;
        Ok(n == 1)
    }

    fn release_node_reservations(&self, node: &str) -> Result<u64, StoreError> {
        let n: u64 = self.script(RELEASE_NODE, &[node.to_string()])?;
        Ok(n)
    }

    fn reseal_session_keys(
        &self,
        reseal: &dyn Fn(&AppId, &OpenId, &str) -> Option<String>,
    ) -> Result<u64, StoreError> {
        let apps_key = self.key(&["sk-apps"]);
        let apps: Vec<String> = self.with(|c| redis::cmd("SMEMBERS").arg(&apps_key).query(c))?;
        let mut changed = 0;
        for app in apps {
            let key = self.key(&["sk:", &app]);
            let all: HashMap<String, String> =
                self.with(|c| redis::cmd("HGETALL").arg(&key).query(c))?;
            let app_id = AppId::new(&app);
            for (user, v) in all {
                let (issued, stored) = v.split_once(' ').ok_or_else(|| bad("session key"))?;
                if let Some(new) = reseal(&app_id, &OpenId::new(&user), stored) {
                    let n: i64 = self.script(
                        RESEAL_ONE,
                        &[
                            app.clone(),
                            user.clone(),
                            v.clone(),
                            format!("{issued} {new}"),
                        ],
                    )?;
                    changed += n as u64;
                }
            }
        }
        Ok(changed)
    }

    fn rooms_created(&self, app_id: &AppId, day: &str) -> Result<u64, StoreError> {
        let key = self.key(&["q:", app_id.as_str()]);
        let v: Option<u64> = self.with(|c| redis::cmd("HGET").arg(&key).arg(day).query(c))?;
        Ok(v.unwrap_or(0))
    }

    fn set_webhook_url(&self, app_id: &AppId, url: Option<&str>) -> Result<bool, StoreError> {
        let n: i64 = self.script(
            SET_WEBHOOK,
            &[
                app_id.as_str().into(),
                if url.is_some() { "1" } else { "0" }.into(),
                url.unwrap_or("").into(),
            ],
        )?;
        Ok(n == 1)
    }

    fn webhook_url(&self, app_id: &AppId) -> Result<Option<String>, StoreError> {
        let key = self.key(&["wh"]);
        self.with(|c| redis::cmd("HGET").arg(&key).arg(app_id.as_str()).query(c))
    }

    fn enqueue_webhooks(
        &self,
        deliveries: &[NewDelivery],
        now_ms: u64,
        max_pending_per_app: u64,
    ) -> Result<EnqueueOutcome, StoreError> {
        let mut args = vec![now_ms.to_string(), max_pending_per_app.to_string()];
        for d in deliveries {
            args.extend([
                d.id.clone(),
                d.app_id.as_str().to_string(),
                d.stream.clone(),
                d.event.clone(),
                d.body.clone(),
                exact("created_at", d.created_at)?,
            ]);
        }
        let (enqueued, no_webhook, dropped): (u64, u64, Vec<Value>) =
            self.script(ENQUEUE, &args)?;
        let mut outcome = EnqueueOutcome {
            enqueued,
            no_webhook,
            dropped: Vec::new(),
        };
        for pair in dropped.chunks(2) {
            let [app, n] = pair else {
                return Err(bad("enqueue outcome"));
            };
            outcome.dropped.push((
                AppId::new(String::from_redis_value(app).map_err(|_| bad("app"))?),
                u64::from_redis_value(n).map_err(|_| bad("count"))?,
            ));
        }
        Ok(outcome)
    }

    fn claim_webhooks(
        &self,
        now_ms: u64,
        lease_ms: u64,
        per_app: u64,
        limit: u64,
    ) -> Result<Vec<Delivery>, StoreError> {
        let rows: Vec<(String, String, String, String, String, u64, u32)> = self.script(
            CLAIM,
            &[
                now_ms.to_string(),
                lease_ms.to_string(),
                per_app.to_string(),
                limit.to_string(),
            ],
        )?;
        Ok(rows
            .into_iter()
            .map(
                |(id, app, stream, event, body, created_at, attempts)| Delivery {
                    id,
                    app_id: AppId::new(app),
                    stream,
                    event,
                    body,
                    created_at,
                    attempts,
                },
            )
            .collect())
    }

    fn finish_webhook(&self, id: &str, outcome: &AttemptOutcome) -> Result<bool, StoreError> {
        let (kind, at, error) = match outcome {
            AttemptOutcome::Delivered => ("delivered", 0, ""),
            AttemptOutcome::Retry { at_ms, error } => ("retry", *at_ms, error.as_str()),
            AttemptOutcome::Dead { at_ms, error } => ("dead", *at_ms, error.as_str()),
            AttemptOutcome::Released => ("released", 0, ""),
        };
        let n: i64 = self.script(
            FINISH,
            &[
                id.to_string(),
                kind.to_string(),
                at.to_string(),
                error.to_string(),
                DEAD_KEPT_PER_APP.to_string(),
            ],
        )?;
        Ok(n == 1)
    }

    fn outbox_counts(&self) -> Result<OutboxCounts, StoreError> {
        let (pending, dead): (u64, u64) = self.script(COUNTS, &[])?;
        Ok(OutboxCounts { pending, dead })
    }

    fn rooms_created_between(
        &self,
        app_id: &AppId,
        first: &str,
        last: &str,
    ) -> Result<Vec<(String, u64)>, StoreError> {
        let key = self.key(&["q:", app_id.as_str()]);
        let all: HashMap<String, u64> = self.with(|c| redis::cmd("HGETALL").arg(&key).query(c))?;
        let mut days: Vec<(String, u64)> = all
            .into_iter()
            .filter(|(d, _)| d.as_str() >= first && d.as_str() <= last)
            .collect();
        days.sort();
        Ok(days)
    }

    fn update_app_settings(
        &self,
        app_id: &AppId,
        change: &SettingsChange,
    ) -> Result<Option<AppSettings>, StoreError> {
        let quota = match change.daily_room_quota {
            Some(v) => Some(opt("daily_room_quota", v)?),
            None => None,
        };
        let reply: Vec<String> = self.script(
            UPDATE_SETTINGS,
            &[
                app_id.as_str().into(),
                if change.room_cap.is_some() { "1" } else { "0" }.into(),
                change
                    .room_cap
                    .flatten()
                    .map_or(String::new(), |c| c.to_string()),
                if quota.is_some() { "1" } else { "0" }.into(),
                quota.unwrap_or_default(),
            ],
        )?;
        match reply.as_slice() {
            [found] if found == "0" => Ok(None),
            [_, cap, quota] => Ok(Some(AppSettings {
                room_cap: (!cap.is_empty())
                    .then(|| cap.parse().map_err(|_| bad("room_cap")))
                    .transpose()?,
                daily_room_quota: (!quota.is_empty())
                    .then(|| quota.parse().map_err(|_| bad("daily_room_quota")))
                    .transpose()?,
            })),
            _ => Err(bad("settings")),
        }
    }
}

impl RedisStore {
    fn quota(
        &self,
        app_id: &AppId,
        day: &str,
        limit: u64,
        r: Option<&Reservation>,
    ) -> Result<QuotaDecision, StoreError> {
        // As on SQLite: counts live within i64, a larger limit is no limit.
        let limit = limit.min(i64::MAX as u64);
        let mut args = vec![
            app_id.as_str().to_string(),
            day.to_string(),
            limit.to_string(),
        ];
        if let Some(r) = r {
            args.push(r.node.clone());
            args.push(r.token.clone());
        }
        let (granted, used): (i64, u64) = self.script(TAKE_QUOTA, &args)?;
        Ok(QuotaDecision {
            granted: granted == 1,
            used,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A private redis-server on 127.0.0.1, without persistence, stopped when dropped.
    pub(crate) struct TestRedis {
        child: std::process::Child,
        pub url: String,
    }

    impl TestRedis {
        /// On a free port of its own. A port found free can be taken by another test's
        /// server before this one binds it (then this one exits and the other answers): the
        /// answering server's process id tells, and another port is tried.
        pub(crate) fn start() -> TestRedis {
            for _ in 0..5 {
                let port = std::net::TcpListener::bind("127.0.0.1:0")
                    .and_then(|l| l.local_addr())
                    .expect("a free port")
                    .port();
                if let Some(redis) = Self::try_start_on(port) {
                    return redis;
                }
            }
            panic!("redis-server found no free port in 5 tries");
        }

        pub(crate) fn start_on(port: u16) -> TestRedis {
            Self::try_start_on(port)
                .unwrap_or_else(|| panic!("redis-server could not take port {port}"))
        }

        fn try_start_on(port: u16) -> Option<TestRedis> {
            let child = std::process::Command::new("redis-server")
                .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
                .args([
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    "--protected-mode",
                    "yes",
                ])
                .stdout(std::process::Stdio::null())
                .spawn()
                .expect("redis-server (Debian package redis-server) runs");
            let url = format!("redis://127.0.0.1:{port}/0");
            let mut redis = TestRedis { child, url };
            let deadline = std::time::Instant::now() + Duration::from_secs(10);
            loop {
                if let Ok(Some(_)) = redis.child.try_wait() {
                    return None;
                }
                if let Some(pid) = answering_pid(&redis.url) {
                    // Dropping a server that is not the one answering stops it.
                    return (pid == redis.child.id()).then_some(redis);
                }
                assert!(std::time::Instant::now() < deadline, "redis-server starts");
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }

    /// The process id of the server answering at `url` (INFO server), if one answers.
    fn answering_pid(url: &str) -> Option<u32> {
        let client = redis::Client::open(url).ok()?;
        let mut conn = client
            .get_connection_with_timeout(Duration::from_secs(2))
            .ok()?;
        let info: String = redis::cmd("INFO").arg("server").query(&mut conn).ok()?;
        info.lines()
            .find_map(|l| l.strip_prefix("process_id:"))
            .and_then(|p| p.trim().parse().ok())
    }

    impl Drop for TestRedis {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }

    /// Tests start servers in parallel: a port another test's server holds is never taken
    /// for this test's own (they would share their keys).
    #[test]
    fn a_port_another_server_holds_is_not_taken_for_a_new_one() {
        let first = TestRedis::start();
        let port: u16 = first
            .url
            .rsplit(':')
            .next()
            .unwrap()
            .split('/')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        assert!(TestRedis::try_start_on(port).is_none());
        assert!(
            answering_pid(&first.url).is_some(),
            "the first one still answers"
        );
    }

    fn fresh() -> Box<dyn Store> {
        let redis = TestRedis::start();
        let store = RedisStore::open(&redis.url).expect("connect");
        Box::new(store.keep_alive(redis))
    }

    mod conformance {
        use super::*;
        crate::store_conformance_tests!(fresh);
    }

    #[test]
    fn a_redis_that_is_down_is_unavailable_within_the_timeout() {
        let redis = TestRedis::start();
        let store = RedisStore::open(&redis.url).expect("connect");
        store
            .create_app(&AppRecord {
                app_id: AppId::new("wx1"),
                name: "n".into(),
                secret: Secret::new("s"),
                voip_enabled: true,
                created_at: 1,
                settings: AppSettings::default(),
            })
            .expect("create");
        drop(redis);
        let started = std::time::Instant::now();
        let err = store.app(&AppId::new("wx1")).expect_err("redis is gone");
        assert!(err.is_unavailable(), "{err}");
        assert!(
            err.to_string().starts_with("the store is unavailable"),
            "{err}"
        );
        assert!(
            started.elapsed() < OP_TIMEOUT * 2,
            "{:?}",
            started.elapsed()
        );
        let err = RedisStore::open("redis://127.0.0.1:1/0").expect_err("nothing listens");
        assert!(err.is_unavailable(), "{err}");
    }

    #[test]
    fn a_restarted_redis_is_used_again_at_once() {
        let redis = TestRedis::start();
        let port: u16 = redis
            .url
            .rsplit(':')
            .next()
            .unwrap()
            .trim_end_matches("/0")
            .parse()
            .unwrap();
        let store = RedisStore::open(&redis.url).expect("connect");
        let a = AppId::new("wx1");
        for _ in 0..3 {
            store.take_room_quota(&a, "d", 10).expect("take");
        }
        drop(redis);
        let _back = TestRedis::start_on(port);
        // The pooled connection is dead; the call still succeeds, on a new one.
        assert_eq!(store.rooms_created(&a, "d").expect("after the restart"), 0);
        assert!(store.take_room_quota(&a, "d", 10).expect("take").granted);
    }

    #[test]
    fn data_survives_a_new_connection() {
        let redis = TestRedis::start();
        let a = AppId::new("wx1");
        {
            let store = RedisStore::open(&redis.url).expect("connect");
            assert!(store.take_room_quota(&a, "d", 5).expect("take").granted);
        }
        let store = RedisStore::open(&redis.url).expect("connect again");
        assert_eq!(store.rooms_created(&a, "d").expect("count"), 1);
    }
}
