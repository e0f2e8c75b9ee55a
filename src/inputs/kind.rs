//! The one declaration of every kind rudder knows: its API group and versions, its scope, and
//! whether rudder translates it or only reports it. Everything that lists kinds derives its list
//! from [`Kind::ALL`]: decoding (`from_type`), the Kubernetes watches, the
//! `rudder_untranslated_objects` metric, `/debug/inputz` and `/debug/configz`.
//!
//! An Istio kind rudder does not translate yet is still read (its metadata only), so that each
//! object of it can be reported with what its absence means for traffic, instead of vanishing.
//! This module is data: no I/O, no judgement of objects.

use std::fmt;

use crate::istio::{NETWORKING_GROUP, NETWORKING_VERSIONS};

/// Istio's security API group.
pub const SECURITY_GROUP: &str = "security.istio.io";
/// Istio's telemetry API group.
pub const TELEMETRY_GROUP: &str = "telemetry.istio.io";
/// Istio's extensions API group.
pub const EXTENSIONS_GROUP: &str = "extensions.istio.io";

/// Where a kind is served from and what rudder does with its objects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Api {
    /// The API group; empty for the core group.
    pub group: &'static str,
    /// The versions rudder reads, preferred first (they share one schema).
    pub versions: &'static [&'static str],
    pub namespaced: bool,
    pub handling: Handling,
}

/// What rudder does with a kind's objects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handling {
    /// Read into the model.
    Translated,
    /// An Istio kind rudder does not translate yet: each object is reported, with `effect`, what
    /// that means for traffic (it reads after "not translated by rudder: ").
    Untranslated { effect: &'static str },
}

const CORE: Api = Api {
    group: "",
    versions: &["v1"],
    namespaced: true,
    handling: Handling::Translated,
};

const fn networking() -> Api {
    istio(NETWORKING_GROUP, NETWORKING_VERSIONS, Handling::Translated)
}

const fn istio(group: &'static str, versions: &'static [&'static str], handling: Handling) -> Api {
    Api {
        group,
        versions,
        namespaced: true,
        handling,
    }
}

const fn untranslated(
    group: &'static str,
    versions: &'static [&'static str],
    effect: &'static str,
) -> Api {
    istio(group, versions, Handling::Untranslated { effect })
}

/// Declares [`Kind`] with its [`Kind::ALL`] and its [`Api`], from one list.
macro_rules! kinds {
    ($($kind:ident => $api:expr,)*) => {
        /// The kinds rudder knows, translated or not. The order is the order objects are kept
        /// and listed in.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum Kind {
            $($kind,)*
        }

        impl Kind {
            /// Every kind, in declaration order.
            pub const ALL: &'static [Kind] = &[$(Kind::$kind,)*];

            pub fn api(self) -> Api {
                match self {
                    $(Kind::$kind => $api,)*
                }
            }

            pub fn name(self) -> &'static str {
                match self {
                    $(Kind::$kind => stringify!($kind),)*
                }
            }
        }
    };
}

kinds! {
    Namespace => Api { namespaced: false, ..CORE },
    Node => Api { namespaced: false, ..CORE },
    Secret => CORE,
    Service => CORE,
    Pod => CORE,
    EndpointSlice => Api { group: "discovery.k8s.io", ..CORE },
    WorkloadEntry => networking(),
    ServiceEntry => networking(),
    DestinationRule => networking(),
    VirtualService => networking(),
    Gateway => networking(),
    Sidecar => networking(),
    AuthorizationPolicy => untranslated(
        SECURITY_GROUP,
        &["v1", "v1beta1"],
        "NOT enforced: sidecars and gateways get no RBAC filter, so every request is let \
         through, including those it would deny (DENY rules, or ALLOW rules that leave them out)",
    ),
    PeerAuthentication => untranslated(
        SECURITY_GROUP,
        &["v1", "v1beta1"],
        "NOT enforced: proxies get no Istio mutual TLS, so a STRICT mode does not refuse \
         plaintext connections",
    ),
    RequestAuthentication => untranslated(
        SECURITY_GROUP,
        &["v1", "v1beta1"],
        "NOT enforced: JWTs are not checked, so requests with invalid or expired tokens are let \
         through",
    ),
    EnvoyFilter => untranslated(
        NETWORKING_GROUP,
        &["v1alpha3"],
        "its patches are NOT applied: proxies get rudder's Envoy config without them",
    ),
    ProxyConfig => untranslated(
        NETWORKING_GROUP,
        &["v1beta1"],
        "NOT applied: proxies keep the settings of their bootstrap (concurrency, environment, \
         image)",
    ),
    WorkloadGroup => untranslated(
        NETWORKING_GROUP,
        &["v1", "v1beta1", "v1alpha3"],
        "NOT applied: no WorkloadEntries are made from it and its health checks do not run; \
         WorkloadEntries written as such are read",
    ),
    Telemetry => untranslated(
        TELEMETRY_GROUP,
        &["v1", "v1alpha1"],
        "NOT applied: proxies get no metrics, access log or tracing settings from it",
    ),
    WasmPlugin => untranslated(
        EXTENSIONS_GROUP,
        &["v1alpha1"],
        "NOT applied: its Wasm filters are not loaded, so requests skip them",
    ),
    TrafficExtension => untranslated(
        EXTENSIONS_GROUP,
        &["v1alpha1"],
        "NOT applied: its filters are not loaded, so requests skip them",
    ),
}

impl Kind {
    /// The kind for an `apiVersion` and `kind` pair, if rudder knows it.
    pub fn from_type(api_version: &str, kind: &str) -> Option<Kind> {
        let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
        Kind::ALL.iter().copied().find(|known| {
            let api = known.api();
            known.name() == kind && api.group == group && api.versions.contains(&version)
        })
    }

    pub fn is_namespaced(self) -> bool {
        self.api().namespaced
    }

    /// An Istio kind (served by a CRD in one of Istio's `*.istio.io` groups).
    pub fn is_istio(self) -> bool {
        self.api().group.ends_with(".istio.io")
    }

    /// What an object of this kind means for traffic when rudder does not translate the kind;
    /// `None` for kinds it translates.
    pub fn untranslated_effect(self) -> Option<&'static str> {
        match self.api().handling {
            Handling::Translated => None,
            Handling::Untranslated { effect } => Some(effect),
        }
    }

    /// The Istio kinds rudder does not translate yet.
    pub fn untranslated() -> impl Iterator<Item = Kind> {
        Kind::ALL
            .iter()
            .copied()
            .filter(|kind| kind.untranslated_effect().is_some())
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_map_to_kinds_by_group_and_version() {
        let cases = [
            ("v1", "Service", Some(Kind::Service)),
            (
                "discovery.k8s.io/v1",
                "EndpointSlice",
                Some(Kind::EndpointSlice),
            ),
            (
                "networking.istio.io/v1alpha3",
                "VirtualService",
                Some(Kind::VirtualService),
            ),
            (
                "security.istio.io/v1",
                "AuthorizationPolicy",
                Some(Kind::AuthorizationPolicy),
            ),
            (
                "security.istio.io/v1beta1",
                "PeerAuthentication",
                Some(Kind::PeerAuthentication),
            ),
            (
                "networking.istio.io/v1alpha3",
                "EnvoyFilter",
                Some(Kind::EnvoyFilter),
            ),
            (
                "telemetry.istio.io/v1alpha1",
                "Telemetry",
                Some(Kind::Telemetry),
            ),
            ("networking.istio.io/v2", "VirtualService", None),
            ("security.istio.io/v1", "VirtualService", None),
            ("v1", "ConfigMap", None),
        ];
        for (api_version, kind, expected) in cases {
            assert_eq!(
                Kind::from_type(api_version, kind),
                expected,
                "{api_version} {kind}"
            );
        }
    }

    #[test]
    fn untranslated_kinds_are_istio_kinds_with_an_effect() {
        let untranslated: Vec<&str> = Kind::untranslated().map(Kind::name).collect();
        assert_eq!(
            untranslated,
            [
                "AuthorizationPolicy",
                "PeerAuthentication",
                "RequestAuthentication",
                "EnvoyFilter",
                "ProxyConfig",
                "WorkloadGroup",
                "Telemetry",
                "WasmPlugin",
                "TrafficExtension"
            ]
        );
        assert!(Kind::untranslated().all(Kind::is_istio));
    }

    #[test]
    fn the_readme_says_what_each_untranslated_kind_means_for_traffic() {
        let readme = std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md"),
        )
        .expect("README.md");
        for kind in Kind::untranslated() {
            let row = format!(
                "| {kind} | {} |",
                kind.untranslated_effect().unwrap_or_default()
            );
            assert!(readme.contains(&row), "README.md lacks the row\n{row}");
        }
    }
}
