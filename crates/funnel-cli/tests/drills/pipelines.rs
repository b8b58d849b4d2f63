//! The pipelines the drills run: one per source/destination pair, each with pipeline id
//! `p`, source `src` and destination `dst`. A new connector adds its source or
//! destination here and its pairs to the drills of each fault.

use funnel_test_utils::yaml;

use crate::{my, pg};

/// One connector of pipeline `p`: builtin `plugin` with `settings`.
pub(crate) fn connector(id: &str, kind: &str, plugin: &str, settings: &[(&str, &str)]) -> String {
    yaml::connector(id, kind, &format!("builtin:{plugin}"), settings)
}

/// The generator source: `count` records (`-1`: without end) at `rate` per second
/// (`0`: as fast as it can), with positions `1`, `2`, ...
pub(crate) fn generator(count: i64, rate: u64) -> String {
    yaml::generator("src", count, rate)
}

/// The file source on `path` (relative to the drill's directory).
pub(crate) fn file_source(path: &str) -> String {
    connector("src", "source", "file", &[("path", path)])
}

/// The file destination writing OpenCDC JSON lines to `path`.
pub(crate) fn file_destination(path: &str) -> String {
    yaml::file_destination("dst", path)
}

/// The log destination, at `info`.
pub(crate) fn log_destination() -> String {
    connector("dst", "destination", "log", &[])
}

/// The postgres source on `table`, with its own slot and publication.
pub(crate) fn postgres_source(table: &str) -> String {
    let (slot, publication) = (format!("{table}_slot"), format!("{table}_pub"));
    connector(
        "src",
        "source",
        "postgres",
        &[
            ("url", pg::URL),
            ("tables", table),
            ("logrepl.slotName", &slot),
            ("logrepl.publicationName", &publication),
        ],
    )
}

/// The postgres destination upserting into `table` by its column `id`.
pub(crate) fn postgres_destination(table: &str) -> String {
    connector(
        "dst",
        "destination",
        "postgres",
        &[("url", pg::URL), ("table", table), ("key", "id")],
    )
}

/// The mysql source on `table`.
pub(crate) fn mysql_source(table: &str) -> String {
    connector(
        "src",
        "source",
        "mysql",
        &[
            ("dsn", my::DSN),
            ("tables", table),
            ("sdk.batch.size", "50"),
        ],
    )
}

/// A mysql destination `id` writing into `table` (by the record key), with
/// `exactlyOnce` as given.
pub(crate) fn mysql_destination(id: &str, table: &str, exactly_once: bool) -> String {
    let exactly_once = if exactly_once { "true" } else { "false" };
    connector(
        id,
        "destination",
        "mysql",
        &[
            ("dsn", my::DSN),
            ("table", table),
            ("exactlyOnce", exactly_once),
        ],
    )
}

/// The kafka source reading `topic` from its start as the consumer group `group`,
/// committing offsets every `commit_size` acked records.
#[cfg(feature = "kafka")]
pub(crate) fn kafka_source(topic: &str, group: &str, commit_size: usize) -> String {
    kafka_source_with(topic, group, commit_size, &[])
}

/// [`kafka_source`] with more settings.
#[cfg(feature = "kafka")]
pub(crate) fn kafka_source_with(
    topic: &str,
    group: &str,
    commit_size: usize,
    more: &[(&str, &str)],
) -> String {
    let commit_size = commit_size.to_string();
    let mut settings = vec![
        ("servers", crate::kafka::SERVERS),
        ("topics", topic),
        ("groupID", group),
        ("readFromBeginning", "true"),
        ("commitOffsetsSize", &commit_size),
    ];
    settings.extend_from_slice(more);
    connector("src", "source", "kafka", &settings)
}

/// The kafka destination writing to `topic`, zstd-compressed (the test broker cannot
/// read snappy, the default).
#[cfg(feature = "kafka")]
pub(crate) fn kafka_destination(topic: &str) -> String {
    connector(
        "dst",
        "destination",
        "kafka",
        &[
            ("servers", crate::kafka::SERVERS),
            ("topic", topic),
            ("compression", "zstd"),
        ],
    )
}

/// Pipeline `p` from `source` to `destination`.
pub(crate) fn pipeline(source: &str, destination: &str) -> String {
    yaml::file(&[yaml::pipeline(
        "p",
        &[],
        &[source.to_owned(), destination.to_owned()],
        &[],
    )])
}

/// Pipeline `p` from a generator of `count` records at `rate` per second to the file
/// `out`.
pub(crate) fn generator_to_file(count: u64, rate: u64, out: &str) -> String {
    pipeline(
        &generator(i64::try_from(count).unwrap(), rate),
        &file_destination(out),
    )
}
