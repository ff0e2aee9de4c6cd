//! Secrets at rest: app secrets as digests, session keys encrypted.
//!
//! - An **app secret** is only ever compared, so the store keeps a digest of it:
//!   `h1$` + hex(HMAC-SHA256(key = the secret, message = [`DIGEST_LABEL`])). App secrets
//!   are 32 random bytes, so a fast one-way function is enough (there is no dictionary to
//!   try), and it needs no server key: losing or rotating the [`Keyring`] never locks an
//!   app out. The digest is also what webhooks are signed with (the `webhookSecret` the CLI
//!   prints), so a stolen database lets one forge webhooks to a backend, never call its API.
//! - A **session key** must be read back to verify join signatures, so it is encrypted:
//!   `s1$` + key id + `$` + base64url(nonce ‖ AES-256-GCM(key, aad = appId NUL openId)).
//!   The associated data binds the ciphertext to its user: a value copied into another
//!   user's row does not open. The [`Keyring`] holds the current key (used to seal) and old
//!   keys (still accepted to open, until everything is resealed under the current one).

use std::path::Path;

use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use voipchat_proto::{AppId, OpenId, Secret};

use crate::AppRecord;

/// What an app secret's digest is keyed with (the secret is the key).
pub const DIGEST_LABEL: &[u8] = b"voipchat app secret v1";
const DIGEST_PREFIX: &str = "h1$";
const SEALED_PREFIX: &str = "s1$";

/// The stored form of an app secret. A value that already is a digest is returned as it is,
/// so storing a record read back from a store does not digest it twice.
pub fn secret_digest(secret: &Secret) -> Secret {
    let text = secret.expose();
    if is_digest(text) {
        return secret.clone();
    }
    let mut mac = match Hmac::<Sha256>::new_from_slice(text.as_bytes()) {
        Ok(m) => m,
        Err(_) => unreachable!("HMAC takes keys of any length"),
    };
    mac.update(DIGEST_LABEL);
    Secret::new(format!(
        "{DIGEST_PREFIX}{}",
        hex::encode(mac.finalize().into_bytes())
    ))
}

/// Whether a stored secret is a digest (and not a plaintext secret of an old database).
pub fn is_digest(stored: &str) -> bool {
    stored.len() == DIGEST_PREFIX.len() + 64
        && stored.starts_with(DIGEST_PREFIX)
        && stored[DIGEST_PREFIX.len()..]
            .bytes()
            .all(|b| b.is_ascii_hexdigit())
}

/// Whether `presented` is the app's secret, in constant time. A digest presented as the
/// secret never matches: only the secret itself does.
pub fn app_secret_matches(app: &AppRecord, presented: &str) -> bool {
    if is_digest(presented) {
        return false;
    }
    let want = secret_digest(&Secret::new(presented));
    bool::from(
        want.expose()
            .as_bytes()
            .ct_eq(app.secret.expose().as_bytes()),
    )
}

/// Why a keyring could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum KeyringError {
    #[error("cannot read the secrets key file {path}: {source}")]
    Read {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write the secrets key file {path}: {source}")]
    Write {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("{origin}: line {line} is not a base64 key of 32 bytes")]
    BadKey { origin: String, line: usize },
    #[error("{origin} holds no key")]
    Empty { origin: String },
}

/// Why a sealed value did not open.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum OpenError {
    #[error("sealed under key {0}, which is not in the keyring (add it to the old keys)")]
    UnknownKey(String),
    #[error("the sealed value is damaged or belongs to another user")]
    Damaged,
}

struct Key {
    id: String,
    aead: LessSafeKey,
}

/// The keys session keys are encrypted with: the first seals, every one opens.
pub struct Keyring {
    keys: Vec<Key>,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ids: Vec<&str> = self.keys.iter().map(|k| k.id.as_str()).collect();
        f.debug_struct("Keyring").field("key_ids", &ids).finish()
    }
}

impl Keyring {
    /// A keyring from raw 32-byte keys, the current one first.
    pub fn from_keys(keys: &[[u8; 32]]) -> Keyring {
        let keys = keys
            .iter()
            .map(|k| Key {
                id: hex::encode(&Sha256::digest(k)[..4]),
                aead: LessSafeKey::new(match UnboundKey::new(&AES_256_GCM, k) {
                    Ok(u) => u,
                    Err(_) => unreachable!("AES-256-GCM takes 32-byte keys"),
                }),
            })
            .collect();
        Keyring { keys }
    }

    /// Parses keys, one base64 key of 32 bytes a line (the current one first; blank lines
    /// and `#` comments ignored). `origin` names the source in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Keyring, KeyringError> {
        let mut keys = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let bytes = STANDARD
                .decode(line)
                .ok()
                .and_then(|b| <[u8; 32]>::try_from(b).ok())
                .ok_or_else(|| KeyringError::BadKey {
                    origin: origin.to_string(),
                    line: i + 1,
                })?;
            keys.push(bytes);
        }
        if keys.is_empty() {
            return Err(KeyringError::Empty {
                origin: origin.to_string(),
            });
        }
        Ok(Keyring::from_keys(&keys))
    }

    /// Reads a key file ([`Keyring::parse`]).
    pub fn read(path: &Path) -> Result<Keyring, KeyringError> {
        let text = std::fs::read_to_string(path).map_err(|source| KeyringError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Keyring::parse(&text, &path.display().to_string())
    }

    /// Reads the key file at `path`, or creates it with one new key (mode 0600) if there is
    /// none. Returns the keyring and whether the file was created.
    pub fn read_or_create(path: &Path) -> Result<(Keyring, bool), KeyringError> {
        match std::fs::metadata(path) {
            Ok(_) => Ok((Keyring::read(path)?, false)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let key = new_key_line();
                write_private(path, &format!("{key}\n")).map_err(|source| KeyringError::Write {
                    path: path.to_path_buf(),
                    source,
                })?;
                Ok((Keyring::read(path)?, true))
            }
            Err(source) => Err(KeyringError::Read {
                path: path.to_path_buf(),
                source,
            }),
        }
    }

    /// The id of the key that seals (8 hex digits of its SHA-256): safe to log.
    pub fn current_id(&self) -> &str {
        &self.keys[0].id
    }

    /// Encrypts a session key for (app, openId) under the current key.
    pub fn seal(&self, app_id: &AppId, open_id: &OpenId, plain: &Secret) -> String {
        let key = &self.keys[0];
        let mut nonce = [0u8; NONCE_LEN];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        let mut buf = plain.expose().as_bytes().to_vec();
        let aad = aad(app_id, open_id);
        if key
            .aead
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(&aad),
                &mut buf,
            )
            .is_err()
        {
            unreachable!("AES-GCM seals any input shorter than 64 GiB");
        }
        let mut out = nonce.to_vec();
        out.extend_from_slice(&buf);
        format!("{SEALED_PREFIX}{}${}", key.id, URL_SAFE_NO_PAD.encode(out))
    }

    /// Decrypts a stored session key. A value that is not sealed (written by a voipchat
    /// before encryption, not yet resealed) is returned as it is.
    pub fn open(
        &self,
        app_id: &AppId,
        open_id: &OpenId,
        stored: &str,
    ) -> Result<Secret, OpenError> {
        let Some(rest) = stored.strip_prefix(SEALED_PREFIX) else {
            return Ok(Secret::new(stored));
        };
        let (id, body) = rest.split_once('$').ok_or(OpenError::Damaged)?;
        let key = self
            .keys
            .iter()
            .find(|k| k.id == id)
            .ok_or_else(|| OpenError::UnknownKey(id.to_string()))?;
        let mut bytes = URL_SAFE_NO_PAD
            .decode(body)
            .map_err(|_| OpenError::Damaged)?;
        if bytes.len() < NONCE_LEN {
            return Err(OpenError::Damaged);
        }
        let mut ct = bytes.split_off(NONCE_LEN);
        let nonce =
            <[u8; NONCE_LEN]>::try_from(bytes.as_slice()).map_err(|_| OpenError::Damaged)?;
        let aad = aad(app_id, open_id);
        let plain = key
            .aead
            .open_in_place(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(&aad),
                &mut ct,
            )
            .map_err(|_| OpenError::Damaged)?;
        String::from_utf8(plain.to_vec())
            .map(Secret::new)
            .map_err(|_| OpenError::Damaged)
    }

    /// Whether a stored value is sealed under the current key (nothing to reseal).
    pub fn is_current(&self, stored: &str) -> bool {
        stored
            .strip_prefix(SEALED_PREFIX)
            .and_then(|r| r.split_once('$'))
            .is_some_and(|(id, _)| id == self.keys[0].id)
    }

    /// For [`Store::reseal_session_keys`](crate::Store::reseal_session_keys): the value to
    /// store instead of `stored`, when it is plain or sealed under an old key. A value that
    /// does not open is left alone (and stays unreadable).
    pub fn reseal(&self, app_id: &AppId, open_id: &OpenId, stored: &str) -> Option<String> {
        if self.is_current(stored) {
            return None;
        }
        let plain = self.open(app_id, open_id, stored).ok()?;
        Some(self.seal(app_id, open_id, &plain))
    }
}

fn aad(app_id: &AppId, open_id: &OpenId) -> Vec<u8> {
    let mut aad = app_id.as_str().as_bytes().to_vec();
    aad.push(0);
    aad.extend_from_slice(open_id.as_str().as_bytes());
    aad
}

/// A new key as a key-file line: 32 random bytes in base64.
pub fn new_key_line() -> String {
    let mut key = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut key);
    STANDARD.encode(key)
}

/// Writes `text` to a new file only its owner can read (0600), atomically (temp + rename).
pub fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(text.as_bytes())?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids() -> (AppId, OpenId) {
        (AppId::new("wx1"), OpenId::new("alice"))
    }

    #[test]
    fn digest_is_stable_one_way_and_matches_only_the_secret() {
        let secret = Secret::new("s3cret-of-the-app");
        let d = secret_digest(&secret);
        assert!(is_digest(d.expose()));
        assert_ne!(d.expose(), secret.expose());
        assert_eq!(secret_digest(&d), d, "a digest is not digested twice");
        let app = AppRecord {
            app_id: AppId::new("wx1"),
            name: String::new(),
            secret: d.clone(),
            voip_enabled: true,
            created_at: 0,
            settings: Default::default(),
        };
        assert!(app_secret_matches(&app, "s3cret-of-the-app"));
        assert!(!app_secret_matches(&app, "s3cret-of-the-apq"));
        assert!(
            !app_secret_matches(&app, d.expose()),
            "the digest is not a password"
        );
    }

    #[test]
    fn sealed_keys_open_only_for_their_user_and_with_a_known_key() {
        let (a, u) = ids();
        let old = Keyring::from_keys(&[[1; 32]]);
        let sealed = old.seal(&a, &u, &Secret::new("key-1"));
        assert!(sealed.starts_with("s1$"));
        assert!(!sealed.contains("key-1"));
        assert_eq!(old.open(&a, &u, &sealed), Ok(Secret::new("key-1")));
        assert_eq!(
            old.open(&a, &OpenId::new("bob"), &sealed),
            Err(OpenError::Damaged),
            "bound to its user"
        );
        let mut flipped = sealed.clone().into_bytes();
        let last = flipped.len() - 1;
        flipped[last] = if flipped[last] == b'A' { b'B' } else { b'A' };
        assert_eq!(
            old.open(&a, &u, std::str::from_utf8(&flipped).unwrap()),
            Err(OpenError::Damaged)
        );
        // Rotation: a new current key, the old one kept to open.
        let rotated = Keyring::from_keys(&[[2; 32], [1; 32]]);
        assert_eq!(rotated.open(&a, &u, &sealed), Ok(Secret::new("key-1")));
        let resealed = rotated.reseal(&a, &u, &sealed).expect("resealed");
        assert!(rotated.is_current(&resealed));
        assert_eq!(rotated.reseal(&a, &u, &resealed), None);
        let new_only = Keyring::from_keys(&[[2; 32]]);
        assert_eq!(new_only.open(&a, &u, &resealed), Ok(Secret::new("key-1")));
        assert!(matches!(
            new_only.open(&a, &u, &sealed),
            Err(OpenError::UnknownKey(_))
        ));
        // A plain value of an old database opens as it is and is resealed.
        assert_eq!(new_only.open(&a, &u, "plain"), Ok(Secret::new("plain")));
        assert!(new_only.reseal(&a, &u, "plain").is_some());
    }

    #[test]
    fn key_files_are_created_private_and_parsed_strictly() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub").join("secrets.key");
        let (ring, created) = Keyring::read_or_create(&path).unwrap();
        assert!(created);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let (again, created) = Keyring::read_or_create(&path).unwrap();
        assert!(!created);
        assert_eq!(ring.current_id(), again.current_id());
        assert!(matches!(
            Keyring::parse("# only a comment\n", "x"),
            Err(KeyringError::Empty { .. })
        ));
        assert!(matches!(
            Keyring::parse("c2hvcnQ=\n", "x"),
            Err(KeyringError::BadKey { line: 1, .. })
        ));
    }
}
