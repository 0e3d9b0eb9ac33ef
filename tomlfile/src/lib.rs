//! Errors of TOML files that name the file, the line, the field and the value.
//!
//! The EMS reads four kinds of TOML file: the gateway's site file, register-map profiles
//! (`ems-devices`), tariffs (`ems-strategies`) and scenarios (`ems-testing`). All of them report
//! a bad file through [`SpannedError`], built by a [`Source`] (the file's name and text):
//!
//! * [`Source::decode`] deserializes the text; a syntax error, a wrong type, a missing or an
//!   unknown field becomes an error with the field's dotted path (`devices.battery.poll_ms`),
//!   the line and column, and serde's wording made readable ([`friendly`]: `expected an integer,
//!   got "fast"`);
//! * [`Source::at`] places a validation error at a [`Spanned`] value's line;
//! * [`Source::at_path`] finds the line of a dotted path (`fault[2].at`) for loaders that
//!   deserialize into plain types.
//!
//! This crate depends on no crate of the EMS, so crates that must stay independent of each other
//! (`ems-devices`, `ems-strategies`) can both use it.

#![forbid(unsafe_code)]

use serde::de::{self, DeserializeOwned, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

pub use toml::Spanned;

/// A TOML file that cannot be used: where, which field, which value and why.
///
/// Displayed as `FILE line L: FIELD = VALUE: MESSAGE`; parts that are not known are left out
/// (`FILE: MESSAGE` for an unreadable file). A syntax error, which has no field, shows the column
/// too (`FILE line 3, column 9: …`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpannedError {
    /// The file (or the name the text was given, e.g. `<inline>`).
    pub file: PathBuf,
    /// 1-based line, if known.
    pub line: Option<u32>,
    /// 1-based column (in characters), if known.
    pub column: Option<u32>,
    /// The field's dotted path (`register[7].type`); empty when the error is not about a field.
    pub field: String,
    /// The offending value as written, when it is not already part of the message.
    pub value: Option<String>,
    /// What is wrong.
    pub message: String,
}

impl SpannedError {
    /// An error about the whole file (no line, no field).
    #[must_use]
    pub fn new(file: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        Self {
            file: file.into(),
            line: None,
            column: None,
            field: String::new(),
            value: None,
            message: message.into(),
        }
    }

    /// The same error with the value named separately (`FIELD = VALUE: MESSAGE`).
    #[must_use]
    pub fn with_value(mut self, value: impl fmt::Display) -> Self {
        self.value = Some(value.to_string());
        self
    }
}

impl fmt::Display for SpannedError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, " line {line}")?;
            // A field already says where; the column helps only inside a line the parser
            // could not read.
            if let (Some(column), true) = (self.column, self.field.is_empty()) {
                write!(f, ", column {column}")?;
            }
        }
        f.write_str(": ")?;
        match (self.field.is_empty(), &self.value) {
            (false, Some(v)) => write!(f, "{} = {v}: ", self.field)?,
            (false, None) => write!(f, "{}: ", self.field)?,
            (true, Some(v)) => write!(f, "{v}: ")?,
            (true, None) => {}
        }
        f.write_str(&self.message)
    }
}

impl std::error::Error for SpannedError {}

/// A TOML text and the name it is reported under.
#[derive(Debug, Clone, Copy)]
pub struct Source<'a> {
    file: &'a Path,
    text: &'a str,
}

impl<'a> Source<'a> {
    /// `text`, read from (or named) `file`.
    #[must_use]
    pub const fn new(file: &'a Path, text: &'a str) -> Self {
        Self { file, text }
    }

    /// The file name.
    #[must_use]
    pub const fn file(&self) -> &'a Path {
        self.file
    }

    /// The text.
    #[must_use]
    pub const fn text(&self) -> &'a str {
        self.text
    }

    /// 1-based (line, column) of a byte offset; the column counts characters.
    #[must_use]
    pub fn position(&self, offset: usize) -> (usize, usize) {
        let before = self.text.get(..offset).unwrap_or(self.text);
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let column = before.get(line_start..).map_or(0, |l| l.chars().count()) + 1;
        (line, column)
    }

    /// An error about the whole file.
    #[must_use]
    pub fn error(&self, message: impl Into<String>) -> SpannedError {
        SpannedError::new(self.file, message)
    }

    /// An error at `span` about `field`. The empty span `0..0` is that of a default value (not in
    /// the file) and gives no line.
    #[must_use]
    pub fn at_span(
        &self,
        field: &str,
        span: Option<Range<usize>>,
        message: impl Into<String>,
    ) -> SpannedError {
        let (line, column) = match span {
            Some(s) if !(s.start == 0 && s.end == 0) => {
                let (l, c) = self.position(s.start);
                let n = |x: usize| u32::try_from(x).unwrap_or(u32::MAX);
                (Some(n(l)), Some(n(c)))
            }
            _ => (None, None),
        };
        SpannedError { line, column, field: field.to_owned(), ..self.error(message) }
    }

    /// An error at the line of `value`.
    #[must_use]
    pub fn at<T>(&self, field: &str, value: &Spanned<T>, message: impl Into<String>) -> SpannedError {
        self.at_span(field, Some(value.span()), message)
    }

    /// An error at the line of `value`, or without a line if it is absent.
    #[must_use]
    pub fn at_opt<T>(
        &self,
        field: &str,
        value: Option<&Spanned<T>>,
        message: impl Into<String>,
    ) -> SpannedError {
        self.at_span(field, value.map(Spanned::span), message)
    }

    /// An error about the dotted `field` path (`import.weekday.slots[1].to`), at the line where
    /// the file sets it (or the nearest enclosing table it sets); without a line if the file
    /// does not name it at all.
    #[must_use]
    pub fn at_path(&self, field: &str, message: impl Into<String>) -> SpannedError {
        self.at_span(field, self.locate(field), message)
    }

    /// Where the file sets the dotted `path`: the span of its value, or of the deepest enclosing
    /// table or array the file has; `None` if not even the first key is there (or the text is not
    /// TOML).
    #[must_use]
    pub fn locate(&self, path: &str) -> Option<Range<usize>> {
        let root: Node = toml::from_str(self.text).ok()?;
        let mut node = &root;
        let mut found = None;
        for step in steps(path) {
            let next = match (node, step) {
                (Node::Table(entries), Step::Key(k)) => {
                    entries.iter().find(|(key, _)| key == k).map(|(_, v)| v)
                }
                (Node::Array(items), Step::Index(i)) => items.get(i),
                _ => None,
            };
            let Some(next) = next else { break };
            found = Some(next.span());
            node = next.get_ref();
        }
        found
    }

    /// Deserialize the text. A syntax error, a wrong type, a missing or an unknown field is an
    /// error naming the line and the field's full path; a missing key that is one of
    /// `required_tables` (dotted paths) is reported as `missing section [path]`.
    ///
    /// # Errors
    /// The first problem in the file, as a [`SpannedError`].
    pub fn decode<T: DeserializeOwned>(&self, required_tables: &[&str]) -> Result<T, SpannedError> {
        serde_path_to_error::deserialize(toml::Deserializer::new(self.text))
            .map_err(|e| self.decode_error(&e, required_tables))
    }

    fn decode_error(
        &self,
        e: &serde_path_to_error::Error<toml::de::Error>,
        required_tables: &[&str],
    ) -> SpannedError {
        use serde_path_to_error::Segment;
        let inner = e.inner();
        let mut field = String::new();
        for segment in e.path().iter() {
            match segment {
                // `Spanned` is a struct with private keys (`$__serde_spanned_private_value`)
                // inside the toml deserializer.
                Segment::Map { key } if key.starts_with("$__") => {}
                Segment::Map { key } | Segment::Enum { variant: key } => {
                    if !field.is_empty() {
                        field.push('.');
                    }
                    field.push_str(key);
                }
                Segment::Seq { index } => field.push_str(&format!("[{index}]")),
                Segment::Unknown => {}
            }
        }
        let raw = inner.message().trim().replace('\n', "; ");
        let (field, message) = match raw.strip_prefix("missing field `").and_then(|r| r.strip_suffix('`')) {
            Some(key) => {
                let full = if field.is_empty() { key.to_owned() } else { format!("{field}.{key}") };
                if required_tables.contains(&full.as_str()) {
                    (String::new(), format!("missing section [{full}]"))
                } else {
                    (full, "missing (required)".to_owned())
                }
            }
            None => match raw.strip_prefix("unknown field `").and_then(|r| r.split_once('`')) {
                // The path ends with the unknown key itself; name the table it is in.
                Some((key, _)) => {
                    let table = field.strip_suffix(key).unwrap_or(&field).trim_end_matches('.').to_owned();
                    (table, raw.clone())
                }
                None => (field, friendly(&raw)),
            },
        };
        let section = field.is_empty() && message.starts_with("missing section");
        let mut e = self.at_span(&field, inner.span(), message);
        if section {
            // The line of the enclosing table says where the section is missing; a column
            // inside it would point at nothing.
            e.column = None;
        }
        e
    }
}

/// serde's `invalid type: string "fast", expected u64` → `expected an integer, got "fast"`;
/// other messages unchanged.
#[must_use]
pub fn friendly(message: &str) -> String {
    let (rest, range) = if let Some(r) = message.strip_prefix("invalid type: ") {
        (r, false)
    } else if let Some(r) = message.strip_prefix("invalid value: ") {
        (r, true)
    } else {
        return message.to_owned();
    };
    let Some((got, expected)) = rest.rsplit_once(", expected ") else {
        return message.to_owned();
    };
    let expected = match (expected, range) {
        ("u8", true) => "an integer 0..=255",
        ("u16", true) => "an integer 0..=65535",
        ("u32", true) => "an integer 0..=4294967295",
        ("u64" | "usize", true) => "an integer >= 0",
        ("u8" | "u16" | "u32" | "u64" | "usize" | "i8" | "i16" | "i32" | "i64", _) => "an integer",
        ("f32" | "f64", _) => "a number",
        ("a boolean", _) => "true or false",
        ("a sequence", _) => "an array",
        (e, _) if e.starts_with("struct ") || e == "a map" => "a table",
        (e, _) => e,
    };
    let got = if let Some(s) = got.strip_prefix("string ") {
        s.to_owned()
    } else if let Some(v) = ["integer `", "floating point `", "boolean `"]
        .iter()
        .find_map(|p| got.strip_prefix(p).and_then(|v| v.strip_suffix('`')))
    {
        v.to_owned()
    } else {
        match got {
            "map" => "a table".to_owned(),
            "sequence" => "an array".to_owned(),
            other => other.to_owned(),
        }
    };
    format!("expected {expected}, got {got}")
}

/// One step of a dotted path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step<'p> {
    Key(&'p str),
    Index(usize),
}

/// `a.b[2].c` → `a`, `b`, `2`, `c`; a part that is not understood ends the path.
fn steps(path: &str) -> Vec<Step<'_>> {
    let mut out = Vec::new();
    for part in path.split('.') {
        let (key, mut rest) = part.split_once('[').map_or((part, ""), |(k, r)| (k, r));
        if !key.is_empty() {
            out.push(Step::Key(key));
        }
        while !rest.is_empty() {
            let Some((index, after)) = rest.split_once(']') else { return out };
            let Ok(i) = index.parse() else { return out };
            out.push(Step::Index(i));
            rest = after.strip_prefix('[').unwrap_or(after);
        }
    }
    out
}

/// The shape of a TOML document with the span of every value, for [`Source::locate`].
#[derive(Debug)]
enum Node {
    Table(Vec<(String, Spanned<Node>)>),
    Array(Vec<Spanned<Node>>),
    Leaf,
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(NodeVisitor)
    }
}

struct NodeVisitor;

impl<'de> Visitor<'de> for NodeVisitor {
    type Value = Node;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any TOML value")
    }
    fn visit_bool<E>(self, _: bool) -> Result<Node, E> {
        Ok(Node::Leaf)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Node, E> {
        Ok(Node::Leaf)
    }
    fn visit_u64<E>(self, _: u64) -> Result<Node, E> {
        Ok(Node::Leaf)
    }
    fn visit_f64<E>(self, _: f64) -> Result<Node, E> {
        Ok(Node::Leaf)
    }
    fn visit_str<E>(self, _: &str) -> Result<Node, E> {
        Ok(Node::Leaf)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<Spanned<Node>>()? {
            items.push(item);
        }
        Ok(Node::Array(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Node, A::Error> {
        let mut entries = Vec::new();
        while let Some(key) = map.next_key::<String>()? {
            // A date or time is a map with one private key inside the toml deserializer.
            if key.starts_with("$__") {
                map.next_value::<IgnoredAny>()?;
                return Ok(Node::Leaf);
            }
            entries.push((key, map.next_value::<Spanned<Node>>()?));
        }
        Ok(Node::Table(entries))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // Tests fail loudly on a wrong fixture.
    use super::*;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)] // Fields are read by the deserializer only.
    struct File {
        site: Site,
        #[serde(default)]
        fault: Vec<Fault>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)] // Fields are read by the deserializer only.
    struct Site {
        name: String,
        cycle_ms: Spanned<u64>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)] // Fields are read by the deserializer only.
    struct Fault {
        at: String,
    }

    fn decode(text: &str) -> String {
        Source::new(Path::new("x.toml"), text).decode::<File>(&["site"]).unwrap_err().to_string()
    }

    #[test]
    fn decode_errors_name_line_field_and_value() {
        assert_eq!(
            decode("[site]\nname = \"a\"\ncycle_ms = \"fast\"\n"),
            "x.toml line 3: site.cycle_ms: expected an integer, got \"fast\""
        );
        assert_eq!(decode("[site]\nname = \"a\"\n"), "x.toml line 1: site.cycle_ms: missing (required)");
        assert!(decode("\n").ends_with(": missing section [site]"), "{}", decode("\n"));
        let e = decode("[site]\nname = \"a\"\ncycle_ms = 1\ncolour = 2\n");
        assert!(e.starts_with("x.toml line 4: site: unknown field `colour`"), "{e}");
        let e = decode("[site\n");
        assert!(e.starts_with("x.toml line 1, column 6: "), "{e}");
        let e = decode("[site]\nname = \"a\"\ncycle_ms = 1\n[[fault]]\nat = 5\n");
        assert_eq!(e, "x.toml line 5: fault[0].at: expected a string, got 5");
    }

    #[test]
    fn a_dotted_path_is_found_in_the_text() {
        let text = "[site]\nname = \"a\"\ncycle_ms = 1\nday = 2018-12-25\n[[fault]]\nat = \"1m\"\n[[fault]]\nat = \"1x\"\n";
        let src = Source::new(Path::new("x.toml"), text);
        let line = |p: &str| src.at_path(p, "m").line;
        assert_eq!(line("fault[1].at"), Some(8));
        assert_eq!(line("site.cycle_ms"), Some(3));
        assert_eq!(line("site.day"), Some(4));
        // Not set: the enclosing table's line; not there at all: no line.
        assert_eq!(line("fault[1].kind"), line("fault[1]"));
        assert_eq!(line("battery.cells"), None);
        let e = src.at_path("fault[1].at", "is not a duration").with_value("'1x'");
        assert_eq!(e.to_string(), "x.toml line 8: fault[1].at = '1x': is not a duration");
    }

    #[test]
    fn friendly_rewords_serde() {
        assert_eq!(friendly("invalid type: string \"x\", expected f64"), "expected a number, got \"x\"");
        assert_eq!(
            friendly("invalid value: integer `-1`, expected u8"),
            "expected an integer 0..=255, got -1"
        );
        assert_eq!(friendly("something else"), "something else");
    }
}
