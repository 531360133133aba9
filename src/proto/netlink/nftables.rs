//! nf_tables messages (linux/netfilter/nfnetlink.h, nf_tables.h): the
//! element transactions the daemon sends, the queries it asks, and the
//! replies and notifications it reads.
//!
//! Owns: set keys and map values ([`Data`]), element operations in one
//! batch ([`Batch`]: NFNL_MSG_BATCH_BEGIN, NEWSETELEM / DELSETELEM /
//! DELRULE messages, NFNL_MSG_BATCH_END, which the kernel commits or
//! discards whole), the table, chain, rule and element queries, and the
//! parsing of dumped elements and rules and of NEWGEN notifications.
//! Pure: no IO; knows nothing about mappings (that is `sys::nft`).
//!
//! Byte order: nf_tables payloads (keys, data, timeouts, counters,
//! flags, the nfgenmsg resource id) are big-endian; the netlink headers
//! around them are in host order.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};

use super::{
    Ack, NLA_HDRLEN, NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP, NLM_F_REQUEST, NLMSG_HDRLEN, attr, attrs,
    attrs_at, be32, be64, messages, msg_begin, msg_end, nest_begin, nest_end, put_attr, put_be64,
    put_strz, request, set_seq, strz,
};

// linux/netfilter/nfnetlink.h
/// The nf_tables subsystem: the high byte of its message types, and the
/// resource id of a batch.
pub const NFNL_SUBSYS_NFTABLES: u16 = 10;
const NFNL_MSG_BATCH_BEGIN: u16 = 0x10;
const NFNL_MSG_BATCH_END: u16 = 0x11;
/// NFNLGRP_NFTABLES: the multicast group of nf_tables notifications.
pub const NFNLGRP_NFTABLES: u32 = 7;
/// Length of `struct nfgenmsg`: family, version, resource id.
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
const NFT_MSG_NEWGEN: u16 = 15;
/// The netlink message types of a dumped rule and set element.
pub const NEWRULE: u16 = nft_type(NFT_MSG_NEWRULE);
pub const NEWSETELEM: u16 = nft_type(NFT_MSG_NEWSETELEM);
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
// enum nft_gen_attributes
const NFTA_GEN_PROC_PID: u16 = 2;
/// libnftnl's rule user data: TLVs of (u8 type, u8 length, value); type 0
/// is the rule's comment, NUL-terminated (NFTNL_UDATA_RULE_COMMENT).
const UDATA_RULE_COMMENT: u8 = 0;

/// Longest key or value nf_tables accepts (NFT_DATA_VALUE_MAXLEN).
const DATA_MAX: usize = 64;
/// An element list is one nested attribute, whose length is a u16: a
/// message is closed once its list passes this many bytes (an element
/// is under 400 bytes, so the list stays well below 64 KiB).
const LIST_SOFT_MAX: usize = 32 * 1024;

/// Packet and byte counters of an element's counter expression.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counter {
    pub packets: u64,
    pub bytes: u64,
}

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
    pub counter: Option<Counter>,
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
    begin_seq: u32,
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

    /// Messages so far between BATCH_BEGIN and BATCH_END.
    pub fn inner(&self) -> usize {
        self.sent.len()
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
            set_seq(&mut self.buf, start, seq);
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
    pub fn inner(&self) -> usize {
        self.sent.len()
    }

    /// Index of the inner message with this sequence number.
    pub fn index(&self, seq: u32) -> Option<usize> {
        let i = seq.wrapping_sub(self.begin_seq).wrapping_sub(1) as usize;
        (i < self.sent.len()).then_some(i)
    }

    /// Names the operation of inner message `i` that the kernel refused
    /// (as [`Built::index`] finds it): what, on which set, and the
    /// element key when the kernel pointed at its attribute (the
    /// extended ack's offset); "commit" for the batch as a whole.
    pub fn describe(&self, i: usize, ack: &Ack<'_>) -> String {
        let Some(s) = self.sent.get(i) else {
            return "commit".into();
        };
        let mut op = match s.what {
            What::Add => format!("add element to {}", s.object),
            What::Delete => format!("delete element from {}", s.object),
            What::Flush => format!("flush set {}", s.object),
            What::FlushChain => format!("flush chain {}", s.object),
        };
        let end = self.sent.get(i + 1).map_or(self.bytes.len(), |n| n.start);
        let msg = self.bytes.get(s.start..end);
        let off = ack.offs.and_then(|o| usize::try_from(o).ok());
        if let Some(key) = msg.zip(off).and_then(|(m, o)| key_at(m, o)) {
            op.push_str(&format!(" {{ {} }}", hex(key)));
        }
        op
    }
}

/// The key of the element whose attribute starts at `off` in a
/// NEWSETELEM/DELSETELEM message (offsets from the message start).
fn key_at(msg: &[u8], off: usize) -> Option<&[u8]> {
    let body_at = NLMSG_HDRLEN + NFGENMSG_LEN;
    let body = msg.get(body_at..)?;
    let (list_at, _, list) = attrs_at(body).find(|(_, t, _)| *t == NFTA_SET_ELEM_LIST_ELEMENTS)?;
    let list_base = body_at + list_at + NLA_HDRLEN;
    let (_, _, el) = attrs_at(list).find(|(at, _, el)| {
        let begin = list_base + at;
        (begin..begin + NLA_HDRLEN + el.len()).contains(&off)
    })?;
    attr(el, NFTA_SET_ELEM_KEY).and_then(data_value)
}
const fn nft_type(msg: u16) -> u16 {
    (NFNL_SUBSYS_NFTABLES << 8) | msg
}

/// struct nfgenmsg: family, version (NFNETLINK_V0), resource id (BE).
fn put_nfgen(buf: &mut Vec<u8>, family: u8, res_id: u16) {
    buf.push(family);
    buf.push(0);
    buf.extend_from_slice(&res_id.to_be_bytes());
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

/// One nf_tables request outside a batch, on a table of family `inet`.
fn nft_request(ty: u16, flags: u16, seq: u32, attrs: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    request(nft_type(ty), flags, seq, |b| {
        put_nfgen(b, NFPROTO_INET, 0);
        attrs(b)
    })
}

/// Dumps every element of a set (answered with [`NEWSETELEM`] messages).
pub fn get_elements(seq: u32, table: &str, set: &str) -> Vec<u8> {
    nft_request(NFT_MSG_GETSETELEM, NLM_F_REQUEST | NLM_F_DUMP, seq, |b| {
        put_strz(b, NFTA_SET_ELEM_LIST_TABLE, table);
        put_strz(b, NFTA_SET_ELEM_LIST_SET, set);
    })
}

/// Gets one element by key (and key end, for interval sets); ENOENT
/// when it is not there.
pub fn get_element(
    seq: u32,
    table: &str,
    set: &str,
    key: &Data,
    key_end: Option<&Data>,
) -> Vec<u8> {
    nft_request(NFT_MSG_GETSETELEM, NLM_F_REQUEST | NLM_F_ACK, seq, |b| {
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
    })
}

/// Dumps the rules of a chain (answered with [`NEWRULE`] messages; old
/// kernels ignore the chain and send every rule of the table).
pub fn get_rules(seq: u32, table: &str, chain: &str) -> Vec<u8> {
    nft_request(NFT_MSG_GETRULE, NLM_F_REQUEST | NLM_F_DUMP, seq, |b| {
        put_strz(b, NFTA_RULE_TABLE, table);
        put_strz(b, NFTA_RULE_CHAIN, chain);
    })
}

/// Asks for `table inet <table>`: an ack, or ENOENT.
pub fn get_table(seq: u32, table: &str) -> Vec<u8> {
    nft_request(NFT_MSG_GETTABLE, NLM_F_REQUEST | NLM_F_ACK, seq, |b| {
        put_strz(b, NFTA_TABLE_NAME, table)
    })
}

/// Asks for a chain of `table inet <table>`: an ack, or ENOENT.
pub fn get_chain(seq: u32, table: &str, chain: &str) -> Vec<u8> {
    nft_request(NFT_MSG_GETCHAIN, NLM_F_REQUEST | NLM_F_ACK, seq, |b| {
        put_strz(b, NFTA_CHAIN_TABLE, table);
        put_strz(b, NFTA_CHAIN_NAME, chain);
    })
}

/// One element of a dump reply, borrowed from the receive buffer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Element<'a> {
    pub key: &'a [u8],
    pub key_end: Option<&'a [u8]>,
    pub data: Option<&'a [u8]>,
    pub timeout_ms: Option<u64>,
    pub expiration_ms: Option<u64>,
    pub counter: Option<Counter>,
}

/// The value inside an nf_tables data nest (NFTA_DATA_VALUE).
fn data_value(nest: &[u8]) -> Option<&[u8]> {
    attr(nest, NFTA_DATA_VALUE)
}

/// The counter among an expression's attributes, if it is one.
fn counter_expr(expr: &[u8]) -> Option<Counter> {
    let mut is_counter = false;
    let mut c = None;
    for (t, v) in attrs(expr) {
        match t {
            NFTA_EXPR_NAME => is_counter = strz(v) == b"counter",
            NFTA_EXPR_DATA => {
                let mut k = Counter::default();
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
        d = rest.get(usize::from(*len)..)?;
    }
    None
}

/// One notification of the nf_tables multicast group, as far as the
/// daemon needs to tell whether a transaction concerned its objects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Notice<'a> {
    /// The end of a transaction, and the process that committed it (0
    /// when the message names none).
    Gen { pid: u32 },
    /// Elements of set `set` in `table` of `family` were added or removed.
    Elements {
        family: u8,
        table: &'a [u8],
        set: &'a [u8],
    },
    /// Any other change in `table` of `family`: the table itself, a chain,
    /// a rule, a set, an object, a flowtable.
    Object { family: u8, table: &'a [u8] },
    /// A message that names no table (not expected; taken as concerning
    /// anyone).
    Unknown,
}

/// The notifications in one datagram of the nf_tables multicast group, in
/// order. Every object message carries its table as attribute 1
/// (NFTA_TABLE_NAME, NFTA_CHAIN_TABLE, NFTA_RULE_TABLE, NFTA_SET_TABLE,
/// NFTA_SET_ELEM_LIST_TABLE, NFTA_OBJ_TABLE, NFTA_FLOWTABLE_TABLE); a set
/// element message names its set as attribute 2.
pub fn notices(d: &[u8]) -> impl Iterator<Item = Notice<'_>> {
    messages(d).map(|m| {
        let family = m.payload.first().copied().unwrap_or(0);
        let body = m.payload.get(NFGENMSG_LEN..).unwrap_or(&[]);
        if m.ty == nft_type(NFT_MSG_NEWGEN) {
            let pid = attr(body, NFTA_GEN_PROC_PID).and_then(be32).unwrap_or(0);
            return Notice::Gen { pid };
        }
        let Some(table) = attr(body, NFTA_TABLE_NAME).map(strz) else {
            return Notice::Unknown;
        };
        if m.ty == nft_type(NFT_MSG_NEWSETELEM) || m.ty == nft_type(NFT_MSG_DELSETELEM) {
            if let Some(set) = attr(body, NFTA_SET_ELEM_LIST_SET).map(strz) {
                return Notice::Elements { family, table, set };
            }
        }
        Notice::Object { family, table }
    })
}

#[cfg(test)]
mod tests {
    use super::super::vectors::{Family, P, bytes, capture};
    use super::super::{NLA_F_NESTED, NLMSG_DONE, parse_ack};
    use super::*;

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
            counter: Some(Counter {
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
            errno: -17,
            msg: None,
            offs: Some(off),
        };
        assert_eq!(
            built.describe(1, &ack),
            "add element to upnp_dnat { 06000000 00020000 }"
        );
        assert_eq!(
            built.describe(0, &Ack { offs: None, ..ack }),
            "flush set upnp_fwd"
        );
        // an offset pointing nowhere sensible still names the operation
        let odd = Ack {
            offs: Some(3),
            ..ack
        };
        assert_eq!(built.describe(1, &odd), "add element to upnp_dnat");
        assert_eq!(built.describe(2, &odd), "commit");
    }

    /// The batch the kernel refused in `super::tests`' REFUSED capture,
    /// as this builder writes it, and the refusal read back: Linux 6.18
    /// pointed at the second element, the one that is not there.
    #[test]
    fn a_real_refusal_points_at_the_missing_element() {
        let key = |port| Elem {
            key: Data::new().proto(6).service(port),
            ..Elem::default()
        };
        let mut b = Batch::new("fw4");
        b.delete("upnp_dnat", &key(18080));
        b.delete("upnp_dnat", &key(2000));
        let built = b.finish(10);
        let sent = capture(
            Family::Netfilter,
            "14000000 10000100 0a000000 00000000 0000000a \
             58000000 0e0a0500 0b000000 00000000 01000000 08000100 66773400 \
             0e000200 75706e70 5f646e61 74000000 2c000380 14000180 10000180 \
             0c000100 06000000 46a00000 14000180 10000180 0c000100 06000000 \
             07d00000 \
             14000000 11000100 0c000000 00000000 0000000a",
        );
        assert_eq!(hex(&built.bytes), hex(&sent));
        let reply = capture(
            Family::Netfilter,
            "2c000000 02000003 0b000000 a9430000 feffffff 58000000 0e0a0500 \
             0b000000 00000000 08000200 44000000",
        );
        let m = messages(&reply).next().unwrap();
        let ack = parse_ack(&m).unwrap();
        assert_eq!(built.index(m.seq), Some(0));
        assert_eq!(
            built.describe(0, &ack),
            "delete element from upnp_dnat { 06000000 07d00000 }"
        );
    }

    /// The list form of element expressions (NFTA_SET_ELEM_EXPRESSIONS,
    /// Linux ≥ 5.12) reads like the single NFTA_SET_ELEM_EXPR of
    /// `ELEMENT_DUMP`; an attribute we do not know (padding) is skipped.
    #[test]
    fn element_expressions_in_list_form() {
        let mut el = Vec::new();
        put_attr(&mut el, 8, &[]);
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
        assert_eq!(parse_element(&el).key, [17, 0, 0, 0, 0, 1, 0, 0]);
        assert_eq!(
            parse_element(&el).counter,
            Some(Counter {
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

    /// `nft add element inet fw4 upnp_dnat { tcp . 18080 counter packets
    /// 4 bytes 1500 timeout 1h : 192.168.77.2 . 8080 }`, then a
    /// GETSETELEM dump of the map: the two datagrams Linux 6.18 sent (the
    /// second an empty NEWSETELEM and NLMSG_DONE).
    const ELEMENT_DUMP: [&str; 2] = [
        "98000000 0c0a0200 03000000 a9430000 01000004 08000100 66773400 \
         0e000200 75706e70 5f646e61 74000000 6c000300 68000100 10000100 \
         0c000100 06000000 46a00000 10000200 0c000100 c0a84d02 1f900000 \
         2c000700 0c000100 636f756e 74657200 1c000200 0c000100 00000000 \
         000005dc 0c000200 00000000 00000004 0c000400 00000000 0036ee80 \
         0c000500 00000000 0036ee68",
        "30000000 0c0a0200 03000000 a9430000 01000004 08000100 66773400 \
         0e000200 75706e70 5f646e61 74000000 04000300 \
         14000000 03000200 03000000 a9430000 00000000",
    ];

    #[test]
    fn a_real_element_dump() {
        let first = capture(Family::Netfilter, ELEMENT_DUMP[0]);
        let m = messages(&first).next().unwrap();
        assert_eq!((m.ty, m.seq), (NEWSETELEM, 3));
        let mut got = Vec::new();
        assert_eq!(parse_elements(m.payload, &mut |e| got.push(*e)), 1);
        assert_eq!(
            got[0],
            Element {
                key: &[6, 0, 0, 0, 0x46, 0xa0, 0, 0],
                key_end: None,
                data: Some(&[192, 168, 77, 2, 0x1f, 0x90, 0, 0]),
                timeout_ms: Some(3_600_000),
                expiration_ms: Some(3_599_976),
                counter: Some(Counter {
                    packets: 4,
                    bytes: 1500
                }),
            }
        );
        // the key is the one this module encodes for the mapping
        assert_eq!(got[0].key, Data::new().proto(6).service(18080).as_bytes());
        for cut in 0..first.len() {
            for m in messages(&first[..cut]) {
                assert!(parse_elements(m.payload, &mut |_| {}) <= 1);
            }
        }
        let last = capture(Family::Netfilter, ELEMENT_DUMP[1]);
        let all: Vec<_> = messages(&last).collect();
        assert_eq!(all.len(), 2);
        assert_eq!(parse_elements(all[0].payload, &mut |_| {}), 0);
        assert_eq!(all[1].ty, NLMSG_DONE);
    }

    /// A GETRULE dump of `upnp_prerouting` holding `meta l4proto tcp dnat
    /// ip to meta l4proto . th dport map @upnp_dnat comment "rupnpd"`
    /// (Linux 6.18, nft 1.0.6); the expressions are opaque here.
    #[test]
    fn a_real_rule_dump() {
        let d = capture(
            Family::Netfilter,
            "7c010000 060a0208 04000000 a9430000 01000004 08000100 66773400 \
             14000200 75706e70 5f707265 726f7574 696e6700 0c000300 00000000 \
             00000003 30010400 24000100 09000100 6d657461 00000000 14000200 \
             08000200 00000010 08000100 00000001 2c000100 08000100 636d7000 \
             20000200 08000100 00000001 08000200 00000000 0c000300 05000100 \
             06000000 24000100 09000100 6d657461 00000000 14000200 08000200 \
             00000010 08000100 00000001 34000100 0c000100 7061796c 6f616400 \
             24000200 08000100 00000009 08000200 00000002 08000300 00000002 \
             08000400 00000002 3c000100 0b000100 6c6f6f6b 75700000 2c000200 \
             0e000100 75706e70 5f646e61 74000000 08000200 00000001 08000300 \
             00000001 08000500 00000000 48000100 08000100 6e617400 3c000200 \
             08000100 00000001 08000200 00000002 08000300 00000001 08000400 \
             00000001 08000500 00000009 08000600 00000009 08000700 00000003 \
             0d000700 00077275 706e7064 00000000",
        );
        let m = messages(&d).next().unwrap();
        assert_eq!(m.ty, NEWRULE);
        let r = parse_rule(m.payload);
        assert_eq!(r.chain, b"upnp_prerouting");
        assert_eq!(r.userdata, b"\x00\x07rupnpd\0");
        assert_eq!(rule_comment(r.userdata), Some(&b"rupnpd"[..]));
    }

    /// What a listener on NFNLGRP_NFTABLES got from Linux 6.18 when `nft
    /// add table inet other` (process 17477) committed: a NEWTABLE, then
    /// a NEWGEN (generation 5, the pid, the process name) in a datagram
    /// of its own.
    #[test]
    fn a_real_newgen_names_the_committing_process() {
        let table = capture(
            Family::Netfilter,
            "3c000000 000a0000 01000000 45440000 01000005 0a000100 6f746865 \
             72000000 08000300 00000000 0c000400 00000000 00000002 08000200 \
             00000000",
        );
        let pids = |d: &[u8]| -> Vec<u32> {
            notices(d)
                .filter_map(|n| match n {
                    Notice::Gen { pid } => Some(pid),
                    _ => None,
                })
                .collect()
        };
        assert_eq!(
            notices(&table).collect::<Vec<_>>(),
            vec![Notice::Object {
                family: NFPROTO_INET,
                table: b"other"
            }]
        );
        let newgen = capture(
            Family::Netfilter,
            "2c000000 0f0a0000 01000000 45440000 00000005 08000100 00000005 \
             08000200 00004445 08000300 6e667400",
        );
        assert_eq!(pids(&newgen), vec![17477]);
        // two in one datagram, the second without a pid
        let mut two = newgen.clone();
        two.extend_from_slice(&newgen[..20]);
        two[44..48].copy_from_slice(&20u32.to_ne_bytes());
        assert_eq!(pids(&two), vec![17477, 0]);
        // truncated and garbage input never panics
        for cut in 0..newgen.len() {
            let _ = pids(&newgen[..cut]);
        }
    }

    /// What a listener on NFNLGRP_NFTABLES got from Linux 6.18 for `nft
    /// add element inet fw4 dnsmasq_v4 { 198.51.100.1 }` (process 15899)
    /// and `nft add chain inet fw4 upnp_forward` (15900): a NEWSETELEM and
    /// a NEWCHAIN, each followed by its transaction's NEWGEN.
    #[test]
    fn real_notices_name_their_table_and_set() {
        let elem = capture(
            Family::Netfilter,
            "40000000 0c0a0004 00000000 1b3e0000 01000003 08000100 66773400 \
             0f000200 646e736d 6173715f 76340000 14000300 10000100 0c000100 \
             08000100 c6336401",
        );
        assert_eq!(
            notices(&elem).collect::<Vec<_>>(),
            vec![Notice::Elements {
                family: NFPROTO_INET,
                table: b"fw4",
                set: b"dnsmasq_v4"
            }]
        );
        let chain = capture(
            Family::Netfilter,
            "44000000 030a0004 01000000 1c3e0000 01000004 08000100 66773400 \
             11000300 75706e70 5f666f72 77617264 00000000 0c000200 00000000 \
             00000002 08000600 00000000 \
             2c000000 0f0a0000 01000000 1c3e0000 00000004 08000100 00000004 \
             08000200 00003e1c 08000300 6e667400",
        );
        assert_eq!(
            notices(&chain).collect::<Vec<_>>(),
            vec![
                Notice::Object {
                    family: NFPROTO_INET,
                    table: b"fw4"
                },
                Notice::Gen { pid: 15900 }
            ]
        );
        // truncated and garbage input never panics
        for cut in 0..chain.len() {
            let _ = notices(&chain[..cut]).count();
        }
        assert!(notices(&[0xff; 40]).all(|n| n == Notice::Unknown));
    }

    #[test]
    fn queries() {
        let head = |len: u32, ty: u16, flags: u16| {
            bytes(&[
                P::U32(len),
                P::U16(ty),
                P::U16(flags),
                P::U32(9),
                P::U32(0),
                P::B(&[1, 0, 0, 0]),
                P::U16(8),
                P::U16(1),
                P::B(b"fw4\0"),
            ])
        };
        let dump = NLM_F_REQUEST | NLM_F_DUMP;
        let ack = NLM_F_REQUEST | NLM_F_ACK;
        let name = |ty: u16, s: &[u8]| {
            let mut v = bytes(&[P::U16(4 + s.len() as u16), P::U16(ty)]);
            v.extend_from_slice(s);
            v.resize(v.len().div_ceil(4) * 4, 0);
            v
        };
        assert_eq!(get_table(9, "fw4"), head(28, 0x0a01, ack));
        let chain = [head(40, 0x0a04, ack), name(3, b"forward\0")].concat();
        assert_eq!(get_chain(9, "fw4", "forward"), chain);
        let rules = [head(48, 0x0a07, dump), name(2, b"upnp_prerouting\0")].concat();
        assert_eq!(get_rules(9, "fw4", "upnp_prerouting"), rules);
        let all = [head(44, 0x0a0d, dump), name(2, b"upnp_dnat\0")].concat();
        assert_eq!(get_elements(9, "fw4", "upnp_dnat"), all);
        // a get by key carries the key (and key end) only
        let key = Data::new().proto(17).service(1);
        let one = get_element(9, "fw4", "upnp_dnat", &key, Some(&key));
        let m = messages(&one).next().unwrap();
        assert_eq!((m.ty, m.flags), (0x0a0d, ack));
        let mut seen = Vec::new();
        parse_elements(m.payload, &mut |e| seen.push(*e));
        assert_eq!(
            seen,
            vec![Element {
                key: key.as_bytes(),
                key_end: Some(key.as_bytes()),
                ..Element::default()
            }]
        );
    }
}
