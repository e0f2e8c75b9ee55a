//! The hostile-client suite at small size (`benches/hostile` runs it at the sizes): each
//! attack against `rudder serve` (the binary Cargo built for the tests) in a 2 GiB memory cgroup
//! where the machine allows one, with a real Envoy attached and requests through it
//! throughout. Each test asserts what issue 16 asks: no Secret to an unproven client, rudder
//! alive, peak RSS at most 128 MiB over its RSS before the attack, refusals with a status other
//! than OK and a message, the Envoy's rule edits within twice their unattacked time (at least
//! 1 s), and no failed request. rudder gets short timeouts where it has the flags
//! (`benches/hostile/flags.rs`), so that waiting them out takes seconds. Each test has its own
//! slot of addresses (`127.0.248.x` and `127.0.249.x`), so they run side by side.

mod support;

use support::{certs, envoy_process, upstream};

#[path = "../benches/support/mesh.rs"]
mod mesh;

#[path = "../benches/hostile/admin.rs"]
mod admin;
#[path = "../benches/hostile/attacks.rs"]
mod attacks;
#[path = "../benches/hostile/config.rs"]
mod config;
#[path = "../benches/hostile/fds.rs"]
mod fds;
#[path = "../benches/hostile/flags.rs"]
mod flags;
#[path = "../benches/hostile/messages.rs"]
mod messages;
#[path = "../benches/hostile/raw.rs"]
mod raw;
#[path = "../benches/hostile/rudder.rs"]
mod rudder;
#[path = "../benches/hostile/run.rs"]
mod run;
#[path = "../benches/hostile/scene.rs"]
mod scene;
#[path = "../benches/hostile/sds.rs"]
mod sds;
#[path = "../benches/hostile/streams.rs"]
mod streams;
#[path = "../benches/hostile/torn.rs"]
mod torn;
#[path = "../benches/hostile/xds.rs"]
mod xds;

use std::path::PathBuf;
use std::time::Duration;

use attacks::Attack;
use run::{RunSpec, Scale};
use scene::Slot;

fn binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_rudder"))
}

/// Runs `attack` at small size in scene `slot` and asserts it was refused or bounded.
async fn attack(attack: Attack, slot: u8) {
    let spec = RunSpec::new(attack, Scale::Quick, Slot(slot), binary());
    let row = run::run(&spec).await;
    println!(
        "bounds: {}\n{}\n{}",
        spec.bounds.describe(),
        run::HEADER,
        row.markdown()
    );
    assert!(row.passed(), "{}: {}", attack.name(), row.outcome());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_over_plaintext_sotw() {
    attack(Attack::SdsSotw, 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_over_plaintext_delta_wildcard() {
    attack(Attack::SdsDelta, 2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_over_mtls_without_an_entitled_identity() {
    attack(Attack::SdsMtls, 15).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_streams_are_limited_or_timed_out() {
    attack(Attack::IdleStreams, 3).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_over_the_size_limit_is_refused() {
    attack(Attack::BigRequest, 4).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_big_requests_at_once_are_refused() {
    attack(Attack::BigRequests, 5).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unfinished_60_mib_messages_are_refused() {
    attack(Attack::UnfinishedMessages, 6).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribed_names_per_stream_are_limited() {
    attack(Attack::ManyNames, 7).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn debug_dumps_from_16_clients_leave_ready_and_pushes_alone() {
    attack(Attack::DebugDump16, 8).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn debug_dumps_from_40_clients_leave_ready_and_pushes_alone() {
    attack(Attack::DebugDump40, 9).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_connections_past_the_file_limit_are_closed() {
    attack(Attack::SilentConnections, 10).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_connections_with_half_a_request_are_closed() {
    attack(Attack::HalfRequests, 11).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undecodable_metadata_ends_the_stream_with_a_message() {
    attack(Attack::BadMetadata, 12).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_rewritten_in_place_is_never_pushed_half_written() {
    attack(Attack::TornWrites, 13).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_new_streams_is_rate_limited() {
    attack(Attack::StreamFlood, 14).await;
}

/// The harness reads the bound flags and their defaults from `rudder serve --help`.
#[test]
fn bound_flags_are_read_from_serve_help() {
    let bounds = flags::Bounds::probe(&binary(), false);
    assert!(bounds.has("--xds-send-timeout"), "{bounds:?}");
    assert_eq!(
        bounds.value("--debounce-after"),
        Some("100ms"),
        "{bounds:?}"
    );
    assert_eq!(
        bounds.duration("--max-connection-age"),
        Some(Duration::from_secs(30 * 60))
    );
    assert_eq!(
        flags::parse_duration("1500ms"),
        Some(Duration::from_millis(1500))
    );
}
