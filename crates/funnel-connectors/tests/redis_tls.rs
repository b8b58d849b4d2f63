//! The redis connector over TLS: each test starts its own `redis-server` on free ports
//! of 127.0.0.1 (plain TCP off, TLS on), with a certificate signed by a CA the test
//! makes with the `openssl` command, and stops it at the end. Without the binaries the
//! tests are skipped, except under `CI=true`.

#![cfg(feature = "redis")]
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

const REDIS_SERVER: &str = "redis-server";

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

/// Makes `<name>.key` and `<name>.pem` in `dir`, signed by `ca.pem`, for `subject`,
/// with the extensions `ext`.
fn signed(dir: &Path, name: &str, subject: &str, ext: &str) {
    let (key, csr, pem, extfile) = (
        format!("{name}.key"),
        format!("{name}.csr"),
        format!("{name}.pem"),
        format!("{name}.ext"),
    );
    openssl(
        dir,
        &[
            "req", "-newkey", "rsa:2048", "-nodes", "-subj", subject, "-keyout", &key, "-out", &csr,
        ],
    );
    std::fs::write(dir.join(&extfile), ext).unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            &extfile,
            "-out",
            &pem,
        ],
    );
}

/// A CA (`ca.pem`), a server certificate it signed for 127.0.0.1 (`server.pem`,
/// `server.key`) and a client certificate (`client.pem`, `client.key`) in `dir`.
fn certificates(dir: &Path) {
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
    signed(
        dir,
        "server",
        "/CN=127.0.0.1",
        "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n",
    );
    signed(dir, "client", "/CN=funnel", "extendedKeyUsage=clientAuth\n");
}

/// A `redis-server` of the test's own that speaks only TLS, stopped when dropped.
struct Server {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl Server {
    /// Makes the certificates and starts `redis-server` on a free port;
    /// `clients_need_certificates`: `--tls-auth-clients yes` (else `no`).
    fn start(clients_need_certificates: bool) -> Self {
        let dir = tempfile::tempdir().unwrap();
        certificates(dir.path());
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let file = |name: &str| dir.path().join(name).to_str().unwrap().to_owned();
        let child = Command::new(REDIS_SERVER)
            .args(["--bind", "127.0.0.1", "--port", "0"])
            .args(["--tls-port", &port.to_string()])
            .args(["--tls-cert-file", &file("server.pem")])
            .args(["--tls-key-file", &file("server.key")])
            .args(["--tls-ca-cert-file", &file("ca.pem")])
            .args([
                "--tls-auth-clients",
                if clients_need_certificates {
                    "yes"
                } else {
                    "no"
                },
            ])
            .args(["--save", "", "--appendonly", "no", "--dir", &file("")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        wait_until_blocking("redis-server listens", Duration::from_secs(20), || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        Self { child, port, dir }
    }

    fn file(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Writes `n` records to a stream through the destination with `conn` settings and
/// reads them back with the source.
async fn round_trip(conn: &[(&str, &str)], n: usize) {
    let mut s = settings(conn);
    s.extend(settings(&[("mode", "stream"), ("redis.key", "tls:events")]));
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
    if !available(REDIS_SERVER) || !available("openssl") {
        return;
    }
    let server = Server::start(false);
    let port = server.port.to_string();
    let ca = server.file("ca.pem");
    let conn = [
        ("redis.host", "127.0.0.1"),
        ("redis.port", port.as_str()),
        ("tls.enabled", "true"),
    ];
    let mut with_ca = conn.to_vec();
    with_ca.push(("tls.caCert", ca.to_str().unwrap()));
    round_trip(&with_ca, 100).await;

    // The system's roots do not know the test's CA.
    let mut s = settings(&conn);
    s.extend(settings(&[("mode", "stream"), ("redis.key", "tls:events")]));
    let error = destination("redis", "p:out", &s)
        .unwrap()
        .open()
        .await
        .unwrap_err();
    let text = error.to_string();
    assert!(
        text.contains("redis destination p:out") && text.contains(&format!("127.0.0.1:{port}")),
        "{text}"
    );

    // Plain TCP to a TLS port does not get an answer it understands.
    let s = settings(&[
        ("redis.host", "127.0.0.1"),
        ("redis.port", port.as_str()),
        ("mode", "stream"),
        ("redis.key", "tls:events"),
    ]);
    let error = source("redis", "p:in", &s, None)
        .unwrap()
        .open()
        .await
        .unwrap_err();
    assert!(error.to_string().contains("redis source p:in"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_requires_client_certificates_accepts_the_configured_one() {
    if !available(REDIS_SERVER) || !available("openssl") {
        return;
    }
    let server = Server::start(true);
    let port = server.port.to_string();
    let (ca, cert, key) = (
        server.file("ca.pem"),
        server.file("client.pem"),
        server.file("client.key"),
    );
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
    let mut s = settings(&conn);
    s.extend(settings(&[("mode", "stream"), ("redis.key", "tls:events")]));
    let error = source("redis", "p:in", &s, None)
        .unwrap()
        .open()
        .await
        .unwrap_err();
    let text = error.to_string();
    assert!(
        text.contains("redis source p:in") && text.contains(&format!("127.0.0.1:{port}")),
        "{text}"
    );

    // A key file that is missing names its setting.
    let mut missing = conn.to_vec();
    missing.push(("tls.clientCert", cert.to_str().unwrap()));
    missing.push(("tls.clientKey", "/nonexistent/client.key"));
    let mut s = settings(&missing);
    s.extend(settings(&[("mode", "stream"), ("redis.key", "tls:events")]));
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
