//! Attacks with message contents: requests far over istiod's 4 MiB (one, or three at once),
//! 60 MiB messages announced and never finished, a delta stream subscribing ever more names
//! in requests each under 4 MiB, and node metadata rudder cannot decode (nested 200 deep,
//! invalid UTF-8). Each must be answered with a status other than OK that says why.

use std::time::{Duration, Instant};

use envoy_types::pb::google::protobuf::{Struct, Value, value::Kind};
use prost::bytes::Bytes;
use rudder::translate::ResourceType;

use super::attacks::{Findings, Verdict};
use super::flags::{XDS_MAX_MESSAGE_SIZE, XDS_MAX_SUBSCRIBED_NAMES};
use super::raw::{self, Connection, DELTA_PATH, Ending, SOTW_PATH};
use super::run::{Context, Window};
use super::scene::Scene;
use super::streams::tally;
use super::xds;

/// How long an answer (a refusal) may take to come.
const ANSWER_WAIT: Duration = Duration::from_secs(5);
/// How long sending one big request may take.
const SEND_LIMIT: Duration = Duration::from_secs(120);

/// A stream opened from the attacker's `n`th address on a connection of its own.
async fn stream(scene: &Scene, n: usize, path: &str) -> Result<(Connection, raw::Stream), String> {
    let mut connection = Connection::connect(scene.slot.attacker(n), scene.xds).await?;
    let stream = connection
        .open(path, ANSWER_WAIT)
        .await
        .map_err(|e| format!("{e:?}"))?;
    Ok((connection, stream))
}

/// `count` requests of the bench's 56 MB (20 MB quick) at once, each on its own connection,
/// each naming millions of (short) resources.
pub async fn big(scene: &Scene, context: &Context, count: usize, mut window: Window) -> Findings {
    let size = context.scale.pick(56_000_000, 20_000_000);
    let node = xds::sidecar("10.66.0.1", "big");
    let first = xds::sotw(Some(node), ResourceType::Endpoint, Vec::new());
    let (request, names) = xds::framed_with_names(&first, 0, size);
    let bytes = request.len();
    let endings = match send_on_streams(scene, 1..=count, request, &mut window).await {
        Ok(endings) => endings,
        Err(error) => return Findings::broken(error),
    };
    judge_refusals(
        &endings,
        format!(
            "{count} x {} MB request ({names} names): {}",
            bytes / 1_000_000,
            tally(&endings)
        ),
        &format!("a {bytes}-byte request"),
        context.bounds.value(XDS_MAX_MESSAGE_SIZE),
    )
}

/// Sends `bytes` on a SotW stream from each of the attacker's addresses `addresses` (a
/// connection each), at once, and watches for each stream's answer; the streams (and what rudder
/// holds for them) stay open while the window's edits are timed. How each stream ended.
async fn send_on_streams(
    scene: &Scene,
    addresses: impl Iterator<Item = usize>,
    bytes: Bytes,
    window: &mut Window,
) -> Result<Vec<Ending>, String> {
    let attempts = addresses.map(|n| {
        let bytes = bytes.clone();
        async move {
            let (connection, mut stream) = stream(scene, n, SOTW_PATH).await?;
            let sent = raw::send_all(&mut stream.body, bytes, false, SEND_LIMIT).await;
            let mut ending = raw::watch(stream.response, ANSWER_WAIT, 1).await;
            if let Err(error) = sent
                && ending.status.is_none()
            {
                ending.error.get_or_insert(error);
            }
            Ok::<_, String>((connection, stream.body, ending))
        }
    });
    let results = futures::future::join_all(attempts).await;
    window.hold().await;
    results
        .into_iter()
        .map(|result| result.map(|(_connection, _body, ending)| ending))
        .collect()
}

/// Refused if every stream ended with a status other than OK and a message.
fn judge_refusals(endings: &[Ending], detail: String, what: &str, limit: Option<&str>) -> Findings {
    let accepted: Vec<&Ending> = endings
        .iter()
        .filter(|ending| !ending.refused_with_message())
        .collect();
    if accepted.is_empty() {
        let first = endings.first().map(Ending::describe).unwrap_or_default();
        return Findings::new(Verdict::Refused, format!("{detail}; {first}"));
    }
    let mut findings = Findings::new(Verdict::Survived, detail);
    findings.fail(format!(
        "{} of {} times {what} was not refused ({}; limit {})",
        accepted.len(),
        endings.len(),
        accepted[0].describe(),
        limit.unwrap_or("none")
    ));
    findings
}

/// Ten streams announce a 60 MiB message, send 1 MiB of it, and go silent.
pub async fn unfinished(scene: &Scene, mut window: Window) -> Findings {
    const ANNOUNCED: u32 = 60 << 20;
    const SENT: usize = 1 << 20;
    const STREAMS: usize = 10;
    let mut start = vec![0u8];
    start.extend_from_slice(&ANNOUNCED.to_be_bytes());
    start.resize(raw::PREFIX + SENT, 0x0a);
    let start = Bytes::from(start);
    let endings = match send_on_streams(scene, 0..STREAMS, start, &mut window).await {
        Ok(endings) => endings,
        Err(error) => return Findings::broken(error),
    };
    judge_refusals(
        &endings,
        format!(
            "{STREAMS} x 60 MiB announced, 1 MiB sent: {}",
            tally(&endings)
        ),
        "an unfinished 60 MiB message",
        None,
    )
}

/// One delta stream subscribes to ever more names, 2 MB of them per request, 40 MB in all
/// (10 MB quick).
pub async fn many_names(scene: &Scene, context: &Context, mut window: Window) -> Findings {
    const PER_REQUEST: usize = 2_000_000;
    let total = context.scale.pick(40_000_000, 10_000_000);
    let (_connection, mut stream) = match stream(scene, 3, DELTA_PATH).await {
        Ok(opened) => opened,
        Err(error) => return Findings::broken(error),
    };
    // rudder answers every subscription; the answers are read so that it keeps reading.
    let answers = tokio::spawn(raw::watch(stream.response, SEND_LIMIT, usize::MAX));
    let started = Instant::now();
    let mut node = Some(xds::sidecar("10.66.0.3", "names"));
    let mut subscribed = 0;
    let mut stopped = None;
    let mut sent = 0;
    while sent < total && started.elapsed() < SEND_LIMIT {
        let request = xds::delta(node.take(), ResourceType::Endpoint, Vec::new());
        let (request, count) = xds::framed_with_names(&request, subscribed, PER_REQUEST);
        sent += request.len();
        if let Err(error) = raw::send_all(&mut stream.body, request, false, SEND_LIMIT).await {
            stopped = Some(error);
            break;
        }
        subscribed += count;
        if answers.is_finished() {
            break;
        }
    }
    window.hold().await;
    let ending = if answers.is_finished() {
        answers.await.unwrap_or_default()
    } else {
        answers.abort();
        Ending {
            open: true,
            ..Ending::default()
        }
    };
    let detail = format!(
        "{subscribed} names sent in {:.1} s{}: {}",
        started.elapsed().as_secs_f64(),
        stopped.map(|e| format!(" (then: {e})")).unwrap_or_default(),
        ending.describe()
    );
    judge_refusals(
        &[ending],
        detail,
        &format!("subscribing {subscribed} names on one stream"),
        context.bounds.value(XDS_MAX_SUBSCRIBED_NAMES),
    )
}

/// The first request's node metadata nested 200 deep, and a metadata string of invalid UTF-8.
pub async fn bad_metadata(scene: &Scene, mut window: Window) -> Findings {
    let mut deep = Struct::default();
    for _ in 0..200 {
        deep = Struct {
            fields: [(
                "n".to_string(),
                Value {
                    kind: Some(Kind::StructValue(deep)),
                },
            )]
            .into(),
        };
    }
    let mut nested = xds::sidecar("10.66.0.4", "deep");
    nested.metadata = Some(deep);
    let nested = xds::framed(&xds::sotw(Some(nested), ResourceType::Cluster, Vec::new()));

    const MARK: &str = "MARKMARKMARK";
    let mut invalid = xds::sidecar("10.66.0.5", "utf8");
    if let Some(metadata) = invalid.metadata.as_mut() {
        metadata.fields.insert("NAME".to_string(), xds::text(MARK));
    }
    let invalid = xds::framed(&xds::sotw(Some(invalid), ResourceType::Cluster, Vec::new()));
    let mut bytes = invalid.to_vec();
    if let Some(at) = bytes.windows(MARK.len()).position(|w| w == MARK.as_bytes()) {
        bytes[at..at + MARK.len()].fill(0xff);
    }
    let invalid = Bytes::from(bytes);

    let mut endings = Vec::new();
    let mut connections = Vec::new();
    for (n, request) in [nested, invalid].into_iter().enumerate() {
        let (connection, mut stream) = match stream(scene, 4 + n, SOTW_PATH).await {
            Ok(opened) => opened,
            Err(error) => return Findings::broken(error),
        };
        let _ = raw::send_all(&mut stream.body, request, false, ANSWER_WAIT).await;
        endings.push(raw::watch(stream.response, ANSWER_WAIT, 1).await);
        connections.push((connection, stream.body));
    }
    window.hold().await;
    let detail = format!(
        "nested 200 deep: {}; invalid UTF-8: {}",
        endings[0].describe(),
        endings[1].describe()
    );
    let mut findings = Findings::new(Verdict::Refused, detail);
    for (what, ending) in ["metadata nested 200 deep", "invalid UTF-8"]
        .iter()
        .zip(&endings)
    {
        if !ending.refused_with_message() {
            findings.verdict = Verdict::Survived;
            findings.fail(format!("{what}: {}", ending.describe()));
        }
    }
    findings
}
