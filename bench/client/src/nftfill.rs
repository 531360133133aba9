//! Installs port mappings directly as miniupnpd 2.3.1's nftables rules, so
//! the baseline can be measured at N = 10,000 existing mappings without
//! spending half an hour filling it through SOAP (its per-add cost grows
//! with N). The rules are written over raw nfnetlink with the same
//! expressions, in the same order, with the same userdata (the
//! description) as those miniupnpd writes itself; compare.sh checks this
//! with `nft --debug=netlink` against a rule miniupnpd made, and checks
//! that miniupnpd lists the result.
//!
//! Per mapping, as miniupnpd's nftnlrdr.c builds them:
//!
//! ```text
//! <nat chain>: meta iif == WAN; @nh,72,8 == proto; th dport == eport;
//!              reg1 = iaddr; reg2 = iport; dnat ip to reg1:reg2   userdata = desc
//! <fwd chain>: meta iif == WAN; th dport == iport; @nh,128,32 == iaddr;
//!              @nh,72,8 == proto; accept                           userdata = desc
//! ```

use std::io;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

const AF_NETLINK: i32 = 16;
const SOCK_RAW: i32 = 3;
const NETLINK_NETFILTER: i32 = 12;

const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const NLM_F_CREATE: u16 = 0x400;
const NLM_F_APPEND: u16 = 0x800;
const NLMSG_ERROR: u16 = 2;
const NLA_F_NESTED: u16 = 0x8000;

const NFNL_MSG_BATCH_BEGIN: u16 = 16;
const NFNL_MSG_BATCH_END: u16 = 17;
const NFNL_SUBSYS_NFTABLES: u16 = 10;
const NFT_MSG_NEWRULE: u16 = 6;
const NFPROTO_INET: u8 = 1;
const NFPROTO_IPV4: u32 = 2;

const NFTA_RULE_TABLE: u16 = 1;
const NFTA_RULE_CHAIN: u16 = 2;
const NFTA_RULE_EXPRESSIONS: u16 = 4;
const NFTA_RULE_USERDATA: u16 = 7;
const NFTA_LIST_ELEM: u16 = 1;
const NFTA_EXPR_NAME: u16 = 1;
const NFTA_EXPR_DATA: u16 = 2;
const NFTA_DATA_VALUE: u16 = 1;
const NFTA_DATA_VERDICT: u16 = 2;
const NFTA_VERDICT_CODE: u16 = 1;

const NFT_REG_VERDICT: u32 = 0;
const NFT_REG_1: u32 = 1;
const NFT_REG_2: u32 = 2;
const NFT_META_IIF: u32 = 4;
const NFT_CMP_EQ: u32 = 0;
const NFT_PAYLOAD_NETWORK_HEADER: u32 = 1;
const NFT_PAYLOAD_TRANSPORT_HEADER: u32 = 2;
const NFT_NAT_DNAT: u32 = 1;
/// NF_NAT_RANGE_MAP_IPS | NF_NAT_RANGE_PROTO_SPECIFIED.
const NAT_FLAGS: u32 = 0x3;
const NF_ACCEPT: u32 = 1;

/// Rules per batch (each rule is acknowledged; 200 acks fit the default
/// receive buffer).
const BATCH: usize = 200;

unsafe extern "C" {
    fn socket(domain: i32, ty: i32, proto: i32) -> i32;
    fn bind(fd: i32, addr: *const SockaddrNl, len: u32) -> i32;
    fn send(fd: i32, buf: *const u8, len: usize, flags: i32) -> isize;
    fn recv(fd: i32, buf: *mut u8, len: usize, flags: i32) -> isize;
}

#[repr(C)]
struct SockaddrNl {
    nl_family: u16,
    nl_pad: u16,
    nl_pid: u32,
    nl_groups: u32,
}

/// A netlink attribute writer.
struct Msg {
    b: Vec<u8>,
}

impl Msg {
    fn attr(&mut self, ty: u16, data: &[u8]) {
        let len = 4 + data.len();
        self.b.extend_from_slice(&(len as u16).to_ne_bytes());
        self.b.extend_from_slice(&ty.to_ne_bytes());
        self.b.extend_from_slice(data);
        while self.b.len() % 4 != 0 {
            self.b.push(0);
        }
    }

    fn u32(&mut self, ty: u16, v: u32) {
        self.attr(ty, &v.to_be_bytes());
    }

    fn str(&mut self, ty: u16, s: &str) {
        let mut d = s.as_bytes().to_vec();
        d.push(0);
        self.attr(ty, &d);
    }

    /// Starts a nested attribute; `end` fixes its length.
    fn begin(&mut self, ty: u16) -> usize {
        let at = self.b.len();
        self.b.extend_from_slice(&[0, 0]);
        self.b.extend_from_slice(&(ty | NLA_F_NESTED).to_ne_bytes());
        at
    }

    fn end(&mut self, at: usize) {
        let len = (self.b.len() - at) as u16;
        self.b[at..at + 2].copy_from_slice(&len.to_ne_bytes());
    }

    fn expr(&mut self, name: &str, body: impl FnOnce(&mut Msg)) {
        let e = self.begin(NFTA_LIST_ELEM);
        self.str(NFTA_EXPR_NAME, name);
        let d = self.begin(NFTA_EXPR_DATA);
        body(self);
        self.end(d);
        self.end(e);
    }

    fn meta_iif(&mut self) {
        self.expr("meta", |m| {
            m.u32(1, NFT_REG_1); // NFTA_META_DREG
            m.u32(2, NFT_META_IIF); // NFTA_META_KEY
        });
    }

    fn cmp_eq(&mut self, value: &[u8]) {
        self.expr("cmp", |m| {
            m.u32(1, NFT_REG_1); // NFTA_CMP_SREG
            m.u32(2, NFT_CMP_EQ); // NFTA_CMP_OP
            let d = m.begin(3); // NFTA_CMP_DATA
            m.attr(NFTA_DATA_VALUE, value);
            m.end(d);
        });
    }

    fn payload(&mut self, base: u32, offset: u32, len: u32) {
        self.expr("payload", |m| {
            m.u32(1, NFT_REG_1); // NFTA_PAYLOAD_DREG
            m.u32(2, base); // NFTA_PAYLOAD_BASE
            m.u32(3, offset); // NFTA_PAYLOAD_OFFSET
            m.u32(4, len); // NFTA_PAYLOAD_LEN
        });
    }

    fn immediate(&mut self, reg: u32, value: &[u8]) {
        self.expr("immediate", |m| {
            m.u32(1, reg); // NFTA_IMMEDIATE_DREG
            let d = m.begin(2); // NFTA_IMMEDIATE_DATA
            m.attr(NFTA_DATA_VALUE, value);
            m.end(d);
        });
    }

    fn accept(&mut self) {
        self.expr("immediate", |m| {
            m.u32(1, NFT_REG_VERDICT);
            let d = m.begin(2);
            let v = m.begin(NFTA_DATA_VERDICT);
            m.u32(NFTA_VERDICT_CODE, NF_ACCEPT);
            m.end(v);
            m.end(d);
        });
    }

    fn dnat(&mut self) {
        self.expr("nat", |m| {
            m.u32(1, NFT_NAT_DNAT); // NFTA_NAT_TYPE
            m.u32(2, NFPROTO_IPV4); // NFTA_NAT_FAMILY
            m.u32(3, NFT_REG_1); // NFTA_NAT_REG_ADDR_MIN
            m.u32(4, NFT_REG_1); // NFTA_NAT_REG_ADDR_MAX
            m.u32(5, NFT_REG_2); // NFTA_NAT_REG_PROTO_MIN
            m.u32(6, NFT_REG_2); // NFTA_NAT_REG_PROTO_MAX
            m.u32(7, NAT_FLAGS); // NFTA_NAT_FLAGS
        });
    }
}

/// Appends one netlink message (header + nfgenmsg + attributes).
fn message(out: &mut Vec<u8>, ty: u16, flags: u16, seq: u32, family: u8, attrs: &[u8]) {
    let len = 16 + 4 + attrs.len();
    out.extend_from_slice(&(len as u32).to_ne_bytes());
    out.extend_from_slice(&ty.to_ne_bytes());
    out.extend_from_slice(&flags.to_ne_bytes());
    out.extend_from_slice(&seq.to_ne_bytes());
    out.extend_from_slice(&0u32.to_ne_bytes());
    out.push(family);
    out.push(0); // NFNETLINK_V0
    out.extend_from_slice(&NFNL_SUBSYS_NFTABLES.to_be_bytes());
    out.extend_from_slice(attrs);
}

pub struct Spec {
    pub table: String,
    pub nat_chain: String,
    pub fwd_chain: String,
    pub wan_ifindex: u32,
    pub client: Ipv4Addr,
    pub desc: String,
    pub from: u16,
    pub count: u32,
}

fn rule(spec: &Spec, chain: &str, body: impl FnOnce(&mut Msg)) -> Vec<u8> {
    let mut m = Msg { b: Vec::new() };
    m.str(NFTA_RULE_TABLE, &spec.table);
    m.str(NFTA_RULE_CHAIN, chain);
    let e = m.begin(NFTA_RULE_EXPRESSIONS);
    body(&mut m);
    m.end(e);
    m.attr(NFTA_RULE_USERDATA, spec.desc.as_bytes());
    m.b
}

/// The two rules of TCP mapping `port` → client:`port`.
fn mapping_rules(spec: &Spec, port: u16) -> [Vec<u8>; 2] {
    let iif = spec.wan_ifindex.to_ne_bytes();
    let addr = spec.client.octets();
    let p = port.to_be_bytes();
    let nat = rule(spec, &spec.nat_chain, |m| {
        m.meta_iif();
        m.cmp_eq(&iif);
        m.payload(NFT_PAYLOAD_NETWORK_HEADER, 9, 1);
        m.cmp_eq(&[6]);
        m.payload(NFT_PAYLOAD_TRANSPORT_HEADER, 2, 2);
        m.cmp_eq(&p);
        m.immediate(NFT_REG_1, &addr);
        m.immediate(NFT_REG_2, &p);
        m.dnat();
    });
    let fwd = rule(spec, &spec.fwd_chain, |m| {
        m.meta_iif();
        m.cmp_eq(&iif);
        m.payload(NFT_PAYLOAD_TRANSPORT_HEADER, 2, 2);
        m.cmp_eq(&p);
        m.payload(NFT_PAYLOAD_NETWORK_HEADER, 16, 4);
        m.cmp_eq(&addr);
        m.payload(NFT_PAYLOAD_NETWORK_HEADER, 9, 1);
        m.cmp_eq(&[6]);
        m.accept();
    });
    [nat, fwd]
}

/// Installs the mappings; returns how many rules the kernel accepted.
pub fn fill(spec: &Spec) -> io::Result<u64> {
    // SAFETY: plain socket/bind calls; the fd is owned right away.
    let fd = unsafe { socket(AF_NETLINK, SOCK_RAW, NETLINK_NETFILTER) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd is a fresh, valid descriptor.
    let sock = unsafe { OwnedFd::from_raw_fd(fd) };
    let sa = SockaddrNl {
        nl_family: AF_NETLINK as u16,
        nl_pad: 0,
        nl_pid: 0,
        nl_groups: 0,
    };
    // SAFETY: a correctly sized sockaddr_nl.
    if unsafe {
        bind(
            sock.as_raw_fd(),
            &sa,
            std::mem::size_of::<SockaddrNl>() as u32,
        )
    } != 0
    {
        return Err(io::Error::last_os_error());
    }
    let ports: Vec<u16> = (0..spec.count)
        .filter_map(|i| u16::try_from(u32::from(spec.from) + i).ok())
        .collect();
    let mut seq = 1u32;
    let mut done = 0u64;
    for chunk in ports.chunks(BATCH / 2) {
        let mut buf = Vec::with_capacity(chunk.len() * 2 * 400);
        message(&mut buf, NFNL_MSG_BATCH_BEGIN, NLM_F_REQUEST, seq, 0, &[]);
        seq += 1;
        let first = seq;
        for &p in chunk {
            for r in mapping_rules(spec, p) {
                message(
                    &mut buf,
                    (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_NEWRULE,
                    NLM_F_REQUEST | NLM_F_CREATE | NLM_F_APPEND | NLM_F_ACK,
                    seq,
                    NFPROTO_INET,
                    &r,
                );
                seq += 1;
            }
        }
        message(&mut buf, NFNL_MSG_BATCH_END, NLM_F_REQUEST, seq, 0, &[]);
        seq += 1;
        // SAFETY: buf is valid for its length.
        let n = unsafe { send(sock.as_raw_fd(), buf.as_ptr(), buf.len(), 0) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let want = (chunk.len() * 2) as u64;
        let mut acked = 0u64;
        let mut rbuf = vec![0u8; 256 * 1024];
        while acked < want {
            // SAFETY: rbuf is valid for its length.
            let n = unsafe { recv(sock.as_raw_fd(), rbuf.as_mut_ptr(), rbuf.len(), 0) };
            if n < 0 {
                return Err(io::Error::last_os_error());
            }
            let mut d = &rbuf[..n as usize];
            while d.len() >= 16 {
                let len = u32::from_ne_bytes([d[0], d[1], d[2], d[3]]) as usize;
                let ty = u16::from_ne_bytes([d[4], d[5]]);
                let mseq = u32::from_ne_bytes([d[8], d[9], d[10], d[11]]);
                if len < 16 || len > d.len() {
                    break;
                }
                if ty == NLMSG_ERROR && len >= 20 {
                    let err = i32::from_ne_bytes([d[16], d[17], d[18], d[19]]);
                    if err != 0 {
                        return Err(io::Error::other(format!(
                            "rule (seq {mseq}, batch from {first}) refused: {}",
                            io::Error::from_raw_os_error(-err)
                        )));
                    }
                    acked += 1;
                }
                d = d.get((len + 3) & !3..).unwrap_or(&[]);
            }
        }
        done += acked;
    }
    Ok(done)
}
