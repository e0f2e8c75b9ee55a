//! The mesh config a build uses: the one the inputs hold if istiod would accept it, else the
//! last one that was accepted (istiod's defaults before any), with the refusal reported. Which
//! fields mean what is `mesh_config`'s business; this decides only which config is in force.

use crate::diagnostic::ConfigError;
use crate::inputs::{Inputs, MeshConfigText};
use crate::mesh_config::{self, MeshConfig, MeshConfigError};

/// The mesh config in force, and the accepted one to remember for the next build (`None`: none
/// was given or accepted, so the defaults stand in).
pub(super) fn resolve(
    inputs: &Inputs,
    previous: Option<&MeshConfig>,
    defaults: &MeshConfig,
    errors: &mut Vec<ConfigError>,
) -> (MeshConfig, Option<MeshConfig>) {
    let Some(text) = &inputs.mesh_config else {
        return (defaults.clone(), None);
    };
    if let Some(networks) = &text.networks {
        match mesh_config::parse_networks(networks) {
            Ok(warnings) => {
                for warning in warnings {
                    errors.push(report(text, "meshNetworks", warning).warning());
                }
            }
            Err(error) => errors.push(report(text, "meshNetworks", error)),
        }
    }
    let Some(mesh) = &text.mesh else {
        // A ConfigMap without a `mesh` key: istiod's defaults.
        return (defaults.clone(), None);
    };
    match mesh_config::parse(mesh, defaults) {
        Ok(mut parsed) => {
            for warning in parsed.warnings {
                errors.push(report(text, "mesh", warning).warning());
            }
            if parsed.keeps_discovery_selectors {
                let in_force = previous.unwrap_or(defaults);
                parsed.config.discovery_selectors = in_force.discovery_selectors.clone();
            }
            (parsed.config.clone(), Some(parsed.config))
        }
        Err(mut error) => {
            error.message.push_str(match previous {
                Some(_) => "; the last valid mesh config stays in force",
                None => "; istiod's default mesh config applies until it is fixed",
            });
            errors.push(report(text, "mesh", error));
            let in_force = previous.cloned();
            (
                in_force.clone().unwrap_or_else(|| defaults.clone()),
                in_force,
            )
        }
    }
}

/// A problem of the `key` text, named as its holder says (`ConfigMap istio-system/istio:
/// data.mesh.connectTimeout`), or by its field alone for a file.
fn report(text: &MeshConfigText, key: &str, error: MeshConfigError) -> ConfigError {
    let field = match (text.holder.is_empty(), error.field.is_empty()) {
        (true, true) => "meshConfig".to_string(),
        (true, false) => format!("meshConfig.{}", error.field),
        (false, true) => format!("{}: data.{key}", text.holder),
        (false, false) => format!("{}: data.{key}.{}", text.holder, error.field),
    };
    ConfigError::new(error.message)
        .field(field)
        .at(text.origin.clone())
}

#[cfg(test)]
mod tests {
    use crate::diagnostic::Origin;
    use crate::inputs::{Inputs, MeshConfigText, from_test_yaml};
    use crate::model::sidecar::OutboundPolicy;
    use crate::model::{ExportTo, LastGood, build};

    fn with_mesh(mut inputs: Inputs, mesh: &str) -> Inputs {
        inputs.mesh_config = Some(MeshConfigText {
            origin: Origin::Kubernetes,
            holder: "ConfigMap istio-system/istio".to_string(),
            mesh: Some(mesh.to_string()),
            networks: None,
        });
        inputs
    }

    const SERVICE: &str = "apiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: shop}\n\
                           spec: {clusterIP: 10.96.0.1, ports: [{name: http, port: 80}]}\n";

    #[test]
    fn a_refused_mesh_config_keeps_the_last_good_one_and_says_which_field() {
        let registry_only = with_mesh(
            from_test_yaml(SERVICE),
            "outboundTrafficPolicy: {mode: REGISTRY_ONLY}",
        );
        let first = build(&registry_only, &LastGood::default());
        assert!(first.errors.is_empty(), "{:?}", first.errors);
        assert_eq!(
            first.model.mesh.outbound_traffic_policy,
            OutboundPolicy::RegistryOnly
        );

        let bad = with_mesh(from_test_yaml(SERVICE), "connectTimeout: 0s\n");
        let second = build(&bad, &first.last_good);
        assert_eq!(
            second
                .errors
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>(),
            [
                "kubernetes: ConfigMap istio-system/istio: data.mesh.connectTimeout: 0s must be \
                 from 1ms to 1h; the last valid mesh config stays in force"
            ]
        );
        assert_eq!(second.model.mesh, first.model.mesh);
        // ... and again on the build after, until it is fixed.
        let third = build(&bad, &second.last_good);
        assert_eq!(third.model.mesh, first.model.mesh);
    }

    #[test]
    fn a_mesh_config_refused_from_the_start_leaves_istiods_defaults() {
        let bad = with_mesh(from_test_yaml(SERVICE), "outboundTrafficPolicy: [x]");
        let built = build(&bad, &LastGood::default());
        assert_eq!(
            built.model.mesh.outbound_traffic_policy,
            OutboundPolicy::AllowAny
        );
        assert!(
            built.errors[0]
                .to_string()
                .ends_with("istiod's default mesh config applies until it is fixed"),
            "{}",
            built.errors[0]
        );
    }

    #[test]
    fn a_config_map_without_a_mesh_key_is_the_defaults() {
        let mut inputs = with_mesh(from_test_yaml(SERVICE), "");
        if let Some(text) = &mut inputs.mesh_config {
            text.mesh = None;
        }
        let built = build(&inputs, &LastGood::default());
        assert_eq!(*built.model.mesh, crate::mesh_config::MeshConfig::default());
    }

    #[test]
    fn default_export_to_applies_to_objects_that_leave_it_out() {
        let objects = format!(
            "{SERVICE}---\napiVersion: v1\nkind: Service\n\
             metadata: {{name: open, namespace: shop, annotations: {{networking.istio.io/exportTo: '*'}}}}\n\
             spec: {{clusterIP: 10.96.0.2, ports: [{{name: http, port: 80}}]}}\n---\n\
             apiVersion: networking.istio.io/v1\nkind: DestinationRule\n\
             metadata: {{name: web, namespace: shop}}\nspec: {{host: web}}\n---\n\
             apiVersion: networking.istio.io/v1\nkind: VirtualService\n\
             metadata: {{name: web, namespace: shop}}\n\
             spec: {{hosts: [web], http: [{{route: [{{destination: {{host: web}}}}]}}]}}\n"
        );
        let inputs = with_mesh(
            from_test_yaml(&objects),
            "defaultServiceExportTo: [.]\ndefaultVirtualServiceExportTo: [other]\n\
             defaultDestinationRuleExportTo: ['~']\n",
        );
        let built = build(&inputs, &LastGood::default());
        assert!(built.errors.is_empty(), "{:?}", built.errors);
        let model = &built.model;
        let only = |namespace: &str| ExportTo::Namespaces([namespace.to_string()].into());
        assert_eq!(
            model.services["web.shop.svc.cluster.local"].export_to,
            only("shop")
        );
        assert_eq!(
            model.services["open.shop.svc.cluster.local"].export_to,
            ExportTo::Public
        );
        assert_eq!(model.virtual_services[0].export_to, only("other"));
        assert_eq!(
            model.all_destination_rules[0].export_to,
            ExportTo::Namespaces(Default::default())
        );
    }

    /// The inputs as the Kubernetes source gives them: `shop` labelled `mesh: enabled`, `lab`
    /// not, a Service in each.
    fn two_namespaces(mesh: &str) -> Inputs {
        let mut inputs = with_mesh(
            from_test_yaml(
                "apiVersion: v1\nkind: Namespace\nmetadata: {name: shop, labels: {mesh: enabled}}\n\
                 ---\napiVersion: v1\nkind: Namespace\nmetadata: {name: lab}\n---\n\
                 apiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: shop}\n\
                 spec: {clusterIP: 10.96.0.1, ports: [{name: http, port: 80}]}\n---\n\
                 apiVersion: v1\nkind: Service\nmetadata: {name: db, namespace: lab}\n\
                 spec: {clusterIP: 10.96.0.2, ports: [{name: http, port: 80}]}\n",
            ),
            mesh,
        );
        for entry in inputs.entries.values_mut() {
            std::sync::Arc::make_mut(entry).origin = Origin::Kubernetes;
        }
        inputs
    }

    fn hosts(built: &crate::model::Built) -> Vec<&str> {
        built.model.services.keys().map(String::as_str).collect()
    }

    #[test]
    fn discovery_selectors_leave_other_namespaces_out_and_an_invalid_edit_keeps_them() {
        let all = build(&two_namespaces(""), &LastGood::default());
        assert_eq!(
            hosts(&all),
            ["db.lab.svc.cluster.local", "web.shop.svc.cluster.local"]
        );
        let selected = build(
            &two_namespaces("discoverySelectors: [{matchLabels: {mesh: enabled}}]"),
            &all.last_good,
        );
        assert!(selected.errors.is_empty(), "{:?}", selected.errors);
        assert_eq!(hosts(&selected), ["web.shop.svc.cluster.local"]);
        // A selector Kubernetes refuses: the rest of the edit applies, the selectors stay.
        let invalid = build(
            &two_namespaces(
                "connectTimeout: 2s\n\
                 discoverySelectors: [{matchExpressions: [{key: mesh, operator: In}]}]",
            ),
            &selected.last_good,
        );
        assert_eq!(hosts(&invalid), ["web.shop.svc.cluster.local"]);
        assert_eq!(invalid.model.mesh.connect_timeout.0.as_secs(), 2);
        assert_eq!(invalid.errors.len(), 1, "{:?}", invalid.errors);
        assert!(invalid.errors[0].is_warning(), "{}", invalid.errors[0]);
    }
}
