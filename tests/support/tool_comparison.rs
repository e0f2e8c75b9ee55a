//! The end of a comparison of rudder with one of Istio's tools (`istioctl validate`, `istioctl
//! analyze`): the report printed, and written to the file an environment variable names, and the
//! verdict on the disagreements, which must all be listed in a committed file with a reason, and
//! none listed that no longer disagrees (so that a fix shrinks the list). Knows nothing of what
//! the tools check.

/// What a comparison came to.
pub struct Outcome<'a> {
    /// The figures, printed and written to `$report_env` if set.
    pub report: &'a str,
    pub report_env: &'a str,
    /// The committed list of accepted disagreements, as messages name it.
    pub listed_in: &'a str,
    /// How a disagreement is called in messages (`findings of only one tool`).
    pub what: &'a str,
    /// Disagreements the list does not accept.
    pub unexplained: &'a [String],
    /// Listed disagreements that are gone.
    pub stale: &'a [String],
}

/// Prints and writes the report, then fails on unexplained or stale disagreements and on
/// listed ones without a reason.
pub fn conclude<'r>(outcome: &Outcome<'_>, reasons: impl IntoIterator<Item = &'r str>) {
    println!("{}", outcome.report);
    if let Some(path) = std::env::var_os(outcome.report_env) {
        std::fs::write(path, outcome.report).expect("write the report");
    }
    assert!(
        outcome.unexplained.is_empty(),
        "{} {} are not in {}:\n\n{}",
        outcome.unexplained.len(),
        outcome.what,
        outcome.listed_in,
        outcome.unexplained.join("\n\n")
    );
    assert!(
        outcome.stale.is_empty(),
        "listed in {} but no longer a disagreement (remove them): {:#?}",
        outcome.listed_in,
        outcome.stale
    );
    for reason in reasons {
        assert!(
            !reason.trim().is_empty(),
            "every disagreement listed in {} has a reason",
            outcome.listed_in
        );
    }
}
