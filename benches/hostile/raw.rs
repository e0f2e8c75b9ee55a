//! A raw gRPC client on the `h2` crate, for what a well-behaved client library will not do:
//! open streams and never send a request, announce a message and send only part of it, send
//! bytes that are not a valid message, open streams as fast as the connection allows. Every
//! connection leaves from an address of the attacker's (`127.0.249.x`), so rudder's log can be
//! checked for it. It speaks the protocol; what the answers mean is the attacks' business.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use h2::client::{ResponseFuture, SendRequest};
use h2::{RecvStream, SendStream};
use prost::bytes::Bytes;
use tokio::net::{TcpSocket, TcpStream};
use tokio::task::JoinHandle;
use tonic::codegen::http;

pub const SOTW_PATH: &str =
    "/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources";
pub const DELTA_PATH: &str =
    "/envoy.service.discovery.v3.AggregatedDiscoveryService/DeltaAggregatedResources";

/// gRPC's message prefix: a compression flag and a 32-bit length.
pub const PREFIX: usize = 5;

/// A TCP connection from `from` to `to`.
pub async fn tcp(from: IpAddr, to: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(from, 0))?;
    let stream = socket.connect(to).await?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// One HTTP/2 connection; its driver task ends when it is dropped.
pub struct Connection {
    send: SendRequest<Bytes>,
    authority: SocketAddr,
    driver: JoinHandle<()>,
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.driver.abort();
    }
}

/// Why a stream could not be opened.
#[derive(Debug)]
pub enum OpenError {
    /// The connection did not let a new stream open in time (its stream limit).
    Blocked,
    Failed(String),
}

impl Connection {
    pub async fn connect(from: IpAddr, to: SocketAddr) -> Result<Connection, String> {
        let stream = tcp(from, to).await.map_err(|e| format!("connect: {e}"))?;
        Self::handshake(stream, to).await
    }

    /// Like [`Connection::connect`], over TLS with `connector` (which may present a client
    /// certificate), checking the server's certificate for `server_name`.
    pub async fn connect_tls(
        from: IpAddr,
        to: SocketAddr,
        connector: &tokio_rustls::TlsConnector,
        server_name: &str,
    ) -> Result<Connection, String> {
        let stream = tcp(from, to).await.map_err(|e| format!("connect: {e}"))?;
        let name = rustls::pki_types::ServerName::try_from(server_name.to_string())
            .map_err(|e| e.to_string())?;
        let stream = connector
            .connect(name, stream)
            .await
            .map_err(|e| format!("TLS handshake: {e}"))?;
        Self::handshake(stream, to).await
    }

    async fn handshake<T>(stream: T, to: SocketAddr) -> Result<Connection, String>
    where
        T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let (send, connection) = h2::client::Builder::new()
            .initial_window_size(4 << 20)
            .initial_connection_window_size(16 << 20)
            .max_concurrent_reset_streams(1 << 20)
            .handshake::<_, Bytes>(stream)
            .await
            .map_err(|e| format!("HTTP/2 handshake: {e}"))?;
        let driver = tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(Connection {
            send,
            authority: to,
            driver,
        })
    }

    /// The server's limit on concurrent streams, as its SETTINGS said.
    pub fn max_streams(&self) -> usize {
        self.send.current_max_send_streams()
    }

    /// Opens a gRPC stream on `path` (headers only), waiting at most `wait` for the connection
    /// to allow one more stream.
    pub async fn open(&mut self, path: &str, wait: Duration) -> Result<Stream, OpenError> {
        let ready = tokio::time::timeout(wait, self.send.clone().ready()).await;
        let mut send = match ready {
            Err(_) => return Err(OpenError::Blocked),
            Ok(Err(error)) => return Err(OpenError::Failed(error.to_string())),
            Ok(Ok(send)) => send,
        };
        let request = http::Request::builder()
            .method("POST")
            .uri(format!("http://{}{path}", self.authority))
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .body(())
            .map_err(|e| OpenError::Failed(e.to_string()))?;
        let (response, body) = send
            .send_request(request, false)
            .map_err(|e| OpenError::Failed(e.to_string()))?;
        self.send = send;
        Ok(Stream { response, body })
    }
}

/// One open stream: what is still to be sent and the response to come.
pub struct Stream {
    pub response: ResponseFuture,
    pub body: SendStream<Bytes>,
}

/// How a stream ended, as far as it was watched.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ending {
    /// Response messages received (without their prefixes).
    pub messages: Vec<Bytes>,
    /// `grpc-status`, if the stream ended with one.
    pub status: Option<i32>,
    pub message: String,
    /// The stream or connection failed instead (a reset, a closed connection).
    pub error: Option<String>,
    /// Still open when the watch ended.
    pub open: bool,
}

impl Ending {
    /// `CODE: message` or what happened instead, for reports.
    pub fn describe(&self) -> String {
        match (self.status, &self.error) {
            (Some(code), _) => format!("{}: {:?}", code_name(code), self.message),
            (None, Some(error)) => format!("failed: {error}"),
            (None, None) if self.open => "still open".to_string(),
            (None, None) => "ended without a status".to_string(),
        }
    }

    /// Ended with a status other than OK that says why.
    pub fn refused_with_message(&self) -> bool {
        self.status.is_some_and(|code| code != 0) && !self.message.trim().is_empty()
    }
}

pub fn code_name(code: i32) -> String {
    let name = match code {
        0 => "OK",
        1 => "CANCELLED",
        2 => "UNKNOWN",
        3 => "INVALID_ARGUMENT",
        4 => "DEADLINE_EXCEEDED",
        7 => "PERMISSION_DENIED",
        8 => "RESOURCE_EXHAUSTED",
        12 => "UNIMPLEMENTED",
        13 => "INTERNAL",
        14 => "UNAVAILABLE",
        16 => "UNAUTHENTICATED",
        _ => return format!("status {code}"),
    };
    name.to_string()
}

/// `message` with gRPC's prefix.
pub fn frame(message: &[u8]) -> Bytes {
    let mut framed = Vec::with_capacity(PREFIX + message.len());
    framed.push(0);
    framed.extend_from_slice(&(message.len() as u32).to_be_bytes());
    framed.extend_from_slice(message);
    Bytes::from(framed)
}

/// Sends `data` as flow control allows, giving up after `limit`; `end` ends the request side.
pub async fn send_all(
    body: &mut SendStream<Bytes>,
    mut data: Bytes,
    end: bool,
    limit: Duration,
) -> Result<(), String> {
    let sending = async {
        while !data.is_empty() {
            body.reserve_capacity(data.len().min(1 << 20));
            let granted = std::future::poll_fn(|cx| body.poll_capacity(cx))
                .await
                .ok_or("the stream closed")?
                .map_err(|e| e.to_string())?;
            if granted == 0 {
                continue;
            }
            let chunk = data.split_to(granted.min(data.len()));
            body.send_data(chunk, false).map_err(|e| e.to_string())?;
        }
        if end {
            body.send_data(Bytes::new(), true)
                .map_err(|e| e.to_string())?;
        }
        Ok::<(), String>(())
    };
    tokio::time::timeout(limit, sending)
        .await
        .map_err(|_| format!("sending did not finish within {limit:?}"))?
}

/// Watches a response for at most `limit`: its messages until `enough` of them arrived, or its
/// end.
pub async fn watch(response: ResponseFuture, limit: Duration, enough: usize) -> Ending {
    let mut ending = Ending {
        open: true,
        ..Ending::default()
    };
    let _ = tokio::time::timeout(limit, read(response, &mut ending, enough)).await;
    ending
}

async fn read(response: ResponseFuture, ending: &mut Ending, enough: usize) {
    let response = match response.await {
        Ok(response) => response,
        Err(error) => {
            ending.open = false;
            ending.error = Some(error.to_string());
            return;
        }
    };
    // A trailers-only answer carries the status in its headers.
    if status_of(response.headers(), ending) {
        ending.open = false;
        return;
    }
    let mut body: RecvStream = response.into_body();
    let mut buffer = Vec::new();
    while let Some(data) = body.data().await {
        match data {
            Ok(data) => {
                let _ = body.flow_control().release_capacity(data.len());
                buffer.extend_from_slice(&data);
                while let Some(message) = take_message(&mut buffer) {
                    ending.messages.push(message);
                }
                if ending.messages.len() >= enough {
                    return;
                }
            }
            Err(error) => {
                ending.open = false;
                ending.error = Some(error.to_string());
                return;
            }
        }
    }
    ending.open = false;
    match body.trailers().await {
        Ok(Some(trailers)) => {
            status_of(&trailers, ending);
        }
        Ok(None) => {}
        Err(error) => ending.error = Some(error.to_string()),
    }
}

/// Reads `grpc-status` and `grpc-message`; whether there was a status.
fn status_of(headers: &http::HeaderMap, ending: &mut Ending) -> bool {
    let Some(code) = headers
        .get("grpc-status")
        .and_then(|value| value.to_str().ok()?.parse().ok())
    else {
        return false;
    };
    ending.status = Some(code);
    ending.message = headers
        .get("grpc-message")
        .map(|value| percent_decode(value.as_bytes()))
        .unwrap_or_default();
    true
}

fn take_message(buffer: &mut Vec<u8>) -> Option<Bytes> {
    let prefix = buffer.get(..PREFIX)?;
    let len = u32::from_be_bytes([prefix[1], prefix[2], prefix[3], prefix[4]]) as usize;
    if buffer.len() < PREFIX + len {
        return None;
    }
    let message = Bytes::copy_from_slice(&buffer[PREFIX..PREFIX + len]);
    buffer.drain(..PREFIX + len);
    Some(message)
}

/// gRPC percent-encodes `grpc-message`.
fn percent_decode(bytes: &[u8]) -> String {
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (bytes[i], bytes.get(i + 1), bytes.get(i + 2)) {
            (b'%', Some(&high), Some(&low)) if hex(high).is_some() && hex(low).is_some() => {
                decoded.push((hex(high).unwrap_or(0) * 16 + hex(low).unwrap_or(0)) as u8);
                i += 3;
            }
            (byte, _, _) => {
                decoded.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&decoded).into_owned()
}
