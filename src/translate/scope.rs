//! What one proxy sees, as istiod's `SidecarScope` decides it (pilot/pkg/model/sidecar.go): the
//! Sidecar that applies to it, the services, VirtualServices and DestinationRules it may use, its
//! egress listeners, and where unknown destinations go. A pure function of the model and the
//! proxy's kind, namespace, labels and interception mode, which the translation cache key holds.
//! It decides visibility only: it builds no Envoy resources.
//!
//! - The Sidecar: the oldest in the proxy's namespace whose `workloadSelector` matches its labels,
//!   else the oldest there without a selector, else the oldest without a selector in the root
//!   namespace (the mesh-wide default, whose `.` means the proxy's own namespace), else none.
//!   Gateways (`router` proxies) never take one.
//! - Services and VirtualServices must be exported to the proxy's namespace, then match an egress
//!   host: `namespace/host` with `.` the proxy's namespace, `*` any and `~` none; host `*`, a
//!   name, or `*.suffix`. Without a Sidecar (or without egress listeners) the host is `*/*`.
//! - An egress listener with a port imports only the services that have that port, and only that
//!   port; the catch-all imports every port. CDS and EDS see the union of all listeners.
//! - DestinationRules are chosen per service as istiod's `destinationRule` does: a rule in the
//!   proxy's namespace, else one the service's namespace exports to the proxy's, else one the root
//!   namespace exports to it; within a namespace the most specific host wins, and rules for the
//!   same host merge.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::model::sidecar::{EgressHost, EgressListener, HostNamespace, OutboundPolicy, Sidecar};
use crate::model::virtual_service::{host_subset_of, hosts_match};
use crate::model::{DestinationRule, Model, Service, VirtualService};
use crate::proxy::{InterceptionMode, Proxy, ProxyKind};

/// One egress listener of the proxy and what it carries.
#[derive(Debug, Clone)]
pub struct ListenerScope {
    /// None for the catch-all listener.
    pub port: Option<u16>,
    /// The address to listen on when the Sidecar gives one.
    pub bind: Option<String>,
    /// Whether the listener binds for real (no interception, or `captureMode: NONE`).
    pub bind_to_port: bool,
    /// The services it imports (ports restricted to its port, with its protocol), the
    /// VirtualServices and DestinationRules that apply to them.
    pub view: ProxyView,
}

/// What a proxy may use, for one egress listener or all of them together: its own type, so that
/// the mesh-wide [`Model`] cannot be passed where a proxy's view is meant (istiod's
/// `SidecarScope` against its `PushContext`). Services are shared with the model (`Arc`), cut to
/// the listener's port when it has one.
#[derive(Debug, Clone, Default)]
pub struct ProxyView {
    /// The cluster DNS domain services live under (`cluster.local`).
    pub dns_domain: String,
    /// The services the proxy imports, by host.
    pub services: BTreeMap<String, Arc<Service>>,
    /// The DestinationRule in force for each imported service, by service host, chosen for this
    /// proxy as istiod chooses it (not the model's rules merged by host).
    /// Shared with the model when one rule applies, so a view copies no rule.
    pub destination_rules: BTreeMap<String, Arc<DestinationRule>>,
    /// The VirtualServices for imported hosts, in the model's precedence order.
    pub virtual_services: Vec<Arc<VirtualService>>,
    /// meshConfig.rootNamespace.
    pub root_namespace: String,
    /// The mesh config in force.
    pub mesh: Arc<crate::mesh_config::MeshConfig>,
    /// Access logs and tracing, resolved from the mesh config.
    pub telemetry: Arc<crate::model::telemetry::Telemetry>,
}

impl ProxyView {
    /// This view with the endpoints of `hosts` taken from `model` (on the ports the view has of
    /// each service, as [`scope`] cuts them), everything else as it was.
    pub fn with_endpoints_of(
        &self,
        model: &Model,
        hosts: &std::collections::BTreeSet<String>,
    ) -> ProxyView {
        let mut view = self.clone();
        for host in hosts {
            let (Some(seen), Some(current)) =
                (view.services.get_mut(host), model.services.get(host))
            else {
                continue;
            };
            let endpoints = current
                .endpoints
                .iter()
                .filter(|endpoint| seen.port(endpoint.service_port).is_some())
                .cloned()
                .collect();
            *seen = Arc::new(Service {
                endpoints,
                ..Service::clone(seen)
            });
        }
        view
    }
}

#[derive(Debug, Clone)]
pub struct Scope {
    pub listeners: Vec<ListenerScope>,
    /// Every listener's services merged, for CDS and EDS; None when the only listener is the
    /// catch-all, whose view is the same.
    union: Option<ProxyView>,
    pub outbound_policy: OutboundPolicy,
}

impl Scope {
    /// The services, VirtualServices and DestinationRules of all listeners together.
    pub fn view(&self) -> &ProxyView {
        match (&self.union, self.listeners.first()) {
            (Some(view), _) => view,
            (None, Some(listener)) => &listener.view,
            (None, None) => unreachable_empty(),
        }
    }

    /// [`Scope::view`], taken out of the scope.
    pub fn into_view(self) -> ProxyView {
        match self.union {
            Some(view) => view,
            None => self
                .listeners
                .into_iter()
                .next()
                .map(|listener| listener.view)
                .unwrap_or_default(),
        }
    }

    /// The listener whose routes RDS serves as route configuration `port`: the one with that
    /// port, else the catch-all (istiod's `GetEgressListenerForRDS`).
    pub fn listener_for_routes(&self, port: u16) -> Option<&ListenerScope> {
        self.listeners
            .iter()
            .find(|listener| listener.port == Some(port))
            .or_else(|| self.listeners.iter().find(|l| l.port.is_none()))
    }
}

/// A scope always has a listener (see [`scope`]); this keeps `view()` total without a panic.
fn unreachable_empty() -> &'static ProxyView {
    static EMPTY: std::sync::OnceLock<ProxyView> = std::sync::OnceLock::new();
    EMPTY.get_or_init(ProxyView::default)
}

/// The Sidecar that applies to `proxy`, if any.
pub fn sidecar_for<'m>(model: &'m Model, proxy: &Proxy) -> Option<&'m Sidecar> {
    if proxy.kind == ProxyKind::Router {
        return None;
    }
    let first = |namespace: &str, selected: &dyn Fn(&Sidecar) -> bool| {
        model
            .sidecars
            .iter()
            .find(|sidecar| sidecar.namespace == namespace && selected(sidecar))
    };
    let own = proxy.namespace.as_str();
    first(own, &|s| s.selector.is_some() && s.selects(&proxy.labels))
        .or_else(|| first(own, &|s| s.selector.is_none()))
        .or_else(|| first(&model.root_namespace, &|s| s.selector.is_none()))
}

/// The catch-all listener over every namespace: what a proxy without a Sidecar has.
fn import_everything() -> EgressListener {
    EgressListener {
        port: None,
        bind: None,
        capture_none: false,
        hosts: vec![EgressHost {
            namespace: HostNamespace::Any,
            host: "*".to_string(),
        }],
    }
}

pub fn scope(model: &Model, proxy: &Proxy) -> Scope {
    let sidecar = sidecar_for(model, proxy);
    let default_egress = [import_everything()];
    let egress = match sidecar {
        Some(sidecar) if !sidecar.egress.is_empty() => sidecar.egress.as_slice(),
        _ => &default_egress,
    };
    let namespace = proxy.namespace.as_str();
    let exported: Vec<&Arc<Service>> = model
        .services
        .values()
        .filter(|service| service.export_to.includes(namespace))
        .collect();
    let visible_rules: Vec<&Arc<VirtualService>> = model
        .virtual_services
        .iter()
        .filter(|vs| vs.visibility_rank(namespace).is_some())
        .collect();
    let rules = RuleChooser::new(model, namespace);

    let mut listeners = Vec::new();
    for listener in egress {
        let imports = Imports::new(&listener.hosts, namespace);
        let mut services = BTreeMap::new();
        for service in exported
            .iter()
            .filter(|s| imports.covers(&s.namespace, &s.hostname))
        {
            let mut service = Arc::clone(service);
            if let Some(port) = &listener.port {
                let Some(mut service_port) = service.port(port.number).cloned() else {
                    continue;
                };
                service_port.protocol = port.protocol;
                let restricted = Arc::make_mut(&mut service);
                restricted.ports = vec![service_port];
                restricted
                    .endpoints
                    .retain(|e| e.service_port == port.number);
            }
            services.insert(service.hostname.clone(), service);
        }
        let virtual_services = visible_rules
            .iter()
            .filter(|vs| {
                vs.hosts
                    .iter()
                    .any(|host| imports.matches(&vs.namespace, host))
            })
            .map(|vs| Arc::clone(vs))
            .collect();
        let destination_rules = rules.for_services(services.values().map(Arc::as_ref));
        listeners.push(ListenerScope {
            port: listener.port.as_ref().map(|port| port.number),
            bind: listener.bind.clone(),
            bind_to_port: proxy.interception == InterceptionMode::None || listener.capture_none,
            view: view_of(model, services, virtual_services, destination_rules),
        });
    }

    let only_catch_all = matches!(listeners.as_slice(), [only] if only.port.is_none());
    let union = (!only_catch_all).then(|| union_of(model, &listeners));
    Scope {
        listeners,
        union,
        // A Sidecar's own policy wins, else the mesh config's (which gateways do not take).
        outbound_policy: sidecar
            .and_then(|sidecar| sidecar.outbound_policy)
            .unwrap_or(match proxy.kind {
                ProxyKind::Router => OutboundPolicy::default(),
                _ => model.mesh.outbound_traffic_policy,
            }),
    }
}

fn view_of(
    model: &Model,
    services: BTreeMap<String, Arc<Service>>,
    virtual_services: Vec<Arc<VirtualService>>,
    destination_rules: BTreeMap<String, Arc<DestinationRule>>,
) -> ProxyView {
    ProxyView {
        dns_domain: model.dns_domain.clone(),
        services,
        destination_rules,
        virtual_services,
        root_namespace: model.root_namespace.clone(),
        mesh: model.mesh.clone(),
        telemetry: model.telemetry.clone(),
    }
}

/// Every listener's services with the ports each imports (as the services define them, not as
/// a listener's protocol recasts them), their VirtualServices and DestinationRules.
fn union_of(model: &Model, listeners: &[ListenerScope]) -> ProxyView {
    let mut services: BTreeMap<String, Service> = BTreeMap::new();
    let mut destination_rules = BTreeMap::new();
    let mut virtual_services: Vec<Arc<VirtualService>> = Vec::new();
    for listener in listeners {
        for (host, scoped) in &listener.view.services {
            let Some(original) = model.services.get(host) else {
                continue;
            };
            let merged = services.entry(host.clone()).or_insert_with(|| Service {
                ports: Vec::new(),
                endpoints: Vec::new(),
                ..Service::clone(original)
            });
            for port in &scoped.ports {
                if merged.port(port.port).is_none()
                    && let Some(defined) = original.port(port.port)
                {
                    merged.ports.push(defined.clone());
                }
            }
        }
        destination_rules.extend(
            listener
                .view
                .destination_rules
                .iter()
                .map(|(host, rule)| (host.clone(), rule.clone())),
        );
        for vs in &listener.view.virtual_services {
            if !virtual_services
                .iter()
                .any(|seen| seen.name == vs.name && seen.namespace == vs.namespace)
            {
                virtual_services.push(Arc::clone(vs));
            }
        }
    }
    for service in services.values_mut() {
        service.ports.sort_by_key(|port| port.port);
        if let Some(original) = model.services.get(&service.hostname) {
            service.endpoints = original
                .endpoints
                .iter()
                .filter(|e| service.port(e.service_port).is_some())
                .cloned()
                .collect();
        }
    }
    // Precedence among VirtualServices is the model's order.
    let order: BTreeMap<(&str, &str), usize> = model
        .virtual_services
        .iter()
        .enumerate()
        .map(|(i, vs)| ((vs.namespace.as_str(), vs.name.as_str()), i))
        .collect();
    virtual_services.sort_by_key(|vs| {
        order
            .get(&(vs.namespace.as_str(), vs.name.as_str()))
            .copied()
    });
    let services = services
        .into_iter()
        .map(|(host, service)| (host, Arc::new(service)))
        .collect();
    view_of(model, services, virtual_services, destination_rules)
}

/// One listener's egress hosts, with `.` read as the proxy's namespace and `~` dropped.
struct Imports<'a> {
    by_namespace: BTreeMap<&'a str, Vec<&'a str>>,
    any_namespace: Vec<&'a str>,
}

impl<'a> Imports<'a> {
    fn new(hosts: &'a [EgressHost], proxy_namespace: &'a str) -> Self {
        let mut imports = Imports {
            by_namespace: BTreeMap::new(),
            any_namespace: Vec::new(),
        };
        for host in hosts {
            match &host.namespace {
                HostNamespace::Own => imports
                    .by_namespace
                    .entry(proxy_namespace)
                    .or_default()
                    .push(&host.host),
                HostNamespace::Named(namespace) => imports
                    .by_namespace
                    .entry(namespace)
                    .or_default()
                    .push(&host.host),
                HostNamespace::Any => imports.any_namespace.push(&host.host),
                HostNamespace::Nothing => {}
            }
        }
        imports
    }

    fn hosts_for(&self, namespace: &str) -> impl Iterator<Item = &&'a str> {
        self.by_namespace
            .get(namespace)
            .into_iter()
            .flatten()
            .chain(&self.any_namespace)
    }

    /// A service of `namespace` named `hostname` is imported (istiod's `matchingService`).
    fn covers(&self, namespace: &str, hostname: &str) -> bool {
        self.hosts_for(namespace)
            .any(|egress| host_subset_of(hostname, egress))
    }

    /// A VirtualService of `namespace` with `host` is imported (istiod's
    /// `SelectVirtualServices`: either name may be the wildcard).
    fn matches(&self, namespace: &str, host: &str) -> bool {
        self.hosts_for(namespace)
            .any(|egress| hosts_match(host, egress))
    }
}

/// istiod's `destinationRule` for one proxy namespace, with the rules indexed by namespace and
/// host, so that choosing for a service does not scan every rule.
struct RuleChooser<'m> {
    by_namespace: BTreeMap<&'m str, NamespaceRules<'m>>,
    proxy_namespace: &'m str,
    root_namespace: &'m str,
}

/// One namespace's rules, in precedence order: by exact host, and those with wildcard hosts.
#[derive(Default)]
struct NamespaceRules<'m> {
    exact: BTreeMap<&'m str, Vec<&'m Arc<DestinationRule>>>,
    wildcards: Vec<&'m Arc<DestinationRule>>,
}

impl<'m> RuleChooser<'m> {
    fn new(model: &'m Model, proxy_namespace: &'m str) -> Self {
        let mut by_namespace: BTreeMap<&str, NamespaceRules<'_>> = BTreeMap::new();
        for rule in model.all_destination_rules.iter() {
            let rules = by_namespace.entry(&rule.namespace).or_default();
            if rule.host.starts_with('*') {
                rules.wildcards.push(rule);
            } else {
                rules.exact.entry(&rule.host).or_default().push(rule);
            }
        }
        RuleChooser {
            by_namespace,
            proxy_namespace,
            root_namespace: &model.root_namespace,
        }
    }

    fn for_services<'s>(
        &self,
        services: impl Iterator<Item = &'s Service>,
    ) -> BTreeMap<String, Arc<DestinationRule>> {
        services
            .filter_map(|service| Some((service.hostname.clone(), self.choose(service)?)))
            .collect()
    }

    fn choose(&self, service: &Service) -> Option<Arc<DestinationRule>> {
        let client = self.proxy_namespace;
        // Rules of the proxy's own namespace that it sees itself.
        let local = |rule: &DestinationRule| rule.export_to.includes(&rule.namespace);
        // Rules another namespace exports (not kept to itself) to the proxy's.
        let exported = |rule: &DestinationRule| {
            !rule.export_to.is_private_to(&rule.namespace) && rule.export_to.includes(client)
        };
        self.most_specific(client, &service.hostname, local)
            .or_else(|| self.most_specific(&service.namespace, &service.hostname, exported))
            .or_else(|| self.most_specific(self.root_namespace, &service.hostname, exported))
    }

    /// The rules of `namespace` for the most specific host covering `host` (exact, else the
    /// longest wildcard), merged.
    fn most_specific(
        &self,
        namespace: &str,
        host: &str,
        usable: impl Fn(&DestinationRule) -> bool,
    ) -> Option<Arc<DestinationRule>> {
        let rules = self.by_namespace.get(namespace)?;
        let exact: Vec<&Arc<DestinationRule>> = rules
            .exact
            .get(host)
            .into_iter()
            .flatten()
            .copied()
            .filter(|rule| usable(rule))
            .collect();
        let chosen = if exact.is_empty() {
            let covering: Vec<&Arc<DestinationRule>> = rules
                .wildcards
                .iter()
                .copied()
                .filter(|rule| usable(rule) && host_subset_of(host, &rule.host))
                .collect();
            let longest = covering.iter().map(|rule| rule.host.len()).max()?;
            covering
                .into_iter()
                .filter(|rule| rule.host.len() == longest)
                .collect()
        } else {
            exact
        };
        match chosen.as_slice() {
            [only] => Some(Arc::clone(only)),
            _ => crate::model::merged_destination_rules(chosen.into_iter().map(Arc::as_ref))
                .into_values()
                .next()
                .map(Arc::new),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inputs::from_test_yaml;
    use crate::model::{LastGood, build};

    fn model(yaml: &str) -> Model {
        let built = build(&from_test_yaml(yaml), &LastGood::default());
        assert!(built.errors.is_empty(), "{:?}", built.errors);
        built.model
    }

    fn proxy(kind: &str, namespace: &str) -> Proxy {
        let id = format!("{kind}~10.0.0.1~p.{namespace}~{namespace}.svc.cluster.local");
        Proxy::parse(&id, &serde_json::Value::Null).expect("a node id")
    }

    const SERVICES: &str = "apiVersion: v1\nkind: Service\nmetadata: {name: a, namespace: default}\nspec: {ports: [{name: http, port: 80}]}\n\
        ---\napiVersion: v1\nkind: Service\nmetadata: {name: b, namespace: other}\nspec: {ports: [{name: http, port: 80}]}\n";

    fn hosts(scope: &Scope) -> Vec<&str> {
        scope.view().services.keys().map(String::as_str).collect()
    }

    #[test]
    fn gateways_and_selector_sidecars_of_the_root_namespace_do_not_scope_others() {
        let model = model(&format!(
            "{SERVICES}---\napiVersion: networking.istio.io/v1\nkind: Sidecar\n\
             metadata: {{name: s, namespace: istio-system}}\n\
             spec: {{workloadSelector: {{labels: {{app: x}}}}, egress: [{{hosts: [./*]}}]}}\n\
             ---\napiVersion: networking.istio.io/v1\nkind: Sidecar\n\
             metadata: {{name: s, namespace: default}}\nspec: {{egress: [{{hosts: [./*]}}]}}\n"
        ));
        let everything = ["a.default.svc.cluster.local", "b.other.svc.cluster.local"];
        assert_eq!(
            hosts(&scope(&model, &proxy("router", "default"))),
            everything
        );
        assert_eq!(
            hosts(&scope(&model, &proxy("sidecar", "other"))),
            everything
        );
        assert_eq!(
            hosts(&scope(&model, &proxy("sidecar", "default"))),
            ["a.default.svc.cluster.local"]
        );
    }

    #[test]
    fn an_exact_destination_rule_host_wins_over_a_wildcard_in_one_namespace() {
        let rule = |name: &str, host: &str, lb: &str| {
            format!(
                "---\napiVersion: networking.istio.io/v1\nkind: DestinationRule\n\
                 metadata: {{name: {name}, namespace: other}}\n\
                 spec: {{host: \"{host}\", trafficPolicy: {{loadBalancer: {{simple: {lb}}}}}}}\n"
            )
        };
        let model = model(&format!(
            "{SERVICES}{}{}{}",
            rule("wide", "*.cluster.local", "RANDOM"),
            rule("narrow", "*.other.svc.cluster.local", "ROUND_ROBIN"),
            rule("exact", "b.other.svc.cluster.local", "LEAST_REQUEST"),
        ));
        let scope = scope(&model, &proxy("sidecar", "default"));
        let chosen = |host: &str| {
            scope
                .view()
                .destination_rules
                .get(host)
                .map(|rule| rule.name.as_str())
        };
        assert_eq!(chosen("b.other.svc.cluster.local"), Some("exact"));
        // a lives in default: other's rules are neither local to the proxy nor the service's.
        assert_eq!(chosen("a.default.svc.cluster.local"), None);
    }
}
