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

    /// One POST with the app's credentials; the body of a 200 answer.
    async fn post(&self, path: &str, body: &str) -> Result<String, BenchError> {
        let auth = base64::engine::general_purpose::STANDARD
            .encode(format!("{}:{}", self.app_id, self.app_secret));
        let (status, answer) = request(self.http, "POST", path, Some(&auth), Some(body)).await?;
        if status != 200 {
            return Err(BenchError::new(format!(
                "POST {path} to {}: status {status}: {answer}",
                self.http
            )));
        }
        Ok(answer)
    }
}

/// One request on its own connection (`Connection: close`), with Basic credentials if
/// given: the status and the body of the answer. Also Janus's API (`crate::janus`).
pub async fn request(
    http: SocketAddr,
    method: &str,
    path: &str,
    basic_auth: Option<&str>,
    body: Option<&str>,
) -> Result<(u16, String), BenchError> {
    let fail = |e: String| BenchError::new(format!("{method} {path} to {http}: {e}"));
    let mut stream = TcpStream::connect(http)
        .await
        .map_err(|e| fail(e.to_string()))?;
    let _ = stream.set_nodelay(true);
    let auth = basic_auth
        .map(|a| format!("Authorization: Basic {a}\r\n"))
        .unwrap_or_default();
    let body = body.unwrap_or("");
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {http}\r\n{auth}\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
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
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| fail(format!("no status in {head:?}")))?;
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body).ok_or_else(|| fail(format!("a broken chunked body: {body:?}")))?
    } else {
        body.to_string()
    };
    Ok((status, body))
}

/// The body of a chunked answer (Janus's HTTP transport sends them); None if malformed.
fn dechunk(mut raw: &str) -> Option<String> {
    let mut out = String::new();
    loop {
        let (size, rest) = raw.split_once("\r\n")?;
        let size = usize::from_str_radix(size.split(';').next()?.trim(), 16).ok()?;
        if size == 0 {
            return Some(out);
        }
        out.push_str(rest.get(..size)?);
        raw = rest.get(size..)?.strip_prefix("\r\n")?;
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_chunked_body_is_joined_and_a_cut_one_refused() {
        let raw = "5\r\nhello\r\n7;x=y\r\n, world\r\n0\r\n\r\n";
        assert_eq!(super::dechunk(raw).as_deref(), Some("hello, world"));
        assert_eq!(super::dechunk("5\r\nhel"), None);
    }
}
