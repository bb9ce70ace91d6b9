//! HTTPS (feature `tls`): a self-signed certificate made with `openssl`, a rustls client.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use llm_span_prometheus::ExporterError;
use llm_span_testkit::http;
use llm_span_testkit::process::TempDir;
use llm_span_testkit::prom::CONTENT_TYPE;
use llm_span_testkit::tools;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};

use crate::support::{closed_by_server, env, loopback};

/// A self-signed certificate for `localhost` and 127.0.0.1, or `None` when openssl is
/// not installed and the test is to skip (`llm_span_testkit::tools`).
fn certificate(name: &str) -> Option<(TempDir, PathBuf, PathBuf)> {
    if !tools::require("openssl") {
        return None;
    }
    let dir = TempDir::new(&format!("tls-{name}"));
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let output = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .args([
            "-days",
            "2",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=DNS:localhost,IP:127.0.0.1",
            "-addext",
            "basicConstraints=critical,CA:FALSE",
        ])
        .output()
        .unwrap_or_else(|e| panic!("cannot run openssl: {e}"));
    assert!(
        output.status.success(),
        "openssl failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    Some((dir, cert, key))
}

fn client(cert: &Path) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for der in CertificateDer::pem_file_iter(cert).expect("cert file") {
        roots.add(der.expect("cert")).expect("root");
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Arc::new(
        rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}

#[test]
fn https_scrape_with_bearer_token() {
    let Some((_dir, cert, key)) = certificate("scrape") else {
        return;
    };
    let (_recorder, server) = loopback()
        .with_tls(&cert, &key)
        .with_bearer_token("tls-tok")
        .spawn()
        .expect("TLS server starts");
    let addr = server.local_addr();

    let scrape = |authorization: Option<&str>| {
        let name = ServerName::try_from("localhost").expect("name");
        let conn = rustls::ClientConnection::new(client(&cert), name).expect("client");
        let tcp = TcpStream::connect(addr).expect("connect");
        tcp.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        let mut tls = rustls::StreamOwned::new(conn, tcp);
        let headers: Vec<(&str, &str)> = authorization
            .map(|value| ("Authorization", value))
            .into_iter()
            .collect();
        tls.write_all(&http::format_request(
            addr, "GET", "/metrics", &headers, None,
        ))
        .expect("write");
        let mut bytes = Vec::new();
        // A peer that closes without close_notify is an error in rustls; the bytes are in.
        let _ = tls.read_to_end(&mut bytes);
        http::parse_response(&bytes).expect("response")
    };
    let denied = scrape(None);
    assert_eq!(denied.status, 401);
    let ok = scrape(Some("Bearer tls-tok"));
    assert_eq!(ok.status, 200);
    assert_eq!(ok.header("content-type"), Some(CONTENT_TYPE));
    assert!(ok.body.contains("# TYPE llm_ttft_seconds histogram"));

    // Plain HTTP on the TLS port gets no metrics.
    let plain = http::try_request(addr, "GET", "/metrics", &[], None);
    assert!(plain.map_or(true, |r| r.status != 200));
}

#[test]
fn silent_clients_cannot_hold_the_handshake_open() {
    let Some((_dir, cert, key)) = certificate("silent") else {
        return;
    };
    let (_recorder, server) = loopback()
        .with_tls(&cert, &key)
        .with_header_read_timeout(Duration::from_millis(500))
        .spawn()
        .expect("TLS server starts");
    let mut silent = TcpStream::connect(server.local_addr()).expect("connect");
    let started = std::time::Instant::now();
    let closed = closed_by_server(&mut silent, Duration::from_secs(5));
    assert!(closed, "the server kept a silent TLS client");
    assert!(started.elapsed() < Duration::from_secs(3));
}

#[test]
fn tls_file_errors_name_the_path_not_the_content() {
    let Some((_dir, cert, key)) = certificate("errors") else {
        return;
    };
    let missing = cert.with_file_name("missing.pem");
    let error = loopback()
        .with_tls(&missing, &key)
        .spawn()
        .expect_err("missing cert");
    assert!(
        matches!(&error, ExporterError::Tls { path, .. } if *path == missing),
        "{error:?}"
    );
    assert!(error.to_string().contains("missing.pem"));

    // A key file with a secret-looking malformed line: the error must not quote it.
    let bad_key = key.with_file_name("bad-key.pem");
    std::fs::write(&bad_key, "-----BEGIN PRIVATE KEY-----\nS3CR3TLINE\n").expect("write");
    let error = loopback()
        .with_tls(&cert, &bad_key)
        .spawn()
        .expect_err("bad key");
    assert!(
        matches!(&error, ExporterError::Tls { path, .. } if *path == bad_key),
        "{error:?}"
    );
    assert!(!error.to_string().contains("S3CR3T") && !format!("{error:?}").contains("S3CR3T"));

    // The certificate where the key should be: no private key in it.
    let error = loopback()
        .with_tls(&cert, &cert)
        .spawn()
        .expect_err("no key");
    assert!(
        error.to_string().contains("no PRIVATE KEY block"),
        "{error}"
    );
}

#[test]
fn env_sets_tls_files() {
    let Some((_dir, cert, key)) = certificate("env") else {
        return;
    };
    let builder = env(&[
        ("LLM_METRICS_LISTEN", "127.0.0.1:0"),
        (
            "LLM_METRICS_TLS_CERT",
            cert.to_str().expect("utf-8 temp path"),
        ),
        (
            "LLM_METRICS_TLS_KEY",
            key.to_str().expect("utf-8 temp path"),
        ),
    ])
    .expect("env");
    let (_recorder, server) = builder.spawn().expect("TLS server from env");
    let plain = http::try_request(server.local_addr(), "GET", "/health", &[], None);
    assert!(plain.map_or(true, |r| r.status != 200), "served plain HTTP");
}
