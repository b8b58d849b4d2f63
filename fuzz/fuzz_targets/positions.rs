//! Position values as read back from the store: the postgres source's decoder and the
//! order the exactly-once destination compares positions by.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    funnel_connectors::fuzzing::positions(data);
});
