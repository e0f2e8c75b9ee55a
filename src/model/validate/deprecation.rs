//! Deprecated fields of the kinds rudder translates, as istiod's deprecation analyzer
//! (`deprecation.FieldAnalyzer`) reports them (IST0002): a fault delay's integer `percent`
//! (replaced by `percentage`) and a Sidecar's `outboundTrafficPolicy.egressProxy` (which istiod
//! ignores). Also the integer `mirrorPercent`, in the words of istiod's validation, which warns
//! about it (istioctl analyze passes that on as a schema warning, IST0133, a code rudder does not
//! give). Reads the objects as written; no I/O.

use super::analysis::{Code, Config, coded};
use crate::inputs::Kind;
use crate::model::references::Warning;

pub(super) fn deprecated_fields(config: &Config<'_>) -> Vec<Warning> {
    let mut warnings = Vec::new();
    for vs in &config.virtual_services {
        for (i, route) in vs.spec.http.iter().enumerate() {
            if let Some((_, name)) = route.legacy_mirror_percent() {
                warnings.push((
                    vs.key(Kind::VirtualService),
                    format!("spec.http[{i}].{name}"),
                    r#"using deprecated setting "mirrorPercent", use "mirrorPercentage" instead"#
                        .to_string(),
                ));
            }
            let percent = route
                .fault
                .as_ref()
                .and_then(|fault| fault.delay.as_ref())
                .and_then(|delay| delay.percent);
            if percent.is_some_and(|percent| percent > 0) {
                warnings.push((
                    vs.key(Kind::VirtualService),
                    format!("spec.http[{i}].fault.delay.percent"),
                    coded(
                        Code::Deprecated,
                        "HTTPRoute.fault.delay.percent is deprecated; use \
                         HTTPRoute.fault.delay.percentage",
                    ),
                ));
            }
        }
    }
    for sidecar in &config.sidecars {
        let egress_proxy = sidecar
            .spec
            .outbound_traffic_policy
            .as_ref()
            .is_some_and(|policy| policy.egress_proxy.is_some());
        if egress_proxy {
            warnings.push((
                sidecar.key(Kind::Sidecar),
                "spec.outboundTrafficPolicy.egressProxy".to_string(),
                coded(
                    Code::Deprecated,
                    "OutboundTrafficPolicy.EgressProxy is deprecated and ignored",
                ),
            ));
        }
    }
    warnings
}

#[cfg(test)]
mod tests {
    use super::super::analysis::tests::{findings, warnings};

    #[test]
    fn a_delay_percent_and_an_egress_proxy_are_deprecated() {
        let yaml = "\
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: delayed}
spec:
  hosts: [web]
  http:
  - fault: {delay: {percent: 10, fixedDelay: 1s}}
    route: [{destination: {host: web}}]
  - fault: {delay: {percentage: {value: 10}, fixedDelay: 1s}}
    mirror: {host: copy}
    mirrorPercent: 5
    route: [{destination: {host: web}}]
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: egress}
spec:
  egress: [{hosts: ['*/*']}]
  outboundTrafficPolicy: {mode: ALLOW_ANY, egressProxy: {host: proxy.example.com}}
";
        assert_eq!(
            findings(yaml),
            [
                ("IST0002".into(), "Sidecar default/egress".into()),
                ("IST0002".into(), "VirtualService default/delayed".into()),
            ]
        );
        let mirror: Vec<(String, String)> = warnings(yaml)
            .into_iter()
            .filter(|(_, _, message)| message.contains("mirrorPercent"))
            .map(|(key, field, _)| (key.to_string(), field))
            .collect();
        assert_eq!(
            mirror,
            [(
                "VirtualService default/delayed".to_string(),
                "spec.http[1].mirrorPercent".to_string()
            )]
        );
    }
}
