//! The writer: moves events from the sink's queue into the store's outbox, in batches, on a
//! blocking thread (store calls block). Ends when every [`Sink`](super::Sink) is gone and
//! the queue is empty, so a stopping server records its last events (members told of the
//! shutdown, rooms finished) before it exits.

use std::sync::Arc;
use std::time::Duration;

use rand::RngCore;
use tokio::sync::{mpsc, Notify};
use voipchat_store::{NewDelivery, Store};

use super::{unix_now_ms, Stamped};
use crate::metrics::Metrics;

/// Most events recorded in one transaction.
const BATCH: usize = 512;

/// Tries of one batch before its events are dropped (logged and counted).
const TRIES: u32 = 4;

/// A fresh delivery id: 16 random bytes in hex.
fn delivery_id() -> String {
    let mut bytes = [0u8; 16];
    rand::thread_rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

/// Runs until the queue closes. `recorded` is told after each batch, to wake the worker.
pub fn run(
    mut queue: mpsc::Receiver<Stamped>,
    store: Arc<dyn Store>,
    max_pending_per_app: u64,
    recorded: Arc<Notify>,
    metrics: Arc<Metrics>,
) {
    let mut batch: Vec<Stamped> = Vec::with_capacity(BATCH);
    while let Some(first) = queue.blocking_recv() {
        batch.push(first);
        while batch.len() < BATCH {
            match queue.try_recv() {
                Ok(s) => batch.push(s),
                Err(_) => break,
            }
        }
        let deliveries: Vec<NewDelivery> = batch
            .drain(..)
            .map(|s| {
                let id = delivery_id();
                NewDelivery {
                    body: s.event.body(&id, s.at),
                    id,
                    app_id: s.event.app_id().clone(),
                    stream: s.event.stream().to_string(),
                    event: s.event.name().to_string(),
                    created_at: s.at,
                }
            })
            .collect();
        record(store.as_ref(), &deliveries, max_pending_per_app, &metrics);
        recorded.notify_one();
    }
    tracing::debug!("webhook writer stopped");
}

fn record(store: &dyn Store, deliveries: &[NewDelivery], cap: u64, metrics: &Metrics) {
    for attempt in 1..=TRIES {
        match store.enqueue_webhooks(deliveries, unix_now_ms(), cap) {
            Ok(outcome) => {
                for (app_id, n) in &outcome.dropped {
                    metrics.webhook_dropped_by("outbox_full", *n);
                    tracing::warn!(
                        %app_id,
                        dropped = n,
                        cap,
                        "webhook outbox full for this app (its receiver is down or slow): \
                         the oldest pending deliveries were dropped"
                    );
                }
                return;
            }
            Err(e) if attempt < TRIES => {
                tracing::warn!("webhook outbox write failed (try {attempt} of {TRIES}): {e}");
                std::thread::sleep(Duration::from_millis(100 << attempt));
            }
            Err(e) => {
                metrics.webhook_dropped_by("store_error", deliveries.len() as u64);
                tracing::error!(
                    events = deliveries.len(),
                    "webhook events dropped: the outbox could not be written: {e}"
                );
            }
        }
    }
}
