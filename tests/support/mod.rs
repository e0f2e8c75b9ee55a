//! Shared by the integration tests: real Envoy, real upstreams, rudder in-process or as a process.
#![allow(dead_code)] // Each test binary uses part of the support code.

pub mod ads;
pub mod certs;
pub mod cluster;
pub mod differential;
pub mod envoy;
pub mod envoy_process;
pub mod identity;
pub mod istio_crds;
pub mod istio_module;
pub mod istiod;
pub mod mesh;
pub mod netns;
pub mod pods;
pub mod readme;
pub mod router;
pub mod rudder_process;
pub mod tool_comparison;
pub mod upstream;

/// Runs each test body (an `async fn(AdsApiType)`) once per ADS protocol: `sotw::NAME` and
/// `delta::NAME`.
#[allow(unused_macros)] // Only the test binaries that run in both modes use it.
macro_rules! in_both_modes {
    ($($name:ident),* $(,)?) => {
        mod sotw {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(rudder::bootstrap::AdsApiType::Grpc).await
                }
            )*
        }
        mod delta {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(rudder::bootstrap::AdsApiType::DeltaGrpc).await
                }
            )*
        }
    };
}

#[allow(unused_imports)] // Only the test binaries that run in both modes use it.
pub(crate) use in_both_modes;
