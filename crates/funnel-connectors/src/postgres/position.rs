//! Positions of the postgres source, and the ordering the exactly-once destination
//! uses.
//!
//! A position is ASCII text whose byte order is the read order:
//!
//! - snapshot: `pg:1:<row>:<json>`, where `<row>` is the 16-hex-digit number of the row
//!   in the whole snapshot (counting on across restarts) and `<json>` is
//!   `{"t":"<table>","k":["<key column text>", ...]}`, the table and the primary key of
//!   the row, from which a restarted snapshot continues;
//! - change: `pg:2:<commit LSN>:<index>`, the 16-hex-digit LSN of the commit record of
//!   the transaction and the 8-hex-digit index of the change within it.
//!
//! Every change comes after every snapshot row (`2` > `1`), changes are in commit
//! order, and within a transaction in change order.

use bytes::{BufMut as _, BytesMut};
use funnel_record::Position;

/// A decoded position.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum PgPosition {
    /// A snapshot row.
    Snapshot {
        /// Number of the row in the snapshot, from 0.
        row: u64,
        /// The table it belongs to (as configured).
        table: String,
        /// Its primary key values in text form (empty without a primary key).
        key: Vec<String>,
    },
    /// A change from the replication stream.
    Change {
        /// LSN of the commit record of its transaction.
        commit_lsn: u64,
        /// Index of the change in its transaction.
        index: u32,
    },
}

impl PgPosition {
    /// The position's bytes.
    pub(crate) fn encode(&self) -> Position {
        match self {
            Self::Snapshot { row, table, key } => {
                SnapshotPositions::new(table).encode(*row, key.iter().map(String::as_str))
            }
            Self::Change { commit_lsn, index } => {
                Position::from(format!("pg:2:{commit_lsn:016x}:{index:08x}"))
            }
        }
    }

    /// Decodes a position written by [`encode`](Self::encode).
    ///
    /// # Errors
    ///
    /// A message saying what is wrong with it.
    pub(crate) fn decode(position: &Position) -> Result<Self, String> {
        let text = std::str::from_utf8(position.as_bytes())
            .map_err(|_| format!("position {position} is not a postgres source position"))?;
        let bad = || {
            format!(
                "position {text:?} is not a postgres source position (pg:1:<row>:<json> or \
                 pg:2:<lsn>:<index>)"
            )
        };
        if let Some(rest) = text.strip_prefix("pg:1:") {
            let (row, json) = rest.split_once(':').ok_or_else(bad)?;
            let row = u64::from_str_radix(row, 16).map_err(|_| bad())?;
            let json: serde_json::Value = serde_json::from_str(json).map_err(|_| bad())?;
            let table = json["t"].as_str().ok_or_else(bad)?.to_owned();
            let key = json["k"]
                .as_array()
                .ok_or_else(bad)?
                .iter()
                .map(|v| v.as_str().map(str::to_owned).ok_or_else(bad))
                .collect::<Result<_, _>>()?;
            Ok(Self::Snapshot { row, table, key })
        } else if let Some(rest) = text.strip_prefix("pg:2:") {
            let (lsn, index) = rest.split_once(':').ok_or_else(bad)?;
            Ok(Self::Change {
                commit_lsn: u64::from_str_radix(lsn, 16).map_err(|_| bad())?,
                index: u32::from_str_radix(index, 16).map_err(|_| bad())?,
            })
        } else {
            Err(bad())
        }
    }
}

/// Encodes the positions of the rows of one table in the snapshot, as
/// [`PgPosition::Snapshot`] would. The positions are written one after the other into a
/// shared buffer and handed out as slices of it, so that a batch of positions costs one
/// allocation, not one each.
pub(crate) struct SnapshotPositions {
    /// The JSON string of the table name.
    table: String,
    /// Room for the next positions; each position is split off its front.
    buffer: BytesMut,
}

/// Bytes reserved at once for positions (several hundred positions of a typical table).
const POSITION_BUFFER: usize = 32 * 1024;

impl SnapshotPositions {
    /// The encoder for the rows of `table`.
    pub(crate) fn new(table: &str) -> Self {
        let mut json = String::with_capacity(table.len() + 2);
        push_json_string(&mut json, table);
        Self {
            table: json,
            buffer: BytesMut::new(),
        }
    }

    /// The position of row `row` with the key values `key` (text form).
    pub(crate) fn encode<'a>(
        &mut self,
        row: u64,
        key: impl Iterator<Item = &'a str> + Clone,
    ) -> Position {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let key_len: usize = key.clone().map(|k| k.len() + 3).sum();
        let needed = 40 + self.table.len() + key_len;
        if self.buffer.capacity() < needed {
            self.buffer.reserve(needed.max(POSITION_BUFFER));
        }
        let out = &mut self.buffer;
        // JSON with its keys in sorted order, written directly; the row number as 16
        // hex digits.
        out.extend_from_slice(b"pg:1:");
        for shift in (0..16).rev() {
            out.put_u8(HEX[((row >> (shift * 4)) & 0xf) as usize]);
        }
        out.extend_from_slice(b":{\"k\":[");
        for (i, k) in key.enumerate() {
            if i > 0 {
                out.put_u8(b',');
            }
            push_json_string(out, k);
        }
        out.extend_from_slice(b"],\"t\":");
        out.extend_from_slice(self.table.as_bytes());
        out.put_u8(b'}');
        Position(self.buffer.split().freeze())
    }
}

/// Appends `s` as a JSON string, escaped as `serde_json` escapes it.
fn push_json_string(out: &mut impl std::fmt::Write, s: &str) {
    let _ = out.write_char('"');
    let mut from = 0;
    for (i, b) in s.bytes().enumerate() {
        let escape = match b {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0x08 => "\\b",
            0x0c => "\\f",
            0..=0x1f => "",
            _ => continue,
        };
        let _ = out.write_str(&s[from..i]);
        if escape.is_empty() {
            let _ = write!(out, "\\u{b:04x}");
        } else {
            let _ = out.write_str(escape);
        }
        from = i + 1;
    }
    let _ = out.write_str(&s[from..]);
    let _ = out.write_char('"');
}

pub use crate::sql::compare_positions;

#[cfg(test)]
mod tests {
    use super::*;
    use std::cmp::Ordering;

    #[test]
    fn positions_round_trip_through_their_text() {
        for p in [
            PgPosition::Snapshot {
                row: 41,
                table: "public.users".into(),
                key: vec!["7".into(), "a:b\"c".into()],
            },
            PgPosition::Change {
                commit_lsn: 0x1D9E_A880,
                index: 3,
            },
        ] {
            assert_eq!(PgPosition::decode(&p.encode()), Ok(p));
        }
        assert!(PgPosition::decode(&Position::from("17")).is_err());
    }

    #[test]
    fn byte_order_is_read_order_snapshot_rows_then_changes_by_commit_then_index() {
        let ordered = [
            PgPosition::Snapshot {
                row: 9,
                table: "z".into(),
                key: vec!["9".into()],
            },
            PgPosition::Snapshot {
                row: 10,
                table: "a".into(),
                key: vec!["1".into()],
            },
            PgPosition::Change {
                commit_lsn: 0xff,
                index: 0x10,
            },
            PgPosition::Change {
                commit_lsn: 0x100,
                index: 0,
            },
            PgPosition::Change {
                commit_lsn: 0x100,
                index: 1,
            },
        ]
        .map(|p| p.encode());
        for pair in ordered.windows(2) {
            assert_eq!(
                compare_positions(pair[0].as_bytes(), pair[1].as_bytes()),
                Ordering::Less,
                "{:?} < {:?}",
                pair[0],
                pair[1]
            );
        }
    }

    #[test]
    fn snapshot_positions_are_sorted_key_json_that_decodes_back() {
        let fixed = PgPosition::Snapshot {
            row: 0x1234,
            table: "public.users".to_owned(),
            key: vec!["7".to_owned(), "a:b\"c".to_owned()],
        }
        .encode();
        assert_eq!(
            fixed,
            Position::from(r#"pg:1:0000000000001234:{"k":["7","a:b\"c"],"t":"public.users"}"#)
        );
        for (table, key) in [
            ("public.users", vec!["7", "a:b\"c"]),
            ("s.\"odd\\name\"", vec!["\u{1}\u{1f}\n\t\r\u{8}\u{c}é", ""]),
            ("t", vec![]),
        ] {
            let position = PgPosition::Snapshot {
                row: 0x1234,
                table: table.to_owned(),
                key: key.iter().map(|k| (*k).to_owned()).collect(),
            };
            let encoded = position.encode();
            assert_eq!(PgPosition::decode(&encoded).unwrap(), position);
            let text = std::str::from_utf8(encoded.as_bytes()).unwrap();
            let json: serde_json::Value = serde_json::from_str(&text[22..]).unwrap();
            assert_eq!(json["t"], table);
        }
    }

    #[test]
    fn positions_cut_from_one_shared_buffer_equal_positions_encoded_alone() {
        let mut shared = SnapshotPositions::new("public.users");
        let positions: Vec<Position> = (0..2_000u64)
            .map(|row| {
                let key = format!("key \"{row}\" {}", "x".repeat((row % 50) as usize));
                shared.encode(row, [key.as_str(), "b"].into_iter())
            })
            .collect();
        for (row, position) in (0..2_000u64).zip(&positions) {
            let key = format!("key \"{row}\" {}", "x".repeat((row % 50) as usize));
            let alone = PgPosition::Snapshot {
                row,
                table: "public.users".to_owned(),
                key: vec![key, "b".to_owned()],
            };
            assert_eq!(*position, alone.encode());
            assert_eq!(PgPosition::decode(position).unwrap(), alone);
        }
    }

    #[test]
    fn decimal_positions_compare_as_numbers() {
        assert_eq!(compare_positions(b"9", b"10"), Ordering::Less);
        assert_eq!(compare_positions(b"010", b"10"), Ordering::Equal);
        assert_eq!(compare_positions(b"b", b"a"), Ordering::Greater);
    }
}
