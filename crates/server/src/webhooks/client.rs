//! One webhook POST: connect (TCP, and TLS for `https://`), send, read the status line, hang
//! up ([`exchange`], which calls passed between nodes use too). One connection per attempt keeps every attempt independent and bounded by one
//! timeout; webhook traffic is a few requests per room event, so the handshakes are cheap
//! next to the events themselves.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::Request;
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;

use super::url::WebhookUrl;

/// The TLS settings of `https://` deliveries.
#[derive(Clone)]
pub struct Tls(tokio_rustls::TlsConnector);

impl Tls {
    /// The system's root certificates, and those of `ca_file` if given. An unreadable
    /// `ca_file` is an error (the operator named it); unreadable system roots are a warning
    /// (plain `http://` receivers still work).
    pub fn new(ca_file: Option<&Path>) -> Result<Tls, String> {
        let mut roots = rustls::RootCertStore::empty();
        let native = rustls_native_certs::load_native_certs();
        for e in &native.errors {
            tracing::warn!("webhooks: reading the system's root certificates: {e}");
        }
        let (_added, _ignored) = roots.add_parsable_certificates(native.certs);
        if let Some(path) = ca_file {
            let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
                .and_then(|iter| iter.collect::<Result<_, _>>())
                .map_err(|e| format!("webhook_ca_file {}: {e}", path.display()))?;
            if certs.is_empty() {
                return Err(format!(
                    "webhook_ca_file {}: no PEM certificate in it",
                    path.display()
                ));
            }
            for cert in certs {
                roots
                    .add(cert)
                    .map_err(|e| format!("webhook_ca_file {}: {e}", path.display()))?;
            }
        }
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("webhook TLS settings: {e}"))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(Tls(tokio_rustls::TlsConnector::from(Arc::new(config))))
    }
}

/// The headers of one delivery besides Host, Content-Type and Content-Length.
pub struct Headers<'a> {
    pub event: &'a str,
    pub delivery: &'a str,
    pub signature: &'a str,
}

/// POSTs `body` to `url` and returns the response's status code; every failure (no
/// connection, TLS, a reset, the deadline) is a one-line reason. The whole attempt,
/// connecting included, ends by `timeout`.
pub async fn post(
    tls: &Tls,
    url: &WebhookUrl,
    headers: &Headers<'_>,
    body: String,
    timeout: Duration,
) -> Result<u16, String> {
    match tokio::time::timeout(timeout, post_inner(tls, url, headers, body)).await {
        Ok(result) => result,
        Err(_) => Err(format!("no answer within {} ms", timeout.as_millis())),
    }
}

async fn post_inner(
    tls: &Tls,
    url: &WebhookUrl,
    headers: &Headers<'_>,
    body: String,
) -> Result<u16, String> {
    let request = Request::post(url.path_and_query.as_str())
        .header(hyper::header::HOST, url.authority.as_str())
        .header(hyper::header::CONTENT_TYPE, "application/json")
        .header(
            hyper::header::USER_AGENT,
            concat!("voipchat/", env!("CARGO_PKG_VERSION")),
        )
        .header("X-Voipchat-Event", headers.event)
        .header("X-Voipchat-Delivery", headers.delivery)
        .header(voipchat_auth::webhook::SIGNATURE_HEADER, headers.signature)
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| format!("request: {e}"))?;
    // A receiver's body is never read: only its status counts.
    let answer = exchange(tls, url, request, false).await?;
    Ok(answer.status.as_u16())
}

/// What a request to another server came to.
pub struct Answer {
    pub status: hyper::StatusCode,
    pub headers: hyper::HeaderMap,
    /// Empty unless asked for.
    pub body: Bytes,
}

/// One request on a connection of its own to `url`'s host (TCP, and TLS for `https://`):
/// the server's outgoing HTTP, for webhooks and for calls passed between nodes. With
/// `read_body` the answer's body is read too. Unbounded in time: callers wrap it in
/// their timeout.
pub async fn exchange(
    tls: &Tls,
    url: &WebhookUrl,
    request: Request<Full<Bytes>>,
    read_body: bool,
) -> Result<Answer, String> {
    let tcp = TcpStream::connect((url.host.as_str(), url.port))
        .await
        .map_err(|e| format!("connect to {}:{}: {e}", url.host, url.port))?;
    let _ = tcp.set_nodelay(true);
    if url.tls {
        let name = ServerName::try_from(url.host.clone())
            .map_err(|e| format!("{}: not a TLS server name: {e}", url.host))?;
        let stream = tls
            .0
            .connect(name, tcp)
            .await
            .map_err(|e| format!("TLS with {}: {e}", url.host))?;
        send(TokioIo::new(stream), request, read_body).await
    } else {
        send(TokioIo::new(tcp), request, read_body).await
    }
}

async fn send<T>(io: T, request: Request<Full<Bytes>>, read_body: bool) -> Result<Answer, String>
where
    T: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, connection) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|e| format!("HTTP: {e}"))?;
    // The connection is driven beside the request, in this future: when the attempt ends
    // (answered, failed, or dropped at its deadline) the connection goes with it.
    tokio::pin!(connection);
    let response = tokio::select! {
        response = sender.send_request(request) => response.map_err(|e| format!("HTTP: {e}"))?,
        ended = &mut connection => return Err(match ended {
            Ok(()) => "HTTP: the connection closed before an answer".to_string(),
            Err(e) => format!("HTTP: {e}"),
        }),
    };
    let (parts, body) = response.into_parts();
    let body = if read_body {
        // The connection keeps running while the body is read.
        tokio::select! {
            b = http_body_util::BodyExt::collect(body) => b.map_err(|e| format!("HTTP body: {e}"))?.to_bytes(),
            _ = &mut connection => return Err("HTTP: the connection closed in the body".into()),
        }
    } else {
        Bytes::new()
    };
    Ok(Answer {
        status: parts.status,
        headers: parts.headers,
        body,
    })
}
