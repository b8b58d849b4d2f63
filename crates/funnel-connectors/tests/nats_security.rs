//! The nats connector against servers that need credentials or TLS: each test starts
//! its own `nats-server` (the binary `scripts/setup-services.sh` installs) on a free
//! port of 127.0.0.1, with a user and password or with a certificate signed by a CA
//! the test makes with the `openssl` command, and stops it at the end. Core-NATS mode
//! (`mode: pubsub`) is used, so the servers need no JetStream. Without the binaries
//! the tests are skipped, except under `CI=true`.

#![cfg(feature = "nats")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use bytes::Bytes;
use funnel_connectors::{Settings, destination, source};
use funnel_core::ErrorKind;
use funnel_record::{Data, Position, Record};
use funnel_test_utils::connectors::{ack_n, read_n};
use funnel_test_utils::wait_until_blocking;

const NATS_SERVER: &str = "nats-server";

fn settings(pairs: &[(&str, &str)]) -> Settings {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

/// Whether `program` runs; a missing one skips the test (fails it under `CI=true`).
fn available(program: &str) -> bool {
    let found = Command::new(program)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok();
    if !found {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "{program} is not installed (run scripts/setup-services.sh)"
        );
        eprintln!("skipping: {program} is not installed");
    }
    found
}

/// A `nats-server` of the test's own, stopped when dropped.
struct Server {
    child: Child,
    port: u16,
}

impl Server {
    /// Starts `nats-server` on a free port with `args`, and waits until it listens.
    fn start(args: &[&str]) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(NATS_SERVER)
            .args(["-a", "127.0.0.1", "-p", &port.to_string()])
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        wait_until_blocking("nats-server listens", Duration::from_secs(20), || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        Self { child, port }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
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
    if !available(NATS_SERVER) {
        return;
    }
    let server = Server::start(&["--user", "funnel", "--pass", "right@secret"]);
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

/// Runs `openssl` with `args` in `dir`.
fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA (`ca.pem`) and a certificate it signed for 127.0.0.1 (`server.pem`,
/// `server.key`) in `dir`.
fn certificates(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=funnel test CA",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
        ],
    );
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=127.0.0.1",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
        ],
    );
    std::fs::write(dir.join("san.ext"), "subjectAltName=IP:127.0.0.1\n").unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "san.ext",
            "-out",
            "server.pem",
        ],
    );
    (
        dir.join("ca.pem"),
        dir.join("server.pem"),
        dir.join("server.key"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_with_the_servers_ca_works_and_without_it_is_a_configuration_error() {
    if !available(NATS_SERVER) || !available("openssl") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, key) = certificates(dir.path());
    let server = Server::start(&[
        "--tls",
        "--tlscert",
        cert.to_str().unwrap(),
        "--tlskey",
        key.to_str().unwrap(),
    ]);
    let url = format!("nats://127.0.0.1:{}", server.port);
    round_trip(
        &[("urls", &url), ("tls.rootCACertPath", ca.to_str().unwrap())],
        "sec.tls",
        10,
    )
    .await;

    // The system's roots do not know the test's CA.
    let s = settings(&[("urls", &url), ("mode", "pubsub"), ("subject", "sec.tls")]);
    let error = destination("nats", "p:out", &s)
        .unwrap()
        .open()
        .await
        .unwrap_err();
    let text = error.to_string();
    assert!(
        text.contains("nats destination p:out") && text.contains(&url),
        "{text}"
    );
}
