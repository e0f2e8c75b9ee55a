//! Compiles a protobuf descriptor set for the Envoy messages rudder emits, so that resources can be
//! rendered as canonical proto3 JSON (config dumps, golden files, bootstraps) with prost-reflect.
//!
//! The `.proto` sources are the ones the `envoy-types` crate ships; `cargo metadata` tells where
//! that crate's sources are, so no protos are vendored and no `protoc` is needed. The build needs
//! only the packages it downloads itself (see [`envoy_types_proto_dir`]).

use std::path::PathBuf;
use std::process::Command;

/// The files whose messages rudder renders; protox pulls in their imports.
const ROOTS: &[&str] = &[
    "envoy/admin/v3/config_dump.proto",
    "envoy/config/bootstrap/v3/bootstrap.proto",
    "envoy/config/cluster/v3/cluster.proto",
    "envoy/config/endpoint/v3/endpoint.proto",
    "envoy/config/listener/v3/listener.proto",
    "envoy/config/route/v3/route.proto",
    "envoy/config/trace/v3/opentelemetry.proto",
    "envoy/config/trace/v3/zipkin.proto",
    "envoy/extensions/access_loggers/file/v3/file.proto",
    "envoy/extensions/access_loggers/grpc/v3/als.proto",
    "envoy/extensions/clusters/original_dst/v3/original_dst.proto",
    "envoy/extensions/filters/http/cors/v3/cors.proto",
    "envoy/extensions/filters/http/fault/v3/fault.proto",
    "envoy/extensions/filters/http/grpc_stats/v3/config.proto",
    "envoy/extensions/filters/http/router/v3/router.proto",
    "envoy/extensions/filters/listener/http_inspector/v3/http_inspector.proto",
    "envoy/extensions/filters/listener/original_dst/v3/original_dst.proto",
    "envoy/extensions/filters/listener/original_src/v3/original_src.proto",
    "envoy/extensions/filters/listener/tls_inspector/v3/tls_inspector.proto",
    "envoy/extensions/filters/network/http_connection_manager/v3/http_connection_manager.proto",
    "envoy/extensions/filters/network/tcp_proxy/v3/tcp_proxy.proto",
    "envoy/extensions/formatter/req_without_query/v3/req_without_query.proto",
    "envoy/extensions/load_balancing_policies/least_request/v3/least_request.proto",
    "envoy/extensions/network/dns_resolver/cares/v3/cares_dns_resolver.proto",
    "envoy/extensions/request_id/uuid/v3/uuid.proto",
    "envoy/extensions/retry/host/previous_hosts/v3/previous_hosts.proto",
    "envoy/extensions/transport_sockets/tls/v3/tls.proto",
    "envoy/extensions/retry/priority/previous_priorities/v3/previous_priorities_config.proto",
    "envoy/extensions/upstreams/http/v3/http_protocol_options.proto",
    "envoy/service/discovery/v3/discovery.proto",
];

/// Where the sources of the `envoy-types` package this build uses are.
///
/// `cargo metadata` on rudder's own manifest would need every package of Cargo.lock on disk,
/// dev-dependencies included, which a plain `cargo build` (or `cargo run`) never downloads. So
/// this asks about a probe package of its own instead, written to OUT_DIR, whose one dependency is
/// `envoy-types`, locked by a copy of rudder's Cargo.lock: its graph is `envoy-types` and that
/// crate's own dependencies, which this build has downloaded already. Run from rudder's directory,
/// cargo reads the same configuration (source replacement, vendored sources, offline mode) as the
/// build does.
fn envoy_types_proto_dir() -> PathBuf {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let manifest_dir =
        PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let target = std::env::var("TARGET").expect("cargo sets TARGET");
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    let probe = out.join("envoy-types-probe");
    std::fs::create_dir_all(probe.join("src")).expect("create the probe package");
    std::fs::write(probe.join("Cargo.toml"), PROBE_MANIFEST).expect("write the probe manifest");
    std::fs::write(probe.join("src/lib.rs"), "").expect("write the probe library");
    // Without rudder's lock the probe could resolve another envoy-types than the one built.
    // Copied as text, not as a file: cargo rewrites the probe's copy, even when the original is
    // read-only.
    if let Ok(lock) = std::fs::read_to_string(manifest_dir.join("Cargo.lock")) {
        std::fs::write(probe.join("Cargo.lock"), lock).expect("write the probe's Cargo.lock");
    }
    // Filtering by platform keeps cargo from wanting crates this build never downloaded.
    let output = Command::new(cargo)
        .current_dir(&manifest_dir)
        .args([
            "metadata",
            "--format-version",
            "1",
            "--offline",
            "--filter-platform",
        ])
        .arg(target)
        .arg("--manifest-path")
        .arg(probe.join("Cargo.toml"))
        .output()
        .expect("run cargo metadata");
    assert!(
        output.status.success(),
        "cargo metadata failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let metadata: serde_json::Value =
        serde_json::from_slice(&output.stdout).expect("cargo metadata prints JSON");
    let manifest_path = metadata["packages"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|package| package["name"] == "envoy-types")
        .and_then(|package| package["manifest_path"].as_str())
        .expect("envoy-types is a dependency");
    PathBuf::from(manifest_path)
        .parent()
        .expect("a manifest has a directory")
        .join("proto")
}

/// The probe package of [`envoy_types_proto_dir`]: any version, since the copied Cargo.lock
/// pins the one rudder builds with. `[workspace]` keeps it out of any workspace above OUT_DIR.
const PROBE_MANIFEST: &str = r#"[package]
name = "rudder-envoy-types-probe"
version = "0.0.0"
edition = "2024"
publish = false

[dependencies]
envoy-types = "*"

[workspace]
"#;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    // Another envoy-types version ships other protos.
    println!("cargo:rerun-if-changed=Cargo.lock");
    let protos = envoy_types_proto_dir();
    let includes = [
        "data-plane-api",
        "xds",
        "googleapis",
        "protoc-gen-validate",
        "cel-spec/proto",
        "opentelemetry-proto",
        "client_model",
    ]
    .map(|dir| protos.join(dir));
    let descriptors = protox::compile(ROOTS, includes).expect("compile the Envoy protos");
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    std::fs::write(
        out.join("envoy_descriptors.bin"),
        prost::Message::encode_to_vec(&descriptors),
    )
    .expect("write the descriptor set");
}
