//! YAML text to a tree of nodes that remember where they were written.
//!
//! Scalars are resolved as Go's `yaml.v3` (which Conduit uses) resolves them, because
//! that decides which scalars are strings (and so get environment variables expanded)
//! and which integers a file may write. Anchors, aliases and merge keys (`<<`) are
//! supported; a key written twice in one mapping is an error, as in `yaml.v3`.
//!
//! Reading is bounded whatever the text: an alias copies its anchor's node, so a few
//! hundred bytes of nested aliases (an "alias bomb") could expand to billions of nodes.
//! A file may hold at most [`MAX_NODES`] nodes, aliases expanded, and its anchors and
//! aliases may copy at most [`MAX_ALIAS_NODES`] nodes and [`MAX_ALIAS_BYTES`] bytes of
//! scalar text in all; past a bound the document is dropped with an error at the alias (or node)
//! that crossed it, and reading stops. Duplicate keys are found with a hash set, in time
//! linear in the size of the mapping.

use std::collections::HashMap;
use std::collections::hash_map::Entry;

use granit_parser::{Event, Options, Parser, ScalarStyle, ScanError, Span, Tag};

use crate::error::{elide, shown};

/// Nodes a file may hold, aliases expanded.
pub(crate) const MAX_NODES: usize = 1_000_000;
/// Nodes the aliases of a file may copy, in all.
pub(crate) const MAX_ALIAS_NODES: usize = 100_000;
/// Bytes of scalar text the aliases of a file may copy, in all.
pub(crate) const MAX_ALIAS_BYTES: usize = 16 * 1024 * 1024;

/// A 1-based line and column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub(crate) struct Pos {
    pub(crate) line: usize,
    pub(crate) column: usize,
}

impl Pos {
    fn of(span: &Span) -> Self {
        Self {
            line: span.start.line(),
            column: span.start.col() + 1,
        }
    }
}

/// A node and where it starts.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Node {
    pub(crate) pos: Pos,
    pub(crate) value: Value,
}

/// What a node holds.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Value {
    Scalar(Scalar),
    Seq(Vec<Node>),
    /// Entries in file order, merge keys already applied, no duplicate keys.
    Map(Vec<(Node, Node)>),
}

/// A scalar: its text (escapes processed) and what it resolves to.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Scalar {
    pub(crate) text: String,
    pub(crate) kind: ScalarKind,
}

/// What a scalar resolves to, as `yaml.v3` resolves it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ScalarKind {
    /// `~`, `null`, an empty plain scalar, or `!!null`.
    Null,
    /// `true`, `False`, ... or `!!bool`.
    Bool,
    /// An integer (`5`, `-0x1F`, `1_000`) or `!!int`.
    Int,
    /// A float (`1.5`, `.inf`) or `!!float`.
    Float,
    /// A plain `<<`: a merge key.
    Merge,
    /// A string: quoted, block, plain text that is nothing else, or `!!str`.
    Str,
    /// Any other tag (custom tags, `!!binary`, `!!timestamp`, ...).
    Other,
}

impl Node {
    /// A short description of what the node is, for type errors.
    pub(crate) fn describe(&self) -> String {
        match &self.value {
            Value::Seq(_) => "a list".to_owned(),
            Value::Map(_) => "a mapping".to_owned(),
            Value::Scalar(s) => match s.kind {
                ScalarKind::Null => "null".to_owned(),
                ScalarKind::Str | ScalarKind::Other => shown(&s.text),
                _ => elide(&s.text),
            },
        }
    }

    /// Whether the node is a null scalar.
    pub(crate) fn is_null(&self) -> bool {
        matches!(&self.value, Value::Scalar(s) if s.kind == ScalarKind::Null)
    }
}

/// One YAML document of a file.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Document {
    /// The root node; `None` for an empty document.
    pub(crate) root: Option<Node>,
    /// Where the document starts.
    pub(crate) pos: Pos,
}

/// A problem found while reading YAML.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct YamlError {
    pub(crate) pos: Pos,
    pub(crate) message: String,
    /// A syntax error (the document was dropped) rather than a structural one such as a
    /// duplicate key (the document was kept).
    pub(crate) syntax: bool,
}

/// Parses every document of `text`. Documents with a syntax error are left out and
/// reported; reading resumes at the next document.
pub(crate) fn parse(text: &str) -> (Vec<Document>, Vec<YamlError>) {
    let mut options = Options::default();
    // Go's yaml.v3 is a port of libyaml: a block scalar on the file's last line gets no
    // line feed there.
    options.block_scalar_eof_without_line_feed = true;
    let mut parser = Parser::new_from_str_with_options(text, options);
    let mut builder = Builder::default();
    loop {
        match parser.next_event() {
            None => break,
            Some(Ok((event, span))) => {
                if builder.event(event, &span) || builder.over_budget {
                    break;
                }
            }
            Some(Err(error)) => {
                builder.syntax_error(&error);
                match parser.proceed_next_document() {
                    Ok(true) => continue,
                    Ok(false) => break,
                    Err(error) => {
                        builder.syntax_error(&error);
                        break;
                    }
                }
            }
        }
    }
    (builder.documents, builder.errors)
}

/// An open collection.
enum Frame {
    Seq {
        pos: Pos,
        anchor: usize,
        items: Vec<Node>,
        size: Size,
    },
    Map {
        pos: Pos,
        anchor: usize,
        /// Keys and values, alternating.
        items: Vec<Node>,
        size: Size,
    },
}

/// The size of a node: what copying it through an alias costs.
#[derive(Clone, Copy, Default)]
struct Size {
    /// The node and every node under it.
    nodes: usize,
    /// The bytes of scalar text in it.
    bytes: usize,
}

impl Size {
    fn add(&mut self, other: Size) {
        self.nodes = self.nodes.saturating_add(other.nodes);
        self.bytes = self.bytes.saturating_add(other.bytes);
    }
}

/// Builds documents from parser events.
#[derive(Default)]
struct Builder {
    documents: Vec<Document>,
    errors: Vec<YamlError>,
    stack: Vec<Frame>,
    anchors: HashMap<usize, (Node, Size)>,
    doc_pos: Pos,
    root: Option<Node>,
    /// Nodes of the file so far, aliases expanded.
    nodes: usize,
    /// What aliases copied so far.
    copied: Size,
    /// Set when a bound was crossed: the document is dropped and reading stops.
    over_budget: bool,
}

impl Builder {
    /// Handles one event; returns true at the end of the stream.
    fn event(&mut self, event: Event<'_>, span: &Span) -> bool {
        let pos = Pos::of(span);
        match event {
            Event::StreamEnd => return true,
            Event::DocumentStart(..) => {
                self.stack.clear();
                self.anchors.clear();
                self.root = None;
                self.doc_pos = pos;
            }
            Event::DocumentEnd => {
                let root = self.root.take().filter(|root| !root.is_null());
                self.documents.push(Document {
                    root,
                    pos: self.doc_pos,
                });
            }
            Event::Scalar(text, style, anchor, tag) => {
                if !self.count(1, pos) {
                    return false;
                }
                let kind = resolve(&text, style, tag.as_deref());
                let size = Size {
                    nodes: 1,
                    bytes: text.len(),
                };
                let node = Node {
                    pos,
                    value: Value::Scalar(Scalar {
                        text: text.into_owned(),
                        kind,
                    }),
                };
                self.complete(node, anchor, size);
            }
            Event::Alias(id) => {
                let Some(&(_, size)) = self.anchors.get(&id) else {
                    return false;
                };
                if !self.expand(size, pos) {
                    return false;
                }
                if let Some((node, _)) = self.anchors.get(&id) {
                    let node = node.clone();
                    self.complete(node, 0, size);
                }
            }
            Event::SequenceStart(_, anchor, _) | Event::MappingStart(_, anchor, _)
                if self.count(1, pos) =>
            {
                let (items, size) = (Vec::new(), Size { nodes: 1, bytes: 0 });
                self.stack
                    .push(if matches!(event, Event::SequenceStart(..)) {
                        Frame::Seq {
                            pos,
                            anchor,
                            items,
                            size,
                        }
                    } else {
                        Frame::Map {
                            pos,
                            anchor,
                            items,
                            size,
                        }
                    });
            }
            Event::SequenceEnd | Event::MappingEnd => match self.stack.pop() {
                Some(Frame::Seq {
                    pos,
                    anchor,
                    items,
                    size,
                }) => {
                    let node = Node {
                        pos,
                        value: Value::Seq(items),
                    };
                    self.complete(node, anchor, size);
                }
                Some(Frame::Map {
                    pos,
                    anchor,
                    items,
                    size,
                }) => {
                    let entries = self.mapping(items);
                    let node = Node {
                        pos,
                        value: Value::Map(entries),
                    };
                    self.complete(node, anchor, size);
                }
                None => {}
            },
            _ => {}
        }
        false
    }

    /// Counts `nodes` more nodes in the file; false (after reporting it) when that
    /// crosses [`MAX_NODES`].
    fn count(&mut self, nodes: usize, pos: Pos) -> bool {
        self.nodes = self.nodes.saturating_add(nodes);
        if self.nodes > MAX_NODES {
            self.over(
                pos,
                format!(
                    "the file has more than {MAX_NODES} YAML nodes (aliases expanded); \
                     Funnel reads no larger configuration"
                ),
            );
            return false;
        }
        true
    }

    /// Accounts for an alias copying a node of `size` into the document; false (after
    /// reporting it) when that crosses a bound.
    fn expand(&mut self, size: Size, pos: Pos) -> bool {
        self.copy(size, pos) && self.count(size.nodes, pos)
    }

    /// Accounts for copying a node of `size` (an anchor kept, an alias expanded); false
    /// (after reporting it) when that crosses a bound.
    fn copy(&mut self, size: Size, pos: Pos) -> bool {
        self.copied.add(size);
        if self.copied.nodes > MAX_ALIAS_NODES || self.copied.bytes > MAX_ALIAS_BYTES {
            self.over(
                pos,
                format!(
                    "anchors and aliases copy more than {MAX_ALIAS_NODES} nodes or {} MiB \
                     in this file (nested aliases multiply); write the values out or use \
                     fewer aliases",
                    MAX_ALIAS_BYTES / (1024 * 1024)
                ),
            );
            return false;
        }
        true
    }

    /// Reports a crossed bound: the document is dropped and reading stops.
    fn over(&mut self, pos: Pos, message: String) {
        self.errors.push(YamlError {
            pos,
            message,
            syntax: true,
        });
        self.over_budget = true;
        self.stack.clear();
        self.anchors.clear();
        self.root = None;
    }

    /// Records a finished node of `size` in its parent (or as the document's root).
    fn complete(&mut self, node: Node, anchor: usize, size: Size) {
        // Keeping an anchor copies its node too: nested anchors would otherwise copy
        // quadratically much.
        if anchor != 0 && self.copy(size, node.pos) {
            self.anchors.insert(anchor, (node.clone(), size));
        }
        match self.stack.last_mut() {
            Some(
                Frame::Seq {
                    items, size: sum, ..
                }
                | Frame::Map {
                    items, size: sum, ..
                },
            ) => {
                items.push(node);
                sum.add(size);
            }
            None => self.root = Some(node),
        }
    }

    /// Pairs up keys and values, applies merge keys and rejects duplicate keys, in time
    /// linear in the number of entries.
    fn mapping(&mut self, items: Vec<Node>) -> Vec<(Node, Node)> {
        let mut explicit: Vec<(Node, Node)> = Vec::with_capacity(items.len() / 2);
        // Each key's text and the line it was first written on.
        let mut seen: HashMap<String, usize> = HashMap::with_capacity(items.len() / 2);
        let mut merges: Vec<Node> = Vec::new();
        let mut items = items.into_iter();
        while let (Some(key), Some(value)) = (items.next(), items.next()) {
            let Value::Scalar(scalar) = &key.value else {
                self.errors.push(YamlError {
                    pos: key.pos,
                    message: format!("a mapping key must be a scalar, found {}", key.describe()),
                    syntax: false,
                });
                continue;
            };
            if scalar.kind == ScalarKind::Merge {
                merges.push(value);
                continue;
            }
            match seen.entry(scalar.text.clone()) {
                Entry::Occupied(first) => {
                    self.errors.push(YamlError {
                        pos: key.pos,
                        message: format!(
                            "mapping key {} already defined at line {}",
                            shown(&scalar.text),
                            first.get()
                        ),
                        syntax: false,
                    });
                    continue;
                }
                Entry::Vacant(slot) => {
                    slot.insert(key.pos.line);
                }
            }
            explicit.push((key, value));
        }
        for merge in merges {
            let sources = match merge.value {
                Value::Map(entries) => vec![entries],
                Value::Seq(nodes) => {
                    let mut sources = Vec::new();
                    for node in nodes {
                        match node.value {
                            Value::Map(entries) => sources.push(entries),
                            _ => self.merge_error(node.pos),
                        }
                    }
                    sources
                }
                Value::Scalar(_) => {
                    self.merge_error(merge.pos);
                    Vec::new()
                }
            };
            for (key, value) in sources.into_iter().flatten() {
                let Value::Scalar(scalar) = &key.value else {
                    continue;
                };
                if let Entry::Vacant(slot) = seen.entry(scalar.text.clone()) {
                    slot.insert(key.pos.line);
                    explicit.push((key, value));
                }
            }
        }
        explicit
    }

    fn merge_error(&mut self, pos: Pos) {
        self.errors.push(YamlError {
            pos,
            message: "a merge key (<<) takes a mapping or a list of mappings".to_owned(),
            syntax: false,
        });
    }

    fn syntax_error(&mut self, error: &ScanError) {
        let marker = error.marker();
        self.errors.push(YamlError {
            pos: Pos {
                line: marker.line(),
                column: marker.col() + 1,
            },
            message: format!("YAML syntax error: {}", error.info()),
            syntax: true,
        });
        self.stack.clear();
        self.root = None;
    }
}

/// Resolves a scalar as `yaml.v3` does.
fn resolve(text: &str, style: ScalarStyle, tag: Option<&Tag>) -> ScalarKind {
    if let Some(tag) = tag {
        return match tag.core_suffix() {
            Some("str") => ScalarKind::Str,
            Some("null") => ScalarKind::Null,
            Some("bool") => ScalarKind::Bool,
            Some("int") => ScalarKind::Int,
            Some("float") => ScalarKind::Float,
            // The non-specific tag `!` makes a string.
            _ if tag.handle() == "!" && tag.suffix().is_empty() => ScalarKind::Str,
            _ => ScalarKind::Other,
        };
    }
    if style != ScalarStyle::Plain {
        return ScalarKind::Str;
    }
    match text {
        "" | "~" | "null" | "Null" | "NULL" => ScalarKind::Null,
        "true" | "True" | "TRUE" | "false" | "False" | "FALSE" => ScalarKind::Bool,
        ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF" | "-.inf" | "-.Inf" | "-.INF"
        | ".nan" | ".NaN" | ".NAN" => ScalarKind::Float,
        "<<" => ScalarKind::Merge,
        _ if parse_int(text).is_some() => ScalarKind::Int,
        _ if is_float(text) => ScalarKind::Float,
        _ => ScalarKind::Str,
    }
}

/// Parses an integer as `yaml.v3` does (Go's `strconv.ParseInt(s, 0, 64)` after removing
/// `_`): optional sign, then decimal, `0x` hex, `0o` or leading-`0` octal, or `0b` binary.
pub(crate) fn parse_int(text: &str) -> Option<i64> {
    let cleaned: String = text.chars().filter(|c| *c != '_').collect();
    let (negative, digits) = match cleaned.as_bytes().first()? {
        b'-' => (true, &cleaned[1..]),
        b'+' => (false, &cleaned[1..]),
        _ => (false, cleaned.as_str()),
    };
    let lower = digits.to_ascii_lowercase();
    let (radix, digits) = if let Some(rest) = lower.strip_prefix("0x") {
        (16, rest)
    } else if let Some(rest) = lower.strip_prefix("0o") {
        (8, rest)
    } else if let Some(rest) = lower.strip_prefix("0b") {
        (2, rest)
    } else if lower.len() > 1 && lower.starts_with('0') {
        (8, &lower[1..])
    } else {
        (10, lower.as_str())
    };
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    let magnitude = i128::from_str_radix(digits, radix).ok()?;
    let value = if negative { -magnitude } else { magnitude };
    i64::try_from(value).ok()
}

/// `yaml.v3`'s float pattern: `^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$`.
fn is_float(text: &str) -> bool {
    let b = text.as_bytes();
    let mut i = 0;
    if i < b.len() && (b[i] == b'-' || b[i] == b'+') {
        i += 1;
    }
    let digits = |i: &mut usize| {
        let start = *i;
        while *i < b.len() && b[*i].is_ascii_digit() {
            *i += 1;
        }
        *i - start
    };
    if i < b.len() && b[i] == b'.' {
        i += 1;
        if digits(&mut i) == 0 {
            return false;
        }
    } else {
        if digits(&mut i) == 0 {
            return false;
        }
        if i < b.len() && b[i] == b'.' {
            i += 1;
            digits(&mut i);
        }
    }
    if i < b.len() && (b[i] == b'e' || b[i] == b'E') {
        i += 1;
        if i < b.len() && (b[i] == b'-' || b[i] == b'+') {
            i += 1;
        }
        if digits(&mut i) == 0 {
            return false;
        }
    }
    i == b.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root(text: &str) -> Node {
        let (mut docs, errors) = parse(text);
        assert_eq!(errors, vec![]);
        docs.remove(0).root.unwrap()
    }

    fn entries(node: &Node) -> &[(Node, Node)] {
        match &node.value {
            Value::Map(entries) => entries,
            other => panic!("not a map: {other:?}"),
        }
    }

    fn kind(node: &Node) -> ScalarKind {
        match &node.value {
            Value::Scalar(s) => s.kind,
            other => panic!("not a scalar: {other:?}"),
        }
    }

    #[test]
    fn every_key_and_value_knows_its_line_and_column() {
        let node = root("a: 1\nb:\n  c: \"x\"\n");
        let e = entries(&node);
        assert_eq!(node.pos, Pos { line: 1, column: 1 });
        assert_eq!(e[0].0.pos, Pos { line: 1, column: 1 });
        assert_eq!(e[0].1.pos, Pos { line: 1, column: 4 });
        assert_eq!(e[1].1.pos, Pos { line: 3, column: 3 });
        let inner = entries(&e[1].1);
        assert_eq!(inner[0].0.pos, Pos { line: 3, column: 3 });
        assert_eq!(inner[0].1.pos, Pos { line: 3, column: 6 });
    }

    #[test]
    fn a_mapping_in_a_block_list_starts_at_its_first_key() {
        let node = root("list:\n  - id: a\n    x: 1\n");
        let Value::Seq(items) = &entries(&node)[0].1.value else {
            panic!("not a list");
        };
        assert_eq!(items[0].pos, Pos { line: 2, column: 5 });
    }

    #[test]
    fn scalars_resolve_as_in_go_yaml_v3() {
        let node = root(
            "a: 5\nb: '5'\nc: true\nd: ~\ne:\nf: 1.5\ng: ${X}\nh: 0x1F\ni: !!str 5\nj: yes\nk: !custom x\n",
        );
        let kinds: Vec<ScalarKind> = entries(&node).iter().map(|(_, v)| kind(v)).collect();
        use ScalarKind::*;
        assert_eq!(
            kinds,
            vec![Int, Str, Bool, Null, Null, Float, Str, Int, Str, Str, Other]
        );
    }

    #[test]
    fn integers_follow_go_base_prefixes() {
        assert_eq!(parse_int("42"), Some(42));
        assert_eq!(parse_int("-7"), Some(-7));
        assert_eq!(parse_int("+7"), Some(7));
        assert_eq!(parse_int("1_000"), Some(1000));
        assert_eq!(parse_int("0x1f"), Some(31));
        assert_eq!(parse_int("0o17"), Some(15));
        assert_eq!(parse_int("017"), Some(15));
        assert_eq!(parse_int("0b101"), Some(5));
        assert_eq!(parse_int("0"), Some(0));
        assert_eq!(parse_int("abc"), None);
        assert_eq!(parse_int("1.5"), None);
        assert_eq!(parse_int("99999999999999999999"), None);
        assert_eq!(parse_int(""), None);
        assert_eq!(parse_int("-"), None);
    }

    #[test]
    fn floats_follow_the_go_yaml_v3_pattern() {
        for yes in ["1.5", "-1.", ".5", "1e3", "+2.5E-3"] {
            assert!(is_float(yes), "{yes}");
        }
        for no in ["1.5.1", "e3", ".", "1e", "abc", "1.2.3"] {
            assert!(!is_float(no), "{no}");
        }
    }

    #[test]
    fn a_duplicate_key_is_an_error_naming_the_first_line() {
        let (_, errors) = parse("a: 1\nb: 2\na: 3\n");
        assert_eq!(
            errors,
            vec![YamlError {
                pos: Pos { line: 3, column: 1 },
                message: "mapping key \"a\" already defined at line 1".to_owned(),
                syntax: false,
            }]
        );
    }

    #[test]
    fn aliases_and_merge_keys_are_resolved() {
        let node = root("base: &b\n  x: 1\n  y: 2\nuse:\n  <<: *b\n  y: 3\n");
        let merged = entries(&entries(&node)[1].1);
        let pairs: Vec<(&str, &str)> = merged
            .iter()
            .map(|(k, v)| match (&k.value, &v.value) {
                (Value::Scalar(k), Value::Scalar(v)) => (k.text.as_str(), v.text.as_str()),
                _ => panic!("not scalars"),
            })
            .collect();
        assert_eq!(pairs, vec![("y", "3"), ("x", "1")]);
    }

    #[test]
    fn a_syntax_error_drops_only_its_document() {
        let (docs, errors) = parse("a: 1\n---\nb: [1, 2\n---\nc: 3\n");
        assert_eq!(docs.len(), 2);
        assert_eq!(errors.len(), 1);
        assert!(errors[0].syntax);
        assert!(errors[0].message.starts_with("YAML syntax error: "));
    }

    #[test]
    fn empty_documents_have_no_root() {
        let (docs, errors) = parse("# only a comment\n");
        assert!(errors.is_empty());
        assert!(docs.iter().all(|d| d.root.is_none()));
    }
}
