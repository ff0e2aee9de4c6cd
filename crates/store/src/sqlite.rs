//! The single-node backend: one SQLite file.
//!
//! Settings, and why:
//! - WAL journal: readers do not block the writer, and a commit is one append.
//! - `synchronous = FULL`: each commit is fsynced before it returns, so a granted room or a
//!   consumed nonce survives not only a process crash (NORMAL would do for that) but also a
//!   power cut or kernel panic. Writes are rare (a login, a join), so the fsync is cheap
//!   compared to what losing one costs: a replayed nonce or a quota handed out twice.
//! - `busy_timeout`: another process holding the write lock (an operator running
//!   `voipchat app …` against a live server) is waited for instead of failing at once.
//! - Schema version in `PRAGMA user_version`, migrated forward on open.
//! - Every write is one transaction; the read-modify-write ones (`consume_nonce`,
//!   `take_room_quota`) use `BEGIN IMMEDIATE`, which takes the write lock first, so they are
//!   atomic across processes as well as across the threads of this one.

use crate::outbox::{AttemptOutcome, EnqueueOutcome, NewDelivery, OutboxCounts};
use crate::{
    sqlite_outbox, AppRecord, AppSettings, Delivery, QuotaDecision, Reservation, SettingsChange,
    Store, StoreError,
};
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;
use voipchat_proto::{AppId, OpenId, Secret};

/// How long a call waits for another connection's write lock before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Most expired nonces one `consume_nonce` call deletes. Each join purges up to this many,
/// so the table stays near the number of nonces used within one expiry window.
const NONCE_PURGE_BATCH: i64 = 64;

/// Schema migrations; entry `i` takes the schema from version `i` to `i + 1`. Each runs in
/// the one transaction of [`migrate`], with the code steps of [`CODE_MIGRATIONS`].
const MIGRATIONS: &[&str] = &[
    // Version 1.
    "CREATE TABLE apps (
        app_id       TEXT    NOT NULL PRIMARY KEY,
        name         TEXT    NOT NULL,
        secret       TEXT    NOT NULL,
        voip_enabled INTEGER NOT NULL,
        created_at   INTEGER NOT NULL
    ) STRICT;
    CREATE INDEX apps_by_created_at ON apps (created_at, app_id);

    CREATE TABLE session_keys (
        app_id      TEXT    NOT NULL,
        open_id     TEXT    NOT NULL,
        session_key TEXT    NOT NULL,
        issued_at   INTEGER NOT NULL,
        PRIMARY KEY (app_id, open_id)
    ) STRICT;

    CREATE TABLE nonces (
        app_id     TEXT    NOT NULL,
        open_id    TEXT    NOT NULL,
        nonce      TEXT    NOT NULL,
        expires_at INTEGER NOT NULL,
        PRIMARY KEY (app_id, open_id, nonce)
    ) STRICT;
    CREATE INDEX nonces_by_expiry ON nonces (expires_at);

    CREATE TABLE room_quota (
        app_id        TEXT    NOT NULL,
        day           TEXT    NOT NULL,
        rooms_created INTEGER NOT NULL,
        PRIMARY KEY (app_id, day)
    ) STRICT;",
    // Version 2: webhooks (crate::sqlite_outbox has the queries).
    crate::sqlite_outbox::MIGRATION,
    // Version 3: an app's own limits; NULL is the server's default.
    "ALTER TABLE apps ADD COLUMN room_cap INTEGER;
    ALTER TABLE apps ADD COLUMN daily_room_quota INTEGER;",
    // Version 4: quota reservations, pending until their room opens (Store::reserve_room_quota).
    "CREATE TABLE quota_reservations (
        node   TEXT NOT NULL,
        token  TEXT NOT NULL,
        app_id TEXT NOT NULL,
        day    TEXT NOT NULL,
        PRIMARY KEY (node, token)
    ) STRICT;
    CREATE INDEX quota_reservations_by_app ON quota_reservations (app_id);",
    // Version 5: app secrets become digests (the code step below rewrites the rows).
    "",
    // Version 6: the room directory (crate::sqlite_directory has the queries).
    crate::sqlite_directory::MIGRATION,
];

/// A migration step in code, run inside the migration's transaction.
type CodeStep = fn(&rusqlite::Transaction<'_>) -> Result<(), StoreError>;

/// Steps in code after the SQL of a version: (version, step).
const CODE_MIGRATIONS: &[(usize, CodeStep)] = &[(5, digest_plain_secrets)];

/// Version 5: each app secret stored in plain by an older voipchat becomes its digest.
fn digest_plain_secrets(tx: &rusqlite::Transaction<'_>) -> Result<(), StoreError> {
    let rows: Vec<(String, String)> = tx
        .prepare("SELECT app_id, secret FROM apps")?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<Result<_, _>>()?;
    for (app_id, secret) in rows {
        if !crate::secrets::is_digest(&secret) {
            let digest = crate::secrets::secret_digest(&Secret::new(secret));
            tx.execute(
                "UPDATE apps SET secret = ?2 WHERE app_id = ?1",
                params![app_id, digest.expose()],
            )?;
        }
    }
    Ok(())
}

/// The schema version this build writes.
const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// [`Store`] on one SQLite database: one connection behind a mutex, so calls from many
/// threads run one at a time (each is short). Call it from blocking threads.
pub struct SqliteStore {
    conn: Mutex<Connection>,
    /// The file opened and its identity (device, inode), for `ready`; None in memory.
    file: Option<(PathBuf, (u64, u64))>,
}

/// A file's identity: the same (device, inode) is the same file, whatever its name.
fn file_identity(path: &Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore").finish_non_exhaustive()
    }
}

impl SqliteStore {
    /// Opens (or creates) the database at `path`, creating its parent directory if missing,
    /// and migrates the schema to the current version.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| StoreError::CreateDir {
                path: dir.to_path_buf(),
                source,
            })?;
        }
        let conn = Connection::open(path)?;
        // Returns the mode actually set; a filesystem without WAL support keeps its old
        // journal, which is still correct, only slower under concurrent readers.
        let _mode: String =
            conn.pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))?;
        let mut store = Self::init(conn)?;
        store.file = file_identity(path).map(|id| (path.to_path_buf(), id));
        Ok(store)
    }

    /// A private database in memory, gone when the store is dropped. For tests.
    pub fn open_in_memory() -> Result<Self, StoreError> {
        Self::init(Connection::open_in_memory()?)
    }

    fn init(mut conn: Connection) -> Result<Self, StoreError> {
        conn.busy_timeout(BUSY_TIMEOUT)?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        migrate(&mut conn)?;
        Ok(Self {
            conn: Mutex::new(conn),
            file: None,
        })
    }

    pub(crate) fn conn(&self) -> MutexGuard<'_, Connection> {
        // A panic while the lock was held cannot leave a half-done write behind: an open
        // rusqlite transaction rolls back when it is dropped during unwinding. So the
        // connection is still consistent and the poison can be ignored.
        self.conn
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let found: i64 = tx.pragma_query_value(None, "user_version", |row| row.get(0))?;
    let Some(start) = usize::try_from(found)
        .ok()
        .filter(|&v| v <= MIGRATIONS.len())
    else {
        return Err(StoreError::UnsupportedSchema {
            found,
            supported: SCHEMA_VERSION,
        });
    };
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(start) {
        tx.execute_batch(sql)?;
        for (_, step) in CODE_MIGRATIONS.iter().filter(|(v, _)| *v == i + 1) {
            step(&tx)?;
        }
        tx.pragma_update(None, "user_version", i as i64 + 1)?;
    }
    tx.commit()?;
    Ok(())
}

/// A time for comparisons only: times past SQLite's range mean "never" and compare the same.
pub(crate) fn time_arg(t: u64) -> i64 {
    i64::try_from(t).unwrap_or(i64::MAX)
}

/// A value that must round-trip exactly.
pub(crate) fn exact_arg(field: &'static str, value: u64) -> Result<i64, StoreError> {
    i64::try_from(value).map_err(|_| StoreError::OutOfRange { field, value })
}

/// The columns [`app_from_row`] reads, in its order.
const APP_COLUMNS: &str =
    "app_id, name, secret, voip_enabled, created_at, room_cap, daily_room_quota";

fn app_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<AppRecord> {
    Ok(AppRecord {
        app_id: AppId::new(row.get::<_, String>(0)?),
        name: row.get(1)?,
        secret: Secret::new(row.get::<_, String>(2)?),
        voip_enabled: row.get(3)?,
        created_at: row.get(4)?,
        settings: AppSettings {
            room_cap: row.get(5)?,
            daily_room_quota: row.get(6)?,
        },
    })
}

/// An optional count as SQLite stores it.
fn optional_arg(field: &'static str, value: Option<u64>) -> Result<Option<i64>, StoreError> {
    value.map(|v| exact_arg(field, v)).transpose()
}

impl SqliteStore {
    /// `take_room_quota`, recording `reservation` in the same transaction when given.
    fn quota_step(
        &self,
        app_id: &AppId,
        day: &str,
        limit: u64,
        reservation: Option<&Reservation>,
    ) -> Result<QuotaDecision, StoreError> {
        // Counts live in i64; a limit beyond that is the same as no limit.
        let limit = limit.min(i64::MAX as u64);
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let used: u64 = tx
            .query_row(
                "SELECT rooms_created FROM room_quota WHERE app_id = ?1 AND day = ?2",
                [app_id.as_str(), day],
                |row| row.get(0),
            )
            .optional()?
            .unwrap_or(0);
        let refused = QuotaDecision {
            granted: false,
            used,
        };
        if used >= limit {
            // Nothing written; dropping the transaction rolls it back.
            return Ok(refused);
        }
        if let Some(r) = reservation {
            let inserted = tx.execute(
                "INSERT INTO quota_reservations (node, token, app_id, day) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (node, token) DO NOTHING",
                params![r.node, r.token, app_id.as_str(), day],
            )?;
            if inserted == 0 {
                return Ok(refused);
            }
        }
        tx.execute(
            "INSERT INTO room_quota (app_id, day, rooms_created) VALUES (?1, ?2, 1)
             ON CONFLICT (app_id, day) DO UPDATE SET rooms_created = rooms_created + 1",
            [app_id.as_str(), day],
        )?;
        tx.commit()?;
        Ok(QuotaDecision {
            granted: true,
            // used < limit <= i64::MAX, so this cannot overflow.
            used: used + 1,
        })
    }
}

/// Gives back the pending reservations that `filter` selects: each one's unit is taken off
/// its (app, day) count, and the reservation removed. Inside the caller's transaction.
fn release_where(
    tx: &rusqlite::Transaction<'_>,
    filter: &str,
    args: &[&dyn rusqlite::ToSql],
) -> Result<u64, StoreError> {
    let rows: Vec<(String, String)> = tx
        .prepare(&format!(
            "DELETE FROM quota_reservations WHERE {filter} RETURNING app_id, day"
        ))?
        .query_map(args, |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<Result<_, _>>()?;
    for (app_id, day) in &rows {
        tx.execute(
            "UPDATE room_quota SET rooms_created = rooms_created - 1
             WHERE app_id = ?1 AND day = ?2 AND rooms_created > 0",
            [app_id, day],
        )?;
    }
    Ok(rows.len() as u64)
}

impl Store for SqliteStore {
    fn ready(&self) -> Result<(), StoreError> {
        // SQLite keeps writing to a file deleted under it (its data then gone at the next
        // start), so the name must still lead to the file opened.
        if let Some((path, id)) = &self.file {
            if file_identity(path) != Some(*id) {
                return Err(StoreError::FileGone { path: path.clone() });
            }
        }
        self.conn()
            .query_row("SELECT count(*) FROM apps", [], |_| Ok(()))?;
        Ok(())
    }

    fn create_app(&self, app: &AppRecord) -> Result<(), StoreError> {
        let created_at = exact_arg("created_at", app.created_at)?;
        let quota = optional_arg("daily_room_quota", app.settings.daily_room_quota)?;
        let inserted = self.conn().execute(
            "INSERT INTO apps
                (app_id, name, secret, voip_enabled, created_at, room_cap, daily_room_quota)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
             ON CONFLICT (app_id) DO NOTHING",
            params![
                app.app_id.as_str(),
                app.name,
                crate::secrets::secret_digest(&app.secret).expose(),
                app.voip_enabled,
                created_at,
                app.settings.room_cap,
                quota
            ],
        )?;
        if inserted == 0 {
            return Err(StoreError::AppExists(app.app_id.clone()));
        }
        Ok(())
    }

    fn list_apps(&self) -> Result<Vec<AppRecord>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {APP_COLUMNS} FROM apps ORDER BY created_at, app_id"
        ))?;
        let apps = stmt
            .query_map([], app_from_row)?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(apps)
    }

    fn app(&self, app_id: &AppId) -> Result<Option<AppRecord>, StoreError> {
        let app = self
            .conn()
            .prepare_cached(&format!("SELECT {APP_COLUMNS} FROM apps WHERE app_id = ?1"))?
            .query_row([app_id.as_str()], app_from_row)
            .optional()?;
        Ok(app)
    }

    fn set_voip_enabled(&self, app_id: &AppId, enabled: bool) -> Result<bool, StoreError> {
        let changed = self.conn().execute(
            "UPDATE apps SET voip_enabled = ?2 WHERE app_id = ?1",
            params![app_id.as_str(), enabled],
        )?;
        Ok(changed > 0)
    }

    fn set_app_secret(&self, app_id: &AppId, secret: &Secret) -> Result<bool, StoreError> {
        let changed = self.conn().execute(
            "UPDATE apps SET secret = ?2 WHERE app_id = ?1",
            params![
                app_id.as_str(),
                crate::secrets::secret_digest(secret).expose()
            ],
        )?;
        Ok(changed > 0)
    }

    fn delete_app(&self, app_id: &AppId) -> Result<bool, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let deleted = tx.execute("DELETE FROM apps WHERE app_id = ?1", [app_id.as_str()])?;
        if deleted == 0 {
            // Nothing written; dropping the transaction rolls it back.
            return Ok(false);
        }
        for table in [
            "session_keys",
            "nonces",
            "room_quota",
            "quota_reservations",
            "webhooks",
            "webhook_outbox",
        ] {
            tx.execute(
                &format!("DELETE FROM {table} WHERE app_id = ?1"),
                [app_id.as_str()],
            )?;
        }
        tx.commit()?;
        Ok(true)
    }

    fn put_session_key(
        &self,
        app_id: &AppId,
        open_id: &OpenId,
        key: &Secret,
        now_unix: u64,
    ) -> Result<(), StoreError> {
        self.conn().execute(
            "INSERT INTO session_keys (app_id, open_id, session_key, issued_at)
             VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (app_id, open_id)
             DO UPDATE SET session_key = excluded.session_key, issued_at = excluded.issued_at",
            params![
                app_id.as_str(),
                open_id.as_str(),
                key.expose(),
                time_arg(now_unix)
            ],
        )?;
        Ok(())
    }

    fn session_key(&self, app_id: &AppId, open_id: &OpenId) -> Result<Option<Secret>, StoreError> {
        let key = self
            .conn()
            .prepare_cached(
                "SELECT session_key FROM session_keys WHERE app_id = ?1 AND open_id = ?2",
            )?
            .query_row([app_id.as_str(), open_id.as_str()], |row| {
                row.get::<_, String>(0)
            })
            .optional()?;
        Ok(key.map(Secret::new))
    }

    fn consume_nonce(
        &self,
        app_id: &AppId,
        open_id: &OpenId,
        nonce: &str,
        expires_at_unix: u64,
        now_unix: u64,
    ) -> Result<bool, StoreError> {
        let now = time_arg(now_unix);
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        tx.execute(
            "DELETE FROM nonces WHERE rowid IN
                (SELECT rowid FROM nonces WHERE expires_at <= ?1 LIMIT ?2)",
            params![now, NONCE_PURGE_BATCH],
        )?;
        // Inserts a new nonce, or takes over an expired one; an unexpired one is left alone
        // and counts 0 changes.
        let recorded = tx.execute(
            "INSERT INTO nonces (app_id, open_id, nonce, expires_at) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (app_id, open_id, nonce)
             DO UPDATE SET expires_at = excluded.expires_at WHERE nonces.expires_at <= ?5",
            params![
                app_id.as_str(),
                open_id.as_str(),
                nonce,
                time_arg(expires_at_unix),
                now
            ],
        )?;
        tx.commit()?;
        Ok(recorded > 0)
    }

    fn nonce_used(
        &self,
        app_id: &AppId,
        open_id: &OpenId,
        nonce: &str,
        now_unix: u64,
    ) -> Result<bool, StoreError> {
        let used = self
            .conn()
            .prepare_cached(
                "SELECT 1 FROM nonces
                 WHERE app_id = ?1 AND open_id = ?2 AND nonce = ?3 AND expires_at > ?4",
            )?
            .exists(params![
                app_id.as_str(),
                open_id.as_str(),
                nonce,
                time_arg(now_unix)
            ])?;
        Ok(used)
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
        self.conn().execute(
            "DELETE FROM nonces WHERE app_id = ?1 AND open_id = ?2 AND nonce = ?3",
            params![app_id.as_str(), open_id.as_str(), nonce],
        )?;
        Ok(())
    }

    fn take_room_quota(
        &self,
        app_id: &AppId,
        day: &str,
        limit: u64,
    ) -> Result<QuotaDecision, StoreError> {
        self.quota_step(app_id, day, limit, None)
    }

    fn reserve_room_quota(
        &self,
        app_id: &AppId,
        day: &str,
        limit: u64,
        reservation: &Reservation,
    ) -> Result<QuotaDecision, StoreError> {
        self.quota_step(app_id, day, limit, Some(reservation))
    }

    fn confirm_room_quota(&self, r: &Reservation) -> Result<bool, StoreError> {
        let deleted = self.conn().execute(
            "DELETE FROM quota_reservations WHERE node = ?1 AND token = ?2",
            [&r.node, &r.token],
        )?;
        Ok(deleted > 0)
    }

    fn release_room_quota(&self, r: &Reservation) -> Result<bool, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let released = release_where(&tx, "node = ?1 AND token = ?2", &[&r.node, &r.token])?;
        tx.commit()?;
        Ok(released > 0)
    }

    fn release_node_reservations(&self, node: &str) -> Result<u64, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let released = release_where(&tx, "node = ?1", &[&node])?;
        tx.commit()?;
        Ok(released)
    }

    fn reseal_session_keys(
        &self,
        reseal: &dyn Fn(&AppId, &OpenId, &str) -> Option<String>,
    ) -> Result<u64, StoreError> {
        // One transaction: a put_session_key waits for it, so it cannot be overwritten.
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let rows: Vec<(String, String, String)> = tx
            .prepare("SELECT app_id, open_id, session_key FROM session_keys")?
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
            .collect::<Result<_, _>>()?;
        let mut changed = 0;
        for (app_id, open_id, stored) in rows {
            if let Some(new) = reseal(&AppId::new(&app_id), &OpenId::new(&open_id), &stored) {
                tx.execute(
                    "UPDATE session_keys SET session_key = ?3 WHERE app_id = ?1 AND open_id = ?2",
                    params![app_id, open_id, new],
                )?;
                changed += 1;
            }
        }
        tx.commit()?;
        Ok(changed)
    }

    fn rooms_created(&self, app_id: &AppId, day: &str) -> Result<u64, StoreError> {
        let used = self
            .conn()
            .prepare_cached("SELECT rooms_created FROM room_quota WHERE app_id = ?1 AND day = ?2")?
            .query_row([app_id.as_str(), day], |row| row.get::<_, u64>(0))
            .optional()?;
        Ok(used.unwrap_or(0))
    }

    fn set_webhook_url(&self, app_id: &AppId, url: Option<&str>) -> Result<bool, StoreError> {
        sqlite_outbox::set_webhook_url(&mut self.conn(), app_id, url)
    }

    fn webhook_url(&self, app_id: &AppId) -> Result<Option<String>, StoreError> {
        sqlite_outbox::webhook_url(&self.conn(), app_id)
    }

    fn enqueue_webhooks(
        &self,
        deliveries: &[NewDelivery],
        now_ms: u64,
        max_pending_per_app: u64,
    ) -> Result<EnqueueOutcome, StoreError> {
        sqlite_outbox::enqueue(&mut self.conn(), deliveries, now_ms, max_pending_per_app)
    }

    fn claim_webhooks(
        &self,
        now_ms: u64,
        lease_ms: u64,
        per_app: u64,
        limit: u64,
    ) -> Result<Vec<Delivery>, StoreError> {
        sqlite_outbox::claim(&mut self.conn(), now_ms, lease_ms, per_app, limit)
    }

    fn finish_webhook(&self, id: &str, outcome: &AttemptOutcome) -> Result<bool, StoreError> {
        sqlite_outbox::finish(&mut self.conn(), id, outcome)
    }

    fn outbox_counts(&self) -> Result<OutboxCounts, StoreError> {
        sqlite_outbox::counts(&self.conn())
    }

    fn rooms_created_between(
        &self,
        app_id: &AppId,
        first: &str,
        last: &str,
    ) -> Result<Vec<(String, u64)>, StoreError> {
        let conn = self.conn();
        // TEXT compares with the binary collation: byte order, which is string order.
        let mut stmt = conn.prepare_cached(
            "SELECT day, rooms_created FROM room_quota
             WHERE app_id = ?1 AND day >= ?2 AND day <= ?3 ORDER BY day",
        )?;
        let days = stmt
            .query_map([app_id.as_str(), first, last], |row| {
                Ok((row.get::<_, String>(0)?, row.get::<_, u64>(1)?))
            })?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(days)
    }

    fn update_app_settings(
        &self,
        app_id: &AppId,
        change: &SettingsChange,
    ) -> Result<Option<AppSettings>, StoreError> {
        let quota = match change.daily_room_quota {
            Some(v) => Some(optional_arg("daily_room_quota", v)?),
            None => None,
        };
        // One statement: each column is set only when its change is given (?2 / ?4), so
        // concurrent changes of different fields cannot undo each other.
        let settings = self
            .conn()
            .prepare_cached(
                "UPDATE apps SET
                    room_cap = CASE WHEN ?2 THEN ?3 ELSE room_cap END,
                    daily_room_quota = CASE WHEN ?4 THEN ?5 ELSE daily_room_quota END
                 WHERE app_id = ?1
                 RETURNING room_cap, daily_room_quota",
            )?
            .query_row(
                params![
                    app_id.as_str(),
                    change.room_cap.is_some(),
                    change.room_cap.flatten(),
                    quota.is_some(),
                    quota.flatten()
                ],
                |row| {
                    Ok(AppSettings {
                        room_cap: row.get(0)?,
                        daily_room_quota: row.get(1)?,
                    })
                },
            )
            .optional()?;
        Ok(settings)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tempfile::TempDir;

    /// A file-backed store that deletes its directory when dropped.
    struct OnDisk {
        store: SqliteStore,
        _dir: TempDir,
    }

    impl OnDisk {
        fn new() -> Self {
            let dir = tempfile::tempdir().expect("tempdir");
            let store = SqliteStore::open(&dir.path().join("voipchat.sqlite3")).expect("open");
            Self { store, _dir: dir }
        }
    }

    impl Store for OnDisk {
        fn nonce_used(
            &self,
            app_id: &AppId,
            open_id: &OpenId,
            nonce: &str,
            now_unix: u64,
        ) -> Result<bool, StoreError> {
            self.store.nonce_used(app_id, open_id, nonce, now_unix)
        }
        fn directory(&self) -> &dyn crate::RoomDirectory {
            self.store.directory()
        }
        fn ready(&self) -> Result<(), StoreError> {
            self.store.ready()
        }
        fn create_app(&self, app: &AppRecord) -> Result<(), StoreError> {
            self.store.create_app(app)
        }
        fn list_apps(&self) -> Result<Vec<AppRecord>, StoreError> {
            self.store.list_apps()
        }
        fn app(&self, app_id: &AppId) -> Result<Option<AppRecord>, StoreError> {
            self.store.app(app_id)
        }
        fn set_voip_enabled(&self, app_id: &AppId, enabled: bool) -> Result<bool, StoreError> {
            self.store.set_voip_enabled(app_id, enabled)
        }
        fn set_app_secret(&self, app_id: &AppId, secret: &Secret) -> Result<bool, StoreError> {
            self.store.set_app_secret(app_id, secret)
        }
        fn delete_app(&self, app_id: &AppId) -> Result<bool, StoreError> {
            self.store.delete_app(app_id)
        }
        fn put_session_key(
            &self,
            app_id: &AppId,
            open_id: &OpenId,
            key: &Secret,
            now_unix: u64,
        ) -> Result<(), StoreError> {
            self.store.put_session_key(app_id, open_id, key, now_unix)
        }
        fn session_key(
            &self,
            app_id: &AppId,
            open_id: &OpenId,
        ) -> Result<Option<Secret>, StoreError> {
            self.store.session_key(app_id, open_id)
        }
        fn consume_nonce(
            &self,
            app_id: &AppId,
            open_id: &OpenId,
            nonce: &str,
            expires_at_unix: u64,
            now_unix: u64,
        ) -> Result<bool, StoreError> {
            self.store
                .consume_nonce(app_id, open_id, nonce, expires_at_unix, now_unix)
        }
        fn release_nonce(
            &self,
            app_id: &AppId,
            open_id: &OpenId,
            nonce: &str,
        ) -> Result<(), StoreError> {
            self.store.release_nonce(app_id, open_id, nonce)
        }
        fn take_room_quota(
            &self,
            app_id: &AppId,
            day: &str,
            limit: u64,
        ) -> Result<QuotaDecision, StoreError> {
            self.store.take_room_quota(app_id, day, limit)
        }
        fn reserve_room_quota(
            &self,
            app_id: &AppId,
            day: &str,
            limit: u64,
            r: &Reservation,
        ) -> Result<QuotaDecision, StoreError> {
            self.store.reserve_room_quota(app_id, day, limit, r)
        }
        fn confirm_room_quota(&self, r: &Reservation) -> Result<bool, StoreError> {
            self.store.confirm_room_quota(r)
        }
        fn release_room_quota(&self, r: &Reservation) -> Result<bool, StoreError> {
            self.store.release_room_quota(r)
        }
        fn release_node_reservations(&self, node: &str) -> Result<u64, StoreError> {
            self.store.release_node_reservations(node)
        }
        fn reseal_session_keys(
            &self,
            reseal: &dyn Fn(&AppId, &OpenId, &str) -> Option<String>,
        ) -> Result<u64, StoreError> {
            self.store.reseal_session_keys(reseal)
        }
        fn rooms_created(&self, app_id: &AppId, day: &str) -> Result<u64, StoreError> {
            self.store.rooms_created(app_id, day)
        }
        fn set_webhook_url(&self, app_id: &AppId, url: Option<&str>) -> Result<bool, StoreError> {
            self.store.set_webhook_url(app_id, url)
        }
        fn webhook_url(&self, app_id: &AppId) -> Result<Option<String>, StoreError> {
            self.store.webhook_url(app_id)
        }
        fn enqueue_webhooks(
            &self,
            deliveries: &[NewDelivery],
            now_ms: u64,
            max_pending_per_app: u64,
        ) -> Result<EnqueueOutcome, StoreError> {
            self.store
                .enqueue_webhooks(deliveries, now_ms, max_pending_per_app)
        }
        fn claim_webhooks(
            &self,
            now_ms: u64,
            lease_ms: u64,
            per_app: u64,
            limit: u64,
        ) -> Result<Vec<Delivery>, StoreError> {
            self.store.claim_webhooks(now_ms, lease_ms, per_app, limit)
        }
        fn finish_webhook(&self, id: &str, outcome: &AttemptOutcome) -> Result<bool, StoreError> {
            self.store.finish_webhook(id, outcome)
        }
        fn outbox_counts(&self) -> Result<OutboxCounts, StoreError> {
            self.store.outbox_counts()
        }
        fn rooms_created_between(
            &self,
            app_id: &AppId,
            first: &str,
            last: &str,
        ) -> Result<Vec<(String, u64)>, StoreError> {
            self.store.rooms_created_between(app_id, first, last)
        }
        fn update_app_settings(
            &self,
            app_id: &AppId,
            change: &SettingsChange,
        ) -> Result<Option<AppSettings>, StoreError> {
            self.store.update_app_settings(app_id, change)
        }
    }

    mod in_memory {
        use super::*;
        crate::store_conformance_tests!(|| Box::new(
            SqliteStore::open_in_memory().expect("open in memory")
        ));
    }

    mod on_disk {
        use super::*;
        crate::store_conformance_tests!(|| Box::new(OnDisk::new()));
    }

    fn app(id: &str) -> AppRecord {
        AppRecord {
            app_id: AppId::new(id),
            name: format!("game {id}"),
            secret: crate::secrets::secret_digest(&Secret::new(format!("secret-{id}"))),
            voip_enabled: true,
            created_at: 1_700_000_000,
            settings: AppSettings::default(),
        }
    }

    #[test]
    fn data_survives_reopening_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("data").join("voipchat.sqlite3");
        let a = AppId::new("wx1");
        let user = OpenId::new("user-1");
        {
            let store = SqliteStore::open(&path).expect("open creates the parent directory");
            store.create_app(&app("wx1")).expect("create");
            store.set_voip_enabled(&a, false).expect("disable");
            store
                .put_session_key(&a, &user, &Secret::new("k1"), 10)
                .expect("put");
            store
                .put_session_key(&a, &user, &Secret::new("k2"), 11)
                .expect("rotate");
            for _ in 0..3 {
                assert!(
                    store
                        .take_room_quota(&a, "2026-11-22", 10)
                        .expect("quota")
                        .granted
                );
            }
            assert!(store
                .consume_nonce(&a, &user, "n1", 1_000, 100)
                .expect("nonce"));
        }
        let store = SqliteStore::open(&path).expect("reopen");
        let mut expected = app("wx1");
        expected.voip_enabled = false;
        assert_eq!(store.app(&a).expect("app"), Some(expected.clone()));
        assert_eq!(store.list_apps().expect("list"), vec![expected]);
        assert_eq!(
            store.session_key(&a, &user).expect("key"),
            Some(Secret::new("k2"))
        );
        assert_eq!(store.rooms_created(&a, "2026-11-22").expect("count"), 3);
        assert!(!store
            .consume_nonce(&a, &user, "n1", 1_000, 200)
            .expect("nonce"));
        assert!(matches!(
            store.create_app(&app("wx1")),
            Err(StoreError::AppExists(_))
        ));
    }

    #[test]
    fn webhook_url_and_outbox_survive_reopening_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("hooks.sqlite3");
        let a = AppId::new("wx1");
        let new = |id: &str, stream: &str| NewDelivery {
            id: id.into(),
            app_id: a.clone(),
            stream: stream.into(),
            event: "room_started".into(),
            body: "{}".into(),
            created_at: 1,
        };
        {
            let store = SqliteStore::open(&path).expect("open");
            store.create_app(&app("wx1")).expect("create");
            assert!(store
                .set_webhook_url(&a, Some("http://127.0.0.1:9/h"))
                .expect("url"));
            let batch = [new("g1", "g"), new("g2", "g"), new("h1", "h")];
            store.enqueue_webhooks(&batch, 1_000, 100).expect("enqueue");
            let claimed = store.claim_webhooks(1_000, 60_000, 10, 10).expect("claim");
            assert_eq!(claimed.len(), 2);
            let retry = AttemptOutcome::Retry {
                at_ms: 2_000,
                error: "connection refused".into(),
            };
            assert!(store.finish_webhook("g1", &retry).expect("retry"));
            // h1 stays leased: the process "dies" during its attempt.
        }
        let store = SqliteStore::open(&path).expect("reopen");
        assert_eq!(
            store.webhook_url(&a).expect("url").as_deref(),
            Some("http://127.0.0.1:9/h")
        );
        assert_eq!(store.outbox_counts().expect("counts").pending, 3);
        let claimed = store.claim_webhooks(2_000, 60_000, 10, 10).expect("claim");
        assert_eq!(
            claimed
                .iter()
                .map(|d| (d.id.as_str(), d.attempts))
                .collect::<Vec<_>>(),
            [("g1", 1)],
            "h1's lease has not run out yet"
        );
        let claimed = store.claim_webhooks(61_000, 60_000, 10, 10).expect("claim");
        assert_eq!(claimed.len(), 1);
        assert_eq!(claimed[0].id, "h1");
    }

    #[test]
    fn file_uses_wal_and_current_schema_version() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("v.sqlite3");
        drop(SqliteStore::open(&path).expect("open"));
        let conn = Connection::open(&path).expect("raw open");
        let mode: String = conn
            .pragma_query_value(None, "journal_mode", |r| r.get(0))
            .expect("journal_mode");
        assert_eq!(mode, "wal");
        let version: i64 = conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .expect("user_version");
        assert_eq!(version, SCHEMA_VERSION);
        drop(conn);
        // Opening again runs no migration twice.
        drop(SqliteStore::open(&path).expect("reopen"));
    }

    #[test]
    fn ready_until_the_file_is_deleted_or_replaced() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("r.sqlite3");
        let store = SqliteStore::open(&path).expect("open");
        store.ready().expect("ready");
        // Replaced by another file of the same name: not the database the store writes to.
        std::fs::rename(&path, dir.path().join("moved.sqlite3")).expect("rename");
        std::fs::write(&path, b"").expect("write");
        assert!(matches!(store.ready(), Err(StoreError::FileGone { .. })));
        std::fs::remove_file(&path).expect("rm");
        assert!(matches!(store.ready(), Err(StoreError::FileGone { .. })));
        SqliteStore::open_in_memory()
            .expect("memory")
            .ready()
            .expect("memory is ready");
    }

    #[test]
    fn a_version_1_database_is_migrated_and_keeps_its_apps() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("v1.sqlite3");
        {
            let conn = Connection::open(&path).expect("raw open");
            conn.execute_batch(MIGRATIONS[0]).expect("version 1 schema");
            conn.pragma_update(None, "user_version", 1)
                .expect("version");
            conn.execute(
                "INSERT INTO apps (app_id, name, secret, voip_enabled, created_at)
                 VALUES ('wx1', 'game wx1', 'secret-wx1', 1, 1700000000)",
                [],
            )
            .expect("an app of version 1");
        }
        let store = SqliteStore::open(&path).expect("open migrates");
        assert_eq!(
            store.app(&AppId::new("wx1")).expect("app"),
            Some(app("wx1")),
            "every field kept, the settings at the defaults"
        );
        let change = SettingsChange {
            room_cap: Some(Some(3)),
            ..SettingsChange::default()
        };
        assert_eq!(
            store
                .update_app_settings(&AppId::new("wx1"), &change)
                .expect("update"),
            Some(AppSettings {
                room_cap: Some(3),
                daily_room_quota: None
            })
        );
    }

    #[test]
    fn refuses_a_newer_schema() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("new.sqlite3");
        drop(SqliteStore::open(&path).expect("open"));
        Connection::open(&path)
            .expect("raw open")
            .pragma_update(None, "user_version", SCHEMA_VERSION + 1)
            .expect("bump version");
        match SqliteStore::open(&path) {
            Err(StoreError::UnsupportedSchema { found, supported }) => {
                assert_eq!((found, supported), (SCHEMA_VERSION + 1, SCHEMA_VERSION));
            }
            other => panic!("expected UnsupportedSchema, got {other:?}"),
        }
    }

    #[test]
    fn quota_is_exact_across_two_connections_to_one_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("shared.sqlite3");
        let stores = [
            SqliteStore::open(&path).expect("open 1"),
            SqliteStore::open(&path).expect("open 2"),
        ];
        let a = AppId::new("wx1");
        let granted: u64 = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8)
                .map(|t| {
                    let store = &stores[t % 2];
                    let a = &a;
                    s.spawn(move || {
                        (0..20)
                            .filter(|_| {
                                store
                                    .take_room_quota(a, "d", 50)
                                    .expect("take quota")
                                    .granted
                            })
                            .count() as u64
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().expect("thread")).sum()
        });
        assert_eq!(granted, 50);
        assert_eq!(stores[0].rooms_created(&a, "d").expect("count"), 50);
        assert_eq!(stores[1].rooms_created(&a, "d").expect("count"), 50);
    }

    #[test]
    fn expired_nonces_are_purged() {
        let store = SqliteStore::open_in_memory().expect("open");
        let a = AppId::new("wx1");
        let user = OpenId::new("u");
        for i in 0..200 {
            assert!(store
                .consume_nonce(&a, &user, &format!("n{i}"), 100, 10)
                .expect("nonce"));
        }
        let count = |s: &SqliteStore| -> i64 {
            s.conn()
                .query_row("SELECT count(*) FROM nonces", [], |r| r.get(0))
                .expect("count")
        };
        assert_eq!(count(&store), 200);
        // Each call after expiry removes up to one batch.
        for i in 0..4 {
            store
                .consume_nonce(&a, &user, &format!("later{i}"), 1_000, 500)
                .expect("nonce");
        }
        assert_eq!(count(&store), 4);
    }

    #[test]
    fn out_of_range_created_at_is_an_error_not_a_panic() {
        let store = SqliteStore::open_in_memory().expect("open");
        let mut record = app("wx1");
        record.created_at = u64::MAX;
        assert!(matches!(
            store.create_app(&record),
            Err(StoreError::OutOfRange {
                field: "created_at",
                ..
            })
        ));
        record.created_at = 1;
        record.settings.daily_room_quota = Some(u64::MAX);
        assert!(matches!(
            store.create_app(&record),
            Err(StoreError::OutOfRange {
                field: "daily_room_quota",
                ..
            })
        ));
        record.settings.daily_room_quota = None;
        store.create_app(&record).expect("create");
        let huge = SettingsChange {
            daily_room_quota: Some(Some(u64::MAX)),
            ..SettingsChange::default()
        };
        assert!(matches!(
            store.update_app_settings(&record.app_id, &huge),
            Err(StoreError::OutOfRange {
                field: "daily_room_quota",
                ..
            })
        ));
        // Huge times and limits are clamped, not refused.
        let a = AppId::new("wx1");
        let user = OpenId::new("u");
        assert!(store
            .consume_nonce(&a, &user, "n", u64::MAX, u64::MAX - 1)
            .expect("nonce"));
        assert!(
            store
                .take_room_quota(&a, "d", u64::MAX)
                .expect("quota")
                .granted
        );
        store
            .put_session_key(&a, &user, &Secret::new("k"), u64::MAX)
            .expect("put");
    }
}
