//! The pgoutput logical replication messages the postgres source decodes, and the
//! conversion of their column values.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    funnel_connectors::fuzzing::pgoutput(data);
});
