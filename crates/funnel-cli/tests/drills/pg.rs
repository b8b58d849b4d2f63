//! The PostgreSQL server the postgres drills use (127.0.0.1:5432, user `postgres`,
//! database `test`, `wal_level = logical`: see `scripts/setup-services.sh`).

use std::process::Command;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use crate::harness::skip;

/// The connection URL the pipelines use.
pub(crate) const URL: &str = "postgres://postgres@127.0.0.1:5432/test";

/// Held by every drill that uses the server, so the drill that restarts it runs alone.
static SERVER: Mutex<()> = Mutex::new(());

/// Runs `sql` in database `test`; its output, unaligned, or psql's error.
pub(crate) fn sql(sql: &str) -> Result<String, String> {
    sql_in("test", sql)
}

/// Runs `sql` in `database`; its output, unaligned, or psql's error.
pub(crate) fn sql_in(database: &str, sql: &str) -> Result<String, String> {
    funnel_test_utils::pg::psql_in(database, sql)
}

/// Exclusive use of the server by one drill.
pub(crate) type Server = MutexGuard<'static, ()>;

/// Exclusive use of the server for one drill, or `None` (the drill is skipped) when
/// there is no server outside CI.
pub(crate) fn server() -> Option<Server> {
    let guard = SERVER.lock().unwrap_or_else(PoisonError::into_inner);
    if let Err(e) = sql("SELECT 1") {
        skip(
            "PostgreSQL is not reachable (scripts/setup-services.sh starts it)",
            &e,
        );
        return None;
    }
    Some(guard)
}

/// Restarts the server (`pg_ctlcluster ... restart`) and waits until it answers again.
pub(crate) fn restart() {
    let version = std::fs::read_dir("/etc/postgresql")
        .expect("a Debian PostgreSQL cluster under /etc/postgresql")
        .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
        .max_by_key(|v| v.parse::<u32>().unwrap_or(0))
        .expect("a PostgreSQL version under /etc/postgresql");
    let status = Command::new("pg_ctlcluster")
        .args(["--skip-systemctl-redirect", &version, "main", "restart"])
        .status()
        .expect("pg_ctlcluster");
    assert!(status.success(), "pg_ctlcluster restart failed");
    wait_ready();
}

/// Waits until the server answers, at most 60 s.
pub(crate) fn wait_ready() {
    let start = Instant::now();
    while sql("SELECT 1").is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "PostgreSQL does not answer after a restart"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A table `{name} (id bigint primary key, v text)` of one drill, dropped with its
/// replication slot and publication at the end.
pub(crate) struct Table {
    /// The table's name, unique to the drill.
    pub(crate) name: String,
}

impl Table {
    /// A new, empty table for the drill `tag`.
    pub(crate) fn new(tag: &str) -> Self {
        let name = funnel_test_utils::name::unique("drill", tag, '_');
        sql(&format!(
            "CREATE TABLE {name} (id bigint PRIMARY KEY, v text)"
        ))
        .unwrap();
        Self { name }
    }

    /// Inserts the rows `ids` in one transaction.
    pub(crate) fn insert(&self, ids: std::ops::RangeInclusive<u64>) {
        sql(&format!(
            "INSERT INTO {} SELECT g, 'v' || g FROM generate_series({}, {}) g",
            self.name,
            ids.start(),
            ids.end()
        ))
        .unwrap();
    }

    /// The ids in the table.
    pub(crate) fn ids(&self) -> Vec<u64> {
        sql(&format!("SELECT id FROM {} ORDER BY id", self.name))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.parse().ok())
            .collect()
    }
}

impl Drop for Table {
    fn drop(&mut self) {
        let name = &self.name;
        let _ = sql(&format!(
            "SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots \
             WHERE slot_name = '{name}_slot' AND active_pid IS NOT NULL"
        ));
        let start = Instant::now();
        while sql(&format!(
            "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots \
             WHERE slot_name = '{name}_slot'"
        ))
        .is_err()
            && start.elapsed() < Duration::from_secs(10)
        {
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = sql(&format!(
            "DROP PUBLICATION IF EXISTS {name}_pub; DROP TABLE IF EXISTS {name}"
        ));
    }
}
