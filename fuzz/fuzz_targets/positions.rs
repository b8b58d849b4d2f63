//! Position values as read back from the store: the store's own format (a checksum
//! over key and position), the postgres and file sources' position decoders, and the
//! order the exactly-once destination compares positions by. The input is the key, a
//! 0xFF byte (never part of UTF-8), then the stored value; without one, the whole input
//! is both.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (key, value) = match data.iter().position(|&b| b == 0xFF) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, data),
    };
    funnel_store::fuzzing::stored_position(&String::from_utf8_lossy(key), value);
    funnel_connectors::fuzzing::positions(value);
});
