//! NAT-PMP messages (RFC 6886): request parsing, response emission, and
//! the reverse pair for clients and tests.
//!
//! Owns: the byte layouts of §3.2–§3.5, [`ResultCode`], and the decision
//! between "drop silently" and "answer with an error" ([`ParseError`]).
//! Pure: no IO, no clock; must not import `core`, `sys` or tokio.

use std::net::Ipv4Addr;

use crate::proto::Proto;

/// The only NAT-PMP version (RFC 6886 §3).
pub const VERSION: u8 = 0;
/// Gateways listen here (RFC 6886 §3.1).
pub const SERVER_PORT: u16 = 5351;
/// Clients listen here for announcements (RFC 6886 §3.2.1).
pub const CLIENT_PORT: u16 = 5350;
/// Responses set this bit on the request's opcode (RFC 6886 §3.2).
pub const RESPONSE_BIT: u8 = 0x80;

pub const PUBLIC_ADDRESS_REQUEST_LEN: usize = 2;
pub const PUBLIC_ADDRESS_RESPONSE_LEN: usize = 12;
pub const MAP_REQUEST_LEN: usize = 12;
pub const MAP_RESPONSE_LEN: usize = 16;
/// Version, OP, result code and SSSoE: every response has at least these.
pub const SHORT_RESPONSE_LEN: usize = 8;
/// Longest request echoed back for an unsupported opcode. An echo is never
/// longer than the request, so it cannot amplify; this only bounds memory.
pub const MAX_ECHO: usize = 1100;

/// NAT-PMP opcodes (RFC 6886 §3.2, §3.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Opcode {
    PublicAddress = 0,
    MapUdp = 1,
    MapTcp = 2,
}

impl Opcode {
    pub fn from_u8(op: u8) -> Option<Opcode> {
        match op {
            0 => Some(Opcode::PublicAddress),
            1 => Some(Opcode::MapUdp),
            2 => Some(Opcode::MapTcp),
            _ => None,
        }
    }

    /// The mapping opcode for a protocol (RFC 6886 §3.3: 1 UDP, 2 TCP).
    pub fn for_proto(proto: Proto) -> Opcode {
        match proto {
            Proto::Udp => Opcode::MapUdp,
            Proto::Tcp => Opcode::MapTcp,
        }
    }
}

/// Result codes (RFC 6886 §3.5). Sent as 16 bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResultCode {
    Success = 0,
    UnsupportedVersion = 1,
    /// Not Authorized/Refused: disabled by the administrator, or policy.
    NotAuthorized = 2,
    /// e.g. the gateway has no external address yet.
    NetworkFailure = 3,
    /// Out of resources: no more mappings can be created.
    OutOfResources = 4,
    UnsupportedOpcode = 5,
}

impl ResultCode {
    pub fn from_u16(v: u16) -> Option<ResultCode> {
        Some(match v {
            0 => ResultCode::Success,
            1 => ResultCode::UnsupportedVersion,
            2 => ResultCode::NotAuthorized,
            3 => ResultCode::NetworkFailure,
            4 => ResultCode::OutOfResources,
            5 => ResultCode::UnsupportedOpcode,
            _ => return None,
        })
    }
}

/// A mapping request (RFC 6886 §3.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MapRequest {
    pub proto: Proto,
    pub internal_port: u16,
    /// 0 = no preference.
    pub suggested_external_port: u16,
    /// Seconds; 0 = delete (RFC 6886 §3.4).
    pub lifetime: u32,
}

/// A request a gateway can act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request {
    PublicAddress,
    Map(MapRequest),
}

/// Why a datagram is not a request we can act on, and what to do about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParseError {
    /// Too short for its opcode, or a response (OP ≥ 128): drop silently
    /// (RFC 6886 §3.5: a gateway never answers a response).
    Drop,
    /// Version ≠ 0: answer [`unsupported_version`] (RFC 6886 §3.5).
    UnsupportedVersion { op: u8 },
    /// OP < 128 but unknown: answer [`unsupported_opcode`] (RFC 6886 §3.5).
    UnsupportedOpcode,
}

/// Parses a request. Bytes after the fixed layout are ignored.
pub fn parse(pkt: &[u8]) -> Result<Request, ParseError> {
    let (Some(&vers), Some(&op)) = (pkt.first(), pkt.get(1)) else {
        return Err(ParseError::Drop);
    };
    if op & RESPONSE_BIT != 0 {
        return Err(ParseError::Drop);
    }
    if vers != VERSION {
        return Err(ParseError::UnsupportedVersion { op });
    }
    let proto = match Opcode::from_u8(op) {
        None => return Err(ParseError::UnsupportedOpcode),
        Some(Opcode::PublicAddress) => return Ok(Request::PublicAddress),
        Some(Opcode::MapUdp) => Proto::Udp,
        Some(Opcode::MapTcp) => Proto::Tcp,
    };
    let Some(b) = pkt.get(..MAP_REQUEST_LEN) else {
        return Err(ParseError::Drop);
    };
    // bytes 2–3 are Reserved and ignored
    Ok(Request::Map(MapRequest {
        proto,
        internal_port: be16(b, 4),
        suggested_external_port: be16(b, 6),
        lifetime: be32(b, 8),
    }))
}

impl Request {
    /// Encodes the request (for clients and tests).
    pub fn emit(&self) -> Vec<u8> {
        match self {
            Request::PublicAddress => vec![VERSION, Opcode::PublicAddress as u8],
            Request::Map(m) => {
                let mut b = Vec::with_capacity(MAP_REQUEST_LEN);
                b.extend_from_slice(&[VERSION, Opcode::for_proto(m.proto) as u8, 0, 0]);
                b.extend_from_slice(&m.internal_port.to_be_bytes());
                b.extend_from_slice(&m.suggested_external_port.to_be_bytes());
                b.extend_from_slice(&m.lifetime.to_be_bytes());
                b
            }
        }
    }
}

/// Public address response (RFC 6886 §3.2), also the announcement of
/// §3.2.1. The address must be 0.0.0.0 unless the result is Success.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PublicAddressResponse {
    pub result: ResultCode,
    /// Seconds since start of epoch.
    pub epoch: u32,
    pub external: Ipv4Addr,
}

impl PublicAddressResponse {
    pub fn emit(&self) -> [u8; PUBLIC_ADDRESS_RESPONSE_LEN] {
        let mut b = [0u8; PUBLIC_ADDRESS_RESPONSE_LEN];
        b[0] = VERSION;
        b[1] = RESPONSE_BIT | Opcode::PublicAddress as u8;
        b[2..4].copy_from_slice(&(self.result as u16).to_be_bytes());
        b[4..8].copy_from_slice(&self.epoch.to_be_bytes());
        b[8..12].copy_from_slice(&self.external.octets());
        b
    }

    pub fn parse(b: &[u8]) -> Option<PublicAddressResponse> {
        let b = b.get(..PUBLIC_ADDRESS_RESPONSE_LEN)?;
        if b[0] != VERSION || b[1] != RESPONSE_BIT {
            return None;
        }
        Some(PublicAddressResponse {
            result: ResultCode::from_u16(be16(b, 2))?,
            epoch: be32(b, 4),
            external: Ipv4Addr::new(b[8], b[9], b[10], b[11]),
        })
    }
}

/// Mapping response (RFC 6886 §3.3). On errors the external port and
/// lifetime are 0 and the internal port is the requested one (§3.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MapResponse {
    pub proto: Proto,
    pub result: ResultCode,
    pub epoch: u32,
    pub internal_port: u16,
    pub external_port: u16,
    pub lifetime: u32,
}

impl MapResponse {
    pub fn emit(&self) -> [u8; MAP_RESPONSE_LEN] {
        let mut b = [0u8; MAP_RESPONSE_LEN];
        b[0] = VERSION;
        b[1] = RESPONSE_BIT | Opcode::for_proto(self.proto) as u8;
        b[2..4].copy_from_slice(&(self.result as u16).to_be_bytes());
        b[4..8].copy_from_slice(&self.epoch.to_be_bytes());
        b[8..10].copy_from_slice(&self.internal_port.to_be_bytes());
        b[10..12].copy_from_slice(&self.external_port.to_be_bytes());
        b[12..16].copy_from_slice(&self.lifetime.to_be_bytes());
        b
    }

    pub fn parse(b: &[u8]) -> Option<MapResponse> {
        let b = b.get(..MAP_RESPONSE_LEN)?;
        if b[0] != VERSION || b[1] & RESPONSE_BIT == 0 {
            return None;
        }
        let proto = match Opcode::from_u8(b[1] & !RESPONSE_BIT)? {
            Opcode::PublicAddress => return None,
            Opcode::MapUdp => Proto::Udp,
            Opcode::MapTcp => Proto::Tcp,
        };
        Some(MapResponse {
            proto,
            result: ResultCode::from_u16(be16(b, 2))?,
            epoch: be32(b, 4),
            internal_port: be16(b, 8),
            external_port: be16(b, 10),
            lifetime: be32(b, 12),
        })
    }
}

/// The 8-byte "Unsupported Version" response (RFC 6886 §3.5): version 0
/// (the highest we support), result 1. OP is 128 + the request's OP, so
/// a PCP client (RFC 6887 §9) sees its opcode answered and falls back.
pub fn unsupported_version(request_op: u8, epoch: u32) -> [u8; SHORT_RESPONSE_LEN] {
    let mut b = [0u8; SHORT_RESPONSE_LEN];
    b[0] = VERSION;
    b[1] = RESPONSE_BIT | request_op;
    b[2..4].copy_from_slice(&(ResultCode::UnsupportedVersion as u16).to_be_bytes());
    b[4..8].copy_from_slice(&epoch.to_be_bytes());
    b
}

/// The answer to an unknown opcode (RFC 6886 §3.5): the request echoed
/// (at most [`MAX_ECHO`] bytes) with the top bit of OP set, result 5 and,
/// as in every response, SSSoE. A request shorter than 8 bytes is padded
/// with zeros so both fields fit.
pub fn unsupported_opcode(request: &[u8], epoch: u32) -> Vec<u8> {
    let n = request.len().min(MAX_ECHO);
    let mut b = request.get(..n).unwrap_or_default().to_vec();
    if b.len() < SHORT_RESPONSE_LEN {
        b.resize(SHORT_RESPONSE_LEN, 0);
    }
    b[1] |= RESPONSE_BIT;
    b[2..4].copy_from_slice(&(ResultCode::UnsupportedOpcode as u16).to_be_bytes());
    b[4..8].copy_from_slice(&epoch.to_be_bytes());
    b
}

fn be16(b: &[u8], at: usize) -> u16 {
    match b.get(at..at + 2) {
        Some(&[x, y]) => u16::from_be_bytes([x, y]),
        _ => 0,
    }
}

fn be32(b: &[u8], at: usize) -> u32 {
    match b.get(at..at + 4) {
        Some(&[a, c, d, e]) => u32::from_be_bytes([a, c, d, e]),
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_address_request_and_response() {
        assert_eq!(parse(&[0, 0]), Ok(Request::PublicAddress));
        // trailing bytes are ignored
        assert_eq!(parse(&[0, 0, 9, 9]), Ok(Request::PublicAddress));
        assert_eq!(Request::PublicAddress.emit(), vec![0, 0]);
        let r = PublicAddressResponse {
            result: ResultCode::Success,
            epoch: 0x0102_0304,
            external: Ipv4Addr::new(203, 0, 113, 7),
        };
        let bytes = [0, 128, 0, 0, 1, 2, 3, 4, 203, 0, 113, 7];
        assert_eq!(r.emit(), bytes);
        assert_eq!(PublicAddressResponse::parse(&bytes), Some(r));
    }

    #[test]
    fn map_request_vectors() {
        // natpmpc -a 7000 27000 tcp 600: internal 27000, external 7000
        let bytes = [0, 2, 0, 0, 0x69, 0x78, 0x1b, 0x58, 0, 0, 0x02, 0x58];
        let req = MapRequest {
            proto: Proto::Tcp,
            internal_port: 27000,
            suggested_external_port: 7000,
            lifetime: 600,
        };
        assert_eq!(parse(&bytes), Ok(Request::Map(req)));
        assert_eq!(Request::Map(req).emit(), bytes.to_vec());
        // UDP delete: lifetime 0
        let del = [0, 1, 0xff, 0xff, 0x13, 0x88, 0, 0, 0, 0, 0, 0];
        assert_eq!(
            parse(&del),
            Ok(Request::Map(MapRequest {
                proto: Proto::Udp,
                internal_port: 5000,
                suggested_external_port: 0,
                lifetime: 0,
            }))
        );
    }

    #[test]
    fn map_response_vectors() {
        let r = MapResponse {
            proto: Proto::Udp,
            result: ResultCode::Success,
            epoch: 77,
            internal_port: 5000,
            external_port: 5001,
            lifetime: 7200,
        };
        let bytes = [
            0, 129, 0, 0, 0, 0, 0, 77, 0x13, 0x88, 0x13, 0x89, 0, 0, 0x1c, 0x20,
        ];
        assert_eq!(r.emit(), bytes);
        assert_eq!(MapResponse::parse(&bytes), Some(r));
        let err = MapResponse {
            proto: Proto::Tcp,
            result: ResultCode::OutOfResources,
            epoch: 1,
            internal_port: 80,
            external_port: 0,
            lifetime: 0,
        };
        assert_eq!(
            err.emit(),
            [0, 130, 0, 4, 0, 0, 0, 1, 0, 80, 0, 0, 0, 0, 0, 0]
        );
        assert_eq!(MapResponse::parse(&err.emit()), Some(err));
        // a request is not a response
        assert_eq!(
            MapResponse::parse(&[0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]),
            None
        );
    }

    #[test]
    fn drop_or_answer() {
        assert_eq!(parse(&[]), Err(ParseError::Drop));
        assert_eq!(parse(&[0]), Err(ParseError::Drop));
        // responses are never answered
        assert_eq!(parse(&[0, 128]), Err(ParseError::Drop));
        assert_eq!(parse(&[0, 255, 0, 0]), Err(ParseError::Drop));
        // a mapping request shorter than 12 bytes
        assert_eq!(
            parse(&[0, 1, 0, 0, 0, 1, 0, 1, 0, 0, 0]),
            Err(ParseError::Drop)
        );
        assert_eq!(parse(&[0, 3]), Err(ParseError::UnsupportedOpcode));
        assert_eq!(parse(&[0, 127, 1, 2]), Err(ParseError::UnsupportedOpcode));
        assert_eq!(
            parse(&[2, 1, 0, 0]),
            Err(ParseError::UnsupportedVersion { op: 1 })
        );
        assert_eq!(
            parse(&[1, 0]),
            Err(ParseError::UnsupportedVersion { op: 0 })
        );
    }

    #[test]
    fn error_responses() {
        assert_eq!(unsupported_version(1, 300), [0, 129, 0, 1, 0, 0, 1, 44]);
        // short request: padded to 8 bytes
        assert_eq!(
            unsupported_opcode(&[0, 3], 2),
            vec![0, 131, 0, 5, 0, 0, 0, 2]
        );
        // long request: echoed whole, result and SSSoE written in place
        let req = [0, 9, 0xaa, 0xbb, 1, 1, 1, 1, 7, 7, 7, 7];
        assert_eq!(
            unsupported_opcode(&req, 3),
            vec![0, 137, 0, 5, 0, 0, 0, 3, 7, 7, 7, 7]
        );
        assert_eq!(unsupported_opcode(&[0u8; 5000], 0).len(), MAX_ECHO);
    }

    #[test]
    fn result_codes_round_trip() {
        for v in 0..=5u16 {
            assert_eq!(ResultCode::from_u16(v).map(|c| c as u16), Some(v));
        }
        assert_eq!(ResultCode::from_u16(6), None);
    }
}
