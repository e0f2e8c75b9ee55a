//! Builds the Model from Inputs. Objects are admitted kind by kind, in dependency order
//! (Kubernetes objects, then DestinationRules, then VirtualServices that may refer to both); an
//! object that fails to decode or validate is replaced by its last good version, and the error is
//! kept for the caller to report.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::destination_rule::destination_rule_warnings;
use super::kubernetes::{Pods, PodsByName, node_localities, services, workload, workloads};
use super::service_entry::add_service_entries;
use super::validate::{
    UnknownReferences, analysis_warnings, service_entry_warnings, sidecar_warnings,
    unset_address_warning, validate_destination_rule, validate_endpoint_slice, validate_gateway,
    validate_service, validate_service_entry, validate_sidecar, validate_virtual_service,
    validate_workload_entry,
};
use super::{DEFAULT_DNS_DOMAIN, DestinationRule, ExportTo, Model};
use super::{credential, virtual_service};
use crate::coverage::unsupported_settings;
use crate::diagnostic::ConfigError;
use crate::inputs::{Entry, FieldError, Inputs, IstioObject, Kind, Object, ObjectKey};
use crate::mesh_config::MeshConfig;

/// The last version of every object that was valid when it was seen.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LastGood {
    objects: BTreeMap<ObjectKey, Object>,
    /// The last mesh config that was accepted; `None` while none was.
    mesh: Option<MeshConfig>,
}

/// What a build takes besides its inputs: rudder's own flags.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// The DNS suffix of Kubernetes services, `name.namespace.svc.DOMAIN` (istiod's `--domain`).
    pub dns_domain: String,
    /// What a mesh config is read over, and what applies without one: istiod's defaults, with
    /// `--root-namespace`'s root namespace.
    pub mesh_defaults: MeshConfig,
    /// Whether a destination that refers to no known service or subset is an error (`serve`) or
    /// a warning (`rudder validate` on rules alone).
    pub unknown_references: UnknownReferences,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            dns_domain: DEFAULT_DNS_DOMAIN.to_string(),
            mesh_defaults: MeshConfig::default(),
            unknown_references: UnknownReferences::Refuse,
        }
    }
}

/// The outcome of one build.
#[derive(Debug, Clone, Default)]
pub struct Built {
    pub model: Model,
    /// To pass to the next build.
    pub last_good: LastGood,
    /// Every problem found, sorted.
    pub errors: Vec<ConfigError>,
}

impl LastGood {
    pub(super) fn object(&self, key: &ObjectKey) -> Option<&Object> {
        self.objects.get(key)
    }

    /// The accepted objects of one kind, in key order.
    pub(super) fn objects_of(&self, kind: Kind) -> impl Iterator<Item = (&ObjectKey, &Object)> {
        self.objects
            .range(ObjectKey::new(kind, "", "")..)
            .take_while(move |(key, _)| key.kind == kind)
    }

    /// The accepted objects of one kind in one namespace, in key order.
    pub(super) fn objects_in<'a>(
        &'a self,
        kind: Kind,
        namespace: &'a str,
    ) -> impl Iterator<Item = (&'a ObjectKey, &'a Object)> + 'a {
        self.objects
            .range(ObjectKey::new(kind, namespace, "")..)
            .take_while(move |(key, _)| key.kind == kind && key.namespace == namespace)
    }

    /// Records `object` as the accepted version of `key` (`None`: it is gone); returns the
    /// version it replaces.
    pub(super) fn set(&mut self, key: ObjectKey, object: Option<Object>) -> Option<Object> {
        match object {
            Some(object) => self.objects.insert(key, object),
            None => self.objects.remove(&key),
        }
    }
}

/// What stands in for an object whose current version is invalid: its last good version, or
/// nothing (Secrets: see `model::credential`, a replaced key must not be served on).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fallback {
    LastGood,
    None,
}

/// Admits objects one kind at a time, remembering what was accepted.
struct Admission<'a> {
    inputs: &'a Inputs,
    previous: &'a LastGood,
    accepted: LastGood,
    errors: Vec<ConfigError>,
}

impl Admission<'_> {
    /// Admits every entry of `kind` for which `check` passes; others fall back to their last
    /// good version.
    fn admit(&mut self, kind: Kind, check: impl Fn(&Object) -> Result<(), FieldError>) {
        self.admit_with(kind, Fallback::LastGood, check);
    }

    fn admit_with(
        &mut self,
        kind: Kind,
        fallback: Fallback,
        check: impl Fn(&Object) -> Result<(), FieldError>,
    ) {
        let entries = self
            .inputs
            .entries
            .range(ObjectKey::new(kind, "", "")..)
            .take_while(|(key, _)| key.kind == kind);
        for (key, entry) in entries {
            let Entry { origin, object } = &**entry;
            let verdict = object
                .as_ref()
                .map_err(Clone::clone)
                .and_then(|object| check(object).map(|()| object));
            match verdict {
                Ok(object) => {
                    self.accepted.objects.insert(key.clone(), object.clone());
                }
                Err(FieldError { field, message }) => {
                    let fallback = match fallback {
                        Fallback::LastGood => self.previous.objects.get(key),
                        Fallback::None => None,
                    };
                    let consequence = if fallback.is_some() {
                        "; the last valid version stays in force"
                    } else {
                        "; not applied"
                    };
                    let error = ConfigError::new(message + consequence)
                        .field(field)
                        .at(origin.clone())
                        .on(key.clone());
                    self.errors.push(error);
                    if let Some(object) = fallback {
                        self.accepted.objects.insert(key.clone(), object.clone());
                    }
                }
            }
        }
    }

    /// Reports, as warnings, what the accepted objects set that rudder does not carry out (fields
    /// the coverage table marks unsupported, and DestinationRule settings that do nothing as
    /// written); the rest of each object applies. Called once every kind is admitted.
    fn warn_unsupported(&mut self) {
        for (key, object) in &self.accepted.objects {
            let mut warnings = unsupported_settings(object);
            if let Object::DestinationRule(rule) = object {
                warnings.extend(destination_rule_warnings(&rule.spec));
            }
            for FieldError { field, message } in warnings {
                let mut warning = ConfigError::new(message)
                    .field(field)
                    .on(key.clone())
                    .warning();
                if let Some(entry) = self.inputs.entries.get(key) {
                    warning = warning.at(entry.origin.clone());
                }
                self.errors.push(warning);
            }
        }
    }

    /// Reports each object of an Istio kind rudder does not translate, with what that means for
    /// traffic; a malformed one (an unknown field, say) is reported as such too.
    fn warn_untranslated(&mut self) {
        for kind in Kind::untranslated() {
            self.admit(kind, |_| Ok(()));
            let Some(effect) = kind.untranslated_effect() else {
                continue;
            };
            for (key, entry) in self.inputs.of_kind(kind) {
                self.errors.push(
                    ConfigError::new(format!("not translated by rudder yet; {effect}"))
                        .at(entry.origin.clone())
                        .on(key.clone())
                        .warning(),
                );
            }
        }
    }

    /// Reports warnings about objects that stay in force as written: what gateway servers lose
    /// although their Gateway is valid ([`super::gateway::server_warnings`]), and references
    /// that lead nowhere or collide ([`super::references`]).
    fn warn(&mut self, warnings: impl IntoIterator<Item = super::references::Warning>) {
        for (key, field, message) in warnings {
            let mut warning = ConfigError::new(message).field(field).warning();
            if let Some(entry) = self.inputs.entries.get(&key) {
                warning = warning.at(entry.origin.clone());
            }
            self.errors.push(warning.on(key));
        }
    }

    fn accepted(&self, kind: Kind) -> impl Iterator<Item = &Object> {
        self.accepted
            .objects
            .range(ObjectKey::new(kind, "", "")..)
            .take_while(move |(key, _)| key.kind == kind)
            .map(|(_, object)| object)
    }
}

/// Builds a Model from `inputs` with the default [`Settings`]; `previous` is the `last_good` of
/// the build before (or default).
pub fn build(inputs: &Inputs, previous: &LastGood) -> Built {
    build_with(inputs, previous, &Settings::default())
}

/// Whether `inputs` hold any registry object (a Service or ServiceEntry) that rules' hosts
/// could refer to. `rudder validate` checks rules alone when they hold none.
pub fn has_registry(inputs: &Inputs) -> bool {
    inputs
        .entries
        .keys()
        .any(|key| matches!(key.kind, Kind::Service | Kind::ServiceEntry))
}

/// Builds a Model from `inputs`; `previous` is the `last_good` of the build before (or default).
pub fn build_with(inputs: &Inputs, previous: &LastGood, settings: &Settings) -> Built {
    let mut errors = inputs.problems.clone();
    let (mesh, accepted_mesh) = super::mesh::resolve(
        inputs,
        previous.mesh.as_ref(),
        &settings.mesh_defaults,
        &mut errors,
    );
    // meshConfig's discoverySelectors: the Kubernetes objects of other namespaces are not read.
    let scoped = super::discovery::in_scope(inputs, &mesh.discovery_selectors);
    let inputs = &*scoped;
    let mut admission = Admission {
        inputs,
        previous,
        accepted: LastGood {
            objects: BTreeMap::new(),
            mesh: accepted_mesh,
        },
        errors,
    };
    let dns_domain = settings.dns_domain.as_str();
    // Kinds the model does not read yet are admitted too, so their decoding errors are reported.
    let unchecked = [Kind::Namespace, Kind::Node, Kind::Pod];
    for kind in unchecked {
        admission.admit(kind, |_| Ok(()));
    }
    admission.admit_with(Kind::Secret, Fallback::None, credential::validate_object);
    let credentials = credential::of_inputs(inputs, admission.accepted(Kind::Secret));
    admission.admit(Kind::Service, |object| match object {
        Object::Service(service) => validate_service(service),
        _ => Ok(()),
    });
    admission.admit(Kind::EndpointSlice, |object| match object {
        Object::EndpointSlice(slice) => validate_endpoint_slice(slice),
        _ => Ok(()),
    });
    admission.admit(Kind::Gateway, |object| match object {
        Object::Gateway(gateway) => validate_gateway(&gateway.spec),
        _ => Ok(()),
    });
    let gateways = super::gateway::gateways(admission.accepted(Kind::Gateway));
    admission.admit(Kind::Sidecar, |object| match object {
        Object::Sidecar(sidecar) => validate_sidecar(&sidecar.spec),
        _ => Ok(()),
    });
    let sidecars = super::sidecar::sidecars(admission.accepted(Kind::Sidecar));

    let nodes = node_localities(admission.accepted(Kind::Node));
    let workloads = workloads(admission.accepted(Kind::Pod), &nodes);
    // Endpoints name their Pod, which may not report an IP (yet); finding it by name must not
    // scan every Pod per endpoint.
    let pods_by_name: PodsByName<'_> = admission
        .accepted(Kind::Pod)
        .filter_map(|object| match object {
            Object::Pod(pod) => Some((
                (
                    namespace_of(&pod.metadata.namespace),
                    pod.metadata.name.as_deref()?,
                ),
                workload(pod, &nodes),
            )),
            _ => None,
        })
        .collect();
    let mut services = services(
        admission.accepted(Kind::Service),
        admission.accepted(Kind::EndpointSlice),
        &Pods {
            by_ip: &workloads,
            by_name: &pods_by_name,
        },
        dns_domain,
        &mesh.default_service_export_to,
    );

    admission.admit(Kind::WorkloadEntry, |object| match object {
        Object::WorkloadEntry(entry) => validate_workload_entry(&entry.spec),
        _ => Ok(()),
    });
    admission.admit(Kind::ServiceEntry, |object| match object {
        Object::ServiceEntry(entry) => validate_service_entry(entry),
        _ => Ok(()),
    });
    let warnings = validation_warnings(&admission);
    admission.warn(warnings);
    let workload_entries: Vec<&Object> = admission.accepted(Kind::WorkloadEntry).collect();
    add_service_entries(
        &mut services,
        admission.accepted(Kind::ServiceEntry),
        &workload_entries,
        &workloads,
        &mesh.default_service_export_to,
    );
    super::visibility::cap_service_entries(
        &mut services,
        inputs,
        mesh.service_entry_visibility.as_ref(),
    );

    admission.admit(Kind::DestinationRule, |object| match object {
        Object::DestinationRule(rule) => validate_destination_rule(&rule.spec),
        _ => Ok(()),
    });
    let all_destination_rules =
        resolved_destination_rules(admission.accepted(Kind::DestinationRule), dns_domain, &mesh);
    let destination_rules = merged_by_host(&all_destination_rules);

    // Warnings of VirtualServices that are admitted all the same (unknown references, when rules
    // are checked alone), gathered beside the admission, whose check returns one verdict.
    let reference_warnings = std::cell::RefCell::new(Vec::new());
    admission.admit(Kind::VirtualService, |object| match object {
        Object::VirtualService(vs) => {
            let resolved =
                virtual_service::resolve(vs, dns_domain, &mesh.default_virtual_service_export_to);
            let key = ObjectKey::new(Kind::VirtualService, &resolved.namespace, &vs.metadata.name);
            let warnings = validate_virtual_service(
                &vs.spec,
                &resolved,
                &services,
                &destination_rules,
                settings.unknown_references,
            )?;
            reference_warnings.borrow_mut().extend(
                warnings
                    .into_iter()
                    .map(|FieldError { field, message }| (key.clone(), field, message)),
            );
            Ok(())
        }
        _ => Ok(()),
    });
    admission.warn(reference_warnings.into_inner());
    let (virtual_services, delegation_errors) = virtual_service::virtual_services(
        admission.accepted(Kind::VirtualService),
        dns_domain,
        &mesh.default_virtual_service_export_to,
    );
    // Delegations that lead nowhere are reported on the root, where its file says it.
    admission
        .errors
        .extend(delegation_errors.into_iter().map(|error| {
            let origin = error
                .object
                .as_ref()
                .and_then(|key| inputs.entries.get(key))
                .map(|entry| entry.origin.clone());
            match origin {
                Some(origin) => error.at(origin),
                None => error,
            }
        }));

    admission.warn_unsupported();
    admission.warn_untranslated();
    admission.warn(super::gateway::server_warnings(
        &gateways,
        &credentials,
        &workloads,
    ));
    admission.warn(super::references::reference_warnings(
        &virtual_services,
        &gateways,
        &sidecars,
    ));
    // istioctl analyze's checks of config alone, over what was admitted.
    let analysis = analysis_warnings(
        [
            Kind::VirtualService,
            Kind::Gateway,
            Kind::DestinationRule,
            Kind::Sidecar,
        ]
        .into_iter()
        .flat_map(|kind| admission.accepted(kind)),
    );
    admission.warn(analysis);
    let mut errors = admission.errors;
    errors.sort();
    errors.dedup();
    let telemetry = super::telemetry::resolve(&mesh.telemetry, &services);
    Built {
        model: Model {
            dns_domain: dns_domain.to_string(),
            services: services
                .into_iter()
                .map(|(host, service)| (host, Arc::new(service)))
                .collect(),
            destination_rules: Arc::new(destination_rules),
            all_destination_rules: Arc::new(
                all_destination_rules.into_iter().map(Arc::new).collect(),
            ),
            virtual_services: Arc::new(virtual_services.into_iter().map(Arc::new).collect()),
            workloads: Arc::new(workloads),
            sidecars: Arc::new(sidecars),
            root_namespace: mesh.root_namespace.clone(),
            mesh: Arc::new(mesh),
            telemetry: Arc::new(telemetry),
            credentials: Arc::new(credentials),
            gateways: Arc::new(gateways),
        },
        last_good: admission.accepted,
        errors,
    }
}

pub(super) fn namespace_of(namespace: &Option<String>) -> &str {
    namespace.as_deref().unwrap_or("default")
}

/// What istiod's validation warns about in admitted registry objects and Sidecars (they apply
/// all the same).
fn validation_warnings(admission: &Admission<'_>) -> Vec<super::references::Warning> {
    let key_of = |kind: Kind, metadata: &crate::inputs::Metadata| {
        ObjectKey::new(kind, namespace_of(&metadata.namespace), &metadata.name)
    };
    let mut warnings = Vec::new();
    for object in [Kind::WorkloadEntry, Kind::ServiceEntry, Kind::Sidecar]
        .into_iter()
        .flat_map(|kind| admission.accepted(kind))
    {
        let (key, found) = match object {
            Object::WorkloadEntry(entry) => (
                key_of(Kind::WorkloadEntry, &entry.metadata),
                unset_address_warning(&entry.spec).into_iter().collect(),
            ),
            Object::ServiceEntry(entry) => (
                key_of(Kind::ServiceEntry, &entry.metadata),
                service_entry_warnings(&entry.spec),
            ),
            Object::Sidecar(sidecar) => (
                key_of(Kind::Sidecar, &sidecar.metadata),
                sidecar_warnings(&sidecar.spec),
            ),
            _ => continue,
        };
        warnings.extend(
            found
                .into_iter()
                .map(|FieldError { field, message }| (key.clone(), field, message)),
        );
    }
    warnings
}

/// Expands a short host name the way istiod does: a name without dots lives in `namespace`;
/// anything with a dot (or a wildcard) is taken as written. A missing host stays empty, for
/// validation to refuse.
pub(crate) fn resolve_host(host: &str, namespace: &str, dns_domain: &str) -> String {
    if host.is_empty() || host.contains('.') || host.starts_with('*') {
        host.to_string()
    } else {
        format!("{host}.{namespace}.svc.{dns_domain}")
    }
}

/// Precedence among Istio objects: oldest first, then namespace and name.
pub(crate) fn in_precedence_order<'a, Spec>(
    objects: impl Iterator<Item = &'a Object>,
    select: impl Fn(&'a Object) -> Option<&'a IstioObject<Spec>>,
) -> Vec<&'a IstioObject<Spec>> {
    let mut selected: Vec<&IstioObject<Spec>> = objects.filter_map(select).collect();
    selected.sort_by_key(|o| {
        (
            o.metadata.creation_timestamp.as_deref().unwrap_or_default(),
            o.metadata.namespace.as_deref().unwrap_or_default(),
            o.metadata.name.as_str(),
        )
    });
    selected
}

/// Every DestinationRule with its host and `exportTo` resolved, in precedence order.
fn resolved_destination_rules<'a>(
    objects: impl Iterator<Item = &'a Object>,
    dns_domain: &str,
    mesh: &MeshConfig,
) -> Vec<DestinationRule> {
    let rules = in_precedence_order(objects, |object| match object {
        Object::DestinationRule(rule) => Some(rule.as_ref()),
        _ => None,
    });
    rules
        .into_iter()
        .map(|rule| {
            let namespace = namespace_of(&rule.metadata.namespace);
            DestinationRule {
                name: rule.metadata.name.clone(),
                namespace: namespace.to_string(),
                host: resolve_host(&rule.spec.host, namespace, dns_domain),
                traffic_policy: rule.spec.traffic_policy.clone(),
                subsets: rule.spec.subsets.clone(),
                export_to: ExportTo::from_entries_or(
                    &rule.spec.export_to,
                    &mesh.default_destination_rule_export_to,
                    namespace,
                ),
            }
        })
        .collect()
}

/// One rule per host: the first by precedence sets the traffic policy; subsets from later rules
/// for the same host are added when their names are new (istiod's `mergeDestinationRule`).
pub(crate) fn merged_by_host<'a>(
    rules: impl IntoIterator<Item = &'a DestinationRule>,
) -> BTreeMap<String, DestinationRule> {
    let mut by_host: BTreeMap<String, DestinationRule> = BTreeMap::new();
    for rule in rules {
        match by_host.get_mut(&rule.host) {
            Some(merged) => {
                for subset in &rule.subsets {
                    if merged.subset(&subset.name).is_none() {
                        merged.subsets.push(subset.clone());
                    }
                }
            }
            None => {
                by_host.insert(rule.host.clone(), rule.clone());
            }
        }
    }
    by_host
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inputs::from_test_yaml as inputs;
    use crate::model::Resolution;

    const SERVICE: &str = "apiVersion: v1\nkind: Service\nmetadata: {name: web}\nspec:\n  ports: [{name: http, port: 80}]\n";

    fn route_vs(name: &str, created: &str, timeout: &str) -> String {
        format!(
            "---\napiVersion: networking.istio.io/v1\nkind: VirtualService\n\
             metadata: {{name: {name}, creationTimestamp: \"{created}\"}}\n\
             spec:\n  hosts: [web]\n  http:\n  - timeout: {timeout}\n    route: [{{destination: {{host: web}}}}]\n"
        )
    }

    fn timeouts(model: &Model) -> Vec<(String, Option<std::time::Duration>)> {
        model
            .virtual_services
            .iter()
            .map(|vs| (vs.name.clone(), vs.http[0].timeout.map(|t| t.0)))
            .collect()
    }

    #[test]
    fn an_invalid_version_falls_back_to_the_last_good_one() {
        let first = build(
            &inputs(&format!("{SERVICE}{}", route_vs("a", "", "2s"))),
            &LastGood::default(),
        );
        assert!(first.errors.is_empty(), "{:?}", first.errors);

        let broken = format!("{SERVICE}{}", route_vs("a", "", "soon"));
        let second = build(&inputs(&broken), &first.last_good);
        assert_eq!(
            timeouts(&second.model),
            [("a".to_string(), Some(std::time::Duration::from_secs(2)))]
        );
        let error = second.errors[0].to_string();
        assert!(
            error.starts_with("test.yaml:7: VirtualService default/a: spec.http[0].timeout: invalid duration \"soon\""),
            "{error}"
        );
        assert!(
            error.ends_with("; the last valid version stays in force"),
            "{error}"
        );

        // With no good version behind it, the object is simply not applied.
        let fresh = build(&inputs(&broken), &LastGood::default());
        assert!(fresh.model.virtual_services.is_empty());
        assert!(fresh.errors[0].to_string().ends_with("; not applied"));

        // Deleting the object forgets its last good version too.
        let deleted = build(&inputs(SERVICE), &second.last_good);
        let again = build(&inputs(&broken), &deleted.last_good);
        assert!(again.model.virtual_services.is_empty());
    }

    #[test]
    fn one_bad_object_leaves_the_others_applied() {
        let yaml = format!(
            "{SERVICE}{}{}",
            route_vs("good", "", "1s"),
            route_vs("bad", "", "1 fortnight")
        );
        let built = build(&inputs(&yaml), &LastGood::default());
        assert_eq!(
            timeouts(&built.model),
            [("good".to_string(), Some(std::time::Duration::from_secs(1)))]
        );
        assert_eq!(built.errors.len(), 1);
    }

    #[test]
    fn older_rules_come_first() {
        let yaml = format!(
            "{SERVICE}{}{}",
            route_vs("a-newer", "2026-02-01T00:00:00Z", "1s"),
            route_vs("z-older", "2026-01-01T00:00:00Z", "2s")
        );
        let built = build(&inputs(&yaml), &LastGood::default());
        let names: Vec<String> = timeouts(&built.model)
            .into_iter()
            .map(|(name, _)| name)
            .collect();
        assert_eq!(names, ["z-older", "a-newer"]);
    }

    #[test]
    fn service_entries_become_services_and_bad_ones_are_reported() {
        let yaml = "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: api}\n\
             spec:\n  hosts: [api.example.com]\n  ports: [{number: 443, name: tls, protocol: TLS}]\n  resolution: DNS\n\
             ---\napiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: bad}\n\
             spec:\n  ports: [{number: 80, name: http}]\n";
        let built = build(&inputs(yaml), &LastGood::default());
        let service = &built.model.services["api.example.com"];
        assert_eq!(service.resolution, Resolution::Dns);
        let errors: Vec<String> = built.errors.iter().map(ToString::to_string).collect();
        assert_eq!(
            errors,
            [
                "test.yaml:9: ServiceEntry default/bad: spec.hosts: at least one host is required; not applied"
            ]
        );

        // A broken edit of a good entry leaves its last good version serving.
        let broken = yaml.replace("resolution: DNS", "resolution: SOMETIMES");
        let again = build(&inputs(&broken), &built.last_good);
        assert_eq!(
            again.model.services["api.example.com"].resolution,
            Resolution::Dns
        );
        assert!(
            again.errors[0]
                .to_string()
                .ends_with("; the last valid version stays in force")
        );
    }

    #[test]
    fn endpoints_are_ready_ones_with_their_pod_labels() {
        let yaml = format!(
            "{SERVICE}---\napiVersion: v1\nkind: Pod\nmetadata: {{name: web-1, labels: {{version: v1}}}}\nstatus: {{podIP: 10.0.0.1}}\n\
             ---\napiVersion: v1\nkind: Pod\nmetadata: {{name: web-2, labels: {{version: v2}}}}\nstatus: {{podIP: 10.0.0.9}}\n\
             ---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\n\
             metadata: {{name: web-x, labels: {{kubernetes.io/service-name: web}}}}\naddressType: IPv4\n\
             ports: [{{name: http, port: 8080}}]\nendpoints:\n\
             - addresses: [10.0.0.1]\n\
             - addresses: [10.0.0.2]\n  targetRef: {{kind: Pod, name: web-2}}\n\
             - addresses: [10.0.0.3]\n  conditions: {{ready: false}}\n"
        );
        let built = build(&inputs(&yaml), &LastGood::default());
        let service = &built.model.services["web.default.svc.cluster.local"];
        let endpoints: Vec<(String, u16, Option<&str>)> = service
            .endpoints
            .iter()
            .map(|e| {
                (
                    e.address.to_string(),
                    e.port,
                    e.labels.get("version").map(String::as_str),
                )
            })
            .collect();
        assert_eq!(
            endpoints,
            [
                ("10.0.0.1".to_string(), 8080, Some("v1")),
                ("10.0.0.2".to_string(), 8080, Some("v2")),
            ]
        );
    }

    #[test]
    fn headless_services_are_passthrough_and_external_names_are_no_services() {
        let yaml = "apiVersion: v1\nkind: Service\nmetadata: {name: db}\n\
             spec: {clusterIP: None, ports: [{name: tcp, port: 27017}]}\n\
             ---\napiVersion: v1\nkind: Service\nmetadata: {name: ext}\n\
             spec: {type: ExternalName, externalName: example.com, ports: [{name: http, port: 80}]}\n";
        let built = build(&inputs(yaml), &LastGood::default());
        let db = &built.model.services["db.default.svc.cluster.local"];
        assert_eq!(db.resolution, Resolution::Passthrough);
        assert!(db.cluster_ips.is_empty());
        assert!(
            !built
                .model
                .services
                .contains_key("ext.default.svc.cluster.local")
        );
    }
}
