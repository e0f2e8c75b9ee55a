//! The bounds of issue 16 as `rudder serve` flags, named in this one place: which of them the
//! binary under test has (read from its `serve --help`, with their defaults), and what the quick
//! runs (`tests/hostile.rs`) set them to. A binary without a flag does not have that bound
//! (today's main has none of them); the harness then starts rudder without it and the attack
//! meets no bound. Flag names may still change: edit them here only.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// Largest gRPC request message (istiod: 4 MiB).
pub const XDS_MAX_MESSAGE_SIZE: &str = "--xds-max-message-size";
/// Concurrent HTTP/2 streams one connection may hold.
pub const XDS_MAX_STREAMS_PER_CONNECTION: &str = "--xds-max-streams-per-connection";
/// How long a new stream may wait before its first request.
pub const XDS_FIRST_REQUEST_TIMEOUT: &str = "--xds-first-request-timeout";
/// How long a new connection may take to complete its HTTP/2 (and TLS) handshake.
pub const XDS_HANDSHAKE_TIMEOUT: &str = "--xds-handshake-timeout";
/// New ADS streams accepted per second (istiod's PILOT_MAX_REQUESTS_PER_SECOND).
pub const XDS_MAX_STREAMS_PER_SECOND: &str = "--xds-max-streams-per-second";
/// Resource names one stream may subscribe to.
pub const XDS_MAX_SUBSCRIBED_NAMES: &str = "--xds-max-subscribed-names";
/// How many heavy debug requests (config_dump) run at once.
pub const DEBUG_CONCURRENCY: &str = "--debug-concurrency";
/// How long the admin server waits for a request's headers.
pub const ADMIN_READ_TIMEOUT: &str = "--admin-read-timeout";
/// How long the admin server keeps an idle connection.
pub const ADMIN_IDLE_TIMEOUT: &str = "--admin-idle-timeout";
/// How long a config file must be unchanged before it is applied.
pub const FILE_QUIET_PERIOD: &str = "--file-quiet-period";

/// What the quick runs set, so that every timeout they wait out is short. The bench sets
/// nothing: it measures the defaults.
pub const QUICK: [(&str, &str); 3] = [
    (XDS_FIRST_REQUEST_TIMEOUT, "2s"),
    (XDS_HANDSHAKE_TIMEOUT, "2s"),
    (ADMIN_READ_TIMEOUT, "2s"),
];

/// The bound flags `rudder serve` has, each with its default as `--help` prints it (`None`
/// when it prints none), and the values this run gives it.
#[derive(Debug, Clone, Default)]
pub struct Bounds {
    defaults: BTreeMap<String, Option<String>>,
    set: BTreeMap<String, String>,
}

impl Bounds {
    /// Reads `BINARY serve --help`; `quick` sets [`QUICK`] where the binary has the flag.
    pub fn probe(binary: &Path, quick: bool) -> Bounds {
        let help = Command::new(binary)
            .args(["serve", "--help"])
            .output()
            .map(|output| String::from_utf8_lossy(&output.stdout).into_owned())
            .unwrap_or_default();
        let mut bounds = Bounds {
            defaults: parse_help(&help),
            set: BTreeMap::new(),
        };
        if quick {
            for (flag, value) in QUICK {
                if bounds.has(flag) {
                    bounds.set.insert(flag.to_string(), value.to_string());
                }
            }
        }
        bounds
    }

    pub fn has(&self, flag: &str) -> bool {
        self.defaults.contains_key(flag)
    }

    /// The value in effect: what this run sets, else the default; `None` if the binary has no
    /// such flag or no default.
    pub fn value(&self, flag: &str) -> Option<&str> {
        self.set
            .get(flag)
            .map(String::as_str)
            .or_else(|| self.defaults.get(flag)?.as_deref())
    }

    /// [`Bounds::value`] as a duration (Go syntax: `500ms`, `10s`, `2m`).
    pub fn duration(&self, flag: &str) -> Option<Duration> {
        parse_duration(self.value(flag)?)
    }

    /// The arguments that set this run's values.
    pub fn args(&self) -> Vec<String> {
        self.set
            .iter()
            .flat_map(|(flag, value)| [flag.clone(), value.clone()])
            .collect()
    }

    /// One line for the report: every bound flag, present or not, with its value.
    pub fn describe(&self) -> String {
        let all = [
            XDS_MAX_MESSAGE_SIZE,
            XDS_MAX_STREAMS_PER_CONNECTION,
            XDS_FIRST_REQUEST_TIMEOUT,
            XDS_HANDSHAKE_TIMEOUT,
            XDS_MAX_STREAMS_PER_SECOND,
            XDS_MAX_SUBSCRIBED_NAMES,
            DEBUG_CONCURRENCY,
            ADMIN_READ_TIMEOUT,
            ADMIN_IDLE_TIMEOUT,
            FILE_QUIET_PERIOD,
        ];
        let described: Vec<String> = all
            .iter()
            .map(|flag| match (self.has(flag), self.value(flag)) {
                (false, _) => format!("{flag}: absent"),
                (true, Some(value)) => format!("{flag} {value}"),
                (true, None) => format!("{flag}: no default"),
            })
            .collect();
        described.join(", ")
    }
}

/// Every `--flag` of a clap help text whose name is one of ours' shape (any long flag), with
/// the `[default: X]` of its paragraph.
fn parse_help(help: &str) -> BTreeMap<String, Option<String>> {
    let mut flags = BTreeMap::new();
    let mut current: Option<String> = None;
    for line in help.lines() {
        let trimmed = line.trim_start();
        if let Some(rest) = trimmed.strip_prefix("--").or_else(|| {
            // `-x, --long`
            trimmed
                .strip_prefix('-')
                .and_then(|rest| rest.split_once(", --"))
                .map(|(_, long)| long)
        }) {
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
                .collect();
            let flag = format!("--{name}");
            flags.insert(flag.clone(), None);
            current = Some(flag);
        }
        if let Some(flag) = &current
            && let Some((_, after)) = line.split_once("[default: ")
            && let Some((value, _)) = after.split_once(']')
        {
            flags.insert(flag.clone(), Some(value.to_string()));
        }
    }
    flags
}

/// A Go duration of one unit (`100ms`, `10s`, `2m`, `1h`); `None` otherwise.
pub fn parse_duration(text: &str) -> Option<Duration> {
    let text = text.trim();
    let split = text.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
    let (number, unit) = text.split_at(split);
    let number: f64 = number.parse().ok()?;
    let seconds = match unit {
        "ms" => number / 1000.0,
        "s" => number,
        "m" => number * 60.0,
        "h" => number * 3600.0,
        _ => return None,
    };
    Duration::try_from_secs_f64(seconds).ok()
}
