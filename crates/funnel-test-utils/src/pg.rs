//! Running SQL against the test PostgreSQL server (127.0.0.1:5432, user `postgres`,
//! database `test`) with the `psql` command-line client.

use std::process::Command;

/// Runs `sql` with psql (stopping at the first error); returns its unaligned output,
/// trimmed, or psql's error output.
///
/// # Errors
///
/// psql's standard error when it cannot run or a statement fails.
pub fn psql(sql: &str) -> Result<String, String> {
    let out = Command::new("psql")
        .args([
            "-h",
            "127.0.0.1",
            "-U",
            "postgres",
            "-d",
            "test",
            "-X",
            "-q",
            "-tA",
            "-v",
            "ON_ERROR_STOP=1",
            "-c",
            sql,
        ])
        .output()
        .map_err(|e| format!("cannot run psql: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}
