//! Shared by the integration tests: real Envoy, real upstreams, rudder in-process.
#![allow(dead_code)] // Each test binary uses part of the support code.

pub mod certs;
pub mod cluster;
pub mod envoy;
pub mod envoy_process;
pub mod mesh;
pub mod netns;
pub mod pods;
pub mod upstream;
