//! The ubus wire format for the test side: blob attributes, blobmsg values
//! and ubus messages, written from the format's description in
//! docs/openwrt.md (ubus section) and checked byte for byte against the
//! real ubusd's messages in tests/fixtures/ubusd-capture.txt.
//!
//! It deliberately shares nothing with the daemon's codec (src/proto/blob.rs,
//! src/proto/ubus.rs): the test broker and the test clients speak through
//! this one, so a misreading of the protocol in either codec shows up as a
//! disagreement instead of cancelling out.
//!
//! Layout, as this file reads and writes it:
//! - every attribute starts with a big-endian u32: bit 31 "extended"
//!   (blobmsg), bits 24..30 the id or type, bits 0..23 the length including
//!   these 4 bytes and excluding the padding to the next multiple of 4;
//! - a container's length counts its children with their padding;
//! - a blobmsg attribute's payload starts with a u16 name length, the name
//!   and a NUL, padded to 4 bytes, then the value;
//! - a message is version (0), type, seq (u16), peer (u32), then one
//!   container attribute (id 0) holding the `UBUS_ATTR_*` attributes.

use std::fmt;

/// Message types (`UBUS_MSG_*`).
pub mod kind {
    pub const HELLO: u8 = 0;
    pub const STATUS: u8 = 1;
    pub const DATA: u8 = 2;
    pub const PING: u8 = 3;
    pub const LOOKUP: u8 = 4;
    pub const INVOKE: u8 = 5;
    pub const ADD_OBJECT: u8 = 6;
    pub const REMOVE_OBJECT: u8 = 7;
    pub const SUBSCRIBE: u8 = 8;
    pub const UNSUBSCRIBE: u8 = 9;
    pub const NOTIFY: u8 = 10;
    pub const MONITOR: u8 = 11;
    /// The last type ubusd knows; anything above is answered INVALID_COMMAND.
    pub const LAST: u8 = MONITOR;
}

/// Status codes (`UBUS_STATUS_*`) the tests name.
pub mod status {
    pub const OK: u32 = 0;
    pub const INVALID_COMMAND: u32 = 1;
    pub const INVALID_ARGUMENT: u32 = 2;
    pub const METHOD_NOT_FOUND: u32 = 3;
    pub const NOT_FOUND: u32 = 4;
    pub const PERMISSION_DENIED: u32 = 6;
    pub const TIMEOUT: u32 = 7;
    pub const UNKNOWN_ERROR: u32 = 9;
    pub const CONNECTION_FAILED: u32 = 10;
}

/// The event object's id (`UBUS_SYSTEM_OBJECT_EVENT`); ids below 1024 are
/// ubusd's own.
pub const EVENT_OBJECT: u32 = 1;
pub const FIRST_CLIENT_OBJECT: u32 = 1024;
/// `UBUS_MAX_MSGLEN`: the largest container ubusd accepts.
pub const MAX_MSGLEN: usize = 1 << 20;
/// Bytes a reader needs before it knows a message's length.
pub const PREFIX: usize = 12;

const EXTENDED: u32 = 1 << 31;
const LEN_MASK: u32 = 0x00ff_ffff;

fn padded(n: usize) -> usize {
    n.div_ceil(4) * 4
}

// ---------------------------------------------------------------------------
// blobmsg values

/// A blobmsg value as `ubus call` prints it. Tables keep their order.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Table(Vec<(String, Value)>),
    Array(Vec<Value>),
    Str(String),
    I64(i64),
    I32(i32),
    I16(i16),
    /// blobmsg INT8, which OpenWrt uses for booleans; kept as the byte.
    I8(u8),
    Double(f64),
    /// UNSPEC (`null`).
    Null,
}

/// blobmsg type numbers (`BLOBMSG_TYPE_*`).
pub mod btype {
    pub const UNSPEC: u8 = 0;
    pub const ARRAY: u8 = 1;
    pub const TABLE: u8 = 2;
    pub const STRING: u8 = 3;
    pub const INT64: u8 = 4;
    pub const INT32: u8 = 5;
    pub const INT16: u8 = 6;
    pub const INT8: u8 = 7;
    pub const DOUBLE: u8 = 8;
}

impl Value {
    pub fn table() -> Value {
        Value::Table(Vec::new())
    }

    pub fn with(mut self, name: &str, v: impl Into<Value>) -> Value {
        self.push(name, v);
        self
    }

    pub fn push(&mut self, name: &str, v: impl Into<Value>) {
        if let Value::Table(t) = self {
            t.push((name.to_owned(), v.into()));
        }
    }

    pub fn get(&self, name: &str) -> Option<&Value> {
        match self {
            Value::Table(t) => t.iter().find(|(n, _)| n == name).map(|(_, v)| v),
            _ => None,
        }
    }

    pub fn as_table(&self) -> Option<&[(String, Value)]> {
        match self {
            Value::Table(t) => Some(t),
            _ => None,
        }
    }

    pub fn as_array(&self) -> Option<&[Value]> {
        match self {
            Value::Array(a) => Some(a),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_i64(&self) -> Option<i64> {
        match *self {
            Value::I64(v) => Some(v),
            Value::I32(v) => Some(v.into()),
            Value::I16(v) => Some(v.into()),
            Value::I8(v) => Some(v.into()),
            _ => None,
        }
    }

    pub fn as_u32(&self) -> Option<u32> {
        self.as_i64().and_then(|v| u32::try_from(v).ok())
    }

    pub fn as_bool(&self) -> Option<bool> {
        match *self {
            Value::I8(v) => Some(v != 0),
            _ => None,
        }
    }

    /// The blobmsg type this value is sent as.
    pub fn btype(&self) -> u8 {
        match self {
            Value::Table(_) => btype::TABLE,
            Value::Array(_) => btype::ARRAY,
            Value::Str(_) => btype::STRING,
            Value::I64(_) => btype::INT64,
            Value::I32(_) => btype::INT32,
            Value::I16(_) => btype::INT16,
            Value::I8(_) => btype::INT8,
            Value::Double(_) => btype::DOUBLE,
            Value::Null => btype::UNSPEC,
        }
    }
}

impl From<&str> for Value {
    fn from(s: &str) -> Value {
        Value::Str(s.to_owned())
    }
}
impl From<String> for Value {
    fn from(s: String) -> Value {
        Value::Str(s)
    }
}
impl From<bool> for Value {
    fn from(b: bool) -> Value {
        Value::I8(u8::from(b))
    }
}
impl From<i32> for Value {
    fn from(v: i32) -> Value {
        Value::I32(v)
    }
}
impl From<u32> for Value {
    /// As `blobmsg_add_u32` sends it: INT32 with the same bits.
    fn from(v: u32) -> Value {
        Value::I32(i32::from_ne_bytes(v.to_ne_bytes()))
    }
}

/// JSON, as `ubus call` prints a reply on one line.
impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Table(t) => {
                f.write_str("{")?;
                for (i, (n, v)) in t.iter().enumerate() {
                    if i > 0 {
                        f.write_str(",")?;
                    }
                    write!(f, "{:?}:{v}", n)?;
                }
                f.write_str("}")
            }
            Value::Array(a) => {
                f.write_str("[")?;
                for (i, v) in a.iter().enumerate() {
                    if i > 0 {
                        f.write_str(",")?;
                    }
                    write!(f, "{v}")?;
                }
                f.write_str("]")
            }
            Value::Str(s) => write!(f, "{s:?}"),
            Value::I64(v) => write!(f, "{v}"),
            Value::I32(v) => write!(f, "{v}"),
            Value::I16(v) => write!(f, "{v}"),
            Value::I8(v) => f.write_str(if *v != 0 { "true" } else { "false" }),
            Value::Double(v) => write!(f, "{v}"),
            Value::Null => f.write_str("null"),
        }
    }
}

/// What went wrong reading bytes, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error(pub String);

fn err<T>(what: impl Into<String>) -> Result<T, Error> {
    Err(Error(what.into()))
}

/// One attribute read from `buf` at `pos`: (extended, id, payload, bytes
/// to the next attribute).
fn read_attr(buf: &[u8], pos: usize) -> Result<(bool, u8, &[u8], usize), Error> {
    let Some(h) = buf.get(pos..pos + 4) else {
        return err(format!("attribute header cut at byte {pos}"));
    };
    let word = u32::from_be_bytes([h[0], h[1], h[2], h[3]]);
    let len = (word & LEN_MASK) as usize;
    let id = ((word >> 24) & 0x7f) as u8;
    if len < 4 || pos + len > buf.len() {
        return err(format!("attribute at byte {pos} has length {len}"));
    }
    // The padding of the last attribute may be missing from its container.
    let next = (pos + padded(len)).min(buf.len());
    Ok((word & EXTENDED != 0, id, &buf[pos + 4..pos + len], next))
}

/// Appends an attribute header and payload, padded.
fn write_attr(out: &mut Vec<u8>, extended: bool, id: u8, payload: &[u8]) {
    let len = 4 + payload.len();
    let word = (if extended { EXTENDED } else { 0 }) | (u32::from(id) << 24) | len as u32;
    out.extend_from_slice(&word.to_be_bytes());
    out.extend_from_slice(payload);
    out.resize(padded(out.len()), 0);
}

/// The body of a table or array: its children, each padded.
pub fn encode_body(v: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    match v {
        Value::Table(t) => {
            for (n, x) in t {
                encode_named(&mut out, n, x);
            }
        }
        Value::Array(a) => {
            for x in a {
                encode_named(&mut out, "", x);
            }
        }
        _ => {}
    }
    out
}

fn encode_named(out: &mut Vec<u8>, name: &str, v: &Value) {
    let mut payload = Vec::new();
    payload.extend_from_slice(&(name.len() as u16).to_be_bytes());
    payload.extend_from_slice(name.as_bytes());
    payload.push(0);
    payload.resize(padded(payload.len()), 0);
    match v {
        Value::Table(_) | Value::Array(_) => payload.extend(encode_body(v)),
        Value::Str(s) => {
            payload.extend_from_slice(s.as_bytes());
            payload.push(0);
        }
        Value::I64(x) => payload.extend_from_slice(&x.to_be_bytes()),
        Value::I32(x) => payload.extend_from_slice(&x.to_be_bytes()),
        Value::I16(x) => payload.extend_from_slice(&x.to_be_bytes()),
        Value::I8(x) => payload.push(*x),
        Value::Double(x) => payload.extend_from_slice(&x.to_bits().to_be_bytes()),
        Value::Null => {}
    }
    write_attr(out, true, v.btype(), &payload);
}

/// Reads the children of a table (`as_table`) or an array.
pub fn decode_body(buf: &[u8], as_table: bool) -> Result<Value, Error> {
    let mut entries = Vec::new();
    let mut pos = 0;
    while pos < buf.len() {
        let (ext, ty, payload, next) = read_attr(buf, pos)?;
        if !ext {
            return err(format!(
                "blobmsg attribute at byte {pos} lacks the extended bit"
            ));
        }
        let Some(nl) = payload.get(..2) else {
            return err(format!("blobmsg name cut at byte {pos}"));
        };
        let nl = usize::from(u16::from_be_bytes([nl[0], nl[1]]));
        let hdr = padded(2 + nl + 1);
        if payload.len() < hdr || payload[2 + nl] != 0 {
            return err(format!("blobmsg name at byte {pos} overruns its attribute"));
        }
        let name = String::from_utf8_lossy(&payload[2..2 + nl]).into_owned();
        let data = &payload[hdr..];
        let fixed = |n: usize| -> Result<&[u8], Error> {
            if data.len() == n {
                Ok(data)
            } else {
                err(format!(
                    "blobmsg value at byte {pos}: {} bytes for a {n}-byte type",
                    data.len()
                ))
            }
        };
        let v = match ty {
            btype::UNSPEC => Value::Null,
            btype::TABLE => decode_body(data, true)?,
            btype::ARRAY => decode_body(data, false)?,
            btype::STRING => match data.split_last() {
                Some((0, s)) => Value::Str(String::from_utf8_lossy(s).into_owned()),
                _ => return err(format!("blobmsg string at byte {pos} lacks its NUL")),
            },
            btype::INT64 => Value::I64(i64::from_be_bytes(fixed(8)?.try_into().unwrap())),
            btype::INT32 => Value::I32(i32::from_be_bytes(fixed(4)?.try_into().unwrap())),
            btype::INT16 => Value::I16(i16::from_be_bytes(fixed(2)?.try_into().unwrap())),
            btype::INT8 => Value::I8(fixed(1)?[0]),
            btype::DOUBLE => Value::Double(f64::from_bits(u64::from_be_bytes(
                fixed(8)?.try_into().unwrap(),
            ))),
            other => return err(format!("blobmsg type {other} at byte {pos}")),
        };
        entries.push((name, v));
        pos = next;
    }
    Ok(if as_table {
        Value::Table(entries)
    } else {
        Value::Array(entries.into_iter().map(|(_, v)| v).collect())
    })
}

// ---------------------------------------------------------------------------
// ubus messages

/// One `UBUS_ATTR_*` attribute.
#[derive(Debug, Clone, PartialEq)]
pub enum Attr {
    Status(u32),
    ObjPath(String),
    ObjId(u32),
    Method(String),
    ObjType(u32),
    /// Method name → table of argument name → INT32 blobmsg type.
    Signature(Value),
    Data(Value),
    Target(u32),
    Active(bool),
    NoReply(bool),
    /// Nested attributes of (id, u32), one per subscriber object.
    Subscribers(Vec<(u8, u32)>),
    User(String),
    Group(String),
    /// An attribute this codec does not know, kept as it came.
    Other(u8, Vec<u8>),
}

impl Attr {
    fn id(&self) -> u8 {
        match self {
            Attr::Status(_) => 1,
            Attr::ObjPath(_) => 2,
            Attr::ObjId(_) => 3,
            Attr::Method(_) => 4,
            Attr::ObjType(_) => 5,
            Attr::Signature(_) => 6,
            Attr::Data(_) => 7,
            Attr::Target(_) => 8,
            Attr::Active(_) => 9,
            Attr::NoReply(_) => 10,
            Attr::Subscribers(_) => 11,
            Attr::User(_) => 12,
            Attr::Group(_) => 13,
            Attr::Other(id, _) => *id,
        }
    }
}

/// One ubus message.
#[derive(Debug, Clone, PartialEq)]
pub struct Msg {
    pub kind: u8,
    pub seq: u16,
    pub peer: u32,
    pub attrs: Vec<Attr>,
}

fn cstr(payload: &[u8], id: u8) -> Result<String, Error> {
    match payload.split_last() {
        Some((0, s)) if !s.contains(&0) => Ok(String::from_utf8_lossy(s).into_owned()),
        _ => err(format!("attribute {id}: string without its single NUL")),
    }
}

fn word(payload: &[u8], id: u8) -> Result<u32, Error> {
    match payload.try_into() {
        Ok(b) => Ok(u32::from_be_bytes(b)),
        Err(_) => err(format!(
            "attribute {id}: {} bytes for an int32",
            payload.len()
        )),
    }
}

fn byte(payload: &[u8], id: u8) -> Result<bool, Error> {
    match payload {
        [b] => Ok(*b != 0),
        _ => err(format!(
            "attribute {id}: {} bytes for an int8",
            payload.len()
        )),
    }
}

impl Msg {
    pub fn new(kind: u8, seq: u16, peer: u32) -> Msg {
        Msg {
            kind,
            seq,
            peer,
            attrs: Vec::new(),
        }
    }

    pub fn with(mut self, a: Attr) -> Msg {
        self.attrs.push(a);
        self
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut body = Vec::new();
        for a in &self.attrs {
            let mut p = Vec::new();
            match a {
                Attr::Status(v) | Attr::ObjId(v) | Attr::ObjType(v) | Attr::Target(v) => {
                    p.extend_from_slice(&v.to_be_bytes())
                }
                Attr::ObjPath(s) | Attr::Method(s) | Attr::User(s) | Attr::Group(s) => {
                    p.extend_from_slice(s.as_bytes());
                    p.push(0);
                }
                Attr::Signature(v) | Attr::Data(v) => p = encode_body(v),
                Attr::Active(b) | Attr::NoReply(b) => p.push(u8::from(*b)),
                Attr::Subscribers(ids) => {
                    for (id, v) in ids {
                        write_attr(&mut p, false, *id, &v.to_be_bytes());
                    }
                }
                Attr::Other(_, raw) => p.clone_from(raw),
            }
            write_attr(&mut body, false, a.id(), &p);
        }
        let mut out = vec![0, self.kind];
        out.extend_from_slice(&self.seq.to_be_bytes());
        out.extend_from_slice(&self.peer.to_be_bytes());
        write_attr(&mut out, false, 0, &body);
        out
    }

    /// The length of the message starting with `prefix` ([`PREFIX`] bytes),
    /// checked as ubusd checks a header: version 0, a container of at least
    /// its own header and at most [`MAX_MSGLEN`].
    pub fn frame_len(prefix: &[u8]) -> Result<usize, Error> {
        if prefix.len() < PREFIX {
            return err("short header");
        }
        if prefix[0] != 0 {
            return err(format!("version {}", prefix[0]));
        }
        let len = (u32::from_be_bytes([prefix[8], prefix[9], prefix[10], prefix[11]]) & LEN_MASK)
            as usize;
        if !(4..=MAX_MSGLEN).contains(&padded(len)) {
            return err(format!("container length {len}"));
        }
        Ok(8 + len)
    }

    /// Reads one whole message; its type is not checked (a broker answers
    /// unknown ones).
    pub fn decode(buf: &[u8]) -> Result<Msg, Error> {
        let total = Msg::frame_len(buf)?;
        if buf.len() != total {
            return err(format!("{} bytes for a message of {total}", buf.len()));
        }
        let body = &buf[PREFIX..];
        let mut m = Msg::new(buf[1], u16::from_be_bytes([buf[2], buf[3]]), 0);
        m.peer = u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]);
        let mut pos = 0;
        while pos < body.len() {
            let (_, id, p, next) = read_attr(body, pos)?;
            m.attrs.push(match id {
                1 => Attr::Status(word(p, id)?),
                2 => Attr::ObjPath(cstr(p, id)?),
                3 => Attr::ObjId(word(p, id)?),
                4 => Attr::Method(cstr(p, id)?),
                5 => Attr::ObjType(word(p, id)?),
                6 => Attr::Signature(decode_body(p, true)?),
                7 => Attr::Data(decode_body(p, true)?),
                8 => Attr::Target(word(p, id)?),
                9 => Attr::Active(byte(p, id)?),
                10 => Attr::NoReply(byte(p, id)?),
                11 => {
                    let mut ids = Vec::new();
                    let mut q = 0;
                    while q < p.len() {
                        let (_, sid, sp, snext) = read_attr(p, q)?;
                        ids.push((sid, word(sp, sid)?));
                        q = snext;
                    }
                    Attr::Subscribers(ids)
                }
                12 => Attr::User(cstr(p, id)?),
                13 => Attr::Group(cstr(p, id)?),
                _ => Attr::Other(id, p.to_vec()),
            });
            pos = next;
        }
        Ok(m)
    }

    /// Splits bytes holding whole messages back to back (one read of a
    /// socket) into messages.
    pub fn decode_all(mut buf: &[u8]) -> Result<Vec<Msg>, Error> {
        let mut out = Vec::new();
        while !buf.is_empty() {
            let n = Msg::frame_len(buf)?;
            let Some(one) = buf.get(..n) else {
                return err("message cut short");
            };
            out.push(Msg::decode(one)?);
            buf = &buf[n..];
        }
        Ok(out)
    }

    fn find<T>(&self, f: impl Fn(&Attr) -> Option<T>) -> Option<T> {
        self.attrs.iter().find_map(f)
    }

    pub fn status(&self) -> Option<u32> {
        self.find(|a| match a {
            Attr::Status(v) => Some(*v),
            _ => None,
        })
    }
    pub fn objpath(&self) -> Option<&str> {
        self.attrs.iter().find_map(|a| match a {
            Attr::ObjPath(s) => Some(s.as_str()),
            _ => None,
        })
    }
    pub fn objid(&self) -> Option<u32> {
        self.find(|a| match a {
            Attr::ObjId(v) => Some(*v),
            _ => None,
        })
    }
    pub fn method(&self) -> Option<&str> {
        self.attrs.iter().find_map(|a| match a {
            Attr::Method(s) => Some(s.as_str()),
            _ => None,
        })
    }
    pub fn objtype(&self) -> Option<u32> {
        self.find(|a| match a {
            Attr::ObjType(v) => Some(*v),
            _ => None,
        })
    }
    pub fn signature(&self) -> Option<&Value> {
        self.attrs.iter().find_map(|a| match a {
            Attr::Signature(v) => Some(v),
            _ => None,
        })
    }
    pub fn data(&self) -> Option<&Value> {
        self.attrs.iter().find_map(|a| match a {
            Attr::Data(v) => Some(v),
            _ => None,
        })
    }
    pub fn target(&self) -> Option<u32> {
        self.find(|a| match a {
            Attr::Target(v) => Some(*v),
            _ => None,
        })
    }
    pub fn active(&self) -> Option<bool> {
        self.find(|a| match a {
            Attr::Active(v) => Some(*v),
            _ => None,
        })
    }
    pub fn no_reply(&self) -> bool {
        self.find(|a| match a {
            Attr::NoReply(v) => Some(*v),
            _ => None,
        })
        .unwrap_or(false)
    }
    pub fn subscribers(&self) -> Option<Vec<u32>> {
        self.find(|a| match a {
            Attr::Subscribers(ids) => Some(ids.iter().map(|(_, v)| *v).collect()),
            _ => None,
        })
    }
}

/// Parses hex as the capture file writes it.
pub fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
        .collect()
}

// ---------------------------------------------------------------------------
// JSON as typed on the `ubus` command line

/// Parses JSON into a [`Value`] typed the way `ubus call` types its
/// argument: integers as INT32 when they fit (else INT64), booleans as
/// INT8, `null` as UNSPEC. Panics on bad input (tests only).
pub fn json(s: &str) -> Value {
    let mut p = Json {
        b: s.as_bytes(),
        i: 0,
    };
    let v = p.value();
    p.ws();
    assert_eq!(p.i, p.b.len(), "trailing JSON in {s:?}");
    v
}

struct Json<'a> {
    b: &'a [u8],
    i: usize,
}

impl Json<'_> {
    fn ws(&mut self) {
        while self.b.get(self.i).is_some_and(u8::is_ascii_whitespace) {
            self.i += 1;
        }
    }

    fn eat(&mut self, c: u8) -> bool {
        self.ws();
        let hit = self.b.get(self.i) == Some(&c);
        if hit {
            self.i += 1;
        }
        hit
    }

    fn value(&mut self) -> Value {
        self.ws();
        match self.b[self.i] {
            b'{' => {
                self.i += 1;
                let mut t = Value::table();
                if self.eat(b'}') {
                    return t;
                }
                loop {
                    self.ws();
                    let k = self.string();
                    assert!(self.eat(b':'), "':' expected");
                    let v = self.value();
                    t.push(&k, v);
                    if self.eat(b'}') {
                        return t;
                    }
                    assert!(self.eat(b','), "',' expected");
                }
            }
            b'[' => {
                self.i += 1;
                let mut items = Vec::new();
                if self.eat(b']') {
                    return Value::Array(items);
                }
                loop {
                    items.push(self.value());
                    if self.eat(b']') {
                        return Value::Array(items);
                    }
                    assert!(self.eat(b','), "',' expected");
                }
            }
            b'"' => Value::Str(self.string()),
            b't' => self.word("true", Value::I8(1)),
            b'f' => self.word("false", Value::I8(0)),
            b'n' => self.word("null", Value::Null),
            _ => {
                let start = self.i;
                while self
                    .b
                    .get(self.i)
                    .is_some_and(|c| c.is_ascii_digit() || b"+-.eE".contains(c))
                {
                    self.i += 1;
                }
                let s = std::str::from_utf8(&self.b[start..self.i]).unwrap();
                match s.parse::<i64>() {
                    Ok(n) => i32::try_from(n).map_or(Value::I64(n), Value::I32),
                    Err(_) => Value::Double(s.parse().expect("number")),
                }
            }
        }
    }

    fn word(&mut self, w: &str, v: Value) -> Value {
        assert!(self.b[self.i..].starts_with(w.as_bytes()), "{w} expected");
        self.i += w.len();
        v
    }

    fn string(&mut self) -> String {
        assert_eq!(self.b[self.i], b'"');
        self.i += 1;
        let mut out = Vec::new();
        loop {
            let c = self.b[self.i];
            self.i += 1;
            match c {
                b'"' => break,
                b'\\' => {
                    let e = self.b[self.i];
                    self.i += 1;
                    out.push(match e {
                        b'n' => b'\n',
                        b't' => b'\t',
                        other => other,
                    });
                }
                _ => out.push(c),
            }
        }
        String::from_utf8(out).expect("UTF-8")
    }
}
