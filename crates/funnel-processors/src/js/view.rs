//! The record as a script sees it: native objects over Funnel's own record.
//!
//! The record, its `Payload`, its `Metadata` and its structured data (`Key`,
//! `Payload.Before`, `Payload.After`) are instances of one native class, [`View`],
//! whose property hooks (QuickJS "exotic" methods) answer from the Rust record: a field
//! or key becomes a JavaScript value only when the script reads it. What the script
//! changes is kept beside the input ([`Changes`]): a primitive as a Rust [`Value`],
//! anything else in a numbered slot of a store scripts cannot reach (views hold no
//! JavaScript values themselves). Objects read from the input (nested maps, arrays, the
//! record's parts) are kept in slots too, so a script changes them in place and reads
//! the same object twice.
//!
//! Views are not extensible, so that defining a property on one (`Object.defineProperty`,
//! `Object.freeze`, `Object.seal`) fails with a TypeError instead of hiding the record's
//! key behind an ordinary property; assignments still reach the view's `set` hook, which
//! QuickJS calls before it looks at extensibility. Symbol-keyed properties a script sets
//! on a view live on a plain object of its own, kept in a slot.
//!
//! The store is the prototype object of the never-instantiated class [`Store`]: one per
//! runtime. Key 0 holds the `toArray` helper, key 1 the prototype of views, other keys
//! are slot ids. When a view is freed (or a key holding a slot is deleted or set to a
//! primitive) its slots are emptied at the end of the batch and their ids reused.

use std::cell::RefCell;
use std::rc::Rc;

use funnel_record::{Data, Record, Value};
use rquickjs::class::{
    ClassKind, JsCell, JsClass, PropertyDescriptor, PropertyName, Trace, Tracer, Writable,
};
use rquickjs::object::{Filter, Property};
use rquickjs::{Atom, Class, Ctx, Function, JsLifetime, Object, Type};
use smallvec::SmallVec;

use super::{latin1, number, value_to_js};

/// Key of the store holding the `toArray` helper.
pub(super) const TO_ARRAY: u32 = 0;
/// Key of the store holding the prototype of views (read there rather than looked up
/// by class for every view made).
const PROTOTYPE: u32 = 1;
/// The first slot id.
const FIRST_SLOT: u32 = 2;

/// The fields of a record, in the order scripts list them.
const RECORD_FIELDS: [&str; 5] = ["Position", "Operation", "Metadata", "Key", "Payload"];
/// The fields of `Payload`.
const PAYLOAD_FIELDS: [&str; 2] = ["Before", "After"];

/// Which part of a record a view shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Part {
    Record,
    Payload,
    Metadata,
    Key,
    Before,
    After,
}

/// A changed key of a view.
#[derive(Debug, Clone)]
pub(super) enum Slot {
    /// A primitive the script stored, as Rust holds it.
    Rust(Value),
    /// A JavaScript value, in the store under this slot id.
    Js(u32),
}

/// What a script did to a view's keys.
#[derive(Debug, Clone, Default)]
pub(super) struct Changes {
    /// Keys set by the script (or whose object is kept), in the order first set, and
    /// whether the key is listed after the input's keys (added, or deleted and set again).
    /// Most views have one (the part read through them, or the field set), kept inline.
    pub(super) set: SmallVec<[(String, Slot, bool); 1]>,
    /// Keys of the input the script deleted.
    pub(super) deleted: Vec<String>,
}

impl Changes {
    pub(super) fn is_empty(&self) -> bool {
        self.set.is_empty() && self.deleted.is_empty()
    }

    pub(super) fn slot(&self, name: &str) -> Option<&Slot> {
        self.set
            .iter()
            .find(|(k, _, _)| k == name)
            .map(|(_, s, _)| s)
    }
}

/// The slot ids of a runtime's store: which are free and which belong to freed views.
#[derive(Debug, Default)]
pub(super) struct Slots {
    next: u32,
    free: Vec<u32>,
    dropped: Vec<u32>,
}

/// One runtime's [`Slots`], shared by its views.
pub(super) type Shared = Rc<RefCell<Slots>>;

/// Marks slot `id` for emptying at the next [`sweep`].
fn release(shared: &Shared, id: u32) {
    // (`sweep` holds no borrow while it empties slots, so this one succeeds.)
    if let Ok(mut slots) = shared.try_borrow_mut() {
        slots.dropped.push(id);
    }
}

/// A free slot id.
fn allocate(shared: &Shared) -> u32 {
    let mut slots = shared.borrow_mut();
    match slots.free.pop() {
        Some(id) => id,
        None => {
            slots.next = slots.next.max(FIRST_SLOT - 1) + 1;
            slots.next
        }
    }
}

/// The records of a batch, shared by the views of its records (a record a script keeps
/// stays readable after its batch).
#[derive(Debug)]
pub(super) struct Batch {
    pub(super) records: Box<[Record]>,
    pub(super) shared: Shared,
}

/// A native object showing one part of one record.
#[derive(Debug)]
pub(super) struct View {
    batch: Rc<Batch>,
    index: usize,
    part: Part,
    changes: Changes,
    /// The slot of the object holding the symbol-keyed properties set on the view.
    symbols: Option<u32>,
}

impl Drop for View {
    fn drop(&mut self) {
        for (_, slot, _) in &self.changes.set {
            if let Slot::Js(id) = slot {
                release(&self.batch.shared, *id);
            }
        }
        if let Some(id) = self.symbols {
            release(&self.batch.shared, id);
        }
    }
}

impl<'js> Trace<'js> for View {
    fn trace<'a>(&self, _tracer: Tracer<'a, 'js>) {}
}

// SAFETY: `View` holds no JavaScript value and has no lifetime; rquickjs requires this
// marker for every class, and for a `'static` type `Changed<'to>` is the type itself.
#[allow(unsafe_code)]
unsafe impl<'js> JsLifetime<'js> for View {
    type Changed<'to> = View;
}

/// The class whose prototype object is the store of slots (never instantiated).
pub(super) struct Store;

impl<'js> Trace<'js> for Store {
    fn trace<'a>(&self, _tracer: Tracer<'a, 'js>) {}
}

// SAFETY: `Store` is an empty type with no lifetime; see `View`.
#[allow(unsafe_code)]
unsafe impl<'js> JsLifetime<'js> for Store {
    type Changed<'to> = Store;
}

impl<'js> JsClass<'js> for Store {
    const NAME: &'static str = "FunnelStore";
    type Mutable = Writable;

    fn constructor(_ctx: &Ctx<'js>) -> rquickjs::Result<Option<rquickjs::Constructor<'js>>> {
        Ok(None)
    }
}

/// A runtime's [`Shared`] slot ids, kept as the runtime's user data.
pub(super) struct Registry(pub(super) Shared);

// SAFETY: `Registry` holds no JavaScript value and has no lifetime; rquickjs requires
// this marker for user data.
#[allow(unsafe_code)]
unsafe impl<'js> JsLifetime<'js> for Registry {
    type Changed<'to> = Registry;
}

/// The store of slots.
pub(super) fn store<'js>(ctx: &Ctx<'js>) -> rquickjs::Result<Object<'js>> {
    Class::<Store>::prototype(ctx)?
        .ok_or_else(|| rquickjs::Error::new_from_js("undefined", "the store of slots"))
}

/// The JavaScript value in slot `id`.
fn stored<'js>(ctx: &Ctx<'js>, id: u32) -> rquickjs::Result<rquickjs::Value<'js>> {
    store(ctx)?.get(id)
}

/// A new view as scripts get it: not extensible (see the module's documentation).
/// `prototype` is the prototype of views ([`prototype_of_views`]).
pub(super) fn wrap<'js>(
    ctx: &Ctx<'js>,
    prototype: Object<'js>,
    batch: Rc<Batch>,
    index: usize,
    part: Part,
) -> rquickjs::Result<rquickjs::Value<'js>> {
    let view = Class::instance_proto(View::new(batch, index, part), prototype)?;
    prevent_extensions(ctx, &view);
    Ok(view.into_value())
}

/// Makes `view` not extensible.
///
/// rquickjs 0.14 has no safe call for `Object.preventExtensions` (calling the JavaScript
/// function per view would cost more than the rest of making it).
#[allow(unsafe_code)]
fn prevent_extensions<'js>(ctx: &Ctx<'js>, view: &Class<'js, View>) {
    // SAFETY: both pointers are live: `ctx` is the context the caller holds and `view`
    // a reference it holds to an object of that context's runtime. `JS_PreventExtensions`
    // borrows the value (no reference count changes) and, for an object that is neither a
    // Proxy nor a typed array, only clears its `extensible` flag and cannot fail.
    unsafe {
        rquickjs::qjs::JS_PreventExtensions(ctx.as_raw().as_ptr(), view.as_raw());
    }
}

/// The prototype of views: that of `near` when it is a view (views are not extensible,
/// so theirs cannot be changed, and reading it costs less than looking it up), else
/// read from `store`.
pub(super) fn prototype_of_views<'js>(
    store: &Object<'js>,
    near: Option<&rquickjs::Value<'js>>,
) -> rquickjs::Result<Object<'js>> {
    if let Some(object) = near.and_then(|value| value.as_object())
        && Class::<View>::from_object(object).is_some()
        && let Some(prototype) = object.get_prototype()
    {
        return Ok(prototype);
    }
    store.get(PROTOTYPE)
}

/// The view a value a script holds is, if it is one.
pub(super) fn unwrap<'js>(value: &rquickjs::Value<'js>) -> Option<Class<'js, View>> {
    Class::<View>::from_object(value.as_object()?)
}

/// Puts the prototype of views in the store (once per runtime, with the helpers).
pub(super) fn install<'js>(ctx: &Ctx<'js>) -> rquickjs::Result<()> {
    store(ctx)?.set(PROTOTYPE, prototype(ctx)?)
}

/// Gives back the reference to `value` that rquickjs 0.14 frees once too often.
///
/// QuickJS's exotic `set_property` hook borrows the assigned value (`JSValueConst`), and
/// `JS_SetPropertyInternal2` frees it itself right after the hook returns. rquickjs-core
/// 0.14.0 (`src/class/ffi.rs`, `VTable::set_property_impl`) wraps it with
/// `Value::from_js_value`, which takes ownership, instead of `from_js_value_const`, which
/// takes a reference of its own, so the `Value` given to
/// [`JsClass::exotic_set_property`] frees it a second time when it drops. Called once on
/// every value that hook receives, this balances the count. rquickjs is pinned to
/// `=0.14.0` for this reason (crates/funnel-processors/Cargo.toml); the tests
/// `assigned_values_survive_the_garbage_collector_intact` and
/// `assigned_values_are_freed_once_they_are_no_longer_held` fail if the count is off in
/// either direction, so an rquickjs that fixes the hook fails them until this goes.
#[allow(unsafe_code)]
fn restore_reference<'js>(ctx: &Ctx<'js>, value: &rquickjs::Value<'js>) {
    // SAFETY: `value` is a live value of the context `ctx` (the hook's arguments), so its
    // raw `JSValue` is valid here. `JS_DupValue` only increments the reference count of a
    // reference-counted value (and does nothing for others); it does not touch the
    // reference to the context that the rquickjs wrapper holds, which the wrapper frees
    // itself. The one reference added is the one QuickJS frees after the hook.
    unsafe {
        rquickjs::qjs::JS_DupValue(ctx.as_raw().as_ptr(), value.as_raw());
    }
}

/// The object holding the symbol-keyed properties of `view` (made when `create`).
fn symbols<'js>(
    ctx: &Ctx<'js>,
    view: &JsCell<'js, View>,
    create: bool,
) -> rquickjs::Result<Option<Object<'js>>> {
    let held = view.borrow().symbols;
    if let Some(id) = held {
        return stored(ctx, id).map(|value| value.into_object());
    }
    if !create {
        return Ok(None);
    }
    let object = Object::new(ctx.clone())?;
    let shared = view.borrow().batch.shared.clone();
    let id = allocate(&shared);
    if let Err(e) = store(ctx)?.set(id, object.clone()) {
        shared.borrow_mut().free.push(id);
        return Err(e);
    }
    view.borrow_mut().symbols = Some(id);
    Ok(Some(object))
}

/// The exotic `set` hook: stores `value` in key `atom` of `this`.
fn set_key<'js>(
    this: &JsCell<'js, View>,
    ctx: &Ctx<'js>,
    atom: Atom<'js>,
    receiver: rquickjs::Value<'js>,
    value: rquickjs::Value<'js>,
) -> rquickjs::Result<bool> {
    let is_self = receiver
        .as_object()
        .and_then(Class::<View>::from_object)
        .is_some_and(|view| std::ptr::eq(view.get_cell(), this));
    if !is_self {
        // A set through an object inheriting from a view: an own property of that
        // object, as for any prototype.
        let Some(object) = receiver.as_object() else {
            return Ok(false);
        };
        object.prop(
            atom,
            Property::from(value).writable().enumerable().configurable(),
        )?;
        return Ok(true);
    }
    match name_of(&atom)? {
        Some(name) => assign(ctx, this, name, value)?,
        None => {
            if let Some(object) = symbols(ctx, this, true)? {
                object.set(atom, value)?;
            }
        }
    }
    Ok(true)
}

/// Stores `value` in key `name` of `view`.
fn assign<'js>(
    ctx: &Ctx<'js>,
    view: &JsCell<'js, View>,
    name: String,
    value: rquickjs::Value<'js>,
) -> rquickjs::Result<()> {
    let part = view.borrow().part;
    match primitive(part, &value) {
        Some(rust) => view.borrow_mut().put(name, Slot::Rust(rust)),
        None => keep(&store(ctx)?, view, name, value)?,
    }
    Ok(())
}

/// Puts `value` in a slot of the store and records that key `name` of `view` holds it
/// (reusing the slot the key already has).
fn keep<'js>(
    store: &Object<'js>,
    view: &JsCell<'js, View>,
    name: String,
    value: rquickjs::Value<'js>,
) -> rquickjs::Result<()> {
    let (held, shared) = {
        let view = view.borrow();
        let held = match view.changes.slot(&name) {
            Some(Slot::Js(id)) => Some(*id),
            _ => None,
        };
        (held, view.batch.shared.clone())
    };
    let id = held.unwrap_or_else(|| allocate(&shared));
    if let Err(e) = store.set(id, value) {
        if held.is_none() {
            shared.borrow_mut().free.push(id);
        }
        return Err(e);
    }
    view.borrow_mut().put(name, Slot::Js(id));
    Ok(())
}

/// Empties the slots released since the last sweep (which may free more views).
pub(super) fn sweep(ctx: &Ctx<'_>, shared: &Shared) -> rquickjs::Result<()> {
    let store = store(ctx)?;
    loop {
        let dropped = std::mem::take(&mut shared.borrow_mut().dropped);
        if dropped.is_empty() {
            return Ok(());
        }
        for id in dropped {
            // Emptied rather than deleted: the key is reused by the next slot, and
            // replacing a value costs a fraction of removing a property.
            store.set(id, rquickjs::Value::new_undefined(ctx.clone()))?;
            shared.borrow_mut().free.push(id);
        }
    }
}

/// The name of a property key, `None` for a symbol.
fn name_of(atom: &Atom<'_>) -> rquickjs::Result<Option<String>> {
    // rquickjs gives a symbol's description as its text: the atom of that text is
    // another atom for a symbol, the same for a string or an index.
    let text = atom.to_js_string()?;
    let named = Atom::from_value(text.ctx().clone(), text.as_value())?;
    if named != *atom {
        return Ok(None);
    }
    text.to_string().map(Some)
}

/// A JavaScript array of the byte values of `bytes`.
fn to_array<'js>(
    ctx: &Ctx<'js>,
    store: &Object<'js>,
    bytes: &[u8],
) -> rquickjs::Result<rquickjs::Value<'js>> {
    let to_array: Function = store.get(TO_ARRAY)?;
    let text = rquickjs::String::from_str(ctx.clone(), &latin1(bytes))?;
    to_array.call((text,))
}

/// A primitive JavaScript value as Rust stores it in `part`; `None` when it must stay a
/// JavaScript value (objects, `undefined`, symbols, BigInts; non-strings in metadata).
fn primitive(part: Part, value: &rquickjs::Value<'_>) -> Option<Value> {
    if matches!(part, Part::Record | Part::Payload) {
        return None;
    }
    match value.type_of() {
        Type::String => value
            .as_string()
            .and_then(|text| text.to_string().ok())
            .map(|s| Value::String(s.into())),
        _ if part == Part::Metadata => None,
        Type::Bool => value.as_bool().map(Value::Bool),
        Type::Int => value.as_int().map(|i| Value::Int(i64::from(i))),
        Type::Float => value.as_float().map(number),
        Type::Null => Some(Value::Null),
        _ => None,
    }
}

impl View {
    /// A view of `part` of record `index` of `batch`.
    pub(super) fn new(batch: Rc<Batch>, index: usize, part: Part) -> Self {
        Self {
            batch,
            index,
            part,
            changes: Changes::default(),
            symbols: None,
        }
    }

    /// The record this view shows a part of.
    fn input(&self) -> &Record {
        &self.batch.records[self.index]
    }

    pub(super) fn part(&self) -> Part {
        self.part
    }

    pub(super) fn changes(&self) -> &Changes {
        &self.changes
    }

    /// The batch and the index of the record this view shows a part of.
    pub(super) fn batch(&self) -> (Rc<Batch>, usize) {
        (self.batch.clone(), self.index)
    }

    /// The input's data of a data part.
    fn data(&self) -> Option<&Data> {
        data_of(self.input(), self.part)
    }

    /// Whether the input has key `name`.
    fn input_has(&self, name: &str) -> bool {
        match self.part {
            Part::Record => RECORD_FIELDS.contains(&name),
            Part::Payload => PAYLOAD_FIELDS.contains(&name),
            Part::Metadata => self.input().metadata.get_raw(name).is_some(),
            Part::Key | Part::Before | Part::After => match self.data() {
                Some(Data::Structured(map)) => map.contains_key(name),
                _ => false,
            },
        }
    }

    /// The input's keys, in order.
    fn input_keys(&self) -> Vec<String> {
        match self.part {
            Part::Record => RECORD_FIELDS.iter().map(|&k| k.to_owned()).collect(),
            Part::Payload => PAYLOAD_FIELDS.iter().map(|&k| k.to_owned()).collect(),
            Part::Metadata => self
                .input()
                .metadata
                .iter()
                .map(|(k, _)| k.to_owned())
                .collect(),
            Part::Key | Part::Before | Part::After => match self.data() {
                Some(Data::Structured(map)) => map.keys().map(|k| k.to_string()).collect(),
                _ => Vec::new(),
            },
        }
    }

    /// Whether the view has key `name` now.
    fn has(&self, name: &str) -> bool {
        self.changes.slot(name).is_some()
            || (!self.changes.deleted.iter().any(|k| k == name) && self.input_has(name))
    }

    /// The keys the view has now, in the order a plain object would list them.
    fn keys(&self) -> Vec<String> {
        let appended = |name: &str| {
            self.changes
                .set
                .iter()
                .any(|(k, _, after)| *after && k == name)
        };
        let mut keys: Vec<String> = self
            .input_keys()
            .into_iter()
            .filter(|k| !self.changes.deleted.contains(k) && !appended(k))
            .collect();
        keys.extend(
            self.changes
                .set
                .iter()
                .filter(|(_, _, after)| *after)
                .map(|(k, _, _)| k.clone()),
        );
        keys
    }

    /// Records that key `name` now holds `slot` (releasing a slot it held before).
    fn put(&mut self, name: String, slot: Slot) {
        if let Some(entry) = self.changes.set.iter_mut().find(|(k, _, _)| *k == name) {
            let old = std::mem::replace(&mut entry.1, slot);
            if let (Slot::Js(old), new) = (old, &entry.1)
                && !matches!(new, Slot::Js(id) if *id == old)
            {
                release(&self.batch.shared, old);
            }
            return;
        }
        let deleted = self.changes.deleted.iter().position(|k| *k == name);
        if let Some(at) = deleted {
            self.changes.deleted.remove(at);
        }
        let after = deleted.is_some() || !self.input_has(&name);
        self.changes.set.push((name, slot, after));
    }

    /// Deletes key `name` (releasing the slot it held).
    fn delete(&mut self, name: &str) {
        if let Some(at) = self.changes.set.iter().position(|(k, _, _)| k == name) {
            let (_, slot, _) = self.changes.set.remove(at);
            if let Slot::Js(id) = slot {
                release(&self.batch.shared, id);
            }
        }
        if self.input_has(name) && !self.changes.deleted.iter().any(|k| k == name) {
            self.changes.deleted.push(name.to_owned());
        }
    }
}

/// The data of `record` that a data part shows (`None` for other parts).
pub(super) fn data_of(record: &Record, part: Part) -> Option<&Data> {
    match part {
        Part::Key => record.key.as_ref(),
        Part::Before => record.payload.before.as_ref(),
        Part::After => record.payload.after.as_ref(),
        Part::Record | Part::Payload | Part::Metadata => None,
    }
}

/// What reading an untouched key of the input gives.
enum Read<'js> {
    /// A value to hand over as it is (a primitive).
    Plain(rquickjs::Value<'js>),
    /// An object, kept in a slot so that the script changes it in place.
    Kept(rquickjs::Value<'js>),
}

/// Data as a script first sees it: `null`, an array of byte values or a view.
fn data_to_script<'js>(
    ctx: &Ctx<'js>,
    store: &Object<'js>,
    near: Option<&rquickjs::Value<'js>>,
    batch: &Rc<Batch>,
    index: usize,
    part: Part,
    data: Option<&Data>,
) -> rquickjs::Result<Read<'js>> {
    Ok(match data {
        None => Read::Plain(rquickjs::Value::new_null(ctx.clone())),
        Some(Data::Raw(bytes)) => Read::Kept(to_array(ctx, store, bytes)?),
        Some(Data::Structured(_)) => Read::Kept(wrap(
            ctx,
            prototype_of_views(store, near)?,
            batch.clone(),
            index,
            part,
        )?),
    })
}

/// Key `name` of the input of `view` (which the script has not changed), `None` when
/// there is none.
fn read_input<'js>(
    ctx: &Ctx<'js>,
    store: &Object<'js>,
    near: Option<&rquickjs::Value<'js>>,
    view: &JsCell<'js, View>,
    name: &str,
) -> rquickjs::Result<Option<Read<'js>>> {
    let (batch, index, part) = {
        let view = view.borrow();
        (view.batch.clone(), view.index, view.part)
    };
    let record = &batch.records[index];
    let view_of = |part| -> rquickjs::Result<Read<'js>> {
        Ok(Read::Kept(wrap(
            ctx,
            prototype_of_views(store, near)?,
            batch.clone(),
            index,
            part,
        )?))
    };
    Ok(Some(match (part, name) {
        (Part::Record, "Position") => Read::Kept(to_array(ctx, store, record.position.as_bytes())?),
        (Part::Record, "Operation") => Read::Plain(
            rquickjs::String::from_str(ctx.clone(), &record.operation.to_string())?.into_value(),
        ),
        (Part::Record, "Metadata") => view_of(Part::Metadata)?,
        (Part::Record, "Key") => data_to_script(
            ctx,
            store,
            near,
            &batch,
            index,
            Part::Key,
            record.key.as_ref(),
        )?,
        (Part::Record, "Payload") => view_of(Part::Payload)?,
        (Part::Payload, "Before") => data_to_script(
            ctx,
            store,
            near,
            &batch,
            index,
            Part::Before,
            record.payload.before.as_ref(),
        )?,
        (Part::Payload, "After") => data_to_script(
            ctx,
            store,
            near,
            &batch,
            index,
            Part::After,
            record.payload.after.as_ref(),
        )?,
        (Part::Record | Part::Payload, _) => return Ok(None),
        (Part::Metadata, _) => match record.metadata.get_raw(name) {
            Some(value) => {
                Read::Plain(rquickjs::String::from_str(ctx.clone(), value)?.into_value())
            }
            None => return Ok(None),
        },
        (Part::Key | Part::Before | Part::After, _) => {
            let Some(Data::Structured(map)) = data_of(record, part) else {
                return Ok(None);
            };
            let Some(value) = map.get(name) else {
                return Ok(None);
            };
            let converted = value_to_js(ctx, value)?;
            if matches!(value, Value::Map(_) | Value::Array(_) | Value::Bytes(_)) {
                Read::Kept(converted)
            } else {
                Read::Plain(converted)
            }
        }
    }))
}

/// Key `name` of `view`, `None` when it has none.
///
/// `near` is a value that may be a view (see [`prototype_of_views`]).
fn get_key<'js>(
    ctx: &Ctx<'js>,
    near: Option<&rquickjs::Value<'js>>,
    view: &JsCell<'js, View>,
    name: String,
) -> rquickjs::Result<Option<rquickjs::Value<'js>>> {
    let slot = {
        let view = view.borrow();
        match view.changes.slot(&name) {
            Some(slot) => Some(slot.clone()),
            None if view.changes.deleted.contains(&name) => return Ok(None),
            None => None,
        }
    };
    match slot {
        Some(Slot::Rust(value)) => return value_to_js(ctx, &value).map(Some),
        Some(Slot::Js(id)) => return stored(ctx, id).map(Some),
        None => {}
    }
    let store = store(ctx)?;
    Ok(match read_input(ctx, &store, near, view, &name)? {
        None => None,
        Some(Read::Plain(value)) => Some(value),
        Some(Read::Kept(value)) => {
            keep(&store, view, name, value.clone())?;
            Some(value)
        }
    })
}

/// The prototype of views (an empty object inheriting `Object.prototype`), where keys a
/// view does not have are looked up.
fn prototype<'js>(ctx: &Ctx<'js>) -> rquickjs::Result<Object<'js>> {
    Class::<View>::prototype(ctx)?
        .ok_or_else(|| rquickjs::Error::new_from_js("undefined", "the prototype of views"))
}

impl<'js> JsClass<'js> for View {
    const NAME: &'static str = "FunnelRecordPart";
    const KIND: ClassKind = ClassKind::Exotic;
    type Mutable = Writable;

    fn constructor(_ctx: &Ctx<'js>) -> rquickjs::Result<Option<rquickjs::Constructor<'js>>> {
        Ok(None)
    }

    fn exotic_get_property(
        this: &JsCell<'js, Self>,
        ctx: &Ctx<'js>,
        atom: Atom<'js>,
        receiver: rquickjs::Value<'js>,
    ) -> rquickjs::Result<rquickjs::Value<'js>> {
        match name_of(&atom)? {
            Some(name) => {
                if let Some(value) = get_key(ctx, Some(&receiver), this, name)? {
                    return Ok(value);
                }
            }
            None => {
                if let Some(object) = symbols(ctx, this, false)?
                    && object.contains_key(atom.clone())?
                {
                    return object.get(atom);
                }
            }
        }
        prototype(ctx)?.get(atom)
    }

    fn exotic_set_property(
        this: &JsCell<'js, Self>,
        ctx: &Ctx<'js>,
        atom: Atom<'js>,
        receiver: rquickjs::Value<'js>,
        value: rquickjs::Value<'js>,
    ) -> rquickjs::Result<bool> {
        restore_reference(ctx, &value);
        set_key(this, ctx, atom, receiver, value)
    }

    fn exotic_delete_property(
        this: &JsCell<'js, Self>,
        ctx: &Ctx<'js>,
        atom: Atom<'js>,
    ) -> rquickjs::Result<bool> {
        match name_of(&atom)? {
            Some(name) => this.borrow_mut().delete(&name),
            None => {
                if let Some(object) = symbols(ctx, this, false)? {
                    object.remove(atom)?;
                }
            }
        }
        Ok(true)
    }

    fn exotic_has_property(
        this: &JsCell<'js, Self>,
        ctx: &Ctx<'js>,
        atom: Atom<'js>,
    ) -> rquickjs::Result<bool> {
        match name_of(&atom)? {
            Some(name) => {
                if this.borrow().has(&name) {
                    return Ok(true);
                }
            }
            None => {
                if let Some(object) = symbols(ctx, this, false)?
                    && object.contains_key(atom.clone())?
                {
                    return Ok(true);
                }
            }
        }
        prototype(ctx)?.contains_key(atom)
    }

    fn exotic_get_own_property(
        this: &JsCell<'js, Self>,
        ctx: &Ctx<'js>,
        atom: Atom<'js>,
    ) -> rquickjs::Result<Option<PropertyDescriptor<'js>>> {
        let value = match name_of(&atom)? {
            Some(name) => get_key(ctx, None, this, name)?,
            None => match symbols(ctx, this, false)? {
                Some(object) if object.contains_key(atom.clone())? => Some(object.get(atom)?),
                _ => None,
            },
        };
        Ok(value.map(|value| PropertyDescriptor::new_value(value, true, true, true)))
    }

    fn exotic_get_own_property_names(
        this: &JsCell<'js, Self>,
        ctx: &Ctx<'js>,
    ) -> rquickjs::Result<Vec<PropertyName<'js>>> {
        let keys = this.borrow().keys();
        let mut names = keys
            .iter()
            .map(|key| {
                Ok(PropertyName {
                    atom: Atom::from_str(ctx.clone(), key)?,
                    is_enumerable: true,
                })
            })
            .collect::<rquickjs::Result<Vec<_>>>()?;
        // And the symbol-keyed properties a script set on the part, as an object lists them.
        if let Some(object) = symbols(ctx, this, false)? {
            for atom in object.own_keys::<Atom>(Filter::new().symbol()) {
                names.push(PropertyName {
                    atom: atom?,
                    is_enumerable: true,
                });
            }
        }
        Ok(names)
    }
}
