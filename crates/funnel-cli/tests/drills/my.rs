//! The MariaDB server the mysql drills use (127.0.0.1:3306, user root, database `test`,
//! binary log in ROW format: see `scripts/setup-services.sh`), through the `mysql`
//! client.

use std::process::Command;

use crate::harness::skip;

/// The DSN the pipelines use.
pub(crate) const DSN: &str = "root@tcp(127.0.0.1:3306)/test";

/// Runs `sql` in database `test`; its output (tab-separated rows), or the client's
/// error.
pub(crate) fn sql(sql: &str) -> Result<String, String> {
    let out = Command::new("mysql")
        .args([
            "-h",
            "127.0.0.1",
            "-u",
            "root",
            "-N",
            "-B",
            "test",
            "-e",
            sql,
        ])
        .output()
        .map_err(|e| format!("mysql: {e}"))?;
    let text = |b: &[u8]| String::from_utf8_lossy(b).trim().to_owned();
    if out.status.success() {
        Ok(text(&out.stdout))
    } else {
        Err(text(&out.stderr))
    }
}

/// Whether the server answers; `false` (the drill is skipped) without one outside CI.
pub(crate) fn available() -> bool {
    match sql("SELECT 1") {
        Ok(_) => true,
        Err(e) => {
            skip(
                "MariaDB is not reachable (scripts/setup-services.sh starts it)",
                &e,
            );
            false
        }
    }
}

/// A table of one drill, dropped at the end.
pub(crate) struct Table {
    /// The table's name, unique to the drill.
    pub(crate) name: String,
}

impl Table {
    /// A new table `{name} {columns}` for the drill `tag`.
    pub(crate) fn new(tag: &str, columns: &str) -> Self {
        let name = funnel_test_utils::name::unique("drill", tag, '_');
        sql(&format!("CREATE TABLE {name} {columns}")).unwrap();
        Self { name }
    }

    /// The rows, `id|v|n` in id order.
    pub(crate) fn rows(&self) -> Vec<String> {
        sql(&format!(
            "SELECT id, v, n FROM {} ORDER BY id, n",
            self.name
        ))
        .unwrap_or_default()
        .lines()
        .map(|l| l.replace('\t', "|"))
        .collect()
    }
}

impl Drop for Table {
    fn drop(&mut self) {
        // Exactly-once destinations of a drill are named after its tables.
        let _ = sql(&format!(
            "DROP TABLE IF EXISTS {0}; DELETE FROM funnel_positions WHERE connector_id LIKE '%{0}%'",
            self.name
        ));
    }
}
