//! A small PCP client (RFC 6887) for end-to-end tests: builds ANNOUNCE,
//! MAP and PEER requests with options, for IPv4 hosts (IPv4-mapped
//! addresses, RFC 6887 §5) and IPv6 hosts alike, sends them over either
//! family with the retransmission of RFC 6887 §8.1.1 (bounded), and
//! parses responses.
//!
//! Written from the RFC independently of `rupnpd::proto::pcp`, so a test
//! that uses both checks one codec against the other. Plain functions and
//! std only; include with `#[path = "support/pcp_client.rs"] mod pcp_client;`
//! or from a `tests/support/mod.rs`.

#![allow(dead_code)]

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

pub const SERVER_PORT: u16 = 5351;
pub const VERSION: u8 = 2;
pub const OP_ANNOUNCE: u8 = 0;
pub const OP_MAP: u8 = 1;
pub const OP_PEER: u8 = 2;
pub const TCP: u8 = 6;
pub const UDP: u8 = 17;

/// Result codes (RFC 6887 §7.4), as plain numbers.
pub mod result {
    pub const SUCCESS: u8 = 0;
    pub const UNSUPP_VERSION: u8 = 1;
    pub const NOT_AUTHORIZED: u8 = 2;
    pub const MALFORMED_REQUEST: u8 = 3;
    pub const UNSUPP_OPCODE: u8 = 4;
    pub const UNSUPP_OPTION: u8 = 5;
    pub const MALFORMED_OPTION: u8 = 6;
    pub const NETWORK_FAILURE: u8 = 7;
    pub const NO_RESOURCES: u8 = 8;
    pub const UNSUPP_PROTOCOL: u8 = 9;
    pub const USER_EX_QUOTA: u8 = 10;
    pub const CANNOT_PROVIDE_EXTERNAL: u8 = 11;
    pub const ADDRESS_MISMATCH: u8 = 12;
    pub const EXCESSIVE_REMOTE_PEERS: u8 = 13;
}

/// `::ffff:a.b.c.d` (RFC 6887 §5).
pub fn v4_mapped(a: Ipv4Addr) -> [u8; 16] {
    let mut b = [0u8; 16];
    b[10] = 0xff;
    b[11] = 0xff;
    b[12..].copy_from_slice(&a.octets());
    b
}

/// An address as PCP carries it: IPv4 mapped, IPv6 as it is.
pub fn wire(a: IpAddr) -> [u8; 16] {
    match a {
        IpAddr::V4(a) => v4_mapped(a),
        IpAddr::V6(a) => a.octets(),
    }
}

/// A request option (RFC 6887 §13).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Opt {
    ThirdParty(IpAddr),
    PreferFailure,
    /// `prefix_len` is the wire value: 96 + n for an IPv4 /n, n for an
    /// IPv6 /n; 0 removes all filters.
    Filter {
        prefix_len: u8,
        port: u16,
        peer: IpAddr,
    },
    /// Anything else, for negative tests: code, data (padded on the wire).
    Raw {
        code: u8,
        data: Vec<u8>,
    },
}

impl Opt {
    /// A FILTER for the IPv4 network `peer/n`.
    pub fn filter_v4(peer: Ipv4Addr, n: u8, port: u16) -> Opt {
        Opt::Filter {
            prefix_len: 96 + n.min(32),
            port,
            peer: peer.into(),
        }
    }

    /// A FILTER for the IPv6 network `peer/n`.
    pub fn filter_v6(peer: Ipv6Addr, n: u8, port: u16) -> Opt {
        Opt::Filter {
            prefix_len: n.min(128),
            port,
            peer: peer.into(),
        }
    }

    fn write(&self, out: &mut Vec<u8>) {
        let (code, data) = match self {
            Opt::ThirdParty(a) => (1, wire(*a).to_vec()),
            Opt::PreferFailure => (2, Vec::new()),
            Opt::Filter {
                prefix_len,
                port,
                peer,
            } => {
                let mut d = vec![0, *prefix_len];
                d.extend_from_slice(&port.to_be_bytes());
                d.extend_from_slice(&wire(*peer));
                (3, d)
            }
            Opt::Raw { code, data } => (*code, data.clone()),
        };
        out.push(code);
        out.push(0);
        out.extend_from_slice(&(data.len() as u16).to_be_bytes());
        out.extend_from_slice(&data);
        while out.len() % 4 != 0 {
            out.push(0);
        }
    }
}

/// MAP fields (RFC 6887 §11.1); also the first part of PEER.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Map {
    pub nonce: [u8; 12],
    pub protocol: u8,
    pub internal_port: u16,
    pub suggested_port: u16,
    /// `None`: no preference (`::ffff:0.0.0.0` for an IPv4 client, `::`
    /// for an IPv6 one).
    pub suggested_addr: Option<IpAddr>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    Announce,
    Map(Map),
    /// RFC 6887 §12.1: the MAP fields plus the remote peer.
    Peer {
        map: Map,
        peer: IpAddr,
        peer_port: u16,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// Goes into the PCP Client's IP Address field.
    pub client: IpAddr,
    pub lifetime: u32,
    pub op: Op,
    pub options: Vec<Opt>,
}

impl Request {
    pub fn announce(client: impl Into<IpAddr>) -> Request {
        Request {
            client: client.into(),
            lifetime: 0,
            op: Op::Announce,
            options: Vec::new(),
        }
    }

    pub fn map(
        client: impl Into<IpAddr>,
        nonce: [u8; 12],
        protocol: u8,
        internal_port: u16,
        lifetime: u32,
    ) -> Request {
        Request {
            client: client.into(),
            lifetime,
            op: Op::Map(Map {
                nonce,
                protocol,
                internal_port,
                suggested_port: 0,
                suggested_addr: None,
            }),
            options: Vec::new(),
        }
    }

    pub fn peer(
        client: impl Into<IpAddr>,
        map: Map,
        peer: impl Into<IpAddr>,
        peer_port: u16,
        lifetime: u32,
    ) -> Request {
        Request {
            client: client.into(),
            lifetime,
            op: Op::Peer {
                map,
                peer: peer.into(),
                peer_port,
            },
            options: Vec::new(),
        }
    }

    pub fn opcode(&self) -> u8 {
        match self.op {
            Op::Announce => OP_ANNOUNCE,
            Op::Map(_) => OP_MAP,
            Op::Peer { .. } => OP_PEER,
        }
    }

    fn map_fields(&self) -> Option<&Map> {
        match &self.op {
            Op::Announce => None,
            Op::Map(m) | Op::Peer { map: m, .. } => Some(m),
        }
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut b = vec![VERSION, self.opcode(), 0, 0];
        b.extend_from_slice(&self.lifetime.to_be_bytes());
        b.extend_from_slice(&wire(self.client));
        if let Some(m) = self.map_fields() {
            b.extend_from_slice(&m.nonce);
            b.extend_from_slice(&[m.protocol, 0, 0, 0]);
            b.extend_from_slice(&m.internal_port.to_be_bytes());
            b.extend_from_slice(&m.suggested_port.to_be_bytes());
            // RFC 6887 §11.1: no preference is the all-zeros address of
            // the family wanted, here the client's own
            let none = match self.client {
                IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
                IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
            };
            b.extend_from_slice(&wire(m.suggested_addr.unwrap_or(none)));
        }
        if let Op::Peer {
            peer, peer_port, ..
        } = &self.op
        {
            b.extend_from_slice(&peer_port.to_be_bytes());
            b.extend_from_slice(&[0, 0]);
            b.extend_from_slice(&wire(*peer));
        }
        for o in &self.options {
            o.write(&mut b);
        }
        b
    }
}

/// A parsed response. For a NAT-PMP-only server's "unsupported version"
/// answer (RFC 6887 §9), `version` is 0 and only `result` and `epoch` are
/// meaningful.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub version: u8,
    pub opcode: u8,
    pub result: u8,
    pub lifetime: u32,
    pub epoch: u32,
    pub reserved: [u8; 12],
    pub nonce: Option<[u8; 12]>,
    pub protocol: u8,
    pub internal_port: u16,
    pub external_port: u16,
    pub external_addr: Option<Ipv6Addr>,
    pub peer_port: u16,
    pub peer_addr: Option<Ipv6Addr>,
    /// (code, data) of every option, unknown ones included.
    pub options: Vec<(u8, Vec<u8>)>,
    pub len: usize,
}

impl Response {
    /// The assigned external address, if it is IPv4-mapped.
    pub fn external_v4(&self) -> Option<Ipv4Addr> {
        self.external_addr.and_then(|a| a.to_ipv4_mapped())
    }
}

fn get16(b: &[u8], at: usize) -> Result<u16, String> {
    b.get(at..at + 2)
        .map(|s| u16::from_be_bytes([s[0], s[1]]))
        .ok_or_else(|| format!("truncated at {at}"))
}

fn get32(b: &[u8], at: usize) -> Result<u32, String> {
    b.get(at..at + 4)
        .map(|s| u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
        .ok_or_else(|| format!("truncated at {at}"))
}

fn get_addr(b: &[u8], at: usize) -> Result<Ipv6Addr, String> {
    let s: [u8; 16] = b
        .get(at..at + 16)
        .and_then(|s| s.try_into().ok())
        .ok_or_else(|| format!("truncated at {at}"))?;
    Ok(Ipv6Addr::from(s))
}

/// Parses a PCP response, checking the size rules of RFC 6887 §7.
pub fn parse_response(b: &[u8]) -> Result<Response, String> {
    if b.first() == Some(&0) && b.len() >= 8 {
        return Ok(Response {
            version: 0,
            opcode: b[1] & 0x7f,
            result: b[3],
            lifetime: 0,
            epoch: get32(b, 4)?,
            reserved: [0; 12],
            nonce: None,
            protocol: 0,
            internal_port: 0,
            external_port: 0,
            external_addr: None,
            peer_port: 0,
            peer_addr: None,
            options: Vec::new(),
            len: b.len(),
        });
    }
    if b.len() < 24 || b.len() > 1100 || b.len() % 4 != 0 {
        return Err(format!("bad response length {}", b.len()));
    }
    if b[0] != VERSION {
        return Err(format!("version {}", b[0]));
    }
    if b[1] & 0x80 == 0 {
        return Err("R bit clear".into());
    }
    let opcode = b[1] & 0x7f;
    let mut r = Response {
        version: b[0],
        opcode,
        result: b[3],
        lifetime: get32(b, 4)?,
        epoch: get32(b, 8)?,
        reserved: b[12..24].try_into().map_err(|_| "reserved")?,
        nonce: None,
        protocol: 0,
        internal_port: 0,
        external_port: 0,
        external_addr: None,
        peer_port: 0,
        peer_addr: None,
        options: Vec::new(),
        len: b.len(),
    };
    let mut at = 24;
    if opcode == OP_MAP || opcode == OP_PEER {
        let nonce: [u8; 12] = b
            .get(24..36)
            .and_then(|s| s.try_into().ok())
            .ok_or("truncated MAP data")?;
        r.nonce = Some(nonce);
        r.protocol = *b.get(36).ok_or("truncated")?;
        r.internal_port = get16(b, 40)?;
        r.external_port = get16(b, 42)?;
        r.external_addr = Some(get_addr(b, 44)?);
        at = 60;
        if opcode == OP_PEER {
            r.peer_port = get16(b, 60)?;
            r.peer_addr = Some(get_addr(b, 64)?);
            at = 80;
        }
    }
    // Error responses may be a copy of a request that was not parsed;
    // their options are not trusted.
    if r.result == result::SUCCESS {
        while at < b.len() {
            let code = b[at];
            let len = usize::from(get16(b, at + 2)?);
            let data = b
                .get(at + 4..at + 4 + len)
                .ok_or("option overruns the response")?;
            r.options.push((code, data.to_vec()));
            at += 4 + len.div_ceil(4) * 4;
        }
    }
    Ok(r)
}

/// Whether `resp` answers `req` (RFC 6887 §8.1, §11.3, §12.3): same opcode
/// and, for MAP and PEER, same nonce, protocol and internal port. A
/// NAT-PMP "unsupported version" reply answers any request.
pub fn answers(req: &Request, resp: &Response) -> bool {
    if resp.version == 0 {
        return true;
    }
    if resp.opcode != req.opcode() {
        return false;
    }
    match req.map_fields() {
        None => true,
        Some(m) => {
            resp.nonce == Some(m.nonce)
                && resp.protocol == m.protocol
                && resp.internal_port == m.internal_port
        }
    }
}

/// Retransmission parameters (RFC 6887 §8.1.1): IRT 3 s, MRT 1024 s; the
/// RFC's MRC and MRD are 0 (unbounded), ours always bound the attempts.
#[derive(Debug, Clone, Copy)]
pub struct Retransmit {
    /// Initial retransmission time (IRT).
    pub initial: Duration,
    /// Maximum retransmission time (MRT).
    pub max_rt: Duration,
    /// Maximum number of transmissions (MRC), at least 1.
    pub max_count: u32,
}

impl Default for Retransmit {
    fn default() -> Self {
        Retransmit {
            initial: Duration::from_secs(3),
            max_rt: Duration::from_secs(1024),
            max_count: 4,
        }
    }
}

impl Retransmit {
    /// Quick settings for tests on a local bed: 250 ms doubling, 4 sends.
    pub fn fast() -> Retransmit {
        Retransmit {
            initial: Duration::from_millis(250),
            max_rt: Duration::from_secs(2),
            max_count: 4,
        }
    }
}

/// RAND of RFC 6887 §8.1.1: uniform in −0.1..+0.1.
struct Jitter(u64);

impl Jitter {
    fn new() -> Jitter {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1);
        Jitter(t ^ u64::from(std::process::id()) | 1)
    }

    fn scale(&mut self, d: Duration) -> Duration {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        let rand = (self.0 % 2001) as f64 / 10_000.0 - 0.1;
        d.mul_f64(1.0 + rand)
    }
}

/// Sends `bytes` to `server` and waits for a datagram from it that
/// `accept` takes, retransmitting per [`Retransmit`]: RT = (1+RAND)·IRT,
/// then RT = (1+RAND)·min(2·RTprev, MRT). Other datagrams are ignored.
pub fn exchange_raw(
    sock: &UdpSocket,
    server: SocketAddr,
    bytes: &[u8],
    rt: Retransmit,
    accept: impl Fn(&[u8]) -> bool,
) -> io::Result<Vec<u8>> {
    let mut jitter = Jitter::new();
    let mut next = jitter.scale(rt.initial);
    for _ in 0..rt.max_count.max(1) {
        sock.send_to(bytes, server)?;
        let deadline = Instant::now() + next;
        while let Some((got, from)) = recv_until(sock, deadline)? {
            if from == server && accept(&got) {
                return Ok(got);
            }
        }
        next = jitter.scale((next * 2).min(rt.max_rt));
    }
    Err(io::Error::new(io::ErrorKind::TimedOut, "no PCP response"))
}

/// Sends a request and returns the first response that answers it.
pub fn exchange(
    sock: &UdpSocket,
    server: SocketAddr,
    req: &Request,
    rt: Retransmit,
) -> io::Result<Response> {
    let raw = exchange_raw(sock, server, &req.to_bytes(), rt, |b| {
        parse_response(b).is_ok_and(|r| answers(req, &r))
    })?;
    parse_response(&raw).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

/// Waits up to `wait` for any datagram (e.g. to assert silence, or to read
/// an unsolicited ANNOUNCE on a socket bound to 224.0.0.1:5350).
pub fn recv_any(sock: &UdpSocket, wait: Duration) -> io::Result<Option<(Vec<u8>, SocketAddr)>> {
    recv_until(sock, Instant::now() + wait.max(Duration::from_millis(1)))
}

/// The next datagram that arrives before `deadline`; `None` once it has
/// passed. A recv interrupted (as a stop and continue of the test process
/// does to a recv with a timeout, even without a signal handler) waits on.
fn recv_until(sock: &UdpSocket, deadline: Instant) -> io::Result<Option<(Vec<u8>, SocketAddr)>> {
    let mut buf = [0u8; 2048];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(None);
        }
        sock.set_read_timeout(Some(left))?;
        match sock.recv_from(&mut buf) {
            Ok((n, from)) => return Ok(Some((buf[..n].to_vec(), from))),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return Ok(None);
            }
            Err(e) => return Err(e),
        }
    }
}
