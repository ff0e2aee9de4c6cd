//! HTTPS and WSS with real rustls on both sides: a test CA made here (rcgen) signs the
//! server's certificates; clients trust that CA only.
//!
//! - In process: the backend API and `/healthz` over HTTPS, two Rust clients joining a room
//!   over `wss://`, a client that does not trust the CA refused, plain HTTP to the TLS port
//!   answered 400 at once, and the test hooks dropping a WebSocket under TLS.
//! - The binary: a renewed certificate is served to new connections without a restart, a
//!   broken or half-written one keeps the old one serving (each with its log line); a bad
//!   certificate or key stops the start with one line naming the file and the setting; plain
//!   HTTP on a non-loopback address needs `--allow-insecure-http`.

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use common::peers::TestPeer;
use common::TestServer;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, SanType};
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use voipchat_client::{ClientError, ClientEvent};
use voipchat_proto::Secret;

/// A CA of this test run; `ca.pem` is what clients trust.
struct TestCa {
    issuer: Issuer<'static, KeyPair>,
    pem: String,
}

/// A server certificate for 127.0.0.1 and localhost, signed by the test CA.
struct ServerCert {
    der: CertificateDer<'static>,
    cert_pem: String,
    key_pem: String,
}

impl TestCa {
    fn new() -> TestCa {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "voipchat test CA");
        let key = KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        TestCa {
            issuer: Issuer::new(params, key),
            pem: cert.pem(),
        }
    }

    /// A leaf named `CN=<name>` with this serial number.
    fn server_cert(&self, name: &str, serial: u64) -> ServerCert {
        self.server_cert_with(name, serial, |_| {})
    }

    fn server_cert_with(
        &self,
        name: &str,
        serial: u64,
        tweak: impl FnOnce(&mut CertificateParams),
    ) -> ServerCert {
        let mut params = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
        params
            .subject_alt_names
            .push(SanType::IpAddress([127, 0, 0, 1].into()));
        params.distinguished_name.push(DnType::CommonName, name);
        params.serial_number = Some(serial.into());
        tweak(&mut params);
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        ServerCert {
            der: cert.der().clone(),
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        }
    }
}

/// The certificate files of a server, and the CA file of its clients, in `dir`.
struct TlsFiles {
    cert: PathBuf,
    key: PathBuf,
    ca: PathBuf,
}

impl TlsFiles {
    fn write(dir: &Path, ca: &TestCa, cert: &ServerCert) -> TlsFiles {
        let files = TlsFiles {
            cert: dir.join("cert.pem"),
            key: dir.join("key.pem"),
            ca: dir.join("ca.pem"),
        };
        std::fs::write(&files.ca, &ca.pem).unwrap();
        std::fs::write(&files.cert, &cert.cert_pem).unwrap();
        std::fs::write(&files.key, &cert.key_pem).unwrap();
        files
    }

    /// Replaces both files the way certbot's renewal does: new files, then a rename each.
    fn renew(&self, cert: &ServerCert) {
        for (path, text) in [(&self.cert, &cert.cert_pem), (&self.key, &cert.key_pem)] {
            let new = path.with_extension("new");
            std::fs::write(&new, text).unwrap();
            std::fs::rename(&new, path).unwrap();
        }
    }
}

/// A TLS client config trusting only the CA in `ca_pem`. Without session resumption: a
/// resumed session shows no certificate, and the client would report the first one again.
fn trusting(ca_pem: &str) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls::pki_types::pem::PemObject::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.resumption = rustls::client::Resumption::disabled();
    Arc::new(config)
}

/// One HTTPS request to `addr` (verified as 127.0.0.1); returns status, body and the
/// certificate the server showed.
async fn https_request(
    addr: SocketAddr,
    trust: &Arc<rustls::ClientConfig>,
    method: &str,
    path: &str,
    auth: Option<(String, String)>,
    body: Option<&str>,
) -> (u16, String, CertificateDer<'static>) {
    let tcp = TcpStream::connect(addr).await.expect("connect");
    let connector = tokio_rustls::TlsConnector::from(trust.clone());
    let name = ServerName::IpAddress(addr.ip().into());
    let tls = tokio::time::timeout(Duration::from_secs(10), connector.connect(name, tcp))
        .await
        .expect("TLS handshake in time")
        .expect("TLS handshake");
    let shown = tls.get_ref().1.peer_certificates().unwrap()[0].clone();
    let (status, body) = common::request_over(tls, addr, method, path, auth, body).await;
    (status, body, shown)
}

/// The certificate a new HTTPS connection to `addr` is shown.
async fn served_cert(
    addr: SocketAddr,
    trust: &Arc<rustls::ClientConfig>,
) -> CertificateDer<'static> {
    let (status, body, shown) = https_request(addr, trust, "GET", "/healthz", None, None).await;
    assert_eq!((status, body.as_str()), (200, "ok"));
    shown
}

/// Sends `request` in plain text to `addr`; returns everything the server sent before it
/// closed (bounded: the test fails after 5 s instead of hanging).
async fn plain_exchange(addr: SocketAddr, request: &[u8]) -> String {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(request).await.unwrap();
    let mut got = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), tcp.read_to_end(&mut got))
        .await
        .expect("the TLS port answers plain HTTP and closes, without hanging")
        .unwrap();
    String::from_utf8_lossy(&got).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_api_and_rooms_over_https_and_wss() {
    let dir = common::data_dir();
    let ca = TestCa::new();
    let files = TlsFiles::write(dir.path(), &ca, &ca.server_cert("voipchat test", 1));
    let (cert, key) = (files.cert.clone(), files.key.clone());
    let server = TestServer::start(dir.path(), |c| {
        c.tls_cert = Some(cert);
        c.tls_key = Some(key);
        c.test_hooks = true;
    })
    .await;
    assert!(server.ws_url().starts_with("wss://127.0.0.1:"));
    let trust = trusting(&ca.pem);
    let (app, secret) = server.create_app(true);

    // /healthz and a backend API call (Basic auth) over HTTPS.
    let (status, body, _) = https_request(server.http, &trust, "GET", "/healthz", None, None).await;
    assert_eq!((status, body.as_str()), (200, "ok"));
    let mut keys = Vec::new();
    for open_id in ["alice", "bob", "eve", "carol"] {
        let (status, body, _) = https_request(
            server.http,
            &trust,
            "POST",
            "/api/v1/session-key",
            Some((app.to_string(), secret.expose().to_string())),
            Some(&format!(r#"{{"openId":"{open_id}"}}"#)),
        )
        .await;
        assert_eq!(status, 200, "{body}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        keys.push(Secret::new(v["sessionKey"].as_str().unwrap()));
    }

    // Two members join over wss:// (the client trusts the test CA through its CA file) and
    // see each other; their media runs as always.
    let ca_file = files.ca.clone();
    let trust_ca = move |o: &mut voipchat_client::JoinOptions| o.ca_file = Some(ca_file.clone());
    let alice = TestPeer::join_with(&server, &app, &keys[0], "alice", "room", trust_ca.clone())
        .await
        .expect("alice joins over wss");
    let bob = TestPeer::join_with(&server, &app, &keys[1], "bob", "room", trust_ca.clone())
        .await
        .expect("bob joins over wss");
    assert!(
        alice
            .wait_until(Duration::from_secs(5), || alice.members_changed().last()
                == Some(&vec!["alice".to_string(), "bob".to_string()]))
            .await,
        "alice sees bob join: {:?}",
        alice.members_changed()
    );
    alice.wait_connected().await;
    bob.wait_connected().await;

    // The CLI client: an https:// server URL and --ca-file; it joins (carol sees alice and
    // bob) and leaves after a second.
    let out = tokio::process::Command::new(client_cli())
        .args(["join", "--server", &format!("https://{}", server.http)])
        .args(["--ca-file", files.ca.to_str().unwrap()])
        .args([
            "--app-id",
            app.as_str(),
            "--open-id",
            "carol",
            "--group-id",
            "room",
        ])
        .args(["--session-key", keys[3].expose(), "--duration", "1"])
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(30), out)
        .await
        .expect("the CLI client ends")
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let joined = stdout
        .lines()
        .find(|l| l.contains(r#""event":"joined""#))
        .unwrap_or_else(|| panic!("a joined line: {stdout}"));
    assert!(joined.contains(r#"["alice","bob","carol"]"#), "{joined}");

    // A client that trusts only the public roots refuses the test CA's certificate.
    let refused = TestPeer::join_with(&server, &app, &keys[2], "eve", "room", |_| {}).await;
    match refused {
        Err(ClientError::WebSocket(e)) => {
            assert!(
                e.contains("UnknownIssuer") || e.contains("certificate"),
                "{e}"
            )
        }
        Err(e) => panic!("expected a TLS refusal, got {e}"),
        Ok(_) => panic!("eve joined without trusting the server's certificate"),
    }

    // Plain HTTP to the TLS port: a 400 that says what to do, then the close.
    let answer = plain_exchange(
        server.http,
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(
        answer.starts_with("HTTP/1.1 400 Bad Request\r\n"),
        "{answer}"
    );
    assert!(
        answer.ends_with(voipchat_server::tls::PLAIN_HTTP_ANSWER),
        "{answer}"
    );
    // Bytes that are neither: closed too, without a hang.
    let answer = plain_exchange(server.http, &[0u8; 64]).await;
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");

    // The test hooks reach the TCP connections below TLS: bob's WebSocket is dropped.
    let (status, body, _) = https_request(
        server.http,
        &trust,
        "POST",
        "/api/v1/test/drop-ws",
        None,
        Some(r#"{"query":""}"#),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let closed = |p: &TestPeer| p.events.lock().unwrap().contains(&ClientEvent::Closed);
    assert!(
        bob.wait_until(Duration::from_secs(5), || closed(&bob))
            .await,
        "bob's wss connection was dropped"
    );
    drop(alice);
    server.stop().await;
}

/// The client CLI binary, built on demand (it belongs to another package of the workspace).
fn client_cli() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let path = exe
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("voipchat-client");
    let status = std::process::Command::new(env!("CARGO"))
        .args([
            "build",
            "--quiet",
            "-p",
            "voipchat-client",
            "--bin",
            "voipchat-client",
        ])
        .status()
        .expect("cargo runs");
    assert!(status.success(), "building voipchat-client");
    path
}

/// `voipchat serve` with `args` on port 0 in `dir`; returns the child, its stderr lines up to
/// the "voipchat serving" line, a channel of the lines after it, and its HTTP address.
async fn serve(
    dir: &Path,
    args: &[&str],
) -> (
    tokio::process::Child,
    Vec<String>,
    tokio::sync::mpsc::UnboundedReceiver<String>,
    SocketAddr,
) {
    let common::binary::Started {
        child,
        http,
        seen,
        mut lines,
    } = common::binary::start(dir, args, "info").await;
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok(Some(line)) = lines.next_line().await {
            if tx.send(common::plain(&line)).is_err() {
                break;
            }
        }
    });
    (child, seen, rx, http)
}

/// Waits (10 s at most) for a log line that contains every one of `parts`; skips others.
async fn wait_line(
    lines: &mut tokio::sync::mpsc::UnboundedReceiver<String>,
    parts: &[&str],
) -> String {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let mut skipped = Vec::new();
    loop {
        match tokio::time::timeout_at(deadline, lines.recv()).await {
            Ok(Some(line)) if parts.iter().all(|p| line.contains(p)) => return line,
            Ok(Some(line)) => skipped.push(line),
            Ok(None) => panic!("the server exited; lines: {skipped:#?}"),
            Err(_) => panic!("no line with {parts:?} within 10 s; lines: {skipped:#?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_renewed_certificate_is_served_without_a_restart_and_a_broken_one_is_not() {
    let dir = common::data_dir();
    let ca = TestCa::new();
    let first = ca.server_cert("voipchat first", 1);
    let files = TlsFiles::write(dir.path(), &ca, &first);
    let trust = trusting(&ca.pem);
    let (mut child, seen, mut lines, http) = serve(
        dir.path(),
        &[
            "--http-addr",
            "127.0.0.1:0",
            "--tls-cert",
            files.cert.to_str().unwrap(),
            "--tls-key",
            files.key.to_str().unwrap(),
        ],
    )
    .await;
    let has = |needle: &str| seen.iter().any(|l| l.contains(needle));
    assert!(has("HTTPS on https://127.0.0.1:"), "{seen:#?}");
    assert!(has("signaling wss://127.0.0.1:"), "{seen:#?}");
    assert!(
        has("TLS certificate loaded") && has("CN=voipchat first"),
        "{seen:#?}"
    );
    assert!(has("tls=true"), "{seen:#?}");
    assert_eq!(served_cert(http, &trust).await, first.der);

    // Renewal: both files replaced; the next connection gets the new certificate.
    let second = ca.server_cert("voipchat second", 2);
    files.renew(&second);
    wait_line(&mut lines, &["serving the new one", "CN=voipchat second"]).await;
    assert_eq!(served_cert(http, &trust).await, second.der);

    // A broken certificate file: a warning, and the second certificate goes on serving.
    std::fs::write(&files.cert, "-----BEGIN CERTIFICATE-----\nbroken\n").unwrap();
    let warning = wait_line(&mut lines, &["WARN", "(tls_cert) is not usable"]).await;
    assert!(
        warning.contains("still serving the previous certificate (CN=voipchat second"),
        "{warning}"
    );
    for _ in 0..3 {
        assert_eq!(served_cert(http, &trust).await, second.der);
    }

    // Half a renewal (the new certificate, the old key), as when the files are copied one by
    // one: the mismatch is refused; once the key follows, the pair is served.
    let third = ca.server_cert("voipchat third", 3);
    std::fs::write(&files.cert, &third.cert_pem).unwrap();
    wait_line(&mut lines, &["WARN", "does not belong to the certificate"]).await;
    assert_eq!(served_cert(http, &trust).await, second.der);
    std::fs::write(&files.key, &third.key_pem).unwrap();
    wait_line(&mut lines, &["serving the new one", "CN=voipchat third"]).await;
    assert_eq!(served_cert(http, &trust).await, third.der);
    child.kill().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_certificate_is_served_with_a_warning() {
    let dir = common::data_dir();
    let ca = TestCa::new();
    let old = ca.server_cert_with("voipchat expired", 9, |p| {
        p.not_before = rcgen::date_time_ymd(2020, 1, 1);
        p.not_after = rcgen::date_time_ymd(2021, 1, 1);
    });
    let files = TlsFiles::write(dir.path(), &ca, &old);
    let (mut child, seen, _lines, _) = serve(
        dir.path(),
        &[
            "--http-addr",
            "127.0.0.1:0",
            "--tls-cert",
            files.cert.to_str().unwrap(),
            "--tls-key",
            files.key.to_str().unwrap(),
        ],
    )
    .await;
    assert!(
        seen.iter().any(|l| l.contains("WARN")
            && l.contains("the TLS certificate has expired")
            && l.contains("not_after=2021-01-01T00:00:00Z")),
        "{seen:#?}"
    );
    child.kill().await.unwrap();
}

/// Runs `voipchat serve` expecting it to fail at start; returns its exit code and stderr.
fn serve_fails(dir: &Path, args: &[&str]) -> (Option<i32>, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_voipchat"))
        .args(["--data-dir", dir.to_str().unwrap(), "serve"])
        .args(["--media-addr", "127.0.0.1:0"])
        .args(args)
        .env_remove("VOIPCHAT_CONFIG")
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_bad_certificate_or_key_stops_the_start_with_one_line_naming_file_and_setting() {
    let dir = common::data_dir();
    let d = dir.path();
    let ca = TestCa::new();
    let good = ca.server_cert("voipchat good", 1);
    let other = ca.server_cert("voipchat other", 2);
    let write = |name: &str, text: &str| {
        let p = d.join(name);
        std::fs::write(&p, text).unwrap();
        p.to_str().unwrap().to_string()
    };
    let cert = write("cert.pem", &good.cert_pem);
    let key = write("key.pem", &good.key_pem);
    let other_key = write("other-key.pem", &other.key_pem);
    let garbage = write("garbage.pem", "hello\n");
    let bad_der = write(
        "bad-der.pem",
        "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
    );
    let bad_key = write(
        "bad-key.pem",
        "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
    );
    let missing = d.join("missing.pem").to_str().unwrap().to_string();
    let a_dir = d.to_str().unwrap().to_string();

    let cases: Vec<(&str, &str, String)> = vec![
        (
            &missing,
            &key,
            format!("cannot read the TLS certificate {missing} (tls_cert): No such file"),
        ),
        (
            &cert,
            &missing,
            format!("cannot read the TLS private key {missing} (tls_key): No such file"),
        ),
        (
            &a_dir,
            &key,
            format!("cannot read the TLS certificate {a_dir} (tls_cert): Is a directory"),
        ),
        (
            &garbage,
            &key,
            format!("the TLS certificate {garbage} (tls_cert) is not usable: no certificate in it"),
        ),
        (
            // The key where the certificate belongs.
            &key,
            &cert,
            format!("the TLS certificate {key} (tls_cert) is not usable: no certificate in it"),
        ),
        (
            &bad_der,
            &key,
            format!("the TLS certificate {bad_der} (tls_cert) is not usable: not an X.509"),
        ),
        (
            &cert,
            &cert,
            format!("the TLS private key {cert} (tls_key) is not usable: no private key in it"),
        ),
        (
            &cert,
            &bad_key,
            format!("the TLS private key {bad_key} (tls_key) is not usable: "),
        ),
        (
            &cert,
            &other_key,
            format!(
                "the TLS private key {other_key} (tls_key) does not belong to the certificate \
                 {cert} (tls_cert)"
            ),
        ),
    ];
    for (cert, key, want) in &cases {
        let (code, stderr) = serve_fails(
            d,
            &[
                "--http-addr",
                "127.0.0.1:0",
                "--tls-cert",
                cert,
                "--tls-key",
                key,
            ],
        );
        assert_eq!(code, Some(1), "cert {cert}, key {key}: {stderr}");
        let last = stderr.lines().last().unwrap_or_default();
        assert!(
            last.starts_with(&format!("voipchat: {want}")),
            "cert {cert}, key {key}: the last line is {last:?}, expected {want:?}\n{stderr}"
        );
        assert!(!stderr.contains("voipchat serving"), "{stderr}");
    }
    // Half the pair.
    let (code, stderr) = serve_fails(d, &["--http-addr", "127.0.0.1:0", "--tls-cert", &cert]);
    assert_eq!(code, Some(1));
    assert!(
        stderr.contains("tls_cert and tls_key go together: set both"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_http_on_a_public_address_needs_allow_insecure_http() {
    let dir = common::data_dir();
    let (code, stderr) = serve_fails(dir.path(), &["--http-addr", "0.0.0.0:0"]);
    assert_eq!(code, Some(1), "{stderr}");
    let line = stderr.lines().last().unwrap_or_default();
    assert!(
        line.starts_with(
            "voipchat: invalid setting: http_addr 0.0.0.0:0 is not a loopback address"
        ),
        "{line}"
    );
    for why in [
        "browsers give the microphone only to https pages",
        "Set tls_cert and tls_key",
        "allow_insecure_http = true (--allow-insecure-http)",
    ] {
        assert!(line.contains(why), "{why:?} in {line}");
    }

    // Allowed: it starts on every address, says so in a warning, and answers on loopback.
    let (mut child, seen, _lines, http) = serve(
        dir.path(),
        &["--http-addr", "0.0.0.0:0", "--allow-insecure-http"],
    )
    .await;
    assert!(http.ip().is_unspecified(), "{http}");
    assert!(
        seen.iter()
            .any(|l| l.contains("WARN")
                && l.contains("serving plain HTTP on an address others reach")),
        "{seen:#?}"
    );
    let local: SocketAddr = ([127, 0, 0, 1], http.port()).into();
    let (status, body) = common::http_request(local, "GET", "/healthz", None, None).await;
    assert_eq!((status, body.as_str()), (200, "ok"));
    child.kill().await.unwrap();
}
