//! Newtype ids, so that an app id can never be passed where a group id is meant.

use serde::{Deserialize, Serialize};
use std::fmt;

macro_rules! string_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub String);

        impl $name {
            pub fn new(s: impl Into<String>) -> Self {
                Self(s.into())
            }
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({:?})", stringify!($name), self.0)
            }
        }

        impl From<&str> for $name {
            fn from(s: &str) -> Self {
                Self(s.to_string())
            }
        }

        #[cfg(feature = "openapi")]
        impl utoipa::PartialSchema for $name {
            fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
                id_schema()
            }
        }

        #[cfg(feature = "openapi")]
        impl utoipa::ToSchema for $name {}
    };
}

/// The schema of every id: what `check_id` (signal.rs) and the backend API accept, 1 to
/// [`ID_MAX_CHARS`](crate::signal::ID_MAX_CHARS) characters and no control character.
#[cfg(feature = "openapi")]
fn id_schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
    use utoipa::openapi::schema::{ObjectBuilder, Type};
    ObjectBuilder::new()
        .schema_type(Type::String)
        .min_length(Some(1))
        .max_length(Some(crate::signal::ID_MAX_CHARS))
        .pattern(Some(r"^[^\u0000-\u001F\u007F-\u009F]+$"))
        .into()
}

string_id!(
    /// An application (a game) registered with `voipchat app create`.
    AppId
);
string_id!(
    /// A user of one app, as the game's backend names it.
    OpenId
);
string_id!(
    /// The game's room name; users of one app passing the same group id share a room.
    GroupId
);

/// The key of a live room: rooms are per app, so the same group id in two apps is two rooms.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RoomKey {
    pub app_id: AppId,
    pub group_id: GroupId,
}

impl RoomKey {
    pub fn new(app_id: AppId, group_id: GroupId) -> Self {
        Self { app_id, group_id }
    }
}

impl fmt::Display for RoomKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.app_id, self.group_id)
    }
}

/// A secret string (session key, app secret) that never shows in logs or `Debug` output.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }
    /// The secret itself; call only where it is used (HMAC key, comparison, the one reply
    /// that hands it to its owner).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

#[cfg(feature = "openapi")]
impl utoipa::PartialSchema for Secret {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{ObjectBuilder, Type};
        ObjectBuilder::new().schema_type(Type::String).into()
    }
}

#[cfg(feature = "openapi")]
impl utoipa::ToSchema for Secret {}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}
