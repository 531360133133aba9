//! STUN messages (RFC 8489) as a client of the Binding method needs them,
//! with the NAT behaviour discovery attributes of RFC 5780 and the classic
//! ones of RFC 3489 that older servers (stund) still send.
//!
//! Owns: the header (§5), the message type's method/class bits (§5),
//! attribute framing and padding (§14), the address attributes with their
//! XOR (§14.1, §14.2), ERROR-CODE (§14.8), UNKNOWN-ATTRIBUTES (§14.9),
//! SOFTWARE (§14.10), FINGERPRINT (§14.7), and RFC 5780's CHANGE-REQUEST,
//! RESPONSE-ORIGIN and OTHER-ADDRESS (§7). Authentication is not spoken:
//! MESSAGE-INTEGRITY is skipped, never checked (§14.5 rules still decide
//! which attributes after it count). Pure: no IO, no clock; must not
//! import `core`, `sys` or tokio. What a response *means* (which
//! transaction, whether it came from the right address) is `core::stun`'s.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// RFC 8489 §5: the fixed value of bytes 4–7 of every message.
pub const MAGIC_COOKIE: u32 = 0x2112_A442;
/// Message header: type, length, magic cookie, transaction ID (§5).
pub const HEADER_LEN: usize = 20;
/// Longest message accepted. RFC 8489 §6.1 keeps messages over UDP below
/// the path MTU; a Binding response with every attribute we know is under
/// 200 bytes, so anything past an Ethernet frame is not one of ours.
pub const MAX_MESSAGE: usize = 1500;
/// The default port of STUN over UDP (RFC 8489 §18.6).
pub const DEFAULT_PORT: u16 = 3478;
/// The Binding method (RFC 8489 §18.2).
pub const BINDING: u16 = 0x001;
/// RFC 8489 §14.7: FINGERPRINT is the CRC-32 of the message XOR this.
pub const FINGERPRINT_XOR: u32 = 0x5354_554E;
/// RFC 8489 §14.8, §14.10: reason phrase and SOFTWARE are at most 763 bytes.
pub const MAX_TEXT: usize = 763;
/// Most attribute types kept from an UNKNOWN-ATTRIBUTES attribute or
/// collected as unknown comprehension-required ones.
pub const MAX_UNKNOWN: usize = 16;

/// Attribute types (RFC 8489 §18.3, RFC 5780 §9.1, RFC 3489 §11.2).
pub mod attr {
    pub const MAPPED_ADDRESS: u16 = 0x0001;
    /// RFC 3489 §11.2.2, obsolete: the client never sends it.
    pub const RESPONSE_ADDRESS: u16 = 0x0002;
    /// RFC 5780 §7.2 (RFC 3489 §11.2.4 had the same layout).
    pub const CHANGE_REQUEST: u16 = 0x0003;
    /// RFC 3489 §11.2.5: where the response was sent from.
    pub const SOURCE_ADDRESS: u16 = 0x0004;
    /// RFC 3489 §11.2.3: the server's other address and port.
    pub const CHANGED_ADDRESS: u16 = 0x0005;
    pub const USERNAME: u16 = 0x0006;
    pub const MESSAGE_INTEGRITY: u16 = 0x0008;
    pub const ERROR_CODE: u16 = 0x0009;
    pub const UNKNOWN_ATTRIBUTES: u16 = 0x000A;
    /// RFC 3489 §11.2.11, obsolete.
    pub const REFLECTED_FROM: u16 = 0x000B;
    pub const REALM: u16 = 0x0014;
    pub const NONCE: u16 = 0x0015;
    pub const MESSAGE_INTEGRITY_SHA256: u16 = 0x001C;
    pub const XOR_MAPPED_ADDRESS: u16 = 0x0020;
    /// XOR-MAPPED-ADDRESS as numbered by the drafts before RFC 5389,
    /// which stund 0.97 still sends (same layout and XOR).
    pub const XOR_MAPPED_ADDRESS_OLD: u16 = 0x8020;
    pub const SOFTWARE: u16 = 0x8022;
    pub const ALTERNATE_SERVER: u16 = 0x8023;
    pub const FINGERPRINT: u16 = 0x8028;
    /// RFC 5780 §7.3: where the response was sent from.
    pub const RESPONSE_ORIGIN: u16 = 0x802B;
    /// RFC 5780 §7.4: the server's alternate address and port.
    pub const OTHER_ADDRESS: u16 = 0x802C;

    /// RFC 8489 §14: 0x0000–0x7FFF must be understood or the message
    /// fails; 0x8000–0xFFFF may be ignored.
    pub fn comprehension_required(t: u16) -> bool {
        t < 0x8000
    }
}

/// A 96-bit transaction ID (RFC 8489 §5).
pub type TransactionId = [u8; 12];

/// The message class (RFC 8489 §5: bits C1 and C0 of the type).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    Request,
    Indication,
    Success,
    Error,
}

impl Class {
    fn bits(self) -> u16 {
        match self {
            Class::Request => 0b00,
            Class::Indication => 0b01,
            Class::Success => 0b10,
            Class::Error => 0b11,
        }
    }

    fn from_bits(b: u16) -> Class {
        match b & 0b11 {
            0b00 => Class::Request,
            0b01 => Class::Indication,
            0b10 => Class::Success,
            _ => Class::Error,
        }
    }
}

/// RFC 8489 §5: the 14-bit type interleaves the 12 method bits with the
/// class bits C0 (bit 4) and C1 (bit 8).
pub fn message_type(method: u16, class: Class) -> u16 {
    let m = method & 0x0FFF;
    let c = class.bits();
    (m & 0x000F) | ((m & 0x0070) << 1) | ((m & 0x0F80) << 2) | ((c & 1) << 4) | ((c & 2) << 7)
}

/// The (method, class) of a 14-bit message type.
pub fn split_type(t: u16) -> (u16, Class) {
    let method = (t & 0x000F) | ((t & 0x00E0) >> 1) | ((t & 0x3E00) >> 2);
    let class = ((t >> 4) & 1) | ((t >> 7) & 2);
    (method, Class::from_bits(class))
}

/// RFC 5780 §7.2: the two flags of CHANGE-REQUEST.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ChangeRequest {
    /// "A": answer from the other IP address.
    pub ip: bool,
    /// "B": answer from the other port.
    pub port: bool,
}

impl ChangeRequest {
    const IP: u32 = 0x04;
    const PORT: u32 = 0x02;

    fn to_u32(self) -> u32 {
        (if self.ip { Self::IP } else { 0 }) | (if self.port { Self::PORT } else { 0 })
    }
}

/// ERROR-CODE (RFC 8489 §14.8): a code 300–699 and its reason phrase.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorCode {
    pub code: u16,
    pub reason: String,
}

/// RFC 8489 §14.8's codes a client meets.
pub mod code {
    pub const TRY_ALTERNATE: u16 = 300;
    pub const BAD_REQUEST: u16 = 400;
    pub const UNAUTHORIZED: u16 = 401;
    pub const UNKNOWN_ATTRIBUTE: u16 = 420;
    pub const SERVER_ERROR: u16 = 500;
}

/// One STUN message with the attributes this crate understands, decoded.
///
/// Parsing keeps the first occurrence of each attribute (RFC 8489 §14:
/// later ones need not be processed). Emitting writes the attributes in
/// the order of the fields, then FINGERPRINT when `fingerprint` is set;
/// anything that can be constructed can be emitted.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Message {
    pub method: u16,
    pub class: Option<Class>,
    pub transaction: TransactionId,
    /// XOR-MAPPED-ADDRESS (0x0020, or the pre-RFC 5389 0x8020).
    pub xor_mapped: Option<SocketAddr>,
    pub mapped: Option<SocketAddr>,
    pub change_request: Option<ChangeRequest>,
    pub response_origin: Option<SocketAddr>,
    pub other_address: Option<SocketAddr>,
    pub source_address: Option<SocketAddr>,
    pub changed_address: Option<SocketAddr>,
    pub alternate_server: Option<SocketAddr>,
    pub error: Option<ErrorCode>,
    /// The types listed by an UNKNOWN-ATTRIBUTES attribute (at most
    /// [`MAX_UNKNOWN`]).
    pub unknown_attributes: Option<Vec<u16>>,
    pub software: Option<String>,
    /// Comprehension-required attribute types this decoder does not
    /// know (at most [`MAX_UNKNOWN`]; RFC 8489 §6.3.3 lets a client
    /// drop a response that has any). Emitted as empty attributes.
    pub unknown_required: Vec<u16>,
    /// Parsed: a FINGERPRINT was present (and matched, or parsing fails).
    /// Emitted: append one.
    pub fingerprint: bool,
}

/// Why bytes are not a STUN message we accept, with where it went wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Error {
    /// Shorter than the 20-byte header.
    TooShort { len: usize },
    /// Longer than [`MAX_MESSAGE`].
    TooLong { len: usize },
    /// RFC 8489 §5: the two most significant bits must be zero.
    NotStun { first: u8 },
    /// RFC 8489 §5: no magic cookie (an RFC 3489-only peer, or not STUN).
    BadCookie { cookie: u32 },
    /// The length field is not a multiple of 4 or disagrees with the
    /// datagram's size.
    BadLength { field: u16, datagram: usize },
    /// The attribute at `at` runs past the message.
    Truncated { at: usize },
    /// The attribute of type `kind` at `at` has the wrong size or values.
    BadAttribute { kind: u16, at: usize },
    /// RFC 8489 §14.7: FINGERPRINT must be the last attribute.
    FingerprintNotLast { at: usize },
    /// The FINGERPRINT at `at` does not match the message.
    BadFingerprint { at: usize },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Error::TooShort { len } => write!(f, "{len} bytes, shorter than a STUN header"),
            Error::TooLong { len } => write!(f, "{len} bytes, longer than {MAX_MESSAGE}"),
            Error::NotStun { first } => write!(f, "first byte {first:#04x} is not STUN"),
            Error::BadCookie { cookie } => write!(f, "magic cookie {cookie:#010x}"),
            Error::BadLength { field, datagram } => {
                write!(f, "length field {field} in a {datagram}-byte datagram")
            }
            Error::Truncated { at } => write!(f, "attribute at byte {at} runs past the message"),
            Error::BadAttribute { kind, at } => {
                write!(f, "malformed attribute {kind:#06x} at byte {at}")
            }
            Error::FingerprintNotLast { at } => {
                write!(f, "FINGERPRINT at byte {at} is not the last attribute")
            }
            Error::BadFingerprint { at } => write!(f, "FINGERPRINT at byte {at} does not match"),
        }
    }
}

impl Message {
    /// A Binding request, optionally with CHANGE-REQUEST (RFC 5780 §7.2).
    pub fn binding_request(transaction: TransactionId, change: Option<ChangeRequest>) -> Message {
        Message {
            method: BINDING,
            class: Some(Class::Request),
            transaction,
            change_request: change,
            ..Message::default()
        }
    }

    /// The mapped address a client should use: XOR-MAPPED-ADDRESS, else
    /// MAPPED-ADDRESS (RFC 8489 §14.1: kept for RFC 3489 servers).
    pub fn mapped_address(&self) -> Option<SocketAddr> {
        self.xor_mapped.or(self.mapped)
    }

    /// Parses one datagram. See [`Error`] for what is refused.
    pub fn parse(b: &[u8]) -> Result<Message, Error> {
        if b.len() < HEADER_LEN {
            return Err(Error::TooShort { len: b.len() });
        }
        if b.len() > MAX_MESSAGE {
            return Err(Error::TooLong { len: b.len() });
        }
        let t = be16(b);
        if t & 0xC000 != 0 {
            return Err(Error::NotStun { first: b[0] });
        }
        let cookie = u32::from_be_bytes([b[4], b[5], b[6], b[7]]);
        if cookie != MAGIC_COOKIE {
            return Err(Error::BadCookie { cookie });
        }
        let field = be16(&b[2..]);
        // RFC 8489 §5: attributes are padded, so the length is a multiple
        // of 4; over UDP one datagram carries exactly one message.
        if field % 4 != 0 || HEADER_LEN + usize::from(field) != b.len() {
            return Err(Error::BadLength {
                field,
                datagram: b.len(),
            });
        }
        let (method, class) = split_type(t);
        let mut m = Message {
            method,
            class: Some(class),
            ..Message::default()
        };
        m.transaction.copy_from_slice(&b[8..HEADER_LEN]);
        let mut seen_integrity = false;
        let mut at = HEADER_LEN;
        while at < b.len() {
            let Some(head) = b.get(at..at + 4) else {
                return Err(Error::Truncated { at });
            };
            let kind = be16(head);
            let len = usize::from(be16(&head[2..]));
            let start = at + 4;
            // RFC 8489 §14: values are padded to a multiple of 4 bytes;
            // the padding's content is ignored.
            let next = start + len.next_multiple_of(4);
            let Some(v) = b.get(start..start + len).filter(|_| next <= b.len()) else {
                return Err(Error::Truncated { at });
            };
            if kind == attr::FINGERPRINT {
                if next != b.len() {
                    return Err(Error::FingerprintNotLast { at });
                }
                let [a, c, d, e] = v else {
                    return Err(Error::BadAttribute { kind, at });
                };
                let want = crc32(&b[..at]) ^ FINGERPRINT_XOR;
                if u32::from_be_bytes([*a, *c, *d, *e]) != want {
                    return Err(Error::BadFingerprint { at });
                }
                m.fingerprint = true;
            } else if kind == attr::MESSAGE_INTEGRITY {
                seen_integrity = true;
            } else if !seen_integrity {
                m.attribute(kind, v, at)?;
            }
            // RFC 8489 §14.5: after MESSAGE-INTEGRITY only
            // MESSAGE-INTEGRITY-SHA256 and FINGERPRINT count; we check
            // neither integrity, so the rest is skipped.
            at = next;
        }
        Ok(m)
    }

    fn attribute(&mut self, kind: u16, v: &[u8], at: usize) -> Result<(), Error> {
        let bad = Error::BadAttribute { kind, at };
        let tx = self.transaction;
        let first = |slot: &mut Option<SocketAddr>, xor: bool| -> Result<(), Error> {
            let a = parse_address(v, xor.then_some(&tx)).ok_or(bad)?;
            slot.get_or_insert(a);
            Ok(())
        };
        match kind {
            attr::MAPPED_ADDRESS => first(&mut self.mapped, false)?,
            attr::XOR_MAPPED_ADDRESS | attr::XOR_MAPPED_ADDRESS_OLD => {
                // The RFC 5389 number wins over the old one if both come.
                let a = parse_address(v, Some(&tx)).ok_or(bad)?;
                if kind == attr::XOR_MAPPED_ADDRESS || self.xor_mapped.is_none() {
                    self.xor_mapped = Some(a);
                }
            }
            attr::RESPONSE_ORIGIN => first(&mut self.response_origin, false)?,
            attr::OTHER_ADDRESS => first(&mut self.other_address, false)?,
            attr::SOURCE_ADDRESS => first(&mut self.source_address, false)?,
            attr::CHANGED_ADDRESS => first(&mut self.changed_address, false)?,
            attr::ALTERNATE_SERVER => first(&mut self.alternate_server, false)?,
            attr::CHANGE_REQUEST => {
                let [_, _, _, flags] = v else { return Err(bad) };
                let f = u32::from(*flags);
                self.change_request.get_or_insert(ChangeRequest {
                    ip: f & ChangeRequest::IP != 0,
                    port: f & ChangeRequest::PORT != 0,
                });
            }
            attr::ERROR_CODE => {
                // RFC 8489 §14.8: 21 reserved bits, class 3–6, number 0–99.
                let (Some(&class), Some(&number)) = (v.get(2), v.get(3)) else {
                    return Err(bad);
                };
                let class = class & 0x07;
                if !(3..=6).contains(&class) || number > 99 || v.len() - 4 > MAX_TEXT {
                    return Err(bad);
                }
                if self.error.is_none() {
                    self.error = Some(ErrorCode {
                        code: u16::from(class) * 100 + u16::from(number),
                        reason: text(&v[4..]),
                    });
                }
            }
            attr::UNKNOWN_ATTRIBUTES => {
                if v.len() % 2 != 0 {
                    return Err(bad);
                }
                if self.unknown_attributes.is_none() {
                    let list = v
                        .chunks_exact(2)
                        .take(MAX_UNKNOWN)
                        .map(|c| u16::from_be_bytes([c[0], c[1]]))
                        .collect();
                    self.unknown_attributes = Some(list);
                }
            }
            attr::SOFTWARE => {
                if v.len() > MAX_TEXT {
                    return Err(bad);
                }
                self.software.get_or_insert_with(|| text(v));
            }
            // Known, and meaningless to a client without credentials.
            attr::USERNAME
            | attr::REALM
            | attr::NONCE
            | attr::MESSAGE_INTEGRITY_SHA256
            | attr::RESPONSE_ADDRESS
            | attr::REFLECTED_FROM => {}
            k if attr::comprehension_required(k)
                && !self.unknown_required.contains(&k)
                && self.unknown_required.len() < MAX_UNKNOWN =>
            {
                self.unknown_required.push(k);
            }
            _ => {}
        }
        Ok(())
    }

    /// Encodes the message. A class of `None` is emitted as a request.
    pub fn emit(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(128);
        let class = self.class.unwrap_or(Class::Request);
        b.extend_from_slice(&message_type(self.method, class).to_be_bytes());
        b.extend_from_slice(&[0, 0]);
        b.extend_from_slice(&MAGIC_COOKIE.to_be_bytes());
        b.extend_from_slice(&self.transaction);
        let tx = &self.transaction;
        let addrs = [
            (attr::XOR_MAPPED_ADDRESS, self.xor_mapped, true),
            (attr::MAPPED_ADDRESS, self.mapped, false),
            (attr::RESPONSE_ORIGIN, self.response_origin, false),
            (attr::OTHER_ADDRESS, self.other_address, false),
            (attr::SOURCE_ADDRESS, self.source_address, false),
            (attr::CHANGED_ADDRESS, self.changed_address, false),
            (attr::ALTERNATE_SERVER, self.alternate_server, false),
        ];
        for (kind, a, xor) in addrs {
            if let Some(a) = a {
                put(&mut b, kind, &address_value(a, xor.then_some(tx)));
            }
        }
        if let Some(c) = self.change_request {
            put(&mut b, attr::CHANGE_REQUEST, &c.to_u32().to_be_bytes());
        }
        if let Some(e) = &self.error {
            let code = e.code.clamp(300, 699);
            let mut v = vec![0, 0, (code / 100) as u8, (code % 100) as u8];
            v.extend_from_slice(clip(&e.reason).as_bytes());
            put(&mut b, attr::ERROR_CODE, &v);
        }
        if let Some(list) = &self.unknown_attributes {
            let v: Vec<u8> = list
                .iter()
                .take(MAX_UNKNOWN)
                .flat_map(|t| t.to_be_bytes())
                .collect();
            put(&mut b, attr::UNKNOWN_ATTRIBUTES, &v);
        }
        if let Some(s) = &self.software {
            put(&mut b, attr::SOFTWARE, clip(s).as_bytes());
        }
        for &k in self.unknown_required.iter().take(MAX_UNKNOWN) {
            put(&mut b, k, &[]);
        }
        if self.fingerprint {
            // RFC 8489 §14.7: the length field already counts the
            // FINGERPRINT when the CRC is taken.
            set_length(&mut b, 8);
            let crc = crc32(&b) ^ FINGERPRINT_XOR;
            put(&mut b, attr::FINGERPRINT, &crc.to_be_bytes());
        }
        set_length(&mut b, 0);
        b
    }
}

/// Writes the header's length field: the attributes so far plus `extra`.
fn set_length(b: &mut [u8], extra: usize) {
    let len = (b.len() - HEADER_LEN + extra) as u16;
    b[2..4].copy_from_slice(&len.to_be_bytes());
}

fn put(b: &mut Vec<u8>, kind: u16, v: &[u8]) {
    b.extend_from_slice(&kind.to_be_bytes());
    b.extend_from_slice(&(v.len() as u16).to_be_bytes());
    b.extend_from_slice(v);
    b.resize(b.len().next_multiple_of(4), 0);
}

/// Text attributes as a string of at most [`MAX_TEXT`] bytes, invalid
/// UTF-8 replaced and control characters removed (it goes to logs).
fn text(v: &[u8]) -> String {
    crate::proto::sanitize_text(&String::from_utf8_lossy(v), MAX_TEXT)
}

fn clip(s: &str) -> String {
    crate::proto::sanitize_text(s, MAX_TEXT)
}

const FAMILY_V4: u8 = 0x01;
const FAMILY_V6: u8 = 0x02;

/// MAPPED-ADDRESS layout (RFC 8489 §14.1): reserved byte, family, port,
/// address; with `xor`, §14.2's XOR with the cookie (and the transaction
/// ID for IPv6).
fn parse_address(v: &[u8], xor: Option<&TransactionId>) -> Option<SocketAddr> {
    let family = *v.get(1)?;
    let mask = xor_mask(xor);
    let port = be16(v.get(2..)?) ^ u16::from_be_bytes([mask[0], mask[1]]);
    let ip = match (family, v.len()) {
        (FAMILY_V4, 8) => {
            let mut o = [0u8; 4];
            for (i, x) in o.iter_mut().enumerate() {
                *x = v[4 + i] ^ mask[i];
            }
            IpAddr::V4(Ipv4Addr::from(o))
        }
        (FAMILY_V6, 20) => {
            let mut o = [0u8; 16];
            for (i, x) in o.iter_mut().enumerate() {
                *x = v[4 + i] ^ mask[i];
            }
            IpAddr::V6(Ipv6Addr::from(o))
        }
        _ => return None,
    };
    Some(SocketAddr::new(ip, port))
}

fn address_value(a: SocketAddr, xor: Option<&TransactionId>) -> Vec<u8> {
    let mask = xor_mask(xor);
    let port = a.port() ^ u16::from_be_bytes([mask[0], mask[1]]);
    let (family, octets): (u8, Vec<u8>) = match a.ip() {
        IpAddr::V4(ip) => (FAMILY_V4, ip.octets().to_vec()),
        IpAddr::V6(ip) => (FAMILY_V6, ip.octets().to_vec()),
    };
    let mut v = vec![0, family];
    v.extend_from_slice(&port.to_be_bytes());
    v.extend(octets.iter().zip(mask).map(|(o, m)| o ^ m));
    v
}

/// The 16 bytes an XOR address is XORed with: cookie then transaction ID
/// (RFC 8489 §14.2); zeros for plain addresses.
fn xor_mask(xor: Option<&TransactionId>) -> [u8; 16] {
    let mut m = [0u8; 16];
    if let Some(tx) = xor {
        m[..4].copy_from_slice(&MAGIC_COOKIE.to_be_bytes());
        m[4..].copy_from_slice(tx);
    }
    m
}

/// CRC-32 (ISO HDLC, as RFC 1952), bitwise: messages are short and a
/// 1 KiB table is not worth its flash.
pub fn crc32(data: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &byte in data {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = (crc >> 1) ^ (0xEDB8_8320 & (crc & 1).wrapping_neg());
        }
    }
    !crc
}

/// The big-endian 16 bits at the start of `b` (0 if it is shorter).
fn be16(b: &[u8]) -> u16 {
    match *b {
        [x, y, ..] => u16::from_be_bytes([x, y]),
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        s.split_whitespace()
            .map(|h| u8::from_str_radix(h, 16).unwrap())
            .collect()
    }

    const TX: TransactionId = [
        0xb7, 0xe7, 0xa7, 0x01, 0xbc, 0x34, 0xd6, 0x86, 0xfa, 0x87, 0xdf, 0xae,
    ];

    /// RFC 5769 §2.1: a Binding request with SOFTWARE, PRIORITY,
    /// ICE-CONTROLLED, USERNAME, MESSAGE-INTEGRITY and FINGERPRINT.
    fn rfc5769_request() -> Vec<u8> {
        hex("00 01 00 58 21 12 a4 42 b7 e7 a7 01 bc 34 d6 86 fa 87 df ae
             80 22 00 10 53 54 55 4e 20 74 65 73 74 20 63 6c 69 65 6e 74
             00 24 00 04 6e 00 01 ff
             80 29 00 08 93 2f f9 b1 51 26 3b 36
             00 06 00 09 65 76 74 6a 3a 68 36 76 59 20 20 20
             00 08 00 14 9a ea a7 0c bf d8 cb 56 78 1e f2 b5 b2 d3 f2 49 c1 b5 71 a2
             80 28 00 04 e5 7a 3b cf")
    }

    /// RFC 5769 §2.2: IPv4 response, XOR-MAPPED-ADDRESS 192.0.2.1:32853.
    fn rfc5769_ipv4() -> Vec<u8> {
        hex("01 01 00 3c 21 12 a4 42 b7 e7 a7 01 bc 34 d6 86 fa 87 df ae
             80 22 00 0b 74 65 73 74 20 76 65 63 74 6f 72 20
             00 20 00 08 00 01 a1 47 e1 12 a6 43
             00 08 00 14 2b 91 f5 99 fd 9e 90 c3 8c 74 89 f9 2a f9 ba 53 f0 6b e7 d7
             80 28 00 04 c0 7d 4c 96")
    }

    /// RFC 5769 §2.3: IPv6 response,
    /// [2001:db8:1234:5678:11:2233:4455:6677]:32853.
    fn rfc5769_ipv6() -> Vec<u8> {
        hex("01 01 00 48 21 12 a4 42 b7 e7 a7 01 bc 34 d6 86 fa 87 df ae
             80 22 00 0b 74 65 73 74 20 76 65 63 74 6f 72 20
             00 20 00 14 00 02 a1 47 01 13 a9 fa a5 d3 f1 79 bc 25 f4 b5 be d2 b9 d9
             00 08 00 14 a3 82 95 4e 4b e6 7b f1 17 84 c9 7c 82 92 c2 75 bf e3 ed 41
             80 28 00 04 c8 fb 0b 4c")
    }

    /// RFC 5769 §2.4: request with long-term credentials (USERNAME,
    /// NONCE, REALM, MESSAGE-INTEGRITY; no FINGERPRINT).
    fn rfc5769_long_term() -> Vec<u8> {
        hex("00 01 00 60 21 12 a4 42 78 ad 34 33 c6 ad 72 c0 29 da 41 2e
             00 06 00 12 e3 83 9e e3 83 88 e3 83 aa e3 83 83 e3 82 af e3 82 b9 00 00
             00 15 00 1c 66 2f 2f 34 39 39 6b 39 35 34 64 36 4f 4c 33 34 6f 4c 39 46 53 54 76 79 36 34 73 41
             00 14 00 0b 65 78 61 6d 70 6c 65 2e 6f 72 67 00
             00 08 00 14 f6 70 24 65 6d d6 4a 3e 02 b8 e0 71 2e 85 c9 a2 8c a8 96 66")
    }

    #[test]
    fn rfc5769_sample_request() {
        let m = Message::parse(&rfc5769_request()).unwrap();
        assert_eq!((m.method, m.class), (BINDING, Some(Class::Request)));
        assert_eq!(m.transaction, TX);
        assert_eq!(m.software.as_deref(), Some("STUN test client"));
        assert!(m.fingerprint);
        // PRIORITY (0x0024) is comprehension-required and unknown to us;
        // ICE-CONTROLLED (0x8029) is optional and ignored.
        assert_eq!(m.unknown_required, vec![0x0024]);
    }

    #[test]
    fn rfc5769_ipv4_response() {
        let b = rfc5769_ipv4();
        let m = Message::parse(&b).unwrap();
        assert_eq!((m.method, m.class), (BINDING, Some(Class::Success)));
        assert_eq!(m.xor_mapped, Some("192.0.2.1:32853".parse().unwrap()));
        assert_eq!(m.mapped_address(), m.xor_mapped);
        assert_eq!(m.software.as_deref(), Some("test vector"));
        assert!(m.fingerprint && m.unknown_required.is_empty());
        // The XOR-MAPPED-ADDRESS value is the one the RFC prints.
        let a = address_value(m.xor_mapped.unwrap(), Some(&TX));
        assert_eq!(a, hex("00 01 a1 47 e1 12 a6 43"));
    }

    #[test]
    fn rfc5769_ipv6_response() {
        let m = Message::parse(&rfc5769_ipv6()).unwrap();
        assert_eq!(
            m.xor_mapped,
            Some(
                "[2001:db8:1234:5678:11:2233:4455:6677]:32853"
                    .parse()
                    .unwrap()
            )
        );
        assert!(m.fingerprint);
        let a = address_value(m.xor_mapped.unwrap(), Some(&TX));
        assert_eq!(
            a,
            hex("00 02 a1 47 01 13 a9 fa a5 d3 f1 79 bc 25 f4 b5 be d2 b9 d9")
        );
    }

    #[test]
    fn rfc5769_long_term_request() {
        let m = Message::parse(&rfc5769_long_term()).unwrap();
        assert_eq!(m.class, Some(Class::Request));
        assert!(!m.fingerprint);
        // USERNAME, NONCE and REALM are known (and unused here).
        assert!(m.unknown_required.is_empty());
    }

    #[test]
    fn fingerprint_matches_the_rfc_vectors() {
        // Our CRC over the RFC's own bytes gives the RFC's FINGERPRINT.
        let b = rfc5769_ipv4();
        let at = b.len() - 8;
        assert_eq!(crc32(&b[..at]) ^ FINGERPRINT_XOR, 0xc07d_4c96);
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        // One flipped bit anywhere before it is caught.
        for i in [0usize, 3, 9, 30, at - 1] {
            let mut bad = b.clone();
            bad[i] ^= 0x01;
            assert!(Message::parse(&bad).is_err(), "flip at {i}");
        }
    }

    #[test]
    fn type_bits() {
        assert_eq!(message_type(BINDING, Class::Request), 0x0001);
        assert_eq!(message_type(BINDING, Class::Indication), 0x0011);
        assert_eq!(message_type(BINDING, Class::Success), 0x0101);
        assert_eq!(message_type(BINDING, Class::Error), 0x0111);
        assert_eq!(split_type(0x0111), (BINDING, Class::Error));
        for m in [0u16, 1, 3, 0x0ABC, 0x0FFF] {
            for c in [
                Class::Request,
                Class::Indication,
                Class::Success,
                Class::Error,
            ] {
                assert_eq!(split_type(message_type(m, c)), (m, c));
            }
        }
    }

    #[test]
    fn binding_request_with_change_request() {
        let tx = [1u8; 12];
        let req = Message::binding_request(
            tx,
            Some(ChangeRequest {
                ip: true,
                port: true,
            }),
        );
        let b = req.emit();
        let mut want = hex("00 01 00 08 21 12 a4 42");
        want.extend_from_slice(&tx);
        want.extend_from_slice(&hex("00 03 00 04 00 00 00 06"));
        assert_eq!(b, want);
        assert_eq!(Message::parse(&b).unwrap(), req);
        let port_only = Message::binding_request(
            tx,
            Some(ChangeRequest {
                ip: false,
                port: true,
            }),
        );
        assert_eq!(&port_only.emit()[24..], &[0, 0, 0, 2]);
        // A plain request is the bare header.
        assert_eq!(Message::binding_request(tx, None).emit().len(), HEADER_LEN);
    }

    /// What coturn 4.6.1 (`turnserver -S -z -L IP1 -L IP2`: RFC 5780 is on
    /// when it listens on two addresses) answered a plain Binding request,
    /// recorded in a test namespace.
    #[test]
    fn coturn_response() {
        let b = hex("01 01 00 48 21 12 a4 42 91 85 6a 5d 51 b7 3f 8a f9 40 19 0e
             00 20 00 08 00 01 80 f0 e7 21 c0 4b
             00 01 00 08 00 01 a1 e2 c6 33 64 09
             80 2b 00 08 00 01 0d 96 c6 33 64 01
             80 2c 00 08 00 01 0d 97 c6 33 64 02
             80 22 00 14 43 6f 74 75 72 6e 2d 34 2e 36 2e 31 20 27 47 6f 72 73 74 27");
        let m = Message::parse(&b).unwrap();
        let me: SocketAddr = "198.51.100.9:41442".parse().unwrap();
        assert_eq!((m.xor_mapped, m.mapped), (Some(me), Some(me)));
        assert_eq!(
            m.response_origin,
            Some("198.51.100.1:3478".parse().unwrap())
        );
        assert_eq!(m.other_address, Some("198.51.100.2:3479".parse().unwrap()));
        assert_eq!(m.software.as_deref(), Some("Coturn-4.6.1 'Gorst'"));
        assert!(!m.fingerprint && m.unknown_required.is_empty());
    }

    /// What stund 0.97 (`stund -h IP1 -a IP2`) answered a Binding request
    /// with CHANGE-REQUEST "port": RFC 3489 attributes, the draft-era
    /// XOR-MAPPED-ADDRESS, a NUL-terminated SOFTWARE.
    #[test]
    fn stund_response() {
        let b = hex("01 01 00 44 21 12 a4 42 37 88 a7 5b 4d 6a df cb 1c 88 9b c7
             00 01 00 08 00 01 93 47 c6 33 64 09
             00 04 00 08 00 01 0d 97 c6 33 64 01
             00 05 00 08 00 01 0d 97 c6 33 64 02
             80 20 00 08 00 01 b2 55 e7 21 c0 4b
             80 22 00 10 56 6f 76 69 64 61 2e 6f 72 67 20 30 2e 39 37 00");
        let m = Message::parse(&b).unwrap();
        let me: SocketAddr = "198.51.100.9:37703".parse().unwrap();
        assert_eq!((m.xor_mapped, m.mapped), (Some(me), Some(me)));
        assert_eq!(m.source_address, Some("198.51.100.1:3479".parse().unwrap()));
        assert_eq!(
            m.changed_address,
            Some("198.51.100.2:3479".parse().unwrap())
        );
        assert_eq!(m.software.as_deref(), Some("Vovida.org 0.97"));
        assert!(m.unknown_required.is_empty());
    }

    #[test]
    fn full_response_round_trips_with_fingerprint() {
        let m = Message {
            method: BINDING,
            class: Some(Class::Success),
            transaction: [7; 12],
            xor_mapped: Some("203.0.113.1:40000".parse().unwrap()),
            mapped: Some("203.0.113.1:40000".parse().unwrap()),
            response_origin: Some("203.0.113.2:3478".parse().unwrap()),
            other_address: Some("203.0.113.3:3479".parse().unwrap()),
            source_address: Some("[2001:db8::1]:3478".parse().unwrap()),
            changed_address: Some("203.0.113.3:3479".parse().unwrap()),
            software: Some("rupnpd test".into()),
            fingerprint: true,
            ..Message::default()
        };
        let b = m.emit();
        assert_eq!(b.len() % 4, 0);
        assert_eq!(usize::from(be16(&b[2..])), b.len() - HEADER_LEN);
        assert_eq!(Message::parse(&b).unwrap(), m);
    }

    #[test]
    fn error_response_round_trips() {
        let m = Message {
            method: BINDING,
            class: Some(Class::Error),
            transaction: [9; 12],
            error: Some(ErrorCode {
                code: code::UNKNOWN_ATTRIBUTE,
                reason: "Unknown Attribute".into(),
            }),
            unknown_attributes: Some(vec![attr::CHANGE_REQUEST]),
            ..Message::default()
        };
        let b = m.emit();
        // class 4, number 20
        assert_eq!(&b[24..28], &[0, 0, 4, 20]);
        assert_eq!(Message::parse(&b).unwrap(), m);
        // An odd UNKNOWN-ATTRIBUTES list length pads to 4 and still parses.
        let mut one = m.clone();
        one.unknown_attributes = Some(vec![0x0003, 0x0024, 0x0025]);
        assert_eq!(Message::parse(&one.emit()).unwrap(), one);
    }

    #[test]
    fn framing_errors() {
        let good = rfc5769_ipv4();
        assert_eq!(
            Message::parse(&good[..19]),
            Err(Error::TooShort { len: 19 })
        );
        assert!(matches!(
            Message::parse(&vec![0u8; MAX_MESSAGE + 4]),
            Err(Error::TooLong { .. })
        ));
        let mut b = good.clone();
        b[0] |= 0x80;
        assert!(matches!(Message::parse(&b), Err(Error::NotStun { .. })));
        let mut b = good.clone();
        b[4] ^= 1;
        assert!(matches!(Message::parse(&b), Err(Error::BadCookie { .. })));
        // length not a multiple of 4, or disagreeing with the datagram
        for field in [0x3du16, 0x38, 0x40] {
            let mut b = good.clone();
            b[2..4].copy_from_slice(&field.to_be_bytes());
            assert!(matches!(Message::parse(&b), Err(Error::BadLength { .. })));
        }
        let mut trailing = good.clone();
        trailing.extend_from_slice(&[0; 4]);
        assert!(matches!(
            Message::parse(&trailing),
            Err(Error::BadLength { .. })
        ));
        // an attribute claiming more than is left
        let mut b = Message::binding_request([0; 12], None).emit();
        b.extend_from_slice(&hex("80 22 00 09 41 42 43 44"));
        b[3] = 8;
        assert_eq!(Message::parse(&b), Err(Error::Truncated { at: 20 }));
        // a value of 1 byte needs 3 bytes of padding
        let mut b = Message::binding_request([0; 12], None).emit();
        b.extend_from_slice(&hex("80 22 00 01 41"));
        b[3] = 5;
        assert!(Message::parse(&b).is_err());
    }

    #[test]
    fn fingerprint_must_be_last() {
        let mut m = Message::binding_request([3; 12], None);
        m.fingerprint = true;
        let mut b = m.emit();
        b.extend_from_slice(&hex("80 22 00 04 61 62 63 64"));
        let n = (b.len() - HEADER_LEN) as u16;
        b[2..4].copy_from_slice(&n.to_be_bytes());
        assert_eq!(
            Message::parse(&b),
            Err(Error::FingerprintNotLast { at: 20 })
        );
    }

    #[test]
    fn malformed_attributes() {
        let tx = [5u8; 12];
        let cases: [(u16, &[u8]); 7] = [
            // IPv4 family with IPv6 length, unknown family, too short
            (
                attr::XOR_MAPPED_ADDRESS,
                &[0, 1, 0, 1, 1, 2, 3, 4, 5, 6, 7, 8],
            ),
            (attr::MAPPED_ADDRESS, &[0, 3, 0, 1, 1, 2, 3, 4]),
            (attr::OTHER_ADDRESS, &[0, 1, 0]),
            (attr::CHANGE_REQUEST, &[0, 0, 6]),
            // ERROR-CODE class 2 and number 100 are out of range
            (attr::ERROR_CODE, &[0, 0, 2, 0]),
            (attr::ERROR_CODE, &[0, 0, 4, 100]),
            (attr::UNKNOWN_ATTRIBUTES, &[0, 3, 0]),
        ];
        for (kind, v) in cases {
            let mut b = Message::binding_request(tx, None).emit();
            put(&mut b, kind, v);
            set_length(&mut b, 0);
            assert_eq!(
                Message::parse(&b),
                Err(Error::BadAttribute { kind, at: 20 }),
                "{kind:#06x} {v:?}"
            );
        }
        // SOFTWARE longer than 763 bytes
        let mut b = Message::binding_request(tx, None).emit();
        put(&mut b, attr::SOFTWARE, &[b'a'; MAX_TEXT + 1]);
        set_length(&mut b, 0);
        assert!(matches!(
            Message::parse(&b),
            Err(Error::BadAttribute { .. })
        ));
    }

    #[test]
    fn first_occurrence_wins_and_integrity_hides_the_rest() {
        let tx = [2u8; 12];
        let a: SocketAddr = "192.0.2.7:1000".parse().unwrap();
        let z: SocketAddr = "192.0.2.8:2000".parse().unwrap();
        let mut b = Message::binding_request(tx, None).emit();
        put(&mut b, attr::MAPPED_ADDRESS, &address_value(a, None));
        put(&mut b, attr::MAPPED_ADDRESS, &address_value(z, None));
        // the old XOR number does not displace the RFC 5389 one
        put(
            &mut b,
            attr::XOR_MAPPED_ADDRESS,
            &address_value(a, Some(&tx)),
        );
        put(
            &mut b,
            attr::XOR_MAPPED_ADDRESS_OLD,
            &address_value(z, Some(&tx)),
        );
        put(&mut b, attr::MESSAGE_INTEGRITY, &[0; 20]);
        put(&mut b, attr::OTHER_ADDRESS, &address_value(z, None));
        set_length(&mut b, 0);
        let m = Message::parse(&b).unwrap();
        assert_eq!((m.mapped, m.xor_mapped), (Some(a), Some(a)));
        assert_eq!(m.other_address, None);
    }

    #[test]
    fn text_is_bounded_and_clean() {
        let m = Message {
            software: Some(format!("a\nb{}", "é".repeat(500))),
            ..Message::binding_request([0; 12], None)
        };
        let back = Message::parse(&m.emit()).unwrap();
        let s = back.software.unwrap();
        assert!(s.len() <= MAX_TEXT && s.starts_with("ab"));
        let mut b = Message::binding_request([0; 12], None).emit();
        put(&mut b, attr::SOFTWARE, &[0xff, b'o', b'k', 0]);
        set_length(&mut b, 0);
        assert_eq!(
            Message::parse(&b).unwrap().software.as_deref(),
            Some("\u{fffd}ok")
        );
    }
}
