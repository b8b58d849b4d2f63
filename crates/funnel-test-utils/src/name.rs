//! Names of the things a test makes on a shared server (tables, streams, topics,
//! queues, keys), which no other test, run or person sharing the server uses.

/// `prefix`, `tag`, the process ID and the clock's nanoseconds, joined by `sep`:
/// `unique("funnel-test", "orders", '-')` is `funnel-test-orders-4242-1733412345678901234`.
/// `sep` is what the server allows in a name (`_` for SQL, `.` inside NATS subjects).
///
/// # Panics
///
/// When the clock is before 1970.
pub fn unique(prefix: &str, tag: &str, sep: char) -> String {
    let nanos = crate::clock::unix_nanos();
    format!("{prefix}{sep}{tag}{sep}{}{sep}{nanos}", std::process::id())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_unique_name_joins_prefix_tag_process_and_clock() {
        let first = unique("ft", "orders", '_');
        assert!(
            first.starts_with(&format!("ft_orders_{}_", std::process::id())),
            "{first}"
        );
    }
}
