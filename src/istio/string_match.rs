//! Istio's `StringMatch` (`exact`, `prefix` or `regex`) and the maps of them that
//! `HTTPMatchRequest` uses for headers and query parameters.
//!
//! Istio lets the matcher be empty: `uri: {}` matches any URI, and in `headers` (and
//! `withoutHeaders`, `queryParams`) `name: {}` asks only for the header to be present. A
//! [`StringMatch`] always holds one of the three forms; an empty one is `None` in an `Option`
//! field and a name in [`StringMatchMap::present`] in a map.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::ops::Deref;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// One way to match a string: `exact`, `prefix` or `regex` (RE2 syntax).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum StringMatch {
    Exact(String),
    Prefix(String),
    Regex(String),
}

/// The wire form: any subset of the three keys; unknown keys are ignored.
#[derive(Deserialize)]
#[serde(expecting = "a StringMatch: exact, prefix or regex")]
struct RawStringMatch {
    #[serde(default)]
    exact: Option<String>,
    #[serde(default)]
    prefix: Option<String>,
    #[serde(default)]
    regex: Option<String>,
}

impl RawStringMatch {
    /// `None` for an empty matcher.
    fn into_match<E: serde::de::Error>(self) -> Result<Option<StringMatch>, E> {
        match (self.exact, self.prefix, self.regex) {
            (None, None, None) => Ok(None),
            (Some(value), None, None) => Ok(Some(StringMatch::Exact(value))),
            (None, Some(value), None) => Ok(Some(StringMatch::Prefix(value))),
            (None, None, Some(value)) => Ok(Some(StringMatch::Regex(value))),
            _ => Err(E::custom("only one of exact, prefix or regex may be set")),
        }
    }
}

impl<'de> Deserialize<'de> for StringMatch {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        RawStringMatch::deserialize(deserializer)?
            .into_match()?
            .ok_or_else(|| serde::de::Error::custom("one of exact, prefix or regex is required"))
    }
}

/// For `Option<StringMatch>` fields: an empty matcher (`{}`) or `null` is `None`, as in istiod.
pub(crate) fn optional<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<StringMatch>, D::Error> {
    match Option::<RawStringMatch>::deserialize(deserializer)? {
        None => Ok(None),
        Some(raw) => raw.into_match(),
    }
}

/// Istio's CRD schema for `StringMatch`: at most one of the three keys. The `oneOf` holds only
/// `required` and `not`, which is what a structural schema allows.
impl JsonSchema for StringMatch {
    fn schema_name() -> Cow<'static, str> {
        "StringMatch".into()
    }

    fn inline_schema() -> bool {
        true
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "object",
            "description": "Matches a string exactly, by prefix, or by an RE2 regex; empty matches anything (in a header map: the header is present).",
            "properties": {
                "exact": {"type": "string"},
                "prefix": {"type": "string"},
                "regex": {"type": "string", "description": "RE2 style regex-based match."}
            },
            "oneOf": [
                {"not": {"anyOf": [
                    {"required": ["exact"]},
                    {"required": ["prefix"]},
                    {"required": ["regex"]}
                ]}},
                {"required": ["exact"]},
                {"required": ["prefix"]},
                {"required": ["regex"]}
            ]
        })
    }
}

/// A map of names to matchers (`headers`, `withoutHeaders`, `queryParams`). It dereferences to
/// the names with a matcher; names written with an empty matcher (`{}`) are in `present`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StringMatchMap {
    pub matchers: BTreeMap<String, StringMatch>,
    /// Names given as `name: {}`: the header (or parameter) must be present, any value.
    pub present: BTreeSet<String>,
}

impl StringMatchMap {
    /// True when there is neither a matcher nor a presence check.
    pub fn is_empty(&self) -> bool {
        self.matchers.is_empty() && self.present.is_empty()
    }
}

impl Deref for StringMatchMap {
    type Target = BTreeMap<String, StringMatch>;

    fn deref(&self) -> &Self::Target {
        &self.matchers
    }
}

impl<'a> IntoIterator for &'a StringMatchMap {
    type Item = (&'a String, &'a StringMatch);
    type IntoIter = std::collections::btree_map::Iter<'a, String, StringMatch>;

    fn into_iter(self) -> Self::IntoIter {
        self.matchers.iter()
    }
}

impl FromIterator<(String, StringMatch)> for StringMatchMap {
    fn from_iter<I: IntoIterator<Item = (String, StringMatch)>>(iter: I) -> Self {
        Self {
            matchers: iter.into_iter().collect(),
            present: BTreeSet::new(),
        }
    }
}

impl<'de> Deserialize<'de> for StringMatchMap {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = Option::<BTreeMap<String, RawStringMatch>>::deserialize(deserializer)?;
        let mut map = StringMatchMap::default();
        for (name, matcher) in raw.unwrap_or_default() {
            match matcher.into_match()? {
                Some(matcher) => {
                    map.matchers.insert(name, matcher);
                }
                None => {
                    map.present.insert(name);
                }
            }
        }
        Ok(map)
    }
}

impl Serialize for StringMatchMap {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Empty {}
        #[derive(Serialize)]
        #[serde(untagged)]
        enum Entry<'a> {
            Matcher(&'a StringMatch),
            Present(Empty),
        }
        let entries: BTreeMap<&str, Entry> = self
            .matchers
            .iter()
            .map(|(name, matcher)| (name.as_str(), Entry::Matcher(matcher)))
            .chain(
                self.present
                    .iter()
                    .map(|name| (name.as_str(), Entry::Present(Empty {}))),
            )
            .collect();
        entries.serialize(serializer)
    }
}

impl JsonSchema for StringMatchMap {
    fn schema_name() -> Cow<'static, str> {
        "StringMatchMap".into()
    }

    fn inline_schema() -> bool {
        true
    }

    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        generator.subschema_for::<BTreeMap<String, StringMatch>>()
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[derive(Debug, Deserialize)]
    struct Holder {
        #[serde(default, deserialize_with = "optional")]
        uri: Option<StringMatch>,
        #[serde(default)]
        headers: StringMatchMap,
    }

    fn holder(value: serde_json::Value) -> Result<Holder, String> {
        serde_json::from_value(value).map_err(|error| error.to_string())
    }

    #[test]
    fn parses_each_form_and_ignores_unknown_keys() {
        let parsed: Vec<StringMatch> = serde_json::from_value(json!([
            {"exact": "a"}, {"prefix": "/b", "other": true}, {"regex": "c.*"}
        ]))
        .unwrap();
        assert_eq!(
            parsed,
            [
                StringMatch::Exact("a".into()),
                StringMatch::Prefix("/b".into()),
                StringMatch::Regex("c.*".into()),
            ]
        );
    }

    #[test]
    fn empty_matchers_mean_any_or_present() {
        let parsed = holder(json!({
            "uri": {},
            "headers": {"end-user": {"exact": "jason"}, "x-canary": {}}
        }))
        .unwrap();
        assert_eq!(parsed.uri, None);
        assert_eq!(
            parsed.headers.get("end-user"),
            Some(&StringMatch::Exact("jason".into()))
        );
        assert!(parsed.headers.present.contains("x-canary"));
        assert_eq!(parsed.headers.len(), 1, "present names are not matchers");
        assert!(holder(json!({"uri": null})).unwrap().uri.is_none());
        assert!(holder(json!({})).unwrap().headers.is_empty());
    }

    #[test]
    fn refuses_two_forms_and_a_bare_empty_match() {
        let error = holder(json!({"uri": {"exact": "a", "prefix": "b"}})).unwrap_err();
        assert!(
            error.contains("only one of exact, prefix or regex"),
            "{error}"
        );
        let error = serde_json::from_value::<StringMatch>(json!({})).unwrap_err();
        assert!(error.to_string().contains("is required"), "{error}");
        let error = holder(json!({"uri": "/path"})).unwrap_err();
        assert!(error.contains("expected a StringMatch"), "{error}");
    }

    #[test]
    fn map_round_trips() {
        let value = json!({"a": {"prefix": "x"}, "b": {}});
        let map: StringMatchMap = serde_json::from_value(value.clone()).unwrap();
        assert_eq!(serde_json::to_value(&map).unwrap(), value);
    }
}
