//! `proto::pcp::parse` on arbitrary datagrams, the error response built
//! for each, and the client-side `Response::parse`.
//!
//! Checks besides "no panic": every parsed request re-emits to bytes that
//! parse to the same request and are no longer than the datagram; the
//! error response for any datagram is 24..=1100 bytes, a multiple of 4,
//! version 2 with R set (RFC 6887 §7, §8.3); a parsed response emits back
//! to bytes that parse to the same response.

#![no_main]

use libfuzzer_sys::fuzz_target;
use rupnpd::proto::pcp::{
    HEADER_LEN, MAX_MESSAGE, ParseError, R_BIT, Response, ResultCode, VERSION, error_response,
    parse,
};

fn check_error(data: &[u8], code: ResultCode, parsed: bool) {
    let r = error_response(data, code, code.error_lifetime(), 7, parsed);
    assert!(r.len() >= HEADER_LEN && r.len() <= MAX_MESSAGE && r.len().is_multiple_of(4));
    assert_eq!(r[0], VERSION);
    assert!(r[1] & R_BIT != 0);
    assert_eq!(r[3], code as u8);
    if parsed {
        assert!(r[12..24].iter().all(|&b| b == 0));
    }
}

fuzz_target!(|data: &[u8]| {
    match parse(data) {
        Ok(req) => {
            assert!(data.len() <= MAX_MESSAGE && data.len().is_multiple_of(4));
            let e = req.emit();
            assert!(e.len() <= data.len(), "{} > {}", e.len(), data.len());
            assert_eq!(parse(&e), Ok(req));
        }
        Err(ParseError::Drop) => {}
        Err(ParseError::Unparsed(code)) => check_error(data, code, false),
        Err(ParseError::Invalid(code)) => check_error(data, code, true),
    }
    if let Some(r) = Response::parse(data) {
        let e = r.emit();
        assert!(e.len() <= data.len());
        assert_eq!(Response::parse(&e), Some(r));
    }
});
