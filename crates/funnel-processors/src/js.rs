//! `custom.javascript`: runs a JavaScript function on every record, as Conduit's
//! processor of the same name does (Conduit uses goja; Funnel uses QuickJS through
//! rquickjs, which speaks ES2023, a superset of what goja accepts).
//!
//! # Settings
//!
//! | setting | default | |
//! |---|---|---|
//! | `script` | — | the JavaScript source, inline |
//! | `script.path` | — | a file holding the JavaScript source, read when the processor opens |
//! | `sdk.schema.*` | `true` | accepted for Conduit compatibility, no effect |
//!
//! Exactly one of `script` and `script.path` must be given (an empty value counts as
//! not given). The script is compiled and run once in [`Processor::open`]; it must
//! define a global function `process(record)`. A syntax error, an exception while the
//! script runs, or a missing `process` fails `open`.
//!
//! # The record in JavaScript
//!
//! `process` receives an object with Conduit's Go field names:
//!
//! - `Position`: an array of byte values. A string assigned to it is taken as its
//!   UTF-8 bytes.
//! - `Operation`: `"create"`, `"update"`, `"delete"`, `"snapshot"` or `"Operation(n)"`;
//!   the empty string means `Operation(0)`. Any other text nacks the record.
//! - `Metadata`: an object of strings (values are converted with `String(v)`).
//! - `Key`, `Payload.Before`, `Payload.After`: raw data is an array of byte values,
//!   structured data is an object, no data is `null`. On the way back an array of
//!   byte values or a `Uint8Array` is raw data, a string is raw data holding its
//!   UTF-8 bytes (Conduit would drop it), an object is structured data and `null` or
//!   `undefined` is no data.
//!
//! The record, its `Payload`, its `Metadata` and structured data are native objects
//! over the Rust record ([`view`]): a field or key becomes a JavaScript value when the
//! script first reads it, and only what the script read or changed is converted back;
//! the rest is taken from the record as it came. They list, test (`in`), delete and
//! spread their keys as plain objects do; `Object.defineProperty`, `Object.freeze` and
//! `Object.seal` on them throw a `TypeError`.
//!
//! Inside structured data, numbers come back as integers when they are integral and
//! within ±2^53 (JavaScript has one number type; QuickJS stores integers beyond 32 bits
//! as doubles), else as floats. Bytes inside structured data are a `Uint8Array`, and
//! a `Uint8Array` becomes bytes again. A time is its RFC 3339 text (and stays a
//! string).
//!
//! # Results
//!
//! - an object: the processed record (the one passed in, changed, or a new `Record()`);
//! - `null` or `undefined`: the record is filtered out (acked, not passed on);
//! - an exception, or any other value: the record is nacked, with an error naming the
//!   processor and the JavaScript error.
//!
//! # Helpers
//!
//! `Record()` makes an empty record (metadata `{}`, no key or payload),
//! `RawData(text)` makes raw data from a string's UTF-8 bytes, `StructuredData()` makes
//! an empty object, and `logger` is a zerolog-style logger
//! (`logger.Info().Str("k", v).Msg("text")`) whose lines go to Funnel's log at the
//! same level, tagged with the processor ID. All may be called with or without `new`.
//!
//! # State and threads
//!
//! Each processor instance (each of a processor's `workers`) has its own JavaScript
//! runtime, created on open: globals a script sets persist from one record to the next
//! within an instance, and instances share nothing. A batch runs on the calling thread;
//! on a multi-threaded Tokio runtime a batch of several records runs in
//! `block_in_place`, so the worker's other tasks move elsewhere meanwhile. A script is
//! not time-limited by itself: a script that never returns stalls its pipeline unless
//! the processor has a `timeout` in the pipeline file, which the engine enforces.

mod view;

use std::fmt::Write as _;
use std::path::PathBuf;
use std::rc::Rc;

use async_trait::async_trait;
use bytes::Bytes;
use funnel_core::{Component, ConnectorError, ProcessedRecord, Processor, RecordError};
use funnel_record::{Data, Metadata, Operation, Payload, Position, Record, StructuredData, Value};
use rquickjs::function::Opt;
use rquickjs::{
    Array, Atom, Class, Coerced, Context, Ctx, Exception, Function, Object, Runtime, TypedArray,
};
use view::{Part, Slot};

use crate::settings::{parse_checked, processor};
use crate::{Built, Settings};

/// `custom.javascript` in the registry table.
pub(crate) const COMPONENT: Component = processor::<JavaScriptSettings>(
    "custom.javascript",
    "Run a JavaScript function on every record (Conduit's JS API).",
    build,
);

funnel_core::settings! {
    /// The settings of `custom.javascript` (the SDK schema ones come on top).
    pub(crate) struct JavaScriptSettings {
        /// JavaScript code defining a function `process(record)` that returns the record
        /// (changed or new) or null to filter it out. Exactly one of `script` and
        /// `script.path` is required.
        pub(crate) script: Option<String> = "script",
        /// Path of a .js file holding the code, read when the processor opens. Exactly
        /// one of `script` and `script.path` is required.
        pub(crate) path: Option<PathBuf> = "script.path",
    }
}

/// The name of the function a script must define.
const ENTRYPOINT: &str = "process";

/// The global (hidden: not enumerable, not writable) holding the JavaScript functions
/// that pass records to and from scripts; [`HELPERS`] defines it.
const INTERNALS: &str = "__funnel_javascript_internals";

/// Deepest nesting of structured data converted back from JavaScript (cycles end here).
const MAX_DEPTH: usize = 128;

/// The largest integer a double holds exactly (2^53).
const MAX_SAFE_INTEGER: f64 = 9_007_199_254_740_992.0;

/// Where the script comes from.
#[derive(Debug, Clone)]
enum Source {
    Inline(String),
    Path(PathBuf),
}

/// Builds `custom.javascript` processor `id` from its settings. No I/O: a script file
/// is read on open.
///
/// # Errors
///
/// Neither or both of `script` and `script.path`; unknown settings.
pub(crate) fn build(id: &str, settings: &Settings) -> Built {
    let source = parse_checked(settings, |own: JavaScriptSettings, reader| {
        match (own.script, own.path) {
            (Some(_), Some(_)) => {
                reader.error(
                    "script.path",
                    "only one of: [script, script.path] should be provided",
                );
                None
            }
            (Some(script), None) => Some(Source::Inline(script)),
            (None, Some(path)) => Some(Source::Path(path)),
            (None, None) => {
                reader.error(
                    "script",
                    "one of: [script, script.path] needs to be provided",
                );
                None
            }
        }
    })?;
    Ok(Box::new(JavaScript {
        id: id.to_owned(),
        source,
        engine: None,
    }))
}

/// The `custom.javascript` processor: one QuickJS runtime per instance.
pub(crate) struct JavaScript {
    id: String,
    source: Source,
    engine: Option<Engine>,
}

/// A runtime with the script loaded.
///
/// `Runtime` and `Context` are `Send` with rquickjs's `parallel` feature (every use
/// locks the runtime), which the `Processor` trait needs; nothing else (no `Persistent`
/// handle, which is not `Send`) is kept between calls: the entrypoint is looked up per
/// batch.
struct Engine {
    context: Context,
    _runtime: Runtime,
}

impl JavaScript {
    fn open_error(&self, message: impl std::fmt::Display) -> ConnectorError {
        ConnectorError::fatal(format!(
            "processor {:?} (custom.javascript): {message}",
            self.id
        ))
    }

    fn load(&self) -> Result<Engine, ConnectorError> {
        let (code, filename) = match &self.source {
            Source::Inline(code) => (code.clone(), "script".to_owned()),
            Source::Path(path) => match std::fs::read_to_string(path) {
                Ok(code) => (code, path.display().to_string()),
                Err(err) => {
                    return Err(self.open_error(format_args!(
                        "error reading script from path {}: {err}",
                        path.display()
                    )));
                }
            },
        };
        let runtime = Runtime::new()
            .map_err(|e| self.open_error(format_args!("failed initializing JS runtime: {e}")))?;
        let context = Context::full(&runtime)
            .map_err(|e| self.open_error(format_args!("failed initializing JS runtime: {e}")))?;
        context.with(|ctx| -> Result<(), ConnectorError> {
            install_helpers(&ctx, &self.id).map_err(|e| {
                let e = caught(&ctx, e);
                self.open_error(format_args!("failed initializing JS runtime: {e}"))
            })?;
            let mut options = rquickjs::context::EvalOptions::default();
            options.global = true;
            options.strict = false;
            options.filename = Some(filename);
            if let Err(e) = ctx.eval_with_options::<(), _>(code, options) {
                let error = caught(&ctx, e);
                let stage = if error.starts_with("SyntaxError") {
                    "failed to compile script"
                } else {
                    "failed to run program"
                };
                return Err(self.open_error(format_args!(
                    "failed initializing JS function: {stage}: {error}"
                )));
            }
            let entry: rquickjs::Value = ctx.globals().get(ENTRYPOINT).map_err(|e| {
                self.open_error(format_args!("failed initializing JS function: {e}"))
            })?;
            if !entry.is_function() {
                return Err(self.open_error(format_args!(
                    "failed initializing JS function: failed to get entrypoint function \
                     {ENTRYPOINT:?}"
                )));
            }
            Ok(())
        })?;
        Ok(Engine {
            context,
            _runtime: runtime,
        })
    }

    /// Runs the script on every record of the batch, on the current thread.
    fn run(&self, records: &[Record]) -> Vec<ProcessedRecord> {
        let Some(engine) = &self.engine else {
            let error = RecordError::msg(format!(
                "processor {:?} (custom.javascript): not open",
                self.id
            ));
            return records
                .iter()
                .map(|_| ProcessedRecord::Error(error.clone()))
                .collect();
        };
        engine.context.with(|ctx| {
            let setup = Names::new(&ctx).and_then(|names| {
                let function: Function = ctx.globals().get(ENTRYPOINT)?;
                let shared = ctx
                    .userdata::<view::Registry>()
                    .map(|registry| registry.0.clone())
                    .ok_or_else(|| rquickjs::Error::new_from_js("undefined", "the registry"))?;
                Ok((names, function, shared))
            });
            let (names, function, shared) = match setup {
                Ok(found) => found,
                Err(e) => {
                    let error = self.record_error(format_args!(
                        "entrypoint function {ENTRYPOINT:?} unavailable: {}",
                        caught(&ctx, e)
                    ));
                    return records
                        .iter()
                        .map(|_| ProcessedRecord::Error(error.clone()))
                        .collect();
                }
            };
            let batch = Rc::new(view::Batch {
                records: records.into(),
                shared: shared.clone(),
            });
            let results = (0..records.len())
                .map(|i| self.process_one(&ctx, &names, &function, &batch, i))
                .collect();
            drop(batch);
            // Slots of the record parts freed in this batch are emptied.
            if let Err(e) = view::sweep(&ctx, &shared) {
                tracing::warn!(
                    processor = self.id,
                    plugin = "custom.javascript",
                    "could not free the batch's JavaScript objects: {}",
                    caught(&ctx, e)
                );
            }
            results
        })
    }

    fn process_one<'js>(
        &self,
        ctx: &Ctx<'js>,
        names: &Names<'js>,
        function: &Function<'js>,
        batch: &Rc<view::Batch>,
        index: usize,
    ) -> ProcessedRecord {
        let called = view::wrap(
            ctx,
            names.prototype.clone(),
            batch.clone(),
            index,
            Part::Record,
        )
        .and_then(|record| function.call::<_, rquickjs::Value>((record,)));
        let output = match called {
            Ok(output) => output,
            Err(e) => {
                return ProcessedRecord::Error(self.record_error(format_args!(
                    "error executing JS function: {}",
                    caught(ctx, e)
                )));
            }
        };
        if output.is_null() || output.is_undefined() {
            return ProcessedRecord::Filter;
        }
        match record_from_js(ctx, names, &output) {
            Ok(record) => ProcessedRecord::Single(record),
            Err(message) => ProcessedRecord::Error(self.record_error(message)),
        }
    }

    fn record_error(&self, message: impl std::fmt::Display) -> RecordError {
        RecordError::msg(format!(
            "processor {:?} (custom.javascript): {message}",
            self.id
        ))
    }
}

#[async_trait]
impl Processor for JavaScript {
    async fn open(&mut self) -> Result<(), ConnectorError> {
        let engine = self.load()?;
        self.engine = Some(engine);
        Ok(())
    }

    async fn process(&mut self, records: &[Record]) -> Vec<ProcessedRecord> {
        crate::builtin::cpu_heavy(records.len(), || self.run(records))
    }

    async fn teardown(&mut self) -> Result<(), ConnectorError> {
        self.engine = None;
        Ok(())
    }
}

/// The property names read from returned records, and the helper reading raw data,
/// looked up once per batch.
struct Names<'js> {
    position: Atom<'js>,
    operation: Atom<'js>,
    metadata: Atom<'js>,
    key: Atom<'js>,
    payload: Atom<'js>,
    before: Atom<'js>,
    after: Atom<'js>,
    /// `fromBytes(array)`: the bytes of an array as a string of byte values, or the
    /// index of its first element that is not a byte value.
    from_bytes: Function<'js>,
    /// The store of the values record parts hold ([`view::store`]).
    store: Object<'js>,
    /// The prototype of record parts.
    prototype: Object<'js>,
}

impl<'js> Names<'js> {
    fn new(ctx: &Ctx<'js>) -> rquickjs::Result<Self> {
        let atom = |name: &str| Atom::from_str(ctx.clone(), name);
        let internals: Object = ctx.globals().get(INTERNALS)?;
        let store = view::store(ctx)?;
        Ok(Self {
            from_bytes: internals.get("fromBytes")?,
            prototype: view::prototype_of_views(&store, None)?,
            store,
            position: atom("Position")?,
            operation: atom("Operation")?,
            metadata: atom("Metadata")?,
            key: atom("Key")?,
            payload: atom("Payload")?,
            before: atom("Before")?,
            after: atom("After")?,
        })
    }
}

/// The JavaScript source of the helpers; `bytes` and `log` are native functions.
const HELPERS: &str = r#"(function (bytes, log) {
  "use strict";
  var g = globalThis;
  function define(name, value) {
    Object.defineProperty(g, name, { value: value, writable: true, configurable: true });
  }

  // Raw data crosses to and from Rust as a string of char codes 0-255, one per byte
  // (one call instead of one per byte); scripts see arrays of byte values.
  var fromCharCode = String.fromCharCode;
  function toArray(s) {
    var n = s.length, a = [];
    for (var i = 0; i < n; i++) { a[i] = s.charCodeAt(i); }
    return a;
  }
  // The bytes of an array of byte values as such a string, or the index of the first
  // element that is not a byte value.
  function fromBytes(a) {
    var n = a.length, i, b;
    for (i = 0; i < n; i++) {
      b = a[i];
      if (typeof b !== "number" || !(b >= 0 && b <= 255) || b % 1 !== 0) { return i; }
    }
    if (n <= 8192) { return fromCharCode.apply(null, a); }
    var text = "";
    for (i = 0; i < n; i += 8192) {
      text += fromCharCode.apply(null, a.slice(i, Math.min(i + 8192, n)));
    }
    return text;
  }
  Object.defineProperty(g, "__funnel_javascript_internals", {
    value: Object.freeze({ fromBytes: fromBytes, toArray: toArray })
  });
  define("Record", function Record() {
    return { Position: null, Operation: "", Metadata: {}, Key: null,
             Payload: { Before: null, After: null } };
  });
  define("RawData", function RawData(text) {
    return toArray(bytes(text === undefined ? "" : String(text)));
  });
  define("StructuredData", function StructuredData() { return {}; });

  function Event(level) { this.level = level; this.fields = null; }
  function field(key, value) {
    if (this.fields === null) { this.fields = {}; }
    this.fields[String(key)] = value;
    return this;
  }
  ["Str", "Strs", "Stringer", "Bytes", "Hex", "RawJSON", "Bool", "Bools",
   "Int", "Ints", "Int8", "Int16", "Int32", "Int64", "Uint", "Uint8", "Uint16",
   "Uint32", "Uint64", "Float32", "Float64", "Floats64", "Time", "Dur", "Any",
   "Interface", "Dict", "Array", "Object", "IPAddr", "MACAddr"].forEach(function (name) {
    Event.prototype[name] = field;
  });
  Event.prototype.Err = function (err) {
    return err === null || err === undefined ? this : field.call(this, "error", String(err));
  };
  Event.prototype.AnErr = function (key, err) {
    return err === null || err === undefined ? this : field.call(this, key, String(err));
  };
  Event.prototype.Caller = function () { return this; };
  Event.prototype.Stack = function () { return this; };
  Event.prototype.Timestamp = function () { return this; };
  Event.prototype.Enabled = function () { return true; };
  Event.prototype.Discard = function () { return this; };
  Event.prototype.Msg = function (message) {
    log(this.level, message === undefined ? "" : String(message),
        this.fields === null ? "" : JSON.stringify(this.fields));
  };
  Event.prototype.Send = function () { this.Msg(""); };
  Event.prototype.Msgf = function (format) {
    var args = arguments, next = 1;
    this.Msg(String(format).replace(/%[-+# 0-9.]*[a-zA-Z%]/g, function (verb) {
      if (verb === "%%") { return "%"; }
      return next < args.length ? String(args[next++]) : verb;
    }));
  };
  var logger = {};
  [["Trace", 0], ["Debug", 1], ["Info", 2], ["Warn", 3], ["Error", 4], ["Fatal", 4],
   ["Panic", 4], ["Log", 2], ["Print", 1]].forEach(function (level) {
    logger[level[0]] = function () { return new Event(level[1]); };
  });
  logger.WithLevel = function () { return new Event(2); };
  define("logger", logger);
})"#;

/// Defines `Record`, `RawData`, `StructuredData` and `logger` in the global scope.
fn install_helpers<'js>(ctx: &Ctx<'js>, id: &str) -> rquickjs::Result<()> {
    let setup: Function = ctx.eval(HELPERS)?;
    let bytes = Function::new(ctx.clone(), |text: Coerced<String>| {
        latin1(text.0.as_bytes()).into_owned()
    })?;
    let id = id.to_owned();
    let log = Function::new(
        ctx.clone(),
        move |level: i32, message: Coerced<String>, fields: Opt<Coerced<String>>| {
            log_line(
                &id,
                level,
                &message.0,
                fields.0.as_ref().map_or("", |f| &f.0),
            );
        },
    )?;
    setup.call::<_, ()>((bytes, log))?;
    let internals: Object = ctx.globals().get(INTERNALS)?;
    let to_array: Function = internals.get("toArray")?;
    view::store(ctx)?.set(view::TO_ARRAY, to_array)?;
    view::install(ctx)?;
    let registry = view::Registry(Rc::default());
    if ctx.store_userdata(registry).is_err() {
        return Err(rquickjs::Error::new_from_js("undefined", "the registry"));
    }
    Ok(())
}

/// One `logger` line from a script.
fn log_line(id: &str, level: i32, message: &str, fields: &str) {
    let plugin = "custom.javascript";
    match level {
        0 => tracing::trace!(processor = id, plugin, fields, "{message}"),
        1 => tracing::debug!(processor = id, plugin, fields, "{message}"),
        2 => tracing::info!(processor = id, plugin, fields, "{message}"),
        3 => tracing::warn!(processor = id, plugin, fields, "{message}"),
        _ => tracing::error!(processor = id, plugin, fields, "{message}"),
    }
}

/// The text of the exception behind `error` (or the error itself when it is not one).
fn caught(ctx: &Ctx<'_>, error: rquickjs::Error) -> String {
    if !error.is_exception() {
        return error.to_string();
    }
    let value = ctx.catch();
    if let Some(exception) = value
        .as_object()
        .and_then(|o| Exception::from_object(o.clone()))
    {
        let name: String = exception
            .get::<_, Coerced<String>>("name")
            .map_or_else(|_| "Error".to_owned(), |n| n.0);
        let mut text = name;
        if let Some(message) = exception.message().filter(|m| !m.is_empty()) {
            let _ = write!(text, ": {message}");
        }
        let stack = exception.stack().unwrap_or_default();
        let frames: Vec<&str> = stack
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(|l| l.strip_prefix("at ").unwrap_or(l))
            .collect();
        if !frames.is_empty() {
            let _ = write!(text, " (at {})", frames.join(" < "));
        }
        return text;
    }
    match value.get::<Coerced<String>>() {
        Ok(text) => format!("uncaught {}: {}", value.type_name(), text.0),
        Err(_) => format!("uncaught {}", value.type_name()),
    }
}

/// Bytes as text whose chars are the byte values (U+0000 to U+00FF), which JavaScript
/// gets as a string of char codes 0 to 255 in one call.
fn latin1(bytes: &[u8]) -> std::borrow::Cow<'_, str> {
    match std::str::from_utf8(bytes) {
        Ok(text) if text.is_ascii() => std::borrow::Cow::Borrowed(text),
        _ => std::borrow::Cow::Owned(bytes.iter().map(|&b| char::from(b)).collect()),
    }
}

/// The bytes of a string of char codes 0 to 255 (from `String.fromCharCode` on byte
/// values).
fn from_latin1(text: String) -> Option<Bytes> {
    if text.is_ascii() {
        return Some(Bytes::from(text));
    }
    text.chars()
        .map(|c| u8::try_from(u32::from(c)).ok())
        .collect::<Option<Vec<u8>>>()
        .map(Bytes::from)
}

fn map_to_js<'js>(ctx: &Ctx<'js>, map: &StructuredData) -> rquickjs::Result<Object<'js>> {
    let object = Object::new(ctx.clone())?;
    for (key, value) in map {
        object.set(key.as_str(), value_to_js(ctx, value)?)?;
    }
    Ok(object)
}

fn value_to_js<'js>(ctx: &Ctx<'js>, value: &Value) -> rquickjs::Result<rquickjs::Value<'js>> {
    let ctx = ctx.clone();
    Ok(match value {
        Value::Null => rquickjs::Value::new_null(ctx),
        Value::Bool(b) => rquickjs::Value::new_bool(ctx, *b),
        Value::Int(i) => match i32::try_from(*i) {
            Ok(small) => rquickjs::Value::new_int(ctx, small),
            Err(_) => rquickjs::Value::new_float(ctx, *i as f64),
        },
        Value::Uint(u) => rquickjs::Value::new_float(ctx, *u as f64),
        Value::Float(f) => rquickjs::Value::new_float(ctx, *f),
        Value::String(s) => rquickjs::String::from_str(ctx, s)?.into_value(),
        Value::Bytes(b) => TypedArray::<u8>::new_copy(ctx, b.as_ref())?.into_value(),
        // JavaScript's Date has milliseconds only: a time is its RFC 3339 text.
        Value::Time(t) => rquickjs::String::from_str(ctx, &t.to_rfc3339())?.into_value(),
        Value::Array(items) => {
            let array = Array::new(ctx.clone())?;
            for (i, item) in items.iter().enumerate() {
                array.set(i, value_to_js(&ctx, item)?)?;
            }
            array.into_value()
        }
        Value::Map(map) => map_to_js(&ctx, map)?.into_value(),
    })
}

/// A view a script returned, read key by key: no borrow of it is held while a value is
/// converted (which may run script code).
struct Seen<'js> {
    ctx: Ctx<'js>,
    store: Object<'js>,
    class: Class<'js, view::View>,
    batch: Rc<view::Batch>,
    index: usize,
    part: Part,
}

impl<'js> Seen<'js> {
    /// `value` when it is a view of one of `parts`.
    fn of(
        ctx: &Ctx<'js>,
        names: &Names<'js>,
        value: &rquickjs::Value<'js>,
        parts: &[Part],
    ) -> Option<Self> {
        let class = view::unwrap(value)?;
        let (batch, index, part) = {
            let view = class.try_borrow().ok()?;
            let (batch, index) = view.batch();
            (batch, index, view.part())
        };
        if !parts.contains(&part) {
            return None;
        }
        Some(Self {
            ctx: ctx.clone(),
            store: names.store.clone(),
            class,
            batch,
            index,
            part,
        })
    }

    fn input(&self) -> &Record {
        &self.batch.records[self.index]
    }

    fn view(&self) -> Result<rquickjs::class::Borrow<'_, 'js, view::View>, String> {
        self.class
            .try_borrow()
            .map_err(|e| format!("reading the record back: {e}"))
    }

    /// What the script left in key `name`: `None` when it is as it came, `undefined`
    /// when deleted.
    fn field(&self, name: &str, label: &str) -> Result<Option<rquickjs::Value<'js>>, String> {
        let slot = {
            let view = self.view()?;
            match view.changes().slot(name) {
                Some(slot) => slot.clone(),
                None if view.changes().deleted.iter().any(|k| k == name) => {
                    return Ok(Some(rquickjs::Value::new_undefined(self.ctx.clone())));
                }
                None => return Ok(None),
            }
        };
        match slot {
            Slot::Js(id) => self.store.get(id),
            Slot::Rust(value) => value_to_js(&self.ctx, &value),
        }
        .map(Some)
        .map_err(|e| format!("reading {label}: {e}"))
    }

    /// Whether the script changed any key of the view.
    fn changed(&self) -> Result<bool, String> {
        Ok(!self.view()?.changes().is_empty())
    }

    /// Applies the changes of a map: `apply` gets each deleted key (with `None`) and
    /// each key set to a Rust value (under a borrow of the view); the keys set to
    /// JavaScript values are returned with their slots, to be converted afterwards.
    fn apply(
        &self,
        mut apply: impl FnMut(&str, Option<&Value>) -> Result<(), String>,
    ) -> Result<Vec<(String, u32)>, String> {
        let view = self.view()?;
        let changes = view.changes();
        for key in &changes.deleted {
            apply(key, None)?;
        }
        let mut js = Vec::new();
        for (key, slot, _) in &changes.set {
            match slot {
                Slot::Rust(value) => apply(key, Some(value))?,
                Slot::Js(id) => js.push((key.clone(), *id)),
            }
        }
        Ok(js)
    }

    /// The value in slot `id` (of key `name`).
    fn stored(&self, name: &str, id: u32) -> Result<rquickjs::Value<'js>, String> {
        self.store.get(id).map_err(|e| format!("{name}: {e}"))
    }
}

/// The record a script returned.
fn record_from_js<'js>(
    ctx: &Ctx<'js>,
    names: &Names<'js>,
    value: &rquickjs::Value<'js>,
) -> Result<Record, String> {
    let Some(object) = value.as_object() else {
        return Err(format!(
            "js function expected to return a record object or null, but returned: {}",
            describe(value)
        ));
    };
    if let Some(view) = Seen::of(ctx, names, value, &[Part::Record]) {
        let input = view.input();
        return Ok(Record {
            position: match view.field("Position", "Position")? {
                None => input.position.clone(),
                Some(value) => position_from_js(names, &value)?,
            },
            operation: match view.field("Operation", "Operation")? {
                None => Operation::from_code(input.operation.code()),
                Some(value) => operation_from_js(&value)?,
            },
            metadata: match view.field("Metadata", "Metadata")? {
                None => input.metadata.clone(),
                Some(value) => metadata_from_js(ctx, names, &value)?,
            },
            key: match view.field("Key", "Key")? {
                None => input.key.clone(),
                Some(value) => data_from_js(ctx, names, &value, "Key")?,
            },
            payload: match view.field("Payload", "Payload")? {
                None => input.payload.clone(),
                Some(value) => payload_from_js(ctx, names, &value)?,
            },
        });
    }
    Ok(Record {
        position: position_from_js(names, &get(object, &names.position, "Position")?)?,
        operation: operation_from_js(&get(object, &names.operation, "Operation")?)?,
        metadata: metadata_from_js(ctx, names, &get(object, &names.metadata, "Metadata")?)?,
        key: data_from_js(ctx, names, &get(object, &names.key, "Key")?, "Key")?,
        payload: payload_from_js(ctx, names, &get(object, &names.payload, "Payload")?)?,
    })
}

fn position_from_js<'js>(
    names: &Names<'js>,
    position: &rquickjs::Value<'js>,
) -> Result<Position, String> {
    Ok(match bytes_from_js(names, position) {
        Some(bytes) => Position(bytes.map_err(|e| format!("Position{e}"))?),
        None if position.is_null() || position.is_undefined() => Position::default(),
        None => {
            return Err(format!(
                "Position must be a string or an array of bytes, found {}",
                describe(position)
            ));
        }
    })
}

fn operation_from_js(operation: &rquickjs::Value<'_>) -> Result<Operation, String> {
    Ok(if operation.is_null() || operation.is_undefined() {
        Operation::Other(0)
    } else {
        let text = operation
            .get::<Coerced<String>>()
            .map_err(|e| format!("Operation: {e}"))?
            .0;
        parse_operation(&text).ok_or_else(|| {
            format!(
                "could not unmarshal operation: {text:?} is not an operation (create, update, \
                 delete, snapshot or Operation(n))"
            )
        })?
    })
}

fn metadata_from_js<'js>(
    ctx: &Ctx<'js>,
    names: &Names<'js>,
    metadata: &rquickjs::Value<'js>,
) -> Result<Metadata, String> {
    if let Some(view) = Seen::of(ctx, names, metadata, &[Part::Metadata]) {
        let input = &view.input().metadata;
        if !view.changed()? {
            return Ok(input.clone());
        }
        let mut out = if input.is_nil() {
            Metadata::new()
        } else {
            input.clone()
        };
        let js = view.apply(|key, value| {
            let text = match value {
                None => {
                    out.remove(key);
                    return Ok(());
                }
                Some(Value::String(text)) => text.to_string(),
                Some(other) => {
                    value_to_js(ctx, other)
                        .and_then(|value| value.get::<Coerced<String>>())
                        .map_err(|e| format!("Metadata: {e}"))?
                        .0
                }
            };
            out.insert(key.to_owned(), text);
            Ok(())
        })?;
        for (key, id) in js {
            let value = view
                .stored(&key, id)?
                .get::<Coerced<String>>()
                .map_err(|e| format!("Metadata: {e}"))?
                .0;
            out.insert(key, value);
        }
        return Ok(out);
    }
    Ok(match metadata.as_object() {
        None if metadata.is_null() || metadata.is_undefined() => Metadata::none(),
        None => {
            return Err(format!(
                "Metadata must be an object of strings, found {}",
                describe(metadata)
            ));
        }
        Some(map) => {
            let mut out = Metadata::new();
            for entry in map.props::<String, Coerced<String>>() {
                let (key, value) = entry.map_err(|e| format!("Metadata: {e}"))?;
                out.insert(key, value.0);
            }
            out
        }
    })
}

/// `Payload` a script left.
fn payload_from_js<'js>(
    ctx: &Ctx<'js>,
    names: &Names<'js>,
    payload: &rquickjs::Value<'js>,
) -> Result<Payload, String> {
    if let Some(view) = Seen::of(ctx, names, payload, &[Part::Payload]) {
        let input = &view.input().payload;
        return Ok(Payload {
            before: match view.field("Before", "Payload.Before")? {
                None => input.before.clone(),
                Some(value) => data_from_js(ctx, names, &value, "Payload.Before")?,
            },
            after: match view.field("After", "Payload.After")? {
                None => input.after.clone(),
                Some(value) => data_from_js(ctx, names, &value, "Payload.After")?,
            },
        });
    }
    Ok(match payload.as_object() {
        None if payload.is_null() || payload.is_undefined() => Payload::default(),
        None => {
            return Err(format!(
                "Payload must be an object with Before and After, found {}",
                describe(payload)
            ));
        }
        Some(object) => Payload {
            before: data_from_js(
                ctx,
                names,
                &get(object, &names.before, "Payload.Before")?,
                "Payload.Before",
            )?,
            after: data_from_js(
                ctx,
                names,
                &get(object, &names.after, "Payload.After")?,
                "Payload.After",
            )?,
        },
    })
}

fn get<'js>(
    object: &Object<'js>,
    name: &Atom<'js>,
    label: &str,
) -> Result<rquickjs::Value<'js>, String> {
    object
        .get(name.clone())
        .map_err(|e| format!("reading {label}: {e}"))
}

/// Parses an operation as Conduit's `Operation.UnmarshalText` does; the empty string is
/// `Operation(0)`.
fn parse_operation(text: &str) -> Option<Operation> {
    match text {
        "" => Some(Operation::Other(0)),
        "create" => Some(Operation::Create),
        "update" => Some(Operation::Update),
        "delete" => Some(Operation::Delete),
        "snapshot" => Some(Operation::Snapshot),
        other => {
            let number = other
                .strip_prefix("Operation(")
                .and_then(|n| n.strip_suffix(')'))
                .unwrap_or(other);
            number.parse::<i64>().ok().map(Operation::from_code)
        }
    }
}

/// A key or payload side a script returned.
fn data_from_js<'js>(
    ctx: &Ctx<'js>,
    names: &Names<'js>,
    value: &rquickjs::Value<'js>,
    label: &str,
) -> Result<Option<Data>, String> {
    if let Some(view) = Seen::of(ctx, names, value, &[Part::Key, Part::Before, Part::After]) {
        let input = view::data_of(view.input(), view.part);
        if !view.changed()? {
            return Ok(input.cloned());
        }
        let mut map = match input {
            Some(Data::Structured(map)) => map.clone(),
            Some(Data::Raw(_)) | None => StructuredData::new(),
        };
        let js = view.apply(|key, value| {
            match value {
                None => map.remove(key),
                Some(value) => map.insert(key, value.clone()),
            };
            Ok(())
        })?;
        for (key, id) in js {
            let value = value_from_js(&view.stored(&key, id)?, 1)
                .map_err(|e| e.at(key.clone()).render(label))?;
            map.insert(key.as_str(), value);
        }
        return Ok(Some(Data::Structured(map)));
    }
    if value.is_null() || value.is_undefined() {
        return Ok(None);
    }
    if let Some(bytes) = bytes_from_js(names, value) {
        return bytes
            .map(|bytes| Some(Data::Raw(bytes)))
            .map_err(|e| format!("{label}{e}"));
    }
    match value.as_object() {
        Some(object) if !object.is_function() => Ok(Some(Data::Structured(
            map_from_js(object, 0).map_err(|e| e.render(label))?,
        ))),
        _ => Err(format!(
            "{label} must be raw data (RawData(), an array of bytes or a string), structured \
             data (an object) or null, found {}",
            describe(value)
        )),
    }
}

/// Bytes from a string (its UTF-8), an array of byte values or a `Uint8Array`; `None`
/// for anything else, an error (`[i]: ...`, to follow the
/// field's name) for an array holding something other than a byte value.
fn bytes_from_js<'js>(
    names: &Names<'js>,
    value: &rquickjs::Value<'js>,
) -> Option<Result<Bytes, String>> {
    if let Some(text) = value.as_string() {
        return Some(
            text.to_string()
                .map(Bytes::from)
                .map_err(|e| format!(": {e}")),
        );
    }
    let object = value.as_object()?;
    if object.as_array().is_some() {
        let bytes: rquickjs::Value = match names.from_bytes.call((object.clone(),)) {
            Ok(bytes) => bytes,
            Err(e) => return Some(Err(format!(": {}", caught(object.ctx(), e)))),
        };
        if let Some(i) = bytes.as_int() {
            return Some(Err(format!(
                "[{i}]: raw data must be an array of byte values (integers 0 to 255)"
            )));
        }
        return Some(
            bytes
                .as_string()
                .and_then(|text| text.to_string().ok())
                .and_then(from_latin1)
                .ok_or_else(|| ": cannot read raw data".to_owned()),
        );
    }
    typed_array_bytes(object).map(|bytes| Ok(Bytes::from(bytes)))
}

/// The bytes of a `Uint8Array`, read element by element (the zero-copy views rquickjs
/// offers are `unsafe`).
fn typed_array_bytes(object: &Object<'_>) -> Option<Vec<u8>> {
    let typed = object.as_typed_array::<u8>()?;
    (0..typed.len())
        .map(|i| {
            u32::try_from(i)
                .ok()
                .and_then(|i| typed.get::<u32, u8>(i).ok())
        })
        .collect()
}

fn map_from_js(object: &Object<'_>, depth: usize) -> Result<StructuredData, ConvertError> {
    let mut map = StructuredData::new();
    for entry in object.props::<String, rquickjs::Value>() {
        let (key, value) = entry.map_err(|e| ConvertError::new(e.to_string()))?;
        let value = value_from_js(&value, depth + 1).map_err(|e| e.at(key.clone()))?;
        map.insert(key, value);
    }
    Ok(map)
}

fn value_from_js(value: &rquickjs::Value<'_>, depth: usize) -> Result<Value, ConvertError> {
    if depth > MAX_DEPTH {
        return Err(ConvertError::new(format!(
            "structured data nested deeper than {MAX_DEPTH} levels (a cycle?)"
        )));
    }
    if let Some(i) = value.as_int() {
        return Ok(Value::Int(i64::from(i)));
    }
    if let Some(f) = value.as_float() {
        return Ok(number(f));
    }
    if let Some(text) = value.as_string() {
        return text
            .to_string()
            .map(|s| Value::String(s.into()))
            .map_err(|e| ConvertError::new(e.to_string()));
    }
    if let Some(b) = value.as_bool() {
        return Ok(Value::Bool(b));
    }
    if value.is_null() || value.is_undefined() {
        return Ok(Value::Null);
    }
    if let Some(big) = value.as_big_int() {
        return big
            .clone()
            .to_i64()
            .map(Value::Int)
            .map_err(|_| ConvertError::new("a BigInt beyond 64 bits cannot be stored"));
    }
    if let Some(object) = value.as_object() {
        if let Some(array) = object.as_array() {
            let mut items = Vec::with_capacity(array.len());
            for (i, item) in array.iter::<rquickjs::Value>().enumerate() {
                let item = item
                    .map_err(|e| ConvertError::new(e.to_string()))
                    .and_then(|item| value_from_js(&item, depth + 1))
                    .map_err(|e| e.at(format!("[{i}]")))?;
                items.push(item);
            }
            return Ok(Value::Array(items));
        }
        if let Some(bytes) = typed_array_bytes(object) {
            return Ok(Value::Bytes(Bytes::from(bytes)));
        }
        if !object.is_function() {
            return map_from_js(object, depth).map(Value::Map);
        }
    }
    Err(ConvertError::new(format!(
        "cannot store {} in structured data",
        describe(value)
    )))
}

/// A value a script returned that cannot be stored, and where it sits.
struct ConvertError {
    /// Field names and `[i]` indexes, innermost first.
    path: Vec<String>,
    message: String,
}

impl ConvertError {
    fn new(message: impl Into<String>) -> Self {
        Self {
            path: Vec::new(),
            message: message.into(),
        }
    }

    /// The same error, one level further out (inside `segment`).
    fn at(mut self, segment: String) -> Self {
        self.path.push(segment);
        self
    }

    /// The message, with the path from `label` (`Payload.After.user.tags[2]: ...`);
    /// long paths (cycles) are cut.
    fn render(self, label: &str) -> String {
        const SHOWN: usize = 8;
        let mut at = label.to_owned();
        let depth = self.path.len();
        for segment in self.path.iter().rev().take(SHOWN) {
            if !segment.starts_with('[') {
                at.push('.');
            }
            at.push_str(segment);
        }
        if depth > SHOWN {
            at.push_str("...");
        }
        format!("{at}: {}", self.message)
    }
}

/// A JavaScript number as an integer when it is integral and exactly representable,
/// else as a float.
fn number(f: f64) -> Value {
    if f.fract() == 0.0 && f.abs() <= MAX_SAFE_INTEGER && !(f == 0.0 && f.is_sign_negative()) {
        Value::Int(f as i64)
    } else {
        Value::Float(f)
    }
}

/// A short description of a JavaScript value for error messages.
fn describe(value: &rquickjs::Value<'_>) -> String {
    if value.is_function() {
        return "a function".to_owned();
    }
    match value.get::<Coerced<String>>() {
        Ok(text) if !value.is_object() => format!("{} {:?}", value.type_name(), text.0),
        _ => value.type_name().to_owned(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    /// An opened processor running `script` (the engine reached directly, for the
    /// runtime's garbage collector and memory counts).
    fn opened(script: &str) -> JavaScript {
        let mut js = JavaScript {
            id: "js1".to_owned(),
            source: Source::Inline(script.to_owned()),
            engine: None,
        };
        js.engine = Some(js.load().expect("the script loads"));
        js
    }

    fn records(from: i64, count: i64) -> Vec<Record> {
        (from..from + count)
            .map(|id| Record {
                payload: Payload {
                    before: None,
                    after: Some(Data::Structured(
                        [("id", Value::Int(id))].into_iter().collect(),
                    )),
                },
                ..Record::default()
            })
            .collect()
    }

    fn runtime(js: &JavaScript) -> &Runtime {
        &js.engine.as_ref().expect("open")._runtime
    }

    /// Every record came back with `text` set to `t<id>`.
    fn assert_texts(results: &[ProcessedRecord], from: i64) {
        for (id, result) in (from..).zip(results) {
            let ProcessedRecord::Single(out) = result else {
                panic!("{id}: {result:?}");
            };
            let Some(Data::Structured(after)) = &out.payload.after else {
                panic!("{id}: {out:?}");
            };
            assert_eq!(
                after.get("text"),
                Some(&Value::String(format!("t{id}").into())),
                "{id}"
            );
        }
    }

    #[test]
    fn assigned_values_survive_the_garbage_collector_intact() {
        // The objects and strings assigned here are held by nothing but the record's
        // fields: freed once too often, they would be gone (or reused) by the time the
        // collector has run and they are read back.
        let js = opened(
            r#"var kept = [];
            function process(r) {
                var a = r.Payload.After;
                a.text = "t" + a.id;
                a.obj = { id: a.id, list: [a.id, "s" + a.id], name: "n" + a.id };
                r.Metadata.label = "m" + a.id;
                r.Key = { id: "k" + a.id };
                kept.push(r);
                return r;
            }
            function check() {
                var bad = [];
                kept.forEach(function (r) {
                    var a = r.Payload.After, o = a.obj, id = a.id;
                    if (a.text !== "t" + id || o.id !== id || o.list[0] !== id ||
                        o.list[1] !== "s" + id || o.name !== "n" + id ||
                        r.Metadata.label !== "m" + id || r.Key.id !== "k" + id) {
                        bad.push(id);
                    }
                });
                return kept.length + " " + bad.join(",");
            }"#,
        );
        for batch in 0..10 {
            let results = js.run(&records(batch * 100, 100));
            assert_texts(&results, batch * 100);
            runtime(&js).run_gc();
        }
        let checked: String = js.engine.as_ref().unwrap().context.with(|ctx| {
            let check: Function = ctx.globals().get("check").unwrap();
            check.call(()).unwrap()
        });
        assert_eq!(checked, "1000 ");
    }

    #[test]
    fn assigned_values_are_freed_once_they_are_no_longer_held() {
        // A reference counted once too often is never freed: the runtime's counts of
        // objects and strings would grow with every record.
        let js = opened(
            r#"function process(r) {
                var a = r.Payload.After;
                a.text = "t" + a.id;
                a.obj = { id: a.id, name: "n" + a.id };
                a.obj = { again: "o" + a.id };
                r.Metadata.label = "m" + a.id;
                r.Key = { id: "k" + a.id };
                return r;
            }"#,
        );
        let counts = || {
            runtime(&js).run_gc();
            let usage = runtime(&js).memory_usage();
            (usage.obj_count, usage.str_count)
        };
        assert_texts(&js.run(&records(0, 100)), 0);
        let (objects, strings) = counts();
        for batch in 1..11 {
            assert_texts(&js.run(&records(batch * 100, 100)), batch * 100);
        }
        let (objects_after, strings_after) = counts();
        // 1,000 records each assigned four objects and five strings.
        assert!(
            objects_after - objects < 20,
            "objects: {objects} before, {objects_after} after"
        );
        assert!(
            strings_after - strings < 20,
            "strings: {strings} before, {strings_after} after"
        );
    }
}
