//! The lexer: splits template text into tokens as Go's `text/template/parse` lexer does.

/// What a token is.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Tok {
    /// Plain text outside actions (already trimmed by trim markers).
    Text(String),
    /// `{{` (with or without a trim marker).
    Left,
    /// `}}` (with or without a trim marker).
    Right,
    /// Spaces inside an action.
    Space,
    /// A function name.
    Ident(String),
    /// `.name`: the name without its dot.
    Field(String),
    /// `$name` or `$`.
    Variable(String),
    /// `.` alone.
    Dot,
    /// A quoted or raw string, already unquoted.
    Str(String),
    /// A character constant such as `'a'`: its code point.
    Char(i64, String),
    /// A number, as written.
    Number(String),
    /// `true` or `false`.
    Bool(bool),
    /// `nil`.
    Nil,
    /// A keyword.
    Keyword(&'static str),
    /// `(`.
    LParen,
    /// `)`.
    RParen,
    /// `|`.
    Pipe,
    /// `:=`.
    Declare,
    /// `=`.
    Assign,
    /// Any other printable ASCII character, such as `,`.
    Char1(char),
    /// End of input.
    Eof,
    /// A lexing error; always the last token.
    Error(String),
}

impl Tok {
    /// How Go's parser names the token in "unexpected ..." messages.
    pub(crate) fn describe(&self) -> String {
        fn q(s: &str) -> String {
            if s.chars().count() > 10 {
                let short: String = s.chars().take(10).collect();
                format!("{}...", crate::gofmt::quote(&short))
            } else {
                crate::gofmt::quote(s)
            }
        }
        match self {
            Tok::Eof => "EOF".into(),
            Tok::Error(m) => m.clone(),
            Tok::Keyword(k) => format!("<{k}>"),
            Tok::Text(s) | Tok::Ident(s) | Tok::Number(s) => q(s),
            Tok::Field(s) => q(&format!(".{s}")),
            Tok::Variable(s) => q(s),
            Tok::Char(_, s) => q(s),
            Tok::Str(s) => q(&crate::gofmt::quote(s)),
            Tok::Left => q("{{"),
            Tok::Right => q("}}"),
            Tok::Space => q(" "),
            Tok::Dot => q("."),
            Tok::Bool(b) => q(if *b { "true" } else { "false" }),
            Tok::Nil => q("nil"),
            Tok::LParen => q("("),
            Tok::RParen => q(")"),
            Tok::Pipe => q("|"),
            Tok::Declare => q(":="),
            Tok::Assign => q("="),
            Tok::Char1(c) => q(&c.to_string()),
        }
    }
}

/// A token and its byte offset in the template.
#[derive(Debug, Clone)]
pub(crate) struct Token {
    pub(crate) tok: Tok,
    pub(crate) pos: usize,
}

/// A lexing error: message and byte offset.
#[derive(Debug)]
pub(crate) struct LexError {
    pub(crate) msg: String,
    pub(crate) pos: usize,
}

/// Ends an action at its closing delimiter (at `right`): an error at `pos` when a left
/// parenthesis is still open.
fn close_action(
    toks: &mut Vec<Token>,
    depth: usize,
    pos: usize,
    right: usize,
) -> Result<(), LexError> {
    if depth > 0 {
        return Err(LexError {
            msg: "unclosed left paren".into(),
            pos,
        });
    }
    toks.push(Token {
        tok: Tok::Right,
        pos: right,
    });
    Ok(())
}

const KEYWORDS: &[&str] = &[
    "block", "break", "continue", "define", "else", "end", "if", "range", "nil", "template", "with",
];

fn is_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\r' | '\n')
}

fn is_alnum(c: char) -> bool {
    c == '_' || c.is_alphanumeric()
}

/// Lexes `src` into tokens, ending with `Eof` or, at the first lexing error, `Error`.
/// (Go's lexer runs in step with the parser, so a parse error before a lexing error wins;
/// the parser stops at the first `Error` token for the same effect.)
pub(crate) fn lex(src: &str) -> Vec<Token> {
    let mut toks = Vec::new();
    if let Err(e) = lex_into(src, &mut toks) {
        toks.push(Token {
            tok: Tok::Error(e.msg),
            pos: e.pos,
        });
    }
    toks
}

fn lex_into(src: &str, toks: &mut Vec<Token>) -> Result<(), LexError> {
    let b = src.as_bytes();
    let mut pos = 0;
    let mut trim_next_text = false;
    while pos < src.len() {
        // Text up to the next left delimiter.
        let next = src[pos..].find("{{").map_or(src.len(), |i| pos + i);
        let mut text = &src[pos..next];
        if trim_next_text {
            text = text.trim_start_matches(is_space);
            trim_next_text = false;
        }
        let left_trim = next < src.len()
            && b.get(next + 2) == Some(&b'-')
            && b.get(next + 3).is_some_and(|c| is_space(*c as char));
        if left_trim {
            text = text.trim_end_matches(is_space);
        }
        if !text.is_empty() {
            toks.push(Token {
                tok: Tok::Text(text.to_owned()),
                pos,
            });
        }
        if next >= src.len() {
            pos = next;
            break;
        }
        // Inside an action.
        let action_start = next;
        pos = next + 2;
        if left_trim {
            pos += 2;
        }
        // Comment?
        if src[pos..].starts_with("/*") {
            let Some(end) = src[pos + 2..].find("*/") else {
                return Err(LexError {
                    msg: "unclosed comment".into(),
                    pos: action_start,
                });
            };
            let mut p = pos + 2 + end + 2;
            let rest = &src[p..];
            if rest.starts_with("}}") {
                p += 2;
            } else if rest.len() >= 4
                && is_space(rest.as_bytes()[0] as char)
                && rest[1..].starts_with("-}}")
            {
                p += 4;
                trim_next_text = true;
            } else {
                return Err(LexError {
                    msg: "comment ends before closing delimiter".into(),
                    pos: action_start,
                });
            }
            pos = p;
            continue;
        }
        toks.push(Token {
            tok: Tok::Left,
            pos: action_start,
        });
        let mut depth = 0usize;
        loop {
            let rest = &src[pos..];
            if rest.starts_with("}}") {
                close_action(toks, depth, pos, pos)?;
                pos += 2;
                break;
            }
            let Some(c) = rest.chars().next() else {
                return Err(LexError {
                    msg: "unclosed action".into(),
                    pos,
                });
            };
            let start = pos;
            if is_space(c) {
                // A trim-marked closing delimiter: space, '-', '}}'.
                let n = rest.find(|c: char| !is_space(c)).unwrap_or(rest.len());
                let after = &rest[n..];
                if after.starts_with("-}}") {
                    close_action(toks, depth, pos, pos + n)?;
                    pos += n + 3;
                    trim_next_text = true;
                    break;
                }
                toks.push(Token {
                    tok: Tok::Space,
                    pos,
                });
                pos += n;
                continue;
            }
            match c {
                '=' => {
                    toks.push(Token {
                        tok: Tok::Assign,
                        pos,
                    });
                    pos += 1;
                }
                ':' => {
                    if !rest.starts_with(":=") {
                        return Err(LexError {
                            msg: "expected :=".into(),
                            pos,
                        });
                    }
                    toks.push(Token {
                        tok: Tok::Declare,
                        pos,
                    });
                    pos += 2;
                }
                '|' => {
                    toks.push(Token {
                        tok: Tok::Pipe,
                        pos,
                    });
                    pos += 1;
                }
                '(' => {
                    depth += 1;
                    toks.push(Token {
                        tok: Tok::LParen,
                        pos,
                    });
                    pos += 1;
                }
                ')' => {
                    if depth == 0 {
                        return Err(LexError {
                            msg: "unexpected right paren".into(),
                            pos,
                        });
                    }
                    depth -= 1;
                    toks.push(Token {
                        tok: Tok::RParen,
                        pos,
                    });
                    pos += 1;
                }
                '"' => {
                    let (s, n) = lex_quote(rest).map_err(|msg| LexError { msg, pos })?;
                    toks.push(Token {
                        tok: Tok::Str(s),
                        pos,
                    });
                    pos += n;
                }
                '`' => {
                    let Some(end) = rest[1..].find('`') else {
                        return Err(LexError {
                            msg: "unterminated raw quoted string".into(),
                            pos,
                        });
                    };
                    toks.push(Token {
                        tok: Tok::Str(rest[1..1 + end].to_owned()),
                        pos,
                    });
                    pos += end + 2;
                }
                '\'' => {
                    let (v, n) = lex_char(rest).map_err(|msg| LexError { msg, pos })?;
                    toks.push(Token {
                        tok: Tok::Char(v, rest[..n].to_owned()),
                        pos,
                    });
                    pos += n;
                }
                '$' | '.' => {
                    let second = rest[1..].chars().next();
                    if c == '.' && second.is_some_and(|d| d.is_ascii_digit()) {
                        let n = lex_number(rest).map_err(|msg| LexError { msg, pos })?;
                        toks.push(Token {
                            tok: Tok::Number(rest[..n].to_owned()),
                            pos,
                        });
                        pos += n;
                        continue;
                    }
                    let n = 1 + rest[1..]
                        .find(|c: char| !is_alnum(c))
                        .unwrap_or(rest.len() - 1);
                    let name = &rest[..n];
                    pos += n;
                    if n == 1 {
                        if c == '.' {
                            toks.push(Token {
                                tok: Tok::Dot,
                                pos: start,
                            });
                        } else {
                            toks.push(Token {
                                tok: Tok::Variable("$".into()),
                                pos: start,
                            });
                        }
                    } else if c == '.' {
                        toks.push(Token {
                            tok: Tok::Field(name[1..].to_owned()),
                            pos: start,
                        });
                    } else {
                        toks.push(Token {
                            tok: Tok::Variable(name.to_owned()),
                            pos: start,
                        });
                    }
                    check_terminator(src, pos)?;
                }
                '+' | '-' | '0'..='9' => {
                    let n = lex_number(rest).map_err(|msg| LexError { msg, pos })?;
                    toks.push(Token {
                        tok: Tok::Number(rest[..n].to_owned()),
                        pos,
                    });
                    pos += n;
                }
                c if is_alnum(c) => {
                    let n = rest.find(|c: char| !is_alnum(c)).unwrap_or(rest.len());
                    let word = &rest[..n];
                    pos += n;
                    check_terminator(src, pos)?;
                    let tok = if let Some(k) = KEYWORDS.iter().find(|k| **k == word) {
                        if *k == "nil" {
                            Tok::Nil
                        } else {
                            Tok::Keyword(k)
                        }
                    } else if word == "true" {
                        Tok::Bool(true)
                    } else if word == "false" {
                        Tok::Bool(false)
                    } else {
                        Tok::Ident(word.to_owned())
                    };
                    toks.push(Token { tok, pos: start });
                }
                c if c.is_ascii() && !c.is_ascii_control() => {
                    toks.push(Token {
                        tok: Tok::Char1(c),
                        pos,
                    });
                    pos += 1;
                }
                c => {
                    return Err(LexError {
                        msg: format!("unrecognized character in action: {}", unicode_hash(c)),
                        pos,
                    });
                }
            }
        }
    }
    toks.push(Token { tok: Tok::Eof, pos });
    Ok(())
}

/// Go's `%#U`: `U+002D '-'`.
pub(crate) fn unicode_hash(c: char) -> String {
    if c.is_control() {
        format!("U+{:04X}", c as u32)
    } else {
        format!("U+{:04X} '{c}'", c as u32)
    }
}

fn check_terminator(src: &str, pos: usize) -> Result<(), LexError> {
    let Some(c) = src[pos..].chars().next() else {
        return Ok(());
    };
    if is_space(c) || matches!(c, '.' | ',' | '|' | ':' | ')' | '(' | '}') {
        return Ok(());
    }
    Err(LexError {
        msg: format!("bad character {}", unicode_hash(c)),
        pos,
    })
}

fn lex_quote(rest: &str) -> Result<(String, usize), String> {
    let mut out = String::new();
    let mut chars = rest.char_indices().skip(1);
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Ok((out, i + 1)),
            '\n' => return Err("unterminated quoted string".into()),
            '\\' => {
                let (v, n) = unescape(&rest[i..]).ok_or_else(|| {
                    // Up to the end of the character after the backslash, which may
                    // take more than one byte.
                    let end = rest[i + 1..]
                        .chars()
                        .next()
                        .map_or(rest.len(), |c| i + 1 + c.len_utf8());
                    format!("invalid syntax in quoted string {}", &rest[..end])
                })?;
                out.push(v);
                for _ in 1..rest[i..i + n].chars().count() {
                    chars.next();
                }
            }
            c => out.push(c),
        }
    }
    Err("unterminated quoted string".into())
}

/// Unescapes one backslash escape at the start of `s`: the char and the bytes used.
fn unescape(s: &str) -> Option<(char, usize)> {
    let b = s.as_bytes();
    let c = *b.get(1)?;
    let simple = match c {
        b'a' => Some('\x07'),
        b'b' => Some('\x08'),
        b'f' => Some('\x0c'),
        b'n' => Some('\n'),
        b'r' => Some('\r'),
        b't' => Some('\t'),
        b'v' => Some('\x0b'),
        b'\\' => Some('\\'),
        b'\'' => Some('\''),
        b'"' => Some('"'),
        _ => None,
    };
    if let Some(v) = simple {
        return Some((v, 2));
    }
    let hex = |n: usize| -> Option<(char, usize)> {
        let digits = s.get(2..2 + n)?;
        let v = u32::from_str_radix(digits, 16).ok()?;
        Some((char::from_u32(v)?, 2 + n))
    };
    match c {
        b'x' => hex(2),
        b'u' => hex(4),
        b'U' => hex(8),
        b'0'..=b'7' => {
            let digits = s.get(1..4)?;
            let v = u32::from_str_radix(digits, 8).ok()?;
            if v > 255 {
                return None;
            }
            Some((char::from_u32(v)?, 4))
        }
        _ => None,
    }
}

fn lex_char(rest: &str) -> Result<(i64, usize), String> {
    let body = &rest[1..];
    let (c, n) = if body.starts_with('\\') {
        unescape(body).ok_or_else(|| "unterminated character constant".to_owned())?
    } else {
        let c = body
            .chars()
            .next()
            .ok_or("unterminated character constant")?;
        if c == '\n' || c == '\'' {
            return Err("unterminated character constant".into());
        }
        (c, c.len_utf8())
    };
    if !body[n..].starts_with('\'') {
        return Err("unterminated character constant".into());
    }
    Ok((i64::from(c as u32), n + 2))
}

/// Scans a number the way Go's lexer does; returns its length.
fn lex_number(rest: &str) -> Result<usize, String> {
    let b = rest.as_bytes();
    let mut i = 0;
    if matches!(b.first(), Some(b'+' | b'-')) {
        i += 1;
    }
    let mut digits: &[u8] = b"0123456789_";
    let mut exp: &[u8] = b"eE";
    if b.get(i) == Some(&b'0') && matches!(b.get(i + 1), Some(b'x' | b'X')) {
        i += 2;
        digits = b"0123456789abcdefABCDEF_";
        exp = b"pP";
    } else if b.get(i) == Some(&b'0') && matches!(b.get(i + 1), Some(b'o' | b'O')) {
        i += 2;
        digits = b"01234567_";
        exp = b"";
    } else if b.get(i) == Some(&b'0') && matches!(b.get(i + 1), Some(b'b' | b'B')) {
        i += 2;
        digits = b"01_";
        exp = b"";
    }
    let run = |i: &mut usize, set: &[u8]| {
        while b.get(*i).is_some_and(|c| set.contains(c)) {
            *i += 1;
        }
    };
    run(&mut i, digits);
    if b.get(i) == Some(&b'.') {
        i += 1;
        run(&mut i, digits);
    }
    if !exp.is_empty() && b.get(i).is_some_and(|c| exp.contains(c)) {
        i += 1;
        if matches!(b.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        run(&mut i, b"0123456789_");
    }
    if b.get(i) == Some(&b'i') {
        i += 1;
    }
    if rest[i..].chars().next().is_some_and(is_alnum) {
        let end = i + rest[i..].chars().next().map_or(0, char::len_utf8);
        return Err(format!(
            "bad number syntax: {}",
            crate::gofmt::quote(&rest[..end])
        ));
    }
    Ok(i)
}
