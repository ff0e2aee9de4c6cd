//! Bodies of the backend HTTP API (docs/api.md). Requests authenticate with HTTP Basic
//! `appId:appSecret`; failures answer `{errCode, errMsg}` with a 4xx/5xx status.

use crate::ids::{GroupId, OpenId, Secret};
use serde::{Deserialize, Serialize};

/// `POST /api/v1/session-key`: issue a new session key for a user, our `code2Session`.
/// Every call rotates the key; signatures made with the old key stop verifying.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SessionKeyRequest {
    pub open_id: OpenId,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionKeyResponse {
    pub open_id: OpenId,
    pub session_key: Secret,
}

/// `POST /api/v1/voip-sign`: sign a join on the server, our `cloud.getVoIPSign`; the
/// session key never leaves the server.
///
/// The nonce and the timestamp are optional: the server fills what is missing with a fresh
/// random nonce and its current Unix time, and answers with what it signed. They are accepted
/// under their join names (`nonceStr`, `timeStamp`) or under the older `nonce`, `timestamp`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SignRequest {
    pub open_id: OpenId,
    pub group_id: GroupId,
    #[serde(default, alias = "timeStamp", skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<u64>,
    #[serde(default, alias = "nonceStr", skip_serializing_if = "Option::is_none")]
    pub nonce: Option<String>,
}

/// The answer of `POST /api/v1/voip-sign`: what `joinVoIPChat` needs besides the groupId.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SignResponse {
    pub nonce_str: String,
    pub time_stamp: u64,
    pub signature: String,
}
