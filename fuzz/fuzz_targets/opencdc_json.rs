//! OpenCDC JSON records: decoding any bytes, and re-encoding what decodes.

#![no_main]

use funnel_record::{Record, Value};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(record) = Record::from_json(data) {
        let encoded = record.to_json();
        let again = Record::from_json(&encoded).expect("an encoded record decodes");
        assert_eq!(again.to_json(), encoded, "encoding is not stable");
    }
    if let Ok(value) = Value::from_json(data) {
        let encoded = value.to_json();
        Value::from_json(&encoded).expect("an encoded value decodes");
    }
});
