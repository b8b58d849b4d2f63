//! The S3 source's position: which object versions have been read, so that a restart
//! neither reads an acknowledged one again nor skips one that appeared later.
//!
//! Objects are read in order of (LastModified, key). A position holds a *floor* and
//! the set of versions read at or after it: a version counts as read when its
//! LastModified is before the floor or when it is in the set. Each record moves the
//! floor up to its own LastModified less `lookback` and drops the set's entries below
//! it, so the set holds the versions of the last `lookback` only. A version that shows
//! up with a LastModified older than the floor (an upload that took longer than
//! `lookback`: S3 stamps a multipart upload with the time it started) is still read in
//! the same run, since the source compares each listing with the previous one, but a
//! restart before it is acknowledged would count it as read: the source logs a warning
//! when it meets one.
//!
//! Encoding (JSON): `{"f":floor_ms,"m":modified_ms,"k":"key","t":"tag","r":[[modified_ms,"key","tag"],...]}`
//! where `m`/`k`/`t` name the record's own version (so every position is distinct)
//! and a tag is the version ID, or the ETag in a bucket without versioning.

use std::collections::BTreeSet;

use funnel_core::ConnectorError;
use funnel_record::Position;
use serde_json::{Value, json};

/// One object version: LastModified (Unix ms), key, and tag (version ID or ETag).
pub(crate) type Version = (i64, String, String);

/// What has been read (see the [module docs](self)).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Cursor {
    /// Versions modified before this (Unix ms) are read.
    pub(crate) floor_ms: i64,
    /// Versions at or after the floor that are read.
    pub(crate) read: BTreeSet<Version>,
}

impl Cursor {
    /// Whether `version` counts as read.
    pub(crate) fn is_read(&self, version: &Version) -> bool {
        version.0 < self.floor_ms || self.read.contains(version)
    }

    /// Marks `version` read, moving the floor to its LastModified less `lookback_ms`.
    pub(crate) fn advance(&mut self, version: &Version, lookback_ms: i64) {
        self.floor_ms = self
            .floor_ms
            .max(version.0.saturating_sub(lookback_ms.max(0)));
        self.read.insert(version.clone());
        let floor = self.floor_ms;
        self.read.retain(|v| v.0 >= floor);
    }

    /// The position of the record of `version`, read with this cursor (after
    /// [`advance`](Self::advance)).
    pub(crate) fn position(&self, version: &Version) -> Position {
        let read: Vec<Value> = self.read.iter().map(|(m, k, t)| json!([m, k, t])).collect();
        let doc = json!({
            "f": self.floor_ms,
            "m": version.0,
            "k": version.1,
            "t": version.2,
            "r": read,
        });
        Position::new(doc.to_string().into_bytes())
    }

    /// The cursor saved in `position`; `who` names the connector in the error.
    ///
    /// # Errors
    ///
    /// A configuration error when `position` is not one this source wrote.
    pub(crate) fn parse(who: &str, position: &Position) -> Result<Self, ConnectorError> {
        let bad = || {
            ConnectorError::config(format!(
                "{who}: {position} is not a position of the s3 source"
            ))
        };
        let doc: Value = serde_json::from_slice(position.as_bytes()).map_err(|_| bad())?;
        let floor_ms = doc.get("f").and_then(Value::as_i64).ok_or_else(bad)?;
        let mut read = BTreeSet::new();
        for item in doc.get("r").and_then(Value::as_array).ok_or_else(bad)? {
            let parts = item.as_array().filter(|a| a.len() == 3).ok_or_else(bad)?;
            let m = parts[0].as_i64().ok_or_else(bad)?;
            let k = parts[1].as_str().ok_or_else(bad)?;
            let t = parts[2].as_str().ok_or_else(bad)?;
            read.insert((m, k.to_owned(), t.to_owned()));
        }
        Ok(Self { floor_ms, read })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(m: i64, k: &str) -> Version {
        (m, k.to_owned(), "e".to_owned())
    }

    #[test]
    fn a_cursor_survives_its_position_and_forgets_versions_older_than_the_lookback() {
        let mut cursor = Cursor::default();
        cursor.advance(&v(1_000, "b"), 500);
        cursor.advance(&v(1_000, "c"), 500);
        let position = cursor.position(&v(1_000, "c"));
        let back = Cursor::parse("s3 source p:in", &position).unwrap();
        assert_eq!(back, cursor);
        // Same LastModified, key before the last one read: not read yet.
        assert!(!back.is_read(&v(1_000, "a")));
        assert!(back.is_read(&v(1_000, "b")));
        assert!(!back.is_read(&v(900, "z")));
        cursor.advance(&v(2_000, "a"), 500);
        assert_eq!(cursor.floor_ms, 1_500);
        assert_eq!(cursor.read.len(), 1);
        assert!(cursor.is_read(&v(1_000, "a")), "below the floor");
    }

    #[test]
    fn a_position_of_another_source_is_refused() {
        let error = Cursor::parse("s3 source p:in", &Position::from("42")).unwrap_err();
        assert!(error.to_string().contains("s3 source p:in"), "{error}");
    }
}
