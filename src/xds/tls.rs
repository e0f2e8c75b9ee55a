//! TLS on the xDS port, like istiod's 15012: the server certificate and key rudder presents, and
//! optionally a client CA whose certificates clients must present (mutual TLS; others are refused
//! during the handshake). Owns reading those files, re-reading them when they change (so that a
//! rotation by cert-manager or the kubelet needs no restart), and the TLS handshake of each
//! connection the accept loop ([`super::accept`]) hands it. Must not decide anything about xDS:
//! the server only learns who connected ([`TlsPeer`]).

use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::SystemTime;

use rustls::RootCertStore;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ServerConfig, WebPkiClientVerifier};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tonic::transport::server::Connected;
use tracing::{info, warn};

use super::accept::{Handshake, HandshakeError, Prefaced};
use super::closer::ClosableStream;
use super::spiffe::SpiffeId;

/// Where the xDS port's certificates are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// The server's certificate chain (PEM), leaf first.
    pub certificate: PathBuf,
    /// The server's private key (PEM: PKCS#8, PKCS#1 or SEC1).
    pub private_key: PathBuf,
    /// CA certificates (PEM) that sign the client certificates to accept; `None`: clients
    /// present none.
    pub client_ca: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    // The causes are in the messages, not `source`s, so that a reload warning shows them too.
    #[error("read {}: {error}", path.display())]
    Read { path: PathBuf, error: io::Error },
    #[error("{}: {problem}", path.display())]
    Pem { path: PathBuf, problem: String },
    #[error("{} and {}: {error}", certificate.display(), private_key.display())]
    KeyPair {
        certificate: PathBuf,
        private_key: PathBuf,
        error: rustls::Error,
    },
    #[error("client CA {}: {problem}", path.display())]
    ClientCa { path: PathBuf, problem: String },
}

/// The xDS port's TLS settings, loaded; cheap to clone. Before each handshake the files are
/// checked for changes (a `stat` of each) and read again if they changed.
#[derive(Clone)]
pub struct XdsTls {
    files: Arc<TlsFiles>,
    loaded: Arc<Mutex<Loaded>>,
}

/// What the files held when they last loaded, and when they were last looked at.
struct Loaded {
    stamp: Stamp,
    acceptor: TlsAcceptor,
}

/// Each file's modification time and size; a change in either means the file was replaced.
type Stamp = Vec<Option<(SystemTime, u64)>>;

impl std::fmt::Debug for XdsTls {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("XdsTls")
            .field("files", &self.files)
            .finish_non_exhaustive()
    }
}

/// Two settings are the same if they read the same files.
impl PartialEq for XdsTls {
    fn eq(&self, other: &Self) -> bool {
        self.files == other.files
    }
}

impl Eq for XdsTls {}

impl XdsTls {
    /// Reads the files; fails naming the file that is missing or does not hold what it should.
    pub fn load(files: TlsFiles) -> Result<XdsTls, TlsError> {
        let stamp = stamp(&files);
        let acceptor = TlsAcceptor::from(server_config(&files)?);
        Ok(XdsTls {
            files: Arc::new(files),
            loaded: Arc::new(Mutex::new(Loaded { stamp, acceptor })),
        })
    }

    /// The acceptor for the next handshake, from the files as they are now. Files that changed
    /// but do not load (a certificate written before its key, say) are reported once per
    /// change, and the certificates that loaded last keep serving.
    fn acceptor(&self) -> TlsAcceptor {
        let stamp = stamp(&self.files);
        // Each replacement of `Loaded` is whole, so it is consistent even if a holder panicked.
        let mut loaded = self.loaded.lock().unwrap_or_else(PoisonError::into_inner);
        if loaded.stamp != stamp {
            loaded.stamp = stamp;
            match server_config(&self.files) {
                Ok(config) => {
                    info!("xDS TLS certificates changed on disk: serving the new ones");
                    loaded.acceptor = TlsAcceptor::from(config);
                }
                Err(error) => warn!(
                    %error,
                    "xDS TLS files changed but do not load; still serving the previous certificates"
                ),
            }
        }
        loaded.acceptor.clone()
    }
}

fn stamp(files: &TlsFiles) -> Stamp {
    let paths = [Some(&files.certificate), Some(&files.private_key)];
    paths
        .into_iter()
        .chain([files.client_ca.as_ref()])
        .flatten()
        .map(|path| {
            let metadata = std::fs::metadata(path).ok()?;
            Some((metadata.modified().ok()?, metadata.len()))
        })
        .collect()
}

fn server_config(files: &TlsFiles) -> Result<Arc<ServerConfig>, TlsError> {
    let chain = certificates(&files.certificate)?;
    let key = PrivateKeyDer::from_pem_slice(&read(&files.private_key)?).map_err(|error| {
        TlsError::Pem {
            path: files.private_key.clone(),
            problem: format!("no PEM private key: {error}"),
        }
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|error| TlsError::KeyPair {
            certificate: files.certificate.clone(),
            private_key: files.private_key.clone(),
            error,
        })?;
    let builder = match &files.client_ca {
        None => builder.with_no_client_auth(),
        Some(path) => {
            let client_ca = |problem: String| TlsError::ClientCa {
                path: path.clone(),
                problem,
            };
            let mut roots = RootCertStore::empty();
            for certificate in certificates(path)? {
                roots
                    .add(certificate)
                    .map_err(|error| client_ca(error.to_string()))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|error| client_ca(error.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder
        .with_single_cert(chain, key)
        .map_err(|error| TlsError::KeyPair {
            certificate: files.certificate.clone(),
            private_key: files.private_key.clone(),
            error,
        })?;
    // gRPC is HTTP/2 only; Envoy offers `h2` when its xDS cluster speaks HTTP/2.
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Arc::new(config))
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|error| TlsError::Read {
        path: path.to_path_buf(),
        error,
    })
}

/// The certificates of a PEM file; at least one.
fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = |problem: String| TlsError::Pem {
        path: path.to_path_buf(),
        problem,
    };
    let chain = CertificateDer::pem_slice_iter(&read(path)?)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| pem(format!("bad PEM certificate: {error}")))?;
    if chain.is_empty() {
        return Err(pem("no PEM certificate".to_string()));
    }
    Ok(chain)
}

/// Who is on the other end of a TLS connection to the xDS port.
#[derive(Debug, Clone)]
pub struct TlsPeer {
    pub address: SocketAddr,
    /// Whether the client presented a certificate (verified by the handshake), and if so the
    /// SPIFFE identity it carries (its first `spiffe://` URI SAN).
    pub certificate: Option<Option<SpiffeId>>,
}

/// One connection to the xDS port, handshake done.
pub(super) struct TlsConnection {
    stream: Prefaced<TlsStream<ClosableStream>>,
    peer: TlsPeer,
}

impl Connected for TlsConnection {
    type ConnectInfo = TlsPeer;

    fn connect_info(&self) -> TlsPeer {
        self.peer.clone()
    }
}

impl AsyncRead for TlsConnection {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for TlsConnection {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}

/// TLS with the certificates the files hold now, then the HTTP/2 preface inside it.
impl Handshake for XdsTls {
    type Connection = TlsConnection;

    async fn handshake(
        &self,
        stream: ClosableStream,
        address: SocketAddr,
    ) -> Result<TlsConnection, HandshakeError> {
        let stream = self
            .acceptor()
            .accept(stream)
            .await
            .map_err(HandshakeError::Tls)?;
        let certificate = stream
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|chain| chain.first())
            .map(|leaf| SpiffeId::of_certificate(leaf));
        let peer = TlsPeer {
            address,
            certificate,
        };
        let stream = Prefaced::read(stream).await?;
        Ok(TlsConnection { stream, peer })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(dir: &Path) -> TlsFiles {
        TlsFiles {
            certificate: dir.join("cert.pem"),
            private_key: dir.join("key.pem"),
            client_ca: None,
        }
    }

    #[test]
    fn missing_and_bad_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let files = files(dir.path());
        let error = XdsTls::load(files.clone()).unwrap_err().to_string();
        assert!(error.contains("cert.pem"), "{error}");

        std::fs::write(&files.certificate, "not a certificate").unwrap();
        let error = XdsTls::load(files.clone()).unwrap_err().to_string();
        assert!(
            error.contains("cert.pem") && error.contains("no PEM certificate"),
            "{error}"
        );

        let garbage = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        std::fs::write(&files.certificate, garbage).unwrap();
        std::fs::write(&files.private_key, "").unwrap();
        let error = XdsTls::load(files.clone()).unwrap_err().to_string();
        assert!(
            error.contains("key.pem") && error.contains("private key"),
            "{error}"
        );

        let with_ca = TlsFiles {
            client_ca: Some(dir.path().join("ca.pem")),
            ..files
        };
        std::fs::write(
            &with_ca.private_key,
            "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
        )
        .unwrap();
        let error = XdsTls::load(with_ca).unwrap_err().to_string();
        assert!(error.contains("ca.pem"), "{error}");
    }
}
