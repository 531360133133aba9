//! ubus message framing (openwrt/ubus `ubusmsg.h`; openwrt.md §5.1).
//!
//! Owns: [`Message`] (8-byte header + one container blob attribute holding
//! typed [`Attr`]s), [`MsgType`], [`Status`], the [`UBUS_MAX_MSGLEN`] bound
//! and the object-signature helper. Must not import anything outside
//! `proto`; no IO, no clock, no tokio. Payloads use [`super::blob`].
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 1 | version (0) |
//! | 1 | 1 | type |
//! | 2 | 2 | seq, big-endian |
//! | 4 | 4 | peer, big-endian |
//! | 8 | 4 | container attribute header (id 0, length incl. itself) |
//! | 12 | … | `UBUS_ATTR_*` attributes, 4-byte aligned |

use std::fmt;

use super::blob::{self, BlobType, Value};

/// Largest container a peer may send or receive (`UBUS_MAX_MSGLEN`); the
/// bound applies to the padded container, as `ubus_validate_hdr` checks it.
pub const UBUS_MAX_MSGLEN: usize = 1_048_576;
/// The fixed header (`struct ubus_msghdr`).
pub const HEADER_LEN: usize = 8;
/// What a reader needs before it knows a message's length: the header and
/// the container attribute's header.
pub const PREFIX_LEN: usize = HEADER_LEN + blob::ATTR_HDR_LEN;

/// The event object: `send` and `register` (`UBUS_SYSTEM_OBJECT_EVENT`).
pub const SYSTEM_OBJECT_EVENT: u32 = 1;
/// The ACL object (`UBUS_SYSTEM_OBJECT_ACL`).
pub const SYSTEM_OBJECT_ACL: u32 = 2;
/// Object ids below this are ubusd's own (`UBUS_SYSTEM_OBJECT_MAX`).
pub const SYSTEM_OBJECT_MAX: u32 = 1024;

/// `enum ubus_msg_type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum MsgType {
    /// First message from ubusd; `peer` is the client's id.
    Hello = 0,
    /// Final answer to a request.
    Status = 1,
    /// One data answer to a request (0..n before the STATUS).
    Data = 2,
    Ping = 3,
    Lookup = 4,
    Invoke = 5,
    AddObject = 6,
    RemoveObject = 7,
    Subscribe = 8,
    /// From a client: drop a subscription. From ubusd: the target is gone.
    Unsubscribe = 9,
    /// From a client: notify subscribers. From ubusd: subscribers came/left.
    Notify = 10,
    Monitor = 11,
}

impl MsgType {
    pub fn from_u8(v: u8) -> Option<MsgType> {
        Some(match v {
            0 => MsgType::Hello,
            1 => MsgType::Status,
            2 => MsgType::Data,
            3 => MsgType::Ping,
            4 => MsgType::Lookup,
            5 => MsgType::Invoke,
            6 => MsgType::AddObject,
            7 => MsgType::RemoveObject,
            8 => MsgType::Subscribe,
            9 => MsgType::Unsubscribe,
            10 => MsgType::Notify,
            11 => MsgType::Monitor,
            _ => return None,
        })
    }
}

/// `enum ubus_msg_status` (the last three are newer ubus releases').
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum Status {
    Ok = 0,
    InvalidCommand = 1,
    InvalidArgument = 2,
    MethodNotFound = 3,
    NotFound = 4,
    NoData = 5,
    PermissionDenied = 6,
    Timeout = 7,
    NotSupported = 8,
    UnknownError = 9,
    ConnectionFailed = 10,
    NoMemory = 11,
    ParseError = 12,
    SystemError = 13,
}

impl Status {
    pub fn code(self) -> u32 {
        self as u32
    }

    /// Codes this crate does not know read as [`Status::UnknownError`].
    pub fn from_code(code: u32) -> Status {
        match code {
            0 => Status::Ok,
            1 => Status::InvalidCommand,
            2 => Status::InvalidArgument,
            3 => Status::MethodNotFound,
            4 => Status::NotFound,
            5 => Status::NoData,
            6 => Status::PermissionDenied,
            7 => Status::Timeout,
            8 => Status::NotSupported,
            10 => Status::ConnectionFailed,
            11 => Status::NoMemory,
            12 => Status::ParseError,
            13 => Status::SystemError,
            _ => Status::UnknownError,
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            Status::Ok => "success",
            Status::InvalidCommand => "invalid command",
            Status::InvalidArgument => "invalid argument",
            Status::MethodNotFound => "method not found",
            Status::NotFound => "not found",
            Status::NoData => "no data",
            Status::PermissionDenied => "permission denied",
            Status::Timeout => "timed out",
            Status::NotSupported => "not supported",
            Status::UnknownError => "unknown error",
            Status::ConnectionFailed => "connection failed",
            Status::NoMemory => "out of memory",
            Status::ParseError => "parse error",
            Status::SystemError => "system error",
        };
        write!(f, "{s} ({})", self.code())
    }
}

/// `UBUS_ATTR_*` numbers.
pub mod attr {
    pub const STATUS: u8 = 1;
    pub const OBJPATH: u8 = 2;
    pub const OBJID: u8 = 3;
    pub const METHOD: u8 = 4;
    pub const OBJTYPE: u8 = 5;
    pub const SIGNATURE: u8 = 6;
    pub const DATA: u8 = 7;
    pub const TARGET: u8 = 8;
    pub const ACTIVE: u8 = 9;
    pub const NO_REPLY: u8 = 10;
    pub const SUBSCRIBERS: u8 = 11;
    pub const USER: u8 = 12;
    pub const GROUP: u8 = 13;
}

/// One `UBUS_ATTR_*` attribute with its fixed payload type.
#[derive(Debug, Clone, PartialEq)]
pub enum Attr {
    /// int32; see [`Status::from_code`].
    Status(u32),
    ObjPath(String),
    ObjId(u32),
    Method(String),
    ObjType(u32),
    /// Table of method name → table of argument name → INT32 blobmsg type.
    Signature(Value),
    /// The call arguments or reply (a table).
    Data(Value),
    Target(u32),
    Active(bool),
    NoReply(bool),
    /// Nested plain int32 attributes: subscriber object ids.
    Subscribers(Vec<u32>),
    User(String),
    Group(String),
}

impl Attr {
    pub fn id(&self) -> u8 {
        match self {
            Attr::Status(_) => attr::STATUS,
            Attr::ObjPath(_) => attr::OBJPATH,
            Attr::ObjId(_) => attr::OBJID,
            Attr::Method(_) => attr::METHOD,
            Attr::ObjType(_) => attr::OBJTYPE,
            Attr::Signature(_) => attr::SIGNATURE,
            Attr::Data(_) => attr::DATA,
            Attr::Target(_) => attr::TARGET,
            Attr::Active(_) => attr::ACTIVE,
            Attr::NoReply(_) => attr::NO_REPLY,
            Attr::Subscribers(_) => attr::SUBSCRIBERS,
            Attr::User(_) => attr::USER,
            Attr::Group(_) => attr::GROUP,
        }
    }
}

/// What was wrong with a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// Fewer bytes than the header or the declared length.
    Truncated { have: usize, need: usize },
    /// More bytes than the declared length.
    TrailingBytes { len: usize, declared: usize },
    /// Header version other than 0.
    BadVersion(u8),
    /// A message type this crate does not know; the frame itself was sound,
    /// so a reader may skip it (and ubusd answers INVALID_COMMAND).
    UnknownType { kind: u8, seq: u16, peer: u32 },
    /// The container is shorter than its own header or over the limit.
    BadLength { len: usize },
    /// A message larger than [`UBUS_MAX_MSGLEN`].
    TooLarge { len: usize },
    /// An attribute whose payload does not match its type.
    BadAttr { id: u8, at: usize },
    /// A blob error in an attribute's layout or its blobmsg payload.
    Blob { id: u8, err: blob::Error },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Truncated { have, need } => {
                write!(f, "ubus message truncated: {have} of {need} bytes")
            }
            Error::TrailingBytes { len, declared } => {
                write!(f, "ubus message of {len} bytes declares {declared}")
            }
            Error::BadVersion(v) => write!(f, "ubus message version {v}"),
            Error::UnknownType { kind, .. } => write!(f, "unknown ubus message type {kind}"),
            Error::BadLength { len } => write!(f, "ubus container length {len}"),
            Error::TooLarge { len } => {
                write!(f, "ubus message of {len} bytes exceeds {UBUS_MAX_MSGLEN}")
            }
            Error::BadAttr { id, at } => write!(f, "ubus attribute {id} at byte {at} is malformed"),
            Error::Blob { id, err } => write!(f, "ubus attribute {id}: {err}"),
        }
    }
}

impl std::error::Error for Error {}

/// One ubus message. Attributes keep their order, so a message encodes to
/// the same bytes libubus would send for the same attribute sequence.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    pub kind: MsgType,
    pub seq: u16,
    pub peer: u32,
    pub attrs: Vec<Attr>,
}

/// The total length of the message that starts with `prefix` (at least
/// [`PREFIX_LEN`] bytes), after checking the header as
/// `ubus_validate_hdr` does: version 0, a container of at least its own
/// header and at most [`UBUS_MAX_MSGLEN`] padded.
pub fn frame_len(prefix: &[u8]) -> Result<usize, Error> {
    let hdr = prefix.get(..PREFIX_LEN).ok_or(Error::Truncated {
        have: prefix.len(),
        need: PREFIX_LEN,
    })?;
    if hdr[0] != 0 {
        return Err(Error::BadVersion(hdr[0]));
    }
    let raw = blob::be_u32(hdr, HEADER_LEN).unwrap_or(0) & 0x00ff_ffff;
    let raw = raw as usize;
    if raw < blob::ATTR_HDR_LEN {
        return Err(Error::BadLength { len: raw });
    }
    if blob::pad4(raw) > UBUS_MAX_MSGLEN {
        return Err(Error::TooLarge { len: raw });
    }
    Ok(HEADER_LEN + raw)
}

impl Message {
    pub fn new(kind: MsgType, seq: u16, peer: u32) -> Message {
        Message {
            kind,
            seq,
            peer,
            attrs: Vec::new(),
        }
    }

    /// Appends an attribute (builder form).
    pub fn with(mut self, attr: Attr) -> Message {
        self.attrs.push(attr);
        self
    }

    /// The wire bytes, or [`Error::TooLarge`] past [`UBUS_MAX_MSGLEN`].
    pub fn encode(&self) -> Result<Vec<u8>, Error> {
        let mut out = Vec::with_capacity(64);
        out.push(0);
        out.push(self.kind as u8);
        out.extend_from_slice(&self.seq.to_be_bytes());
        out.extend_from_slice(&self.peer.to_be_bytes());
        let container = blob::begin_attr(&mut out);
        for a in &self.attrs {
            let id = a.id();
            let start = blob::begin_attr(&mut out);
            let blob_err = |err| Error::Blob { id, err };
            match a {
                Attr::Status(v) | Attr::ObjId(v) | Attr::ObjType(v) | Attr::Target(v) => {
                    out.extend_from_slice(&v.to_be_bytes())
                }
                Attr::ObjPath(s) | Attr::Method(s) | Attr::User(s) | Attr::Group(s) => {
                    let b = s.as_bytes();
                    let b = b.split(|&c| c == 0).next().unwrap_or(b);
                    out.extend_from_slice(b);
                    out.push(0);
                }
                Attr::Signature(v) | Attr::Data(v) => {
                    blob::emit_body(&mut out, v).map_err(blob_err)?
                }
                Attr::Active(b) | Attr::NoReply(b) => out.push(u8::from(*b)),
                Attr::Subscribers(ids) => {
                    for objid in ids {
                        let s = blob::begin_attr(&mut out);
                        out.extend_from_slice(&objid.to_be_bytes());
                        blob::end_attr(&mut out, s, 0, false).map_err(blob_err)?;
                    }
                }
            }
            blob::end_attr(&mut out, start, id, false).map_err(blob_err)?;
            if out.len() > HEADER_LEN + UBUS_MAX_MSGLEN {
                return Err(Error::TooLarge { len: out.len() });
            }
        }
        blob::end_attr(&mut out, container, 0, false).map_err(|err| Error::Blob { id: 0, err })?;
        let len = out.len() - HEADER_LEN;
        if len > UBUS_MAX_MSGLEN {
            return Err(Error::TooLarge { len });
        }
        Ok(out)
    }

    /// Parses one whole message (exactly [`frame_len`] bytes).
    ///
    /// Unknown attribute ids are skipped, as libubus does; a known attribute
    /// with the wrong payload size is an error. Where an attribute repeats,
    /// the accessors return the last one (`blob_parse` keeps the last).
    pub fn decode(buf: &[u8]) -> Result<Message, Error> {
        let total = frame_len(buf)?;
        if buf.len() < total {
            return Err(Error::Truncated {
                have: buf.len(),
                need: total,
            });
        }
        if buf.len() > total {
            return Err(Error::TrailingBytes {
                len: buf.len(),
                declared: total,
            });
        }
        let seq = u16::from_be_bytes([buf[2], buf[3]]);
        let peer = blob::be_u32(buf, 4).unwrap_or(0);
        let kind = MsgType::from_u8(buf[1]).ok_or(Error::UnknownType {
            kind: buf[1],
            seq,
            peer,
        })?;
        let body = buf.get(PREFIX_LEN..total).unwrap_or(&[]);
        let mut attrs = Vec::new();
        let mut pos = 0;
        while let Some(rest) = body.get(pos..).filter(|r| !r.is_empty()) {
            let at = PREFIX_LEN + pos;
            let raw = blob::split_attr(rest, at).map_err(|err| Error::Blob { id: 0, err })?;
            if let Some(a) = parse_attr(raw.id, raw.payload, at)? {
                attrs.push(a);
            }
            pos += raw.consumed;
        }
        Ok(Message {
            kind,
            seq,
            peer,
            attrs,
        })
    }

    fn last<'a, T>(&'a self, f: impl Fn(&'a Attr) -> Option<T>) -> Option<T> {
        self.attrs.iter().rev().find_map(f)
    }

    pub fn status(&self) -> Option<u32> {
        self.last(|a| match a {
            Attr::Status(v) => Some(*v),
            _ => None,
        })
    }

    pub fn objpath(&self) -> Option<&str> {
        self.last(|a| match a {
            Attr::ObjPath(s) => Some(s.as_str()),
            _ => None,
        })
    }

    pub fn objid(&self) -> Option<u32> {
        self.last(|a| match a {
            Attr::ObjId(v) => Some(*v),
            _ => None,
        })
    }

    pub fn method(&self) -> Option<&str> {
        self.last(|a| match a {
            Attr::Method(s) => Some(s.as_str()),
            _ => None,
        })
    }

    pub fn objtype(&self) -> Option<u32> {
        self.last(|a| match a {
            Attr::ObjType(v) => Some(*v),
            _ => None,
        })
    }

    pub fn signature(&self) -> Option<&Value> {
        self.last(|a| match a {
            Attr::Signature(v) => Some(v),
            _ => None,
        })
    }

    pub fn data(&self) -> Option<&Value> {
        self.last(|a| match a {
            Attr::Data(v) => Some(v),
            _ => None,
        })
    }

    pub fn target(&self) -> Option<u32> {
        self.last(|a| match a {
            Attr::Target(v) => Some(*v),
            _ => None,
        })
    }

    pub fn active(&self) -> Option<bool> {
        self.last(|a| match a {
            Attr::Active(v) => Some(*v),
            _ => None,
        })
    }

    /// NO_REPLY set and non-zero.
    pub fn no_reply(&self) -> bool {
        self.last(|a| match a {
            Attr::NoReply(v) => Some(*v),
            _ => None,
        })
        .unwrap_or(false)
    }

    pub fn subscribers(&self) -> Option<&[u32]> {
        self.last(|a| match a {
            Attr::Subscribers(v) => Some(v.as_slice()),
            _ => None,
        })
    }

    pub fn user(&self) -> Option<&str> {
        self.last(|a| match a {
            Attr::User(s) => Some(s.as_str()),
            _ => None,
        })
    }

    pub fn group(&self) -> Option<&str> {
        self.last(|a| match a {
            Attr::Group(s) => Some(s.as_str()),
            _ => None,
        })
    }
}

/// One attribute's payload by its id (the `ubus_policy` table of
/// `libubus-io.c`/`ubusd_proto.c`); `None` for ids this crate ignores.
fn parse_attr(id: u8, p: &[u8], at: usize) -> Result<Option<Attr>, Error> {
    let bad = Error::BadAttr { id, at };
    let u32_of = |p: &[u8]| -> Result<u32, Error> {
        Ok(u32::from_be_bytes(p.try_into().map_err(|_| bad.clone())?))
    };
    let bool_of = |p: &[u8]| -> Result<bool, Error> {
        match p {
            [b] => Ok(*b != 0),
            _ => Err(bad.clone()),
        }
    };
    let str_of = |p: &[u8]| -> Result<String, Error> {
        // blob_check_type(STRING): non-empty and NUL-terminated.
        if p.last() != Some(&0) {
            return Err(bad.clone());
        }
        let s = p.split(|&c| c == 0).next().unwrap_or(&[]);
        Ok(String::from_utf8_lossy(s).into_owned())
    };
    let blobmsg_of = |p: &[u8]| blob::decode_blobmsg(p).map_err(|err| Error::Blob { id, err });
    Ok(Some(match id {
        attr::STATUS => Attr::Status(u32_of(p)?),
        attr::OBJPATH => Attr::ObjPath(str_of(p)?),
        attr::OBJID => Attr::ObjId(u32_of(p)?),
        attr::METHOD => Attr::Method(str_of(p)?),
        attr::OBJTYPE => Attr::ObjType(u32_of(p)?),
        attr::SIGNATURE => Attr::Signature(blobmsg_of(p)?),
        attr::DATA => Attr::Data(blobmsg_of(p)?),
        attr::TARGET => Attr::Target(u32_of(p)?),
        attr::ACTIVE => Attr::Active(bool_of(p)?),
        attr::NO_REPLY => Attr::NoReply(bool_of(p)?),
        attr::SUBSCRIBERS => {
            // Entries that are not int32 are skipped, as libubus does.
            let mut ids = Vec::new();
            let mut pos = 0;
            while let Some(rest) = p.get(pos..).filter(|r| !r.is_empty()) {
                let raw = blob::split_attr(rest, at + blob::ATTR_HDR_LEN + pos)
                    .map_err(|err| Error::Blob { id, err })?;
                if let Ok(v) = <[u8; 4]>::try_from(raw.payload) {
                    ids.push(u32::from_be_bytes(v));
                }
                pos += raw.consumed;
            }
            Attr::Subscribers(ids)
        }
        attr::USER => Attr::User(str_of(p)?),
        attr::GROUP => Attr::Group(str_of(p)?),
        _ => return Ok(None),
    }))
}

/// An object's SIGNATURE (`ubus_push_object_type`): one table per method,
/// named after it, whose entries map each argument to its blobmsg type as
/// INT32.
pub fn signature<M, A>(methods: &[(M, Vec<(A, BlobType)>)]) -> Value
where
    M: AsRef<str>,
    A: AsRef<str>,
{
    let mut sig = Value::table();
    for (method, args) in methods {
        let mut t = Value::table();
        for (name, ty) in args {
            t.push(name.as_ref(), Value::Int32(i32::from(ty.id())));
        }
        sig.push(method.as_ref(), t);
    }
    sig
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip(m: &Message, bytes: &[u8]) {
        assert_eq!(m.encode().unwrap(), bytes);
        assert_eq!(frame_len(bytes), Ok(bytes.len()));
        assert_eq!(&Message::decode(bytes).unwrap(), m);
    }

    #[test]
    fn hello() {
        // ubusd_send_hello: empty container, peer = the new client's id.
        let m = Message::new(MsgType::Hello, 0, 0x1234_abcd);
        roundtrip(&m, &[0, 0, 0, 0, 0x12, 0x34, 0xab, 0xcd, 0, 0, 0, 4]);
    }

    #[test]
    fn add_object_with_signature() {
        // ubus_add_object for "test" with method hello(id: INT32, msg: STRING).
        let sig = signature(&[(
            "hello",
            vec![("id", BlobType::Int32), ("msg", BlobType::String)],
        )]);
        let m = Message::new(MsgType::AddObject, 1, 0)
            .with(Attr::ObjPath("test".into()))
            .with(Attr::Signature(sig));
        #[rustfmt::skip]
        let bytes = [
            0x00, 0x06, 0x00, 0x01, 0, 0, 0, 0,
            0x00, 0x00, 0x00, 0x40,
            0x02, 0x00, 0x00, 0x09, b't', b'e', b's', b't', 0, 0, 0, 0,
            0x06, 0x00, 0x00, 0x30,
              0x82, 0x00, 0x00, 0x2c, 0x00, 0x05, b'h', b'e', b'l', b'l', b'o', 0,
                0x85, 0x00, 0x00, 0x10, 0x00, 0x02, b'i', b'd', 0, 0, 0, 0, 0, 0, 0, 5,
                0x85, 0x00, 0x00, 0x10, 0x00, 0x03, b'm', b's', b'g', 0, 0, 0, 0, 0, 0, 3,
        ];
        roundtrip(&m, &bytes);
        let sig = m.signature().unwrap();
        assert_eq!(
            sig.get("hello").and_then(|h| h.get("msg")),
            Some(&Value::Int32(3))
        );
    }

    #[test]
    fn invoke() {
        // ubus_invoke_async: OBJID, METHOD, DATA; peer = the target object.
        let m = Message::new(MsgType::Invoke, 2, 0x4a2b_1c0d)
            .with(Attr::ObjId(0x4a2b_1c0d))
            .with(Attr::Method("hello".into()))
            .with(Attr::Data(
                Value::table().with("id", 1i32).with("msg", "hi"),
            ));
        #[rustfmt::skip]
        let bytes = [
            0x00, 0x05, 0x00, 0x02, 0x4a, 0x2b, 0x1c, 0x0d,
            0x00, 0x00, 0x00, 0x3c,
            0x03, 0x00, 0x00, 0x08, 0x4a, 0x2b, 0x1c, 0x0d,
            0x04, 0x00, 0x00, 0x0a, b'h', b'e', b'l', b'l', b'o', 0, 0, 0,
            0x07, 0x00, 0x00, 0x24,
              0x85, 0x00, 0x00, 0x10, 0x00, 0x02, b'i', b'd', 0, 0, 0, 0, 0, 0, 0, 1,
              0x83, 0x00, 0x00, 0x0f, 0x00, 0x03, b'm', b's', b'g', 0, 0, 0, b'h', b'i', 0, 0,
        ];
        roundtrip(&m, &bytes);
        assert_eq!(m.objid(), Some(0x4a2b_1c0d));
        assert_eq!(m.method(), Some("hello"));
        assert!(!m.no_reply());
    }

    #[test]
    fn status() {
        // ubus_complete_deferred_request: STATUS, OBJID; caller's seq/peer.
        let m = Message::new(MsgType::Status, 2, 0x0000_0bad)
            .with(Attr::Status(Status::Ok.code()))
            .with(Attr::ObjId(0x4a2b_1c0d));
        #[rustfmt::skip]
        let bytes = [
            0x00, 0x01, 0x00, 0x02, 0x00, 0x00, 0x0b, 0xad,
            0x00, 0x00, 0x00, 0x14,
            0x01, 0x00, 0x00, 0x08, 0, 0, 0, 0,
            0x03, 0x00, 0x00, 0x08, 0x4a, 0x2b, 0x1c, 0x0d,
        ];
        roundtrip(&m, &bytes);
        assert_eq!(m.status(), Some(0));
    }

    #[test]
    fn data() {
        // ubus_send_reply: OBJID, DATA.
        let m = Message::new(MsgType::Data, 2, 0x0000_0bad)
            .with(Attr::ObjId(0x4a2b_1c0d))
            .with(Attr::Data(Value::table().with("ok", true)));
        #[rustfmt::skip]
        let bytes = [
            0x00, 0x02, 0x00, 0x02, 0x00, 0x00, 0x0b, 0xad,
            0x00, 0x00, 0x00, 0x20,
            0x03, 0x00, 0x00, 0x08, 0x4a, 0x2b, 0x1c, 0x0d,
            0x07, 0x00, 0x00, 0x14,
              0x87, 0x00, 0x00, 0x0d, 0x00, 0x02, b'o', b'k', 0, 0, 0, 0, 1, 0, 0, 0,
        ];
        roundtrip(&m, &bytes);
        assert_eq!(m.data().and_then(|d| d.get("ok")), Some(&Value::Bool(true)));
    }

    #[test]
    fn notify_status_with_subscribers() {
        // ubusd_handle_notify's answer: OBJID, SUBSCRIBERS, STATUS.
        let m = Message::new(MsgType::Status, 9, 0x500)
            .with(Attr::ObjId(0x500))
            .with(Attr::Subscribers(vec![0x600, 0x700]))
            .with(Attr::Status(0));
        #[rustfmt::skip]
        let bytes = [
            0x00, 0x01, 0x00, 0x09, 0, 0, 0x05, 0x00,
            0x00, 0x00, 0x00, 0x28,
            0x03, 0x00, 0x00, 0x08, 0, 0, 0x05, 0,
            0x0b, 0x00, 0x00, 0x14,
              0x00, 0x00, 0x00, 0x08, 0, 0, 0x06, 0,
              0x00, 0x00, 0x00, 0x08, 0, 0, 0x07, 0,
            0x01, 0x00, 0x00, 0x08, 0, 0, 0, 0,
        ];
        roundtrip(&m, &bytes);
        assert_eq!(m.subscribers(), Some(&[0x600, 0x700][..]));
    }

    #[test]
    fn flags_and_strings() {
        let m = Message::new(MsgType::Invoke, 7, 1)
            .with(Attr::NoReply(true))
            .with(Attr::ObjId(1))
            .with(Attr::Method("send".into()))
            .with(Attr::User("root".into()))
            .with(Attr::Group("root".into()))
            .with(Attr::Active(false))
            .with(Attr::ObjType(3))
            .with(Attr::Target(4));
        let bytes = m.encode().unwrap();
        assert_eq!(&bytes[12..17], &[0x0a, 0, 0, 5, 1]);
        assert_eq!(Message::decode(&bytes).unwrap(), m);
        assert!(m.no_reply());
    }

    #[test]
    fn unknown_attributes_are_skipped_and_last_wins() {
        #[rustfmt::skip]
        let bytes = [
            0x00, 0x01, 0x00, 0x01, 0, 0, 0, 0,
            0x00, 0x00, 0x00, 0x1c,
            0x01, 0x00, 0x00, 0x08, 0, 0, 0, 4,
            0x2a, 0x00, 0x00, 0x05, 0x99, 0, 0, 0,
            0x01, 0x00, 0x00, 0x08, 0, 0, 0, 2,
        ];
        let m = Message::decode(&bytes).unwrap();
        assert_eq!(m.attrs.len(), 2);
        assert_eq!(m.status(), Some(2));
        assert_eq!(Status::from_code(2), Status::InvalidArgument);
    }

    #[test]
    fn header_checks() {
        assert_eq!(
            frame_len(&[0, 0, 0, 0]),
            Err(Error::Truncated { have: 4, need: 12 })
        );
        assert_eq!(
            frame_len(&[1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 4]),
            Err(Error::BadVersion(1))
        );
        assert_eq!(
            frame_len(&[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 3]),
            Err(Error::BadLength { len: 3 })
        );
        // Exactly 1 MiB is allowed; one more byte is not.
        assert_eq!(
            frame_len(&[0, 2, 0, 0, 0, 0, 0, 0, 0, 0x10, 0, 0]),
            Ok(8 + UBUS_MAX_MSGLEN)
        );
        assert_eq!(
            frame_len(&[0, 2, 0, 0, 0, 0, 0, 0, 0, 0x10, 0, 1]),
            Err(Error::TooLarge {
                len: UBUS_MAX_MSGLEN + 1
            })
        );
        assert_eq!(
            Message::decode(&[0, 42, 0, 7, 0, 0, 0, 9, 0, 0, 0, 4]),
            Err(Error::UnknownType {
                kind: 42,
                seq: 7,
                peer: 9
            })
        );
        assert_eq!(
            Message::decode(&[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 8, 1, 0]),
            Err(Error::Truncated { have: 14, need: 16 })
        );
        assert_eq!(
            Message::decode(&[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 4, 0]),
            Err(Error::TrailingBytes {
                len: 13,
                declared: 12
            })
        );
    }

    #[test]
    fn malformed_attributes_are_errors() {
        // STATUS with 3 bytes of payload.
        let b = [0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x0b, 1, 0, 0, 7, 0, 0, 0];
        assert_eq!(Message::decode(&b), Err(Error::BadAttr { id: 1, at: 12 }));
        // METHOD without NUL.
        let b = [
            0, 5, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x0c, 4, 0, 0, 8, b'a', b'b', b'c', b'd',
        ];
        assert_eq!(Message::decode(&b), Err(Error::BadAttr { id: 4, at: 12 }));
        // DATA with a broken blobmsg inside.
        let b = [
            0, 5, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x0c, 7, 0, 0, 8, 0x85, 0, 0, 9,
        ];
        assert!(matches!(
            Message::decode(&b),
            Err(Error::Blob { id: 7, .. })
        ));
        // An attribute longer than the container.
        let b = [0, 5, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x08, 3, 0, 0, 9];
        assert!(matches!(
            Message::decode(&b),
            Err(Error::Blob { id: 0, .. })
        ));
    }

    #[test]
    fn oversized_messages_are_refused() {
        let big = Value::table().with("s", "x".repeat(UBUS_MAX_MSGLEN - 64));
        let ok = Message::new(MsgType::Data, 1, 1).with(Attr::Data(big));
        let bytes = ok.encode().unwrap();
        assert!(bytes.len() <= HEADER_LEN + UBUS_MAX_MSGLEN);
        assert_eq!(Message::decode(&bytes).unwrap(), ok);
        let big = Value::table().with("s", "x".repeat(UBUS_MAX_MSGLEN));
        let m = Message::new(MsgType::Data, 1, 1).with(Attr::Data(big));
        assert!(matches!(m.encode(), Err(Error::Blob { id: 7, .. })));
        let half = Value::table().with("s", "x".repeat(UBUS_MAX_MSGLEN / 2));
        let m = Message::new(MsgType::Data, 1, 1)
            .with(Attr::Data(half.clone()))
            .with(Attr::Data(half));
        assert!(matches!(m.encode(), Err(Error::TooLarge { .. })));
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        let m = Message::new(MsgType::Invoke, 3, 0x400)
            .with(Attr::ObjId(0x400))
            .with(Attr::Method("status".into()))
            .with(Attr::Subscribers(vec![1, 2]))
            .with(Attr::Data(
                Value::table().with("a", Value::Array(vec![1i32.into(), "x".into()])),
            ));
        let bytes = m.encode().unwrap();
        let mut seed = 0x9e37_79b9u32;
        for i in 0..bytes.len() {
            for _ in 0..16 {
                seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12345);
                let mut b = bytes.clone();
                b[i] = (seed >> 16) as u8;
                if let Ok(d) = Message::decode(&b) {
                    let again = Message::decode(&d.encode().unwrap()).unwrap();
                    assert_eq!(format!("{again:?}"), format!("{d:?}"));
                }
                let _ = Message::decode(&b[..i]);
                let _ = frame_len(&b[..i]);
            }
        }
    }
}
