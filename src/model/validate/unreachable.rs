//! Rules of a VirtualService that can never be reached, found as istiod's validation finds them
//! (`analyzeUnreachable*Rules`, which `istioctl validate` and the webhook report as warnings):
//! a rule after one without matches, a match equal to an earlier rule's (names aside), and an
//! HTTP URI prefix match an earlier prefix match with the same conditions already covers. The
//! object still applies; these are warnings, with istioctl analyze's codes (IST0130 for a rule,
//! IST0131 for a match). Reads the object as written; no I/O.

use super::analysis::{Code, coded};
use super::invalid;
use crate::inputs::FieldError;
use crate::istio::{self, StringMatch};

/// The warnings for `spec`'s `http`, `tcp` and `tls` rules, in istiod's words.
pub(super) fn unreachable_rule_warnings(spec: &istio::VirtualService) -> Vec<FieldError> {
    let mut warnings = Vec::new();
    let http: Vec<Rule<'_, istio::HttpMatchRequest>> = spec
        .http
        .iter()
        .map(|route| Rule {
            name: route.name.as_deref(),
            matches: &route.matches,
        })
        .collect();
    let mut prefixes = Vec::new();
    analyze("spec.http", &http, &mut warnings, |rule, index, matched| {
        prefixes.extend(PrefixMatch::of(rule, index, matched));
    });
    for (i, earlier) in prefixes.iter().enumerate() {
        for later in &prefixes[i + 1..] {
            if later.prefix != earlier.prefix && earlier.covers(later) {
                warnings.push(invalid(
                    format!("spec.http[{}]", later.rule_index),
                    coded(
                        Code::VirtualServiceIneffectiveMatch,
                        format!(
                            "virtualService rule {} match {} of prefix {} is not used \
                             (duplicate/overlapping match in rule {} of prefix {} on {})",
                            later.rule,
                            later.name,
                            later.prefix,
                            earlier.name,
                            earlier.prefix,
                            earlier.rule
                        ),
                    ),
                ));
            }
        }
    }
    let tcp: Vec<Rule<'_, istio::L4MatchAttributes>> = spec
        .tcp
        .iter()
        .map(|route| Rule {
            name: None,
            matches: &route.matches,
        })
        .collect();
    analyze("spec.tcp", &tcp, &mut warnings, |_, _, _| {});
    let tls: Vec<Rule<'_, istio::TlsMatchAttributes>> = spec
        .tls
        .iter()
        .map(|route| Rule {
            name: None,
            matches: &route.matches,
        })
        .collect();
    analyze("spec.tls", &tls, &mut warnings, |_, _, _| {});
    warnings
}

/// One rule: its name (HTTP rules may have one) and its matches.
struct Rule<'a, Match> {
    name: Option<&'a str>,
    matches: &'a [Match],
}

impl<Match> Rule<'_, Match> {
    /// How istiod names a rule in its messages: `"name"`, else `#index`.
    fn label(&self, index: usize) -> String {
        match self.name {
            Some(name) if !name.is_empty() => format!("{name:?}"),
            _ => format!("#{index}"),
        }
    }
}

/// Matches compared as istiod compares them: equal apart from their names.
trait Unnamed: PartialEq {
    fn name(&self) -> Option<&str>;
    fn same_as(&self, other: &Self) -> bool;
}

impl Unnamed for istio::HttpMatchRequest {
    fn name(&self) -> Option<&str> {
        self.name.as_deref().filter(|name| !name.is_empty())
    }
    fn same_as(&self, other: &Self) -> bool {
        let unnamed = |request: &Self| Self {
            name: None,
            ..request.clone()
        };
        unnamed(self) == unnamed(other)
    }
}

impl Unnamed for istio::L4MatchAttributes {
    fn name(&self) -> Option<&str> {
        None
    }
    fn same_as(&self, other: &Self) -> bool {
        self == other
    }
}

impl Unnamed for istio::TlsMatchAttributes {
    fn name(&self) -> Option<&str> {
        None
    }
    fn same_as(&self, other: &Self) -> bool {
        self == other
    }
}

/// istiod's walk over the rules of one list: `first_use` sees each match that is not a
/// duplicate (with its rule's label and the match's position).
fn analyze<'a, Match: Unnamed>(
    at: &str,
    rules: &[Rule<'a, Match>],
    warnings: &mut Vec<FieldError>,
    mut first_use: impl FnMut(String, usize, (usize, &'a Match)),
) {
    let mut seen: Vec<(&Match, usize)> = Vec::new();
    let mut catch_all_before = false;
    for (index, rule) in rules.iter().enumerate() {
        let label = rule.label(index);
        let unused = |reason: &str| {
            invalid(
                format!("{at}[{index}]"),
                coded(
                    Code::VirtualServiceUnreachableRule,
                    format!("virtualService rule {label} not used ({reason})"),
                ),
            )
        };
        if rule.matches.is_empty() {
            if catch_all_before {
                warnings.push(unused("only the last rule can have no matches"));
            }
            catch_all_before = true;
            continue;
        }
        let mut duplicates = 0;
        for (position, matched) in rule.matches.iter().enumerate() {
            if catch_all_before {
                warnings.push(unused("route without matches defined before"));
                continue;
            }
            if let Some((_, earlier)) = seen.iter().find(|(other, _)| other.same_as(matched)) {
                let match_label = matched
                    .name()
                    .map_or_else(|| format!("#{position}"), |name| format!("{name:?}"));
                warnings.push(invalid(
                    format!("{at}[{index}].match[{position}]"),
                    coded(
                        Code::VirtualServiceIneffectiveMatch,
                        format!(
                            "virtualService rule {label} match {match_label} is not used \
                             (duplicate/overlapping match in rule {})",
                            rules[*earlier].label(*earlier)
                        ),
                    ),
                ));
                duplicates += 1;
                continue;
            }
            seen.push((matched, index));
            first_use(label.clone(), index, (position, matched));
        }
        if duplicates == rule.matches.len() {
            warnings.push(unused("all matches used by prior rules"));
        }
    }
}

/// An HTTP match on a URI prefix, with the conditions istiod compares between two of them
/// (`OverlappingMatchValidationForHTTPRoute`): each as `exact:VALUE` or `prefix:VALUE`.
struct PrefixMatch {
    rule: String,
    rule_index: usize,
    name: String,
    prefix: String,
    port: Option<u32>,
    method: String,
    authority: String,
    headers: Vec<(String, String)>,
    query_params: Vec<(String, String)>,
    without_headers: Vec<(String, String)>,
}

impl PrefixMatch {
    fn of(
        rule: String,
        rule_index: usize,
        (position, request): (usize, &istio::HttpMatchRequest),
    ) -> Option<Self> {
        let Some(StringMatch::Prefix(prefix)) = &request.uri else {
            return None;
        };
        if prefix.is_empty() {
            return None;
        }
        let method = match condition(request.method.as_ref()) {
            // No method is taken as GET, as istiod does.
            empty if empty.is_empty() => "exact:GET".to_string(),
            method => method,
        };
        Some(Self {
            rule,
            rule_index,
            name: request
                .name()
                .map_or_else(|| format!("#{position}"), |name| format!("{name:?}")),
            prefix: prefix.clone(),
            port: request.port,
            method,
            authority: condition(request.authority.as_ref()),
            headers: conditions(&request.headers),
            query_params: conditions(&request.query_params),
            without_headers: conditions(&request.without_headers),
        })
    }

    /// istiod's `coveredValidation`: `later`'s prefix extends this one's, on the same port, and
    /// each other condition of this match is equal to, or a prefix of the text of, `later`'s.
    fn covers(&self, later: &Self) -> bool {
        let narrower = |mine: &str, theirs: &str| mine == theirs || mine.starts_with(theirs);
        let same_keys = |mine: &[(String, String)], theirs: &[(String, String)]| {
            mine.len() == theirs.len()
                && mine.iter().all(|(key, value)| {
                    theirs
                        .iter()
                        .find(|(other, _)| other == key)
                        .is_some_and(|(_, other)| narrower(value, other))
                })
        };
        later.prefix.starts_with(&self.prefix)
            && later.port == self.port
            && narrower(&self.method, &later.method)
            && narrower(&self.authority, &later.authority)
            && same_keys(&self.headers, &later.headers)
            && same_keys(&self.query_params, &later.query_params)
            && same_keys(&self.without_headers, &later.without_headers)
    }
}

/// `exact:VALUE` or `prefix:VALUE`; empty for a regex or no matcher, as istiod writes it.
fn condition(matcher: Option<&StringMatch>) -> String {
    match matcher {
        Some(StringMatch::Exact(value)) if !value.is_empty() => format!("exact:{value}"),
        Some(StringMatch::Prefix(value)) if !value.is_empty() => format!("prefix:{value}"),
        _ => String::new(),
    }
}

fn conditions(map: &istio::StringMatchMap) -> Vec<(String, String)> {
    map.matchers
        .iter()
        .map(|(key, matcher)| (key.clone(), condition(Some(matcher))))
        .chain(map.present.iter().map(|key| (key.clone(), String::new())))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn warnings(yaml: &str) -> Vec<String> {
        let spec: istio::VirtualService = serde_saphyr::from_str(yaml).expect("a VirtualService");
        unreachable_rule_warnings(&spec)
            .into_iter()
            .map(|FieldError { field, message }| format!("{field}: {message}"))
            .collect()
    }

    #[test]
    fn rules_after_a_catch_all_and_repeated_matches_are_reported_as_istiod_does() {
        assert_eq!(
            warnings(
                "hosts: [a]\nhttp:\n- route: [{destination: {host: a}}]\n\
                 - route: [{destination: {host: b}}]\n"
            ),
            [
                "spec.http[1]: [IST0130] virtualService rule #1 not used (only the last rule can have no matches)"
            ]
        );
        assert_eq!(
            warnings(
                "hosts: [a]\nhttp:\n- match: [{uri: {exact: /x}}]\n  route: [{destination: {host: a}}]\n\
                 - name: second\n  match: [{name: again, uri: {exact: /x}}]\n  route: [{destination: {host: b}}]\n"
            ),
            [
                "spec.http[1].match[0]: [IST0131] virtualService rule \"second\" match \"again\" is not used \
                 (duplicate/overlapping match in rule #0)",
                "spec.http[1]: [IST0130] virtualService rule \"second\" not used (all matches used by prior rules)",
            ]
        );
        assert_eq!(
            warnings(
                "hosts: [a]\nhttp:\n- match: [{uri: {prefix: /api/v1/product}}]\n  route: [{destination: {host: a}}]\n\
                 - match: [{uri: {prefix: /api/v1/products}}, {uri: {prefix: /potato}}]\n  route: [{destination: {host: b}}]\n"
            ),
            [
                "spec.http[1]: [IST0131] virtualService rule #1 match #0 of prefix /api/v1/products is not used \
              (duplicate/overlapping match in rule #0 of prefix /api/v1/product on #0)"
            ]
        );
        assert_eq!(
            warnings(
                "hosts: [a]\ntcp:\n- match: [{port: 1}]\n  route: [{destination: {host: a}}]\n\
                 - match: [{port: 1}]\n  route: [{destination: {host: b}}]\n"
            ),
            [
                "spec.tcp[1].match[0]: [IST0131] virtualService rule #1 match #0 is not used \
                 (duplicate/overlapping match in rule #0)",
                "spec.tcp[1]: [IST0130] virtualService rule #1 not used (all matches used by prior rules)",
            ]
        );
    }
}
