//! The keyring session keys are sealed with, from the environment, the config or the data
//! directory, and the store wrapped with it (`voipchat_store::SealedStore`).

use std::path::PathBuf;
use std::sync::Arc;

use voipchat_store::{Keyring, SealedStore, Store};

use crate::Config;

/// The environment variable that holds the keys (comma- or newline-separated base64, the
/// current one first); it overrides `secrets_key_file`.
pub const KEY_ENV: &str = "VOIPCHAT_SECRETS_KEY";

/// Where the keyring comes from, for the log and errors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    Env,
    File(PathBuf),
    /// The default file in the data directory; `created` if this start made it.
    DataDir {
        path: PathBuf,
        created: bool,
    },
}

/// The default key file.
pub fn default_key_file(config: &Config) -> PathBuf {
    config.data_dir.join("secrets.key")
}

/// Loads the keyring: `VOIPCHAT_SECRETS_KEY`, else `secrets_key_file`, else
/// `data_dir/secrets.key` (created with a new key, mode 0600, when missing).
pub fn keyring(config: &Config) -> Result<(Keyring, KeySource), voipchat_store::KeyringError> {
    if let Ok(text) = std::env::var(KEY_ENV) {
        let lines = text.replace(',', "\n");
        return Ok((Keyring::parse(&lines, KEY_ENV)?, KeySource::Env));
    }
    if let Some(path) = &config.secrets_key_file {
        return Ok((Keyring::read(path)?, KeySource::File(path.clone())));
    }
    let path = default_key_file(config);
    let (ring, created) = Keyring::read_or_create(&path)?;
    Ok((ring, KeySource::DataDir { path, created }))
}

/// `store` with its session keys sealed; every key stored in plain or under an old key is
/// resealed under the current one first.
pub async fn open_sealed(
    config: &Config,
    store: Arc<dyn Store>,
) -> std::io::Result<Arc<dyn Store>> {
    let (ring, source) = keyring(config).map_err(std::io::Error::other)?;
    match &source {
        KeySource::DataDir {
            path,
            created: true,
        } => tracing::warn!(
            file = %path.display(),
            "created a secrets key for session keys at rest next to the database; keep it \
             out of database backups, or set secrets_key_file / {KEY_ENV} (docs/security.md)"
        ),
        _ => tracing::info!(key_id = ring.current_id(), ?source, "secrets key loaded"),
    }
    let sealed = Arc::new(SealedStore::new(store, ring));
    let s = sealed.clone();
    let resealed = tokio::task::spawn_blocking(move || s.reseal_all())
        .await
        .map_err(std::io::Error::other)?
        .map_err(std::io::Error::other)?;
    if resealed > 0 {
        tracing::info!(
            resealed,
            "session keys resealed under the current secrets key"
        );
    }
    Ok(sealed)
}
