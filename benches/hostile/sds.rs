//! SDS theft, as the issue did it: a client that proves nothing claims to be a gateway of
//! `istio-system` and asks for the namespace's gateway credentials, by name (state of the
//! world) or all of them (delta, `*`); over plaintext, and over mutual TLS with certificates
//! of the right CA that prove no entitled identity. Any Secret returned fails the attack's
//! check, which says whether the private key is the Secret's own; over plaintext, so does a
//! log that never names the client's address.

use std::time::Duration;

use envoy_types::pb::envoy::config::core::v3::data_source::Specifier;
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::Secret;
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::secret::Type;
use envoy_types::pb::envoy::service::discovery::v3::{DeltaDiscoveryResponse, DiscoveryResponse};
use envoy_types::pb::google::protobuf::Any;
use prost::Message;
use rudder::translate::ResourceType;

use super::attacks::{Findings, Verdict};
use super::config::{KEY_PEM, SECRETS};
use super::raw::{self, Connection, DELTA_PATH, Ending, SOTW_PATH};
use super::run::Window;
use super::scene::{Scene, TLS_SERVER_NAME};
use super::xds::{self, GATEWAY_NODE};

/// How long the thief waits for Secrets.
const WAIT: Duration = Duration::from_secs(3);

pub async fn steal(scene: &Scene, delta: bool, mut window: Window) -> Findings {
    let from = scene.slot.attacker(1);
    let connection = match Connection::connect(from, scene.xds).await {
        Ok(connection) => connection,
        Err(error) => return Findings::broken(error),
    };
    let (ending, _held) = match ask(connection, delta).await {
        Ok(asked) => asked,
        Err(error) => return Findings::broken(error),
    };
    // The stream stays open while the edits are timed.
    window.hold().await;
    let secrets = secrets_of(&ending, delta);
    let mut findings = judge(&[(String::new(), secrets)], &ending.describe());
    let peer = from.to_string();
    if !scene.rudder.log_text().contains(&peer) {
        findings.fail(format!("rudder's log never names the peer {peer}"));
    }
    findings
}

/// The same requests over mutual TLS, from each thief's certificate.
pub async fn steal_over_mtls(scene: &Scene, mut window: Window) -> Findings {
    let Some(tls) = &scene.tls else {
        return Findings::broken("the scene serves no TLS".to_string());
    };
    let mut stolen = Vec::new();
    let mut answers = Vec::new();
    let mut held = Vec::new();
    for (n, thief) in ["thief-dns", "thief-spiffe"].into_iter().enumerate() {
        for delta in [false, true] {
            let connector = tls.ca.client_connector(thief);
            let from = scene.slot.attacker(n + 1);
            let label = format!("{thief} {}", if delta { "delta" } else { "sotw" });
            let asked =
                match Connection::connect_tls(from, scene.xds, &connector, TLS_SERVER_NAME).await {
                    Ok(connection) => ask(connection, delta).await,
                    Err(error) => Err(error),
                };
            match asked {
                Ok((ending, kept)) => {
                    answers.push(format!("{label}: {}", ending.describe()));
                    stolen.push((label, secrets_of(&ending, delta)));
                    held.push(kept);
                }
                // A refused handshake is a refusal.
                Err(error) => answers.push(format!("{label}: {error}")),
            }
        }
    }
    window.hold().await;
    judge(&stolen, &answers.join("; "))
}

/// Asks for the gateway Secrets on a new stream: by name (SotW) or `*` (delta). Returns what
/// came back within [`WAIT`], and what keeps the stream open.
async fn ask(mut connection: Connection, delta: bool) -> Result<(Ending, Held), String> {
    let path = if delta { DELTA_PATH } else { SOTW_PATH };
    let mut stream = connection
        .open(path, WAIT)
        .await
        .map_err(|e| format!("{e:?}"))?;
    let node = Some(xds::node(GATEWAY_NODE));
    let request = if delta {
        xds::framed(&xds::delta(
            node,
            ResourceType::Secret,
            vec!["*".to_string()],
        ))
    } else {
        let names = SECRETS
            .iter()
            .map(|name| format!("kubernetes://{name}"))
            .collect();
        xds::framed(&xds::sotw(node, ResourceType::Secret, names))
    };
    raw::send_all(&mut stream.body, request, false, WAIT).await?;
    let ending = raw::watch(stream.response, WAIT, 1).await;
    Ok((ending, (connection, stream.body)))
}

/// A stream kept open: its connection and its request side.
type Held = (Connection, h2::SendStream<prost::bytes::Bytes>);

/// Any Secret to anyone fails; `answers` says what each attempt saw.
fn judge(stolen: &[(String, Vec<Secret>)], answers: &str) -> Findings {
    let count: usize = stolen.iter().map(|(_, secrets)| secrets.len()).sum();
    if count == 0 {
        return Findings::new(
            Verdict::Refused,
            format!("no Secret in {WAIT:?} ({answers})"),
        );
    }
    let keys = stolen
        .iter()
        .flat_map(|(_, secrets)| secrets)
        .filter(|secret| has_the_key(secret))
        .count();
    let got: Vec<String> = stolen
        .iter()
        .filter(|(_, secrets)| !secrets.is_empty())
        .map(|(label, secrets)| {
            if label.is_empty() {
                let names: Vec<&str> = secrets.iter().map(|s| s.name.as_str()).collect();
                format!("{names:?}")
            } else {
                format!("{label}: {}", secrets.len())
            }
        })
        .collect();
    let mut findings = Findings::new(
        Verdict::Survived,
        format!(
            "{count} Secrets ({}), {keys} with the Secret's own private key",
            got.join("; ")
        ),
    );
    findings.fail(format!(
        "an unproven client got {count} Secrets ({keys} private keys byte-identical)"
    ));
    findings
}

fn secrets_of(ending: &Ending, delta: bool) -> Vec<Secret> {
    ending
        .messages
        .iter()
        .flat_map(|message| secrets_in(message, delta))
        .collect()
}

fn secrets_in(message: &[u8], delta: bool) -> Vec<Secret> {
    let anys: Vec<Any> = if delta {
        DeltaDiscoveryResponse::decode(message)
            .map(|response| {
                response
                    .resources
                    .into_iter()
                    .filter_map(|resource| resource.resource)
                    .collect()
            })
            .unwrap_or_default()
    } else {
        DiscoveryResponse::decode(message)
            .map(|response| response.resources)
            .unwrap_or_default()
    };
    anys.iter()
        .filter(|any| any.type_url == ResourceType::Secret.type_url())
        .filter_map(|any| Secret::decode(any.value.as_slice()).ok())
        .collect()
}

/// Whether the Secret carries the private key of the Kubernetes Secret, byte for byte.
fn has_the_key(secret: &Secret) -> bool {
    let Some(Type::TlsCertificate(certificate)) = &secret.r#type else {
        return false;
    };
    let key = certificate
        .private_key
        .as_ref()
        .and_then(|source| source.specifier.as_ref());
    match key {
        Some(Specifier::InlineBytes(bytes)) => bytes.trim_ascii() == KEY_PEM.trim().as_bytes(),
        Some(Specifier::InlineString(text)) => text.trim() == KEY_PEM.trim(),
        _ => false,
    }
}
