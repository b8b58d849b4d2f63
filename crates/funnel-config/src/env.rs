//! Environment-variable interpolation, as Go's `os.ExpandEnv` does it, plus a strict mode.
//!
//! Compatible mode (the default) copies Conduit exactly: `${VAR}` and `$VAR` are
//! replaced by the variable's value, an unset variable by nothing; `$` followed by a
//! shell special character (`$$`, `$1`, `$*`, `$#`, ...) is a variable too and so
//! usually disappears; `${}` and an unclosed `${` are dropped; a `$` followed by
//! anything else (or nothing) stays.
//!
//! Strict mode (`LoadOptions::strict_env`) makes an unset variable, `${}` and an
//! unclosed `${` errors, and reads `$$` as a literal `$`. Everything else is the same.

/// Why a reference could not be expanded in strict mode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum EnvProblem {
    /// The variable is not set.
    Unset(String),
    /// `${}` or `${` without its `}`.
    BadSyntax(String),
}

/// Expands `input`. `lookup` returns a variable's value, `None` when it is unset.
///
/// In compatible mode this never fails. In strict mode it returns every problem found.
pub(crate) fn expand(
    input: &str,
    strict: bool,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<String, Vec<EnvProblem>> {
    let bytes = input.as_bytes();
    if !bytes.contains(&b'$') {
        return Ok(input.to_owned());
    }
    let mut out = String::with_capacity(input.len());
    let mut problems = Vec::new();
    // `start` is where the text not yet copied begins; `j` scans for `$`.
    let mut start = 0;
    let mut j = 0;
    while j < bytes.len() {
        if bytes[j] == b'$' && j + 1 < bytes.len() {
            out.push_str(&input[start..j]);
            let rest = &input[j + 1..];
            if strict && rest.starts_with('$') {
                out.push('$');
                j += 2;
                start = j;
                continue;
            }
            let (name, width) = shell_name(rest);
            if name.is_empty() && width > 0 {
                // `${}` or an unclosed `${`: Go drops it.
                if strict {
                    problems.push(EnvProblem::BadSyntax(input[j..j + 1 + width].to_owned()));
                }
            } else if name.is_empty() {
                // `$` not followed by a name stays.
                out.push('$');
            } else {
                match lookup(name) {
                    Some(value) => out.push_str(&value),
                    None if strict => problems.push(EnvProblem::Unset(name.to_owned())),
                    None => {}
                }
            }
            j += 1 + width;
            start = j;
        } else {
            j += 1;
        }
    }
    out.push_str(&input[start.min(input.len())..]);
    if problems.is_empty() {
        Ok(out)
    } else {
        Err(problems)
    }
}

/// Go's `isShellSpecialVar`.
fn is_shell_special(c: u8) -> bool {
    matches!(
        c,
        b'*' | b'#' | b'$' | b'@' | b'!' | b'?' | b'-' | b'0'..=b'9'
    )
}

/// Go's `isAlphaNum`.
fn is_alpha_num(c: u8) -> bool {
    c == b'_' || c.is_ascii_alphanumeric()
}

/// Go's `getShellName`: the variable name at the start of `s` (which follows a `$`) and
/// how many bytes the reference takes. An empty name with a width > 0 is bad syntax that
/// is dropped; an empty name with width 0 means the `$` is kept.
fn shell_name(s: &str) -> (&str, usize) {
    let b = s.as_bytes();
    if b[0] == b'{' {
        if b.len() > 2 && is_shell_special(b[1]) && b[2] == b'}' {
            return (&s[1..2], 3);
        }
        for i in 1..b.len() {
            if b[i] == b'}' {
                if i == 1 {
                    return ("", 2);
                }
                return (&s[1..i], i + 1);
            }
        }
        return ("", 1);
    }
    if is_shell_special(b[0]) {
        return (&s[0..1], 1);
    }
    let len = b.iter().take_while(|c| is_alpha_num(**c)).count();
    (&s[..len], len)
}

/// Looks a variable up in the process environment.
pub(crate) fn process_env(name: &str) -> Option<String> {
    // `var_os` may panic on such names; no such variable can be set anyway.
    if name.is_empty() || name.contains(['=', '\0']) {
        return None;
    }
    std::env::var_os(name).map(|v| v.to_string_lossy().into_owned())
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn vars() -> HashMap<String, String> {
        [
            ("HOST", "db.local"),
            ("PORT", "5432"),
            ("EMPTY", ""),
            ("1", "one"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
    }

    fn compat(input: &str) -> String {
        let vars = vars();
        expand(input, false, &|name| vars.get(name).cloned()).unwrap()
    }

    fn strict(input: &str) -> Result<String, Vec<EnvProblem>> {
        let vars = vars();
        expand(input, true, &|name| vars.get(name).cloned())
    }

    #[test]
    fn braced_and_bare_references_are_both_expanded() {
        assert_eq!(compat("${HOST}:$PORT"), "db.local:5432");
        assert_eq!(compat("postgres://$HOST/x"), "postgres://db.local/x");
    }

    #[test]
    fn text_without_a_dollar_is_returned_unchanged() {
        assert_eq!(compat("plain text"), "plain text");
        assert_eq!(compat(""), "");
    }

    #[test]
    fn an_unset_variable_becomes_empty_in_compatible_mode() {
        assert_eq!(compat("a${NOPE}b$NOPE-c"), "ab-c");
    }

    #[test]
    fn a_bare_name_ends_at_the_first_character_that_is_not_alphanumeric() {
        assert_eq!(compat("$HOST.x"), "db.local.x");
        assert_eq!(compat("$HOSTNAME"), "");
    }

    #[test]
    fn double_dollar_is_a_variable_and_vanishes_in_compatible_mode_as_in_go() {
        assert_eq!(compat("cost: $$5"), "cost: 5");
        assert_eq!(compat("${1}$1"), "oneone");
        assert_eq!(compat("a$*b$#c"), "abc");
    }

    #[test]
    fn a_dollar_not_followed_by_a_name_is_kept() {
        assert_eq!(compat("5 $ each"), "5 $ each");
        assert_eq!(compat("ends with $"), "ends with $");
        assert_eq!(compat("$/x"), "$/x");
    }

    #[test]
    fn empty_braces_and_unclosed_braces_are_dropped_in_compatible_mode() {
        assert_eq!(compat("a${}b"), "ab");
        assert_eq!(compat("a${HOST"), "aHOST");
    }

    #[test]
    fn a_set_but_empty_variable_is_not_an_error_in_strict_mode() {
        assert_eq!(strict("[${EMPTY}]").unwrap(), "[]");
    }

    #[test]
    fn strict_mode_reports_every_unset_variable() {
        assert_eq!(
            strict("${A}-$B-${HOST}").unwrap_err(),
            vec![
                EnvProblem::Unset("A".to_owned()),
                EnvProblem::Unset("B".to_owned())
            ]
        );
    }

    #[test]
    fn double_dollar_is_a_literal_dollar_in_strict_mode() {
        assert_eq!(strict("cost: $$5, ${PORT}").unwrap(), "cost: $5, 5432");
        assert_eq!(strict("$${HOST}").unwrap(), "${HOST}");
        assert_eq!(strict("$$$$").unwrap(), "$$");
    }

    #[test]
    fn strict_mode_rejects_empty_and_unclosed_braces() {
        assert_eq!(
            strict("a${}b${HOST").unwrap_err(),
            vec![
                EnvProblem::BadSyntax("${}".to_owned()),
                EnvProblem::BadSyntax("${".to_owned())
            ]
        );
    }

    #[test]
    fn non_ascii_text_around_references_is_kept_intact() {
        assert_eq!(compat("héllo ${HOST} wörld $"), "héllo db.local wörld $");
        assert_eq!(compat("${ünï}x"), "x");
    }

    #[test]
    fn a_name_that_cannot_be_an_environment_variable_is_unset() {
        assert_eq!(process_env(""), None);
        assert_eq!(process_env("A=B"), None);
    }
}
