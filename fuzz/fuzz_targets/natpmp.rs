//! `proto::natpmp::parse` on arbitrary datagrams, the error answers built
//! from them, and the client-side response parsers.
//!
//! Checks besides "no panic": the parse result agrees with the bytes
//! (version, opcode, fields re-emitted as they came); the "unsupported
//! opcode" echo keeps RFC 6886 §3.5's sizes (8 bytes up to `MAX_ECHO`,
//! never longer than the request unless padded to 8); a response that
//! parses emits back to the same bytes.

#![no_main]

use libfuzzer_sys::fuzz_target;
use rupnpd::proto::natpmp::{
    MAP_REQUEST_LEN, MAX_ECHO, MapResponse, ParseError, PublicAddressResponse, Request,
    SHORT_RESPONSE_LEN, parse, unsupported_opcode, unsupported_version,
};

const EPOCH: u32 = 0x0102_0304;

fuzz_target!(|data: &[u8]| {
    match parse(data) {
        Ok(Request::PublicAddress) => assert_eq!(&data[..2], &[0, 0]),
        Ok(r @ Request::Map(_)) => {
            let e = r.emit();
            assert_eq!(e.len(), MAP_REQUEST_LEN);
            // bytes 2–3 are Reserved: ignored on receipt, zero on emission
            assert_eq!((&e[..2], &e[4..]), (&data[..2], &data[4..MAP_REQUEST_LEN]));
        }
        Err(ParseError::Drop) => {}
        Err(ParseError::UnsupportedVersion { op }) => {
            assert!(data[0] != 0 && op == data[1]);
            let r = unsupported_version(op, EPOCH);
            assert_eq!(r[1], 0x80 | op);
        }
        Err(ParseError::UnsupportedOpcode) => {
            let r = unsupported_opcode(data, EPOCH);
            assert!(r.len() >= SHORT_RESPONSE_LEN && r.len() <= MAX_ECHO);
            assert!(r.len() <= data.len().max(SHORT_RESPONSE_LEN));
            assert_eq!(r[1], data[1] | 0x80);
            assert_eq!(&r[2..4], &[0, 5]);
        }
    }
    // The echo is built for any datagram the caller hands it.
    let r = unsupported_opcode(data, EPOCH);
    assert!(r.len() >= SHORT_RESPONSE_LEN && r.len() <= MAX_ECHO);
    if let Some(p) = PublicAddressResponse::parse(data) {
        assert_eq!(&p.emit()[..], &data[..12]);
    }
    if let Some(m) = MapResponse::parse(data) {
        assert_eq!(&m.emit()[..], &data[..16]);
    }
});
