//! blob / blobmsg TLV codec (openwrt/libubox `blob.h`, `blobmsg.h`): the
//! payload format of every ubus message.
//!
//! Owns: [`Value`] (the JSON-like tree ubus carries), [`BlobType`], the
//! blobmsg encoder and the bounded decoder [`decode_blobmsg`], and the small
//! helpers shared with [`super::ubus`] for plain (non-blobmsg) attributes.
//! Must not import anything outside `proto`; no IO, no clock, no tokio.
//!
//! Wire layout (openwrt.md §5.2): every attribute starts with a big-endian
//! `u32`: bit 31 = extended (set on blobmsg attributes), bits 24–30 = id or
//! blobmsg type, bits 0–23 = length including the 4-byte header but not the
//! padding to the next multiple of 4. A blobmsg attribute's payload starts
//! with `u16 namelen`, the name, a NUL, and zero padding to 4 bytes.

use std::fmt;

/// Largest blob this codec accepts or produces (`UBUS_MAX_MSGLEN`).
pub const MAX_LEN: usize = 1 << 20;
/// Deepest nesting of tables and arrays accepted or produced.
pub const MAX_DEPTH: usize = 32;
/// Size of an attribute header (`struct blob_attr`).
pub const ATTR_HDR_LEN: usize = 4;

const EXTENDED: u32 = 0x8000_0000;
const ID_MASK: u32 = 0x7f00_0000;
const ID_SHIFT: u32 = 24;
const LEN_MASK: u32 = 0x00ff_ffff;

/// Rounds up to the 4-byte attribute alignment (`blob_pad_len`).
pub const fn pad4(n: usize) -> usize {
    (n + 3) & !3
}

/// blobmsg value types (`enum blobmsg_type`). `Int8` doubles as BOOL.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum BlobType {
    Unspec = 0,
    Array = 1,
    Table = 2,
    String = 3,
    Int64 = 4,
    Int32 = 5,
    Int16 = 6,
    Int8 = 7,
    Double = 8,
}

impl BlobType {
    /// `BLOBMSG_TYPE_BOOL` is `BLOBMSG_TYPE_INT8`.
    pub const BOOL: BlobType = BlobType::Int8;

    pub fn from_id(id: u8) -> Option<BlobType> {
        Some(match id {
            0 => BlobType::Unspec,
            1 => BlobType::Array,
            2 => BlobType::Table,
            3 => BlobType::String,
            4 => BlobType::Int64,
            5 => BlobType::Int32,
            6 => BlobType::Int16,
            7 => BlobType::Int8,
            8 => BlobType::Double,
            _ => return None,
        })
    }

    pub fn id(self) -> u8 {
        self as u8
    }
}

/// A decoded blobmsg value, as `ubus call` shows it in JSON.
///
/// Tables keep their order and any duplicate names; lookups return the first
/// match, as `blobmsg_parse` does.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Table(Vec<(String, Value)>),
    Array(Vec<Value>),
    String(String),
    Int64(i64),
    Int32(i32),
    Int16(i16),
    /// blobmsg INT8, which every OpenWrt tool uses as a boolean
    /// (`blobmsg_add_u8`/`blobmsg_get_bool`); decoding maps non-zero to true.
    Bool(bool),
    Double(f64),
    /// blobmsg UNSPEC (JSON `null`); any payload is accepted and dropped.
    Unspec,
}

/// What was wrong with a blob, and at which byte offset of the input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// Fewer bytes than an attribute header or field needs.
    Truncated { at: usize },
    /// An attribute length below the header size or beyond its container.
    BadLength { at: usize, len: usize },
    /// An attribute inside a blobmsg container without the extended bit.
    NotExtended { at: usize },
    /// A blobmsg type id above DOUBLE.
    UnknownType { at: usize, id: u8 },
    /// A name that overruns the attribute or lacks its NUL.
    BadName { at: usize },
    /// A value whose size does not fit its type (or a string without NUL).
    BadValue { at: usize, ty: BlobType },
    /// Nesting deeper than [`MAX_DEPTH`].
    TooDeep { at: usize },
    /// Input or output larger than [`MAX_LEN`].
    TooLarge { len: usize },
    /// A name longer than a `u16` can count.
    NameTooLong { len: usize },
    /// A scalar where a table or array body was required.
    NotContainer,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Truncated { at } => write!(f, "blob truncated at byte {at}"),
            Error::BadLength { at, len } => {
                write!(f, "blob attribute at byte {at} has bad length {len}")
            }
            Error::NotExtended { at } => {
                write!(f, "blob attribute at byte {at} is not a blobmsg attribute")
            }
            Error::UnknownType { at, id } => {
                write!(f, "blobmsg attribute at byte {at} has unknown type {id}")
            }
            Error::BadName { at } => write!(f, "blobmsg attribute at byte {at} has a bad name"),
            Error::BadValue { at, ty } => {
                write!(f, "blobmsg attribute at byte {at} has a bad {ty:?} value")
            }
            Error::TooDeep { at } => {
                write!(f, "blobmsg nesting deeper than {MAX_DEPTH} at byte {at}")
            }
            Error::TooLarge { len } => write!(f, "blob of {len} bytes exceeds {MAX_LEN}"),
            Error::NameTooLong { len } => write!(f, "blobmsg name of {len} bytes is too long"),
            Error::NotContainer => f.write_str("blobmsg body must be a table or an array"),
        }
    }
}

impl std::error::Error for Error {}

// ---------------------------------------------------------------------------
// Value helpers

impl Value {
    /// An empty table, to be filled with [`Value::with`] or [`Value::push`].
    pub fn table() -> Value {
        Value::Table(Vec::new())
    }

    /// Builder form of [`Value::push`].
    pub fn with(mut self, name: &str, value: impl Into<Value>) -> Value {
        self.push(name, value);
        self
    }

    /// Appends a named entry to a table, or an element to an array (the name
    /// is then dropped). Does nothing on a scalar.
    pub fn push(&mut self, name: &str, value: impl Into<Value>) {
        match self {
            Value::Table(fields) => fields.push((name.to_owned(), value.into())),
            Value::Array(items) => items.push(value.into()),
            _ => {}
        }
    }

    /// The first entry of a table called `name`.
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.as_table()?
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v)
    }

    pub fn as_table(&self) -> Option<&[(String, Value)]> {
        match self {
            Value::Table(fields) => Some(fields),
            _ => None,
        }
    }

    pub fn as_array(&self) -> Option<&[Value]> {
        match self {
            Value::Array(items) => Some(items),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    /// Any integer width, read as libubox's `blobmsg_get_u*` would (the bits
    /// of INT16/INT32 are unsigned there); INT64 only when it fits.
    pub fn as_u32(&self) -> Option<u32> {
        match *self {
            Value::Bool(b) => Some(u32::from(b)),
            Value::Int16(v) => Some(u32::from(v as u16)),
            Value::Int32(v) => Some(v as u32),
            Value::Int64(v) => u32::try_from(v).ok(),
            _ => None,
        }
    }

    /// Any integer width, sign-extended.
    pub fn as_i64(&self) -> Option<i64> {
        match *self {
            Value::Bool(b) => Some(i64::from(b)),
            Value::Int16(v) => Some(i64::from(v)),
            Value::Int32(v) => Some(i64::from(v)),
            Value::Int64(v) => Some(v),
            _ => None,
        }
    }

    /// INT8 as blobmsg's bool; other integer widths count as true when
    /// non-zero, as callers of `ubus call` often send `1`/`0`.
    pub fn as_bool(&self) -> Option<bool> {
        match *self {
            Value::Bool(b) => Some(b),
            _ => self.as_i64().map(|v| v != 0),
        }
    }

    /// The blobmsg type this value is encoded as.
    pub fn blob_type(&self) -> BlobType {
        match self {
            Value::Table(_) => BlobType::Table,
            Value::Array(_) => BlobType::Array,
            Value::String(_) => BlobType::String,
            Value::Int64(_) => BlobType::Int64,
            Value::Int32(_) => BlobType::Int32,
            Value::Int16(_) => BlobType::Int16,
            Value::Bool(_) => BlobType::Int8,
            Value::Double(_) => BlobType::Double,
            Value::Unspec => BlobType::Unspec,
        }
    }
}

impl From<&str> for Value {
    fn from(s: &str) -> Value {
        Value::String(s.to_owned())
    }
}

impl From<String> for Value {
    fn from(s: String) -> Value {
        Value::String(s)
    }
}

impl From<bool> for Value {
    fn from(b: bool) -> Value {
        Value::Bool(b)
    }
}

impl From<i32> for Value {
    fn from(v: i32) -> Value {
        Value::Int32(v)
    }
}

/// Unsigned 32-bit numbers travel as INT32 bits, as `blobmsg_add_u32` does.
impl From<u32> for Value {
    fn from(v: u32) -> Value {
        Value::Int32(v as i32)
    }
}

impl From<u16> for Value {
    fn from(v: u16) -> Value {
        Value::Int32(i32::from(v))
    }
}

impl From<i64> for Value {
    fn from(v: i64) -> Value {
        Value::Int64(v)
    }
}

impl From<u64> for Value {
    fn from(v: u64) -> Value {
        Value::Int64(v as i64)
    }
}

impl From<f64> for Value {
    fn from(v: f64) -> Value {
        Value::Double(v)
    }
}

impl From<Vec<Value>> for Value {
    fn from(items: Vec<Value>) -> Value {
        Value::Array(items)
    }
}

/// JSON, roughly as `ubus call` prints it (for logs and test messages).
impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Table(fields) => {
                f.write_str("{")?;
                for (i, (n, v)) in fields.iter().enumerate() {
                    if i > 0 {
                        f.write_str(",")?;
                    }
                    write_json_str(f, n)?;
                    write!(f, ":{v}")?;
                }
                f.write_str("}")
            }
            Value::Array(items) => {
                f.write_str("[")?;
                for (i, v) in items.iter().enumerate() {
                    if i > 0 {
                        f.write_str(",")?;
                    }
                    write!(f, "{v}")?;
                }
                f.write_str("]")
            }
            Value::String(s) => write_json_str(f, s),
            Value::Int64(v) => write!(f, "{v}"),
            Value::Int32(v) => write!(f, "{v}"),
            Value::Int16(v) => write!(f, "{v}"),
            Value::Bool(b) => write!(f, "{b}"),
            Value::Double(d) if d.is_finite() => write!(f, "{d}"),
            Value::Double(_) | Value::Unspec => f.write_str("null"),
        }
    }
}

fn write_json_str(f: &mut fmt::Formatter<'_>, s: &str) -> fmt::Result {
    f.write_str("\"")?;
    for c in s.chars() {
        match c {
            '"' => f.write_str("\\\"")?,
            '\\' => f.write_str("\\\\")?,
            '\n' => f.write_str("\\n")?,
            c if u32::from(c) < 0x20 => write!(f, "\\u{:04x}", u32::from(c))?,
            c => write!(f, "{c}")?,
        }
    }
    f.write_str("\"")
}

// ---------------------------------------------------------------------------
// Plain blob attributes (shared with the ubus framing)

/// Reads a big-endian `u32` at `pos`, if the bytes are there.
pub fn be_u32(buf: &[u8], pos: usize) -> Option<u32> {
    let b = buf.get(pos..pos.checked_add(4)?)?;
    Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

fn be_u16(buf: &[u8], pos: usize) -> Option<u16> {
    let b = buf.get(pos..pos.checked_add(2)?)?;
    Some(u16::from_be_bytes([b[0], b[1]]))
}

/// One attribute split off the front of `buf`: its id, whether the extended
/// bit was set, its payload, and the bytes it occupies including padding
/// (the padding of a final attribute may be missing).
#[derive(Debug, Clone, Copy)]
pub struct RawAttr<'a> {
    pub id: u8,
    pub extended: bool,
    pub payload: &'a [u8],
    pub consumed: usize,
}

/// Splits the first attribute off `buf`; `at` is `buf`'s offset in the
/// whole input, for error messages.
pub fn split_attr(buf: &[u8], at: usize) -> Result<RawAttr<'_>, Error> {
    let hdr = be_u32(buf, 0).ok_or(Error::Truncated { at })?;
    let len = (hdr & LEN_MASK) as usize;
    if len < ATTR_HDR_LEN || len > buf.len() {
        return Err(Error::BadLength { at, len });
    }
    let payload = buf
        .get(ATTR_HDR_LEN..len)
        .ok_or(Error::BadLength { at, len })?;
    Ok(RawAttr {
        id: ((hdr & ID_MASK) >> ID_SHIFT) as u8,
        extended: hdr & EXTENDED != 0,
        payload,
        consumed: pad4(len).min(buf.len()),
    })
}

/// Appends a 4-byte placeholder header; finish with [`end_attr`].
pub fn begin_attr(out: &mut Vec<u8>) -> usize {
    let start = out.len();
    out.extend_from_slice(&[0; ATTR_HDR_LEN]);
    start
}

/// Writes the header of the attribute begun at `start` (id, extended bit,
/// unpadded length) and pads the buffer to 4 bytes.
pub fn end_attr(out: &mut Vec<u8>, start: usize, id: u8, extended: bool) -> Result<(), Error> {
    let len = out.len().saturating_sub(start);
    if len > LEN_MASK as usize {
        return Err(Error::TooLarge { len });
    }
    let mut hdr = (u32::from(id) << ID_SHIFT) & ID_MASK | len as u32;
    if extended {
        hdr |= EXTENDED;
    }
    if let Some(slot) = out.get_mut(start..start + ATTR_HDR_LEN) {
        slot.copy_from_slice(&hdr.to_be_bytes());
    }
    out.resize(start + pad4(len), 0);
    Ok(())
}

// ---------------------------------------------------------------------------
// blobmsg encoding

/// Encodes the body of a table (named attributes) or an array (unnamed
/// attributes): what a ubus DATA or SIGNATURE attribute carries.
pub fn encode_blobmsg(body: &Value) -> Result<Vec<u8>, Error> {
    let mut out = Vec::new();
    emit_body(&mut out, body)?;
    Ok(out)
}

/// Appends the body of `body` (a table or array) to `out`.
pub fn emit_body(out: &mut Vec<u8>, body: &Value) -> Result<(), Error> {
    let start = out.len();
    match body {
        Value::Table(fields) => emit_fields(out, fields, 1)?,
        Value::Array(items) => emit_items(out, items, 1)?,
        _ => return Err(Error::NotContainer),
    }
    let len = out.len() - start;
    if len > MAX_LEN {
        return Err(Error::TooLarge { len });
    }
    Ok(())
}

fn emit_fields(out: &mut Vec<u8>, fields: &[(String, Value)], depth: usize) -> Result<(), Error> {
    for (name, value) in fields {
        emit_attr(out, name, value, depth)?;
    }
    Ok(())
}

fn emit_items(out: &mut Vec<u8>, items: &[Value], depth: usize) -> Result<(), Error> {
    for value in items {
        emit_attr(out, "", value, depth)?;
    }
    Ok(())
}

/// C strings end at the first NUL; anything after it cannot be carried.
fn c_str(s: &str) -> &[u8] {
    c_bytes(s.as_bytes())
}

/// One blobmsg attribute (`blobmsg_new` + payload).
fn emit_attr(out: &mut Vec<u8>, name: &str, value: &Value, depth: usize) -> Result<(), Error> {
    if depth > MAX_DEPTH {
        return Err(Error::TooDeep { at: out.len() });
    }
    if out.len() > MAX_LEN {
        return Err(Error::TooLarge { len: out.len() });
    }
    let start = begin_attr(out);
    let name = c_str(name);
    let namelen = u16::try_from(name.len()).map_err(|_| Error::NameTooLong { len: name.len() })?;
    out.extend_from_slice(&namelen.to_be_bytes());
    out.extend_from_slice(name);
    out.push(0);
    // blobmsg_hdrlen: 2 + namelen + 1, padded to 4.
    out.resize(start + ATTR_HDR_LEN + pad4(2 + name.len() + 1), 0);
    match value {
        Value::Table(fields) => emit_fields(out, fields, depth + 1)?,
        Value::Array(items) => emit_items(out, items, depth + 1)?,
        Value::String(s) => {
            out.extend_from_slice(c_str(s));
            out.push(0);
        }
        Value::Int64(v) => out.extend_from_slice(&v.to_be_bytes()),
        Value::Int32(v) => out.extend_from_slice(&v.to_be_bytes()),
        Value::Int16(v) => out.extend_from_slice(&v.to_be_bytes()),
        Value::Bool(b) => out.push(u8::from(*b)),
        // blobmsg_add_double: the IEEE bits as a big-endian u64.
        Value::Double(d) => out.extend_from_slice(&d.to_bits().to_be_bytes()),
        Value::Unspec => {}
    }
    end_attr(out, start, value.blob_type().id(), true)
}

// ---------------------------------------------------------------------------
// blobmsg decoding

/// Decodes a table body (a sequence of named blobmsg attributes, as in a
/// ubus DATA or SIGNATURE attribute) into a [`Value::Table`].
///
/// Every length is checked against its container; nesting is limited to
/// [`MAX_DEPTH`] and the input to [`MAX_LEN`]. Never panics.
pub fn decode_blobmsg(buf: &[u8]) -> Result<Value, Error> {
    if buf.len() > MAX_LEN {
        return Err(Error::TooLarge { len: buf.len() });
    }
    parse_list(buf, 0, 1).map(Value::Table)
}

fn parse_list(buf: &[u8], base: usize, depth: usize) -> Result<Vec<(String, Value)>, Error> {
    let mut out = Vec::new();
    let mut pos = 0;
    // Each attribute consumes at least 4 bytes, so this ends.
    while let Some(rest) = buf.get(pos..).filter(|r| !r.is_empty()) {
        let at = base + pos;
        let raw = split_attr(rest, at)?;
        out.push(parse_blobmsg(&raw, at, depth)?);
        pos += raw.consumed;
    }
    Ok(out)
}

fn parse_blobmsg(raw: &RawAttr<'_>, at: usize, depth: usize) -> Result<(String, Value), Error> {
    if depth > MAX_DEPTH {
        return Err(Error::TooDeep { at });
    }
    if !raw.extended {
        return Err(Error::NotExtended { at });
    }
    let ty = BlobType::from_id(raw.id).ok_or(Error::UnknownType { at, id: raw.id })?;
    let p = raw.payload;
    let namelen = usize::from(be_u16(p, 0).ok_or(Error::BadName { at })?);
    let hdrlen = pad4(2 + namelen + 1);
    let name = p.get(2..2 + namelen).ok_or(Error::BadName { at })?;
    if p.get(2 + namelen) != Some(&0) || hdrlen > p.len() {
        return Err(Error::BadName { at });
    }
    let name = String::from_utf8_lossy(c_bytes(name)).into_owned();
    let data_at = at + ATTR_HDR_LEN + hdrlen;
    let data = p.get(hdrlen..).ok_or(Error::BadName { at })?;
    let bad = Error::BadValue { at, ty };
    let value = match ty {
        BlobType::Table => Value::Table(parse_list(data, data_at, depth + 1)?),
        BlobType::Array => Value::Array(
            parse_list(data, data_at, depth + 1)?
                .into_iter()
                .map(|(_, v)| v)
                .collect(),
        ),
        BlobType::String => {
            // blob_check_type: at least the NUL, and the last byte is NUL.
            if data.last() != Some(&0) {
                return Err(bad);
            }
            Value::String(String::from_utf8_lossy(c_bytes(data)).into_owned())
        }
        BlobType::Int64 => Value::Int64(i64::from_be_bytes(data.try_into().map_err(|_| bad)?)),
        BlobType::Int32 => Value::Int32(i32::from_be_bytes(data.try_into().map_err(|_| bad)?)),
        BlobType::Int16 => Value::Int16(i16::from_be_bytes(data.try_into().map_err(|_| bad)?)),
        BlobType::Int8 => match data {
            [b] => Value::Bool(*b != 0),
            _ => return Err(bad),
        },
        BlobType::Double => {
            let bits = u64::from_be_bytes(data.try_into().map_err(|_| bad)?);
            Value::Double(f64::from_bits(bits))
        }
        BlobType::Unspec => Value::Unspec,
    };
    Ok((name, value))
}

/// The bytes before the first NUL (all of them if there is none).
fn c_bytes(b: &[u8]) -> &[u8] {
    b.split(|&c| c == 0).next().unwrap_or(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(v: &Value) -> Vec<u8> {
        encode_blobmsg(v).unwrap()
    }

    fn roundtrip(v: &Value) {
        assert_eq!(&decode_blobmsg(&enc(v)).unwrap(), v);
    }

    #[test]
    fn worked_example_string() {
        // openwrt.md §5.2: "a": "b"
        let v = Value::table().with("a", "b");
        let bytes = [0x83, 0, 0, 0x0a, 0, 1, b'a', 0, b'b', 0, 0, 0];
        assert_eq!(enc(&v), bytes);
        assert_eq!(decode_blobmsg(&bytes).unwrap(), v);
    }

    #[test]
    fn worked_example_int32() {
        // openwrt.md §5.2: "id": 42 — name padded to 8 bytes.
        let v = Value::table().with("id", 42i32);
        let bytes = [
            0x85, 0, 0, 0x10, 0, 2, b'i', b'd', 0, 0, 0, 0, 0, 0, 0, 0x2a,
        ];
        assert_eq!(enc(&v), bytes);
        assert_eq!(decode_blobmsg(&bytes).unwrap(), v);
    }

    #[test]
    fn every_integer_width() {
        let v = Value::table()
            .with("b", true)
            .with("s", Value::Int16(-2))
            .with("i", Value::Int32(-3))
            .with("l", Value::Int64(0x0102_0304_0506_0708));
        #[rustfmt::skip]
        let bytes = [
            0x87, 0, 0, 0x09, 0, 1, b'b', 0, 1, 0, 0, 0,
            0x86, 0, 0, 0x0a, 0, 1, b's', 0, 0xff, 0xfe, 0, 0,
            0x85, 0, 0, 0x0c, 0, 1, b'i', 0, 0xff, 0xff, 0xff, 0xfd,
            0x84, 0, 0, 0x10, 0, 1, b'l', 0, 1, 2, 3, 4, 5, 6, 7, 8,
        ];
        assert_eq!(enc(&v), bytes);
        assert_eq!(decode_blobmsg(&bytes).unwrap(), v);
        // INT8 values other than 0/1 read as true.
        let mut odd = bytes.to_vec();
        odd[8] = 5;
        assert_eq!(
            decode_blobmsg(&odd).unwrap().get("b"),
            Some(&Value::Bool(true))
        );
    }

    #[test]
    fn strings_with_and_without_padding() {
        // "xy": "abc" — value "abc\0" fills 4 bytes: no padding after it.
        let v = Value::table().with("xy", "abc");
        #[rustfmt::skip]
        let bytes = [
            0x83, 0, 0, 0x10, 0, 2, b'x', b'y', 0, 0, 0, 0, b'a', b'b', b'c', 0,
        ];
        assert_eq!(enc(&v), bytes);
        roundtrip(&v);
        // Empty name and empty string: header 4, name 4, "\0" + 3 pad.
        let v = Value::table().with("", "");
        assert_eq!(enc(&v), [0x83, 0, 0, 0x09, 0, 0, 0, 0, 0, 0, 0, 0]);
        roundtrip(&v);
    }

    #[test]
    fn empty_table_and_nesting() {
        // {"t": {}, "a": [1, "x"]}
        let v = Value::table()
            .with("t", Value::table())
            .with("a", Value::Array(vec![Value::Int32(1), "x".into()]));
        #[rustfmt::skip]
        let bytes = [
            0x82, 0, 0, 0x08, 0, 1, b't', 0,
            0x81, 0, 0, 0x20, 0, 1, b'a', 0,
              0x85, 0, 0, 0x0c, 0, 0, 0, 0, 0, 0, 0, 1,
              0x83, 0, 0, 0x0a, 0, 0, 0, 0, b'x', 0, 0, 0,
        ];
        assert_eq!(enc(&v), bytes);
        assert_eq!(decode_blobmsg(&bytes).unwrap(), v);
        assert_eq!(enc(&Value::table()), []);
        assert_eq!(decode_blobmsg(&[]).unwrap(), Value::table());
    }

    #[test]
    fn nested_table_length_counts_child_padding() {
        // {"o": {"a": "b"}}: the inner attribute is 10 bytes + 2 padding,
        // and the outer length (8 + 12) includes that padding.
        let v = Value::table().with("o", Value::table().with("a", "b"));
        #[rustfmt::skip]
        let bytes = [
            0x82, 0, 0, 0x14, 0, 1, b'o', 0,
              0x83, 0, 0, 0x0a, 0, 1, b'a', 0, b'b', 0, 0, 0,
        ];
        assert_eq!(enc(&v), bytes);
        roundtrip(&v);
    }

    #[test]
    fn double() {
        let v = Value::table().with("d", 1.5f64);
        #[rustfmt::skip]
        let bytes = [
            0x88, 0, 0, 0x10, 0, 1, b'd', 0, 0x3f, 0xf8, 0, 0, 0, 0, 0, 0,
        ];
        assert_eq!(enc(&v), bytes);
        assert_eq!(decode_blobmsg(&bytes).unwrap(), v);
    }

    #[test]
    fn unspec_is_null() {
        let v = Value::table().with("n", Value::Unspec);
        assert_eq!(enc(&v), [0x80, 0, 0, 0x08, 0, 1, b'n', 0]);
        roundtrip(&v);
        // Any payload is accepted.
        let bytes = [0x80, 0, 0, 0x0a, 0, 1, b'n', 0, 9, 9, 0, 0];
        assert_eq!(decode_blobmsg(&bytes).unwrap(), v);
    }

    #[test]
    fn nul_in_strings_truncates_like_c() {
        let v = Value::table().with("a\0z", "b\0c");
        assert_eq!(enc(&v), enc(&Value::table().with("a", "b")));
    }

    #[test]
    fn accessors_tolerate_widths() {
        let v = Value::table()
            .with("port", Value::Int16(-1))
            .with("n", Value::Int64(7))
            .with("big", Value::Int64(1 << 40))
            .with("neg", Value::Int32(-1))
            .with("on", Value::Int32(1))
            .with("s", "x")
            .with("s", "second");
        assert_eq!(v.get("port").and_then(Value::as_u32), Some(65535));
        assert_eq!(v.get("n").and_then(Value::as_u32), Some(7));
        assert_eq!(v.get("big").and_then(Value::as_u32), None);
        assert_eq!(v.get("neg").and_then(Value::as_u32), Some(u32::MAX));
        assert_eq!(v.get("neg").and_then(Value::as_i64), Some(-1));
        assert_eq!(v.get("on").and_then(Value::as_bool), Some(true));
        assert_eq!(v.get("s").and_then(Value::as_str), Some("x"));
        assert_eq!(v.get("s").and_then(Value::as_u32), None);
        assert_eq!(v.get("missing"), None);
        assert_eq!(Value::Int32(1).get("x"), None);
    }

    #[test]
    fn display_is_json() {
        let v = Value::table()
            .with("a", Value::Array(vec![true.into(), Value::Unspec]))
            .with("q", "\"x\"\n");
        assert_eq!(v.to_string(), r#"{"a":[true,null],"q":"\"x\"\n"}"#);
    }

    #[test]
    fn malformed_inputs_are_errors() {
        let good = [0x83, 0, 0, 0x0a, 0, 1, b'a', 0, b'b', 0, 0, 0];
        // Truncated header.
        assert_eq!(decode_blobmsg(&good[..3]), Err(Error::Truncated { at: 0 }));
        // Length beyond the buffer.
        assert_eq!(
            decode_blobmsg(&good[..9]),
            Err(Error::BadLength { at: 0, len: 10 })
        );
        // Length below the header.
        assert_eq!(
            decode_blobmsg(&[0x83, 0, 0, 2]),
            Err(Error::BadLength { at: 0, len: 2 })
        );
        // Not extended.
        let mut b = good;
        b[0] = 0x03;
        assert_eq!(decode_blobmsg(&b), Err(Error::NotExtended { at: 0 }));
        // Unknown type 9.
        b[0] = 0x89;
        assert_eq!(decode_blobmsg(&b), Err(Error::UnknownType { at: 0, id: 9 }));
        // Name without NUL.
        let mut b = good;
        b[7] = b'x';
        assert_eq!(decode_blobmsg(&b), Err(Error::BadName { at: 0 }));
        // Name length overrunning the attribute.
        let mut b = good;
        b[5] = 200;
        assert_eq!(decode_blobmsg(&b), Err(Error::BadName { at: 0 }));
        // String without terminating NUL.
        let mut b = good;
        b[9] = b'c';
        assert_eq!(
            decode_blobmsg(&b),
            Err(Error::BadValue {
                at: 0,
                ty: BlobType::String
            })
        );
        // INT32 of 3 bytes.
        let b = [0x85, 0, 0, 0x0b, 0, 1, b'i', 0, 0, 0, 1, 0];
        assert_eq!(
            decode_blobmsg(&b),
            Err(Error::BadValue {
                at: 0,
                ty: BlobType::Int32
            })
        );
        // Trailing bytes too short for a header, after a good attribute.
        let mut b = good.to_vec();
        b.extend_from_slice(&[0, 0]);
        assert_eq!(decode_blobmsg(&b), Err(Error::Truncated { at: 12 }));
        // An error inside a nested table reports the inner offset.
        let b = [0x82, 0, 0, 0x0c, 0, 1, b'o', 0, 0x85, 0, 0, 0x05];
        assert_eq!(decode_blobmsg(&b), Err(Error::BadLength { at: 8, len: 5 }));
    }

    #[test]
    fn final_padding_may_be_missing() {
        let b = [0x83, 0, 0, 0x0a, 0, 1, b'a', 0, b'b', 0];
        assert_eq!(decode_blobmsg(&b).unwrap(), Value::table().with("a", "b"));
    }

    #[test]
    fn depth_is_bounded() {
        let mut v = Value::table();
        for _ in 0..MAX_DEPTH {
            v = Value::table().with("t", v);
        }
        roundtrip(&v);
        let too_deep = Value::table().with("t", v);
        assert!(matches!(
            encode_blobmsg(&too_deep),
            Err(Error::TooDeep { .. })
        ));
        // Hand-build 40 nested empty-named tables.
        let mut bytes: Vec<u8> = Vec::new();
        for _ in 0..40 {
            let mut outer = Vec::new();
            let len = 8 + bytes.len();
            outer.extend_from_slice(&(0x8200_0000u32 | len as u32).to_be_bytes());
            outer.extend_from_slice(&[0, 0, 0, 0]);
            outer.extend_from_slice(&bytes);
            bytes = outer;
        }
        assert!(matches!(decode_blobmsg(&bytes), Err(Error::TooDeep { .. })));
    }

    #[test]
    fn size_is_bounded() {
        let big = "x".repeat(MAX_LEN);
        assert!(matches!(
            encode_blobmsg(&Value::table().with("s", big)),
            Err(Error::TooLarge { .. })
        ));
        assert!(matches!(
            decode_blobmsg(&vec![0u8; MAX_LEN + 1]),
            Err(Error::TooLarge { .. })
        ));
        assert_eq!(encode_blobmsg(&Value::Int32(1)), Err(Error::NotContainer));
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        // A cheap deterministic fuzz pass: mutate a rich message byte by byte.
        let v = Value::table()
            .with(
                "a",
                Value::Array(vec![1i32.into(), "s".into(), Value::table()]),
            )
            .with("t", Value::table().with("d", 2.5f64).with("b", false))
            .with("l", Value::Int64(-9));
        let bytes = enc(&v);
        let mut seed = 0x1234_5678u32;
        for i in 0..bytes.len() {
            for _ in 0..16 {
                seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12345);
                let mut m = bytes.clone();
                m[i] = (seed >> 16) as u8;
                if let Ok(d) = decode_blobmsg(&m) {
                    // Whatever decodes re-encodes and decodes the same.
                    let again = decode_blobmsg(&enc(&d)).unwrap();
                    assert_eq!(again.to_string(), d.to_string());
                }
                let _ = decode_blobmsg(&m[..i]);
            }
        }
    }
}
