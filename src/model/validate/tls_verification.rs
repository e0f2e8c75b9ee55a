//! DestinationRules that originate TLS (`SIMPLE` or `MUTUAL`) without CA certificates to verify
//! the server with (IST0128 for the rule's policy, IST0129 for a port's; istiod's
//! `CaCertificateAnalyzer`): the upstream's certificate is then checked against the proxy's
//! default roots at best. As in the analyzer, a `credentialName` counts as carrying the CA only
//! on a rule with a workload selector (a gateway's credential), and neither `insecureSkipVerify`
//! nor the mesh config changes the verdict. Reads the objects as written; no I/O.

use super::analysis::{Code, Config, coded};
use crate::inputs::Kind;
use crate::istio::{ClientTlsMode, ClientTlsSettings};
use crate::model::references::Warning;

pub(super) fn missing_ca_certificates(config: &Config<'_>) -> Vec<Warning> {
    let mut warnings = Vec::new();
    for rule in &config.destination_rules {
        let Some(policy) = &rule.spec.traffic_policy else {
            continue;
        };
        let selected = rule.spec.workload_selector.is_some();
        let mut warn = |field: String, code, mode, at: String| {
            warnings.push((
                rule.key(Kind::DestinationRule),
                field,
                coded(
                    code,
                    format!(
                        "TLS mode {mode} without caCertificates for host {}{at}: the server's \
                         certificate is not verified against a CA of this rule's",
                        rule.spec.host
                    ),
                ),
            ));
        };
        if let Some(mode) = unverified(policy.tls.as_ref(), selected) {
            warn(
                "spec.trafficPolicy.tls".to_string(),
                Code::NoServerCertificateVerificationDestinationLevel,
                mode,
                String::new(),
            );
        }
        for (i, port_policy) in policy.port_level_settings.iter().enumerate() {
            if let Some(mode) = unverified(port_policy.tls.as_ref(), selected) {
                let port = port_policy.port.as_ref().map_or(0, |port| port.number);
                warn(
                    format!("spec.trafficPolicy.portLevelSettings[{i}].tls"),
                    Code::NoServerCertificateVerificationPortLevel,
                    mode,
                    format!(" at port {port}"),
                );
            }
        }
    }
    warnings
}

/// The mode of `tls` when it originates TLS with nothing to verify the server with.
fn unverified(tls: Option<&ClientTlsSettings>, selected: bool) -> Option<&'static str> {
    let tls = tls?;
    let mode = match tls.mode? {
        ClientTlsMode::Simple => "SIMPLE",
        ClientTlsMode::Mutual => "MUTUAL",
        _ => return None,
    };
    let set = |value: &Option<String>| value.as_deref().is_some_and(|value| !value.is_empty());
    let gateway_credential = set(&tls.credential_name) && selected;
    (!set(&tls.ca_certificates) && !gateway_credential).then_some(mode)
}

#[cfg(test)]
mod tests {
    use super::super::analysis::tests::findings;

    fn rule(name: &str, spec: &str) -> String {
        format!(
            "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {{name: {name}}}\nspec: {spec}\n---\n"
        )
    }

    #[test]
    fn tls_origination_without_a_ca_is_reported_at_its_level() {
        let yaml = [
            rule("simple", "{host: a, trafficPolicy: {tls: {mode: SIMPLE}}}"),
            rule(
                "skip-verify",
                "{host: a, trafficPolicy: {tls: {mode: MUTUAL, insecureSkipVerify: true, clientCertificate: /c, privateKey: /k}}}",
            ),
            rule(
                "with-ca",
                "{host: a, trafficPolicy: {tls: {mode: SIMPLE, caCertificates: /ca}}}",
            ),
            rule("istio", "{host: a, trafficPolicy: {tls: {mode: ISTIO_MUTUAL}}}"),
            rule(
                "port",
                "{host: a, trafficPolicy: {portLevelSettings: [{port: {number: 8443}, tls: {mode: SIMPLE, credentialName: c}}]}}",
            ),
            rule(
                "gateway-credential",
                "{host: a, workloadSelector: {matchLabels: {app: gw}}, trafficPolicy: {tls: {mode: SIMPLE, credentialName: c}}}",
            ),
        ]
        .concat();
        assert_eq!(
            findings(&yaml),
            [
                ("IST0128".into(), "DestinationRule default/simple".into()),
                (
                    "IST0128".into(),
                    "DestinationRule default/skip-verify".into()
                ),
                ("IST0129".into(), "DestinationRule default/port".into()),
            ]
        );
    }
}
