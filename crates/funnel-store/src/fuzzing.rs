//! Entry points for the fuzz targets in `fuzz/` (feature `fuzzing`, never on in a
//! build that ships): the decoder of the values the store keeps, which is otherwise
//! private.

use crate::format;

/// Decodes `stored` as the value kept under `key`: any bytes must decode or be refused
/// without a panic, a refusal must be short, and what is encoded must decode to itself.
pub fn stored_position(key: &str, stored: &[u8]) {
    match format::decode(key, stored) {
        Ok(position) => {
            assert_eq!(
                format::encode(key, position),
                stored,
                "decoding is not exact"
            );
        }
        Err(why) => assert!(why.len() < 200, "a long refusal: {why}"),
    }
    assert_eq!(
        format::decode(key, &format::encode(key, stored)),
        Ok(stored),
        "an encoded position does not decode"
    );
    format::describe(key);
}
