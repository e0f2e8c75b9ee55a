//! The ADS gRPC service on the wire: routes the two ADS methods to a handler, and frames its
//! requests and responses ([`super::wire`]) itself. Each response is encoded from the shared bytes
//! of its resources straight into one allocation of its own, which is freed once written; a
//! large request (Envoy's EDS subscription names every cluster) is decoded from a buffer that is
//! freed once the request is read. tonic's codecs keep per-stream buffers the size of the
//! largest message ever sent and received (a full CDS of a large mesh) for the stream's whole
//! life, for every proxy.
//!
//! Requests are bounded by a size of their own (a proxy's requests are small; a response, the
//! full config of a large mesh, is not): a request whose 5-byte prefix announces more is refused
//! before any of it is buffered, and the buffer grows only with the bytes that arrive, so a
//! prefix alone costs nothing. Every request that cannot be taken ends its stream with a status
//! that says why ([`ReadError::Refused`]).

use std::convert::Infallible;
use std::marker::PhantomData;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, ready};

use envoy_types::pb::envoy::service::discovery::v3::{DeltaDiscoveryRequest, DiscoveryRequest};
use http_body::{Body as _, Frame};
use prost::bytes::{Buf, BytesMut};
use tokio::sync::mpsc;
use tonic::codegen::{BoxFuture, Bytes, Service, http};
use tonic::metadata::GRPC_CONTENT_TYPE;
use tonic::server::NamedService;
use tonic::{Request, Status};

use super::auth::Credentials;
use super::tls::TlsPeer;
use super::wire::{DeltaResponse, SotwResponse, WireMessage};
use crate::metrics::Refusal;

const SOTW_PATH: &str =
    "/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources";
const DELTA_PATH: &str =
    "/envoy.service.discovery.v3.AggregatedDiscoveryService/DeltaAggregatedResources";

/// gRPC's message prefix: a compression flag and a 32-bit length.
const HEADER_SIZE: usize = 5;

/// A request buffer that grew past this is freed once empty rather than kept for the next one.
const KEEP_BUFFER: usize = 64 * 1024;

/// The responses of one stream, as its handler queues them; an error ends the stream with that
/// status.
pub(super) type Responses<T> = mpsc::Receiver<Result<T, Status>>;

/// What answers ADS streams: each call gets who is calling and the stream of requests, and
/// returns the responses.
pub(super) trait Ads: Send + Sync + 'static {
    fn sotw(&self, peer: Peer, requests: Requests<DiscoveryRequest>) -> Responses<SotwResponse>;

    fn delta(
        &self,
        peer: Peer,
        requests: Requests<DeltaDiscoveryRequest>,
    ) -> Responses<DeltaResponse>;
}

/// Who opened a stream, as far as the connection tells.
pub(super) struct Peer {
    /// The proxy's address, when the transport knows it.
    pub address: Option<SocketAddr>,
    /// What it offers to prove its identity (`super::auth` decides what that proves).
    pub credentials: Credentials,
}

/// The largest messages each way, in bytes.
#[derive(Debug, Clone, Copy)]
pub(super) struct Limits {
    pub request: usize,
    pub response: usize,
}

/// The bytes of requests received but not yet whole, across every stream of the server, and the
/// most they may add up to. A stream may hold one unfinished request for as long as it lives, so
/// without a shared bound many streams each holding one just under the size limit would add up
/// to any amount of memory.
#[derive(Debug)]
pub(super) struct Unfinished {
    bytes: AtomicUsize,
    budget: usize,
}

impl Unfinished {
    pub fn new(budget: usize) -> Arc<Unfinished> {
        Arc::new(Unfinished {
            bytes: AtomicUsize::new(0),
            budget,
        })
    }

    /// Counts `more` bytes if they fit the budget.
    fn charge(&self, more: usize) -> bool {
        self.bytes
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |held| {
                held.checked_add(more).filter(|total| *total <= self.budget)
            })
            .is_ok()
    }

    fn release(&self, less: usize) {
        self.bytes.fetch_sub(less, Ordering::AcqRel);
    }
}

/// The longest `authorization` header read: far beyond a Kubernetes token, so that a client
/// cannot make rudder send megabytes to the API server.
const MAX_TOKEN_BYTES: usize = 16 * 1024;

/// The `envoy.service.discovery.v3.AggregatedDiscoveryService` service.
pub(super) struct AdsServer<T> {
    inner: Arc<T>,
    limits: Limits,
    unfinished: Arc<Unfinished>,
}

impl<T> AdsServer<T> {
    pub fn new(inner: T, limits: Limits, unfinished: Arc<Unfinished>) -> AdsServer<T> {
        AdsServer {
            inner: Arc::new(inner),
            limits,
            unfinished,
        }
    }
}

impl<T> Clone for AdsServer<T> {
    fn clone(&self) -> Self {
        AdsServer {
            inner: self.inner.clone(),
            limits: self.limits,
            unfinished: self.unfinished.clone(),
        }
    }
}

impl<T> NamedService for AdsServer<T> {
    const NAME: &'static str = "envoy.service.discovery.v3.AggregatedDiscoveryService";
}

impl<T: Ads> Service<http::Request<tonic::body::Body>> for AdsServer<T> {
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<tonic::body::Body>) -> Self::Future {
        let Limits {
            request: limit,
            response: response_limit,
        } = self.limits;
        let response = match request.uri().path() {
            SOTW_PATH => {
                let (peer, requests) = requests(request, limit, &self.unfinished);
                respond(self.inner.sotw(peer, requests), response_limit)
            }
            DELTA_PATH => {
                let (peer, requests) = requests(request, limit, &self.unfinished);
                respond(self.inner.delta(peer, requests), response_limit)
            }
            _ => Status::unimplemented("").into_http(),
        };
        Box::pin(async move { Ok(response) })
    }
}

/// Who is calling, and the stream of requests.
fn requests<Req>(
    request: http::Request<tonic::body::Body>,
    limit: usize,
    unfinished: &Arc<Unfinished>,
) -> (Peer, Requests<Req>) {
    let request = Request::from_http(request);
    let tls = request.extensions().get::<TlsPeer>();
    let token = request
        .metadata()
        .get("authorization")
        .and_then(|value| value.to_str().ok())
        .filter(|value| value.len() <= MAX_TOKEN_BYTES)
        .and_then(|value| value.strip_prefix("Bearer "))
        .map(str::to_string);
    let peer = Peer {
        address: request.remote_addr().or_else(|| tls.map(|tls| tls.address)),
        credentials: Credentials {
            tls: tls.is_some(),
            certificate: tls.and_then(|tls| tls.certificate.clone()),
            token,
        },
    };
    let requests = Requests {
        body: Mutex::new(request.into_inner()),
        buf: BytesMut::new(),
        peak: 0,
        limit,
        unfinished: unfinished.clone(),
        charged: 0,
        request: PhantomData,
    };
    (peer, requests)
}

fn respond<Resp: WireMessage + Send + 'static>(
    responses: Responses<Resp>,
    limit: usize,
) -> http::Response<tonic::body::Body> {
    let body = ResponseBody {
        responses,
        limit,
        done: false,
    };
    let mut response = http::Response::new(tonic::body::Body::new(body));
    response
        .headers_mut()
        .insert(http::header::CONTENT_TYPE, GRPC_CONTENT_TYPE);
    response
}

/// Why the next request of a stream could not be read.
#[derive(Debug)]
pub(super) enum ReadError {
    /// The client sent what the server does not take; the stream ends with `status`, which says
    /// why.
    Refused { reason: Refusal, status: Status },
    /// The stream failed under the request (the client reset it, the connection broke): there is
    /// no one to tell.
    Transport(Status),
}

impl ReadError {
    fn refused(reason: Refusal, status: Status) -> ReadError {
        ReadError::Refused { reason, status }
    }
}

/// The requests of one stream.
pub(super) struct Requests<Req> {
    /// In a mutex only to be `Sync` (stream tasks hold `&self` across awaits); only ever used
    /// through `&mut`, so never locked.
    body: Mutex<tonic::body::Body>,
    /// Received bytes of messages not yet decoded.
    buf: BytesMut,
    /// The most `buf` held since it was last allocated.
    peak: usize,
    limit: usize,
    /// The server's budget for unfinished requests, and what this stream's `buf` counts in it.
    unfinished: Arc<Unfinished>,
    charged: usize,
    request: PhantomData<fn() -> Req>,
}

impl<Req> Drop for Requests<Req> {
    fn drop(&mut self) {
        self.unfinished.release(self.charged);
    }
}

impl<Req: prost::Message + Default> Requests<Req> {
    /// Counts what `buf` holds in the server's budget; refuses the stream if it does not fit.
    fn account(&mut self) -> Result<(), ReadError> {
        let held = self.buf.len();
        if held < self.charged {
            self.unfinished.release(self.charged - held);
        } else if !self.unfinished.charge(held - self.charged) {
            let status = Status::resource_exhausted(format!(
                "the server holds its limit of {} bytes of requests not yet whole \
                 (--xds-max-unfinished-request-bytes); send requests whole",
                self.unfinished.budget
            ));
            return Err(ReadError::refused(Refusal::MessageSize, status));
        }
        self.charged = held;
        Ok(())
    }

    /// The next request; `None` once the proxy closed its side of the stream.
    pub async fn message(&mut self) -> Result<Option<Req>, ReadError> {
        loop {
            if let Some(request) = self.decode()? {
                return Ok(Some(request));
            }
            let body = self.body.get_mut().unwrap_or_else(PoisonError::into_inner);
            let frame = std::future::poll_fn(|cx| Pin::new(&mut *body).poll_frame(cx)).await;
            match frame {
                // Trailers carry nothing for a server.
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        self.buf.extend_from_slice(&data);
                        self.peak = self.peak.max(self.buf.len());
                        self.account()?;
                    }
                }
                Some(Err(status)) => return Err(ReadError::Transport(status)),
                None if self.buf.is_empty() => return Ok(None),
                None => {
                    return Err(ReadError::refused(
                        Refusal::BadRequest,
                        Status::internal("the stream ended inside a request"),
                    ));
                }
            }
        }
    }

    /// Decodes the next message if all of it has arrived.
    fn decode(&mut self) -> Result<Option<Req>, ReadError> {
        let Some(prefix) = self.buf.get(..HEADER_SIZE) else {
            return Ok(None);
        };
        if prefix[0] != 0 {
            return Err(ReadError::refused(
                Refusal::BadRequest,
                Status::unimplemented("compressed requests are not supported"),
            ));
        }
        let len = u32::from_be_bytes([prefix[1], prefix[2], prefix[3], prefix[4]]) as usize;
        if len > self.limit {
            let status = Status::resource_exhausted(format!(
                "request of {len} bytes is over the limit of {} bytes (--xds-max-message-size)",
                self.limit
            ));
            return Err(ReadError::refused(Refusal::MessageSize, status));
        }
        // Not reserved ahead: the buffer grows as the bytes arrive, so that a prefix announcing a
        // large request costs nothing until the request is sent.
        let Some(message) = self.buf.get(HEADER_SIZE..HEADER_SIZE + len) else {
            return Ok(None);
        };
        let request = Req::decode(message).map_err(|error| {
            let status = Status::invalid_argument(format!("cannot decode the request: {error}"));
            ReadError::refused(Refusal::BadRequest, status)
        })?;
        self.buf.advance(HEADER_SIZE + len);
        if self.buf.is_empty() && self.peak > KEEP_BUFFER {
            self.buf = BytesMut::new();
            self.peak = 0;
        }
        self.account()?;
        Ok(Some(request))
    }
}

/// A stream's response body: one data frame per response, then the status as trailers.
struct ResponseBody<Resp> {
    responses: Responses<Resp>,
    limit: usize,
    done: bool,
}

impl<Resp: WireMessage> http_body::Body for ResponseBody<Resp> {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        if self.done {
            return Poll::Ready(None);
        }
        let status = match ready!(self.responses.poll_recv(cx)) {
            Some(Ok(response)) => match frame(&response, self.limit) {
                Ok(data) => return Poll::Ready(Some(Ok(Frame::data(data)))),
                Err(status) => status,
            },
            Some(Err(status)) => status,
            None => Status::ok(""),
        };
        self.done = true;
        let mut trailers = http::HeaderMap::new();
        Poll::Ready(Some(
            status
                .add_header(&mut trailers)
                .map(|()| Frame::trailers(trailers)),
        ))
    }

    fn is_end_stream(&self) -> bool {
        self.done
    }
}

/// One gRPC message: prefix, then the response, in an allocation of its own.
fn frame(response: &impl WireMessage, limit: usize) -> Result<Bytes, Status> {
    let len = response.encoded_len();
    let prefix = u32::try_from(len)
        .ok()
        .filter(|_| len <= limit)
        .ok_or_else(|| {
            Status::resource_exhausted(format!(
                "response of {len} bytes is over the limit of {limit}"
            ))
        })?;
    let mut buf = Vec::with_capacity(HEADER_SIZE + len);
    buf.push(0);
    buf.extend_from_slice(&prefix.to_be_bytes());
    response.encode_raw(&mut buf);
    Ok(Bytes::from(buf))
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;

    use envoy_types::pb::envoy::config::core::v3::Node;
    use prost::Message;

    use super::*;

    /// A request body that delivers these chunks.
    struct Chunks(VecDeque<Vec<u8>>);

    impl http_body::Body for Chunks {
        type Data = Bytes;
        type Error = Status;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            _cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
            Poll::Ready(
                self.0
                    .pop_front()
                    .map(|chunk| Ok(Frame::data(Bytes::from(chunk)))),
            )
        }
    }

    fn requests(chunks: Vec<Vec<u8>>, limit: usize) -> Requests<DiscoveryRequest> {
        sharing(chunks, limit, &Unfinished::new(usize::MAX))
    }

    /// Requests whose unfinished bytes count in `unfinished`.
    fn sharing(
        chunks: Vec<Vec<u8>>,
        limit: usize,
        unfinished: &Arc<Unfinished>,
    ) -> Requests<DiscoveryRequest> {
        Requests {
            body: Mutex::new(tonic::body::Body::new(Chunks(chunks.into()))),
            buf: BytesMut::new(),
            peak: 0,
            limit,
            unfinished: unfinished.clone(),
            charged: 0,
            request: PhantomData,
        }
    }

    #[tokio::test]
    async fn unfinished_requests_of_all_streams_share_one_budget() {
        let unfinished = Unfinished::new(100);
        // A prefix announcing 200 bytes (under the size limit), and 75 of them.
        let mut partial = vec![0, 0, 0, 0, 200];
        partial.extend([0; 75]);
        let mut first = sharing(vec![], 1000, &unfinished);
        first.buf.extend_from_slice(&partial);
        assert!(first.account().is_ok());
        let mut second = sharing(vec![], 1000, &unfinished);
        second.buf.extend_from_slice(&partial[..40]);
        let Err(ReadError::Refused { status, .. }) = second.account() else {
            panic!("the second stream's bytes do not fit");
        };
        assert_eq!(status.code(), tonic::Code::ResourceExhausted);
        assert!(
            status
                .message()
                .contains("--xds-max-unfinished-request-bytes"),
            "{status:?}"
        );
        // The first stream's bytes go back to the budget when it ends.
        drop(first);
        assert!(second.account().is_ok());
        assert_eq!(unfinished.bytes.load(Ordering::Acquire), 40);
        drop(second);
        // A request that arrives whole counts only until it is decoded.
        let whole = framed(&request(1));
        assert!(whole.len() <= 100);
        let mut third = sharing(vec![whole], 1000, &unfinished);
        assert!(third.message().await.unwrap().is_some());
        assert_eq!(unfinished.bytes.load(Ordering::Acquire), 0);
    }

    fn framed(request: &DiscoveryRequest) -> Vec<u8> {
        let message = request.encode_to_vec();
        let mut framed = vec![0];
        framed.extend_from_slice(&(message.len() as u32).to_be_bytes());
        framed.extend_from_slice(&message);
        framed
    }

    fn request(names: usize) -> DiscoveryRequest {
        DiscoveryRequest {
            node: Some(Node {
                id: "sidecar~10.0.0.1~a.b~b.svc.cluster.local".into(),
                ..Default::default()
            }),
            resource_names: (0..names).map(|i| format!("outbound|80||s{i}.b")).collect(),
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn requests_are_read_across_and_within_chunks() {
        let (big, small) = (request(10_000), request(1));
        let mut bytes = framed(&big);
        bytes.extend(framed(&small));
        bytes.extend(framed(&small));
        // Chunks that split prefixes and messages anywhere.
        let chunks: Vec<Vec<u8>> = bytes.chunks(7_001).map(<[u8]>::to_vec).collect();
        let mut requests = requests(chunks, 1 << 20);
        assert_eq!(requests.message().await.unwrap(), Some(big));
        assert_eq!(requests.message().await.unwrap(), Some(small.clone()));
        assert_eq!(requests.message().await.unwrap(), Some(small));
        // The big request's buffer is not kept once read.
        assert_eq!((requests.buf.capacity(), requests.peak), (0, 0));
        assert_eq!(requests.message().await.unwrap(), None);
    }

    /// The refusal reading `chunks` ends with.
    async fn refusal(chunks: Vec<Vec<u8>>, limit: usize) -> (Refusal, Status) {
        match requests(chunks, limit).message().await {
            Err(ReadError::Refused { reason, status }) => (reason, status),
            other => panic!("not refused: {other:?}"),
        }
    }

    #[tokio::test]
    async fn bad_requests_end_the_stream() {
        let mut compressed = framed(&request(1));
        compressed[0] = 1;
        let (reason, status) = refusal(vec![compressed], 1024).await;
        assert_eq!(reason, Refusal::BadRequest);
        assert_eq!(status.code(), tonic::Code::Unimplemented);

        let (reason, status) = refusal(vec![framed(&request(100))], 64).await;
        assert_eq!(reason, Refusal::MessageSize);
        assert_eq!(status.code(), tonic::Code::ResourceExhausted);
        assert!(
            status
                .message()
                .contains("limit of 64 bytes (--xds-max-message-size)"),
            "{status:?}"
        );

        let mut truncated = framed(&request(1));
        truncated.pop();
        let (reason, status) = refusal(vec![truncated], 1024).await;
        assert_eq!(reason, Refusal::BadRequest);
        assert_eq!(status.code(), tonic::Code::Internal);

        // Field 4 (`type_url`, a string) holding bytes that are not UTF-8.
        let not_utf8 = vec![0, 0, 0, 0, 4, 0x22, 2, 0xff, 0xfe];
        let (reason, status) = refusal(vec![not_utf8], 1024).await;
        assert_eq!(reason, Refusal::BadRequest);
        assert_eq!(status.code(), tonic::Code::InvalidArgument);
        assert!(status.message().contains("UTF-8"), "{status:?}");
    }

    #[tokio::test]
    async fn a_prefix_alone_allocates_nothing() {
        // The prefix of a request at the limit, and its first bytes.
        let mut chunk = vec![0];
        chunk.extend_from_slice(&(1u32 << 20).to_be_bytes());
        chunk.extend_from_slice(&[0; 100]);
        let mut requests = requests(vec![chunk], 1 << 20);
        // The body has no more: the stream ends inside the request.
        let ended = requests.message().await;
        assert!(matches!(ended, Err(ReadError::Refused { .. })), "{ended:?}");
        assert!(
            requests.buf.capacity() < 1 << 16,
            "{}",
            requests.buf.capacity()
        );
    }

    #[test]
    fn frames_are_prefixed_messages() {
        let response = SotwResponse {
            version_info: "1".into(),
            ..Default::default()
        };
        let data = frame(&response, 1024).unwrap();
        assert_eq!(&data[..HEADER_SIZE], [0, 0, 0, 0, 3]);
        assert_eq!(&data[HEADER_SIZE..], response.encode_to_vec());
        let status = frame(&response, 2).unwrap_err();
        assert_eq!(status.code(), tonic::Code::ResourceExhausted);
    }
}
