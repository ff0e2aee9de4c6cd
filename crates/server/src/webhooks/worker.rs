//! The delivery worker: claims due deliveries from the outbox and attempts each on a task of
//! its own, so a receiver that hangs holds up only its own deliveries (and at most
//! [`PER_APP`] of them at once), never other apps' or the media path.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::Rng;
use tokio::sync::{watch, Notify};
use tokio::task::JoinSet;
use voipchat_store::{AttemptOutcome, Delivery, Store, StoreError};

use super::client::{self, Headers, Tls};
use super::{unix_now_ms, url};
use crate::clock;
use crate::metrics::Metrics;

/// Attempts running at once, over all apps.
pub const IN_FLIGHT: u64 = 64;
/// Attempts running at once for one app.
pub const PER_APP: u64 = 4;
/// How often the worker looks for due deliveries when nothing wakes it.
const POLL: Duration = Duration::from_millis(100);
/// The longest wait between retries.
pub const RETRY_CAP: Duration = Duration::from_secs(300);
/// A claim's lease beyond the attempt's own timeout: room for the report to reach the store.
const LEASE_MARGIN: Duration = Duration::from_secs(30);

/// How deliveries are attempted (from the config).
#[derive(Clone)]
pub struct Policy {
    pub timeout: Duration,
    pub retry_base: Duration,
    pub max_attempts: u32,
    pub max_age_secs: u64,
}

impl Policy {
    /// The wait after the `attempts`-th failed attempt: `retry_base` doubled per earlier
    /// failure, at most [`RETRY_CAP`], then a random point in its upper half (so receivers
    /// that come back are not hit by every waiting delivery at once).
    pub fn backoff(&self, attempts: u32) -> Duration {
        let doubling = 2u32.saturating_pow(attempts.saturating_sub(1));
        let full = self.retry_base.saturating_mul(doubling).min(RETRY_CAP);
        let half = full / 2;
        half + rand::thread_rng().gen_range(Duration::ZERO..=full - half)
    }

    /// What a failed attempt leads to: another try later, or giving up.
    fn after_failure(&self, d: &Delivery, error: String, now_ms: u64) -> AttemptOutcome {
        let attempts = d.attempts.saturating_add(1);
        let age = clock::unix_now().saturating_sub(d.created_at);
        if attempts >= self.max_attempts || age >= self.max_age_secs {
            AttemptOutcome::Dead {
                at_ms: now_ms,
                error: format!("{error} (gave up after {attempts} attempts, {age} s)"),
            }
        } else {
            let wait = u64::try_from(self.backoff(attempts).as_millis()).unwrap_or(u64::MAX);
            AttemptOutcome::Retry {
                at_ms: now_ms.saturating_add(wait),
                error,
            }
        }
    }
}

struct Ctx {
    store: Arc<dyn Store>,
    tls: Tls,
    policy: Policy,
    metrics: Arc<Metrics>,
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, String> {
    match tokio::task::spawn_blocking(f).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(format!("store: {e}")),
        Err(e) => Err(format!("store task: {e}")),
    }
}

/// Runs until `stop` turns true; then stops its attempts and hands their deliveries back
/// to the outbox (the next start sends them). `recorded` wakes it when the writer added
/// deliveries.
pub async fn run(
    store: Arc<dyn Store>,
    tls: Tls,
    policy: Policy,
    recorded: Arc<Notify>,
    mut stop: watch::Receiver<bool>,
    metrics: Arc<Metrics>,
) {
    let lease = u64::try_from((policy.timeout + LEASE_MARGIN).as_millis()).unwrap_or(u64::MAX);
    let ctx = Arc::new(Ctx {
        store: store.clone(),
        tls,
        policy,
        metrics: metrics.clone(),
    });
    let mut attempts: JoinSet<()> = JoinSet::new();
    // The delivery each running attempt works on, to hand back when stopping.
    let mut running: HashMap<tokio::task::Id, String> = HashMap::new();
    let mut next_count = Instant::now();
    let mut claim_failures: u64 = 0;
    loop {
        let free = IN_FLIGHT.saturating_sub(attempts.len() as u64);
        if free > 0 {
            let s = store.clone();
            let now = unix_now_ms();
            match blocking(move || s.claim_webhooks(now, lease, PER_APP, free)).await {
                Ok(claimed) => {
                    claim_failures = 0;
                    for d in claimed {
                        let id = d.id.clone();
                        let handle = attempts.spawn(attempt(ctx.clone(), d));
                        running.insert(handle.id(), id);
                    }
                }
                Err(e) => {
                    claim_failures += 1;
                    if claim_failures.is_power_of_two() {
                        tracing::warn!(failures = claim_failures, "webhook worker: {e}");
                    }
                }
            }
        }
        if Instant::now() >= next_count {
            next_count = Instant::now() + Duration::from_secs(1);
            let s = store.clone();
            if let Ok(counts) = blocking(move || s.outbox_counts()).await {
                metrics
                    .webhook_pending
                    .set(i64::try_from(counts.pending).unwrap_or(i64::MAX));
            }
        }
        tokio::select! {
            _ = stop.wait_for(|s| *s) => break,
            _ = recorded.notified() => {}
            Some(done) = attempts.join_next_with_id() => {
                let id = match done {
                    Ok((id, ())) => id,
                    Err(e) => e.id(),
                };
                running.remove(&id);
            }
            _ = tokio::time::sleep(POLL) => {}
        }
    }
    attempts.abort_all();
    while attempts.join_next().await.is_some() {}
    let ids: Vec<String> = running.into_values().collect();
    if !ids.is_empty() {
        let n = ids.len();
        let released = blocking(move || {
            for id in &ids {
                store.finish_webhook(id, &AttemptOutcome::Released)?;
            }
            Ok(())
        })
        .await;
        match released {
            Ok(()) => tracing::info!(deliveries = n, "webhook attempts stopped; they resume at the next start"),
            Err(e) => tracing::warn!("webhook attempts stopped, not handed back ({e}): they resume when their lease runs out"),
        }
    }
    tracing::debug!("webhook worker stopped");
}

/// One attempt at one delivery, reported to the store.
async fn attempt(ctx: Arc<Ctx>, d: Delivery) {
    let started = Instant::now();
    let s = ctx.store.clone();
    let app_id = d.app_id.clone();
    let target = blocking(move || Ok((s.app(&app_id)?, s.webhook_url(&app_id)?))).await;
    let now_ms = unix_now_ms();
    let outcome = match target {
        // Deleting the app or clearing its URL removed its deliveries too: nothing to do.
        Ok((None, _)) | Ok((_, None)) => return,
        Err(e) => ctx.policy.after_failure(&d, e, now_ms),
        Ok((Some(app), Some(text))) => match url::parse(&text) {
            // Only a URL written around the API and the CLI can be unusable: no retry helps.
            Err(why) => AttemptOutcome::Dead {
                at_ms: now_ms,
                error: format!("the app's webhook URL is not usable: {why}"),
            },
            Ok(target) => {
                let signature = voipchat_auth::webhook::signature_header(
                    &app.secret,
                    clock::unix_now(),
                    d.body.as_bytes(),
                );
                let headers = Headers {
                    event: &d.event,
                    delivery: &d.id,
                    signature: &signature,
                };
                let sent = client::post(
                    &ctx.tls,
                    &target,
                    &headers,
                    d.body.clone(),
                    ctx.policy.timeout,
                )
                .await;
                let now_ms = unix_now_ms();
                match sent {
                    Ok(status) if (200..300).contains(&status) => AttemptOutcome::Delivered,
                    Ok(status) => ctx
                        .policy
                        .after_failure(&d, format!("HTTP {status}"), now_ms),
                    Err(e) => ctx.policy.after_failure(&d, e, now_ms),
                }
            }
        },
    };
    let m = &ctx.metrics;
    match &outcome {
        AttemptOutcome::Delivered => {
            m.webhook_delivered.inc();
            tracing::debug!(app_id = %d.app_id, event = %d.event, delivery = %d.id,
                ms = started.elapsed().as_millis() as u64, "webhook delivered");
        }
        AttemptOutcome::Retry { at_ms, error } => {
            m.webhook_failed_attempts.inc();
            tracing::info!(app_id = %d.app_id, event = %d.event, delivery = %d.id,
                attempts = d.attempts + 1, retry_in_ms = at_ms.saturating_sub(now_ms),
                "webhook attempt failed: {error}");
        }
        AttemptOutcome::Dead { error, .. } => {
            m.webhook_failed_attempts.inc();
            m.webhook_dead.inc();
            tracing::warn!(app_id = %d.app_id, event = %d.event, delivery = %d.id,
                "webhook delivery given up: {error}");
        }
        AttemptOutcome::Released => {}
    }
    let s = ctx.store.clone();
    let id = d.id.clone();
    if let Err(e) = blocking(move || s.finish_webhook(&id, &outcome)).await {
        // The lease runs out and the delivery is attempted again: at least once.
        tracing::warn!(delivery = %d.id, "webhook attempt not recorded: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_with_jitter_up_to_the_cap() {
        let p = Policy {
            timeout: Duration::from_secs(5),
            retry_base: Duration::from_millis(1000),
            max_attempts: 15,
            max_age_secs: 3600,
        };
        for _ in 0..100 {
            let first = p.backoff(1);
            assert!((500..=1000).contains(&first.as_millis()), "{first:?}");
            let fourth = p.backoff(4);
            assert!((4000..=8000).contains(&fourth.as_millis()), "{fourth:?}");
            let late = p.backoff(30);
            assert!(late <= RETRY_CAP && late >= RETRY_CAP / 2, "{late:?}");
        }
        assert!(p.backoff(u32::MAX) <= RETRY_CAP);
    }
}
