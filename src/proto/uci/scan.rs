//! The lexer and builder of UCI files: commands and their arguments with
//! uci `file.c`'s quoting and escapes, then the package they build.
//!
//! Owns: [`Scanner`] and [`Builder`], with the byte spans of every
//! argument that the writer in `edit.rs` needs. Pure.

use std::collections::HashMap;
use std::ops::Range;

use super::{
    ErrorKind, MAX_FILE_SIZE, MAX_LIST_ITEMS, MAX_OPTIONS, MAX_SECTIONS, MAX_VALUES, Package,
    ParseError, Section, Value, valid_name, valid_package, valid_type,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    Package,
    Config,
    Option,
    List,
}

/// One argument: its decoded value and the raw bytes it came from
/// (quotes included). An absent argument has an empty span.
#[derive(Debug, Clone)]
pub(super) struct Arg {
    pub(super) value: String,
    pub(super) span: Range<usize>,
}

#[derive(Debug, Clone)]
pub(super) struct Command {
    pub(super) kind: Kind,
    line: usize,
    /// Byte offset of the command word.
    pub(super) start: usize,
    /// Byte offset just past the last argument (or the command word).
    pub(super) end: usize,
    pub(super) args: Vec<Arg>,
}

/// C's `isspace` minus the newline, which ends a command line.
fn is_blank(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | 0x0b | 0x0c)
}

pub(super) struct Scanner<'a> {
    b: &'a [u8],
    pos: usize,
    line: usize,
    /// A `;` ended the current command: its remaining arguments are empty.
    ended: bool,
}

impl<'a> Scanner<'a> {
    pub(super) fn new(text: &'a str) -> Result<Scanner<'a>, ParseError> {
        if text.len() > MAX_FILE_SIZE {
            return Err(ParseError {
                line: 0,
                kind: ErrorKind::TooLarge,
            });
        }
        if let Some(at) = text.bytes().position(|b| b == 0) {
            let line = text.as_bytes()[..at]
                .iter()
                .filter(|&&b| b == b'\n')
                .count()
                + 1;
            return Err(ParseError {
                line,
                kind: ErrorKind::NulByte,
            });
        }
        Ok(Scanner {
            b: text.as_bytes(),
            pos: 0,
            line: 1,
            ended: false,
        })
    }

    fn err(&self, kind: ErrorKind) -> ParseError {
        ParseError {
            line: self.line,
            kind,
        }
    }

    fn peek(&self) -> Option<u8> {
        self.b.get(self.pos).copied()
    }

    fn skip_blanks(&mut self) {
        while self.peek().is_some_and(is_blank) {
            self.pos += 1;
        }
    }

    /// Moves to the newline (or the end) that ends a comment.
    fn skip_comment(&mut self) {
        while self.peek().is_some_and(|b| b != b'\n') {
            self.pos += 1;
        }
    }

    /// Consumes a newline at `pos`, counting it.
    fn newline(&mut self) {
        self.pos += 1;
        self.line += 1;
    }

    pub(super) fn next_command(&mut self) -> Result<Option<Command>, ParseError> {
        loop {
            self.skip_blanks();
            match self.peek() {
                None => return Ok(None),
                Some(b'\n') => self.newline(),
                Some(b'#') => self.skip_comment(),
                Some(_) => break,
            }
        }
        let start = self.pos;
        let line = self.line;
        while self.peek().is_some_and(|b| !is_blank(b) && b != b'\n') {
            self.pos += 1;
        }
        let word = &self.b[start..self.pos];
        let kind = match word {
            b"package" | b"p" => Kind::Package,
            b"config" | b"c" => Kind::Config,
            b"option" | b"o" => Kind::Option,
            b"list" | b"l" => Kind::List,
            _ => {
                let w = String::from_utf8_lossy(word);
                let w: String = w.chars().take(32).collect();
                return Err(self.err(ErrorKind::InvalidCommand(w)));
            }
        };
        self.ended = false;
        let (first, second): (&'static str, Option<&'static str>) = match kind {
            Kind::Package => ("package name", None),
            Kind::Config => ("section type", Some("section name")),
            Kind::Option | Kind::List => ("option name", Some("value")),
        };
        let mut args = Vec::with_capacity(2);
        let a = self.arg()?;
        if a.value.is_empty() {
            return Err(self.err(ErrorKind::MissingArgument(first)));
        }
        let mut end = a.span.end;
        args.push(a);
        if second.is_some() {
            let a = self.arg()?;
            if !a.span.is_empty() {
                end = a.span.end;
            }
            args.push(a);
        }
        if !self.arg()?.value.is_empty() {
            return Err(self.err(ErrorKind::TooManyArguments));
        }
        Ok(Some(Command {
            kind,
            line,
            start,
            end,
            args,
        }))
    }

    /// The next argument of the current command; empty at the end of the
    /// line, at a comment, or after a `;`.
    fn arg(&mut self) -> Result<Arg, ParseError> {
        let empty = |at| Arg {
            value: String::new(),
            span: at..at,
        };
        if self.ended {
            return Ok(empty(self.pos));
        }
        self.skip_blanks();
        match self.peek() {
            None | Some(b'\n') => Ok(empty(self.pos)),
            Some(b';') => {
                self.pos += 1;
                self.ended = true;
                Ok(empty(self.pos))
            }
            Some(_) => self.word(),
        }
    }

    /// One word: unquoted, quoted and escaped parts up to a blank, a
    /// newline, `;` or an unquoted `#` (uci `parse_str`).
    fn word(&mut self) -> Result<Arg, ParseError> {
        let start = self.pos;
        let mut out: Vec<u8> = Vec::new();
        let mut span_end = start;
        loop {
            match self.peek() {
                None | Some(b'\n') | Some(b';') => break,
                Some(b'#') => {
                    self.skip_comment();
                    break;
                }
                Some(b'\'') => {
                    self.single_quoted(&mut out)?;
                    span_end = self.pos;
                }
                Some(b'"') => {
                    self.double_quoted(&mut out)?;
                    span_end = self.pos;
                }
                Some(b'\\') => {
                    self.backslash(&mut out);
                    span_end = self.pos;
                }
                Some(b) if is_blank(b) => break,
                Some(b) => {
                    out.push(b);
                    self.pos += 1;
                    span_end = self.pos;
                }
            }
        }
        // Only ASCII bytes are ever dropped or split on, so `out` is UTF-8.
        let value = String::from_utf8(out).map_err(|_| self.err(ErrorKind::NulByte))?;
        Ok(Arg {
            value,
            span: start..span_end,
        })
    }

    /// A backslash outside single quotes: before a line end it joins the
    /// next line; otherwise the next byte is taken literally.
    fn backslash(&mut self, out: &mut Vec<u8>) {
        self.pos += 1;
        match self.peek() {
            None => {}
            Some(b'\n') => self.newline(),
            Some(b'\r') if self.b.get(self.pos + 1) == Some(&b'\n') => {
                self.pos += 1;
                self.newline();
            }
            Some(b) => {
                out.push(b);
                self.pos += 1;
            }
        }
    }

    fn single_quoted(&mut self, out: &mut Vec<u8>) -> Result<(), ParseError> {
        self.pos += 1;
        loop {
            match self.peek() {
                None => return Err(self.err(ErrorKind::Unterminated('\''))),
                Some(b'\'') => {
                    self.pos += 1;
                    return Ok(());
                }
                Some(b) => {
                    out.push(b);
                    if b == b'\n' {
                        self.newline();
                    } else {
                        self.pos += 1;
                    }
                }
            }
        }
    }

    fn double_quoted(&mut self, out: &mut Vec<u8>) -> Result<(), ParseError> {
        self.pos += 1;
        loop {
            match self.peek() {
                None => return Err(self.err(ErrorKind::Unterminated('"'))),
                Some(b'"') => {
                    self.pos += 1;
                    return Ok(());
                }
                Some(b'\\') => self.backslash(out),
                Some(b) => {
                    out.push(b);
                    if b == b'\n' {
                        self.newline();
                    } else {
                        self.pos += 1;
                    }
                }
            }
        }
    }
}

/// Builds a [`Package`] from commands, with uci's semantics: a repeated
/// named section continues the earlier one, an empty option value deletes
/// the option, `list` on a plain option turns it into a list.
pub(super) struct Builder {
    pub(super) pkg: Package,
    current: Option<usize>,
    by_name: HashMap<String, usize>,
    values: usize,
}

impl Builder {
    pub(super) fn new(name: &str) -> Builder {
        Builder {
            pkg: Package {
                name: name.into(),
                sections: Vec::new(),
            },
            current: None,
            by_name: HashMap::new(),
            values: 0,
        }
    }

    /// Applies one command; returns the section it belongs to.
    pub(super) fn apply(&mut self, cmd: &Command) -> Result<Option<usize>, ParseError> {
        let err = |kind| ParseError {
            line: cmd.line,
            kind,
        };
        let arg = |i: usize| cmd.args.get(i).map_or("", |a| a.value.as_str());
        match cmd.kind {
            Kind::Package => {
                if !valid_package(arg(0)) {
                    return Err(err(ErrorKind::InvalidPackageName(arg(0).into())));
                }
                Ok(self.current)
            }
            Kind::Config => {
                let (stype, name) = (arg(0), arg(1));
                if !valid_type(stype) {
                    return Err(err(ErrorKind::InvalidType(stype.into())));
                }
                if !name.is_empty() {
                    if !valid_name(name) {
                        return Err(err(ErrorKind::InvalidName(name.into())));
                    }
                    if let Some(&i) = self.by_name.get(name) {
                        let was = self.pkg.sections.get(i).map_or("", |s| s.stype.as_str());
                        if was != stype {
                            return Err(err(ErrorKind::TypeMismatch {
                                section: name.into(),
                                was: was.into(),
                                now: stype.into(),
                            }));
                        }
                        self.current = Some(i);
                        return Ok(self.current);
                    }
                }
                if self.pkg.sections.len() >= MAX_SECTIONS {
                    return Err(err(ErrorKind::TooManySections));
                }
                let i = self.pkg.sections.len();
                self.pkg.sections.push(Section {
                    stype: stype.into(),
                    name: (!name.is_empty()).then(|| name.to_string()),
                    options: Vec::new(),
                });
                if !name.is_empty() {
                    self.by_name.insert(name.into(), i);
                }
                self.current = Some(i);
                Ok(self.current)
            }
            Kind::Option | Kind::List => {
                let (name, value) = (arg(0), arg(1));
                let Some(sec) = self.current.and_then(|i| self.pkg.sections.get_mut(i)) else {
                    return Err(err(ErrorKind::OptionOutsideSection));
                };
                if !valid_name(name) {
                    return Err(err(ErrorKind::InvalidName(name.into())));
                }
                let at = sec.options.iter().position(|(n, _)| n == name);
                if cmd.kind == Kind::Option && value.is_empty() {
                    // uci_set with an empty value deletes the option.
                    if let Some(i) = at {
                        let (_, old) = sec.options.remove(i);
                        self.values = self.values.saturating_sub(old.items().len());
                    }
                    return Ok(self.current);
                }
                if at.is_none() && sec.options.len() >= MAX_OPTIONS {
                    return Err(err(ErrorKind::TooManyOptions));
                }
                let replaces = cmd.kind == Kind::Option && at.is_some();
                if !replaces && self.values >= MAX_VALUES {
                    return Err(err(ErrorKind::TooManyValues));
                }
                match (cmd.kind, at) {
                    (Kind::Option, Some(i)) => {
                        if let Some((_, v)) = sec.options.get_mut(i) {
                            self.values = self.values.saturating_sub(v.items().len());
                            *v = Value::Option(value.into());
                        }
                    }
                    (Kind::Option, None) => {
                        sec.options.push((name.into(), Value::Option(value.into())));
                    }
                    (_, Some(i)) => {
                        if let Some((_, v)) = sec.options.get_mut(i) {
                            let mut items = match std::mem::replace(v, Value::List(Vec::new())) {
                                Value::Option(s) => vec![s],
                                Value::List(l) => l,
                            };
                            if items.len() >= MAX_LIST_ITEMS {
                                return Err(err(ErrorKind::TooManyListItems));
                            }
                            items.push(value.into());
                            *v = Value::List(items);
                        }
                    }
                    (_, None) => {
                        sec.options
                            .push((name.into(), Value::List(vec![value.into()])));
                    }
                }
                self.values += 1;
                Ok(self.current)
            }
        }
    }
}
