//! The two backend API calls a join needs (docs/api.md), over a plain HTTP/1.1 connection:
//! a session key for the member, then the server's signature of its join. Janus's HTTP API
//! uses the same one-request-per-connection client.

use base64::Engine as _;
use std::net::SocketAddr;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use voipchat_proto::backend::{SessionKeyRequest, SignRequest, SignResponse};
use voipchat_proto::{GroupId, OpenId};

use crate::BenchError;

/// Largest answer read; the API's answers are a few hundred bytes, Janus's SDPs a few KiB.
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

    /// One authenticated POST; the body of a 200 answer.
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

/// One HTTP/1.1 request on its own connection (`Connection: close`): the status and body.
/// `auth` is the base64 of HTTP Basic credentials.
pub async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    auth: Option<&str>,
    body: Option<&str>,
) -> Result<(u16, String), BenchError> {
    let fail = |e: String| BenchError::new(format!("{method} {path} to {addr}: {e}"));
    let mut stream = TcpStream::connect(addr)
        .await
        .map_err(|e| fail(e.to_string()))?;
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    if let Some(auth) = auth {
        head.push_str(&format!("Authorization: Basic {auth}\r\n"));
    }
    let body = body.unwrap_or("");
    if method != "GET" {
        head.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            body.len()
        ));
    }
    head.push_str("\r\n");
    head.push_str(body);
    stream
        .write_all(head.as_bytes())
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
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        let body = dechunk(body).ok_or_else(|| fail(format!("bad chunked body {body:?}")))?;
        return Ok((status, body));
    }
    Ok((status, body.to_string()))
}

/// The body of a `Transfer-Encoding: chunked` answer (Janus's HTTP transport sends them).
fn dechunk(mut rest: &str) -> Option<String> {
    let mut out = String::new();
    loop {
        let (size, after) = rest.split_once("\r\n")?;
        let size = usize::from_str_radix(size.split(';').next()?.trim(), 16).ok()?;
        if size == 0 {
            return Some(out);
        }
        out.push_str(after.get(..size)?);
        rest = after.get(size..)?.strip_prefix("\r\n")?;
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_a_chunked_body() {
        assert_eq!(
            super::dechunk("4\r\n{\"a\"\r\n3\r\n:1}\r\n0\r\n\r\n").as_deref(),
            Some("{\"a\":1}")
        );
        assert_eq!(super::dechunk("zz\r\n"), None);
    }
}
