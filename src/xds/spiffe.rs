//! The SPIFFE identity a client certificate carries (`spiffe://TRUST_DOMAIN/ns/NS/sa/SA` as a URI
//! subject alternative name), which istiod checks against the namespace a proxy claims. The
//! certificate has been verified by the TLS handshake already, so nothing here decides whether to
//! trust it; rustls' own certificate parser (webpki) reads its URI SANs.

use std::fmt;

use rustls::pki_types::CertificateDer;
use webpki::EndEntityCert;

/// `spiffe://TRUST_DOMAIN/ns/NAMESPACE/sa/SERVICE_ACCOUNT`, Istio's workload identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpiffeId {
    pub trust_domain: String,
    pub namespace: String,
    pub service_account: String,
}

impl fmt::Display for SpiffeId {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            formatter,
            "spiffe://{}/ns/{}/sa/{}",
            self.trust_domain, self.namespace, self.service_account
        )
    }
}

impl SpiffeId {
    /// Parses Istio's form of a SPIFFE id; anything else (other paths, other schemes) is `None`.
    pub fn parse(uri: &str) -> Option<SpiffeId> {
        let (trust_domain, path) = uri.strip_prefix("spiffe://")?.split_once('/')?;
        let segments: Vec<&str> = path.split('/').collect();
        let ["ns", namespace, "sa", service_account] = segments[..] else {
            return None;
        };
        [trust_domain, namespace, service_account]
            .iter()
            .all(|part| !part.is_empty())
            .then(|| SpiffeId {
                trust_domain: trust_domain.to_string(),
                namespace: namespace.to_string(),
                service_account: service_account.to_string(),
            })
    }

    /// The first SPIFFE id among the URI SANs of a DER certificate; `None` for anything that
    /// does not parse as one.
    pub fn of_certificate(der: &[u8]) -> Option<SpiffeId> {
        let der = CertificateDer::from(der);
        let certificate = EndEntityCert::try_from(&der).ok()?;
        certificate.valid_uri_names().find_map(SpiffeId::parse)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_istio_identities_only() {
        assert_eq!(
            SpiffeId::parse("spiffe://cluster.local/ns/bookinfo/sa/reviews"),
            Some(SpiffeId {
                trust_domain: "cluster.local".into(),
                namespace: "bookinfo".into(),
                service_account: "reviews".into(),
            })
        );
        for other in [
            "https://cluster.local/ns/a/sa/b",
            "spiffe://cluster.local/ns/a",
            "spiffe://cluster.local/ns//sa/b",
            "spiffe:///ns/a/sa/b",
            "spiffe://td/ns/a/sa/b/extra",
        ] {
            assert_eq!(SpiffeId::parse(other), None, "{other}");
        }
    }

    #[test]
    fn garbage_is_no_certificate() {
        for der in [
            &[][..],
            &[0x30],
            &[0x30, 0x85, 1, 1, 1, 1, 1],
            &[0x30, 0x05, 0x30],
        ] {
            assert_eq!(SpiffeId::of_certificate(der), None);
        }
    }

    #[test]
    fn finds_the_uri_san_of_a_certificate() {
        let dir = tempfile::tempdir().unwrap();
        let run = |args: &[&str]| {
            let status = std::process::Command::new("openssl")
                .args(args)
                .current_dir(dir.path())
                .output()
                .expect("openssl runs");
            assert!(status.status.success(), "{status:?}");
        };
        run(&[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            "key.pem",
            "-out",
            "cert.pem",
            "-days",
            "1",
            "-subj",
            "/CN=x",
            "-addext",
            "subjectAltName=DNS:x.example,URI:https://example.com,URI:spiffe://td/ns/web/sa/front",
            "-addext",
            "keyUsage=critical,digitalSignature",
        ]);
        run(&[
            "x509", "-in", "cert.pem", "-outform", "DER", "-out", "cert.der",
        ]);
        let der = std::fs::read(dir.path().join("cert.der")).unwrap();
        assert_eq!(
            SpiffeId::of_certificate(&der).map(|id| id.to_string()),
            Some("spiffe://td/ns/web/sa/front".to_string())
        );
    }
}
