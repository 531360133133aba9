//! PCP messages and options (RFC 6887): request parsing with every size
//! and option rule, success and error response emission, and the reverse
//! pair for clients and tests.
//!
//! Owns: the byte layouts of §7 (common header, options), §11 (MAP), §12
//! (PEER), §13 (THIRD_PARTY, PREFER_FAILURE, FILTER), §14.1 (ANNOUNCE),
//! [`ResultCode`] with its error-lifetime class (§7.4), and the IPv4-mapped
//! address helpers (§5). Pure: no IO, no clock; must not import `core`,
//! `sys` or tokio. Semantics that need state or configuration (client
//! address check, THIRD_PARTY permission, lifetimes) live in `core::natpmp_pcp`.

use std::net::{Ipv4Addr, Ipv6Addr};

/// The PCP version this server speaks (RFC 6887 §9).
pub const VERSION: u8 = 2;
pub const SERVER_PORT: u16 = 5351;
/// Clients listen here for unsolicited responses (RFC 6887 §19.1).
pub const CLIENT_PORT: u16 = 5350;
/// Longest PCP message (RFC 6887 §7).
pub const MAX_MESSAGE: usize = 1100;
/// Common request and response header (RFC 6887 §7.1, §7.2).
pub const HEADER_LEN: usize = 24;
/// MAP opcode-specific data (RFC 6887 §11.1).
pub const MAP_LEN: usize = 36;
/// PEER opcode-specific data (RFC 6887 §12.1).
pub const PEER_LEN: usize = 56;
pub const OPTION_HEADER_LEN: usize = 4;
/// The R bit of byte 1: set in responses (RFC 6887 §7.1).
pub const R_BIT: u8 = 0x80;
/// RECOMMENDED lifetimes of short and long errors (RFC 6887 §7.4).
pub const SHORT_ERROR_LIFETIME: u32 = 30;
pub const LONG_ERROR_LIFETIME: u32 = 30 * 60;

/// Option codes (RFC 6887 §13). Codes ≥ 128 are optional to process.
pub const THIRD_PARTY: u8 = 1;
pub const PREFER_FAILURE: u8 = 2;
pub const FILTER: u8 = 3;
const OPTIONAL_BIT: u8 = 0x80;
const THIRD_PARTY_LEN: usize = 16;
const FILTER_LEN: usize = 20;

/// PCP opcodes (RFC 6887 §19.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Opcode {
    Announce = 0,
    Map = 1,
    Peer = 2,
}

impl Opcode {
    pub fn from_u8(op: u8) -> Option<Opcode> {
        match op {
            0 => Some(Opcode::Announce),
            1 => Some(Opcode::Map),
            2 => Some(Opcode::Peer),
            _ => None,
        }
    }

    /// Length of the opcode-specific data.
    pub fn data_len(self) -> usize {
        match self {
            Opcode::Announce => 0,
            Opcode::Map => MAP_LEN,
            Opcode::Peer => PEER_LEN,
        }
    }
}

/// Result codes (RFC 6887 §7.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResultCode {
    Success = 0,
    UnsuppVersion = 1,
    NotAuthorized = 2,
    MalformedRequest = 3,
    UnsuppOpcode = 4,
    UnsuppOption = 5,
    MalformedOption = 6,
    NetworkFailure = 7,
    NoResources = 8,
    UnsuppProtocol = 9,
    UserExQuota = 10,
    CannotProvideExternal = 11,
    AddressMismatch = 12,
    ExcessiveRemotePeers = 13,
}

impl ResultCode {
    pub fn from_u8(v: u8) -> Option<ResultCode> {
        use ResultCode::*;
        Some(match v {
            0 => Success,
            1 => UnsuppVersion,
            2 => NotAuthorized,
            3 => MalformedRequest,
            4 => UnsuppOpcode,
            5 => UnsuppOption,
            6 => MalformedOption,
            7 => NetworkFailure,
            8 => NoResources,
            9 => UnsuppProtocol,
            10 => UserExQuota,
            11 => CannotProvideExternal,
            12 => AddressMismatch,
            13 => ExcessiveRemotePeers,
            _ => return None,
        })
    }

    /// How long the same request will keep failing (RFC 6887 §7.4):
    /// short errors are transient (30 s), long ones need a configuration
    /// or client change (30 min). CANNOT_PROVIDE_EXTERNAL "depends"; the
    /// port may free up at any time, so it is treated as short.
    pub fn error_lifetime(self) -> u32 {
        use ResultCode::*;
        match self {
            Success => 0,
            NetworkFailure | NoResources | UserExQuota | CannotProvideExternal => {
                SHORT_ERROR_LIFETIME
            }
            UnsuppVersion | NotAuthorized | MalformedRequest | UnsuppOpcode | UnsuppOption
            | MalformedOption | UnsuppProtocol | AddressMismatch | ExcessiveRemotePeers => {
                LONG_ERROR_LIFETIME
            }
        }
    }
}

/// IPv4 addresses travel as IPv4-mapped IPv6 addresses (RFC 6887 §5).
pub fn mapped(a: Ipv4Addr) -> Ipv6Addr {
    a.to_ipv6_mapped()
}

/// The IPv4 address inside `::ffff:a.b.c.d`; `None` for real IPv6.
pub fn unmapped(a: &Ipv6Addr) -> Option<Ipv4Addr> {
    a.to_ipv4_mapped()
}

/// "No preference": the all-zeros address of either family,
/// `::ffff:0.0.0.0` or `::` (RFC 6887 §11.1).
pub fn is_no_preference(a: &Ipv6Addr) -> bool {
    a.is_unspecified() || unmapped(a) == Some(Ipv4Addr::UNSPECIFIED)
}

/// FILTER option data (RFC 6887 §13.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Filter {
    /// Over the 128-bit address: 96 + n for an IPv4 /n; 0 = remove filters.
    pub prefix_len: u8,
    /// 0 = all ports.
    pub remote_peer_port: u16,
    pub remote_peer_addr: Ipv6Addr,
}

/// An option this server understands (RFC 6887 §13). Unknown optional
/// options are skipped by the parser and never echoed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PcpOption {
    /// The internal address the mapping is for (§13.1).
    ThirdParty(Ipv6Addr),
    /// Fail rather than give another external port or address (§13.2).
    PreferFailure,
    Filter(Filter),
}

impl PcpOption {
    pub fn code(&self) -> u8 {
        match self {
            PcpOption::ThirdParty(_) => THIRD_PARTY,
            PcpOption::PreferFailure => PREFER_FAILURE,
            PcpOption::Filter(_) => FILTER,
        }
    }

    /// Appends code, reserved, length, data (all our options are already
    /// multiples of 4, so there is no padding).
    pub fn emit(&self, out: &mut Vec<u8>) {
        let mut data = Vec::with_capacity(FILTER_LEN);
        match self {
            PcpOption::ThirdParty(a) => data.extend_from_slice(&a.octets()),
            PcpOption::PreferFailure => {}
            PcpOption::Filter(f) => {
                data.extend_from_slice(&[0, f.prefix_len]);
                data.extend_from_slice(&f.remote_peer_port.to_be_bytes());
                data.extend_from_slice(&f.remote_peer_addr.octets());
            }
        }
        out.extend_from_slice(&[self.code(), 0]);
        out.extend_from_slice(&(data.len() as u16).to_be_bytes());
        out.extend_from_slice(&data);
    }
}

/// MAP opcode data (RFC 6887 §11.1): suggested external port and address
/// in a request, assigned ones in a response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Map {
    pub nonce: [u8; 12],
    /// IANA protocol number; 0 = all protocols.
    pub protocol: u8,
    /// 0 = all ports.
    pub internal_port: u16,
    pub external_port: u16,
    pub external_addr: Ipv6Addr,
}

/// PEER opcode data (RFC 6887 §12.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Peer {
    pub nonce: [u8; 12],
    pub protocol: u8,
    pub internal_port: u16,
    pub external_port: u16,
    pub external_addr: Ipv6Addr,
    pub remote_peer_port: u16,
    pub remote_peer_addr: Ipv6Addr,
}

/// Opcode-specific data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Body {
    Announce,
    Map(Map),
    Peer(Peer),
}

impl Body {
    pub fn opcode(&self) -> Opcode {
        match self {
            Body::Announce => Opcode::Announce,
            Body::Map(_) => Opcode::Map,
            Body::Peer(_) => Opcode::Peer,
        }
    }

    fn emit(&self, out: &mut Vec<u8>) {
        let common = |out: &mut Vec<u8>, nonce: &[u8; 12], proto: u8, ip: u16, ep: u16, ea| {
            out.extend_from_slice(nonce);
            out.extend_from_slice(&[proto, 0, 0, 0]);
            out.extend_from_slice(&ip.to_be_bytes());
            out.extend_from_slice(&ep.to_be_bytes());
            out.extend_from_slice(&Ipv6Addr::octets(ea));
        };
        match self {
            Body::Announce => {}
            Body::Map(m) => common(
                out,
                &m.nonce,
                m.protocol,
                m.internal_port,
                m.external_port,
                &m.external_addr,
            ),
            Body::Peer(p) => {
                common(
                    out,
                    &p.nonce,
                    p.protocol,
                    p.internal_port,
                    p.external_port,
                    &p.external_addr,
                );
                out.extend_from_slice(&p.remote_peer_port.to_be_bytes());
                out.extend_from_slice(&[0, 0]);
                out.extend_from_slice(&p.remote_peer_addr.octets());
            }
        }
    }

    /// Parses the opcode data; `b` is exactly `opcode.data_len()` long.
    fn parse(opcode: Opcode, b: &[u8]) -> Option<Body> {
        let nonce_of = |b: &[u8]| -> Option<[u8; 12]> { b.get(..12)?.try_into().ok() };
        Some(match opcode {
            Opcode::Announce => Body::Announce,
            Opcode::Map => Body::Map(Map {
                nonce: nonce_of(b)?,
                protocol: *b.get(12)?,
                internal_port: be16(b, 16)?,
                external_port: be16(b, 18)?,
                external_addr: addr(b, 20)?,
            }),
            Opcode::Peer => Body::Peer(Peer {
                nonce: nonce_of(b)?,
                protocol: *b.get(12)?,
                internal_port: be16(b, 16)?,
                external_port: be16(b, 18)?,
                external_addr: addr(b, 20)?,
                remote_peer_port: be16(b, 36)?,
                remote_peer_addr: addr(b, 40)?,
            }),
        })
    }
}

/// A parsed request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// Requested lifetime in seconds (MAP: 0 deletes).
    pub lifetime: u32,
    /// The PCP Client's IP Address field (§7.1).
    pub client_addr: Ipv6Addr,
    pub body: Body,
    /// The understood options, in order, each already valid for the
    /// opcode and within its count limit.
    pub options: Vec<PcpOption>,
}

impl Request {
    pub fn third_party(&self) -> Option<Ipv6Addr> {
        self.options.iter().find_map(|o| match o {
            PcpOption::ThirdParty(a) => Some(*a),
            _ => None,
        })
    }

    pub fn prefer_failure(&self) -> bool {
        self.options.contains(&PcpOption::PreferFailure)
    }

    pub fn filters(&self) -> impl Iterator<Item = &Filter> + '_ {
        self.options.iter().filter_map(|o| match o {
            PcpOption::Filter(f) => Some(f),
            _ => None,
        })
    }

    /// Encodes the request (for clients and tests).
    pub fn emit(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(HEADER_LEN + PEER_LEN);
        b.extend_from_slice(&[VERSION, self.body.opcode() as u8, 0, 0]);
        b.extend_from_slice(&self.lifetime.to_be_bytes());
        b.extend_from_slice(&self.client_addr.octets());
        self.body.emit(&mut b);
        for o in &self.options {
            o.emit(&mut b);
        }
        b
    }
}

/// Why a datagram is not a request we can act on, and what to answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParseError {
    /// Too short to carry a version and opcode, or R = 1 (a response):
    /// drop silently (RFC 6887 §8.3).
    Drop,
    /// The request could not be parsed: answer with
    /// [`error_response`]`(.., parsed = false)`, which leaves the last 96
    /// bits of the client address field in the Reserved field (§7.2).
    Unparsed(ResultCode),
    /// Header and opcode data were parsed but the request is invalid:
    /// answer with [`error_response`]`(.., parsed = true)`.
    Invalid(ResultCode),
}

/// Parses a request (version 2). Checks, in order (RFC 6887 §8.3): length
/// and R bit (drop), version (UNSUPP_VERSION), size rules
/// (MALFORMED_REQUEST), opcode (UNSUPP_OPCODE), room for the opcode data
/// (MALFORMED_REQUEST), then the options one by one, in order.
pub fn parse(pkt: &[u8]) -> Result<Request, ParseError> {
    let (Some(&version), Some(&op)) = (pkt.first(), pkt.get(1)) else {
        return Err(ParseError::Drop);
    };
    if op & R_BIT != 0 {
        return Err(ParseError::Drop);
    }
    if version != VERSION {
        // RFC 6887 §9: version 1 was used only by pre-RFC drafts, which
        // clients must not send; it gets UNSUPP_VERSION like any other.
        return Err(ParseError::Unparsed(ResultCode::UnsuppVersion));
    }
    // RFC 6887 §7: ≤ 1100 octets, a multiple of 4, at least the header
    if pkt.len() < HEADER_LEN || pkt.len() > MAX_MESSAGE || pkt.len() % 4 != 0 {
        return Err(ParseError::Unparsed(ResultCode::MalformedRequest));
    }
    let Some(opcode) = Opcode::from_u8(op) else {
        return Err(ParseError::Unparsed(ResultCode::UnsuppOpcode));
    };
    let data_end = HEADER_LEN + opcode.data_len();
    let (Some(data), Some(opts)) = (pkt.get(HEADER_LEN..data_end), pkt.get(data_end..)) else {
        return Err(ParseError::Unparsed(ResultCode::MalformedRequest));
    };
    let (Some(lifetime), Some(client_addr), Some(body)) =
        (be32(pkt, 4), addr(pkt, 8), Body::parse(opcode, data))
    else {
        return Err(ParseError::Unparsed(ResultCode::MalformedRequest));
    };
    let options = parse_options(opts, opcode).map_err(ParseError::Invalid)?;
    Ok(Request {
        lifetime,
        client_addr,
        body,
        options,
    })
}

/// Walks the options (RFC 6887 §7.3), strictly inside `b`. Each step
/// consumes at least 4 bytes, so the loop is bounded by the message size.
fn parse_options(mut b: &[u8], opcode: Opcode) -> Result<Vec<PcpOption>, ResultCode> {
    let mut out = Vec::new();
    while !b.is_empty() {
        let (Some(&code), Some(len)) = (b.first(), be16(b, 2)) else {
            return Err(ResultCode::MalformedOption);
        };
        let len = usize::from(len);
        let data_end = OPTION_HEADER_LEN + len;
        // data is padded to a multiple of 4; the length excludes padding
        let next = OPTION_HEADER_LEN + len.div_ceil(4) * 4;
        let (Some(data), Some(rest)) = (b.get(OPTION_HEADER_LEN..data_end), b.get(next..)) else {
            // RFC 6887 §7.3: an option running past the message
            return Err(ResultCode::MalformedOption);
        };
        b = rest;
        let seen = |code: u8| out.iter().any(|o: &PcpOption| o.code() == code);
        let opt = match (code, opcode) {
            // RFC 6887 §13.1: MAP and PEER, 16 bytes, at most once
            (THIRD_PARTY, Opcode::Map | Opcode::Peer) => {
                if seen(THIRD_PARTY) {
                    return Err(ResultCode::MalformedOption);
                }
                let a = addr(data, 0).filter(|_| len == THIRD_PARTY_LEN);
                PcpOption::ThirdParty(a.ok_or(ResultCode::MalformedOption)?)
            }
            // RFC 6887 §12.3/§13.2: not allowed in PEER at all
            (PREFER_FAILURE, Opcode::Peer) => return Err(ResultCode::MalformedRequest),
            // RFC 6887 §13.2: MAP only, no data, at most once
            (PREFER_FAILURE, Opcode::Map) => {
                if seen(PREFER_FAILURE) || len != 0 {
                    return Err(ResultCode::MalformedOption);
                }
                PcpOption::PreferFailure
            }
            // RFC 6887 §13.3: MAP only, 20 bytes, as many as fit
            (FILTER, Opcode::Map) => {
                if len != FILTER_LEN {
                    return Err(ResultCode::MalformedOption);
                }
                let f = Filter {
                    prefix_len: data.get(1).copied().unwrap_or(0),
                    remote_peer_port: be16(data, 2).unwrap_or(0),
                    remote_peer_addr: addr(data, 4).ok_or(ResultCode::MalformedOption)?,
                };
                let ok = match unmapped(&f.remote_peer_addr) {
                    _ if f.prefix_len == 0 => true,
                    Some(_) => (96..=128).contains(&f.prefix_len),
                    None => f.prefix_len <= 128,
                };
                if !ok {
                    return Err(ResultCode::MalformedOption);
                }
                PcpOption::Filter(f)
            }
            // RFC 6887 §7.3: an unsupported mandatory option (a known one
            // not valid for this opcode counts as unsupported) fails the
            // request; optional ones are ignored
            (c, _) if c & OPTIONAL_BIT == 0 => return Err(ResultCode::UnsuppOption),
            _ => continue,
        };
        out.push(opt);
    }
    Ok(out)
}

/// A success response (or an unsolicited ANNOUNCE).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub result: ResultCode,
    /// Granted lifetime (on errors: how long the error will persist).
    pub lifetime: u32,
    pub epoch: u32,
    pub body: Body,
    /// Options echoed from the request; only ones it contained (§7.3).
    pub options: Vec<PcpOption>,
}

impl Response {
    /// Encodes the response with zero Reserved bits (§7.2: the request
    /// was parsed).
    pub fn emit(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(HEADER_LEN + PEER_LEN);
        b.extend_from_slice(&[
            VERSION,
            R_BIT | self.body.opcode() as u8,
            0,
            self.result as u8,
        ]);
        b.extend_from_slice(&self.lifetime.to_be_bytes());
        b.extend_from_slice(&self.epoch.to_be_bytes());
        b.extend_from_slice(&[0u8; 12]);
        self.body.emit(&mut b);
        for o in &self.options {
            o.emit(&mut b);
        }
        b
    }

    /// Parses a response (for clients and tests). Unknown options are
    /// skipped, as clients must (§7.3); a truncated option is an error.
    pub fn parse(b: &[u8]) -> Option<Response> {
        if b.len() < HEADER_LEN || b.len() > MAX_MESSAGE || b.first() != Some(&VERSION) {
            return None;
        }
        let op = *b.get(1)?;
        if op & R_BIT == 0 {
            return None;
        }
        let opcode = Opcode::from_u8(op & !R_BIT)?;
        let data_end = HEADER_LEN + opcode.data_len();
        let body = Body::parse(opcode, b.get(HEADER_LEN..data_end)?)?;
        let mut rest = b.get(data_end..)?;
        let mut options = Vec::new();
        while !rest.is_empty() {
            let code = *rest.first()?;
            let len = usize::from(be16(rest, 2)?);
            let data = rest.get(OPTION_HEADER_LEN..OPTION_HEADER_LEN + len)?;
            match code {
                THIRD_PARTY => options.push(PcpOption::ThirdParty(addr(data, 0)?)),
                PREFER_FAILURE => options.push(PcpOption::PreferFailure),
                FILTER => options.push(PcpOption::Filter(Filter {
                    prefix_len: *data.get(1)?,
                    remote_peer_port: be16(data, 2)?,
                    remote_peer_addr: addr(data, 4)?,
                })),
                _ => {}
            }
            rest = rest.get(OPTION_HEADER_LEN + len.div_ceil(4) * 4..)?;
        }
        Some(Response {
            result: ResultCode::from_u8(*b.get(3)?)?,
            lifetime: be32(b, 4)?,
            epoch: be32(b, 8)?,
            body,
            options,
        })
    }
}

/// An error response (RFC 6887 §7.2, §8.3): the request copied (at most
/// 1100 octets, zero-padded to a multiple of 4 and to at least the
/// header), with Version 2, R set, the result code, lifetime and epoch.
/// For a request that was `parsed`, the Reserved field is zero; for one
/// that was not, it keeps the copied bytes 12–23, which are the last 96
/// bits of the request's PCP Client's IP Address field.
pub fn error_response(
    request: &[u8],
    result: ResultCode,
    lifetime: u32,
    epoch: u32,
    parsed: bool,
) -> Vec<u8> {
    let n = request.len().min(MAX_MESSAGE);
    let mut b = request.get(..n).unwrap_or_default().to_vec();
    // MAX_MESSAGE is a multiple of 4, so rounding up stays within it
    let len = n.div_ceil(4).saturating_mul(4).max(HEADER_LEN);
    b.resize(len, 0);
    if let Some(h) = b.get_mut(..HEADER_LEN) {
        // RFC 6887 §9: UNSUPP_VERSION names a version we support
        h[0] = VERSION;
        h[1] |= R_BIT;
        h[2] = 0;
        h[3] = result as u8;
        h[4..8].copy_from_slice(&lifetime.to_be_bytes());
        h[8..12].copy_from_slice(&epoch.to_be_bytes());
        if parsed {
            h[12..24].fill(0);
        }
    }
    b
}

/// An unsolicited ANNOUNCE response (RFC 6887 §14.1.3): sent to
/// 224.0.0.1:5350 and [ff02::1]:5350 after a restart or state loss.
pub fn announcement(epoch: u32) -> Vec<u8> {
    Response {
        result: ResultCode::Success,
        lifetime: 0,
        epoch,
        body: Body::Announce,
        options: Vec::new(),
    }
    .emit()
}

fn be16(b: &[u8], at: usize) -> Option<u16> {
    match b.get(at..at.checked_add(2)?)? {
        &[x, y] => Some(u16::from_be_bytes([x, y])),
        _ => None,
    }
}

fn be32(b: &[u8], at: usize) -> Option<u32> {
    let s: [u8; 4] = b.get(at..at.checked_add(4)?)?.try_into().ok()?;
    Some(u32::from_be_bytes(s))
}

fn addr(b: &[u8], at: usize) -> Option<Ipv6Addr> {
    let s: [u8; 16] = b.get(at..at.checked_add(16)?)?.try_into().ok()?;
    Some(Ipv6Addr::from(s))
}

#[cfg(test)]
mod tests {
    use super::*;

    const NONCE: [u8; 12] = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12];

    fn hex(s: &str) -> Vec<u8> {
        let s: String = s.split_whitespace().collect();
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    fn v4(a: [u8; 4]) -> Ipv6Addr {
        mapped(Ipv4Addr::from(a))
    }

    /// MAP TCP internal 7200, suggested 27200, no address preference,
    /// from 192.168.77.2, lifetime 3600.
    const MAP_HEX: &str = "02 01 0000 00000e10 00000000000000000000ffff c0a84d02
        0102030405060708090a0b0c 06 000000 1c20 6a40 00000000000000000000ffff 00000000";

    fn map_request() -> Request {
        Request {
            lifetime: 3600,
            client_addr: v4([192, 168, 77, 2]),
            body: Body::Map(Map {
                nonce: NONCE,
                protocol: 6,
                internal_port: 7200,
                external_port: 27200,
                external_addr: v4([0, 0, 0, 0]),
            }),
            options: vec![],
        }
    }

    #[test]
    fn map_request_vector() {
        let b = hex(MAP_HEX);
        assert_eq!(b.len(), HEADER_LEN + MAP_LEN);
        assert_eq!(parse(&b), Ok(map_request()));
        assert_eq!(map_request().emit(), b);
    }

    #[test]
    fn map_response_vector() {
        let r = Response {
            result: ResultCode::Success,
            lifetime: 120,
            epoch: 1000,
            body: Body::Map(Map {
                nonce: NONCE,
                protocol: 6,
                internal_port: 7200,
                external_port: 27200,
                external_addr: v4([203, 0, 113, 1]),
            }),
            options: vec![],
        };
        let b = hex("02 81 00 00 00000078 000003e8 000000000000000000000000
             0102030405060708090a0b0c 06 000000 1c20 6a40 00000000000000000000ffff cb007101");
        assert_eq!(r.emit(), b);
        assert_eq!(Response::parse(&b), Some(r));
    }

    #[test]
    fn peer_vectors() {
        let req = Request {
            lifetime: 600,
            client_addr: v4([192, 168, 77, 2]),
            body: Body::Peer(Peer {
                nonce: NONCE,
                protocol: 17,
                internal_port: 5000,
                external_port: 0,
                external_addr: Ipv6Addr::UNSPECIFIED,
                remote_peer_port: 3478,
                remote_peer_addr: v4([198, 51, 100, 9]),
            }),
            options: vec![],
        };
        let b = hex("02 02 0000 00000258 00000000000000000000ffff c0a84d02
             0102030405060708090a0b0c 11 000000 1388 0000 00000000000000000000000000000000
             0d96 0000 00000000000000000000ffff c6336409");
        assert_eq!(b.len(), HEADER_LEN + PEER_LEN);
        assert_eq!(parse(&b), Ok(req.clone()));
        assert_eq!(req.emit(), b);
        let Body::Peer(mut p) = req.body else {
            unreachable!()
        };
        p.external_port = 5000;
        p.external_addr = v4([203, 0, 113, 1]);
        let resp = Response {
            result: ResultCode::Success,
            lifetime: 600,
            epoch: 5,
            body: Body::Peer(p),
            options: vec![],
        };
        let rb = resp.emit();
        assert_eq!(rb.len(), 80);
        assert_eq!(&rb[..4], &[2, 0x82, 0, 0]);
        assert_eq!(Response::parse(&rb), Some(resp));
    }

    #[test]
    fn announce_vectors() {
        let b = hex("02 00 0000 00000000 00000000000000000000ffff c0a84d02");
        assert_eq!(
            parse(&b),
            Ok(Request {
                lifetime: 0,
                client_addr: v4([192, 168, 77, 2]),
                body: Body::Announce,
                options: vec![],
            })
        );
        assert_eq!(
            announcement(0x11223344),
            hex("02 80 00 00 00000000 11223344 000000000000000000000000")
        );
        assert_eq!(
            Response::parse(&announcement(9)).map(|r| (r.body, r.epoch)),
            Some((Body::Announce, 9))
        );
    }

    #[test]
    fn option_vectors() {
        let mut req = map_request();
        req.options = vec![
            PcpOption::ThirdParty(v4([192, 168, 77, 9])),
            PcpOption::PreferFailure,
            PcpOption::Filter(Filter {
                prefix_len: 120,
                remote_peer_port: 0,
                remote_peer_addr: v4([198, 51, 100, 0]),
            }),
        ];
        let mut b = hex(MAP_HEX);
        b.extend(hex("01 00 0010 00000000000000000000ffff c0a84d09
             02 00 0000
             03 00 0014 00 78 0000 00000000000000000000ffff c6336400"));
        assert_eq!(req.emit(), b);
        assert_eq!(parse(&b), Ok(req.clone()));
        assert_eq!(req.third_party(), Some(v4([192, 168, 77, 9])));
        assert!(req.prefer_failure());
        assert_eq!(req.filters().count(), 1);
        // echoed in a response and read back
        let resp = Response {
            result: ResultCode::Success,
            lifetime: 1,
            epoch: 1,
            body: req.body,
            options: req.options.clone(),
        };
        assert_eq!(Response::parse(&resp.emit()), Some(resp));
    }

    fn with_options(opts: &str) -> Vec<u8> {
        let mut b = hex(MAP_HEX);
        b.extend(hex(opts));
        b
    }

    #[test]
    fn option_errors() {
        let inv = |o: &str| parse(&with_options(o)).map(|_| ());
        use ResultCode::*;
        // unknown mandatory option
        assert_eq!(inv("7f 00 0000"), Err(ParseError::Invalid(UnsuppOption)));
        // unknown optional option, with padding: ignored
        assert_eq!(inv("80 00 0001 ff000000"), Ok(()));
        assert_eq!(
            parse(&with_options("80 00 0001 ff000000")).unwrap().options,
            vec![]
        );
        // length runs past the message
        assert_eq!(
            inv("80 00 0005 00000000"),
            Err(ParseError::Invalid(MalformedOption))
        );
        assert_eq!(
            inv("80 00 ffff 00000000"),
            Err(ParseError::Invalid(MalformedOption))
        );
        // wrong lengths
        assert_eq!(
            inv("02 00 0004 00000000"),
            Err(ParseError::Invalid(MalformedOption))
        );
        assert_eq!(
            inv("01 00 000c 000000000000000000000000"),
            Err(ParseError::Invalid(MalformedOption))
        );
        assert_eq!(
            inv("03 00 0010 00000000000000000000000000000000"),
            Err(ParseError::Invalid(MalformedOption))
        );
        // repeated
        assert_eq!(
            inv("02 00 0000 02 00 0000"),
            Err(ParseError::Invalid(MalformedOption))
        );
        let tp = "01 00 0010 00000000000000000000ffff c0a84d09";
        assert_eq!(
            inv(&format!("{tp}{tp}")),
            Err(ParseError::Invalid(MalformedOption))
        );
        // FILTER prefix rules: IPv4-mapped needs 96..=128 (or 0)
        let filter = |p: u8, a: &str| format!("03 00 0014 00 {p:02x} 0000 {a}");
        let v4a = "00000000000000000000ffff c6336400";
        let v6a = "20010db8000000000000000000000000";
        assert_eq!(inv(&filter(0, v4a)), Ok(()));
        assert_eq!(
            inv(&filter(95, v4a)),
            Err(ParseError::Invalid(MalformedOption))
        );
        assert_eq!(inv(&filter(96, v4a)), Ok(()));
        assert_eq!(inv(&filter(128, v4a)), Ok(()));
        assert_eq!(
            inv(&filter(129, v4a)),
            Err(ParseError::Invalid(MalformedOption))
        );
        assert_eq!(inv(&filter(32, v6a)), Ok(()));
        assert_eq!(
            inv(&filter(200, v6a)),
            Err(ParseError::Invalid(MalformedOption))
        );
        // several filters are fine for the parser
        assert_eq!(
            inv(&format!("{}{}", filter(120, v4a), filter(128, v4a))),
            Ok(())
        );
        // the first error in order wins
        assert_eq!(
            inv("7f 00 0000 02 00 0004 00000000"),
            Err(ParseError::Invalid(UnsuppOption))
        );
    }

    #[test]
    fn options_valid_per_opcode() {
        use ResultCode::*;
        let mut peer = hex("02 02 0000 00000258 00000000000000000000ffff c0a84d02
             0102030405060708090a0b0c 11 000000 1388 0000 00000000000000000000000000000000
             0d96 0000 00000000000000000000ffff c6336409");
        let n = peer.len();
        peer.extend(hex("02 00 0000"));
        assert_eq!(parse(&peer), Err(ParseError::Invalid(MalformedRequest)));
        peer.truncate(n);
        peer.extend(hex(
            "03 00 0014 00 80 0000 00000000000000000000ffff c6336409",
        ));
        assert_eq!(parse(&peer), Err(ParseError::Invalid(UnsuppOption)));
        peer.truncate(n);
        peer.extend(hex("01 00 0010 00000000000000000000ffff c0a84d09"));
        assert!(parse(&peer).is_ok());
        let mut ann = hex("02 00 0000 00000000 00000000000000000000ffff c0a84d02");
        ann.extend(hex("01 00 0010 00000000000000000000ffff c0a84d09"));
        assert_eq!(parse(&ann), Err(ParseError::Invalid(UnsuppOption)));
    }

    #[test]
    fn framing_errors() {
        use ResultCode::*;
        let map = hex(MAP_HEX);
        assert_eq!(parse(&[]), Err(ParseError::Drop));
        assert_eq!(parse(&[2]), Err(ParseError::Drop));
        // R bit set: a response, never answered
        assert_eq!(parse(&[2, 0x81, 0, 0]), Err(ParseError::Drop));
        // versions
        for v in [1u8, 3, 255] {
            let mut b = map.clone();
            b[0] = v;
            assert_eq!(parse(&b), Err(ParseError::Unparsed(UnsuppVersion)));
        }
        assert_eq!(parse(&[1, 0]), Err(ParseError::Unparsed(UnsuppVersion)));
        // sizes
        assert_eq!(
            parse(&map[..20]),
            Err(ParseError::Unparsed(MalformedRequest))
        );
        assert_eq!(
            parse(&map[..58]),
            Err(ParseError::Unparsed(MalformedRequest))
        );
        let mut big = map.clone();
        big.resize(1104, 0);
        assert_eq!(parse(&big), Err(ParseError::Unparsed(MalformedRequest)));
        // MAP data missing: header only
        assert_eq!(
            parse(&map[..24]),
            Err(ParseError::Unparsed(MalformedRequest))
        );
        // opcodes
        let mut b = map.clone();
        b[1] = 3;
        assert_eq!(parse(&b), Err(ParseError::Unparsed(UnsuppOpcode)));
        b[1] = 0x7f;
        assert_eq!(parse(&b), Err(ParseError::Unparsed(UnsuppOpcode)));
        // exactly 1100 bytes of optional padding options is fine
        let mut max = map.clone();
        while max.len() < MAX_MESSAGE {
            max.extend(hex("80 00 0000"));
        }
        assert!(parse(&max).is_ok());
    }

    #[test]
    fn error_response_copies_the_request() {
        let map = hex(MAP_HEX);
        let r = error_response(&map, ResultCode::NotAuthorized, 1800, 7, true);
        let mut want = map.clone();
        want[1] = 0x81;
        want[3] = 2;
        want[4..8].copy_from_slice(&1800u32.to_be_bytes());
        want[8..12].copy_from_slice(&7u32.to_be_bytes());
        want[12..24].fill(0);
        assert_eq!(r, want);
        // not parsed: bytes 12..24 are the low 96 bits of the client address
        let mut bad = map.clone();
        bad[0] = 3;
        let r = error_response(&bad, ResultCode::UnsuppVersion, 1800, 7, false);
        assert_eq!(r[0], VERSION);
        assert_eq!(&r[12..24], &map[12..24]);
        assert_eq!(&r[12..24], &v4([192, 168, 77, 2]).octets()[4..]);
        // short and odd-sized requests are zero-padded
        let r = error_response(&[3, 1, 9], ResultCode::UnsuppVersion, 1800, 7, false);
        assert_eq!(r.len(), 24);
        assert_eq!(&r[..4], &[2, 0x81, 0, 1]);
        let r = error_response(&map[..58], ResultCode::MalformedRequest, 1800, 0, false);
        assert_eq!(r.len(), 60);
        assert_eq!(
            error_response(&[2u8; 5000], ResultCode::MalformedRequest, 0, 0, false).len(),
            1100
        );
    }

    #[test]
    fn result_codes_and_lifetimes() {
        for v in 0..=13u8 {
            assert_eq!(ResultCode::from_u8(v).map(|c| c as u8), Some(v));
        }
        assert_eq!(ResultCode::from_u8(14), None);
        assert_eq!(ResultCode::NoResources.error_lifetime(), 30);
        assert_eq!(ResultCode::UserExQuota.error_lifetime(), 30);
        assert_eq!(ResultCode::NetworkFailure.error_lifetime(), 30);
        assert_eq!(ResultCode::NotAuthorized.error_lifetime(), 1800);
        assert_eq!(ResultCode::AddressMismatch.error_lifetime(), 1800);
    }

    #[test]
    fn addresses() {
        assert_eq!(
            mapped(Ipv4Addr::new(1, 2, 3, 4)).to_string(),
            "::ffff:1.2.3.4"
        );
        assert_eq!(
            unmapped(&"::ffff:1.2.3.4".parse().unwrap()),
            Some(Ipv4Addr::new(1, 2, 3, 4))
        );
        assert_eq!(unmapped(&"2001:db8::1".parse().unwrap()), None);
        // the deprecated IPv4-compatible form is not IPv4-mapped
        assert_eq!(unmapped(&"::1.2.3.4".parse().unwrap()), None);
        assert!(is_no_preference(&Ipv6Addr::UNSPECIFIED));
        assert!(is_no_preference(&"::ffff:0.0.0.0".parse().unwrap()));
        assert!(!is_no_preference(&"::ffff:0.0.0.1".parse().unwrap()));
    }
}
