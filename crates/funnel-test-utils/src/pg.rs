//! Running SQL against the test PostgreSQL server (127.0.0.1:5432, user `postgres`,
//! database `test`) with the `psql` command-line client.

use std::process::Command;

/// Runs `sql` with psql in database `test` (stopping at the first error); returns its
/// unaligned output, trimmed, or psql's error output.
///
/// # Errors
///
/// psql's standard error when it cannot run or a statement fails.
pub fn psql(sql: &str) -> Result<String, String> {
    psql_in("test", sql)
}

/// Runs `sql` with psql in `database` (stopping at the first error); returns its
/// unaligned output, trimmed, or psql's error output, trimmed.
///
/// # Errors
///
/// psql's standard error when it cannot run or a statement fails.
pub fn psql_in(database: &str, sql: &str) -> Result<String, String> {
    crate::process::trimmed_output(
        Command::new("psql")
            .args(["-X", "-q", "-tA", "-v", "ON_ERROR_STOP=1"])
            .args([
                "-h",
                "127.0.0.1",
                "-U",
                "postgres",
                "-d",
                database,
                "-c",
                sql,
            ]),
    )
}
