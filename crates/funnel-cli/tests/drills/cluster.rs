//! The failover drill: three `funnel run` instances on one PostgreSQL store and one
//! pipelines directory of six generator -> file pipelines, each record tagged with the
//! instance that wrote it. Each round SIGKILLs one instance, SIGSTOPs another past its
//! leases and SIGCONTs it, and SIGTERMs a third, starting replacements as an operator
//! would. At the end every output file must hold every record; its records must come
//! in runs that go back (write a position again) only where a lease was lost, never
//! where one was handed over gracefully; and the writers of the runs must follow the
//! order in which the leases were claimed, so an instance that lost a lease wrote
//! nothing after the next owner claimed it.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use funnel_test_utils::yaml;

use crate::harness::{Drill, Funnel, Rng};
use crate::pg;

const PIPELINES: usize = 6;
const LEASE: Duration = Duration::from_secs(2);
const RENEW: Duration = Duration::from_millis(500);
const ROUNDS: usize = 5;
/// How far back a pipeline may start writing again after a lost lease: what an owner
/// wrote but had not committed when it died or lapsed (its records in flight, or at
/// most a lease's worth at the drill's 200 records/s when the database was cut off).
/// A new owner that did not start from the committed position goes back further.
const MAX_REPLAY: u64 = 1_000;

/// `count` pipelines: a generator without end at `rate` per second, tagged by the
/// instance, into `out-<n>.jsonl`.
fn pipelines(count: usize, rate: u64) -> String {
    let pipelines: Vec<String> = (0..count)
        .map(|n| {
            yaml::pipeline(
                &format!("p{n}"),
                &[],
                &[
                    yaml::generator("src", -1, rate),
                    yaml::file_destination("dst", &format!("out-{n}.jsonl")),
                ],
                &[yaml::processor(
                    "tag",
                    "field.set",
                    &[],
                    &[("field", ".Metadata.owner"), ("value", "${DRILL_INSTANCE}")],
                )],
            )
        })
        .collect();
    yaml::file(&pipelines)
}

/// The fleet: the drill, its store table, and the instances running now.
struct Fleet {
    drill: Drill,
    table: String,
    instances: BTreeMap<String, Funnel>,
    started: usize,
}

impl Fleet {
    /// Three instances on a table of their own (`prefix`, the process and a random
    /// number) with its lease history, running the six pipelines spread over them.
    fn of_three(rng: &mut Rng, prefix: &str) -> Self {
        let table = format!(
            "{prefix}_{}_{}",
            std::process::id(),
            rng.between(0, 1 << 30)
        );
        create_history(&table);
        let mut fleet = Self {
            drill: Drill::new(&pipelines(PIPELINES, 200)),
            table,
            instances: BTreeMap::new(),
            started: 0,
        };
        for _ in 0..3 {
            fleet.start_instance();
        }
        fleet.wait_settled("all six pipelines run, spread over three instances");
        fleet
    }

    fn start_instance(&mut self) -> String {
        self.start_instance_with(&[])
    }

    /// Starts the next instance with `extra` flags.
    fn start_instance_with(&mut self, extra: &[&str]) -> String {
        self.start_instance_at(pg::URL, extra)
    }

    /// Starts the next instance reaching the store at `url`, with `extra` flags.
    fn start_instance_at(&mut self, url: &str, extra: &[&str]) -> String {
        let name = format!("i{}", self.started);
        self.started += 1;
        let mut args = vec![
            "--db.type",
            "postgres",
            "--db.postgres.connection-string",
            url,
            "--db.postgres.table",
            self.table.as_str(),
            "--cluster.enabled",
            "--cluster.instance-id",
            name.as_str(),
            "--cluster.lease-duration",
            "2s",
            "--cluster.renew-interval",
            "500ms",
        ];
        args.extend_from_slice(extra);
        let funnel = self
            .drill
            .start_with_env(&args, &[("DRILL_INSTANCE", name.as_str())]);
        self.instances.insert(name.clone(), funnel);
        name
    }

    /// Who holds each pipeline's lease now (expired leases are held by nobody; before
    /// the first instance has made the leases table, nobody holds any).
    fn owners(&self) -> BTreeMap<String, Option<String>> {
        let rows = match pg::sql(&format!(
            "SELECT pipeline, CASE WHEN expires_at > now() THEN owner END FROM {}_leases",
            self.table
        )) {
            Ok(rows) => rows,
            Err(e) if e.contains("does not exist") => return BTreeMap::new(),
            Err(e) => panic!("cannot read the leases: {e}"),
        };
        rows.lines()
            .filter_map(|line| line.split_once('|'))
            .map(|(p, o)| (p.to_owned(), (!o.is_empty()).then(|| o.to_owned())))
            .collect()
    }

    /// The pipelines `instance` holds now.
    fn held_by(&self, instance: &str) -> Vec<String> {
        self.owners()
            .into_iter()
            .filter(|(_, o)| o.as_deref() == Some(instance))
            .map(|(p, _)| p)
            .collect()
    }

    /// The writer of the last whole record in pipeline `p`'s output, and the output's
    /// size in bytes (only the end of the file is read: it is polled often).
    fn last_writer(&self, p: &str) -> (Option<String>, u64) {
        use std::io::{Read, Seek, SeekFrom};
        let Ok(mut file) = std::fs::File::open(self.drill.path(&format!("out-{}.jsonl", &p[1..])))
        else {
            return (None, 0);
        };
        let size = file.metadata().unwrap().len();
        let from = size.saturating_sub(16 * 1024);
        file.seek(SeekFrom::Start(from)).unwrap();
        let mut tail = Vec::new();
        file.read_to_end(&mut tail).unwrap();
        let whole = tail
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(&tail[..0], |end| &tail[..end]);
        let last = whole
            .rsplit(|&b| b == b'\n')
            .next()
            .filter(|l| !l.is_empty());
        let owner = last.and_then(|line| {
            let record = funnel_record::Record::from_json(line).ok()?;
            record.metadata.get("owner").map(str::to_owned)
        });
        (owner, size)
    }

    /// Stops instance `name` with SIGTERM (it must exit 0), waits for its pipelines to
    /// settle on the others, then starts a new instance and waits for the fleet to
    /// settle over three again.
    fn replace_gracefully(&mut self, name: &str, round: usize) {
        let mut funnel = self.instances.remove(name).unwrap();
        let status = funnel.signal("TERM", &self.drill);
        assert!(status.success(), "a graceful stop exits 0: {status}");
        self.wait_settled(&format!("round {round}: settled after SIGTERM of {name}"));
        self.start_instance();
        self.wait_settled(&format!("round {round}: settled with three instances"));
    }

    /// Stops every instance with SIGTERM, one after the other; returns whether each
    /// exited 0.
    fn stop_all(&mut self) -> Vec<bool> {
        let names: Vec<String> = self.instances.keys().cloned().collect();
        names
            .iter()
            .map(|name| {
                let mut funnel = self.instances.remove(name).unwrap();
                funnel.signal("TERM", &self.drill).success()
            })
            .collect()
    }

    /// Waits until every pipeline is held by a running instance, none holds more than
    /// ⌈pipelines / instances⌉ + 1, and every pipeline's latest record was written by
    /// its holder.
    fn wait_settled(&self, what: &str) {
        self.wait_spread(
            what,
            PIPELINES,
            PIPELINES.div_ceil(self.instances.len()) + 1,
        );
    }

    /// Waits until each of `pipelines` pipelines is held by a running instance that
    /// wrote its latest record, and no instance holds more than `share`.
    fn wait_spread(&self, what: &str, pipelines: usize, share: usize) {
        self.drill
            .wait_for(what, LEASE * 10 + Duration::from_secs(20), || {
                let owners = self.owners();
                if owners.len() < pipelines {
                    return false;
                }
                let mut count: BTreeMap<&str, usize> = BTreeMap::new();
                for (p, owner) in &owners {
                    let Some(owner) = owner.as_deref() else {
                        return false;
                    };
                    if !self.instances.contains_key(owner) {
                        return false;
                    }
                    *count.entry(owner).or_default() += 1;
                    if self.last_writer(p).0.as_deref() != Some(owner) {
                        return false;
                    }
                }
                count.values().all(|&n| n <= share)
            });
    }

    /// An instance picked at random among those running at least one pipeline (a kill
    /// or a pause of an idle one would prove nothing: a settled fleet may leave a new
    /// instance idle), and its pipelines; marked in the drill's log after `what`.
    fn pick_busy(&self, rng: &mut Rng, what: &str) -> (String, Vec<String>) {
        let busy: Vec<String> = self
            .instances
            .keys()
            .filter(|name| !self.held_by(name).is_empty())
            .cloned()
            .collect();
        let picked = pick(rng, &busy);
        let held = self.held_by(&picked);
        assert!(!held.is_empty(), "{what}: {picked} runs nothing");
        self.drill
            .mark(&format!("{what} {picked} holding {held:?}"));
        (picked, held)
    }

    /// Waits until each of `pipelines` has 10,000 records more than `sizes` (their
    /// outputs' sizes before, in the same order) in its output.
    fn wait_written_past(&self, what: &str, pipelines: &[String], sizes: &[u64]) {
        self.drill.wait_for(what, Duration::from_secs(20), || {
            pipelines
                .iter()
                .zip(sizes)
                .all(|(p, &n)| self.last_writer(p).1 > n + 10_000)
        });
    }

    /// Drops the fleet's store table, its lease and instance tables and the lease
    /// history.
    fn drop_tables(&self) {
        let _ = pg::sql(&format!(
            "DROP TABLE IF EXISTS {t}, {t}_leases, {t}_instances, {t}_history;
             DROP FUNCTION IF EXISTS {t}_log()",
            t = self.table
        ));
    }

    /// Waits until each of `pipelines` has a record written by an instance other than
    /// `gone`; how long that took from `since`.
    fn wait_taken_over(&self, pipelines: &[String], gone: &str, since: Instant) -> Duration {
        self.drill.wait_for(
            &format!("the pipelines {pipelines:?} of {gone} resume elsewhere"),
            LEASE * 5 + Duration::from_secs(10),
            || {
                pipelines.iter().all(|p| {
                    let (writer, _) = self.last_writer(p);
                    writer.is_some_and(|w| w != gone)
                })
            },
        );
        since.elapsed()
    }
}

/// One of `names`, at random.
fn pick(rng: &mut Rng, names: &[String]) -> String {
    names[usize::try_from(rng.between(0, names.len() as u64 - 1)).unwrap()].clone()
}

/// Every claim and release of a lease, in order: a trigger on the lease table logs them.
fn create_history(table: &str) {
    pg::sql(&format!(
        "DROP TABLE IF EXISTS {table}_leases, {table}_history;
         CREATE TABLE {table}_leases (
             pipeline text PRIMARY KEY,
             owner text,
             epoch bigint NOT NULL DEFAULT 0,
             expires_at timestamptz NOT NULL DEFAULT '-infinity'
         );
         CREATE TABLE {table}_history (
             id bigserial PRIMARY KEY, pipeline text, owner text, epoch bigint, event text
         );
         CREATE FUNCTION {table}_log() RETURNS trigger AS $$ BEGIN
             IF NEW.epoch <> OLD.epoch THEN
                 INSERT INTO {table}_history (pipeline, owner, epoch, event)
                 VALUES (NEW.pipeline, NEW.owner, NEW.epoch, 'claim');
             ELSIF NEW.owner IS NULL AND OLD.owner IS NOT NULL THEN
                 INSERT INTO {table}_history (pipeline, owner, epoch, event)
                 VALUES (NEW.pipeline, OLD.owner, NEW.epoch, 'release');
             END IF;
             RETURN NEW;
         END $$ LANGUAGE plpgsql;
         CREATE TRIGGER {table}_log AFTER UPDATE ON {table}_leases
             FOR EACH ROW EXECUTE FUNCTION {table}_log();"
    ))
    .unwrap();
}

/// One lease of a pipeline's history: its owner, and whether it was given back
/// gracefully (released) rather than lost.
#[derive(Debug)]
struct Tenure {
    owner: String,
    released: bool,
}

fn history(table: &str, pipeline: &str) -> Vec<Tenure> {
    let rows = pg::sql(&format!(
        "SELECT owner, event FROM {table}_history WHERE pipeline = '{pipeline}' ORDER BY id"
    ))
    .unwrap();
    let mut tenures: Vec<Tenure> = Vec::new();
    for (owner, event) in rows.lines().filter_map(|l| l.split_once('|')) {
        match event {
            "claim" => tenures.push(Tenure {
                owner: owner.to_owned(),
                released: false,
            }),
            _ => {
                if let Some(last) = tenures.last_mut().filter(|t| t.owner == owner) {
                    last.released = true;
                }
            }
        }
    }
    tenures
}

/// A run of records written by one instance, positions one after the other.
#[derive(Debug)]
struct Run {
    owner: String,
    first: u64,
    last: u64,
}

/// Checks pipeline `n`'s output against its lease history.
fn check_output(fleet: &Fleet, n: usize) {
    let pipeline = format!("p{n}");
    let records = fleet.drill.records(&format!("out-{n}.jsonl"));
    let mut runs: Vec<Run> = Vec::new();
    for record in &records {
        let position: u64 = std::str::from_utf8(record.position.as_bytes())
            .unwrap()
            .parse()
            .unwrap();
        let owner = record.metadata.get("owner").unwrap_or("?").to_owned();
        match runs.last_mut() {
            Some(run) if run.owner == owner && position == run.last + 1 => run.last = position,
            _ => runs.push(Run {
                owner,
                first: position,
                last: position,
            }),
        }
    }
    let tenures = history(&fleet.table, &pipeline);
    let context = || format!("{pipeline}: runs {runs:?}, leases {tenures:?}");
    assert_eq!(runs.first().map(|r| r.first), Some(1), "{}", context());
    // The writers follow the order of the claims: match each run to the earliest
    // tenure of its owner at or after the previous run's.
    let mut tenure = 0;
    let mut highest = 0;
    for (i, run) in runs.iter().enumerate() {
        let start = tenure;
        let found = (start..tenures.len()).find(|&t| tenures[t].owner == run.owner);
        let Some(found) = found else {
            panic!(
                "run {i} was written by {} after its lease was taken over: {}",
                run.owner,
                context()
            );
        };
        if i > 0 {
            assert!(
                run.first <= highest + 1,
                "records {}..{} were never written: {}",
                highest + 1,
                run.first - 1,
                context()
            );
            assert!(
                highest.saturating_sub(run.first) < MAX_REPLAY,
                "run {i} starts {} records back: not from the committed position: {}",
                highest + 1 - run.first,
                context()
            );
            // After a graceful hand-over the next owner starts right after the last
            // record written; after a lost lease it may write some again. Every tenure
            // since the previous run's must have ended gracefully: its owner may have
            // claimed again and been killed (those writes join its run).
            let previous = &runs[i - 1];
            if found != tenure && (tenure..found).all(|t| tenures[t].released) {
                assert_eq!(
                    run.first,
                    previous.last + 1,
                    "run {i} does not continue right after a graceful hand-over: {}",
                    context()
                );
            }
        }
        tenure = found;
        highest = highest.max(run.last);
    }
}

/// The sample of an unlabelled metric.
fn gauge(metrics: &str, name: &str) -> f64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or(0.0)
}

/// The sum of a per-pipeline metric over `pipelines`.
fn per_pipeline(metrics: &str, name: &str, pipelines: &[String]) -> f64 {
    pipelines
        .iter()
        .map(|p| funnel_test_utils::http::metric(metrics, name, &format!("pipeline=\"{p}\"")))
        .sum()
}

/// `/readyz`, `/v1/cluster` and the lease metrics say which instance runs which
/// pipeline, and count claims, hand-overs and lost leases; a fleet needs the
/// PostgreSQL store.
#[test]
fn readyz_the_api_and_the_metrics_show_which_instance_runs_which_pipeline() {
    let Some(_server) = pg::server() else {
        return;
    };
    let table = format!("drill_cluster_view_{}", std::process::id());
    let _ = pg::sql(&format!(
        "DROP TABLE IF EXISTS {table}, {table}_leases, {table}_instances"
    ));
    let mut fleet = Fleet {
        drill: Drill::new(&pipelines(4, 50)),
        table,
        instances: BTreeMap::new(),
        started: 0,
    };
    let (a, b) = (
        funnel_test_utils::process::free_port(),
        funnel_test_utils::process::free_port(),
    );
    let (a_address, b_address) = (format!("127.0.0.1:{a}"), format!("127.0.0.1:{b}"));
    let get = |address: &str, path: &str| {
        funnel_test_utils::http::get(address, path)
            .unwrap_or_else(|| panic!("GET {path} from {address}: no answer"))
    };
    let first = fleet.start_instance_with(&["--api.http.address", &a_address]);
    fleet.wait_spread("one instance runs all four pipelines", 4, 4);
    let second = fleet.start_instance_with(&["--api.http.address", &b_address]);
    fleet.wait_spread("two instances run two pipelines each", 4, 2);
    let all: Vec<String> = (0..4).map(|n| format!("p{n}")).collect();
    // The lease table shows the spread first; the instance's gauges follow on its next
    // lease round.
    fleet.drill.wait_for(
        "the first instance's metrics show the two leases it kept",
        LEASE * 4,
        || gauge(&get(&a_address, "/metrics").1, "funnel_cluster_leases_held") == 2.0,
    );
    let metrics = get(&a_address, "/metrics").1;
    assert_eq!(
        gauge(&metrics, "funnel_cluster_leases_held"),
        2.0,
        "{metrics}"
    );
    assert_eq!(
        gauge(&metrics, "funnel_cluster_instances"),
        2.0,
        "{metrics}"
    );
    assert_eq!(
        per_pipeline(&metrics, "funnel_cluster_leases_claimed_total", &all),
        4.0
    );
    assert_eq!(
        per_pipeline(&metrics, "funnel_cluster_rebalances_total", &all),
        2.0,
        "the first instance handed two pipelines over: {metrics}"
    );
    let (code, ready) = get(&b_address, "/readyz");
    assert_eq!(code, 200, "{ready}");
    let ready: serde_json::Value = serde_json::from_str(&ready).unwrap();
    assert_eq!(ready["status"], "ready", "{ready}");
    assert_eq!(ready["cluster"]["instance"], second.as_str(), "{ready}");
    assert_eq!(
        ready["cluster"]["instances"],
        serde_json::json!([first, second]),
        "{ready}"
    );
    for p in fleet.held_by(&second) {
        assert!(
            ready["cluster"]["pipelines"]
                .as_array()
                .unwrap()
                .iter()
                .any(|entry| entry["id"] == p.as_str() && entry["instance"] == second.as_str()),
            "pipeline {p} runs on {second}: {ready}"
        );
    }
    let (code, cluster) = get(&a_address, "/v1/cluster");
    assert_eq!(code, 200, "{cluster}");
    let cluster: serde_json::Value = serde_json::from_str(&cluster).unwrap();
    assert_eq!(cluster["instance"], first.as_str());
    assert_eq!(cluster["instances"], serde_json::json!([first, second]));
    // The instance's view of who runs what follows the lease table on its next round.
    fleet.drill.wait_for(
        "the first instance's /v1/cluster names the owner of every pipeline",
        LEASE * 4,
        || {
            let cluster: serde_json::Value =
                serde_json::from_str(&get(&a_address, "/v1/cluster").1).unwrap();
            let owners = fleet.owners();
            cluster["pipelines"].as_array().unwrap().iter().all(|p| {
                let id = p["id"].as_str().unwrap();
                p["instance"].as_str() == owners[id].as_deref()
            })
        },
    );
    // Paused past its leases: the other takes them; once woken, it counts them lost.
    let held = fleet.held_by(&second);
    fleet.instances[&second].send("STOP", &fleet.drill);
    fleet.drill.wait_for(
        "the first instance runs all four again",
        Duration::from_secs(30),
        || fleet.held_by(&first).len() == 4,
    );
    fleet.instances[&second].send("CONT", &fleet.drill);
    fleet.drill.wait_for(
        "the woken instance counts its leases lost",
        Duration::from_secs(20),
        || {
            let metrics = get(&b_address, "/metrics").1;
            per_pipeline(&metrics, "funnel_cluster_leases_lost_total", &held) >= held.len() as f64
        },
    );
    let (code, _) = get(&a_address, "/v1/cluster");
    assert_eq!(code, 200);
    let names: Vec<String> = fleet.instances.keys().cloned().collect();
    for name in names {
        let mut funnel = fleet.instances.remove(&name).unwrap();
        funnel.signal("TERM", &fleet.drill);
    }
    let _ = pg::sql(&format!(
        "DROP TABLE IF EXISTS {t}, {t}_leases, {t}_instances",
        t = fleet.table
    ));
}

/// `--cluster.enabled` without the PostgreSQL store, or with a renewal interval that is
/// not well inside the lease, is refused before anything starts.
#[test]
fn a_fleet_needs_the_postgres_store_and_a_renewal_well_inside_the_lease() {
    let drill = Drill::new(&pipelines(1, 10));
    let (status, text) = drill.funnel(&["run", "--cluster.enabled", "--db.type", "memory"]);
    assert_eq!(status.code(), Some(1), "{text}");
    assert!(text.contains("--db.type postgres"), "{text}");
    let (status, text) = drill.funnel(&[
        "run",
        "--cluster.enabled",
        "--db.type",
        "postgres",
        "--db.postgres.connection-string",
        pg::URL,
        "--cluster.lease-duration",
        "2s",
        "--cluster.renew-interval",
        "1s",
    ]);
    assert_eq!(status.code(), Some(1), "{text}");
    assert!(text.contains("at most a third of"), "{text}");
}

/// The PostgreSQL store connects as the postgres connectors do: `sslmode` and
/// `sslrootcert` in the connection string. With the CA that signed the server's
/// certificate a run commits its positions; with another CA it is refused at start,
/// naming the certificate problem, which only a TLS handshake can meet.
#[test]
fn the_postgres_store_connects_over_tls_and_verifies_the_server_as_the_connectors_do() {
    let Some(_server) = pg::server() else {
        return;
    };
    let ca = format!(
        "{}/.cache/funnel/pg-tls/ca.crt",
        std::env::var("HOME").unwrap_or_default()
    );
    if !std::path::Path::new(&ca).exists() {
        crate::harness::skip("the server's CA (scripts/setup-services.sh makes it)", &ca);
        return;
    }
    let table = format!("drill_store_tls_{}", std::process::id());
    let drill = Drill::new(&yaml::file(&[yaml::pipeline(
        "p",
        &[],
        &[
            yaml::generator("src", 100, 0),
            yaml::file_destination("dst", "out.jsonl"),
        ],
        &[],
    )]));
    let store = |url: &str| {
        [
            "--db.type".to_owned(),
            "postgres".to_owned(),
            "--db.postgres.connection-string".to_owned(),
            url.to_owned(),
            "--db.postgres.table".to_owned(),
            table.clone(),
        ]
    };
    let other = funnel_test_utils::tls::TestCa::new();
    let other_ca = drill.path("other-ca.pem");
    std::fs::write(&other_ca, &other.ca_pem).unwrap();
    let refused = store(&format!(
        "{}?sslmode=verify-ca&sslrootcert={}",
        pg::URL,
        other_ca.display()
    ));
    let refused: Vec<&str> = refused.iter().map(String::as_str).collect();
    let (status, log) = drill.run_to_end(&refused);
    assert_eq!(status.code(), Some(1), "{log}");
    assert!(
        log.contains("position store") && log.to_lowercase().contains("certificate"),
        "{log}"
    );
    assert!(!drill.path("out.jsonl").exists(), "a pipeline ran: {log}");

    let verified = store(&format!("{}?sslmode=verify-full&sslrootcert={ca}", pg::URL));
    let verified: Vec<&str> = verified.iter().map(String::as_str).collect();
    let (status, log) = drill.run_to_end(&verified);
    assert!(status.success(), "{log}");
    assert_eq!(drill.records("out.jsonl").len(), 100);
    let positions = pg::sql(&format!(
        "SELECT count(*) FROM {table} WHERE key LIKE 'funnel:position:p%'"
    ))
    .unwrap();
    assert_eq!(positions, "1", "the position was not committed to {table}");
    let _ = pg::sql(&format!(
        "DROP TABLE IF EXISTS {table}, {table}_leases, {table}_instances"
    ));
}

/// A Conduit deployment that keeps its state in PostgreSQL runs unchanged: `db.type:
/// postgres` with `db.postgres.connection-string` in `conduit.yaml` (or in
/// `CONDUIT_DB_POSTGRES_CONNECTION_STRING`) and no table keeps the positions in
/// Conduit's default table `conduit_kv_store`, in Conduit's layout, and the next run
/// resumes from them.
#[test]
fn a_conduit_yaml_with_the_postgres_store_keeps_positions_in_conduits_default_table() {
    let Some(_server) = pg::server() else {
        return;
    };
    // A database of its own: the default table name is the same for everyone.
    let database = format!("drill_conduit_kv_{}", std::process::id());
    pg::sql(&format!("DROP DATABASE IF EXISTS {database}")).unwrap();
    pg::sql(&format!("CREATE DATABASE {database}")).unwrap();
    let url = format!("postgres://postgres@127.0.0.1:5432/{database}");
    let drill = Drill::new(&yaml::file(&[yaml::pipeline(
        "p",
        &[],
        &[
            yaml::generator("src", 100, 0),
            yaml::file_destination("dst", "out.jsonl"),
        ],
        &[],
    )]));
    std::fs::write(
        drill.path("conduit.yaml"),
        format!("db:\n  type: postgres\n  postgres:\n    connection-string: {url}\n"),
    )
    .unwrap();
    let (status, log) = drill.run_to_end(&[]);
    assert!(status.success(), "{log}");
    assert_eq!(drill.records("out.jsonl").len(), 100, "{log}");
    let columns = pg::sql_in(
        &database,
        "SELECT column_name || ' ' || data_type FROM information_schema.columns \
         WHERE table_name = 'conduit_kv_store' ORDER BY ordinal_position",
    )
    .unwrap();
    assert_eq!(columns, "key text\nvalue bytea", "Conduit's layout");
    let positions = pg::sql_in(
        &database,
        "SELECT count(*) FROM conduit_kv_store WHERE key LIKE 'funnel:position:p%'",
    )
    .unwrap();
    assert_eq!(positions, "1", "no position in conduit_kv_store: {log}");

    // Conduit's variable instead of the file: the same table, so the run resumes after
    // the 100 records and writes none again.
    std::fs::write(drill.path("conduit.yaml"), "db:\n  type: postgres\n").unwrap();
    let mut funnel = drill.start_with_env(
        &["--pipelines.exit-on-done"],
        &[("CONDUIT_DB_POSTGRES_CONNECTION_STRING", url.as_str())],
    );
    let status = funnel.wait(Duration::from_secs(120), &drill);
    assert!(status.success(), "{}", drill.log());
    assert_eq!(drill.records("out.jsonl").len(), 100, "{}", drill.log());
    let _ = pg::sql(&format!("DROP DATABASE IF EXISTS {database} WITH (FORCE)"));
}

/// A TCP forwarder to the local PostgreSQL that can be cut: every connection through
/// it closed, and new ones closed as soon as they are accepted (the database
/// unreachable for whoever uses it, and for nobody else).
struct Proxy {
    port: u16,
    cut: std::sync::Arc<std::sync::atomic::AtomicBool>,
    open: std::sync::Arc<std::sync::Mutex<Vec<std::net::TcpStream>>>,
}

impl Proxy {
    fn start() -> Self {
        use std::net::{TcpListener, TcpStream};
        use std::sync::atomic::Ordering;
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let proxy = Self {
            port,
            cut: std::sync::Arc::default(),
            open: std::sync::Arc::default(),
        };
        let (cut, open) = (proxy.cut.clone(), proxy.open.clone());
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                if cut.load(Ordering::SeqCst) {
                    continue;
                }
                let Ok(server) = TcpStream::connect(("127.0.0.1", 5432)) else {
                    continue;
                };
                let pipe = |mut from: TcpStream, mut to: TcpStream| {
                    std::thread::spawn(move || {
                        let _ = std::io::copy(&mut from, &mut to);
                        let _ = to.shutdown(std::net::Shutdown::Both);
                    });
                };
                let mut open = open.lock().unwrap();
                open.push(client.try_clone().unwrap());
                open.push(server.try_clone().unwrap());
                pipe(client.try_clone().unwrap(), server.try_clone().unwrap());
                pipe(server, client);
            }
        });
        proxy
    }

    /// Cuts every connection and refuses new ones, or lets them through again.
    fn set_cut(&self, cut: bool) {
        self.cut.store(cut, std::sync::atomic::Ordering::SeqCst);
        if cut {
            for stream in self.open.lock().unwrap().drain(..) {
                let _ = stream.shutdown(std::net::Shutdown::Both);
            }
        }
    }
}

/// An instance that can no longer reach the database keeps running but stops its
/// pipelines once its leases run out: another instance takes them over within lease +
/// renewal, the cut-off one writes nothing after that, and once the database is back
/// the fleet evens out again with every record in every output.
#[test]
fn an_instance_cut_off_from_the_database_stops_writing_once_its_leases_run_out_and_nothing_is_lost()
{
    let Some(_server) = pg::server() else {
        return;
    };
    let table = format!("drill_cluster_cut_{}", std::process::id());
    create_history(&table);
    let mut fleet = Fleet {
        drill: Drill::new(&pipelines(2, 200)),
        table,
        instances: BTreeMap::new(),
        started: 0,
    };
    let proxy = Proxy::start();
    let through = format!("postgres://postgres@127.0.0.1:{}/test", proxy.port);
    let cut_off = fleet.start_instance_at(&through, &[]);
    fleet.wait_spread("the first instance runs both pipelines", 2, 2);
    let held = fleet.held_by(&cut_off);
    fleet
        .drill
        .mark(&format!("cutting {cut_off} off the database"));
    let since = Instant::now();
    proxy.set_cut(true);
    fleet.start_instance();
    let took = fleet.wait_taken_over(&held, &cut_off, since);
    let limit = LEASE + RENEW * 2 + Duration::from_secs(3);
    assert!(
        took <= limit,
        "taken over after {took:?}, more than {limit:?}"
    );
    let sizes: Vec<u64> = held.iter().map(|p| fleet.last_writer(p).1).collect();
    fleet.wait_written_past("the new owner goes on writing", &held, &sizes);
    fleet
        .drill
        .mark(&format!("{cut_off} reaches the database again"));
    proxy.set_cut(false);
    fleet.wait_spread("the fleet evens out again", 2, 1);
    let names: Vec<String> = fleet.instances.keys().cloned().collect();
    for name in names {
        let mut funnel = fleet.instances.remove(&name).unwrap();
        let status = funnel.signal("TERM", &fleet.drill);
        assert!(
            status.success(),
            "{name} exits 0 after a graceful stop: {status}"
        );
    }
    for n in 0..2 {
        check_output(&fleet, n);
    }
    eprintln!("drill cluster: a cut-off instance's pipelines resumed elsewhere after {took:?}");
    fleet.drop_tables();
}

/// Three instances, five rounds of SIGKILL, SIGSTOP past the lease and SIGTERM; every
/// record of every pipeline in its output, none written by an instance after it lost
/// its lease, none written twice after a graceful hand-over.
#[test]
fn a_fleet_of_three_loses_no_record_through_kills_pauses_and_graceful_stops() {
    let Some(_server) = pg::server() else {
        return;
    };
    let mut rng = Rng::new("cluster");
    let mut fleet = Fleet::of_three(&mut rng, "drill_cluster");
    let mut failovers = Vec::new();
    for round in 0..ROUNDS {
        // SIGKILL: its pipelines resume elsewhere within lease + renewal.
        let (killed, held) = fleet.pick_busy(&mut rng, &format!("round {round}: SIGKILL"));
        let mut funnel = fleet.instances.remove(&killed).unwrap();
        let since = Instant::now();
        funnel.signal("KILL", &fleet.drill);
        let took = fleet.wait_taken_over(&held, &killed, since);
        failovers.push(took);
        fleet.start_instance();
        fleet.wait_settled(&format!("round {round}: settled after SIGKILL of {killed}"));

        // SIGSTOP past the lease, then SIGCONT: it must write nothing after that.
        let (paused, held) = fleet.pick_busy(&mut rng, &format!("round {round}: SIGSTOP"));
        fleet.instances[&paused].send("STOP", &fleet.drill);
        fleet.wait_taken_over(&held, &paused, Instant::now());
        let sizes: Vec<u64> = held.iter().map(|p| fleet.last_writer(p).1).collect();
        fleet.instances[&paused].send("CONT", &fleet.drill);
        // The others keep writing what they took over.
        fleet.wait_written_past(
            &format!("round {round}: the pipelines of {paused} go on elsewhere"),
            &held,
            &sizes,
        );
        fleet.wait_settled(&format!("round {round}: settled after SIGCONT of {paused}"));

        // SIGTERM: a graceful hand-over.
        let names: Vec<String> = fleet.instances.keys().cloned().collect();
        let stopped = pick(&mut rng, &names);
        fleet
            .drill
            .mark(&format!("round {round}: SIGTERM {stopped}"));
        fleet.replace_gracefully(&stopped, round);
    }
    fleet.stop_all();
    for n in 0..PIPELINES {
        check_output(&fleet, n);
    }
    // Lease + renewal, and time for a loaded machine to start the pipeline.
    let limit = LEASE + RENEW * 2 + Duration::from_secs(3);
    eprintln!("drill cluster: failover times {failovers:?} (lease {LEASE:?}, renewal {RENEW:?})");
    for took in &failovers {
        assert!(
            *took <= limit,
            "a killed instance's pipelines resumed after {took:?}, more than {limit:?}"
        );
    }
    fleet.drop_tables();
}

/// Three instances, five graceful stops (SIGTERM) of a random instance, each replaced
/// by a new one: every pipeline handed over goes on exactly where it was, with no
/// record written twice, unless its lease lapsed during the drain (the output checks
/// tell the two apart by the lease history; the drill counts such leases).
#[test]
fn graceful_stops_hand_pipelines_over_with_no_record_written_twice() {
    let Some(_server) = pg::server() else {
        return;
    };
    let mut rng = Rng::new("cluster-graceful");
    let mut fleet = Fleet::of_three(&mut rng, "drill_cluster_term");
    for round in 0..ROUNDS {
        let names: Vec<String> = fleet.instances.keys().cloned().collect();
        let stopped = pick(&mut rng, &names);
        let held = fleet.held_by(&stopped);
        fleet.drill.mark(&format!(
            "round {round}: SIGTERM {stopped} holding {held:?}"
        ));
        fleet.replace_gracefully(&stopped, round);
    }
    let exits = fleet.stop_all();
    assert!(
        exits.iter().all(|ok| *ok),
        "a graceful stop exits 0: {exits:?}"
    );
    let mut released = 0;
    let mut lapsed = 0;
    for n in 0..PIPELINES {
        check_output(&fleet, n);
        for tenure in history(&fleet.table, &format!("p{n}")) {
            if tenure.released {
                released += 1;
            } else {
                lapsed += 1;
            }
        }
    }
    eprintln!(
        "drill cluster: graceful hand-overs: {released} leases released, {lapsed} lapsed during a drain"
    );
    assert!(
        released >= ROUNDS,
        "graceful stops release their leases: {released} released, {lapsed} not"
    );
    fleet.drop_tables();
}
