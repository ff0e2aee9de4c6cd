//! Webhooks (docs/webhooks.md): each app's backend hears about its rooms by signed JSON
//! POSTs to the URL it set.
//!
//! The path of an event, and why each step is where it is:
//! 1. The media task (or the quota check) hands the [`Event`] to a [`Sink`]: a `try_send`
//!    into a bounded queue, so the media loop never waits for the store or the network.
//!    A full queue drops the event, counted in `voipchat_webhook_dropped_total{cause=
//!    "queue_full"}` and logged; the queue holds [`EVENT_QUEUE`] events, minutes of the
//!    busiest rooms' churn.
//! 2. The writer ([`writer`], on a blocking thread) takes the queue in batches and records
//!    each batch in the store's outbox in one transaction, in order. From here an event
//!    survives a restart.
//! 3. The delivery worker ([`worker`], a task of its own) claims due deliveries from the
//!    outbox (one at a time per room, a few at a time per app), POSTs them signed with the
//!    app secret ([`client`]), and reports each attempt back: delivered, retried later with
//!    exponential backoff and jitter, or given up (dead) after `webhook_max_attempts`
//!    attempts or `webhook_max_age_secs`.

pub mod client;
pub mod events;
pub mod url;
pub mod worker;
pub mod writer;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::mpsc;
use voipchat_proto::{AppId, GroupId};

pub use events::Event;

use crate::clock;
use crate::metrics::Metrics;

/// Events the queue between the media task and the writer holds. At about 300 bytes each,
/// a full queue is some 20 MB.
pub const EVENT_QUEUE: usize = 65_536;

/// An event with the time it happened (Unix seconds).
#[derive(Debug)]
pub struct Stamped {
    pub event: Event,
    pub at: u64,
}

/// Where the media task and the quota check put events. Cheap to clone; never blocks.
#[derive(Clone)]
pub struct Sink {
    tx: mpsc::Sender<Stamped>,
    metrics: Arc<Metrics>,
    /// Per app, the quota day a `quota_exhausted` was last sent for: at most one per app
    /// and day while the server runs, however many joins are refused.
    quota_told: Arc<Mutex<HashMap<AppId, String>>>,
    /// Events dropped on a full queue, for the log (which speaks at powers of two).
    dropped: Arc<AtomicU64>,
}

impl Sink {
    /// A sink and the queue's receiving end, for [`writer::run`].
    pub fn new(metrics: Arc<Metrics>) -> (Sink, mpsc::Receiver<Stamped>) {
        let (tx, rx) = mpsc::channel(EVENT_QUEUE);
        let sink = Sink {
            tx,
            metrics,
            quota_told: Arc::default(),
            dropped: Arc::default(),
        };
        (sink, rx)
    }

    /// Queues an event that happened now.
    pub fn emit(&self, event: Event) {
        let stamped = Stamped {
            event,
            at: clock::unix_now(),
        };
        if let Err(e) = self.tx.try_send(stamped) {
            let (cause, stamped) = match e {
                mpsc::error::TrySendError::Full(s) => ("queue_full", s),
                mpsc::error::TrySendError::Closed(s) => ("stopped", s),
            };
            self.metrics.webhook_dropped(cause);
            let n = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            if n.is_power_of_two() {
                tracing::warn!(
                    app_id = %stamped.event.app_id(),
                    event = stamped.event.name(),
                    cause,
                    dropped_so_far = n,
                    "webhook event dropped: the queue to the outbox is full (the store is \
                     too slow) or stopped"
                );
            }
        }
    }

    /// A join of `app_id` was refused for its daily quota: queues `quota_exhausted` unless
    /// one was already queued for this app and `day`.
    pub fn quota_exhausted(
        &self,
        app_id: &AppId,
        group_id: &GroupId,
        day: &str,
        daily_limit: u64,
        rooms_created: u64,
    ) {
        {
            let mut told = self
                .quota_told
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            if told.get(app_id).is_some_and(|d| d == day) {
                return;
            }
            told.insert(app_id.clone(), day.to_string());
        }
        self.emit(Event::QuotaExhausted {
            app_id: app_id.clone(),
            group_id: group_id.clone(),
            day: day.to_string(),
            daily_limit,
            rooms_created,
        });
    }
}

/// Unix milliseconds now.
pub(crate) fn unix_now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}
