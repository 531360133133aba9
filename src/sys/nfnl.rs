//! A small synchronous nf_tables client over NETLINK_NETFILTER, for the
//! per-mapping hot path: set and map elements.
//!
//! Owns: the wire format of element transactions (one batch =
//! NFNL_MSG_BATCH_BEGIN, NEWSETELEM / DELSETELEM / DELRULE messages,
//! NFNL_MSG_BATCH_END, which the kernel commits or discards whole),
//! element, rule, table and chain queries and the parsing of their
//! replies, and one blocking socket. Building and parsing are pure
//! functions tested with byte vectors; only [`Socket`] does IO. Knows
//! nothing about mappings (that is `sys::nft`) and imports nothing of the
//! daemon; from `core` only the [`Counters`] type.
//!
//! Byte order: netlink message and attribute headers are in host order;
//! nf_tables payloads (keys, data, timeouts, counters, flags) are
//! big-endian (linux/netfilter/nf_tables.h).

use std::fmt;
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use crate::core::firewall::Counters;

// linux/netlink.h
const NLMSG_HDRLEN: usize = 16;
const NLMSG_NOOP: u16 = 1;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const NLM_F_DUMP: u16 = 0x300;
const NLM_F_CREATE: u16 = 0x400;
/// In an NLMSG_ERROR: the original message was not echoed (NETLINK_CAP_ACK).
const NLM_F_CAPPED: u16 = 0x100;
/// In an NLMSG_ERROR: extended-ack attributes follow (NETLINK_EXT_ACK).
const NLM_F_ACK_TLVS: u16 = 0x200;
const NLMSGERR_ATTR_MSG: u16 = 1;
const NLMSGERR_ATTR_OFFS: u16 = 2;
const NLA_HDRLEN: usize = 4;
const NLA_F_NESTED: u16 = 0x8000;
const NLA_TYPE_MASK: u16 = 0x3fff;

// linux/netfilter/nfnetlink.h
const NFNL_SUBSYS_NFTABLES: u16 = 10;
const NFNL_MSG_BATCH_BEGIN: u16 = 0x10;
const NFNL_MSG_BATCH_END: u16 = 0x11;
const NFGENMSG_LEN: usize = 4;
/// linux/netfilter.h: the `inet` family (IPv4 and IPv6 in one table).
pub const NFPROTO_INET: u8 = 1;

// linux/netfilter/nf_tables.h: enum nf_tables_msg_types
const NFT_MSG_GETTABLE: u16 = 1;
const NFT_MSG_GETCHAIN: u16 = 4;
const NFT_MSG_NEWRULE: u16 = 6;
const NFT_MSG_GETRULE: u16 = 7;
const NFT_MSG_DELRULE: u16 = 8;
const NFT_MSG_NEWSETELEM: u16 = 12;
const NFT_MSG_GETSETELEM: u16 = 13;
const NFT_MSG_DELSETELEM: u16 = 14;
// enum nft_table_attributes / nft_chain_attributes / nft_rule_attributes
const NFTA_TABLE_NAME: u16 = 1;
const NFTA_CHAIN_TABLE: u16 = 1;
const NFTA_CHAIN_NAME: u16 = 3;
const NFTA_RULE_TABLE: u16 = 1;
const NFTA_RULE_CHAIN: u16 = 2;
const NFTA_RULE_USERDATA: u16 = 7;
// enum nft_set_elem_list_attributes
const NFTA_SET_ELEM_LIST_TABLE: u16 = 1;
const NFTA_SET_ELEM_LIST_SET: u16 = 2;
const NFTA_SET_ELEM_LIST_ELEMENTS: u16 = 3;
// enum nft_list_attributes
const NFTA_LIST_ELEM: u16 = 1;
// enum nft_set_elem_attributes
const NFTA_SET_ELEM_KEY: u16 = 1;
const NFTA_SET_ELEM_DATA: u16 = 2;
const NFTA_SET_ELEM_FLAGS: u16 = 3;
const NFTA_SET_ELEM_TIMEOUT: u16 = 4;
const NFTA_SET_ELEM_EXPIRATION: u16 = 5;
const NFTA_SET_ELEM_EXPR: u16 = 7;
const NFTA_SET_ELEM_KEY_END: u16 = 10;
const NFTA_SET_ELEM_EXPRESSIONS: u16 = 11;
// enum nft_data_attributes, nft_expr_attributes, nft_counter_attributes
const NFTA_DATA_VALUE: u16 = 1;
const NFTA_EXPR_NAME: u16 = 1;
const NFTA_EXPR_DATA: u16 = 2;
const NFTA_COUNTER_BYTES: u16 = 1;
const NFTA_COUNTER_PACKETS: u16 = 2;
/// libnftnl's rule user data: TLVs of (u8 type, u8 length, value); type 0
/// is the rule's comment, NUL-terminated (NFTNL_UDATA_RULE_COMMENT).
const UDATA_RULE_COMMENT: u8 = 0;

/// Longest key or value nf_tables accepts (NFT_DATA_VALUE_MAXLEN).
pub const DATA_MAX: usize = 64;
/// An element list is one nested attribute, whose length is a u16: a
/// message is closed once its list passes this many bytes (an element
/// is under 400 bytes, so the list stays well below 64 KiB).
const LIST_SOFT_MAX: usize = 32 * 1024;
/// Largest batch we send (one sendmsg; the kernel takes it as one skb).
const BATCH_MAX: usize = 64 << 20;
/// Receive buffer: dump replies are at most 32 KiB per datagram, acks
/// are small (NETLINK_CAP_ACK).
const RECV_BUF: usize = 64 * 1024;
/// How long one reply may take. The kernel answers a batch before
/// sendmsg returns; this only bounds a wait that should never happen.
const REPLY_TIMEOUT_MS: i32 = 5000;
/// Bytes a dump may return before we give up on it.
const DUMP_MAX: usize = 64 << 20;

/// A set key or map value: concatenated fields, each padded to a 32-bit
/// register as nf_tables lays concatenations out (NFT_REG32_SIZE).
#[derive(Clone, Copy)]
pub struct Data {
    len: u8,
    buf: [u8; DATA_MAX],
}

impl Data {
    pub const fn new() -> Data {
        Data {
            len: 0,
            buf: [0; DATA_MAX],
        }
    }

    /// Raw bytes, as a dump returns them (None if longer than any key).
    pub fn from_bytes(b: &[u8]) -> Option<Data> {
        let mut d = Data::new();
        d.buf.get_mut(..b.len())?.copy_from_slice(b);
        d.len = b.len() as u8;
        Some(d)
    }

    /// Appends a field and its padding to the next 4-byte boundary. Our
    /// set types are at most 44 bytes; a field that would not fit is
    /// dropped, and the kernel then refuses the wrong key length.
    fn field(mut self, f: &[u8]) -> Data {
        let at = usize::from(self.len);
        let padded = f.len().div_ceil(4) * 4;
        if let Some(dst) = self.buf.get_mut(at..at + padded) {
            dst.fill(0);
            dst[..f.len()].copy_from_slice(f);
            self.len = (at + padded) as u8;
        }
        self
    }

    /// `inet_proto`: one byte.
    pub fn proto(self, p: u8) -> Data {
        self.field(&[p])
    }

    /// `inet_service`: a port, two bytes in network order.
    pub fn service(self, port: u16) -> Data {
        self.field(&port.to_be_bytes())
    }

    /// `ipv4_addr`: four bytes in network order.
    pub fn ipv4(self, a: Ipv4Addr) -> Data {
        self.field(&a.octets())
    }

    /// `ipv6_addr`: sixteen bytes in network order.
    pub fn ipv6(self, a: Ipv6Addr) -> Data {
        self.field(&a.octets())
    }

    pub fn as_bytes(&self) -> &[u8] {
        self.buf.get(..usize::from(self.len)).unwrap_or(&[])
    }
}

impl Default for Data {
    fn default() -> Data {
        Data::new()
    }
}

impl PartialEq for Data {
    fn eq(&self, o: &Data) -> bool {
        self.as_bytes() == o.as_bytes()
    }
}

impl Eq for Data {}

impl std::hash::Hash for Data {
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        self.as_bytes().hash(h)
    }
}

impl fmt::Debug for Data {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex(self.as_bytes()))
    }
}

/// Lower-case hex, 4-byte groups separated by spaces (as nft's debug
/// output groups register words).
pub fn hex(b: &[u8]) -> String {
    let mut s = String::with_capacity(b.len() * 9 / 4 + 1);
    for (i, x) in b.iter().enumerate() {
        if i > 0 && i % 4 == 0 {
            s.push(' ');
        }
        s.push(char::from(b"0123456789abcdef"[usize::from(x >> 4)]));
        s.push(char::from(b"0123456789abcdef"[usize::from(x & 15)]));
    }
    s
}

/// One set or map element to add or delete. Deletes send only the key
/// (and key end); the rest is for adds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Elem {
    pub key: Data,
    /// Inclusive end of the key range in interval sets (pipapo for
    /// concatenations), Linux ≥ 5.6.
    pub key_end: Option<Data>,
    /// A map element's value.
    pub data: Option<Data>,
    /// Lifetime in milliseconds; none = permanent.
    pub timeout_ms: Option<u64>,
    /// Time left until expiry. Together with the timeout it also renews
    /// an existing element in place (Linux ≥ 6.12); older kernels leave
    /// an existing element as it is.
    pub expiration_ms: Option<u64>,
    /// Initial counter values, for a counter carried over a renewal; none
    /// = the set's counter template (zero).
    pub counter: Option<Counters>,
}

/// What one batched message does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum What {
    Add,
    Delete,
    Flush,
    FlushChain,
}

/// One message of a batch, for matching acks and naming failures.
#[derive(Clone, Debug)]
struct Sent {
    start: usize,
    what: What,
    /// Set or chain name.
    object: String,
}

/// A transaction on one table of family `inet`: element adds and
/// deletes, set flushes and chain flushes, in order. Consecutive element
/// operations of one kind on one set share a message.
#[derive(Debug)]
pub struct Batch {
    table: String,
    buf: Vec<u8>,
    sent: Vec<Sent>,
    /// The element message still open: (index into `sent`, offset of its
    /// element-list attribute).
    open: Option<(usize, usize)>,
}

/// A batch ready to send, with the sequence numbers it carries.
#[derive(Debug)]
pub struct Built {
    pub bytes: Vec<u8>,
    /// Sequence number of the BATCH_BEGIN message; inner messages follow
    /// it, BATCH_END comes last.
    pub begin_seq: u32,
    sent: Vec<Sent>,
}

impl Batch {
    pub fn new(table: &str) -> Batch {
        let mut buf = Vec::with_capacity(256);
        let begin = msg_begin(&mut buf, NFNL_MSG_BATCH_BEGIN, NLM_F_REQUEST, 0);
        // The batch header names the subsystem in res_id, network order.
        put_nfgen(&mut buf, 0, NFNL_SUBSYS_NFTABLES);
        msg_end(&mut buf, begin);
        Batch {
            table: table.to_string(),
            buf,
            sent: Vec::new(),
            open: None,
        }
    }

    /// No operation in it.
    pub fn is_empty(&self) -> bool {
        self.sent.is_empty()
    }

    /// Bytes so far.
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    /// Adds an element; an identical existing element is no error
    /// (NLM_F_CREATE without NLM_F_EXCL), one with other data is.
    pub fn add(&mut self, set: &str, e: &Elem) {
        self.elem(What::Add, set, e)
    }

    /// Deletes an element; one that is not there fails the batch.
    pub fn delete(&mut self, set: &str, e: &Elem) {
        self.elem(What::Delete, set, e)
    }

    /// Removes every element of a set (DELSETELEM without elements).
    pub fn flush(&mut self, set: &str) {
        self.close();
        let start = self.message(
            NFT_MSG_DELSETELEM,
            NLM_F_REQUEST | NLM_F_ACK,
            What::Flush,
            set,
        );
        put_strz(&mut self.buf, NFTA_SET_ELEM_LIST_TABLE, &self.table);
        put_strz(&mut self.buf, NFTA_SET_ELEM_LIST_SET, set);
        msg_end(&mut self.buf, start);
    }

    /// Removes every rule of a chain (DELRULE without a handle).
    pub fn flush_chain(&mut self, chain: &str) {
        self.close();
        let start = self.message(
            NFT_MSG_DELRULE,
            NLM_F_REQUEST | NLM_F_ACK,
            What::FlushChain,
            chain,
        );
        put_strz(&mut self.buf, NFTA_RULE_TABLE, &self.table);
        put_strz(&mut self.buf, NFTA_RULE_CHAIN, chain);
        msg_end(&mut self.buf, start);
    }

    fn message(&mut self, ty: u16, flags: u16, what: What, object: &str) -> usize {
        let start = msg_begin(&mut self.buf, nft_type(ty), flags, 0);
        put_nfgen(&mut self.buf, NFPROTO_INET, 0);
        self.sent.push(Sent {
            start,
            what,
            object: object.to_string(),
        });
        start
    }

    fn elem(&mut self, what: What, set: &str, e: &Elem) {
        let reuse = self.open.is_some_and(|(i, list)| {
            self.sent
                .get(i)
                .is_some_and(|s| s.what == what && s.object == set)
                && self.buf.len() - list < LIST_SOFT_MAX
        });
        if !reuse {
            self.close();
            let (ty, flags) = match what {
                What::Add => (NFT_MSG_NEWSETELEM, NLM_F_REQUEST | NLM_F_CREATE | NLM_F_ACK),
                _ => (NFT_MSG_DELSETELEM, NLM_F_REQUEST | NLM_F_ACK),
            };
            self.message(ty, flags, what, set);
            put_strz(&mut self.buf, NFTA_SET_ELEM_LIST_TABLE, &self.table);
            put_strz(&mut self.buf, NFTA_SET_ELEM_LIST_SET, set);
            let list = nest_begin(&mut self.buf, NFTA_SET_ELEM_LIST_ELEMENTS);
            self.open = Some((self.sent.len() - 1, list));
        }
        put_elem(&mut self.buf, e, what == What::Add);
    }

    /// Ends the open element message, if any.
    fn close(&mut self) {
        if let Some((i, list)) = self.open.take() {
            nest_end(&mut self.buf, list);
            if let Some(s) = self.sent.get(i) {
                let start = s.start;
                msg_end(&mut self.buf, start);
            }
        }
    }

    /// Closes the batch and numbers its messages from `begin_seq`.
    pub fn finish(mut self, begin_seq: u32) -> Built {
        self.close();
        let end = msg_begin(&mut self.buf, NFNL_MSG_BATCH_END, NLM_F_REQUEST, 0);
        put_nfgen(&mut self.buf, 0, NFNL_SUBSYS_NFTABLES);
        msg_end(&mut self.buf, end);
        let mut seq = begin_seq;
        let starts = std::iter::once(0)
            .chain(self.sent.iter().map(|s| s.start))
            .chain(std::iter::once(end));
        for start in starts {
            if let Some(f) = self.buf.get_mut(start + 8..start + 12) {
                f.copy_from_slice(&seq.to_ne_bytes());
            }
            seq = seq.wrapping_add(1);
        }
        Built {
            bytes: self.buf,
            begin_seq,
            sent: self.sent,
        }
    }
}

impl Built {
    /// Messages between BATCH_BEGIN and BATCH_END.
    fn inner(&self) -> usize {
        self.sent.len()
    }

    /// Index of the inner message with this sequence number.
    fn index(&self, seq: u32) -> Option<usize> {
        let i = seq.wrapping_sub(self.begin_seq).wrapping_sub(1) as usize;
        (i < self.sent.len()).then_some(i)
    }

    /// Names the failed operation: what, on which set, and the element
    /// key when the kernel pointed at the attribute (extended ack).
    fn describe(&self, i: usize, ack: &Ack<'_>) -> Error {
        let Some(s) = self.sent.get(i) else {
            return Error::Refused {
                op: "commit".into(),
                errno: ack.errno,
                detail: ack.msg.map(str::to_string),
            };
        };
        let mut op = match s.what {
            What::Add => format!("add element to {}", s.object),
            What::Delete => format!("delete element from {}", s.object),
            What::Flush => format!("flush set {}", s.object),
            What::FlushChain => format!("flush chain {}", s.object),
        };
        let end = self
            .sent
            .get(i + 1)
            .map(|n| n.start)
            .unwrap_or(self.bytes.len());
        if let (Some(off), Some(msg)) = (ack.offs, self.bytes.get(s.start..end)) {
            if let Some(key) = key_at(msg, off as usize) {
                op.push_str(&format!(" {{ {} }}", hex(key)));
            }
        }
        Error::Refused {
            op,
            errno: ack.errno,
            detail: ack.msg.map(str::to_string),
        }
    }
}

/// The key of the element whose attribute starts at `off` in a
/// NEWSETELEM/DELSETELEM message (offsets from the message start).
fn key_at(msg: &[u8], off: usize) -> Option<&[u8]> {
    let body_at = NLMSG_HDRLEN + NFGENMSG_LEN;
    let body = msg.get(body_at..)?;
    let (list_at, _, list) = attrs_at(body).find(|(_, t, _)| *t == NFTA_SET_ELEM_LIST_ELEMENTS)?;
    let list_base = body_at + list_at + NLA_HDRLEN;
    for (at, _, el) in attrs_at(list) {
        let begin = list_base + at;
        let end = begin + NLA_HDRLEN + el.len();
        if (begin..end).contains(&off) {
            let key = attrs(el).find(|(t, _)| *t == NFTA_SET_ELEM_KEY)?.1;
            return attrs(key)
                .find(|(t, _)| *t == NFTA_DATA_VALUE)
                .map(|(_, v)| v);
        }
    }
    None
}

fn nft_type(msg: u16) -> u16 {
    (NFNL_SUBSYS_NFTABLES << 8) | msg
}

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
    let len = (buf.len() - start) as u32;
    if let Some(f) = buf.get_mut(start..start + 4) {
        f.copy_from_slice(&len.to_ne_bytes());
    }
}

/// struct nfgenmsg: family, version (NFNETLINK_V0), resource id (BE).
fn put_nfgen(buf: &mut Vec<u8>, family: u8, res_id: u16) {
    buf.push(family);
    buf.push(0);
    buf.extend_from_slice(&res_id.to_be_bytes());
}

fn pad(buf: &mut Vec<u8>) {
    while buf.len() % 4 != 0 {
        buf.push(0);
    }
}

fn put_attr(buf: &mut Vec<u8>, ty: u16, payload: &[u8]) {
    let len = (NLA_HDRLEN + payload.len()) as u16;
    buf.extend_from_slice(&len.to_ne_bytes());
    buf.extend_from_slice(&ty.to_ne_bytes());
    buf.extend_from_slice(payload);
    pad(buf);
}

/// A NUL-terminated string attribute, as nft sends names.
fn put_strz(buf: &mut Vec<u8>, ty: u16, s: &str) {
    let len = (NLA_HDRLEN + s.len() + 1) as u16;
    buf.extend_from_slice(&len.to_ne_bytes());
    buf.extend_from_slice(&ty.to_ne_bytes());
    buf.extend_from_slice(s.as_bytes());
    buf.push(0);
    pad(buf);
}

fn put_be64(buf: &mut Vec<u8>, ty: u16, v: u64) {
    put_attr(buf, ty, &v.to_be_bytes())
}

fn nest_begin(buf: &mut Vec<u8>, ty: u16) -> usize {
    let start = buf.len();
    buf.extend_from_slice(&0u16.to_ne_bytes());
    buf.extend_from_slice(&(ty | NLA_F_NESTED).to_ne_bytes());
    start
}

fn nest_end(buf: &mut [u8], start: usize) {
    // Callers keep nests under 64 KiB (LIST_SOFT_MAX); saturating keeps
    // a violation a kernel error instead of a wrapped length.
    let len = u16::try_from(buf.len() - start).unwrap_or(u16::MAX);
    if let Some(f) = buf.get_mut(start..start + 2) {
        f.copy_from_slice(&len.to_ne_bytes());
    }
}

/// A value wrapped as nf_tables data: a nest holding NFTA_DATA_VALUE.
fn put_data(buf: &mut Vec<u8>, ty: u16, d: &Data) {
    let n = nest_begin(buf, ty);
    put_attr(buf, NFTA_DATA_VALUE, d.as_bytes());
    nest_end(buf, n);
}

/// One NFTA_LIST_ELEM, attributes in the order nft 1.0 sends them.
fn put_elem(buf: &mut Vec<u8>, e: &Elem, add: bool) {
    let n = nest_begin(buf, NFTA_LIST_ELEM);
    if add {
        if let Some(t) = e.timeout_ms {
            put_be64(buf, NFTA_SET_ELEM_TIMEOUT, t);
        }
        if let Some(x) = e.expiration_ms {
            put_be64(buf, NFTA_SET_ELEM_EXPIRATION, x);
        }
    }
    put_data(buf, NFTA_SET_ELEM_KEY, &e.key);
    if let Some(k) = &e.key_end {
        put_data(buf, NFTA_SET_ELEM_KEY_END, k);
    }
    if add {
        if let Some(d) = &e.data {
            put_data(buf, NFTA_SET_ELEM_DATA, d);
        }
        if let Some(c) = e.counter {
            // One expression: NFTA_SET_ELEM_EXPR (every kernel with
            // element expressions takes it; ≥ 5.12 also the list form).
            let x = nest_begin(buf, NFTA_SET_ELEM_EXPR);
            put_strz(buf, NFTA_EXPR_NAME, "counter");
            let d = nest_begin(buf, NFTA_EXPR_DATA);
            put_be64(buf, NFTA_COUNTER_BYTES, c.bytes);
            put_be64(buf, NFTA_COUNTER_PACKETS, c.packets);
            nest_end(buf, d);
            nest_end(buf, x);
        }
    }
    nest_end(buf, n);
}

/// A request outside a batch: one message with the given attributes.
fn request(ty: u16, flags: u16, seq: u32, attrs: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    let mut buf = Vec::with_capacity(128);
    let start = msg_begin(&mut buf, nft_type(ty), flags, seq);
    put_nfgen(&mut buf, NFPROTO_INET, 0);
    attrs(&mut buf);
    msg_end(&mut buf, start);
    buf
}

/// One netlink message of a datagram.
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
        let len = u32::from_ne_bytes([h[0], h[1], h[2], h[3]]) as usize;
        if len < NLMSG_HDRLEN || len > d.len() {
            d = &[];
            return None;
        }
        let m = Msg {
            ty: u16::from_ne_bytes([h[4], h[5]]),
            flags: u16::from_ne_bytes([h[6], h[7]]),
            seq: u32::from_ne_bytes([h[8], h[9], h[10], h[11]]),
            payload: d.get(NLMSG_HDRLEN..len).unwrap_or(&[]),
        };
        d = d.get(align4(len)..).unwrap_or(&[]);
        Some(m)
    })
}

fn align4(n: usize) -> usize {
    n.saturating_add(3) & !3
}

/// Attributes with their offsets in `d`: (offset, type without flags,
/// payload). Stops at the first malformed header.
fn attrs_at(d: &[u8]) -> impl Iterator<Item = (usize, u16, &[u8])> {
    let mut at = 0usize;
    std::iter::from_fn(move || {
        let h = d.get(at..at + NLA_HDRLEN)?;
        let len = usize::from(u16::from_ne_bytes([h[0], h[1]]));
        let ty = u16::from_ne_bytes([h[2], h[3]]) & NLA_TYPE_MASK;
        let payload = d
            .get(at + NLA_HDRLEN..at + len)
            .filter(|_| len >= NLA_HDRLEN);
        let Some(payload) = payload else {
            at = d.len();
            return None;
        };
        let here = at;
        at = at.saturating_add(align4(len)).min(d.len());
        Some((here, ty, payload))
    })
}

/// Attributes of `d` as (type, payload).
pub fn attrs(d: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    attrs_at(d).map(|(_, t, p)| (t, p))
}

fn be64(p: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(p.get(..8)?.try_into().ok()?))
}

fn be32(p: &[u8]) -> Option<u32> {
    Some(u32::from_be_bytes(p.get(..4)?.try_into().ok()?))
}

fn strz(p: &[u8]) -> &[u8] {
    let end = p.iter().position(|b| *b == 0).unwrap_or(p.len());
    &p[..end]
}

/// An NLMSG_ERROR: 0 is an acknowledgement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ack<'a> {
    /// A negative errno, or 0.
    pub errno: i32,
    /// The kernel's extended-ack message.
    pub msg: Option<&'a str>,
    /// Offset of the offending attribute in the original message.
    pub offs: Option<u32>,
}

/// Parses an NLMSG_ERROR payload (struct nlmsgerr, then, with
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
        // The original header follows the errno; its payload too unless capped.
        let orig = p.get(4..4 + NLMSG_HDRLEN)?;
        let orig_len = u32::from_ne_bytes([orig[0], orig[1], orig[2], orig[3]]) as usize;
        let tlv_at = if m.flags & NLM_F_CAPPED != 0 {
            4 + NLMSG_HDRLEN
        } else {
            4 + align4(orig_len)
        };
        for (t, v) in attrs(p.get(tlv_at..).unwrap_or(&[])) {
            match t {
                NLMSGERR_ATTR_MSG => ack.msg = std::str::from_utf8(strz(v)).ok(),
                NLMSGERR_ATTR_OFFS => {
                    ack.offs = v
                        .get(..4)
                        .map(|b| u32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
                }
                _ => {}
            }
        }
    }
    Some(ack)
}

/// One element of a dump reply, borrowed from the receive buffer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Element<'a> {
    pub key: &'a [u8],
    pub key_end: Option<&'a [u8]>,
    pub data: Option<&'a [u8]>,
    /// NFTA_SET_ELEM_FLAGS (interval end, catch-all).
    pub flags: u32,
    pub timeout_ms: Option<u64>,
    pub expiration_ms: Option<u64>,
    pub counter: Option<Counters>,
}

fn data_value(nest: &[u8]) -> Option<&[u8]> {
    attrs(nest)
        .find(|(t, _)| *t == NFTA_DATA_VALUE)
        .map(|(_, v)| v)
}

/// The counter among an expression's attributes, if it is one.
fn counter_expr(expr: &[u8]) -> Option<Counters> {
    let mut is_counter = false;
    let mut c = None;
    for (t, v) in attrs(expr) {
        match t {
            NFTA_EXPR_NAME => is_counter = strz(v) == b"counter",
            NFTA_EXPR_DATA => {
                let mut k = Counters::default();
                for (t, v) in attrs(v) {
                    match t {
                        NFTA_COUNTER_BYTES => k.bytes = be64(v).unwrap_or(0),
                        NFTA_COUNTER_PACKETS => k.packets = be64(v).unwrap_or(0),
                        _ => {}
                    }
                }
                c = Some(k);
            }
            _ => {}
        }
    }
    if is_counter { c } else { None }
}

fn parse_element(el: &[u8]) -> Element<'_> {
    let mut e = Element::default();
    for (t, v) in attrs(el) {
        match t {
            NFTA_SET_ELEM_KEY => e.key = data_value(v).unwrap_or(&[]),
            NFTA_SET_ELEM_KEY_END => e.key_end = data_value(v),
            NFTA_SET_ELEM_DATA => e.data = data_value(v),
            NFTA_SET_ELEM_FLAGS => e.flags = be32(v).unwrap_or(0),
            NFTA_SET_ELEM_TIMEOUT => e.timeout_ms = be64(v),
            NFTA_SET_ELEM_EXPIRATION => e.expiration_ms = be64(v),
            NFTA_SET_ELEM_EXPR => e.counter = e.counter.or(counter_expr(v)),
            NFTA_SET_ELEM_EXPRESSIONS => {
                for (t, x) in attrs(v) {
                    if t == NFTA_LIST_ELEM && e.counter.is_none() {
                        e.counter = counter_expr(x);
                    }
                }
            }
            _ => {}
        }
    }
    e
}

/// Calls `f` for every element of a NEWSETELEM reply (payload after the
/// netlink header); returns how many there were.
pub fn parse_elements<'a>(payload: &'a [u8], f: &mut dyn FnMut(&Element<'a>)) -> usize {
    let mut n = 0;
    let body = payload.get(NFGENMSG_LEN..).unwrap_or(&[]);
    for (t, list) in attrs(body) {
        if t != NFTA_SET_ELEM_LIST_ELEMENTS {
            continue;
        }
        for (t, el) in attrs(list) {
            if t == NFTA_LIST_ELEM {
                f(&parse_element(el));
                n += 1;
            }
        }
    }
    n
}

/// One rule of a dump, borrowed from the receive buffer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Rule<'a> {
    pub chain: &'a [u8],
    pub userdata: &'a [u8],
}

/// Parses a NEWRULE reply (payload after the netlink header).
pub fn parse_rule(payload: &[u8]) -> Rule<'_> {
    let mut r = Rule::default();
    for (t, v) in attrs(payload.get(NFGENMSG_LEN..).unwrap_or(&[])) {
        match t {
            NFTA_RULE_CHAIN => r.chain = strz(v),
            NFTA_RULE_USERDATA => r.userdata = v,
            _ => {}
        }
    }
    r
}

/// The comment in a rule's user data (without its NUL).
pub fn rule_comment(udata: &[u8]) -> Option<&[u8]> {
    let mut d = udata;
    // Each TLV takes at least two bytes, so this ends.
    while let [ty, len, rest @ ..] = d {
        let v = rest.get(..usize::from(*len))?;
        if *ty == UDATA_RULE_COMMENT {
            return Some(strz(v));
        }
        d = &rest[usize::from(*len)..];
    }
    None
}

/// What went wrong talking to nf_tables.
#[derive(Debug)]
pub enum Error {
    /// A socket call failed.
    Io { call: &'static str, err: io::Error },
    /// The kernel refused an operation; a batch was then discarded whole.
    Refused {
        op: String,
        /// Negative errno, as the kernel reports it.
        errno: i32,
        /// The kernel's extended-ack message, if any.
        detail: Option<String>,
    },
    /// A reply we cannot use (truncated, missing, too large).
    Reply(&'static str),
    /// A request too large to send.
    TooLarge(usize),
}

impl Error {
    /// The errno the kernel refused with.
    pub fn errno(&self) -> Option<i32> {
        match self {
            Error::Refused { errno, .. } => Some(-errno),
            Error::Io { err, .. } => err.raw_os_error(),
            _ => None,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Io { call, err } => write!(f, "netlink {call}: {err}"),
            Error::Refused { op, errno, detail } => {
                let err = io::Error::from_raw_os_error(errno.saturating_neg());
                write!(f, "{op}: {err}")?;
                match detail {
                    Some(d) if !d.is_empty() => write!(f, " ({d})"),
                    _ => Ok(()),
                }
            }
            Error::Reply(what) => write!(f, "nf_tables reply: {what}"),
            Error::TooLarge(n) => write!(f, "nf_tables batch of {n} bytes is too large"),
        }
    }
}

/// Counters, timeout and expiry of one element, as a get returns them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Found {
    pub timeout_ms: Option<u64>,
    pub expiration_ms: Option<u64>,
    pub counter: Option<Counters>,
}

/// A NETLINK_NETFILTER socket used synchronously: every call sends and
/// reads its answer before it returns.
pub struct Socket {
    fd: OwnedFd,
    seq: u32,
    /// Send buffer size we asked for (0 = the system default).
    sndbuf: usize,
}

fn sys<T: PartialOrd + Default>(rc: T, call: &'static str) -> Result<T, Error> {
    if rc < T::default() {
        Err(Error::Io {
            call,
            err: io::Error::last_os_error(),
        })
    } else {
        Ok(rc)
    }
}

fn set_int(fd: i32, level: i32, name: i32, v: i32) -> i32 {
    // SAFETY: the option value is a live c_int of the size given.
    unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (&v as *const i32).cast(),
            std::mem::size_of::<i32>() as libc::socklen_t,
        )
    }
}

impl Socket {
    pub fn open() -> Result<Socket, Error> {
        // SAFETY: plain socket call; the fd is owned immediately.
        let fd = unsafe {
            let raw = sys(
                libc::socket(
                    libc::AF_NETLINK,
                    libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                    libc::NETLINK_NETFILTER,
                ),
                "socket",
            )?;
            OwnedFd::from_raw_fd(raw)
        };
        // SAFETY: a zeroed sockaddr_nl is valid (port chosen by the kernel).
        let mut sa: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        sa.nl_family = libc::AF_NETLINK as libc::sa_family_t;
        // SAFETY: `sa` is a valid sockaddr_nl of the given size.
        let rc = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&sa as *const libc::sockaddr_nl).cast(),
                std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
            )
        };
        sys(rc, "bind")?;
        // Small acks (no echo of what we sent), and the kernel's reason
        // for a refusal. Both optional: older kernels lack them.
        let _ = set_int(fd.as_raw_fd(), libc::SOL_NETLINK, libc::NETLINK_CAP_ACK, 1);
        let _ = set_int(fd.as_raw_fd(), libc::SOL_NETLINK, libc::NETLINK_EXT_ACK, 1);
        let seq = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as u32)
            .unwrap_or(1);
        Ok(Socket { fd, seq, sndbuf: 0 })
    }

    fn seqs(&mut self, n: usize) -> u32 {
        let s = self.seq;
        self.seq = self.seq.wrapping_add(n as u32 + 1);
        s
    }

    /// Drops replies left from an earlier call (after a timeout or an
    /// early error), so they cannot be taken for this call's.
    fn drain(&self, buf: &mut [u8]) {
        for _ in 0..64 {
            // SAFETY: receiving into a buffer of the given length.
            let n = unsafe {
                libc::recv(
                    self.fd.as_raw_fd(),
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                    libc::MSG_DONTWAIT,
                )
            };
            if n < 0 && io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
                continue;
            }
            if n <= 0 {
                return;
            }
        }
    }

    fn send(&mut self, bytes: &[u8]) -> Result<(), Error> {
        if bytes.len() > BATCH_MAX {
            return Err(Error::TooLarge(bytes.len()));
        }
        // The kernel refuses a datagram larger than the send buffer, and
        // a batch must arrive in one datagram. SO_SNDBUFFORCE needs
        // CAP_NET_ADMIN, which nf_tables needs anyway.
        let want = bytes.len() + 4096;
        if want > self.sndbuf && bytes.len() > 64 * 1024 {
            let v = i32::try_from(want).unwrap_or(i32::MAX);
            let fd = self.fd.as_raw_fd();
            if set_int(fd, libc::SOL_SOCKET, libc::SO_SNDBUFFORCE, v) == 0
                || set_int(fd, libc::SOL_SOCKET, libc::SO_SNDBUF, v) == 0
            {
                self.sndbuf = want;
            }
        }
        for _ in 0..8 {
            // SAFETY: sending from a buffer of the given length.
            let n =
                unsafe { libc::send(self.fd.as_raw_fd(), bytes.as_ptr().cast(), bytes.len(), 0) };
            if n < 0 {
                let err = io::Error::last_os_error();
                if err.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(Error::Io { call: "send", err });
            }
            if n as usize != bytes.len() {
                return Err(Error::Reply("short send"));
            }
            return Ok(());
        }
        Err(Error::Reply("send interrupted repeatedly"))
    }

    /// Waits for and receives one datagram.
    fn recv(&self, buf: &mut [u8]) -> Result<usize, Error> {
        for _ in 0..8 {
            let mut pfd = libc::pollfd {
                fd: self.fd.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one valid pollfd.
            let rc = unsafe { libc::poll(&mut pfd, 1, REPLY_TIMEOUT_MS) };
            if rc < 0 {
                let err = io::Error::last_os_error();
                if err.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(Error::Io { call: "poll", err });
            }
            if rc == 0 {
                return Err(Error::Reply("no answer from nf_tables"));
            }
            // SAFETY: receiving into a buffer of the given length; with
            // MSG_TRUNC the result is the datagram's full length.
            let n = unsafe {
                libc::recv(
                    self.fd.as_raw_fd(),
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                    libc::MSG_DONTWAIT | libc::MSG_TRUNC,
                )
            };
            if n < 0 {
                let err = io::Error::last_os_error();
                match err.kind() {
                    io::ErrorKind::Interrupted | io::ErrorKind::WouldBlock => continue,
                    _ => return Err(Error::Io { call: "recv", err }),
                }
            }
            let n = n as usize;
            if n > buf.len() {
                return Err(Error::Reply("datagram larger than the receive buffer"));
            }
            return Ok(n);
        }
        Err(Error::Reply("receive interrupted repeatedly"))
    }

    /// Sends a batch and waits for the kernel's verdict on every message.
    /// On error nothing of the batch was applied.
    pub fn commit(&mut self, batch: Batch) -> Result<(), Error> {
        if batch.is_empty() {
            return Ok(());
        }
        let mut buf = vec![0u8; RECV_BUF];
        self.drain(&mut buf);
        let begin = self.seqs(batch.sent.len() + 2);
        let built = batch.finish(begin);
        self.send(&built.bytes)?;
        let n = built.inner();
        let end_seq = begin.wrapping_add(n as u32 + 1);
        let mut answered = vec![false; n];
        let mut left = n;
        let mut first: Option<Error> = None;
        // Each datagram answers at least one message.
        for _ in 0..n + 16 {
            if left == 0 {
                break;
            }
            let got = self.recv(&mut buf)?;
            for m in messages(buf.get(..got).unwrap_or(&[])) {
                if m.ty != NLMSG_ERROR {
                    continue;
                }
                let Some(ack) = parse_ack(&m) else {
                    continue;
                };
                if m.seq == begin || m.seq == end_seq {
                    // The batch as a whole: a failed commit, or a
                    // malformed batch. Nothing more is coming that matters.
                    if ack.errno != 0 {
                        first.get_or_insert(Error::Refused {
                            op: "commit".into(),
                            errno: ack.errno,
                            detail: ack.msg.map(str::to_string),
                        });
                        left = 0;
                    }
                    continue;
                }
                let Some(i) = built.index(m.seq) else {
                    continue;
                };
                if let Some(a) = answered.get_mut(i) {
                    if !*a {
                        *a = true;
                        left = left.saturating_sub(1);
                    }
                }
                if ack.errno != 0 && first.is_none() {
                    first = Some(built.describe(i, &ack));
                }
            }
        }
        if let Some(e) = first {
            return Err(e);
        }
        if left > 0 {
            return Err(Error::Reply("missing acknowledgements"));
        }
        Ok(())
    }

    /// Sends one request and hands every data message of the answer to
    /// `f` until the acknowledgement, the end of the dump, or an error.
    fn talk(&mut self, req: &[u8], seq: u32, f: &mut dyn FnMut(&Msg<'_>)) -> Result<(), Error> {
        let mut buf = vec![0u8; RECV_BUF];
        self.drain(&mut buf);
        self.send(req)?;
        let mut total = 0usize;
        loop {
            let got = self.recv(&mut buf)?;
            total += got;
            if total > DUMP_MAX {
                return Err(Error::Reply("dump too large"));
            }
            for m in messages(buf.get(..got).unwrap_or(&[])) {
                if m.seq != seq {
                    continue;
                }
                match m.ty {
                    NLMSG_ERROR => {
                        let ack = parse_ack(&m).ok_or(Error::Reply("short error message"))?;
                        if ack.errno == 0 {
                            return Ok(());
                        }
                        return Err(Error::Refused {
                            op: "query".into(),
                            errno: ack.errno,
                            detail: ack.msg.map(str::to_string),
                        });
                    }
                    NLMSG_DONE => {
                        let errno = m
                            .payload
                            .get(..4)
                            .map(|b| i32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
                            .unwrap_or(0);
                        if errno < 0 {
                            return Err(Error::Refused {
                                op: "dump".into(),
                                errno,
                                detail: None,
                            });
                        }
                        return Ok(());
                    }
                    NLMSG_NOOP => {}
                    _ => f(&m),
                }
            }
        }
    }

    /// Calls `f` for every element of a set.
    pub fn elements(
        &mut self,
        table: &str,
        set: &str,
        f: &mut dyn FnMut(&Element<'_>),
    ) -> Result<(), Error> {
        let seq = self.seqs(1);
        let req = request(NFT_MSG_GETSETELEM, NLM_F_REQUEST | NLM_F_DUMP, seq, |b| {
            put_strz(b, NFTA_SET_ELEM_LIST_TABLE, table);
            put_strz(b, NFTA_SET_ELEM_LIST_SET, set);
        });
        self.talk(&req, seq, &mut |m| {
            if m.ty == nft_type(NFT_MSG_NEWSETELEM) {
                parse_elements(m.payload, f);
            }
        })
    }

    /// One element by key (and key end, for interval sets); None when it
    /// is not there.
    pub fn element(
        &mut self,
        table: &str,
        set: &str,
        key: &Data,
        key_end: Option<&Data>,
    ) -> Result<Option<Found>, Error> {
        let seq = self.seqs(1);
        let req = request(NFT_MSG_GETSETELEM, NLM_F_REQUEST | NLM_F_ACK, seq, |b| {
            put_strz(b, NFTA_SET_ELEM_LIST_TABLE, table);
            put_strz(b, NFTA_SET_ELEM_LIST_SET, set);
            let list = nest_begin(b, NFTA_SET_ELEM_LIST_ELEMENTS);
            let e = Elem {
                key: *key,
                key_end: key_end.copied(),
                ..Elem::default()
            };
            put_elem(b, &e, false);
            nest_end(b, list);
        });
        let mut found = None;
        let r = self.talk(&req, seq, &mut |m| {
            if m.ty == nft_type(NFT_MSG_NEWSETELEM) {
                parse_elements(m.payload, &mut |e| {
                    found.get_or_insert(Found {
                        timeout_ms: e.timeout_ms,
                        expiration_ms: e.expiration_ms,
                        counter: e.counter,
                    });
                });
            }
        });
        match r {
            Ok(()) => Ok(found),
            Err(e) if e.errno() == Some(libc::ENOENT) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Calls `f` for every rule of a chain.
    pub fn rules(
        &mut self,
        table: &str,
        chain: &str,
        f: &mut dyn FnMut(&Rule<'_>),
    ) -> Result<(), Error> {
        let seq = self.seqs(1);
        let req = request(NFT_MSG_GETRULE, NLM_F_REQUEST | NLM_F_DUMP, seq, |b| {
            put_strz(b, NFTA_RULE_TABLE, table);
            put_strz(b, NFTA_RULE_CHAIN, chain);
        });
        self.talk(&req, seq, &mut |m| {
            if m.ty == nft_type(NFT_MSG_NEWRULE) {
                let r = parse_rule(m.payload);
                // Old kernels ignore the chain filter of a dump.
                if r.chain == chain.as_bytes() {
                    f(&r);
                }
            }
        })
    }

    fn exists(&mut self, ty: u16, attrs: impl FnOnce(&mut Vec<u8>)) -> Result<bool, Error> {
        let seq = self.seqs(1);
        let req = request(ty, NLM_F_REQUEST | NLM_F_ACK, seq, attrs);
        match self.talk(&req, seq, &mut |_| {}) {
            Ok(()) => Ok(true),
            Err(e) if e.errno() == Some(libc::ENOENT) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Whether `table inet <table>` exists.
    pub fn table_exists(&mut self, table: &str) -> Result<bool, Error> {
        self.exists(NFT_MSG_GETTABLE, |b| put_strz(b, NFTA_TABLE_NAME, table))
    }

    /// Whether a chain exists in `table inet <table>`.
    pub fn chain_exists(&mut self, table: &str, chain: &str) -> Result<bool, Error> {
        self.exists(NFT_MSG_GETCHAIN, |b| {
            put_strz(b, NFTA_CHAIN_TABLE, table);
            put_strz(b, NFTA_CHAIN_NAME, chain);
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Builds expected bytes from (host-order u32 / u16 / raw) pieces, so
    /// the vectors hold on either byte order.
    enum P<'a> {
        U32(u32),
        U16(u16),
        B(&'a [u8]),
    }

    fn bytes(parts: &[P<'_>]) -> Vec<u8> {
        let mut v = Vec::new();
        for p in parts {
            match p {
                P::U32(x) => v.extend_from_slice(&x.to_ne_bytes()),
                P::U16(x) => v.extend_from_slice(&x.to_ne_bytes()),
                P::B(b) => v.extend_from_slice(b),
            }
        }
        v
    }

    #[test]
    fn concatenated_keys_pad_each_field_to_a_register() {
        // Compared with `nft --debug=netlink add element inet fw4 ...`
        // (nft 1.0.6), which prints the same bytes as host-order words.
        let dnat = Data::new().proto(6).service(18080);
        assert_eq!(dnat.as_bytes(), [6, 0, 0, 0, 0x46, 0xa0, 0, 0]);
        let value = Data::new()
            .ipv4(Ipv4Addr::new(192, 168, 77, 2))
            .service(8080);
        assert_eq!(value.as_bytes(), [192, 168, 77, 2, 0x1f, 0x90, 0, 0]);
        let snat = Data::new()
            .ipv4(Ipv4Addr::new(192, 168, 77, 2))
            .proto(6)
            .service(8080)
            .ipv4(Ipv4Addr::new(192, 0, 3, 2))
            .service(5000);
        assert_eq!(
            snat.as_bytes(),
            [
                192, 168, 77, 2, 6, 0, 0, 0, 0x1f, 0x90, 0, 0, 192, 0, 3, 2, 0x13, 0x88, 0, 0
            ]
        );
        let pin_hp = Data::new()
            .ipv6("2001:db8::1".parse().unwrap())
            .service(5000)
            .ipv6("fd77::2".parse().unwrap())
            .proto(17)
            .service(8080);
        assert_eq!(pin_hp.as_bytes().len(), 44);
        assert_eq!(
            hex(pin_hp.as_bytes()),
            "20010db8 00000000 00000000 00000001 13880000 fd770000 00000000 00000000 00000002 11000000 1f900000"
        );
        // a field that does not fit is dropped, never a panic
        let mut big = Data::new();
        for _ in 0..5 {
            big = big.ipv6(Ipv6Addr::LOCALHOST);
        }
        assert_eq!(big.as_bytes().len(), 64);
        assert_eq!(Data::from_bytes(&[1, 2, 3]).unwrap().as_bytes(), [1, 2, 3]);
        assert!(Data::from_bytes(&[0; 65]).is_none());
    }

    /// The NEWSETELEM nft 1.0.6 sends for
    /// `add element inet fw4 upnp_dnat_rh { 192.0.3.0/24 . udp . 18080
    /// counter packets 3 bytes 180 timeout 10s : 192.168.77.2 . 8080 }`
    /// (seen with --debug=mnl), less its NFTA_SET_ELEM_LIST_SET_ID, which
    /// only matters for sets created in the same batch.
    #[test]
    fn add_element_message_matches_nft() {
        let e = Elem {
            key: Data::new()
                .ipv4(Ipv4Addr::new(192, 0, 3, 0))
                .proto(17)
                .service(18080),
            key_end: Some(
                Data::new()
                    .ipv4(Ipv4Addr::new(192, 0, 3, 255))
                    .proto(17)
                    .service(18080),
            ),
            data: Some(
                Data::new()
                    .ipv4(Ipv4Addr::new(192, 168, 77, 2))
                    .service(8080),
            ),
            timeout_ms: Some(10_000),
            expiration_ms: None,
            counter: Some(Counters {
                packets: 3,
                bytes: 180,
            }),
        };
        let mut b = Batch::new("fw4");
        b.add("upnp_dnat_rh", &e);
        let built = b.finish(100);
        let n = NLA_F_NESTED;
        let want = bytes(&[
            // batch begin: AF_UNSPEC, res_id NFNL_SUBSYS_NFTABLES (BE)
            P::U32(20),
            P::U16(0x10),
            P::U16(NLM_F_REQUEST),
            P::U32(100),
            P::U32(0),
            P::B(&[0, 0, 0, 10]),
            // NEWSETELEM, family inet
            P::U32(168),
            P::U16(0x0a0c),
            P::U16(NLM_F_REQUEST | NLM_F_CREATE | NLM_F_ACK),
            P::U32(101),
            P::U32(0),
            P::B(&[1, 0, 0, 0]),
            P::U16(8),
            P::U16(1),
            P::B(b"fw4\0"),
            P::U16(17),
            P::U16(2),
            P::B(b"upnp_dnat_rh\0\0\0\0"),
            P::U16(120),
            P::U16(3 | n),
            P::U16(116),
            P::U16(1 | n),
            P::U16(12),
            P::U16(4),
            P::B(&[0, 0, 0, 0, 0, 0, 0x27, 0x10]),
            P::U16(20),
            P::U16(1 | n),
            P::U16(16),
            P::U16(1),
            P::B(&[192, 0, 3, 0, 17, 0, 0, 0, 0x46, 0xa0, 0, 0]),
            P::U16(20),
            P::U16(10 | n),
            P::U16(16),
            P::U16(1),
            P::B(&[192, 0, 3, 255, 17, 0, 0, 0, 0x46, 0xa0, 0, 0]),
            P::U16(16),
            P::U16(2 | n),
            P::U16(12),
            P::U16(1),
            P::B(&[192, 168, 77, 2, 0x1f, 0x90, 0, 0]),
            P::U16(44),
            P::U16(7 | n),
            P::U16(12),
            P::U16(1),
            P::B(b"counter\0"),
            P::U16(28),
            P::U16(2 | n),
            P::U16(12),
            P::U16(1),
            P::B(&[0, 0, 0, 0, 0, 0, 0, 180]),
            P::U16(12),
            P::U16(2),
            P::B(&[0, 0, 0, 0, 0, 0, 0, 3]),
            // batch end
            P::U32(20),
            P::U16(0x11),
            P::U16(NLM_F_REQUEST),
            P::U32(102),
            P::U32(0),
            P::B(&[0, 0, 0, 10]),
        ]);
        assert_eq!(hex(&built.bytes), hex(&want));
        assert_eq!(built.inner(), 1);
        assert_eq!(built.index(101), Some(0));
        assert_eq!(built.index(100), None);
        assert_eq!(built.index(102), None);
    }

    #[test]
    fn delete_flush_and_chain_flush_messages() {
        let key = Data::new().proto(6).service(18080);
        let mut b = Batch::new("fw4");
        b.delete(
            "upnp_dnat",
            &Elem {
                key,
                data: Some(Data::new().ipv4(Ipv4Addr::LOCALHOST).service(1)),
                timeout_ms: Some(5),
                ..Elem::default()
            },
        );
        b.flush("upnp_fwd");
        b.flush_chain("upnp_forward");
        let built = b.finish(7);
        let want = bytes(&[
            P::U32(20),
            P::U16(0x10),
            P::U16(1),
            P::U32(7),
            P::U32(0),
            P::B(&[0, 0, 0, 10]),
            // a delete carries the key only
            P::U32(68),
            P::U16(0x0a0e),
            P::U16(NLM_F_REQUEST | NLM_F_ACK),
            P::U32(8),
            P::U32(0),
            P::B(&[1, 0, 0, 0]),
            P::U16(8),
            P::U16(1),
            P::B(b"fw4\0"),
            P::U16(14),
            P::U16(2),
            P::B(b"upnp_dnat\0\0\0"),
            P::U16(24),
            P::U16(3 | NLA_F_NESTED),
            P::U16(20),
            P::U16(1 | NLA_F_NESTED),
            P::U16(16),
            P::U16(1 | NLA_F_NESTED),
            P::U16(12),
            P::U16(1),
            P::B(&[6, 0, 0, 0, 0x46, 0xa0, 0, 0]),
            // flush set: DELSETELEM without elements
            P::U32(44),
            P::U16(0x0a0e),
            P::U16(NLM_F_REQUEST | NLM_F_ACK),
            P::U32(9),
            P::U32(0),
            P::B(&[1, 0, 0, 0]),
            P::U16(8),
            P::U16(1),
            P::B(b"fw4\0"),
            P::U16(13),
            P::U16(2),
            P::B(b"upnp_fwd\0\0\0\0"),
            // flush chain: DELRULE without a handle
            P::U32(48),
            P::U16(0x0a08),
            P::U16(NLM_F_REQUEST | NLM_F_ACK),
            P::U32(10),
            P::U32(0),
            P::B(&[1, 0, 0, 0]),
            P::U16(8),
            P::U16(1),
            P::B(b"fw4\0"),
            P::U16(17),
            P::U16(2),
            P::B(b"upnp_forward\0\0\0\0"),
            P::U32(20),
            P::U16(0x11),
            P::U16(1),
            P::U32(11),
            P::U32(0),
            P::B(&[0, 0, 0, 10]),
        ]);
        assert_eq!(hex(&built.bytes), hex(&want));
    }

    #[test]
    fn element_operations_share_messages_per_set_and_kind() {
        let e = |p| Elem {
            key: Data::new().proto(6).service(p),
            ..Elem::default()
        };
        let mut b = Batch::new("fw4");
        b.add("a", &e(1));
        b.add("a", &e(2));
        b.add("b", &e(3));
        b.delete("b", &e(3));
        b.delete("b", &e(4));
        b.add("a", &e(5));
        assert_eq!(b.sent.len(), 4);
        // a long list is split before its nest length could overflow
        let mut b = Batch::new("fw4");
        for p in 0..5000 {
            b.add("a", &e(p));
        }
        let built = b.finish(1);
        assert!(built.inner() > 1);
        let mut count = 0;
        for m in messages(&built.bytes) {
            if m.ty == 0x0a0c {
                count += parse_elements(m.payload, &mut |_| {});
            }
        }
        assert_eq!(count, 5000);
        assert!(messages(&built.bytes).all(|m| m.payload.len() < LIST_SOFT_MAX + 1024));
    }

    fn ack_msg(seq: u32, errno: i32, tlvs: &[u8], flags: u16) -> Vec<u8> {
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
    }

    #[test]
    fn acks_and_extended_errors() {
        let plain = ack_msg(5, 0, &[], NLM_F_CAPPED);
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
        let err = ack_msg(6, -17, &tlvs, NLM_F_CAPPED | NLM_F_ACK_TLVS);
        let m = messages(&err).next().unwrap();
        assert_eq!(
            parse_ack(&m),
            Some(Ack {
                errno: -17,
                msg: Some("no way"),
                offs: Some(60)
            })
        );
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
    fn a_refusal_names_the_operation_and_the_element() {
        let e = |p| Elem {
            key: Data::new().proto(6).service(p),
            data: Some(Data::new().ipv4(Ipv4Addr::new(10, 0, 0, 1)).service(p)),
            ..Elem::default()
        };
        let mut b = Batch::new("fw4");
        b.flush("upnp_fwd");
        b.add("upnp_dnat", &e(1));
        b.add("upnp_dnat", &e(2));
        let built = b.finish(40);
        // offset of the second NFTA_LIST_ELEM inside the NEWSETELEM
        let msg = &built.bytes[built.sent[1].start..];
        let body = &msg[20..];
        let (list_at, _, list) = attrs_at(body).find(|(_, t, _)| *t == 3).unwrap();
        let (second, _, _) = attrs_at(list).nth(1).unwrap();
        let off = (20 + list_at + 4 + second) as u32;
        let ack = Ack {
            errno: -libc::EEXIST,
            msg: None,
            offs: Some(off),
        };
        let text = built.describe(1, &ack).to_string();
        assert!(
            text.starts_with("add element to upnp_dnat { 06000000 00020000 }: "),
            "{text}"
        );
        assert!(text.contains("os error 17"), "{text}");
        let flush = built.describe(0, &Ack { offs: None, ..ack }).to_string();
        assert!(flush.starts_with("flush set upnp_fwd: "), "{flush}");
        // an offset pointing nowhere sensible still names the operation
        let odd = built
            .describe(
                1,
                &Ack {
                    offs: Some(3),
                    ..ack
                },
            )
            .to_string();
        assert!(odd.starts_with("add element to upnp_dnat: "), "{odd}");
    }

    /// A dump reply as the kernel sends it: a key, a value, a timeout,
    /// an expiry, a padding attribute and one counter expression.
    #[test]
    fn dumped_elements_with_counters() {
        let n = NLA_F_NESTED;
        let payload = bytes(&[
            P::B(&[1, 0, 0, 0]),
            P::U16(8),
            P::U16(1),
            P::B(b"fw4\0"),
            P::U16(14),
            P::U16(2),
            P::B(b"upnp_dnat\0\0\0"),
            P::U16(112),
            P::U16(3 | n),
            P::U16(108),
            P::U16(1 | n),
            P::U16(16),
            P::U16(1 | n),
            P::U16(12),
            P::U16(1),
            P::B(&[6, 0, 0, 0, 0x46, 0xa0, 0, 0]),
            P::U16(16),
            P::U16(2 | n),
            P::U16(12),
            P::U16(1),
            P::B(&[192, 168, 77, 2, 0x1f, 0x90, 0, 0]),
            P::U16(12),
            P::U16(4),
            P::B(&3_610_000u64.to_be_bytes()),
            P::U16(12),
            P::U16(5),
            P::B(&3_599_000u64.to_be_bytes()),
            P::U16(4),
            P::U16(8),
            P::U16(44),
            P::U16(7 | n),
            P::U16(12),
            P::U16(1),
            P::B(b"counter\0"),
            P::U16(28),
            P::U16(2 | n),
            P::U16(12),
            P::U16(1),
            P::B(&1500u64.to_be_bytes()),
            P::U16(12),
            P::U16(2),
            P::B(&4u64.to_be_bytes()),
        ]);
        let mut got = Vec::new();
        let count = parse_elements(&payload, &mut |e| {
            got.push((
                e.key.to_vec(),
                e.data.map(<[u8]>::to_vec),
                e.timeout_ms,
                e.counter,
            ))
        });
        assert_eq!(count, 1);
        assert_eq!(
            got,
            vec![(
                vec![6, 0, 0, 0, 0x46, 0xa0, 0, 0],
                Some(vec![192, 168, 77, 2, 0x1f, 0x90, 0, 0]),
                Some(3_610_000),
                Some(Counters {
                    packets: 4,
                    bytes: 1500
                })
            )]
        );
        for cut in 0..payload.len() {
            parse_elements(&payload[..cut], &mut |_| {});
        }
        // the list form (NFTA_SET_ELEM_EXPRESSIONS) reads the same
        let mut el = Vec::new();
        put_data(
            &mut el,
            NFTA_SET_ELEM_KEY,
            &Data::new().proto(17).service(1),
        );
        let x = nest_begin(&mut el, NFTA_SET_ELEM_EXPRESSIONS);
        let one = nest_begin(&mut el, NFTA_LIST_ELEM);
        put_strz(&mut el, NFTA_EXPR_NAME, "counter");
        let d = nest_begin(&mut el, NFTA_EXPR_DATA);
        put_be64(&mut el, NFTA_COUNTER_PACKETS, 9);
        nest_end(&mut el, d);
        nest_end(&mut el, one);
        nest_end(&mut el, x);
        assert_eq!(
            parse_element(&el).counter,
            Some(Counters {
                packets: 9,
                bytes: 0
            })
        );
    }

    #[test]
    fn rule_comments_in_user_data() {
        // nft's `comment "rupnpd"`: type 0, length 7, NUL-terminated
        assert_eq!(rule_comment(b"\x00\x07rupnpd\0"), Some(&b"rupnpd"[..]));
        assert_eq!(rule_comment(b"\x01\x02ab\x00\x03xy\0"), Some(&b"xy"[..]));
        assert_eq!(rule_comment(b"\x01\x02ab"), None);
        assert_eq!(rule_comment(b"\x00\x09short"), None);
        assert_eq!(rule_comment(b""), None);
        let mut p = vec![1, 0, 0, 0];
        put_strz(&mut p, NFTA_RULE_TABLE, "fw4");
        put_strz(&mut p, NFTA_RULE_CHAIN, "upnp_prerouting");
        put_attr(&mut p, NFTA_RULE_USERDATA, b"\x00\x07rupnpd\0");
        let r = parse_rule(&p);
        assert_eq!(r.chain, b"upnp_prerouting");
        assert_eq!(rule_comment(r.userdata), Some(&b"rupnpd"[..]));
    }
}
