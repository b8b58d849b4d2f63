//! The parser: builds the syntax tree from tokens, with Go's parse-time checks
//! (functions must exist, variables must be declared, `break` only inside `range`).

use crate::funcs::Func;
use crate::lex::{Tok, Token, lex};

/// A list of nodes.
pub(crate) type List = Vec<Node>;

/// A node of the tree.
#[derive(Debug, Clone)]
pub(crate) enum Node {
    /// Plain text.
    Text(Box<str>),
    /// `{{ pipeline }}`: prints the value unless the pipeline declares variables.
    Action(Pipe),
    /// `{{ if }}`.
    If(Box<Branch>),
    /// `{{ with }}`.
    With(Box<Branch>),
    /// `{{ range }}`.
    Range(Box<Branch>),
    /// `{{ break }}`.
    Break,
    /// `{{ continue }}`.
    Continue,
}

/// The parts of `if`, `with` and `range`.
#[derive(Debug, Clone)]
pub(crate) struct Branch {
    pub(crate) pipe: Pipe,
    pub(crate) list: List,
    pub(crate) else_list: Option<List>,
}

/// A pipeline: optional variable declarations and `|`-separated commands.
#[derive(Debug, Clone)]
pub(crate) struct Pipe {
    pub(crate) decl: Vec<Box<str>>,
    pub(crate) is_assign: bool,
    pub(crate) cmds: Vec<Cmd>,
}

/// One command of a pipeline: a function and its arguments, or a single operand.
#[derive(Debug, Clone)]
pub(crate) struct Cmd {
    pub(crate) pos: usize,
    pub(crate) args: Vec<Arg>,
    /// The command as written, for error messages.
    pub(crate) text: Box<str>,
}

/// An operand.
#[derive(Debug, Clone)]
pub(crate) enum Arg {
    /// `.`.
    Dot,
    /// `nil`.
    Nil,
    /// `true` / `false`.
    Bool(bool),
    /// A string literal.
    Str(Box<str>),
    /// A number or character literal.
    Num(Num),
    /// `.a.b`.
    Field(Box<[Box<str>]>),
    /// `$x.a.b` (name, fields).
    Var(Box<str>, Box<[Box<str>]>),
    /// A function.
    Func(Func),
    /// `( pipeline )`.
    Pipe(Box<Pipe>),
    /// `(operand).a.b`.
    Chain(Box<Arg>, Box<[Box<str>]>),
}

/// A number literal.
#[derive(Debug, Clone)]
pub(crate) struct Num {
    /// The literal as written.
    pub(crate) text: Box<str>,
    /// Its value as an integer, when it has one.
    pub(crate) int: Option<i64>,
    /// Its value as a float, when it has one.
    pub(crate) float: Option<f64>,
    /// True when Go would pass it as a float64 to an `interface{}` parameter.
    pub(crate) ideal_float: bool,
}

/// A parse error: message and byte offset.
pub(crate) struct ParseError {
    pub(crate) msg: String,
    pub(crate) pos: usize,
}

type PResult<T> = Result<T, ParseError>;

enum Ending {
    End,
    Else(usize),
}

struct Parser<'s> {
    src: &'s str,
    toks: Vec<Token>,
    i: usize,
    vars: Vec<String>,
    range_depth: usize,
}

/// Parses `src` into its top-level list.
pub(crate) fn parse(src: &str) -> Result<List, ParseError> {
    let mut p = Parser {
        src,
        toks: lex(src),
        i: 0,
        vars: vec!["$".into()],
        range_depth: 0,
    };
    let mut list = Vec::new();
    loop {
        if matches!(p.peek().tok, Tok::Eof) {
            return Ok(list);
        }
        match p.text_or_action()? {
            Item::Node(n) => list.push(n),
            Item::End(pos) => {
                return Err(ParseError {
                    msg: "unexpected {{end}}".into(),
                    pos,
                });
            }
            Item::Else(pos) => {
                return Err(ParseError {
                    msg: "unexpected {{else}}".into(),
                    pos,
                });
            }
        }
    }
}

enum Item {
    Node(Node),
    End(usize),
    Else(usize),
}

impl<'s> Parser<'s> {
    fn peek(&self) -> &Token {
        &self.toks[self.i.min(self.toks.len() - 1)]
    }

    fn next(&mut self) -> PResult<Token> {
        let t = self.toks[self.i.min(self.toks.len() - 1)].clone();
        if let Tok::Error(msg) = &t.tok {
            return Err(ParseError {
                msg: msg.clone(),
                pos: t.pos,
            });
        }
        self.i += 1;
        Ok(t)
    }

    fn backup(&mut self) {
        self.i -= 1;
    }

    fn skip_space(&mut self) {
        while matches!(self.peek().tok, Tok::Space) {
            self.i += 1;
        }
    }

    fn peek_non_space(&mut self) -> &Token {
        self.skip_space();
        self.peek()
    }

    fn next_non_space(&mut self) -> PResult<Token> {
        self.skip_space();
        self.next()
    }

    fn err<T>(&self, pos: usize, msg: impl Into<String>) -> PResult<T> {
        Err(ParseError {
            msg: msg.into(),
            pos,
        })
    }

    fn unexpected<T>(&self, t: &Token, context: &str) -> PResult<T> {
        self.err(
            t.pos,
            format!("unexpected {} in {context}", t.tok.describe()),
        )
    }

    fn text_or_action(&mut self) -> PResult<Item> {
        let t = self.next_non_space()?;
        match t.tok {
            Tok::Text(s) => Ok(Item::Node(Node::Text(s.into()))),
            Tok::Left => self.action(),
            _ => self.unexpected(&t, "input"),
        }
    }

    fn action(&mut self) -> PResult<Item> {
        let t = self.next_non_space()?;
        match t.tok {
            Tok::Keyword("else") => {
                self.else_control(t.pos)?;
                Ok(Item::Else(t.pos))
            }
            Tok::Keyword("end") => {
                self.expect_right("end")?;
                Ok(Item::End(t.pos))
            }
            Tok::Keyword("if") => Ok(Item::Node(Node::If(Box::new(self.control("if")?)))),
            Tok::Keyword("with") => Ok(Item::Node(Node::With(Box::new(self.control("with")?)))),
            Tok::Keyword("range") => Ok(Item::Node(Node::Range(Box::new(self.control("range")?)))),
            Tok::Keyword(k @ ("break" | "continue")) => {
                if self.range_depth == 0 {
                    return self.err(t.pos, format!("{{{{{k}}}}} outside {{{{range}}}}"));
                }
                let n = self.next_non_space()?;
                if !matches!(n.tok, Tok::Right) {
                    return self.unexpected(&n, &format!("{{{{{k}}}}}"));
                }
                Ok(Item::Node(if k == "break" {
                    Node::Break
                } else {
                    Node::Continue
                }))
            }
            Tok::Keyword(k @ ("define" | "template" | "block")) => self.err(
                t.pos,
                format!("{{{{{k}}}}} is not supported (Funnel templates have no named templates)"),
            ),
            _ => {
                self.backup();
                Ok(Item::Node(Node::Action(self.pipeline("command", true)?)))
            }
        }
    }

    fn expect_right(&mut self, context: &str) -> PResult<()> {
        let t = self.next_non_space()?;
        if matches!(t.tok, Tok::Right) {
            Ok(())
        } else {
            self.unexpected(&t, context)
        }
    }

    /// After `else`: either `}}` or the start of `else if` / `else with` (left in place).
    fn else_control(&mut self, _pos: usize) -> PResult<()> {
        let t = self.peek_non_space().clone();
        match t.tok {
            Tok::Keyword("if" | "with") => Ok(()),
            _ => self.expect_right("else"),
        }
    }

    fn item_list(&mut self) -> PResult<(List, Ending)> {
        let mut list = Vec::new();
        loop {
            let t = self.peek_non_space().clone();
            if matches!(t.tok, Tok::Eof) {
                return self.err(t.pos, "unexpected EOF");
            }
            match self.text_or_action()? {
                Item::Node(n) => list.push(n),
                Item::End(_) => return Ok((list, Ending::End)),
                Item::Else(pos) => return Ok((list, Ending::Else(pos))),
            }
        }
    }

    fn control(&mut self, context: &'static str) -> PResult<Branch> {
        let mark = self.vars.len();
        let pipe = self.pipeline(context, true)?;
        if context == "range" {
            self.range_depth += 1;
        }
        let (list, ending) = self.item_list()?;
        if context == "range" {
            self.range_depth -= 1;
        }
        let else_list = match ending {
            Ending::End => None,
            Ending::Else(pos) => {
                // `else if` / `else with` chains: the nested control consumes the `end`.
                let t = self.peek_non_space().clone();
                match (&t.tok, context) {
                    (Tok::Keyword("if"), "if") | (Tok::Keyword("with"), "with") => {
                        self.next()?;
                        let nested = self.control(context)?;
                        let node = if context == "if" {
                            Node::If(Box::new(nested))
                        } else {
                            Node::With(Box::new(nested))
                        };
                        Some(vec![node])
                    }
                    (Tok::Keyword(k), _) if *k == "if" || *k == "with" => {
                        return self.err(pos, format!("unexpected <{k}> in else"));
                    }
                    _ => {
                        let (list, ending) = self.item_list()?;
                        if let Ending::Else(pos) = ending {
                            return self.err(pos, "expected end; found {{else}}");
                        }
                        Some(list)
                    }
                }
            }
        };
        self.vars.truncate(mark);
        Ok(Branch {
            pipe,
            list,
            else_list,
        })
    }

    fn pipeline(&mut self, context: &str, in_action: bool) -> PResult<Pipe> {
        let mut pipe = Pipe {
            decl: Vec::new(),
            is_assign: false,
            cmds: Vec::new(),
        };
        // Declarations.
        loop {
            let start = self.i;
            let v = self.peek_non_space().clone();
            let Tok::Variable(name) = &v.tok else { break };
            self.next()?;
            let after = self.peek().clone();
            let next = self.peek_non_space().clone();
            match next.tok {
                Tok::Declare | Tok::Assign => {
                    pipe.is_assign = matches!(next.tok, Tok::Assign);
                    self.next()?;
                    if pipe.is_assign && !self.vars.iter().any(|x| x == name) {
                        return self.err(
                            v.pos,
                            format!("undefined variable {}", crate::gofmt::quote(name)),
                        );
                    }
                    pipe.decl.push(name.as_str().into());
                    self.vars.push(name.clone());
                    break;
                }
                Tok::Char1(',') => {
                    self.next()?;
                    pipe.decl.push(name.as_str().into());
                    self.vars.push(name.clone());
                    if context == "range" && pipe.decl.len() < 2 {
                        match self.peek_non_space().tok {
                            Tok::Variable(_) | Tok::Right | Tok::RParen => continue,
                            _ => {
                                let pos = self.peek().pos;
                                return self.err(pos, "range can only initialize variables");
                            }
                        }
                    }
                    return self.err(v.pos, format!("too many declarations in {context}"));
                }
                _ => {
                    let _ = after;
                    self.i = start;
                    break;
                }
            }
        }
        if pipe.decl.len() > 1 && !matches!(self.toks[self.i - 1].tok, Tok::Declare | Tok::Assign) {
            // `range $i, $v := ...` requires the := after the second variable.
            let t = self.peek().clone();
            return self.unexpected(&t, context);
        }
        let end_is_right = in_action;
        loop {
            let t = self.next_non_space()?;
            match &t.tok {
                Tok::Right if end_is_right => break,
                Tok::RParen if !end_is_right => break,
                Tok::Bool(_)
                | Tok::Char(..)
                | Tok::Dot
                | Tok::Field(_)
                | Tok::Ident(_)
                | Tok::Number(_)
                | Tok::Nil
                | Tok::Str(_)
                | Tok::Variable(_)
                | Tok::LParen => {
                    self.backup();
                    let cmd = self.command()?;
                    pipe.cmds.push(cmd);
                }
                _ => return self.unexpected(&t, context),
            }
        }
        if pipe.cmds.is_empty() {
            let pos = self.toks[self.i - 1].pos;
            return self.err(pos, format!("missing value for {context}"));
        }
        for (i, c) in pipe.cmds.iter().enumerate().skip(1) {
            if matches!(
                c.args[0],
                Arg::Bool(_) | Arg::Dot | Arg::Nil | Arg::Num(_) | Arg::Str(_)
            ) {
                return self.err(
                    c.pos,
                    format!("non executable command in pipeline stage {}", i + 1),
                );
            }
        }
        Ok(pipe)
    }

    fn command(&mut self) -> PResult<Cmd> {
        let pos = self.peek_non_space().pos;
        let mut args = Vec::new();
        let mut end = pos;
        loop {
            self.skip_space();
            if let Some(a) = self.operand()? {
                args.push(a);
            }
            end = self.toks[self.i.saturating_sub(1)].pos.max(end);
            let t = self.next()?;
            match t.tok {
                Tok::Space => continue,
                Tok::Right | Tok::RParen => self.backup(),
                Tok::Pipe => {}
                _ => return self.unexpected(&t, "operand"),
            }
            break;
        }
        if args.is_empty() {
            return self.err(pos, "empty command");
        }
        let end_pos = self.toks[self.i].pos;
        let _ = end;
        let text = self.src[pos..end_pos.max(pos)].trim_end_matches(['|', ' ']);
        let text = text.trim();
        Ok(Cmd {
            pos,
            args,
            text: text.into(),
        })
    }

    fn operand(&mut self) -> PResult<Option<Arg>> {
        let Some(term) = self.term()? else {
            return Ok(None);
        };
        if !matches!(self.peek().tok, Tok::Field(_)) {
            return Ok(Some(term));
        }
        let mut fields = Vec::new();
        while let Tok::Field(f) = &self.peek().tok {
            fields.push(f.as_str().into());
            self.i += 1;
        }
        Ok(Some(match term {
            Arg::Field(mut f) => {
                let mut v = std::mem::take(&mut f).into_vec();
                v.extend(fields);
                Arg::Field(v.into())
            }
            Arg::Var(name, f) => {
                let mut v = f.into_vec();
                v.extend(fields);
                Arg::Var(name, v.into())
            }
            Arg::Bool(_) | Arg::Str(_) | Arg::Num(_) | Arg::Nil | Arg::Dot => {
                let pos = self.toks[self.i - 1].pos;
                return self.err(pos, "unexpected . after term");
            }
            other => Arg::Chain(Box::new(other), fields.into()),
        }))
    }

    fn term(&mut self) -> PResult<Option<Arg>> {
        let t = self.next_non_space()?;
        Ok(Some(match t.tok {
            Tok::Ident(name) => match Func::lookup(&name) {
                Some(f) => Arg::Func(f),
                None => {
                    return self.err(
                        t.pos,
                        format!("function {} not defined", crate::gofmt::quote(&name)),
                    );
                }
            },
            Tok::Dot => Arg::Dot,
            Tok::Nil => Arg::Nil,
            Tok::Variable(name) => {
                if !self.vars.contains(&name) {
                    return self.err(
                        t.pos,
                        format!("undefined variable {}", crate::gofmt::quote(&name)),
                    );
                }
                Arg::Var(name.into(), Box::new([]))
            }
            Tok::Field(name) => Arg::Field(vec![name.into_boxed_str()].into()),
            Tok::Bool(b) => Arg::Bool(b),
            Tok::Char(v, text) => Arg::Num(Num {
                text: text.into(),
                int: Some(v),
                float: Some(v as f64),
                ideal_float: false,
            }),
            Tok::Number(text) => {
                Arg::Num(parse_number(&text).map_err(|msg| ParseError { msg, pos: t.pos })?)
            }
            Tok::LParen => Arg::Pipe(Box::new(self.pipeline("parenthesized pipeline", false)?)),
            Tok::Str(s) => Arg::Str(s.into()),
            _ => {
                self.backup();
                return Ok(None);
            }
        }))
    }
}

fn parse_number(text: &str) -> Result<Num, String> {
    if text.ends_with('i') {
        return Err(format!(
            "complex numbers are not supported: {}",
            crate::gofmt::quote(text)
        ));
    }
    let illegal = || format!("illegal number syntax: {}", crate::gofmt::quote(text));
    let mut num = Num {
        text: text.into(),
        int: None,
        float: None,
        ideal_float: false,
    };
    let is_hex = text
        .trim_start_matches(['+', '-'])
        .to_ascii_lowercase()
        .starts_with("0x");
    if let Some(v) = funnel_record::go::parse_int(text) {
        if let Ok(i) = i64::try_from(v) {
            num.int = Some(i);
            num.float = Some(i as f64);
            return Ok(num);
        }
        if text.starts_with('-') || u64::try_from(v).is_err() {
            return Err(format!("integer overflow: {}", crate::gofmt::quote(text)));
        }
        // Fits uint64 but not int64: Go accepts it, but it overflows int when used.
        num.float = Some(v as f64);
        return Ok(num);
    }
    if is_hex {
        // Hex floats (0x1p-2) are rare in templates; not supported.
        return Err(illegal());
    }
    let clean: String = text.chars().filter(|c| *c != '_').collect();
    let f: f64 = clean.parse().map_err(|_| illegal())?;
    if !text.contains(['.', 'e', 'E']) {
        return Err(format!("integer overflow: {}", crate::gofmt::quote(text)));
    }
    num.float = Some(f);
    num.ideal_float = true;
    if f.fract() == 0.0 && f.abs() < 9.2e18 {
        num.int = Some(f as i64);
    }
    Ok(num)
}
