//! The differential suite's Kubernetes variant (rudder issue 18): the scenarios whose
//! `scenario.yaml` names it (`variants: [file, kube]`), their registry as Services, EndpointSlices and Pods and
//! their Istio objects as CRs in a real kube-apiserver (`scripts/dev-cluster`), served by rudder
//! watching it and by istiod on its production path (`scripts/istiod` in Kubernetes mode:
//! `--registries=Kubernetes`, config from the CRDs, mesh config from the `istio` ConfigMap), then
//! compared as tests/differential.rs compares (tests/support/differential; the conversion is
//! `kube`). A file of its own because it needs what the file variant does not (a cluster, and root
//! for the network namespace its endpoints live in), and so that either runs alone. Same arguments
//! and variables as tests/differential.rs; `RUDDER_UPDATE_DIFFERENTIAL=1` rewrites the Kubernetes
//! section of docs/differential.md.

mod support;

use std::process::ExitCode;

use support::differential::allowlist::Variant;

fn main() -> ExitCode {
    support::differential::suite::main(Variant::Kube)
}
