//! Positions of the mysql source.
//!
//! A position is ASCII text whose byte order is the read order:
//!
//! - snapshot: `my:1:<row>:<json>`, where `<row>` is the 16-hex-digit number of the row
//!   in the whole snapshot (counting on across restarts) and `<json>` is
//!   `{"f":"<binlog file>","p":<binlog position>,"t":"<table>","k":["<key>",...]}`: the
//!   binlog coordinates of the first snapshot (where the change stream starts), and
//!   the table and primary key of the row, from which a restarted snapshot continues;
//! - change: `my:2:<binlog file>:<position>:<index>`, the file and the 16-hex-digit
//!   position of the first event of the row's transaction, and the 8-hex-digit index of
//!   the row change in that transaction.
//!
//! Every change comes after every snapshot row (`2` > `1`), changes are in binlog
//! order (binlog file names end in a zero-padded sequence number), and within a
//! transaction in change order.

use std::fmt::Write as _;

use funnel_record::Position;
use mysql_async::Value as My;

/// A decoded position.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum MyPosition {
    /// A snapshot row.
    Snapshot {
        /// Number of the row in the snapshot, from 0.
        row: u64,
        /// Where the change stream starts after the snapshot.
        start: Coordinates,
        /// The table of the row.
        table: String,
        /// Its key values (empty without key: the table restarts from its start).
        key: Vec<KeyValue>,
    },
    /// A row change from the binlog.
    Change {
        /// The first event of its transaction.
        txn: Coordinates,
        /// Index of the row change in its transaction.
        index: u32,
    },
}

/// A place in the binlog.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Coordinates {
    pub(crate) file: String,
    pub(crate) pos: u64,
}

/// A key value of a snapshot row, as the next page's query parameter.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum KeyValue {
    Int(i64),
    Uint(u64),
    Bytes(Vec<u8>),
}

impl KeyValue {
    /// The key value of a value read from the server.
    pub(crate) fn of(value: &My) -> Self {
        match value {
            My::Int(i) => Self::Int(*i),
            My::UInt(u) => Self::Uint(*u),
            My::Bytes(b) => Self::Bytes(b.clone()),
            other => Self::Bytes(other.as_sql(true).trim_matches('\'').as_bytes().to_vec()),
        }
    }

    /// As a query parameter.
    pub(crate) fn param(&self) -> My {
        match self {
            Self::Int(i) => My::Int(*i),
            Self::Uint(u) => My::UInt(*u),
            Self::Bytes(b) => My::Bytes(b.clone()),
        }
    }

    fn encode(&self) -> String {
        match self {
            Self::Int(i) => format!("i{i}"),
            Self::Uint(u) => format!("u{u}"),
            Self::Bytes(b) => {
                let mut s = String::with_capacity(1 + 2 * b.len());
                s.push('x');
                for byte in b {
                    let _ = write!(s, "{byte:02x}");
                }
                s
            }
        }
    }

    fn decode(text: &str) -> Option<Self> {
        let (tag, rest) = text.split_at_checked(1)?;
        match tag {
            "i" => rest.parse().ok().map(Self::Int),
            "u" => rest.parse().ok().map(Self::Uint),
            "x" if rest.len() % 2 == 0 => (0..rest.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(rest.get(i..i + 2)?, 16).ok())
                .collect::<Option<Vec<u8>>>()
                .map(Self::Bytes),
            _ => None,
        }
    }
}

/// The positions of one table's snapshot rows: the JSON before the key is the same
/// for every row, so it is written once.
pub(crate) struct SnapshotPositions {
    prefix: String,
}

impl SnapshotPositions {
    /// Positions of rows of `table` in the snapshot starting the stream at `start`.
    pub(crate) fn new(start: &Coordinates, table: &str) -> Self {
        let text = |s: &str| serde_json::Value::from(s).to_string();
        Self {
            prefix: format!(
                "{{\"f\":{},\"p\":{},\"t\":{},\"k\":[",
                text(&start.file),
                start.pos,
                text(table)
            ),
        }
    }

    /// The position of snapshot row `row` with key `key`.
    pub(crate) fn encode(&self, row: u64, key: &[KeyValue]) -> Position {
        let mut out = String::with_capacity(24 + self.prefix.len() + 24 * key.len());
        out.push_str("my:1:");
        let _ = write!(out, "{row:016x}:");
        out.push_str(&self.prefix);
        for (i, k) in key.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            // The encoded key is ASCII without quotes or backslashes.
            out.push('"');
            out.push_str(&k.encode());
            out.push('"');
        }
        out.push_str("]}");
        Position::from(out)
    }
}

impl MyPosition {
    /// The position's bytes.
    pub(crate) fn encode(&self) -> Position {
        match self {
            Self::Snapshot {
                row,
                start,
                table,
                key,
            } => SnapshotPositions::new(start, table).encode(*row, key),
            Self::Change { txn, index } => {
                Position::from(format!("my:2:{}:{:016x}:{index:08x}", txn.file, txn.pos))
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
            .map_err(|_| format!("position {position} is not a mysql source position"))?;
        let bad = || {
            format!(
                "position {text:?} is not a mysql source position (my:1:<row>:<json> or \
                 my:2:<file>:<pos>:<index>)"
            )
        };
        if let Some(rest) = text.strip_prefix("my:1:") {
            let (row, json) = rest.split_once(':').ok_or_else(bad)?;
            let row = u64::from_str_radix(row, 16).map_err(|_| bad())?;
            let json: serde_json::Value = serde_json::from_str(json).map_err(|_| bad())?;
            let file = json["f"].as_str().ok_or_else(bad)?.to_owned();
            let pos = json["p"].as_u64().ok_or_else(bad)?;
            let table = json["t"].as_str().ok_or_else(bad)?.to_owned();
            let key = json["k"]
                .as_array()
                .ok_or_else(bad)?
                .iter()
                .map(|v| v.as_str().and_then(KeyValue::decode).ok_or_else(bad))
                .collect::<Result<_, _>>()?;
            Ok(Self::Snapshot {
                row,
                start: Coordinates { file, pos },
                table,
                key,
            })
        } else if let Some(rest) = text.strip_prefix("my:2:") {
            let (rest, index) = rest.rsplit_once(':').ok_or_else(bad)?;
            let (file, pos) = rest.rsplit_once(':').ok_or_else(bad)?;
            Ok(Self::Change {
                txn: Coordinates {
                    file: file.to_owned(),
                    pos: u64::from_str_radix(pos, 16).map_err(|_| bad())?,
                },
                index: u32::from_str_radix(index, 16).map_err(|_| bad())?,
            })
        } else {
            Err(bad())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(file: &str, pos: u64) -> Coordinates {
        Coordinates {
            file: file.into(),
            pos,
        }
    }

    #[test]
    fn positions_round_trip_through_their_text() {
        for p in [
            MyPosition::Snapshot {
                row: 41,
                start: at("mysql-bin.000003", 471),
                table: "users".into(),
                key: vec![
                    KeyValue::Int(-7),
                    KeyValue::Uint(u64::MAX),
                    KeyValue::Bytes(b"a:b\"c\0".to_vec()),
                ],
            },
            MyPosition::Change {
                txn: at("mysql-bin.000003", 0x1D9E_A880),
                index: 3,
            },
        ] {
            assert_eq!(MyPosition::decode(&p.encode()), Ok(p));
        }
        assert!(MyPosition::decode(&Position::from("17")).is_err());
        assert!(MyPosition::decode(&Position::from("my:1:zz:{}")).is_err());
    }

    #[test]
    fn byte_order_is_read_order_snapshot_rows_then_changes_by_file_position_and_index() {
        let ordered = [
            MyPosition::Snapshot {
                row: 9,
                start: at("mysql-bin.000009", 9),
                table: "z".into(),
                key: vec![KeyValue::Int(9)],
            },
            MyPosition::Snapshot {
                row: 10,
                start: at("mysql-bin.000009", 9),
                table: "a".into(),
                key: vec![KeyValue::Int(1)],
            },
            MyPosition::Change {
                txn: at("mysql-bin.000001", 0xffff),
                index: 2,
            },
            MyPosition::Change {
                txn: at("mysql-bin.000001", 0x1_0000),
                index: 0,
            },
            MyPosition::Change {
                txn: at("mysql-bin.000002", 4),
                index: 0,
            },
            MyPosition::Change {
                txn: at("mysql-bin.000002", 4),
                index: 1,
            },
        ];
        for pair in ordered.windows(2) {
            assert!(
                pair[0].encode().as_bytes() < pair[1].encode().as_bytes(),
                "{:?} then {:?}",
                pair[0],
                pair[1]
            );
        }
    }
}
