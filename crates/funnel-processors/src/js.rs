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
//! The record, its `Payload`, its `Metadata` and structured data are `Proxy` objects
//! over the Rust record: a field or key becomes a JavaScript value when the script
//! first reads it (through a loader per batch), and only what the script read or
//! changed is converted back; the rest is taken from the record as it came. Listing the
//! keys of a map (or anything else that needs all of them) converts it whole, once.
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

use std::fmt::Write as _;
use std::path::PathBuf;

use async_trait::async_trait;
use bytes::Bytes;
use funnel_core::{Component, ConnectorError, ProcessedRecord, Processor, RecordError};
use funnel_record::{Data, Metadata, Operation, Payload, Position, Record, StructuredData, Value};
use rquickjs::function::Opt;
use rquickjs::{
    Array, Atom, Coerced, Context, Ctx, Exception, Function, Object, Runtime, TypedArray,
};

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
                let loader = loader(&ctx, records)?;
                names.begin.call::<_, ()>((function, loader))?;
                Ok(names)
            });
            let names = match setup {
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
            let results = records
                .iter()
                .enumerate()
                .map(|(i, record)| self.process_one(&ctx, &names, i, record))
                .collect();
            // The batch's loader stays reachable only from records a script kept.
            let _ = names.begin.call::<_, ()>((
                rquickjs::Value::new_null(ctx.clone()),
                rquickjs::Value::new_null(ctx.clone()),
            ));
            results
        })
    }

    fn process_one<'js>(
        &self,
        ctx: &Ctx<'js>,
        names: &Names<'js>,
        index: usize,
        record: &Record,
    ) -> ProcessedRecord {
        let output: rquickjs::Value = match names.run.call((index, kinds(record))) {
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
        let result = if let Some(mask) = output.as_int() {
            // The script returned the record it was given: read back what it changed.
            record_from_js(names, record, None, mask)
        } else if output == names.out_value {
            // It returned a number (which `run` cannot hand back as itself).
            names
                .out
                .get::<_, rquickjs::Value>(OUT_RECORD)
                .map_err(|e| format!("reading the result: {e}"))
                .and_then(|value| record_from_js(names, record, Some(value), 0))
        } else {
            record_from_js(names, record, Some(output), 0)
        };
        match result {
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

/// Where `run` puts the record a script returned (or a number it returned); slots 0-3
/// of `out` hold the targets of the record's lazy maps.
const OUT_RECORD: u32 = 5;

/// The helpers and property names used on every record, looked up once per batch.
struct Names<'js> {
    position: Atom<'js>,
    operation: Atom<'js>,
    metadata: Atom<'js>,
    key: Atom<'js>,
    payload: Atom<'js>,
    before: Atom<'js>,
    after: Atom<'js>,
    /// `begin(process, loader)`: the function and the loader of the batch.
    begin: Function<'js>,
    /// `run(i, kinds)`: runs the script on record `i` (see [`kinds`]); returns the mask
    /// of `finish` when the script returned the record it was given, `out` when it
    /// returned a number, else what it returned.
    run: Function<'js>,
    /// `out`: what `run` hands back beside its result (see [`OUT_RECORD`]).
    out: Object<'js>,
    out_value: rquickjs::Value<'js>,
    /// The marker of a key deleted from a lazy map.
    deleted: rquickjs::Value<'js>,
    /// `fromBytes(array)`: the bytes of an array as a string of byte values, or the
    /// index of its first element that is not a byte value.
    from_bytes: Function<'js>,
}

impl<'js> Names<'js> {
    fn new(ctx: &Ctx<'js>) -> rquickjs::Result<Self> {
        let atom = |name: &str| Atom::from_str(ctx.clone(), name);
        let internals: Object = ctx.globals().get(INTERNALS)?;
        let out: Object = internals.get("out")?;
        Ok(Self {
            begin: internals.get("begin")?,
            run: internals.get("run")?,
            out_value: out.clone().into_value(),
            out,
            deleted: internals.get("deleted")?,
            from_bytes: internals.get("fromBytes")?,
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
  var hasOwn = Object.prototype.hasOwnProperty;
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
  // The record `process` receives is a Proxy over an object (its target) holding the
  // fields the script has touched; the others stay in Rust until the script reads
  // them, and are then fetched one at a time with the batch's loader `L(i, code,
  // name)` (code 0 Position, 1 Operation, 2 Metadata, 3 Key, 4 Payload.Before,
  // 5 Payload.After). `Payload` is a Proxy of the same kind. Metadata and structured
  // data are Proxies too (lazy maps): reading a key fetches that one value; a write
  // or a delete is kept in the target (a delete as the marker DELETED); anything that
  // needs every key (listing keys, property descriptors, defineProperty, freezing)
  // fetches the whole map once, after which the target is the map ("full"). Rust
  // then converts back only what the targets hold.
  //
  // Creating objects and adding properties is what costs in QuickJS, so a record's
  // state is one array `s` shared by its handlers (no closures, two properties per
  // handler): 0 L, 1 i, 2 kinds (2 bits each for Key, Before, After: 0 nothing,
  // 1 raw, 2 structured), 3 full bits (1 record, 2 Payload), 4-5 target and proxy of
  // the record, 6-7 of Payload, then per lazy map of code c at 3c + 2: target, proxy,
  // number of changes (-1 once full).
  var P = Proxy, R = Reflect, getPrototypeOf = Object.getPrototypeOf;
  var DELETED = {};
  // (`in` on objects without a prototype, and on targets for names Object.prototype
  // lacks, is an own-property test that costs no function call.)
  var RECORD = { __proto__: null, Position: 0, Operation: 1, Metadata: 2, Key: 3, Payload: 6 };
  var PAYLOAD = { __proto__: null, Before: 4, After: 5 };
  // What `run` hands back to Rust beside its result: targets of the lazy maps in 0-3
  // (Metadata, Key, Before, After) and the record returned in 5.
  var out = [null, null, null, null, 0, null];
  var curFn = null, curL = null;

  function fromProto(t, n, r) {
    var p = getPrototypeOf(t);
    return p === null ? undefined : R.get(p, n, r);
  }
  // The own properties of `t`, removed from it, in order.
  function save(t) {
    var keys = R.ownKeys(t), saved = new Map(), j, n;
    for (j = 0; j < keys.length; j++) { n = keys[j]; saved.set(n, t[n]); delete t[n]; }
    return saved;
  }
  // Puts back the saved properties `t` does not have (in their order), but not deletes.
  function restore(t, saved) {
    saved.forEach(function (v, n) {
      if (v !== DELETED && !hasOwn.call(t, n)) { t[n] = v; }
    });
  }
  function forward(fill) {
    return {
      ownKeys: function (t) { fill(this, t); return R.ownKeys(t); },
      getOwnPropertyDescriptor: function (t, n) {
        fill(this, t); return R.getOwnPropertyDescriptor(t, n);
      },
      defineProperty: function (t, n, d) { fill(this, t); return R.defineProperty(t, n, d); },
      preventExtensions: function (t) { fill(this, t); return R.preventExtensions(t); }
    };
  }

  function lazy(s, c) {
    var t = {}, o = 3 * c + 2, p = new P(t, { __proto__: TL, s: s, c: c });
    s[o] = t; s[o + 1] = p; s[o + 2] = 0;
    return p;
  }
  function data(s, c, kind) {
    if (kind === 1) { return toArray(s[0](s[1], c)); }
    if (kind === 2) { return lazy(s, c); }
    return null;
  }
  // Field `c` as the script first sees it.
  function initial(s, c) {
    var k = s[2], t, p;
    switch (c) {
      case 0: return toArray(s[0](s[1], 0));
      case 1: return s[0](s[1], 1);
      case 2: return lazy(s, 2);
      case 3: return data(s, 3, k & 3);
      case 4: return data(s, 4, (k >> 2) & 3);
      case 5: return data(s, 5, (k >> 4) & 3);
      default:
        if ((k & 20) === 0) {
          // No raw side to convert lazily: a plain object (the target is itself).
          t = { Before: data(s, 4, (k >> 2) & 3), After: data(s, 5, (k >> 4) & 3) };
          s[6] = s[7] = t;
          return t;
        }
        t = {}; p = new P(t, { __proto__: TF, s: s, b: 2 });
        s[6] = t; s[7] = p;
        return p;
    }
  }

  // Traps of the record (b = 1) and of its Payload (b = 2).
  function fillFields(h, t) {
    var s = h.s, b = h.b, f = b === 1 ? RECORD : PAYLOAD, saved, n;
    if ((s[3] & b) !== 0) { return; }
    s[3] |= b;
    saved = save(t);
    for (n in f) { t[n] = saved.has(n) ? saved.get(n) : initial(s, f[n]); }
    restore(t, saved);
  }
  var TF = forward(fillFields);
  TF.get = function (t, n, r) {
    var s = this.s, b = this.b, f = b === 1 ? RECORD : PAYLOAD, v;
    if ((s[3] & b) !== 0 || !(n in f) || n in t) { return R.get(t, n, r); }
    v = initial(s, f[n]);
    // Objects are kept: the script may change them in place.
    if (v !== null && typeof v === "object") { t[n] = v; }
    return v;
  };
  TF.set = function (t, n, v, r) {
    var p = this.s[this.b === 1 ? 5 : 7];
    if (r !== p && p !== null) { return R.set(t, n, v, r); }
    t[n] = v;
    return true;
  };
  TF.has = function (t, n) {
    var b = this.b;
    return ((this.s[3] & b) === 0 && n in (b === 1 ? RECORD : PAYLOAD) && !(n in t)) ||
           R.has(t, n);
  };
  TF.deleteProperty = function (t, n) {
    fillFields(this, t);
    return R.deleteProperty(t, n);
  };

  // Traps of a lazy map (code c).
  function fillLazy(h, t) {
    var s = h.s, c = h.c, o = 3 * c + 2, saved, all, n, v;
    if (s[o + 2] < 0) { return; }
    s[o + 2] = -1;
    saved = save(t);
    all = s[0](s[1], c);
    for (n in all) {
      if (!saved.has(n)) { t[n] = all[n]; }
      else if ((v = saved.get(n)) !== DELETED) { t[n] = v; }
    }
    restore(t, saved);
  }
  var TL = forward(fillLazy);
  TL.get = function (t, n, r) {
    var s = this.s, c = this.c, v;
    if (s[3 * c + 4] < 0 || typeof n !== "string") { return R.get(t, n, r); }
    if (n in t && hasOwn.call(t, n)) {
      v = t[n];
      return v === DELETED ? fromProto(t, n, r) : v;
    }
    v = s[0](s[1], c, n);
    if (v === undefined) { return R.get(t, n, r); }
    // Objects are kept: the script may change them in place.
    if (v !== null && typeof v === "object") { t[n] = v; s[3 * c + 4]++; }
    return v;
  };
  TL.set = function (t, n, v, r) {
    var s = this.s, o = 3 * this.c + 2, p = s[o + 1];
    if (r !== p && p !== null) { return R.set(t, n, v, r); }
    if (s[o + 2] >= 0) { s[o + 2]++; }
    t[n] = v;
    return true;
  };
  TL.has = function (t, n) {
    var s = this.s, c = this.c;
    if (s[3 * c + 4] < 0 || typeof n !== "string") { return R.has(t, n); }
    if (n in t && hasOwn.call(t, n)) {
      return t[n] !== DELETED || R.has(getPrototypeOf(t) || {}, n);
    }
    return s[0](s[1], c, n) !== undefined || R.has(t, n);
  };
  TL.deleteProperty = function (t, n) {
    var s = this.s, o = 3 * this.c + 2;
    if (s[o + 2] < 0 || typeof n !== "string") { return R.deleteProperty(t, n); }
    s[o + 2]++;
    t[n] = DELETED;
    return true;
  };

  // Bits for the lazy map of code `c` in field `name` of target `t`: `kept` when the
  // field is as it came, 256 << 2(c - 2) when `out[c - 2]` holds its changes,
  // 512 << 2(c - 2) when it holds all of it, 0 when it was replaced (Rust reads it).
  function slot(s, t, name, c, kept) {
    var o = 3 * c + 2, n;
    if (!(name in t)) { return kept; }
    if (s[o] === null || t[name] !== s[o + 1]) { return 0; }
    n = s[o + 2];
    if (n === 0) { return kept; }
    out[c - 2] = s[o];
    return (n < 0 ? 512 : 256) << (2 * (c - 2));
  }
  // The same for a side of a plain Payload (null, or a lazy map, when it came).
  function plainSlot(s, pt, name, c, kept) {
    var v = pt[name], o = 3 * c + 2, n;
    if (s[o] === null) { return v === null ? kept : 0; }
    if (v !== s[o + 1]) { return 0; }
    n = s[o + 2];
    if (n === 0) { return kept; }
    out[c - 2] = s[o];
    return (n < 0 ? 512 : 256) << (2 * (c - 2));
  }
  // Which fields of the record are as they came (1 Position, 2 Operation, 4 Metadata,
  // 8 Key, 16 Payload.Before, 32 Payload.After) or changed in `out`.
  function finish(s) {
    var full = s[3], t = s[4], pt = s[6], mask = 0;
    if ((full & 1) !== 0) { return 0; }
    if (!("Position" in t)) { mask |= 1; }
    if (!("Operation" in t)) { mask |= 2; }
    mask |= slot(s, t, "Metadata", 2, 4) | slot(s, t, "Key", 3, 8);
    if (!("Payload" in t)) { mask |= 48; }
    else if (pt !== null && t.Payload === s[7]) {
      if (pt === s[7]) {
        mask |= plainSlot(s, pt, "Before", 4, 16) | plainSlot(s, pt, "After", 5, 32);
      } else if ((full & 2) === 0) {
        mask |= slot(s, pt, "Before", 4, 16) | slot(s, pt, "After", 5, 32);
      }
    }
    return mask;
  }
  function begin(fn, L) { curFn = fn; curL = L; }
  // Runs the script on record `i` of the batch: the mask of `finish` when it returned
  // that record (which `out[5]` then holds), `out` holding a number it returned in 5
  // (and -1 in 4), else what it returned.
  function run(i, k) {
    var t = {}, o, p,
        s = [curL, i, k, 0, t, null, null, null, null, null, 0, null, null, 0,
             null, null, 0, null, null, 0];
    p = new P(t, { __proto__: TF, s: s, b: 1 });
    s[5] = p;
    try {
      o = curFn(p);
      if (o === p) { out[5] = p; return finish(s); }
      if (typeof o === "number") { out[4] = -1; out[5] = o; return out; }
      return o;
    } finally {
      // The state's links to targets and proxies make cycles (state, target, cached
      // proxy, its handler, state) that only the cycle collector would free; a
      // record the script kept works on without them.
      s[4] = s[5] = s[6] = s[7] = s[9] = s[12] = s[15] = s[18] = null;
    }
  }
  Object.defineProperty(g, "__funnel_javascript_internals", {
    value: Object.freeze({ begin: begin, run: run, out: out, deleted: DELETED,
                           fromBytes: fromBytes })
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
    setup.call::<_, ()>((bytes, log))
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

/// What a record's data fields hold, for `run`: two bits each for the key (bits 0-1),
/// `Payload.Before` (2-3) and `Payload.After` (4-5): 0 no data, 1 raw, 2 structured.
fn kinds(record: &Record) -> i32 {
    fn kind(data: Option<&Data>) -> i32 {
        match data {
            None => 0,
            Some(Data::Raw(_)) => 1,
            Some(Data::Structured(_)) => 2,
        }
    }
    kind(record.key.as_ref())
        | kind(record.payload.before.as_ref()) << 2
        | kind(record.payload.after.as_ref()) << 4
}

/// The loader of a batch, `L(i, code, name)`: field `code` of record `i` (0 Position
/// and 1 Operation as text, 2 Metadata, 3 Key, 4 Payload.Before, 5 Payload.After),
/// or with `name` the value of that key of the metadata or structured data
/// (`undefined` when there is none). It holds a copy of the batch (records share
/// their bytes and maps), so that records a script keeps stay readable after it.
fn loader<'js>(ctx: &Ctx<'js>, records: &[Record]) -> rquickjs::Result<Function<'js>> {
    let batch: std::rc::Rc<[Record]> = records.into();
    Function::new(
        ctx.clone(),
        move |ctx: Ctx<'js>,
              index: i32,
              code: u32,
              name: Opt<rquickjs::String<'js>>|
              -> rquickjs::Result<rquickjs::Value<'js>> {
            let Some(record) = usize::try_from(index).ok().and_then(|i| batch.get(i)) else {
                return Ok(rquickjs::Value::new_undefined(ctx));
            };
            let data = match code {
                0 => {
                    return rquickjs::String::from_str(ctx, &latin1(record.position.as_bytes()))
                        .map(rquickjs::String::into_value);
                }
                1 => {
                    return rquickjs::String::from_str(ctx, &record.operation.to_string())
                        .map(rquickjs::String::into_value);
                }
                2 => {
                    return match name.0 {
                        Some(name) => match record.metadata.get_raw(&name.to_string()?) {
                            Some(value) => {
                                rquickjs::String::from_str(ctx, value).map(|s| s.into_value())
                            }
                            None => Ok(rquickjs::Value::new_undefined(ctx)),
                        },
                        None => {
                            let metadata = Object::new(ctx)?;
                            for (key, value) in record.metadata.iter() {
                                metadata.set(key, value)?;
                            }
                            Ok(metadata.into_value())
                        }
                    };
                }
                3 => record.key.as_ref(),
                4 => record.payload.before.as_ref(),
                _ => record.payload.after.as_ref(),
            };
            match (name.0, data) {
                (None, data) => data_to_js(&ctx, data),
                (Some(name), Some(Data::Structured(map))) => match map.get(&*name.to_string()?) {
                    Some(value) => value_to_js(&ctx, value),
                    None => Ok(rquickjs::Value::new_undefined(ctx)),
                },
                (Some(_), _) => Ok(rquickjs::Value::new_undefined(ctx)),
            }
        },
    )
}

fn data_to_js<'js>(ctx: &Ctx<'js>, data: Option<&Data>) -> rquickjs::Result<rquickjs::Value<'js>> {
    Ok(match data {
        None => rquickjs::Value::new_null(ctx.clone()),
        Some(Data::Raw(bytes)) => {
            rquickjs::String::from_str(ctx.clone(), &latin1(bytes))?.into_value()
        }
        Some(Data::Structured(map)) => map_to_js(ctx, map)?.into_value(),
    })
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

/// Bits of `finish` (in [`HELPERS`]): the field came back as it was given.
const KEPT_POSITION: i32 = 1;
const KEPT_OPERATION: i32 = 2;
const KEPT_METADATA: i32 = 4;
const KEPT_KEY: i32 = 8;
const KEPT_BEFORE: i32 = 16;
const KEPT_AFTER: i32 = 32;
/// Slots of `out` holding the targets of the lazy maps.
const SLOT_METADATA: u32 = 0;
const SLOT_KEY: u32 = 1;
const SLOT_BEFORE: u32 = 2;
const SLOT_AFTER: u32 = 3;

/// Bit of `finish`: `out[slot]` holds the changes made to a lazy map.
fn changed(slot: u32) -> i32 {
    256 << (2 * slot)
}

/// Bit of `finish`: `out[slot]` holds the whole of a lazy map.
fn whole(slot: u32) -> i32 {
    512 << (2 * slot)
}

/// Whether `mask` says what became of a field, without reading the record object.
fn known(mask: i32, kept: i32, slot: Option<u32>) -> bool {
    let lazy = slot.map_or(0, |slot| changed(slot) | whole(slot));
    mask & (kept | lazy) != 0
}

/// The record a script returned: `value`, or the record it was given when `None`. Then
/// `mask` (from `finish`) says which fields came back as they were (taken from `input`)
/// and which lazy maps hold changes in `out`; other fields are read from the record.
fn record_from_js<'js>(
    names: &Names<'js>,
    input: &Record,
    value: Option<rquickjs::Value<'js>>,
    mask: i32,
) -> Result<Record, String> {
    let all_known = known(mask, KEPT_POSITION, None)
        && known(mask, KEPT_OPERATION, None)
        && known(mask, KEPT_METADATA, Some(SLOT_METADATA))
        && known(mask, KEPT_KEY, Some(SLOT_KEY))
        && known(mask, KEPT_BEFORE, Some(SLOT_BEFORE))
        && known(mask, KEPT_AFTER, Some(SLOT_AFTER));
    let value = match value {
        Some(value) => Some(value),
        None if all_known => None,
        None => Some(
            names
                .out
                .get::<_, rquickjs::Value>(OUT_RECORD)
                .map_err(|e| format!("reading the record back: {e}"))?,
        ),
    };
    let object = match &value {
        None => None,
        Some(value) => match value.as_object() {
            Some(object) => Some(object),
            None => {
                return Err(format!(
                    "js function expected to return a record object or null, but returned: {}",
                    describe(value)
                ));
            }
        },
    };
    // `object` is there whenever a field is not known from `mask`.
    let object = || object.ok_or_else(|| "the record object is gone".to_owned());
    let position = if mask & KEPT_POSITION != 0 {
        input.position.clone()
    } else {
        position_from_js(names, object()?)?
    };
    let operation = if mask & KEPT_OPERATION != 0 {
        Operation::from_code(input.operation.code())
    } else {
        operation_from_js(names, object()?)?
    };
    let metadata = match lazy_metadata(names, mask, &input.metadata)? {
        Some(metadata) => metadata,
        None => metadata_from_js(names, object()?)?,
    };
    let key = match lazy_data(names, mask, KEPT_KEY, SLOT_KEY, input.key.as_ref(), "Key")? {
        Some(key) => key,
        None => data_from_js(names, &get(object()?, &names.key, "Key")?, "Key")?,
    };
    let before = lazy_data(
        names,
        mask,
        KEPT_BEFORE,
        SLOT_BEFORE,
        input.payload.before.as_ref(),
        "Payload.Before",
    )?;
    let after = lazy_data(
        names,
        mask,
        KEPT_AFTER,
        SLOT_AFTER,
        input.payload.after.as_ref(),
        "Payload.After",
    )?;
    let payload = match (before, after) {
        (Some(before), Some(after)) => Payload { before, after },
        (before, after) => payload_from_js(names, object()?, before, after)?,
    };
    Ok(Record {
        position,
        operation,
        metadata,
        key,
        payload,
    })
}

/// The metadata, when `mask` says it came back as it was or what changed in it;
/// `None` when it must be read from the record.
fn lazy_metadata(
    names: &Names<'_>,
    mask: i32,
    input: &Metadata,
) -> Result<Option<Metadata>, String> {
    if mask & KEPT_METADATA != 0 {
        return Ok(Some(input.clone()));
    }
    let whole = mask & whole(SLOT_METADATA) != 0;
    if !whole && mask & changed(SLOT_METADATA) == 0 {
        return Ok(None);
    }
    let target: Object = names
        .out
        .get(SLOT_METADATA)
        .map_err(|e| format!("reading Metadata back: {e}"))?;
    let mut metadata = if whole || input.is_nil() {
        Metadata::new()
    } else {
        input.clone()
    };
    for entry in target.props::<String, rquickjs::Value>() {
        let (key, value) = entry.map_err(|e| format!("Metadata: {e}"))?;
        if value == names.deleted {
            metadata.remove(&key);
            continue;
        }
        let value = value
            .get::<Coerced<String>>()
            .map_err(|e| format!("Metadata: {e}"))?
            .0;
        metadata.insert(key, value);
    }
    Ok(Some(metadata))
}

/// A key or payload side, when `mask` says it came back as it was or what changed in
/// it; `None` when it must be read from the record.
fn lazy_data(
    names: &Names<'_>,
    mask: i32,
    kept: i32,
    slot: u32,
    input: Option<&Data>,
    label: &str,
) -> Result<Option<Option<Data>>, String> {
    if mask & kept != 0 {
        return Ok(Some(input.cloned()));
    }
    let whole = mask & whole(slot) != 0;
    if !whole && mask & changed(slot) == 0 {
        return Ok(None);
    }
    let target: Object = names
        .out
        .get(slot)
        .map_err(|e| format!("reading {label} back: {e}"))?;
    if whole {
        let map = map_from_js(&target, 0).map_err(|e| e.render(label))?;
        return Ok(Some(Some(Data::Structured(map))));
    }
    let mut map = match input {
        Some(Data::Structured(map)) => map.clone(),
        Some(Data::Raw(_)) | None => StructuredData::new(),
    };
    for entry in target.props::<String, rquickjs::Value>() {
        let (key, value) = entry.map_err(|e| format!("{label}: {e}"))?;
        if value == names.deleted {
            map.remove(key.as_str());
            continue;
        }
        let value = value_from_js(&value, 1).map_err(|e| e.at(key.clone()).render(label))?;
        map.insert(key, value);
    }
    Ok(Some(Some(Data::Structured(map))))
}

fn position_from_js<'js>(names: &Names<'js>, object: &Object<'js>) -> Result<Position, String> {
    let position: rquickjs::Value = get(object, &names.position, "Position")?;
    Ok(match bytes_from_js(names, &position) {
        Some(bytes) => Position(bytes.map_err(|e| format!("Position{e}"))?),
        None if position.is_null() || position.is_undefined() => Position::default(),
        None => {
            return Err(format!(
                "Position must be a string or an array of bytes, found {}",
                describe(&position)
            ));
        }
    })
}

fn operation_from_js<'js>(names: &Names<'js>, object: &Object<'js>) -> Result<Operation, String> {
    let operation: rquickjs::Value = get(object, &names.operation, "Operation")?;
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

fn metadata_from_js<'js>(names: &Names<'js>, object: &Object<'js>) -> Result<Metadata, String> {
    let metadata: rquickjs::Value = get(object, &names.metadata, "Metadata")?;
    Ok(match metadata.as_object() {
        None if metadata.is_null() || metadata.is_undefined() => Metadata::none(),
        None => {
            return Err(format!(
                "Metadata must be an object of strings, found {}",
                describe(&metadata)
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

/// `Payload`; a side already known (`before`, `after`) is not read.
fn payload_from_js<'js>(
    names: &Names<'js>,
    object: &Object<'js>,
    before: Option<Option<Data>>,
    after: Option<Option<Data>>,
) -> Result<Payload, String> {
    let payload: rquickjs::Value = get(object, &names.payload, "Payload")?;
    Ok(match payload.as_object() {
        None if payload.is_null() || payload.is_undefined() => Payload::default(),
        None => {
            return Err(format!(
                "Payload must be an object with Before and After, found {}",
                describe(&payload)
            ));
        }
        Some(payload) => Payload {
            before: match before {
                Some(before) => before,
                None => data_from_js(
                    names,
                    &get(payload, &names.before, "Payload.Before")?,
                    "Payload.Before",
                )?,
            },
            after: match after {
                Some(after) => after,
                None => data_from_js(
                    names,
                    &get(payload, &names.after, "Payload.After")?,
                    "Payload.After",
                )?,
            },
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
    names: &Names<'js>,
    value: &rquickjs::Value<'js>,
    label: &str,
) -> Result<Option<Data>, String> {
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
