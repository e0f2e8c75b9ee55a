//! Raw documents from the text of one YAML or JSON file: every document of a multi-document
//! stream, with the items of `List` documents (`kind: List`, `ServiceList`, ... as `kubectl get -o
//! yaml` writes them) expanded, each with the line it starts on. Pure: no I/O, no knowledge of
//! kinds beyond the `List` convention; turning documents into objects is [`super::decode`]'s job.
//!
//! Conversion to JSON values follows serde-saphyr, configured as follows:
//! - Booleans are YAML 1.2 core (`true`/`false` in any case); `yes`, `no`, `on`, `off` stay
//!   strings, so an unquoted label value like `enabled: yes` still fits a string field.
//! - Integers with a leading zero are octal (`0644` is 420), as kubectl reads them, so file modes
//!   written by hand keep their meaning; `0o644` and `0x1F` work too.
//! - Anchors, aliases and `<<` merge keys are expanded; tags are ignored except the core ones
//!   (`!!str 123` is a string); integer and boolean keys become strings; null and complex keys,
//!   duplicate keys and non-finite floats (`.inf`, `1e400`) are errors, since JSON has no place
//!   for them and kubectl refuses duplicate keys too.
//! - Unquoted timestamps stay strings; a leading-zero number that is not octal (`08`) becomes a
//!   float, a serde-saphyr quirk.

use std::collections::BTreeMap;
use std::fmt;

use serde::Deserialize;
use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::Value;
use serde_saphyr::{Location, MessageFormatter, Spanned, UserMessageFormatter};

/// One document of a file, or one item of a `List` document.
#[derive(Debug, Clone, PartialEq)]
pub struct RawDocument {
    /// 1-based line of the document's (or item's) first node, past any `---` and comments.
    pub line: usize,
    pub value: Value,
}

/// Why a file is not valid YAML; positions are 1-based.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}, column {column}: {message}")]
pub struct YamlError {
    pub line: usize,
    pub column: usize,
    pub message: String,
}

/// Parses the text of a file into its documents, in file order. Empty and comment-only
/// documents, and documents that are just `null`, are skipped.
pub fn parse_documents(text: &str) -> Result<Vec<RawDocument>, YamlError> {
    let documents = serde_saphyr::from_multiple_with_options::<Spanned<Value>>(text, options())
        .map_err(|error| yaml_error(&error))?;
    // Item positions need a second pass over the text, so it only runs when there is a list.
    let item_lines = if documents.iter().any(|document| is_list(&document.value)) {
        serde_saphyr::from_multiple_with_options::<Spanned<ItemLines>>(text, options())
            .map_err(|error| yaml_error(&error))?
            .into_iter()
            .map(|document| (position(document.referenced), document.value.0))
            .collect()
    } else {
        BTreeMap::new()
    };

    let mut raw = Vec::new();
    for document in documents {
        let start = position(document.referenced);
        match split_list(document.value) {
            Ok(items) => {
                let lines = item_lines.get(&start);
                raw.extend(items.into_iter().enumerate().map(|(i, value)| {
                    RawDocument {
                        line: lines
                            .and_then(|lines| lines.get(i))
                            .copied()
                            .unwrap_or(start.0),
                        value,
                    }
                }));
            }
            Err(value) => raw.push(RawDocument {
                line: start.0,
                value,
            }),
        }
    }
    Ok(raw)
}

fn options() -> serde_saphyr::Options {
    serde_saphyr::options! {
        // Config files are the operator's own, and a `kubectl get -A -o yaml` dump of a large
        // cluster outgrows the default document and node caps; alias limits still apply.
        budget: serde_saphyr::budget! {
            max_documents: 100_000,
            max_nodes: 20_000_000,
            max_events: 50_000_000,
        },
        emit_comments: false,
        strict_booleans: true,
        legacy_octal_numbers: true,
        with_snippet: false,
    }
}

/// A `List` or `*List` kind with an `items` array, as kubectl emits; any other shape is left to
/// `decode`, which skips kinds it does not read.
fn is_list(value: &Value) -> bool {
    let kind = value
        .get("kind")
        .and_then(Value::as_str)
        .unwrap_or_default();
    kind.ends_with("List") && value.get("items").is_some_and(Value::is_array)
}

/// The items of a list document, or the document itself.
fn split_list(value: Value) -> Result<Vec<Value>, Value> {
    if !is_list(&value) {
        return Err(value);
    }
    match value {
        Value::Object(mut object) => match object.remove("items") {
            Some(Value::Array(items)) => Ok(items),
            _ => Err(Value::Object(object)),
        },
        value => Err(value),
    }
}

fn to_usize(n: u64) -> usize {
    usize::try_from(n).unwrap_or(usize::MAX)
}

/// Line and column of a node; the parser reports 1-based positions, or 0 when it has none.
fn position(location: Location) -> (usize, usize) {
    (
        to_usize(location.line()).max(1),
        to_usize(location.column()).max(1),
    )
}

fn yaml_error(error: &serde_saphyr::Error) -> YamlError {
    let (line, column) = position(error.location().unwrap_or(Location::UNKNOWN));
    // The user formatter words errors for people rather than for Rust types, and leaves the
    // position out; control characters are replaced so the message stays on one log line.
    let message = UserMessageFormatter
        .format_message(error)
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    YamlError {
        line,
        column,
        message,
    }
}

/// The lines of the entries of a document's top-level `items` sequence; empty for any other
/// document. Reads only positions, so it accepts whatever shape the first pass accepted.
struct ItemLines(Vec<usize>);

impl<'de> Deserialize<'de> for ItemLines {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer
            .deserialize_any(LinesVisitor { root: true })
            .map(ItemLines)
    }
}

/// At the root, finds `items`; below it, records where each sequence entry starts.
#[derive(Clone, Copy)]
struct LinesVisitor {
    root: bool,
}

impl<'de> DeserializeSeed<'de> for LinesVisitor {
    type Value = Vec<usize>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for LinesVisitor {
    type Value = Vec<usize>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any YAML value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut lines = Vec::new();
        while let Some(key) = map.next_key::<String>()? {
            if self.root && key == "items" {
                lines = map.next_value_seed(LinesVisitor { root: false })?;
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(lines)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut lines = Vec::new();
        while let Some(item) = seq.next_element::<Spanned<IgnoredAny>>()? {
            if !self.root {
                lines.push(position(item.referenced).0);
            }
        }
        Ok(lines)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(self)
    }

    fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
        Ok(Vec::new())
    }

    fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
        Ok(Vec::new())
    }

    fn visit_i128<E>(self, _: i128) -> Result<Self::Value, E> {
        Ok(Vec::new())
    }

    fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
        Ok(Vec::new())
    }

    fn visit_u128<E>(self, _: u128) -> Result<Self::Value, E> {
        Ok(Vec::new())
    }

    fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
        Ok(Vec::new())
    }

    fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
        Ok(Vec::new())
    }

    fn visit_bytes<E>(self, _: &[u8]) -> Result<Self::Value, E> {
        Ok(Vec::new())
    }

    fn visit_none<E>(self) -> Result<Self::Value, E> {
        Ok(Vec::new())
    }

    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(Vec::new())
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn parse(text: &str) -> Vec<(usize, Value)> {
        parse_documents(text)
            .unwrap()
            .into_iter()
            .map(|d| (d.line, d.value))
            .collect()
    }

    #[test]
    fn splits_documents_and_skips_empty_ones() {
        let text = "# header\n---\na: 1\n---\n# only a comment\n---\n\n---\nnull\n---\n\
                    --- {b: 2}\n...\n---\n\n  c: 3\n";
        assert_eq!(
            parse(text),
            vec![
                (3, json!({"a": 1})),
                (11, json!({"b": 2})),
                (15, json!({"c": 3}))
            ]
        );
        assert_eq!(parse(""), vec![]);
        assert_eq!(parse("  \n# nothing\n"), vec![]);
    }

    #[test]
    fn line_is_the_first_node_past_comments() {
        assert_eq!(parse("# c\n\napiVersion: v1\n")[0].0, 3);
        assert_eq!(parse("a: 1\r\n---\r\nb: 2\r\n")[1].0, 3);
    }

    #[test]
    fn json_is_yaml() {
        let text =
            "{\n\t\"apiVersion\": \"v1\",\n\t\"n\": [1, -2.5e3, true, null, \"a\\/b\\u00e9\"]\n}\n";
        assert_eq!(
            parse(text),
            vec![(
                1,
                json!({"apiVersion": "v1", "n": [1, -2500.0, true, null, "a/bé"]})
            )]
        );
    }

    #[test]
    fn scalars_convert_as_documented() {
        let text = "a: yes\nb: True\nc: 0644\nd: 0o644\ne: 0x1F\nf: 1.0\n\
                    g: 12345678901234567890\nh: -3\ni: 2024-01-01T00:00:00Z\nj: ~\nk: '1'\n\
                    l: !!str 123\nm: !custom x\n1: int key\ntrue: bool key\n";
        assert_eq!(
            parse(text)[0].1,
            json!({
                "a": "yes", "b": true, "c": 420, "d": 420, "e": 31, "f": 1.0,
                "g": 12345678901234567890u64, "h": -3, "i": "2024-01-01T00:00:00Z", "j": null,
                "k": "1", "l": "123", "m": "x", "1": "int key", "true": "bool key",
            })
        );
    }

    #[test]
    fn anchors_and_merge_keys_expand() {
        let text = "base: &b {x: 1}\nd:\n  <<: *b\n  y: 2\nalias: *b\n";
        assert_eq!(
            parse(text)[0].1,
            json!({"base": {"x": 1}, "d": {"x": 1, "y": 2}, "alias": {"x": 1}})
        );
    }

    #[test]
    fn lists_expand_into_items_with_their_own_lines() {
        let text = "\
apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: Service
  metadata: {name: a}

# comment
-   apiVersion: v1
    kind: Service
- &pod {apiVersion: v1, kind: Pod}
- *pod
---
apiVersion: v1
kind: ServiceList
items: []
---
kind: PodList
items:
  - {a: 1}
---
kind: Thing
items: [1]
---
kind: List
items: {a: 1}
";
        let lines: Vec<usize> = parse(text).iter().map(|(line, _)| *line).collect();
        assert_eq!(lines, vec![4, 9, 11, 12, 20, 22, 25]);
        let values = parse(text);
        assert_eq!(values[0].1["metadata"]["name"], "a");
        assert_eq!(values[3].1, json!({"apiVersion": "v1", "kind": "Pod"}));
        assert_eq!(values[5].1, json!({"kind": "Thing", "items": [1]}));
        assert_eq!(values[6].1, json!({"kind": "List", "items": {"a": 1}}));
    }

    #[test]
    fn lists_mix_with_documents_of_any_shape() {
        let text = "just text\n---\n- a\n---\nkind: List\nitems:\n- {a: 1}\n---\n7\n";
        assert_eq!(
            parse(text),
            vec![
                (1, json!("just text")),
                (3, json!(["a"])),
                (7, json!({"a": 1})),
                (9, json!(7))
            ]
        );
    }

    #[test]
    fn json_list_items_have_lines() {
        let text = "{\"kind\": \"List\", \"items\": [\n  {\"a\": 1},\n  {\"b\": 2}]}\n";
        assert_eq!(
            parse(text),
            vec![(2, json!({"a": 1})), (3, json!({"b": 2}))]
        );
    }

    #[test]
    fn syntax_errors_have_a_position_and_one_message() {
        let error = parse_documents("a: 1\n---\nb:\n  - c\n d: 2\n").unwrap_err();
        assert_eq!((error.line, error.column), (5, 2));
        assert_eq!(
            error.message,
            "while parsing a block mapping, did not find expected key"
        );
        assert_eq!(
            error.to_string(),
            "line 5, column 2: while parsing a block mapping, did not find expected key"
        );
    }

    #[test]
    fn json_incompatible_input_is_an_error() {
        let cases = [
            (
                "a: 1\na: 2\n",
                2,
                "duplicate mapping key `a` is not allowed here",
            ),
            ("a: 1\n~: c\n", 2, "null is not allowed here"),
            ("a: .inf\n", 1, "value `.inf` is not a finite number"),
            ("a: *missing\n", 1, "reference to unknown value"),
        ];
        for (text, line, message) in cases {
            let error = parse_documents(text).unwrap_err();
            assert_eq!(
                (error.line, error.message.as_str()),
                (line, message),
                "{text:?}"
            );
        }
    }
}
