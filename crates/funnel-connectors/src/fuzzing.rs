//! Entry points for the fuzz targets in `fuzz/` (feature `fuzzing`, never on in a
//! build that ships): the decoders of bytes that come from outside the process and
//! are otherwise private to their connector.
//!
//! Each function accepts any bytes and must neither panic nor loop; the checks it
//! makes beyond that are properties of the decoder (a decoded position encodes back
//! to the same bytes, position order is a total order).

use std::cmp::Ordering;
use std::collections::BTreeMap;

use funnel_record::Position;

use crate::file::FilePosition;
use crate::postgres::compare_positions;
use crate::postgres::fuzz_hooks::{Cell, Message, PgPosition, TypeMap, decode_pgoutput};

/// Type OIDs a fuzzed column value is converted as: every type with its own
/// conversion, their arrays, an array type the map learns at run time, and text.
const TYPE_OIDS: &[u32] = &[
    16, 17, 20, 21, 23, 26, 114, 700, 701, 1114, 1184, 3802, 1000, 1001, 1005, 1007, 1016, 1028,
    199, 3807, 1021, 1022, 1115, 1185, 25, 90_000,
];

/// Decodes `data` as one pgoutput message and converts every text column value of a
/// row, as the postgres source does, each as the type picked by its first byte.
pub fn pgoutput(data: &[u8]) {
    let Ok(message) = decode_pgoutput(data) else {
        return;
    };
    let types = TypeMap::new(BTreeMap::from([(90_000, 25)]));
    let cells: Vec<&Cell<'_>> = match &message {
        Message::Insert { new, .. } => new.iter().collect(),
        Message::Update { old, new, .. } => {
            old.iter().flat_map(|(_, cells)| cells).chain(new).collect()
        }
        Message::Delete { old: (_, old), .. } => old.iter().collect(),
        _ => Vec::new(),
    };
    for cell in cells {
        let Cell::Text(text) = cell else {
            continue;
        };
        let Some((&pick, rest)) = text.split_first() else {
            continue;
        };
        let type_oid = TYPE_OIDS[usize::from(pick) % TYPE_OIDS.len()];
        types.value(type_oid, &String::from_utf8_lossy(rest));
    }
}

/// Decodes `data` as a stored postgres source position and as a file source position:
/// what decodes must encode back to the same position, and [`compare_positions`] must
/// order `data` and its halves consistently.
pub fn positions(data: &[u8]) {
    if let Some(FilePosition {
        seq,
        offset,
        file: Some(file),
    }) = FilePosition::parse(data)
    {
        let texts = FilePosition::texts(seq, file, std::iter::once(offset));
        assert_eq!(
            texts
                .iter()
                .map(|t| FilePosition::parse(t))
                .collect::<Vec<_>>(),
            [FilePosition::parse(data)],
            "a decoded file position does not survive encoding"
        );
    }
    let position = Position::from(data.to_vec());
    if let Ok(decoded) = PgPosition::decode(&position) {
        let again = PgPosition::decode(&decoded.encode());
        assert_eq!(
            again.as_ref(),
            Ok(&decoded),
            "a decoded position does not survive encoding"
        );
    }
    let (a, b) = data.split_at(data.len() / 2);
    let ab = compare_positions(a, b);
    assert_eq!(
        ab.reverse(),
        compare_positions(b, a),
        "order is not antisymmetric"
    );
    assert_eq!(
        compare_positions(a, a),
        Ordering::Equal,
        "order is not reflexive"
    );
}
