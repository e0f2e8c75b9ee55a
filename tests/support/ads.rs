//! An in-process ADS client's side of the wire tests: the snapshot `rudder serve` would publish
//! for some YAML, and raw ADS streams to an xDS server. It owns no server and checks nothing
//! about the responses; that is each test's business.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;
use envoy_types::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, DiscoveryRequest, DiscoveryResponse,
};
use rudder::diagnostic::Origin;
use rudder::inputs::yaml::parse_documents;
use rudder::inputs::{Decoded, Entry, Inputs, decode};
use rudder::model::{LastGood, build};
use rudder::xds::Snapshot;
use tokio::sync::mpsc;
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio_stream::wrappers::ReceiverStream;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint};
use tonic::{Status, Streaming};

/// The model `rudder serve` would build from `yaml` (every document a kind rudder reads, read as
/// the file `test.yaml`), as the snapshot it would publish with its inputs and config errors.
pub fn snapshot(yaml: &str, generation: u64) -> Arc<Snapshot> {
    let mut inputs = Inputs::default();
    for document in parse_documents(yaml).expect("test YAML parses") {
        let Decoded::Object(key, object) = decode(document.value, "default").expect("decodes")
        else {
            panic!("a kind rudder does not read");
        };
        let origin = Origin::File {
            path: "test.yaml".into(),
            line: document.line,
        };
        inputs.insert(key, Entry { origin, object });
    }
    let built = build(&inputs, &LastGood::default());
    Arc::new(Snapshot {
        model: Arc::new(built.model),
        errors: built.errors,
        generation,
        inputs: Arc::new(inputs),
        ..Snapshot::default()
    })
}

async fn client(xds: SocketAddr) -> AggregatedDiscoveryServiceClient<Channel> {
    AggregatedDiscoveryServiceClient::connect(format!("http://{xds}"))
        .await
        .expect("connect")
}

/// How a client reaches rudder's TLS xDS port: the CA that signed rudder's certificate, the
/// name rudder's certificate carries, and the client certificate and key to present, if any.
#[derive(Debug, Clone)]
pub struct XdsTlsClient {
    pub ca: PathBuf,
    pub server_name: String,
    pub certificate: Option<(PathBuf, PathBuf)>,
}

/// An ADS client over TLS (mutual TLS when `tls` has a certificate), carrying `token` as a
/// bearer token on every stream when given.
pub async fn tls_client(
    xds: SocketAddr,
    tls: &XdsTlsClient,
    token: Option<&str>,
) -> AggregatedDiscoveryServiceClient<InterceptedService<Channel, Bearer>> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for ca in CertificateDer::pem_file_iter(&tls.ca).expect("read the CA") {
        roots.add(ca.expect("parse the CA")).expect("add the CA");
    }
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_root_certificates(roots);
    let mut config = match &tls.certificate {
        None => builder.with_no_client_auth(),
        Some((certificate, key)) => {
            let chain = CertificateDer::pem_file_iter(certificate)
                .expect("read the client certificate")
                .collect::<Result<Vec<_>, _>>()
                .expect("parse the client certificate");
            let key = PrivateKeyDer::from_pem_file(key).expect("read the client key");
            builder
                .with_client_auth_cert(chain, key)
                .expect("a client certificate")
        }
    };
    config.alpn_protocols = vec![b"h2".to_vec()];
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let server_name = ServerName::try_from(tls.server_name.clone()).expect("a server name");
    let channel = Endpoint::from_shared(format!("http://{xds}"))
        .expect("an endpoint")
        .connect_with_connector(tower::service_fn(move |_| {
            let (connector, server_name) = (connector.clone(), server_name.clone());
            async move {
                let tcp = tokio::net::TcpStream::connect(xds).await?;
                let stream = connector.connect(server_name, tcp).await?;
                Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(stream))
            }
        }))
        .await
        .expect("connect over TLS");
    let bearer = Bearer(token.map(|token| {
        format!("Bearer {token}")
            .parse()
            .expect("a token fits a header")
    }));
    AggregatedDiscoveryServiceClient::with_interceptor(channel, bearer)
}

/// Adds `authorization: Bearer TOKEN` to every request, when it has a token.
#[derive(Clone)]
pub struct Bearer(Option<MetadataValue<Ascii>>);

impl Interceptor for Bearer {
    fn call(&mut self, mut request: tonic::Request<()>) -> Result<tonic::Request<()>, Status> {
        if let Some(token) = &self.0 {
            request
                .metadata_mut()
                .insert("authorization", token.clone());
        }
        Ok(request)
    }
}

/// A delta ADS stream on an ADS client (see [`tls_client`]).
pub async fn delta_stream_on<T>(
    client: &mut AggregatedDiscoveryServiceClient<T>,
) -> Result<
    (
        mpsc::Sender<DeltaDiscoveryRequest>,
        Streaming<DeltaDiscoveryResponse>,
    ),
    Status,
>
where
    T: tonic::client::GrpcService<tonic::body::Body>,
    T::Error: Into<tonic::codegen::StdError>,
    T::ResponseBody: tonic::codegen::Body<Data = tonic::codegen::Bytes> + Send + 'static,
    <T::ResponseBody as tonic::codegen::Body>::Error: Into<tonic::codegen::StdError> + Send,
{
    let (requests, outgoing) = mpsc::channel(8);
    let responses = client
        .delta_aggregated_resources(ReceiverStream::new(outgoing))
        .await?
        .into_inner();
    Ok((requests, responses))
}

/// A state-of-the-world ADS stream on an ADS client (see [`tls_client`]).
pub async fn sotw_stream_on<T>(
    client: &mut AggregatedDiscoveryServiceClient<T>,
) -> Result<(mpsc::Sender<DiscoveryRequest>, Streaming<DiscoveryResponse>), Status>
where
    T: tonic::client::GrpcService<tonic::body::Body>,
    T::Error: Into<tonic::codegen::StdError>,
    T::ResponseBody: tonic::codegen::Body<Data = tonic::codegen::Bytes> + Send + 'static,
    <T::ResponseBody as tonic::codegen::Body>::Error: Into<tonic::codegen::StdError> + Send,
{
    let (requests, outgoing) = mpsc::channel(8);
    let responses = client
        .stream_aggregated_resources(ReceiverStream::new(outgoing))
        .await?
        .into_inner();
    Ok((requests, responses))
}

/// A new delta ADS stream to the xDS server at `xds`: where to send requests, and the responses.
pub async fn delta_stream(
    xds: SocketAddr,
) -> (
    mpsc::Sender<DeltaDiscoveryRequest>,
    Streaming<DeltaDiscoveryResponse>,
) {
    delta_stream_on(&mut client(xds).await)
        .await
        .expect("a delta stream")
}

/// A new state-of-the-world ADS stream to the xDS server at `xds`.
pub async fn sotw_stream(
    xds: SocketAddr,
) -> (mpsc::Sender<DiscoveryRequest>, Streaming<DiscoveryResponse>) {
    sotw_stream_on(&mut client(xds).await)
        .await
        .expect("a stream")
}
