//! The attacks by name, what each needs of its scene (how many services, a lower file limit),
//! and what each reports: a [`Verdict`] when rudder held, a line of what the attacker saw, and
//! the failures only the attack can see (a Secret returned, a status OK without a message, a
//! stream still open past its timeout). The attacks themselves are in `sds`, `streams`,
//! `messages`, `admin`, `fds` and `torn`.

#![allow(dead_code)] // tests/hostile.rs runs each attack by name, not the list or the parser.

use std::time::Duration;

use super::run::{Context, Scale, Window};
use super::scene::Scene;
use super::{admin, fds, messages, sds, streams, torn};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attack {
    /// SotW request for gateway Secrets with a gateway's node, over plaintext.
    SdsSotw,
    /// Delta subscription to `*` for Secrets, over plaintext.
    SdsDelta,
    /// Both, over mutual TLS, with client certificates of the right CA that prove no
    /// entitled identity (a DNS SAN only; a SPIFFE id of `istio-system` whose node omits
    /// `SERVICE_ACCOUNT`).
    SdsMtls,
    /// Streams on one connection that never send a request.
    IdleStreams,
    /// One request far over istiod's 4 MiB.
    BigRequest,
    /// Three of them at once.
    BigRequests,
    /// Ten 60 MiB messages announced, a little sent, then silence.
    UnfinishedMessages,
    /// One delta stream subscribing ever more names, each request under 4 MiB.
    ManyNames,
    /// `/debug/config_dump` from 16 clients at once.
    DebugDump16,
    /// From 40.
    DebugDump40,
    /// 1,100 silent TCP connections against a 1,024 file limit.
    SilentConnections,
    /// Admin connections that send half a request and wait.
    HalfRequests,
    /// Node metadata nested 200 deep, and invalid UTF-8.
    BadMetadata,
    /// A config file rewritten in place, not atomically.
    TornWrites,
    /// Thousands of new streams per second, each with a valid first request.
    StreamFlood,
}

impl Attack {
    pub const ALL: [Attack; 15] = [
        Attack::SdsSotw,
        Attack::SdsDelta,
        Attack::SdsMtls,
        Attack::IdleStreams,
        Attack::BigRequest,
        Attack::BigRequests,
        Attack::UnfinishedMessages,
        Attack::ManyNames,
        Attack::DebugDump16,
        Attack::DebugDump40,
        Attack::SilentConnections,
        Attack::HalfRequests,
        Attack::BadMetadata,
        Attack::TornWrites,
        Attack::StreamFlood,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Attack::SdsSotw => "sds-sotw",
            Attack::SdsDelta => "sds-delta",
            Attack::SdsMtls => "sds-mtls",
            Attack::IdleStreams => "idle-streams",
            Attack::BigRequest => "big-request",
            Attack::BigRequests => "big-requests",
            Attack::UnfinishedMessages => "unfinished-messages",
            Attack::ManyNames => "many-names",
            Attack::DebugDump16 => "debug-dump-16",
            Attack::DebugDump40 => "debug-dump-40",
            Attack::SilentConnections => "silent-connections",
            Attack::HalfRequests => "half-requests",
            Attack::BadMetadata => "bad-metadata",
            Attack::TornWrites => "torn-writes",
            Attack::StreamFlood => "stream-flood",
        }
    }

    pub fn parse(name: &str) -> Option<Attack> {
        Attack::ALL.into_iter().find(|attack| attack.name() == name)
    }

    /// Generated services in the scene: the debug attacks need a mesh whose dump is expensive,
    /// 2,000 services (at the 5,000 rudder holds 2.2 GiB before any attack, over the
    /// cgroup's 2 GiB: run those with `--services 5000 --no-cgroup`); the others only need
    /// rudder to hold some config.
    pub fn default_services(self, scale: Scale) -> usize {
        match self {
            Attack::DebugDump16 | Attack::DebugDump40 => scale.pick(2000, 200),
            _ => scale.pick(50, 20),
        }
    }

    /// rudder's RLIMIT_NOFILE, where the attack is about running out of descriptors.
    pub fn nofile(self) -> Option<u64> {
        (self == Attack::SilentConnections).then_some(fds::NOFILE)
    }

    /// Whether the scene serves xDS over mutual TLS.
    pub fn tls(self) -> bool {
        self == Attack::SdsMtls
    }

    pub async fn run(self, scene: &Scene, context: &Context, window: Window) -> Findings {
        match self {
            Attack::SdsSotw => sds::steal(scene, false, window).await,
            Attack::SdsDelta => sds::steal(scene, true, window).await,
            Attack::SdsMtls => sds::steal_over_mtls(scene, window).await,
            Attack::IdleStreams => streams::idle(scene, context, window).await,
            Attack::BigRequest => messages::big(scene, context, 1, window).await,
            Attack::BigRequests => messages::big(scene, context, 3, window).await,
            Attack::UnfinishedMessages => messages::unfinished(scene, window).await,
            Attack::ManyNames => messages::many_names(scene, context, window).await,
            Attack::DebugDump16 => admin::dump(scene, context, 16, window).await,
            Attack::DebugDump40 => admin::dump(scene, context, 40, window).await,
            Attack::SilentConnections => fds::silent(scene, context, window).await,
            Attack::HalfRequests => admin::half_requests(scene, context, window).await,
            Attack::BadMetadata => messages::bad_metadata(scene, window).await,
            Attack::TornWrites => torn::rewrite(scene, context, window).await,
            Attack::StreamFlood => streams::flood(scene, context, window).await,
        }
    }
}

/// How rudder held, when nothing failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The attacker was answered with a refusal (a status naming the bound, nothing served).
    Refused,
    /// The attack went on but what it could take was limited.
    Bounded,
    /// Nothing was refused or limited, and rudder came through.
    Survived,
}

impl Verdict {
    pub fn name(self) -> &'static str {
        match self {
            Verdict::Refused => "refused",
            Verdict::Bounded => "bounded",
            Verdict::Survived => "survived",
        }
    }
}

/// What the attack saw.
#[derive(Debug, Clone)]
pub struct Findings {
    pub verdict: Verdict,
    /// One line: what the attacker got.
    pub detail: String,
    /// What the attack found wrong.
    pub failures: Vec<String>,
    /// Extra time an edit under this attack may take (a timeout the attack must wait out).
    pub edit_grace: Duration,
}

impl Findings {
    pub fn new(verdict: Verdict, detail: String) -> Findings {
        Findings {
            verdict,
            detail,
            failures: Vec::new(),
            edit_grace: Duration::ZERO,
        }
    }

    /// The attack could not be carried out at all.
    pub fn broken(why: String) -> Findings {
        Findings {
            verdict: Verdict::Survived,
            detail: String::new(),
            failures: vec![format!("the attack could not run: {why}")],
            edit_grace: Duration::ZERO,
        }
    }

    pub fn fail(&mut self, failure: String) {
        self.failures.push(failure);
    }
}
