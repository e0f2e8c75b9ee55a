//! Command-line helpers shared by the bench binaries that take options (`load`, `resync`,
//! `soak`), and how they print times.

#![allow(dead_code)] // Each bench uses some of them.

use std::time::Duration;

/// The value after `--name`, if given.
pub fn option<'a>(args: &'a [String], name: &str) -> Option<&'a str> {
    args.iter()
        .position(|arg| arg == name)
        .and_then(|i| args.get(i + 1))
        .map(String::as_str)
}

/// `--modes`, a comma-separated list of `sotw` and `delta`, as "is delta" flags.
pub fn modes(args: &[String], default: &str) -> Result<Vec<bool>, String> {
    option(args, "--modes")
        .unwrap_or(default)
        .split(',')
        .map(|mode| match mode {
            "sotw" => Ok(false),
            "delta" => Ok(true),
            other => Err(format!("unknown mode {other:?} (sotw or delta)")),
        })
        .collect()
}

/// `--limit-secs`, with a default.
pub fn limit(args: &[String], default_secs: u64) -> Result<Duration, String> {
    option(args, "--limit-secs")
        .map_or(Ok(default_secs), str::parse)
        .map(Duration::from_secs)
        .map_err(|_| "--limit-secs takes a number".to_string())
}

pub fn millis(duration: Duration) -> String {
    format!("{:.0}", duration.as_secs_f64() * 1000.0)
}
