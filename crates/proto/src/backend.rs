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
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SignRequest {
    pub open_id: OpenId,
    pub group_id: GroupId,
    pub timestamp: u64,
    pub nonce: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignResponse {
    pub signature: String,
}
