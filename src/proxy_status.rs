//! `rudder proxy-status`: the sync state of every connected proxy, as `istioctl proxy-status`
//! shows it. [`fetch`] reads `/debug/streamz` from a running rudder's admin port, [`replicas`]
//! finds every ready replica behind rudder's Service; [`render`] and [`render_replicas`] (pure)
//! turn what they read into the table: one row per ADS stream with NAME, CDS, LDS, EDS, RDS,
//! (ISTIOD, the replica, when there are several) and PROTOCOL, each type `SYNCED`, `STALE` (sent,
//! not ACKed yet), `NOT SENT` or `ERROR` (the proxy rejected the last version sent), and under a
//! row the error of each rejected type.

use serde::{Deserialize, Serialize};

use crate::admin::StreamSync;

/// Where one proxy is with one type.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum SyncState {
    /// The proxy ACKed the last version sent.
    #[serde(rename = "SYNCED")]
    Synced,
    /// A version was sent and is not ACKed (yet).
    #[serde(rename = "STALE")]
    Stale,
    /// Nothing was sent (the proxy did not subscribe, or is waiting for its first response).
    #[default]
    #[serde(rename = "NOT SENT")]
    NotSent,
    /// The proxy rejected (NACKed) the last version sent.
    #[serde(rename = "ERROR")]
    Error,
}

impl SyncState {
    /// From the version last sent, the version last ACKed and the version of the last NACK (kept
    /// until a later ACK).
    pub fn of(sent: Option<&str>, acked: Option<&str>, nacked: Option<&str>) -> SyncState {
        match sent {
            None => SyncState::NotSent,
            Some(sent) if nacked == Some(sent) => SyncState::Error,
            Some(sent) if acked == Some(sent) => SyncState::Synced,
            Some(_) => SyncState::Stale,
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            SyncState::Synced => "SYNCED",
            SyncState::Stale => "STALE",
            SyncState::NotSent => "NOT SENT",
            SyncState::Error => "ERROR",
        }
    }
}

/// The type columns, in `istioctl proxy-status` order: (header, syncz type).
pub const TYPE_COLUMNS: [(&str, &str); 4] = [
    ("CDS", "cds"),
    ("LDS", "lds"),
    ("EDS", "eds"),
    ("RDS", "rds"),
];

/// How `istioctl` names a proxy: `POD.NAMESPACE` from an Istio node id; any other id as it is.
pub fn proxy_name(proxy_id: &str) -> &str {
    let parts: Vec<&str> = proxy_id.split('~').collect();
    match parts[..] {
        [_, _, name, _] if !name.is_empty() => name,
        _ => proxy_id,
    }
}

/// The proxy-status table of `streams` (as `/debug/streamz` returns them): a header, then a row
/// per stream sorted by name, each rejected type's error indented under its row. A name held by
/// two streams (Envoy reconnecting) gets the stream number: `NAME #N`.
pub fn render(streams: &[StreamSync]) -> String {
    render_rows(streams.iter().map(|stream| (None, stream)).collect())
}

/// The table of the streams of several replicas, `(replica, streams)`: with more than one, an
/// ISTIOD column (istioctl's name for it) says which replica holds each stream.
pub fn render_replicas(replicas: &[(String, Vec<StreamSync>)]) -> String {
    if let [(_, streams)] = replicas {
        return render(streams);
    }
    render_rows(
        replicas
            .iter()
            .flat_map(|(replica, streams)| {
                streams
                    .iter()
                    .map(move |stream| (Some(replica.as_str()), stream))
            })
            .collect(),
    )
}

fn render_rows(mut sorted: Vec<(Option<&str>, &StreamSync)>) -> String {
    let replicas = sorted.iter().any(|(replica, _)| replica.is_some());
    sorted.sort_by(|(replica_a, a), (replica_b, b)| {
        (
            proxy_name(&a.proxy_id),
            &a.proxy_id,
            replica_a,
            a.connection,
        )
            .cmp(&(
                proxy_name(&b.proxy_id),
                &b.proxy_id,
                replica_b,
                b.connection,
            ))
    });
    let shared = |name: &str| {
        sorted
            .iter()
            .filter(|(_, stream)| proxy_name(&stream.proxy_id) == name)
            .count()
            > 1
    };
    let mut rows: Vec<(Vec<String>, Vec<String>)> = Vec::new();
    for (replica, stream) in &sorted {
        let name = proxy_name(&stream.proxy_id);
        let mut cells = vec![if shared(name) {
            format!("{name} #{}", stream.connection)
        } else {
            name.to_string()
        }];
        for (_, ty) in TYPE_COLUMNS {
            let state = stream.types.get(ty).map(|sync| sync.state);
            cells.push(state.unwrap_or_default().label().to_string());
        }
        // Rejections of every type, those without a column (SDS, as in istioctl) included.
        let columns = TYPE_COLUMNS
            .iter()
            .map(|(header, ty)| (header.to_string(), *ty));
        let others = stream
            .types
            .keys()
            .filter(|ty| TYPE_COLUMNS.iter().all(|(_, column)| column != ty))
            .map(|ty| (ty.to_uppercase(), ty.as_str()));
        let mut errors = Vec::new();
        for (header, ty) in columns.chain(others) {
            if let Some(sync) = stream.types.get(ty)
                && let Some(nack) = &sync.nack
                && sync.state == SyncState::Error
            {
                let mut lines = nack.message.trim().lines().map(str::trim_end);
                let first = lines.next().unwrap_or_default();
                errors.push(format!("{header} rejected {}: {first}", nack.version));
                errors.extend(lines.map(|line| format!("  {line}")));
            }
        }
        if replicas {
            cells.push(replica.unwrap_or_default().to_string());
        }
        cells.push(stream.protocol.display_name().to_string());
        rows.push((cells, errors));
    }

    let replica_column: &[&str] = if replicas { &["ISTIOD"] } else { &[] };
    let header: Vec<String> = ["NAME"]
        .into_iter()
        .chain(TYPE_COLUMNS.iter().map(|(header, _)| *header))
        .chain(replica_column.iter().copied())
        .chain(["PROTOCOL"])
        .map(str::to_string)
        .collect();
    let mut widths: Vec<usize> = header.iter().map(String::len).collect();
    for (cells, _) in &rows {
        for (width, cell) in widths.iter_mut().zip(cells) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |cells: &[String]| {
        let mut line = String::new();
        for (index, (cell, width)) in cells.iter().zip(&widths).enumerate() {
            if index + 1 == cells.len() {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<width$}   "));
            }
        }
        line.push('\n');
        line
    };
    let mut table = line(&header);
    for (cells, errors) in &rows {
        table.push_str(&line(cells));
        for error in errors {
            table.push_str(&format!("    {error}\n"));
        }
    }
    table
}

/// One rudder replica's admin server, as [`replicas`] finds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replica {
    /// Its Pod's name, else its address.
    pub name: String,
    /// `IP:PORT` of its admin server.
    pub admin_address: String,
}

impl Replica {
    /// A replica known by its admin address alone (`rudder proxy-status --admin-address`).
    pub fn at(admin_address: String) -> Replica {
        Replica {
            name: admin_address.clone(),
            admin_address,
        }
    }
}

/// The `/debug/streamz` of each replica, by name, and the replicas that could not be read with
/// why; asked one after another (`token` as in [`fetch_authorized`]).
pub async fn fetch_replicas(
    replicas: Vec<Replica>,
    token: Option<&str>,
) -> (Vec<(String, Vec<StreamSync>)>, Vec<(String, anyhow::Error)>) {
    let mut read = Vec::new();
    let mut failed = Vec::new();
    for replica in replicas {
        match fetch_authorized(&replica.admin_address, token).await {
            Ok(streams) => read.push((replica.name, streams)),
            Err(error) => failed.push((replica.name, error)),
        }
    }
    (read, failed)
}

/// The admin port of the Service's EndpointSlices: the port named `http-monitoring` (istiod's
/// name for 15014).
pub const ADMIN_PORT_NAME: &str = "http-monitoring";

/// Every ready replica behind the Service `namespace/service` (its EndpointSlices' ready
/// endpoints, at their `http-monitoring` port), in name order.
pub async fn replicas(
    client: kube::Client,
    namespace: &str,
    service: &str,
) -> anyhow::Result<Vec<Replica>> {
    use anyhow::Context;
    use k8s_openapi::api::discovery::v1::EndpointSlice;
    let slices: kube::Api<EndpointSlice> = kube::Api::namespaced(client, namespace);
    let selector = format!("kubernetes.io/service-name={service}");
    let listed = slices
        .list(&kube::api::ListParams::default().labels(&selector))
        .await
        .with_context(|| format!("list the EndpointSlices of Service {namespace}/{service}"))?;
    let mut found = std::collections::BTreeMap::new();
    for slice in listed.items {
        let port = slice
            .ports
            .iter()
            .flatten()
            .find(|port| port.name.as_deref() == Some(ADMIN_PORT_NAME))
            .and_then(|port| port.port);
        let Some(port) = port else { continue };
        for endpoint in slice.endpoints.iter().flatten() {
            let ready = endpoint
                .conditions
                .as_ref()
                .and_then(|conditions| conditions.ready)
                .unwrap_or(true);
            let Some(address) = endpoint.addresses.first().filter(|_| ready) else {
                continue;
            };
            let admin_address = match address.parse::<std::net::IpAddr>() {
                Ok(std::net::IpAddr::V6(ip)) => format!("[{ip}]:{port}"),
                _ => format!("{address}:{port}"),
            };
            let name = endpoint
                .target_ref
                .as_ref()
                .and_then(|target| target.name.clone())
                .unwrap_or_else(|| admin_address.clone());
            found.insert(
                name.clone(),
                Replica {
                    name,
                    admin_address,
                },
            );
        }
    }
    anyhow::ensure!(
        !found.is_empty(),
        "Service {namespace}/{service} has no ready endpoint with a port named {ADMIN_PORT_NAME}"
    );
    Ok(found.into_values().collect())
}

/// The `/debug/streamz` of the rudder whose admin server is at `admin_address` (`HOST:PORT`, or a
/// URL), asked without a token: rudder answers it from a loopback address only.
pub async fn fetch(admin_address: &str) -> anyhow::Result<Vec<StreamSync>> {
    fetch_authorized(admin_address, None).await
}

/// [`fetch`], sending `token` as `Authorization: Bearer` when given (rudder's
/// `--debug-token-file`).
pub async fn fetch_authorized(
    admin_address: &str,
    token: Option<&str>,
) -> anyhow::Result<Vec<StreamSync>> {
    use anyhow::Context;
    let base = if admin_address.contains("://") {
        admin_address.trim_end_matches('/').to_string()
    } else {
        format!("http://{admin_address}")
    };
    let url = format!("{base}/debug/streamz");
    let client = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(10))
        .build()
        .context("create an HTTP client")?;
    let mut request = client.get(&url);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.with_context(|| format!("GET {url}"))?;
    let status = response.status();
    let body = response
        .text()
        .await
        .with_context(|| format!("read {url}"))?;
    if status == reqwest::StatusCode::UNAUTHORIZED || status == reqwest::StatusCode::FORBIDDEN {
        anyhow::bail!(
            "GET {url}: {status}: {} (run from rudder's host or Pod, or give --token-file)",
            body.trim()
        );
    }
    anyhow::ensure!(status.is_success(), "GET {url}: {status}: {}", body.trim());
    serde_json::from_str(&body).with_context(|| format!("{url} is not rudder's streamz"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admin::{NackSync, Protocol, TypeSync};

    fn sync(sent: Option<&str>, acked: Option<&str>, nack: Option<(&str, &str)>) -> TypeSync {
        let nack = nack.map(|(version, message)| NackSync {
            version: version.into(),
            message: message.into(),
        });
        TypeSync {
            state: SyncState::of(sent, acked, nack.as_ref().map(|n| n.version.as_str())),
            sent: sent.map(Into::into),
            nonce: sent.map(|_| "1".into()),
            acked: acked.map(Into::into),
            nack,
        }
    }

    fn stream(
        id: &str,
        connection: u64,
        protocol: Protocol,
        types: &[(&str, TypeSync)],
    ) -> StreamSync {
        StreamSync {
            proxy_id: id.into(),
            connection,
            protocol,
            types: types
                .iter()
                .map(|(ty, sync)| (ty.to_string(), sync.clone()))
                .collect(),
        }
    }

    #[test]
    fn states() {
        assert_eq!(SyncState::of(None, None, None), SyncState::NotSent);
        assert_eq!(SyncState::of(Some("a"), Some("a"), None), SyncState::Synced);
        assert_eq!(SyncState::of(Some("b"), Some("a"), None), SyncState::Stale);
        assert_eq!(SyncState::of(Some("b"), None, None), SyncState::Stale);
        assert_eq!(
            SyncState::of(Some("b"), Some("a"), Some("b")),
            SyncState::Error
        );
        // A rejection of an older version: the newer one is on its way.
        assert_eq!(
            SyncState::of(Some("c"), Some("a"), Some("b")),
            SyncState::Stale
        );
        assert_eq!(
            serde_json::to_string(&SyncState::NotSent).unwrap(),
            "\"NOT SENT\""
        );
    }

    #[test]
    fn names_like_istioctl() {
        assert_eq!(
            proxy_name("sidecar~10.0.0.1~reviews-v1-abc.bookinfo~bookinfo.svc.cluster.local"),
            "reviews-v1-abc.bookinfo"
        );
        assert_eq!(proxy_name("plain-node"), "plain-node");
    }

    #[test]
    fn renders_the_table() {
        let streams = [
            stream(
                "sidecar~10.0.0.2~ratings.default~default.svc.cluster.local",
                7,
                Protocol::Delta,
                &[
                    (
                        "cds",
                        sync(
                            Some("c2"),
                            Some("c1"),
                            Some(("c2", "bad cluster\nsecond line")),
                        ),
                    ),
                    ("eds", sync(Some("e1"), Some("e1"), None)),
                    ("lds", sync(Some("l1"), None, None)),
                    ("sds", sync(Some("s2"), Some("s1"), Some(("s2", "bad key")))),
                ],
            ),
            stream(
                "sidecar~10.0.0.1~details.default~default.svc.cluster.local",
                3,
                Protocol::Sotw,
                &[
                    ("cds", sync(Some("c1"), Some("c1"), None)),
                    ("eds", sync(Some("e1"), Some("e1"), None)),
                    ("lds", sync(Some("l1"), Some("l1"), None)),
                    ("rds", sync(Some("r1"), Some("r1"), None)),
                ],
            ),
        ];
        let expected = "\
NAME              CDS      LDS      EDS      RDS        PROTOCOL
details.default   SYNCED   SYNCED   SYNCED   SYNCED     SotW
ratings.default   ERROR    STALE    SYNCED   NOT SENT   Delta
    CDS rejected c2: bad cluster
      second line
    SDS rejected s2: bad key
";
        assert_eq!(render(&streams), expected);
    }

    #[test]
    fn tells_streams_of_one_proxy_apart() {
        let id = "sidecar~10.0.0.1~details.default~default.svc.cluster.local";
        let streams = [
            stream(id, 4, Protocol::Sotw, &[]),
            stream(id, 2, Protocol::Sotw, &[]),
        ];
        let table = render(&streams);
        let names: Vec<&str> = table
            .lines()
            .skip(1)
            .map(|line| line.split("   ").next().unwrap().trim())
            .collect();
        assert_eq!(names, ["details.default #2", "details.default #4"]);
        assert_eq!(render(&[]), "NAME   CDS   LDS   EDS   RDS   PROTOCOL\n");
    }

    #[test]
    fn an_istiod_column_tells_replicas_apart() {
        let id = "sidecar~10.0.0.1~details.default~default.svc.cluster.local";
        let synced = || sync(Some("v"), Some("v"), None);
        let all = |sync: fn() -> TypeSync| ["cds", "lds", "eds", "rds"].map(|ty| (ty, sync()));
        let one = vec![stream(id, 1, Protocol::Sotw, &all(synced))];
        let other = "sidecar~10.0.0.2~ratings.default~default.svc.cluster.local";
        let two = vec![stream(other, 5, Protocol::Delta, &all(synced))];
        // One replica: the table as before.
        assert_eq!(
            render_replicas(&[("rudder-a".into(), one.clone())]),
            render(&one)
        );
        let expected = "\
NAME              CDS      LDS      EDS      RDS      ISTIOD     PROTOCOL
details.default   SYNCED   SYNCED   SYNCED   SYNCED   rudder-a   SotW
ratings.default   SYNCED   SYNCED   SYNCED   SYNCED   rudder-b   Delta
";
        assert_eq!(
            render_replicas(&[("rudder-b".into(), two), ("rudder-a".into(), one)]),
            expected
        );
    }

    #[test]
    fn reads_what_syncz_writes() {
        let streams = vec![stream(
            "a~b~c~d",
            1,
            Protocol::Sotw,
            &[("cds", sync(Some("v"), None, Some(("v", "no"))))],
        )];
        let json = serde_json::to_string(&streams).unwrap();
        let read: Vec<StreamSync> = serde_json::from_str(&json).unwrap();
        assert_eq!(read, streams);
    }
}
