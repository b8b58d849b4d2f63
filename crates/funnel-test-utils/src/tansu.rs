//! A private Kafka-protocol broker for one test: tansu (installed by
//! `scripts/setup-services.sh`) on a port of its own with its own SQLite file, which a
//! test can stop (SIGKILL) and start again on the same data, and put behind a TLS proxy
//! (socat with OpenSSL) that the broker advertises as its address; or with tansu's
//! memory storage ([`PrivateBroker::start_in_memory`]), which keeps nothing across a
//! restart but does not stall under load as the SQLite storage does.
//!
//! The shared broker on 127.0.0.1:9092 is for everything else: these are for tests
//! that must stop a broker or listen with TLS.

use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a broker or a proxy may take to accept connections.
const START: Duration = Duration::from_secs(60);

/// The tansu binary: `$FUNNEL_TANSU`, else where `scripts/setup-services.sh` installs
/// it (`~/.cache/funnel/tools/tansu/bin/tansu`); `None` when it is not there.
pub fn tansu_binary() -> Option<PathBuf> {
    let path = match std::env::var_os("FUNNEL_TANSU") {
        Some(path) => PathBuf::from(path),
        None => {
            PathBuf::from(std::env::var_os("HOME")?).join(".cache/funnel/tools/tansu/bin/tansu")
        }
    };
    path.is_file().then_some(path)
}

pub use crate::process::free_port;

/// Whether something accepts connections on 127.0.0.1:`port`.
pub fn port_open(port: u16) -> bool {
    TcpStream::connect_timeout(
        &SocketAddr::from(([127, 0, 0, 1], port)),
        Duration::from_millis(500),
    )
    .is_ok()
}

fn wait_port(port: u16, open: bool, what: &str, log: &Path) {
    let deadline = Instant::now() + START;
    while port_open(port) != open {
        assert!(
            Instant::now() < deadline,
            "{what} on 127.0.0.1:{port}: still {} after {START:?}; log {}:\n{}",
            if open { "closed" } else { "open" },
            log.display(),
            std::fs::read_to_string(log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The files of a TLS proxy: PEM files of the server certificate and key, and of the
/// CA that client certificates must be signed by (mutual TLS) when there is one.
#[derive(Clone, Debug)]
pub struct ProxyTls {
    /// The server certificate (PEM file).
    pub cert: PathBuf,
    /// Its private key (PEM file).
    pub key: PathBuf,
    /// When set, clients must present a certificate this CA (PEM file) signed.
    pub client_ca: Option<PathBuf>,
}

/// A tansu broker of this test, killed when dropped (its data directory is removed).
pub struct PrivateBroker {
    binary: PathBuf,
    dir: PathBuf,
    /// The port the broker listens on (plain Kafka protocol).
    pub port: u16,
    /// The port it advertises: its own, or the TLS proxy's.
    pub advertised: u16,
    broker: Option<Child>,
    proxy: Option<Child>,
    tls: Option<ProxyTls>,
    /// Whether the broker requires SASL (`--authentication`).
    authentication: bool,
    /// tansu's `--storage-engine`.
    storage: &'static str,
}

/// tansu's SQLite storage, in the broker's data directory.
const SQLITE: &str = "sqlite://tansu.db";
/// tansu's memory storage.
const MEMORY: &str = "memory://tansu/";

impl PrivateBroker {
    /// A broker on a free port, advertising it; `None` when tansu is not installed.
    ///
    /// # Panics
    ///
    /// When the broker does not start.
    pub fn start() -> Option<Self> {
        Self::start_with(None, None, false, SQLITE)
    }

    /// A broker on a free port, advertising it, with tansu's memory storage: nothing
    /// survives [`Self::kill`], but produce and fetch do not stall under load (tansu
    /// 0.6's SQLite storage does, with headers: see `bench/tansu_headers_stall.py`).
    /// `None` when tansu is not installed.
    ///
    /// # Panics
    ///
    /// When the broker does not start.
    pub fn start_in_memory() -> Option<Self> {
        Self::start_with(None, None, false, MEMORY)
    }

    /// A broker on a free port that advertises 127.0.0.1:`advertised` instead: the
    /// test puts something of its own there (a proxy that records the requests, say)
    /// that forwards to [`Self::port`]. `None` when tansu is not installed.
    ///
    /// # Panics
    ///
    /// When the broker does not start.
    pub fn start_advertising(advertised: u16) -> Option<Self> {
        Self::start_with(None, Some(advertised), false, SQLITE)
    }

    /// A broker on a free port behind a TLS proxy (socat) on another free port, which
    /// the broker advertises: clients reach it only with TLS. `None` when tansu is not
    /// installed.
    ///
    /// # Panics
    ///
    /// When the broker or the proxy does not start.
    pub fn start_tls(tls: ProxyTls) -> Option<Self> {
        Self::start_with(Some(tls), None, false, SQLITE)
    }

    /// As [`Self::start_advertising`], with a broker that requires SASL of every
    /// connection (tansu's `--authentication`): before it, a client may only ask for
    /// the API versions. tansu takes any user and password with PLAIN, and the users
    /// of its storage with SCRAM-SHA-256 and SCRAM-SHA-512 (see
    /// [`Self::restart_authenticating`]). `None` when tansu is not installed.
    ///
    /// # Panics
    ///
    /// When the broker does not start.
    pub fn start_authenticating(advertised: u16) -> Option<Self> {
        Self::start_with(None, Some(advertised), true, SQLITE)
    }

    fn start_with(
        tls: Option<ProxyTls>,
        advertised: Option<u16>,
        authentication: bool,
        storage: &'static str,
    ) -> Option<Self> {
        let binary = tansu_binary()?;
        let port = free_port();
        let advertised = match (advertised, &tls) {
            (Some(port), _) => port,
            (None, Some(_)) => free_port(),
            (None, None) => port,
        };
        let dir = std::env::temp_dir().join(format!(
            "funnel-tansu-{}-{port}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or_default()
        ));
        std::fs::create_dir_all(&dir)
            .unwrap_or_else(|e| panic!("cannot make {}: {e}", dir.display()));
        let mut broker = Self {
            binary,
            dir,
            port,
            advertised,
            broker: None,
            proxy: None,
            tls,
            authentication,
            storage,
        };
        broker.start_broker();
        if broker.tls.is_some() {
            broker.start_proxy();
        }
        Some(broker)
    }

    /// The bootstrap servers clients use: the advertised address.
    pub fn servers(&self) -> String {
        format!("localhost:{}", self.advertised)
    }

    /// The broker's plain address (not through the proxy), for tools of the test.
    pub fn plain_servers(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn log(&self) -> PathBuf {
        self.dir.join("tansu.log")
    }

    fn start_broker(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log())
            .unwrap_or_else(|e| panic!("cannot open {}: {e}", self.log().display()));
        let err = log
            .try_clone()
            .unwrap_or_else(|e| panic!("cannot open {}: {e}", self.log().display()));
        // tansu reads the path of a sqlite:// URL relative to its working directory.
        let mut command = Command::new(&self.binary);
        command.current_dir(&self.dir).args([
            "broker",
            "--listener-url",
            &format!("tcp://127.0.0.1:{}", self.port),
            "--advertised-listener-url",
            &format!("tcp://localhost:{}", self.advertised),
            "--storage-engine",
            self.storage,
        ]);
        if self.authentication {
            command.arg("--authentication");
        }
        let child = command
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(err))
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", self.binary.display()));
        self.broker = Some(child);
        wait_port(self.port, true, "the private tansu broker", &self.log());
    }

    fn start_proxy(&mut self) {
        let Some(tls) = &self.tls else {
            return;
        };
        let log = self.dir.join("socat.log");
        let file = std::fs::File::create(&log)
            .unwrap_or_else(|e| panic!("cannot open {}: {e}", log.display()));
        let mut listen = format!(
            "OPENSSL-LISTEN:{},bind=127.0.0.1,reuseaddr,fork,cert={},key={}",
            self.advertised,
            tls.cert.display(),
            tls.key.display()
        );
        match &tls.client_ca {
            Some(ca) => listen.push_str(&format!(",cafile={},verify=1", ca.display())),
            None => listen.push_str(",verify=0"),
        }
        let child = Command::new("socat")
            .args([&listen, &format!("TCP:127.0.0.1:{}", self.port)])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(file))
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start socat (scripts/setup-services.sh installs it): {e}")
            });
        self.proxy = Some(child);
        wait_port(self.advertised, true, "the TLS proxy", &log);
    }

    /// Kills the broker (SIGKILL) and waits until its port is closed. Its data stays
    /// (with the SQLite storage).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.broker.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        wait_port(self.port, false, "the stopped tansu broker", &self.log());
    }

    /// Starts the broker again on the same port and data (after [`Self::kill`]).
    pub fn restart(&mut self) {
        if self.broker.is_none() {
            self.start_broker();
        }
    }

    /// Kills the broker and starts it again on the same port and data, requiring SASL
    /// (`on`, tansu's `--authentication`) or not. tansu makes SCRAM users
    /// (`tansu user create`, see [`Self::tool`]) only through a broker that does not
    /// require SASL (its own client has none): a test makes them first, then turns
    /// SASL on.
    ///
    /// # Panics
    ///
    /// When the broker does not stop or start.
    pub fn restart_authenticating(&mut self, on: bool) {
        self.kill();
        self.authentication = on;
        self.start_broker();
    }

    /// What the broker logged so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(self.log()).unwrap_or_default()
    }

    /// Runs `tansu <args>` against this broker (`user create ...`, say) and returns
    /// whether it succeeded, with its output.
    pub fn tool(&self, args: &[&str]) -> (bool, String) {
        match Command::new(&self.binary).args(args).output() {
            Ok(out) => (out.status.success(), crate::process::output_text(&out)),
            Err(e) => (false, e.to_string()),
        }
    }
}

impl Drop for PrivateBroker {
    fn drop(&mut self) {
        for child in [self.proxy.take(), self.broker.take()]
            .into_iter()
            .flatten()
        {
            let mut child = child;
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
