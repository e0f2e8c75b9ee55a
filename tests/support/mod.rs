//! Shared by the integration tests: real Envoy, real upstreams, rudder in-process.
#![allow(dead_code)] // Each test binary uses part of the support code.

pub mod envoy;
