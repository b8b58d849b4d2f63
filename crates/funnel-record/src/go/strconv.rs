//! Go's `strconv` readers: `ParseBool`, and the integer syntax of `ParseInt(s, 0, _)`.

/// Parses a boolean as Go's `strconv.ParseBool`: `1 t T TRUE true True` are true,
/// `0 f F FALSE false False` are false, anything else is `None`.
pub fn parse_bool(text: &str) -> Option<bool> {
    match text {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

/// Reads an integer in the syntax of Go's `strconv.ParseInt(text, 0, 64)` (also Go's
/// integer literals): an optional sign, then decimal, `0x` hex, `0o` or leading-`0`
/// octal, or `0b` binary digits, with `_` allowed between digits. The value is returned
/// unchecked against a bit size, so a caller can tell `int64` from `uint64` overflow;
/// `None` for other text or a magnitude beyond `i128`.
pub fn parse_int(text: &str) -> Option<i128> {
    let (negative, body) = match text.as_bytes().first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    let lower = body.to_ascii_lowercase();
    const PREFIXES: [(&str, u32); 3] = [("0x", 16), ("0o", 8), ("0b", 2)];
    let prefixed = PREFIXES
        .iter()
        .find_map(|&(prefix, radix)| Some((radix, lower.strip_prefix(prefix)?)));
    let (radix, digits) = match prefixed {
        Some(found) => found,
        // A leading 0 alone is the octal prefix too.
        None if lower.len() > 1 && lower.starts_with('0') => (8, &lower[1..]),
        None => (10, lower.as_str()),
    };
    // Go allows one underscore between a base prefix (a leading `0` too) and a digit.
    let digits = match radix {
        10 => digits,
        _ => digits.strip_prefix('_').unwrap_or(digits),
    };
    if digits.is_empty()
        || digits.starts_with('_')
        || digits.ends_with('_')
        || digits.contains("__")
    {
        return None;
    }
    let clean: String = digits.chars().filter(|c| *c != '_').collect();
    let v = u128::from_str_radix(&clean, radix).ok()?;
    let v = i128::try_from(v).ok()?;
    Some(if negative { -v } else { v })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn booleans_are_exactly_go_spellings() {
        for text in ["1", "t", "T", "TRUE", "true", "True"] {
            assert_eq!(parse_bool(text), Some(true), "{text}");
        }
        for text in ["0", "f", "F", "FALSE", "false", "False"] {
            assert_eq!(parse_bool(text), Some(false), "{text}");
        }
        for text in ["", "yes", "tRUE", " true", "true\n", "2"] {
            assert_eq!(parse_bool(text), None, "{text:?}");
        }
    }

    #[test]
    fn integers_read_every_base_and_underscores_between_digits() {
        let cases = [
            ("42", 42),
            ("-42", -42),
            ("+7", 7),
            ("0x1F", 31),
            ("0o17", 15),
            ("017", 15),
            ("0b101", 5),
            ("1_000", 1000),
            ("0x_ff", 255),
            ("0_17", 15),
            ("0", 0),
            ("18446744073709551615", 18_446_744_073_709_551_615),
        ];
        for (text, want) in cases {
            assert_eq!(parse_int(text), Some(want), "{text}");
        }
        for text in [
            "", "-", "0x", "0x_", "0x__1", "1__0", "_1", "1_", "09", "1.0", "abc", " 1",
        ] {
            assert_eq!(parse_int(text), None, "{text:?}");
        }
    }
}
