//! [`SealedStore`]: any [`Store`] with its session keys encrypted at rest.
//!
//! The backend stores what it is given; this wrapper seals each session key on the way in
//! and opens it on the way out ([`Keyring`]), so SQLite and Redis keep them the same way.
//! App secrets need no key: every backend stores their digest ([`crate::secrets`]).

use std::sync::Arc;

use voipchat_proto::{AppId, OpenId, Secret};

use crate::outbox::{AttemptOutcome, EnqueueOutcome, NewDelivery, OutboxCounts};
use crate::secrets::Keyring;
use crate::{
    AppRecord, AppSettings, Delivery, QuotaDecision, Reservation, SettingsChange, Store, StoreError,
};

/// A store whose session keys are sealed under a keyring.
pub struct SealedStore {
    inner: Arc<dyn Store>,
    keys: Keyring,
}

impl SealedStore {
    pub fn new(inner: Arc<dyn Store>, keys: Keyring) -> SealedStore {
        SealedStore { inner, keys }
    }

    /// Seals every session key that is plain (an older database) or sealed under an old
    /// key; returns how many changed. Run at start, and by `voipchat rotate-key`.
    pub fn reseal_all(&self) -> Result<u64, StoreError> {
        let keys = &self.keys;
        self.inner
            .reseal_session_keys(&|app, user, stored| keys.reseal(app, user, stored))
    }

    pub fn keyring(&self) -> &Keyring {
        &self.keys
    }
}

impl Store for SealedStore {
    fn nonce_used(
        &self,
        app_id: &AppId,
        open_id: &OpenId,
        nonce: &str,
        now_unix: u64,
    ) -> Result<bool, StoreError> {
        self.inner.nonce_used(app_id, open_id, nonce, now_unix)
    }
    fn directory(&self) -> &dyn crate::RoomDirectory {
        self.inner.directory()
    }
    fn ready(&self) -> Result<(), StoreError> {
        self.inner.ready()
    }
    fn create_app(&self, app: &AppRecord) -> Result<(), StoreError> {
        self.inner.create_app(app)
    }
    fn list_apps(&self) -> Result<Vec<AppRecord>, StoreError> {
        self.inner.list_apps()
    }
    fn app(&self, app_id: &AppId) -> Result<Option<AppRecord>, StoreError> {
        self.inner.app(app_id)
    }
    fn set_voip_enabled(&self, app_id: &AppId, enabled: bool) -> Result<bool, StoreError> {
        self.inner.set_voip_enabled(app_id, enabled)
    }
    fn set_app_secret(&self, app_id: &AppId, secret: &Secret) -> Result<bool, StoreError> {
        self.inner.set_app_secret(app_id, secret)
    }
    fn delete_app(&self, app_id: &AppId) -> Result<bool, StoreError> {
        self.inner.delete_app(app_id)
    }
    fn put_session_key(
        &self,
        app_id: &AppId,
        open_id: &OpenId,
        key: &Secret,
        now_unix: u64,
    ) -> Result<(), StoreError> {
        let sealed = Secret::new(self.keys.seal(app_id, open_id, key));
        self.inner
            .put_session_key(app_id, open_id, &sealed, now_unix)
    }
    fn session_key(&self, app_id: &AppId, open_id: &OpenId) -> Result<Option<Secret>, StoreError> {
        match self.inner.session_key(app_id, open_id)? {
            Some(stored) => Ok(Some(self.keys.open(app_id, open_id, stored.expose())?)),
            None => Ok(None),
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
        self.inner
            .consume_nonce(app_id, open_id, nonce, expires_at_unix, now_unix)
    }
    fn release_nonce(
        &self,
        app_id: &AppId,
        open_id: &OpenId,
        nonce: &str,
    ) -> Result<(), StoreError> {
        self.inner.release_nonce(app_id, open_id, nonce)
    }
    fn take_room_quota(
        &self,
        app_id: &AppId,
        day: &str,
        limit: u64,
    ) -> Result<QuotaDecision, StoreError> {
        self.inner.take_room_quota(app_id, day, limit)
    }
    fn reserve_room_quota(
        &self,
        app_id: &AppId,
        day: &str,
        limit: u64,
        r: &Reservation,
    ) -> Result<QuotaDecision, StoreError> {
        self.inner.reserve_room_quota(app_id, day, limit, r)
    }
    fn confirm_room_quota(&self, r: &Reservation) -> Result<bool, StoreError> {
        self.inner.confirm_room_quota(r)
    }
    fn release_room_quota(&self, r: &Reservation) -> Result<bool, StoreError> {
        self.inner.release_room_quota(r)
    }
    fn release_node_reservations(&self, node: &str) -> Result<u64, StoreError> {
        self.inner.release_node_reservations(node)
    }
    fn reseal_session_keys(
        &self,
        reseal: &dyn Fn(&AppId, &OpenId, &str) -> Option<String>,
    ) -> Result<u64, StoreError> {
        self.inner.reseal_session_keys(reseal)
    }
    fn rooms_created(&self, app_id: &AppId, day: &str) -> Result<u64, StoreError> {
        self.inner.rooms_created(app_id, day)
    }
    fn set_webhook_url(&self, app_id: &AppId, url: Option<&str>) -> Result<bool, StoreError> {
        self.inner.set_webhook_url(app_id, url)
    }
    fn webhook_url(&self, app_id: &AppId) -> Result<Option<String>, StoreError> {
        self.inner.webhook_url(app_id)
    }
    fn enqueue_webhooks(
        &self,
        deliveries: &[NewDelivery],
        now_ms: u64,
        max_pending_per_app: u64,
    ) -> Result<EnqueueOutcome, StoreError> {
        self.inner
            .enqueue_webhooks(deliveries, now_ms, max_pending_per_app)
    }
    fn claim_webhooks(
        &self,
        now_ms: u64,
        lease_ms: u64,
        per_app: u64,
        limit: u64,
    ) -> Result<Vec<Delivery>, StoreError> {
        self.inner.claim_webhooks(now_ms, lease_ms, per_app, limit)
    }
    fn finish_webhook(&self, id: &str, outcome: &AttemptOutcome) -> Result<bool, StoreError> {
        self.inner.finish_webhook(id, outcome)
    }
    fn outbox_counts(&self) -> Result<OutboxCounts, StoreError> {
        self.inner.outbox_counts()
    }
    fn rooms_created_between(
        &self,
        app_id: &AppId,
        first: &str,
        last: &str,
    ) -> Result<Vec<(String, u64)>, StoreError> {
        self.inner.rooms_created_between(app_id, first, last)
    }
    fn update_app_settings(
        &self,
        app_id: &AppId,
        change: &SettingsChange,
    ) -> Result<Option<AppSettings>, StoreError> {
        self.inner.update_app_settings(app_id, change)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SqliteStore;

    #[test]
    fn session_keys_are_sealed_in_the_backend_and_old_plain_ones_resealed() {
        let raw: Arc<dyn Store> = Arc::new(SqliteStore::open_in_memory().expect("open"));
        let (a, u, v) = (AppId::new("wx1"), OpenId::new("alice"), OpenId::new("bob"));
        // bob's key was written in plain by a voipchat before encryption.
        raw.put_session_key(&a, &v, &Secret::new("plain-old"), 1)
            .expect("put");
        let sealed = SealedStore::new(raw.clone(), Keyring::from_keys(&[[7; 32]]));
        sealed
            .put_session_key(&a, &u, &Secret::new("k-alice"), 2)
            .expect("put");
        let stored = raw.session_key(&a, &u).expect("get").expect("some");
        assert!(stored.expose().starts_with("s1$"), "{}", stored.expose());
        assert!(!stored.expose().contains("k-alice"));
        assert_eq!(
            sealed.session_key(&a, &u).expect("get"),
            Some(Secret::new("k-alice"))
        );
        // The plain one reads as it is, then is resealed (what the server does at start).
        assert_eq!(
            sealed.session_key(&a, &v).expect("get"),
            Some(Secret::new("plain-old"))
        );
        assert_eq!(sealed.reseal_all().expect("reseal"), 1);
        assert!(raw
            .session_key(&a, &v)
            .expect("get")
            .expect("some")
            .expose()
            .starts_with("s1$"));
        assert_eq!(sealed.reseal_all().expect("again"), 0);
        // A keyring without the sealing key: an error, not another user's key or a panic.
        let other = SealedStore::new(raw, Keyring::from_keys(&[[8; 32]]));
        assert!(matches!(
            other.session_key(&a, &u),
            Err(StoreError::Sealed(_))
        ));
    }
}
