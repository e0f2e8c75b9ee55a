//! Durations as Istio writes them (`10s`, `1.5s`, `250ms`, `1h30m`): Go's `time.ParseDuration`
//! syntax, which is what istiod accepts in its YAML. Parsing rejects negative and malformed values
//! with a message fit for a config error.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A non-negative duration parsed from Go duration syntax.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Duration(pub std::time::Duration);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid duration {input:?}: {reason}")]
pub struct ParseDurationError {
    input: String,
    reason: &'static str,
}

impl Duration {
    pub fn from_secs(secs: u64) -> Self {
        Self(std::time::Duration::from_secs(secs))
    }

    pub fn from_millis(millis: u64) -> Self {
        Self(std::time::Duration::from_millis(millis))
    }

    pub fn is_zero(&self) -> bool {
        self.0.is_zero()
    }
}

impl FromStr for Duration {
    type Err = ParseDurationError;

    /// Go's grammar: an optional sign, then one or more `<decimal><unit>` terms; a bare `0` is
    /// allowed. Units: ns, us (µs), ms, s, m, h.
    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let fail = |reason| ParseDurationError {
            input: input.to_string(),
            reason,
        };
        let text = input.trim();
        if text == "0" {
            return Ok(Self::default());
        }
        if text.starts_with('-') {
            return Err(fail("durations cannot be negative"));
        }
        let mut rest = text.strip_prefix('+').unwrap_or(text);
        if rest.is_empty() {
            return Err(fail("empty duration"));
        }
        let mut total_nanos: u128 = 0;
        while !rest.is_empty() {
            let number_len = rest
                .find(|c: char| !(c.is_ascii_digit() || c == '.'))
                .ok_or_else(|| fail("missing unit (use ns, us, ms, s, m or h)"))?;
            let (number, after) = rest.split_at(number_len);
            if number.is_empty() || number == "." || number.matches('.').count() > 1 {
                return Err(fail("expected a number before the unit"));
            }
            let unit_len = after
                .find(|c: char| c.is_ascii_digit() || c == '.')
                .unwrap_or(after.len());
            let (unit, after) = after.split_at(unit_len);
            let unit_nanos: u128 = match unit {
                "ns" => 1,
                "us" | "µs" | "μs" => 1_000,
                "ms" => 1_000_000,
                "s" => 1_000_000_000,
                "m" => 60_000_000_000,
                "h" => 3_600_000_000_000,
                _ => return Err(fail("unknown unit (use ns, us, ms, s, m or h)")),
            };
            let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
            let whole: u128 = if whole.is_empty() {
                0
            } else {
                whole.parse().map_err(|_| fail("number out of range"))?
            };
            let mut term = whole
                .checked_mul(unit_nanos)
                .ok_or_else(|| fail("number out of range"))?;
            // The fraction is scaled digit by digit so that `1.5s` is exact.
            let mut scale = unit_nanos;
            for digit in fraction.bytes() {
                scale /= 10;
                term += u128::from(digit - b'0') * scale;
            }
            total_nanos = total_nanos
                .checked_add(term)
                .ok_or_else(|| fail("number out of range"))?;
            rest = after;
        }
        let secs = u64::try_from(total_nanos / 1_000_000_000).map_err(|_| fail("too large"))?;
        let nanos = (total_nanos % 1_000_000_000) as u32;
        Ok(Self(std::time::Duration::new(secs, nanos)))
    }
}

impl fmt::Display for Duration {
    /// Seconds with the fraction needed, as protobuf JSON writes durations (`1.5s`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let nanos = self.0.subsec_nanos();
        if nanos == 0 {
            write!(f, "{}s", self.0.as_secs())
        } else {
            let fraction = format!("{nanos:09}");
            write!(
                f,
                "{}.{}s",
                self.0.as_secs(),
                fraction.trim_end_matches('0')
            )
        }
    }
}

impl<'de> Deserialize<'de> for Duration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

impl Serialize for Duration {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<std::time::Duration, ParseDurationError> {
        text.parse::<Duration>().map(|d| d.0)
    }

    #[test]
    fn accepts_go_syntax() {
        assert_eq!(parse("10s").unwrap(), std::time::Duration::from_secs(10));
        assert_eq!(
            parse("1.5s").unwrap(),
            std::time::Duration::from_millis(1500)
        );
        assert_eq!(
            parse("0.5s").unwrap(),
            std::time::Duration::from_millis(500)
        );
        assert_eq!(
            parse("250ms").unwrap(),
            std::time::Duration::from_millis(250)
        );
        assert_eq!(
            parse("1h30m").unwrap(),
            std::time::Duration::from_secs(5400)
        );
        assert_eq!(parse("0").unwrap(), std::time::Duration::ZERO);
        assert_eq!(parse("3us").unwrap(), std::time::Duration::from_micros(3));
    }

    #[test]
    fn rejects_malformed() {
        for bad in [
            "",
            "10",
            "s",
            "1.2.3s",
            "-1s",
            "10 parsecs",
            "1x",
            "99999999999999999999h",
        ] {
            assert!(parse(bad).is_err(), "{bad:?} should not parse");
        }
    }

    #[test]
    fn displays_like_protobuf_json() {
        assert_eq!(Duration::from_millis(1500).to_string(), "1.5s");
        assert_eq!(Duration::from_secs(2).to_string(), "2s");
    }
}
