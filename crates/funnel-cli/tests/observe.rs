//! End-to-end: what an operator watches of a running `funnel run`: `/metrics` under
//! Conduit's names, the record inspector, the terminal status line.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use funnel_test_utils::process::{self, free_address, stop};
use funnel_test_utils::{http, wait_until_blocking, yaml};

const FUNNEL: &str = env!("CARGO_BIN_EXE_funnel");

/// One sample of the text exposition format: name, labels, value.
#[derive(Debug)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// The text exposition format, parsed: the `# TYPE` of each family and every sample.
/// Panics on a line that is not in the format.
fn parse_exposition(text: &str) -> (BTreeMap<String, String>, Vec<Sample>) {
    let mut types = BTreeMap::new();
    let mut samples = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        if let Some(comment) = line.strip_prefix('#') {
            let words: Vec<&str> = comment.split_whitespace().collect();
            if words.first() == Some(&"TYPE") {
                assert_eq!(words.len(), 3, "bad TYPE line {line:?}");
                types.insert(words[1].to_owned(), words[2].to_owned());
            }
            continue;
        }
        let (series, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("no value in {line:?}"));
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            v => v.parse().unwrap_or_else(|e| panic!("{line:?}: {e}")),
        };
        let (name, labels) = match series.split_once('{') {
            None => (series, BTreeMap::new()),
            Some((name, rest)) => {
                let body = rest
                    .strip_suffix('}')
                    .unwrap_or_else(|| panic!("unclosed labels in {line:?}"));
                (name, parse_labels(body, line))
            }
        };
        assert!(
            name.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
            "bad metric name in {line:?}"
        );
        samples.push(Sample {
            name: name.to_owned(),
            labels,
            value,
        });
    }
    (types, samples)
}

/// `a="x",b="y"` with `\"`, `\\` and `\n` escapes.
fn parse_labels(body: &str, line: &str) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::new();
    let mut rest = body;
    while !rest.is_empty() {
        let (key, after) = rest
            .split_once("=\"")
            .unwrap_or_else(|| panic!("bad label in {line:?}"));
        let mut value = String::new();
        let mut chars = after.char_indices();
        let end = loop {
            match chars.next() {
                Some((_, '\\')) => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, c)) => value.push(c),
                    None => panic!("bad escape in {line:?}"),
                },
                Some((i, '"')) => break i,
                Some((_, c)) => value.push(c),
                None => panic!("unterminated label value in {line:?}"),
            }
        };
        labels.insert(key.to_owned(), value);
        rest = after[end + 1..]
            .strip_prefix(',')
            .unwrap_or(&after[end + 1..]);
    }
    labels
}

/// The samples called `name` whose labels include every one of `want`.
fn find<'a>(samples: &'a [Sample], name: &str, want: &[(&str, &str)]) -> Vec<&'a Sample> {
    samples
        .iter()
        .filter(|s| {
            s.name == name
                && want
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .collect()
}

/// A directory with `pipelines/p.yaml` holding `file`.
fn pipelines_dir(file: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    process::write_pipelines(dir.path(), file);
    dir
}

/// `funnel run` in `dir` with its API on `address`, stderr piped.
fn run_with_api(dir: &Path, address: &str, extra: &[&str]) -> Child {
    let mut args = vec!["--db.type", "memory"];
    args.extend_from_slice(extra);
    process::funnel_command(FUNNEL, dir, address, &args)
        .spawn()
        .unwrap()
}

/// [`run_with_api`] on a free address, once its API answers: the child and the
/// address.
fn answering(dir: &Path, extra: &[&str]) -> (Child, String) {
    let address = free_address();
    let child = run_with_api(dir, &address, extra);
    wait_until_blocking("the API answers", Duration::from_secs(30), || {
        matches!(http::get(&address, "/healthz"), Some((200, _)))
    });
    (child, address)
}

#[test]
fn metrics_carry_conduits_names_and_labels_beside_funnels_own() {
    let file = touched_pipeline("orders", &[("name", "Orders sync")], 2000);
    let dir = pipelines_dir(&file);
    let address = free_address();
    let child = run_with_api(dir.path(), &address, &[]);
    let name = ("pipeline_name", "Orders sync");
    let source = [name, ("plugin", "builtin:generator"), ("type", "source")];
    let destination = [name, ("plugin", "builtin:noop"), ("type", "destination")];
    // A histogram's series is there from its connector's start, with a count of 0
    // until the first observation: wait until each one checked below has counted.
    let counted: [(&str, &[(&str, &str)]); 4] = [
        ("conduit_connector_bytes_count", &source),
        (
            "conduit_connector_execution_duration_seconds_count",
            &destination,
        ),
        ("conduit_pipeline_execution_duration_seconds_count", &[name]),
        (
            "conduit_processor_execution_duration_seconds_count",
            &[name, ("processor", "field.set")],
        ),
    ];
    let mut text = String::new();
    wait_until_blocking(
        "/metrics holds the Conduit-named histograms, each with observations",
        Duration::from_secs(60),
        || {
            let Some((200, body)) = http::get(&address, "/metrics") else {
                return false;
            };
            text = body;
            let (_, samples) = parse_exposition(&text);
            counted.iter().all(|(metric, labels)| {
                find(&samples, metric, labels)
                    .first()
                    .is_some_and(|s| s.value > 0.0)
            })
        },
    );
    let (types, samples) = parse_exposition(&text);
    for (family, kind) in [
        ("conduit_info", "gauge"),
        ("conduit_pipelines", "gauge"),
        ("conduit_pipeline_status", "gauge"),
        ("conduit_connectors", "gauge"),
        ("conduit_processors", "gauge"),
        ("conduit_connector_bytes", "histogram"),
        ("conduit_connector_execution_duration_seconds", "histogram"),
        ("conduit_pipeline_execution_duration_seconds", "histogram"),
        ("conduit_processor_execution_duration_seconds", "histogram"),
        ("funnel_pipeline_records_read_total", "counter"),
    ] {
        assert_eq!(
            types.get(family).map(String::as_str),
            Some(kind),
            "{family}"
        );
    }
    let one = |metric: &str, labels: &[(&str, &str)]| -> f64 {
        let found = find(&samples, metric, labels);
        assert_eq!(found.len(), 1, "{metric} {labels:?}: {found:?}");
        found[0].value
    };
    assert_eq!(one("conduit_pipeline_status", &[name]), 1.0);
    assert_eq!(one("conduit_pipelines", &[("status", "running")]), 1.0);
    assert_eq!(one("conduit_pipelines", &[("status", "degraded")]), 0.0);
    assert_eq!(one("conduit_connectors", &[("type", "source")]), 1.0);
    assert_eq!(one("conduit_connectors", &[("type", "destination")]), 1.0);
    assert_eq!(one("conduit_processors", &[("type", "field.set")]), 1.0);
    assert_eq!(
        one("conduit_info", &[("version", env!("CARGO_PKG_VERSION"))]),
        1.0
    );
    let buckets: Vec<&str> = find(&samples, "conduit_connector_bytes_bucket", &source)
        .iter()
        .map(|s| s.labels["le"].as_str())
        .collect();
    assert_eq!(
        buckets,
        [
            "1024", "2048", "4096", "8192", "16384", "32768", "65536", "131072", "262144",
            "524288", "1048576", "2097152", "+Inf"
        ]
    );
    assert!(one("conduit_connector_bytes_count", &source) > 0.0);
    assert!(
        one(
            "conduit_connector_execution_duration_seconds_count",
            &destination
        ) > 0.0
    );
    assert!(one("conduit_pipeline_execution_duration_seconds_count", &[name]) > 0.0);
    assert!(
        one(
            "conduit_processor_execution_duration_seconds_count",
            &[name, ("processor", "field.set")]
        ) > 0.0
    );
    // A generator without end knows no lag: no series rather than a made-up 0.
    assert!(find(&samples, "funnel_source_lag_records", &[]).is_empty());
    assert!(find(&samples, "funnel_source_lag_bytes", &[]).is_empty());
    // Funnel's own series stay, labelled by pipeline ID.
    assert!(
        one(
            "funnel_pipeline_records_read_total",
            &[("pipeline", "orders")]
        ) > 0.0
    );
    stop(child);
}

#[test]
fn a_source_that_knows_its_backlog_exports_it_as_a_lag_gauge_that_counts_down() {
    let file = yaml::file(&[yaml::pipeline(
        "lagged",
        &[],
        &[
            yaml::generator("gen", 1_000_000, 1000),
            yaml::connector("out", "destination", "builtin:noop", &[]),
        ],
        &[],
    )]);
    let dir = pipelines_dir(&file);
    let (child, address) = answering(dir.path(), &[]);
    let lag = || {
        let (_, text) = http::get(&address, "/metrics").unwrap();
        let (types, samples) = parse_exposition(&text);
        assert_eq!(
            types.get("funnel_source_lag_records").map(String::as_str),
            Some("gauge")
        );
        let found = find(
            &samples,
            "funnel_source_lag_records",
            &[("pipeline", "lagged"), ("component_id", "lagged:gen")],
        );
        assert_eq!(found.len(), 1, "{found:?}");
        found[0].value
    };
    wait_until_blocking(
        "the lag gauge of lagged:gen",
        Duration::from_secs(30),
        || {
            let (_, text) = http::get(&address, "/metrics").unwrap();
            text.contains("funnel_source_lag_records{")
        },
    );
    let start = lag();
    assert!(start > 0.0 && start < 1_000_000.0, "{start}");
    wait_until_blocking("the lag to count down", Duration::from_secs(30), || {
        lag() < start
    });
    stop(child);
}

#[test]
fn a_source_exports_how_long_it_waited_for_reads_commits_and_acks() {
    let file = yaml::file(&[yaml::pipeline(
        "waits",
        &[],
        &[
            yaml::generator("gen", -1, 2000),
            yaml::connector("out", "destination", "builtin:noop", &[]),
        ],
        &[],
    )]);
    let dir = pipelines_dir(&file);
    let (child, address) = answering(dir.path(), &[]);
    let source = [("pipeline", "waits"), ("component_id", "waits:gen")];
    let count = |text: &str, phase: &str| -> f64 {
        let (_, samples) = parse_exposition(text);
        let mut labels = source.to_vec();
        labels.push(("phase", phase));
        find(&samples, "funnel_source_wait_seconds_count", &labels)
            .first()
            .map_or(0.0, |s| s.value)
    };
    let mut text = String::new();
    wait_until_blocking(
        "reads, commits and acks of waits:gen counted",
        Duration::from_secs(60),
        || {
            let Some((200, body)) = http::get(&address, "/metrics") else {
                return false;
            };
            text = body;
            ["read", "commit", "ack"]
                .iter()
                .all(|phase| count(&text, phase) > 0.0)
        },
    );
    let (types, samples) = parse_exposition(&text);
    assert_eq!(
        types.get("funnel_source_wait_seconds").map(String::as_str),
        Some("histogram")
    );
    let summaries: Vec<&String> = types
        .iter()
        .filter(|(_, kind)| kind.as_str() == "summary")
        .map(|(name, _)| name)
        .collect();
    assert!(
        summaries.is_empty(),
        "every histogram has buckets: {summaries:?}"
    );
    for phase in ["read", "commit", "ack"] {
        let mut labels = source.to_vec();
        labels.push(("phase", phase));
        let sum = find(&samples, "funnel_source_wait_seconds_sum", &labels);
        assert_eq!(sum.len(), 1, "{phase}: {sum:?}");
        assert!(sum[0].value >= 0.0, "{phase}: {sum:?}");
    }
    stop(child);
}

/// The metric names (families) in the PromQL of every panel of the Grafana dashboard.
fn grafana_metric_families() -> std::collections::BTreeSet<String> {
    fn exprs(value: &serde_json::Value, out: &mut Vec<String>) {
        match value {
            serde_json::Value::Object(map) => {
                for (key, v) in map {
                    match (key.as_str(), v) {
                        ("expr", serde_json::Value::String(e)) => out.push(e.clone()),
                        _ => exprs(v, out),
                    }
                }
            }
            serde_json::Value::Array(items) => items.iter().for_each(|v| exprs(v, out)),
            _ => {}
        }
    }
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/grafana/funnel.json");
    let dashboard: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    assert!(
        dashboard["panels"]
            .as_array()
            .is_some_and(|p| !p.is_empty())
    );
    let mut all = Vec::new();
    exprs(&dashboard, &mut all);
    assert!(!all.is_empty());
    all.iter()
        .flat_map(|e| e.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')))
        .filter(|w| {
            w.starts_with("funnel_")
                || w.starts_with("conduit_")
                || *w == "pipeline_recovering_count"
        })
        // A histogram's series (Conduit's counter `pipeline_recovering_count` is one name).
        .map(|w| {
            if w == "pipeline_recovering_count" {
                return w.to_owned();
            }
            ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|suffix| w.strip_suffix(*suffix))
                .unwrap_or(w)
                .to_owned()
        })
        .collect()
}

#[test]
fn the_grafana_dashboard_queries_only_series_funnel_exports() {
    // Every metric name Funnel exports is a constant of funnel_core::telemetry.
    let telemetry = include_str!("../../funnel-core/src/telemetry.rs");
    let families = grafana_metric_families();
    for family in [
        "conduit_pipelines",
        "conduit_pipeline_status",
        "conduit_connector_bytes",
        "conduit_pipeline_execution_duration_seconds",
        "funnel_source_lag_records",
        "funnel_source_lag_bytes",
    ] {
        assert!(
            families.contains(family),
            "{family} is not on the dashboard"
        );
    }
    for family in &families {
        assert!(
            telemetry.contains(&format!("\"{family}\"")),
            "the Grafana dashboard queries {family}, which Funnel does not export"
        );
    }
}

/// A WebSocket on the inspector endpoint `path` of the API at `address`.
type Socket = tokio_tungstenite::tungstenite::WebSocket<
    tokio_tungstenite::tungstenite::stream::MaybeTlsStream<std::net::TcpStream>,
>;

fn inspect(address: &str, path: &str) -> Result<Socket, tokio_tungstenite::tungstenite::Error> {
    let (socket, _) = tokio_tungstenite::tungstenite::connect(format!("ws://{address}{path}"))?;
    if let tokio_tungstenite::tungstenite::stream::MaybeTlsStream::Plain(tcp) = socket.get_ref() {
        tcp.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    }
    Ok(socket)
}

/// The next `n` records on `socket`, each parsed from its text message.
fn next_records(socket: &mut Socket, n: usize) -> Vec<serde_json::Value> {
    let mut records = Vec::new();
    while records.len() < n {
        match socket.read().unwrap() {
            tokio_tungstenite::tungstenite::Message::Text(text) => {
                records.push(serde_json::from_str(text.as_str()).unwrap());
            }
            other => assert!(other.is_ping() || other.is_pong(), "{other:?}"),
        }
    }
    records
}

/// A record's position (base64 in OpenCDC JSON) as text.
fn position_of(record: &serde_json::Value) -> String {
    use base64::Engine as _;
    let encoded = record["position"].as_str().unwrap();
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .unwrap();
    String::from_utf8(bytes).unwrap()
}

/// The HTTP status an inspector upgrade on `path` is refused with.
fn refused_with(address: &str, path: &str) -> u16 {
    match inspect(address, path) {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => response.status().as_u16(),
        Err(e) => panic!("{path}: {e}"),
        Ok(_) => panic!("{path}: upgraded"),
    }
}

/// A generator -> field.set -> noop pipeline `id` with plain `fields`: the generator
/// makes `rate` records a second (0: as fast as it can).
fn touched_pipeline(id: &str, fields: &[(&str, &str)], rate: u64) -> String {
    yaml::file(&[yaml::pipeline(
        id,
        fields,
        &[
            yaml::generator("gen", -1, rate),
            yaml::connector("out", "destination", "builtin:noop", &[]),
        ],
        &[yaml::processor(
            "touch",
            "field.set",
            &[],
            &[("field", ".Metadata.touched"), ("value", "yes")],
        )],
    )])
}

#[test]
fn the_inspector_streams_the_records_passing_connectors_and_processors_as_opencdc_json() {
    let dir = pipelines_dir(&touched_pipeline("p", &[], 500));
    let (child, address) = answering(dir.path(), &[]);

    let mut source = inspect(&address, "/v1/connectors/p:gen/inspect").unwrap();
    let read = next_records(&mut source, 5);
    let positions: Vec<u64> = read
        .iter()
        .map(|r| position_of(r).parse().unwrap())
        .collect();
    assert!(
        positions.windows(2).all(|w| w[1] == w[0] + 1),
        "{positions:?}"
    );
    assert_eq!(read[0]["operation"], "create", "{}", read[0]);
    assert!(read[0]["metadata"].get("touched").is_none(), "{}", read[0]);

    let mut into = inspect(&address, "/v1/processors/p:touch/inspect-in").unwrap();
    for r in next_records(&mut into, 3) {
        assert!(r["metadata"].get("touched").is_none(), "{r}");
    }
    let mut out = inspect(&address, "/v1/processors/p:touch/inspect-out").unwrap();
    for r in next_records(&mut out, 3) {
        assert_eq!(r["metadata"]["touched"], "yes", "{r}");
    }
    let mut sink = inspect(&address, "/v1/connectors/p:out/inspect").unwrap();
    for r in next_records(&mut sink, 3) {
        assert_eq!(r["metadata"]["touched"], "yes", "{r}");
    }

    assert_eq!(refused_with(&address, "/v1/connectors/p:nope/inspect"), 404);
    assert_eq!(
        refused_with(&address, "/v1/processors/p:gen/inspect-out"),
        404
    );
    let (_, metrics) = http::get(&address, "/metrics").unwrap();
    assert_eq!(
        http::metric(
            &metrics,
            "funnel_inspector_sessions",
            "component_id=\"p:gen\""
        ),
        1.0,
        "{metrics}"
    );
    // On a terminal `funnel inspect` prints each record as indented JSON.
    let screen = on_a_terminal(
        &format!("exec {FUNNEL} inspect p:touch --limit 2 --api.address {address}"),
        dir.path(),
    );
    let screen = screen.replace("\r\n", "\n");
    // Indented, one record after the other (the order of the keys is serde_json's,
    // which depends on the features the build unifies).
    assert!(screen.starts_with("{\n  \""), "{screen:?}");
    assert!(screen.contains("}\n{\n  \""), "{screen:?}");
    assert_eq!(
        screen.matches("\n  \"position\": ").count(),
        2,
        "{screen:?}"
    );
    assert!(screen.contains("\"touched\": \"yes\""), "{screen:?}");
    drop((source, into, out, sink));
    stop(child);
}

#[test]
fn a_client_that_reads_nothing_makes_records_drop_and_never_holds_the_pipeline_back() {
    let dir = pipelines_dir(&touched_pipeline("p", &[], 0));
    let (child, address) = answering(dir.path(), &[]);
    // Opened, then never read from.
    let idle = inspect(&address, "/v1/connectors/p:gen/inspect").unwrap();
    let read_at_open = || {
        let (_, m) = http::get(&address, "/metrics").unwrap();
        (
            http::metric(&m, "funnel_pipeline_records_read_total", "pipeline=\"p\""),
            http::metric(
                &m,
                "funnel_inspector_dropped_records_total",
                "component_id=\"p:gen\"",
            ),
        )
    };
    let (start, _) = read_at_open();
    wait_until_blocking(
        "the pipeline reads 300,000 records past the idle session, dropping for it",
        Duration::from_secs(120),
        || {
            let (read, dropped) = read_at_open();
            read > start + 300_000.0 && dropped > 0.0
        },
    );
    drop(idle);
    stop(child);
}

/// Records written per second by pipeline `p` of the funnel at `address` over `window`,
/// with the records its inspector sessions on `p:gen` dropped meanwhile.
fn written_per_second_and_dropped(address: &str, window: Duration) -> (f64, f64) {
    let sample = || {
        let (_, m) = http::get(address, "/metrics").unwrap();
        (
            std::time::Instant::now(),
            http::metric(
                &m,
                "funnel_pipeline_records_written_total",
                "pipeline=\"p\"",
            ),
            http::metric(
                &m,
                "funnel_inspector_dropped_records_total",
                "component_id=\"p:gen\"",
            ),
        )
    };
    let (t0, w0, d0) = sample();
    std::thread::sleep(window);
    let (t1, w1, d1) = sample();
    ((w1 - w0) / (t1 - t0).as_secs_f64(), d1 - d0)
}

/// Open inspector sessions on `p:gen`.
fn sessions_on_gen(address: &str) -> f64 {
    let (_, m) = http::get(address, "/metrics").unwrap();
    http::metric(&m, "funnel_inspector_sessions", "component_id=\"p:gen\"")
}

/// A WebSocket client on `p:gen` that reads one record every 10 ms (100 a second)
/// until it is told to stop, then hangs up.
struct SlowClient {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    reader: std::thread::JoinHandle<usize>,
}

impl SlowClient {
    fn open(address: &str) -> Self {
        use std::sync::atomic::{AtomicBool, Ordering};
        let mut socket = inspect(address, "/v1/connectors/p:gen/inspect").unwrap();
        let stop = std::sync::Arc::new(AtomicBool::new(false));
        let flag = std::sync::Arc::clone(&stop);
        let reader = std::thread::spawn(move || {
            let mut read = 0;
            while !flag.load(Ordering::Relaxed) {
                read += next_records(&mut socket, 1).len();
                std::thread::sleep(Duration::from_millis(10));
            }
            read
        });
        Self { stop, reader }
    }

    /// Hangs up: the records the client read.
    fn close(self) -> usize {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.reader.join().unwrap()
    }
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// The inspector is lossy so that the pipeline never waits for it. A generator asked
/// for 500,000 records a second (more than a debug build on a shared machine makes,
/// so the pipeline runs as fast as it can and any cost shows as records/s) runs in
/// alternating windows without (A) and with (B) a WebSocket client that reads 100
/// records a second. The A windows give the noise floor (their spread, at least 25%
/// on a shared 2-core machine); the median B must be within it of the median A, and
/// the dropped counter must rise in every B window.
#[test]
fn a_slow_inspector_client_leaves_a_500k_records_per_second_pipeline_at_its_speed() {
    const WINDOW: Duration = Duration::from_secs(3);
    const ROUNDS: usize = 3;
    let file = yaml::file(&[yaml::pipeline(
        "p",
        &[],
        &[
            yaml::generator("gen", -1, 500_000),
            yaml::connector("out", "destination", "builtin:noop", &[]),
        ],
        &[],
    )]);
    let dir = pipelines_dir(&file);
    let (child, address) = answering(dir.path(), &[]);
    // Warm up: the pipeline is writing.
    wait_until_blocking("p writes", Duration::from_secs(60), || {
        written_per_second_and_dropped(&address, Duration::from_millis(200)).0 > 0.0
    });
    let (mut without, mut with) = (Vec::new(), Vec::new());
    for round in 1..=ROUNDS {
        let (a, _) = written_per_second_and_dropped(&address, WINDOW);
        let client = SlowClient::open(&address);
        wait_until_blocking(
            "the slow client's session drops records",
            Duration::from_secs(30),
            || written_per_second_and_dropped(&address, Duration::from_millis(100)).1 > 0.0,
        );
        let (b, dropped) = written_per_second_and_dropped(&address, WINDOW);
        let read = client.close();
        eprintln!(
            "round {round}: without a client {a:.0} records/s, with the slow client \
             {b:.0} records/s, {dropped:.0} dropped in its window, {read} read by it"
        );
        assert!(
            dropped > 0.0,
            "round {round}: nothing dropped in the window"
        );
        wait_until_blocking(
            "the slow client's session to close",
            Duration::from_secs(30),
            || sessions_on_gen(&address) == 0.0,
        );
        without.push(a);
        with.push(b);
    }
    let spread = (without.iter().copied().fold(f64::MIN, f64::max)
        - without.iter().copied().fold(f64::MAX, f64::min))
        / median(without.clone());
    let floor = spread.max(0.25);
    let (a, b) = (median(without.clone()), median(with.clone()));
    eprintln!(
        "median without {a:.0} records/s, with {b:.0} records/s, noise floor {:.0}%",
        floor * 100.0
    );
    assert!(
        b >= a * (1.0 - floor),
        "the slow client held the pipeline back: {with:?} records/s with it, \
         {without:?} without (noise floor {:.0}%)",
        floor * 100.0
    );
    stop(child);
}

#[test]
fn the_inspector_needs_the_token_and_takes_it_from_the_query_of_a_websocket() {
    let dir = pipelines_dir(&touched_pipeline("p", &[], 200));
    let (child, address) = answering(dir.path(), &["--api.auth.token", "t0ken"]);
    assert_eq!(refused_with(&address, "/v1/connectors/p:gen/inspect"), 401);
    assert_eq!(
        refused_with(&address, "/v1/connectors/p:gen/inspect?access_token=wrong"),
        401
    );
    let mut socket = inspect(&address, "/v1/connectors/p:gen/inspect?access_token=t0ken").unwrap();
    assert_eq!(next_records(&mut socket, 1).len(), 1);

    // `funnel inspect` sends it as a bearer header.
    let out = Command::new(FUNNEL)
        .args([
            "inspect",
            "p:touch",
            "--limit",
            "3",
            "--api.address",
            &address,
        ])
        .env("FUNNEL_API_AUTH_TOKEN", "t0ken")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3, "{stdout}");
    assert!(
        lines.iter().all(|r| r["metadata"]["touched"] == "yes"),
        "{stdout}"
    );

    // `inspect` takes the address under either name.
    let inspect = |more: &[&str]| {
        let args = ["inspect", "p:gen", "--limit", "1"];
        process::funnel_once(FUNNEL, dir.path(), &[&args[..], more].concat())
    };
    let out = inspect(&["--api.http.address", &address]);
    assert_eq!(
        out.status.code(),
        Some(3),
        "the API wants a token: an environment failure"
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("needs a token"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // ... or reads it from a file.
    std::fs::write(dir.path().join("token"), "t0ken\n").unwrap();
    let out = inspect(&["--api.address", &address, "--api.auth.token-file", "token"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 1);
    drop(socket);
    stop(child);
}

/// A generator of `count` records at 1,000 a second into noop: a few seconds of run.
fn counted_pipeline(count: i64) -> String {
    yaml::file(&[yaml::pipeline(
        "counted",
        &[],
        &[
            yaml::generator("gen", count, 1000),
            yaml::connector("out", "destination", "builtin:noop", &[]),
        ],
        &[],
    )])
}

const RUN_TO_END: [&str; 6] = [
    "run",
    "--db.type",
    "memory",
    "--api.http.address",
    "127.0.0.1:0",
    "--pipelines.exit-on-done",
];

/// What `command` (a shell command line) shows on a pseudo-terminal of 200 columns,
/// run in `dir` by `script` (util-linux); panics when it fails.
fn on_a_terminal(command: &str, dir: &Path) -> String {
    let out = Command::new("script")
        .args([
            "-qfec",
            &format!("stty cols 200 rows 50; {command}"),
            "/dev/null",
        ])
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .expect("`script` (util-linux) runs programs on a pseudo-terminal");
    let screen = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{screen}");
    screen
}

#[test]
fn with_json_logs_funnel_run_on_a_terminal_draws_no_status_line() {
    let dir = pipelines_dir(&counted_pipeline(1500));
    let screen = on_a_terminal(
        &format!("exec {FUNNEL} {} --log.format json", RUN_TO_END.join(" ")),
        dir.path(),
    );
    assert!(screen.contains("pipeline summary"), "{screen:?}");
    // Only JSON lines: no escape sequence, no carriage return but the terminal's own
    // at each line end.
    let text = screen.replace("\r\n", "\n");
    assert!(
        !text.bytes().any(|b| b.is_ascii_control() && b != b'\n'),
        "{text:?}"
    );
    for line in text.lines().filter(|l| !l.is_empty()) {
        assert!(
            serde_json::from_str::<serde_json::Value>(line).is_ok(),
            "not a JSON log line: {line:?}"
        );
    }
}

#[test]
fn on_a_terminal_funnel_run_redraws_a_status_line_with_a_progress_bar_below_the_log() {
    let dir = pipelines_dir(&counted_pipeline(3000));
    // 200 columns: wide enough for the whole line with its bar.
    let started = std::time::Instant::now();
    let screen = on_a_terminal(
        &format!("exec {FUNNEL} {}", RUN_TO_END.join(" ")),
        dir.path(),
    );
    let seconds = started.elapsed().as_secs_f64();
    // Redrawn in place: erased, then drawn again.
    assert!(screen.matches("\r\x1b[2K").count() >= 4, "{screen:?}");
    let status: Vec<&str> = screen
        .split("\r\x1b[2K")
        .filter(|s| s.starts_with("counted "))
        .collect();
    assert!(status.len() >= 4, "{screen:?}");
    // At most a few redraws a second: 4, plus one below each log line, plus the last.
    let logged = ["INFO", "WARN", "ERROR"]
        .iter()
        .map(|level| screen.matches(level).count())
        .sum::<usize>();
    assert!(
        status.len() as f64 <= seconds * 4.0 + logged as f64 + 2.0,
        "{} redraws in {seconds:.1} s with {logged} log lines",
        status.len()
    );
    let mid = status
        .iter()
        .find(|s| s.contains("ETA"))
        .unwrap_or_else(|| panic!("no line with an ETA in {status:?}"));
    assert!(mid.contains("running") && mid.contains("rec/s"), "{mid}");
    assert!(mid.contains("lag") && mid.contains("%  ETA "), "{mid}");
    assert!(
        status
            .iter()
            .any(|s| s.contains("[####################] 100%  done")),
        "{status:?}"
    );
    // The log lines are there too, each whole on its line.
    assert!(screen.contains("pipeline summary"), "{screen:?}");
}

#[test]
fn piped_output_of_funnel_run_holds_no_control_characters() {
    let dir = pipelines_dir(&counted_pipeline(1500));
    let out = Command::new(FUNNEL)
        .args(RUN_TO_END)
        .current_dir(dir.path())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let all = [out.stdout, out.stderr].concat();
    let text = String::from_utf8_lossy(&all);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("pipeline summary"), "{text}");
    assert!(
        !all.iter().any(|&b| b.is_ascii_control() && b != b'\n'),
        "{text:?}"
    );
}
