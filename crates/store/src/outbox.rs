//! The webhook outbox: what the server must still POST to the apps' webhook URLs.
//!
//! A delivery is recorded when its event happens ([`Store::enqueue_webhooks`]), handed to
//! the delivery worker when due ([`Store::claim_webhooks`]) and reported on after each
//! attempt ([`Store::finish_webhook`]). Deliveries belong to a *stream* (a room of an app,
//! or the app itself for app-wide events) and each stream is delivered strictly in order.
//!
//! [`Store::enqueue_webhooks`]: crate::Store::enqueue_webhooks
//! [`Store::claim_webhooks`]: crate::Store::claim_webhooks
//! [`Store::finish_webhook`]: crate::Store::finish_webhook

use voipchat_proto::AppId;

/// Dead (failed for good) deliveries kept per app, for an operator to look at; older ones
/// are removed as new ones fail.
pub const DEAD_KEPT_PER_APP: u64 = 100;

/// A delivery to record. The store keeps `body` as it is; the server signs it when it
/// sends it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewDelivery {
    /// Unique over all deliveries: the receivers' idempotency key.
    pub id: String,
    pub app_id: AppId,
    /// The ordering key within the app: a room's groupId, or "" for app-wide events.
    pub stream: String,
    /// The event's name (`room_started`, …), sent in a header.
    pub event: String,
    /// The JSON body.
    pub body: String,
    /// Unix seconds: when the event happened.
    pub created_at: u64,
}

/// A claimed delivery, to attempt now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delivery {
    pub id: String,
    pub app_id: AppId,
    pub stream: String,
    pub event: String,
    pub body: String,
    pub created_at: u64,
    /// Attempts made before this one.
    pub attempts: u32,
}

/// What [`Store::enqueue_webhooks`](crate::Store::enqueue_webhooks) did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EnqueueOutcome {
    /// Deliveries recorded.
    pub enqueued: u64,
    /// Deliveries not recorded because their app has no webhook URL.
    pub no_webhook: u64,
    /// Per app, the oldest pending deliveries removed to keep it within the cap.
    pub dropped: Vec<(AppId, u64)>,
}

/// The result of one attempt, for [`Store::finish_webhook`](crate::Store::finish_webhook).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AttemptOutcome {
    /// The receiver took it (2xx): the delivery is removed.
    Delivered,
    /// Try again at `at_ms` (Unix milliseconds); `error` says what went wrong.
    Retry { at_ms: u64, error: String },
    /// Give up: the delivery is kept as dead with `error`, and its stream moves on.
    Dead { at_ms: u64, error: String },
    /// Not attempted after all (the server is stopping): claimable again at once.
    Released,
}

/// Deliveries in the outbox.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OutboxCounts {
    pub pending: u64,
    pub dead: u64,
}
