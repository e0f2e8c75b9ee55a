//! Test certificates made with the `openssl` command line: one CA per directory, server
//! certificates for given DNS names and client certificates it signs, and what the tests build
//! from them (rustls acceptors for TLS upstreams, Kubernetes TLS Secrets for gateways). Owns key
//! material for tests only; nothing here is meant to be secure.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use base64::Engine;
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// A CA in a directory: `ca.pem` and `ca-key.pem`, and every certificate it issued as
/// `NAME.pem` with its key `NAME-key.pem`.
pub struct TestCa {
    dir: PathBuf,
    next_serial: AtomicU32,
}

/// What a certificate is for.
enum Usage<'a> {
    Server {
        dns_names: &'a [&'a str],
    },
    /// With a subject alternative name (`URI:spiffe://...`, `DNS:name`), when given.
    Client {
        san: Option<&'a str>,
    },
}

impl TestCa {
    /// Creates the CA in `dir` (which must exist).
    pub fn new(dir: &Path) -> TestCa {
        let ca = TestCa {
            dir: dir.to_path_buf(),
            next_serial: AtomicU32::new(2),
        };
        ca.openssl(
            &[
                &["req", "-x509"][..],
                &KEY_OPTIONS,
                &["-keyout", "ca-key.pem", "-out", "ca.pem", "-days", "2"],
                &["-subj", "/CN=rudder-test-ca"],
            ]
            .concat(),
        );
        ca
    }

    /// Issues `NAME.pem` and `NAME-key.pem`, a server certificate for `dns_names`.
    pub fn issue_server(&self, name: &str, dns_names: &[&str]) {
        self.issue(name, Usage::Server { dns_names });
    }

    /// Issues `NAME.pem` and `NAME-key.pem`, a client certificate.
    pub fn issue_client(&self, name: &str) {
        self.issue(name, Usage::Client { san: None });
    }

    /// Issues `NAME.pem` and `NAME-key.pem`, a client certificate with `uri` as its URI SAN
    /// (e.g. a SPIFFE id `spiffe://cluster.local/ns/NS/sa/SA`).
    pub fn issue_client_with_uri(&self, name: &str, uri: &str) {
        let san = format!("URI:{uri}");
        self.issue(name, Usage::Client { san: Some(&san) });
    }

    /// Issues `NAME.pem` and `NAME-key.pem`, a client certificate whose only SAN is the DNS
    /// name `dns_name` (no SPIFFE identity).
    pub fn issue_client_with_dns(&self, name: &str, dns_name: &str) {
        let san = format!("DNS:{dns_name}");
        self.issue(name, Usage::Client { san: Some(&san) });
    }

    /// A TLS connector that trusts this CA and presents `NAME.pem` as its client certificate.
    pub fn client_connector(&self, name: &str) -> tokio_rustls::TlsConnector {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let certificates: Vec<CertificateDer<'static>> =
            CertificateDer::pem_file_iter(self.path(&format!("{name}.pem")))
                .expect("read the client certificate")
                .collect::<Result<_, _>>()
                .expect("parse the client certificate");
        let key = PrivateKeyDer::from_pem_file(self.path(&format!("{name}-key.pem")))
            .expect("the client key");
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("TLS versions")
            .with_root_certificates(self.roots())
            .with_client_auth_cert(certificates, key)
            .expect("a client config");
        config.alpn_protocols = vec![b"h2".to_vec()];
        tokio_rustls::TlsConnector::from(Arc::new(config))
    }

    /// The path of a file in the CA's directory (`ca.pem`, `NAME.pem`, `NAME-key.pem`).
    pub fn path(&self, file: &str) -> PathBuf {
        self.dir.join(file)
    }

    /// The contents of a file in the CA's directory.
    pub fn read(&self, file: &str) -> String {
        std::fs::read_to_string(self.path(file))
            .unwrap_or_else(|error| panic!("read {file}: {error}"))
    }

    /// The DER of the certificate `NAME.pem`, to compare with what a server presents.
    pub fn der(&self, name: &str) -> Vec<u8> {
        certificate_der(&self.path(&format!("{name}.pem")))
    }

    /// A `kubernetes.io/tls` Secret holding `NAME.pem` and its key, and the CA as `ca.crt` when
    /// `with_ca` (what a MUTUAL gateway server verifies clients with), as YAML.
    pub fn tls_secret(&self, secret: &str, namespace: &str, name: &str, with_ca: bool) -> String {
        let encode = |file: &str| base64::engine::general_purpose::STANDARD.encode(self.read(file));
        let mut data = format!(
            "  tls.crt: {}\n  tls.key: {}\n",
            encode(&format!("{name}.pem")),
            encode(&format!("{name}-key.pem"))
        );
        if with_ca {
            data.push_str(&format!("  ca.crt: {}\n", encode("ca.pem")));
        }
        format!(
            "apiVersion: v1\nkind: Secret\nmetadata: {{name: {secret}, namespace: {namespace}}}\n\
             type: kubernetes.io/tls\ndata:\n{data}"
        )
    }

    /// A TLS acceptor presenting `NAME.pem`; with `verify_clients`, it requires a client
    /// certificate from this CA.
    pub fn acceptor(&self, name: &str, verify_clients: bool) -> tokio_rustls::TlsAcceptor {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let certificates: Vec<CertificateDer<'static>> =
            CertificateDer::pem_file_iter(self.path(&format!("{name}.pem")))
                .expect("read the server certificate")
                .collect::<Result<_, _>>()
                .expect("parse the server certificate");
        let key = PrivateKeyDer::from_pem_file(self.path(&format!("{name}-key.pem")))
            .expect("the server key");
        let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .expect("TLS versions");
        let builder = if verify_clients {
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(self.roots()),
                provider,
            )
            .build()
            .expect("a client verifier");
            builder.with_client_cert_verifier(verifier)
        } else {
            builder.with_no_client_auth()
        };
        let config = builder
            .with_single_cert(certificates, key)
            .expect("a server config");
        tokio_rustls::TlsAcceptor::from(Arc::new(config))
    }

    /// A TLS connector that trusts this CA only and presents no certificate.
    pub fn connector(&self) -> tokio_rustls::TlsConnector {
        connector_trusting(&self.path("ca.pem"))
    }

    fn roots(&self) -> rustls::RootCertStore {
        roots(&self.path("ca.pem"))
    }

    fn issue(&self, name: &str, usage: Usage<'_>) {
        let extensions = match usage {
            Usage::Server { dns_names } => {
                let names: Vec<String> = dns_names.iter().map(|n| format!("DNS:{n}")).collect();
                format!(
                    "subjectAltName={}\nextendedKeyUsage=serverAuth\n",
                    names.join(",")
                )
            }
            Usage::Client { san } => {
                let san = san.map(|san| format!("subjectAltName={san}\n"));
                format!("extendedKeyUsage=clientAuth\n{}", san.unwrap_or_default())
            }
        };
        let extension_file = format!("{name}.ext");
        std::fs::write(
            self.path(&extension_file),
            format!(
                "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n{extensions}"
            ),
        )
        .expect("write an extension file");
        let (key_file, request, certificate) = (
            format!("{name}-key.pem"),
            format!("{name}.csr"),
            format!("{name}.pem"),
        );
        self.openssl(
            &[
                &["req", "-new"][..],
                &KEY_OPTIONS,
                &["-keyout", &key_file, "-out", &request],
                &["-subj", &format!("/CN=rudder-test-{name}")],
            ]
            .concat(),
        );
        // Distinct serials, so that a rotated certificate is told apart from the one before.
        let serial = self.next_serial.fetch_add(1, Ordering::SeqCst).to_string();
        self.openssl(&[
            "x509",
            "-req",
            "-in",
            &request,
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca-key.pem",
            "-set_serial",
            &serial,
            "-days",
            "2",
            "-out",
            &certificate,
            "-extfile",
            &extension_file,
        ]);
    }

    fn openssl(&self, args: &[&str]) {
        let output = Command::new("openssl")
            .args(args)
            .current_dir(&self.dir)
            .output()
            .expect("run openssl (is it installed?)");
        assert!(
            output.status.success(),
            "openssl {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

/// The DER of the (first) certificate in the PEM file `path`.
pub fn certificate_der(path: &Path) -> Vec<u8> {
    CertificateDer::from_pem_file(path)
        .unwrap_or_else(|error| panic!("parse {}: {error}", path.display()))
        .to_vec()
}

/// A TLS connector that trusts the CA certificates in `ca_file` only and presents no certificate.
pub fn connector_trusting(ca_file: &Path) -> tokio_rustls::TlsConnector {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_root_certificates(roots(ca_file))
        .with_no_client_auth();
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

fn roots(ca_file: &Path) -> rustls::RootCertStore {
    let mut roots = rustls::RootCertStore::empty();
    for ca in CertificateDer::pem_file_iter(ca_file).expect("read the CA") {
        roots.add(ca.expect("parse the CA")).expect("add the CA");
    }
    roots
}

/// P-256 keys, unencrypted: small and quick to make.
const KEY_OPTIONS: [&str; 5] = [
    "-newkey",
    "ec",
    "-pkeyopt",
    "ec_paramgen_curve:prime256v1",
    "-nodes",
];
