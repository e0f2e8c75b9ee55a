//! The limits of RE2, the engine Envoy compiles regexes with, that the regex crate (which checks
//! the syntax, see `syntax::validate_regex`) does not have: a repetition count above 1000, nested
//! counts that multiply past 1000 (RE2 refuses both as "invalid repetition size"), and programs
//! bigger than the `re2.max_program_size.error_level` of rudder's bootstrap. Works on the
//! pattern's syntax tree only; it compiles and matches nothing.

use regex_syntax::ast::{Ast, RepetitionKind, RepetitionRange};

use crate::bootstrap::RE2_MAX_PROGRAM_SIZE;

/// RE2's `kMaxRepeat`: the largest count of one repetition, and of nested ones multiplied.
const MAX_REPEAT: u32 = 1000;

/// Why RE2 (or Envoy) would refuse a pattern that parses.
pub(super) fn check_re2_limits(ast: &Ast) -> Result<(), String> {
    let size = program_size(ast, MAX_REPEAT)?;
    if size > u64::from(RE2_MAX_PROGRAM_SIZE) {
        return Err(format!(
            "its RE2 program has at least {size} instructions, more than Envoy accepts \
             ({RE2_MAX_PROGRAM_SIZE})"
        ));
    }
    Ok(())
}

/// A lower bound of the instructions RE2 compiles `ast` to (at least one per literal, class or
/// assertion, repeated as RE2 expands repetitions into copies), so a pattern is refused only when
/// Envoy surely refuses it. `budget` is what RE2's repetition check has left: 1000 divided by the
/// counts of the enclosing repetitions, in turn; it must not reach 0.
fn program_size(ast: &Ast, budget: u32) -> Result<u64, String> {
    Ok(match ast {
        Ast::Empty(_) | Ast::Flags(_) => 0,
        Ast::Literal(_)
        | Ast::Dot(_)
        | Ast::Assertion(_)
        | Ast::ClassUnicode(_)
        | Ast::ClassPerl(_)
        | Ast::ClassBracketed(_) => 1,
        Ast::Group(group) => program_size(&group.ast, budget)?,
        Ast::Alternation(alternation) => sum(&alternation.asts, budget)?,
        Ast::Concat(concat) => sum(&concat.asts, budget)?,
        Ast::Repetition(repetition) => {
            let copies = match &repetition.op.kind {
                // `?`, `*` and `+` are loops in RE2, not copies, and not counted as repetitions.
                RepetitionKind::ZeroOrOne
                | RepetitionKind::ZeroOrMore
                | RepetitionKind::OneOrMore => {
                    return program_size(&repetition.ast, budget);
                }
                RepetitionKind::Range(range) => {
                    let (min, max) = match *range {
                        RepetitionRange::Exactly(n) => (n, n),
                        RepetitionRange::AtLeast(n) => (n, n),
                        RepetitionRange::Bounded(min, max) => (min, max),
                    };
                    if min.max(max) > MAX_REPEAT {
                        return Err(format!(
                            "repetition count {} is more than RE2's limit of {MAX_REPEAT}",
                            min.max(max)
                        ));
                    }
                    max
                }
            };
            let budget = match copies {
                0 => budget,
                copies => budget / copies,
            };
            if budget == 0 {
                return Err(format!(
                    "nested repetition counts multiply to more than RE2's limit of {MAX_REPEAT}"
                ));
            }
            u64::from(copies) * program_size(&repetition.ast, budget)?
        }
    })
}

fn sum(asts: &[Ast], budget: u32) -> Result<u64, String> {
    asts.iter()
        .map(|ast| program_size(ast, budget))
        .try_fold(0u64, |total, size| Ok(total.saturating_add(size?)))
}

#[cfg(test)]
mod tests {
    use regex_syntax::ast::parse::Parser;

    use super::*;

    fn check(pattern: &str) -> Result<(), String> {
        check_re2_limits(&Parser::new().parse(pattern).expect("the pattern parses"))
    }

    /// Each verdict is Envoy 1.40's on a route with the pattern, under rudder's bootstrap runtime.
    #[test]
    fn refuses_what_envoy_refuses() {
        for accepted in [
            "a{1000}b{1000}",
            "(a{30}){30}",
            "\\w{1000}",
            "(ab|cd)*x+y?",
            "a{0}",
        ] {
            assert_eq!(check(accepted), Ok(()), "{accepted}");
        }
        assert_eq!(
            check("a{1001}"),
            Err("repetition count 1001 is more than RE2's limit of 1000".to_string())
        );
        let nested = "nested repetition counts multiply to more than RE2's limit of 1000";
        for refused in ["(a{100}){20}", "(a{1000}){1000}", "((a{2}){2,}){500}"] {
            assert_eq!(check(refused), Err(nested.to_string()), "{refused}");
        }
        // Envoy counts 34004 instructions for 34 such classes.
        let big = "[a-z]{1000}[0-9]{1000}".repeat(20);
        assert_eq!(
            check(&big),
            Err(
                "its RE2 program has at least 40000 instructions, more than Envoy accepts (32768)"
                    .to_string()
            )
        );
    }
}
