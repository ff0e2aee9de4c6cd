//! HTTPS and WSS on the HTTP address: the certificate of `tls_cert` / `tls_key`, re-read when
//! its files change, and a listener that does the TLS handshake before axum sees a connection.
//!
//! Three parts, each usable alone:
//! - [`load`] turns the two PEM files into a rustls [`CertifiedKey`] (a pure function of the
//!   bytes and the time, so every way a file can be wrong is tested without a server) and
//!   names what is wrong and which setting chose the file.
//! - [`Certificate`] owns the files' last seen state and the [`CurrentCert`] that rustls asks
//!   during each handshake. [`Certificate::reload_if_changed`] looks at the files (cheap
//!   `stat`s) and swaps in a new certificate only if it loads; a broken replacement leaves the
//!   old one serving. [`watch`] calls it once a [`RELOAD_CHECK`] on a blocking thread, so
//!   handshakes never touch the file system.
//! - [`TlsListener`] wraps any axum listener (the plain TCP one, or the test hooks'
//!   [`crate::web::HookedListener`]): handshakes run in their own tasks, bounded in time and
//!   number, so one slow client never holds up the accept loop.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, RwLock};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use axum::serve::Listener;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::sync::{mpsc, watch as watch_channel, Semaphore};
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

/// How often [`watch`] looks at the certificate files: a renewal is served within this.
pub const RELOAD_CHECK: Duration = Duration::from_secs(1);
/// A client gets this long from its TCP connect to a finished TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Most TLS handshakes in progress at once; more connections wait in the kernel's backlog.
pub const MAX_HANDSHAKES: usize = 256;

/// A certificate or key that cannot be served. Each message names the file and the setting
/// that chose it, so an operator knows what to fix from the one line.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    #[error("cannot read the TLS {what} {path} ({key}): {source}")]
    Read {
        what: &'static str,
        key: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error("the TLS certificate {path} (tls_cert) is not usable: {reason}")]
    Cert { path: PathBuf, reason: String },
    #[error("the TLS private key {path} (tls_key) is not usable: {reason}")]
    Key { path: PathBuf, reason: String },
    #[error(
        "the TLS private key {key} (tls_key) does not belong to the certificate {cert} \
         (tls_cert): give the key the certificate was issued for"
    )]
    Mismatch { cert: PathBuf, key: PathBuf },
    #[error("cannot set up TLS: {0}")]
    Setup(rustls::Error),
}

/// The two files of the settings `tls_cert` and `tls_key`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertFiles {
    /// PEM: the server's certificate first, then the intermediates (certbot's `fullchain.pem`).
    pub cert: PathBuf,
    /// PEM: its private key (PKCS#8, PKCS#1 or SEC1; certbot's `privkey.pem`).
    pub key: PathBuf,
}

/// What the log says about a loaded certificate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertInfo {
    /// The end-entity certificate's subject, e.g. `CN=voice.example.com`.
    pub subject: String,
    /// Its notAfter, as `2025-06-01T00:00:00Z`.
    pub not_after: String,
    /// notAfter as Unix seconds, to warn about an expired certificate.
    pub not_after_unix: u64,
    /// Certificates in the chain, the end-entity one included.
    pub chain_len: usize,
}

impl CertInfo {
    pub fn expired(&self, now_unix: u64) -> bool {
        self.not_after_unix < now_unix
    }
}

/// The crypto all of voipchat's TLS uses: aws-lc-rs, which str0m's DTLS already links.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// The certificate chain and key in these PEM bytes, checked to belong together.
pub fn load(
    files: &CertFiles,
    cert_pem: &[u8],
    key_pem: &[u8],
    provider: &CryptoProvider,
) -> Result<(CertifiedKey, CertInfo), TlsError> {
    let cert_error = |reason: String| TlsError::Cert {
        path: files.cert.clone(),
        reason,
    };
    let key_error = |reason: String| TlsError::Key {
        path: files.key.clone(),
        reason,
    };
    let chain = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| cert_error(format!("bad PEM: {e}")))?;
    let Some(end_entity) = chain.first() else {
        return Err(cert_error(
            "no certificate in it (expected PEM with -----BEGIN CERTIFICATE-----)".into(),
        ));
    };
    let info = cert_info(end_entity, chain.len()).map_err(cert_error)?;
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| {
        key_error(match e {
            rustls::pki_types::pem::Error::NoItemsFound => {
                "no private key in it (expected PEM with -----BEGIN PRIVATE KEY-----)".into()
            }
            e => format!("bad PEM: {e}"),
        })
    })?;
    let signing_key = provider
        .key_provider
        .load_private_key(key)
        .map_err(|e| key_error(e.to_string()))?;
    let certified = CertifiedKey::new(chain, signing_key);
    match certified.keys_match() {
        // A key type whose public half rustls cannot derive: the handshake would show it.
        Ok(()) | Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {}
        Err(rustls::Error::InconsistentKeys(_)) => {
            return Err(TlsError::Mismatch {
                cert: files.cert.clone(),
                key: files.key.clone(),
            })
        }
        Err(e) => return Err(cert_error(e.to_string())),
    }
    Ok((certified, info))
}

fn cert_info(der: &CertificateDer<'_>, chain_len: usize) -> Result<CertInfo, String> {
    use x509_cert::der::Decode;
    let cert = x509_cert::Certificate::from_der(der.as_ref())
        .map_err(|e| format!("not an X.509 certificate: {e}"))?;
    let tbs = cert.tbs_certificate();
    let not_after = tbs.validity().not_after;
    Ok(CertInfo {
        subject: tbs.subject().to_string(),
        not_after: not_after.to_string(),
        not_after_unix: not_after.to_unix_duration().as_secs(),
        chain_len,
    })
}

/// Reads both files and [`load`]s them.
pub fn load_files(
    files: &CertFiles,
    provider: &CryptoProvider,
) -> Result<(CertifiedKey, CertInfo), TlsError> {
    let read = |what, key, path: &Path| {
        std::fs::read(path).map_err(|source| TlsError::Read {
            what,
            key,
            path: path.to_path_buf(),
            source,
        })
    };
    let cert = read("certificate", "tls_cert", &files.cert)?;
    let key = read("private key", "tls_key", &files.key)?;
    load(files, &cert, &key, provider)
}

/// The certificate handshakes get now; [`Certificate`] replaces it.
pub struct CurrentCert(RwLock<Arc<CertifiedKey>>);

impl fmt::Debug for CurrentCert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The key stays out of any output.
        f.write_str("CurrentCert")
    }
}

impl ResolvesServerCert for CurrentCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.read().unwrap_or_else(|e| e.into_inner()).clone())
    }
}

/// What identifies a file's content cheaply: when any of these changes, the file is read
/// again. The inode and device catch a replaced file or a moved symlink (certbot's `live/`
/// links point at new files on each renewal); `None`: the file could not be looked at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Stamp(Option<(SystemTime, u64, u64, u64)>);

impl Stamp {
    fn of(path: &Path) -> Stamp {
        use std::os::unix::fs::MetadataExt;
        Stamp(std::fs::metadata(path).ok().map(|m| {
            (
                m.modified().unwrap_or(SystemTime::UNIX_EPOCH),
                m.len(),
                m.ino(),
                m.dev(),
            )
        }))
    }
}

/// What [`Certificate::reload_if_changed`] found.
#[derive(Debug)]
pub enum Reload {
    /// The files look as they did at the last look.
    Unchanged,
    /// They changed and the new certificate serves from now on.
    Loaded(CertInfo),
    /// They changed, but not into something servable: the old certificate keeps serving.
    /// Not reported again until the files change again.
    Failed(TlsError),
}

/// The served certificate and the files it comes from.
pub struct Certificate {
    files: CertFiles,
    provider: Arc<CryptoProvider>,
    current: Arc<CurrentCert>,
    info: CertInfo,
    /// The files' stamps at the last look, taken before reading them: a write during the read
    /// changes them again, so the next look reads once more.
    seen: (Stamp, Stamp),
}

impl Certificate {
    /// Loads the files; any problem is an error (the server does not start without them).
    pub fn open(files: CertFiles) -> Result<Certificate, TlsError> {
        let provider = provider();
        let seen = (Stamp::of(&files.cert), Stamp::of(&files.key));
        let (key, info) = load_files(&files, &provider)?;
        Ok(Certificate {
            files,
            provider,
            current: Arc::new(CurrentCert(RwLock::new(Arc::new(key)))),
            info,
            seen,
        })
    }

    pub fn info(&self) -> &CertInfo {
        &self.info
    }

    pub fn files(&self) -> &CertFiles {
        &self.files
    }

    /// A TLS server config that serves whatever certificate is current, HTTP/1.1 only (the
    /// WebSocket upgrade needs it, and axum serves no HTTP/2 here).
    pub fn server_config(&self) -> Result<rustls::ServerConfig, TlsError> {
        let mut config = rustls::ServerConfig::builder_with_provider(self.provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(TlsError::Setup)?
            .with_no_client_auth()
            .with_cert_resolver(self.current.clone());
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(config)
    }

    /// Looks at the files (two `stat`s) and, if they changed, loads them and serves the new
    /// certificate if it loads. Blocking: call it off async threads.
    pub fn reload_if_changed(&mut self) -> Reload {
        let now = (Stamp::of(&self.files.cert), Stamp::of(&self.files.key));
        if now == self.seen {
            return Reload::Unchanged;
        }
        self.seen = now;
        match load_files(&self.files, &self.provider) {
            Ok((key, info)) => {
                *self.current.0.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(key);
                self.info = info.clone();
                Reload::Loaded(info)
            }
            Err(e) => Reload::Failed(e),
        }
    }
}

/// Logs a certificate that was just loaded, with a warning if it has expired.
pub fn log_loaded(info: &CertInfo, files: &CertFiles, now_unix: u64, first: bool) {
    let what = if first {
        "TLS certificate loaded"
    } else {
        "TLS certificate changed on disk: serving the new one"
    };
    tracing::info!(
        subject = %info.subject,
        not_after = %info.not_after,
        chain = info.chain_len,
        cert = %files.cert.display(),
        "{what}"
    );
    if info.expired(now_unix) {
        tracing::warn!(
            subject = %info.subject,
            not_after = %info.not_after,
            "the TLS certificate has expired: browsers refuse it; renew it (it is picked up \
             without a restart)"
        );
    }
}

/// Reloads the certificate whenever its files change, until `stop` turns true.
pub async fn watch(mut cert: Certificate, mut stop: watch_channel::Receiver<bool>) {
    let mut tick = tokio::time::interval(RELOAD_CHECK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        let looked = tokio::task::spawn_blocking(move || {
            let reload = cert.reload_if_changed();
            (cert, reload)
        })
        .await;
        let reload;
        (cert, reload) = match looked {
            Ok(done) => done,
            // The blocking task panicked: a bug; the old certificate was never touched.
            Err(e) => {
                tracing::error!("TLS certificate check failed: {e}; reloading stops");
                return;
            }
        };
        match reload {
            Reload::Unchanged => {}
            Reload::Loaded(info) => {
                log_loaded(&info, cert.files(), crate::clock::unix_now(), false)
            }
            Reload::Failed(e) => tracing::warn!(
                "{e}; still serving the previous certificate ({}, until {})",
                cert.info().subject,
                cert.info().not_after
            ),
        }
    }
}

// --- the listener ------------------------------------------------------------------------

/// A connection of `L` after its TLS handshake, with its address.
type Handshaken<L> = (
    TlsStream<Replay<<L as Listener>::Io>>,
    <L as Listener>::Addr,
);

/// An axum listener that hands out connections after their TLS handshake. Handshakes run in
/// their own tasks: at most [`MAX_HANDSHAKES`] at once, each cut off after
/// [`HANDSHAKE_TIMEOUT`]. A client that speaks plain HTTP to it gets a short 400 answer that
/// says to use https, instead of a silent close.
pub struct TlsListener<L: Listener> {
    inner: L,
    acceptor: TlsAcceptor,
    /// Finished handshakes; the listener keeps a sender so that the channel never closes.
    done_tx: mpsc::Sender<Handshaken<L>>,
    done_rx: mpsc::Receiver<Handshaken<L>>,
    handshakes: Arc<Semaphore>,
}

impl<L: Listener> TlsListener<L> {
    pub fn new(inner: L, config: rustls::ServerConfig) -> Self {
        let (done_tx, done_rx) = mpsc::channel(64);
        TlsListener {
            inner,
            acceptor: TlsAcceptor::from(Arc::new(config)),
            done_tx,
            done_rx,
            handshakes: Arc::new(Semaphore::new(MAX_HANDSHAKES)),
        }
    }
}

impl<L> Listener for TlsListener<L>
where
    L: Listener,
    L::Addr: fmt::Debug + 'static,
{
    type Io = TlsStream<Replay<L::Io>>;
    type Addr = L::Addr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        let TlsListener {
            inner,
            acceptor,
            done_tx,
            done_rx,
            handshakes,
        } = self;
        loop {
            // Both branches are cancel-safe: a TCP accept that loses the race took nothing.
            let next = async {
                let permit = handshakes.clone().acquire_owned().await;
                (permit, inner.accept().await)
            };
            tokio::select! {
                Some(done) = done_rx.recv() => return done,
                (permit, (io, addr)) = next => {
                    // The semaphore is never closed.
                    let Ok(permit) = permit else { continue };
                    let done = done_tx.clone();
                    tokio::spawn(handshake_task(acceptor.clone(), io, addr, done, permit));
                }
            }
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}

/// One connection's handshake, holding one of the [`MAX_HANDSHAKES`] permits; a finished one
/// goes to `done`, a failed or slow one is dropped.
async fn handshake_task<IO, A>(
    acceptor: TlsAcceptor,
    io: IO,
    addr: A,
    done: mpsc::Sender<(TlsStream<Replay<IO>>, A)>,
    _permit: tokio::sync::OwnedSemaphorePermit,
) where
    IO: AsyncRead + AsyncWrite + Unpin,
    A: fmt::Debug,
{
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake(acceptor, io)).await {
        Ok(Ok(tls)) => {
            // Err: the server is stopping and dropped the listener.
            let _ = done.send((tls, addr)).await;
        }
        Ok(Err(e)) => tracing::debug!(peer = ?addr, "TLS handshake failed: {e}"),
        Err(_) => tracing::debug!(peer = ?addr, "TLS handshake timed out"),
    }
}

/// The body of the answer to a client that sent plain HTTP to the TLS port.
pub const PLAIN_HTTP_ANSWER: &str =
    "This address serves HTTPS only: use https:// (and wss:// for the WebSocket)\n";

/// Reads the first bytes: a TLS record starts with 0x16 (handshake); anything else is taken
/// for plain HTTP and answered 400 with [`PLAIN_HTTP_ANSWER`].
async fn handshake<IO>(acceptor: TlsAcceptor, mut io: IO) -> io::Result<TlsStream<Replay<IO>>>
where
    IO: AsyncRead + AsyncWrite + Unpin,
{
    let mut head = vec![0u8; 8];
    let n = tokio::io::AsyncReadExt::read(&mut io, &mut head).await?;
    if n == 0 {
        return Err(io::ErrorKind::UnexpectedEof.into());
    }
    head.truncate(n);
    if head[0] != 0x16 {
        let answer = format!(
            "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\n\
             Connection: close\r\nContent-Length: {}\r\n\r\n{PLAIN_HTTP_ANSWER}",
            PLAIN_HTTP_ANSWER.len()
        );
        io.write_all(answer.as_bytes()).await?;
        io.shutdown().await?;
        // Read what the client still sends (bounded): closing with unread bytes would reset
        // the connection, and the client could lose the answer.
        let mut sink = [0u8; 4096];
        let drain = async {
            let mut total = 0;
            while total < 64 * 1024 {
                match tokio::io::AsyncReadExt::read(&mut io, &mut sink).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => total += n,
                }
            }
        };
        let _ = tokio::time::timeout(Duration::from_secs(2), drain).await;
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "plain HTTP on the TLS port (answered 400)",
        ));
    }
    acceptor.accept(Replay { head, at: 0, io }).await
}

/// A stream that first yields bytes already read from it.
pub struct Replay<IO> {
    head: Vec<u8>,
    at: usize,
    io: IO,
}

impl<IO: AsyncRead + Unpin> AsyncRead for Replay<IO> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.at < this.head.len() {
            let n = (this.head.len() - this.at).min(buf.remaining());
            buf.put_slice(&this.head[this.at..this.at + n]);
            this.at += n;
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.io).poll_read(cx, buf)
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Replay<IO> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}
