//! Silent connections: rudder runs with a 1,024 file limit and 1,100 TCP connections to its
//! xDS port send nothing. A new proxy must still get its config, and `/ready` must still
//! answer, within the HTTP/2 handshake timeout plus a margin; rudder must close the silent
//! connections by then.

use std::time::{Duration, Instant};

use rudder::translate::ResourceType;
use tokio::net::TcpStream;

use super::attacks::{Findings, Verdict};
use super::flags::XDS_HANDSHAKE_TIMEOUT;
use super::raw::{self, Connection, SOTW_PATH};
use super::run::{Context, Window};
use super::scene::Scene;
use super::xds;

/// rudder's RLIMIT_NOFILE in this attack.
pub const NOFILE: u64 = 1024;
const CONNECTIONS: usize = 1100;
/// Rounds of 100 more connections while rudder still has descriptors left.
const TOP_UPS: usize = 10;
const TOP_UP_FOR: Duration = Duration::from_secs(10);
/// Beyond the handshake timeout, how long xDS and admin may take to answer again.
const MARGIN: Duration = Duration::from_secs(5);

pub async fn silent(scene: &Scene, context: &Context, mut window: Window) -> Findings {
    let started = Instant::now();
    let fd_limit = scene.rudder.fd_limit().unwrap_or_default();
    // One after another, so that rudder accepts each while it can; if it did not run out of
    // descriptors (connections left waiting in the kernel's backlog), a few hundred more.
    let mut silent = connect(scene, 0, CONNECTIONS).await;
    let mut fds = settled_fds(scene).await;
    for _ in 0..TOP_UPS {
        if fds + 8 >= fd_limit as usize || started.elapsed() > TOP_UP_FOR {
            break;
        }
        silent.extend(connect(scene, silent.len(), 100).await);
        let before = fds;
        fds = settled_fds(scene).await;
        if fds <= before {
            break;
        }
    }
    let timeout = context.bounds.duration(XDS_HANDSHAKE_TIMEOUT);
    let limit = timeout.map_or(
        context
            .scale
            .pick(Duration::from_secs(30), Duration::from_secs(10)),
        |timeout| timeout + MARGIN,
    );
    let (xds_answer, ready, ()) = tokio::join!(
        first_config(scene, limit),
        scene.ready_time(limit),
        window.hold()
    );
    let fds_after = scene.rudder.open_fds();
    let mut closed = 0;
    for connection in &silent {
        if closed_now(connection).await {
            closed += 1;
        }
    }
    let elapsed = started.elapsed();
    let show = |answer: &Result<Duration, String>| match answer {
        Ok(took) => format!("{:.2} s", took.as_secs_f64()),
        Err(error) => format!("not within {limit:?} ({error})"),
    };
    let detail = format!(
        "{} connected, rudder at {fds} then {fds_after} fds (limit {fd_limit}); \
         new proxy's config: {}; /ready: {}; {closed} closed by rudder after {:.0} s \
         (--xds-handshake-timeout {})",
        silent.len(),
        show(&xds_answer),
        show(&ready),
        elapsed.as_secs_f64(),
        timeout.map_or("absent".to_string(), |t| format!("{t:?}")),
    );
    let mut findings = Findings::new(Verdict::Bounded, detail);
    findings.edit_grace = timeout.unwrap_or_default();
    if xds_answer.is_err() {
        findings.verdict = Verdict::Survived;
        findings.fail(format!("a new proxy got no config within {limit:?}"));
    }
    if ready.is_err() {
        findings.verdict = Verdict::Survived;
        findings.fail(format!("/ready did not answer within {limit:?}"));
    }
    findings
}

/// `count` connections, one after another, from the attacker's addresses.
async fn connect(scene: &Scene, first: usize, count: usize) -> Vec<TcpStream> {
    let mut connections = Vec::new();
    for n in first..first + count {
        let attempt = raw::tcp(scene.slot.attacker(n), scene.xds);
        if let Ok(Ok(connection)) = tokio::time::timeout(Duration::from_secs(1), attempt).await {
            connections.push(connection);
        }
    }
    connections
}

/// rudder's open descriptors once the count stopped moving (at most 10 s).
async fn settled_fds(scene: &Scene) -> usize {
    let mut fds = scene.rudder.open_fds();
    for _ in 0..20 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let now = scene.rudder.open_fds();
        if now == fds {
            break;
        }
        fds = now;
    }
    fds
}

/// How long a new proxy's stream takes to get its first response.
async fn first_config(scene: &Scene, limit: Duration) -> Result<Duration, String> {
    let started = Instant::now();
    let attempt = async {
        let mut connection = Connection::connect(scene.slot.attacker(7), scene.xds).await?;
        let mut stream = connection
            .open(SOTW_PATH, limit)
            .await
            .map_err(|e| format!("{e:?}"))?;
        let node = xds::sidecar("10.66.1.1", "newcomer");
        let request = xds::framed(&xds::sotw(Some(node), ResourceType::Cluster, Vec::new()));
        raw::send_all(&mut stream.body, request, false, limit).await?;
        let ending = raw::watch(stream.response, limit, 1).await;
        if ending.messages.is_empty() {
            Err(ending.describe())
        } else {
            Ok(started.elapsed())
        }
    };
    tokio::time::timeout(limit, attempt)
        .await
        .map_err(|_| "timed out".to_string())?
}

/// Whether the peer closed the connection: what it sent (its HTTP/2 settings, a GOAWAY) is read
/// and then a read returns end of file or an error.
async fn closed_now(connection: &TcpStream) -> bool {
    let mut buffer = [0u8; 4096];
    for _ in 0..64 {
        if tokio::time::timeout(Duration::from_millis(5), connection.readable())
            .await
            .is_err()
        {
            return false;
        }
        match connection.try_read(&mut buffer) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(_) => return true,
        }
    }
    false
}
