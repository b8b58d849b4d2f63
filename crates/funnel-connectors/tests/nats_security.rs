//! The nats connector against servers that need credentials or TLS: each test starts
//! its own `nats-server` (the binary `scripts/setup-services.sh` installs) on a free
//! port of 127.0.0.1, with a user and password or with a certificate signed by a CA
//! the test makes, and stops it at the end. Core-NATS mode (`mode: pubsub`) is used,
//! so the servers need no JetStream. Without the binary the tests are skipped, except
//! under `CI=true`.

#![cfg(feature = "nats")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

use bytes::Bytes;
use funnel_connectors::{destination, source};
use funnel_core::ErrorKind;
use funnel_core::settings_of as settings;
use funnel_record::{Data, Position, Record};
use funnel_test_utils::connectors::{ack_n, destination_open_error, read_n};
use funnel_test_utils::process::{Server, free_port, installed};
use funnel_test_utils::tls::PemFiles;

const NATS_SERVER: &str = "nats-server";

/// Starts `nats-server` on a free port with `args`, and waits until it listens.
fn nats_server(args: &[&str]) -> Server {
    let port = free_port();
    let mut command = Command::new(NATS_SERVER);
    command
        .args(["-a", "127.0.0.1", "-p", &port.to_string()])
        .args(args);
    Server::start(command, port)
}

fn record(i: usize) -> Record {
    Record::new(
        Position::from(format!("{i:04}")),
        Bytes::from(format!("r{i}")),
    )
}

/// Writes `n` records through a pubsub destination with `conn` settings while a
/// pubsub source with the same settings reads them.
async fn round_trip(conn: &[(&str, &str)], subject: &str, n: usize) {
    let mut s = settings(conn);
    s.extend(settings(&[("mode", "pubsub"), ("subject", subject)]));
    let src = source("nats", "p:in", &s, None).unwrap();
    src.open().await.unwrap();
    let dst = destination("nats", "p:out", &s).unwrap();
    dst.open().await.unwrap();
    let records: Vec<Record> = (0..n).map(record).collect();
    dst.write(&records).await.unwrap();
    assert!(ack_n(&*dst, n).await.iter().all(|a| a.error.is_none()));
    let read = read_n(&*src, n).await;
    let Some(Data::Raw(body)) = &read[n - 1].payload.after else {
        panic!("not a raw payload: {:?}", read[n - 1].payload.after)
    };
    assert_eq!(Record::from_json(body).unwrap(), records[n - 1]);
    dst.teardown().await.unwrap();
    src.teardown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_credentials_are_a_configuration_error_naming_the_connector_and_server() {
    if !installed(NATS_SERVER) {
        return;
    }
    let server = nats_server(&["--user", "funnel", "--pass", "right@secret"]);
    let port = server.port;
    // Credentials in the URL, percent-encoded as URLs have them.
    let good = format!("nats://funnel:right%40secret@127.0.0.1:{port}");
    round_trip(&[("urls", &good)], "sec.auth", 10).await;

    let wrong = format!("nats://funnel:wrong-secret@127.0.0.1:{port}");
    let s = settings(&[
        ("urls", &wrong),
        ("mode", "pubsub"),
        ("subject", "sec.auth"),
    ]);
    let errors = [
        source("nats", "p:in", &s, None)
            .unwrap()
            .open()
            .await
            .unwrap_err(),
        destination("nats", "p:out", &s)
            .unwrap()
            .open()
            .await
            .unwrap_err(),
    ];
    for (error, who) in errors
        .iter()
        .zip(["nats source p:in", "nats destination p:out"])
    {
        let text = error.to_string();
        assert_eq!(error.kind(), ErrorKind::Config, "{text}");
        assert!(
            text.contains(who) && text.contains(&format!("nats://127.0.0.1:{port}")),
            "{text}"
        );
        assert!(
            !text.contains("wrong-secret"),
            "the password leaked: {text}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_with_the_servers_ca_works_and_without_it_is_a_configuration_error() {
    if !installed(NATS_SERVER) {
        return;
    }
    let files = PemFiles::new();
    let server = nats_server(&[
        "--tls",
        "--tlscert",
        files.server_cert.to_str().unwrap(),
        "--tlskey",
        files.server_key.to_str().unwrap(),
    ]);
    let url = format!("nats://127.0.0.1:{}", server.port);
    round_trip(
        &[
            ("urls", &url),
            ("tls.rootCACertPath", files.ca.to_str().unwrap()),
        ],
        "sec.tls",
        10,
    )
    .await;

    // The system's roots do not know the test's CA.
    let s = settings(&[("urls", &url), ("mode", "pubsub"), ("subject", "sec.tls")]);
    let text = destination_open_error(&*destination("nats", "p:out", &s).unwrap()).await;
    assert!(
        text.contains("nats destination p:out") && text.contains(&url),
        "{text}"
    );
}
