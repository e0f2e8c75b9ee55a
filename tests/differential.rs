//! The differential suite: every scenario under `testdata/differential/` served by rudder and by
//! real istiod, compared through a stock Envoy (see tests/support/differential). Its own harness
//! (`harness = false`), so that scenarios run one after the other (their Envoys bind the same
//! ports) and each fails with one clear message; arguments that are not flags filter scenarios by
//! substring: `cargo test --test differential -- bookinfo`. `RUDDER_DIFF_REPORT=FILE` writes every
//! difference and the figures; `RUDDER_DIFF_DUMPS=DIR` writes both sides' trees per scenario;
//! `RUDDER_UPDATE_DIFFERENTIAL=1` on a full run rewrites docs/differential.md (otherwise the run
//! checks that it lists every allowlist entry). tests/differential_kube.rs is the same suite with
//! the registry from a Kubernetes API server.

mod support;

use std::process::ExitCode;

use support::differential::allowlist::Variant;

fn main() -> ExitCode {
    support::differential::suite::main(Variant::File)
}
