//! The SPIFFE identity a client certificate carries (`spiffe://TRUST_DOMAIN/ns/NS/sa/SA` as a URI
//! subject alternative name), which istiod checks against the namespace a proxy claims. Reads only
//! as much of the certificate's DER as leads to its URI SANs; the certificate has been verified by
//! the TLS handshake already, so nothing here decides whether to trust it.

use std::fmt;

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

/// DER tags on the way to the URI SANs.
const SEQUENCE: u8 = 0x30;
const EXTENSIONS: u8 = 0xa3;
const OBJECT_IDENTIFIER: u8 = 0x06;
const OCTET_STRING: u8 = 0x04;
const URI_NAME: u8 = 0x86;

/// 2.5.29.17, subjectAltName.
const SUBJECT_ALT_NAME: [u8; 3] = [0x55, 0x1d, 0x11];

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

    /// The first SPIFFE id among the URI SANs of a DER certificate.
    pub fn of_certificate(der: &[u8]) -> Option<SpiffeId> {
        uri_names(der)?.into_iter().find_map(SpiffeId::parse)
    }
}

/// The URI SANs of a DER certificate; `None` if it is not DER this walk understands.
fn uri_names(der: &[u8]) -> Option<Vec<&str>> {
    let certificate = expect(der, SEQUENCE)?;
    let tbs = expect(certificate, SEQUENCE)?;
    let extensions = elements(tbs).find(|(tag, _)| *tag == EXTENSIONS)?.1;
    let extensions = expect(extensions, SEQUENCE)?;
    let subject_alt_names = elements(extensions).find_map(|(tag, extension)| {
        let mut fields = elements(extension);
        let is_san =
            tag == SEQUENCE && fields.next() == Some((OBJECT_IDENTIFIER, &SUBJECT_ALT_NAME[..]));
        // After the id: an optional `critical` flag, then the value.
        is_san.then(|| fields.find(|(tag, _)| *tag == OCTET_STRING))?
    })?;
    let names = expect(subject_alt_names.1, SEQUENCE)?;
    Some(
        elements(names)
            .filter(|(tag, _)| *tag == URI_NAME)
            .filter_map(|(_, uri)| std::str::from_utf8(uri).ok())
            .collect(),
    )
}

/// The contents of the element at the start of `input`, if it has this tag.
fn expect(input: &[u8], tag: u8) -> Option<&[u8]> {
    element(input)
        .filter(|(found, _, _)| *found == tag)
        .map(|(_, contents, _)| contents)
}

/// The elements one after the other in `input`, as (tag, contents), up to the first that does
/// not parse.
fn elements(mut input: &[u8]) -> impl Iterator<Item = (u8, &[u8])> {
    std::iter::from_fn(move || {
        let (tag, contents, rest) = element(input)?;
        input = rest;
        Some((tag, contents))
    })
}

/// The element at the start of `input` (single-byte tags only, as in certificates): its tag,
/// contents and what follows.
fn element(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (length, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let count = usize::from(first & 0x7f);
        if count == 0 || count > 4 || rest.len() < count {
            return None;
        }
        let (bytes, rest) = rest.split_at(count);
        let length = bytes
            .iter()
            .fold(0usize, |length, byte| length << 8 | usize::from(*byte));
        (length, rest)
    };
    (rest.len() >= length).then(|| (tag, &rest[..length], &rest[length..]))
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
