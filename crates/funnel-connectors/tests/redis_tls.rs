//! The redis connector over TLS: each test starts its own `redis-server` on free ports
//! of 127.0.0.1 (plain TCP off, TLS on), with a certificate signed by a CA the test
//! makes, and stops it at the end. Without the binary the tests are skipped, except
//! under `CI=true`.

#![cfg(feature = "redis")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

use bytes::Bytes;
use funnel_connectors::{Settings, destination, source};
use funnel_core::ErrorKind;
use funnel_core::settings_of as settings;
use funnel_record::{Data, Position, Record};
use funnel_test_utils::connectors::{ack_n, destination_open_error, read_n, source_open_error};
use funnel_test_utils::process::{Server, free_port, installed};
use funnel_test_utils::tls::PemFiles;

const REDIS_SERVER: &str = "redis-server";

/// Starts a `redis-server` that speaks only TLS with the certificates of `files` on a
/// free port; `clients_need_certificates`: `--tls-auth-clients yes` (else `no`).
fn redis_server(files: &PemFiles, clients_need_certificates: bool) -> Server {
    let port = free_port();
    let path = |p: &std::path::Path| p.to_str().unwrap().to_owned();
    let mut command = Command::new(REDIS_SERVER);
    command
        .args(["--bind", "127.0.0.1", "--port", "0"])
        .args(["--tls-port", &port.to_string()])
        .args(["--tls-cert-file", &path(&files.server_cert)])
        .args(["--tls-key-file", &path(&files.server_key)])
        .args(["--tls-ca-cert-file", &path(&files.ca)])
        .args([
            "--tls-auth-clients",
            if clients_need_certificates {
                "yes"
            } else {
                "no"
            },
        ])
        .args([
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            &path(files.dir()),
        ]);
    Server::start(command, port)
}

/// The certificates and a [`redis_server`] of them, and its port; `None` (the test is
/// skipped) when `redis-server` is not installed.
fn tls_server(clients_need_certificates: bool) -> Option<(PemFiles, Server, String)> {
    if !installed(REDIS_SERVER) {
        return None;
    }
    let files = PemFiles::new();
    let server = redis_server(&files, clients_need_certificates);
    let port = server.port.to_string();
    Some((files, server, port))
}

/// The connection settings `conn`, and the stream the tests write and read.
fn stream_settings(conn: &[(&str, &str)]) -> Settings {
    let mut s = settings(conn);
    s.extend(settings(&[("mode", "stream"), ("redis.key", "tls:events")]));
    s
}

/// Writes `n` records to a stream through the destination with `conn` settings and
/// reads them back with the source.
async fn round_trip(conn: &[(&str, &str)], n: usize) {
    let s = stream_settings(conn);
    let dst = destination("redis", "p:out", &s).unwrap();
    dst.open().await.unwrap();
    let records: Vec<Record> = (0..n)
        .map(|i| Record::new(Position::from(format!("{i:04}")), format!("r{i}")))
        .collect();
    dst.write(&records).await.unwrap();
    assert!(ack_n(&*dst, n).await.iter().all(|a| a.error.is_none()));
    let src = source("redis", "p:in", &s, None).unwrap();
    src.open().await.unwrap();
    let read = read_n(&*src, n).await;
    let Some(Data::Raw(body)) = &read[n - 1].payload.after else {
        panic!("not a raw payload: {:?}", read[n - 1].payload.after)
    };
    assert_eq!(body, &Bytes::from(format!("{{\"data\":\"r{}\"}}", n - 1)));
    dst.teardown().await.unwrap();
    src.teardown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_with_the_servers_ca_works_and_without_it_is_an_error_naming_connector_and_server() {
    let Some((files, _server, port)) = tls_server(false) else {
        return;
    };
    let ca = &files.ca;
    let conn = [
        ("redis.host", "127.0.0.1"),
        ("redis.port", port.as_str()),
        ("tls.enabled", "true"),
    ];
    let mut with_ca = conn.to_vec();
    with_ca.push(("tls.caCert", ca.to_str().unwrap()));
    round_trip(&with_ca, 100).await;

    // The system's roots do not know the test's CA.
    let s = stream_settings(&conn);
    let text = destination_open_error(&*destination("redis", "p:out", &s).unwrap()).await;
    assert!(
        text.contains("redis destination p:out") && text.contains(&format!("127.0.0.1:{port}")),
        "{text}"
    );

    // Plain TCP to a TLS port does not get an answer it understands.
    let s = stream_settings(&[("redis.host", "127.0.0.1"), ("redis.port", port.as_str())]);
    let error = source_open_error(&*source("redis", "p:in", &s, None).unwrap()).await;
    assert!(error.contains("redis source p:in"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_requires_client_certificates_accepts_the_configured_one() {
    let Some((files, _server, port)) = tls_server(true) else {
        return;
    };
    let (ca, cert, key) = (&files.ca, &files.client_cert, &files.client_key);
    let conn = [
        ("redis.host", "127.0.0.1"),
        ("redis.port", port.as_str()),
        ("tls.enabled", "true"),
        ("tls.caCert", ca.to_str().unwrap()),
    ];
    let mut with_cert = conn.to_vec();
    with_cert.push(("tls.clientCert", cert.to_str().unwrap()));
    with_cert.push(("tls.clientKey", key.to_str().unwrap()));
    round_trip(&with_cert, 10).await;

    // Without the client certificate the server ends the handshake.
    let s = stream_settings(&conn);
    let text = source_open_error(&*source("redis", "p:in", &s, None).unwrap()).await;
    assert!(
        text.contains("redis source p:in") && text.contains(&format!("127.0.0.1:{port}")),
        "{text}"
    );

    // A key file that is missing names its setting.
    let mut missing = conn.to_vec();
    missing.push(("tls.clientCert", cert.to_str().unwrap()));
    missing.push(("tls.clientKey", "/nonexistent/client.key"));
    let s = stream_settings(&missing);
    let error = source("redis", "p:in", &s, None)
        .unwrap()
        .open()
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Config, "{error}");
    assert!(
        error
            .to_string()
            .contains("tls.clientKey /nonexistent/client.key"),
        "{error}"
    );
}
