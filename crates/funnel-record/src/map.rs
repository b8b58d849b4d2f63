//! [`StructuredData`]: a string-keyed map of values, kept sorted by key in one vector.

use std::borrow::Borrow;
use std::fmt;
use std::iter::FusedIterator;
use std::{slice, vec};

use smol_str::SmolStr;

use crate::record::Value;

/// Structured data: a string-keyed map of [`Value`]s, sorted by key (the order OpenCDC
/// JSON writes it in).
///
/// The entries sit in one vector sorted by key, and keys are [`SmolStr`]s (up to 23
/// bytes inline, longer ones shared between clones): a map of a dozen fields is one heap
/// object, and cloning it allocates once, where a `BTreeMap<String, Value>` allocated a
/// node per 11 entries and a string per key. Lookups are a binary search. The API is the
/// part of `BTreeMap`'s that records use, by `&str`: [`get`](Self::get),
/// [`insert`](Self::insert), [`remove`](Self::remove), [`entry`](Self::entry) and
/// iteration in key order.
///
/// Inserting keys one at a time in random order moves entries (quadratic for a very
/// large map); collecting an iterator sorts once instead.
#[derive(Clone, Default, PartialEq)]
pub struct StructuredData {
    /// Sorted by key, no key twice.
    entries: Vec<(SmolStr, Value)>,
}

impl StructuredData {
    /// An empty map (allocates nothing).
    #[inline]
    pub const fn new() -> Self {
        Self {
            entries: Vec::new(),
        }
    }

    /// An empty map with room for `capacity` entries.
    pub fn with_capacity(capacity: usize) -> Self {
        Self {
            entries: Vec::with_capacity(capacity),
        }
    }

    /// Number of entries.
    #[inline]
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when there are no entries.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn find(&self, key: &str) -> Result<usize, usize> {
        self.entries.binary_search_by(|(k, _)| k.as_str().cmp(key))
    }

    /// The value of `key`.
    #[inline]
    pub fn get<Q: Borrow<str> + ?Sized>(&self, key: &Q) -> Option<&Value> {
        let i = self.find(key.borrow()).ok()?;
        Some(&self.entries[i].1)
    }

    /// The stored key and value of `key`.
    pub fn get_key_value<Q: Borrow<str> + ?Sized>(&self, key: &Q) -> Option<(&SmolStr, &Value)> {
        let i = self.find(key.borrow()).ok()?;
        let (k, v) = &self.entries[i];
        Some((k, v))
    }

    /// The value of `key`, to change.
    #[inline]
    pub fn get_mut<Q: Borrow<str> + ?Sized>(&mut self, key: &Q) -> Option<&mut Value> {
        let i = self.find(key.borrow()).ok()?;
        Some(&mut self.entries[i].1)
    }

    /// True when `key` has a value.
    #[inline]
    pub fn contains_key<Q: Borrow<str> + ?Sized>(&self, key: &Q) -> bool {
        self.find(key.borrow()).is_ok()
    }

    /// Sets `key` to `value`, returning the value it replaced.
    pub fn insert(&mut self, key: impl Into<SmolStr>, value: Value) -> Option<Value> {
        let key = key.into();
        match self.find(&key) {
            Ok(i) => Some(std::mem::replace(&mut self.entries[i].1, value)),
            Err(i) => {
                self.entries.insert(i, (key, value));
                None
            }
        }
    }

    /// Removes `key`, returning its value.
    pub fn remove<Q: Borrow<str> + ?Sized>(&mut self, key: &Q) -> Option<Value> {
        self.remove_entry(key).map(|(_, v)| v)
    }

    /// Removes `key`, returning the stored key and its value.
    pub fn remove_entry<Q: Borrow<str> + ?Sized>(&mut self, key: &Q) -> Option<(SmolStr, Value)> {
        let i = self.find(key.borrow()).ok()?;
        Some(self.entries.remove(i))
    }

    /// The entry of `key`, to read, insert or change in place.
    pub fn entry(&mut self, key: impl Into<SmolStr>) -> Entry<'_> {
        let key = key.into();
        match self.find(&key) {
            Ok(index) => Entry::Occupied(OccupiedEntry { map: self, index }),
            Err(index) => Entry::Vacant(VacantEntry {
                map: self,
                index,
                key,
            }),
        }
    }

    /// Keeps only the entries for which `keep` returns true.
    pub fn retain(&mut self, mut keep: impl FnMut(&SmolStr, &mut Value) -> bool) {
        self.entries.retain_mut(|(k, v)| keep(k, v));
    }

    /// Removes every entry (keeping the allocation).
    pub fn clear(&mut self) {
        self.entries.clear();
    }

    /// Removes and returns the entry with the smallest key.
    pub fn pop_first(&mut self) -> Option<(SmolStr, Value)> {
        if self.entries.is_empty() {
            None
        } else {
            Some(self.entries.remove(0))
        }
    }

    /// Removes and returns the entry with the largest key.
    pub fn pop_last(&mut self) -> Option<(SmolStr, Value)> {
        self.entries.pop()
    }

    /// Moves every entry of `other` into this map (a key in both takes `other`'s value),
    /// leaving `other` empty.
    pub fn append(&mut self, other: &mut Self) {
        let other = std::mem::take(other);
        self.extend(other);
    }

    /// Entries in key order.
    #[inline]
    pub fn iter(&self) -> Iter<'_> {
        Iter(self.entries.iter())
    }

    /// Entries in key order, values changeable.
    #[inline]
    pub fn iter_mut(&mut self) -> IterMut<'_> {
        IterMut(self.entries.iter_mut())
    }

    /// Keys in order.
    pub fn keys(&self) -> impl DoubleEndedIterator<Item = &SmolStr> + ExactSizeIterator {
        self.entries.iter().map(|(k, _)| k)
    }

    /// Values in key order.
    pub fn values(&self) -> impl DoubleEndedIterator<Item = &Value> + ExactSizeIterator {
        self.entries.iter().map(|(_, v)| v)
    }

    /// Values in key order, changeable.
    pub fn values_mut(
        &mut self,
    ) -> impl DoubleEndedIterator<Item = &mut Value> + ExactSizeIterator {
        self.entries.iter_mut().map(|(_, v)| v)
    }

    /// Keys in order, taking the map.
    pub fn into_keys(self) -> impl DoubleEndedIterator<Item = SmolStr> + ExactSizeIterator {
        self.entries.into_iter().map(|(k, _)| k)
    }

    /// Values in key order, taking the map.
    pub fn into_values(self) -> impl DoubleEndedIterator<Item = Value> + ExactSizeIterator {
        self.entries.into_iter().map(|(_, v)| v)
    }

    /// Sorts `entries` by key and drops all but the last of equal keys (a later
    /// duplicate wins, as inserting one by one would have it).
    fn from_entries(mut entries: Vec<(SmolStr, Value)>) -> Self {
        if !entries.is_sorted_by(|a, b| a.0 < b.0) {
            // Stable: equal keys keep their order, so the last of them is the latest.
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            let mut deduped: Vec<(SmolStr, Value)> = Vec::with_capacity(entries.len());
            for entry in entries {
                match deduped.last_mut() {
                    Some(last) if last.0 == entry.0 => *last = entry,
                    _ => deduped.push(entry),
                }
            }
            entries = deduped;
        }
        Self { entries }
    }
}

impl fmt::Debug for StructuredData {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl<Q: Borrow<str> + ?Sized> std::ops::Index<&Q> for StructuredData {
    type Output = Value;

    /// The value of `key`.
    ///
    /// # Panics
    ///
    /// When the map has no `key` (as a `BTreeMap` does).
    fn index(&self, key: &Q) -> &Value {
        let key = key.borrow();
        match self.get(key) {
            Some(value) => value,
            None => panic!("no field {key:?} in structured data"),
        }
    }
}

impl<K: Into<SmolStr>> FromIterator<(K, Value)> for StructuredData {
    fn from_iter<T: IntoIterator<Item = (K, Value)>>(iter: T) -> Self {
        Self::from_entries(iter.into_iter().map(|(k, v)| (k.into(), v)).collect())
    }
}

impl<K: Into<SmolStr>> Extend<(K, Value)> for StructuredData {
    fn extend<T: IntoIterator<Item = (K, Value)>>(&mut self, iter: T) {
        for (k, v) in iter {
            self.insert(k, v);
        }
    }
}

impl<K: Into<SmolStr>, const N: usize> From<[(K, Value); N]> for StructuredData {
    fn from(entries: [(K, Value); N]) -> Self {
        entries.into_iter().collect()
    }
}

impl IntoIterator for StructuredData {
    type Item = (SmolStr, Value);
    type IntoIter = vec::IntoIter<(SmolStr, Value)>;

    fn into_iter(self) -> Self::IntoIter {
        self.entries.into_iter()
    }
}

impl<'a> IntoIterator for &'a StructuredData {
    type Item = (&'a SmolStr, &'a Value);
    type IntoIter = Iter<'a>;

    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

impl<'a> IntoIterator for &'a mut StructuredData {
    type Item = (&'a SmolStr, &'a mut Value);
    type IntoIter = IterMut<'a>;

    fn into_iter(self) -> Self::IntoIter {
        self.iter_mut()
    }
}

/// The entries of a [`StructuredData`] in key order (from [`StructuredData::iter`]).
#[derive(Clone, Debug)]
pub struct Iter<'a>(slice::Iter<'a, (SmolStr, Value)>);

impl<'a> Iterator for Iter<'a> {
    type Item = (&'a SmolStr, &'a Value);

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        self.0.next().map(|(k, v)| (k, v))
    }

    #[inline]
    fn size_hint(&self) -> (usize, Option<usize>) {
        self.0.size_hint()
    }
}

impl DoubleEndedIterator for Iter<'_> {
    #[inline]
    fn next_back(&mut self) -> Option<Self::Item> {
        self.0.next_back().map(|(k, v)| (k, v))
    }
}

impl ExactSizeIterator for Iter<'_> {}
impl FusedIterator for Iter<'_> {}

/// The entries of a [`StructuredData`] in key order, values changeable (from
/// [`StructuredData::iter_mut`]).
#[derive(Debug)]
pub struct IterMut<'a>(slice::IterMut<'a, (SmolStr, Value)>);

impl<'a> Iterator for IterMut<'a> {
    type Item = (&'a SmolStr, &'a mut Value);

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        self.0.next().map(|(k, v)| (&*k, v))
    }

    #[inline]
    fn size_hint(&self) -> (usize, Option<usize>) {
        self.0.size_hint()
    }
}

impl DoubleEndedIterator for IterMut<'_> {
    #[inline]
    fn next_back(&mut self) -> Option<Self::Item> {
        self.0.next_back().map(|(k, v)| (&*k, v))
    }
}

impl ExactSizeIterator for IterMut<'_> {}
impl FusedIterator for IterMut<'_> {}

/// One key's place in a [`StructuredData`] (from [`StructuredData::entry`]).
pub enum Entry<'a> {
    /// The key has a value.
    Occupied(OccupiedEntry<'a>),
    /// The key has no value.
    Vacant(VacantEntry<'a>),
}

/// A key that has a value (see [`Entry`]).
pub struct OccupiedEntry<'a> {
    map: &'a mut StructuredData,
    index: usize,
}

/// A key without a value (see [`Entry`]).
pub struct VacantEntry<'a> {
    map: &'a mut StructuredData,
    index: usize,
    key: SmolStr,
}

impl<'a> Entry<'a> {
    /// The value, inserting `default` first if there was none.
    pub fn or_insert(self, default: Value) -> &'a mut Value {
        match self {
            Self::Occupied(e) => e.into_mut(),
            Self::Vacant(e) => e.insert(default),
        }
    }

    /// The value, inserting what `default` returns first if there was none.
    pub fn or_insert_with(self, default: impl FnOnce() -> Value) -> &'a mut Value {
        match self {
            Self::Occupied(e) => e.into_mut(),
            Self::Vacant(e) => e.insert(default()),
        }
    }

    /// The value, inserting [`Value::Null`] first if there was none.
    pub fn or_default(self) -> &'a mut Value {
        self.or_insert(Value::Null)
    }

    /// Calls `change` on the value if there is one.
    #[must_use]
    pub fn and_modify(mut self, change: impl FnOnce(&mut Value)) -> Self {
        if let Self::Occupied(e) = &mut self {
            change(e.get_mut());
        }
        self
    }

    /// The entry's key.
    pub fn key(&self) -> &SmolStr {
        match self {
            Self::Occupied(e) => e.key(),
            Self::Vacant(e) => &e.key,
        }
    }
}

impl<'a> OccupiedEntry<'a> {
    /// The key.
    pub fn key(&self) -> &SmolStr {
        &self.map.entries[self.index].0
    }

    /// The value.
    pub fn get(&self) -> &Value {
        &self.map.entries[self.index].1
    }

    /// The value, to change.
    pub fn get_mut(&mut self) -> &mut Value {
        &mut self.map.entries[self.index].1
    }

    /// The value, to change, for as long as the map is borrowed.
    pub fn into_mut(self) -> &'a mut Value {
        &mut self.map.entries[self.index].1
    }

    /// Replaces the value, returning the old one.
    pub fn insert(&mut self, value: Value) -> Value {
        std::mem::replace(self.get_mut(), value)
    }

    /// Removes the entry, returning its value.
    pub fn remove(self) -> Value {
        self.map.entries.remove(self.index).1
    }
}

impl<'a> VacantEntry<'a> {
    /// The key.
    pub fn key(&self) -> &SmolStr {
        &self.key
    }

    /// Sets the key's value.
    pub fn insert(self, value: Value) -> &'a mut Value {
        self.map.entries.insert(self.index, (self.key, value));
        &mut self.map.entries[self.index].1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(map: &StructuredData) -> Vec<&str> {
        map.keys().map(SmolStr::as_str).collect()
    }

    #[test]
    fn entries_stay_sorted_by_key_whatever_the_insertion_order() {
        let mut map = StructuredData::new();
        for key in ["m", "b", "z", "a", "mm"] {
            assert_eq!(map.insert(key, Value::Int(1)), None);
        }
        assert_eq!(keys(&map), ["a", "b", "m", "mm", "z"]);
        assert_eq!(map.insert("b", Value::Int(2)), Some(Value::Int(1)));
        assert_eq!(map.get("b"), Some(&Value::Int(2)));
        assert_eq!(map.remove("m"), Some(Value::Int(1)));
        assert_eq!(map.remove("m"), None);
        assert_eq!(keys(&map), ["a", "b", "mm", "z"]);
    }

    #[test]
    fn collecting_sorts_and_a_later_duplicate_wins() {
        let map: StructuredData = [
            ("b", Value::Int(1)),
            ("a", Value::Int(2)),
            ("b", Value::Int(3)),
            ("c", Value::Int(4)),
            ("b", Value::Int(5)),
        ]
        .into_iter()
        .collect();
        assert_eq!(keys(&map), ["a", "b", "c"]);
        assert_eq!(map.get("b"), Some(&Value::Int(5)));
    }

    #[test]
    fn entry_inserts_once_and_changes_in_place() {
        let mut map = StructuredData::new();
        *map.entry("n").or_insert(Value::Int(0)) = Value::Int(1);
        map.entry("n")
            .and_modify(|v| *v = Value::Int(2))
            .or_insert(Value::Int(9));
        map.entry("a").or_default();
        assert_eq!(keys(&map), ["a", "n"]);
        assert_eq!(map.get("n"), Some(&Value::Int(2)));
        assert_eq!(map.get("a"), Some(&Value::Null));
    }

    #[test]
    fn maps_with_the_same_entries_are_equal_and_print_as_maps() {
        let a = StructuredData::from([("x", Value::Bool(true)), ("y", Value::Null)]);
        let mut b = StructuredData::new();
        b.insert("y", Value::Null);
        b.insert("x", Value::Bool(true));
        assert_eq!(a, b);
        assert_eq!(format!("{a:?}"), r#"{"x": Bool(true), "y": Null}"#);
    }
}
