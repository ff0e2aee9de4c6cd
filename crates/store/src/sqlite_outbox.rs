//! The webhook tables of [`SqliteStore`](crate::SqliteStore): each app's URL, and the outbox.
//!
//! A delivery row is pending while `dead_at` is NULL. Its stream's head is the pending row
//! with the lowest `seq` (the enqueue order, AUTOINCREMENT so a removed row's number is
//! never reused). A claim sets `leased_until`; every report on the attempt resets it to 0.
//! Read-modify-write steps run in `BEGIN IMMEDIATE` transactions like the rest of the store.

use std::collections::HashMap;

use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use voipchat_proto::AppId;

use crate::outbox::{
    AttemptOutcome, Delivery, EnqueueOutcome, NewDelivery, OutboxCounts, DEAD_KEPT_PER_APP,
};
use crate::sqlite::{exact_arg, time_arg};
use crate::StoreError;

/// Schema version 2.
pub(crate) const MIGRATION: &str = "
    CREATE TABLE webhooks (
        app_id TEXT NOT NULL PRIMARY KEY,
        url    TEXT NOT NULL
    ) STRICT;

    CREATE TABLE webhook_outbox (
        seq             INTEGER PRIMARY KEY AUTOINCREMENT,
        id              TEXT    NOT NULL UNIQUE,
        app_id          TEXT    NOT NULL,
        stream          TEXT    NOT NULL,
        event           TEXT    NOT NULL,
        body            TEXT    NOT NULL,
        created_at      INTEGER NOT NULL,
        attempts        INTEGER NOT NULL,
        next_attempt_at INTEGER NOT NULL,
        leased_until    INTEGER NOT NULL,
        dead_at         INTEGER,
        last_error      TEXT
    ) STRICT;
    CREATE INDEX webhook_outbox_by_stream ON webhook_outbox (app_id, stream, seq)
        WHERE dead_at IS NULL;
    CREATE INDEX webhook_outbox_by_due ON webhook_outbox (next_attempt_at)
        WHERE dead_at IS NULL;
    CREATE INDEX webhook_outbox_dead ON webhook_outbox (app_id, dead_at)
        WHERE dead_at IS NOT NULL;";

pub(crate) fn set_webhook_url(
    conn: &mut Connection,
    app_id: &AppId,
    url: Option<&str>,
) -> Result<bool, StoreError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let exists = tx
        .query_row(
            "SELECT 1 FROM apps WHERE app_id = ?1",
            [app_id.as_str()],
            |_| Ok(()),
        )
        .optional()?
        .is_some();
    if !exists {
        return Ok(false);
    }
    match url {
        Some(url) => {
            tx.execute(
                "INSERT INTO webhooks (app_id, url) VALUES (?1, ?2)
                 ON CONFLICT (app_id) DO UPDATE SET url = excluded.url",
                params![app_id.as_str(), url],
            )?;
        }
        None => {
            tx.execute("DELETE FROM webhooks WHERE app_id = ?1", [app_id.as_str()])?;
            tx.execute(
                "DELETE FROM webhook_outbox WHERE app_id = ?1",
                [app_id.as_str()],
            )?;
        }
    }
    tx.commit()?;
    Ok(true)
}

pub(crate) fn webhook_url(conn: &Connection, app_id: &AppId) -> Result<Option<String>, StoreError> {
    let url = conn
        .prepare_cached("SELECT url FROM webhooks WHERE app_id = ?1")?
        .query_row([app_id.as_str()], |row| row.get(0))
        .optional()?;
    Ok(url)
}

pub(crate) fn enqueue(
    conn: &mut Connection,
    deliveries: &[NewDelivery],
    now_ms: u64,
    max_pending_per_app: u64,
) -> Result<EnqueueOutcome, StoreError> {
    let now = time_arg(now_ms);
    let cap = time_arg(max_pending_per_app);
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let mut outcome = EnqueueOutcome::default();
    // Per app of the batch: whether it has a webhook (asked once per batch).
    let mut has_webhook: HashMap<&str, bool> = HashMap::new();
    {
        let mut ask = tx.prepare_cached("SELECT 1 FROM webhooks WHERE app_id = ?1")?;
        let mut insert = tx.prepare_cached(
            "INSERT INTO webhook_outbox (id, app_id, stream, event, body, created_at,
                 attempts, next_attempt_at, leased_until)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, 0, ?7, 0)",
        )?;
        for d in deliveries {
            let app = d.app_id.as_str();
            let wanted = match has_webhook.get(app) {
                Some(w) => *w,
                None => {
                    let w = ask.query_row([app], |_| Ok(())).optional()?.is_some();
                    has_webhook.insert(app, w);
                    w
                }
            };
            if !wanted {
                outcome.no_webhook += 1;
                continue;
            }
            insert.execute(params![
                d.id,
                app,
                d.stream,
                d.event,
                d.body,
                exact_arg("created_at", d.created_at)?,
                now
            ])?;
            outcome.enqueued += 1;
        }
    }
    let mut apps: Vec<&str> = has_webhook
        .into_iter()
        .filter_map(|(app, w)| w.then_some(app))
        .collect();
    apps.sort_unstable();
    for app in apps {
        let pending: i64 = tx.query_row(
            "SELECT count(*) FROM webhook_outbox WHERE app_id = ?1 AND dead_at IS NULL",
            [app],
            |row| row.get(0),
        )?;
        if pending > cap {
            let dropped = tx.execute(
                "DELETE FROM webhook_outbox WHERE seq IN
                    (SELECT seq FROM webhook_outbox WHERE app_id = ?1 AND dead_at IS NULL
                     ORDER BY seq LIMIT ?2)",
                params![app, pending - cap],
            )?;
            outcome.dropped.push((AppId::new(app), dropped as u64));
        }
    }
    tx.commit()?;
    Ok(outcome)
}

pub(crate) fn claim(
    conn: &mut Connection,
    now_ms: u64,
    lease_ms: u64,
    per_app: u64,
    limit: u64,
) -> Result<Vec<Delivery>, StoreError> {
    let now = time_arg(now_ms);
    let until = time_arg(now_ms.saturating_add(lease_ms));
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let claimed = {
        // Due, unleased stream heads, numbered per app by due time; an app's leased rows
        // count against its allowance.
        let mut stmt = tx.prepare_cached(
            "WITH busy AS (
                 SELECT app_id, count(*) AS n FROM webhook_outbox
                 WHERE dead_at IS NULL AND leased_until > 0 AND leased_until > ?1
                 GROUP BY app_id
             ),
             heads AS (
                 SELECT o.seq, o.id, o.app_id, o.stream, o.event, o.body, o.created_at,
                        o.attempts, o.next_attempt_at,
                        row_number() OVER (
                            PARTITION BY o.app_id ORDER BY o.next_attempt_at, o.seq
                        ) AS rank
                 FROM webhook_outbox o
                 WHERE o.dead_at IS NULL AND o.next_attempt_at <= ?1 AND o.leased_until <= ?1
                   AND o.seq = (SELECT min(p.seq) FROM webhook_outbox p
                                WHERE p.app_id = o.app_id AND p.stream = o.stream
                                  AND p.dead_at IS NULL)
             )
             SELECT h.seq, h.id, h.app_id, h.stream, h.event, h.body, h.created_at, h.attempts
             FROM heads h LEFT JOIN busy b ON b.app_id = h.app_id
             WHERE h.rank + coalesce(b.n, 0) <= ?2
             ORDER BY h.next_attempt_at, h.seq
             LIMIT ?3",
        )?;
        let rows = stmt.query_map(params![now, time_arg(per_app), time_arg(limit)], |row| {
            Ok((
                row.get::<_, i64>(0)?,
                Delivery {
                    id: row.get(1)?,
                    app_id: AppId::new(row.get::<_, String>(2)?),
                    stream: row.get(3)?,
                    event: row.get(4)?,
                    body: row.get(5)?,
                    created_at: row.get(6)?,
                    attempts: row.get(7)?,
                },
            ))
        })?;
        rows.collect::<Result<Vec<_>, _>>()?
    };
    {
        let mut lease =
            tx.prepare_cached("UPDATE webhook_outbox SET leased_until = ?2 WHERE seq = ?1")?;
        for (seq, _) in &claimed {
            lease.execute(params![seq, until])?;
        }
    }
    tx.commit()?;
    Ok(claimed.into_iter().map(|(_, d)| d).collect())
}

pub(crate) fn finish(
    conn: &mut Connection,
    id: &str,
    outcome: &AttemptOutcome,
) -> Result<bool, StoreError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let changed = match outcome {
        AttemptOutcome::Delivered => tx.execute(
            "DELETE FROM webhook_outbox WHERE id = ?1 AND dead_at IS NULL",
            [id],
        )?,
        AttemptOutcome::Retry { at_ms, error } => tx.execute(
            "UPDATE webhook_outbox
             SET attempts = attempts + 1, next_attempt_at = ?2, leased_until = 0,
                 last_error = ?3
             WHERE id = ?1 AND dead_at IS NULL",
            params![id, time_arg(*at_ms), error],
        )?,
        AttemptOutcome::Dead { at_ms, error } => {
            let app: Option<String> = tx
                .query_row(
                    "SELECT app_id FROM webhook_outbox WHERE id = ?1 AND dead_at IS NULL",
                    [id],
                    |row| row.get(0),
                )
                .optional()?;
            match app {
                None => 0,
                Some(app) => {
                    tx.execute(
                        "UPDATE webhook_outbox
                         SET attempts = attempts + 1, dead_at = ?2, leased_until = 0,
                             last_error = ?3
                         WHERE id = ?1",
                        params![id, time_arg(*at_ms), error],
                    )?;
                    tx.execute(
                        "DELETE FROM webhook_outbox WHERE seq IN
                            (SELECT seq FROM webhook_outbox
                             WHERE app_id = ?1 AND dead_at IS NOT NULL
                             ORDER BY dead_at DESC, seq DESC LIMIT -1 OFFSET ?2)",
                        params![app, time_arg(DEAD_KEPT_PER_APP)],
                    )?;
                    1
                }
            }
        }
        AttemptOutcome::Released => tx.execute(
            "UPDATE webhook_outbox SET leased_until = 0 WHERE id = ?1 AND dead_at IS NULL",
            [id],
        )?,
    };
    tx.commit()?;
    Ok(changed > 0)
}

pub(crate) fn counts(conn: &Connection) -> Result<OutboxCounts, StoreError> {
    let (pending, dead) = conn
        .prepare_cached(
            "SELECT count(*) FILTER (WHERE dead_at IS NULL),
                    count(*) FILTER (WHERE dead_at IS NOT NULL)
             FROM webhook_outbox",
        )?
        .query_row([], |row| Ok((row.get(0)?, row.get(1)?)))?;
    Ok(OutboxCounts { pending, dead })
}
