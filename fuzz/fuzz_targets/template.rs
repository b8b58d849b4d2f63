//! Go templates: parsing any text, and evaluating what parses on a record. The input is
//! the template, then optionally a NUL byte and the record as OpenCDC JSON.

#![no_main]

use funnel_record::Record;
use funnel_template::{Condition, Template};
use libfuzzer_sys::fuzz_target;

const RECORD: &[u8] = br#"{"position":"MTA=","operation":"update","metadata":{"opencdc.collection":"users","k":"v"},"key":{"id":7},"payload":{"before":{"id":7,"name":"a"},"after":{"id":7,"name":"b","tags":["x","y"],"n":1.5,"nested":{"deep":[1,{"k":null}]}}}}"#;

fuzz_target!(|data: &[u8]| {
    let (text, json) = match data.iter().position(|&b| b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, RECORD),
    };
    let Ok(text) = std::str::from_utf8(text) else {
        return;
    };
    let record = Record::from_json(json)
        .or_else(|_| Record::from_json(RECORD))
        .expect("the built-in record decodes");
    if let Ok(template) = Template::parse(text) {
        let _ = template.render(&record);
    }
    if let Ok(Some(condition)) = Condition::parse(text) {
        let _ = condition.evaluate(&record);
    }
});
