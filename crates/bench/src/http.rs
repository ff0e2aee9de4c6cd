//! The two backend API calls a join needs (docs/api.md), over a plain HTTP/1.1 connection:
//! a session key for the member, then the server's signature of its join.

use base64::Engine as _;
use std::net::SocketAddr;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use voipchat_proto::backend::{SessionKeyRequest, SignRequest, SignResponse};
use voipchat_proto::{GroupId, OpenId};

use crate::BenchError;

/// Largest answer read; the API's answers are a few hundred bytes.
const MAX_RESPONSE: usize = 64 * 1024;

/// Backend credentials of the app the members join.
#[derive(Clone, Debug)]
pub struct Backend {
    pub http: SocketAddr,
    pub app_id: String,
    pub app_secret: String,
}

impl Backend {
    /// `POST /api/v1/session-key` then `POST /api/v1/voip-sign`: the signed join fields.
    pub async fn sign_join(
        &self,
        open_id: &str,
        group_id: &str,
    ) -> Result<SignResponse, BenchError> {
        let key = SessionKeyRequest {
            open_id: OpenId::new(open_id),
        };
        self.post(
            "/api/v1/session-key",
            &serde_json::to_string(&key).unwrap_or_default(),
        )
        .await?;
        let sign = SignRequest {
            open_id: OpenId::new(open_id),
            group_id: GroupId::new(group_id),
            timestamp: None,
            nonce: None,
        };
        let body = self
            .post(
                "/api/v1/voip-sign",
                &serde_json::to_string(&sign).unwrap_or_default(),
            )
            .await?;
        serde_json::from_str(&body)
            .map_err(|e| BenchError::new(format!("voip-sign answered {body:?}: {e}")))
    }

    /// One request on its own connection (`Connection: close`); the body of a 200 answer.
    async fn post(&self, path: &str, body: &str) -> Result<String, BenchError> {
        let fail = |e: String| BenchError::new(format!("POST {path} to {}: {e}", self.http));
        let mut stream = TcpStream::connect(self.http)
            .await
            .map_err(|e| fail(e.to_string()))?;
        let auth = base64::engine::general_purpose::STANDARD
            .encode(format!("{}:{}", self.app_id, self.app_secret));
        let request = format!(
            "POST {path} HTTP/1.1\r\nHost: {}\r\nAuthorization: Basic {auth}\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            self.http,
            body.len()
        );
        stream
            .write_all(request.as_bytes())
            .await
            .map_err(|e| fail(e.to_string()))?;
        let mut raw = Vec::new();
        (&mut stream)
            .take(MAX_RESPONSE as u64)
            .read_to_end(&mut raw)
            .await
            .map_err(|e| fail(e.to_string()))?;
        let text = String::from_utf8_lossy(&raw);
        let (head, body) = text
            .split_once("\r\n\r\n")
            .ok_or_else(|| fail(format!("not an HTTP response: {text:?}")))?;
        let status = head.split(' ').nth(1).unwrap_or("");
        if status != "200" {
            return Err(fail(format!("status {status}: {body}")));
        }
        if head
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked")
        {
            return Err(fail("chunked answers are not supported".into()));
        }
        Ok(body.to_string())
    }
}
