//! End-to-end: a PostgreSQL -> PostgreSQL pipeline run by the `funnel` binary, under
//! random DML and SIGKILL at random moments, against the real server on
//! 127.0.0.1:5432 (user postgres, database `test`, wal_level=logical: see
//! `scripts/setup-services.sh`). SQL goes through `psql`. Without a server the tests
//! are skipped, except under `CI=true`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use funnel_test_utils::pg::psql;
use funnel_test_utils::process::{RunDir, kill_at_random, signal_and_wait};
use funnel_test_utils::{http, yaml};

const FUNNEL: &str = env!("CARGO_BIN_EXE_funnel");
const URL: &str = "postgres://postgres@127.0.0.1:5432/test";

fn server_available() -> bool {
    match psql("SELECT 1") {
        Ok(_) => true,
        Err(e) => {
            funnel_test_utils::skip_without(&format!("PostgreSQL is not reachable: {e}"));
            false
        }
    }
}

struct Names {
    prefix: String,
    dir: RunDir,
}

impl Names {
    /// Runs `funnel pipelines delete PIPELINE` with `extra` arguments in the test's
    /// directory, with no terminal (stdin closed).
    fn delete(&self, pipeline: &str, extra: &[&str]) -> std::process::Output {
        Command::new(FUNNEL)
            .current_dir(self.dir.path())
            .args(["pipelines", "delete", pipeline])
            .args(extra)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    fn new(tag: &str) -> Self {
        Self {
            prefix: funnel_test_utils::name::unique("fe2e", tag, '_'),
            dir: RunDir::new(FUNNEL),
        }
    }

    fn src(&self) -> String {
        format!("{}_src", self.prefix)
    }

    fn dst(&self) -> String {
        format!("{}_dst", self.prefix)
    }

    /// Writes the pipeline `<tag>_<prefix>`: the source table, with this test's slot
    /// and publication, to `dst` (a [`yaml::connector`] with id `dst`).
    fn write_pipeline(&self, tag: &str, dst: &str) {
        let (src, p) = (self.src(), &self.prefix);
        let (slot, publication) = (format!("{p}_slot"), format!("{p}_pub"));
        let source = yaml::connector(
            "src",
            "source",
            "builtin:postgres",
            &[
                ("url", URL),
                ("tables", &src),
                ("logrepl.slotName", &slot),
                ("logrepl.publicationName", &publication),
            ],
        );
        let id = format!("{tag}_{p}");
        let pipeline = yaml::file(&[yaml::pipeline(&id, &[], &[source, dst.to_owned()], &[])]);
        self.dir.write_pipelines(&pipeline);
    }

    /// [`Names::write_pipeline`] to the file `./out.jsonl`.
    fn write_pg_to_file_pipeline(&self, tag: &str) {
        self.write_pipeline(tag, &yaml::file_destination("dst", "./out.jsonl"));
    }

    /// The address the API of the last `funnel` started listens on, from its log line
    /// (it binds a free port); waits for the line.
    fn api_address(&self) -> String {
        let mut address = None;
        funnel_test_utils::wait_until_blocking(
            "funnel logs its API address",
            Duration::from_secs(30),
            || {
                address = self
                    .dir
                    .log()
                    .lines()
                    .rev()
                    .filter(|line| line.contains("API listening"))
                    .find_map(|line| line.split("address=").nth(1))
                    .map(|a| a.split_whitespace().next().unwrap_or_default().to_owned());
                address.is_some()
            },
        );
        address.unwrap_or_default()
    }
}

impl Drop for Names {
    fn drop(&mut self) {
        let p = &self.prefix;
        let _ = psql(&format!(
            "SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE slot_name = '{p}_slot' AND active_pid IS NOT NULL; \
             SELECT pg_sleep(0.3); \
             SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = '{p}_slot'; \
             DROP PUBLICATION IF EXISTS {p}_pub; DROP TABLE IF EXISTS {p}_src, {p}_dst, {p}_log; \
             DROP SEQUENCE IF EXISTS {p}_ver; DROP FUNCTION IF EXISTS {p}_log_fn(); \
             DELETE FROM funnel_positions WHERE connector_id LIKE 'pgpg_{p}%';"
        ));
    }
}

/// A fingerprint of a table's rows, in id order.
fn fingerprint(table: &str) -> String {
    psql(&format!(
        "SELECT count(*) || ':' || coalesce(md5(string_agg(id || '/' || coalesce(v, '~') || '/' || ver, ',' ORDER BY id)), '') FROM {table}"
    ))
    .unwrap()
}

/// Random DML on the source until `stop`: inserts, updates, deletes and key changes,
/// a few per transaction. Every change sets `ver` from a sequence, so each change of a
/// row has a distinct (id, ver).
fn random_dml(names: &Names, stop: &AtomicBool, seed: u64) -> usize {
    let src = names.src();
    let seq = format!("{}_ver", names.prefix);
    let mut seed = seed | 1;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let mut new_id = 1_000_000 + (next() % 1000) as i64 * 10_000;
    let mut transactions = 0;
    while !stop.load(Ordering::Relaxed) {
        let mut sql = String::from("BEGIN;");
        for _ in 0..(1 + next() % 8) {
            let id = 1 + (next() % 3000) as i64;
            match next() % 5 {
                0 => {
                    new_id += 1;
                    sql.push_str(&format!("INSERT INTO {src} VALUES ({new_id}, md5(random()::text), nextval('{seq}'));"));
                }
                1 | 2 => sql.push_str(&format!(
                    "UPDATE {src} SET v = md5(random()::text), ver = nextval('{seq}') WHERE id = {id};"
                )),
                3 => sql.push_str(&format!("DELETE FROM {src} WHERE id = {id};")),
                _ => {
                    new_id += 1;
                    sql.push_str(&format!("UPDATE {src} SET id = {new_id}, ver = nextval('{seq}') WHERE id = {id};"));
                }
            }
        }
        sql.push_str("COMMIT;");
        psql(&sql).unwrap();
        transactions += 1;
        std::thread::sleep(Duration::from_millis(next() % 20));
    }
    transactions
}

fn pg_to_pg_survives_kills(exactly_once: bool) {
    if !server_available() {
        return;
    }
    let names = Names::new(if exactly_once { "once" } else { "alo" });
    let (src, dst, p) = (names.src(), names.dst(), names.prefix.clone());
    psql(&format!(
        "CREATE SEQUENCE {p}_ver;
         CREATE TABLE {src} (id bigint PRIMARY KEY, v text, ver bigint);
         CREATE TABLE {dst} (id bigint PRIMARY KEY, v text, ver bigint);
         CREATE TABLE {p}_log (id bigint, ver bigint);
         CREATE FUNCTION {p}_log_fn() RETURNS trigger LANGUAGE plpgsql AS $$
           BEGIN INSERT INTO {p}_log VALUES (NEW.id, NEW.ver); RETURN NULL; END $$;
         CREATE TRIGGER {p}_trg AFTER INSERT OR UPDATE ON {dst} FOR EACH ROW EXECUTE FUNCTION {p}_log_fn();
         CREATE TABLE IF NOT EXISTS funnel_positions (connector_id text PRIMARY KEY, position bytea);
         INSERT INTO {src} SELECT g, md5(g::text), nextval('{p}_ver') FROM generate_series(1, 3000) g;"
    ))
    .unwrap();
    let exactly_once_text = exactly_once.to_string();
    let destination = yaml::connector(
        "dst",
        "destination",
        "builtin:postgres",
        &[
            ("url", URL),
            ("table", &dst),
            ("exactlyOnce", &exactly_once_text),
        ],
    );
    names.write_pipeline("pgpg", &destination);

    // The snapshot first, so that kills land in the change stream.
    let child = names.dir.spawn();
    names
        .dir
        .wait_for("the snapshot is written", Duration::from_secs(60), || {
            (psql(&format!("SELECT count(*) FROM {dst}")).unwrap() == "3000").then_some(())
        });
    // Wait until the engine has committed the snapshot's last position (a record is
    // counted acked once its position is committed): a restart in the snapshot is
    // at-least-once (see docs/connectors.md), the change stream is exactly-once.
    let address = names.api_address();
    let pipeline = format!("pipeline=\"pgpg_{p}\"");
    funnel_test_utils::wait_until_blocking(
        "the snapshot's 3000 records are acked",
        Duration::from_secs(60),
        || {
            http::get(&address, "/metrics").is_some_and(|(_, metrics)| {
                http::metric(&metrics, "funnel_pipeline_records_acked_total", &pipeline) >= 3000.0
            })
        },
    );

    let stop = Arc::new(AtomicBool::new(false));
    let dml_seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let (dml, mut child) = std::thread::scope(|scope| {
        let (names, stop) = (&names, &stop);
        let writer = scope.spawn(move || random_dml(names, stop, dml_seed));
        let child = kill_at_random(
            child,
            6,
            Duration::from_millis(300),
            Duration::from_millis(1500),
            || names.dir.spawn(),
        );
        std::thread::sleep(Duration::from_millis(500));
        stop.store(true, Ordering::Relaxed);
        (writer.join().unwrap(), child)
    });
    assert!(dml > 10, "only {dml} transactions ran");

    // The pipeline catches up: the destination equals the source.
    let want = fingerprint(&src);
    names.dir.wait_for(
        &format!("the destination matches the source ({want})"),
        Duration::from_secs(120),
        || (fingerprint(&dst) == want).then_some(()),
    );
    signal_and_wait(&mut child, "TERM");
    if exactly_once {
        let duplicates = psql(&format!(
            "SELECT count(*) - count(DISTINCT (id, ver)) FROM {p}_log"
        ))
        .unwrap();
        assert_eq!(duplicates, "0", "a change was applied twice");
    }
}

#[test]
fn a_postgres_to_postgres_pipeline_keeps_the_destination_identical_through_random_dml_and_sigkills()
{
    pg_to_pg_survives_kills(false);
}

#[test]
fn with_exactly_once_a_postgres_to_postgres_pipeline_applies_each_change_once_through_sigkills() {
    pg_to_pg_survives_kills(true);
}

#[test]
fn deleting_a_pipeline_drops_its_slot_and_publication_and_forgets_its_positions() {
    if !server_available() {
        return;
    }
    let names = Names::new("del");
    let (src, p) = (names.src(), names.prefix.clone());
    psql(&format!(
        "CREATE TABLE {src} (id bigint PRIMARY KEY, v text);
         INSERT INTO {src} SELECT g, md5(g::text) FROM generate_series(1, 100) g;"
    ))
    .unwrap();
    names.write_pg_to_file_pipeline("del");
    let lines = || {
        std::fs::read_to_string(names.dir.path().join("out.jsonl")).map_or(0, |t| t.lines().count())
    };
    let slot_exists = || {
        psql(&format!(
            "SELECT count(*) FROM pg_replication_slots WHERE slot_name = '{p}_slot'"
        ))
        .unwrap()
            == "1"
    };
    let publication_exists = || {
        psql(&format!(
            "SELECT count(*) FROM pg_publication WHERE pubname = '{p}_pub'"
        ))
        .unwrap()
            == "1"
    };

    let mut child = names.dir.spawn();
    names
        .dir
        .wait_for("the snapshot is written", Duration::from_secs(60), || {
            (lines() >= 100).then_some(())
        });
    signal_and_wait(&mut child, "TERM");
    assert!(slot_exists() && publication_exists());

    // Pointed at a store that does not hold the pipeline, delete refuses and drops
    // nothing: the slot keeps the changes made meanwhile.
    std::fs::copy(
        names.dir.path().join("funnel.db"),
        names.dir.path().join("saved.db"),
    )
    .unwrap();
    let pipeline = format!("del_{p}");
    let wrong = names.delete(&pipeline, &["--yes", "--db.redb.path", "other.db"]);
    let stderr = String::from_utf8_lossy(&wrong.stderr);
    assert_eq!(wrong.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("--force"), "{stderr}");
    assert!(
        !names.dir.path().join("other.db").exists(),
        "a store was created"
    );
    assert!(
        slot_exists() && publication_exists(),
        "dropped by a refused delete"
    );
    // Without --yes and no terminal, it names the slot it would drop and stops.
    let unconfirmed = names.delete(&pipeline, &[]);
    let stdout = String::from_utf8_lossy(&unconfirmed.stdout);
    assert_eq!(unconfirmed.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains(&format!("drop replication slot {p}_slot")),
        "{stdout}"
    );
    assert!(
        slot_exists() && publication_exists(),
        "dropped without confirmation"
    );

    let out = names.delete(&pipeline, &["--yes"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains(&format!("del_{p}:src: cleaned up")),
        "{stdout}"
    );
    assert!(!slot_exists(), "the replication slot is dropped");
    assert!(!publication_exists(), "the publication is dropped");

    // The positions are gone: the same pipeline starts again with a fresh snapshot.
    let mut child = names.dir.spawn();
    names.dir.wait_for(
        "a second snapshot is written",
        Duration::from_secs(60),
        || (lines() >= 200).then_some(()),
    );
    signal_and_wait(&mut child, "TERM");
}

#[test]
fn a_failed_postgres_start_leaves_no_publication_behind() {
    if !server_available() {
        return;
    }
    let names = Names::new("nopub");
    let (src, p) = (names.src(), names.prefix.clone());
    psql(&format!(
        "CREATE TABLE {src} (id bigint PRIMARY KEY, v text)"
    ))
    .unwrap();
    psql(&format!(
        "SELECT pg_create_logical_replication_slot('{p}_slot', 'test_decoding')"
    ))
    .unwrap();
    names.write_pg_to_file_pipeline("nopub");
    // The slot exists for another plugin, so the start fails after the publication
    // was created: it must be dropped again.
    let out = Command::new(FUNNEL)
        .current_dir(names.dir.path())
        .args([
            "run",
            "--api.http.address",
            "",
            "--pipelines.exit-on-degraded",
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("not a pgoutput slot"), "{stderr}");
    assert_eq!(
        psql(&format!(
            "SELECT count(*) FROM pg_publication WHERE pubname = '{p}_pub'"
        ))
        .unwrap(),
        "0",
        "a failed start left its publication behind"
    );
}
