//! Netlink messages (linux/netlink.h, RFC 3549 §2.2–2.3): the message
//! header, attributes, acknowledgements and errors, and the families the
//! daemon speaks — [`nftables`] (NETLINK_NETFILTER), [`route`]
//! (NETLINK_ROUTE) and [`sock_diag`] (NETLINK_SOCK_DIAG).
//!
//! Owns: the one parser of netlink datagrams every user shares
//! ([`messages`], [`attrs`], [`parse_ack`]) and the emitters of headers
//! and attributes. Pure: no IO, no clock; must not import `core`, `sys`
//! or tokio. The sockets are `sys::nfnl` (requests and dumps) and
//! `sys::netif::McastSocket` (notifications).
//!
//! Byte order: message and attribute headers are in host order (the
//! kernel's own); what is inside an attribute depends on the family
//! (nf_tables payloads are big-endian). Every length read from input is
//! checked before use, with checked arithmetic, so hostile bytes can end
//! a parse early but never panic or read out of bounds.

pub mod nftables;
pub mod route;
pub mod sock_diag;

/// Length of `struct nlmsghdr`: length, type, flags, sequence, port id.
pub const NLMSG_HDRLEN: usize = 16;
/// Message types every family shares.
pub const NLMSG_NOOP: u16 = 1;
pub const NLMSG_ERROR: u16 = 2;
pub const NLMSG_DONE: u16 = 3;
/// Request flags.
pub const NLM_F_REQUEST: u16 = 0x1;
pub const NLM_F_ACK: u16 = 0x4;
pub const NLM_F_DUMP: u16 = 0x300;
pub const NLM_F_CREATE: u16 = 0x400;
/// In an NLMSG_ERROR: the original message was not echoed (NETLINK_CAP_ACK).
pub const NLM_F_CAPPED: u16 = 0x100;
/// In an NLMSG_ERROR: extended-ack attributes follow (NETLINK_EXT_ACK).
pub const NLM_F_ACK_TLVS: u16 = 0x200;
/// Extended-ack attributes (enum nlmsgerr_attrs).
const NLMSGERR_ATTR_MSG: u16 = 1;
const NLMSGERR_ATTR_OFFS: u16 = 2;
/// Length of `struct nlattr`: length, type.
pub const NLA_HDRLEN: usize = 4;
/// Attribute type flags: the payload is itself attributes.
pub const NLA_F_NESTED: u16 = 0x8000;
const NLA_TYPE_MASK: u16 = 0x3fff;

/// One netlink message of a datagram, borrowed from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Msg<'a> {
    pub ty: u16,
    pub flags: u16,
    pub seq: u32,
    /// Everything after the 16-byte header.
    pub payload: &'a [u8],
}

/// The messages of one datagram; stops at the first malformed header.
pub fn messages(mut d: &[u8]) -> impl Iterator<Item = Msg<'_>> {
    std::iter::from_fn(move || {
        let h = d.get(..NLMSG_HDRLEN)?;
        let len = usize::try_from(ne32(h)).unwrap_or(usize::MAX);
        let Some(payload) = d.get(NLMSG_HDRLEN..len) else {
            // shorter than a header, or longer than what is left
            d = &[];
            return None;
        };
        let m = Msg {
            ty: u16::from_ne_bytes([h[4], h[5]]),
            flags: u16::from_ne_bytes([h[6], h[7]]),
            seq: ne32(&h[8..]),
            payload,
        };
        d = d.get(align4(len)..).unwrap_or(&[]);
        Some(m)
    })
}

/// Attributes with their offsets in `d`: (offset, type without flags,
/// payload). Stops at the first malformed header.
fn attrs_at(d: &[u8]) -> impl Iterator<Item = (usize, u16, &[u8])> {
    let mut at = 0usize;
    std::iter::from_fn(move || {
        let h = d.get(at..at.checked_add(NLA_HDRLEN)?)?;
        let len = usize::from(u16::from_ne_bytes([h[0], h[1]]));
        let ty = u16::from_ne_bytes([h[2], h[3]]) & NLA_TYPE_MASK;
        let payload = at
            .checked_add(len)
            .filter(|_| len >= NLA_HDRLEN)
            .and_then(|end| d.get(at + NLA_HDRLEN..end));
        let Some(payload) = payload else {
            at = d.len();
            return None;
        };
        let here = at;
        at = at.saturating_add(align4(len)).min(d.len());
        Some((here, ty, payload))
    })
}

/// Attributes of `d` as (type without flags, payload).
pub fn attrs(d: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    attrs_at(d).map(|(_, t, p)| (t, p))
}

/// The payload of the first attribute of type `ty`.
fn attr(d: &[u8], ty: u16) -> Option<&[u8]> {
    attrs(d).find(|(t, _)| *t == ty).map(|(_, v)| v)
}

/// Netlink pads messages and attributes to 4 bytes (NLMSG_ALIGN, NLA_ALIGN).
fn align4(n: usize) -> usize {
    n.saturating_add(3) & !3
}

/// A host-order u32 at the start of `p` (callers pass at least 4 bytes).
fn ne32(p: &[u8]) -> u32 {
    match p {
        [a, b, c, d, ..] => u32::from_ne_bytes([*a, *b, *c, *d]),
        _ => 0,
    }
}

fn be32(p: &[u8]) -> Option<u32> {
    Some(u32::from_be_bytes(p.get(..4)?.try_into().ok()?))
}

fn be64(p: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(p.get(..8)?.try_into().ok()?))
}

/// A string attribute up to its NUL (the whole payload if none).
fn strz(p: &[u8]) -> &[u8] {
    let end = p.iter().position(|b| *b == 0).unwrap_or(p.len());
    &p[..end]
}

/// An NLMSG_ERROR: errno 0 is an acknowledgement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ack<'a> {
    /// A negative errno, or 0.
    pub errno: i32,
    /// The kernel's extended-ack message.
    pub msg: Option<&'a str>,
    /// Offset of the offending attribute in the original message.
    pub offs: Option<u32>,
}

/// Parses an NLMSG_ERROR payload (struct nlmsgerr: the errno and the
/// original header, its payload too unless NLM_F_CAPPED; then, with
/// NLM_F_ACK_TLVS, extended-ack attributes).
pub fn parse_ack<'a>(m: &Msg<'a>) -> Option<Ack<'a>> {
    let p = m.payload;
    let errno = i32::from_ne_bytes(p.get(..4)?.try_into().ok()?);
    let mut ack = Ack {
        errno,
        msg: None,
        offs: None,
    };
    if m.flags & NLM_F_ACK_TLVS != 0 {
        let orig = p.get(4..4 + NLMSG_HDRLEN)?;
        let tlv_at = if m.flags & NLM_F_CAPPED != 0 {
            4 + NLMSG_HDRLEN
        } else {
            // An echo longer than the message leaves no room for TLVs.
            usize::try_from(ne32(orig))
                .ok()
                .and_then(|len| align4(len).checked_add(4))
                .unwrap_or(usize::MAX)
        };
        for (t, v) in attrs(p.get(tlv_at..).unwrap_or(&[])) {
            match t {
                NLMSGERR_ATTR_MSG => ack.msg = std::str::from_utf8(strz(v)).ok(),
                NLMSGERR_ATTR_OFFS if v.len() >= 4 => ack.offs = Some(ne32(v)),
                _ => {}
            }
        }
    }
    Some(ack)
}

/// The status an NLMSG_DONE carries: 0, or a negative errno when the
/// dump failed part way.
pub fn done_errno(m: &Msg<'_>) -> i32 {
    m.payload
        .get(..4)
        .map_or(0, |b| i32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
}

/// One request message: the header, then what `body` writes; the length
/// is filled in at the end.
pub fn request(ty: u16, flags: u16, seq: u32, body: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    let mut buf = Vec::with_capacity(128);
    let start = msg_begin(&mut buf, ty, flags, seq);
    body(&mut buf);
    msg_end(&mut buf, start);
    buf
}

/// Starts a message at the end of `buf`; [`msg_end`] fills in its length.
fn msg_begin(buf: &mut Vec<u8>, ty: u16, flags: u16, seq: u32) -> usize {
    let start = buf.len();
    buf.extend_from_slice(&0u32.to_ne_bytes());
    buf.extend_from_slice(&ty.to_ne_bytes());
    buf.extend_from_slice(&flags.to_ne_bytes());
    buf.extend_from_slice(&seq.to_ne_bytes());
    buf.extend_from_slice(&0u32.to_ne_bytes());
    start
}

fn msg_end(buf: &mut [u8], start: usize) {
    let len = u32::try_from(buf.len().saturating_sub(start)).unwrap_or(u32::MAX);
    if let Some(f) = buf.get_mut(start..start + 4) {
        f.copy_from_slice(&len.to_ne_bytes());
    }
}

/// Numbers the message starting at `start`.
fn set_seq(buf: &mut [u8], start: usize, seq: u32) {
    if let Some(f) = buf.get_mut(start + 8..start + 12) {
        f.copy_from_slice(&seq.to_ne_bytes());
    }
}

fn pad(buf: &mut Vec<u8>) {
    buf.resize(align4(buf.len()), 0);
}

/// The header of an attribute whose payload is `payload_len` bytes. A
/// payload too long for the u16 length saturates it, which the kernel
/// refuses, rather than wrapping into a shorter valid attribute.
fn put_header(buf: &mut Vec<u8>, ty: u16, payload_len: usize) {
    let len = u16::try_from(NLA_HDRLEN.saturating_add(payload_len)).unwrap_or(u16::MAX);
    buf.extend_from_slice(&len.to_ne_bytes());
    buf.extend_from_slice(&ty.to_ne_bytes());
}

fn put_attr(buf: &mut Vec<u8>, ty: u16, payload: &[u8]) {
    put_header(buf, ty, payload.len());
    buf.extend_from_slice(payload);
    pad(buf);
}

/// A NUL-terminated string attribute, as nft sends names.
fn put_strz(buf: &mut Vec<u8>, ty: u16, s: &str) {
    put_header(buf, ty, s.len().saturating_add(1));
    buf.extend_from_slice(s.as_bytes());
    buf.push(0);
    pad(buf);
}

fn put_be64(buf: &mut Vec<u8>, ty: u16, v: u64) {
    put_attr(buf, ty, &v.to_be_bytes())
}

/// Starts a nested attribute; [`nest_end`] fills in its length.
fn nest_begin(buf: &mut Vec<u8>, ty: u16) -> usize {
    let start = buf.len();
    buf.extend_from_slice(&0u16.to_ne_bytes());
    buf.extend_from_slice(&(ty | NLA_F_NESTED).to_ne_bytes());
    start
}

fn nest_end(buf: &mut [u8], start: usize) {
    // Callers keep nests under 64 KiB; saturating keeps a violation a
    // kernel error instead of a wrapped length.
    let len = u16::try_from(buf.len().saturating_sub(start)).unwrap_or(u16::MAX);
    if let Some(f) = buf.get_mut(start..start + 2) {
        f.copy_from_slice(&len.to_ne_bytes());
    }
}

/// Test vectors: expected bytes in host order, and real kernel captures.
#[cfg(test)]
mod vectors {
    use super::*;

    /// Builds expected bytes from (host-order u32 / u16 / raw) pieces, so
    /// a vector holds on either byte order.
    #[derive(Clone, Copy)]
    pub enum P<'a> {
        U32(u32),
        U16(u16),
        B(&'a [u8]),
    }

    pub fn bytes(parts: &[P<'_>]) -> Vec<u8> {
        bytes_in(cfg!(target_endian = "big"), parts)
    }

    pub fn bytes_in(big: bool, parts: &[P<'_>]) -> Vec<u8> {
        let mut v = Vec::new();
        for p in parts {
            match (p, big) {
                (P::U32(x), false) => v.extend_from_slice(&x.to_le_bytes()),
                (P::U32(x), true) => v.extend_from_slice(&x.to_be_bytes()),
                (P::U16(x), false) => v.extend_from_slice(&x.to_le_bytes()),
                (P::U16(x), true) => v.extend_from_slice(&x.to_be_bytes()),
                (P::B(b), _) => v.extend_from_slice(b),
            }
        }
        v
    }

    /// The netlink family a capture came from: what follows each header.
    #[derive(Clone, Copy)]
    pub enum Family {
        /// nfgenmsg (4 bytes, no host-order field), then attributes.
        Netfilter,
        /// ndmsg (12 bytes: ifindex and state in host order), then attributes.
        Route,
        /// inet_diag_msg (72 bytes: interface, cookie, queues, uid and inode
        /// in host order), then attributes.
        SockDiag,
    }

    /// Bytes captured from a little-endian kernel (as hex), as this
    /// host's kernel would send them: on a big-endian host every message
    /// and attribute header, the host-order fields of the family headers
    /// and of NLMSG_ERROR/NLMSG_DONE are swapped. Host-order values
    /// inside other attributes (none of which our parsers read) stay as
    /// captured. On every host the big-endian form is walked again as
    /// big-endian, so a conversion that breaks a length fails here.
    pub fn capture(family: Family, hex: &str) -> Vec<u8> {
        let le = unhex(hex);
        let be = to_big_endian(family, &le);
        walk(family, &mut be.clone(), true, false);
        if cfg!(target_endian = "big") { be } else { le }
    }

    pub fn unhex(hex: &str) -> Vec<u8> {
        let digits: Vec<u8> = hex
            .bytes()
            .filter(|c| c.is_ascii_hexdigit())
            .map(|c| (c as char).to_digit(16).unwrap() as u8)
            .collect();
        assert_eq!(digits.len() % 2, 0, "odd number of hex digits");
        digits.chunks(2).map(|p| p[0] << 4 | p[1]).collect()
    }

    /// Little-endian captures to big-endian.
    pub fn to_big_endian(family: Family, le: &[u8]) -> Vec<u8> {
        let mut d = le.to_vec();
        walk(family, &mut d, false, true);
        d
    }

    /// Whether the attribute at `path` (types from the message body
    /// down) nests, in an nf_tables message of type `ty`. The kernel does
    /// not flag nests in what it sends (NLA_F_NESTED), so this names
    /// those our parsers descend into: a set element list's elements,
    /// their keys, data and expressions. Others (a rule's expressions)
    /// are opaque to our parsers and stay as captured.
    fn nft_nests(ty: u16, path: &[u16]) -> bool {
        // NEWSETELEM 12, GETSETELEM 13, DELSETELEM 14
        matches!(ty & 0xff, 12..=14)
            && matches!(
                path,
                [3] | [3, 1]
                    | [3, 1, 1 | 2 | 7 | 10 | 11]
                    | [3, 1, 7, 2]
                    | [3, 1, 11, 1]
                    | [3, 1, 11, 1, 2]
            )
    }

    /// Walks messages and attributes whose headers are in the byte order
    /// `big`, asserting that every length fits what contains it, and
    /// with `swap` turns each host-order field it passes around.
    struct Walk<'a> {
        d: &'a mut [u8],
        big: bool,
        swap: bool,
    }

    impl Walk<'_> {
        fn read(&self, at: usize, n: usize) -> usize {
            let mut b = [0u8; 4];
            b[4 - n..].copy_from_slice(&self.d[at..at + n]);
            if !self.big {
                b[4 - n..].reverse();
            }
            u32::from_be_bytes(b) as usize
        }

        fn turn(&mut self, at: usize, n: usize) {
            if self.swap {
                self.d[at..at + n].reverse();
            }
        }

        fn header(&mut self, at: usize) {
            for (off, n) in [(0, 4), (4, 2), (6, 2), (8, 4), (12, 4)] {
                self.turn(at + off, n);
            }
        }

        /// The attributes in `d[from..to]` and those nested in them;
        /// `offs` also turns NLMSGERR_ATTR_OFFS payloads.
        fn attrs(&mut self, (from, to): (usize, usize), msg: u16, path: &mut Vec<u16>, offs: bool) {
            let mut at = from;
            while at + 4 <= to {
                let (len, ty) = (self.read(at, 2), self.read(at + 2, 2) as u16);
                assert!(len >= 4 && at + len <= to, "capture: bad attribute at {at}");
                self.turn(at, 2);
                self.turn(at + 2, 2);
                path.push(ty & NLA_TYPE_MASK);
                if ty & NLA_F_NESTED != 0 || nft_nests(msg, path) {
                    self.attrs((at + 4, at + len), msg, path, false);
                } else if offs && ty == NLMSGERR_ATTR_OFFS {
                    self.turn(at + 4, 4);
                }
                path.pop();
                at += align4(len);
            }
            assert_eq!(at.min(to), to, "capture: bytes after the attributes");
        }
    }

    fn walk(family: Family, d: &mut [u8], big: bool, swap: bool) {
        let w = &mut Walk { d, big, swap };
        let path = &mut Vec::new();
        let mut at = 0;
        while at < w.d.len() {
            let (len, ty, flags) = (w.read(at, 4), w.read(at + 4, 2) as u16, w.read(at + 6, 2));
            assert!(
                len >= NLMSG_HDRLEN && at + len <= w.d.len(),
                "capture: bad header at {at}"
            );
            let (body, end) = (at + NLMSG_HDRLEN, at + len);
            w.header(at);
            match ty {
                NLMSG_ERROR => {
                    let orig_len = w.read(body + 4, 4);
                    w.turn(body, 4);
                    w.header(body + 4);
                    let tlvs = if flags as u16 & NLM_F_CAPPED != 0 {
                        body + 4 + NLMSG_HDRLEN
                    } else {
                        body + 4 + align4(orig_len)
                    };
                    w.attrs((tlvs, end), ty, path, true);
                }
                NLMSG_DONE => w.turn(body, 4),
                _ => match family {
                    Family::Netfilter => w.attrs((body + 4, end), ty, path, false),
                    Family::Route => {
                        w.turn(body + 4, 4);
                        w.turn(body + 8, 2);
                        w.attrs((body + 12, end), ty, path, false);
                    }
                    Family::SockDiag => {
                        for off in (40..72).step_by(4) {
                            w.turn(body + off, 4);
                        }
                        w.attrs((body + 72, end), ty, path, false);
                    }
                },
            }
            at += align4(len);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::vectors::{Family, P, bytes, bytes_in, capture, to_big_endian, unhex};
    use super::*;

    /// What Linux 6.18 answered, with NETLINK_CAP_ACK and NETLINK_EXT_ACK,
    /// to a batch whose DELSETELEM (sequence 11) named two elements of
    /// `inet fw4 upnp_dnat`, the second of them absent: ENOENT, the
    /// original header without payload, and the offset of the second
    /// element (68 bytes into the message).
    const REFUSED: &str = "2c000000 02000003 0b000000 a9430000 \
         feffffff 58000000 0e0a0500 0b000000 00000000 08000200 44000000";

    #[test]
    fn a_kernel_refusal_with_extended_ack() {
        let d = capture(Family::Netfilter, REFUSED);
        let all: Vec<Msg<'_>> = messages(&d).collect();
        assert_eq!(all.len(), 1);
        let m = all[0];
        assert_eq!((m.ty, m.seq), (NLMSG_ERROR, 11));
        assert_eq!(m.flags, NLM_F_CAPPED | NLM_F_ACK_TLVS);
        assert_eq!(
            parse_ack(&m),
            Some(Ack {
                errno: -2,
                msg: None,
                offs: Some(68)
            })
        );
    }

    /// The conversion of captures for big-endian hosts, checked here on
    /// either host against the same message written out field by field.
    #[test]
    fn captures_convert_to_big_endian() {
        let be = bytes_in(
            true,
            &[
                P::U32(44),
                P::U16(NLMSG_ERROR),
                P::U16(NLM_F_CAPPED | NLM_F_ACK_TLVS),
                P::U32(11),
                P::U32(0x43a9),
                P::U32(-2i32 as u32),
                P::U32(88),
                P::U16(0x0a0e),
                P::U16(5),
                P::U32(11),
                P::U32(0),
                P::U16(8),
                P::U16(NLMSGERR_ATTR_OFFS),
                P::U32(68),
            ],
        );
        assert_eq!(to_big_endian(Family::Netfilter, &unhex(REFUSED)), be);
    }

    #[test]
    fn acks_and_extended_errors() {
        let ack = |seq: u32, errno: i32, tlvs: &[u8], flags: u16| {
            let len = 16 + 4 + 16 + tlvs.len();
            bytes(&[
                P::U32(len as u32),
                P::U16(NLMSG_ERROR),
                P::U16(flags),
                P::U32(seq),
                P::U32(1234),
                P::U32(errno as u32),
                // the original header (capped: no payload)
                P::U32(200),
                P::U16(0x0a0c),
                P::U16(5),
                P::U32(seq),
                P::U32(0),
                P::B(tlvs),
            ])
        };
        let plain = ack(5, 0, &[], NLM_F_CAPPED);
        let m = messages(&plain).next().unwrap();
        assert_eq!((m.ty, m.seq), (NLMSG_ERROR, 5));
        assert_eq!(
            parse_ack(&m),
            Some(Ack {
                errno: 0,
                msg: None,
                offs: None
            })
        );
        let tlvs = bytes(&[
            P::U16(12),
            P::U16(NLMSGERR_ATTR_MSG),
            P::B(b"no way\0\0"),
            P::U16(8),
            P::U16(NLMSGERR_ATTR_OFFS),
            P::U32(60),
        ]);
        let err = ack(6, -17, &tlvs, NLM_F_CAPPED | NLM_F_ACK_TLVS);
        let m = messages(&err).next().unwrap();
        assert_eq!(
            parse_ack(&m),
            Some(Ack {
                errno: -17,
                msg: Some("no way"),
                offs: Some(60)
            })
        );
        // uncapped: the TLVs follow the echoed message, whose length is
        // input and must not overflow the offset
        let mut huge = err.clone();
        huge[20..24].copy_from_slice(&u32::MAX.to_ne_bytes());
        huge[6..8].copy_from_slice(&NLM_F_ACK_TLVS.to_ne_bytes());
        let m = messages(&huge).next().unwrap();
        assert_eq!(parse_ack(&m).map(|a| a.errno), Some(-17));
        // truncated or garbage input: no panic, no result beyond the bytes
        for cut in 0..err.len() {
            for m in messages(&err[..cut]) {
                let _ = parse_ack(&m);
            }
        }
        assert_eq!(messages(&[0xff; 40]).count(), 0);
        assert_eq!(messages(&[0; 40]).count(), 0);
    }

    #[test]
    fn messages_and_attributes_stop_at_what_is_malformed() {
        let two = bytes(&[
            P::U32(20),
            P::U16(NLMSG_DONE),
            P::U16(2),
            P::U32(9),
            P::U32(0),
            P::U32(-4i32 as u32),
            // the second claims more than is there
            P::U32(64),
            P::U16(NLMSG_NOOP),
            P::U16(0),
            P::U32(9),
            P::U32(0),
        ]);
        let all: Vec<_> = messages(&two).collect();
        assert_eq!(all.len(), 1);
        assert_eq!(done_errno(&all[0]), -4);
        // a 5-byte attribute is padded; one of length 2 ends the walk
        let a = bytes(&[
            P::U16(5),
            P::U16(1 | NLA_F_NESTED),
            P::B(&[7, 0, 0, 0]),
            P::U16(4),
            P::U16(2),
            P::U16(2),
            P::U16(3),
            P::U16(4),
            P::U16(4),
        ]);
        let got: Vec<_> = attrs_at(&a).collect();
        assert_eq!(got, vec![(0, 1, &[7][..]), (8, 2, &[][..])]);
        assert_eq!(attr(&a, 2), Some(&[][..]));
        assert_eq!(attr(&a, 4), None);
        // a length past the end
        assert_eq!(
            attrs(&bytes(&[P::U16(9), P::U16(1), P::B(&[1])])).count(),
            0
        );
    }

    #[test]
    fn requests_and_attributes_emit_in_host_order() {
        let req = request(0x0a0d, NLM_F_REQUEST | NLM_F_DUMP, 7, |b| {
            b.extend_from_slice(&[1, 0, 0, 0]);
            put_strz(b, 1, "fw4");
            put_attr(b, 2, &[1, 2, 3, 4, 5]);
            let n = nest_begin(b, 3);
            put_be64(b, 4, 0x0102);
            nest_end(b, n);
        });
        let want = bytes(&[
            P::U32(56),
            P::U16(0x0a0d),
            P::U16(NLM_F_REQUEST | NLM_F_DUMP),
            P::U32(7),
            P::U32(0),
            P::B(&[1, 0, 0, 0]),
            P::U16(8),
            P::U16(1),
            P::B(b"fw4\0"),
            P::U16(9),
            P::U16(2),
            P::B(&[1, 2, 3, 4, 5, 0, 0, 0]),
            P::U16(16),
            P::U16(3 | NLA_F_NESTED),
            P::U16(12),
            P::U16(4),
            P::B(&[0, 0, 0, 0, 0, 0, 1, 2]),
        ]);
        assert_eq!(req, want);
        // and reads back
        let m = messages(&req).next().unwrap();
        assert_eq!((m.ty, m.seq, m.payload.len()), (0x0a0d, 7, 40));
        let a: Vec<_> = attrs(&m.payload[4..]).collect();
        assert_eq!(a[0], (1, &b"fw4\0"[..]));
        assert_eq!(strz(a[0].1), b"fw4");
        assert_eq!(be64(attr(a[2].1, 4).unwrap()), Some(0x0102));
        let mut s = req.clone();
        set_seq(&mut s, 0, 8);
        assert_eq!(messages(&s).next().unwrap().seq, 8);
        // an oversized payload saturates its length instead of wrapping
        let mut big = Vec::new();
        put_attr(&mut big, 1, &[0; 70_000]);
        assert_eq!(&big[..2], &u16::MAX.to_ne_bytes());
    }
}
