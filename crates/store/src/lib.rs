//! Durable state behind one trait, [`Store`]: registered apps, each user's current session
//! key, used nonces, the daily room quota, and each app's webhook URL with the outbox of
//! webhook deliveries ([`outbox`]), and room quota reservations. [`SqliteStore`] is the
//! single-node backend, [`RedisStore`] the one several nodes share; both pass the same
//! [`conformance`] suite (enable the `conformance` feature to reach it from another crate).
//! [`SealedStore`] wraps either so that session keys are encrypted at rest ([`secrets`]).
//!
//! Every method takes the current time as an argument where it needs one; no backend reads
//! the clock. Methods block: async callers run them on a blocking thread.

#[cfg(any(test, feature = "conformance"))]
pub mod conformance;
pub mod directory;
pub mod outbox;
mod redis_directory;
mod redis_store;
pub mod sealed;
pub mod secrets;
mod sqlite;
mod sqlite_directory;
mod sqlite_outbox;

pub use directory::{Heartbeat, NodeInfo, RoomDirectory, RoomOwner};
pub use outbox::{AttemptOutcome, Delivery, EnqueueOutcome, NewDelivery, OutboxCounts};
pub use redis_store::RedisStore;
pub use sealed::SealedStore;
pub use secrets::{app_secret_matches, secret_digest, Keyring, KeyringError};
pub use sqlite::SqliteStore;

use std::path::PathBuf;
use voipchat_proto::{AppId, OpenId, Secret};

/// Why a store operation failed. Callers usually report these as a system error; only
/// [`StoreError::AppExists`] is an answer about the request itself.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// [`Store::create_app`] with an app id that is already registered.
    #[error("app {0} already exists")]
    AppExists(AppId),
    /// A number does not fit the backend's integer type (SQLite: i64).
    #[error("{field} = {value} is out of range for the store")]
    OutOfRange { field: &'static str, value: u64 },
    /// The database has a schema version this build does not know (written by a newer
    /// voipchat, or not a voipchat database).
    #[error(
        "database schema version {found} is not supported (this build knows 0 to {supported})"
    )]
    UnsupportedSchema { found: i64, supported: i64 },
    /// The directory for the database file could not be created.
    #[error("cannot create directory {path}: {source}")]
    CreateDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The database file is no longer the one the store opened (deleted, or replaced by
    /// another file): what is written now would be lost at the next start.
    #[error("the database file {path} was removed or replaced while open: restart the server")]
    FileGone { path: PathBuf },
    /// A stored session key did not decrypt (its key is not in the keyring, or the value is
    /// damaged).
    #[error("session key: {0}")]
    Sealed(#[from] secrets::OpenError),
    /// The store cannot be reached now (Redis down or too slow): the request may be retried.
    #[error("the store is unavailable: {0}")]
    Unavailable(String),
    /// Redis answered with an error, or with data this build does not understand.
    #[error("redis: {0}")]
    Redis(String),
    /// An error from SQLite.
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
}

impl StoreError {
    /// Whether the store could not be reached (the request may succeed later): joins and
    /// backend calls then say "the store is unavailable" with -1000.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, StoreError::Unavailable(_))
    }
}

/// A registered app (a game), created by `voipchat app create`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AppRecord {
    pub app_id: AppId,
    /// A human name for operators; not used for any decision.
    pub name: String,
    /// The app secret the game's backend authenticates with. Given to
    /// [`Store::create_app`] / [`Store::set_app_secret`] in plain; stored and read back as its
    /// digest ([`secrets::secret_digest`]), so check a presented secret with
    /// [`secrets::app_secret_matches`]. The digest is also the key webhooks are signed with.
    pub secret: Secret,
    /// Whether members of this app may join rooms at all.
    pub voip_enabled: bool,
    /// Unix seconds; orders [`Store::list_apps`].
    pub created_at: u64,
    /// The app's own limits (the backend's `PATCH /api/v1/settings`).
    pub settings: AppSettings,
}

/// An app's own limits. `None`: the server's configured default applies, so a changed
/// default reaches every app that never chose its own.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AppSettings {
    /// Most members in one of its rooms.
    pub room_cap: Option<u32>,
    /// Rooms it may create per quota day.
    pub daily_room_quota: Option<u64>,
}

/// A change of [`AppSettings`], field by field: `None` leaves a field as it is, `Some(v)`
/// sets it to `v` (`Some(None)`: back to the server's default).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SettingsChange {
    pub room_cap: Option<Option<u32>>,
    pub daily_room_quota: Option<Option<u64>>,
}

impl AppSettings {
    /// These settings with `change` applied.
    pub fn changed(self, change: &SettingsChange) -> AppSettings {
        AppSettings {
            room_cap: change.room_cap.unwrap_or(self.room_cap),
            daily_room_quota: change.daily_room_quota.unwrap_or(self.daily_room_quota),
        }
    }
}

/// Who holds a quota reservation ([`Store::reserve_room_quota`]): the server process that
/// took it (`node`, stable across its restarts: the node id of its data directory or
/// config) and a token unique among that node's reservations. A node that dies holding
/// reservations gives them back at its next start ([`Store::release_node_reservations`]).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Reservation {
    pub node: String,
    pub token: String,
}

/// The answer of [`Store::take_room_quota`] and [`Store::reserve_room_quota`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QuotaDecision {
    /// Whether a room may be created.
    pub granted: bool,
    /// Rooms counted for the app and day after this decision (including this one if granted).
    pub used: u64,
}

/// Durable state of the service.
///
/// # Atomicity contract
///
/// Every method is one atomic, durable step: when it returns `Ok`, its effect is complete and
/// survives a restart of the process; when it returns `Err`, it had no effect. Concurrent
/// calls (from threads of one process, or from several processes or nodes sharing the
/// backend) behave as if run one after the other in some order. The per-method notes say
/// what that means where it matters:
///
/// - [`create_app`](Store::create_app): check-and-insert. Of two concurrent creations of one
///   app id exactly one succeeds; the other gets [`StoreError::AppExists`].
/// - [`set_voip_enabled`](Store::set_voip_enabled), [`set_app_secret`](Store::set_app_secret),
///   [`put_session_key`](Store::put_session_key): single-record writes; the last writer wins.
/// - [`update_app_settings`](Store::update_app_settings): read-modify-write of one record.
///   Concurrent changes of different fields all take effect; of the same field, the last
///   writer wins. What it returns is the record as this call left it.
/// - [`set_app_secret`](Store::set_app_secret) replaces: after it returns, no reader sees the
///   old secret again.
/// - [`delete_app`](Store::delete_app): the app and everything recorded for it (session keys,
///   nonces, room counts, webhook URL and deliveries) go in one step; no reader sees the app without its data or the data
///   without its app. Of two concurrent deletions of one app exactly one returns `true`.
/// - [`put_session_key`](Store::put_session_key) replaces: after it returns, no reader sees
///   the old key again.
/// - [`consume_nonce`](Store::consume_nonce): test-and-set. Of any number of concurrent calls
///   with the same (app, openId, nonce) while it is unexpired, exactly one returns `true`.
/// - [`take_room_quota`](Store::take_room_quota): compare-and-increment. The count never
///   exceeds `limit`, and exactly `min(calls, limit - used_before)` concurrent calls are
///   granted; no grant is lost and none is counted twice.
/// - [`reserve_room_quota`](Store::reserve_room_quota): compare-and-increment like
///   `take_room_quota`, and the reservation is recorded in the same step: no crash can leave
///   a unit counted without its reservation or the other way round. Reserved units count
///   against the limit (and in [`rooms_created`](Store::rooms_created)) until given back.
/// - [`confirm_room_quota`](Store::confirm_room_quota) and
///   [`release_room_quota`](Store::release_room_quota): test-and-set on one reservation. Of
///   any number of concurrent confirms and releases of one reservation exactly one returns
///   `true`; a release that returns `true` takes the unit back in the same step, so the
///   count is always `confirmed + pending` for every (app, day).
/// - [`release_node_reservations`](Store::release_node_reservations): every pending
///   reservation of the node is given back in one step. Called at a node's start, it makes
///   the count exact after a crash: it equals the rooms that were confirmed.
/// - [`reseal_session_keys`](Store::reseal_session_keys): per record a compare-and-set: a
///   key written by `put_session_key` meanwhile is never overwritten with a resealed old one.
/// - [`set_webhook_url`](Store::set_webhook_url): a single-record write (the last writer
///   wins); clearing the URL and discarding the app's pending deliveries are one step.
/// - [`enqueue_webhooks`](Store::enqueue_webhooks): the whole batch in one step, in order:
///   either every delivery of it is recorded (and the cap applied) or none is. Deliveries
///   are ordered by enqueue across all callers (a total order, the same for every reader).
/// - [`claim_webhooks`](Store::claim_webhooks): test-and-set per delivery. Of any number of
///   concurrent claims, each delivery is handed to at most one of them until its lease
///   runs out or [`finish_webhook`](Store::finish_webhook) reports on it.
/// - [`finish_webhook`](Store::finish_webhook): a single-record write; reporting on a
///   delivery that is gone (delivered, dropped at the cap, its app deleted or its URL
///   cleared) changes nothing and returns `false`.
/// - Reads ([`app`](Store::app), [`list_apps`](Store::list_apps),
///   [`session_key`](Store::session_key), [`rooms_created`](Store::rooms_created),
///   [`webhook_url`](Store::webhook_url), [`outbox_counts`](Store::outbox_counts),
///   [`rooms_created_between`](Store::rooms_created_between)) see every write that returned
///   before they started.
pub trait Store: Send + Sync + 'static {
    /// Answers a trivial read now: what `/readyz` asks, so a load balancer stops sending
    /// joins to a server whose database is gone.
    fn ready(&self) -> Result<(), StoreError>;

    /// Registers an app. Fails with [`StoreError::AppExists`] if its id is taken; atomic.
    fn create_app(&self, app: &AppRecord) -> Result<(), StoreError>;

    /// All apps, ordered by `created_at`, then `app_id`.
    fn list_apps(&self) -> Result<Vec<AppRecord>, StoreError>;

    /// One app, or `None`.
    fn app(&self, app_id: &AppId) -> Result<Option<AppRecord>, StoreError>;

    /// Turns VoIP on or off for an app. Returns `false` (and changes nothing) if there is no
    /// such app.
    fn set_voip_enabled(&self, app_id: &AppId, enabled: bool) -> Result<bool, StoreError>;

    /// Replaces the app's secret (rotation: the old one stops existing, so backend calls made
    /// with it fail from now on). Every other field is kept. Returns `false` (and changes
    /// nothing) if there is no such app.
    fn set_app_secret(&self, app_id: &AppId, secret: &Secret) -> Result<bool, StoreError>;

    /// Removes the app and everything recorded under its id: the session keys of its users,
    /// their used nonces and its daily room counts, as one atomic step. Other apps are not
    /// touched. Returns `false` (and changes nothing) if there is no such app. An app created
    /// later with the same id starts empty.
    fn delete_app(&self, app_id: &AppId) -> Result<bool, StoreError>;

    /// Replaces the user's one current session key (rotation: the old one stops existing).
    /// `now_unix` is recorded as the time of issue.
    fn put_session_key(
        &self,
        app_id: &AppId,
        open_id: &OpenId,
        key: &Secret,
        now_unix: u64,
    ) -> Result<(), StoreError>;

    /// The user's current session key, or `None` if none was ever issued.
    fn session_key(&self, app_id: &AppId, open_id: &OpenId) -> Result<Option<Secret>, StoreError>;

    /// Records `nonce` for (app, openId) unless it is already recorded and unexpired, as one
    /// atomic test-and-set. Returns `true` if the nonce is fresh (first use, or its previous
    /// use has expired), `false` if it is a replay.
    ///
    /// A recorded nonce is unexpired while `now_unix < expires_at_unix`; a fresh use stores
    /// the new `expires_at_unix`, a refused one leaves the old expiry alone. Each call also
    /// purges some expired nonces (a bounded amount of work), so the set stays small without
    /// a separate sweeper.
    fn consume_nonce(
        &self,
        app_id: &AppId,
        open_id: &OpenId,
        nonce: &str,
        expires_at_unix: u64,
        now_unix: u64,
    ) -> Result<bool, StoreError>;

    /// Whether `nonce` is recorded for (app, openId) and unexpired at `now_unix`. A read:
    /// a node that redirects a join to the room's owner leaves the nonce for the owner to
    /// spend, yet must refuse a replay itself.
    fn nonce_used(
        &self,
        app_id: &AppId,
        open_id: &OpenId,
        nonce: &str,
        now_unix: u64,
    ) -> Result<bool, StoreError>;

    /// Forgets a nonce that `consume_nonce` recorded, for a join refused after its nonce was
    /// spent (room full, quota used up): a refused join leaves no trace, and the same signed
    /// request may be tried again. Forgetting an unknown nonce is not an error.
    fn release_nonce(
        &self,
        app_id: &AppId,
        open_id: &OpenId,
        nonce: &str,
    ) -> Result<(), StoreError>;

    /// Atomically: if `rooms_created(app, day) < limit`, increments it and grants; else
    /// refuses and changes nothing. `day` is an opaque key such as `"2026-11-22"`; the caller
    /// decides the time zone and when a day ends.
    fn take_room_quota(
        &self,
        app_id: &AppId,
        day: &str,
        limit: u64,
    ) -> Result<QuotaDecision, StoreError>;

    /// Like [`take_room_quota`](Store::take_room_quota), but the unit is only reserved: it
    /// counts at once (so the limit holds), and is recorded under `reservation` until the
    /// room is confirmed ([`confirm_room_quota`](Store::confirm_room_quota): its first member
    /// was told it joined) or given back ([`release_room_quota`](Store::release_room_quota):
    /// the room never opened). The server reserves; `take_room_quota` is the one-step form.
    /// Reserving a token that is already pending changes nothing and refuses.
    fn reserve_room_quota(
        &self,
        app_id: &AppId,
        day: &str,
        limit: u64,
        reservation: &Reservation,
    ) -> Result<QuotaDecision, StoreError>;

    /// The room of this reservation opened: the unit stays counted for good. Returns `false`
    /// (and changes nothing) if the reservation is not pending (never made, already
    /// confirmed or released, or its app deleted).
    fn confirm_room_quota(&self, reservation: &Reservation) -> Result<bool, StoreError>;

    /// The room of this reservation never opened: its unit is taken back from the count of
    /// its day. Returns `false` (and changes nothing) if the reservation is not pending.
    fn release_room_quota(&self, reservation: &Reservation) -> Result<bool, StoreError>;

    /// Gives back every pending reservation of `node` (what a node that died left behind);
    /// returns how many. A node calls it at its start, before it takes any reservation.
    fn release_node_reservations(&self, node: &str) -> Result<u64, StoreError>;

    /// Rewrites stored session keys: for each one, `reseal` gets the value as stored and
    /// returns the value to store instead, or `None` to leave it. A key replaced by
    /// `put_session_key` while this runs keeps the new value. Returns how many changed.
    /// Used at start and by `voipchat rotate-key` to re-encrypt under the current key.
    fn reseal_session_keys(
        &self,
        reseal: &dyn Fn(&AppId, &OpenId, &str) -> Option<String>,
    ) -> Result<u64, StoreError>;

    /// Rooms granted to the app on `day` (0 if none).
    fn rooms_created(&self, app_id: &AppId, day: &str) -> Result<u64, StoreError>;

    /// Sets (`Some`) or clears (`None`) the app's webhook URL. The store does not judge the
    /// URL (the server validates it first). Clearing also discards the app's pending and
    /// failed deliveries, in the same step: a backend that switched its webhook off is not
    /// sent old events when it switches it on again. Returns `false` (and changes nothing)
    /// if there is no such app.
    fn set_webhook_url(&self, app_id: &AppId, url: Option<&str>) -> Result<bool, StoreError>;

    /// The app's webhook URL, or `None` (none set, or no such app).
    fn webhook_url(&self, app_id: &AppId) -> Result<Option<String>, StoreError>;

    /// Records a batch of deliveries, in order, as one atomic step. A delivery for an app
    /// without a webhook URL (or without an app) is not recorded: it is counted in
    /// [`EnqueueOutcome::no_webhook`]. After the batch, an app with more than
    /// `max_pending_per_app` pending deliveries loses its oldest pending ones down to that
    /// cap (the newest events are what a backend needs to know the rooms as they are now);
    /// the outcome says how many per app. `now_ms` (Unix milliseconds) makes each delivery
    /// due at once.
    fn enqueue_webhooks(
        &self,
        deliveries: &[NewDelivery],
        now_ms: u64,
        max_pending_per_app: u64,
    ) -> Result<EnqueueOutcome, StoreError>;

    /// Hands out up to `limit` deliveries to attempt now, oldest due first, and leases each
    /// until `now_ms + lease_ms` (a lease that runs out without a
    /// [`finish_webhook`](Store::finish_webhook), because the process died, makes the
    /// delivery claimable again: delivery is at least once).
    ///
    /// Only the head of each stream is handed out: the pending delivery with the lowest
    /// enqueue order among those of its (app, stream), and only when it is due
    /// (`next_attempt_ms <= now_ms`) and not leased. So a stream's deliveries are attempted
    /// one at a time, in order; one that waits for a retry holds back the rest of its
    /// stream. Failed (dead) deliveries hold back nothing. An app never has more than
    /// `per_app` leased deliveries at once, so one slow receiver cannot take every slot.
    fn claim_webhooks(
        &self,
        now_ms: u64,
        lease_ms: u64,
        per_app: u64,
        limit: u64,
    ) -> Result<Vec<Delivery>, StoreError>;

    /// Reports the attempt on a claimed delivery: delivered (it is removed), to be retried
    /// (attempts + 1, due at the given time), failed for good (attempts + 1, kept as dead,
    /// at most [`outbox::DEAD_KEPT_PER_APP`] per app, the oldest removed first) or released
    /// unattempted (the lease ends, attempts unchanged). Every outcome but `Delivered`
    /// ends the lease. Returns `false` (and changes nothing) if the delivery is not pending.
    fn finish_webhook(&self, id: &str, outcome: &AttemptOutcome) -> Result<bool, StoreError>;

    /// How many deliveries are pending and dead, over all apps.
    fn outbox_counts(&self) -> Result<OutboxCounts, StoreError>;

    /// The app's room counts of every day `first <= day <= last`, comparing day keys as
    /// strings (so `YYYY-MM-DD` keys compare as dates), oldest first. Days without a granted
    /// room are left out; none is empty when `first > last`.
    fn rooms_created_between(
        &self,
        app_id: &AppId,
        first: &str,
        last: &str,
    ) -> Result<Vec<(String, u64)>, StoreError>;

    /// Applies `change` to the app's settings in one atomic step and returns them as they
    /// are now; `None` (and nothing changed) if there is no such app. Other fields of the
    /// app are not touched.
    fn update_app_settings(
        &self,
        app_id: &AppId,
        change: &SettingsChange,
    ) -> Result<Option<AppSettings>, StoreError>;

    /// Room claims and node registrations, kept in this store ([`directory`]).
    fn directory(&self) -> &dyn RoomDirectory;
}
