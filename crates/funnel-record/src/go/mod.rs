//! What Go does that Funnel imitates, in one place.
//!
//! Conduit is written in Go, and what a pipeline sees from it is often Go's standard
//! library at work: how `fmt` prints a float, how `encoding/json` decodes a number, what
//! `time.ParseDuration` accepts. Every crate that must behave the same way uses these
//! functions, so each rule is written (and tested against Go's own results) once:
//!
//! - floats as text: [`FloatV`] (`%v`, `fmt.Sprint`), [`FloatF`] (`strconv`'s `'f'`),
//!   [`JsonFloat`] (`encoding/json`);
//! - values as text: [`sprint`] (`fmt.Sprint`) and [`type_name`] (`%T`);
//! - JSON into values: [`unmarshal_any`] (`json.Unmarshal` into `any`) and
//!   [`value_from_json`];
//! - text into values: [`parse_duration`] (`time.ParseDuration`), [`parse_bool`]
//!   (`strconv.ParseBool`), [`parse_int`] (`strconv.ParseInt(s, 0, 64)`'s syntax);
//! - the calendar of Go's `time` package: [`days_from_civil`], [`civil_from_days`],
//!   [`days_in_month`], [`is_leap_year`], [`day_of_year`], [`weekday`].

mod calendar;
mod duration;
mod float;
mod json;
mod sprint;
mod strconv;

pub use calendar::{
    civil_from_days, day_of_year, days_from_civil, days_in_month, is_leap_year, weekday,
};
pub use duration::{DurationError, parse_duration};
pub use float::{FloatF, FloatV, JsonFloat, write_float_v, write_json_float};
pub use json::{Numbers, unmarshal_any, value_from_json};
pub use sprint::{
    sprint, type_name, write_sprint, write_sprint_bytes, write_sprint_entries, write_sprint_map,
    write_sprint_slice,
};
pub use strconv::{parse_bool, parse_int};
